"""Successive halving searches on parml's scheduler: scikit-learn's rungs, parallel fits.

scikit-learn's ``BaseSuccessiveHalving._run_search`` decides the rungs: all
candidates on few resources (samples, or an integer parameter such as
``n_estimators``), then the best ``1 / factor`` of them on ``factor`` times
more, until one rung is left. parml's classes inherit that ``_run_search``
unchanged, so they evaluate the same candidates on the same resources and give
the same ``cv_results_``; each rung is one ``evaluate_candidates`` call, its
fits run as tasks of the scheduler opened once for the whole ``fit``. This is
the synchronous mode: a rung starts when the one before it has finished.
With ``asynchronous=True`` the rungs run as ASHA instead (see
:mod:`._halving_async`): promotions as results arrive, no rung barrier.
"""

import numpy as np

from .. import _compat
from .._live_backend import PortableBackendMixin
from ._halving_async import search_asynchronously
from ._search import PARALLEL_CONSTRAINTS, ParallelSearchMixin

#: Constraints of the halving searches' own parml parameters.
HALVING_CONSTRAINTS = {"asynchronous": ["boolean"]}

__all__ = ["ParallelHalvingGridSearchCV", "ParallelHalvingRandomSearchCV"]


class ParallelHalvingMixin(ParallelSearchMixin):
    """``fit`` of the halving searches: what ``BaseSuccessiveHalving.fit`` adds.

    Before the search, the number of samples (each rung's splits are
    subsampled from it); after it, ``best_score_``, which ``BaseSearchCV``
    does not set for a callable ``refit``. ``_check_input_parameters``
    (``min_resources_``, ``max_resources_``) runs in the shared set-up, and
    ``_select_best_index`` picks the best of the last rung.
    """

    @_compat.fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Run successive halving over the candidates, each rung in parallel.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors.
        y : array-like of shape (n_samples,) or (n_samples, n_output), default=None
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
        _compat.set_n_samples_orig(self, X)
        super().fit(X, y, **params)
        self.best_score_ = self.cv_results_["mean_test_score"][self.best_index_]
        return self

    def _search(self, setup, root_ctx):
        """The rungs: scikit-learn's loop (synchronous), or ASHA with ``asynchronous=True``."""
        if not self.asynchronous:
            return super()._search(setup, root_ctx)
        return search_asynchronously(self, setup)


_SHARED_PARAMETERS = """
    factor : int or float, default=3
        The 'halving' parameter: each rung keeps ``1 / factor`` of the
        candidates and gives each ``factor`` times more resources.
    resource : ``'n_samples'`` or str, default='n_samples'
        What grows from rung to rung: the number of samples, or an integer
        parameter of the estimator (``'n_estimators'``, ``'max_iter'``), which
        must not be searched.
    max_resources : int or 'auto', default='auto'
        Resources a candidate gets at most; 'auto' (only with
        ``resource='n_samples'``) is the number of samples.
    aggressive_elimination : bool, default=False
        Repeat the first rung's resources until few enough candidates are left
        to end with ``factor`` or fewer, when resources are too few otherwise.
    cv : int, cross-validation generator or iterable, default=5
        The splitting strategy; it must give the same splits on every call to
        ``split`` (an int seed when it shuffles).
    scoring : str, callable or None, default=None
        One scorer (halving selects on a single metric).
    refit : bool or callable, default=True
        Refit the best candidate of the last rung on the whole data.
    error_score : 'raise' or numeric, default=np.nan
        Score given to a fit that raises; ``'raise'`` re-raises the error.
    return_train_score : bool, default=True
        Also score each fit on its training data.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsampling of each rung's samples (with
        ``resource='n_samples'``) and the sampling of candidates.
    n_jobs : int, default=None
        Number of workers.
    verbose : int, default=0
        Verbosity, with scikit-learn's meaning.
    backend : str or None, default=None
        Where tasks run (see :class:`ParallelGridSearchCV`).
    progress : bool, default=False
        Show a progress bar per rung, counting finished fits.
    memory : str, os.PathLike, joblib.Memory or None, default=None
        A result store (see :class:`ParallelGridSearchCV`): an interrupted
        halving search resumes, its finished rungs read from the store (with an
        int ``random_state``, so that the subsamples are the same).
    max_retries : int, default=2
        Runs of a fit whose worker died, before it is recorded as failed.
    timeout : float or None, default=None
        Seconds one fit may run before it is stopped and recorded as failed.
    asynchronous : bool, default=False
        False: scikit-learn's rungs, each started when the one before has
        finished, and its ``cv_results_``. True: asynchronous successive
        halving (ASHA): a candidate is promoted as soon as it ranks in the
        best ``1 / factor`` of the candidates finished at its rung, so no
        worker waits for a rung to fill; the rungs' resources and sizes and
        the candidates are scikit-learn's, which candidates climb depends on
        the order fits finish. With ``resource`` the parameter that an
        ensemble's ``warm_start`` grows (``n_estimators`` of a forest,
        boosting or bagging model, ``max_iter`` of histogram gradient
        boosting), a promoted candidate continues from its fitted state.
        ``cv_results_`` rows are grouped by rung, then ordered by candidate.
"""

