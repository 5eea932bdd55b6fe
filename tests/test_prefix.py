"""Pipeline-prefix dedup: shared prefixes fitted once per split, same cv_results_."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from _doubles import CountingScaler, count_fits
from _oracle import assert_same_search
from parml import ParallelGridSearchCV
from parml.model_selection._prefix import prefix_groups

X, y = make_classification(n_samples=300, n_features=20, random_state=0)
ENGINES = [dict(n_jobs=1), dict(n_jobs=2, backend="loky"), dict(n_jobs=2, backend="threading")]


def pipe(log_dir=None):
    return Pipeline([("scale", CountingScaler(log_dir=log_dir)),
                     ("clf", LogisticRegression(max_iter=500))])


GRID = {"scale__factor": [0.5, 1.0, 2.0], "clf__C": [0.01, 0.1, 1.0, 10.0]}


def test_groups_share_prefix_parameters():
    params = [{"scale__factor": f, "clf__C": c} for f in (1, 2) for c in (1, 2, 3)]
    assert prefix_groups(pipe(), params, {}, n_workers=1) == [[0, 1, 2], [3, 4, 5]]
    # more workers than groups: groups are split so no worker idles
    assert sorted(map(len, prefix_groups(pipe(), params, {}, n_workers=4))) == [1, 1, 2, 2]


@pytest.mark.parametrize("case", ["not a pipeline", "fit params", "memory", "no sharing"])
def test_dedup_does_not_apply(case, tmp_path):
    params = [{"scale__factor": f, "clf__C": 1} for f in (1, 2)]
    estimator, fit_params = pipe(), {}
    if case == "not a pipeline":
        estimator, params = LogisticRegression(), [{"C": 1}, {"C": 2}]
    elif case == "fit params":
        params, fit_params = [{"clf__C": 1}, {"clf__C": 2}], {"clf__sample_weight": [1]}
    elif case == "memory":
        estimator.set_params(memory=str(tmp_path))
        params = [{"clf__C": 1}, {"clf__C": 2}]
    assert prefix_groups(estimator, params, fit_params, n_workers=1) is None


@pytest.mark.parametrize("engine", ENGINES, ids=str)
def test_prefix_fitted_once_per_split_and_results_identical(engine, tmp_path):
    ours_log, theirs_log = tmp_path / "ours", tmp_path / "theirs"
    ours_log.mkdir()
    theirs_log.mkdir()
    ours = ParallelGridSearchCV(pipe(str(ours_log)), GRID, cv=3, return_train_score=True,
                                **engine).fit(X, y)
    theirs = GridSearchCV(pipe(str(theirs_log)), GRID, cv=3, return_train_score=True).fit(X, y)
    assert_same_search(ours, theirs)
    assert count_fits(theirs_log) == 12 * 3 + 1
    # 3 prefixes x 3 splits (+ refit); with 2 workers a group may be split in two
    assert count_fits(ours_log) <= 3 * 3 + 1 + (3 if engine["n_jobs"] > 1 else 0)
    assert all(t["grouped"] for t in ours.trace_)
    np.testing.assert_array_less(0, ours.cv_results_["mean_fit_time"])


def test_nested_pipeline_and_multimetric():
    inner = Pipeline([("std", StandardScaler()), ("pca", PCA(random_state=0))])
    estimator = Pipeline([("prep", inner), ("svc", SVC())])
    grid = {"prep__pca__n_components": [3, 6], "svc__C": [0.1, 1.0, 10.0]}
    kw = dict(cv=3, scoring=["accuracy", "f1"], refit="f1")
    ours = ParallelGridSearchCV(estimator, grid, n_jobs=2, **kw).fit(X, y)
    assert_same_search(ours, GridSearchCV(estimator, grid, **kw).fit(X, y))


def test_failing_prefix_fails_its_candidates_only(tmp_path):
    grid = [{"scale__fail": [True], "clf__C": [0.1, 1.0]},
            {"scale__fail": [False], "clf__C": [0.1, 1.0]}]
    with pytest.warns(FitFailedWarning, match="6 fits failed out of a total of 12"):
        ours = ParallelGridSearchCV(pipe(), grid, cv=3, n_jobs=2).fit(X, y)
    with pytest.warns(FitFailedWarning):
        theirs = GridSearchCV(pipe(), grid, cv=3).fit(X, y)
    assert_same_search(ours, theirs)
    with pytest.raises(ValueError, match="this prefix always fails"):
        ParallelGridSearchCV(pipe(), grid, cv=3, error_score="raise").fit(X, y)
