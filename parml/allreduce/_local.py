"""AllReduce between long-lived local worker processes, over pipes.

One process per node of the spanning tree. Each opens its shard once (a
read-only memory map: the pages are shared, never copied into the worker) and
keeps it, with its own state, until the transport closes. Pipes join tree
neighbours only; the parent process talks to the root alone:

1. the parent sends the root a command (``("epoch", e)``); every node
   forwards it to its children, so all nodes start at once;
2. each node runs ``program.step`` on its shard from its current
   parameters, waits for its children's ``(weighted sum, weight)`` pairs,
   adds them to its own (child order fixed) and sends the total up;
3. the root divides by the weight and sends the average down the tree (each
   node keeps it as its parameters for the next epoch) and to the parent.

So per round a node receives at most ``fanout`` pairs from below and one
average from above, whatever the number of workers; the parent process
receives one average. Every message is counted in bytes (``traffic()``).
"""

import contextlib
import mmap
import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
try:  # joblib >= 1.6 depends on cloudpickle; older ones vendor it
    import cloudpickle
except ImportError:  # pragma: no cover
    try:
        from joblib.externals import cloudpickle
    except ImportError:
        cloudpickle = pickle
from scipy import sparse

from .._tempfiles import make_folder, remove
from . import _tree

#: Modules the fork server imports once, before it forks any worker.
PRELOAD = ["parml.allreduce._local", "parml.linear_model", "sklearn.linear_model"]
#: Seconds between liveness checks while waiting for the root.
POLL_SECONDS = 0.5


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_reimported():
    """Start processes without making them re-run the user's ``__main__`` script.

    ``spawn`` and ``forkserver`` children import the parent's main script
    unless it has no ``__file__``; a script without an
    ``if __name__ == "__main__":`` guard would then fit again in every worker.
    The workers only run parml code (the program is cloudpickled), so the
    script's path is hidden from them while they start.
    """
    main = sys.modules.get("__main__")
    hide = main is not None and getattr(main, "__spec__", None) is None \
        and hasattr(main, "__file__")
    with _START_LOCK:
        if not hide:
            yield
            return
        path = main.__file__
        del main.__file__
        try:
            yield
        finally:
            main.__file__ = path


def _send(conn, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(data)
    return len(data)


def _recv(conn):
    data = conn.recv_bytes()
    return pickle.loads(data), len(data)


def _is_file_memmap(array):
    """Whether ``array`` is a whole, C-ordered, file-backed memory map."""
    return (isinstance(array, np.memmap) and getattr(array, "filename", None)
            and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous)


class _ShardWriter:
    """Write shards as ``.npy`` memory maps (in ``/dev/shm`` where there is one).

    Their folder is removed by :meth:`close`, or when this process dies
    however it dies.
    """

    def __init__(self):
        self.folder = None
        self._count = 0
        self._lock = threading.Lock()

    def ref(self, array, rows=None):
        """A picklable reference from which a worker opens ``array[rows]``.

        A file-backed memory map taken whole is referenced in place; other
        dense arrays are written once to a memory map; sparse matrices travel
        with the reference (pickled once, at start).
        """
        if sparse.issparse(array):
            return ("inline", array if rows is None else array[rows])
        if rows is None and _is_file_memmap(array):
            return ("memmap", array.filename, array.offset, array.shape, array.dtype.str)
        with self._lock:  # shards are written by several threads at once
            if self.folder is None:
                self.folder = make_folder("shards")
            path = os.path.join(self.folder, f"shard-{self._count}.npy")
            self._count += 1
        shape = (len(rows),) + array.shape[1:] if rows is not None else array.shape
        out = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=shape)
        if rows is None:
            out[...] = array
        else:
            np.take(array, rows, axis=0, out=out)
        out.flush()
        del out
        return ("npy", path)

    def close(self):
        if self.folder is not None:
            remove(self.folder)
            self.folder = None


def _open(ref):
    kind = ref[0]
    if kind == "inline":
        return ref[1]
    if kind == "npy":
        return np.load(ref[1], mmap_mode="r")
    _, filename, offset, shape, dtype = ref
    return np.memmap(filename, mode="r", dtype=np.dtype(dtype), shape=shape, offset=offset)


