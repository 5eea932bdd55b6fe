"""The result store on its own: atomic entries, bad entries, unsafe, read-only and full folders."""

import errno
import os
import pickle

import joblib
import pytest

from parml.scheduler import StoreWarning, store_folder
from parml.scheduler._store import ResultStore


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


def _pretend_read_only(monkeypatch, folder):
    """Make ``os.access`` deny writing to ``folder`` even to root (who writes anywhere)."""
    if not os.access(folder, os.W_OK):
        return
    real_access = os.access

    def access(path, mode, **kwargs):
        if os.fspath(path) == os.fspath(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_read_only_folder_is_opened_for_reading_with_one_warning(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    ResultStore(folder).put("k", "stored")
    folder.chmod(0o500)
    _pretend_read_only(monkeypatch, folder)
    try:
        with pytest.warns(StoreWarning) as record:
            store = ResultStore(folder)
        assert len(record) == 1
        message = str(record[0].message)
        assert repr(str(folder)) in message
        assert "read-only" in message and "will not be kept for resume" in message
        assert "chmod u+w" in message
        assert not store.writable
        assert store.get("k") == "stored"
        assert store.put("new", "value") is False  # not even tried
        assert sorted(os.listdir(folder)) == ["k.pkl"]
    finally:
        folder.chmod(0o700)


def test_unreadable_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o700)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if os.fspath(path) == str(folder) else real_access(path, mode, **kw)))
    with pytest.raises(ValueError, match="'memory' folder .* cannot be read.*memory=None"):
        ResultStore(folder)


def test_full_disk_warns_once_and_stops_writing(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s")
    store.put("before", 1)
    calls = []

    def full_disk(fd):
        calls.append(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.warns(StoreWarning) as record:
        assert store.put("k1", 1) is False
        assert store.put("k2", 2) is False
    assert len(record) == 1 and len(calls) == 1, "no write is tried after the first failure"
    message = str(record[0].message)
    assert repr(store.path) in message
    assert "ENOSPC: No space left on device" in message
    assert "results of this run will not be kept for resume" in message
    assert not store.writable
    assert os.listdir(store.path) == ["before.pkl"], "no temporary file is left behind"
    assert store.get("before") == 1


def test_memory_none_and_joblib_memory_none_name_no_store(tmp_path):
    assert store_folder(None) is None
    assert store_folder(joblib.Memory(None, verbose=0)) is None
    assert store_folder(tmp_path) == str(tmp_path)
    with pytest.raises(ValueError, match="names no folder.*memory=None"):
        ResultStore(joblib.Memory(None, verbose=0))


def test_uncreatable_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot be created"):
        ResultStore(blocker / "store")


def test_interrupted_run_says_an_unwritable_store_kept_nothing(tmp_path):
    from parml.scheduler import Scheduler

    with Scheduler(n_jobs=1, memory=tmp_path / "s") as scheduler:
        assert "kept in the result store" in scheduler._interrupted(3, 10)
        scheduler.store.writable = False  # as after a failed write
        message = scheduler._interrupted(3, 10)
    assert "could not be written" in message and "tasks finished since are lost" in message
    assert "memory=" in message
