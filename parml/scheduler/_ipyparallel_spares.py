"""Engines started in place of ipyparallel engines that died while running tasks.

ipyparallel does not restart an engine that dies (Dask's nanny does restart a
worker). Without new engines, a fit that kills its engine would take one
engine with each retry, and a candidate whose every fit kills its engine
would empty the cluster. When the client knows its cluster (a client from
``ipyparallel.Cluster(...).start_and_connect_sync()`` or
``cluster.connect_client_sync()``, the usual way in a notebook), the run
starts one engine with the cluster's own launcher for each engine that died
under its tasks, at most :data:`MAX_SPARES` per run. A cluster started apart
(``ipcluster start``) is left as it is: its dead engines stay dead, and the
run keeps its last engine for the tasks that did not kill one.
"""

import logging
import time

logger = logging.getLogger("parml")

#: Engines one run may start in place of dead ones.
MAX_SPARES = 20
#: Seconds a started engine has to register before the run stops counting on it.
REGISTER_SECONDS = 60.0


class Spares:
    """Start engines in place of dead ones, with the launcher of the client's cluster.

    Parameters
    ----------
    client : ipyparallel.Client
    """

    def __init__(self, client):
        self.client = client
        self.cluster = getattr(client, "cluster", None)
        self.replaced = set()  # ids of the dead engines replaced
        self.known = set(client.ids)
        self.expected = []  # deadlines of the engines started, not registered yet

    @property
    def possible(self):
        """Whether a dead engine can still be replaced in this run."""
        return self.cluster is not None and len(self.replaced) < MAX_SPARES

    def replace(self, engines):
        """Start one engine for each of ``engines`` (dead ids) not replaced yet."""
        for engine in sorted(set(engines) - self.replaced - {None}):
            if not self.possible:
                return
            self.replaced.add(engine)
            try:
                self.cluster.start_engines_sync(1)
            except Exception as exc:  # the launcher failed: carry on without spares
                logger.warning("parml: could not start an ipyparallel engine in place of "
                               "engine %s (%s: %s); the run goes on with the engines left.",
                               engine, type(exc).__name__, exc)
                self.cluster = None
                return
            self.expected.append(time.monotonic() + REGISTER_SECONDS)
            logger.warning("parml: ipyparallel engine %s died while running a task; an "
                           "engine is started in its place with the cluster's launcher.",
                           engine)

    def coming(self):
        """Whether an engine started here has yet to register (within its deadline)."""
        ids = set(self.client.ids)
        joined = ids - self.known
        self.known |= ids
        del self.expected[:len(joined)]
        now = time.monotonic()
        self.expected = [deadline for deadline in self.expected if deadline > now]
        return bool(self.expected)
