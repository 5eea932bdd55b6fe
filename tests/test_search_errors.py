"""Bad input: errors that name the parameter, show the value and say what is valid."""

import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from parml import ParallelGridSearchCV, ParallelRandomizedSearchCV

X, y = load_iris(return_X_y=True)


def fit(grid=None, **kw):
    grid = {"C": [1.0]} if grid is None else grid
    return ParallelGridSearchCV(LogisticRegression(), grid, **kw).fit(X, y)


def test_empty_value_list():
    with pytest.raises(ValueError, match="parameter 'C' need to be a non-empty sequence"):
        fit({"C": []})


def test_empty_list_of_grids():
    with pytest.raises(ValueError, match="No fits were performed"):
        fit([])


def test_empty_dict_evaluates_the_default_estimator_as_sklearn_does():
    ours = fit({})
    assert ours.cv_results_["params"] == GridSearchCV(LogisticRegression(), {}).fit(
        X, y).cv_results_["params"] == [{}]


def test_malformed_grid():
    with pytest.raises(TypeError, match="Parameter grid for parameter 'C' needs to be a list"):
        fit({"C": 1.0})
    with pytest.raises(ValueError, match="'param_grid' parameter"):
        ParallelGridSearchCV(LogisticRegression(), "C=1").fit(X, y)


def test_unknown_parameter_name_fails_before_any_fit():
    with pytest.raises(ValueError, match=r"'param_grid' parameter names a parameter .*'Cc'"):
        fit({"Cc": [1.0]})
    with pytest.raises(ValueError, match=r"'param_distributions' .*'tol_'"):
        ParallelRandomizedSearchCV(LogisticRegression(), {"tol_": [1.0]}, n_iter=1).fit(X, y)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2"])
def test_bad_n_jobs(n_jobs):
    with pytest.raises(ValueError, match=r"'n_jobs' parameter .* Got .* instead"):
        fit(n_jobs=n_jobs)


def test_inconsistent_lengths():
    with pytest.raises(ValueError, match="got X with 150 and y with 149"):
        ParallelGridSearchCV(LogisticRegression(), {"C": [1.0]}).fit(X, y[:-1])


def test_unknown_backend_lists_valid_ones():
    message = r"'backend' parameter .*'loky'.*'threading'.*got 'lokky'"
    with pytest.raises(ValueError, match=message):
        fit(backend="lokky")


@pytest.mark.parametrize("extra", ["dask", "ipyparallel"])
def test_engine_without_its_extra_names_the_install(extra, monkeypatch):
    # Whether or not the engine is installed here, make it impossible to
    # import (None in sys.modules), as on a machine without the extra.
    for name in {"dask": ["distributed", "dask"], "ipyparallel": ["ipyparallel"]}[extra]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=rf'pip install "parml\[{extra}\]"'):
        fit(backend=extra)


def test_bad_memory_max_retries_timeout():
    with pytest.raises(ValueError, match="'memory' parameter"):
        fit(memory=3)
    with pytest.raises(ValueError, match="'max_retries' parameter"):
        fit(max_retries=-1)
    with pytest.raises(ValueError, match="'timeout' parameter"):
        fit(timeout=0)


def test_bad_multimetric_refit():
    with pytest.raises(ValueError, match="refit must be set to a scorer key"):
        fit(scoring=["accuracy", "f1_macro"], refit="precision")
    assert np.isfinite(fit(scoring=["accuracy"], refit="accuracy").best_score_)
