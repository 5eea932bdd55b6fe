"""ParallelGridSearchCV / ParallelRandomizedSearchCV against scikit-learn, the oracle.

Same cv_results_ (keys, dtypes, masks, values; times excepted), same best_*,
same predictions, on every local engine.
"""

import warnings

import joblib
import numpy as np
import pytest
from scipy.stats import loguniform, randint
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits, load_iris, make_classification
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from _doubles import FailingClassifier
from _oracle import assert_same_search
from parml import ParallelGridSearchCV, ParallelRandomizedSearchCV

ENGINES = [dict(n_jobs=1), dict(n_jobs=2, backend="loky"), dict(n_jobs=2, backend="threading")]
engines = pytest.mark.parametrize("engine", ENGINES, ids=["n_jobs=1", "loky", "threading"])

digits_X, digits_y = load_digits(return_X_y=True)
digits_X, digits_y = digits_X[:600], digits_y[:600]
SEED_GRID = {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}


def both(grid_args, kw, X, y, fit_kw=None, parml_cls=ParallelGridSearchCV, sk_cls=GridSearchCV,
         engine=None):
    fit_kw = fit_kw or {}
    ours = parml_cls(*grid_args, **kw, **(engine or {})).fit(X, y, **fit_kw)
    theirs = sk_cls(*grid_args, **kw).fit(X, y, **fit_kw)
    return ours, theirs


@engines
def test_seed_grid_classifier(engine):
    ours, theirs = both((SVC(), SEED_GRID), dict(cv=3), digits_X, digits_y, engine=engine)
    assert_same_search(ours, theirs, digits_X)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.decision_function(digits_X[:20]),
                                  theirs.decision_function(digits_X[:20]))
    assert ours.score(digits_X, digits_y) == theirs.score(digits_X, digits_y)
    assert ours.n_features_in_ == 64


@engines
def test_regressor(engine):
    X, y = load_diabetes(return_X_y=True)
    ours, theirs = both((Ridge(), {"alpha": [0.01, 0.1, 1.0, 10.0]}),
                        dict(cv=4, return_train_score=True), X, y, engine=engine)
    assert_same_search(ours, theirs, X)


@engines
def test_pipeline_and_grid_of_dicts_with_masks(engine):
    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    grid = [{"svc__kernel": ["rbf"], "svc__gamma": [0.1, 1.0], "svc__C": [1, 10]},
            {"svc__kernel": ["linear"], "svc__C": [1, 10]}]
    ours, theirs = both((pipe, grid), dict(cv=3), X, y, engine=engine)
    assert_same_search(ours, theirs, X)
    assert ours.cv_results_["param_svc__gamma"].mask.tolist() == [False] * 4 + [True] * 2


@engines
@pytest.mark.parametrize("scoring", [["accuracy", "f1_macro"],
                                     {"acc": "accuracy", "bal": "balanced_accuracy"}])
def test_multimetric_refit_string(engine, scoring):
    X, y = load_iris(return_X_y=True)
    refit = "accuracy" if isinstance(scoring, list) else "bal"
    ours, theirs = both((LogisticRegression(max_iter=500), {"C": [0.01, 0.1, 1.0]}),
                        dict(cv=3, scoring=scoring, refit=refit, return_train_score=True),
                        X, y, engine=engine)
    assert_same_search(ours, theirs, X)
    assert set(ours.scorer_) == set(theirs.scorer_)


def lowest_c_within_one_std(cv_results):
    """refit callable: the simplest model within one std of the best accuracy."""
    means = cv_results["mean_test_accuracy"]
    best = means.argmax()
    ok = np.flatnonzero(means >= means[best] - cv_results["std_test_accuracy"][best])
    return int(ok[np.argmin(np.asarray(cv_results["param_C"])[ok])])


@engines
def test_multimetric_refit_callable_and_false(engine):
    X, y = load_iris(return_X_y=True)
    args = (LogisticRegression(max_iter=500), {"C": [0.01, 0.1, 1.0, 10.0]})
    kw = dict(cv=3, scoring=["accuracy", "f1_macro"])
    ours, theirs = both(args, dict(kw, refit=lowest_c_within_one_std), X, y, engine=engine)
    assert_same_search(ours, theirs, X)
    assert not hasattr(ours, "best_score_")
    ours, theirs = both(args, dict(kw, refit=False), X, y, engine=engine)
    assert_same_search(ours, theirs)
    assert not hasattr(ours, "best_estimator_")


@engines
def test_groups_and_sample_weight(engine):
    X, y = make_classification(n_samples=150, random_state=0)
    groups = np.arange(150) % 6
    weight = np.linspace(0.2, 3.0, 150)
    ours, theirs = both((LogisticRegression(), {"C": [0.01, 1.0]}), dict(cv=GroupKFold(3)),
                        X, y, fit_kw=dict(groups=groups, sample_weight=weight), engine=engine)
    assert_same_search(ours, theirs, X)
    unweighted = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, cv=GroupKFold(3)).fit(
        X, y, groups=groups)
    assert not np.array_equal(ours.cv_results_["split0_test_score"],
                              unweighted.cv_results_["split0_test_score"])


