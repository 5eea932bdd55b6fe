"""One run of tasks on a Dask cluster, watched until every task is accounted for.

The run never waits blindly. It looks at the cluster's workers twice a
second (``Client.nthreads``) and each unit announces on its worker, through
the scheduler, when it starts (:mod:`._dask_rerun`). From that:

- When a worker dies, Dask runs the units it held again elsewhere at once.
  A unit that had started does not run its tasks a second time: it returns
  a :class:`~._dask_rerun.Rerun` and the run decides. A unit of one task that
  ran alone (a worker with one thread) counts a death against its task;
  the tasks of a batch (or of a worker with several threads) become
  suspects. Suspects, and tasks that killed a worker, are sent one at a
  time, only to workers that have been up for :data:`SETTLE_SECONDS` and
  have run a task (one of the run's, or a probe: :mod:`._dask_probes`), and
  not to the last worker alive while another may come back
  (:data:`LAST_WORKER_GRACE`): a task that kills its worker does not take
  the cluster down with it (a worker that dies while it starts may not be
  restarted by its nanny). After ``max_retries`` deaths a task is given up
  (:class:`~._tasks.LostTask`): it costs its fit, not the search.
- Units that may only run on workers that are all gone are sent again.
- Shared data lost with its workers is made again by Dask (it is the result
  of a task); data that Dask gave up on is shared again and its units resent.
- A unit that runs far longer than the others gets a speculative copy on
  another worker, with the shared data made again away from the late worker
  (a frozen host may hold its only copy); with ``timeout=`` a task past it is
  abandoned (:mod:`._lateness`). A stall is reported on the ``parml`` logger.
- No worker for :data:`WORKER_TIMEOUT` seconds is an error that says what was
  waiting; so is a run that resends more than :data:`MAX_RESUBMITS` units.
"""

import logging
import os
import queue
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from ._lateness import Lateness, StallReport, describe_waits
from ._deaths import Deaths
from ._tasks import LostTask, timeout_reason
from ._dask_probes import Probes
from ._dask_rerun import START_KEY, Rerun

logger = logging.getLogger("parml")

#: Seconds without any worker before a run gives up.
WORKER_TIMEOUT = 30.0
#: Units sent again (after deaths, lost data, cancellations) before a run gives up.
MAX_RESUBMITS = 500
#: Seconds a worker must have been up before it is sent a task that killed a worker.
SETTLE_SECONDS = 2.0
#: Seconds a suspect waits for a second worker before it runs on the last one alive.
LAST_WORKER_GRACE = 10.0
#: Seconds between two looks at the run when nothing happens.
POLL_SECONDS = 0.5
#: Seconds to wait for the result of a unit Dask says is finished.
RESULT_TIMEOUT = 60.0


@dataclass(eq=False)
class Unit:
    """Tasks sent as one Dask task, and what is known of where they run."""

    tasks: list
    name: str
    future: Any = None
    started: Optional[float] = None
    worker: Optional[str] = None
    twin: Optional["Unit"] = None  # the speculative copy of this unit, or its original
    allowed: Optional[list] = None  # the only workers it may run on (None: any)