def _error_message(rank, exc):
    return ("error", rank, exc, traceback.format_exc())


def _worker_main(rank, n_nodes, fanout, up, downs, shard, program):
    """The loop of one node (see the module docstring for the protocol)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core per node: the nodes are the parallelism
    state, failure, params = None, None, None
    traffic = []
    try:
        program = pickle.loads(program)
        state = program.open(_open(shard[0]), _open(shard[1]), rank)
    except Exception as exc:  # reported at the first epoch
        failure = _error_message(rank, exc)
    try:
        while True:
            message, down_bytes = _recv(up)
            for conn in downs:
                _send(conn, message)
            if message[0] == "stop":
                return
            if message[0] == "traffic":
                rows = [(rank, traffic)]
                for conn in downs:
                    rows += _recv(conn)[0]
                _send(up, rows)
                continue
            epoch = message[1]
            own = failure
            if own is None:
                try:
                    value, weight, extras = program.step(state, params, epoch)
                    own = (_tree.weighted(value, weight), extras)
                except Exception as exc:
                    own = _error_message(rank, exc)
            up_bytes, kids = 0, []
            for conn in downs:
                kid, size = _recv(conn)
                up_bytes += size
                kids.append(kid)
            errors = [m for m in [own, *kids] if m[0] == "error"]
            total = errors[0] if errors else _reduce(own, kids)
            if rank == 0:
                if errors:
                    reply, average = total, None
                else:
                    average = _tree.average(total[0])
                    reply = ("done", average, total[1], up_bytes)
                down = ("params", average)
                for conn in downs:
                    _send(conn, down)
                _send(up, reply)
                down_bytes = 0
            else:
                _send(up, total)
                down, down_bytes = _recv(up)
                for conn in downs:
                    _send(conn, down)
            if down[1] is not None:
                params = down[1]
            traffic.append({"epoch": epoch, "up": up_bytes, "down": down_bytes})
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away: leave quietly


def _reduce(own, kids):
    """Add a node's ``(pair, extras)`` and its children's, in child order."""
    pair = _tree.combine(own[0], *(kid[0] for kid in kids))
    extras = own[1]
    for kid in kids:
        extras = _tree.tree_map(np.add, extras, kid[1])
    return pair, extras


class LocalTransport:
    """Long-lived worker processes joined by a spanning tree of pipes.

    Parameters
    ----------
    shards : list of (X, y) or list of (ref, ref)
        One per node: arrays (written once to memory maps) or references
        made by :meth:`refs_from_rows`.
    program : object
        Picklable, with ``open(X, y, rank) -> state`` (run once per node)
        and ``step(state, params, epoch) -> (value, weight, extras)``
        (``params`` is ``None`` at the first epoch, then the last average;
        ``extras`` is a dict of numbers summed over the nodes).
    fanout : int, default=2
        Children per node of the spanning tree.
    start_method : str, default=None
        ``multiprocessing`` start method; ``None``: ``"forkserver"`` where it
        exists, else ``"spawn"``.
    """

    def __init__(self, shards, program, fanout=2, start_method=None, _writer=None):
        self.n_nodes = len(shards)
        self.fanout = fanout
        self.client_bytes = []
        self._writer = _writer or _ShardWriter()
        self._procs = []
        self._root = None
        self._last = None
        try:
            refs = [s if isinstance(s[0], tuple) else
                    (self._writer.ref(s[0]), self._writer.ref(s[1])) for s in shards]
            self._start(refs, program, start_method)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_rows(cls, X, y, rows, program, fanout=2, start_method=None):
        """Shards ``X[rows[i]], y[rows[i]]``, written straight into memory maps."""
        writer = _ShardWriter()
        threads = max(1, min(len(rows), os.cpu_count() or 1))
        try:
            # numpy copies (and the kernel fills fresh pages) without the GIL:
            # writing the shards in parallel takes about 1 / threads the time
            with ThreadPoolExecutor(threads) as pool:
                refs = list(pool.map(lambda r: (writer.ref(X, r), writer.ref(y, r)), rows))
        except BaseException:
            writer.close()
            raise
        return cls(refs, program, fanout=fanout, start_method=start_method, _writer=writer)

    def _start(self, refs, program, start_method):
        if start_method is None:
            methods = multiprocessing.get_all_start_methods()
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # forked from a server that imported these once: workers start fast
            ctx.set_forkserver_preload(PRELOAD)
        n, fanout = self.n_nodes, self.fanout
        ups, downs = [None] * n, [[] for _ in range(n)]
        worker_ends = []
        self._root, ups[0] = ctx.Pipe(duplex=True)
        worker_ends.append(ups[0])
        for rank in range(1, n):
            parent_end, child_end = ctx.Pipe(duplex=True)
            downs[_tree.parent(rank, fanout)].append(parent_end)
            ups[rank] = child_end
            worker_ends += [parent_end, child_end]
        # cloudpickle: an estimator class defined in a script travels by value,
        # so the workers need not re-run the user's script (no __main__ guard)
        payload = cloudpickle.dumps(program)
        with _main_not_reimported():
            for rank in range(n):
                proc = ctx.Process(target=_worker_main, name=f"parml-allreduce-{rank}",
                                   args=(rank, n, fanout, ups[rank], downs[rank],
                                         refs[rank], payload), daemon=True)
                proc.start()
                self._procs.append(proc)
        for end in worker_ends:  # only the workers hold them now: EOF if one dies
            end.close()

    def _recv_root(self):
        while not self._root.poll(POLL_SECONDS):
            if any(not p.is_alive() for p in self._procs):
                raise self._dead_error()
        try:
            return _recv(self._root)
        except (EOFError, OSError):  # the root exited: a worker died
            raise self._dead_error() from None

    def _dead_error(self):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and all(p.is_alive() for p in self._procs):
            time.sleep(0.05)
        dead = [p for p in self._procs if not p.is_alive()]
        # a crashed worker first: its neighbours then exit cleanly (code 0)
        dead.sort(key=lambda p: p.exitcode == 0)
        name, code = (dead[0].name, dead[0].exitcode) if dead else ("?", None)
        return RuntimeError(f"AllReduce worker {name} died (exit code {code}); the "
                            "fit cannot continue.")

    def epoch(self, epoch):
        """Run one epoch on every node and allreduce; return the summed extras."""
        _send(self._root, ("epoch", epoch))
        reply, size = self._recv_root()
        self.client_bytes.append(size)
        if reply[0] == "error":
            _, rank, exc, tb = reply
            if hasattr(exc, "add_note"):
                exc.add_note(f"(raised in AllReduce worker {rank}; its traceback:\n{tb})")
            raise exc
        self._last = reply[1]
        return reply[2]

    def result(self):
        """The average of the last round."""
        return self._last

    def traffic(self):
        """Bytes each node received per round: ``{rank: [{"epoch", "up", "down"}]}``."""
        _send(self._root, ("traffic",))
        rows, _ = self._recv_root()
        return dict(rows)

    def close(self):
        """Stop the workers (they exit when told, or when their pipe closes)."""
        if self._root is not None:
            try:
                _send(self._root, ("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
        if self._root is not None:
            self._root.close()
            self._root = None
        self._procs = []
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcessTransport:
    """The same rounds as :class:`LocalTransport`, node by node in this process.

    Used for small data (starting processes would cost more than the fit)
    and as the reference the process transport must match bit for bit.
    """

    def __init__(self, shards, program, fanout=2):
        self.n_nodes = len(shards)
        self.fanout = fanout
        self.client_bytes = []
        self._program = program
        self._states = [program.open(X, y, rank) for rank, (X, y) in enumerate(shards)]
        self._params = None

    @classmethod
    def from_rows(cls, X, y, rows, program, fanout=2):
        return cls([(X[r], y[r]) for r in rows], program, fanout=fanout)

    def epoch(self, epoch):
        steps = [self._program.step(state, self._params, epoch) for state in self._states]
        results = [None] * self.n_nodes
        for rank in reversed(range(self.n_nodes)):
            value, weight, extras = steps[rank]
            kids = [results[k] for k in _tree.children(rank, self.n_nodes, self.fanout)]
            results[rank] = _reduce((_tree.weighted(value, weight), extras), kids)
        self._params = _tree.average(results[0][0])
        return results[0][1]

    def result(self):
        """The average of the last round."""
        return self._params

    def close(self):
        self._states = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
