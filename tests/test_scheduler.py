"""The scheduler: keyed tasks, unordered streaming, data shared once, thread budget."""

import os
import time

import numpy as np
import pytest
from joblib import parallel_config
from threadpoolctl import threadpool_info

from parml.scheduler import Scheduler, Task, check_backend, valid_backends

ENGINES = [dict(n_jobs=1), dict(n_jobs=2, backend="loky"), dict(n_jobs=2, backend="threading")]


def slow_square(x, delay):
    time.sleep(delay)
    return x * x


def describe(array):
    """What a worker received: its type and, for a memmap, its file."""
    return type(array).__name__, getattr(array, "filename", None), float(array.sum())


def blas_threads():
    return max((lib["num_threads"] for lib in threadpool_info()), default=1)


@pytest.mark.parametrize("engine", ENGINES, ids=str)
def test_records_carry_keys_and_where_they_ran(engine):
    tasks = [Task(key=("sq", i), func=slow_square, kwargs={"x": i, "delay": 0.01})
             for i in range(6)]
    with Scheduler(**engine) as scheduler:
        records = list(scheduler.run(tasks))
    assert {r.key: r.value for r in records} == {("sq", i): i * i for i in range(6)}
    for r in records:
        assert r.start <= r.end and r.pid > 0 and r.host
    if engine.get("backend") == "loky":
        assert os.getpid() not in {r.pid for r in records}


def test_results_stream_in_completion_order():
    delays = [0.6, 0.0, 0.0, 0.0]
    tasks = [Task(key=i, func=slow_square, kwargs={"x": i, "delay": d})
             for i, d in enumerate(delays)]
    with Scheduler(n_jobs=2, backend="threading", pre_dispatch="all") as scheduler:
        keys = [r.key for r in scheduler.run(tasks)]
    assert sorted(keys) == [0, 1, 2, 3]
    assert keys[-1] == 0, "the slow task must not hold back the others"


def test_large_arrays_reach_loky_workers_as_one_shared_memmap():
    X = np.random.RandomState(0).rand(300_000)  # 2.4 MB
    with Scheduler(n_jobs=2, backend="loky") as scheduler:
        shared = scheduler.share({"X": X, "small": np.ones(3)})
        assert isinstance(shared["X"], np.memmap)
        assert not isinstance(shared["small"], np.memmap)
        tasks = [Task(key=i, func=describe, kwargs={"array": shared["X"]}) for i in range(8)]
        seen = {r.value for r in scheduler.run(tasks)}
        folder = scheduler.engine._store.folder
    # Every task saw the same file: the data was written once, not per task.
    assert len(seen) == 1
    kind, filename, total = seen.pop()
    assert kind == "memmap" and filename == shared["X"].filename
    assert total == pytest.approx(X.sum())
    assert not os.path.exists(folder), "the memmap folder is removed after the run"


def test_threads_and_single_worker_get_the_arrays_themselves():
    X = np.random.RandomState(0).rand(300_000)
    for engine in (dict(n_jobs=1), dict(n_jobs=2, backend="threading")):
        with Scheduler(**engine) as scheduler:
            assert scheduler.share({"X": X})["X"] is X


def test_loky_workers_limit_blas_threads_to_their_share_of_cores():
    n_jobs = 2
    with Scheduler(n_jobs=n_jobs, backend="loky") as scheduler:
        threads = {r.value for r in scheduler.run(
            [Task(key=i, func=blas_threads) for i in range(4)])}
    assert max(threads) <= max(1, (os.cpu_count() or 1) // n_jobs)


def test_threading_limits_blas_threads_during_the_run():
    with Scheduler(n_jobs=2, backend="threading") as scheduler:
        threads = {r.value for r in scheduler.run(
            [Task(key=i, func=blas_threads) for i in range(4)])}
    assert max(threads) <= max(1, (os.cpu_count() or 1) // 2)


def test_backend_none_follows_joblib_parallel_config():
    with parallel_config(backend="threading", n_jobs=2):
        with Scheduler() as scheduler:
            assert scheduler.engine.uses_threads
            pids = {r.pid for r in scheduler.run(
                [Task(key=i, func=os.getpid) for i in range(4)])}
    assert pids == {os.getpid()}


def test_task_errors_propagate():
    def boom():
        raise KeyError("nope")

    with Scheduler(n_jobs=1) as scheduler, pytest.raises(KeyError, match="nope"):
        list(scheduler.run([Task(key=0, func=boom)]))


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match=r"'backend' parameter .*'loky'.*got 'lokyy'"):
        check_backend("lokyy")
    assert {"loky", "threading"} <= set(valid_backends())


def test_progress_bar_counts_finished_tasks(capsys):
    pytest.importorskip("tqdm")
    with Scheduler(n_jobs=1, progress=True, desc="demo") as scheduler:
        list(scheduler.run([Task(key=i, func=slow_square, kwargs={"x": i, "delay": 0})
                            for i in range(5)]))
    err = capsys.readouterr().err
    assert "demo" in err and "5/5" in err
