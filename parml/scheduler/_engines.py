"""Engines: where tasks run. Each is a thin adapter over a joblib backend.

``backend=None`` follows joblib's active :func:`joblib.parallel_config` (so
``with parallel_config("threading")`` works as it does for scikit-learn),
otherwise loky. A string names a joblib backend: ``"loky"`` (processes, the
default), ``"threading"``, or any backend registered with
:func:`joblib.register_parallel_backend`.
"""

import os
from contextlib import contextmanager
from functools import partial

import joblib
from joblib.parallel import BACKENDS, get_active_backend
from threadpoolctl import ThreadpoolController

#: Engines that need an optional extra, with the extra that installs them.
OPTIONAL_ENGINES = {"dask": "dask", "ipyparallel": "ipyparallel"}

#: Backends whose workers are separate processes on this machine.
_PROCESS_BACKENDS = ("loky", "multiprocessing")


def valid_backends():
    """Names accepted by ``backend=``, sorted."""
    return sorted(set(BACKENDS) | set(OPTIONAL_ENGINES))


def check_backend(backend):
    """Validate ``backend`` and return it; raise a ValueError listing valid names."""
    if backend is None or backend in BACKENDS:
        return backend
    if isinstance(backend, str) and backend in OPTIONAL_ENGINES:
        extra = OPTIONAL_ENGINES[backend]
        raise ImportError(
            f"backend={backend!r} needs the {backend} engine, which is not "
            f'installed. Install it with: pip install "parml[{extra}]"'
        )
    raise ValueError(
        f"The 'backend' parameter must be None or one of {valid_backends()}; "
        f"got {backend!r}. Use None to follow joblib.parallel_config, 'loky' "
        "for local processes or 'threading' for threads."
    )


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
    """

    def __init__(self, backend=None, n_jobs=None, pre_dispatch="2*n_jobs"):
        self.backend = check_backend(backend)
        self.n_jobs = n_jobs
        self.pre_dispatch = pre_dispatch

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

    def map_unordered(self, func, items):
        """Yield ``func(item)`` for each item, in the order they finish.

        Thread budget: loky workers get ``cpu_count // n_jobs`` BLAS/OpenMP
        threads from joblib itself (it sets ``OMP_NUM_THREADS`` and friends
        when it starts them). Worker threads of this process are limited here,
        inside each thread, since OpenMP limits are per thread.
        """
        if self.uses_threads:
            func = partial(
                _limited, func, ThreadpoolController(), self.inner_threads()
            )
        with self._config():
            parallel = joblib.Parallel(
                n_jobs=self.n_jobs,
                pre_dispatch=self.pre_dispatch,
                return_as="generator_unordered",
            )
            yield from parallel(joblib.delayed(func)(item) for item in items)


def _limited(func, controller, limit, item):
    with controller.limit(limits=limit):
        return func(item)
