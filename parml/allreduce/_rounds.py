"""Epochs of a program on a worker group, the parameters allreduced after each.

:func:`open_rounds` picks how the pairs travel from what the group can do:

- members joined by connections (local threads and processes,
  ``group.spmd``): the node loops of :mod:`._spmd`, pairs neighbour to
  neighbour;
- calls whose results the engine moves between workers (Dask,
  ``group.moves_values``): the task graph of :mod:`._graph`, pairs worker to
  worker;
- other call-style groups (ipyparallel, and the inline group of this
  process): :class:`GatheredRounds`, each node's step on its worker, its pair
  brought to this process and added here, in the tree's order.

All three add the same pairs in the same order (:mod:`._steps`), so the
result is the same bit for bit whatever the group.
"""

from . import _tree
from ._graph import GraphRounds
from ._spmd import SpmdRounds
from ._steps import Rounds, open_state, reduce_pairs, step_pair


def open_rounds(group, shards, program, fanout=2):
    """The rounds of ``program`` over ``group``'s members, one node per rank.

    Parameters
    ----------
    group : WorkerGroup
        From :meth:`parml.scheduler.Scheduler.worker_group`.
    shards : list of tuple
        Per rank, the ``(X, y)`` handles the group placed.
    program : object
        ``open(X, y, rank) -> state`` (once per node, on its worker) and
        ``step(state, params, epoch) -> (value, weight, extras)`` (``params``
        is None at the first epoch, then the last average; ``extras`` a dict
        of numbers, summed over the nodes).
    fanout : int, default=2
        Children per node of the spanning tree.

    Returns
    -------
    rounds : Rounds
        ``epoch(e) -> extras``, ``result()``, ``close()``; a context manager.
    """
    if len(shards) != group.n_workers:
        raise ValueError(f"Got {len(shards)} shards for a group of {group.n_workers}.")
    if group.spmd:
        return SpmdRounds(group, shards, program, fanout)
    if group.moves_values:
        return GraphRounds(group, shards, program, fanout)
    return GatheredRounds(group, shards, program, fanout)


class GatheredRounds(Rounds):
    """Each node's step on its worker; its pair added here, in the tree's order.

    Each node's shard and state stay with it (its engine's namespace, or this
    process for the inline group); per epoch this process sends every node
    the last average and receives every node's ``(weighted sum, weight)``
    pair: ``n_nodes`` pairs per round, what a transport that cannot move
    values between workers allows.
    """

    def __init__(self, group, shards, program, fanout=2):
        self.group = group
        self.n_nodes = group.n_workers
        self.fanout = fanout
        self.client_bytes = []
        self._program = program
        self._states = [group.keep(rank, open_state, program, *shard, rank)
                        for rank, shard in enumerate(shards)]
        self._params = None

    def epoch(self, epoch):
        """Run one epoch on every node and allreduce; return the summed extras."""
        group = self.group
        steps = group.gather([group.submit(rank, step_pair, self._program, state,
                                           self._params, epoch)
                              for rank, state in enumerate(self._states)])
        totals = [None] * self.n_nodes
        for rank in reversed(range(self.n_nodes)):
            kids = [totals[k] for k in _tree.children(rank, self.n_nodes, self.fanout)]
            totals[rank] = reduce_pairs(steps[rank], kids)
        self._params = _tree.average(totals[0][0])
        return totals[0][1]

    def result(self):
        """The average of the last round."""
        return self._params

    def close(self):
        self._states = []
