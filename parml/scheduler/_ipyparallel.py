"""The ipyparallel engine: tasks on an IPython cluster (``pip install "parml[ipyparallel]"``).

Shared data is pushed to every engine once per run (``DirectView.push``)
under a name unique to the run; tasks carry placeholders that the engine-side
wrapper resolves from that name (an ``ipyparallel.Reference``). Tasks go to a
load-balanced view, all at once after a first few (every engine of a large
cluster stays busy), tiny ones in batches so they do not each pay the
engine's overhead; results stream back as they finish. A Python error raised
by a task is raised with its own type, never retried.

Engines die, hang or lag; every wait here is bounded:

- The calls made to every engine (asking each its host and cores when the
  engine starts, pushing the shared data, deleting it at the end) drop
  the engines that die during the call or do not answer (:data:`REPLY_TIMEOUT`,
  :data:`REPLY_GRACE`) and carry on with the others; only a cluster left
  without an answering engine for :data:`WORKER_TIMEOUT` seconds is an error.
- A task whose engine died (``EngineError``) is resubmitted to the remaining
  engines up to ``max_retries`` times before it is given up as a
  :class:`~._tasks.LostTask`.
- When a unit starts on an engine is known from the engine's first IOPub
  message about it (its "busy" status, sent when the engine takes the task
  up), which sets the engine id in the client's metadata of the task; the run
  looks every :data:`~._ipyparallel_run.POLL_SECONDS`. From that (:mod:`._lateness`): with
  ``timeout=`` each task goes alone and one running past it is abandoned (its
  engine finishes it, the result is ignored); a unit running far longer than
  the others gets one speculative copy on another engine, the first to finish
  is kept; a run without progress says on the ``parml`` logger what it waits for.
- Stopping early (an error, Ctrl-C) aborts the queued tasks (``Client.abort``);
  fits already running on an engine finish there.
"""

import dataclasses
from functools import partial
import logging
import os
import pickle
import socket
import time
import traceback


from .._optional import import_optional
from ._engine_base import Placeholder, RemoteEngine, resolve, run_unit
from ._worker_state import release

logger = logging.getLogger("parml")

#: Seconds to wait for a cluster that has no engine before giving up.
WORKER_TIMEOUT = 30.0
#: Seconds to wait for the first answer of the engines to a call made to all of them.
REPLY_TIMEOUT = 60.0
#: Once one engine answered, the others are left out after this many seconds
#: plus twice what the first answer took, without a further answer.
REPLY_GRACE = 5.0
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


class RemoteTraceback(Exception):
    """The traceback of an error raised on an engine (the cause of the re-raised error)."""

    def __str__(self):
        return "\n" + self.args[0]


class _Raised:
    """What the engine-side wrapper returns for a task that raised."""

    def __init__(self, error, text):
        self.error = error
        self.text = text