@engines
@pytest.mark.parametrize("error_score", [np.nan, 0.0])
def test_error_score_numeric(engine, error_score):
    X, y = load_iris(return_X_y=True)
    grid = {"depth": [0, 1, 2]}
    with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 9") as record:
        ours = ParallelGridSearchCV(FailingClassifier(), grid, cv=3, error_score=error_score,
                                    **engine).fit(X, y)
    assert sum(issubclass(w.category, FitFailedWarning) for w in record) == 1
    assert "depth 0 cannot be fitted" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GridSearchCV(FailingClassifier(), grid, cv=3, error_score=error_score).fit(X, y)
    assert_same_search(ours, theirs, X)


@engines
def test_error_score_raise_and_all_failing(engine):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="depth 0 cannot be fitted"):
        ParallelGridSearchCV(FailingClassifier(), {"depth": [1, 0]}, cv=3,
                             error_score="raise", **engine).fit(X, y)
    with pytest.raises(ValueError, match="All the 6 fits failed"):
        ParallelGridSearchCV(FailingClassifier(), {"depth": [0, 0]}, cv=3, **engine).fit(X, y)


@engines
def test_pandas_input(engine):
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    ours, theirs = both((LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}), dict(cv=3),
                        X, y, engine=engine)
    assert_same_search(ours, theirs, X)
    assert list(ours.feature_names_in_) == list(X.columns)
    assert isinstance(X, pd.DataFrame)


@engines
def test_randomized_search_same_candidates(engine):
    X, y = load_iris(return_X_y=True)
    dists = {"C": loguniform(1e-3, 1e2), "max_iter": randint(200, 400)}
    kw = dict(n_iter=6, cv=3, random_state=0)
    ours, theirs = both((LogisticRegression(), dists), kw, X, y, engine=engine,
                        parml_cls=ParallelRandomizedSearchCV, sk_cls=RandomizedSearchCV)
    assert_same_search(ours, theirs, X)


def test_metadata_routing():
    import sklearn

    X, y = make_classification(n_samples=120, random_state=0)
    weight = np.linspace(0.5, 2.0, 120)
    with sklearn.config_context(enable_metadata_routing=True):
        est = (LogisticRegression().set_fit_request(sample_weight=True)
               .set_score_request(sample_weight=True))
        ours, theirs = both((est, {"C": [0.1, 1.0]}), dict(cv=3), X, y,
                            fit_kw=dict(sample_weight=weight), engine=dict(n_jobs=2))
    assert_same_search(ours, theirs, X)


def test_clone_params_and_pickle(tmp_path):
    search = ParallelGridSearchCV(SVC(), SEED_GRID, cv=3, n_jobs=2, backend="loky",
                                  progress=False)
    params = search.get_params()
    assert params["backend"] == "loky" and params["n_jobs"] == 2 and params["cv"] == 3
    copy = clone(search)
    assert copy.get_params()["param_grid"] == SEED_GRID
    assert isinstance(search, GridSearchCV)
    search.set_params(n_jobs=1).fit(digits_X, digits_y)
    path = tmp_path / "search.joblib"
    joblib.dump(search, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict(digits_X), search.predict(digits_X))


def _callback_recorders():
    """An in-process recording callback, and an auto-propagated one (scikit-learn >= 1.9)."""
    try:
        from sklearn import callback
    except ImportError:
        pytest.skip("scikit-learn's callback API is new in 1.9")

    class Recorder:
        def __init__(self):
            self.events = []

        def setup(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context, *, metadata=None):
            self.events.append(("begin", context.task_name, tuple(sorted(metadata or {}))))

        def on_fit_task_end(self, estimator, context, *, metadata=None):
            self.events.append(("end", context.task_name, tuple(sorted(metadata or {}))))

        def teardown(self, estimator, context):
            pass

    class PropagatedRecorder(Recorder, callback.AutoPropagatedCallback):
        max_propagation_depth = None

    return Recorder(), PropagatedRecorder()


@pytest.mark.parametrize("refit", [True, False])
def test_callbacks_hooks_and_metadata_as_sklearn(refit):
    # scikit-learn 1.9: the refit's on_fit_task_begin runs inside the propagation
    # context (an auto-propagated callback is called once for it, by the refitted
    # estimator), and the root, evaluation and refit tasks get the sample weight.
    X, y = make_classification(n_samples=90, random_state=0)
    weight = np.linspace(0.5, 2.0, 90)
    events = []
    for cls in (ParallelGridSearchCV, GridSearchCV):
        callbacks = _callback_recorders()
        cls(LogisticRegression(max_iter=50), {"C": [0.1, 1.0]}, cv=2, refit=refit,
            n_jobs=1).set_callbacks(*callbacks).fit(X, y, sample_weight=weight)
        events.append([sorted(c.events) for c in callbacks])
    assert events[0] == events[1]
    flat, propagated = events[1]
    assert len(propagated) > len(flat)  # the inner estimator's tasks were propagated
    weighted = {task for _, task, metadata in flat if metadata == ("sample_weight",)}
    assert weighted == {"fit", "candidate-split-evaluation"} | (
        {"refit-with-best-params"} if refit else set())


def test_inconsistent_splits_message_as_sklearn():
    class BrokenKFold(KFold):
        def get_n_splits(self, *args, **kwargs):
            return 1

    X, y = load_diabetes(return_X_y=True)
    messages = []
    for cls in (ParallelRandomizedSearchCV, RandomizedSearchCV):
        search = cls(Ridge(), {"alpha": [1e-3, 1e-2, 1e-1]}, cv=BrokenKFold(n_splits=3))
        with pytest.raises(ValueError, match="inconsistent results") as info:
            search.fit(X[:100], y[:100])
        messages.append(str(info.value))
    assert messages[0] == messages[1]
