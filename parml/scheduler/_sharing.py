"""Share input arrays with worker processes once, as read-only memory maps.

joblib memory-maps large arrays itself, but it does so by hashing and checking
every array each time a task is pickled. parml dumps each array once per
``fit`` and hands tasks ``numpy.memmap`` views; joblib pickles those by
reference (file name and offset), so no task re-sends or re-hashes the data.
"""

import os
import shutil
import tempfile

import joblib
import numpy as np

#: Arrays smaller than this are pickled with each task (cheaper than a file).
MIN_NBYTES = 64 * 1024


def temp_root():
    """A folder in memory (``/dev/shm``) where there is one, else the default."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


class MemmapStore:
    """A temporary folder holding the memory maps of one ``fit``."""

    def __init__(self, min_nbytes=MIN_NBYTES):
        self.min_nbytes = min_nbytes
        self.folder = None
        self._count = 0

    def share(self, obj):
        """Return ``obj`` with every large ndarray in it replaced by a memmap.

        Dicts, lists and tuples are walked; other objects are returned as is.
        """
        if isinstance(obj, dict):
            return {key: self.share(value) for key, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.share(value) for value in obj)
        if isinstance(obj, np.ndarray) and not isinstance(obj, np.memmap):
            if obj.nbytes >= self.min_nbytes and obj.dtype != object:
                return self._dump(obj)
        return obj

    def _dump(self, array):
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="parml-", dir=temp_root())
        path = os.path.join(self.folder, f"array-{self._count}.pkl")
        self._count += 1
        joblib.dump(array, path)
        return joblib.load(path, mmap_mode="r")

    def close(self):
        """Remove the folder (open maps stay valid until they are released)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
