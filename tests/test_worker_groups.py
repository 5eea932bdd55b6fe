"""Worker groups of the scheduler's engines, and AveragedSGD on them.

One runtime: AveragedSGD and parml.allreduce run on members the scheduler's
engine provides (the local pool's processes, threads, Dask workers,
ipyparallel engines); the same model on every engine; one pool of workers
serving consecutive fits; a member that dies is a clear error, in seconds;
nothing left in the temporary folder.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import make_classification

from parml import AveragedSGD, ParallelGridSearchCV
from parml.scheduler import Scheduler
from parml.scheduler import _groups

#: A hang fails in minutes, well before the suite's own limit.
pytestmark = pytest.mark.timeout(240)

X, y = make_classification(8_000, 20, n_informative=10, random_state=0)
KW = dict(max_iter=4, tol=None, random_state=0)


def whoami(comm):
    """A member's function: its rank and process id."""
    return comm.rank, os.getpid()


@pytest.fixture
def opened(monkeypatch):
    """The worker groups opened while the test runs, in order."""
    groups = []
    original = _groups.open_group

    def spy(*args, **kwargs):
        groups.append(original(*args, **kwargs))
        return groups[-1]

    monkeypatch.setattr(_groups, "open_group", spy)
    return groups


# ----------------------------------------------------------- the same model everywhere


def test_same_model_on_threads_processes_sequential_dask_and_ipyparallel(
        dask_client, ipyparallel_client, opened):
    backends = {"sequential": "sequential", "threads": "threading", "processes": "loky",
                "default": None, "dask": dask_client, "ipyparallel": ipyparallel_client}
    models = {name: AveragedSGD(n_jobs=2, backend=backend, **KW).fit(X, y)
              for name, backend in backends.items()}
    kinds = [group.kind for group in opened]
    assert kinds == ["inline", "threads", "processes", "threads", "dask", "ipyparallel"]
    reference = models["sequential"]
    for name, model in models.items():
        assert model.n_workers_ == 2, name
        np.testing.assert_array_equal(model.coef_, reference.coef_, err_msg=name)
        np.testing.assert_array_equal(model.intercept_, reference.intercept_, err_msg=name)
    assert reference.score(X, y) > 0.7
    # with a tolerance too (the loss is summed over the nodes on every engine)
    stopped = {name: AveragedSGD(n_jobs=2, backend=backends[name], random_state=0).fit(X, y)
               for name in ("sequential", "processes", "dask", "ipyparallel")}
    curves = {name: model.loss_curve_ for name, model in stopped.items()}
    assert all(curve == curves["sequential"] for curve in curves.values()), curves


def test_dask_group_runs_on_the_engines_workers_and_leaves_no_key(dask_client, opened):
    client = dask_client
    pids = client.run(os.getpid)
    before = set(client.who_has())
    for _ in range(3):
        AveragedSGD(n_jobs=2, backend=client, **KW).fit(X, y)
    assert [group.kind for group in opened] == ["dask"] * 3
    assert all(set(group.where) == set(pids) for group in opened), "ranks on the workers"
    assert client.run(os.getpid) == pids, "the same worker processes served every fit"

    def left():  # keys of the groups' shards, states and calls still on the cluster
        return {key for key in set(client.who_has()) - before
                if str(key).startswith(("ndarray-", "_limited-"))}

    deadline = time.monotonic() + 30
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)  # released keys leave the workers asynchronously
    assert left() == set(), "shards and states released"


def test_ipyparallel_group_keeps_data_in_the_engines_and_cleans_up(ipyparallel_client,
                                                                   opened):
    client = ipyparallel_client
    pids = client[:].apply_sync(os.getpid)
    for _ in range(2):
        AveragedSGD(n_jobs=3, backend=client, **KW).fit(X, y)
    assert [group.where for group in opened] == [[0, 1, 0]] * 2  # engines in turn
    assert client[:].apply_sync(os.getpid) == pids
    left = client[:].apply_sync(_parml_names)
    assert left == [[], []], "the group's names are deleted from the engines"


def _parml_names():
    from IPython import get_ipython

    return sorted(name for name in get_ipython().user_global_ns
                  if name.startswith("_parml_group"))


# ----------------------------------------------------- one pool, consecutive fits


def test_one_worker_group_serves_several_runs_on_the_same_processes():
    with Scheduler(backend="loky", n_jobs=2) as scheduler:
        with scheduler.worker_group(2) as group:
            assert group.kind == "processes"
            runs = [group.start(whoami, [(), ()]).join() for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert [rank for rank, _ in runs[0]] == [0, 1]
    assert len({pid for _, pid in runs[0]}) == 2 and os.getpid() not in dict(runs[0]).values()


def test_consecutive_fits_and_a_grid_search_reuse_the_pools_processes(opened):
    kw = dict(n_jobs=2, backend="loky", **KW)
    AveragedSGD(**kw).fit(X, y)
    first = set(opened[-1].pids)
    AveragedSGD(**kw).fit(X[:4_000], y[:4_000])  # other data, same workers
    search = ParallelGridSearchCV(AveragedSGD(**kw), {"estimator__alpha": [1e-5, 1e-4, 1e-3]},
                                  cv=2, n_jobs=1).fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    assert len(opened) == 2 + 3 * 2 + 1  # two fits, 3 candidates x 2 splits, the refit
    assert all(group.kind == "processes" for group in opened)
    assert all(set(group.pids) == first for group in opened), \
        "no worker was started again: every fit ran on the same two processes"


def test_a_fit_inside_a_worker_runs_in_that_worker(opened):
    search = ParallelGridSearchCV(AveragedSGD(n_jobs=2, backend="loky", **KW),
                                  {"estimator__alpha": [1e-4, 1e-3]}, cv=2, n_jobs=2)
    search.fit(X, y)  # the 4 fits run in the pool's processes: inline there
    assert [group.kind for group in opened] == ["processes"]  # the refit, here
    reference = ParallelGridSearchCV(AveragedSGD(n_jobs=2, backend="sequential", **KW),
                                     {"estimator__alpha": [1e-4, 1e-3]}, cv=2).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  reference.cv_results_["mean_test_score"])


