"""ParallelGridSearchCV and ParallelRandomizedSearchCV: set up, search, select, refit.

``fit`` follows scikit-learn's protocol: it opens the scheduler once, then
``self._run_search(evaluate_candidates)`` decides which candidates to evaluate
(all of a grid, a sample, or batches chosen from earlier results in a
subclass); :mod:`._evaluate` runs each batch, :mod:`._planning` plans its tasks.
"""

import os
import time
from numbers import Integral, Real

import joblib

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, check_cv
from sklearn.utils import indexable

from .. import _compat
from .._live_backend import PortableBackendMixin
from ..scheduler import Scheduler, check_backend
from ..tracing import logger
from ._checks import check_consistent_length, check_refit_for_multimetric
from ._evaluate import CandidateEvaluator
from ._planning import SearchSetup

#: Constraints parml adds to (or tightens in) scikit-learn's search constraints.
PARALLEL_CONSTRAINTS = {
    "n_jobs": [
        _compat.Interval(Integral, 1, None, closed="left"),
        _compat.Interval(Integral, None, -1, closed="right"),
        None,
    ],
    "backend": [str, None, object],
    "progress": ["boolean"],
    "memory": [str, os.PathLike, joblib.Memory, None],
    "max_retries": [_compat.Interval(Integral, 0, None, closed="left")],
    "timeout": [_compat.Interval(Real, 0, None, closed="neither"), None],
}


