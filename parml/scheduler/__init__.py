"""The scheduler: keyed tasks, shared data, streamed records, one dispatch point.

Estimators plan :class:`Task` lists and merge the :class:`TaskRecord` stream by
key; only :class:`Scheduler` decides where and how tasks run.
"""

from ._dask import is_dask_backend
from ._engines import check_backend, valid_backends
from ._run import Scheduler
from ._session import Session
from ._store import StoreWarning, store_folder
from ._tasks import LostTask, Task, TaskRecord, WorkerLostError
from ._worker_state import fit_state, state_lock

__all__ = [
    "LostTask",
    "Scheduler",
    "Session",
    "StoreWarning",
    "Task",
    "TaskRecord",
    "WorkerLostError",
    "check_backend",
    "fit_state",
    "is_dask_backend",
    "store_folder",
    "state_lock",
    "valid_backends",
]
