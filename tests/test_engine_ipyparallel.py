"""The ipyparallel engine on real clusters (a controller and engines on loopback), started here."""

import logging
import os
import pickle
import signal
import time

import numpy as np
import pytest

ipyparallel = pytest.importorskip("ipyparallel")
# every test starts or reuses a cluster; none may hold the suite for long
pytestmark = pytest.mark.timeout(150)

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from _doubles import (  # noqa: E402
    hang_on_first_run,
    CountingBox, CountingClassifier, FailingClassifier, box_identity, count_fits,
    unpickled_count,
)
from _oracle import assert_same_search  # noqa: E402
from parml import (  # noqa: E402
    ParallelGridSearchCV, ParallelRandomizedSearchCV, cross_val_parallel,
)
from parml.scheduler import Scheduler, Task, check_backend  # noqa: E402
from parml.scheduler import _ipyparallel, _lateness  # noqa: E402

X, y = load_digits(return_X_y=True)
X, y = X[:450], y[:450]
GRID = {"C": [1, 10], "gamma": [1e-3, 1e-4]}
TESTS = os.path.dirname(os.path.abspath(__file__))


def start_cluster(n):
    """A controller and ``n`` engines on loopback; the engines can import the test doubles."""
    cluster = ipyparallel.Cluster(n=n, log_level=40, controller_ip="127.0.0.1")
    client = cluster.start_and_connect_sync()
    if n:
        client[:].execute(f"import sys; sys.path.insert(0, {TESTS!r})", block=True)
    return cluster, client


def string_form(cluster, how="string"):
    if how == "file":
        return "ipyparallel:" + os.path.join(
            cluster.profile_dir, "security", f"ipcontroller-{cluster.cluster_id}-client.json")
    return f"ipyparallel:{cluster.profile or 'default'}:{cluster.cluster_id}"


def engine_pids(client):
    return {engine: client[engine].apply_sync(os.getpid) for engine in client.ids}


def parml_names(client):
    """Names parml left in the engines' namespaces."""
    found = client[:].apply_sync(_parml_names_here)
    return [name for names in found for name in names]


def _parml_names_here():
    import __main__

    names = set(vars(__main__))
    try:
        names |= set(get_ipython().user_ns)  # noqa: F821 (defined on an engine)
    except NameError:
        pass
    return sorted(name for name in names if name.startswith("_parml"))


@pytest.fixture(scope="module")
def cluster_client():
    cluster, client = start_cluster(2)
    yield cluster, client
    client.close()
    cluster.stop_cluster_sync()


@pytest.fixture
def client(cluster_client):
    return cluster_client[1]


@pytest.mark.parametrize("how", ["client", "string", "file"])
def test_grid_search_equals_sklearn_and_loky(cluster_client, how):
    cluster, client = cluster_client
    backend = client if how == "client" else string_form(cluster, how)
    ours = ParallelGridSearchCV(SVC(), GRID, cv=3, backend=backend).fit(X, y)
    assert_same_search(ours, GridSearchCV(SVC(), GRID, cv=3).fit(X, y), X)
    assert_same_search(ours, ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y), X)
    assert {t["pid"] for t in ours.trace_} <= set(engine_pids(client).values())
    assert ours.get_params()["backend"] is backend
    stored = [name for name, value in vars(ours).items() if name != "backend"
              and type(value).__module__.startswith("ipyparallel")]
    assert stored == [], "a live client must not be kept by the fitted search"
    if how != "client":
        assert pickle.loads(pickle.dumps(ours)).backend == backend
    assert parml_names(client) == [], "the pushed data is deleted after the fit"


def test_bagged_forest_is_the_same_forest_on_ipyparallel(client):
    from parml import BaggedForest

    local = BaggedForest(n_estimators=12, random_state=0, oob_score=True).fit(X, y)
    remote = BaggedForest(n_estimators=12, random_state=0, oob_score=True,
                          backend=client).fit(X, y)
    np.testing.assert_array_equal(remote.predict_proba(X), local.predict_proba(X))
    assert remote.oob_score_ == local.oob_score_
    assert {e["pid"] for e in remote.trace_} <= set(engine_pids(client).values())
    assert parml_names(client) == [], "the pushed data is deleted after the fit"


def test_randomized_search_and_cross_val(client):
    from scipy.stats import loguniform

    dists = {"C": loguniform(1, 100), "gamma": loguniform(1e-4, 1e-2)}
    kw = dict(n_iter=4, cv=3, random_state=0)
    ours = ParallelRandomizedSearchCV(SVC(), dists, backend=client, **kw).fit(X, y)
    assert_same_search(ours, RandomizedSearchCV(SVC(), dists, **kw).fit(X, y), X)
    got = cross_val_parallel(SVC(), X, y, cv=3, backend=client, scoring=["accuracy"])
    expected = cross_validate(SVC(), X, y, cv=3, scoring=["accuracy"])
    np.testing.assert_array_equal(got["test_accuracy"], expected["test_accuracy"])