# ------------------------------------------------------------ deaths and leftovers


class _Killer:
    """Kill member ``rank`` of the next group once its epoch ``epoch`` runs."""

    def __init__(self, opened, rank, kill):
        self.opened, self.rank, self.kill = opened, rank, kill
        self.killed_at = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            group = self.opened[-1] if self.opened else None
            if group is not None and self.kill(group):
                self.killed_at = time.monotonic()
                return
            time.sleep(0.05)


def _kill_member(rank):
    def kill(group):
        if getattr(group, "pids", [None])[rank] is None:
            return False
        time.sleep(0.5)  # well into the epochs
        os.kill(group.pids[rank], signal.SIGKILL)
        return True
    return kill


def test_a_member_process_killed_mid_fit_is_a_clear_error_within_seconds(opened):
    X_big, y_big = make_classification(40_000, 50, random_state=0)
    killer = _Killer(opened, 1, _kill_member(1))
    with pytest.raises(RuntimeError, match=r"Member 1 of the worker group \(process \d+\) "
                                           r"is gone"):
        AveragedSGD(n_jobs=2, backend="loky", max_iter=100_000, tol=None,
                    random_state=0).fit(X_big, y_big)
    assert killer.killed_at is not None
    assert time.monotonic() - killer.killed_at < 15
    # the next fit gets a working pool
    AveragedSGD(n_jobs=2, backend="loky", **KW).fit(X, y)
    assert opened[-1].kind == "processes"


def test_a_dask_worker_killed_mid_fit_is_a_clear_error_within_seconds(opened):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            pids = client.run(os.getpid)

            def kill(group):
                if group.kind != "dask":
                    return False
                time.sleep(1.0)
                os.kill(pids[group.where[1]], signal.SIGKILL)
                return True

            killer = _Killer(opened, 1, kill)
            with pytest.raises(RuntimeError, match="Dask worker .* of rank 1 left the cluster"):
                AveragedSGD(n_jobs=2, backend=client, max_iter=100_000, tol=None,
                            random_state=0).fit(X, y)
            assert killer.killed_at is not None
            assert time.monotonic() - killer.killed_at < 30


def test_no_temporary_file_is_left_and_shards_are_written_once(tmp_path, monkeypatch, opened):
    from parml.scheduler import _group_local

    monkeypatch.setenv("PARML_TEMP_FOLDER", str(tmp_path))
    written = []
    original = _group_local.LocalGroup._write

    def counting(self, array, rows=None):
        ref = original(self, array, rows)
        if ref.kind == "npy":
            written.append(os.path.relpath(ref.spec[0], tmp_path))
        return ref

    monkeypatch.setattr(_group_local.LocalGroup, "_write", counting)
    AveragedSGD(n_jobs=2, backend="loky", **KW).fit(X, y)
    assert len(written) == 4, written  # X and y of each of the 2 shards, once
    assert all(path.startswith("parml-data-") for path in written), written
    assert os.listdir(tmp_path) == [], "the shards are removed when the fit ends"
    # a shard given as a file-backed memory map is read in place: nothing written
    np.save(tmp_path / "x.npy", X[:4_000])
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    written.clear()
    AveragedSGD(backend="loky", **KW).fit([mapped, X[4_000:]], [y[:4_000], y[4_000:]])
    assert len(written) == 3, written  # y of both shards and the second X
    assert os.listdir(tmp_path) == ["x.npy"]
    # threads read the data in memory: no file at all
    written.clear()
    AveragedSGD(n_jobs=2, backend="threading", **KW).fit(X, y)
    assert written == [] and os.listdir(tmp_path) == ["x.npy"]


def test_a_group_needs_members():
    with Scheduler(backend="loky", n_jobs=2) as scheduler:
        with pytest.raises(ValueError, match="n_workers >= 1; got 0"):
            scheduler.worker_group(0)


CTRL_C = """
import sys
from sklearn.datasets import make_classification
from parml import AveragedSGD
X, y = make_classification(40_000, 50, random_state=0)
model = AveragedSGD(n_jobs=2, backend=sys.argv[1], max_iter=100_000, tol=None, verbose=1)
try:
    model.fit(X, y)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_ctrl_c_stops_a_fit_promptly(backend):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C, backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # the epochs have started once one is printed
            if line.startswith("-- Epoch 2"):
                break
            assert time.monotonic() < deadline, "no epoch within 120 s"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 3, proc.stderr.read()[-3000:]
    assert waited < 5, f"the fit stopped {waited:.1f} s after Ctrl-C"
