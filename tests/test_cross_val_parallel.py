"""cross_val_parallel against sklearn.model_selection.cross_validate, key for key."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_classification
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
