"""Temporary files and folders that do not outlive the process that made them.

parml writes data for its worker processes to a temporary folder (``/dev/shm``
where there is one, so the data stays in memory). ``close()`` removes it, but
a process that is killed (SIGKILL, SIGTERM, the OOM killer, a kernel restart)
runs no cleanup, and files in ``/dev/shm`` hold memory until the next reboot.
Two mechanisms remove them anyway:

1. **A reaper process.** The first entry a process makes starts a small
   Python process (this file run as a script: standard library only, no
   parml, no scikit-learn) in a session of its own, so killing the owner's
   process group spares it. The owner tells the reaper of each entry before
   making it, over a pipe that only the owner holds (a forked child closes
   its copy), and again once it removed it. When the pipe reaches end of
   file, because the owner exited or died however it died, the reaper
   removes the entries still listed, then exits. loky's
   resource tracker is not used: its pipe is shared with loky's workers,
   which outlive a killed parent by their running tasks plus a 300 s idle
   timeout, and nothing is removed until they exit.
2. **A sweep at the next start.** Names carry their owner,
   ``parml-<kind>-<pid>-<start time>-<pid namespace>-<random>``. Each time
   parml makes an entry, it first removes the entries of the temp root whose
   owner is dead: no process has that pid, or it is a zombie, or it started
   at another time (the pid was reused). Only this user's entries and those
   made in this pid namespace are judged; any other is kept. This is the
   backstop for when the reaper was killed too (``kill -9 -1``).
"""

import os
import re
import shutil
import signal
import sys
import tempfile
import threading

#: Environment variable naming the folder for parml's temporary entries.
TEMP_FOLDER_ENV = "PARML_TEMP_FOLDER"

_NAME = re.compile(r"parml-([a-z]+)-(\d+)-(\d+|x)-(\d+|x)-[^-]+\Z")


def temp_root():
    """The folder where parml writes temporary entries.

    Returns
    -------
    root : str or None
        ``$PARML_TEMP_FOLDER`` if set; else ``$JOBLIB_TEMP_FOLDER`` (where
        joblib writes its own memory maps) if set; else ``/dev/shm`` (in
        memory) where it exists and is writable; else None, :mod:`tempfile`'s
        default.
    """
    folder = os.environ.get(TEMP_FOLDER_ENV) or os.environ.get("JOBLIB_TEMP_FOLDER")
    if folder:
        return folder
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


def make_folder(kind):
    """Make an empty folder in :func:`temp_root`, removed when this process dies.

    Parameters
    ----------
    kind : str
        Lower-case letters naming what it holds, e.g. ``"data"``.

    Returns
    -------
    path : str
        Absolute path of the new folder. Remove it with :func:`remove`.

    See Also
    --------
    make_file : The same for an empty file.
    """
    return _make(kind, lambda path: os.mkdir(path, 0o700))


def make_file(kind):
    """Make an empty file in :func:`temp_root`, removed when this process dies.

    Parameters
    ----------
    kind : str
        Lower-case letters naming what it holds, e.g. ``"started"``.

    Returns
    -------
    path : str
        Absolute path of the new file. Remove it with :func:`remove`.

    See Also
    --------
    make_folder : The same for an empty folder.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return _make(kind, lambda path: os.close(os.open(path, flags, 0o600)))


def _make(kind, create):
    """Sweep, then create a new entry with ``create(path)``, told to the reaper first.

    The reaper hears of the path before it exists, so no kill can fall
    between the two. The name holds this process's pid and start time, so
    no other process can own it.
    """
    root = temp_root()
    sweep(root)
    prefix = os.path.join(os.path.abspath(root or tempfile.gettempdir()), _prefix(kind))
    for _ in range(100):
        path = prefix + os.urandom(4).hex()
        if not _REAPER.watch(path):  # a name this process already uses
            continue
        try:
            create(path)
        except FileExistsError:
            _REAPER.forget(path)
            continue
        except BaseException:
            _REAPER.forget(path)
            raise
        return path
    raise FileExistsError(f"No free name for a temporary entry like {prefix}*.")


def remove(path):
    """Remove an entry made by :func:`make_folder` or :func:`make_file`.

    Parameters
    ----------
    path : str
        The path they returned. Removing it twice is harmless.
    """
    _delete(path)
    _REAPER.forget(path)


def sweep(root=None):
    """Remove the entries in ``root`` whose owner process is dead.

    Parameters
    ----------
    root : str or None
        The folder to sweep; None is :mod:`tempfile`'s default.

    Returns
    -------
    removed : list of str
        Paths removed. Another process sweeping at the same time may remove
        some first; they are then not listed.
    """
    if os.name != "posix":  # no cheap, safe liveness check (os.kill kills there)
        return []
    root = tempfile.gettempdir() if root is None else root
    try:
        names = os.listdir(root)
    except OSError:
        return []
    namespace, uid, removed = _pid_namespace(), os.geteuid(), []
    for name in names:
        match = _NAME.match(name)
        if match is None or match[4] != namespace:
            continue
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != uid:
                continue
        except OSError:  # just removed by its owner or another sweep
            continue
        if not _is_alive(int(match[2]), match[3]) and _delete(path):
            removed.append(path)
    return removed


def _prefix(kind):
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"The 'kind' of a temporary entry must be lower-case letters. "
                         f"Got {kind!r} instead.")
    pid = os.getpid()
    return f"parml-{kind}-{pid}-{_proc_stat(pid)[1]}-{_pid_namespace()}-"


def _proc_stat(pid):
    """``(state, start time)`` of ``pid`` from ``/proc``, or ``("?", "x")``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return "?", "x"
    # fields after the command name (which may hold spaces and parentheses):
    # state is field 3 of proc(5), start time (clock ticks after boot) field 22
    fields = stat[stat.rindex(b")") + 2:].split()
    return fields[0].decode(), fields[19].decode()


