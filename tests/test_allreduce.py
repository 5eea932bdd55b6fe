"""AllReduce: tree arithmetic on hand-made inputs, and the traffic of each transport.

The transports run on worker groups of parml's scheduler: local processes and
threads (:mod:`parml.allreduce._spmd`), Dask workers (:mod:`._graph`),
ipyparallel engines and this process (:class:`._rounds.GatheredRounds`).
"""

import os
import signal
import time

import numpy as np
import pytest

from parml import allreduce
from parml.allreduce import average, children, combine, parent, spanning_tree, weighted
from parml.allreduce._graph import allreduce_futures
from parml.allreduce._rounds import open_rounds
from parml.allreduce._testing import ValueProgram
from parml.allreduce._tree import tree_allreduce
from parml.scheduler import Scheduler

SLIDES = [2.0, 0.5, 1.1, 3.2, 0.9, 1.0]


@pytest.mark.parametrize("fanout", [2, 3])
@pytest.mark.parametrize("n", range(1, 10))
def test_tree_shape(n, fanout):
    tree = spanning_tree(n, fanout)
    assert tree[0][0] is None
    seen = {0}
    for rank, (up, kids) in enumerate(tree):
        assert len(kids) <= fanout
        for kid in kids:
            assert tree[kid][0] == rank and kid > rank
            seen.add(kid)
        if rank:
            assert up == parent(rank, fanout) and rank in tree[up][1]
    assert seen == set(range(n))  # every node reached from the root, once
    depth = max(_depth(r, fanout) for r in range(n))
    assert fanout ** depth <= max(1, (n - 1) * (fanout - 1) + 1) * fanout


def _depth(rank, fanout):
    d = 0
    while rank:
        rank, d = parent(rank, fanout), d + 1
    return d


def test_hand_made_binary_tree():
    # 6 nodes, binary: 0 -> (1, 2); 1 -> (3, 4); 2 -> (5)
    assert spanning_tree(6) == [(None, [1, 2]), (0, [3, 4]), (0, [5]),
                                (1, []), (1, []), (2, [])]
    assert spanning_tree(6, 3) == [(None, [1, 2, 3]), (0, [4, 5]), (0, []),
                                   (0, []), (1, []), (1, [])]
    # the slides' subtree of node 1: its own 0.5 and children 3.2 and 0.9
    pair = combine(weighted(0.5, 1), weighted(3.2, 1), weighted(0.9, 1))
    assert pair[1] == 3 and pair[0] == pytest.approx(4.6)
    assert float(allreduce(SLIDES)) == pytest.approx(sum(SLIDES) / 6)


def test_weighted_mean_with_counts():
    # three shards of 10, 30 and 60 rows: (1*10 + 2*30 + 4*60) / 100
    result = allreduce([1.0, 2.0, 4.0], weights=[10, 30, 60])
    assert float(result) == pytest.approx(3.1)
    total, weight = combine(weighted(np.array([1.0, 1.0]), 10), weighted(np.array([2.0, 0.0]), 30))
    np.testing.assert_allclose(total, [70.0, 10.0])
    assert weight == 40
    np.testing.assert_allclose(average((total, weight)), [1.75, 0.25])
    with pytest.raises(ValueError, match="positive"):
        average((np.zeros(2), 0.0))


@pytest.mark.parametrize("fanout", [2, 3])
@pytest.mark.parametrize("n", range(1, 10))
def test_tree_equals_weighted_mean_on_structures(n, fanout):
    rng = np.random.default_rng(n * 10 + fanout)
    values = [{"coef": rng.normal(size=(2, 3)), "intercept": (rng.normal(size=2), float(i))}
              for i in range(n)]
    weights = rng.integers(1, 100, size=n)
    result, received = tree_allreduce(values, weights, fanout=fanout)
    expected_coef = np.average([v["coef"] for v in values], axis=0, weights=weights)
    np.testing.assert_allclose(result["coef"], expected_coef, rtol=1e-12)
    np.testing.assert_allclose(result["intercept"][0],
                               np.average([v["intercept"][0] for v in values], axis=0,
                                          weights=weights), rtol=1e-12)
    assert result["intercept"][1] == pytest.approx(np.average(range(n), weights=weights))
    size = 8 * (6 + 2 + 1)
    for rank, r in enumerate(received):
        assert r["up"] == len(children(rank, n, fanout)) * (size + 8)
        assert r["up"] <= fanout * (size + 8) and r["down"] == (size if rank else 0)


