"""No finished work is lost: resume, Ctrl-C, dead workers, timeouts."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _processes import alive, descendants
from sklearn.datasets import make_classification
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV

from _doubles import CountingClassifier, OtherCountingClassifier, count_fits
from _oracle import assert_same_search
from parml import ParallelGridSearchCV, cross_val_parallel

X, y = make_classification(n_samples=120, random_state=0)
GRID = {"c": [0, 1, 2, 3]}


def search(est, grid=GRID, **kw):
    return ParallelGridSearchCV(est, grid, cv=3, **{"n_jobs": 2, **kw})


def test_rerun_with_memory_fits_nothing_and_equals_sklearn(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    first = search(CountingClassifier(log_dir=str(log)), memory=str(tmp_path / "s")).fit(X, y)
    assert count_fits(log) == 12 + 1  # 12 fits and the refit
    again = search(CountingClassifier(log_dir=str(log)), memory=str(tmp_path / "s")).fit(X, y)
    assert count_fits(log) == 13 + 1  # only the refit ran
    assert_same_search(again, first)
    assert_same_search(again, GridSearchCV(CountingClassifier(), GRID, cv=3).fit(X, y))


def test_grown_grid_fits_only_new_candidates(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    store = str(tmp_path / "s")
    search(CountingClassifier(log_dir=str(log)), memory=store, refit=False).fit(X, y)
    assert count_fits(log) == 12
    grown = {"c": [0, 1, 2, 3, 4]}
    ours = search(CountingClassifier(log_dir=str(log)), grown, memory=store, refit=False).fit(X, y)
    assert count_fits(log) == 15
    reference = GridSearchCV(CountingClassifier(), grown, cv=3, refit=False).fit(X, y)
    assert_same_search(ours, reference)


@pytest.mark.parametrize("change", ["data", "params", "scorer", "estimator", "groups",
                                    "sklearn version"])
def test_changed_inputs_invalidate_the_store(tmp_path, change, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    store = str(tmp_path / "s")
    search(CountingClassifier(log_dir=str(log)), memory=store, refit=False).fit(X, y)
    est, X2, kw = CountingClassifier(log_dir=str(log)), X, {}
    if change == "data":
        X2 = X.copy()
        X2[0, 0] += 1.0
    elif change == "params":
        est.set_params(delay=1e-6)
    elif change == "scorer":
        kw = {"scoring": "accuracy"}
    elif change == "estimator":
        est = OtherCountingClassifier(log_dir=str(log))
    elif change == "sklearn version":
        import sklearn

        monkeypatch.setattr(sklearn, "__version__", sklearn.__version__ + ".post1")
    fit_kw = {}
    if change == "groups":  # same splits (KFold ignores groups), other groups
        fit_kw = {"groups": np.arange(len(y)) % 3}
    search(est, memory=store, refit=False, backend="threading", **kw).fit(X2, y, **fit_kw)
    assert count_fits(log) == 24, f"a change of {change} must refit everything"


def test_cross_val_parallel_resumes(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    est = CountingClassifier(c=1, log_dir=str(log))
    first = cross_val_parallel(est, X, y, cv=4, memory=str(tmp_path / "s"))
    second = cross_val_parallel(est, X, y, cv=4, memory=str(tmp_path / "s"))
    assert count_fits(log) == 4
    np.testing.assert_array_equal(first["test_score"], second["test_score"])


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_worker_that_always_dies_fails_only_its_candidate(tmp_path, how):
    est = CountingClassifier(crash_on=2, crash_how=how)
    with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 12") as w:
        ours = search(est, max_retries=1).fit(X, y)
    assert "worker running this fit died" in str(w[0].message)
    reference = GridSearchCV(CountingClassifier(), GRID, cv=3).fit(X, y)
    for key in ("mean_test_score", "split0_test_score"):
        expected = reference.cv_results_[key].copy()
        expected[2] = np.nan
        np.testing.assert_array_equal(ours.cv_results_[key], expected)
    assert ours.best_params_ == {"c": 3}


def test_worker_that_dies_once_is_retried_and_search_is_unchanged(tmp_path):
    est = CountingClassifier(crash_on=1, crash_once_marker=str(tmp_path / "crashed"))
    ours = search(est).fit(X, y)
    assert (tmp_path / "crashed").exists()
    assert_same_search(ours, GridSearchCV(CountingClassifier(), GRID, cv=3).fit(X, y))


def test_dead_worker_with_error_score_raise_raises():
    from parml.scheduler import WorkerLostError

    with pytest.raises(WorkerLostError, match="lost"):
        search(CountingClassifier(crash_on=0), error_score="raise", max_retries=0).fit(X, y)


def test_fit_past_timeout_is_a_failed_fit():
    est = CountingClassifier(sleep_on=3, delay_on=30.0)
    start = time.time()
    with pytest.warns(FitFailedWarning, match="ran longer than timeout=1.0 s"):
        ours = search(est, timeout=1.0).fit(X, y)
    assert time.time() - start < 20
    assert np.isnan(ours.cv_results_["mean_test_score"][3])
    assert not np.isnan(ours.cv_results_["mean_test_score"][:3]).any()


def test_timeout_with_threads_is_refused():
    with pytest.raises(ValueError, match="timeout=1.0 needs worker processes or a remote engine"):
        search(CountingClassifier(), timeout=1.0, backend="threading").fit(X, y)


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from sklearn.datasets import make_classification
from _doubles import CountingClassifier
from parml import ParallelGridSearchCV
X, y = make_classification(n_samples=120, random_state=0)
est = CountingClassifier(delay=0.4, log_dir={log!r})
ParallelGridSearchCV(est, {{"c": list(range(8))}}, cv=3, n_jobs=2,
                     memory={store!r}).fit(X, y)
print("finished")
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find workers")
def test_ctrl_c_stops_promptly_keeps_results_and_resumes(tmp_path):
    log, store = tmp_path / "log", tmp_path / "store"
    log.mkdir()
    script = SCRIPT.format(tests=os.path.dirname(__file__), log=str(log), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not store.exists() or len(os.listdir(store)) < 4):
        time.sleep(0.05)
    workers = descendants(proc.pid)
    assert workers, "the search runs in worker processes"
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    stopped = time.time() - sent
    assert stopped < 3.0, f"fit took {stopped:.1f} s to stop after Ctrl-C"
    assert "finished" not in out
    assert "KeyboardInterrupt: Interrupted after" in err and "resume" in err
    time.sleep(1.0)
    assert not [pid for pid in workers if alive(pid)], "worker processes left running"

    kept = len([n for n in os.listdir(store) if n.endswith(".pkl") and not n.startswith(".")])
    assert 4 <= kept < 24
    fits_before = count_fits(log)
    est = CountingClassifier(delay=0.0, log_dir=str(log))
    # delay is part of the estimator's parameters, so resume with the same one
    est.set_params(delay=0.4)
    grid = {"c": list(range(8))}
    resumed = ParallelGridSearchCV(est, grid, cv=3, n_jobs=2, memory=str(store),
                                   refit=False).fit(X, y)
    assert count_fits(log) - fits_before == 24 - kept
    reference = GridSearchCV(CountingClassifier(), grid, cv=3, refit=False).fit(X, y)
    assert_same_search(resumed, reference)


# -- the result store's failures and failed fits ------------------------------

class FlakyClassifier(CountingClassifier):
    """Candidate ``c == fail_on`` runs out of memory while the file ``fail_flag`` exists.

    The flag is not a parameter that changes: the same estimator fails, then
    (the flag removed) succeeds, under the same result-store key.
    """

    def __init__(self, c=0, log_dir=None, fail_on=None, fail_flag=None):
        super().__init__(c=c, log_dir=log_dir)
        self.fail_on = fail_on
        self.fail_flag = fail_flag

    def fit(self, X, y):
        super().fit(X, y)  # leaves its file in log_dir
        if self.c == self.fail_on and os.path.exists(self.fail_flag):
            raise MemoryError("out of memory (a test double)")
        return self


def test_failed_fit_is_stored_but_run_again(tmp_path, caplog):
    import logging

    log, flag, store = tmp_path / "log", tmp_path / "out-of-memory", str(tmp_path / "s")
    log.mkdir()
    flag.touch()
    est = FlakyClassifier(log_dir=str(log), fail_on=2, fail_flag=str(flag))
    with pytest.warns(FitFailedWarning, match=r"(?s)3 fits failed out of a total of 12.*Memory"):
        first = search(est, memory=store, refit=False).fit(X, y)
    assert np.isnan(first.cv_results_["mean_test_score"][2])
    assert len(os.listdir(store)) == 12, "failed fits are stored too"
    assert (first.trace_.n_cached, first.trace_.n_rerun) == (0, 0)

    flag.unlink()  # the failure has passed: the same fits now succeed
    with caplog.at_level(logging.INFO, logger="parml"):
        second = search(est, memory=store, refit=False).fit(X, y)
    assert count_fits(log) == 12 + 3, "only the failed fits ran again"
    assert (second.trace_.n_cached, second.trace_.n_rerun) == (9, 3)
    for t in second.trace_:
        assert (t["rerun"], t["cached"]) == ((True, False) if t["candidate_idx"] == 2
                                             else (False, True))
    assert "12 fits: 9 from the result store, 3 run (3 stored failures run again)" in [
        r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert_same_search(second, GridSearchCV(CountingClassifier(), GRID, cv=3,
                                            refit=False).fit(X, y))

    third = search(est, memory=store, refit=False).fit(X, y)
    assert count_fits(log) == 15, "the rerun's successes were stored"
    assert (third.trace_.n_cached, third.trace_.n_rerun) == (12, 0)
    assert third.trace_.summary() == "12 fits: 12 from the result store, 0 run"


def test_cross_val_parallel_runs_stored_failures_again(tmp_path):
    log, flag, store = tmp_path / "log", tmp_path / "out-of-memory", str(tmp_path / "s")
    log.mkdir()
    flag.touch()
    est = FlakyClassifier(c=1, log_dir=str(log), fail_on=1, fail_flag=str(flag))
    with pytest.raises(ValueError, match="All the 3 fits failed"):
        cross_val_parallel(est, X, y, cv=3, memory=store)
    flag.unlink()
    result = cross_val_parallel(est, X, y, cv=3, memory=store)
    assert count_fits(log) == 6
    assert not np.isnan(result["test_score"]).any()


def test_full_disk_during_a_search_carries_on_without_the_store(tmp_path, monkeypatch):
    import errno

    from parml.scheduler import StoreWarning
    from parml.scheduler._store import ResultStore

    store, real_write, calls = str(tmp_path / "s"), ResultStore._write, []

    def fills_up(self, key, value):  # the disk is full after 3 entries
        calls.append(key)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, key, value)

    monkeypatch.setattr(ResultStore, "_write", fills_up)
    with pytest.warns(StoreWarning) as record:
        ours = search(CountingClassifier(), memory=store, n_jobs=1).fit(X, y)
    store_warnings = [w for w in record if issubclass(w.category, StoreWarning)]
    assert len(store_warnings) == 1
    message = str(store_warnings[0].message)
    assert repr(store) in message and "No space left on device" in message
    assert "results of this run will not be kept for resume" in message
    assert len(calls) == 4, "no write is tried after the first failure"
    assert_same_search(ours, GridSearchCV(CountingClassifier(), GRID, cv=3).fit(X, y), X)

    monkeypatch.undo()  # space was freed: the next fit uses the 3 kept entries
    again = search(CountingClassifier(), memory=store, refit=False).fit(X, y)
    assert again.trace_.n_cached == 3


def test_read_only_store_holding_every_fit_serves_the_search(tmp_path, monkeypatch):
    from parml.scheduler import StoreWarning

    log, folder = tmp_path / "log", tmp_path / "s"
    log.mkdir()
    first = search(CountingClassifier(log_dir=str(log)), memory=str(folder), refit=False)
    first.fit(X, y)
    entries = sorted(os.listdir(folder))
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root writes anywhere: pretend it cannot
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if os.fspath(path) == str(folder) and mode & os.W_OK
            else real_access(path, mode, **kw)))
    try:
        with pytest.warns(StoreWarning, match="read-only") as record:
            again = search(CountingClassifier(log_dir=str(log)), memory=str(folder),
                           refit=False).fit(X, y)
        assert len(record) == 1 and repr(str(folder)) in str(record[0].message)
        assert count_fits(log) == 12, "every fit came from the store"
        assert again.trace_.n_cached == 12
        assert sorted(os.listdir(folder)) == entries
        assert_same_search(again, first)
    finally:
        folder.chmod(0o700)


def test_joblib_memory_none_means_no_store(tmp_path, monkeypatch):
    import joblib

    monkeypatch.chdir(tmp_path)
    # a lambda cannot be hashed: with a store, fit would ask for a named function
    scorer = lambda est, X_, y_: est.score(X_, y_)  # noqa: E731
    ours = ParallelGridSearchCV(CountingClassifier(), GRID, cv=3, backend="threading",
                                scoring=scorer, memory=joblib.Memory(None, verbose=0)).fit(X, y)
    assert ours.trace_.n_cached == 0 and os.listdir(tmp_path) == []
    reference = GridSearchCV(CountingClassifier(), GRID, cv=3, scoring=scorer).fit(X, y)
    assert_same_search(ours, reference, X)
    result = cross_val_parallel(CountingClassifier(), X, y, cv=3,
                                memory=joblib.Memory(None, verbose=0))
    assert result["test_score"].shape == (3,)


def test_timed_out_fit_is_reported_as_abandoned_not_as_a_dead_worker():
    est = CountingClassifier(sleep_on=3, delay_on=30.0)
    with pytest.warns(FitFailedWarning) as caught:
        search(est, timeout=1.0).fit(X, y)
    message = "\n".join(str(w.message) for w in caught if w.category is FitFailedWarning)
    assert "This fit was abandoned: it ran longer than timeout=1.0 s" in message
    assert "worker running this fit died" not in message


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM timers")
def test_timeout_in_the_main_process_keeps_the_users_timer():
    """n_jobs=1 runs fits in the main thread under SIGALRM; a timer set before still fires."""
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(time.monotonic()))
    try:
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # due while the search runs
        ours = search(CountingClassifier(delay=0.05), timeout=5.0, n_jobs=1).fit(X, y)
        assert fired, "the user's timer did not fire during the search"
        assert fired[0] - start < 2.0
        signal.setitimer(signal.ITIMER_REAL, 60.0)  # due after the search
        search(CountingClassifier(), timeout=5.0, n_jobs=1).fit(X, y)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 50.0 < left <= 60.0, f"the user's timer was changed: {left} s left"
        assert not np.isnan(ours.cv_results_["mean_test_score"]).any()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
