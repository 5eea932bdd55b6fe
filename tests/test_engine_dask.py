"""The Dask engine on a real LocalCluster (2 worker processes, loopback), started here."""

import logging
import os
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

#: A hang fails in a couple of minutes, well before the suite's own limit.
pytestmark = pytest.mark.timeout(150)

from joblib import parallel_config  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from _doubles import (  # noqa: E402
    CountingBox, CountingClassifier, box_identity, count_fits, hang_on_first_run,
)
from _oracle import assert_same_search  # noqa: E402
from parml import (  # noqa: E402
    ParallelGridSearchCV, ParallelRandomizedSearchCV, cross_val_parallel,
)
from parml.scheduler import Scheduler, Task, _lateness  # noqa: E402

X, y = load_digits(return_X_y=True)
X, y = X[:450], y[:450]
GRID = {"C": [1, 10], "gamma": [1e-3, 1e-4]}


def cluster_and_client(**config):
    import dask

    with dask.config.set(config):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    cluster, client = cluster_and_client()
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("how", ["client", "dask", "address", "parallel_config"])
def test_grid_search_equals_sklearn_and_loky(client, how):
    backend = {"client": client, "dask": "dask", "address": client.scheduler.address,
               "parallel_config": None}[how]
    if how == "parallel_config":
        with parallel_config("dask"):
            ours = ParallelGridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    else:
        ours = ParallelGridSearchCV(SVC(), GRID, cv=3, backend=backend).fit(X, y)
    assert_same_search(ours, GridSearchCV(SVC(), GRID, cv=3).fit(X, y), X)
    assert_same_search(ours, ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y), X)
    worker_pids = set(client.run(os.getpid).values())
    assert {t["pid"] for t in ours.trace_} <= worker_pids
    assert "backend" in ours.get_params() and not hasattr(ours, "client_")


def test_randomized_search_and_cross_val(client):
    from scipy.stats import loguniform

    dists = {"C": loguniform(1, 100), "gamma": loguniform(1e-4, 1e-2)}
    kw = dict(n_iter=4, cv=3, random_state=0)
    ours = ParallelRandomizedSearchCV(SVC(), dists, backend=client, **kw).fit(X, y)
    assert_same_search(ours, RandomizedSearchCV(SVC(), dists, **kw).fit(X, y), X)
    got = cross_val_parallel(SVC(), X, y, cv=3, backend=client, scoring=["accuracy"])
    expected = cross_validate(SVC(), X, y, cv=3, scoring=["accuracy"])
    np.testing.assert_array_equal(got["test_accuracy"], expected["test_accuracy"])


def test_shared_data_reaches_each_worker_once(client):
    before = client.run(lambda: __import__("_doubles").unpickled_count())
    with Scheduler(backend=client) as scheduler:
        shared = scheduler.share({"box": CountingBox(np.arange(10))})
        tasks = [Task(key=i, func=box_identity, kwargs={"box": shared["box"]})
                 for i in range(20)]
        seen = [r.value for r in scheduler.run(tasks)]
    after = client.run(lambda: __import__("_doubles").unpickled_count())
    by_worker = {}
    for box_id, pid, _ in seen:
        by_worker.setdefault(pid, set()).add(box_id)
    # every task on a worker got the same object, unpickled once per worker
    assert all(len(ids) == 1 for ids in by_worker.values())
    received = {address: after[address] - before[address] for address in after}
    # each worker that ran a task got the data once, whatever its number of tasks
    assert set(received.values()) <= {0, 1} and sum(received.values()) == len(by_worker)


