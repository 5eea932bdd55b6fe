"""AllReduce on a Dask cluster: the reduce steps are tasks on the workers.

Shards are futures that live on workers. Each epoch plans, per node of the
spanning tree:

- a *step* task pinned to the worker holding the node's shard (it runs the
  program's step from the node's copy of the last average);
- a *reduce* task pinned to the same worker, which receives the pairs of the
  node's children (Dask moves them worker to worker) and adds them to its own;
- at the root, an *average* task; then, going down, a *relay* task per node
  pinned to its worker, which takes the average from its parent's copy.

The client only receives the summed extras of each round (a few numbers) and
the average once, at the end: ``O(parameter size)``, whatever the number of
workers. Every reduce task measures the bytes of what it received.
"""

import os
import pickle

import numpy as np

from .._optional import import_optional
from . import _tree

#: Node states (the program's ``open``), kept on the worker across epochs.
_STATES = {}


def _distributed():
    return import_optional("distributed", extra="dask", purpose="AllReduce on Dask")


def _limits():
    from threadpoolctl import threadpool_limits

    try:
        nthreads = _distributed().get_worker().state.nthreads
    except (ValueError, AttributeError):
        nthreads = 1
    return threadpool_limits(limits=max(1, (os.cpu_count() or 1) // nthreads))


def _step(program, run_id, rank, X, y, params, epoch):
    with _limits():
        state = _STATES.get((run_id, rank))
        if state is None:
            state = _STATES[(run_id, rank)] = program.open(X, y, rank)
        value, weight, extras = program.step(state, params, epoch)
        return _tree.weighted(value, weight), extras


def _reduce(own, kids):
    pair = _tree.combine(own[0], *(kid[0][0] for kid in kids))
    extras = own[1]
    for kid in kids:
        extras = _tree.tree_map(np.add, extras, kid[0][1])
    received = sum(len(pickle.dumps(kid[0], protocol=5)) for kid in kids)
    return (pair, extras), received


def _average(total):
    return _tree.average(total[0][0])


def _extras(total):
    return total[0][1]


def _received(total):
    return total[1]


def _relay(params):
    return params


def _drop_states(run_id):
    for key in [k for k in _STATES if k[0] == run_id]:
        del _STATES[key]


def _shard_summary(y):
    y = np.asarray(y)
    return len(y), np.unique(y)


def _value_reduce(own, kids):
    """Reduce step of :func:`allreduce_futures` (values, no program)."""
    pair = _tree.combine(own, *(kid[0] for kid in kids))
    return pair, sum(len(pickle.dumps(kid[0], protocol=5)) for kid in kids)


def _weighted(value, weight):
    return _tree.weighted(value, weight)


def _pair_average(total):
    return _tree.average(total[0])


def locations(client, futures):
    """The address of a worker holding each future (waits for them)."""
    _distributed().wait(futures)
    who = client.who_has(futures)
    return [sorted(who[f.key])[0] for f in futures]


def allreduce_futures(client, futures, weights=None, fanout=2):
    """AllReduce of values held as futures on workers; see :func:`parml.allreduce`.

    Returns one future per node, on that node's worker, holding the average,
    and a future of the bytes each node's reduce task received.
    """
    n = len(futures)
    weights = [1.0] * n if weights is None else list(weights)
    addrs = locations(client, futures)
    pin = {"allow_other_workers": False, "pure": False}
    own = [client.submit(_weighted, f, w, workers=[a], **pin)
           for f, w, a in zip(futures, weights, addrs)]
    reduced = [None] * n
    for rank in reversed(range(n)):
        kids = [reduced[k] for k in _tree.children(rank, n, fanout)]
        reduced[rank] = client.submit(_value_reduce, own[rank], kids,
                                      workers=[addrs[rank]], **pin)
    down = [client.submit(_pair_average, reduced[0], workers=[addrs[0]], **pin)]
    for rank in range(1, n):
        down.append(client.submit(_relay, down[_tree.parent(rank, fanout)],
                                  workers=[addrs[rank]], **pin))
    received = [client.submit(_received, r, workers=[a], **pin)
                for r, a in zip(reduced, addrs)]
    return down, received


class DaskTransport:
    """Epochs of a program over shards held on Dask workers.

    Parameters
    ----------
    client : distributed.Client
    shards : list of (future, future)
        ``(X, y)`` of each node, as futures on the workers.
    program : object
        As for :class:`parml.allreduce._local.LocalTransport`.
    fanout : int, default=2
    """

    def __init__(self, client, shards, program, fanout=2):
        self.client = client
        self.n_nodes = len(shards)
        self.fanout = fanout
        self.client_bytes = []
        self._shards = shards
        self._program = client.scatter(program, broadcast=True, hash=False)
        self._run_id = os.urandom(6).hex()
        self._addrs = locations(client, [s[0] for s in shards])
        self._params = [None] * self.n_nodes
        self._average = None
        self._received = []

    @classmethod
    def scatter_rows(cls, client, X, y, rows, program, fanout=2):
        """Send ``X[rows[i]], y[rows[i]]`` to the workers, round robin, once."""
        workers = sorted(client.scheduler_info()["workers"])
        shards = []
        for i, r in enumerate(rows):
            where = [workers[i % len(workers)]]
            shards.append((client.scatter(X[r], workers=where, hash=False),
                           client.scatter(y[r], workers=where, hash=False)))
        return cls(client, shards, program, fanout=fanout)

    def shard_summaries(self):
        """``(n_samples, unique labels)`` of each shard, computed where it lives."""
        futures = [self.client.submit(_shard_summary, y, workers=[a], pure=False)
                   for (_, y), a in zip(self._shards, self._addrs)]
        return self.client.gather(futures)

    def epoch(self, epoch):
        n, client = self.n_nodes, self.client
        pin = {"allow_other_workers": False, "pure": False}
        own = [client.submit(_step, self._program, self._run_id, rank, X, y,
                             self._params[rank], epoch, workers=[self._addrs[rank]], **pin)
               for rank, (X, y) in enumerate(self._shards)]
        reduced = [None] * n
        for rank in reversed(range(n)):
            kids = [reduced[k] for k in _tree.children(rank, n, self.fanout)]
            reduced[rank] = client.submit(_reduce, own[rank], kids,
                                          workers=[self._addrs[rank]], **pin)
        root = self._addrs[0]
        down = [client.submit(_average, reduced[0], workers=[root], **pin)]
        for rank in range(1, n):
            down.append(client.submit(_relay, down[_tree.parent(rank, self.fanout)],
                                      workers=[self._addrs[rank]], **pin))
        self._received.append([client.submit(_received, r, workers=[a], **pin)
                               for r, a in zip(reduced, self._addrs)])
        extras = client.submit(_extras, reduced[0], workers=[root], **pin).result()
        self.client_bytes.append(len(pickle.dumps(extras, protocol=5)))
        self._params, self._average = down, down[0]
        return extras

    def result(self):
        """The last average, fetched from the root's worker."""
        value = self._average.result()
        self.client_bytes[-1] += len(pickle.dumps(value, protocol=5))
        return value

    def traffic(self):
        """Bytes each node's reduce task received: ``{rank: [{"epoch", "up", "down"}]}``."""
        rows = self.client.gather(self._received)
        return {rank: [{"epoch": e, "up": row[rank]} for e, row in enumerate(rows)]
                for rank in range(self.n_nodes)}

    def close(self):
        try:
            self.client.run(_drop_states, self._run_id)
        except Exception:  # the cluster may be gone already
            pass
        self._params, self._average, self._received = [], None, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dask_shards(client, X, y):
    """Row blocks of dask arrays as futures on the workers, and their summaries.

    Blocks already persisted stay where they are; others are computed on the
    workers. Returns ``[(X_block, y_block)]`` futures and ``(n_rows, labels)``
    per block (computed where the block lives).
    """
    import dask.array as da

    X = X.astype(np.float64)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if not isinstance(y, da.Array):
        y = da.from_array(np.asarray(y), chunks=(X.chunks[0],))
    if y.chunks[0] != X.chunks[0]:
        y = y.rechunk({0: X.chunks[0]})
    xs = client.compute(list(X.to_delayed().ravel()))
    ys = client.compute(list(y.to_delayed().ravel()))
    addrs = locations(client, xs)
    summaries = client.gather([client.submit(_shard_summary, f, workers=[a], pure=False)
                               for f, a in zip(ys, addrs)])
    return list(zip(xs, ys)), summaries
