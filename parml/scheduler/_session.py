"""A scheduler session: submit tasks at any time, get their records as they finish.

A session is opened per fit (:meth:`Scheduler.session`). Tasks submitted
while records are coming in are dispatched at once, next to those already
running: a search can choose its next tasks from the results it has seen
without waiting for a batch to end (asynchronous successive halving does
exactly that). The result store, retries, progress, tracing and Ctrl-C
handling are the session's: a task found in the store is not run, a
finished task is written there as it arrives.

Engines take the session's queue itself (a :class:`collections.deque`) and
send what is added to it between two records; loky's processes, threads, a
single worker, Dask and ipyparallel all do. Other joblib backends run what
was added in a further round once the current one is done.
"""

from collections import deque
from functools import partial

from ._progress import progress_bar
from ._tasks import LostTask, Task, execute, lost_record


class Session:
    """A stream of records over tasks submitted at any time.

    Parameters
    ----------
    scheduler : Scheduler
        Its engine runs the tasks; its store, timeout and progress settings apply.
    desc : str, default=None
        Label of the progress bar (by default the scheduler's).

    Attributes
    ----------
    n_submitted : int
        Tasks submitted so far.
    n_done : int
        Records yielded so far.
    n_cached : int
        Tasks read from the result store instead of run.
    n_rerun : int
        Tasks found in the store but run again (their ``rerun_stored`` refused the value).

    Examples
    --------
    >>> from parml.scheduler import Scheduler, Task
    >>> with Scheduler(n_jobs=2, backend="threading") as scheduler:
    ...     session = scheduler.session()
    ...     session.submit([Task(key=i, func=pow, kwargs={"base": i, "exp": 2})
    ...                     for i in range(3)])
    ...     squares = {}
    ...     for record in session:
    ...         squares[record.key] = record.value
    ...         if record.key == 2:  # chosen from a result: submitted while others run
    ...             session.submit([Task(key=10, func=pow, kwargs={"base": 10, "exp": 2})])
    >>> sorted(squares.items())
    [(0, 0), (1, 1), (2, 4), (10, 100)]
    """

    def __init__(self, scheduler, desc=None):
        self.scheduler = scheduler
        self.engine = scheduler.engine
        self.desc = desc or scheduler.desc
        self.queue = deque()  # tasks to run: the engine takes from it
        self._ready = deque()  # records read from the store, yielded first
        self._cancelled, self._rerun = set(), set()
        self._stream = None
        self._bar = None
        self.n_submitted = self.n_done = self.n_cached = self.n_rerun = 0
        self._func = execute
        if scheduler.timeout is not None and not scheduler.remote:
            self._func = partial(execute, timeout=scheduler.timeout)

    def submit(self, tasks):
        """Add ``tasks`` (a :class:`Task` or a list of them) to the run.

        Allowed at any time, also while iterating: they are sent as soon as
        a worker is free. Tasks found in the result store are not run; their
        stored records come next.
        """
        tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
        cached, todo, rerun = self.scheduler.look_up(tasks)
        self._ready.extend(cached)
        self.queue.extend(todo)
        self._rerun |= rerun
        self._cancelled -= {task.key for task in tasks}
        self.n_submitted += len(tasks)
        self.n_cached += len(cached)
        self.n_rerun += len(rerun)
        self._grow_bar(len(tasks))

    def cancel(self, keys):
        """Drop the tasks of ``keys``: queued ones do not run, running ones are not reported.

        A remote engine lets a cancelled task that already runs finish; its
        record is discarded.
        """
        keys = set(keys)
        self._cancelled |= keys
        for pool in (self.queue, self._ready):
            kept = [item for item in pool if item.key not in keys]
            dropped = len(pool) - len(kept)
            pool.clear()
            pool.extend(kept)
            self._grow_bar(-dropped)

    def __iter__(self):
        """Yield one :class:`TaskRecord` per task as each finishes, until none is left."""
        with progress_bar(self.scheduler.progress, total=self.n_submitted - self.n_done,
                          desc=self.desc) as bar:
            self._bar = bar
            try:
                yield from self._records()
            except KeyboardInterrupt:
                raise KeyboardInterrupt(self.scheduler.interrupted(
                    self.n_done, self.n_submitted)) from None
            finally:
                self._bar = None
                if self._stream is not None:
                    self._stream.close()  # stops the engine's run early
                    self._stream = None

    def _records(self):
        while True:
            if self._ready:
                yield self._yielded(self._ready.popleft())
                continue
            if self._stream is None:
                if not self.queue:
                    return
                self._stream = iter(self.engine.map_unordered(self._func, self.queue))
            try:
                outcome = next(self._stream)
            except StopIteration:
                self._stream = None
                continue
            record = self._finish(outcome)
            if record.key in self._cancelled:
                continue
            yield self._yielded(record)

    def _yielded(self, record):
        self.n_done += 1
        if self._bar is not None:
            self._bar.update(1)
        return record

    def _finish(self, outcome):
        if isinstance(outcome, LostTask):
            record = lost_record(outcome)
        else:
            record = outcome
            store = self.scheduler.store
            if store is not None and record.cache_key is not None:
                store.put(record.cache_key, record)
        record.rerun = record.key in self._rerun
        return record

    def _grow_bar(self, n):
        bar = self._bar
        if bar is not None and n and getattr(bar, "total", None) is not None:
            bar.total += n
            bar.refresh()
