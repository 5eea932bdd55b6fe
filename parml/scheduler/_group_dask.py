"""Worker groups on a Dask cluster: ranks pinned to workers, values moved worker to worker.

Rank ``r`` runs on one worker of the scheduler's Dask engine: the workers in
turn (sorted by address), or the worker that already holds the rank's data
(:meth:`DaskGroup.adopt`, :meth:`DaskGroup.place_blocks`). Data placed for a
rank is sent once, straight to that worker (``client.scatter``), and stays
there until the group closes.

Calls are Dask tasks pinned to the rank's worker. ``keep`` makes a task whose
result (a member's state) stays on the worker for the group's life;
``submit`` makes one whose result the caller owns. A handle (a future) given
to a call on another rank is moved worker to worker by Dask, never through
this process. Tasks limit BLAS threads to the worker's cores over its threads.

Every wait is bounded by the cluster's health: while the driver waits, the
workers of the group are checked every :data:`POLL_SECONDS`; a worker that
left the cluster ends the wait with an error that names it (pinned tasks
could not run elsewhere: the member's data and state were on it).
"""

import os
import time
from concurrent.futures import CancelledError

import numpy as np
from threadpoolctl import threadpool_limits

from .._optional import import_optional
from ._groups import WorkerGroup, take_rows

#: Seconds between checks that the group's workers are still in the cluster.
POLL_SECONDS = 0.5
#: Seconds to wait, once a task of the group was cancelled, for the cluster to
#: report the worker that left (the usual cause).
LOST_SECONDS = 10.0


def _distributed():
    return import_optional("distributed", extra="dask", purpose="A worker group on Dask")


def _limited(fn, *args):
    """On a worker: ``fn(*args)`` with BLAS limited to the worker's cores over its threads."""
    try:
        nthreads = _distributed().get_worker().state.nthreads
    except (ValueError, AttributeError):
        nthreads = 1
    with threadpool_limits(limits=max(1, (os.cpu_count() or 1) // nthreads)):
        return fn(*args)


def _summary(y):
    y = np.asarray(y)
    return len(y), np.unique(y)


class DaskGroup(WorkerGroup):
    """Ranks on the workers of a :class:`~._dask.DaskEngine` (see the module docstring).

    Attributes
    ----------
    where : list of str
        The address of the worker of each rank.
    """

    kind = "dask"
    moves_values = True

    def __init__(self, engine, n_workers):
        super().__init__(n_workers)
        self.client = engine.client
        workers = engine.worker_ids()
        self.where = [workers[rank % len(workers)] for rank in range(n_workers)]
        self._owned = []  # futures of keys made here: cancelled when the group closes
        self._held = []  # futures of keys that may be the user's: only let go

    # -- data -------------------------------------------------------------------

    def _scatter(self, value, rank):
        future = self.client.scatter(value, workers=[self.where[rank]], hash=False)
        self._owned.append(future)
        return future

    def place(self, parts):
        """Send each rank's arrays to its worker, once; futures per rank."""
        return [tuple(self._scatter(a, rank) for a in part) for rank, part in enumerate(parts)]

    def place_rows(self, arrays, rows):
        """Send ``a[rows[r]]`` of each array to rank ``r``'s worker, once."""
        return [tuple(self._scatter(take_rows(a, r), rank) for a in arrays)
                for rank, r in enumerate(rows)]

    def adopt(self, futures):
        """Ranks run where ``futures`` (one per rank) live; they stay the caller's."""
        if len(futures) != self.n_workers:
            raise ValueError(f"adopt needs one future per rank ({self.n_workers}); "
                             f"got {len(futures)}.")
        self.where = self.locations(futures)
        return list(futures)

    def place_blocks(self, X, y):
        """The row blocks of dask arrays ``X`` and ``y``, one rank each, where they live.

        Blocks already persisted stay where they are; others are computed on
        the workers. Returns ``[(X_block, y_block)]`` futures and, per block,
        ``(n_rows, labels)`` computed where it lives.
        """
        import dask.array as da

        X = X.astype(np.float64)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        if not isinstance(y, da.Array):
            y = da.from_array(np.asarray(y), chunks=(X.chunks[0],))
        if y.chunks[0] != X.chunks[0]:
            y = y.rechunk({0: X.chunks[0]})
        # blocks the user persisted keep their keys: the group holds references
        # to them (dropped when it closes), never cancels them
        xs = self.client.compute(list(X.to_delayed().ravel()))
        ys = self.client.compute(list(y.to_delayed().ravel()))
        self._held += xs + ys
        if len(xs) != self.n_workers:
            raise ValueError(f"X has {len(xs)} row blocks but the group has "
                             f"{self.n_workers} ranks.")
        self.where = self.locations(xs)
        summaries = self.gather([self.submit(rank, _summary, ys[rank])
                                 for rank in range(self.n_workers)])
        return list(zip(xs, ys)), summaries

    def locations(self, futures):
        """The address of a worker holding each future (waits for them, bounded)."""
        self._wait(futures)
        who = self.client.who_has(futures)
        return [sorted(who[f.key])[0] for f in futures]

    # -- calls ------------------------------------------------------------------

    def submit(self, rank, fn, *args):
        """Run ``fn(*args)`` on rank ``rank``'s worker; its future (futures in args resolved)."""
        return self.client.submit(_limited, fn, *args, workers=[self.where[rank]],
                                  allow_other_workers=False, pure=False)

    def keep(self, rank, fn, *args):
        """As :meth:`submit`, the result kept on the worker until the group closes."""
        future = self.submit(rank, fn, *args)
        self._owned.append(future)
        return future

    def gather(self, handles):
        """The values of ``handles`` (futures), fetched once they are done."""
        self._wait(handles)
        try:
            return self.client.gather(handles)
        except CancelledError:
            raise self._lost() from None

    def _wait(self, futures):
        distributed = _distributed()
        while True:
            try:
                distributed.wait(futures, timeout=POLL_SECONDS)
                return
            except TimeoutError:
                self.check_workers()
            except CancelledError:
                raise self._lost() from None

    def _lost(self):
        """The error for tasks of the group that Dask cancelled (their data was lost)."""
        deadline = time.monotonic() + LOST_SECONDS
        while time.monotonic() < deadline:
            self.check_workers()  # the worker that left, named, as soon as it is known
            time.sleep(POLL_SECONDS)
        return RuntimeError(
            "Dask cancelled tasks of the worker group: the data or state they needed was "
            "lost (a worker left, or the keys were released), so the run cannot continue. "
            "Fit again.")

    def check_workers(self):
        """Raise a RuntimeError naming a worker of the group that left the cluster."""
        alive = set(self.client.nthreads())
        for rank, address in enumerate(self.where):
            if address not in alive:
                raise RuntimeError(
                    f"The Dask worker {address} of rank {rank} left the cluster; its data "
                    "and state went with it, so the run cannot continue. Fit again: the "
                    "next group is placed on the workers alive.")

    def close(self):
        """Release the data placed and the state kept; the workers stay."""
        if self._owned:
            try:
                self.client.cancel(self._owned)
            except Exception:  # the cluster may be gone already
                pass
        self._owned, self._held = [], []