def test_python_errors_are_raised_once_not_retried(client, tmp_path):
    from _doubles import FailingClassifier

    log = tmp_path / "log"
    log.mkdir()
    raising = CountingClassifier(c=1, raise_on=1, log_dir=str(log))
    with pytest.raises(ValueError, match="c=1 cannot be fitted"):
        ParallelGridSearchCV(raising, {"c": [1]}, cv=2, backend=client,
                             error_score="raise").fit(X, y)
    # the other fit, cancelled by the raise, may still finish (and log) later
    distributed.wait(client.submit(time.sleep, 0.5, pure=False), timeout=60)
    assert count_fits(log) <= 2, "a failing fit must not be retried"
    failing = FailingClassifier(depth=0)
    with pytest.raises(ValueError, match="All the 2 fits failed"):
        ParallelGridSearchCV(failing, {"depth": [0]}, cv=2, backend=client).fit(X, y)
    fresh = tmp_path / "log2"  # a folder of its own: no late write of the first search
    fresh.mkdir()
    counting = CountingClassifier(log_dir=str(fresh))
    ParallelGridSearchCV(counting, {"c": [0, 1]}, cv=2, backend=client, refit=False).fit(X, y)
    assert count_fits(fresh) == 4, "each fit ran once"


def test_timeout_abandons_a_long_fit_and_the_search_moves_on(client):
    grid = {"c": [0, 1, 2, 3]}
    reference = GridSearchCV(CountingClassifier(), grid, cv=2).fit(X, y)
    slow = CountingClassifier(sleep_on=1, delay_on=20)
    before = client.run(os.getpid)
    with pytest.warns(FitFailedWarning, match=r"(?s)2 fits failed.*timeout=2 s"):
        ours = ParallelGridSearchCV(slow, grid, cv=2, backend=client, timeout=2,
                                    error_score=np.nan).fit(X, y)
    scores = ours.cv_results_["mean_test_score"]
    assert np.isnan(scores[1])
    np.testing.assert_array_equal(scores[[0, 2, 3]],
                                  reference.cv_results_["mean_test_score"][[0, 2, 3]])
    assert client.run(os.getpid) == before, "no worker was killed"
    client.wait_for_workers(2, timeout=30)
    distributed.wait(client.submit(time.sleep, 0, pure=False), timeout=60)


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
        with caplog.at_level(logging.WARNING, logger="parml"):
            with Scheduler(backend=client) as scheduler:
                records = list(scheduler.run(tasks))
        assert sorted((r.key, r.value) for r in records) == [(i, i * i) for i in range(8)]
        runs = [name.split("-")[0] for name in os.listdir(log)]
        assert runs.count("3") == 2 and len(runs) == 9, "one copy, of the straggler only"
        assert not release.exists() and marker.exists(), "the original was still running"
        assert any("a copy runs on another worker" in r.getMessage() for r in caplog.records)
    finally:
        release.touch()


def test_killed_worker_is_survived_and_a_fit_that_always_kills_fails(tmp_path):
    cluster, client = cluster_and_client(**{"distributed.scheduler.allowed-failures": 1})
    try:
        grid = {"c": [0, 1, 2, 3]}
        reference = GridSearchCV(CountingClassifier(), grid, cv=3).fit(X, y)
        once = CountingClassifier(crash_on=1, crash_once_marker=str(tmp_path / "crashed"))
        ours = ParallelGridSearchCV(once, grid, cv=3, backend=client).fit(X, y)
        assert (tmp_path / "crashed").exists()
        assert_same_search(ours, reference, X)
        client.wait_for_workers(2, timeout=60)
        with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 12") as w:
            ours = ParallelGridSearchCV(CountingClassifier(crash_on=2), grid, cv=3,
                                        backend=client).fit(X, y)
        assert "worker running this fit died" in str(w[0].message)
        assert np.isnan(ours.cv_results_["mean_test_score"][2])
        np.testing.assert_array_equal(ours.cv_results_["mean_test_score"][[0, 1, 3]],
                                      reference.cv_results_["mean_test_score"][[0, 1, 3]])
    finally:
        client.close()
        cluster.close()


def test_cluster_without_workers_is_a_clear_error(monkeypatch):
    from parml.scheduler import _dask

    monkeypatch.setattr(_dask, "WORKER_TIMEOUT", 1.0)
    cluster = distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        with pytest.raises(RuntimeError, match="has no worker after 1 s.*dask worker"):
            ParallelGridSearchCV(SVC(), GRID, cv=2, backend=client).fit(X, y)
    finally:
        client.close()
        cluster.close()


