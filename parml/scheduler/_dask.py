"""The Dask engine: tasks on a ``distributed`` cluster (``pip install "parml[dask]"``).

Data reaches every worker once per run (as the result of a task, which Dask
can recompute if its workers die); tasks carry the futures, which each worker
resolves from its own memory. After a first few tasks, all are submitted at
once, so the Dask scheduler keeps every worker of a large cluster busy, and
tiny tasks are sent in batches, so they do not each pay Dask's overhead;
results stream back as they finish. Worker deaths, stragglers, ``timeout=``
and a cluster left without workers are handled by :mod:`._dask_run`; a
Python error raised by a task is never retried. Stopping early (an error,
Ctrl-C) cancels the remote tasks.
"""

import os

from .._optional import import_optional
from ._dask_rerun import note_start
from ._batching import AllSingles
from ._dask_run import DaskRun
from ._engine_base import Placeholder, RemoteEngine, resolve, run_unit
from ._worker_state import release

#: Seconds to wait for a cluster that has no worker before giving up.
WORKER_TIMEOUT = 30.0


def _distributed():
    return import_optional("distributed", extra="dask", purpose="The Dask engine")


def is_dask_backend(backend):
    """Whether ``backend`` names the Dask engine (without importing Dask needlessly).

    Parameters
    ----------
    backend : str or object
        A ``backend=`` value: ``"dask"``, a scheduler address, a
        ``distributed.Client``, or anything else.

    Returns
    -------
    bool
    """
    if isinstance(backend, str):
        return backend == "dask" or "://" in backend
    module = type(backend).__module__ or ""
    return module.startswith("distributed") and type(backend).__name__ == "Client"


def connect(backend):
    """``(client, owned)`` for a Dask ``backend``: an address connects a new client
    (owned: close it after), ``"dask"`` or None the current one, a Client itself."""
    distributed = _distributed()
    if isinstance(backend, str) and "://" in backend:
        return distributed.Client(backend), True
    if backend is None or isinstance(backend, str):
        try:
            return distributed.get_client(), False
        except ValueError as exc:
            raise ValueError(
                "backend='dask' needs a running Dask client. Start one first: "
                "from distributed import Client; client = Client()  # or "
                "Client('tcp://scheduler:8786'); or pass backend=client."
            ) from exc
    return backend, False


