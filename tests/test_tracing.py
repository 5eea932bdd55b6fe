"""trace_, the Chrome trace export and the "parml" logger."""

import json
import logging
import os

import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from parml import ParallelGridSearchCV
from parml.tracing import to_chrome_trace, to_frame

X, y = make_classification(n_samples=90, random_state=0)


@pytest.fixture(scope="module")
def search():
    return ParallelGridSearchCV(
        LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2
    ).fit(X, y)


def test_trace_has_one_record_per_fit_with_worker_and_times(search):
    trace = search.trace_
    assert [(t["candidate_idx"], t["split_idx"]) for t in trace] == [
        (c, s) for c in range(3) for s in range(3)
    ]
    for t in trace:
        assert t["start"] <= t["end"] and t["duration"] >= t["fit_time"] > 0
        assert t["pid"] != os.getpid() and t["worker"].startswith(t["host"])
        assert t["params"] == search.cv_results_["params"][t["candidate_idx"]]
        assert not (t["failed"] or t["cached"] or t["lost"])


def test_chrome_trace_is_valid_trace_event_json(search, tmp_path):
    path = tmp_path / "trace.json"
    to_chrome_trace(search, path)
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == 9
    for event in complete:
        assert set(event) >= {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}
        assert event["ts"] >= 0 and event["dur"] > 0
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
    assert min(e["ts"] for e in complete) == 0
    named = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert named == {e["pid"] for e in complete}
    assert "candidate 2 / split 1" in {e["name"] for e in complete}


def test_to_frame(search):
    pytest.importorskip("pandas")
    frame = to_frame(search)
    assert len(frame) == 9 and frame["start"].min() == 0
    assert {"worker", "duration", "candidate_idx"} <= set(frame.columns)


def test_logger_reports_the_search_and_each_fit_when_verbose(caplog):
    with caplog.at_level(logging.INFO, logger="parml"):
        ParallelGridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2).fit(X, y)
    assert [r.message for r in caplog.records] == [
        "ParallelGridSearchCV: Fitting 2 folds for each of 1 candidates, totalling 2 fits"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="parml"):
        ParallelGridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2, verbose=2).fit(X, y)
    per_fit = [r.message for r in caplog.records if r.message.startswith("candidate")]
    assert len(per_fit) == 2 and "test score" in per_fit[0]


def test_to_chrome_trace_rejects_unfitted_objects():
    with pytest.raises(TypeError, match="trace_"):
        to_chrome_trace(object())
