"""AllReduce between the members of a local worker group, joined by a spanning tree.

Every member runs :func:`node_main` for the whole fit: it opens its shard once
(the group placed it: a read-only memory map in a worker process, its own rows
in a thread) and keeps it, with the program's state, until the fit ends.
Connections join tree neighbours only; this process talks to rank 0 alone:

1. this process sends rank 0 a command (``("epoch", e)``); every node
   forwards it to its children, so all nodes start at once;
2. each node runs ``program.step`` on its shard from its current
   parameters, waits for its children's ``(weighted sum, weight)`` pairs,
   adds them to its own (child order fixed) and sends the total up;
3. rank 0 divides by the weight and sends the average down the tree (each
   node keeps it as its parameters for the next epoch) and to this process.

So per round a node receives at most ``fanout`` pairs from below and one
average from above, whatever the number of members; this process receives
one average. Every message is counted in bytes (:meth:`SpmdRounds.traffic`).
"""

from . import _tree
from ._steps import Rounds, error_message, raise_node_error, reduce_pairs


def _own(program, state, failure, params, epoch, rank):
    """This node's ``(pair, extras)`` for ``epoch``, or the error message it sends up."""
    if failure is not None:
        return failure
    try:
        value, weight, extras = program.step(state, params, epoch)
        return _tree.weighted(value, weight), extras
    except Exception as exc:
        return error_message(rank, exc)


def node_main(comm, program, shard, fanout):
    """The loop of one node (see the module docstring); returns when told to stop."""
    rank, n = comm.rank, comm.size
    up = comm.driver_channel() if rank == 0 else comm.channel(_tree.parent(rank, fanout))
    downs = [comm.channel(kid) for kid in _tree.children(rank, n, fanout)]
    state, failure, params, traffic = None, None, None, []
    try:
        state = program.open(*shard, rank)
    except Exception as exc:  # reported at the first epoch
        failure = error_message(rank, exc)
    while True:
        message, down_bytes = up.recv()
        for channel in downs:
            channel.send(message)
        if message[0] == "stop":
            return traffic
        if message[0] == "traffic":
            rows = [(rank, traffic)]
            for channel in downs:
                rows += channel.recv()[0]
            up.send(rows)
            continue
        epoch = message[1]
        own = _own(program, state, failure, params, epoch, rank)
        kids, up_bytes = [], 0
        for channel in downs:
            kid, size = channel.recv()
            kids.append(kid)
            up_bytes += size
        errors = [m for m in [own, *kids] if m[0] == "error"]
        total = errors[0] if errors else reduce_pairs(own, kids)
        if rank == 0:
            average = None if errors else _tree.average(total[0])
            down = ("params", average)
            for channel in downs:
                channel.send(down)
            up.send(total if errors else ("done", average, total[1], up_bytes))
            down_bytes = 0
        else:
            up.send(total)
            down, down_bytes = up.recv()
            for channel in downs:
                channel.send(down)
        if down[1] is not None:
            params = down[1]
        traffic.append({"epoch": epoch, "up": up_bytes, "down": down_bytes})


class SpmdRounds(Rounds):
    """Epochs of ``program`` on a local worker group's members (see the module docstring).

    Parameters
    ----------
    group : LocalGroup
        Its members run the nodes; rank ``r`` is node ``r``.
    shards : list
        Per rank, the handles :meth:`place` or :meth:`place_rows` gave.
    program : object
        ``open(X, y, rank) -> state`` (once per node) and
        ``step(state, params, epoch) -> (value, weight, extras)``.
    fanout : int, default=2
        Children per node of the spanning tree.
    """

    def __init__(self, group, shards, program, fanout=2):
        self.n_nodes = group.n_workers
        self.fanout = fanout
        self.client_bytes = []
        self._last = None
        self._run = group.start(node_main, [(program, tuple(shard), fanout)
                                            for shard in shards])

    def epoch(self, epoch):
        """Run one epoch on every node and allreduce; return the summed extras."""
        self._run.send(("epoch", epoch))
        reply, size = self._run.recv()
        self.client_bytes.append(size)
        if reply[0] == "error":
            raise_node_error(reply)
        self._last = reply[1]
        return reply[2]

    def result(self):
        """The average of the last round."""
        return self._last

    def traffic(self):
        """Bytes each node received per round: ``{rank: [{"epoch", "up", "down"}]}``."""
        self._run.send(("traffic",))
        return dict(self._run.recv()[0])

    def close(self):
        """Tell the nodes to stop; wait (bounded) for them to return."""
        if self._run is not None:
            run, self._run = self._run, None
            run.send(("stop",))
            run.join()