def _check_rounds(rounds, program, n, epochs=2, first=0):
    for epoch in range(first, first + epochs):
        extras = rounds.epoch(epoch)
        expected = average(combine(*(weighted(program.value(r, epoch), program.weights[r])
                                     for r in range(n))))
        assert extras["n"] == sum(program.weights)
        assert extras["seen"] == (0 if epoch == 0 else n)
        got = rounds.result()
        np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-12)
        np.testing.assert_allclose(got["b"], expected["b"], rtol=1e-12)
    return got


def _empty_shards(n):
    return [(np.zeros((1, 1)), np.zeros(1))] * n


def _reference(program, n, fanout, epochs=2):
    with Scheduler(backend="sequential") as scheduler:
        with scheduler.worker_group(n) as group:
            assert group.kind == "inline"
            shards = group.place(_empty_shards(n))
            with open_rounds(group, shards, program, fanout) as rounds:
                return _check_rounds(rounds, program, n, epochs)


@pytest.mark.parametrize("backend", ["loky", "threading"])
@pytest.mark.parametrize("n, fanout", [(2, 2), (5, 2), (7, 3)])
def test_local_group_traffic_is_fanout_times_parameters(backend, n, fanout):
    size = 50_000  # 400 kB of parameters: message overhead is negligible
    program = ValueProgram(weights=range(1, n + 1), size=size)
    with Scheduler(backend=backend, n_jobs=n) as scheduler:
        with scheduler.worker_group(n) as group:
            assert group.kind == ("processes" if backend == "loky" else "threads")
            with open_rounds(group, group.place(_empty_shards(n)), program, fanout) as rounds:
                got = _check_rounds(rounds, program, n)
                traffic = rounds.traffic()
                client = list(rounds.client_bytes)
    np.testing.assert_array_equal(_reference(program, n, fanout)["w"], got["w"])
    param_bytes = 8 * (size + 1)
    overhead = 1_000
    for rank in range(n):
        rounds = traffic[rank]
        assert len(rounds) == 2
        kids = len(children(rank, n, fanout))
        for r in rounds:
            assert kids * param_bytes <= r["up"] <= kids * param_bytes + overhead
            assert r["down"] <= (param_bytes + overhead if rank else 0)
    # the root got at most fanout pairs, the parent process one average, per round
    assert all(r["up"] <= fanout * param_bytes + overhead for r in traffic[0])
    assert all(c <= param_bytes + overhead for c in client)


def test_one_node_runs_in_this_process():
    program = ValueProgram(weights=[3], size=10)
    with Scheduler(backend="loky", n_jobs=2) as scheduler:
        with scheduler.worker_group(1) as group:
            assert group.kind == "inline"
            with open_rounds(group, group.place(_empty_shards(1)), program) as rounds:
                _check_rounds(rounds, program, 1)


class Failing(ValueProgram):
    def step(self, state, params, epoch):
        if state["rank"] == 2:
            raise ArithmeticError("node 2 failed")
        return super().step(state, params, epoch)


@pytest.mark.parametrize("backend", ["sequential", "threading", "loky"])
def test_a_node_error_is_raised_with_its_type(backend):
    with Scheduler(backend=backend, n_jobs=3) as scheduler:
        with scheduler.worker_group(3) as group:
            with pytest.raises(ArithmeticError, match="node 2 failed"):
                with open_rounds(group, group.place(_empty_shards(3)),
                                 Failing([1, 1, 1], 3)) as rounds:
                    rounds.epoch(0)
            # the members are still there: the next run of the group works
            program = ValueProgram(weights=[1, 2, 3], size=4)
            with open_rounds(group, group.place(_empty_shards(3)), program) as rounds:
                _check_rounds(rounds, program, 3)


