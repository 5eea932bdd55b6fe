"""The one place where parml touches private names of scikit-learn.

scikit-learn offers no public API for a few things a drop-in search must do
exactly as ``GridSearchCV`` does them: splitting pairwise (precomputed kernel)
data, indexing fit parameters per split, scoring with ``error_score`` handling,
resolving the scorers and routing fit parameters of a search, declaring
parameter constraints, and driving a search's ``_run_search`` hook as
``BaseSearchCV.fit`` does, including the hooks successive halving relies on
(``_check_input_parameters``, ``_n_samples_orig``, ``_select_best_index``,
``_generate_candidate_params``).
scikit-learn's halving searches are experimental: they are imported here from
their module, without ``enable_halving_search_cv`` (which would add them to
``sklearn.model_selection`` for the whole process), so that parml's users need
not do it.
Each name imported here is checked by ``tests/test_compat.py``, so a
scikit-learn release that changes one of them fails loudly there instead of
silently changing parml's results.
"""

import inspect

import sklearn
from sklearn.base import _fit_context
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection._search_successive_halving import (  # experimental API
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
)
from sklearn.model_selection._validation import (
    _aggregate_score_dicts,
    _insert_error_scores,
    _normalize_score_results,
    _score,
)
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params, _check_sample_weight, _num_samples

__all__ = [
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "HasMethods",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "aggregate_score_dicts",
    "best_index_hook",
    "callback_api",
    "check_input_parameters",
    "has_callbacks",
    "inconsistent_splits_message",
    "init_callback_context",
    "check_method_params",
    "check_sample_weight",
    "fit_context",
    "insert_error_scores",
    "is_multimetric_scorer",
    "normalize_score_results",
    "num_samples",
    "run_search",
    "safe_split",
    "score",
    "scorer_dict",
    "search_routed_params",
    "search_scorers",
    "set_checked_cv",
    "set_n_samples_orig",
    "validate_params",
]

fit_context = _fit_context
safe_split = _safe_split
check_method_params = _check_method_params
check_sample_weight = _check_sample_weight
num_samples = _num_samples
score = _score
aggregate_score_dicts = _aggregate_score_dicts
insert_error_scores = _insert_error_scores
normalize_score_results = _normalize_score_results


def is_multimetric_scorer(scorer):
    """Whether ``scorer`` is scikit-learn's multi-metric scorer."""
    return isinstance(scorer, _MultimetricScorer)


def scorer_dict(scorer):
    """The ``{name: scorer}`` dict inside a multi-metric scorer."""
    return scorer._scorers


def search_scorers(search):
    """``(scorers, refit_metric)`` exactly as ``BaseSearchCV.fit`` resolves them."""
    return search._get_scorers()


def search_routed_params(search, params):
    """Fit parameters routed to estimator, splitter and scorer, as ``BaseSearchCV``."""
    return search._get_routed_params_for_fit(params)


def has_callbacks(estimator):
    """Whether callbacks were set with ``set_callbacks`` (scikit-learn >= 1.9).

    Without callbacks, parml skips building callback contexts: they would be
    pickled with every task for nothing.
    """
    return hasattr(estimator, "_init_callback_context") and bool(
        getattr(estimator, "_skl_callbacks", None)
    )


def init_callback_context(estimator, max_subtasks):
    """Root callback context of ``estimator``'s fit (scikit-learn >= 1.9)."""
    return estimator._init_callback_context(max_subtasks=max_subtasks)


def callback_api(estimator):
    """Whether this scikit-learn has the callback API (1.9 and later)."""
    return hasattr(estimator, "_init_callback_context")


def set_checked_cv(search, cv):
    """Keep the checked ``cv`` where scikit-learn's ``_run_search`` docs say it is.

    ``BaseSearchCV._run_search`` documents the default splitter of
    ``evaluate_candidates`` as the private ``_checked_cv_orig`` attribute;
    custom searches (successive halving, for one) read it.
    """
    search._checked_cv_orig = cv


def run_search(search, evaluate_candidates, callback_ctx):
    """Call ``search._run_search(evaluate_candidates)`` as ``BaseSearchCV.fit`` does.

    From scikit-learn 1.9, a ``_run_search`` that takes ``callback_ctx`` (as
    ``GridSearchCV``'s and ``RandomizedSearchCV``'s do, which need one) gets
    the root callback context; a custom one without that parameter, and any
    before 1.9, gets ``evaluate_candidates`` alone.
    """
    if "callback_ctx" in inspect.signature(search._run_search).parameters:
        search._run_search(evaluate_candidates, callback_ctx=callback_ctx)
    else:
        search._run_search(evaluate_candidates)


def check_input_parameters(search, X, y, split_params):
    """Run ``search._check_input_parameters`` where the search defines it.

    scikit-learn 1.9's ``BaseSearchCV.fit`` calls this hook after
    ``_checked_cv_orig`` is set and before ``n_splits_``; successive halving
    checks its ``cv`` and sets ``min_resources_`` and ``max_resources_`` there.
    Before 1.9 only the halving searches define it (their ``fit`` calls it).
    """
    hook = getattr(search, "_check_input_parameters", None)
    if hook is not None:
        hook(X=X, y=y, split_params=split_params)


def set_n_samples_orig(search, X):
    """Keep the number of samples where halving's ``_run_search`` reads it.

    ``BaseSuccessiveHalving.fit`` sets ``_n_samples_orig`` before
    ``BaseSearchCV.fit``; its ``_run_search`` subsamples each rung's splits
    to ``n_resources / _n_samples_orig``.
    """
    search._n_samples_orig = _num_samples(X)


#: ``(major, minor)`` of the installed scikit-learn.
SKLEARN_VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])


def inconsistent_splits_message(n_expected, n_got):
    """scikit-learn's error when ``cv.split`` gives another number of splits than
    ``cv.get_n_splits``, in the wording of the installed release.

    scikit-learn 1.9 words it "return", earlier releases "returned"; code that
    matches the message of the scikit-learn it runs on finds it either way.
    """
    verb = "return" if SKLEARN_VERSION >= (1, 9) else "returned"
    return (
        f"cv.split and cv.get_n_splits {verb} inconsistent results. "
        f"Expected {n_expected} splits, got {n_got}"
    )


def best_index_hook(search):
    """``search._select_best_index(refit, refit_metric, results)``, or None.

    ``BaseSearchCV.fit`` picks ``best_index_`` with this static method; the
    halving searches override it to pick among the last iteration only.
    """
    return getattr(search, "_select_best_index", None)


def halving_candidates(search):
    """The candidates of a halving search, as its ``_run_search`` lists them.

    ``_generate_candidate_params`` is how scikit-learn's halving searches
    give their grid (or their random draw, for ``random_state``) to their
    rung loop; the asynchronous mode starts from the same list.
    """
    return list(search._generate_candidate_params())