class DaskEngine(RemoteEngine):
    """Runs tasks on a Dask ``distributed`` cluster.

    Parameters
    ----------
    backend : "dask", str address or distributed.Client
        ``"dask"`` uses the current client (``distributed.get_client()``); an
        address such as ``"tcp://host:8786"`` connects a client for the run
        (and closes it after); a live ``Client`` is used as is.
    n_jobs : int or None
        Ignored: the cluster's workers decide the parallelism.
    pre_dispatch : ignored
        All tasks are submitted at once; Dask schedules them.
    """

    #: With ``timeout=``, every task goes alone and all at once (Dask queues them).
    timeout_units = AllSingles

    def __init__(self, backend="dask", n_jobs=None, pre_dispatch=None):
        self.client, self._owned = connect(backend)
        self.max_retries = 2
        self.timeout = None
        self._shared = []
        self._originals = []
        self._placed = []  # collections persisted by place()
        self._wait_for_workers()

    def _wait_for_workers(self):
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        except Exception as exc:  # distributed raises TimeoutError
            raise RuntimeError(
                f"The Dask cluster at {self.client.scheduler.address} has no worker "
                f"after {WORKER_TIMEOUT:g} s. Start workers with: dask worker "
                f"{self.client.scheduler.address}"
            ) from exc

    @property
    def n_workers(self):
        """Threads of all workers: how many tasks run at once."""
        return sum(self.client.nthreads().values()) or 1

    def worker_ids(self):
        """Addresses of the cluster's workers, usable as ``Task.where``."""
        return sorted(self.client.nthreads())

    def share(self, data):
        """Scatter the values of ``data`` (a dict) to every worker, once.

        Returns a dict of placeholders that tasks carry; each worker resolves
        them from its own memory.
        """
        if not isinstance(data, dict):
            data = {"data": data}
        self._originals.append(data)
        self._shared.append(self._scatter(data))
        return {key: Placeholder(len(self._shared) - 1, key) for key in data}

    def share_again(self, workers):
        """Share every value again, made on one of ``workers`` (then fetched from there).

        For when the only copy may be on a worker that no longer answers:
        units submitted after this read the new copies.
        """
        for index, futures in enumerate(self._shared):
            fresh = self._scatter(self._originals[index], workers=workers)
            futures.update(fresh)

    def _scatter(self, data, workers=None):
        # Not client.scatter: scattered data lives only on workers, so workers
        # that die take it with them. As the result of a task, Dask can make it
        # again on another worker; it then reaches each worker once, on demand.
        where = {}
        if workers is not None:
            where = {"workers": list(workers), "allow_other_workers": True}
        futures = {
            key: value if isinstance(value, (int, float, str, type(None)))
            else self.client.submit(_identity, value, pure=False,
                                    key=f"parml-data-{key}-{os.urandom(4).hex()}", **where)
            for key, value in data.items()
        }
        return futures

    def refresh_shared(self):
        """Share again the values whose task Dask gave up on (erred or cancelled).

        Values lost with their workers are made again by Dask itself: they are
        task results. Units sent after this use the new copies.
        """
        for index, futures in enumerate(self._shared):
            for key, future in futures.items():
                if getattr(future, "status", "finished") in ("error", "cancelled"):
                    futures[key] = self._scatter({key: self._originals[index][key]})[key]

    def _with_futures(self, value):
        """``value`` with placeholders swapped for their futures (in dicts, lists)."""
        return resolve(value, lambda shared: self._shared[shared.slot][shared.name])

    def submit_unit(self, func, unit, name, topic, workers=None):
        """Submit a unit: one task, or a batch of tasks run one after the other.

        ``workers`` restricts where it may run (addresses); the unit announces
        its start on the worker under ``topic`` (see :mod:`._dask_run`).
        """
        where = {}
        if workers is not None:
            where = {"workers": list(workers), "allow_other_workers": False}
        # Dask resolves futures inside dicts and lists of a task's arguments,
        # so the kwargs travel as arguments of their own.
        bares = [type(t)(key=t.key, func=t.func, cache_key=t.cache_key) for t in unit]
        kwargs = [self._with_futures(t.kwargs) for t in unit]
        if len(unit) == 1:
            return self.client.submit(_run_with_shared, func, bares[0], kwargs[0], topic,
                                      pure=False, key=name, **where)
        return self.client.submit(_run_batch, func, bares, kwargs, topic, pure=False,
                                  key=name, **where)

    def map_unordered(self, func, tasks):
        """Run every task; yield ``func(task)`` results as they finish.

        Dispatch adapts to the tasks' length (:class:`~._batching.Batches`):
        the first tasks go alone, then all the others at once (a large
        cluster is kept busy), tiny ones in batches that spare each Dask's
        few milliseconds of overhead. Tasks pinned with ``Task.where`` always
        go alone. Worker deaths, lost data, stragglers, ``timeout`` and a
        cluster left without workers are handled by :class:`~._dask_run.DaskRun`;
        a task given up on comes back as a :class:`LostTask`.
        """
        yield from DaskRun(self, func, tasks, max_retries=self.max_retries,
                           timeout=self.timeout)

    def place(self, collections):
        """Keep the chunks of dask ``collections`` on the cluster, where Dask puts them.

        Returns, per collection, one ``(handle, worker)`` per chunk in the
        collection's key order: ``handle`` goes in a task's kwargs (the
        worker resolves it from its memory), ``worker`` holds the chunk (a
        ``Task.where``). Chunks are persisted, not moved; the persisted
        collections are kept until :meth:`close`.
        """
        distributed = _distributed()
        persisted = self.client.persist(list(collections))
        distributed.wait(persisted)
        self._placed.extend(persisted)
        placed = []
        for collection in persisted:
            keys = [k[0] if isinstance(k, list) else k for k in collection.__dask_keys__()]
            futures = {f.key: f for f in distributed.futures_of(collection)}
            holders = self.client.who_has([futures[k] for k in keys])
            placed.append([(futures[k], sorted(holders[k])[0]) for k in keys])
        return placed

    def release_state(self, token):
        """Drop the state kept for the fit ``token`` on every worker (not waited for)."""
        _distributed().fire_and_forget([
            self.client.submit(release, token, key=f"release-parml-state-{token}-{i}", pure=False,
                               workers=[worker], allow_other_workers=False)
            for i, worker in enumerate(self.worker_ids())])

    def close(self):
        """Release the scattered data; close the client if this engine opened it."""
        for futures in self._shared:
            scattered = [f for f in futures.values() if hasattr(f, "key")]
            if scattered:
                self.client.cancel(scattered)
        self._shared, self._originals, self._placed = [], [], []
        if self._owned:
            self.client.close()


def _identity(value):
    return value


def _run_batch(func, tasks, kwargs_list, topic):
    """On a worker: run a batch of tasks one after the other; their results, in order.

    BLAS threads are limited once for the batch (:func:`~._engine_base.run_unit`).
    A batch that Dask runs again after its worker died returns a :class:`Rerun`.
    """
    rerun = note_start(topic)
    if rerun is not None:
        return rerun
    prepared = [_with_kwargs(task, kwargs) for task, kwargs in zip(tasks, kwargs_list)]
    return run_unit(func, prepared, _blas_threads())


def _run_with_shared(func, task, kwargs, topic):
    """On a worker: give the task its kwargs (shared data resolved), limit BLAS, run."""
    rerun = note_start(topic)
    if rerun is not None:
        return rerun
    return run_unit(func, [_with_kwargs(task, kwargs)], _blas_threads())[0]


def _with_kwargs(task, kwargs):
    return type(task)(key=task.key, func=task.func, kwargs=kwargs, cache_key=task.cache_key)


def _blas_threads():
    """BLAS threads for one task: the worker's cores shared by its threads."""
    try:
        nthreads = _distributed().get_worker().state.nthreads
    except (ValueError, AttributeError):
        nthreads = 1
    return (os.cpu_count() or 1) // nthreads