@pytest.fixture(scope="module")
def quiet_dask_client():
    """A 3-worker LocalCluster without the active memory manager (it could drop
    the copy a test looks for)."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.active-memory-manager.start": False}):
        cluster = distributed.LocalCluster(n_workers=3, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("fanout", [2, 3])
def test_dask_allreduce_moves_values_worker_to_worker(quiet_dask_client, fanout):
    client = quiet_dask_client
    workers = sorted(client.nthreads())
    n, size = 7, 20_000
    values = [np.full(size, float(i)) for i in range(n)]
    futures = [client.scatter(v, workers=[workers[i % len(workers)]], hash=False)
               for i, v in enumerate(values)]
    expected = np.average(values, axis=0, weights=range(1, n + 1))
    with Scheduler(backend=client) as scheduler:
        with scheduler.worker_group(n) as group:
            down, received = allreduce_futures(group, group.adopt(futures),
                                               weights=range(1, n + 1), fanout=fanout)
            results = client.gather(down)
            sizes = client.gather(received)
            who = client.who_has(down)
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-12)
    # each node's average lives on that node's worker
    for i, f in enumerate(down):
        assert workers[i % len(workers)] in who[f.key]
    for rank, got in enumerate(sizes):
        kids = len(children(rank, n, fanout))
        assert 8 * size * kids <= got <= kids * (8 * size + 1_000)
    public = allreduce(futures, weights=range(1, n + 1), fanout=fanout, client=client)
    np.testing.assert_allclose(public[3].result(), expected, rtol=1e-12)
    assert client.who_has([public[3]])[public[3].key] == (workers[3 % len(workers)],)


def test_dask_rounds_and_client_traffic(quiet_dask_client):
    n, size = 6, 50_000
    program = ValueProgram(weights=range(1, n + 1), size=size)
    rows = [np.array([i]) for i in range(n)]
    X, y = np.zeros((n, 1)), np.zeros(n)
    with Scheduler(backend=quiet_dask_client) as scheduler:
        with scheduler.worker_group(n) as group:
            assert group.kind == "dask" and group.moves_values
            with open_rounds(group, group.place_rows((X, y), rows), program) as rounds:
                rounds.epoch(0)  # the client gets the extras only...
                got = _check_rounds(rounds, program, n, first=1)  # ...and the average
                traffic = rounds.traffic()
                client_bytes = list(rounds.client_bytes)
    np.testing.assert_array_equal(got["w"], _reference(program, n, 2, epochs=3)["w"])
    param_bytes = 8 * (size + 1)
    for rank in range(n):
        kids = len(children(rank, n, 2))
        assert len(traffic[rank]) == 3
        for r in traffic[rank]:
            assert kids * param_bytes <= r["up"] <= kids * param_bytes + 1_000
    # the client got a few numbers per round, and one average when asked
    assert client_bytes[0] < 1_000
    assert all(c <= param_bytes + 2_000 for c in client_bytes)


def test_ipyparallel_rounds_add_the_pairs_in_the_client(ipyparallel_client):
    n = 5
    program = ValueProgram(weights=range(1, n + 1), size=1_000)
    with Scheduler(backend=ipyparallel_client) as scheduler:
        with scheduler.worker_group(n) as group:
            assert group.kind == "ipyparallel" and not group.moves_values
            shards = group.place(_empty_shards(n))
            with open_rounds(group, shards, program) as rounds:
                got = _check_rounds(rounds, program, n, epochs=3)
    np.testing.assert_array_equal(got["w"], _reference(program, n, 2, epochs=3)["w"])


@pytest.mark.timeout(120)
def test_a_member_process_killed_mid_run_is_a_clear_error_within_seconds():
    class Slow(ValueProgram):
        def step(self, state, params, epoch):
            if epoch == 1:
                time.sleep(60)  # the kill comes during this epoch
            return super().step(state, params, epoch)

    program = Slow(weights=[1, 1, 1], size=10)
    with Scheduler(backend="loky", n_jobs=3) as scheduler:
        group = scheduler.worker_group(3)
        with group:
            with pytest.raises(RuntimeError, match=r"Member 2 of the worker group \(process "
                               r"\d+\) is gone"):
                with open_rounds(group, group.place(_empty_shards(3)), program) as rounds:
                    rounds.epoch(0)
                    victim = group.pids[2]
                    os.kill(victim, signal.SIGKILL)
                    started = time.monotonic()
                    try:
                        rounds.epoch(1)
                    finally:
                        waited = time.monotonic() - started
        assert waited < 10, f"the death was seen after {waited:.1f} s"
    # the members that lived ended with the group: none is left running a task
    deadline = time.monotonic() + 30
    while not all(member.done() for member in group._members):
        assert time.monotonic() < deadline, "members still running 30 s after the close"
        time.sleep(0.05)
    # the next fit gets a working pool
    with Scheduler(backend="loky", n_jobs=3) as scheduler:
        with scheduler.worker_group(3) as group:
            program = ValueProgram(weights=[1, 1, 1], size=10)
            with open_rounds(group, group.place(_empty_shards(3)), program) as rounds:
                _check_rounds(rounds, program, 3)
