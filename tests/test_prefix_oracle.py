"""Searches over pipelines whose steps write into their input: scikit-learn's scores.

Prefix dedup fits a shared pipeline prefix once per split and hands its output
to every candidate's final step; small folds are kept once per worker. Steps
that write into their input (``copy_X=False`` linear models, ``copy=False``
scalers, a user's step) must not change what the next candidate sees, so
parml's ``cv_results_`` equal scikit-learn's for any ``n_jobs`` and backend.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.datasets import make_regression
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer, MaxAbsScaler, PolynomialFeatures, StandardScaler,
)

from parml import ParallelGridSearchCV

from _oracle import assert_same_search


class ScaleInPlace(TransformerMixin, BaseEstimator):
    """A user's step that writes into X in fit and in transform."""

    def __init__(self, factor=2.0):
        self.factor = factor

    def fit(self, X, y=None):
        X *= self.factor
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X *= self.factor
        return X


class RidgeWritingX(RegressorMixin, BaseEstimator):
    """A user's final step that writes into X and y in fit."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        X -= X.mean(axis=0)
        y -= 1.0
        self.ridge_ = Ridge(alpha=self.alpha).fit(X, y)
        return self

    def predict(self, X):
        return self.ridge_.predict(X) + 1.0


def _data(sparse=False):
    X, y = make_regression(300, 8, noise=5, random_state=0)
    X += 5
    return (sp.csr_matrix(X) if sparse else X), y


CASES = {
    "poly-linear-copy_X=False": (
        lambda: make_pipeline(PolynomialFeatures(2), LinearRegression(copy_X=False)),
        {"linearregression__fit_intercept": [True, False, True]}, False),
    "scaler-ridge-copy_X=False": (
        lambda: make_pipeline(StandardScaler(with_mean=False), Ridge(copy_X=False)),
        {"ridge__alpha": [0.1, 1.0, 10.0]}, False),
    "scaler-copy=False": (
        lambda: make_pipeline(StandardScaler(copy=False), Ridge()),
        {"ridge__alpha": [0.1, 1.0, 10.0]}, False),
    "user-step-writes-X": (
        lambda: make_pipeline(ScaleInPlace(), RidgeWritingX()),
        {"ridgewritingx__alpha": [0.1, 1.0, 10.0]}, False),
    "user-estimator-writes-X": (
        lambda: RidgeWritingX(),
        {"alpha": [0.1, 1.0, 10.0]}, False),
    "lambdas-in-grid": (
        lambda: make_pipeline(FunctionTransformer(), Ridge(copy_X=False)),
        {"functiontransformer__func": [lambda x: x, np.tanh, lambda x: x * 2],
         "ridge__alpha": [1.0, 10.0]}, False),
    "sparse-maxabs-copy=False": (
        lambda: make_pipeline(MaxAbsScaler(copy=False), Ridge(copy_X=False)),
        {"ridge__alpha": [0.1, 1.0, 10.0]}, True),
}


def _predictions(search, X):
    return search.predict(X.copy())


@pytest.mark.parametrize("backend", ["threading", "loky"])
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_pipelines_writing_into_their_input_score_as_sklearn(case, n_jobs, backend):
    make, grid, sparse = CASES[case]
    X, y = _data(sparse)
    theirs = GridSearchCV(make(), grid, cv=3, return_train_score=True).fit(X.copy(), y.copy())
    with parallel_config(backend=backend):
        ours = ParallelGridSearchCV(make(), grid, cv=3, n_jobs=n_jobs,
                                    return_train_score=True).fit(X.copy(), y.copy())
    assert_same_search(ours, theirs)
    np.testing.assert_array_equal(_predictions(ours, X), _predictions(theirs, X))
    assert np.all(np.isfinite(ours.cv_results_["mean_test_score"])), case


def test_issue_snippets_give_sklearn_scores():
    """The two reported cases: every candidate scores as in scikit-learn."""
    X, y = _data()
    grid = {"linearregression__fit_intercept": [True, False, True]}
    pipe = make_pipeline(PolynomialFeatures(2), LinearRegression(copy_X=False))
    ours = ParallelGridSearchCV(pipe, grid, cv=3, n_jobs=1, refit=False).fit(X, y)
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], 0.9992, atol=1e-4)
    pipe = make_pipeline(StandardScaler(with_mean=False), Ridge(copy_X=False))
    for n_jobs in (1, 2):
        ours = ParallelGridSearchCV(pipe, {"ridge__alpha": [0.1, 1.0, 10.0]}, cv=3,
                                    n_jobs=n_jobs, refit=False).fit(X, y)
        theirs = GridSearchCV(pipe, {"ridge__alpha": [0.1, 1.0, 10.0]}, cv=3,
                              refit=False).fit(X, y)
        np.testing.assert_array_equal(ours.cv_results_["mean_test_score"],
                                      theirs.cv_results_["mean_test_score"])
