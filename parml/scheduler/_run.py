"""The one place that dispatches work: share data once, run keyed tasks, stream records."""

import logging
import uuid

from ._engines import make_engine
from ._session import Session
from ._store import ResultStore, store_folder

logger = logging.getLogger("parml")


class Scheduler:
    """Runs keyed tasks on an engine and streams their records back.

    Use it as a context manager: data shared with :meth:`share` lives until
    the block ends.

    Parameters
    ----------
    backend : str or None, default=None
        The engine (see :func:`parml.scheduler.valid_backends`).
    n_jobs : int or None, default=None
        Number of workers, with joblib's meaning.
    pre_dispatch : int or str, default="2*n_jobs"
        How many tasks to dispatch ahead, with joblib's meaning.
    progress : bool, default=False
        Show a progress bar counting finished tasks.
    desc : str, default=None
        Label of the progress bar.
    max_retries : int, default=2
        How many times a task whose worker died is run again before it is
        given up (and recorded through ``Task.on_lost``).
    memory : str, os.PathLike, joblib.Memory or None, default=None
        A result store: each finished task with a ``cache_key`` is written
        there as it arrives, and tasks already there are not run again
        (unless their ``Task.rerun_stored`` refuses the stored value).
        ``joblib.Memory(None)`` means no store, as None does. A read-only
        folder is only read from; a write that fails stops the writing, not
        the run (see :meth:`ResultStore.put`).
    timeout : float or None, default=None
        Seconds a task may run before it is recorded through ``Task.on_lost``.
        Local worker processes (or ``n_jobs=1``) stop the task; remote engines
        (Dask, ipyparallel) abandon it and move on, leaving its worker alone.
        Refused with threads, which cannot be stopped.

    Attributes
    ----------
    n_cached : int
        Tasks of the last :meth:`run` read from the result store.
    n_rerun : int
        Tasks of the last :meth:`run` found in the result store but run
        again, because their ``rerun_stored`` refused the stored value.
    token : str
        Names the state that tasks keep in their workers for this scheduler
        (:func:`~._worker_state.fit_state`); released on every worker when
        the scheduler closes.

    Examples
    --------
    >>> from parml.scheduler import Scheduler, Task
    >>> with Scheduler(n_jobs=2, backend="threading") as scheduler:
    ...     records = scheduler.run([Task(key=i, func=pow, kwargs={"base": i, "exp": 2})
    ...                              for i in range(4)])
    ...     squares = {record.key: record.value for record in records}
    >>> squares
    {0: 0, 1: 1, 2: 4, 3: 9}
    """

    def __init__(
        self,
        backend=None,
        n_jobs=None,
        pre_dispatch="2*n_jobs",
        progress=False,
        desc=None,
        max_retries=2,
        memory=None,
        timeout=None,
    ):
        self.engine = make_engine(backend, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
        self.engine.max_retries = max_retries
        self.progress = progress
        self.desc = desc
        self.store = None if store_folder(memory) is None else ResultStore(memory)
        self.timeout = timeout
        self.n_cached = self.n_rerun = 0
        #: Names this scheduler's state in the workers (:mod:`._worker_state`).
        self.token = uuid.uuid4().hex
        if timeout is not None and not self.engine.supports_timeout:
            raise ValueError(
                f"timeout={timeout!r} needs worker processes or a remote engine: a "
                "thread cannot be stopped. Use backend='loky' (or n_jobs=1, Dask, "
                "ipyparallel), or timeout=None."
            )
        self.remote = self.engine.remote
        if self.remote:
            # a remote engine abandons a late task itself; its worker is left alone
            self.engine.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        try:
            self.engine.release_state(self.token)
        except Exception as exc:  # best effort: a fit's end never fails on it
            logger.debug("parml: could not release the workers' state of %s: %r",
                         self.token, exc)
        self.engine.close()

    def share(self, data):
        """Make ``data`` (arrays, or dicts/lists/tuples of them) cheap to send.

        The engine decides how: memory maps written once for local worker
        processes, the objects themselves for threads or a single worker.
        """
        return self.engine.share(data)

    def worker_ids(self):
        """Ids of the engine's workers, for :attr:`Task.where`."""
        return self.engine.worker_ids()

    @property
    def n_workers(self):
        """How many tasks the engine runs at once."""
        return self.engine.n_workers

    def place(self, collections):
        """Keep distributed data where it lives; per collection, ``(handle, worker)`` per chunk.

        For dask collections on the Dask engine (:meth:`DaskEngine.place`):
        tasks carry the handles and run where the chunks are (``Task.where``).
        """
        place = getattr(self.engine, "place", None)
        if place is None:
            raise ValueError(
                "Data that lives on a Dask cluster (dask collections) needs the Dask "
                f"engine, not {type(self.engine).__name__}: use backend='dask' or pass "
                "the Dask client as backend.")
        return place(collections)

    def worker_group(self, n_workers=None, **options):
        """A group of long-lived workers of this scheduler's engine (see :mod:`._groups`)."""
        from ._groups import open_group
        return open_group(self.engine, n_workers, **options)

    def session(self, desc=None):
        """A :class:`~._session.Session`: submit tasks at any time, records as they finish.

        Parameters
        ----------
        desc : str, default=None
            Label of the session's progress bar (by default the scheduler's).

        Returns
        -------
        session : Session
        """
        return Session(self, desc=desc)

    def run(self, tasks, *, desc=None):
        """Run ``tasks`` and yield one :class:`TaskRecord` per task as each finishes.

        Records arrive in completion order; callers merge them by ``key``.
        Tasks found in the result store come first, without running; a task
        whose stored value its ``rerun_stored`` refuses runs again, and its
        record says ``rerun``. An exception raised by a task propagates, as
        with :class:`joblib.Parallel`; Ctrl-C stops the workers and says how
        many tasks were kept. A scheduler may run several task lists, one
        after the other, on the same engine and shared data; with
        ``progress`` each run has its own bar, labelled ``desc`` (by default
        the scheduler's). This is a session (:meth:`session`) given all its
        tasks at once.
        """
        session = self.session(desc=desc)
        session.submit(tasks)
        self.n_cached, self.n_rerun = session.n_cached, session.n_rerun
        try:
            yield from session
        finally:
            self.n_cached, self.n_rerun = session.n_cached, session.n_rerun

    def look_up(self, tasks):
        """``(records read from the store, tasks to run, keys of refused stored values)``."""
        if self.store is None:
            return [], list(tasks), set()
        cached, todo, rerun = [], [], set()
        for task in tasks:
            record = None if task.cache_key is None else self.store.get(task.cache_key)
            if record is not None and _refused(task, record):
                rerun.add(task.key)
                record = None
            if record is None:
                todo.append(task)
            else:
                record.key, record.cached = task.key, True
                cached.append(record)
        return cached, todo, rerun

    def interrupted(self, n_done, n_total):
        """The message of a Ctrl-C after ``n_done`` of ``n_total`` tasks: what was kept."""
        return self._interrupted(n_done, n_total)

    def _interrupted(self, n_done, n_total):
        kept = (f"Interrupted after {n_done} of {n_total} tasks finished; "
                "the workers were stopped. ")
        if self.store is None:
            return kept + (
                "No result store was set (memory=None), so the finished tasks are "
                "lost; pass memory='a folder' to make a run resumable."
            )
        if not self.store.writable:
            return kept + (
                f"The result store {self.store.path!r} could not be written (see the "
                "StoreWarning), so the tasks finished since are lost; pass a folder "
                "you can write to as memory= to make a run resumable."
            )
        return kept + (
            f"The finished tasks are kept in the result store {self.store.path!r}: "
            "run the same fit again with the same memory= to resume where it stopped."
        )


def _refused(task, record):
    """Whether ``task`` runs again instead of using its stored ``record``."""
    return task.rerun_stored is not None and bool(task.rerun_stored(record.value))
