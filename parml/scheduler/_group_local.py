"""Worker groups of the local engine: its loky worker processes, or threads of this process.

**Members.** With processes, each member is a long-running task on the process
pool every parml tool of the process shares (:func:`._local_pool.get_executor`):
the processes that run the searches, started once (forks of a warm template
on Linux), reused by the next group; a member ends when its group closes and
leaves its process to the pool. With threads, members are threads of this
process, started for the group (a thread starts in microseconds; nothing is
imported).

**Connections.** This process (the *driver*) and every member listen on a
socket of their own: an abstract unix socket on Linux (no file to clean up),
loopback TCP elsewhere. A member connects to the driver when it starts and
sends its rank and address; the driver sends back the address book. Members
connect to each other on demand (:meth:`Comm.channel`): the higher rank
connects to the lower one. Every connection is authenticated with a key made
for the group (:mod:`multiprocessing.connection`'s challenge).

**Data.** :meth:`LocalGroup.place_rows` writes the rows of each rank once, as
``.npy`` files in the engine's shared-data folder (its
:class:`~._sharing.MemmapStore`: ``/dev/shm`` where there is one, removed with
the scheduler, or when this process dies however it dies), ranks in parallel
while the members start. A member maps its shard once, read only, when its
run starts, and removes the file at once: the pages stay as long as the
member holds the map and are freed by the member when it lets go, so a
placement serves one run, and nothing is left to delete when the fit ends. A
whole file-backed memory map is referenced in place (never removed). Threads
take their rows in memory, each its own, in parallel.

**Runs.** :meth:`LocalGroup.start` runs ``fn(comm, *args[rank])`` on every
member (processes get ``fn`` and the arguments cloudpickled, so a class
defined in the user's script travels by value); the member keeps what ``fn``
builds until ``fn`` returns. The driver talks to rank 0 through the
:class:`Run`. Every wait of the driver is bounded: a member whose process died
is seen within :data:`POLL_SECONDS` (its connection closes), and the run ends
with an error that names it; members waiting on a peer give up as soon as the
driver closes or stops the group.
"""

import os
import pickle
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import connection as mpc

import numpy as np
from scipy import sparse

try:  # joblib >= 1.6 depends on cloudpickle; older ones vendor it
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle

from .._tempfiles import make_folder
from ._group_channels import CONTROL, Aborted, Comm, recv, send
from ._groups import WorkerGroup, take_rows
from ._sharing import MemmapStore

#: Seconds between liveness checks of the members while the driver waits.
POLL_SECONDS = 0.2
#: Seconds the members have to start (a new pool imports parml in each process).
START_TIMEOUT = 120.0
#: Seconds a closing group waits for its member threads to return.
THREAD_JOIN_SECONDS = 1.0
#: Bytes of the buffer a shard is written through.
CHUNK_BYTES = 8 * 2 ** 20


class Listener:
    """A listening socket of this process, accepting authenticated connections."""

    def __init__(self, authkey):
        if sys.platform.startswith("linux"):
            family, address = socket.AF_UNIX, "\0parml-" + os.urandom(8).hex()
        else:
            family, address = socket.AF_INET, ("127.0.0.1", 0)
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind(address)
        self._sock.listen(128)
        self.address = self._sock.getsockname()
        self._authkey = authkey

    def accept(self, timeout):
        """An authenticated connection, or None after ``timeout`` seconds."""
        self._sock.settimeout(timeout)
        try:
            sock, _ = self._sock.accept()
        except (socket.timeout, BlockingIOError):
            return None
        sock.setblocking(True)
        conn = mpc.Connection(sock.detach())
        try:
            mpc.deliver_challenge(conn, self._authkey)
            mpc.answer_challenge(conn, self._authkey)
        except (mpc.AuthenticationError, EOFError, OSError):
            conn.close()  # not one of ours
            return None
        return conn

    def close(self):
        self._sock.close()


class Ref:
    """Where a member finds one array of its shard (made by :meth:`LocalGroup.place`)."""

    def __init__(self, kind, *spec):
        self.kind, self.spec = kind, spec

    def open(self):
        """The array: a read-only memory map, or the value itself."""
        if self.kind == "npy":  # a file written for this member alone: mapped, then
            array = np.load(self.spec[0], mmap_mode="r")  # unlinked (the pages live
            os.unlink(self.spec[0])  # until the member lets go of its map)
            return array
        if self.kind == "memmap":
            filename, offset, shape, dtype = self.spec
            return np.memmap(filename, mode="r", dtype=np.dtype(dtype), shape=shape,
                             offset=offset)
        if self.kind == "take":
            return take_rows(*self.spec)
        return self.spec[0]


def _opened(value):
    """``value`` with every :class:`Ref` in it (in tuples, lists, dicts) opened."""
    if isinstance(value, Ref):
        return value.open()
    if isinstance(value, (tuple, list)):
        return type(value)(_opened(v) for v in value)
    if isinstance(value, dict):
        return {k: _opened(v) for k, v in value.items()}
    return value


