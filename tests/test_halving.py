"""Successive halving: parml's searches give scikit-learn's rungs and cv_results_.

parml's classes inherit scikit-learn's ``_run_search`` (the rung loop), so for
the same ``random_state`` they evaluate the same candidates on the same
resources; each rung's fits run on parml's scheduler, on every engine.
"""

import os

import numpy as np
import pytest
from scipy.stats import randint
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV
from sklearn.tree import DecisionTreeClassifier

from _doubles import CountingClassifier, count_fits
from _oracle import assert_same_search
from parml import ParallelHalvingGridSearchCV, ParallelHalvingRandomSearchCV
from test_run_search import ENGINES, Events

X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_classes=2,
                           random_state=0)
GRID = {"max_depth": [1, 2, 3, 4, None], "min_samples_leaf": [1, 4]}
DISTRIBUTIONS = {"max_depth": randint(1, 8), "min_samples_leaf": randint(1, 10)}
PAIRS = {  # parml's class: (scikit-learn's class, what it searches)
    ParallelHalvingGridSearchCV: (HalvingGridSearchCV, dict(param_grid=GRID)),
    ParallelHalvingRandomSearchCV: (HalvingRandomSearchCV,
                                    dict(param_distributions=DISTRIBUTIONS, n_candidates=9)),
}
RESOURCES = {
    "n_samples": (DecisionTreeClassifier(random_state=0), {}),
    "n_estimators": (ExtraTreesClassifier(n_estimators=1, random_state=0),
                     dict(resource="n_estimators", max_resources=9)),
}
SETTINGS = {"factor=2 exhaust": dict(factor=2, min_resources="exhaust"),
            "factor=3 smallest": dict(factor=3, min_resources="smallest")}
HALVING_ATTRIBUTES = ("n_resources_", "n_candidates_", "n_remaining_candidates_",
                      "n_iterations_", "n_required_iterations_", "n_possible_iterations_",
                      "min_resources_", "max_resources_")


def both(cls, resource, setting, engine, **kw):
    """parml's and scikit-learn's halving search, fitted on the same data."""
    theirs_cls, searched = PAIRS[cls]
    estimator, resource_kw = RESOURCES[resource]
    kw = dict(searched, **resource_kw, **setting, cv=3, random_state=0, **kw)
    ours = cls(estimator, **kw, **engine).fit(X, y)
    theirs = theirs_cls(estimator, **kw).fit(X, y)
    return ours, theirs


def assert_same_halving(ours, theirs):
    assert_same_search(ours, theirs, X)
    for attr in HALVING_ATTRIBUTES:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert len(ours.n_resources_) == ours.n_iterations_ > 1
    assert ours.best_index_ in np.flatnonzero(ours.cv_results_["iter"] == ours.n_iterations_ - 1)
    assert len(ours.trace_) == len(ours.cv_results_["params"]) * ours.n_splits_


@pytest.mark.parametrize("engine", list(ENGINES.values()), ids=list(ENGINES))
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda cls: cls.__name__)
def test_halving_equals_sklearn(cls, resource, setting, engine):
    ours, theirs = both(cls, resource, SETTINGS[setting], engine)
    assert_same_halving(ours, theirs)


@pytest.mark.parametrize("setting", [dict(factor=2, min_resources="smallest"),
                                     dict(factor=3, min_resources="exhaust")],
                         ids=["factor=2 smallest", "factor=3 exhaust"])
@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda cls: cls.__name__)
def test_other_settings_equal_sklearn(cls, setting):
    ours, theirs = both(cls, "n_samples", setting, dict(n_jobs=1), aggressive_elimination=True)
    assert_same_halving(ours, theirs)


def test_refit_false_and_scoring_equal_sklearn():
    ours, theirs = both(ParallelHalvingGridSearchCV, "n_samples", SETTINGS["factor=3 smallest"],
                        dict(n_jobs=2, backend="threading"), refit=False,
                        scoring="balanced_accuracy", return_train_score=False)
    assert_same_halving(ours, theirs)
    assert not hasattr(ours, "best_estimator_") and ours.best_score_ == theirs.best_score_


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2, backend="threading")],
                         ids=["n_jobs=1", "threading"])
def test_callbacks_see_the_rungs_as_sklearns(engine):
    if not hasattr(HalvingGridSearchCV, "set_callbacks"):
        pytest.skip("this scikit-learn has no callback API")
    ours_events, theirs_events = Events(), Events()
    kw = dict(factor=3, min_resources="smallest", cv=3, random_state=0)
    ours = ParallelHalvingGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, **kw,
                                       **engine)
    ours.set_callbacks(ours_events).fit(X, y)
    theirs = HalvingGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, **kw)
    theirs.set_callbacks(theirs_events).fit(X, y)
    assert_same_halving(ours, theirs)
    assert ours_events.ended.count("halving-iteration") == ours.n_iterations_
    assert sorted(ours_events.ended) == sorted(theirs_events.ended)


# -- a fit that raises in a rung ------------------------------------------------

