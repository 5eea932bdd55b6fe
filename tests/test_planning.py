"""Task planning of a search's batches: keys, indices and store keys (no engine)."""

import types

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from parml import _compat
from parml.model_selection._fit_and_score import FitRecord
from parml.model_selection._planning import (
    Batch, SearchSetup, TaskPlanner, fit_keys, rekey, task_contexts,
)
from parml.scheduler import TaskRecord

X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
SPLITS = list(KFold(2).split(X, y))


def planner(estimator, memory=None, n_workers=1):
    search = types.SimpleNamespace(estimator=estimator, error_score=np.nan, verbose=0,
                                   return_train_score=False, memory=memory)
    routed = _compat.search_routed_params(GridSearchCV(estimator, {}), {})
    setup = SearchSetup(check_scoring(estimator), "score", routed, X, y, KFold(2))
    return TaskPlanner(search, setup, n_workers)


def batch(params, first, token="t"):
    return Batch(params, first, SPLITS, {"X": X, "y": y, "splits": SPLITS, "token": token})


def test_keys_continue_after_the_candidates_evaluated_before():
    tasks = planner(LogisticRegression()).tasks(batch([{"C": 1}, {"C": 2}], first=3))
    assert [t.key for t in tasks] == [(3, 0), (4, 0), (3, 1), (4, 1)]
    assert [t.kwargs["candidate_idx"] for t in tasks] == [3, 4, 3, 4]
    assert tasks[0].kwargs["progress"] == (2, 2, 3)


def test_group_keys_name_their_candidates_in_the_search():
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    params = [{"clf__C": 1}, {"clf__C": 2}]
    tasks = planner(pipe).tasks(batch(params, first=5))
    assert [t.key for t in tasks] == [("group", (5, 6), 0), ("group", (5, 6), 1)]
    assert [i for i, _ in tasks[0].kwargs["candidates"]] == [5, 6]
    assert fit_keys(tasks[1].key) == [(5, 1), (6, 1)]


def test_store_keys_depend_on_the_fit_not_on_its_index(tmp_path):
    plan = planner(LogisticRegression(), memory=str(tmp_path))
    early = plan.tasks(batch([{"C": 1}, {"C": 2}], first=0))
    late = plan.tasks(batch([{"C": 2}], first=7))
    assert late[0].cache_key == early[1].cache_key  # C=2 on split 0
    assert len({t.cache_key for t in early}) == 4
    assert all(t.cache_key is None for t in planner(LogisticRegression()).tasks(
        batch([{"C": 1}], first=0)))


def record(key, *fits):
    return TaskRecord(key=key, value=list(fits) if len(fits) > 1 else fits[0], host="h",
                      pid=1, thread="t", start=0.0, end=1.0, cached=True)


def fit(cand, split):
    return FitRecord(cand, split, 0.5, None, 10, 0.1, 0.01)


def test_rekey_gives_stored_fits_the_indices_of_this_search():
    one = rekey(record((4, 1), fit(0, 0)))
    assert (one.value.candidate_idx, one.value.split_idx) == (4, 1)
    group = rekey(record(("group", (2, 3), 0), fit(7, 1), fit(8, 1)))
    assert [(f.candidate_idx, f.split_idx) for f in group.value] == [(2, 0), (3, 0)]
    with pytest.raises(ValueError):
        rekey(record(("group", (2, 3, 4), 0), fit(7, 1), fit(8, 1)))


def test_no_callback_context_means_none_per_task():
    assert task_contexts(None, 3) == [None, None, None]
