"""Pick the transport for a fit: in this process, local processes, or Dask."""

import os

import numpy as np
from joblib.parallel import get_active_backend

from ..scheduler._dask import connect, is_dask_backend
from ..scheduler._engines import check_backend
from ._local import InProcessTransport, LocalTransport

LOCAL = ("loky", "multiprocessing")


def source_kind(X):
    """``"list"`` (shards given), ``"dask"`` (a dask array) or ``"arrays"``."""
    if isinstance(X, (list, tuple)) and X and all(hasattr(x, "shape") for x in X) \
            and all(len(x.shape) == 2 for x in X):
        return "list"
    if type(X).__module__.startswith("dask.array") and hasattr(X, "chunks"):
        return "dask"
    return "arrays"


class _Dask:
    """A Dask target: the client to use, and whether we opened it."""

    def __init__(self, backend):
        self.client, self.owned = connect(backend)

    def close(self):
        """Close the client if this target opened it (once)."""
        if self.owned:
            self.owned = False
            self.client.close()


def resolve_backend(backend, default_dask=False):
    """``"sequential"``, ``"loky"`` or a :class:`_Dask` target for ``backend``."""
    if backend is None:
        active = get_active_backend()[0]
        if type(active).__name__ == "DaskDistributedBackend":
            return _Dask(active.client)
        return _Dask(None) if default_dask else "loky"
    if is_dask_backend(backend):
        return _Dask(check_backend(backend))
    if isinstance(backend, str) and backend in LOCAL:
        return "loky"
    if backend == "sequential":
        return "sequential"
    raise ValueError(
        f"AveragedSGD's backend must be None, 'loky' (local worker processes), "
        f"'sequential' (in this process), 'dask', a Dask scheduler address or a "
        f"distributed.Client; got {backend!r}.")


def default_workers(backend):
    """Workers when ``n_workers=None``: the cores, or the Dask workers."""
    if isinstance(backend, _Dask):
        return max(1, len(backend.client.scheduler_info()["workers"]))
    return os.cpu_count() or 1


class _Closing:
    """A transport that also closes a Dask client it opened."""

    def __init__(self, transport, target):
        self.transport, self.target = transport, target

    def __getattr__(self, name):
        return getattr(self.transport, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.transport.close()
        finally:
            self.target.close()


def rows_transport(backend, X, y, rows, program, in_process=False, fanout=2):
    """The transport for shards ``X[rows[i]]`` of in-memory arrays."""
    if isinstance(backend, _Dask):
        from ._dask import DaskTransport

        transport = DaskTransport.scatter_rows(backend.client, X, y, rows, program, fanout)
        return _Closing(transport, backend)
    if in_process or backend == "sequential" or len(rows) == 1:
        return InProcessTransport.from_rows(X, y, rows, program, fanout=fanout)
    return LocalTransport.from_rows(X, y, rows, program, fanout=fanout)


def shards_transport(backend, source, shards, is_classifier, fanout=2):
    """``(open(program), shard sizes, classes)`` for shards given by the user."""
    from ._dask import DaskTransport, dask_shards  # light: imports Dask lazily

    if source == "list":
        sizes = [len(y) for _, y in shards]
        classes = np.unique(np.concatenate([np.unique(y) for _, y in shards])) \
            if is_classifier else None
        if isinstance(backend, _Dask):
            client = backend.client
            workers = sorted(client.scheduler_info()["workers"])
            futures = [(client.scatter(X, workers=[workers[i % len(workers)]], hash=False),
                        client.scatter(y, workers=[workers[i % len(workers)]], hash=False))
                       for i, (X, y) in enumerate(shards)]
            return (lambda program: _Closing(DaskTransport(client, futures, program, fanout),
                                             backend), sizes, classes)
        if backend == "sequential" or len(shards) == 1:
            return (lambda program: InProcessTransport(shards, program, fanout),
                    sizes, classes)
        return lambda program: LocalTransport(shards, program, fanout), sizes, classes
    # a dask array: its row blocks, computed (or found) on the workers

    if not isinstance(backend, _Dask):
        raise ValueError("A dask array X needs a Dask backend: backend=None with a "
                         "running client, 'dask', an address or a Client.")
    X, y = shards
    futures, summaries = dask_shards(backend.client, X, y)
    sizes = [n for n, _ in summaries]
    classes = None
    if is_classifier:
        classes = np.unique(np.concatenate([labels for _, labels in summaries]))
        for i, (_, labels) in enumerate(summaries):
            missing = np.setdiff1d(classes, labels)
            if len(missing):
                raise ValueError(
                    f"Block {i} of the dask array has no sample of class(es) "
                    f"{missing.tolist()}; every shard must see every class. Shuffle the "
                    "rows before chunking, or rechunk into fewer, larger blocks.")
    return (lambda program: _Closing(DaskTransport(backend.client, futures, program, fanout),
                                     backend), sizes, classes)
