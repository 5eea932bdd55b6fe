"""The task model: a keyed unit of work and the record the scheduler returns."""

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


@dataclass(frozen=True)
class Task:
    """A unit of work: ``func(**kwargs)`` identified by ``key``.

    ``func`` must be a module-level function so that any engine can pickle it;
    ``kwargs`` carry everything it needs (data as shared handles, not copies).
    """

    key: Hashable
    func: Callable
    kwargs: dict = field(default_factory=dict)


@dataclass
class TaskRecord:
    """What came back from one task: its key, its value and where it ran.

    ``start`` and ``end`` are wall-clock times (``time.time()``) taken in the
    worker, so records from several workers share one time axis.
    """

    key: Hashable
    value: Any
    host: str
    pid: int
    thread: str
    start: float
    end: float

    @property
    def worker(self):
        """A label of the worker that ran the task: ``host:pid`` (+ thread)."""
        return f"{self.host}:{self.pid}:{self.thread}"


def execute(task):
    """Run one task where it landed and wrap its value into a :class:`TaskRecord`."""
    start = time.time()
    value = task.func(**task.kwargs)
    end = time.time()
    return TaskRecord(
        key=task.key,
        value=value,
        host=socket.gethostname(),
        pid=os.getpid(),
        thread=threading.current_thread().name,
        start=start,
        end=end,
    )