def _raising(cls, error_score, **engine):
    """Candidates c in 0..3; a fit raises where ``raise_on`` (the resource) equals ``c``.

    Rungs give ``raise_on`` 1, 2, 4: c=1 fails in the first rung, c=2 (kept:
    scores grow with c) in the second, c=3 never.
    """
    kw = dict(factor=2, resource="raise_on", min_resources=1, max_resources=4, cv=3,
              error_score=error_score)
    grid = {"c": [0, 1, 2, 3]}
    theirs_cls = PAIRS[cls][0]
    if cls is ParallelHalvingRandomSearchCV:
        kw.update(n_candidates=4, random_state=0)
    return cls(CountingClassifier(), grid, **kw, **engine), theirs_cls(CountingClassifier(),
                                                                       grid, **kw)


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2)], ids=["n_jobs=1", "loky"])
@pytest.mark.parametrize("error_score", [np.nan, -1.0])
@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda cls: cls.__name__)
def test_failing_fits_follow_error_score_as_sklearn(cls, error_score, engine):
    ours, theirs = _raising(cls, error_score, **engine)
    with pytest.warns(FitFailedWarning) as warned:
        ours.fit(X, y)
    messages = [str(w.message) for w in warned if w.category is FitFailedWarning]
    assert "c=1 cannot be fitted" in messages[0] and "c=2 cannot be fitted" in messages[1]
    with pytest.warns(FitFailedWarning):
        theirs.fit(X, y)
    assert_same_search(ours, theirs, X)
    assert ours.n_resources_ == theirs.n_resources_ == [1, 2, 4]
    assert ours.best_params_ == {"c": 3, "raise_on": 4}


def test_error_score_raise_raises_in_the_failing_rung():
    ours, _ = _raising(ParallelHalvingGridSearchCV, "raise", n_jobs=1)
    with pytest.raises(ValueError, match="c=1 cannot be fitted"):
        ours.fit(X, y)


# -- the result store -------------------------------------------------------------

def test_memory_resumes_a_halving_search_without_fitting(tmp_path):
    log, store = tmp_path / "log", str(tmp_path / "store")
    log.mkdir()

    def search():
        return ParallelHalvingGridSearchCV(
            CountingClassifier(log_dir=str(log)), {"c": [1, 2, 3, 4, 5, 6]}, factor=2,
            cv=3, random_state=0, n_jobs=2, memory=store)

    first = search().fit(X, y)
    n_fits = len(first.cv_results_["params"]) * 3
    assert first.n_iterations_ == 3 and first.trace_.n_cached == 0
    assert count_fits(log) == n_fits + 1
    again = search().fit(X, y)
    assert count_fits(log) == n_fits + 2, "only the refit ran"
    assert again.trace_.n_cached == n_fits and all(t["cached"] for t in again.trace_)
    assert_same_search(again, first)
    assert again.n_resources_ == first.n_resources_


# -- remote engines ---------------------------------------------------------------

@pytest.mark.timeout(150)
def test_halving_on_dask_equals_sklearn(dask_client):
    ours, theirs = both(ParallelHalvingGridSearchCV, "n_samples", SETTINGS["factor=3 smallest"],
                        dict(backend=dask_client))
    assert_same_halving(ours, theirs)
    assert {t["pid"] for t in ours.trace_} <= set(dask_client.run(os.getpid).values())


@pytest.mark.timeout(150)
def test_halving_on_ipyparallel_equals_sklearn(ipyparallel_client):
    ours, theirs = both(ParallelHalvingRandomSearchCV, "n_estimators",
                        SETTINGS["factor=2 exhaust"], dict(backend=ipyparallel_client))
    assert_same_halving(ours, theirs)
    pids = {ipyparallel_client[e].apply_sync(os.getpid) for e in ipyparallel_client.ids}
    assert {t["pid"] for t in ours.trace_} <= pids


# -- estimator protocol -------------------------------------------------------------

@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda cls: cls.__name__)
def test_params_and_clone_match_sklearn(cls):
    theirs_cls, searched = PAIRS[cls]
    ours = cls(DecisionTreeClassifier(), **searched, factor=2, memory="store")
    theirs = theirs_cls(DecisionTreeClassifier(), **searched, factor=2)
    parml_only = {"backend", "progress", "memory", "max_retries", "timeout", "asynchronous"}
    assert set(ours.get_params(deep=False)) == set(theirs.get_params(deep=False)) | parml_only
    clone_ = clone(ours).set_params(factor=4, max_retries=0)
    assert (clone_.factor, clone_.max_retries, clone_.memory) == (4, 0, "store")
    assert ours.factor == 2


def test_importable_without_the_experimental_flag():
    import subprocess
    import sys

    code = ("import sys; from parml.model_selection import ParallelHalvingGridSearchCV, "
            "ParallelHalvingRandomSearchCV; import parml; "
            "assert 'ParallelHalvingRandomSearchCV' in parml.__all__; "
            "import sklearn.model_selection as ms; "
            "assert 'HalvingGridSearchCV' not in vars(ms), 'parml enabled the experimental "
            "API for the whole process'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_invalid_parameters_are_refused_as_sklearn_does():
    search = ParallelHalvingGridSearchCV(DecisionTreeClassifier(), GRID, factor=0)
    with pytest.raises(ValueError, match="'factor' parameter of ParallelHalvingGridSearchCV"):
        search.fit(X, y)
    search = ParallelHalvingGridSearchCV(DecisionTreeClassifier(), GRID, timeout=-1)
    with pytest.raises(ValueError, match="'timeout' parameter"):
        search.fit(X, y)
    search = ParallelHalvingGridSearchCV(DecisionTreeClassifier(), GRID, resource="nope")
    with pytest.raises(ValueError, match="Cannot use resource=nope"):
        search.fit(X, y)
