"""Live clients in ``backend=``, and the picklable strings that reconnect to them.

A live ``distributed.Client`` or ``ipyparallel.Client`` holds sockets, threads
and an event loop: it cannot be pickled or deep-copied. Estimators keep it in
``backend`` while they live, and save :func:`portable_backend` instead: a
string form that ``backend=`` accepts and that connects to the same cluster
when ``fit`` runs.
"""

import glob
import json
import os
import warnings

from ._dask import is_dask_backend
from ._ipyparallel import is_ipyparallel_backend


def is_live_client(backend):
    """Whether ``backend`` is a live Dask or ipyparallel ``Client`` (not a string form).

    Decided by the type's module and name, so neither engine is imported.
    """
    if backend is None or isinstance(backend, str):
        return False
    return is_dask_backend(backend) or is_ipyparallel_backend(backend)


def portable_backend(backend):
    """The picklable form of ``backend``: a string for a live client, else ``backend``.

    Parameters
    ----------
    backend : object
        A ``backend=`` value.

    Returns
    -------
    backend : object
        For a Dask ``Client``, its scheduler address (``"tcp://host:8786"``).
        For an ipyparallel ``Client``, ``"ipyparallel:<path>.json"`` (its
        client connection file) when the file is found on disk, else
        ``"ipyparallel:<profile>[:<cluster_id>]"`` when its ``Cluster`` is
        known, else None with a :class:`UserWarning`. Any other value is
        returned unchanged.
    """
    if not is_live_client(backend):
        return backend
    if is_dask_backend(backend):
        address = _dask_address(backend)
    else:
        address = _ipyparallel_form(backend)
    if address is None:
        warnings.warn(
            f"backend={type(backend).__module__}.{type(backend).__name__}: this live "
            "client could not be saved, and no address or connection file that "
            "reconnects to its cluster was found; backend is saved as None (local "
            "processes). Set backend to the scheduler address ('tcp://host:8786') or to "
            "'ipyparallel:<path to ipcontroller-client.json>' before fitting again.",
            UserWarning, stacklevel=3,
        )
    return address


def _dask_address(client):
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    return address if isinstance(address, str) and "://" in address else None


def _ipyparallel_form(client):
    """``"ipyparallel:<path>.json"``, ``"ipyparallel:<profile>:<cluster_id>"`` or None."""
    cluster = getattr(client, "cluster", None)  # set when Cluster.connect_client made it
    security = []
    if cluster is not None and getattr(cluster, "profile_dir", None):
        security.append(os.path.join(cluster.profile_dir, "security"))
    profile_dir = getattr(client, "_profile_dir", None)
    if getattr(profile_dir, "security_dir", None):
        security.append(profile_dir.security_dir)
    path = _connection_file(client, security)
    if path is not None:
        return f"ipyparallel:{path}"
    if cluster is not None and getattr(cluster, "cluster_id", None):
        return f"ipyparallel:{cluster.profile or 'default'}:{cluster.cluster_id}"
    return None


def _connection_file(client, folders):
    """The client connection file, in ``folders``, of the controller ``client`` talks to.

    A file is the client's when it carries the same key as the client's
    session (a controller's key is random) and the same registration port.
    """
    key = getattr(getattr(client, "session", None), "key", b"") or b""
    key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
    registration = str(getattr(client, "_config", {}).get("registration", ""))
    if not key:
        return None
    for folder in dict.fromkeys(folders):
        for path in sorted(glob.glob(os.path.join(folder, "ipcontroller*-client.json"))):
            try:
                with open(path) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue
            port = str(info.get("registration", ""))
            if info.get("key") == key and (not port or registration.endswith(":" + port)):
                return os.path.abspath(path)
    return None
