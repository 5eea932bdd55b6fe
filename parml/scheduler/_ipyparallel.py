"""The ipyparallel engine: tasks on an IPython cluster (``pip install "parml[ipyparallel]"``).

Shared data is pushed to every engine once per run (``DirectView.push``)
under a name unique to the run; tasks carry placeholders that the engine-side
wrapper resolves from that name (an ``ipyparallel.Reference``). Tasks go to a
load-balanced view, all at once after a first few (every engine of a large
cluster stays busy), tiny ones in batches so they do not each pay the
engine's overhead; results stream back as they finish. A task whose engine died
(``EngineError``) is resubmitted to the remaining engines up to
``max_retries`` times before it is given up as a :class:`LostTask`; a Python
error raised by a task is raised with its own type, never retried. Stopping
early (an error, Ctrl-C) aborts the queued tasks (``Client.abort``); fits
already running on an engine finish there.
"""

import dataclasses
import os
import pickle
import queue
import socket
import traceback

from threadpoolctl import threadpool_limits

from .._optional import import_optional
from ._batching import Batches
from ._tasks import LostTask

#: Seconds to wait for a cluster that has no engine before giving up.
WORKER_TIMEOUT = 30.0
#: Resubmissions of tasks stranded or lost by engine deaths, in one run.
MAX_RESUBMITS = 100
#: The string forms of ``backend=`` (documented in check_backend's error).
_PREFIX = "ipyparallel"


def _ipyparallel():
    return import_optional("ipyparallel", extra="ipyparallel",
                           purpose="The ipyparallel engine")


def is_ipyparallel_backend(backend):
    """Whether ``backend`` names the ipyparallel engine (without importing it)."""
    if isinstance(backend, str):
        return backend == _PREFIX or backend.startswith(_PREFIX + ":")
    module = type(backend).__module__ or ""
    return module.startswith("ipyparallel") and type(backend).__name__ == "Client"


def client_kwargs(backend):
    """``ipyparallel.Client`` arguments for a string ``backend``; ValueError if malformed.

    ``"ipyparallel"``: the default profile's cluster. ``"ipyparallel:<profile>"``:
    that profile's cluster. ``"ipyparallel:<profile>:<cluster_id>"``: a cluster
    started with ``--cluster-id`` (or from Python). ``"ipyparallel:<path>.json"``:
    the client connection file ``ipcontroller-client.json`` of a cluster.
    """
    if backend == _PREFIX:
        return {}
    spec = backend[len(_PREFIX) + 1:]
    if spec.endswith(".json"):
        return {"connection_info": os.path.expanduser(spec)}
    parts = spec.split(":")
    if len(parts) > 2 or not all(parts):
        raise ValueError(
            f"The 'backend' parameter {backend!r} is not a valid ipyparallel form. "
            "Use 'ipyparallel' (the default profile's cluster), "
            "'ipyparallel:<profile>', 'ipyparallel:<profile>:<cluster_id>' or "
            "'ipyparallel:<path to ipcontroller-client.json>'."
        )
    kwargs = {"profile": parts[0]}
    if len(parts) == 2:
        kwargs["cluster_id"] = parts[1]
    return kwargs


class _Shared:
    """A placeholder for one value pushed by an :class:`IPyParallelEngine`."""

    def __init__(self, name, key):
        self.name = name
        self.key = key


class RemoteTraceback(Exception):
    """The traceback of an error raised on an engine (the cause of the re-raised error)."""

    def __str__(self):
        return "\n" + self.args[0]


class _Raised:
    """What the engine-side wrapper returns for a task that raised."""

    def __init__(self, error, text):
        self.error = error
        self.text = text