class IPyParallelEngine(RemoteEngine):
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
        given up as a :class:`~._tasks.LostTask`.

    Attributes
    ----------
    timeout : float or None
        Seconds a task may run on an engine before it is abandoned (set by
        the :class:`~._run.Scheduler`); the engine itself is left alone.
    """

    #: Tasks run in other processes, maybe on other machines: ``timeout``
    #: abandons a task, it does not stop it.
    remote = True
    supports_timeout = True

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
        self.timeout = None
        self._shared = {}  # pushed name -> the dict of values (for late engines)
        self._pushed_to = set()  # engines sent a push: cleaned on close
        self._finished = []  # msg ids of this engine's tasks, purged on close
        self._abandoned = []  # AsyncResults given up while they may still run
        self._left_out = set()  # engines that died or did not answer a call
        self._limits = {}  # host -> BLAS threads per task
        self._pids = {}  # engine -> pid, for the engines on this host
        self._dead = set()  # engines of this host seen dead
        try:
            self._targets = self._wait_for_engines()
            self._start_up()
        except BaseException:
            self._close_client()
            raise

    # -- engines that answer ----------------------------------------------------

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

    def _start_up(self):
        """Ask every engine its host and cores; the engines that answer are the targets."""
        hosts = self._on_engines(lambda view: view.apply_async(_host_and_cores),
                                 self._targets, "its host and cores")
        self._limits.update(_limits_of(hosts.values()))
        self._note_pids(hosts)
        self._targets = sorted(hosts)

    def _blas_limits(self, targets):
        """BLAS threads per task on the hosts of ``targets``: its cores over its engines.

        Engines that die or stay silent meanwhile are left out; returns the
        engines that answered (their hosts' limits are added).
        """
        hosts, _ = self._ask(lambda view: view.apply_async(_host_and_cores), targets,
                             "its host and cores")
        self._limits.update(_limits_of(hosts.values()))
        self._note_pids(hosts)
        return sorted(hosts)

    def _note_pids(self, hosts):
        here = socket.gethostname()
        self._pids.update({engine: pid for engine, (host, _, pid) in hosts.items()
                           if host == here})

    def _dead_here(self):
        """Engines on this host whose process has exited: left out at once.

        The controller notices a dead engine by missed heartbeats, seconds
        later; a process of this host is seen gone within a poll.
        """
        dead = {engine for engine, pid in self._pids.items()
                if engine not in self._left_out and not _process_alive(pid)}
        self._left_out |= dead
        self._dead |= dead
        return dead

    def _on_engines(self, call, targets, what):
        """``call(view)`` on each engine of ``targets``; the answers of the engines alive.

        When none of them answers, the engines that join within
        :data:`WORKER_TIMEOUT` seconds are asked instead; none at all is an error.
        """
        deadline = time.monotonic() + WORKER_TIMEOUT
        while True:
            answers, _ = self._ask(call, targets, what)
            if answers:
                return answers
            targets = self._other_engines(deadline, what)

    def _ask(self, call, targets, what):
        """``call(view)`` on each engine of ``targets`` at once; (answers, engines lost).

        An engine that dies during the call (or is already unknown to the
        client) or that does not answer in time (:func:`_wait_for_replies`)
        is lost: left out of this engine's runs. Other errors are raised.
        """
        ipp = _ipyparallel()
        results, lost = {}, set()
        for engine in targets:
            try:
                results[engine] = call(self.client[engine])
            except (IndexError, KeyError, ipp.error.NoEnginesRegistered):
                lost.add(engine)  # unregistered since the targets were known
        silent = _wait_for_replies(results)
        answers = {}
        for engine, result in results.items():
            if engine in silent:
                lost.add(engine)
                continue
            try:
                answers[engine] = result.get(timeout=0)
            except Exception as exc:
                if _engine_failure(exc) is None:
                    raise
                lost.add(engine)
        if lost:
            self._left_out |= lost
            logger.warning("parml: ipyparallel engine(s) %s left out: they died, or did not "
                           "answer, while asked for %s (%s silent).", sorted(lost), what,
                           sorted(silent) or "none")
        return answers, lost

    def _other_engines(self, deadline, what):
        """Engines not yet left out, as soon as there are some; RuntimeError at ``deadline``."""
        while True:
            others = sorted(set(self.client.ids) - self._left_out)
            if others:
                return others
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"The ipyparallel cluster has no engine left after {WORKER_TIMEOUT:g} s: "
                    f"engines {sorted(self._left_out)} died or did not answer while asked "
                    f"for {what}. Start engines with: ipcluster start -n 4 (a new "
                    "cluster), or ipcluster engines -n 4 (engines for a running controller)."
                )
            time.sleep(0.1)

    @property
    def n_workers(self):
        """Engines the tasks go to: how many tasks run at once."""
        return len(self._targets) or 1

    def worker_ids(self):
        """Engine ids the tasks go to, usable as ``Task.where``."""
        return sorted(self._targets)

    # -- data -------------------------------------------------------------------

    def share(self, data):
        """Push the values of ``data`` (a dict) to every engine, once.

        Returns a dict of placeholders that tasks carry; each engine resolves
        them from its own namespace. Engines that die or stay silent during
        the push are left out of the runs.
        """
        if not isinstance(data, dict):
            data = {"data": data}
        name = f"_parml_shared_{os.urandom(6).hex()}"
        before = set(self._targets)

        def push(view):
            # an engine that joined because all others died gets all the data
            values = {name: data} if view.targets in before else {**self._shared, name: data}
            self._pushed_to.add(view.targets)
            return view.push(values, block=False)

        pushed = self._on_engines(push, self._targets, "the shared data")
        self._shared[name] = data
        newcomers = sorted(set(pushed) - before)
        self._targets = sorted(set(pushed) - set(newcomers))
        if newcomers:
            self._targets = sorted(set(self._targets) | set(self._blas_limits(newcomers)))
        return {key: Placeholder(name, key) for key in data}

    def _refresh_targets(self):
        """Drop dead engines; push the shared data to engines that joined since.

        With no engine left, waits up to :data:`WORKER_TIMEOUT` seconds for one.
        """
        deadline = time.monotonic() + WORKER_TIMEOUT
        while True:
            alive = set(self.client.ids) - self._left_out
            kept = alive & set(self._targets)
            new = sorted(alive - kept)
            if new:
                kept |= set(self._welcome(new))
            if kept:
                self._targets = sorted(kept)
                return
            self._other_engines(deadline, "engines to run the tasks on")

    def _welcome(self, engines):
        """Push the shared data to ``engines`` and learn their hosts; those that took it."""
        if self._shared:
            shared = dict(self._shared)

            def push(view):
                self._pushed_to.add(view.targets)
                return view.push(shared, block=False)

            engines = sorted(self._ask(push, engines, "the shared data")[0])
        return self._blas_limits(engines) if engines else []

    def _live_targets(self):
        """The engines to send tasks to: without those the client knows have died,
        with those that joined since (they are sent the shared data first)."""
        ids = set(self.client.ids)
        if not set(self._targets) <= ids or ids - self._left_out - set(self._targets):
            self._refresh_targets()
        return self._targets

    def _gone(self):
        """Engines that died: targets the client no longer knows, and those seen dead here."""
        return (set(self._targets) - set(self.client.ids)) | self._dead

    def _busy_engines(self):
        """Engines still running a unit given up on (a timeout, a beaten copy)."""
        self._abandoned = [r for r in self._abandoned if not r.ready()]
        metadata = self.client.metadata
        busy = {metadata[_msg_id(r)]["engine_id"] for r in self._abandoned
                if _msg_id(r) in metadata}
        return busy - {None}

    # -- tasks ------------------------------------------------------------------

    def _submit_unit(self, func, unit, pinned=True, targets=None):
        """Submit one task, or a batch of tasks run one after the other on one engine.

        ``targets`` restricts the engines it may go to (default: the live
        ones); a task with ``where`` goes to that engine unless ``pinned`` is
        False (a retried task: its engine may be the one that died).
        """
        ipp = _ipyparallel()
        if len(unit) == 1 and unit[0].where is not None and pinned:
            if unit[0].where not in self._targets:
                raise ValueError(f"Task {unit[0].key!r} has where={unit[0].where!r}, which "
                                 f"is not an engine id of this cluster: {self._targets}.")
            targets = [unit[0].where]
        elif targets is None:
            targets = self._live_targets()
        bares = [dataclasses.replace(task, on_lost=None, where=None) for task in unit]
        names = sorted(self._shared)
        references = [ipp.Reference(name) for name in names]
        view = self.client.load_balanced_view(targets=targets)
        if len(unit) == 1:
            return view.apply_async(_run_with_shared, func, bares[0], self._limits, names,
                                    *references)
        return view.apply_async(_run_batch, func, bares, self._limits, names, *references)

    def map_unordered(self, func, tasks):
        """Run every task; yield ``func(task)`` results as they finish.

        Dispatch adapts to the tasks' length (:class:`~._batching.Batches`):
        the first tasks go alone, then all the others at once, tiny ones in
        batches that spare each the engine's few milliseconds of overhead
        (with :attr:`timeout` set, every task goes alone). A task whose engine
        died more than ``max_retries`` times, or that ran past
        :attr:`timeout`, comes back as a :class:`~._tasks.LostTask` (the tasks of a
        batch lost with its engine are retried one by one); an error raised
        by the task is raised here. See :class:`~._ipyparallel_run.IPyParallelRun`.
        """
        from ._ipyparallel_run import IPyParallelRun

        yield from IPyParallelRun(self, func, tasks)

    def release_state(self, token):
        """Drop the state kept for the fit ``token`` on every engine (not waited for)."""
        engines = list(self.client.ids)
        if engines:
            self.client[engines].apply_async(release, token)

    def close(self):
        """Delete the pushed data from the engines; close the client if opened here.

        Best effort and bounded: engines that died meanwhile, or a controller
        that is gone, do not turn the end of a run into an error; an engine
        still running a task given up on deletes the data once it is done.
        """
        try:
            engines = sorted(self._pushed_to & set(self.client.ids))
            if self._shared and engines:
                self._delete_shared(engines)
            if self._finished:
                # the client's copies; the hub's are culled by its own size limit
                self.client.purge_local_results(jobs=self._finished)
        except (ipyparallel_errors(), OSError, RuntimeError, IndexError, KeyError):
            pass
        finally:
            self._shared, self._finished, self._pushed_to = {}, [], set()
            self._close_client()

    def _delete_shared(self, engines):
        code = "; ".join(f"globals().pop({name!r}, None)" for name in self._shared)
        busy = self._busy_engines()
        later = [engine for engine in engines if engine in busy]
        if later:  # queued behind the task they still run: not waited for
            self.client[later].execute(code, block=False)
        results = {engine: self.client[engine].execute(code, block=False)
                   for engine in engines if engine not in busy}
        _wait_for_replies(results)

    def _close_client(self):
        if self._owned:
            self.client.close()


def _limits_of(hosts):
    """BLAS threads per task on each host of ``hosts`` (``(host, cores, pid)`` per engine)."""
    hosts = list(hosts)
    count = {}
    for host, *_ in hosts:
        count[host] = count.get(host, 0) + 1
    return {host: max(1, cores // count[host]) for host, cores, *_ in hosts}


def _wait_for_replies(results):
    """Wait for the AsyncResults ``results`` (a dict); the keys of those still silent.

    Gives up after :data:`REPLY_TIMEOUT` seconds without any answer, or,
    once one answered, after :data:`REPLY_GRACE` plus twice what the first
    answer took without a further answer (a busy or hung engine does not hold
    the others up; a slow upload to many engines keeps answering).
    """
    start = last = time.monotonic()
    quiet_limit, n_ready = REPLY_TIMEOUT, 0
    while True:
        waiting = [key for key, result in results.items() if not result.ready()]
        now = time.monotonic()
        if not waiting:
            return set()
        if len(results) - len(waiting) > n_ready:
            if n_ready == 0:
                quiet_limit = REPLY_GRACE + 2 * (now - start)
            n_ready, last = len(results) - len(waiting), now
        if now - last >= quiet_limit:
            return set(waiting)
        results[waiting[0]].wait(min(0.1, last + quiet_limit - now))


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


def _msg_id(result):
    """The message id of the one task of the AsyncResult ``result``."""
    return result.msg_ids[0]


def _engine_failure(error):
    """``"EngineError"`` when the task's engine died while running it,
    ``"ImpossibleDependency"`` when every engine it could run on died before it
    started, None when ``error`` is not about engines."""
    for name in ("EngineError", "ImpossibleDependency"):
        if type(error).__name__ == name or getattr(error, "ename", None) == name:
            return name
    return None


def _host_and_cores():
    return socket.gethostname(), os.cpu_count() or 1, os.getpid()


def _process_alive(pid):
    """Whether process ``pid`` of this host runs (an exited child not yet reaped does not)."""
    import psutil  # an ipyparallel dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _run_with_shared(func, task, limits, names, *values):
    """On an engine: resolve the shared data, limit BLAS, run; capture a raised error."""
    return _run_batch(func, [task], limits, names, *values)[0]


def _run_batch(func, tasks, limits, names, *values):
    """On an engine: run a batch of tasks in turn (BLAS limited once); their results."""
    shared = dict(zip(names, values))
    return run_unit(partial(_run_one, func, shared=shared), tasks,
                    limits.get(socket.gethostname(), 1))


def _run_one(func, task, shared):
    kwargs = resolve(task.kwargs, lambda placeholder: shared[placeholder.slot][placeholder.name])
    return captured(func, dataclasses.replace(task, kwargs=kwargs))


def captured(call, *args):
    """On an engine: ``call(*args)``, or a :class:`_Raised` holding the error it raised.

    An error that does not pickle travels as a RuntimeError with its text.
    """
    try:
        return call(*args)
    except Exception as exc:
        text = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return _Raised(exc, text)
