"""ParallelGridSearchCV on the scheduler: callbacks, data sharing, thread budget."""

import os
import sys
import threading

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from parml import ParallelGridSearchCV, cross_val_parallel
from parml.scheduler._worker_state import held_tokens


class RecordingCallback:
    """A FitCallback that records the tasks it sees (in this process)."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def setup(self, estimator, context):
        self.events.append(("setup", context.task_name))

    def on_fit_task_begin(self, estimator, context, **kwargs):
        with self.lock:
            self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context, **kwargs):
        with self.lock:
            self.events.append(("end", context.task_name))

    def teardown(self, estimator, context):
        self.events.append(("teardown", context.task_name))


class InputRecorder(ClassifierMixin, BaseEstimator):
    """Scores the id of the process it was fitted in."""

    def __init__(self, c=1.0):
        self.c = c

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.fit_pid_ = os.getpid()
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def score(self, X, y):
        return float(self.fit_pid_)


@pytest.mark.parametrize("backend", ["threading", None])
def test_sklearn_callbacks_see_every_task(backend):
    search = ParallelGridSearchCV(
        LogisticRegression(max_iter=200), {"C": [0.1, 1.0, 10.0]}, cv=3,
        n_jobs=2 if backend else 1, backend=backend,
    )
    if not hasattr(search, "set_callbacks"):
        pytest.skip("this scikit-learn has no callback API")
    callback = RecordingCallback()
    X, y = make_classification(n_samples=90, random_state=0)
    search.set_callbacks(callback).fit(X, y)
    names = [name for kind, name in callback.events if kind == "end"]
    assert names.count("candidate-split-evaluation") == 9
    assert names.count("refit-with-best-params") == 1
    assert callback.events[0][0] == "setup" and callback.events[-1][0] == "teardown"


def test_loky_search_runs_in_worker_processes_on_shared_data():
    X, y = make_classification(n_samples=4000, n_features=40, random_state=0)  # 1.3 MB
    search = ParallelGridSearchCV(
        InputRecorder(), {"c": [1, 2, 3, 4]}, cv=2, n_jobs=2, backend="loky"
    ).fit(X, y)
    pids = {search.cv_results_[f"split{i}_test_score"][j] for i in range(2) for j in range(4)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_parallel_config_n_jobs_is_honoured_like_sklearn():
    X, y = make_classification(n_samples=60, random_state=0)
    with parallel_config(backend="threading", n_jobs=2):
        search = ParallelGridSearchCV(InputRecorder(), {"c": [1, 2]}, cv=2).fit(X, y)
    assert set(search.cv_results_["mean_test_score"]) == {float(os.getpid())}


def test_verbose_prints_sklearn_messages(capsys):
    X, y = make_classification(n_samples=60, random_state=0)
    grid = {"C": [0.1, 1.0]}
    ParallelGridSearchCV(LogisticRegression(), grid, cv=3, verbose=3).fit(X, y)
    ours = capsys.readouterr().out
    GridSearchCV(LogisticRegression(), grid, cv=3, verbose=3).fit(X, y)
    theirs = capsys.readouterr().out

    def shape(text):
        return sorted(line.split(" total time")[0] for line in text.splitlines())

    assert "Fitting 3 folds for each of 2 candidates, totalling 6 fits" in ours
    assert shape(ours) == shape(theirs)


def test_cross_val_parallel_progress_bar(capsys):
    pytest.importorskip("tqdm")
    X, y = make_classification(n_samples=60, random_state=0)
    cross_val_parallel(LogisticRegression(), X, y, cv=4, progress=True)
    err = capsys.readouterr().err
    assert "cross_val_parallel" in err and "4/4" in err


def test_missing_tqdm_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes "import tqdm" raise ImportError.
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = make_classification(n_samples=40, random_state=0)
    with pytest.raises(ImportError, match=r'pip install "parml\[progress\]"'):
        ParallelGridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2, progress=True).fit(X, y)


class FoldRecorder(ClassifierMixin, BaseEstimator):
    """Writes into the training array it is fitted on; scores 1 if it could."""

    def __init__(self, c=0):
        self.c = c

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.writeable_ = X.flags.writeable
        if self.writeable_:
            X[:] = -1.0  # as a user's step may: the next fit must not see it
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def score(self, X, y):
        assert not np.any(X == -1.0), "a fit saw the folds another fit wrote into"
        return float(self.writeable_)


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2, backend="threading")],
                         ids=str)
def test_fits_of_a_split_index_once_and_each_gets_writable_folds(engine, monkeypatch):
    from parml.model_selection import _fit_and_score

    made = []
    make_folds = _fit_and_score._make_folds
    monkeypatch.setattr(_fit_and_score, "_make_folds",
                        lambda *args: made.append(1) or make_folds(*args))
    X, y = make_classification(n_samples=200, random_state=0)
    search = ParallelGridSearchCV(FoldRecorder(), {"c": list(range(6))}, cv=3,
                                  refit=False, error_score="raise", **engine).fit(X, y)
    for split in range(3):
        assert set(search.cv_results_[f"split{split}_test_score"]) == {1.0}, \
            "each fit gets writable folds of its own"
    # one thread: the folds of each split are made once; threads may make a split's
    # again when another dropped it from the small cache, never once per fit
    if engine["n_jobs"] == 1:
        assert len(made) == 3, "fits of a split share the indexing of X"
    else:
        assert len(made) < 18, "fits of a split share the indexing of X"
    assert not held_tokens(), "fold data is dropped when the fit ends"
