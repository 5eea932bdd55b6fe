"""When a remote task is late: timeouts, speculative copies and stall reports.

Pure policy, no engine: the remote engines (Dask, ipyparallel) measure how
long each unit has been running on its worker and ask this module what to do.

- ``timeout=`` (seconds per task): a task running longer is abandoned (its
  worker is left alone, the search moves on) and recorded as lost.
- Speculative copies (MapReduce's backup tasks): once a few tasks have
  finished, a unit running longer than :data:`SPECULATION_FACTOR` times the
  median task time (times its number of tasks), and at least
  :data:`SPECULATION_MIN_SECONDS`, gets one copy on another worker; whichever
  finishes first is kept and the other cancelled. A worker that hangs (stuck
  C code, a swap storm, a host frozen or cut off) then costs the search about
  that long, not the minutes a cluster takes to declare the worker dead.
- A run that has seen no progress for :data:`STALL_REPORT_SECONDS` logs what it
  waits for (which tasks, on which workers, for how long), and again every
  :data:`STALL_REPORT_SECONDS` while the stall lasts.
"""

import statistics

#: A unit running longer than this many times the median task time gets a copy.
SPECULATION_FACTOR = 5.0
#: ... but never before it has run this many seconds.
SPECULATION_MIN_SECONDS = 10.0
#: Finished tasks needed before their median is trusted.
SPECULATION_MIN_SAMPLES = 3
#: Seconds without progress before a run says what it waits for (and between reports).
STALL_REPORT_SECONDS = 30.0


class Lateness:
    """Run times of the finished tasks of one run, and what they make late.

    Parameters
    ----------
    timeout : float or None
        Seconds a single task may run before it is abandoned.
    """

    def __init__(self, timeout=None):
        self.timeout = timeout
        self._durations = []

    def record(self, seconds):
        """Note the run time of one finished task."""
        self._durations.append(max(0.0, float(seconds)))

    def median(self):
        """Median run time of the finished tasks, None before enough have finished."""
        if len(self._durations) < SPECULATION_MIN_SAMPLES:
            return None
        return statistics.median(self._durations[-1000:])

    def speculation_after(self, n_tasks=1):
        """Seconds after which a unit of ``n_tasks`` tasks gets a copy (None: not yet known)."""
        median = self.median()
        if median is None:
            return None
        return max(SPECULATION_MIN_SECONDS, SPECULATION_FACTOR * median * n_tasks)

    def is_late(self, running_for, n_tasks=1):
        """Whether a unit running for ``running_for`` seconds should get a copy."""
        after = self.speculation_after(n_tasks)
        return after is not None and running_for > after

    def timed_out(self, running_for):
        """Whether a single task running for ``running_for`` seconds passed ``timeout``."""
        return self.timeout is not None and running_for > self.timeout


class StallReport:
    """Says, every :data:`STALL_REPORT_SECONDS` without progress, what a run waits for."""

    def __init__(self, now):
        self._last_progress = now
        self._last_report = now

    def progress(self, now):
        """A task started or finished."""
        self._last_progress = now
        self._last_report = now

    def quiet_for(self, now):
        """Seconds since the last progress."""
        return now - self._last_progress

    def due(self, now):
        """Whether a report is due now (and note that it is given)."""
        if now - self._last_report < STALL_REPORT_SECONDS:
            return False
        self._last_report = now
        return True


def describe_waits(waits, quiet_for, limit=10):
    """One message naming what a run waits for.

    ``waits`` is a list of ``(task keys, worker or None, running seconds or
    None)``, one per unit still out.
    """
    parts = []
    for keys, worker, running in waits[:limit]:
        where = f"on {worker}" if worker else "not started"
        since = f" for {running:.0f} s" if running is not None else ""
        parts.append(f"{_keys(keys)} {where}{since}")
    more = f" and {len(waits) - limit} more" if len(waits) > limit else ""
    return (f"No task has finished for {quiet_for:.0f} s; waiting for "
            f"{len(waits)} unit(s): " + "; ".join(parts) + more + ".")


def _keys(keys):
    keys = list(keys)
    if len(keys) == 1:
        return f"task {keys[0]!r}"
    return f"tasks {keys[0]!r}..{keys[-1]!r} ({len(keys)})"