_SHARED_ATTRIBUTES = """
    n_resources_ : list of int
        Resources of each rung.
    n_candidates_ : list of int
        Candidates of each rung.
    n_remaining_candidates_ : int
        Candidates left after the last rung.
    max_resources_ : int
        Resources a candidate gets at most.
    min_resources_ : int
        Resources of the first rung.
    n_iterations_ : int
        Rungs run: the smaller of ``n_possible_iterations_`` and
        ``n_required_iterations_`` (the latter with
        ``aggressive_elimination``).
    n_possible_iterations_ : int
        Rungs possible from ``min_resources_`` without exceeding
        ``max_resources_``.
    n_required_iterations_ : int
        Rungs needed to end with fewer than ``factor`` candidates.
    cv_results_ : dict of numpy (masked) ndarrays
        As scikit-learn's halving search builds it, with the ``iter`` and
        ``n_resources`` of each candidate's rung.
    best_estimator_ : estimator
        The best candidate of the last rung, refitted on the whole data.
    best_score_ : float
        Mean cross-validated score of that candidate, in the last rung.
    best_params_ : dict
        Parameters of that candidate.
    best_index_ : int
        Index of that candidate in ``cv_results_``.
    scorer_ : function or dict
        The scorer used on the held-out data.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds to refit the best model.
    multimetric_ : bool
        Whether the scorer computes several metrics.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit.
    trace_ : Trace (a list of dict)
        Where and when each fit ran (see :class:`parml.tracing.Trace`); a
        fit's rung is ``cv_results_["iter"][fit["candidate_idx"]]``.
"""


