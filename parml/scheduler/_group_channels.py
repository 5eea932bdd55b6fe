"""What a member of a local worker group holds during a run: its rank and its connections.

A member's function gets a :class:`Comm`. Rank 0 talks to the driver (the
process that opened the group) through :meth:`Comm.driver_channel`; any
member reaches any other through :meth:`Comm.channel` (the connection is made
on first use, the higher rank connecting to the lower one). Messages are
pickled objects; ``send`` and ``recv`` say how many bytes travelled.

While a member waits (for a peer, or for a connection), it also watches its
connection to the driver: the driver speaks to a non-root member during a run
only to stop it, so a control message there, or the connection closing,
ends the wait with :class:`Aborted`. A message meant for rank 0's function
that arrives meanwhile is kept for :meth:`Comm.driver_channel`.
"""

import pickle
from multiprocessing import connection as mpc

#: First item of the group's own messages (the members' functions never send it).
CONTROL = "\0parml-group"
#: Seconds between checks of the driver while a member waits for a connection.
ACCEPT_POLL = 0.2


class Aborted(Exception):
    """The driver stopped the run, or closed the group, while this member waited."""


def send(conn, obj):
    """Send ``obj`` pickled on ``conn``; the number of bytes sent."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(data)
    return len(data)


def recv(conn):
    """``(object, bytes received)`` from ``conn``."""
    data = conn.recv_bytes()
    return pickle.loads(data), len(data)


def is_control(message):
    return isinstance(message, tuple) and bool(message) and message[0] == CONTROL


class Channel:
    """A connection to another member: ``send(obj) -> bytes``, ``recv() -> (obj, bytes)``."""

    def __init__(self, comm, conn, other):
        self._comm, self._conn, self.other = comm, conn, other

    def send(self, obj):
        return send(self._conn, obj)

    def recv(self):
        self._comm.wait_readable(self._conn)
        try:
            return recv(self._conn)
        except (EOFError, OSError):
            raise ConnectionError(f"Member {self.other} of the worker group closed its "
                                  "connection (it ended or died).") from None

    def close(self):
        self._conn.close()


class _DriverChannel:
    """Rank 0's connection to the driver, as a :class:`Channel`."""

    def __init__(self, comm):
        self._comm = comm

    def send(self, obj):
        return send(self._comm.driver, obj)

    def recv(self):
        return self._comm.read_driver(keep=False)

    def close(self):
        pass


class Comm:
    """A member's view of its group during one run.

    Attributes
    ----------
    rank : int
        This member's rank.
    size : int
        Members in the group.
    """

    def __init__(self, rank, book, driver, listener, authkey, run_id):
        self.rank, self.size = rank, len(book)
        self.driver = driver
        self._book, self._listener, self._authkey = book, listener, authkey
        self._run_id = run_id
        self._channels, self._pending, self._kept = {}, {}, []

    def driver_channel(self):
        """The channel to the driver (rank 0 only): commands in, replies out."""
        if self.rank != 0:
            raise ValueError("Only rank 0 talks to the driver.")
        return _DriverChannel(self)

    def read_driver(self, keep=True):
        """Read the driver's next message (a kept one first).

        A control message, or the connection closing, is :class:`Aborted`;
        with ``keep`` a message for rank 0's function is kept for later.
        """
        if self._kept and not keep:
            return self._kept.pop(0)
        try:
            message = recv(self.driver)
        except (EOFError, OSError):
            raise Aborted("the driver closed the group") from None
        if is_control(message[0]):
            raise Aborted("the driver stopped the run")
        if keep:
            self._kept.append(message)
        return message

    def wait_readable(self, conn):
        """Wait until ``conn`` has data, watching the driver meanwhile."""
        while True:
            ready = mpc.wait([conn, self.driver])
            if conn in ready:
                return
            self.read_driver(keep=True)

    def channel(self, other):
        """The channel to member ``other``, made on first use."""
        if other == self.rank or not 0 <= other < self.size:
            raise ValueError(f"Member {self.rank} cannot open a channel to {other!r}.")
        if other not in self._channels:
            if other < self.rank:
                conn = mpc.Client(self._book[other], authkey=self._authkey)
                send(conn, (self.rank, self._run_id))
            else:
                conn = self._accept_from(other)
            self._channels[other] = Channel(self, conn, other)
        return self._channels[other]

    def _accept_from(self, other):
        key = (other, self._run_id)
        while key not in self._pending:
            if mpc.wait([self.driver], timeout=0):
                self.read_driver(keep=True)
            conn = self._listener.accept(ACCEPT_POLL)
            if conn is None:
                continue
            try:
                self._pending[tuple(recv(conn)[0])] = conn
            except (EOFError, OSError):
                conn.close()
        return self._pending.pop(key)

    def close(self):
        """Close the channels of this run."""
        for channel in self._channels.values():
            channel.close()
        for conn in self._pending.values():
            conn.close()
        self._channels, self._pending = {}, {}
