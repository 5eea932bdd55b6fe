"""Fixtures shared by the test files."""

import os
import sys
import types

import pytest


@pytest.fixture
def jupyter_without_ipywidgets(monkeypatch):
    """This process looks like a Jupyter kernel to tqdm.autonotebook; ipywidgets is missing."""
    pytest.importorskip("tqdm")
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = type("ZMQInteractiveShell", (), {})
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets fails
    for name in [n for n in os.environ if n == "QT_API" or n.startswith("SPYDER")]:
        monkeypatch.delenv(name)
    chosen = ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook")
    saved = {name: sys.modules.pop(name) for name in chosen if name in sys.modules}
    yield chosen
    for name in chosen:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


#: This folder, put on the path of remote engines so that they import the test doubles.
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def dask_client():
    """A client of a real Dask LocalCluster on loopback: 2 worker processes, 1 thread each."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def ipyparallel_client():
    """A client of a real ipyparallel cluster on loopback: a controller and 2 engines."""
    ipyparallel = pytest.importorskip("ipyparallel")
    cluster = ipyparallel.Cluster(n=2, log_level=40, controller_ip="127.0.0.1")
    client = cluster.start_and_connect_sync()
    client[:].execute(f"import sys; sys.path.insert(0, {TESTS!r})", block=True)
    yield client
    client.close()
    cluster.stop_cluster_sync()
