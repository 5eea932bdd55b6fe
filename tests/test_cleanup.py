"""Temporary entries do not outlive the process that made them (parml._tempfiles).

The end-to-end tests run a real fit in a subprocess, kill it while its files
exist, and check that every entry it made is removed. Each test has its own
temp root (``PARML_TEMP_FOLDER``), so test runs on one machine do not race.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from parml import _tempfiles

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self") or not hasattr(os, "posix_spawn"),
    reason="needs /proc and os.posix_spawn (Linux)",
)

#: Seconds to wait for a child to import parml and write its first files.
START_TIMEOUT = 120
#: Seconds to wait for the entries of a dead process to be removed.
CLEANUP_TIMEOUT = 30

DATA = """
import sys
from sklearn.datasets import make_classification
X, y = make_classification(3000, 20, n_informative=10, random_state=0)  # 480 kB
"""

FITS = {
    "search": DATA + """
from sklearn.svm import SVC
from parml import ParallelGridSearchCV
while True:
    ParallelGridSearchCV(SVC(), {"C": [0.01 * 2 ** i for i in range(20)]}, cv=3,
                         n_jobs=2).fit(X, y)
""",
    "forest": DATA + """
from parml import BaggedForest
while True:
    BaggedForest(n_estimators=500, n_jobs=2, random_state=0).fit(X, y)
""",
    "sgd": """
from sklearn.datasets import make_classification
from parml import AveragedSGD
X, y = make_classification(20_000, 20, random_state=0)  # 3.2 MB, past the in-process limit
while True:
    AveragedSGD(n_jobs=2, backend="loky", max_iter=1000, tol=None, random_state=0).fit(X, y)
""",
}

#: The entries each fit must have made before it is killed.
KINDS = {"search": {"data", "started"}, "forest": {"data", "started"}, "sgd": {"data"}}


# ---------------------------------------------------------------- helpers


def wait_for(condition, timeout, what, child=None):
    """Poll ``condition`` until it is true; fail saying what was waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if child is not None and child.proc.poll() is not None and not condition():
            pytest.fail(f"the child exited ({child.proc.returncode}) while waiting for "
                        f"{what}; its stderr:\n{child.stderr()}")
        time.sleep(0.05)
    details = f"; child stderr:\n{child.stderr()}" if child is not None else ""
    pytest.fail(f"waited {timeout} s for {what}, in vain{details}")


def proc_stat(pid):
    """``(state, ppid, start time)`` of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1]), fields[19].decode()


def processes_with_env(marker):
    """``{pid: start time}`` of the processes whose environment holds ``marker``."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                if marker not in file.read().split(b"\0"):
                    continue
        except OSError:  # gone, or another user's
            continue
        stat = proc_stat(entry)
        if stat is not None:
            found[int(entry)] = stat[2]
    return found


def kill_all(processes):
    """SIGKILL the processes of ``{pid: start time}`` still running (not reused pids)."""
    for pid, start in processes.items():
        stat = proc_stat(pid)
        if stat is not None and stat[2] == start and stat[0] not in "ZX":
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def is_reaper(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return b"_tempfiles.py" in file.read()
    except OSError:
        return False


def gone(pid):
    stat = proc_stat(pid)
    return stat is None or stat[0] in "ZX"


class Child:
    """A Python subprocess writing its parml entries under ``root``."""

    def __init__(self, tmp_path, root, code, name="child"):
        self.root = root
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        # every process it starts inherits the marker: found and killed at the end
        self.marker = os.fsencode(f"{_tempfiles.TEMP_FOLDER_ENV}={root}")
        env = dict(os.environ, PARML_TEMP_FOLDER=str(root),
                   JOBLIB_TEMP_FOLDER=str(tmp_path / "joblib"))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                                         stdout=out, stderr=err, env=env)
        self.reapers, self.at_kill = [], {}

    def stderr(self):
        return self.err.read_text()[-3000:]

    def entries(self):
        """Names in the temp root made by this process, ``{name: kind}``."""
        pattern = re.compile(rf"parml-([a-z]+)-{self.proc.pid}-")
        return {name: m[1] for name in os.listdir(self.root)
                if (m := pattern.match(name))}

    def line(self, prefix, timeout=START_TIMEOUT):
        """Wait for a stdout line starting with ``prefix``; return its other words."""
        def find():
            for words in map(str.split, self.out.read_text().splitlines()):
                if words[:1] == [prefix]:
                    return (words[1:],)
        return wait_for(find, timeout, f"the child to print {prefix!r}", child=self)[0]

    def kill(self, sig=signal.SIGKILL):
        """Send ``sig`` and wait for the child to exit."""
        self.reapers = [pid for pid in processes_with_env(self.marker) if is_reaper(pid)]
        self.at_kill = self.entries()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=CLEANUP_TIMEOUT)

    def close(self):
        if self.proc.poll() is None:
            self.kill()
        kill_all(processes_with_env(self.marker))  # e.g. loky workers orphaned by the kill


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def children(tmp_path, root):
    started = []

    def start(code, name="child"):
        started.append(Child(tmp_path, root, code, name=f"{name}{len(started)}"))
        return started[-1]

    yield start
    for child in started:
        child.close()


