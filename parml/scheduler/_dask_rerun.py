"""Worker side of a Dask run: a unit that Dask runs again after a death does not rerun.

When a worker dies, Dask runs the units it was running again on other
workers, at once (up to its ``allowed-failures``). A task that kills its
worker would take worker after worker with it, even ones just started (and a
worker that dies while it starts may not be restarted by its nanny). So each
unit notes its start on the scheduler, in the task's own metadata (forgotten
with the task); a unit that finds an earlier start of itself does not run its
tasks again but returns a :class:`Rerun`, and the run decides what to retry,
where and how often (:mod:`._dask_run`).
"""

from dataclasses import dataclass

from .._optional import import_optional

#: The entry of a unit's task metadata on the scheduler that lists its starts.
START_KEY = "parml-starts"


@dataclass
class Rerun:
    """What a unit returns when it finds it started before: its earlier starts."""

    starts: list


def note_start(topic):
    """On a worker: note that this unit starts; a :class:`Rerun` if it started before.

    Both calls reach the scheduler before the unit's tasks run (about 1 ms);
    the run, subscribed to ``topic``, learns where and when the unit started.
    """
    distributed = import_optional("distributed", extra="dask", purpose="The Dask engine")
    try:
        worker = distributed.get_worker()
    except ValueError:  # not on a worker (e.g. a test calling the wrapper directly)
        return None
    client, key = distributed.get_client(), worker.get_current_task()
    starts = list(client.get_metadata([key, START_KEY], None) or ())
    start = {"worker": worker.address, "nthreads": worker.state.nthreads}
    client.set_metadata([key, START_KEY], starts + [start])
    if starts:
        return Rerun(starts=starts)
    client.log_event(topic, {"key": key, "worker": worker.address})
    return None