class DaskRun:
    """Runs ``tasks`` through ``engine`` and yields results (and LostTasks) as they finish.

    Parameters
    ----------
    engine : DaskEngine
        Submits units and owns the shared data.
    func : callable
        ``func(task)`` runs on the workers (:func:`~._tasks.execute`).
    tasks : list of Task
    max_retries : int
        Deaths of a worker running a task alone before the task is given up.
    timeout : float or None
        Seconds a task may run before it is abandoned.
    """

    def __init__(self, engine, func, tasks, max_retries=2, timeout=None):
        self.engine, self.client, self.func = engine, engine.client, func
        self.run_id = os.urandom(4).hex()
        self.topic = f"parml-{self.run_id}"
        self.max_retries = max_retries
        self.lateness = Lateness(timeout)
        # with a timeout each task goes alone and all are sent at once, so that
        # each can be abandoned alone (RemoteEngine.units)
        self.batches = engine.units(tasks)
        self.pending = {}  # Unit.name -> Unit
        self.events = queue.SimpleQueue()
        self.deaths, self.done = Deaths(max_retries), set()
        # Tasks that were running where a worker died: sent one at a time, to
        # workers up for a while, so that a task that kills its worker never
        # takes more than one worker at a time (nor a worker that is starting).
        self.suspects, self.on_trial, self.suspected = deque(), [], set()
        self.workers = {w: 0.0 for w in engine.worker_ids()}  # address -> up since
        self.probes = Probes(self.client, self.run_id, self.workers)
        self.no_worker_since = None
        self.n_resubmits, self.n_units, self.n_deaths = 0, 0, 0
        self.stall = StallReport(time.monotonic())
        self.fetcher = ThreadPoolExecutor(4, thread_name_prefix="parml-fetch")
        self._last_look = time.monotonic()
        self._reshared = set()  # late workers the shared data was moved away from
        self._trials = set()  # units that run a suspect alone
        self._most_workers = len(self.workers)
        self._lonely_since = None

    # -- the loop ---------------------------------------------------------------

    def __iter__(self):
        # Only the run's own topic: subscribing to the scheduler's "all" topic
        # can cost the client its connection (some events there do not serialize).
        self.client.subscribe_topic(self.topic, lambda event: self.events.put(
            ("start", event[1])))
        try:
            self._refill()
            while self.pending or self.batches or self.suspects:
                try:
                    kind, payload = self.events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    kind, payload = "tick", None
                yield from getattr(self, f"_on_{kind}")(payload)
                yield from self._look_at_workers()
                yield from self._watch()
                yield from self._send_waiting()
                self._refill()
        finally:
            self.batches.clear()
            try:
                self.client.unsubscribe_topic(self.topic)
            except (ValueError, RuntimeError, OSError):
                pass
            futures = [unit.future for unit in self.pending.values()]
            if futures:
                self.client.cancel(futures)
            self.fetcher.shutdown(wait=False, cancel_futures=True)
            self.probes.close()

    def _look_at_workers(self, force=False):
        """Workers that joined or left since the last look (at most every POLL_SECONDS)."""
        now = time.monotonic()
        if now - self._last_look < POLL_SECONDS and not force:
            return
        self._last_look = now
        alive = set(self.engine.worker_ids())
        self._most_workers = max(self._most_workers, len(alive))
        for worker in alive - set(self.workers):
            self.workers[worker] = now
        for worker in set(self.workers) - alive:
            del self.workers[worker]
            yield from self._worker_left(worker)

    # -- sending ----------------------------------------------------------------

    def _send(self, tasks, pinned=True, workers=None):
        self.n_units += 1
        unit = Unit(tasks=list(tasks), name=f"parml-{self.run_id}-{self.n_units}")
        if pinned and len(unit.tasks) == 1 and unit.tasks[0].where is not None:
            workers = [unit.tasks[0].where]
        unit.allowed = workers
        unit.future = self.engine.submit_unit(self.func, unit.tasks, unit.name, self.topic,
                                              workers=workers)
        self.pending[unit.name] = unit
        unit.future.add_done_callback(lambda future: self._fetch_later(unit))
        return unit

    def _resend(self, tasks, workers=None):
        logger.debug("parml: sending again %r to %s", [t.key for t in tasks], workers or "any")
        self.n_resubmits += 1
        if self.n_resubmits > MAX_RESUBMITS:
            raise RuntimeError(
                f"Tasks were sent again {MAX_RESUBMITS} times in one run (worker deaths, "
                f"lost data or cancellations on the Dask cluster at "
                f"{self.client.scheduler.address}); giving up. Waiting were: "
                f"{[t.key for t in tasks]!r}.")
        # one by one, unpinned: the worker they were pinned to may be the dead one
        return [self._send([task], pinned=False, workers=workers) for task in tasks]

    def _refill(self):
        while self.batches.may_send(len(self.pending)):
            self._send(self.batches.next_unit())

    def _settled(self):
        """Workers up for SETTLE_SECONDS that have run a task (see :mod:`._dask_probes`)."""
        now = time.monotonic()
        return self.probes.ready(
            [w for w, since in self.workers.items() if now - since >= SETTLE_SECONDS])

    def _send_waiting(self):
        """Send the next suspect, alone, to the workers that have been up for a while.

        Not to the last worker alive while another may come back (unless the
        cluster has only ever had one): a task that kills its worker then
        leaves the cluster a worker to go on with. When no other worker came
        back, a task that died with its worker twice is given up rather than
        sent to the last one (once may be a lost host, not the task).
        """
        if not self.suspects or self.on_trial:
            return
        yield from self._look_at_workers(force=True)
        settled = self._settled()
        if not settled or self._waiting_for_a_second_worker():
            return
        task = self.suspects.popleft()
        n = self.deaths.count(task)
        if n >= 2 and len(self.workers) < 2 <= self._most_workers:
            # it killed workers twice: the last one alive is kept for the others (a
            # task that died once may have lost its host, and the last worker runs it)
            self.done.add(task.uid)
            yield self.deaths.give_up(task, (
                f"the Dask worker running it died {n} times; it was not sent to the "
                f"last worker alive ({LAST_WORKER_GRACE:g} s without another)"))
            return
        self.on_trial.extend(self._resend([task], workers=settled))
        self._trials.update(self.on_trial)

    def _waiting_for_a_second_worker(self):
        """Whether a suspect should wait for another worker than the last one alive.

        It waits at most :data:`LAST_WORKER_GRACE` seconds: a restarted worker
        is back by then, a lost host is not coming back.
        """
        if len(self.workers) >= 2 or self._most_workers < 2:
            self._lonely_since = None
            return False
        now = time.monotonic()
        if self._lonely_since is None:
            self._lonely_since = now
        return now - self._lonely_since < LAST_WORKER_GRACE

    # -- events -----------------------------------------------------------------

    def _on_tick(self, _):
        return iter(())

    def _on_start(self, message):
        unit = self.pending.get(message.get("key"))
        if unit is not None:
            unit.started, unit.worker = time.monotonic(), message.get("worker")
            self.stall.progress(time.monotonic())
        return iter(())

    def _worker_left(self, worker):
        """Send again the units that may only run on workers that are all gone.

        The units that were running on ``worker`` are left to Dask, which
        runs them again elsewhere at once: the rerun does not run the tasks
        again but comes back as a :class:`~._dask_rerun.Rerun` (see :meth:`_died`).
        """
        self.n_deaths += 1
        stranded = [u for u in self.pending.values()
                    if u.allowed is not None and not set(u.allowed) & set(self.workers)]
        for unit in stranded:
            starts = self.client.get_metadata([unit.name, START_KEY], None)
            self._forget(unit)  # after the look: a forgotten task loses its metadata
            if starts:  # it ran on a worker that is gone: as if Dask had run it again
                yield from self._died(unit, list(starts))
                continue
            for task in unit.tasks:
                if task.uid in self.done:
                    continue
                if task.uid in self.suspected:
                    self._suspect([task])
                else:
                    self._resend([task])
        logger.info("parml: Dask worker %s left the cluster.", worker)

    def _died(self, unit, starts):
        """``unit`` started before, on a worker that died: whose death was it?

        A unit of one task that ran alone (a worker with one thread, or a
        task tried alone) counts a death against the task, which is retried on
        settled workers up to ``max_retries`` times; the tasks of a batch, or
        of a worker with several threads, are each tried alone.
        """
        tasks = [t for t in unit.tasks if t.uid not in self.done]
        alone = starts[-1].get("nthreads", 1) == 1 or unit in self._trials
        if len(unit.tasks) == 1 and tasks and alone:
            self.deaths.note(tasks[0])
            yield from self._retry_or_give_up(tasks, starts[-1].get("worker", "?"))
        else:
            self._suspect(tasks)

    def _suspect(self, tasks):
        self.suspected.update(t.uid for t in tasks)
        self.suspects.extend(tasks)

    def _retry_or_give_up(self, tasks, worker):
        """Tasks whose worker died while they ran: give up past ``max_retries`` deaths."""
        for task in tasks:
            if self.deaths.exhausted(task):
                self.done.add(task.uid)
                yield self.deaths.give_up(task, (
                    f"the Dask worker running it died {self.deaths.count(task)} times "
                    f"(last {worker})"))
            else:
                self._suspect([task])

    def _forget(self, unit):
        """Stop waiting for ``unit``: cancel it on the cluster."""
        if self.pending.pop(unit.name, None) is not None:
            self.client.cancel([unit.future])
        if unit in self.on_trial:
            self.on_trial.clear()

    def _fetch_later(self, unit):
        try:
            self.fetcher.submit(self._fetch, unit)
        except RuntimeError:  # the run is over
            pass

    def _fetch(self, unit):
        """In a thread of the run: the outcome of a unit Dask says is done, as an event.

        The loop itself never waits on the cluster: a result whose worker died
        just after it finished is made again by Dask, which can take a while.
        """
        future = unit.future
        try:
            if future.status == "finished":
                outcome = ("ok", future.result(timeout=RESULT_TIMEOUT))
            elif future.status == "error":
                outcome = ("error", future.exception(timeout=RESULT_TIMEOUT))
            else:
                outcome = ("cancelled", None)
        except Exception:  # lost since, or not gathered in time
            outcome = ("lost", None)
        self.events.put(("done", (unit,) + outcome))

    def _on_done(self, payload):
        unit, outcome, value = payload
        if self.pending.pop(unit.name, None) is None:
            return  # forgotten: a dead worker's, a timed-out or a beaten twin
        if unit in self.on_trial:
            self.on_trial.clear()
        if outcome == "ok" and isinstance(value, Rerun):
            yield from self._died(unit, value.starts)
        elif outcome == "ok":
            if unit.twin is not None:
                self._forget(unit.twin)
            yield from self._accept(unit, value)
        elif outcome == "error":
            yield from self._failed(unit, value)
        else:  # lost, or cancelled by Dask: the shared data it needs was given up
            if outcome == "cancelled":
                self.engine.refresh_shared()
            self._resend([t for t in unit.tasks if t.uid not in self.done])

    def _accept(self, unit, value):
        self.stall.progress(time.monotonic())
        self.probes.note_served(unit.worker)
        for task, result in zip(unit.tasks, value if len(unit.tasks) > 1 else [value]):
            if task.uid in self.done:
                continue
            self.done.add(task.uid)
            if hasattr(result, "start") and hasattr(result, "end"):
                self.lateness.record(result.end - result.start)
                self.batches.record(result)
            yield result

    def _failed(self, unit, error):
        """A unit came back with an error: raise it, or send its tasks again."""
        if type(error).__name__ != "KilledWorker":
            raise error  # a Python error in a task: never retried
        tasks = [t for t in unit.tasks if t.uid not in self.done]
        if error.task != unit.name:
            # the unit's input (the shared data) was given up by Dask
            self.engine.refresh_shared()
            self._resend(tasks)
            return
        # Dask gave up on the unit: workers died while it was queued or ran there
        starts = self.client.get_metadata([unit.name, START_KEY], None)
        if starts:
            yield from self._died(unit, starts)
        else:
            self._resend(tasks)  # it never started: innocent

    # -- the watch --------------------------------------------------------------

    def _watch(self):
        now = time.monotonic()
        self._check_workers(now)
        quiet = self.stall.quiet_for(now)
        for unit in list(self.pending.values()):
            if unit.name not in self.pending:
                continue
            running = None if unit.started is None else now - unit.started
            if running is not None and len(unit.tasks) == 1 \
                    and self.lateness.timed_out(running):
                yield from self._abandon(unit)
            elif unit.twin is None and not self.suspected & {t.uid for t in unit.tasks} \
                    and self.lateness.is_late(
                    quiet if running is None else running, len(unit.tasks)):
                self._speculate(unit, running)
        if self.pending and self.stall.due(now):
            logger.warning("parml: %s", describe_waits(
                [([t.key for t in u.tasks], u.worker,
                  None if u.started is None else now - u.started)
                 for u in self.pending.values()], quiet))

    def _abandon(self, unit):
        """A task past ``timeout``: stop waiting for it (its worker is left alone)."""
        self._forget(unit)
        if unit.twin is not None:
            self._forget(unit.twin)
        task = unit.tasks[0]
        if task.uid not in self.done:
            self.done.add(task.uid)
            yield LostTask(task=task, attempts=1,
                           reason=timeout_reason(self.lateness.timeout))

    def _speculate(self, unit, running):
        """A copy of a late unit on other workers, with a fresh copy of the shared data.

        The data may live only on the late worker (a frozen host still holds
        it, and fetches from it never end), so the copy, and every unit sent
        from now on, reads data shared again away from that worker.
        """
        late_workers = {u.worker for u in self.pending.values()
                        if u.worker is not None and u.started is not None
                        and self.lateness.is_late(time.monotonic() - u.started, len(u.tasks))}
        late_workers.add(unit.worker)
        others = [w for w in self.workers if w not in late_workers]
        if not others:
            return
        if not self._reshared & set(late_workers):
            self.engine.share_again(others)
            self._reshared |= late_workers
        copy = self._send(unit.tasks, pinned=False, workers=others)
        unit.twin, copy.twin = copy, unit
        logger.warning(
            "parml: tasks %r %s; a copy runs on another worker with the data shared "
            "again, and the first to finish is kept.", [t.key for t in unit.tasks],
            f"have run {running:.0f} s on {unit.worker}" if running is not None
            else "have waited to start", )

    def _check_workers(self, now):
        if self.workers:
            self.no_worker_since = None
            return
        if self.no_worker_since is None:
            self.no_worker_since = now
            self.workers = {w: now for w in self.engine.worker_ids()}
            return
        if now - self.no_worker_since > WORKER_TIMEOUT:
            self.workers = {w: now for w in self.engine.worker_ids()}
            if self.workers:
                return
            waiting = [t.key for u in self.pending.values() for t in u.tasks]
            waiting += [t.key for t in self.suspects]
            address = self.client.scheduler.address
            raise RuntimeError(
                f"The Dask cluster at {address} has had no worker for {WORKER_TIMEOUT:g} s "
                f"({self.n_deaths} worker death(s) during this run); {len(waiting)} task(s) "
                f"were waiting: {waiting[:10]!r}. Start workers with: dask worker {address} "
                "(with memory= set, a rerun keeps the fits that finished).")
