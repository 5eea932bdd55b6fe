"""The result store on its own: atomic entries, bad entries, unsafe folders."""

import os
import pickle

import joblib
import pytest

from parml.scheduler._store import ResultStore, StoreWarning


def test_put_get_roundtrip_and_missing(tmp_path):
    store = ResultStore(tmp_path / "s")
    assert store.get("k") is None
    store.put("k", {"score": 0.5})
    assert store.get("k") == {"score": 0.5}
    assert len(store) == 1
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o700"


def test_joblib_memory_location(tmp_path):
    store = ResultStore(joblib.Memory(tmp_path, verbose=0))
    assert store.path == os.path.join(tmp_path, "parml")


def test_truncated_entry_is_ignored_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.put("k", list(range(1000)))
    path = os.path.join(store.path, "k.pkl")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.warns(StoreWarning, match="unreadable"):
        assert store.get("k") is None


def test_entry_of_another_format_or_key_is_ignored(tmp_path):
    store = ResultStore(tmp_path)
    with open(os.path.join(store.path, "k.pkl"), "wb") as file:
        pickle.dump(("parml-result", 999, "k", "old"), file)
    with pytest.warns(StoreWarning, match="another format"):
        assert store.get("k") is None
    store.put("other", "value")
    os.replace(os.path.join(store.path, "other.pkl"), os.path.join(store.path, "k.pkl"))
    with pytest.warns(StoreWarning, match="another format or key"):
        assert store.get("k") is None


def test_failed_write_leaves_no_entry(tmp_path):
    store = ResultStore(tmp_path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        store.put("k", Unpicklable())
    assert os.listdir(store.path) == []


def test_folder_writable_by_others_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by other users.*chmod go-w"):
        ResultStore(folder)


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root writes anywhere: pretend it cannot
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="not writable"):
        ResultStore(folder)


def test_uncreatable_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot be created"):
        ResultStore(blocker / "store")