def test_shared_data_reaches_each_engine_once(client):
    before = client[:].apply_sync(unpickled_count)
    with Scheduler(backend=client) as scheduler:
        shared = scheduler.share({"box": CountingBox(np.arange(10))})
        tasks = [Task(key=i, func=box_identity, kwargs={"box": shared["box"]})
                 for i in range(20)]
        seen = [r.value for r in scheduler.run(tasks)]
    after = client[:].apply_sync(unpickled_count)
    by_engine = {}
    for box_id, pid, _ in seen:
        by_engine.setdefault(pid, set()).add(box_id)
    # every task on an engine got the same object, unpickled once per engine
    assert all(len(ids) == 1 for ids in by_engine.values())
    assert [a - b for a, b in zip(after, before)] == [1] * len(client.ids)


def test_python_errors_are_raised_once_not_retried(client, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    raising = CountingClassifier(c=1, raise_on=1, log_dir=str(log))
    with pytest.raises(ValueError, match="c=1 cannot be fitted") as info:
        ParallelGridSearchCV(raising, {"c": [1]}, cv=2, backend=client,
                             error_score="raise").fit(X, y)
    assert "cannot be fitted" in str(info.value.__cause__), "the engine's traceback"
    client.wait(timeout=30)
    assert count_fits(log) <= 2, "a failing fit must not be retried"
    for name in os.listdir(log):
        os.remove(log / name)
    with pytest.raises(ValueError, match="All the 2 fits failed"):
        ParallelGridSearchCV(FailingClassifier(depth=0), {"depth": [0]}, cv=2,
                             backend=client).fit(X, y)
    counting = CountingClassifier(log_dir=str(log))
    ParallelGridSearchCV(counting, {"c": [0, 1]}, cv=2, backend=client, refit=False).fit(X, y)
    assert count_fits(log) == 4, "each fit ran once"


def test_stopping_early_aborts_the_queued_tasks(client, tmp_path):
    failing = CountingClassifier(c=1, raise_on=1, log_dir=str(tmp_path)).fit
    slow = CountingClassifier(delay=0.3, log_dir=str(tmp_path)).fit
    with pytest.raises(ValueError, match="c=1 cannot be fitted"):
        with Scheduler(backend=client) as scheduler:
            data = {"X": X[:50], "y": y[:50]}  # not shared: it outlives the run
            tasks = [Task(key=0, func=failing, kwargs=data)]
            tasks += [Task(key=i, func=slow, kwargs=data) for i in range(1, 20)]
            list(scheduler.run(tasks))
    client.wait(timeout=30)  # the engines are idle: nothing is left to run
    # without the abort all 20 fits run; with it only those already started
    assert count_fits(tmp_path) <= 6


def test_task_where_pins_a_task_to_an_engine(client):
    pid_of = engine_pids(client)
    with Scheduler(backend=client) as scheduler:
        engines = scheduler.worker_ids()
        assert engines == sorted(client.ids)
        tasks = [Task(key=(e, i), func=os.getpid, where=e) for e in engines for i in range(4)]
        records = list(scheduler.run(tasks))
    assert len(records) == len(tasks)
    for record in records:
        assert record.pid == pid_of[record.key[0]]


def test_killed_engine_is_survived_and_given_up_after_max_retries(tmp_path):
    cluster, client = start_cluster(3)
    try:
        grid = {"c": [0, 1, 2, 3]}
        reference = GridSearchCV(CountingClassifier(), grid, cv=3).fit(X, y)
        once = CountingClassifier(crash_on=1, delay=0.05,
                                  crash_once_marker=str(tmp_path / "crashed"))
        ours = ParallelGridSearchCV(once, grid, cv=3, backend=client).fit(X, y)
        assert (tmp_path / "crashed").exists()
        assert_same_search(ours, reference, X)
        assert len(client.ids) == 2, "one engine died"
        # max_retries=0: the fit whose engine died is given up at once
        again = CountingClassifier(crash_on=2, crash_once_marker=str(tmp_path / "again"))
        with pytest.warns(FitFailedWarning, match="1 fits failed out of a total of 12") as w:
            ours = ParallelGridSearchCV(again, grid, cv=3, backend=client, max_retries=0,
                                        refit=False).fit(X, y)
        assert "worker running this fit died" in str(w[0].message)
        assert np.isnan(ours.cv_results_["mean_test_score"][2])
        np.testing.assert_array_equal(ours.cv_results_["mean_test_score"][[0, 1, 3]],
                                      reference.cv_results_["mean_test_score"][[0, 1, 3]])
    finally:
        client.close()
        cluster.stop_cluster_sync()


def test_a_fit_that_always_kills_its_engine_costs_its_candidate_only(monkeypatch):
    """Each engine it kills is replaced with the cluster's launcher; the search completes."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        TESTS, os.environ.get("PYTHONPATH")])))  # for the engines started in place of dead ones
    cluster, client = start_cluster(2)
    try:
        grid = {"c": [0, 1, 2, 3]}
        reference = GridSearchCV(CountingClassifier(), grid, cv=3).fit(X, y)
        with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 12") as w:
            ours = ParallelGridSearchCV(CountingClassifier(crash_on=2, delay=0.05), grid, cv=3,
                                        backend=client, refit=False).fit(X, y)
        assert "EngineError" in str(w[0].message)
        scores = ours.cv_results_["mean_test_score"]
        assert np.isnan(scores[2])
        np.testing.assert_array_equal(scores[[0, 1, 3]],
                                      reference.cv_results_["mean_test_score"][[0, 1, 3]])
        assert len(client.ids) >= 1, "engines were started in place of the dead ones"
    finally:
        client.close()
        cluster.stop_cluster_sync()


def test_cluster_without_engines_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_ipyparallel, "WORKER_TIMEOUT", 1.0)
    cluster, client = start_cluster(0)
    try:
        with pytest.raises(RuntimeError, match="has no engine after 1 s.*ipcluster start -n 4"):
            ParallelGridSearchCV(SVC(), GRID, cv=2, backend=client).fit(X, y)
    finally:
        client.close()
        cluster.stop_cluster_sync()


def test_string_forms_are_validated():
    from parml.scheduler._ipyparallel import client_kwargs

    assert client_kwargs("ipyparallel") == {}
    assert client_kwargs("ipyparallel:p") == {"profile": "p"}
    assert client_kwargs("ipyparallel:p:c") == {"profile": "p", "cluster_id": "c"}
    assert client_kwargs("ipyparallel:~/c.json") == {
        "connection_info": os.path.expanduser("~/c.json")}
    assert check_backend("ipyparallel") == "ipyparallel"
    assert check_backend("ipyparallel:myprofile") == "ipyparallel:myprofile"
    assert check_backend("ipyparallel:myprofile:abc") == "ipyparallel:myprofile:abc"
    assert check_backend("ipyparallel:/x/ipcontroller-client.json")
    for bad in ["ipyparallel:", "ipyparallel::abc", "ipyparallel:a:b:c"]:
        with pytest.raises(ValueError, match=r"'backend' parameter .*'ipyparallel:<profile>'"):
            ParallelGridSearchCV(SVC(), GRID, backend=bad).fit(X, y)


def test_no_running_cluster_names_the_command():
    with pytest.raises(RuntimeError, match=r"no running ipyparallel cluster.*"
                                           r"ipcluster start -n 4 --profile=parml-nowhere"):
        ParallelGridSearchCV(SVC(), GRID, backend="ipyparallel:parml-nowhere").fit(X, y)


def test_tiny_tasks_are_batched_and_long_ones_are_not(client):
    from _doubles import square_or_exit

    before = len(client.history)
    with Scheduler(backend=client) as scheduler:
        records = list(scheduler.run(
            [Task(key=i, func=square_or_exit, kwargs={"x": i}) for i in range(400)]))
    assert sorted((r.key, r.value) for r in records) == [(i, i * i) for i in range(400)]
    assert len(client.history) - before < 100  # tiny tasks travel in batches
    before = len(client.history)
    with Scheduler(backend=client) as scheduler:
        records = list(scheduler.run(
            [Task(key=i, func=square_or_exit, kwargs={"x": i, "delay": 0.2})
             for i in range(6)]))
    assert len(records) == 6 and len(client.history) - before >= 6  # long ones go alone


def kill_engine(pid):
    """SIGKILL an engine process and wait (up to 10 s) until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"engine process {pid} still exists 10 s after SIGKILL")


