"""The local engine: joblib's loky processes, threads, or any joblib backend."""

import os
from collections import deque
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import joblib
import numpy as np
from joblib.parallel import BACKENDS, get_active_backend
from threadpoolctl import ThreadpoolController

from .._tempfiles import make_file, remove
from ._futures_run import FuturesRun
from ._local_pool import get_executor
from ._sharing import MemmapStore
from ._tasks import LostTask

#: Backends whose workers are separate processes on this machine.
_PROCESS_BACKENDS = ("loky", "multiprocessing")


class LocalEngine:
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
        up as a :class:`LostTask`.
    """

    def __init__(self, backend=None, n_jobs=None, pre_dispatch="2*n_jobs", max_retries=2):
        self.backend = backend
        self.n_jobs = n_jobs
        self.pre_dispatch = pre_dispatch
        self.max_retries = max_retries
        self._store = MemmapStore()

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

    @contextmanager
    def _config(self):
        if self.backend is None:
            yield
        else:
            with joblib.parallel_config(backend=self.backend):
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
            with self._config():
                yield from FuturesRun(func, queue, n_workers, partial(get_executor, n_workers),
                                      max_retries=self.max_retries)
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
                if self.uses_processes:
                    yield from self._map_surviving_crashes(func, round_)
                else:
                    yield from self._map(func, round_)

    def _map_surviving_crashes(self, func, tasks):
        """Map over worker processes; survive workers that die (segfault, kill).

        joblib loses every running task when a worker dies. Each task leaves a
        marker when it starts, so after a crash the tasks that were running
        are known: they are run again one at a time (so the one that kills
        its worker is identified) up to ``max_retries`` times, then yielded
        as :class:`LostTask`; the tasks that had not started go on in
        parallel in a fresh pool.
        """
        tasks = list(tasks)
        with _StartedBoard(len(tasks)) as board:
            marked = partial(_marked, func, board.path)
            pending = list(range(len(tasks)))
            while pending:
                done, crash = set(), None
                try:
                    for index, result in self._map(marked, [(i, tasks[i]) for i in pending]):
                        done.add(index)
                        yield result
                except BrokenExecutor as exc:
                    crash = exc
                started = board.started()
                suspects = [i for i in pending if i in started and i not in done]
                pending = [i for i in pending if i not in done and i not in started]
                if crash is None:
                    continue
                for index in suspects:
                    yield self._run_alone(marked, index, tasks[index], crash)

    def _run_alone(self, marked, index, task, crash):
        """Run a task that was running when a worker died, alone, with retries."""
        for _ in range(self.max_retries):
            try:
                return list(self._map(marked, [(index, task)]))[0][1]
            except BrokenExecutor as exc:
                crash = exc
        return LostTask(task=task, reason=_describe(crash), attempts=self.max_retries + 1)

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


class _StartedBoard:
    """One byte per task in a shared file: set by the worker when a task starts.

    The file is removed on exit, or when this process dies however it dies.
    """

    def __init__(self, n_tasks):
        self.path = make_file("started")
        self._board = np.memmap(self.path, dtype=np.uint8, mode="w+", shape=(max(n_tasks, 1),))

    def started(self):
        return set(np.flatnonzero(self._board).tolist())

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        del self._board
        remove(self.path)


_BOARDS = {}


def _marked(func, board_path, indexed_task):
    """Mark task ``index`` as started on the shared board, then run it."""
    index, task = indexed_task
    board = _BOARDS.get(board_path)
    if board is None:
        _BOARDS.clear()  # one board per run: drop the maps of finished runs
        board = _BOARDS[board_path] = np.memmap(board_path, dtype=np.uint8, mode="r+")
    board[index] = 1
    return index, func(task)


def _describe(crash):
    return f"{type(crash).__name__}: {str(crash).splitlines()[0] if str(crash) else ''}"
