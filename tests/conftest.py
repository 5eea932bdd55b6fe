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
