"""The arithmetic of AllReduce, apart from any transport.

A *spanning tree* over ``n`` nodes numbered ``0 .. n-1`` with fan-out ``f``:
node 0 is the root, node ``r``'s parent is ``(r - 1) // f`` and its children
are ``f*r + 1 .. f*r + f`` (those below ``n``). Children always have larger
numbers than their parent, so visiting nodes from ``n-1`` down to ``0`` is a
valid bottom-up order.

What moves up the tree is a *pair* ``(weighted sum, weight)``: a node holding
value ``x`` with weight ``w`` starts from ``(w * x, w)``, adds its children's
pairs (in child order), and sends the total to its parent. The root's pair
divided by its weight is the weighted average of all nodes, which then flows
back down. Values are arrays, Python numbers, or tuples / lists / dicts of
them (for instance ``{"coef": coef, "intercept": intercept}``).

Every transport calls :func:`weighted`, :func:`combine` and :func:`average`
in the same order, so the result is bit-for-bit the same on all of them and
never depends on which node finished first.
"""

import numbers

import numpy as np

__all__ = [
    "average",
    "children",
    "combine",
    "nbytes",
    "parent",
    "spanning_tree",
    "tree_allreduce",
    "tree_map",
    "weighted",
]


def _check(n_nodes, fanout):
    if not isinstance(n_nodes, numbers.Integral) or n_nodes < 1:
        raise ValueError(f"n_nodes must be an integer >= 1; got {n_nodes!r}.")
    if not isinstance(fanout, numbers.Integral) or fanout < 1:
        raise ValueError(f"fanout must be an integer >= 1; got {fanout!r}.")


def parent(rank, fanout=2):
    """The parent of node ``rank``, or ``None`` for the root (node 0)."""
    return None if rank == 0 else (rank - 1) // fanout


def children(rank, n_nodes, fanout=2):
    """The children of node ``rank`` in a tree of ``n_nodes``, in order."""
    first = fanout * rank + 1
    return list(range(first, min(first + fanout, n_nodes)))


def spanning_tree(n_nodes, fanout=2):
    """The spanning tree over ``n_nodes`` nodes.

    Parameters
    ----------
    n_nodes : int
        Number of nodes (workers), at least 1.
    fanout : int, default=2
        Maximum number of children per node (2: a binary tree).

    Returns
    -------
    tree : list of (parent, children)
        ``tree[r]`` is ``(parent, [children...])`` of node ``r``; the root's
        parent is ``None``.

    Examples
    --------
    >>> from parml.allreduce import spanning_tree
    >>> spanning_tree(6, fanout=2)
    [(None, [1, 2]), (0, [3, 4]), (0, [5]), (1, []), (1, []), (2, [])]
    """
    _check(n_nodes, fanout)
    return [(parent(r, fanout), children(r, n_nodes, fanout)) for r in range(n_nodes)]


def tree_map(fn, *trees):
    """Apply ``fn`` leaf-wise to arrays / numbers nested in tuples, lists, dicts."""
    first = trees[0]
    if isinstance(first, dict):
        return {key: tree_map(fn, *(t[key] for t in trees)) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(tree_map(fn, *parts) for parts in zip(*trees))
    return fn(*trees)


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


def nbytes(tree):
    """Bytes of the array data in ``tree`` (numbers count 8)."""
    return int(sum(np.asarray(leaf).nbytes for leaf in _leaves(tree)))


def weighted(value, weight):
    """The pair ``(weight * value, weight)`` a node starts its reduce from."""
    weight = float(weight)
    return tree_map(lambda leaf: np.multiply(leaf, weight), value), weight


def combine(*pairs):
    """Add ``(weighted sum, weight)`` pairs, left to right."""
    if not pairs:
        raise ValueError("combine needs at least one pair.")
    total, weight = pairs[0]
    for other_total, other_weight in pairs[1:]:
        total = tree_map(np.add, total, other_total)
        weight = weight + other_weight
    return total, weight


def average(pair):
    """The weighted average held by a pair: its sum divided by its weight."""
    total, weight = pair
    if weight <= 0:
        raise ValueError(f"The total weight must be positive; got {weight!r}.")
    return tree_map(lambda leaf: np.divide(leaf, weight), total)


def tree_allreduce(values, weights=None, *, fanout=2):
    """Run the tree reduce in this process; return the average and traffic.

    The reference every transport must match: node ``r`` holds
    ``values[r]`` with weight ``weights[r]``; the reduce goes up the spanning
    tree and the average comes back down.

    Parameters
    ----------
    values : list
        One value per node (array, number, or tuple / list / dict of them).
    weights : list of float, default=None
        One positive weight per node (e.g. shard sizes); ``None``: all 1.
    fanout : int, default=2
        Maximum children per node.

    Returns
    -------
    result : same structure as ``values[0]``
        The weighted average.
    received : list of dict
        Per node, the bytes it received going up (``"up"``: its children's
        pairs) and coming down (``"down"``: the average from its parent).
    """
    n_nodes = len(values)
    _check(n_nodes, fanout)
    weights = [1.0] * n_nodes if weights is None else list(weights)
    if len(weights) != n_nodes:
        raise ValueError(f"Got {n_nodes} values but {len(weights)} weights.")
    pairs = [None] * n_nodes
    received = [{"up": 0, "down": 0} for _ in range(n_nodes)]
    for rank in reversed(range(n_nodes)):
        kids = children(rank, n_nodes, fanout)
        pairs[rank] = combine(weighted(values[rank], weights[rank]),
                              *(pairs[k] for k in kids))
        received[rank]["up"] = sum(nbytes(pairs[k][0]) + 8 for k in kids)
    result = average(pairs[0])
    for rank in range(1, n_nodes):
        received[rank]["down"] = nbytes(result)
    return result, received
