"""The Dask engine: tasks on a ``distributed`` cluster (``pip install "parml[dask]"``).

Data reaches every worker once per run (as the result of a task, which Dask
can recompute if its workers die); tasks carry the futures, which each worker
resolves from its own memory. After a first few tasks, all are submitted at
once, so the Dask scheduler keeps every worker of a large cluster busy, and
tiny tasks are sent in batches, so they do not each pay Dask's overhead;
results stream back as they finish. A task whose worker died is
rescheduled by Dask itself (up to its ``distributed.scheduler.allowed-failures``)
and then, when Dask gives up (``KilledWorker``), resubmitted by parml up to
``max_retries`` times before it is given up as a :class:`LostTask`; a Python
error raised by a task is never retried. Stopping early (an error, Ctrl-C)
cancels the remote tasks.
"""

import os
from collections import deque

from threadpoolctl import threadpool_limits

from .._optional import import_optional
from ._batching import Batches
from ._tasks import LostTask

#: Seconds to wait for a cluster that has no worker before giving up.
WORKER_TIMEOUT = 30.0
#: Resubmissions of tasks cancelled because the shared data died with workers.
MAX_RESUBMITS = 100


def _distributed():
    return import_optional("distributed", extra="dask", purpose="The Dask engine")


def is_dask_backend(backend):
    """Whether ``backend`` names the Dask engine (without importing Dask needlessly)."""
    if isinstance(backend, str):
        return backend == "dask" or "://" in backend
    module = type(backend).__module__ or ""
    return module.startswith("distributed") and type(backend).__name__ == "Client"


def connect(backend):
    """``(client, owned)`` for a Dask ``backend``: an address connects a new client
    (owned: close it after), ``"dask"`` or None the current one, a Client itself."""
    distributed = _distributed()
    if isinstance(backend, str) and "://" in backend:
        return distributed.Client(backend), True
    if backend is None or isinstance(backend, str):
        try:
            return distributed.get_client(), False
        except ValueError as exc:
            raise ValueError(
                "backend='dask' needs a running Dask client. Start one first: "
                "from distributed import Client; client = Client()  # or "
                "Client('tcp://scheduler:8786'); or pass backend=client."
            ) from exc
    return backend, False


class _Shared:
    """A placeholder for one value scattered by a :class:`DaskEngine`."""

    def __init__(self, index, name):
        self.index = index
        self.name = name


