"""The scheduler session: tasks submitted while others run start at once, on every engine."""

import os
import time

import pytest

from parml.scheduler import Scheduler, Task

LONG = 2.0


def _nap(seconds, label):
    time.sleep(seconds)
    return label, time.monotonic()


def _die_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "survived"


def _nap_task(key, seconds):
    return Task(key=key, func=_nap, kwargs={"seconds": seconds, "label": key})


@pytest.fixture(params=["loky", "threading", "dask", "ipyparallel"])
def backend(request):
    if request.param == "dask":
        return request.getfixturevalue("dask_client")
    if request.param == "ipyparallel":
        return request.getfixturevalue("ipyparallel_client")
    return request.param


def test_a_task_submitted_while_others_run_does_not_wait_for_them(backend):
    with Scheduler(backend=backend, n_jobs=2) as scheduler:
        session = scheduler.session()
        session.submit([_nap_task("long", LONG), _nap_task("short", 0.05)])
        order = []
        for record in session:
            order.append(record.key)
            if record.key == "short":  # chosen from a result, while "long" runs
                session.submit([_nap_task("follow-up", 0.05)])
    assert order == ["short", "follow-up", "long"]
    assert session.n_submitted == session.n_done == 3


def test_a_single_worker_runs_tasks_submitted_on_the_way():
    with Scheduler(n_jobs=1) as scheduler:
        session = scheduler.session()
        session.submit(_nap_task(0, 0.0))
        seen = []
        for record in session:
            seen.append(record.key)
            if record.key < 3:
                session.submit(_nap_task(record.key + 1, 0.0))
    assert seen == [0, 1, 2, 3]


def test_cancelled_tasks_do_not_run_and_are_not_reported():
    with Scheduler(backend="threading", n_jobs=2) as scheduler:
        session = scheduler.session()
        session.submit([_nap_task("first", 0.3), _nap_task("second", 0.3)]
                       + [_nap_task(i, 0.3) for i in range(20)])
        start = time.monotonic()
        seen = []
        for record in session:
            seen.append(record.key)
            session.cancel(range(20))
    assert sorted(seen, key=str) == ["first", "second"]
    assert time.monotonic() - start < 3.0  # 20 more naps of 0.3 s on 2 threads take 3 s


def test_stored_records_come_first_and_new_submissions_are_looked_up(tmp_path):
    with Scheduler(backend="threading", n_jobs=2, memory=tmp_path) as scheduler:
        tasks = [Task(key=i, func=pow, kwargs={"base": i, "exp": 2}, cache_key=f"sq-{i}")
                 for i in range(4)]
        first = {r.key: r.value for r in scheduler.run(tasks)}
        session = scheduler.session()
        session.submit(tasks[:2])
        again = {}
        for record in session:
            again[record.key] = (record.value, record.cached)
            if record.key == 1:
                session.submit(tasks[2:])
    assert first == {0: 0, 1: 1, 2: 4, 3: 9}
    assert again == {i: (i * i, True) for i in range(4)}
    assert session.n_cached == 4


def test_a_worker_death_keeps_the_session_going(tmp_path):
    marker = str(tmp_path / "died")
    with Scheduler(backend="loky", n_jobs=2, max_retries=2) as scheduler:
        session = scheduler.session()
        session.submit([Task(key="dies", func=_die_once, kwargs={"marker": marker}),
                        _nap_task("nap", 0.05)])
        seen = {}
        for record in session:
            seen[record.key] = record.value
            if record.key == "nap":
                session.submit([_nap_task("after", 0.0)])
    assert seen["dies"] == "survived"
    assert seen["after"][0] == "after"
    assert set(seen) == {"dies", "nap", "after"}


def _keep_state(token):
    from parml.scheduler._worker_state import fit_state, held_tokens
    fit_state(token)["kept"] = os.getpid()
    time.sleep(0.2)  # every worker gets one
    return held_tokens()


def _held(_):
    from parml.scheduler._worker_state import held_tokens
    time.sleep(0.2)
    return os.getpid(), held_tokens()


@pytest.mark.parametrize("backend", ["loky", "threading", "dask", "ipyparallel"],
                         indirect=True)
def test_worker_state_is_released_when_the_scheduler_closes(backend):
    with Scheduler(backend=backend, n_jobs=2) as scheduler:
        token = scheduler.token
        kept = [r.value for r in scheduler.run(
            [Task(key=i, func=_keep_state, kwargs={"token": token}) for i in range(4)])]
    assert all(token in held for held in kept)
    deadline = time.monotonic() + 10
    while True:  # the release is not waited for by the scheduler: poll, bounded
        with Scheduler(backend=backend, n_jobs=2) as probe:
            held = [r.value for r in probe.run(
                [Task(key=i, func=_held, kwargs={"_": i}) for i in range(4)])]
        if all(token not in tokens for _, tokens in held) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(token not in tokens for _, tokens in held), held


class _DiesAtStart:
    """An executor whose every future breaks, as a pool whose workers die at start-up."""

    def submit(self, *args, **kwargs):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        future = Future()
        future.set_exception(BrokenProcessPool("a worker died at start-up"))
        return future

    def shutdown(self, wait=True, kill_workers=False):
        pass


def test_workers_that_die_before_any_task_are_a_clear_error_not_a_hang():
    from collections import deque

    from parml.scheduler._futures_run import FuturesRun

    run = FuturesRun(execute_task, deque([_nap_task(i, 0.0) for i in range(4)]), 2,
                     _DiesAtStart)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="died 3 times in a row before running any task"):
        list(run)
    assert time.monotonic() - start < 10


def execute_task(task):
    return task.func(**task.kwargs)


def test_tasks_submitted_one_after_another_all_come_back(backend):
    # each task is freed once its record is out: a new task may get its id()
    with Scheduler(backend=backend, n_jobs=2) as scheduler:
        session = scheduler.session()
        session.submit([Task(key=0, func=pow, kwargs={"base": 0, "exp": 2})])
        seen = []
        for record in session:
            seen.append(record.key)
            if record.key < 60:
                session.submit([Task(key=record.key + 1, func=pow,
                                     kwargs={"base": record.key + 1, "exp": 2})])
    assert seen == list(range(61))
