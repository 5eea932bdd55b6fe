"""Which Dask workers have started for good: a worker counts once it has run a task.

A worker that dies while it starts is sometimes not restarted by its nanny (a
race in ``distributed``), and a cluster can end with no worker. A task that
killed a worker must therefore not go to a worker that is still starting, and
a few seconds of being registered with the scheduler are no proof of that
under CPU load. A worker has started once it ran a task: one of the run's
units, or else a tiny probe task sent to it alone.
"""

import os


def _probe():
    """Run on a worker: proof that it runs tasks."""
    return os.getpid()


class Probes:
    """The workers seen running a task, and probe tasks for the others.

    Parameters
    ----------
    client : distributed.Client
    run_id : str
        Names the probe tasks (``parml-probe-<run_id>-<n>``).
    served : iterable of str
        Workers known to have started (those up before the run began).
    """

    def __init__(self, client, run_id, served):
        self.client, self.run_id = client, run_id
        self.served = set(served)
        self.futures = {}  # worker -> its probe's future
        self.n_probes = 0

    def note_served(self, worker):
        """``worker`` ran a unit of the run."""
        if worker is not None:
            self.served.add(worker)

    def ready(self, workers):
        """Those of ``workers`` seen running a task; sends a probe to each other one."""
        ready = []
        for worker in workers:
            future = self.futures.get(worker)
            if worker not in self.served and future is not None and future.status == "finished":
                self.served.add(worker)
            if worker in self.served:
                ready.append(worker)
            elif future is None or future.status not in ("pending", "finished"):
                self._send(worker)  # none yet, or lost with its worker: again
        return ready

    def _send(self, worker):
        self.n_probes += 1
        self.futures[worker] = self.client.submit(
            _probe, key=f"parml-probe-{self.run_id}-{self.n_probes}", workers=[worker],
            allow_other_workers=False, pure=False)

    def close(self):
        """Cancel the probes still waiting (for a worker that left, say)."""
        waiting = [f for f in self.futures.values() if f.status == "pending"]
        self.futures = {}
        if waiting:
            try:
                self.client.cancel(waiting)
            except (RuntimeError, OSError, ValueError):
                pass  # the client is closing
