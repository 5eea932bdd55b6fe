"""cross_val_parallel against sklearn.model_selection.cross_validate, key for key."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.model_selection import GroupKFold, cross_validate

from parml import cross_val_parallel
from _doubles import FailingClassifier

ENGINES = [dict(n_jobs=1), dict(n_jobs=2, backend="loky"), dict(n_jobs=2, backend="threading")]
engines = pytest.mark.parametrize("engine", ENGINES, ids=["n_jobs=1", "loky", "threading"])


def assert_same(ours, theirs, X=None):
    assert sorted(ours) == sorted(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        if key in ("fit_time", "score_time"):
            assert got.shape == expected.shape and got.dtype == expected.dtype
        elif key == "estimator":
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a.predict(X), b.predict(X))
        elif key == "indices":
            for part in ("train", "test"):
                assert type(got[part]) is type(expected[part])
                for a, b in zip(got[part], expected[part]):
                    np.testing.assert_array_equal(a, b)
        else:
            assert got.dtype == expected.dtype, key
            np.testing.assert_array_equal(got, expected, err_msg=key)


@engines
def test_single_metric_regressor(engine):
    X, y = load_diabetes(return_X_y=True)
    assert_same(cross_val_parallel(Lasso(), X, y, cv=3, **engine),
                cross_validate(Lasso(), X, y, cv=3))


@engines
def test_multimetric_train_scores_estimators_indices(engine):
    X, y = load_iris(return_X_y=True)
    kw = dict(cv=4, scoring=["accuracy", "f1_macro"], return_train_score=True,
              return_estimator=True, return_indices=True)
    est = LogisticRegression(max_iter=500)
    assert_same(cross_val_parallel(est, X, y, **kw, **engine), cross_validate(est, X, y, **kw), X)


@engines
def test_groups_and_fit_params(engine):
    X, y = make_classification(n_samples=120, random_state=0)
    kw = dict(groups=np.arange(120) % 4, cv=GroupKFold(4),
              params={"sample_weight": np.linspace(0.1, 2, 120)})
    est = LogisticRegression()
    assert_same(cross_val_parallel(est, X, y, **kw, **engine), cross_validate(est, X, y, **kw))


@engines
def test_error_score(engine):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="All the 3 fits failed"):
        cross_val_parallel(FailingClassifier(depth=0), X, y, cv=3, **engine)
    with pytest.raises(ValueError, match="depth 0"):
        cross_val_parallel(FailingClassifier(depth=0), X, y, cv=3, error_score="raise", **engine)
    ours = cross_val_parallel(FailingClassifier(depth=2), X, y, cv=3, error_score=-1, **engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cross_validate(FailingClassifier(depth=2), X, y, cv=3, error_score=-1)
    assert_same(ours, theirs)


def test_bad_input_names_the_parameter():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="'n_jobs' parameter"):
        cross_val_parallel(LogisticRegression(), X, y, n_jobs=0)
    with pytest.raises(ValueError, match="'backend' parameter"):
        cross_val_parallel(LogisticRegression(), X, y, backend="gpu")
    with pytest.raises(ValueError, match="X and y must have the same number of samples"):
        cross_val_parallel(LogisticRegression(), X, y[:-1])


def test_groups_with_routing_enabled_raises_as_cross_validate():
    X, y = load_iris(return_X_y=True)
    messages = []
    with sklearn.config_context(enable_metadata_routing=True):
        for func in (cross_val_parallel, cross_validate):
            with pytest.raises(ValueError, match="`groups` can only be passed if") as info:
                func(LogisticRegression(), X, y, groups=np.arange(len(y)) % 3)
            messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_unrequested_metadata_message_names_the_function_as_cross_validate():
    X, y = load_iris(return_X_y=True)
    messages = []
    with sklearn.config_context(enable_metadata_routing=True):
        for func in (cross_val_parallel, cross_validate):
            with pytest.raises(UnsetMetadataPassedError) as info:
                func(LogisticRegression(), X, y, params={"sample_weight": np.ones(len(y))})
            messages.append(str(info.value))
    ours, theirs = messages
    assert "for LogisticRegression.fit, which is used within cross_val_parallel. " in ours
    if "which is used within cross_validate. " in theirs:  # older releases word their own
        assert ours == theirs.replace("cross_validate", "cross_val_parallel")


def _recorded(registry):
    """Every record of the registry's objects, ``(method, metadata)``, whoever the caller.

    The recorder names the method and its caller from the Python stack; the
    caller is left out, as its name is the function's.
    """
    records = []
    for obj in registry:
        for method, by_caller in getattr(obj, "_records", {}).items():
            records += [(method, {k: np.asarray(v).tolist() for k, v in record.items()})
                        for records_of_caller in by_caller.values()
                        for record in records_of_caller]
    return sorted(records, key=repr)


def test_metadata_routed_as_cross_validate():
    # scikit-learn's test_validation_functions_routing, comparing the records of
    # both functions (its own check also needs scikit-learn's function name).
    routing = pytest.importorskip("sklearn.tests.metadata_routing_common")
    X, y = make_classification(n_samples=60, random_state=0)
    rng = np.random.RandomState(0)
    params = {name: rng.rand(len(y)) for name in
              ("score_weights", "score_metadata", "split_metadata", "fit_sample_weight",
               "fit_metadata")}
    params["split_groups"] = rng.randint(0, 3, len(y))
    recorded = []
    for func in (cross_val_parallel, cross_validate):
        registries = [routing._Registry() for _ in range(3)]
        with sklearn.config_context(enable_metadata_routing=True):
            scorer = routing.ConsumingScorer(registry=registries[0]).set_score_request(
                sample_weight="score_weights", metadata="score_metadata")
            splitter = routing.ConsumingSplitter(registry=registries[1]).set_split_request(
                groups="split_groups", metadata="split_metadata")
            estimator = routing.ConsumingClassifier(registry=registries[2]).set_fit_request(
                sample_weight="fit_sample_weight", metadata="fit_metadata")
            func(estimator, X, y, cv=splitter, params=params,
                 scoring={"mine": scorer, "accuracy": "accuracy"})
        recorded.append([_recorded(registry) for registry in registries])
    assert recorded[0] == recorded[1]
    assert all(recorded[0])  # scorer, splitter and estimator recorded their metadata