def _picklable(exc):
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def member_main(address, authkey, rank, payloads=None):
    """A member: connect to the driver, then run what it sends until told to stop.

    ``payloads`` is the driver's dict of runs for thread members (their
    functions and arguments are not pickled); process members receive them
    cloudpickled.
    """
    listener = Listener(authkey)
    driver = mpc.Client(address, authkey=authkey)
    try:
        send(driver, (CONTROL, "hello", rank, listener.address, os.getpid()))
        book = recv(driver)[0][2]
        while True:
            message = recv(driver)[0]
            if message[1] != "run":
                return
            run_id = message[2]
            fn, args = (payloads[run_id][rank] if payloads is not None
                        else pickle.loads(message[3]))
            comm = Comm(rank, book, driver, listener, authkey, run_id)
            try:
                with _limits(payloads is None, len(book)):
                    reply = (CONTROL, "done", run_id, rank, fn(comm, *_opened(args)))
            except Aborted:
                return
            except Exception as exc:
                reply = (CONTROL, "failed", run_id, rank, _picklable(exc),
                         traceback.format_exc())
            finally:
                comm.close()
            send(driver, reply)
    except (EOFError, OSError):
        return  # the driver closed the group
    finally:
        driver.close()
        listener.close()


def _limits(process, n_members):
    """BLAS threads of a member process: its share of the cores (threads: set by the group)."""
    if not process:
        return _NoLimits()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, (os.cpu_count() or 1) // n_members))


def _save_rows(path, array, rows):
    """Write ``array[rows]`` as a ``.npy`` file, in chunks through a small buffer.

    Writing the file (the kernel copies into its pages) costs about half of
    filling a fresh memory map of it (a page fault per page), and no copy of
    the whole shard is made in memory.
    """
    shape = (len(rows),) + array.shape[1:]
    per_row = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize)
    chunk = max(1, CHUNK_BYTES // per_row)
    buffer = np.empty((min(chunk, len(rows)),) + array.shape[1:], dtype=array.dtype)
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {
            "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
            "shape": shape})
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            out = buffer[:len(part)]
            np.take(array, part, axis=0, out=out)
            file.write(memoryview(out).cast("B"))


