"""One run on ipyparallel engines: units sent, results and engine deaths handled.

See :mod:`._ipyparallel` for the engine (start-up, shared data, the calls
made to every engine) and :class:`IPyParallelRun` for what a run does when
engines die, lag or hang.
"""

import dataclasses
import logging
import queue
import time
from typing import Any, Optional

from ._deaths import Deaths
from ._ipyparallel import (
    WORKER_TIMEOUT, RemoteTraceback, _engine_failure, _msg_id, _Raised, ipyparallel_errors,
)
from ._ipyparallel_spares import Spares
from ._lateness import Lateness, StallReport, describe_waits
from ._tasks import LostTask, timeout_reason

logger = logging.getLogger("parml")

#: Resubmissions of tasks stranded or lost by engine deaths, in one run.
MAX_RESUBMITS = 100
#: Seconds between two looks at the units in flight (starts, timeouts, copies).
POLL_SECONDS = 0.5


@dataclasses.dataclass(eq=False)
class _Unit:
    """Tasks sent as one ipyparallel task, and what is known of where they run."""

    tasks: list
    result: Any  # its AsyncResult
    started: Optional[float] = None  # time.monotonic() when seen starting
    engine: Optional[int] = None
    twin: Optional["_Unit"] = None  # the speculative copy of this unit, or its original
    copy: bool = False


class IPyParallelRun:
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
        self.batches = engine.units(tasks)  # with timeout=, one task per unit
        self.pending = {}  # msg id -> _Unit
        self.finished = queue.SimpleQueue()
        self.done = set()  # ids of the tasks yielded
        self.deaths = Deaths(engine.max_retries)
        self.n_resubmits = 0
        self.stall = StallReport(time.monotonic())
        self.last_look = float("-inf")
        self.hogged_since = None
        self.spares = Spares(self.client)
        self.suspects, self.suspect = [], None  # tasks that died with an engine: one at a time

    def __iter__(self):
        try:
            self._refill()
            while self.pending or self.suspects or self.batches:
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
        if not self.suspects or (self.suspect is not None
                                 and _msg_id(self.suspect.result) in self.pending):
            return
        others = bool(self.batches) or any(u is not self.suspect for u in self.pending.values())
        if others and len(self.engine._live_targets()) < 2 and self.spares.coming():
            return  # the last engine is kept for the others while a new one starts
        self.engine._refresh_targets()
        self.n_resubmits += 1
        self.suspect = self._send([self.suspects.pop(0)], pinned=False)

    def _resend(self, tasks, error):
        if not tasks:
            return
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
            if task.uid in self.done:
                continue
            if isinstance(item, _Raised):
                raise item.error from RemoteTraceback(item.text)
            self.done.add(task.uid)
            if hasattr(item, "start") and hasattr(item, "end"):
                self.lateness.record(item.end - item.start)
            self.batches.record(item)
            yield item

    def _engine_lost(self, unit, cause, error):
        """``unit`` failed with its engine(s): count a death alone, send the rest again.

        The tasks of a unit whose engine died while running it are suspects:
        they go again one at a time, so a fit that kills its engine takes one
        engine at a time (replaced where the cluster allows, see
        :mod:`._ipyparallel_spares`). A task that died alone more than
        ``max_retries`` times, or that would need the last engine of a cluster
        that gets no new ones, is given up as a LostTask.
        """
        twin = unit.twin
        if twin is not None and _msg_id(twin.result) in self.pending:
            twin.twin = None  # the other copy goes on; a death alone still counts
            if cause == "EngineError" and len(unit.tasks) == 1:
                task = unit.tasks[0]
                self.deaths.note(task)
                self.spares.replace({self._engine_of(unit)} | self.engine._gone())
            return
        if cause == "EngineError":
            self.spares.replace({self._engine_of(unit)} | self.engine._gone())
        again = []
        for task in unit.tasks:
            if task.uid in self.done:
                continue
            if cause != "EngineError":
                again.append(task)  # stranded on engines that died before it started
                continue
            alone = len(unit.tasks) == 1 and self._engine_of(unit) is not None
            n = self.deaths.note(task, int(alone))
            last = len(self.engine._live_targets()) < 2 and not self.spares.possible
            if self.deaths.exhausted(task) or (n and last):
                self.done.add(task.uid)
                why = ("" if self.deaths.exhausted(task) else
                       "; not run again on the last engine left, which gets no replacement")
                yield self.deaths.give_up(task, f"EngineError: {error}{why}")
                continue
            self.suspects.append(task)
        self._resend(again, error)

    def _engine_of(self, unit):
        metadata = self.client.metadata.get(_msg_id(unit.result), {})
        return metadata.get("engine_id", unit.engine)

    # -- the watch --------------------------------------------------------------

    def _watch(self):
        """Every :data:`POLL_SECONDS`: note starts, abandon, copy, report (LostTasks)."""
        now = time.monotonic()
        if now - self.last_look < POLL_SECONDS:
            return
        self.last_look = now
        self._note_starts(now)
        yield from self._seen_dead()
        for unit in list(self.pending.values()):
            if unit.started is None or _msg_id(unit.result) not in self.pending:
                continue
            running = now - unit.started
            if len(unit.tasks) == 1 and self.lateness.timed_out(running):
                yield from self._time_out(unit)
            elif (unit.twin is None and not unit.copy
                  and not any(task in self.deaths for task in unit.tasks)
                  and self.lateness.is_late(running, len(unit.tasks))):
                self._speculate(unit, running)
        self._check_hogged(now)
        self._report_stall(now)

    def _seen_dead(self):
        """Units on engines of this host seen dead: lost now, not at the controller's word."""
        dead = self.engine._dead_here()
        if not dead:
            return
        for unit in [u for u in self.pending.values() if self._engine_of(u) in dead]:
            self.pending.pop(_msg_id(unit.result), None)
            yield from self._engine_lost(unit, "EngineError", RuntimeError(
                f"ipyparallel engine {self._engine_of(unit)} exited while running the task"))
        self.engine._refresh_targets()

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
        if task.uid in self.done:
            return
        self.done.add(task.uid)
        self.stall.progress(time.monotonic())
        logger.warning("parml: task %r ran longer than timeout=%s s on ipyparallel engine %s; "
                       "it is abandoned (the engine finishes it, its result is ignored).",
                       task.key, self.lateness.timeout, unit.engine)
        yield LostTask(task=task, reason=timeout_reason(self.lateness.timeout),
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


def _next(finished):
    """The next finished unit, or None after :data:`POLL_SECONDS` (Ctrl-C gets through)."""
    try:
        return finished.get(timeout=POLL_SECONDS)
    except queue.Empty:
        return None
