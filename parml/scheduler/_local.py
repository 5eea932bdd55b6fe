"""The local engine: joblib's loky processes, threads, or any joblib backend."""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import joblib
from joblib.parallel import BACKENDS, get_active_backend
from threadpoolctl import ThreadpoolController

from .._tempfiles import make_file, remove
from ._engine_base import Engine
from ._futures_run import FuturesRun
from ._local_pool import get_executor
from ._sharing import MemmapStore
from ._worker_state import release, release_on_each

#: Backends whose workers are separate processes on this machine.
_PROCESS_BACKENDS = ("loky", "multiprocessing")


class LocalEngine(Engine):
    """Runs tasks through :class:`joblib.Parallel` on a joblib backend.

    Parameters
    ----------
    backend : str or None
        joblib backend name, or None for joblib's active configuration.
    n_jobs : int or None
        Number of workers, with joblib's meaning.
    pre_dispatch : int or str
        joblib's ``pre_dispatch``.
    max_retries : int, default=2
        How many times a task whose worker process died is run again (alone,
        so that the task that kills its worker is found) before it is given
        up as a :class:`~._tasks.LostTask` (loky's processes; see
        :mod:`._futures_run`).
    """

    def __init__(self, backend=None, n_jobs=None, pre_dispatch="2*n_jobs", max_retries=2):
        self.backend = backend
        self.n_jobs = n_jobs
        self.pre_dispatch = pre_dispatch
        self.max_retries = max_retries
        self._store = MemmapStore()
        self._pool_size = None  # workers of the process pool this engine used, if any

    def worker_ids(self):
        """One machine: every worker reads the same memory, so there is one id."""
        return ["local"]

    def share(self, data):
        """Make ``data`` (arrays, or dicts/lists/tuples of them) cheap to send.

        Worker processes get read-only memory maps written once per fit;
        threads and a single worker get the objects themselves.
        """
        if self.uses_processes:
            return self._store.share(data)
        return data

    def close(self):
        """Remove the memory maps of this run."""
        self._store.close()

    def release_state(self, token):
        """Drop the state kept for the fit ``token`` here and in the pool's workers.

        The workers each get a release task (:func:`~._worker_state.release_on_each`);
        nothing waits for them: their board is removed when the last one is done.
        """
        release(token)
        if self._pool_size is None:
            return
        with self._config():
            executor = get_executor(self._pool_size)
        board = make_file("release")
        futures = [executor.submit(release_on_each, token, board, self._pool_size)
                   for _ in range(self._pool_size)]
        left = [len(futures)]

        def done(_):
            left[0] -= 1
            if not left[0]:
                remove(board)
        for future in futures:
            future.add_done_callback(done)

    @contextmanager
    def _config(self):
        """joblib's configuration with this engine's backend; the user's other settings kept.

        An ``inner_max_num_threads`` set with :func:`joblib.parallel_config`
        around the fit still applies when ``backend`` names a backend.
        """
        if self.backend is None:
            yield
            return
        kwargs = {}
        inner = getattr(get_active_backend()[0], "inner_max_num_threads", None)
        if inner is not None and getattr(BACKENDS.get(self.backend),
                                         "supports_inner_max_num_threads", False):
            kwargs["inner_max_num_threads"] = inner
        with joblib.parallel_config(backend=self.backend, **kwargs):
            yield

    def _active_backend(self):
        with self._config():
            return get_active_backend()[0]

    @property
    def n_workers(self):
        """Number of workers tasks run on concurrently."""
        with self._config():
            return joblib.effective_n_jobs(self.n_jobs)

    @property
    def uses_processes(self):
        """Whether workers are local processes that read shared memory maps."""
        if self.n_workers == 1:
            return False
        active = self._active_backend()
        return isinstance(active, tuple(BACKENDS[name] for name in _PROCESS_BACKENDS))

    @property
    def uses_threads(self):
        """Whether workers are threads of this process."""
        return self.n_workers > 1 and isinstance(
            self._active_backend(), BACKENDS["threading"]
        )

    @property
    def supports_timeout(self):
        """Whether ``timeout=`` can stop a task: not in a thread."""
        return not self.uses_threads

    def inner_threads(self):
        """BLAS/OpenMP threads each worker may use: ``cpu_count // n_workers``."""
        return max(1, (os.cpu_count() or 1) // self.n_workers)

    def map_unordered(self, func, tasks):
        """Yield ``func(task)`` for each task, in the order they finish.

        ``tasks`` may be a :class:`collections.deque` that grows while the
        run goes on (a scheduler session): loky's processes, threads and a
        single worker run the tasks added too, as soon as a worker is free.
        Other joblib backends run them in a further round once the current
        one is done.

        Thread budget: loky workers get ``cpu_count // n_jobs`` BLAS/OpenMP
        threads from their environment, as joblib's (:mod:`._local_pool`).
        Worker threads of this process are limited here.
        """
        queue = tasks if isinstance(tasks, deque) else deque(tasks)
        n_workers = self.n_workers
        if n_workers == 1:
            yield from _inline(func, queue)
        elif isinstance(self._active_backend(), BACKENDS["loky"]):
            self._pool_size = None  # a run stopped early stops the workers: nothing to release
            with self._config():
                yield from FuturesRun(func, queue, n_workers, partial(get_executor, n_workers),
                                      max_retries=self.max_retries)
            self._pool_size = n_workers
        elif self.uses_threads:
            # BLAS pools (OpenBLAS, MKL) are global to the process: limit them
            # once for the run. OpenMP limits are per thread: set them per task.
            controller = ThreadpoolController()
            inner = self.inner_threads()
            with controller.limit(limits=inner, user_api="blas"):
                yield from FuturesRun(partial(_limited, func, controller, inner), queue,
                                      n_workers, partial(ThreadPoolExecutor, n_workers),
                                      processes=False)
        else:
            while queue:  # other joblib backends: the tasks queued so far, as a round
                round_, _ = list(queue), queue.clear()
                yield from self._map(func, round_)

    def _map(self, func, items):
        with self._config():
            streams = getattr(get_active_backend()[0], "supports_return_generator", False)
            parallel = joblib.Parallel(
                n_jobs=self.n_jobs,
                pre_dispatch=self.pre_dispatch,
                return_as="generator_unordered" if streams else "list",
            )
            yield from parallel(joblib.delayed(func)(item) for item in items)


def _inline(func, queue):
    while queue:
        yield func(queue.popleft())


def _limited(func, controller, limit, item):
    with controller.limit(limits=limit, user_api="openmp"):
        return func(item)
