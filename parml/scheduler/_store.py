"""The result store: finished task records on disk, so a search can resume.

One file per task, named by the task's ``cache_key`` (a hash of everything
that changes its result, computed by the planner). Each file is written to a
temporary name and renamed into place, so a crash mid-write never leaves an
entry that reads as valid; an entry that fails to load is ignored (and
recomputed), never used.

The entries are pickles, and loading a pickle runs code: the store refuses a
folder that other users may write to, or that belongs to someone else.
"""

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
    """A result-store entry or folder could not be used; results are recomputed."""


def _location(memory):
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
    """

    def __init__(self, memory):
        self.path = _location(memory)
        self._check_folder()

    def _check_folder(self):
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"The 'memory' folder {self.path!r} cannot be created ({exc}). "
                "Pass a folder you can write to, or memory=None."
            ) from exc
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
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ValueError(
                f"The 'memory' folder {self.path!r} is not writable. Pass a folder "
                "you can write to, or memory=None."
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
        """Store ``value`` under ``key`` atomically (write, fsync, rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".pkl")
        try:
            with os.fdopen(fd, "wb") as file:
                pickle.dump((_MAGIC, FORMAT, key, value), file, protocol=pickle.HIGHEST_PROTOCOL)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._file(key))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def __len__(self):
        return sum(1 for name in os.listdir(self.path) if name.endswith(".pkl")
                   and not name.startswith(".tmp-"))
