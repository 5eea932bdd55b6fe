"""The task model: a keyed unit of work and the record the scheduler returns."""

import itertools
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional


_UIDS = itertools.count()


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
    #: Name of the task's entry in a result store: a hash of everything that
    #: changes its result. None: the task is never stored.
    cache_key: Optional[str] = None
    #: The worker that must run the task (an id from the engine's
    #: ``worker_ids()``), e.g. the one that holds a data partition the task
    #: reads. None: any worker. Local engines share one machine's memory and
    #: ignore it.
    where: Optional[Hashable] = None
    #: ``rerun_stored(value) -> bool``: whether a value found in the result
    #: store is not used but run again (e.g. a failed fit, whose failure may
    #: have passed). None: a stored value is always used.
    rerun_stored: Optional[Callable] = None
    #: Unique in this process (copies made with :func:`dataclasses.replace`
    #: keep it): what engines' runs count deaths and finished tasks by. Not
    #: ``id(task)``, which a new task may reuse once a finished one is freed.
    uid: int = field(default_factory=lambda: next(_UIDS), compare=False, repr=False)


_TIMEOUT = "it ran longer than timeout="


def timeout_reason(timeout):
    """The ``LostTask.reason`` of a task that ran past ``timeout`` seconds."""
    return f"{_TIMEOUT}{timeout} s"


def lost_task_message(reason, what="task"):
    """What happened to a task given up on: abandoned past its timeout, or its worker died."""
    if reason.startswith(_TIMEOUT):
        return f"This {what} was abandoned: {reason} (the timeout parameter)."
    return f"The worker running this {what} died: {reason}"


class WorkerLostError(RuntimeError):
    """A task's worker died more often than the retries allow."""


class TaskTimeout(BaseException):
    """Raised inside a task that ran past its time limit.

    A BaseException, so that code catching ``Exception`` (a fit's
    ``error_score`` handling) lets it through to :func:`execute`.
    """


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
    #: True when the record was read from a result store instead of computed.
    cached: bool = False
    #: The task's result-store entry name (None: not stored).
    cache_key: Optional[str] = None
    #: True when the result store held a value the task's ``rerun_stored``
    #: refused (a failed fit), so the task ran again.
    rerun: bool = False

    @property
    def worker(self):
        """A label of the worker that ran the task: ``host:pid`` (+ thread)."""
        return f"{self.host}:{self.pid}:{self.thread}"


def execute(task, timeout=None):
    """Run one task where it landed and wrap its value into a :class:`TaskRecord`.

    With ``timeout`` (seconds), a task still running after that long is
    interrupted (SIGALRM; main thread of a process only) and comes back as a
    :class:`LostTask`.
    """
    start = time.time()
    try:
        with _time_limit(timeout):
            value = task.func(**task.kwargs)
    except TaskTimeout:
        return LostTask(task=task, reason=timeout_reason(timeout), attempts=1)
    end = time.time()
    return TaskRecord(
        key=task.key,
        value=value,
        host=socket.gethostname(),
        pid=os.getpid(),
        thread=threading.current_thread().name,
        start=start,
        end=end,
        cache_key=task.cache_key,
    )


@contextmanager
def _time_limit(seconds):
    """Raise :class:`TaskTimeout` in the block after ``seconds``; a user's timer goes on.

    A ``SIGALRM`` timer set before (by the user's own code, when tasks run in
    the main process) still fires: its handler runs when it falls due during
    the block, and after the block the timer is armed again for the time it
    had left (at once if that passed).
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("A task timeout needs the main thread of a worker process.")
    start = time.monotonic()
    deadline = start + seconds
    user_delay, user_interval = signal.getitimer(signal.ITIMER_REAL)
    user = {"due": start + user_delay if user_delay else None}

    def arm(now):
        due = deadline if user["due"] is None else min(deadline, user["due"])
        signal.setitimer(signal.ITIMER_REAL, max(due - now, 1e-6))

    def interrupt(signum, frame):
        now = time.monotonic()
        if user["due"] is None or now >= deadline - 1e-3:
            raise TaskTimeout()
        # the user's timer fell due first: its handler runs, ours is armed again
        user["due"] = now + user_interval if user_interval else None
        arm(now)
        if callable(previous):
            previous(signum, frame)

    previous = signal.signal(signal.SIGALRM, interrupt)
    arm(start)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if user["due"] is not None:  # the user's timer, for the time it had left
            signal.setitimer(signal.ITIMER_REAL, max(user["due"] - time.monotonic(), 1e-6),
                             user_interval)


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