class _NoLimits:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class LocalGroup(WorkerGroup):
    """Members on the local engine's loky processes, or on threads (see the module docstring).

    Parameters
    ----------
    engine : LocalEngine
        Its shared-data folder (its ``MemmapStore``) holds the shards.
    n_workers : int
        Members.
    processes : bool
        Loky worker processes (True) or threads of this process.

    Attributes
    ----------
    pids : list of int
        Process id of each member, once they started (:meth:`ready`).
    """

    spmd = True

    def __init__(self, engine, n_workers, processes):
        super().__init__(n_workers)
        self.kind = "processes" if processes else "threads"
        self._store = getattr(engine, "_store", None)
        self._own_store = None
        self._files = []
        self._key = os.urandom(32)
        self._listener = Listener(self._key)
        self._payloads = {}
        self._conns = [None] * n_workers
        self._book = [None] * n_workers
        self.pids = [None] * n_workers
        self._members = []
        self._run_id = 0
        self._blas = None
        self._closed = False
        try:
            self._launch()
        except BaseException:
            self.close()
            raise

    # -- members ------------------------------------------------------------------

    def _launch(self):
        address, n = self._listener.address, self.n_workers
        if self.kind == "processes":
            from ._local_pool import get_executor

            executor = get_executor(n)
            self._members = [executor.submit(member_main, address, self._key, rank)
                             for rank in range(n)]
            return
        from threadpoolctl import threadpool_limits

        # BLAS pools are global to the process: the members share the cores
        self._blas = threadpool_limits(limits=max(1, (os.cpu_count() or 1) // n),
                                       user_api="blas")
        for rank in range(n):
            thread = threading.Thread(target=member_main, name=f"parml-group-{rank}",
                                      args=(address, self._key, rank, self._payloads),
                                      daemon=True)
            thread.start()
            self._members.append(thread)

    def _ended(self, rank):
        """Why member ``rank`` ended (a string), or None while it runs."""
        member = self._members[rank]
        if isinstance(member, threading.Thread):
            return None if member.is_alive() else "its thread ended"
        if not member.done():
            return None
        exc = None if member.cancelled() else member.exception()
        return f"its task ended ({type(exc).__name__}: {exc})" if exc else "its task ended"

    def check_members(self):
        """Raise a RuntimeError naming a member that is no longer running."""
        for rank in range(self.n_workers):
            why = self._ended(rank)
            if why is not None:
                raise self._lost(rank, why)

    def _lost(self, rank, why):
        where = (f"process {self.pids[rank]}" if self.kind == "processes"
                 and self.pids[rank] else self.kind[:-1])
        return RuntimeError(
            f"Member {rank} of the worker group ({where}) is gone: {why}. The run "
            "cannot continue; the next fit starts new workers if they are needed.")

    def died(self, rank):
        """The error for member ``rank`` whose connection closed (its process died)."""
        deadline = time.monotonic() + 5.0  # let the pool notice, for a better message
        while self._ended(rank) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._lost(rank, self._ended(rank) or "its connection closed")

    def ready(self):
        """Wait for every member to say hello (bounded); send them the address book."""
        if all(conn is not None for conn in self._conns):
            return
        deadline = time.monotonic() + START_TIMEOUT
        while any(conn is None for conn in self._conns):
            self.check_members()
            conn = self._listener.accept(POLL_SECONDS)
            if conn is None:
                if time.monotonic() > deadline:
                    missing = [r for r, c in enumerate(self._conns) if c is None]
                    raise RuntimeError(
                        f"Members {missing} of the worker group did not start within "
                        f"{START_TIMEOUT:g} s (waited for their {self.kind} to connect). "
                        "Is the process pool busy with other work?")
                continue
            _, _, rank, address, pid = recv(conn)[0]
            self._conns[rank], self._book[rank], self.pids[rank] = conn, address, pid
        for conn in self._conns:
            send(conn, (CONTROL, "book", self._book))

    # -- data -----------------------------------------------------------------------

    def _folder(self):
        store = self._store
        if store is None:
            store = self._own_store = self._own_store or MemmapStore()
        if store.folder is None:
            store.folder = make_folder("data")
        return store.folder

    def _write(self, array, rows=None):
        """A :class:`Ref` to ``array[rows]`` (or the whole array) for a member process."""
        if sparse.issparse(array) or not isinstance(array, np.ndarray) or array.dtype == object:
            return Ref("value", array if rows is None else take_rows(array, rows))
        if rows is None and isinstance(array, np.memmap) and array.flags.c_contiguous \
                and getattr(array, "filename", None) and os.path.exists(array.filename):
            return Ref("memmap", array.filename, array.offset, array.shape, array.dtype.str)
        path = os.path.join(self._folder(), f"shard-{os.urandom(6).hex()}.npy")
        self._files.append(path)
        if rows is None:
            np.save(path, array)
        else:
            _save_rows(path, array, rows)
        return Ref("npy", path)

    def place(self, parts):
        """Each rank's tuple of arrays, where its member reads it, for one run.

        See the module docstring: a member process maps a file written for it
        when its run starts, and removes the file then.
        """
        if self.kind == "threads":
            return [tuple(Ref("value", a) for a in part) for part in parts]
        return self._parallel([(a, None) for part in parts for a in part],
                              [len(part) for part in parts])

    def place_rows(self, arrays, rows):
        """``tuple(a[rows[r]] for a in arrays)`` for each rank ``r``, written once, for one run."""
        if self.kind == "threads":  # each member takes its own rows, in parallel
            return [tuple(Ref("take", a, r) for a in arrays) for r in rows]
        return self._parallel([(a, r) for r in rows for a in arrays],
                              [len(arrays)] * len(rows))

    def _parallel(self, jobs, sizes):
        self._folder()  # made once, before the threads write into it
        # numpy copies, and the kernel fills fresh pages, without the GIL
        with ThreadPoolExecutor(max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            refs = list(pool.map(lambda job: self._write(*job), jobs))
        out, start = [], 0
        for size in sizes:
            out.append(tuple(refs[start:start + size]))
            start += size
        return out

    # -- runs -----------------------------------------------------------------------

    def start(self, fn, args):
        """Run ``fn(comm, *args[rank])`` on every member; the :class:`Run` that drives it."""
        if len(args) != self.n_workers:
            raise ValueError(f"start needs one argument tuple per member ({self.n_workers}); "
                             f"got {len(args)}.")
        self.ready()
        self._run_id += 1
        run_id = self._run_id
        if self.kind == "threads":
            self._payloads.clear()
            self._payloads[run_id] = [(fn, tuple(a)) for a in args]
        for rank, conn in enumerate(self._conns):
            blob = None if self.kind == "threads" else cloudpickle.dumps((fn, tuple(args[rank])))
            send(conn, (CONTROL, "run", run_id, blob))
        from ._group_run import Run

        return Run(self, run_id, self._conns)

    def close(self):
        """Stop the members (they leave the pool's workers free), remove the shards."""
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            if conn is not None:
                try:
                    send(conn, (CONTROL, "stop"))
                except OSError:
                    pass
        self._listener.close()  # members still starting find no one, and end
        self._join_members()
        for conn in self._conns:
            if conn is not None:
                conn.close()
        for path in self._files:
            try:
                os.unlink(path)
            except OSError:
                pass
        if self._own_store is not None:
            self._own_store.close()
        if self._blas is not None:
            self._blas.restore_original_limits()
        self._payloads.clear()

    def _join_members(self):
        """Let the members end: threads are joined (briefly), tasks not yet started
        cancelled. A member returns as soon as it reads "stop" (or sees its
        connection close); one still in the middle of an epoch (after Ctrl-C)
        finishes it first, in the background: nothing waits for it."""
        deadline = time.monotonic() + THREAD_JOIN_SECONDS
        for member in self._members:
            if isinstance(member, threading.Thread):
                member.join(timeout=max(0.0, deadline - time.monotonic()))
            else:
                member.cancel()
