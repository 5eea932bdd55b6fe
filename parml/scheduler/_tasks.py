"""The task model: a keyed unit of work and the record the scheduler returns."""

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional


@dataclass(frozen=True)
class Task:
    """A unit of work: ``func(**kwargs)`` identified by ``key``.

    ``func`` must be a module-level function so that any engine can pickle it;
    ``kwargs`` carry everything it needs (data as shared handles, not copies).
    """

    key: Hashable
    func: Callable
    kwargs: dict = field(default_factory=dict)
    #: ``on_lost(reason) -> value`` gives the value of a task whose worker
    #: died more than ``max_retries`` times (e.g. a failed-fit record); None
    #: makes the run raise :class:`WorkerLostError` instead.
    on_lost: Optional[Callable] = None


class WorkerLostError(RuntimeError):
    """A task's worker died more often than the retries allow."""


@dataclass
class LostTask:
    """What an engine yields for a task it gave up on after worker deaths."""

    task: Task
    reason: str
    attempts: int


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
    #: True when the value came from ``Task.on_lost``: the task never finished.
    lost: bool = False

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



def lost_record(lost):
    """The record of a task given up on: ``task.on_lost(reason)`` or raise."""
    task = lost.task
    if task.on_lost is None:
        raise WorkerLostError(
            f"Task {task.key!r} was lost {lost.attempts} times: {lost.reason}"
        )
    now = time.time()
    return TaskRecord(
        key=task.key, value=task.on_lost(lost.reason), host="", pid=-1,
        thread="", start=now, end=now, lost=True,
    )
