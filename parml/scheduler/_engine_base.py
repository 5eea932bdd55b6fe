"""The engine contract, and what every remote engine shares.

:class:`Engine` declares what the scheduler relies on: capability flags
(threads or processes, remote, a per-task timeout that can be enforced) and
the methods every engine provides. :class:`RemoteEngine` owns what Dask and
ipyparallel have in common: how tasks are cut into units (adaptive batching,
:mod:`._batching`), placeholders for shared data that each worker resolves
from its own memory, running a unit under the BLAS limit of its worker, and
the retry settings (``max_retries``, ``timeout``; the death counts are
:class:`~._deaths.Deaths`). A remote engine supplies only how to submit a
unit, see it complete, share data and cancel.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Hashable

from threadpoolctl import threadpool_limits

from ._batching import AllSingles, Batches, Singles


class Engine(ABC):
    """Where tasks run. Subclasses declare their capabilities and implement the methods."""

    #: Workers are local processes that read memory maps shared with :meth:`share`.
    uses_processes = False
    #: Workers are threads of this process (a task cannot be stopped).
    uses_threads = False
    #: Workers are on other machines or processes reached over a network.
    remote = False
    #: ``timeout=`` can be enforced (the task stopped, or abandoned).
    supports_timeout = True
    #: ``map_unordered`` takes a deque and runs what is added to it meanwhile.
    streams = True

    max_retries = 2

    @property
    @abstractmethod
    def n_workers(self):
        """How many tasks run at once."""

    @abstractmethod
    def share(self, data):
        """Make ``data`` cheap to hand to tasks; returns what tasks carry instead."""

    @abstractmethod
    def map_unordered(self, func, tasks):
        """Yield ``func(task)`` (or a :class:`~._tasks.LostTask`) for each task as it finishes."""

    @abstractmethod
    def worker_ids(self):
        """Ids of the workers, for ``Task.where``."""

    @abstractmethod
    def release_state(self, token):
        """Drop the state kept in the workers for the fit ``token``."""

    @abstractmethod
    def close(self):
        """Release what :meth:`share` made."""


@dataclass(frozen=True)
class Placeholder:
    """Stands for one shared value in a task's kwargs; resolved on the worker.

    ``slot`` names one call of :meth:`Engine.share`, ``name`` the value in it.
    """

    slot: Hashable
    name: Hashable


def resolve(value, lookup):
    """``value`` with each :class:`Placeholder` replaced by ``lookup(placeholder)``.

    Placeholders are found in dicts, lists and tuples, at any depth.
    """
    if isinstance(value, Placeholder):
        return lookup(value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, lookup) for v in value)
    return value


def run_unit(run_one, tasks, blas_threads):
    """On a worker: run the tasks of a unit in turn with BLAS limited once; their results.

    threadpoolctl looks up the loaded libraries each time it limits them,
    which costs more than a tiny fit: a batch pays it once.
    """
    with threadpool_limits(limits=max(1, int(blas_threads))):
        return [run_one(task) for task in tasks]


class RemoteEngine(Engine):
    """Base of the engines whose workers are reached over a network (Dask, ipyparallel).

    A task given up on past ``timeout`` is abandoned, its worker left alone.
    """

    remote = True
    supports_timeout = True
    #: Units with ``timeout=`` set: each task alone (abandoned alone). Dask sends
    #: them all at once (its scheduler queues them); ipyparallel a few per engine.
    timeout_units = Singles

    max_retries = 2
    timeout = None

    def units(self, tasks):
        """The :class:`~._batching.Batches` that cut ``tasks`` (a deque, or a list) into units."""
        if self.timeout is None:
            return Batches(tasks, self.n_workers)
        return self.timeout_units(tasks, self.n_workers)


__all__ = ["AllSingles", "Engine", "Placeholder", "RemoteEngine", "resolve", "run_unit"]
