"""Estimators given a live Dask or ipyparallel client still pickle, copy, clone and refit.

Real clusters on loopback, started here: a Dask LocalCluster (2 worker
processes) and an ipyparallel controller with 2 engines.
"""

import copy
import io
import os
import pickle
import shutil
import warnings

import joblib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
ipyparallel = pytest.importorskip("ipyparallel")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_validate  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from parml import (  # noqa: E402
    AveragedSGD, BaggedForest, ParallelGridSearchCV, ParallelRandomizedSearchCV,
)
from parml.scheduler._portable import is_live_client, portable_backend  # noqa: E402

pytestmark = pytest.mark.timeout(180)

X, y = load_digits(return_X_y=True)
X, y = X[:240] / 16.0, y[:240]
X_test = load_digits().data[240:300] / 16.0
GRID = {"C": [1, 10], "gamma": [0.01, 0.1]}


def make(name, backend):
    if name == "grid":
        return ParallelGridSearchCV(SVC(), GRID, cv=2, backend=backend)
    if name == "random":
        return ParallelRandomizedSearchCV(SVC(), GRID, n_iter=2, cv=2, random_state=0,
                                          backend=backend)
    if name == "forest":
        return BaggedForest(n_estimators=4, random_state=0, backend=backend)
    return AveragedSGD(n_jobs=2, max_iter=3, tol=None, random_state=0, backend=backend)


NAMES = ["grid", "random", "forest", "sgd"]
ENGINES = ["dask", "ipyparallel"]


@pytest.fixture(scope="module")
def dask_cluster():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster, timeout=60)
    try:
        client.wait_for_workers(2, timeout=60)
        yield cluster, client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


@pytest.fixture(scope="module")
def ipp_cluster():
    cluster = ipyparallel.Cluster(n=2, log_level=40, controller_ip="127.0.0.1")
    cluster.start_cluster_sync()
    try:
        client = cluster.connect_client_sync()  # waits at most 10 s for the connection file
        client.wait_for_engines(2, timeout=60, interactive=False)
        yield cluster, client
        client.close()
    finally:
        cluster.stop_cluster_sync()


@pytest.fixture(params=ENGINES)
def live(request):
    """``(client, the string its estimators are saved with)`` for each engine.

    Each test gets its own Dask client (to the shared cluster), so that what
    one test leaves in a client does not reach the next.
    """
    if request.param == "dask":
        cluster, _ = request.getfixturevalue("dask_cluster")
        client = distributed.Client(cluster.scheduler_address, timeout=60)
        try:
            yield client, cluster.scheduler_address
        finally:
            client.close(timeout=30)
        return
    cluster, client = request.getfixturevalue("ipp_cluster")
    path = os.path.join(cluster.profile_dir, "security",
                        f"ipcontroller-{cluster.cluster_id}-client.json")
    yield client, f"ipyparallel:{path}"


def via_pickle(est):
    return pickle.loads(pickle.dumps(est))


def via_joblib(est, tmp_path):
    joblib.dump(est, tmp_path / "est.joblib")
    return joblib.load(tmp_path / "est.joblib")


def round_trips(est, tmp_path):
    return {"pickle": via_pickle(est), "joblib": via_joblib(est, tmp_path),
            "deepcopy": copy.deepcopy(est)}


def same_params(a, b):
    """The constructor parameters of ``a`` and ``b``, but ``backend``, are equal."""
    pa, pb = a.get_params(deep=False), b.get_params(deep=False)
    assert pa.keys() == pb.keys()
    for key in pa:
        if key == "backend":
            continue
        if hasattr(pa[key], "get_params"):
            assert type(pa[key]) is type(pb[key]) and pa[key].get_params() == pb[key].get_params()
        else:
            assert pa[key] == pb[key] or (pa[key] != pa[key] and pb[key] != pb[key]), key


def engine_objects(est):
    """Types of clients, engines or their parts held by ``est`` outside ``backend``."""
    found = []

    class Spy(pickle.Pickler):
        def reducer_override(self, obj):
            module = (type(obj).__module__ or "").split(".")[0]
            if module in ("distributed", "ipyparallel", "zmq", "asyncio", "tornado") \
                    or type(obj).__name__.endswith(("Engine", "Transport", "Scheduler")):
                found.append(type(obj))
                return str, ("",)
            return NotImplemented

    Spy(io.BytesIO()).dump({k: v for k, v in vars(est).items() if k != "backend"})
    return found


