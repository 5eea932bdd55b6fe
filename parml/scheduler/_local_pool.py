"""The local worker processes that every parml tool of a process shares.

They are joblib's reusable loky executor: the same processes serve every
search, cross-validation and forest of the process (and joblib's own
``Parallel`` calls made with the same settings), and stay up between fits
for joblib's idle timeout. Tasks are submitted to it directly, as futures,
so that a scheduler session can add tasks while others run.
"""

import os

from joblib import cpu_count
from joblib.executor import get_memmapping_executor
from joblib.parallel import get_active_backend

#: Seconds an idle worker stays up before it exits (joblib's default).
IDLE_SECONDS = 300
#: Variables that cap the thread pools of BLAS/OpenMP libraries in a worker
#: (the ones joblib's loky backend sets).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")


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


def get_executor(n_workers):
    """The process pool for ``n_workers`` workers: started once, then reused.

    A pool broken by a worker's death, or shut down, is replaced by a new
    one on the next call.
    """
    return get_memmapping_executor(n_workers, timeout=IDLE_SECONDS, env=worker_env(n_workers))
