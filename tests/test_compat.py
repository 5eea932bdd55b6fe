"""Guards for the private scikit-learn names parml uses (all in parml._compat).

If a scikit-learn release renames or changes one of them, these tests fail
here, naming the piece, instead of parml silently computing something else.
"""

import inspect

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import FitFailedWarning  # noqa: F401  (public, used by parml)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.model_selection import GridSearchCV, ParameterGrid, ParameterSampler
from sklearn.svm import SVC

from parml import _compat


def test_private_names_exist_with_expected_signatures():
    assert list(inspect.signature(_compat.safe_split).parameters) == [
        "estimator", "X", "y", "indices", "train_indices"
    ]
    assert list(inspect.signature(_compat.check_method_params).parameters) == [
        "X", "params", "indices"
    ]
    assert list(inspect.signature(_compat.score).parameters) == [
        "estimator", "X_test", "y_test", "scorer", "score_params", "error_score"
    ]
    assert "prefer_skip_nested_validation" in inspect.signature(
        _compat.fit_context
    ).parameters


def test_safe_split_slices_both_axes_for_precomputed_kernels():
    X = np.arange(16.0).reshape(4, 4)
    y = np.arange(4)
    Xs, ys = _compat.safe_split(SVC(kernel="precomputed"), X, y, [0, 2], [1, 3])
    np.testing.assert_array_equal(Xs, X[[0, 2]][:, [1, 3]])
    np.testing.assert_array_equal(ys, [0, 2])
    Xs, _ = _compat.safe_split(SVC(), X, y, [0, 2])
    np.testing.assert_array_equal(Xs, X[[0, 2]])


def test_check_method_params_indexes_per_sample_values_only():
    X = np.zeros((4, 2))
    params = {"sample_weight": np.arange(4.0), "flag": 3}
    out = _compat.check_method_params(X, params=params, indices=[1, 3])
    np.testing.assert_array_equal(out["sample_weight"], [1.0, 3.0])
    assert out["flag"] == 3


def test_score_replaces_failing_scorer_with_error_score():
    X, y = load_iris(return_X_y=True)
    est = LogisticRegression(max_iter=500).fit(X, y)

    def broken(estimator, X, y):
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="Scoring failed"):
        assert _compat.score(est, X, y, broken, {}, error_score=-1.0) == -1.0
    assert _compat.score(est, X, y, check_scoring(est), {}, "raise") == est.score(X, y)


def test_multimetric_scorer_and_its_dict():
    est = LogisticRegression()
    multi = check_scoring(est, ["accuracy", "f1_macro"])
    single = check_scoring(est, "accuracy")
    assert _compat.is_multimetric_scorer(multi)
    assert not _compat.is_multimetric_scorer(single)
    assert sorted(_compat.scorer_dict(multi)) == ["accuracy", "f1_macro"]


def test_search_scorers_and_routing_of_a_search():
    search = GridSearchCV(LogisticRegression(), {"C": [1]}, scoring=["accuracy"],
                          refit="accuracy")
    scorers, refit_metric = _compat.search_scorers(search)
    assert _compat.is_multimetric_scorer(scorers) and refit_metric == "accuracy"
    routed = _compat.search_routed_params(search, {"groups": [0, 1], "sample_weight": None})
    assert routed.splitter.split == {"groups": [0, 1]}
    assert routed.estimator.fit == {"sample_weight": None}


def test_parameter_constraint_vocabulary():
    from numbers import Integral

    constraint = _compat.Interval(Integral, 1, None, closed="left")
    assert constraint.is_satisfied_by(2) and not constraint.is_satisfied_by(0)
    assert _compat.StrOptions({"raise"}).is_satisfied_by("raise")


def test_callback_hooks_present_when_sklearn_has_callbacks():
    search = GridSearchCV(LogisticRegression(), {"C": [1]})
    if not hasattr(search, "set_callbacks"):
        pytest.skip("this scikit-learn has no callback API")

    class Quiet:
        def setup(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context, **kwargs):
            pass

        def on_fit_task_end(self, estimator, context, **kwargs):
            pass

        def teardown(self, estimator, context):
            pass

    assert not _compat.has_callbacks(search)
    search.set_callbacks(Quiet())
    assert _compat.has_callbacks(search)
    ctx = _compat.init_callback_context(search, max_subtasks=1)
    assert hasattr(ctx, "subcontext") and hasattr(ctx, "call_on_fit_task_begin")


def test_check_sample_weight_validates_and_defaults_to_ones():
    X = np.zeros((3, 2))
    np.testing.assert_array_equal(_compat.check_sample_weight(None, X), np.ones(3))
    np.testing.assert_array_equal(_compat.check_sample_weight([1, 2, 3], X), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="sample_weight"):
        _compat.check_sample_weight([1, 2], X)


def test_real_not_int_interval_rejects_ints():
    interval = _compat.Interval(_compat.RealNotInt, 0, 1, closed="right")
    assert interval.is_satisfied_by(0.5) and not interval.is_satisfied_by(1)


