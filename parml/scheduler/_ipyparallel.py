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
  :class:`LostTask`.
- When a unit starts on an engine is known from the engine's first IOPub
  message about it (its "busy" status, sent when the engine takes the task
  up), which sets the engine id in the client's metadata of the task; the run
  looks every :data:`POLL_SECONDS`. From that (:mod:`._lateness`): with
  ``timeout=`` each task goes alone and one running past it is abandoned (its
  engine finishes it, the result is ignored); a unit running far longer than
  the others gets one speculative copy on another engine, the first to finish
  is kept; a run without progress says on the ``parml`` logger what it waits for.
- Stopping early (an error, Ctrl-C) aborts the queued tasks (``Client.abort``);
  fits already running on an engine finish there.
"""

import dataclasses
import logging
import os
import pickle
import queue
import socket
import time
import traceback
from typing import Any, Optional

from threadpoolctl import threadpool_limits

from .._optional import import_optional
from ._batching import Batches
from ._lateness import Lateness, StallReport, describe_waits
from ._tasks import LostTask

logger = logging.getLogger("parml")

#: Seconds to wait for a cluster that has no engine before giving up.
WORKER_TIMEOUT = 30.0
#: Seconds to wait for the first answer of the engines to a call made to all of them.
REPLY_TIMEOUT = 60.0
#: Once one engine answered, the others are left out after this many seconds
#: plus twice what the first answer took, without a further answer.
REPLY_GRACE = 5.0
#: Resubmissions of tasks stranded or lost by engine deaths, in one run.
MAX_RESUBMITS = 100
#: Seconds between two looks at the units in flight (starts, timeouts, copies).
POLL_SECONDS = 0.5
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

    Attributes
    ----------
    timeout : float or None
        Seconds a task may run on an engine before it is abandoned (set by
        the :class:`~._run.Scheduler`); the engine itself is left alone.
    """

    uses_processes = False
    uses_threads = False
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
        self._targets = sorted(hosts)

    def _blas_limits(self, targets):
        """BLAS threads per task on the hosts of ``targets``: its cores over its engines.

        Engines that die or stay silent meanwhile are left out; returns the
        engines that answered (their hosts' limits are added).
        """
        hosts, _ = self._ask(lambda view: view.apply_async(_host_and_cores), targets,
                             "its host and cores")
        self._limits.update(_limits_of(hosts.values()))
        return sorted(hosts)

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
        return {key: _Shared(name, key) for key in data}

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
        """The engines to send tasks to, without those the client knows have died."""
        if not set(self._targets) <= set(self.client.ids):
            self._refresh_targets()
        return self._targets

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
        :attr:`timeout`, comes back as a :class:`LostTask` (the tasks of a
        batch lost with its engine are retried one by one); an error raised
        by the task is raised here. See :class:`_Run`.
        """
        yield from _Run(self, func, tasks)

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
    """BLAS threads per task on each host of ``hosts`` (``(host, cores)`` per engine)."""
    hosts = list(hosts)
    count = {}
    for host, _ in hosts:
        count[host] = count.get(host, 0) + 1
    return {host: max(1, cores // count[host]) for host, cores in hosts}


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


@dataclasses.dataclass(eq=False)
class _Unit:
    """Tasks sent as one ipyparallel task, and what is known of where they run."""

    tasks: list
    result: Any  # its AsyncResult
    started: Optional[float] = None  # time.monotonic() when seen starting
    engine: Optional[int] = None
    twin: Optional["_Unit"] = None  # the speculative copy of this unit, or its original
    copy: bool = False


class _Singles(Batches):
    """Units of one task each: with ``timeout=`` a task is abandoned alone."""

    def size(self):
        return 1


class _Run:
    """One ``map_unordered`` run: yields results (and LostTasks) as they finish.

    Each unit's start is seen in the client's metadata of its task (the
    engine id, set by the engine's first IOPub message about it, its "busy"
    status). Every :data:`POLL_SECONDS` the run looks at the units in flight
    (:mod:`._lateness`): a task past ``engine.timeout`` is abandoned, a unit
    far later than the others gets one copy on another engine, a stall is
    reported. A unit given up on is aborted (harmless if it already runs: its
    engine finishes it) and its late result ignored; a task is yielded once.

    Parameters
    ----------
    engine : IPyParallelEngine
        Submits units; holds ``max_retries`` and ``timeout``.
    func : callable
        ``func(task)`` runs on the engines (:func:`~._tasks.execute`).
    tasks : iterable of Task
    """

    def __init__(self, engine, func, tasks):
        self.engine, self.client, self.func = engine, engine.client, func
        self.lateness = Lateness(getattr(engine, "timeout", None))
        kind = Batches if self.lateness.timeout is None else _Singles
        self.batches = kind(tasks, engine.n_workers)
        self.pending = {}  # msg id -> _Unit
        self.finished = queue.SimpleQueue()
        self.done, self.deaths = set(), {}  # ids of the tasks yielded; deaths per task
        self.n_resubmits = 0
        self.stall = StallReport(time.monotonic())
        self.last_look = float("-inf")
        self.hogged_since = None

    def __iter__(self):
        try:
            self._refill()
            while self.pending:
                unit = _next(self.finished)
                if unit is not None:
                    yield from self._on_done(unit)
                yield from self._watch()
                self._refill()
        finally:
            self.batches.clear()
            self._forget(*self.pending.values())

    # -- sending ----------------------------------------------------------------

    def _send(self, tasks, pinned=True, targets=None):
        result = self.engine._submit_unit(self.func, tasks, pinned=pinned, targets=targets)
        unit = _Unit(tasks=list(tasks), result=result)
        self.pending[_msg_id(result)] = unit
        result.add_done_callback(lambda _: self.finished.put(unit))  # the client's thread
        return unit

    def _refill(self):
        while self.batches.may_send(len(self.pending)):
            self._send(self.batches.next_unit())

    def _resend(self, tasks, error):
        self.n_resubmits += len(tasks)
        if self.n_resubmits > MAX_RESUBMITS:
            raise RuntimeError(f"Tasks were resubmitted after engine deaths {MAX_RESUBMITS} "
                               f"times; giving up. Waiting were: {[t.key for t in tasks]!r}."
                               ) from error
        self.engine._refresh_targets()
        for task in tasks:  # one by one, unpinned: its engine may be dead
            self._send([task], pinned=False)

    def _forget(self, *units):
        """Stop waiting for ``units``: abort them (they may run on to their end)."""
        results = []
        for unit in units:
            if unit is not None and self.pending.pop(_msg_id(unit.result), None) is not None:
                results.append(unit.result)
        if not results:
            return
        self.engine._abandoned.extend(results)
        try:
            self.client.abort(results, block=False)
        except (OSError, RuntimeError, IndexError, KeyError, ipyparallel_errors()):
            pass  # the controller or the engines are gone

    # -- results ----------------------------------------------------------------

    def _on_done(self, unit):
        self.engine._finished.append(_msg_id(unit.result))
        if self.pending.pop(_msg_id(unit.result), None) is None:
            return  # forgotten: timed out, a beaten twin, or the run stopped
        try:
            value = unit.result.get()
        except Exception as exc:
            cause = _engine_failure(exc)
            if cause is None:
                raise  # the wrapper itself failed, e.g. parml missing there
            yield from self._engine_lost(unit, cause, exc)
            return
        self._forget(unit.twin)
        yield from self._accept(unit, value)

    def _accept(self, unit, value):
        self.stall.progress(time.monotonic())
        for task, item in zip(unit.tasks, value if len(unit.tasks) > 1 else [value]):
            if id(task) in self.done:
                continue
            if isinstance(item, _Raised):
                raise item.error from RemoteTraceback(item.text)
            self.done.add(id(task))
            if hasattr(item, "start") and hasattr(item, "end"):
                self.lateness.record(item.end - item.start)
            self.batches.record(item)
            yield item

    def _engine_lost(self, unit, cause, error):
        """``unit`` failed with its engine(s): count a death alone, send the rest again."""
        twin = unit.twin
        if twin is not None and _msg_id(twin.result) in self.pending:
            twin.twin = None  # the other copy goes on
            return
        again = []
        for task in unit.tasks:
            if id(task) in self.done:
                continue
            # stranded tasks are innocent, and so may be the tasks of a
            # batch: only a death alone counts
            if cause == "EngineError" and len(unit.tasks) == 1:
                n = self.deaths[id(task)] = self.deaths.get(id(task), 0) + 1
                if n > self.engine.max_retries:
                    self.done.add(id(task))
                    yield LostTask(task=task, reason=f"EngineError: {error}", attempts=n)
                    continue
            again.append(task)
        self._resend(again, error)

    # -- the watch --------------------------------------------------------------

    def _watch(self):
        """Every :data:`POLL_SECONDS`: note starts, abandon, copy, report (LostTasks)."""
        now = time.monotonic()
        if now - self.last_look < POLL_SECONDS:
            return
        self.last_look = now
        self._note_starts(now)
        for unit in list(self.pending.values()):
            if unit.started is None or _msg_id(unit.result) not in self.pending:
                continue
            running = now - unit.started
            if len(unit.tasks) == 1 and self.lateness.timed_out(running):
                yield from self._time_out(unit)
            elif (unit.twin is None and not unit.copy
                  and self.lateness.is_late(running, len(unit.tasks))):
                self._speculate(unit, running)
        self._check_hogged(now)
        self._report_stall(now)

    def _note_starts(self, now):
        metadata = self.client.metadata
        for msg_id, unit in self.pending.items():
            if unit.started is None and msg_id in metadata:
                engine = metadata[msg_id]["engine_id"]
                if engine is not None:
                    unit.started, unit.engine = now, engine
                    self.stall.progress(now)

    def _time_out(self, unit):
        task = unit.tasks[0]
        self._forget(unit, unit.twin)
        if id(task) in self.done:
            return
        self.done.add(id(task))
        self.stall.progress(time.monotonic())
        logger.warning("parml: task %r ran longer than timeout=%s s on ipyparallel engine %s; "
                       "it is abandoned (the engine finishes it, its result is ignored).",
                       task.key, self.lateness.timeout, unit.engine)
        yield LostTask(task=task, reason=f"it ran longer than timeout={self.lateness.timeout} s",
                       attempts=1)

    def _speculate(self, unit, running):
        if any(task.where is not None for task in unit.tasks):
            return  # pinned to its engine
        others = [e for e in self.engine._live_targets() if e != unit.engine]
        if not others:
            return
        copy = self._send(unit.tasks, pinned=False, targets=others)
        copy.copy, unit.twin, copy.twin = True, copy, unit
        logger.warning("parml: tasks %r have run %.0f s on ipyparallel engine %s, much longer "
                       "than the others (median %.2f s); a copy runs on another engine and "
                       "the first to finish is kept.", [t.key for t in unit.tasks], running,
                       unit.engine, self.lateness.median())

    def _check_hogged(self, now):
        """Every live engine still runs a unit given up on, and units wait: bounded."""
        waiting = [u for u in self.pending.values() if u.started is None]
        busy = self.engine._busy_engines() if waiting else set()
        if not busy or not set(self.engine._live_targets()) <= busy:
            self.hogged_since = None
            return
        if self.hogged_since is None:
            self.hogged_since = now
        limit = max(WORKER_TIMEOUT, self.lateness.timeout or 0.0)
        if now - self.hogged_since > limit:
            raise RuntimeError(
                f"Every ipyparallel engine ({sorted(busy)}) has been running, for {limit:g} s, "
                "a task this run gave up on (timeout= or a beaten speculative copy), and "
                f"{len(waiting)} unit(s) wait for a free engine: "
                f"{[t.key for u in waiting[:10] for t in u.tasks]!r}. Restart the engines "
                "or add some (ipcluster engines -n 4), or raise timeout=; with memory= "
                "set, a rerun keeps the fits that finished.")

    def _report_stall(self, now):
        if not self.pending or not self.stall.due(now):
            return
        waits = [([t.key for t in u.tasks],
                  None if u.engine is None else f"engine {u.engine}",
                  None if u.started is None else now - u.started)
                 for u in self.pending.values()]
        busy = self.engine._busy_engines()
        also = f" Engines {sorted(busy)} still run tasks given up on." if busy else ""
        logger.warning("parml: %s%s", describe_waits(waits, self.stall.quiet_for(now)), also)


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
    """The next finished unit, or None after :data:`POLL_SECONDS` (Ctrl-C gets through)."""
    try:
        return finished.get(timeout=POLL_SECONDS)
    except queue.Empty:
        return None


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
