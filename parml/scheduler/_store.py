"""The result store: finished task records on disk, so a search can resume.

One file per task, named by the task's ``cache_key`` (a hash of everything
that changes its result, computed by the planner). Each file is written to a
temporary name and renamed into place, so a crash mid-write never leaves an
entry that reads as valid; an entry that fails to load is ignored (and
recomputed), never used.

The entries are pickles, and loading a pickle runs code: the store refuses a
folder that other users may write to, or that belongs to someone else.

A store that cannot be written does not stop a run: a read-only folder is
only read from, and a write that fails (full disk, quota) turns the store
read-only for the rest of the run. Either way one :class:`StoreWarning` says
so, naming the folder.
"""

import contextlib
import errno
import os
import pickle
import stat
import tempfile
import warnings

import joblib

#: Bumped when the entry layout changes; entries of another format are ignored.
FORMAT = 1
_MAGIC = "parml-result"
_MISSING = object()


class StoreWarning(UserWarning):
    """The result store, or one of its entries, could not be used as it should.

    An unusable entry is ignored and its task run again; a store that cannot
    be written is only read from, and the run's results are not kept.
    """


def store_folder(memory):
    """The folder of the result store that ``memory`` names, or None for no store.

    Parameters
    ----------
    memory : str, os.PathLike, joblib.Memory or None
        ``None`` and ``joblib.Memory(None)`` (joblib's "no caching") name no
        store; a ``joblib.Memory`` stores under ``<location>/parml``.

    Returns
    -------
    folder : str or None
    """
    if memory is None:
        return None
    if isinstance(memory, joblib.Memory):
        if memory.location is None:
            return None
        return os.path.join(memory.location, "parml")
    return os.fspath(memory)


class ResultStore:
    """Task records kept in a folder between runs.

    Parameters
    ----------
    memory : str, os.PathLike or joblib.Memory
        The folder (a ``joblib.Memory`` stores under ``<location>/parml``).

    Attributes
    ----------
    path : str
        The folder.
    writable : bool
        Whether new entries are written. False for a folder you may only read
        (its entries are still used), and from the first write that failed.
    """

    def __init__(self, memory):
        self.path = store_folder(memory)
        if self.path is None:
            raise ValueError(
                f"memory={memory!r} names no folder, so there is no result store to "
                "open. Pass a folder, or memory=None for no store."
            )
        self.writable = True
        self._create_folder()
        self._check_owner()
        self._check_access()

    def _create_folder(self):
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"The 'memory' folder {self.path!r} cannot be created ({exc}). "
                "Pass a folder you can write to, or memory=None."
            ) from exc

    def _check_owner(self):
        """Refuse a folder whose pickles someone else could have written."""
        info = os.stat(self.path)
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise PermissionError(
                f"The 'memory' folder {self.path!r} belongs to another user. Its "
                "entries are pickles, and loading them would run that user's "
                "code. Use a folder of your own."
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"The 'memory' folder {self.path!r} is writable by other users "
                f"(mode {stat.filemode(info.st_mode)}). Its entries are pickles, and "
                "loading one written by someone else would run their code. Fix it "
                f"with: chmod go-w {self.path!r}"
            )

    def _check_access(self):
        """Refuse a folder that cannot be read; only read one that cannot be written."""
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise ValueError(
                f"The 'memory' folder {self.path!r} cannot be read. Pass a folder "
                "you can read and write, or memory=None."
            )
        if not os.access(self.path, os.W_OK | os.X_OK):
            self.writable = False
            warnings.warn(
                f"The 'memory' folder {self.path!r} is read-only: its stored results "
                "are used, but results of this run will not be kept for resume. To "
                f"keep them, make it writable (chmod u+w {self.path!r}) or pass "
                "another folder as memory=.",
                StoreWarning,
            )

    def _file(self, key):
        return os.path.join(self.path, f"{key}.pkl")

    def get(self, key, default=None):
        """The stored value for ``key``, or ``default`` when absent or unusable."""
        path = self._file(key)
        try:
            with open(path, "rb") as file:
                magic, fmt, stored_key, value = pickle.load(file)
        except FileNotFoundError:
            return default
        except Exception as exc:  # truncated, corrupt or foreign file
            warnings.warn(
                f"Ignoring unreadable result-store entry {path!r} ({type(exc).__name__}); "
                "the task is run again.",
                StoreWarning,
            )
            return default
        if (magic, fmt, stored_key) != (_MAGIC, FORMAT, key):
            warnings.warn(
                f"Ignoring result-store entry {path!r} of another format or key; "
                "the task is run again.",
                StoreWarning,
            )
            return default
        return value

    def put(self, key, value):
        """Store ``value`` under ``key`` atomically (write, fsync, rename).

        A store that cannot be written (full disk, quota, a folder made
        read-only mid-run) does not stop the run that uses it: the first
        ``OSError`` becomes one :class:`StoreWarning` naming the folder, and
        no further write is tried (``writable`` turns False). Failing the
        search would throw away the results it computed because their cache
        failed, which is worse than a run that cannot be resumed. Other errors
        (a value that cannot be pickled) are bugs and propagate.

        Returns
        -------
        written : bool
            Whether the entry was written.
        """
        if not self.writable:
            return False
        try:
            self._write(key, value)
        except OSError as exc:
            self._stop_writing(exc)
            return False
        return True

    def _write(self, key, value):
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".pkl")
        try:
            with os.fdopen(fd, "wb") as file:
                pickle.dump((_MAGIC, FORMAT, key, value), file, protocol=pickle.HIGHEST_PROTOCOL)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._file(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    def _stop_writing(self, exc):
        self.writable = False
        code = errno.errorcode.get(exc.errno, "")
        reason = f"{code}: {exc.strerror}" if code and exc.strerror else str(exc)
        warnings.warn(
            f"The 'memory' folder {self.path!r} cannot be written ({reason}). The "
            "run carries on without writing to it: results of this run will not be "
            "kept for resume from here on (entries written before are kept). Free "
            "some space or fix the folder, or pass another folder as memory=.",
            StoreWarning,
        )

    def __len__(self):
        return sum(1 for name in os.listdir(self.path) if name.endswith(".pkl")
                   and not name.startswith(".tmp-"))