def kill_first(engine_class, method, pid, monkeypatch):
    """Make ``engine_class.method`` kill engine ``pid`` before it runs (once)."""
    original = getattr(engine_class, method)

    def killing_first(self, *args, **kwargs):
        if method == "_wait_for_engines":  # kill after the targets are known
            targets = original(self, *args, **kwargs)
            kill_engine(pid)
            return targets
        kill_engine(pid)
        monkeypatch.setattr(engine_class, method, original)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine_class, method, killing_first)


@pytest.mark.parametrize("when", ["before_fit", "start_up", "share"])
def test_an_engine_dying_while_the_search_starts_is_left_out(when, monkeypatch):
    cluster, client = start_cluster(3)
    try:
        pids = engine_pids(client)
        victim = pids.pop(max(pids))
        if when == "before_fit":  # the client may not know yet when the fit starts
            kill_engine(victim)
        else:  # asking the engines' hosts and cores, or pushing the data, meets a dead one
            method = {"start_up": "_wait_for_engines", "share": "share"}[when]
            kill_first(_ipyparallel.IPyParallelEngine, method, victim, monkeypatch)
        start = time.monotonic()
        ours = ParallelGridSearchCV(SVC(), GRID, cv=3, backend=client).fit(X, y)
        assert time.monotonic() - start < 30, "no long wait for the dead engine"
        assert_same_search(ours, GridSearchCV(SVC(), GRID, cv=3).fit(X, y), X)
        assert {t["pid"] for t in ours.trace_} <= set(pids.values())
        assert sorted(client.ids) == sorted(pids), "the hub noticed the death"
        assert parml_names(client) == [], "the engines left delete the pushed data"
    finally:
        client.close()
        cluster.stop_cluster_sync()


