"""Adaptive batching for remote engines: tiny tasks travel together, long ones alone.

A remote engine (Dask, ipyparallel) costs milliseconds per task it sends,
more than a tiny fit. As joblib's auto batch size does, the first tasks go
one by one (a few per worker); once their run times are known, all the
others are sent at once, so that a large cluster stays busy and the shared
data stays wanted on the workers: tasks shorter than :data:`BATCH_SECONDS`
grouped into batches that take about that long, the batches shrinking
towards the end of the queue so that the last ones are small (no worker
waits on a long last batch). Tasks pinned with ``Task.where`` always go
alone.
"""

from collections import deque

#: Tasks shorter than this are sent in batches that take about this long.
BATCH_SECONDS = 0.05
#: Largest batch of tasks sent as one remote task.
MAX_BATCH = 256
#: Single tasks in flight per worker while their run times are measured.
UNITS_PER_WORKER = 4


class Batches:
    """Cut a queue of tasks into units (lists of tasks) as results come back.

    Parameters
    ----------
    tasks : collections.deque or iterable of Task
        A deque is used as the queue itself: tasks a scheduler session adds
        to it while the run goes on are sent too (see :mod:`._session`).
    n_workers : int
        Tasks the engine runs at once.
    in_flight : int or None, default=None
        Most units in flight once run times are known; None sends all the
        rest at once (remote engines: the cluster's scheduler queues them).
    """

    def __init__(self, tasks, n_workers, in_flight=None):
        self.queue = tasks if isinstance(tasks, deque) else deque(tasks)
        self.n_workers = max(1, n_workers)
        self.in_flight = UNITS_PER_WORKER * self.n_workers
        self.most_in_flight = in_flight
        self._durations = []

    def __bool__(self):
        return bool(self.queue)

    @property
    def measured(self):
        """Whether enough run times are known to send all the rest at once."""
        return len(self._durations) >= self.n_workers

    def may_send(self, n_pending):
        """Whether another unit should be sent now, with ``n_pending`` in flight."""
        if not self.queue:
            return False
        if self.measured:
            return self.most_in_flight is None or n_pending < self.most_in_flight
        return n_pending < self.in_flight

    def record(self, result):
        """Note the run time of a finished task (a :class:`TaskRecord`)."""
        if hasattr(result, "start") and hasattr(result, "end"):
            self._durations.append(result.end - result.start)

    def size(self):
        """How many tasks the next unit takes."""
        if not self.measured:
            return 1
        recent = self._durations[-100:]
        by_time = int(BATCH_SECONDS / max(sum(recent) / len(recent), 1e-6))
        by_share = -(-len(self.queue) // self.in_flight)  # ceil: every slot gets work
        return max(1, min(by_time, by_share, MAX_BATCH))

    def next_unit(self):
        """The next unit: one pinned task, or up to :meth:`size` unpinned ones."""
        if self.queue[0].where is not None:
            return [self.queue.popleft()]
        size, unit = self.size(), []
        while self.queue and len(unit) < size and self.queue[0].where is None:
            unit.append(self.queue.popleft())
        return unit

    def clear(self):
        self.queue.clear()


class Singles(Batches):
    """Units of one task each: with ``timeout=`` a task is abandoned alone."""

    def size(self):
        return 1


class AllSingles(Singles):
    """Units of one task each, all sent at once (each can be abandoned alone)."""

    def may_send(self, n_pending):
        return bool(self.queue)
