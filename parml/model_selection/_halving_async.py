"""Asynchronous successive halving (ASHA) on a scheduler session.

``asynchronous=True`` replaces scikit-learn's rung loop: every (candidate,
rung, split) fit is a task of one scheduler session, and a candidate is
promoted to the next rung as soon as it ranks among the best ``1 / factor``
of the candidates finished at its rung (:class:`~._asha.Ladder`), so no
worker waits for a rung to fill. The rungs (resources, places) are
scikit-learn's (:func:`~._asha.rung_schedule`), the candidates are the ones
its search samples, and each rung's (sub)samples are the ones it draws.

``cv_results_`` has one row per candidate per rung, grouped by rung (rung 0
first) and, within a rung, in the order of the candidates' index in the first
rung; the order does not depend on when fits finished.
"""

import math
import uuid
from collections import deque

import joblib
import numpy as np
from sklearn.utils import resample

from .. import _compat
from ..scheduler import Scheduler, Task
from ..tracing import logger, trace_events
from ._asha import JobQueue, Ladder, rung_schedule
from ._checks import check_candidates
from ._fingerprint import fit_fingerprint, split_hashes, stored_failure, task_key
from ._fit_and_score import fit_and_score, fit_records, on_lost_handler
from ._results import fill_error_scores, format_cv_results, warn_or_raise_about_fit_failures
from ._warm_start import warm_fit_and_score, warm_start_parameter

#: Seconds of fits waiting per worker that the run aims at: enough for tiny fits
#: to travel in batches, little enough that a promotion starts soon after it is made.
LOOKAHEAD_SECONDS = 0.2
#: Fits waiting per worker at most (and at least 2, so that no worker idles).
MOST_AHEAD = 64
#: First-rung candidates per worker whose fits go split by split (fold reuse).
FIRST_RUNG_BLOCK = 4

__all__ = ["AsyncHalving", "first_rung_fits", "first_rung_order", "rung_splits",
           "search_asynchronously"]


def search_asynchronously(search, setup):
    """Run ``search`` (being fitted) as ASHA on a scheduler opened for it.

    Returns the finished :class:`AsyncHalving` (its ``results`` are the
    ``cv_results_``); sets the search's ``trace_``.
    """
    with Scheduler(
        backend=search.backend, n_jobs=search.n_jobs, pre_dispatch=search.pre_dispatch,
        progress=search.progress, desc=type(search).__name__,
        max_retries=search.max_retries, memory=search.memory, timeout=search.timeout,
    ) as scheduler:
        run = AsyncHalving(search, setup, scheduler)
        run.run()
    search.trace_ = run.trace()
    if scheduler.store is not None:
        logger.info("%s: %s", type(search).__name__, search.trace_.summary())
    return run


def rung_splits(cv, X, y, split_params, fraction, random_state):
    """The splits of a rung on ``fraction`` of the samples, as scikit-learn draws them.

    The same draws as scikit-learn's subsampling splitter: each split's train
    and test indices resampled without replacement with ``random_state``.
    """
    return [
        (resample(train, replace=False, random_state=random_state,
                  n_samples=int(fraction * len(train))),
         resample(test, replace=False, random_state=random_state,
                  n_samples=int(fraction * len(test))))
        for train, test in cv.split(X, y, **split_params)
    ]


def first_rung_order(n_candidates):
    """The order the first rung's candidates are submitted in: shuffled, with a fixed seed.

    A grid lists its candidates in order (``C`` growing, say); submitted in
    that order, the first finished, hence the first promoted, would all come
    from one end of the grid. The seed is fixed, so that it does not consume
    the search's ``random_state`` (its subsamples stay scikit-learn's).
    """
    return np.random.RandomState(0).permutation(n_candidates).tolist()


def first_rung_fits(order, n_splits, block):
    """``(0, candidate, split)`` of the first rung: blocks of candidates, split by split.

    Within a block of ``block`` candidates, the fits go split by split, so
    that a worker fits consecutive candidates on the same split and reuses
    that split's folds (see :func:`~._fit_and_score.split_data`); the block's
    candidates finish together, block after block, and promotions follow.

    Examples
    --------
    >>> first_rung_fits([2, 0, 1], n_splits=2, block=2)
    [(0, 2, 0), (0, 0, 0), (0, 2, 1), (0, 0, 1), (0, 1, 0), (0, 1, 1)]
    """
    return [(0, cand, split) for start in range(0, len(order), block)
            for split in range(n_splits) for cand in order[start:start + block]]


