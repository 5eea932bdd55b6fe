"""Worker groups on an ipyparallel cluster: ranks on engines, data and state in their namespaces.

Rank ``r`` runs on an engine of the scheduler's ipyparallel engine (the
engines in turn, sorted by id). Data placed for a rank is pushed once to its
engine (``DirectView.push``) under a name unique to the group; ``keep`` stores
a call's result (a member's state) there too. Calls on a rank resolve those
names on their engine (``ipyparallel.Reference``), so shards and state never
travel again. What a call returns comes back to this process: ipyparallel
engines do not talk to each other, so a value one rank needs from another
travels through the client (``moves_values`` is False). Closing the group
deletes its names from the engines' namespaces.

Errors raised by a call are raised here with their own type (and the
engine's traceback as a note). Every wait is bounded by the engines' health:
an engine of this host whose process is gone is seen within
:data:`POLL_SECONDS`; the controller reports others as dead (``EngineError``).
"""

import os
import socket
import time

from threadpoolctl import threadpool_limits

from .._optional import import_optional
from ._groups import WorkerGroup, take_rows
from ._ipyparallel import _Raised, captured

#: Seconds between checks of the engines while the driver waits.
POLL_SECONDS = 0.5
#: Seconds to wait for the engines to delete the group's names when it closes.
CLOSE_TIMEOUT = 10.0


def _ipyparallel():
    return import_optional("ipyparallel", extra="ipyparallel",
                           purpose="A worker group on ipyparallel")


class _Named:
    """A value kept in the namespace of engine ``engine`` under ``name``."""

    def __init__(self, name, engine):
        self.name, self.engine = name, engine


def _run(limits, fn, args):
    with threadpool_limits(limits=limits.get(socket.gethostname(), 1)):
        return captured(fn, *args)


def _call(limits, fn, *args):
    """On an engine: ``fn(*args)`` with BLAS limited; an error comes back as :class:`_Raised`."""
    return _run(limits, fn, args)


def _keep(name, limits, fn, *args):
    """On an engine: store ``fn(*args)`` in the namespace under ``name``."""
    from IPython import get_ipython

    value = _run(limits, fn, args)
    if isinstance(value, _Raised):
        return value
    get_ipython().user_global_ns[name] = value
    return None


class IPyParallelGroup(WorkerGroup):
    """Ranks on the engines of an :class:`~._ipyparallel.IPyParallelEngine`.

    Attributes
    ----------
    where : list of int
        The engine id of each rank.
    """

    kind = "ipyparallel"
    moves_values = False

    def __init__(self, engine, n_workers):
        super().__init__(n_workers)
        self.client = engine.client
        targets = engine.worker_ids()
        self.where = [targets[rank % len(targets)] for rank in range(n_workers)]
        self._limits = dict(getattr(engine, "_limits", {}))
        self._pids = dict(getattr(engine, "_pids", {}))
        self._prefix = f"_parml_group_{os.urandom(6).hex()}_"
        self._names = {}
        self._count = 0

    def _name(self, rank):
        engine = self.where[rank]
        name = f"{self._prefix}{self._count}"
        self._count += 1
        self._names.setdefault(engine, []).append(name)
        return name, engine

    # -- data -------------------------------------------------------------------

    def _push(self, values_by_rank):
        pending, handles = [], []
        for rank, values in enumerate(values_by_rank):
            named = []
            for value in values:
                name, engine = self._name(rank)
                pending.append((engine, self.client[engine].push({name: value}, block=False)))
                named.append(_Named(name, engine))
            handles.append(tuple(named))
        self._wait(pending)
        for _, result in pending:
            result.get()
        return handles

    def place(self, parts):
        """Push each rank's arrays to its engine, once; handles per rank."""
        return self._push([tuple(part) for part in parts])

    def place_rows(self, arrays, rows):
        """Push ``a[rows[r]]`` of each array to rank ``r``'s engine, once."""
        return self._push([tuple(take_rows(a, r) for a in arrays) for r in rows])

    # -- calls ------------------------------------------------------------------

    def _args(self, rank, args):
        ipp = _ipyparallel()
        out = []
        for arg in args:
            if isinstance(arg, _Named):
                if arg.engine != self.where[rank]:
                    raise ValueError(f"A value kept on engine {arg.engine} cannot be an "
                                     f"argument of a call on engine {self.where[rank]}: "
                                     "ipyparallel does not move values between engines.")
                arg = ipp.Reference(arg.name)
            out.append(arg)
        return out

    def submit(self, rank, fn, *args):
        """Run ``fn(*args)`` on rank ``rank``'s engine; its AsyncResult."""
        engine = self.where[rank]
        return engine, self.client[engine].apply_async(_call, self._limits, fn,
                                                       *self._args(rank, args))

    def keep(self, rank, fn, *args):
        """Run ``fn(*args)`` on rank ``rank``'s engine, its result kept there; its handle."""
        name, engine = self._name(rank)
        result = self.client[engine].apply_async(_keep, name, self._limits, fn,
                                                 *self._args(rank, args))
        self.gather([(engine, result)])
        return _Named(name, engine)

    def gather(self, handles):
        """The values of ``handles`` (from :meth:`submit`); errors raised with their type."""
        self._wait(handles)
        values = []
        for _, result in handles:
            value = result.get()
            if isinstance(value, _Raised):
                if hasattr(value.error, "add_note"):
                    value.error.add_note(f"(raised on an ipyparallel engine; its traceback:\n"
                                         f"{value.text})")
                raise value.error
            values.append(value)
        return values

    def _wait(self, handles):
        engines = {engine for engine, _ in handles}
        for _, result in handles:
            while not result.wait(POLL_SECONDS):
                self._check_engines(engines)

    def _check_engines(self, engines):
        import psutil  # an ipyparallel dependency

        ids = set(self.client.ids)
        for engine in sorted(engines):
            pid = self._pids.get(engine)
            gone = engine not in ids
            if pid is not None and not gone:
                try:
                    gone = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
                except psutil.Error:
                    gone = True
            if gone:
                raise RuntimeError(
                    f"The ipyparallel engine {engine} of the worker group died; its data "
                    "and state went with it, so the run cannot continue. Fit again: the "
                    "next group uses the engines alive.")

    def close(self):
        """Delete the group's names from the engines (bounded); the engines stay."""
        names, self._names = self._names, {}
        try:
            ids = set(self.client.ids)
            pending = [self.client[engine].execute(
                "; ".join(f"globals().pop({name!r}, None)" for name in engine_names),
                block=False) for engine, engine_names in names.items() if engine in ids]
            deadline = time.monotonic() + CLOSE_TIMEOUT
            for result in pending:
                result.wait(max(0.0, deadline - time.monotonic()))
        except (OSError, RuntimeError, KeyError, IndexError):
            pass  # the cluster may be gone already
        except Exception as exc:  # ipyparallel's own errors: a dead engine, a closed client
            if not isinstance(exc, _ipyparallel().error.IPythonError):
                raise