MAKE_AND_SLEEP = """
import time
from parml import _tempfiles
folder = _tempfiles.make_folder("data")
open(folder + "/array-0.pkl", "wb").write(b"x" * 1000)
_tempfiles.make_file("started")
print("reaper", _tempfiles._REAPER._pid, flush=True)
time.sleep(600)
"""


# ------------------------------------------------ a killed fit leaves nothing


@pytest.mark.slow
@pytest.mark.parametrize("fit, sig", [("search", signal.SIGKILL), ("search", signal.SIGTERM),
                                      ("forest", signal.SIGKILL), ("sgd", signal.SIGKILL)])
def test_files_of_a_killed_fit_are_removed(children, fit, sig):
    child = children(FITS[fit], name=fit)
    wait_for(lambda: KINDS[fit] <= set(child.entries().values()), START_TIMEOUT,
             f"the {fit} fit to write its {sorted(KINDS[fit])} entries", child=child)
    killed_at = time.monotonic()
    child.kill(sig)
    assert child.at_kill, "the kill fell between two fits: make the fits longer"
    wait_for(lambda: not child.entries(), CLEANUP_TIMEOUT,
             f"the entries of the {sig.name}-killed {fit} fit to be removed")
    print(f"{fit} {sig.name}: {sorted(child.at_kill.values())} removed "
          f"{time.monotonic() - killed_at:.3f} s after the signal")
    assert len(child.reapers) == 1, "one reaper per process that made entries"
    wait_for(lambda: all(gone(pid) for pid in child.reapers), CLEANUP_TIMEOUT,
             "the reaper to exit once it removed the entries")


def test_a_normal_exit_leaves_nothing_and_warns_nothing(children):
    child = children(DATA + """
from sklearn.linear_model import LogisticRegression
from parml import ParallelGridSearchCV
ParallelGridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, n_jobs=2).fit(X, y)
print("fitted", flush=True)
""")
    child.line("fitted")
    assert child.proc.wait(timeout=START_TIMEOUT) == 0, child.stderr()
    assert child.entries() == {}
    assert "warn" not in child.stderr().lower() and "leak" not in child.stderr().lower()


def test_a_forked_child_does_not_keep_the_entries(children):
    child = children("""
import os, time
from parml import _tempfiles
_tempfiles.make_folder("data")
pid = os.fork()
if pid == 0:
    time.sleep(600)
    os._exit(0)
print("forked", pid, flush=True)
time.sleep(600)
""")
    forked = int(child.line("forked")[0])
    assert set(child.entries().values()) == {"data"}
    child.kill()
    wait_for(lambda: not child.entries(), CLEANUP_TIMEOUT,
             "the entries to be removed while the forked child still runs")
    assert not gone(forked)


def test_a_killed_reaper_is_replaced(children):
    child = children("""
import os, signal, time
from parml import _tempfiles
_tempfiles.make_folder("data")
first = _tempfiles._REAPER._pid
os.kill(first, signal.SIGKILL)
os.waitpid(first, 0)
_tempfiles.make_file("started")  # finds the pipe broken: starts a reaper, tells it both
print("reapers", first, _tempfiles._REAPER._pid, flush=True)
time.sleep(600)
""")
    first, second = map(int, child.line("reapers"))
    assert first != second and set(child.entries().values()) == {"data", "started"}
    child.kill()
    wait_for(lambda: not child.entries(), CLEANUP_TIMEOUT,
             "the second reaper to remove the entries made before and after the first died")


# -------------------------------------------- the sweep at the next start