class DaskEngine:
    """Runs tasks on a Dask ``distributed`` cluster.

    Parameters
    ----------
    backend : "dask", str address or distributed.Client
        ``"dask"`` uses the current client (``distributed.get_client()``); an
        address such as ``"tcp://host:8786"`` connects a client for the run
        (and closes it after); a live ``Client`` is used as is.
    n_jobs : int or None
        Ignored: the cluster's workers decide the parallelism.
    pre_dispatch : ignored
        All tasks are submitted at once; Dask schedules them.
    """

    uses_processes = False
    uses_threads = False
    supports_timeout = False

    def __init__(self, backend="dask", n_jobs=None, pre_dispatch=None):
        self.client, self._owned = connect(backend)
        self.max_retries = 2
        self._shared = []
        self._originals = []
        self._wait_for_workers()

    def _wait_for_workers(self):
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        except Exception as exc:  # distributed raises TimeoutError
            raise RuntimeError(
                f"The Dask cluster at {self.client.scheduler.address} has no worker "
                f"after {WORKER_TIMEOUT:g} s. Start workers with: dask worker "
                f"{self.client.scheduler.address}"
            ) from exc

    @property
    def n_workers(self):
        """Threads of all workers: how many tasks run at once."""
        workers = self.client.scheduler_info()["workers"].values()
        return sum(w.get("nthreads", 1) for w in workers) or 1

    def worker_ids(self):
        """Addresses of the cluster's workers, usable as ``Task.where``."""
        return sorted(self.client.scheduler_info()["workers"])

    def share(self, data):
        """Scatter the values of ``data`` (a dict) to every worker, once.

        Returns a dict of placeholders that tasks carry; each worker resolves
        them from its own memory.
        """
        if not isinstance(data, dict):
            data = {"data": data}
        self._originals.append(data)
        self._shared.append(self._scatter(data))
        return {key: _Shared(len(self._shared) - 1, key) for key in data}

    def _scatter(self, data):
        # Not client.scatter: scattered data lives only on workers, so workers
        # that die take it with them. As the result of a task, Dask can make it
        # again on another worker; it then reaches each worker once, on demand.
        futures = {
            key: value if isinstance(value, (int, float, str, type(None)))
            else self.client.submit(_identity, value, pure=False,
                                    key=f"parml-data-{key}-{os.urandom(4).hex()}")
            for key, value in data.items()
        }
        return futures

    def _rescatter_lost(self):
        """Scatter again the shared values whose every copy died with its workers."""
        for index, futures in enumerate(self._shared):
            for key, future in futures.items():
                parts = future if isinstance(future, list) else [future]
                if any(getattr(f, "status", "finished") != "finished" for f in parts):
                    futures[key] = self._scatter({key: self._originals[index][key]})[key]

    def _with_futures(self, value):
        """``value`` with placeholders swapped for their futures (in dicts, lists)."""
        if isinstance(value, _Shared):
            return self._shared[value.index][value.name]
        if isinstance(value, dict):
            return {k: self._with_futures(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._with_futures(v) for v in value)
        return value

    def _submit(self, func, task, name, pinned=True):
        # Dask resolves futures inside dicts and lists of a task's arguments,
        # so the kwargs travel as an argument of their own.
        bare = type(task)(key=task.key, func=task.func, cache_key=task.cache_key)
        # A retried task is not pinned: its worker may be the one that died.
        where = {}
        if task.where is not None and pinned:
            where = {"workers": [task.where], "allow_other_workers": False}
        return self.client.submit(_run_with_shared, func, bare,
                                  self._with_futures(task.kwargs), pure=False, key=name,
                                  **where)

    def _submit_unit(self, func, unit, name, pinned=True):
        """Submit one task, or a batch of tasks run one after the other in one Dask task."""
        if len(unit) == 1:
            return self._submit(func, unit[0], name, pinned=pinned)
        bares = [type(t)(key=t.key, func=t.func, cache_key=t.cache_key) for t in unit]
        return self.client.submit(_run_batch, func, bares,
                                  [self._with_futures(t.kwargs) for t in unit],
                                  pure=False, key=name)

    def map_unordered(self, func, tasks):
        """Run every task; yield ``func(task)`` results as they finish.

        Dispatch adapts to the tasks' length (:class:`~._batching.Batches`):
        the first tasks go alone, then all the others at once (a large
        cluster is kept busy), tiny ones in batches that spare each Dask's
        few milliseconds of overhead. Tasks pinned with ``Task.where`` always
        go alone.

        A task whose worker died more often than Dask's ``allowed-failures``
        comes back as a :class:`LostTask`. When workers die with the only
        copies of the shared data, its tasks are cancelled by Dask: the data is
        scattered again and the tasks resubmitted (a bounded number of times).
        Tasks that were on a dying worker are run again one at a time (the
        others go on), and only deaths alone count against a task, so that a
        task which kills its worker does not take its batch-mates with it.
        """
        distributed = _distributed()
        run_id = os.urandom(4).hex()
        batches = Batches(tasks, self.n_workers)
        pending = {}
        counter = [0]

        def submit(unit, pinned=True):
            counter[0] += 1
            future = self._submit_unit(func, unit, f"parml-{run_id}-{counter[0]}", pinned)
            pending[future] = unit
            return future

        def refill(stream):
            while batches.may_send(len(pending)):
                stream.add(submit(batches.next_unit()))

        # Tasks that were on a worker when it died run again one at a time,
        # so that the one that kills its worker takes no other with it twice.
        suspects, on_trial = deque(), []

        def try_next_suspect(stream):
            if suspects and not on_trial:
                on_trial.append(submit([suspects.popleft()], pinned=False))
                stream.add(on_trial[0])

        stream = distributed.as_completed([])
        refill(stream)
        resubmits, killed = 0, {}
        try:
            for future in stream:
                unit = pending.pop(future)
                if on_trial and future is on_trial[0]:
                    on_trial.clear()
                    try_next_suspect(stream)
                error = None
                if future.status == "finished":
                    try:
                        value = future.result()
                    except Exception as exc:  # the state changed since
                        error = exc
                    else:
                        for result in (value if len(unit) > 1 else [value]):
                            batches.record(result)
                            yield result
                        refill(stream)
                        continue
                elif future.status == "error":
                    error = future.exception()
                if _is_lost(error):
                    error = None
                if error is not None and type(error).__name__ != "KilledWorker":
                    raise error  # a Python error in a task: never retried
                if error is None:
                    # cancelled or lost with the workers that held its inputs
                    if resubmits >= MAX_RESUBMITS:
                        raise RuntimeError(f"Tasks {[t.key for t in unit]!r} were cancelled "
                                           f"by Dask {MAX_RESUBMITS} times; giving up.")
                    self._rescatter_lost()
                    again = unit
                else:
                    # Dask marks every task queued on a dying worker, so the
                    # innocent ones are run again; the one that kills its
                    # worker fails again, up to max_retries times. A batch
                    # cannot say which of its tasks did it: they are all run
                    # again alone, and only a death alone counts.
                    again = []
                    for task in unit:
                        if len(unit) == 1:
                            killed[id(task)] = killed.get(id(task), 0) + 1
                        if killed.get(id(task), 0) > self.max_retries:
                            yield LostTask(task=task, reason=f"KilledWorker: {error}",
                                           attempts=killed[id(task)])
                        else:
                            again.append(task)
                    self._rescatter_lost()  # the shared data may have been killed too
                    suspects.extend(again)
                    try_next_suspect(stream)
                    refill(stream)
                    continue
                for task in again:  # one by one, unpinned: its worker may be the dead one
                    resubmits += 1
                    stream.add(submit([task], pinned=False))
                refill(stream)
        finally:
            batches.clear()
            if pending:
                self.client.cancel(list(pending))

    def close(self):
        """Release the scattered data; close the client if this engine opened it."""
        for futures in self._shared:
            scattered = [f for f in futures.values() if hasattr(f, "key")]
            if scattered:
                self.client.cancel(scattered)
        self._shared, self._originals = [], []
        if self._owned:
            self.client.close()


def _is_lost(error):
    """Whether ``error`` says a task was cancelled or lost, not that it failed."""
    return error is not None and type(error).__name__ in (
        "CancelledError", "FutureCancelledError", "FuturesCancelledError")


def _identity(value):
    return value


def _run_batch(func, tasks, kwargs_list):
    """On a worker: run a batch of tasks one after the other; their results, in order.

    BLAS threads are limited once for the batch (threadpoolctl looks up the
    loaded libraries each time, which costs more than a tiny fit).
    """
    with _blas_limit():
        return [func(_with_kwargs(task, kwargs)) for task, kwargs in zip(tasks, kwargs_list)]


def _run_with_shared(func, task, kwargs):
    """On a worker: give the task its kwargs (shared data resolved), limit BLAS, run."""
    with _blas_limit():
        return func(_with_kwargs(task, kwargs))


def _with_kwargs(task, kwargs):
    return type(task)(key=task.key, func=task.func, kwargs=kwargs, cache_key=task.cache_key)


def _blas_limit():
    """BLAS threads for one task: the worker's cores shared by its threads."""
    try:
        nthreads = _distributed().get_worker().state.nthreads
    except (ValueError, AttributeError):
        nthreads = 1
    return threadpool_limits(limits=max(1, (os.cpu_count() or 1) // nthreads))
