"""What every transport of AllReduce shares: the per-node steps, and the rounds' contract.

The steps are the only code that runs on workers for the call-style
transports (:mod:`._graph`, :mod:`._rounds`); they call the arithmetic of
:mod:`._tree` in the same order as the node loop of :mod:`._spmd`, so every
transport gives the same result bit for bit.
"""

import pickle
import traceback

import numpy as np

from . import _tree


def reduce_pairs(own, kids):
    """Add a node's ``(pair, extras)`` and its children's, in child order."""
    pair = _tree.combine(own[0], *(kid[0] for kid in kids))
    extras = own[1]
    for kid in kids:
        extras = _tree.tree_map(np.add, extras, kid[1])
    return pair, extras


def error_message(rank, exc):
    """What a node sends instead of its pair when its program raised."""
    return ("error", rank, exc, traceback.format_exc())


def raise_node_error(reply):
    """Raise the error a node sent up (``("error", rank, exc, traceback)``)."""
    _, rank, exc, text = reply
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised in AllReduce node {rank}; its traceback:\n{text})")
    raise exc


def open_state(program, X, y, rank):
    """On a worker: node ``rank``'s state (kept there between epochs)."""
    return program.open(X, y, rank)


def step_pair(program, state, params, epoch):
    """On a worker: one epoch of the node, as ``(weighted pair, extras)``."""
    value, weight, extras = program.step(state, params, epoch)
    return _tree.weighted(value, weight), extras


def reduce_received(own, kids):
    """On a worker: add the children's ``(pair, extras)`` to the node's; bytes received."""
    received = sum(len(pickle.dumps(kid[0], protocol=5)) for kid in kids)
    return reduce_pairs(own, [kid[0] for kid in kids]), received


def average_of(total):
    return _tree.average(total[0][0])


def extras_of(total):
    return total[0][1]


def received_of(total):
    return total[1]


def relay(params):
    return params


class Rounds:
    """The contract of the rounds of every transport.

    ``epoch(e) -> extras`` runs epoch ``e`` on every node and averages the
    parameters; ``result()`` is the last average; ``close()`` ends the
    nodes, and the worker group can run other rounds. Leaving a ``with``
    block on an error still ends the nodes when it can (a node's Python
    error leaves them waiting for the next command), quietly: the error being
    raised says more. On Ctrl-C it does not wait for them: closing the worker
    group stops them.
    """

    def close(self):
        """End the nodes (their state goes when the worker group closes)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, Exception):
            try:
                self.close()
            except Exception:  # a node died: the group's close stops the others
                pass