def test_task_where_pins_a_task_to_a_worker(client):
    with Scheduler(backend=client) as scheduler:
        workers = scheduler.worker_ids()
        assert workers == sorted(client.scheduler_info()["workers"])
        tasks = [Task(key=(w, i), func=os.getpid, where=w) for w in workers for i in range(4)]
        records = list(scheduler.run(tasks))
    pid_of = client.run(os.getpid)
    for record in records:
        assert record.pid == pid_of[record.key[0]]


def test_bagged_forest_is_the_same_forest_on_dask(client):
    from parml import BaggedForest

    local = BaggedForest(n_estimators=12, random_state=0, oob_score=True).fit(X, y)
    remote = BaggedForest(n_estimators=12, random_state=0, oob_score=True,
                          backend=client).fit(X, y)
    np.testing.assert_array_equal(remote.predict_proba(X), local.predict_proba(X))
    assert remote.oob_score_ == local.oob_score_
    assert {e["pid"] for e in remote.trace_} <= set(client.run(os.getpid).values())


def test_bagged_forest_fits_each_member_where_its_partition_lives(client):
    import dask.array as da

    from parml import BaggedForest

    # 6 row partitions, persisted on the workers before the fit; the
    # scheduler says who holds each.
    X_parts, y_parts = client.persist([da.from_array(X, chunks=(75, 64)),
                                       da.from_array(y, chunks=75)])
    distributed.wait([X_parts, y_parts])
    keys = [k[0] for k in X_parts.__dask_keys__()]
    who_has = client.who_has([f for f in distributed.futures_of(X_parts)])
    holders = [list(who_has[k])[0] for k in keys]
    assert len(set(holders)) == 2  # the partitions are spread over both workers
    forest = BaggedForest(n_estimators=12, random_state=0, backend=client)
    forest.fit_partitions(X_parts, y_parts)
    pid_of = client.run(os.getpid)
    for event in forest.trace_:
        assert event["pid"] == pid_of[holders[event["partition"]]]
    np.testing.assert_array_equal(forest.estimators_partitions_, np.arange(12) % 6)
    assert forest.score(X, y) > 0.8  # 12 trees, each on 75 samples
    local = BaggedForest(n_estimators=12, random_state=0).fit_partitions(
        [(X[i:i + 75], y[i:i + 75]) for i in range(0, 450, 75)])
    np.testing.assert_array_equal(forest.predict_proba(X), local.predict_proba(X))


def _parml_units(task_stream):
    return [t for t in task_stream.data if str(t["key"]).startswith("parml-")]


def test_tiny_tasks_are_batched_and_long_ones_are_not(client):
    from _doubles import square_or_exit

    with distributed.get_task_stream(client) as stream:
        with Scheduler(backend=client) as scheduler:
            records = list(scheduler.run(
                [Task(key=i, func=square_or_exit, kwargs={"x": i}) for i in range(400)]))
    assert sorted((r.key, r.value) for r in records) == [(i, i * i) for i in range(400)]
    assert len(_parml_units(stream)) < 100  # tiny tasks travel in batches
    with distributed.get_task_stream(client) as stream:
        with Scheduler(backend=client) as scheduler:
            records = list(scheduler.run(
                [Task(key=i, func=square_or_exit, kwargs={"x": i, "delay": 0.2})
                 for i in range(6)]))
    assert len(records) == 6 and len(_parml_units(stream)) == 6  # long ones go alone


def test_a_task_that_kills_its_worker_takes_no_batch_mates_with_it():
    from _doubles import square_or_exit

    cluster, client = cluster_and_client(**{"distributed.scheduler.allowed-failures": 0})
    try:
        tasks = [Task(key=i, func=square_or_exit, kwargs={"x": i, "exit_on": 250},
                      on_lost=lambda reason: "lost") for i in range(300)]
        with Scheduler(backend=client, max_retries=1) as scheduler:
            values = {r.key: r.value for r in scheduler.run(tasks)}
        assert values.pop(250) == "lost"
        assert values == {i: i * i for i in range(300) if i != 250}
    finally:
        client.close()
        cluster.close()
