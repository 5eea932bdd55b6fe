"""AllReduce as tasks on a worker group that moves values worker to worker (Dask).

Each node's shard and state stay on the node's worker (the group placed the
shard; the state is a task result the group keeps). Each epoch plans, per
node of the spanning tree:

- a *step* task on the node's worker (the program's step from the node's
  copy of the last average);
- a *reduce* task on the same worker, which receives the pairs of the node's
  children (the engine moves them worker to worker) and adds them to its own;
- at the root, an *average* task; then, going down, a *relay* task per node
  on its worker, which takes the average from its parent's copy.

This process only receives the summed extras of each round (a few numbers)
and the average once, at the end: ``O(parameter size)``, whatever the number
of workers. Every reduce task measures the bytes of what it received.
"""

import pickle

from . import _tree
from ._steps import (
    Rounds,
    average_of,
    extras_of,
    open_state,
    received_of,
    reduce_received,
    relay,
    step_pair,
)


def _weighted(value, weight):
    return _tree.weighted(value, weight), {}


def _tree_round(group, own, fanout):
    """Reduce handles ``own`` (one ``(pair, extras)`` per node) up the tree, then down.

    Returns the reduce handles (one per node: ``((pair, extras), bytes)``) and
    the average's handles going down (one per node, on its worker).
    """
    n = group.n_workers
    reduced = [None] * n
    for rank in reversed(range(n)):
        kids = [reduced[k] for k in _tree.children(rank, n, fanout)]
        reduced[rank] = group.submit(rank, reduce_received, own[rank], kids)
    down = [group.submit(0, average_of, reduced[0])]
    for rank in range(1, n):
        down.append(group.submit(rank, relay, down[_tree.parent(rank, fanout)]))
    return reduced, down


def allreduce_futures(group, handles, weights=None, fanout=2):
    """AllReduce of values held on a group's workers; see :func:`parml.allreduce`.

    Returns one handle per node, on that node's worker, holding the average,
    and one handle per node of the bytes its reduce task received.
    """
    n = len(handles)
    weights = [1.0] * n if weights is None else list(weights)
    if len(weights) != n:
        raise ValueError(f"Got {n} values but {len(weights)} weights.")
    own = [group.submit(rank, _weighted, h, w)
           for rank, (h, w) in enumerate(zip(handles, weights))]
    reduced, down = _tree_round(group, own, fanout)
    received = [group.submit(rank, received_of, r) for rank, r in enumerate(reduced)]
    return down, received


class GraphRounds(Rounds):
    """Epochs of a program as tasks on a group's workers (see the module docstring).

    Parameters
    ----------
    group : WorkerGroup
        With ``moves_values`` (Dask).
    shards : list of tuple
        ``(X, y)`` handles of each node, on its worker.
    program : object
        As for :class:`~._spmd.SpmdRounds`.
    fanout : int, default=2
    """

    def __init__(self, group, shards, program, fanout=2):
        self.group = group
        self.n_nodes = group.n_workers
        self.fanout = fanout
        self.client_bytes = []
        self._program = program
        self._states = [group.keep(rank, open_state, program, *shard, rank)
                        for rank, shard in enumerate(shards)]
        self._params = [None] * self.n_nodes
        self._average = None
        self._received = []

    def epoch(self, epoch):
        """Run one epoch on every node and allreduce; return the summed extras."""
        group = self.group
        own = [group.submit(rank, step_pair, self._program, state, self._params[rank], epoch)
               for rank, state in enumerate(self._states)]
        reduced, down = _tree_round(group, own, self.fanout)
        self._received.append([group.submit(rank, received_of, r)
                               for rank, r in enumerate(reduced)])
        extras = group.gather([group.submit(0, extras_of, reduced[0])])[0]
        self.client_bytes.append(len(pickle.dumps(extras, protocol=5)))
        self._params, self._average = down, down[0]
        return extras

    def result(self):
        """The last average, fetched from the root's worker."""
        value = self.group.gather([self._average])[0]
        self.client_bytes[-1] += len(pickle.dumps(value, protocol=5))
        return value

    def traffic(self):
        """Bytes each node's reduce task received: ``{rank: [{"epoch", "up"}]}``."""
        rows = [self.group.gather(row) for row in self._received]
        return {rank: [{"epoch": e, "up": row[rank]} for e, row in enumerate(rows)]
                for rank in range(self.n_nodes)}

    def close(self):
        self._params, self._average, self._received = [], None, []