def test_an_engine_dying_during_start_up_with_none_left_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_ipyparallel, "WORKER_TIMEOUT", 2.0)
    cluster, client = start_cluster(1)
    try:
        (pid,) = engine_pids(client).values()
        kill_first(_ipyparallel.IPyParallelEngine, "_wait_for_engines", pid, monkeypatch)
        with pytest.raises(RuntimeError, match=r"no engine.* after 2 s.*ipcluster"):
            ParallelGridSearchCV(SVC(), GRID, cv=2, backend=client).fit(X, y)
    finally:
        client.close()
        cluster.stop_cluster_sync()


def test_timeout_abandons_a_long_fit_and_the_search_moves_on(monkeypatch, caplog):
    monkeypatch.setattr(_lateness, "STALL_REPORT_SECONDS", 1.0)
    cluster, client = start_cluster(3)  # both fits of c=1 hold an engine for 30 s
    pids = engine_pids(client)
    try:
        grid = {"c": [0, 1, 2, 3]}
        reference = GridSearchCV(CountingClassifier(), grid, cv=2).fit(X, y)
        slow = CountingClassifier(sleep_on=1, delay_on=30)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="parml"):
            with pytest.warns(FitFailedWarning, match=r"(?s)2 fits failed.*timeout=3 s"):
                ours = ParallelGridSearchCV(slow, grid, cv=2, backend=client, timeout=3,
                                            error_score=np.nan).fit(X, y)
        assert time.monotonic() - start < 15, "long before the 30 s sleeps end"
        scores = ours.cv_results_["mean_test_score"]
        assert np.isnan(scores[1])
        np.testing.assert_array_equal(scores[[0, 2, 3]],
                                      reference.cv_results_["mean_test_score"][[0, 2, 3]])
        assert ours.best_params_ == reference.best_params_
        assert sorted(client.ids) == sorted(pids), "no engine was killed"
        for pid in pids.values():
            os.kill(pid, 0)  # (two still sleep: asking them would wait for it)
        stalls = [r.getMessage() for r in caplog.records
                  if "No task has finished" in r.getMessage()]
        assert stalls and "on engine" in stalls[0], "a stall names the tasks and engines"
    finally:
        for pid in pids.values():  # two still sleep: a quick end for the cluster
            kill_engine(pid)
        client.close()
        cluster.stop_cluster_sync()


def test_a_straggler_gets_a_copy_and_the_first_to_finish_is_kept(client, tmp_path,
                                                                 monkeypatch, caplog):
    monkeypatch.setattr(_lateness, "SPECULATION_MIN_SECONDS", 1.0)
    log, marker, release = tmp_path / "log", tmp_path / "hung", tmp_path / "release"
    log.mkdir()
    hangs = {"marker": str(marker), "release": str(release)}
    tasks = [Task(key=i, func=hang_on_first_run,
                  kwargs={"x": i, "log_dir": str(log), **(hangs if i == 3 else {})})
             for i in range(8)]
    try:
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="parml"):
            with Scheduler(backend=client) as scheduler:
                records = list(scheduler.run(tasks))
        assert time.monotonic() - start < 20, "the copy finished long before the original"
        assert sorted((r.key, r.value) for r in records) == [(i, i * i) for i in range(8)]
        runs = [name.split("-")[0] for name in os.listdir(log)]
        assert runs.count("3") == 2 and len(runs) == 9, "one copy, of the straggler only"
        assert not release.exists() and marker.exists(), "the original is still running"
        assert any("a copy runs on another engine" in r.getMessage() for r in caplog.records)
    finally:
        release.touch()
        assert client.wait(timeout=30), "the original ends once released"