class ParallelHalvingGridSearchCV(PortableBackendMixin, ParallelHalvingMixin,
                                  _compat.HalvingGridSearchCV):
    __doc__ = """Successive halving over a parameter grid, each rung fitted in parallel.

    A drop-in replacement for
    :class:`sklearn.model_selection.HalvingGridSearchCV` (no
    ``enable_halving_search_cv`` import needed): the same parameters, rungs,
    fitted attributes and ``cv_results_``. Every (candidate, split) fit of a
    rung is a task of parml's scheduler, opened once for the whole search.

    Parameters
    ----------
    estimator : estimator object
        The object to tune.
    param_grid : dict or list of dictionaries
        Parameter names mapped to lists of values, or a list of such dicts.
    min_resources : int, 'exhaust' or 'smallest', default='exhaust'
        Resources of the first rung. 'smallest': 1 for a parameter, else
        ``2 * n_splits`` samples (times the number of classes for a
        classifier); 'exhaust': as many as let the last rung use nearly
        ``max_resources``.
""" + _SHARED_PARAMETERS + """
    Attributes
    ----------
""" + _SHARED_ATTRIBUTES + """
    See Also
    --------
    ParallelHalvingRandomSearchCV : Successive halving over sampled candidates.
    ParallelGridSearchCV : Every candidate on all the resources.
    sklearn.model_selection.HalvingGridSearchCV : The scikit-learn original.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from parml import ParallelHalvingGridSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> grid = {"max_depth": [1, 2, 3, None], "min_samples_leaf": [1, 5]}
    >>> search = ParallelHalvingGridSearchCV(
    ...     DecisionTreeClassifier(random_state=0), grid, factor=2, cv=3,
    ...     random_state=0, n_jobs=2).fit(X, y)
    >>> search.n_candidates_, search.n_resources_
    ([8, 4, 2, 1], [18, 36, 72, 144])
    """

    _parameter_constraints = {
        **_compat.HalvingGridSearchCV._parameter_constraints,
        **PARALLEL_CONSTRAINTS,
        **HALVING_CONSTRAINTS,
    }
    _grid_param_name = "param_grid"

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        factor=3,
        resource="n_samples",
        max_resources="auto",
        min_resources="exhaust",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        backend=None,
        progress=False,
        memory=None,
        max_retries=2,
        timeout=None,
        asynchronous=False,
    ):
        super().__init__(
            estimator,
            param_grid,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.backend = backend
        self.progress = progress
        self.memory = memory
        self.max_retries = max_retries
        self.timeout = timeout
        self.asynchronous = asynchronous


class ParallelHalvingRandomSearchCV(PortableBackendMixin, ParallelHalvingMixin,
                                    _compat.HalvingRandomSearchCV):
    __doc__ = """Successive halving over sampled candidates, each rung fitted in parallel.

    A drop-in replacement for
    :class:`sklearn.model_selection.HalvingRandomSearchCV` (no
    ``enable_halving_search_cv`` import needed): for the same
    ``random_state`` it samples the same candidates, runs the same rungs and
    gives the same ``cv_results_``. See :class:`ParallelHalvingGridSearchCV`.

    Parameters
    ----------
    estimator : estimator object
        The object to tune.
    param_distributions : dict or list of dicts
        Parameter names mapped to distributions (with an ``rvs`` method) or
        lists of values to sample from.
    n_candidates : int or 'exhaust', default='exhaust'
        Candidates of the first rung; 'exhaust': as many as let the last rung
        use nearly ``max_resources``.
    min_resources : int, 'exhaust' or 'smallest', default='smallest'
        Resources of the first rung (see :class:`ParallelHalvingGridSearchCV`);
        'exhaust' needs an int ``n_candidates``.
""" + _SHARED_PARAMETERS + """
    Attributes
    ----------
""" + _SHARED_ATTRIBUTES + """
    See Also
    --------
    ParallelHalvingGridSearchCV : Successive halving over a grid.
    ParallelRandomizedSearchCV : Every sampled candidate on all the resources.
    sklearn.model_selection.HalvingRandomSearchCV : The scikit-learn original.

    Examples
    --------
    >>> from scipy.stats import randint
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import ExtraTreesClassifier
    >>> from parml import ParallelHalvingRandomSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = ParallelHalvingRandomSearchCV(
    ...     ExtraTreesClassifier(random_state=0), {"max_depth": randint(1, 6)},
    ...     n_candidates=6, resource="n_estimators", max_resources=12,
    ...     random_state=0, cv=3, n_jobs=2).fit(X, y)
    >>> search.n_candidates_, search.n_resources_
    ([6, 2], [1, 3])
    """

    _parameter_constraints = {
        **_compat.HalvingRandomSearchCV._parameter_constraints,
        **PARALLEL_CONSTRAINTS,
        **HALVING_CONSTRAINTS,
    }
    _grid_param_name = "param_distributions"

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_candidates="exhaust",
        factor=3,
        resource="n_samples",
        max_resources="auto",
        min_resources="smallest",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        backend=None,
        progress=False,
        memory=None,
        max_retries=2,
        timeout=None,
        asynchronous=False,
    ):
        super().__init__(
            estimator,
            param_distributions,
            n_candidates=n_candidates,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.backend = backend
        self.progress = progress
        self.memory = memory
        self.max_retries = max_retries
        self.timeout = timeout
        self.asynchronous = asynchronous
