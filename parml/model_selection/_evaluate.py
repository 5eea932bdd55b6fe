"""``evaluate_candidates``: scikit-learn's search protocol, run on parml's scheduler.

``BaseSearchCV.fit`` calls ``self._run_search(evaluate_candidates)``; each
``evaluate_candidates(candidate_params)`` fits and scores the candidates on
every split and returns the ``cv_results_`` of everything evaluated so far,
so a search may choose its next candidates from the results of the earlier
ones. parml's searches open the scheduler (and share X and y) once per
``fit``; each call is then one batch of keyed tasks run on it (see
:mod:`._planning`), merged by key with the batches before it.
"""

import logging
import uuid
from collections import defaultdict

import numpy as np

from .. import _compat
from ..tracing import logger, trace_events
from ._checks import check_candidates
from ._fit_and_score import fit_records
from ._planning import Batch, TaskPlanner, rekey
from ._results import fill_error_scores, format_cv_results, warn_or_raise_about_fit_failures


class CandidateEvaluator:
    """The ``evaluate_candidates`` that a search's ``_run_search`` calls during ``fit``.

    Parameters
    ----------
    search : ParallelGridSearchCV or ParallelRandomizedSearchCV
        The search being fitted; ``n_splits_`` is set.
    setup : SearchSetup
    scheduler : Scheduler
        Open for the whole ``fit``; X and y are shared with it here, once.

    Attributes
    ----------
    candidate_params : list of dict
        Every candidate evaluated so far, in ``cv_results_`` order.
    results : dict or None
        The ``cv_results_`` of those candidates; None before the first call.
    task_records : list of TaskRecord
        The scheduler's records of every task run (or read from the store).
    """

    def __init__(self, search, setup, scheduler):
        self.search = search
        self.setup = setup
        self.scheduler = scheduler
        self.planner = TaskPlanner(search, setup, scheduler.n_workers)
        self.candidate_params, self.task_records, self._records = [], [], []
        self._more_results = defaultdict(list)
        self.results = None
        self._xy = scheduler.share({"X": setup.X, "y": setup.y})
        self._shared_splits = []  # [(splits, data)]: each set of splits is shared once
        self._open = True
        self._n_calls = 0

    def __call__(self, candidate_params, cv=None, more_results=None, callback_ctx=None):
        """Fit and score ``candidate_params`` on every split; the results so far.

        Parameters
        ----------
        candidate_params : iterable of dict
            Parameter settings; they get the next indices of ``cv_results_``.
        cv : cross-validation splitter, default=None
            Split with this instead of the search's ``cv`` (as scikit-learn:
            it must give ``n_splits_`` splits). ``cv.split`` is called on each
            call, so a splitter without a fixed ``random_state`` gives other
            splits each time, as in scikit-learn.
        more_results : dict of str -> list, default=None
            Extra ``cv_results_`` columns, one value per candidate of this call.
        callback_ctx : CallbackContext, default=None
            Parent of the tasks' callback contexts (scikit-learn >= 1.9).

        Returns
        -------
        results : dict
            ``cv_results_`` of every candidate evaluated so far.
        """
        if not self._open:
            raise RuntimeError(
                "evaluate_candidates was called after fit returned; call it from "
                "_run_search, during fit."
            )
        batch = self._batch(list(candidate_params), cv, callback_ctx)
        records = self._run(batch)
        warn_or_raise_about_fit_failures(records, self.search.error_score)
        if callable(self.search.scoring):
            fill_error_scores(records, self.search.error_score)
        return self._merge(batch, records, more_results)

    def close(self):
        """End of ``fit``: later calls raise."""
        self._open = False

    def trace(self):
        """The ``trace_`` of every fit of the search (:func:`parml.tracing.trace_events`)."""
        return trace_events(self.task_records, self.candidate_params)

    def first_test_scores(self):
        """Test scores of candidate 0 on split 0: a dict for multi-metric scoring."""
        return min(self._records, key=lambda r: (r.candidate_idx, r.split_idx)).test_scores

    # -- one call --------------------------------------------------------------
    def _batch(self, candidate_params, cv, callback_ctx):
        """Check the candidates, split, share the splits: the call's :class:`Batch`."""
        search = self.search
        check_candidates(search.estimator, candidate_params,
                         getattr(search, "_grid_param_name", "candidate_params"))
        splits = self._split(cv)
        self._announce(len(candidate_params), len(splits))
        if not candidate_params or not splits:
            raise ValueError(
                "No fits were performed. Was the CV iterator empty? Were there no candidates?"
            )
        return Batch(candidate_params, len(self.candidate_params), splits, self._data(splits),
                     callback_ctx if _compat.has_callbacks(search) else None)

    def _merge(self, batch, records, more_results):
        """Add the call's candidates, records and extra columns; the results so far."""
        self.candidate_params.extend(batch.candidate_params)
        self._records.extend(records)
        for key, values in (more_results or {}).items():
            self._more_results[key].extend(values)
        self.results = format_cv_results(
            list(self.candidate_params), self.search.n_splits_, self._records,
            self.search.return_train_score, more_results=self._more_results,
        )
        return self.results

    def _split(self, cv):
        setup = self.setup
        cv = cv or setup.cv
        splits = list(cv.split(setup.X, setup.y, **setup.routed.splitter.split))
        if len(splits) != self.search.n_splits_:
            raise ValueError(
                _compat.inconsistent_splits_message(self.search.n_splits_, len(splits))
            )
        return splits

    def _announce(self, n_candidates, n_splits):
        message = (
            f"Fitting {n_splits} folds for each of {n_candidates} candidates,"
            f" totalling {n_candidates * n_splits} fits"
        )
        logger.info("%s: %s", type(self.search).__name__, message)
        if self.search.verbose > 0:
            print(message)

    def _data(self, splits):
        """Shared handles of X, y and ``splits``; splits already shared are reused."""
        for shared, data in self._shared_splits:
            if _same_splits(shared, splits):
                return data
        data = dict(self._xy, splits=self.scheduler.share({"splits": splits})["splits"])
        data["token"] = uuid.uuid4().hex  # names these fold data in the workers
        data["fit"] = self.scheduler.token  # whose state they are (released at the end)
        self._shared_splits.append((splits, data))
        return data

    def _run(self, batch):
        """Run the batch's tasks; its fit records, with the search's indices."""
        self._n_calls += 1
        desc = type(self.search).__name__
        if self._n_calls > 1:  # a progress bar per call: later calls' totals are not known
            desc += f" (call {self._n_calls})"
        tasks = self.planner.tasks(batch)
        task_records = [self._log(rekey(record), batch)
                        for record in self.scheduler.run(tasks, desc=desc)]
        self.task_records.extend(task_records)
        return [fit for record in task_records for fit in fit_records(record)]

    def _log(self, record, batch):
        level = logging.INFO if self.search.verbose > 1 else logging.DEBUG
        for fit in fit_records(record) if logger.isEnabledFor(level) else ():
            logger.log(
                level,
                "candidate %d split %d %s: %s on %s in %.3f s%s",
                fit.candidate_idx, fit.split_idx,
                batch.candidate_params[fit.candidate_idx - batch.first],
                "failed" if fit.fit_error else f"test score {fit.test_scores}",
                record.worker, record.end - record.start,
                " (from the result store)" if record.cached
                else " (a stored failure, run again)" if record.rerun else "",
            )
        return record


def _same_splits(a, b):
    """Whether two lists of ``(train, test)`` index arrays are equal."""
    return len(a) == len(b) and all(
        np.array_equal(train_a, train_b) and np.array_equal(test_a, test_b)
        for (train_a, test_a), (train_b, test_b) in zip(a, b)
    )
