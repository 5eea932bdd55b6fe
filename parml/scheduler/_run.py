"""The one place that dispatches work: share data once, run keyed tasks, stream records."""

from ._engines import make_engine
from ._progress import progress_bar
from ._tasks import LostTask, execute, lost_record


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
        self, backend=None, n_jobs=None, pre_dispatch="2*n_jobs", progress=False, desc=None
    ):
        self.engine = make_engine(backend, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
        self.progress = progress
        self.desc = desc

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.engine.close()

    def share(self, data):
        """Make ``data`` (arrays, or dicts/lists/tuples of them) cheap to send.

        The engine decides how: memory maps written once for local worker
        processes, the objects themselves for threads or a single worker.
        """
        return self.engine.share(data)

    def run(self, tasks):
        """Run ``tasks`` and yield one :class:`TaskRecord` per task as each finishes.

        Records arrive in completion order; callers merge them by ``key``.
        An exception raised by a task propagates (after the running tasks of
        the batch are abandoned), as with :class:`joblib.Parallel`.
        """
        tasks = list(tasks)
        with progress_bar(self.progress, total=len(tasks), desc=self.desc) as bar:
            for outcome in self.engine.map_unordered(execute, tasks):
                bar.update(1)
                yield lost_record(outcome) if isinstance(outcome, LostTask) else outcome
