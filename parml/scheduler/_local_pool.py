"""The local worker processes that every parml tool of a process shares.

One pool serves every search, cross-validation, forest and AveragedSGD of
the process, and stays up between fits for joblib's idle timeout. Tasks are
submitted to it directly, as futures, so that a scheduler session can add
tasks while others run.

How the workers start (:func:`warm_start_enabled`):

- **warm** (the default on Linux): the workers are forks of a template of
  this process (:mod:`._warm_template`), so they start with numpy, scipy,
  scikit-learn and the estimator's modules imported: the first parallel call
  of a process costs about what the next ones do. The pool is parml's own
  (joblib's memory-mapping executor, with joblib's worker environment).
- **loky**: joblib's reusable loky executor, the one ``joblib.Parallel``
  uses: each worker is a new interpreter that imports what its tasks need
  (about a second per worker for scikit-learn), once; the processes are
  shared with joblib's own ``Parallel`` calls made with the same settings.
  Used on macOS and Windows (where a fork without exec is unsafe or
  impossible), when loky's start method was chosen explicitly
  (``loky.set_start_method``), or with ``PARML_WORKER_START=loky``.
"""

import atexit
import os
import sys
import threading

from joblib import cpu_count
from joblib.executor import MemmappingExecutor, TemporaryResourcesManager
from joblib.executor import get_memmapping_executor, get_memmapping_reducers
from joblib.externals.loky.backend.context import get_start_method
from joblib.parallel import get_active_backend

from ._warm_template import WarmContext

#: Seconds an idle worker stays up before it exits (joblib's default).
IDLE_SECONDS = 300
#: Variables that cap the thread pools of BLAS/OpenMP libraries in a worker
#: (the ones joblib's loky backend sets).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Environment variable choosing how workers start: "warm" or "loky".
WORKER_START_ENV = "PARML_WORKER_START"
_WORKER_STARTS = ("warm", "loky")


def worker_env(n_workers):
    """Environment of the workers: ``cpu_count // n_workers`` threads each, as joblib.

    An ``inner_max_num_threads`` set with :func:`joblib.parallel_config` wins;
    otherwise a variable already set in this process is kept.
    """
    explicit = getattr(get_active_backend()[0], "inner_max_num_threads", None)
    default = max(cpu_count() // max(n_workers, 1), 1)
    env = {var: str(explicit if explicit is not None else os.environ.get(var, default))
           for var in THREAD_VARS}
    if "ENABLE_IPC" not in os.environ:
        env["ENABLE_IPC"] = "1"  # TBB schedulers coordinate across processes
    return env


def worker_start():
    """How workers start here: ``"warm"`` (forks of a template) or ``"loky"``.

    ``PARML_WORKER_START`` chooses (``"warm"`` or ``"loky"``); ``"warm"``
    falls back to ``"loky"`` off Linux, and when loky's start method was set
    explicitly (``joblib.externals.loky.set_start_method``).

    Raises
    ------
    ValueError
        If ``PARML_WORKER_START`` holds another value.
    """
    choice = os.environ.get(WORKER_START_ENV, "warm").strip().lower() or "warm"
    if choice not in _WORKER_STARTS:
        raise ValueError(
            f"The environment variable {WORKER_START_ENV} must be one of "
            f"{list(_WORKER_STARTS)}; got {os.environ[WORKER_START_ENV]!r}. Unset it "
            "for the default (warm workers where the platform allows them).")
    if choice == "warm" and sys.platform.startswith("linux") and get_start_method() is None:
        return "warm"
    return "loky"


def warm_start_enabled():
    """Whether workers are forks of a warm template of this process (see :func:`worker_start`)."""
    return worker_start() == "warm"


def get_executor(n_workers):
    """The process pool for ``n_workers`` workers: started once, then reused.

    A pool broken by a worker's death, or shut down, is replaced by a new
    one on the next call; so is a pool of another size (after its tasks
    finished).
    """
    env = worker_env(n_workers)
    if not warm_start_enabled():
        return get_memmapping_executor(n_workers, timeout=IDLE_SECONDS, env=env)
    return _WARM_POOL.get(n_workers, env)


class _WarmPool:
    """The pool of warm workers of this process: one executor, replaced when unusable."""

    def __init__(self):
        self.executor = None
        self.key = None
        self.n_created = 0
        self._lock = threading.Lock()

    def get(self, n_workers, env):
        key = (n_workers, tuple(sorted(env.items())))
        with self._lock:
            if self.executor is not None and usable(self.executor):
                if self.key == key:
                    return self.executor
                self.executor.shutdown(wait=False)  # its running tasks finish
            self.executor, self.key = _new_warm_executor(n_workers, env), key
            if not self.n_created:
                # before multiprocessing's own exit handler (atexit runs last in,
                # first out), which waits for every child process to end
                atexit.register(self.shutdown)
            self.n_created += 1
            return self.executor

    def shutdown(self):
        """Stop the workers now (at exit; idle workers also exit by themselves)."""
        with self._lock:
            if self.executor is not None:
                self.executor.terminate(kill_workers=True)
                self.executor = self.key = None


def usable(executor):
    """Whether a loky executor can take tasks: not broken by a worker's death, not shut down."""
    flags = executor._flags  # loky's state, as its reusable executor reads it
    return not (flags.broken or flags.shutdown)


class _WarmExecutor(MemmappingExecutor):
    """joblib's memory-mapping executor whose ``terminate(kill_workers=True)`` always kills.

    loky kills the workers from its manager thread; a future cancelled just
    before (as a run stopped by Ctrl-C does) makes that thread fail, and the
    workers would be left waiting for tasks (and the interpreter's exit for
    them). The workers are killed here as well.
    """

    def terminate(self, kill_workers=False):
        processes = list(self._processes.values())
        try:
            super().terminate(kill_workers=kill_workers)
        finally:
            if kill_workers:
                for process in processes:
                    if process.exitcode is None:
                        process.kill()


def _new_warm_executor(n_workers, env):
    """joblib's memory-mapping executor (memmaps passed by reference), warm workers."""
    manager = TemporaryResourcesManager()
    job_reducers, result_reducers = get_memmapping_reducers(
        unlink_on_gc_collect=True, temp_folder_resolver=manager.resolve_temp_folder_name)
    executor = _WarmExecutor(
        threading.RLock(), max_workers=n_workers, context=WarmContext(),
        timeout=IDLE_SECONDS, job_reducers=job_reducers, result_reducers=result_reducers,
        env=env)
    executor._temp_folder_manager = manager  # as joblib's get_memmapping_executor sets it
    return executor


_WARM_POOL = _WarmPool()