def cluster_pids(client):
    """Process ids of the cluster's workers (Dask) or engines (ipyparallel)."""
    if isinstance(client, distributed.Client):
        return set(client.run(os.getpid).values())
    return set(client[:].apply_sync(os.getpid))


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_estimator_pickles_copies_and_clones(name, live, tmp_path):
    client, saved = live
    est = make(name, client)
    for how, loaded in round_trips(est, tmp_path).items():
        assert loaded.backend == saved, how
        same_params(loaded, est)
    assert est.backend is client, "saving does not change the estimator"
    twin = clone(est)
    assert type(twin) is type(est) and twin.backend is client
    same_params(twin, est)
    assert copy.copy(est).backend is client
    again = type(est)(**est.get_params(deep=False))
    assert again.backend is client
    assert clone(again).set_params(**est.get_params()).backend is client
    assert via_pickle(clone(est)).backend == saved


@pytest.mark.parametrize("name", NAMES)
def test_fitted_estimator_saves_loads_and_refits_on_the_same_cluster(name, live, tmp_path):
    client, saved = live
    est = make(name, client).fit(X, y)
    assert est.backend is client
    assert engine_objects(est) == [], "no client or engine in the fitted state"
    expected = est.predict(X_test)
    loaded = round_trips(est, tmp_path)
    for how, other in loaded.items():
        assert other.backend == saved, how
        np.testing.assert_array_equal(other.predict(X_test), expected, err_msg=how)
    assert est.backend is client
    np.testing.assert_array_equal(est.predict(X_test), expected)
    twin = clone(est)
    assert twin.backend is client and not hasattr(twin, "n_features_in_")
    refitted = loaded["joblib"].fit(X, y)  # connects to the cluster from the string
    assert refitted.backend == saved
    np.testing.assert_array_equal(refitted.predict(X_test), expected)
    if name != "sgd":
        ran = {e["pid"] for e in refitted.trace_}
        assert ran <= cluster_pids(client), "the refit ran on the same cluster"


def test_a_search_with_a_live_client_nested_in_cross_validate_on_loky(dask_cluster):
    cluster, client = dask_cluster
    search = ParallelGridSearchCV(SVC(), GRID, cv=2, backend=client)
    # loky pickles the (cloned) search to its workers, which connect by address
    ours = cross_validate(search, X, y, cv=2, n_jobs=2, return_estimator=True)
    theirs = cross_validate(GridSearchCV(SVC(), GRID, cv=2), X, y, cv=2)
    np.testing.assert_array_equal(ours["test_score"], theirs["test_score"])
    for fitted in ours["estimator"]:
        assert fitted.backend == cluster.scheduler_address
        assert {e["pid"] for e in fitted.trace_} <= cluster_pids(client), "ran on the cluster"
    assert search.backend is client


def test_other_backends_are_kept_as_they_are():
    for backend in (None, "loky", "threading", "dask", "tcp://127.0.0.1:8786",
                    "ipyparallel", "ipyparallel:default:123"):
        assert not is_live_client(backend)
        assert portable_backend(backend) is backend
        assert via_pickle(make("grid", backend)).backend == backend


def test_an_ipyparallel_client_is_found_by_its_connection_file_alone(ipp_cluster):
    cluster, _ = ipp_cluster
    client = ipyparallel.Client(profile_dir=cluster.profile_dir, cluster_id=cluster.cluster_id)
    try:
        assert client.cluster is None
        path = os.path.join(cluster.profile_dir, "security",
                            f"ipcontroller-{cluster.cluster_id}-client.json")
        assert portable_backend(client) == f"ipyparallel:{path}"
    finally:
        client.close()


def test_an_ipyparallel_client_without_a_known_file_is_saved_as_none(ipp_cluster, tmp_path):
    cluster, _ = ipp_cluster
    path = os.path.join(cluster.profile_dir, "security",
                        f"ipcontroller-{cluster.cluster_id}-client.json")
    moved = shutil.copy(path, tmp_path / "connection.json")
    client = ipyparallel.Client(str(moved), profile_dir=str(tmp_path))
    try:
        search = make("grid", client)
        with pytest.warns(UserWarning, match="could not be saved.*ipyparallel:<path"):
            loaded = via_pickle(search)
        assert loaded.backend is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            twin = clone(search)  # clone shares the client: nothing to save, no warning
        assert twin.backend is client
        loaded.set_params(n_jobs=1).fit(X, y)  # refits locally
        np.testing.assert_array_equal(loaded.predict(X_test),
                                      make("grid", None).fit(X, y).predict(X_test))
    finally:
        client.close()
