"""Every engine fulfils one declared contract; remote engines share one base."""

from collections import deque

import pytest
from threadpoolctl import threadpool_info

from parml.scheduler._dask import DaskEngine
from parml.scheduler._deaths import Deaths
from parml.scheduler._engine_base import Engine, Placeholder, RemoteEngine, resolve, run_unit
from parml.scheduler._ipyparallel import IPyParallelEngine
from parml.scheduler._local import LocalEngine
from parml.scheduler._tasks import Task

FLAGS = ("uses_processes", "uses_threads", "remote", "supports_timeout", "streams")


@pytest.mark.parametrize("engine", [LocalEngine, DaskEngine, IPyParallelEngine])
def test_every_engine_is_an_engine_with_its_capabilities_declared(engine):
    assert issubclass(engine, Engine)
    assert not getattr(engine, "__abstractmethods__", None)
    for flag in FLAGS:
        assert hasattr(engine, flag), flag


@pytest.mark.parametrize("engine", [DaskEngine, IPyParallelEngine])
def test_remote_engines_share_the_remote_base(engine):
    assert issubclass(engine, RemoteEngine)
    assert engine.remote and engine.supports_timeout
    assert not engine.uses_processes and not engine.uses_threads


def test_an_engine_missing_a_method_cannot_be_made():
    class Half(Engine):
        n_workers = 1

        def share(self, data):
            return data

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_local_engine_flags_follow_its_backend():
    threads = LocalEngine("threading", n_jobs=2)
    assert threads.uses_threads and not threads.uses_processes
    assert not threads.supports_timeout and not threads.remote
    processes = LocalEngine("loky", n_jobs=2)
    assert processes.uses_processes and processes.supports_timeout


def test_placeholders_are_resolved_at_any_depth():
    shared = {0: {"X": "the X", "y": "the y"}}
    value = {"data": [Placeholder(0, "X"), (Placeholder(0, "y"), 3)], "n": 1}
    assert resolve(value, lambda p: shared[p.slot][p.name]) == {
        "data": ["the X", ("the y", 3)], "n": 1}


def _blas_threads(_):
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_a_unit_runs_its_tasks_in_order_under_one_blas_limit():
    assert run_unit(lambda task: task * 2, [1, 2, 3], 1) == [2, 4, 6]
    limited = run_unit(_blas_threads, [None], 1)[0]
    assert all(n == 1 for n in limited)


def test_remote_units_batch_without_timeout_and_go_alone_with_one():
    class Remote(RemoteEngine):
        n_workers = 2
        share = map_unordered = worker_ids = release_state = close = None

    tasks = deque(Task(key=i, func=abs) for i in range(10))
    engine = Remote()
    assert type(engine.units(tasks)).__name__ == "Batches"
    engine.timeout = 5
    units = engine.units(tasks)
    assert units.queue is tasks  # the session's queue itself: what is added is sent too
    assert all(len(units.next_unit()) == 1 for _ in range(10))


def test_deaths_give_a_task_up_past_max_retries():
    deaths = Deaths(max_retries=2)
    task = Task(key="k", func=abs)
    assert task not in deaths
    for n in (1, 2):
        deaths.note(task)
        assert not deaths.exhausted(task), n
    deaths.note(task)
    assert deaths.exhausted(task)
    lost = deaths.give_up(task, "it killed its worker")
    assert (lost.task, lost.attempts, lost.reason) == (task, 3, "it killed its worker")


def test_a_named_backend_keeps_the_users_inner_thread_limit():
    from joblib import parallel_config

    from parml.scheduler._local_pool import worker_env

    with parallel_config(backend="loky", inner_max_num_threads=3):
        engine = LocalEngine("loky", n_jobs=2)
        with engine._config():
            assert worker_env(2)["OMP_NUM_THREADS"] == "3"
    with LocalEngine("loky", n_jobs=2)._config():
        assert worker_env(2)["OMP_NUM_THREADS"] != "3"
