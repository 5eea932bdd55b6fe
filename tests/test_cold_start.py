"""Warm workers: forks of a template of the process, reused by every later call.

The first parallel call of a process must not pay the workers' imports, and
everything the local engine promises still holds with workers started that
way: the same results, Ctrl-C, dead workers, timeouts, joblib's thread
settings; and nothing of the parent (an OpenMP thread team, open pipes)
leaks into them. Fresh interpreters run in subprocesses, each wait bounded.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _processes import alive, descendants, parent_pid
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from parml import ParallelGridSearchCV
from parml.scheduler import _local_pool
from parml.scheduler._warm_template import TEMPLATE, Template

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="warm workers are forked: Linux only")

TESTS = os.path.dirname(os.path.abspath(__file__))
X, y = load_digits(return_X_y=True)
X, y = X[:300], y[:300]
GRID = {"C": [1, 10], "gamma": [1e-3, 1e-2]}


def _run(script, timeout=120, env=None, **kwargs):
    """Run ``script`` in a fresh interpreter; its output, or fail saying it hung."""
    env = dict(os.environ, **(env or {}))
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                              capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not finish within {timeout} s (a hang):\n{script}")


def test_workers_are_forks_of_the_template_and_a_second_search_reuses_them():
    if not _local_pool.warm_start_enabled():
        pytest.skip("PARML_WORKER_START or loky's start method chose new interpreters")
    first = ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y)
    n_pools, n_templates = _local_pool._WARM_POOL.n_created, TEMPLATE.n_started
    second = ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y)
    pids = {event["pid"] for event in second.trace_}
    assert pids & {event["pid"] for event in first.trace_}, "the second search reused workers"
    assert (_local_pool._WARM_POOL.n_created, TEMPLATE.n_started) == (n_pools, n_templates)
    assert {parent_pid(pid) for pid in pids} == {TEMPLATE.pid}
    assert parent_pid(TEMPLATE.pid) == os.getpid()
    reference = GridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    np.testing.assert_array_equal(second.cv_results_["mean_test_score"],
                                  reference.cv_results_["mean_test_score"])


FIRST_CALL = """
import sys, time
sys.path.insert(0, {tests!r})
import sklearn.svm
from sklearn.datasets import load_digits
from parml import ParallelGridSearchCV
from parml.scheduler._local_pool import worker_start
X, y = load_digits(return_X_y=True)
start = time.time()
search = ParallelGridSearchCV(sklearn.svm.SVC(), {{"C": [1, 10]}}, cv=2, n_jobs=2).fit(X, y)
first_fit = min(event["start"] for event in search.trace_) - start
print(worker_start(), round(first_fit, 3), len({{e["pid"] for e in search.trace_}}))
"""


def test_first_call_of_a_fresh_interpreter_starts_fitting_at_once():
    warm = _run(FIRST_CALL.format(tests=TESTS), env={"PARML_WORKER_START": "warm"})
    loky = _run(FIRST_CALL.format(tests=TESTS), env={"PARML_WORKER_START": "loky"})
    warm, loky = warm.stdout.split(), loky.stdout.split()
    assert (warm[0], loky[0]) == ("warm", "loky")
    assert warm[2] == loky[2] == "2"  # both workers ran fits
    # new interpreters import scikit-learn first (~1 s); forks start with it
    assert float(warm[1]) < 0.5 * float(loky[1]), (warm, loky)


OPENMP_IN_PARENT = """
import sys
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_info, threadpool_limits
from parml import ParallelGridSearchCV
X, y = make_classification(4000, 20, random_state=0)
with threadpool_limits(limits=2, user_api="openmp"):  # the parent's OpenMP team: 2 threads
    HistGradientBoostingClassifier(max_iter=10).fit(X, y)
assert any(i["internal_api"] == "openmp" for i in threadpool_info())
grid = {"max_iter": [5, 10]}
with parallel_config(backend="loky", inner_max_num_threads=2):  # 2 OpenMP threads per fit
    search = ParallelGridSearchCV(HistGradientBoostingClassifier(), grid, cv=2,
                                  n_jobs=2).fit(X, y)
