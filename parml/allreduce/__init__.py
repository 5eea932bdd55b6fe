"""AllReduce: the weighted average of values held by many workers, over a tree.

Each worker (node) holds a value and a weight. A spanning tree joins the
nodes (fan-out 2 by default); each node sends its parent the
``(weighted sum, weight)`` of its subtree, the root divides, and the average
flows back down, so every node ends with it. No node receives more than
``fanout`` pairs going up and one average coming down per round, however
many nodes there are: the root is never flooded.

The arithmetic (:func:`spanning_tree`, :func:`weighted`, :func:`combine`,
:func:`average`) is kept apart from the transports that move the pairs. The
workers are a *worker group* of the scheduler's engine
(:meth:`parml.scheduler.Scheduler.worker_group`): local threads or the loky
processes the searches use, joined by connections; Dask workers, the pairs
moved worker to worker by tasks; ipyparallel engines, the pairs added in the
client. All of them add the same pairs in the same order, so the result does
not depend on the transport or on which worker finished first.
"""

from ._tree import average, children, combine, parent, spanning_tree, weighted

__all__ = [
    "allreduce",
    "average",
    "children",
    "combine",
    "parent",
    "spanning_tree",
    "weighted",
]


def allreduce(values, weights=None, *, fanout=2, client=None):
    """Weighted average of per-worker values, reduced over a spanning tree.

    Parameters
    ----------
    values : list
        One value per node: a numpy array, a number, or a tuple / list / dict
        of them (e.g. ``(coef, intercept)``); all with the same structure and
        shapes. On a Dask cluster, a list of ``distributed.Future``, each
        living on the worker of its node.
    weights : list of float, default=None
        One positive weight per node, e.g. the number of samples behind each
        value. ``None`` weighs every node 1 (a plain mean).
    fanout : int, default=2
        Maximum children per node of the tree: 2 is a binary tree. A node
        receives at most ``fanout`` partial sums per round.
    client : distributed.Client, default=None
        With futures as ``values``: the client of their cluster (default:
        the current client). The reduce steps run as tasks on the workers
        holding the values (a worker group of the scheduler's Dask engine),
        so values move worker to worker, never through the client.

    Returns
    -------
    average : same structure as ``values[0]``, or list of Future
        The weighted average. With futures: one future per node, on that
        node's worker, each holding the average (the "all" of AllReduce).

    See Also
    --------
    parml.AveragedSGD : averages linear models with it after every epoch.

    Examples
    --------
    Six nodes, each holding a value with a weight of one (the slides' example):

    >>> import numpy as np
    >>> from parml import allreduce
    >>> round(float(allreduce([2.0, 0.5, 1.1, 3.2, 0.9, 1.0])), 4)
    1.45

    Weighted by counts, on a tuple of arrays:

    >>> coef, intercept = allreduce([(np.array([1.0, 0.0]), 1.0),
    ...                              (np.array([0.0, 1.0]), 4.0)], weights=[3, 1])
    >>> coef, float(intercept)
    (array([0.75, 0.25]), 1.75)
    """
    values = list(values)
    if not values:
        raise ValueError("allreduce needs at least one value.")
    if _are_futures(values):
        return _allreduce_futures(values, weights, fanout, client)
    from ._tree import tree_allreduce

    return tree_allreduce(values, weights, fanout=fanout)[0]


def _are_futures(values):
    return all(type(v).__name__ == "Future" and hasattr(v, "key") for v in values)


def _allreduce_futures(futures, weights, fanout, client):
    """The tree of reduce tasks on the workers holding ``futures`` (a Dask worker group)."""
    from ..scheduler import Scheduler
    from ._graph import allreduce_futures

    with Scheduler(backend="dask" if client is None else client) as scheduler:
        with scheduler.worker_group(len(futures)) as group:
            return allreduce_futures(group, group.adopt(futures), weights, fanout)[0]
