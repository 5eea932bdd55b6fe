"""Result-store keys: classes defined in ``__main__`` are keyed on their source."""

import subprocess
import sys
import textwrap

import pytest
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from _doubles import CountingClassifier
from parml.model_selection import _fingerprint
from parml.model_selection._fingerprint import main_sources, stored_failure
from parml.model_selection._fit_and_score import FitRecord


class EditedBefore(BaseEstimator):
    __module__ = "__main__"
    __qualname__ = "Edited"

    def fit(self, X, y=None):
        return self


class EditedAfter(BaseEstimator):
    __module__ = "__main__"
    __qualname__ = "Edited"

    def fit(self, X, y=None):
        self.fitted_ = True
        return self


def test_main_classes_are_found_in_estimators_pipelines_and_parameters():
    before = main_sources(EditedBefore())
    assert [name for name, _ in before] == ["Edited"]
    assert "return self" in before[0][1]
    assert main_sources(Pipeline([("scale", StandardScaler()), ("fit", EditedBefore())])) \
        == before
    assert main_sources({"fit": [EditedBefore()]}) == before
    assert main_sources({"kind": EditedBefore}) == before


def test_an_edited_main_class_gets_other_sources():
    assert main_sources(EditedBefore()) != main_sources(EditedAfter())


def test_classes_of_modules_are_keyed_by_name_only():
    assert main_sources(CountingClassifier()) == ()
    assert main_sources(Pipeline([("scale", StandardScaler())])) == ()
    assert main_sources({"C": 1.0, "kernel": "rbf"}) == ()


def test_main_class_without_source_falls_back_to_its_name(monkeypatch):
    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(_fingerprint.inspect, "getsource", no_source)
    assert main_sources(EditedBefore()) == ()


def _record(fit_error=None):
    return FitRecord(candidate_idx=0, split_idx=0, test_scores=0.5, train_scores=None,
                     n_test_samples=3, fit_time=0.1, score_time=0.0, fit_error=fit_error)


def test_stored_failure_of_a_fit_or_of_a_group():
    assert not stored_failure(_record())
    assert stored_failure(_record("Traceback ... MemoryError"))
    assert stored_failure([_record(), _record("Traceback ... ValueError")])
    assert not stored_failure([_record(), _record()])


SCRIPT = """
import sys
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from parml import ParallelGridSearchCV


class Scored(ClassifierMixin, BaseEstimator):
    def __init__(self, c=0):
        self.c = c

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def score(self, X, y):
        return {score}


X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
search = ParallelGridSearchCV(Scored(), {{"c": [0, 1]}}, cv=2, memory=sys.argv[1],
                              refit=False).fit(X, y)
print(search.trace_.n_cached, search.cv_results_["mean_test_score"][0])
"""


@pytest.mark.slow
def test_editing_a_class_of_a_script_invalidates_its_stored_fits(tmp_path):
    script, store = tmp_path / "script.py", str(tmp_path / "store")

    def run(score):
        script.write_text(textwrap.dedent(SCRIPT.format(score=score)))
        done = subprocess.run([sys.executable, str(script), store], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        n_cached, mean_score = done.stdout.split()
        return int(n_cached), float(mean_score)

    assert run(0.25) == (0, 0.25)
    assert run(0.25) == (4, 0.25), "the same source reuses the stored fits"
    assert run(0.5) == (0, 0.5), "an edited class is fitted again, not given old scores"