from sklearn.model_selection import GridSearchCV
reference = GridSearchCV(HistGradientBoostingClassifier(), grid, cv=2).fit(X, y)
print("done", search.best_params_, reference.best_params_)
"""


def _best_params(stdout):
    """The two ``{...}`` printed after ``done``: parml's and scikit-learn's best_params_."""
    text = stdout.strip().split(" ", 1)[1]
    first = text[:text.index("}") + 1]
    return first, text[len(first):].strip()


def test_openmp_threads_running_in_the_parent_do_not_hang_the_workers():
    # a child forked from the thread that ran the OpenMP team hangs in its next
    # parallel region; the template is forked from a fresh thread
    result = _run(OPENMP_IN_PARENT, timeout=180)
    assert result.returncode == 0, result.stderr
    done, ours, theirs = result.stdout.strip().split(" ", 1)[0], *_best_params(result.stdout)
    assert done == "done" and ours == theirs  # scikit-learn's choice, whatever its version


def test_workers_get_the_thread_limits_of_joblibs_environment():
    if not _local_pool.warm_start_enabled():
        pytest.skip("warm workers disabled here")
    from threadpoolctl import threadpool_info

    executor = _local_pool.get_executor(2)
    infos = executor.submit(threadpool_info).result(timeout=60)
    expected = max(os.cpu_count() // 2, 1)
    assert {info["num_threads"] for info in infos} == {expected}
    value = executor.submit(os.getenv, "OMP_NUM_THREADS").result(timeout=60)
    assert value == str(expected)


def test_a_pipe_of_the_parent_is_not_held_open_by_the_workers():
    if not _local_pool.warm_start_enabled():
        pytest.skip("warm workers disabled here")
    _local_pool._WARM_POOL.shutdown()
    TEMPLATE.stop()  # the next template is forked while the pipe is open
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y)
        reader.stdin.close()
        assert reader.wait(timeout=30) == 0  # it saw end of file
    finally:
        reader.kill()


def test_an_idle_template_exits_and_the_next_request_forks_another():
    template = Template(idle_seconds=0.4)
    template.ensure_running()
    pid = template.pid
    deadline = time.time() + 20
    while time.time() < deadline and not template._exited():
        time.sleep(0.1)
    assert template._exited(), "an idle template exits by itself"
    template.ensure_running()
    assert template.pid != pid and template.n_started == 2
    template.stop()


def test_unknown_worker_start_names_the_variable(monkeypatch):
    monkeypatch.setenv("PARML_WORKER_START", "fork")
    with pytest.raises(ValueError, match="PARML_WORKER_START must be one of"):
        _local_pool.get_executor(2)


def test_loky_worker_start_uses_joblibs_shared_executor(monkeypatch):
    from joblib.executor import get_memmapping_executor

    monkeypatch.setenv("PARML_WORKER_START", "loky")
    executor = _local_pool.get_executor(2)
    assert executor is get_memmapping_executor(
        2, timeout=_local_pool.IDLE_SECONDS, env=_local_pool.worker_env(2))


CTRL_C = """
import sys
sys.path.insert(0, {tests!r})
from sklearn.datasets import make_classification
from _doubles import CountingClassifier
from parml import ParallelGridSearchCV
X, y = make_classification(n_samples=120, random_state=0)
print("ready", flush=True)
ParallelGridSearchCV(CountingClassifier(delay=0.5), {{"c": list(range(8))}}, cv=3,
                     n_jobs=2).fit(X, y)
print("finished")
"""


def test_ctrl_c_during_the_first_call_stops_workers_and_template():
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CTRL_C.format(tests=TESTS))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while time.time() < deadline and len(descendants(proc.pid)) < 3:
            time.sleep(0.05)  # the template and 2 workers (loky adds its trackers)
        time.sleep(0.5)
        spawned = descendants(proc.pid)
        assert len(spawned) >= 3, "the search runs in worker processes"
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    # promptness is test_resilience's (3 s on a quiet machine); here: nothing is left
    assert time.time() - sent < 15.0
    assert "finished" not in out and "KeyboardInterrupt: Interrupted after" in err
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(pid) for pid in spawned):
        time.sleep(0.1)
    assert not [pid for pid in spawned if alive(pid)], "processes left running"


DEATH_AND_TIMEOUT = """
import sys, warnings
sys.path.insert(0, {tests!r})
import numpy as np
from sklearn.datasets import make_classification
from _doubles import CountingClassifier
from parml import ParallelGridSearchCV
warnings.simplefilter("ignore")
X, y = make_classification(n_samples=120, random_state=0)
grid = {{"c": [0, 1, 2, 3]}}
{how}
print(np.isnan(search.cv_results_["mean_test_score"]).tolist())
print(search.cv_results_["params"][search.best_index_])
"""
DEATH = ("search = ParallelGridSearchCV(CountingClassifier(crash_on=2), grid, cv=3, n_jobs=2,"
         " max_retries=1).fit(X, y)")
TIMEOUT = ("search = ParallelGridSearchCV(CountingClassifier(sleep_on=2, delay_on=30.0), grid,"
           " cv=3, n_jobs=2, timeout=1.0).fit(X, y)")


@pytest.mark.parametrize("how", [DEATH, TIMEOUT], ids=["worker death", "timeout"])
def test_first_call_survives_a_dead_worker_and_a_timed_out_fit(how):
    start = time.time()
    result = _run(DEATH_AND_TIMEOUT.format(tests=TESTS, how=how), timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "[False, False, True, False]"
    assert lines[1] == "{'c': 3}"
    assert time.time() - start < 60


CAPTURED_STREAMS = """
import io, sys
class Captured(io.TextIOBase):  # as a Jupyter kernel's or sphinx-gallery's streams
    def __init__(self):
        self.text = []
    def write(self, text):
        self.text.append(text)
        return len(text)
    def fileno(self):
        raise io.UnsupportedOperation("fileno")
real = sys.stdout
sys.stdout = sys.stderr = Captured()
from sklearn.datasets import load_digits
from sklearn.svm import SVC
from parml import ParallelGridSearchCV
X, y = load_digits(return_X_y=True)
search = ParallelGridSearchCV(SVC(), {{"C": [1, 10], "gamma": [1e-3, 1e-2]}}, cv=3,
                              n_jobs=2).fit(X, y)
real.write(repr(search.best_params_) + "\\n")
"""


def test_workers_get_real_streams_when_the_parent_captures_its_own():
    result = _run(CAPTURED_STREAMS.format())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'C': 10, 'gamma': 0.001}"