class IPyParallelEngine:
    """Runs tasks on the engines of an ipyparallel cluster.

    Parameters
    ----------
    backend : str or ipyparallel.Client, default="ipyparallel"
        A live ``Client`` is used as is. A string (see :func:`client_kwargs`)
        connects a client for the run and closes it after.
    n_jobs : int or None
        Ignored: the cluster's engines decide the parallelism.
    pre_dispatch : ignored
        All tasks are submitted at once; ipyparallel's task scheduler hands
        them to engines as they become free.
    max_retries : int, default=2
        How many times a task whose engine died is resubmitted before it is
        given up as a :class:`LostTask`.
    """

    uses_processes = False
    uses_threads = False
    supports_timeout = False

    def __init__(self, backend=_PREFIX, n_jobs=None, pre_dispatch=None, max_retries=2):
        ipp = _ipyparallel()
        self._owned = isinstance(backend, str)
        if self._owned:
            kwargs = client_kwargs(backend)
            try:
                self.client = ipp.Client(**kwargs)
            except (OSError, ipp.error.TimeoutError) as exc:
                raise RuntimeError(
                    f"backend={backend!r}: no running ipyparallel cluster was found "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Start one "
                    f"with: ipcluster start -n 4{_profile_flags(kwargs)}"
                ) from exc
        else:
            self.client = backend
        self.max_retries = max_retries
        self._shared = {}  # pushed name -> the dict of values (for late engines)
        self._finished = []  # msg ids of this engine's tasks, purged on close
        try:
            self._targets = self._wait_for_engines()
            self._limits = self._blas_limits(self._targets)
        except BaseException:
            self._close_client()
            raise

    def _wait_for_engines(self):
        try:
            self.client.wait_for_engines(1, timeout=WORKER_TIMEOUT, interactive=False)
        except (TimeoutError, OSError) as exc:
            raise RuntimeError(
                f"The ipyparallel cluster has no engine after {WORKER_TIMEOUT:g} s. "
                "Start engines with: ipcluster start -n 4 (a new cluster), or "
                "ipcluster engines -n 4 (engines for a running controller)."
            ) from exc
        return sorted(self.client.ids)

    def _blas_limits(self, targets):
        """BLAS threads per task on each host: its cores over its engines."""
        hosts = self.client[targets].apply_sync(_host_and_cores)
        count = {}
        for host, _ in hosts:
            count[host] = count.get(host, 0) + 1
        return {host: max(1, cores // count[host]) for host, cores in hosts}

    @property
    def n_workers(self):
        """Engines of the cluster: how many tasks run at once."""
        return len(self.client.ids) or 1

    def worker_ids(self):
        """Engine ids of the cluster, usable as ``Task.where``."""
        return sorted(self.client.ids)

    def share(self, data):
        """Push the values of ``data`` (a dict) to every engine, once.

        Returns a dict of placeholders that tasks carry; each engine resolves
        them from its own namespace.
        """
        if not isinstance(data, dict):
            data = {"data": data}
        name = f"_parml_shared_{os.urandom(6).hex()}"
        self.client[self._targets].push({name: data}, block=True)
        self._shared[name] = data
        return {key: _Shared(name, key) for key in data}

    def _refresh_targets(self):
        """Drop dead engines; push the shared data to engines that joined since."""
        alive = set(self.client.ids)
        if not alive:
            alive = set(self._wait_for_engines())
        new = sorted(alive - set(self._targets))
        if new:
            if self._shared:
                self.client[new].push(self._shared, block=True)
            self._limits.update(self._blas_limits(new))
        self._targets = sorted(alive)

    def _live_targets(self):
        """The engines to send tasks to, without those the client knows have died."""
        if not set(self._targets) <= set(self.client.ids):
            self._refresh_targets()
        return self._targets

    def _submit(self, func, task, pinned=True):
        ipp = _ipyparallel()
        # A retried task is not pinned: its engine may be the one that died.
        if task.where is not None and pinned:
            if task.where not in self._targets:
                raise ValueError(f"Task {task.key!r} has where={task.where!r}, which is "
                                 f"not an engine id of this cluster: {self._targets}.")
            targets = [task.where]
        else:
            targets = self._live_targets()
        bare = dataclasses.replace(task, on_lost=None, where=None)
        names = sorted(self._shared)
        view = self.client.load_balanced_view(targets=targets)
        return view.apply_async(_run_with_shared, func, bare, self._limits, names,
                                *[ipp.Reference(name) for name in names])

    def _submit_unit(self, func, unit, pinned=True):
        """Submit one task, or a batch of tasks run one after the other on one engine."""
        if len(unit) == 1:
            return self._submit(func, unit[0], pinned=pinned)
        ipp = _ipyparallel()
        bares = [dataclasses.replace(task, on_lost=None, where=None) for task in unit]
        names = sorted(self._shared)
        view = self.client.load_balanced_view(targets=self._live_targets())
        return view.apply_async(_run_batch, func, bares, self._limits, names,
                                *[ipp.Reference(name) for name in names])

    def map_unordered(self, func, tasks):
        """Run every task; yield ``func(task)`` results as they finish.

        Dispatch adapts to the tasks' length (:class:`~._batching.Batches`):
        the first tasks go alone, then all the others at once, tiny ones in
        batches that spare each the engine's few milliseconds of overhead. A
        task whose engine died more than ``max_retries`` times comes back as
        a :class:`LostTask` (the tasks of a batch lost with its engine are
        retried one by one); an error raised by the task is raised here.
        """
        pending, finished = {}, queue.SimpleQueue()
        batches = Batches(tasks, self.n_workers)

        def submit(unit, pinned=True):
            result = self._submit_unit(func, unit, pinned=pinned)
            pending[result] = unit
            result.add_done_callback(finished.put)  # called in the client's thread

        def refill():
            while batches.may_send(len(pending)):
                submit(batches.next_unit())

        refill()
        deaths, resubmits = {}, 0
        try:
            while pending:
                result = _next(finished)
                unit = pending.pop(result)
                self._finished.append(result.msg_id)
                try:
                    value = result.get()
                except Exception as exc:
                    cause = _engine_failure(exc)
                    if cause is None:
                        raise  # the wrapper itself failed, e.g. parml missing there
                    again = []
                    for task in unit:
                        # stranded tasks are innocent, and so may be the tasks
                        # of a batch: only a death alone counts
                        if cause == "EngineError" and len(unit) == 1:
                            deaths[id(task)] = deaths.get(id(task), 0) + 1
                            if deaths[id(task)] > self.max_retries:
                                yield LostTask(task=task, reason=f"EngineError: {exc}",
                                               attempts=deaths[id(task)])
                                continue
                        again.append(task)
                    resubmits += len(again)
                    if resubmits > MAX_RESUBMITS:
                        raise RuntimeError(f"Tasks were resubmitted after engine deaths "
                                           f"{MAX_RESUBMITS} times; giving up.") from exc
                    self._refresh_targets()
                    for task in again:  # one by one, unpinned: its engine may be dead
                        submit([task], pinned=False)
                    refill()
                    continue
                for item in (value if len(unit) > 1 else [value]):
                    if isinstance(item, _Raised):
                        raise item.error from RemoteTraceback(item.text)
                    batches.record(item)
                    yield item
                refill()
        finally:
            batches.clear()
            if pending:
                try:
                    self.client.abort(list(pending))
                except (OSError, RuntimeError, ipyparallel_errors()):  # controller gone
                    pass

    def close(self):
        """Delete the pushed data from the engines; close the client if opened here.

        Best effort: engines that died meanwhile, or a controller that is
        gone, do not turn the end of a run into an error.
        """
        try:
            alive = sorted(set(self._targets) & set(self.client.ids))
            if self._shared and alive:
                code = "; ".join(f"globals().pop({name!r}, None)" for name in self._shared)
                self.client[alive].execute(code, block=True)
            if self._finished:
                # the client's copies; the hub's are culled by its own size limit
                self.client.purge_local_results(jobs=self._finished)
        except (ipyparallel_errors(), OSError, RuntimeError):
            pass
        finally:
            self._shared, self._finished = {}, []
            self._close_client()

    def _close_client(self):
        if self._owned:
            self.client.close()


def _profile_flags(kwargs):
    flags = ""
    if "profile" in kwargs:
        flags += f" --profile={kwargs['profile']}"
    if "cluster_id" in kwargs:
        flags += f" --cluster-id={kwargs['cluster_id']}"
    return flags


def ipyparallel_errors():
    """The base class of ipyparallel's errors."""
    return _ipyparallel().error.IPythonError


def _next(finished):
    """The next finished AsyncResult; waits in short steps so Ctrl-C gets through."""
    while True:
        try:
            return finished.get(timeout=1.0)
        except queue.Empty:
            pass


def _engine_failure(error):
    """``"EngineError"`` when the task's engine died while running it,
    ``"ImpossibleDependency"`` when every engine it could run on died before it
    started, None when ``error`` is not about engines."""
    for name in ("EngineError", "ImpossibleDependency"):
        if type(error).__name__ == name or getattr(error, "ename", None) == name:
            return name
    return None


def _host_and_cores():
    return socket.gethostname(), os.cpu_count() or 1


def _resolve(value, shared):
    """``value`` with placeholders swapped for the pushed values (in dicts, lists)."""
    if isinstance(value, _Shared):
        return shared[value.name][value.key]
    if isinstance(value, dict):
        return {k: _resolve(v, shared) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, shared) for v in value)
    return value


def _run_with_shared(func, task, limits, names, *values):
    """On an engine: resolve the shared data, limit BLAS, run; capture a raised error."""
    with threadpool_limits(limits=limits.get(socket.gethostname(), 1)):
        return _run_one(func, task, dict(zip(names, values)))


def _run_batch(func, tasks, limits, names, *values):
    """On an engine: run a batch of tasks in turn (BLAS limited once); their results."""
    shared = dict(zip(names, values))
    with threadpool_limits(limits=limits.get(socket.gethostname(), 1)):
        return [_run_one(func, task, shared) for task in tasks]


def _run_one(func, task, shared):
    task = dataclasses.replace(task, kwargs=_resolve(task.kwargs, shared))
    try:
        return func(task)
    except Exception as exc:
        text = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return _Raised(exc, text)
