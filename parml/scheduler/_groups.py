"""Worker groups: long-lived members of an engine that keep data and state for a fit.

``Scheduler.worker_group(n_workers)`` opens a group of ``n_workers`` members
(ranks ``0 .. n_workers - 1``) on the workers of the scheduler's engine, the
same workers its searches use:

========================  ==================================================
engine                    members
========================  ==================================================
local, loky processes     long-running tasks on the loky executor that every
                          parml tool of the process shares (:mod:`._group_local`)
local, threads            threads of this process (:mod:`._group_local`)
sequential, one worker,   this process, rank after rank (:class:`InlineGroup`)
or inside a worker
Dask                      the cluster's workers, ranks dealt round robin or
                          placed where their data lives (:mod:`._group_dask`)
ipyparallel               the cluster's engines (:mod:`._group_ipyparallel`)
========================  ==================================================

Every group places data where its member runs and gives back one handle per
rank (:meth:`WorkerGroup.place`, :meth:`WorkerGroup.place_rows`); members keep
it, and whatever state they build from it, until the group closes. Closing
releases the data and the state; the workers stay, they are the engine's, and
the next group (the next fit) finds them started and their imports done.

What a group can run is declared by two capabilities, as joblib's backends
declare theirs:

``spmd``
    Members run one function each for a run (:meth:`start`), joined to each
    other and to this process by connections: local threads and processes.
``moves_values``
    Call-style groups (``spmd`` False) run ``keep(rank, fn, *args)`` (the
    result stays with the member), ``submit(rank, fn, *args)`` and
    ``gather(handles)``. With ``moves_values`` a handle may be an argument of
    a call on another rank: the engine moves the value worker to worker
    (Dask). Without it, a handle is used on its own rank only, and values
    that must travel between ranks go through this process (ipyparallel, and
    the inline group, where nothing travels).

Nested use must not deadlock: a group opened inside a worker process of a
local pool, or inside a Dask task, on a local engine runs inline.
"""

import multiprocessing
import sys
from contextlib import nullcontext

import numpy as np
from joblib import parallel_config
from joblib.parallel import BACKENDS, get_active_backend
from scipy import sparse

#: joblib backends whose workers are local processes.
_PROCESS_BACKENDS = ("loky", "multiprocessing")


def take_rows(array, rows):
    """``array[rows]`` (rows of a dense array or of a sparse matrix), a new array."""
    if sparse.issparse(array):
        return array[rows]
    return np.take(array, rows, axis=0)


class WorkerGroup:
    """The contract of a worker group (see the module docstring).

    Parameters
    ----------
    n_workers : int
        Number of members (ranks).
    """

    kind = "abstract"
    spmd = False
    moves_values = False

    def __init__(self, n_workers):
        self.n_workers = n_workers

    def place(self, parts):
        """Put ``parts[r]`` (a tuple of arrays) where rank ``r`` runs; a handle per rank."""
        raise NotImplementedError

    def place_rows(self, arrays, rows):
        """Put ``tuple(a[rows[r]] for a in arrays)`` where rank ``r`` runs, written once."""
        raise NotImplementedError

    def close(self):
        """Release the placed data and the members' state; the workers stay."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _Done:
    """The handle of a call an inline group has run: its value."""

    def __init__(self, value):
        self.value = value


def _values(args):
    return [[a.value if isinstance(a, _Done) else a for a in arg] if isinstance(arg, list)
            else (arg.value if isinstance(arg, _Done) else arg) for arg in args]


class InlineGroup(WorkerGroup):
    """Every rank in this process, one after the other: no worker, nothing copied twice.

    The reference the other groups match, the group of ``backend="sequential"``
    and of one worker, and the fallback inside a worker (no nested pool).
    """

    kind = "inline"

    def place(self, parts):
        return [tuple(part) for part in parts]

    def place_rows(self, arrays, rows):
        return [tuple(take_rows(array, r) for array in arrays) for r in rows]

    def keep(self, rank, fn, *args):
        """Run ``fn(*args)`` now; its handle (the value stays here)."""
        return _Done(fn(*_values(args)))

    def submit(self, rank, fn, *args):
        """Run ``fn(*args)`` now; its handle."""
        return _Done(fn(*_values(args)))

    def gather(self, handles):
        """The values of ``handles``."""
        return [handle.value for handle in handles]


def local_kind(engine):
    """``"processes"``, ``"threads"`` or ``"inline"``: what the local engine's backend runs."""
    backend = getattr(engine, "backend", None)
    with nullcontext() if backend is None else parallel_config(backend=backend):
        active = get_active_backend()[0]
    if isinstance(active, tuple(BACKENDS[name] for name in _PROCESS_BACKENDS)):
        return "processes"
    if isinstance(active, BACKENDS["threading"]):
        return "threads"
    return "inline"


def in_worker():
    """Whether this code runs inside a worker: a process of a pool, or a Dask task.

    Any process started by :mod:`multiprocessing` or loky (the local pool's
    workers, however they start) counts: its parent is known.
    """
    if multiprocessing.parent_process() is not None:
        return True
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            distributed.get_worker()
        except (ValueError, AttributeError):
            return False
        return True
    return False


def group_size(engine, n_jobs):
    """The number of members ``n_jobs`` asks for on ``engine``, with joblib's meaning.

    On a local engine ``None`` is 1 (or the ``n_jobs`` of an active
    :func:`joblib.parallel_config`), ``-1`` all cores, ``-2`` all but one;
    whatever the backend, so that ``backend="sequential"`` runs as many ranks
    as processes would. On a remote engine ``None`` and ``-1`` are all its
    workers (its threads on Dask, its engines on ipyparallel).
    """
    if getattr(engine, "remote", False):
        total = max(1, engine.n_workers)
        if n_jobs is None:
            return total
        return n_jobs if n_jobs > 0 else max(1, total + 1 + n_jobs)
    from joblib import cpu_count

    if n_jobs is None:
        n_jobs = get_active_backend()[1]
    if n_jobs is None:
        return 1
    return n_jobs if n_jobs > 0 else max(1, cpu_count() + 1 + n_jobs)


def open_group(engine, n_workers=None, *, in_process=False):
    """A worker group of ``n_workers`` members on ``engine`` (see the module docstring).

    Parameters
    ----------
    engine : engine
        A scheduler's engine.
    n_workers : int, default=None
        Members; None is the engine's number of workers.
    in_process : bool, default=False
        Run the ranks in this process (:class:`InlineGroup`) whatever the engine.

    Returns
    -------
    group : WorkerGroup
    """
    n = engine.n_workers if n_workers is None else n_workers
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"A worker group needs n_workers >= 1; got {n_workers!r}.")
    n = int(n)
    from ._dask import DaskEngine
    from ._ipyparallel import IPyParallelEngine

    if isinstance(engine, DaskEngine) and not in_process:
        from ._group_dask import DaskGroup

        return DaskGroup(engine, n)
    if isinstance(engine, IPyParallelEngine) and not in_process:
        from ._group_ipyparallel import IPyParallelGroup

        return IPyParallelGroup(engine, n)
    kind = "inline" if in_process or n == 1 or getattr(engine, "remote", False) \
        else local_kind(engine)
    if kind == "inline" or in_worker():
        return InlineGroup(n)
    from ._group_local import LocalGroup

    return LocalGroup(engine, n, processes=kind == "processes")