def _sklearn_run_search(search):
    """The candidates scikit-learn's ``_run_search`` of ``search`` evaluates."""
    calls = []

    def evaluate_candidates(candidate_params, cv=None, more_results=None, callback_ctx=None):
        calls.append(list(candidate_params))
        return {}

    search.n_splits_ = 3  # scikit-learn 1.9 sizes its callback context with it
    root = None
    if _compat.callback_api(search):
        root = _compat.init_callback_context(search, max_subtasks=2)
    _compat.run_search(search, evaluate_candidates, root)
    return calls


def test_run_search_drives_sklearn_searches_with_their_candidates():
    from scipy.stats import loguniform
    from sklearn.model_selection import ParameterGrid, ParameterSampler, RandomizedSearchCV

    grid = {"C": [1, 2], "tol": [1e-3, 1e-4]}
    search = GridSearchCV(LogisticRegression(), grid)
    assert _sklearn_run_search(search) == [list(ParameterGrid(grid))]
    dists = {"C": loguniform(1e-2, 1e2)}
    search = RandomizedSearchCV(LogisticRegression(), dists, n_iter=3, random_state=0)
    assert _sklearn_run_search(search) == [list(ParameterSampler(dists, 3, random_state=0))]


def test_run_search_calls_a_custom_search_with_evaluate_candidates_only():
    class Custom(GridSearchCV):
        def _run_search(self, evaluate_candidates):
            evaluate_candidates([{"C": 1}])
            evaluate_candidates([{"C": 2}])

    assert _sklearn_run_search(Custom(LogisticRegression(), {})) == [[{"C": 1}], [{"C": 2}]]


def test_checked_cv_is_where_the_run_search_docs_say():
    from sklearn.model_selection import KFold
    from sklearn.model_selection._search import BaseSearchCV

    assert "`_checked_cv_orig`" in BaseSearchCV._run_search.__doc__
    search = GridSearchCV(LogisticRegression(), {})
    _compat.set_checked_cv(search, KFold(3))
    assert isinstance(search._checked_cv_orig, KFold)


def test_callback_api_is_scikit_learns_set_callbacks():
    search = GridSearchCV(LogisticRegression(), {})
    assert _compat.callback_api(search) == hasattr(search, "set_callbacks")


# -- successive halving: the hooks BaseSuccessiveHalving.fit relies on -------------

def _halving(**kw):
    from sklearn.tree import DecisionTreeClassifier

    return _compat.HalvingGridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2, 3]},
                                       cv=3, **kw)


def test_halving_searches_come_from_sklearn_without_the_users_experimental_import():
    from sklearn.model_selection._search_successive_halving import (
        HalvingGridSearchCV,
        HalvingRandomSearchCV,
    )

    assert _compat.HalvingGridSearchCV is HalvingGridSearchCV
    assert _compat.HalvingRandomSearchCV is HalvingRandomSearchCV


def test_check_input_parameters_sets_halvings_resources():
    from sklearn.model_selection import KFold

    X, y = load_iris(return_X_y=True)
    search = _halving(min_resources="smallest")
    _compat.set_checked_cv(search, KFold(3))
    _compat.check_input_parameters(search, X, y, {})
    assert (search.min_resources_, search.max_resources_) == (3 * 2 * 3, 150)
    search = _halving()
    _compat.set_checked_cv(search, KFold(3, shuffle=True))
    with pytest.raises(ValueError, match="consistent folds"):
        _compat.check_input_parameters(search, X, y, {})
    _compat.check_input_parameters(GridSearchCV(LogisticRegression(), {}), X, y, {})  # no hook


def test_halvings_run_search_reads_n_samples_orig():
    from sklearn.model_selection._search_successive_halving import BaseSuccessiveHalving

    assert "self._n_samples_orig" in inspect.getsource(BaseSuccessiveHalving._run_search)
    search = _halving()
    _compat.set_n_samples_orig(search, np.zeros((7, 2)))
    assert search._n_samples_orig == 7


def test_best_index_hook_picks_halvings_best_of_the_last_iteration():
    results = {"iter": np.array([0, 0, 1]), "mean_test_score": np.array([0.9, 0.5, 0.7]),
               "rank_test_score": np.array([1, 3, 2]), "params": [{}, {}, {}]}
    assert _compat.best_index_hook(_halving())(True, "score", results) == 2
    grid_hook = _compat.best_index_hook(GridSearchCV(LogisticRegression(), {}))
    assert grid_hook(True, "score", results) == 0
    assert grid_hook(lambda r: 1, "score", results) == 1
    assert _compat.best_index_hook(object()) is None


def test_halving_candidates_are_the_grid_or_the_draw_of_sklearns_halving():
    from sklearn.svm import SVC

    grid = {"C": [1, 10], "gamma": [0.1, 1]}
    search = _compat.HalvingGridSearchCV(SVC(), grid)
    assert _compat.halving_candidates(search) == list(ParameterGrid(grid))
    draw = _compat.HalvingRandomSearchCV(SVC(), {"C": [1, 2, 3, 4, 5]}, n_candidates=3,
                                         random_state=0)
    draw.n_candidates_ = 3  # set by scikit-learn's _run_search before it draws
    assert _compat.halving_candidates(draw) == list(
        ParameterSampler({"C": [1, 2, 3, 4, 5]}, 3, random_state=0))