def test_next_start_sweeps_a_dead_process_and_keeps_a_live_one(children):
    dead, live = children(MAKE_AND_SLEEP, "dead"), children(MAKE_AND_SLEEP, "live")
    reaper = int(dead.line("reaper")[0])
    live.line("reaper")
    os.kill(reaper, signal.SIGKILL)  # as `kill -9 -1` would: no reaper, no cleanup
    dead.kill()
    assert set(dead.entries().values()) == {"data", "started"}, "nothing removed them yet"
    kept = live.entries()
    next_start = children("""
from parml import _tempfiles
_tempfiles.remove(_tempfiles.make_folder("data"))
print("done", flush=True)
""", "next")
    next_start.line("done")
    assert next_start.proc.wait(timeout=START_TIMEOUT) == 0, next_start.stderr()
    assert dead.entries() == {}
    assert live.entries() == kept
    assert next_start.entries() == {}
    live.kill(signal.SIGTERM)
    wait_for(lambda: not live.entries(), CLEANUP_TIMEOUT,
             "the SIGTERM-killed process's reaper to remove its entries")


@pytest.fixture
def own_root(tmp_path, monkeypatch):
    monkeypatch.setenv(_tempfiles.TEMP_FOLDER_ENV, str(tmp_path))
    return tmp_path


def _entry(root, kind, pid, start, namespace=None, folder=True):
    namespace = _tempfiles._pid_namespace() if namespace is None else namespace
    path = root / f"parml-{kind}-{pid}-{start}-{namespace}-abc_123"
    if folder:
        path.mkdir()
        (path / "array-0.pkl").write_bytes(b"x")
    else:
        path.write_bytes(b"x")
    return path


def test_sweep_removes_dead_owners_only(own_root):
    me, my_start = os.getpid(), proc_stat(os.getpid())[2]
    exited = subprocess.Popen([sys.executable, "-c", ""])
    exited.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    zombie_start = proc_stat(zombie.pid)[2]
    zombie.stdin.close()
    wait_for(lambda: proc_stat(zombie.pid)[0] == "Z", START_TIMEOUT,
             "the child to exit and stay a zombie (not waited for)")
    dead = [_entry(own_root, "data", exited.pid, "5"),
            _entry(own_root, "started", me, str(int(my_start) + 1), folder=False),  # reused
            _entry(own_root, "shards", zombie.pid, zombie_start)]
    kept = [_entry(own_root, "data", me, my_start),
            _entry(own_root, "data", me, "x"),  # start time unknown: alive
            _entry(own_root, "data", exited.pid, "5", namespace="1"),  # another namespace
            own_root / "parml-abcd1234", own_root / "parml-started-abcd1234"]  # old names
    kept[-2].mkdir()
    kept[-1].write_bytes(b"")
    if os.geteuid() == 0:
        kept.append(_entry(own_root, "data", exited.pid, "6"))
        os.chown(kept[-1], 12345, 12345)  # another user's
    removed = _tempfiles.sweep(str(own_root))
    zombie.wait()
    assert sorted(removed) == sorted(map(str, dead))
    assert all(not path.exists() for path in dead)
    assert all(path.exists() for path in kept)


def test_concurrent_sweeps_tolerate_each_other(own_root):
    exited = subprocess.Popen([sys.executable, "-c", ""])
    exited.wait()
    dead = [_entry(own_root, "data", exited.pid, str(start)) for start in range(40)]
    removed, errors = [], []

    def sweep():
        try:
            removed.extend(_tempfiles.sweep(str(own_root)))
        except Exception as exc:  # pragma: no cover - the failure reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CLEANUP_TIMEOUT)
    assert errors == []
    assert set(removed) == set(map(str, dead))
    assert os.listdir(own_root) == []


def test_entries_are_named_after_their_owner_and_removed(own_root):
    folder, file = _tempfiles.make_folder("data"), _tempfiles.make_file("started")
    start = proc_stat(os.getpid())[2]
    for path, kind in ((folder, "data"), (file, "started")):
        name = os.path.basename(path)
        assert os.path.dirname(path) == str(own_root)
        assert name.startswith(f"parml-{kind}-{os.getpid()}-{start}-"), name
        assert path in _tempfiles._REAPER._paths
        _tempfiles.remove(path)
        _tempfiles.remove(path)  # twice is harmless
        assert not os.path.exists(path) and path not in _tempfiles._REAPER._paths


def test_kind_must_be_lower_case_letters(own_root):
    with pytest.raises(ValueError, match="'kind' .* lower-case letters. Got 'a-b'"):
        _tempfiles.make_folder("a-b")


def test_temp_root_is_shm_by_default(monkeypatch):
    monkeypatch.delenv(_tempfiles.TEMP_FOLDER_ENV, raising=False)
    shm = os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
    assert _tempfiles.temp_root() == ("/dev/shm" if shm else None)