def _pid_namespace():
    try:
        return re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or "x"
    except OSError:
        return "x"


def _is_alive(pid, start):
    """Whether process ``pid`` started at ``start`` (``"x"``: unknown) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        pass
    state, now = _proc_stat(pid)
    if state in ("Z", "X"):  # exited, not yet waited for by its parent
        return False
    return start == "x" or now == "x" or now == start


def _delete(path):
    """Remove a file or a folder tree; whether it existed."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


class _Reaper:
    """The owner's side of the reaper process (see the module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._fd = self._pid = None
        self._paths = set()
        self._broken = False  # the reaper cannot start here: the sweep remains

    def watch(self, path):
        """Tell the reaper of ``path``; False if it was watched already."""
        with self._lock:
            if path in self._paths:
                return False
            self._paths.add(path)
            self._send("+", path)
            return True

    def forget(self, path):
        with self._lock:
            if path in self._paths:
                self._paths.discard(path)
                self._send("-", path)

    def _send(self, op, path):
        if "\n" in path:  # cannot be told on a line: left to the sweep
            return
        if self._fd is not None:
            try:
                os.write(self._fd, os.fsencode(f"{op}{path}\n"))
                return
            except OSError:  # the reaper was killed: start another one
                self._stop()
        self._start()  # a new reaper is told every path listed now

    def _start(self):
        if self._broken or not hasattr(os, "posix_spawn"):
            return
        read_end, write_end = os.pipe()
        args = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
        try:
            # the pipe is its stdin; it has nothing to print; stderr for a crash
            files = [(os.POSIX_SPAWN_DUP2, read_end, 0),
                     (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
            self._pid = os.posix_spawn(args[0], args, os.environ, setsid=True,
                                       file_actions=files)
            self._fd = write_end
            paths = [path for path in self._paths if "\n" not in path]
            os.write(write_end, os.fsencode("".join(f"+{path}\n" for path in paths)))
        except (OSError, ValueError, NotImplementedError):
            os.close(write_end)
            self._fd, self._broken = None, True
        finally:
            os.close(read_end)

    def _stop(self):
        os.close(self._fd)
        try:
            os.waitpid(self._pid, os.WNOHANG)  # reap it if it died
        except ChildProcessError:
            pass
        self._fd = self._pid = None

    def after_fork_in_child(self):
        """A forked child is another process: it gets its own reaper if it needs one."""
        if self._fd is not None:
            os.close(self._fd)
        self.__init__()


def _reap_when_owner_dies(stream):
    """The reaper: read ``+path`` and ``-path`` lines; at end of file remove the rest."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # ^C, kill, a closed terminal
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    paths = {}
    for line in stream:
        path = line[1:].rstrip(b"\n")  # bytes: no decoding, whatever the locale
        if line.startswith(b"+"):
            paths[path] = None
        else:
            paths.pop(path, None)
    for path in paths:
        _delete(path)


_REAPER = _Reaper()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REAPER.after_fork_in_child)

if __name__ == "__main__":
    _reap_when_owner_dies(sys.stdin.buffer)