class AsyncHalving:
    """One asynchronous halving run: the rungs, the tasks, the promotions, the results.

    Parameters
    ----------
    search : ParallelHalvingGridSearchCV or ParallelHalvingRandomSearchCV
        Being fitted: ``min_resources_``, ``max_resources_`` and ``n_splits_``
        are set. Its halving attributes (``n_resources_``...) are set here.
    setup : SearchSetup
    scheduler : Scheduler
        Open for the whole ``fit``.

    Attributes
    ----------
    results : dict
        ``cv_results_``, after :meth:`run`.
    ladder : Ladder
        Who finished which rung, who was promoted.
    task_records : list of TaskRecord
        Every task's record, fits re-indexed to the rows of ``results``.
    """

    def __init__(self, search, setup, scheduler):
        self.search, self.setup, self.scheduler = search, setup, scheduler
        self.candidates = self._candidates()
        self.schedule = self._schedule()
        self.n_splits = search.n_splits_
        self.warm = (len(self.schedule.n_resources) > 1
                     and warm_start_parameter(search.estimator, search.resource))
        self.n_workers = max(scheduler.n_workers, 1)
        self._durations = deque(maxlen=64)  # of the last fits run (not read from the store)
        self.results, self.task_records = None, []
        self._records, self._fitted, self._keys, self._left = {}, {}, {}, {}
        self._submitted = {}
        self._share_data()
        self._journal_key, self._fingerprint = self._store_keys()
        self.ladder = Ladder(self.schedule.n_candidates, search.factor, self._stored_journal())
        self._saved = len(self.ladder.journal)

    # -- set up ------------------------------------------------------------------
    def _candidates(self):
        search = self.search
        candidates = _compat.halving_candidates(search)
        if search.resource != "n_samples" and any(search.resource in c for c in candidates):
            raise ValueError(
                f"Cannot use parameter {search.resource} as the resource since it is part "
                "of the searched parameters."
            )
        check_candidates(search.estimator, candidates,
                         getattr(search, "_grid_param_name", "candidate_params"))
        return candidates

    def _schedule(self):
        """scikit-learn's rungs; the search's halving attributes set from them."""
        search = self.search
        schedule = rung_schedule(
            len(self.candidates), factor=search.factor, min_resources=search.min_resources_,
            max_resources=search.max_resources_, exhaust=search.min_resources == "exhaust",
            aggressive_elimination=search.aggressive_elimination,
        )
        search.min_resources_ = schedule.min_resources
        search.n_resources_ = list(schedule.n_resources)
        search.n_candidates_ = list(schedule.n_candidates)
        search.n_remaining_candidates_ = schedule.n_remaining_candidates
        search.n_required_iterations_ = schedule.n_required_iterations
        search.n_possible_iterations_ = schedule.n_possible_iterations
        search.n_iterations_ = schedule.n_iterations
        if search.verbose:
            print(f"n_iterations: {schedule.n_iterations} (asynchronous)\n"
                  f"n_resources: {schedule.n_resources}\n"
                  f"n_candidates: {schedule.n_candidates}")
        return schedule

    def _share_data(self):
        """Share X and y once, and each rung's splits (once per distinct set)."""
        search, setup = self.search, self.setup
        xy = self.scheduler.share({"X": setup.X, "y": setup.y})
        split_params = setup.routed.splitter.split
        self.splits, self.data, shared = [], [], {}
        for n_resources in self.schedule.n_resources:
            if search.resource == "n_samples":
                splits = rung_splits(setup.cv, setup.X, setup.y, split_params,
                                     n_resources / search._n_samples_orig, search.random_state)
            elif self.splits:
                splits = self.splits[-1]
            else:
                splits = list(setup.cv.split(setup.X, setup.y, **split_params))
            name = joblib.hash(splits)
            if name not in shared:  # the token names these folds in the workers, per fit
                shared[name] = dict(xy, splits=self.scheduler.share({"s": splits})["s"],
                                    token=uuid.uuid4().hex, fit=self.scheduler.token)
            self.splits.append(splits)
            self.data.append(shared[name])
        self._split_hashes = [split_hashes(splits) for splits in self.splits]

    def _store_keys(self):
        """``(journal key, fit fingerprint)`` in the result store; ``(None, None)`` without."""
        if self.scheduler.store is None:
            return None, None
        search, setup = self.search, self.setup
        fingerprint = fit_fingerprint(
            search.estimator, setup.X, setup.y, setup.routed, setup.scorers,
            error_score=search.error_score, return_train_score=search.return_train_score,
            **({"asha_warm_start": True} if self.warm else {}),
        )
        journal_key = joblib.hash(("asha-journal", fingerprint, self.candidates,
                                   self.schedule, self._split_hashes, search.factor))
        return journal_key, fingerprint

    def _stored_journal(self):
        if self._journal_key is None:
            return ()
        return self.scheduler.store.get(self._journal_key) or ()

    # -- run ---------------------------------------------------------------------
    def run(self):
        """Submit the first rung, promote as results arrive, until every rung is done."""
        queue = JobQueue()
        queue.add(first_rung_fits(first_rung_order(self.schedule.n_candidates[0]),
                                  self.n_splits, FIRST_RUNG_BLOCK * self.n_workers))
        session = self.scheduler.session(desc=type(self.search).__name__)
        in_flight = self._submit(session, queue, 0)
        for record in session:
            in_flight -= 1
            queue.add(self._receive(record))
            in_flight = self._submit(session, queue, in_flight)
        self._check_done()
        self.results = self._merge()
        return self

    def _submit(self, session, queue, in_flight):
        """Submit queued fits, best first, until ``limit`` are in flight; the new count.

        Few fits wait in the session at any time, so that a promotion made
        from the next result is run next, not after the whole first rung. The
        session is topped up once half of them are done, not after every
        result, so that the engine can send tiny fits in batches.
        """
        tasks, limit = [], self.limit()
        if in_flight > max(limit // 2, self.n_workers):
            return in_flight
        while queue and in_flight + len(tasks) < limit:
            tasks.append(self._task(*queue.pop()))
        if tasks:
            self._save_journal()
            # kept until the run ends: engines tell tasks apart by id() while they run
            self._submitted.update((task.key, task) for task in tasks)
            session.submit(tasks)
        return in_flight + len(tasks)

    def limit(self):
        """Fits to keep submitted (running or waiting): about ``LOOKAHEAD_SECONDS`` per worker.

        Two per worker until run times are known; many tiny fits, which the
        engine sends in batches; few long ones, so that a promotion waits
        behind little work.
        """
        per_worker = 2
        if self._durations:
            mean = sum(self._durations) / len(self._durations)
            per_worker = min(max(2, math.ceil(LOOKAHEAD_SECONDS / max(mean, 1e-6))), MOST_AHEAD)
        return per_worker * self.n_workers

    def _receive(self, record):
        """Keep a fit's record; when its candidate finished the rung, the fits to queue."""
        _, rung, cand, split = record.key
        self.task_records.append(record)
        fit = record.value
        self._records[rung, cand, split] = fit
        if not (record.cached or record.lost):
            self._durations.append(record.end - record.start)
        if "fitted" in self._submitted[record.key].kwargs:  # done: its input is not needed
            self._submitted[record.key].kwargs["fitted"] = None
        if fit.estimator is not None:
            if self.ladder.is_open(rung):
                self._fitted[rung, cand, split] = fit.estimator
            fit.estimator = None
        self._left[rung, cand] = self._left.get((rung, cand), self.n_splits) - 1
        if self._left[rung, cand]:
            return []
        scores = [self._records[rung, cand, s].test_scores for s in range(self.n_splits)]
        promotions = self.ladder.finish(rung, cand, float(np.mean(scores)))
        if promotions:
            logger.debug("%s: promoted %s", type(self.search).__name__, promotions)
        if not self.ladder.is_open(rung):
            self._forget_fitted(rung)
        if self.ladder.complete(rung):
            self._report_failures(rung)
        return [(to, c, s) for to, c in promotions for s in range(self.n_splits)]

    def _forget_fitted(self, rung):
        """Drop the fitted estimators of ``rung`` that no promotion will continue."""
        keep = set(self.ladder.promoted[rung])
        for key in [k for k in self._fitted if k[0] == rung and k[1] not in keep]:
            del self._fitted[key]

    def _report_failures(self, rung):
        """Warn about a finished rung's failed fits (raise if all failed), as per rung in sync."""
        fits = [self._records[rung, c, s] for c in self.ladder.members(rung)
                for s in range(self.n_splits)]
        if callable(self.search.scoring):
            fill_error_scores(fits, self.search.error_score)
        warn_or_raise_about_fit_failures(fits, self.search.error_score)

    def _save_journal(self):
        """Write the promotions made so far, before their fits are submitted (resume)."""
        if self._journal_key is None or len(self.ladder.journal) == self._saved:
            return
        self.scheduler.store.put(self._journal_key, self.ladder.decisions())
        self._saved = len(self.ladder.journal)

    # -- one task ------------------------------------------------------------------
    def _params(self, rung, cand):
        params = dict(self.candidates[cand])
        if self.search.resource != "n_samples":
            params[self.search.resource] = self.schedule.n_resources[rung]
        return params

    def _task(self, rung, cand, split):
        """The task fitting ``cand`` on ``rung``'s resources and split ``split``."""
        search, setup = self.search, self.setup
        params = self._params(rung, cand)
        options = dict(
            estimator=search.estimator, data=self.data[rung], split_idx=split,
            candidate_idx=cand, parameters=params, scorer=setup.scorers,
            fit_params=setup.routed.estimator.fit, score_params=setup.routed.scorer.score,
            return_train_score=search.return_train_score, error_score=search.error_score,
            verbose=search.verbose,
            progress=(self.n_splits, self.schedule.n_candidates[0], 0),
        )
        func, origin = fit_and_score, None
        if self.warm:
            grows = self._grows(rung)
            fitted = self._fitted.pop((rung - 1, cand, split), None) if rung and grows else None
            origin = self._keys.get((rung - 1, cand, split)) if fitted is not None else None
            func = warm_fit_and_score
            options.update(fitted=fitted, resource=search.resource,
                           n_resources=self.schedule.n_resources[rung],
                           return_estimator=self._grows(rung + 1))
        key = self._cache_key(rung, cand, split, params, origin)
        self._keys[rung, cand, split] = key
        return Task(
            key=("asha", rung, cand, split), func=func, kwargs=options,
            on_lost=on_lost_handler(candidate_idx=cand, split_idx=split,
                                    scorer=setup.scorers,
                                    return_train_score=search.return_train_score,
                                    error_score=search.error_score),
            cache_key=key, rerun_stored=stored_failure,
        )

    def _grows(self, rung):
        """Whether ``rung`` exists and has more resources than the rung below (warm start)."""
        resources = self.schedule.n_resources
        return 0 < rung < len(resources) and resources[rung] > resources[rung - 1]

    def _cache_key(self, rung, cand, split, params, origin):
        """The store key: as a synchronous fit's, plus the stored fit a warm start continues."""
        if self._fingerprint is None:
            return None
        what = params if origin is None else {"params": params, "continues": origin}
        return task_key(self._fingerprint, what, self._split_hashes[rung][split])

    # -- merge -------------------------------------------------------------------
    def _check_done(self):
        missing = [rung for rung in range(self.ladder.n_rungs) if not self.ladder.complete(rung)]
        if missing:
            raise RuntimeError(
                f"Asynchronous halving ended with rungs {missing} unfinished: "
                f"{[len(s) for s in self.ladder.scores]} of {self.schedule.n_candidates} "
                "candidates finished. This is a bug in parml; please report it."
            )

    def _merge(self):
        """``cv_results_``: rows by rung, then by first-rung index; fits re-indexed to rows."""
        rows = [(rung, cand) for rung in range(self.ladder.n_rungs)
                for cand in sorted(self.ladder.scores[rung])]
        index = {row: i for i, row in enumerate(rows)}
        for record in self.task_records:
            _, rung, cand, split = record.key
            for fit in fit_records(record):
                fit.candidate_idx, fit.split_idx = index[rung, cand], split
        self.row_params = [self._params(rung, cand) for rung, cand in rows]
        more = {"iter": [rung for rung, _ in rows],
                "n_resources": [self.schedule.n_resources[rung] for rung, _ in rows]}
        fits = [fit for record in self.task_records for fit in fit_records(record)]
        return format_cv_results(self.row_params, self.n_splits, fits,
                                 self.search.return_train_score, more_results=more)

    def first_test_scores(self):
        """Test scores of row 0 on split 0 (what the search's selection inspects)."""
        return next(fit.test_scores for record in self.task_records
                    for fit in fit_records(record)
                    if (fit.candidate_idx, fit.split_idx) == (0, 0))

    def trace(self):
        """The ``trace_`` of every fit (:func:`parml.tracing.trace_events`)."""
        return trace_events(self.task_records, self.row_params)