class ParallelSearchMixin:
    """``fit`` for parml's searches, on scikit-learn's ``_run_search`` protocol.

    The search class says which candidates in ``_run_search``, inherited from
    scikit-learn's search (or overridden by a subclass); everything else
    (predict, score, routing, tags) also comes from scikit-learn's class.
    """

    @_compat.fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, in parallel.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_samples)
            Training vectors; for a precomputed kernel, the square kernel matrix.
        y : array-like of shape (n_samples, n_output) or (n_samples,), default=None
            Target relative to X for classification or regression; None for
            unsupervised learning.
        **params : dict of str -> object
            Parameters passed to the ``fit`` method of the estimator, the scorer
            and the CV splitter (``groups``), as in scikit-learn's search.

        Returns
        -------
        self : object
            Instance of fitted estimator.
        """
        check_backend(self.backend)
        setup, metadata = self._setup(X, y, params)
        root_ctx = self._begin_callbacks(setup, metadata)
        evaluated = self._search(setup, root_ctx)
        self._select_best(evaluated, setup)
        if self.refit:
            self._refit(setup, root_ctx, metadata)
        self.scorer_ = (
            _compat.scorer_dict(setup.scorers)
            if _compat.is_multimetric_scorer(setup.scorers)
            else setup.scorers
        )
        self.cv_results_ = evaluated.results
        if root_ctx is not None:
            root_ctx.call_on_fit_task_end(estimator=self, X=setup.X, y=setup.y,
                                          metadata=metadata)
        return self

    # -- set up and search -----------------------------------------------------
    def _setup(self, X, y, params):
        """The :class:`SearchSetup`, and the metadata that callbacks are given.

        The metadata, as scikit-learn's: ``{"sample_weight": ...}`` when the
        fit parameters have a sample weight, else None.
        """
        scorers, refit_metric = _compat.search_scorers(self)
        check_consistent_length(X, y)
        X, y = indexable(X, y)
        params = _compat.check_method_params(X, params=params)
        routed = _compat.search_routed_params(self, params)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        _compat.set_checked_cv(self, cv)
        _compat.check_input_parameters(self, X, y, routed.splitter.split)
        self.n_splits_ = cv.get_n_splits(X, y, **routed.splitter.split)
        sample_weight = params.get("sample_weight")
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        return SearchSetup(scorers, refit_metric, routed, X, y, cv), metadata

    def _search(self, setup, root_ctx):
        """Open the scheduler (X and y shared once) and let ``_run_search`` evaluate.

        Returns the :class:`~._evaluate.CandidateEvaluator`, holding the results.
        """
        with Scheduler(
            backend=self.backend,
            n_jobs=self.n_jobs,
            pre_dispatch=self.pre_dispatch,
            progress=self.progress,
            desc=type(self).__name__,
            max_retries=self.max_retries,
            memory=self.memory,
            timeout=self.timeout,
        ) as scheduler:
            evaluate = CandidateEvaluator(self, setup, scheduler)
            try:
                _compat.run_search(self, evaluate, root_ctx)
            finally:
                evaluate.close()
        if evaluate.results is None:
            raise ValueError(
                f"{type(self).__name__}._run_search evaluated no candidates. It must call "
                "evaluate_candidates(candidate_params) at least once."
            )
        self.trace_ = evaluate.trace()
        if scheduler.store is not None:
            logger.info("%s: %s", type(self).__name__, self.trace_.summary())
        return evaluate

    # -- select and refit -----------------------------------------------------
    def _select_best(self, evaluated, setup):
        results, first_scores = evaluated.results, evaluated.first_test_scores()
        self.multimetric_ = multimetric = isinstance(first_scores, dict)
        refit_metric = setup.refit_metric
        if callable(self.scoring) and multimetric:
            check_refit_for_multimetric(self.refit, first_scores)
            refit_metric = self.refit
        if not (self.refit or not multimetric):
            return
        select_best_index = _compat.best_index_hook(self) or _best_index
        self.best_index_ = select_best_index(self.refit, refit_metric, results)
        if not callable(self.refit):
            self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
        self.best_params_ = results["params"][self.best_index_]

    def _refit(self, setup, root_ctx, metadata):
        self.best_estimator_ = clone(self.estimator).set_params(
            **clone(self.best_params_, safe=False)
        )
        args = (setup.X,) if setup.y is None else (setup.X, setup.y)
        if root_ctx is None:
            start = time.time()
            self.best_estimator_.fit(*args, **setup.routed.estimator.fit)
            self.refit_time_ = time.time() - start
        else:
            self._refit_with_callbacks(setup, root_ctx, args, metadata)
        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_

    def _refit_with_callbacks(self, setup, root_ctx, args, metadata):
        """The refit as scikit-learn's task ``refit-with-best-params`` (>= 1.9).

        Its ``on_fit_task_begin`` is called inside the propagation context, so
        that auto-propagated callbacks are called once, by the refitted
        estimator's own root task (the same task); ``on_fit_task_end`` after.
        """
        refit_ctx = root_ctx.subcontext(task_name="refit-with-best-params")
        hook_args = dict(estimator=self, X=setup.X, y=setup.y, metadata=metadata)
        with refit_ctx.propagate_callback_context(self.best_estimator_):
            refit_ctx.call_on_fit_task_begin(**hook_args)
            start = time.time()
            self.best_estimator_.fit(*args, **setup.routed.estimator.fit)
            self.refit_time_ = time.time() - start
        refit_ctx.call_on_fit_task_end(**hook_args)

    # -- callbacks (scikit-learn >= 1.9) --------------------------------------
    def _begin_callbacks(self, setup, metadata):
        """The root callback context, as scikit-learn's ``fit`` makes it; None before 1.9.

        It is made whether or not callbacks are set: scikit-learn's
        ``_run_search`` builds its search context on it. Tasks get callback
        contexts of their own only when callbacks are set (they are pickled
        with every task).
        """
        if not _compat.callback_api(self):
            return None
        root = _compat.init_callback_context(
            self, max_subtasks=1 + (self.refit is not False)
        )
        return root.call_on_fit_task_begin(
            estimator=self, X=setup.X, y=setup.y, metadata=metadata
        )


def _best_index(refit, refit_metric, results):
    """Index of the best candidate: ``refit(results)`` or the top rank.

    Used for a search class without scikit-learn's ``_select_best_index`` hook.
    """
    if not callable(refit):
        return results[f"rank_test_{refit_metric}"].argmin()
    best_index = refit(results)
    if not isinstance(best_index, Integral):
        raise TypeError("best_index_ returned is not an integer")
    if best_index < 0 or best_index >= len(results["params"]):
        raise IndexError("best_index_ index out of range")
    return best_index


class ParallelGridSearchCV(PortableBackendMixin, ParallelSearchMixin, GridSearchCV):
    """Exhaustive search over a parameter grid, fitted in parallel.

    A drop-in replacement for :class:`sklearn.model_selection.GridSearchCV`:
    the same parameters, fitted attributes and ``cv_results_``. Every
    (candidate, split) fit is a task of parml's scheduler: the data is shared
    with the workers once, results stream back as they finish and are merged
    by key, and nested BLAS threads are limited so that ``n_jobs`` workers do
    not oversubscribe the cores. As in scikit-learn, a subclass may override
    ``_run_search(evaluate_candidates)`` to choose candidates from the results
    of earlier ones; each ``evaluate_candidates`` call runs on the same workers
    and shared data.

    Parameters
    ----------
    estimator : estimator object
        The object to tune; it must implement ``fit`` and be scored (either
        a ``score`` method or ``scoring``).
    param_grid : dict or list of dictionaries
        Parameter names mapped to lists of values, or a list of such dicts
        (each spanning its own grid).
    scoring : str, callable, list, tuple, dict or None, default=None
        Strategy to evaluate the held-out predictions, as in scikit-learn:
        one scorer name or callable, or several (a list or a dict) for
        multi-metric evaluation.
    n_jobs : int, default=None
        Number of workers. ``None`` means 1 unless inside a
        :func:`joblib.parallel_config` context; ``-1`` means all processors.
    refit : bool, str or callable, default=True
        Refit an estimator with the best parameters on the whole data. For
        multi-metric scoring, the name of the metric that picks the best, or
        a callable taking ``cv_results_`` and returning the best index.
    cv : int, cross-validation generator or iterable, default=None
        The splitting strategy, as in scikit-learn (5-fold by default,
        stratified for classifiers).
    verbose : int, default=0
        Verbosity, with scikit-learn's meaning: >0 counts the fits, >1 prints
        each fit's time, >2 its score too.
    pre_dispatch : int or str, default="2*n_jobs"
        How many tasks are dispatched ahead of the workers.
    error_score : 'raise' or numeric, default=np.nan
        Score given to a fit that raises; ``'raise'`` re-raises the error.
        Failed fits are reported once, grouped, in a FitFailedWarning.
    return_train_score : bool, default=False
        Also score each fit on its training data.
    backend : str or None, default=None
        Where tasks run: None follows :func:`joblib.parallel_config` (else
        ``"loky"`` processes); ``"threading"``; or any registered joblib
        backend name.
    progress : bool, default=False
        Show a progress bar (tqdm) counting finished fits, with elapsed time
        and ETA. Needs ``pip install "parml[progress]"``.
    memory : str, os.PathLike, joblib.Memory or None, default=None
        A result store (a folder): every finished fit is written there as it
        arrives, and a later ``fit`` with the same inputs only runs the fits
        that are missing or failed. So an interrupted search resumes where it
        stopped, and a grown grid only fits the new candidates. Stored fits
        are reused only when the estimator's class name (not its code) and
        parameters, the data, splits, scorers and versions are the same. A
        read-only store is only read; one that fails to write (full disk)
        warns once and is no longer written. ``joblib.Memory(None)``: no store.
    max_retries : int, default=2
        How many times a fit whose worker process died (segfault, out of
        memory, killed) is run again before it is recorded as failed, under
        ``error_score``.
    timeout : float or None, default=None
        Seconds one fit may run; a fit that runs longer is recorded as failed
        under ``error_score``. Worker processes (the default loky backend) and
        ``n_jobs=1`` stop it; Dask and ipyparallel abandon it and move on
        (the worker finishes it). Refused with threads, which cannot be stopped.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        Scores, times and parameters of every candidate, exactly as
        :class:`~sklearn.model_selection.GridSearchCV` builds them.
    best_estimator_ : estimator
        Estimator refitted on the whole data with the best parameters
        (when ``refit`` is not False).
    best_score_ : float
        Mean cross-validated score of the best candidate.
    best_params_ : dict
        Parameters of the best candidate.
    best_index_ : int
        Index of the best candidate in ``cv_results_``.
    scorer_ : function or dict
        The scorer(s) used on the held-out data.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds to refit the best model on the whole data.
    multimetric_ : bool
        Whether the scorers compute several metrics.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers refitted only).
    n_features_in_ : int
        Number of features seen during fit (when refitted).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit (when refitted on named features).
    trace_ : Trace (a list of dict)
        Where and when each fit ran: one dict per (candidate, split) with the
        worker, start and end times, fit and score times, and whether it
        failed or came from the result store; ``trace_.n_cached`` and
        ``trace_.n_rerun`` count the fits read from the store and the stored
        failures run again. See :class:`parml.tracing.Trace`.

    See Also
    --------
    ParallelRandomizedSearchCV : Search over sampled parameter settings.
    cross_val_parallel : Cross-validate one estimator in parallel.
    sklearn.model_selection.GridSearchCV : The scikit-learn original.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.svm import SVC
    >>> from parml import ParallelGridSearchCV
    >>> X, y = load_digits(return_X_y=True)
    >>> grid = {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}
    >>> search = ParallelGridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)
    >>> search.best_params_
    {'C': 10, 'gamma': 0.001}
    """

    _parameter_constraints = {
        **GridSearchCV._parameter_constraints,
        **PARALLEL_CONSTRAINTS,
    }
    _grid_param_name = "param_grid"

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        error_score=np.nan,
        return_train_score=False,
        backend=None,
        progress=False,
        memory=None,
        max_retries=2,
        timeout=None,
    ):
        super().__init__(
            estimator=estimator,
            param_grid=param_grid,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.backend = backend
        self.progress = progress
        self.memory = memory
        self.max_retries = max_retries
        self.timeout = timeout


class ParallelRandomizedSearchCV(PortableBackendMixin, ParallelSearchMixin, RandomizedSearchCV):
    """Randomized search over parameter settings, fitted in parallel.

    A drop-in replacement for
    :class:`sklearn.model_selection.RandomizedSearchCV`: for the same
    ``random_state`` it samples the same candidates and gives the same
    ``cv_results_``. See :class:`ParallelGridSearchCV` for how fits are run.

    Parameters
    ----------
    estimator : estimator object
        The object to tune.
    param_distributions : dict or list of dicts
        Parameter names mapped to distributions (with an ``rvs`` method) or
        lists of values to sample from; a list of dicts samples a dict
        first, uniformly.
    n_iter : int, default=10
        Number of parameter settings sampled.
    scoring : str, callable, list, tuple, dict or None, default=None
        As in :class:`ParallelGridSearchCV`.
    n_jobs : int, default=None
        Number of workers.
    refit : bool, str or callable, default=True
        As in :class:`ParallelGridSearchCV`.
    cv : int, cross-validation generator or iterable, default=None
        The splitting strategy.
    verbose : int, default=0
        Verbosity, with scikit-learn's meaning.
    pre_dispatch : int or str, default="2*n_jobs"
        How many tasks are dispatched ahead of the workers.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling of candidates.
    error_score : 'raise' or numeric, default=np.nan
        Score given to a fit that raises.
    return_train_score : bool, default=False
        Also score each fit on its training data.
    backend : str or None, default=None
        Where tasks run (see :class:`ParallelGridSearchCV`).
    progress : bool, default=False
        Show a progress bar counting finished fits.
    memory : str, os.PathLike, joblib.Memory or None, default=None
        A result store, to resume interrupted searches (see
        :class:`ParallelGridSearchCV`).
    max_retries : int, default=2
        Runs of a fit whose worker died, before it is recorded as failed.
    timeout : float or None, default=None
        Seconds one fit may run before it is stopped and recorded as failed.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        As :class:`~sklearn.model_selection.RandomizedSearchCV` builds it.
    best_estimator_ : estimator
        Refitted best estimator.
    best_score_ : float
        Mean cross-validated score of the best candidate.
    best_params_ : dict
        Parameters of the best candidate.
    best_index_ : int
        Index of the best candidate in ``cv_results_``.
    scorer_ : function or dict
        The scorer(s) used on the held-out data.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds to refit the best model.
    multimetric_ : bool
        Whether the scorers compute several metrics.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit.
    trace_ : Trace (a list of dict)
        Where and when each fit ran (see :class:`parml.tracing.Trace`).

    See Also
    --------
    ParallelGridSearchCV : Exhaustive search over a grid.
    sklearn.model_selection.RandomizedSearchCV : The scikit-learn original.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from parml import ParallelRandomizedSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = ParallelRandomizedSearchCV(
    ...     LogisticRegression(max_iter=1000), {"C": loguniform(1e-2, 1e2)},
    ...     n_iter=5, random_state=0, n_jobs=2).fit(X, y)
    >>> len(search.cv_results_["params"])
    5
    """

    _parameter_constraints = {
        **RandomizedSearchCV._parameter_constraints,
        **PARALLEL_CONSTRAINTS,
    }
    _grid_param_name = "param_distributions"

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_iter=10,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
        backend=None,
        progress=False,
        memory=None,
        max_retries=2,
        timeout=None,
    ):
        super().__init__(
            estimator=estimator,
            param_distributions=param_distributions,
            n_iter=n_iter,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            random_state=random_state,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.backend = backend
        self.progress = progress
        self.memory = memory
        self.max_retries = max_retries
        self.timeout = timeout
