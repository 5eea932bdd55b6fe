"""The driver's side of a run on a local worker group: talk to rank 0, watch every member."""

import time
from multiprocessing import connection as mpc

from ._group_channels import is_control, recv, send

#: Seconds between liveness checks of the members while the driver waits.
POLL_SECONDS = 0.2
#: Seconds the members have to end a run once its function told them to.
JOIN_TIMEOUT = 30.0
#: Seconds to look for a member that died when another lost its connection to it.
DEAD_SECONDS = 5.0


class Run:
    """A run of a function on every member of a :class:`~._group_local.LocalGroup`.

    ``send`` and ``recv`` talk to rank 0's function; every wait also watches
    the other members, so a member that died or failed ends the wait with its
    error within :data:`POLL_SECONDS`. ``join`` collects what each member's
    function returned.
    """

    def __init__(self, group, run_id, conns):
        self._group, self._run_id, self._conns = group, run_id, list(conns)
        self._returned = {}

    def send(self, obj):
        """Send ``obj`` to rank 0's function; the number of bytes sent."""
        try:
            return send(self._conns[0], obj)
        except OSError:
            raise self._group.died(0) from None

    def recv(self):
        """``(object, bytes)``: the next message of rank 0's function."""
        while True:
            message = self._next()
            if message is not None:
                return message

    def join(self, timeout=JOIN_TIMEOUT):
        """What each member's function returned, by rank, once all have returned."""
        deadline = time.monotonic() + timeout
        while len(self._returned) < len(self._conns):
            if time.monotonic() > deadline:
                missing = sorted(set(range(len(self._conns))) - set(self._returned))
                raise RuntimeError(
                    f"Members {missing} of the worker group did not end their run within "
                    f"{timeout:g} s of being told to (waited for their functions to return).")
            self._next()
        return [self._returned[rank] for rank in range(len(self._conns))]

    def _next(self):
        """Handle what the members sent; a message of rank 0's function, or None."""
        ready = mpc.wait(self._conns, timeout=POLL_SECONDS)
        if not ready:
            self._group.check_members()
            return None
        for conn in ready:
            rank = self._conns.index(conn)
            try:
                message = recv(conn)
            except (EOFError, OSError):
                raise self._group.died(rank) from None
            if not is_control(message[0]):
                return message
            self._control(rank, message[0])
        return None

    def _control(self, rank, message):
        kind, run_id = message[1], message[2]
        if run_id != self._run_id:
            return
        if kind == "done":
            self._returned[rank] = message[4]
            return
        exc, text = message[4], message[5]
        if isinstance(exc, ConnectionError):  # a peer is gone: say which, and why
            self._raise_dead(exclude=rank)
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised in member {rank} of the worker group; its traceback:\n"
                         f"{text})")
        raise exc

    def _raise_dead(self, exclude, timeout=DEAD_SECONDS):
        """Raise the error of a member that died, if one did within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        others = [conn for rank, conn in enumerate(self._conns) if rank != exclude]
        while time.monotonic() < deadline:
            self._group.check_members()
            for conn in mpc.wait(others, timeout=POLL_SECONDS):
                try:
                    recv(conn)
                except (EOFError, OSError):
                    raise self._group.died(self._conns.index(conn)) from None
