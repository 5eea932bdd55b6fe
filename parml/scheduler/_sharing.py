"""Share input arrays with worker processes once, as read-only memory maps.

joblib memory-maps large arrays itself, but it does so by hashing and checking
every array each time a task is pickled. parml dumps each array once per
``fit`` and hands tasks ``numpy.memmap`` views; joblib pickles those by
reference (file name and offset), so no task re-sends or re-hashes the data.
"""

import os

import joblib
import numpy as np

from .._tempfiles import make_folder, remove

#: Arrays smaller than this are pickled with each task (cheaper than a file).
MIN_NBYTES = 64 * 1024


class MemmapStore:
    """A temporary folder holding the memory maps of one ``fit``.

    The folder (``parml-data-*`` in ``/dev/shm`` where there is one) is
    removed by :meth:`close`, or when this process dies however it dies
    (see :mod:`parml._tempfiles`).
    """

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
            self.folder = make_folder("data")
        path = os.path.join(self.folder, f"array-{self._count}.pkl")
        self._count += 1
        joblib.dump(array, path)
        return joblib.load(path, mmap_mode="r")

    def close(self):
        """Remove the folder (open maps stay valid until they are released)."""
        if self.folder is not None:
            remove(self.folder)
            self.folder = None
