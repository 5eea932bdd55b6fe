"""AllReduce: tree arithmetic on hand-made inputs, and the traffic of each transport."""

import numpy as np
import pytest

from parml import allreduce
from parml.allreduce import average, children, combine, parent, spanning_tree, weighted
from parml.allreduce._local import InProcessTransport, LocalTransport
from parml.allreduce._testing import ValueProgram
from parml.allreduce._tree import tree_allreduce

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


def _check_rounds(transport, program, n, epochs=2, first=0):
    for epoch in range(first, first + epochs):
        extras = transport.epoch(epoch)
        expected = average(combine(*(weighted(program.value(r, epoch), program.weights[r])
                                     for r in range(n))))
        assert extras["n"] == sum(program.weights)
        assert extras["seen"] == (0 if epoch == 0 else n)
        got = transport.result()
        np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-12)
        np.testing.assert_allclose(got["b"], expected["b"], rtol=1e-12)
    return got


@pytest.mark.parametrize("n, fanout", [(1, 2), (5, 2), (7, 3)])
def test_local_transport_traffic_is_fanout_times_parameters(n, fanout):
    size = 50_000  # 400 kB of parameters: message overhead is negligible
    program = ValueProgram(weights=range(1, n + 1), size=size)
    shards = [(np.zeros((1, 1)), np.zeros(1))] * n
    with LocalTransport(shards, program, fanout=fanout) as transport:
        got = _check_rounds(transport, program, n)
        traffic = transport.traffic()
        client = list(transport.client_bytes)
    with InProcessTransport(shards, program, fanout=fanout) as reference:
        np.testing.assert_array_equal(_check_rounds(reference, program, n)["w"], got["w"])
    param_bytes = 8 * (size + 1)
    overhead = 1_000
    for rank in range(n):
        rounds = traffic[rank]
        assert len(rounds) == 2
        kids = len(children(rank, n, fanout))
        for r in rounds:
            assert r["up"] <= kids * param_bytes + overhead
            assert r["up"] >= kids * param_bytes
            assert r["down"] <= (param_bytes + overhead if rank else 0)
    # the root got at most fanout pairs, the parent process one average, per round
    assert all(r["up"] <= fanout * param_bytes + overhead for r in traffic[0])
    assert all(c <= param_bytes + overhead for c in client)


def test_local_transport_reports_worker_errors():
    class Failing(ValueProgram):
        def step(self, state, params, epoch):
            if state["rank"] == 2:
                raise ArithmeticError("node 2 failed")
            return super().step(state, params, epoch)

    shards = [(np.zeros((1, 1)), np.zeros(1))] * 3
    with pytest.raises(ArithmeticError, match="node 2 failed"):
        with InProcessTransport(shards, Failing([1, 1, 1], 3)) as transport:
            transport.epoch(0)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    import dask

    # no active memory manager: it could drop the copy a test looks for
    with dask.config.set({"distributed.scheduler.active-memory-manager.start": False}):
        cluster = distributed.LocalCluster(n_workers=3, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("fanout", [2, 3])
def test_dask_allreduce_moves_values_worker_to_worker(cluster_client, fanout):
    client = cluster_client
    workers = sorted(client.scheduler_info()["workers"])
    n, size = 7, 20_000
    values = [np.full(size, float(i)) for i in range(n)]
    futures = [client.scatter(v, workers=[workers[i % len(workers)]], hash=False)
               for i, v in enumerate(values)]
    from parml.allreduce._dask import allreduce_futures

    down, received = allreduce_futures(client, futures, weights=range(1, n + 1),
                                       fanout=fanout)
    expected = np.average(values, axis=0, weights=range(1, n + 1))
    results = client.gather(down)
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-12)
    # each node's average lives on that node's worker
    who = client.who_has(down)
    for i, f in enumerate(down):
        assert workers[i % len(workers)] in who[f.key]
    sizes = client.gather(received)
    for rank, got in enumerate(sizes):
        kids = len(children(rank, n, fanout))
        assert 8 * size * kids <= got <= kids * (8 * size + 1_000)
    public = allreduce(futures, weights=range(1, n + 1), fanout=fanout, client=client)
    np.testing.assert_allclose(public[3].result(), expected, rtol=1e-12)


def test_dask_transport_rounds_and_client_traffic(cluster_client):
    from parml.allreduce._dask import DaskTransport

    client = cluster_client
    n, size = 6, 50_000
    program = ValueProgram(weights=range(1, n + 1), size=size)
    rows = [np.array([i]) for i in range(n)]
    X, y = np.zeros((n, 1)), np.zeros(n)
    transport = DaskTransport.scatter_rows(client, X, y, rows, program, fanout=2)
    try:
        transport.epoch(0)  # the client gets the extras only...
        _check_rounds(transport, program, n, first=1)  # ...and the average when it asks
        traffic = transport.traffic()
        client_bytes = list(transport.client_bytes)
    finally:
        transport.close()
    param_bytes = 8 * (size + 1)
    for rank in range(n):
        kids = len(children(rank, n, 2))
        assert len(traffic[rank]) == 3
        for r in traffic[rank]:
            assert kids * param_bytes <= r["up"] <= kids * param_bytes + 1_000
    # the client got a few numbers per round, and one average when asked
    assert client_bytes[0] < 1_000
    assert all(c <= param_bytes + 2_000 for c in client_bytes)


def test_local_transport_dead_worker_is_a_clear_error():
    import os
    import signal

    program = ValueProgram(weights=[1, 1, 1], size=10)
    shards = [(np.zeros((1, 1)), np.zeros(1))] * 3
    with LocalTransport(shards, program) as transport:
        transport.epoch(0)
        procs = list(transport._procs)
        victim = procs[2]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)
        with pytest.raises(RuntimeError, match="parml-allreduce-2 died"):
            transport.epoch(1)
    assert not any(p.is_alive() for p in procs)  # no orphans left behind
