"""Engines: where tasks run, and how ``backend=`` picks one.

``backend=None`` follows joblib's active :func:`joblib.parallel_config` (so
``with parallel_config("threading")`` works as it does for scikit-learn),
otherwise loky. A string names a joblib backend: ``"loky"`` (processes, the
default), ``"threading"``, or any backend registered with
:func:`joblib.register_parallel_backend`.

Remote engines (optional extras): ``"dask"``, a Dask scheduler address
(``"tcp://host:8786"``) or a live ``distributed.Client`` pick the Dask engine
(:mod:`._dask`); ``"ipyparallel"``, ``"ipyparallel:<profile>"``,
``"ipyparallel:<profile>:<cluster_id>"``, ``"ipyparallel:<path>.json"`` (a
client connection file) or a live ``ipyparallel.Client`` pick the ipyparallel
engine (:mod:`._ipyparallel`). A live client is resolved when a fit runs and
is never stored by the estimator; the string forms are picklable.

Every engine is a :class:`~._engine_base.Engine`: capability flags declared
(``uses_processes``, ``uses_threads``, ``remote``, ``supports_timeout``,
``streams``) and the same small contract:

``n_workers``
    How many tasks run at once.
``share(data)``
    Make arrays (or dicts/lists/tuples of them) cheap to hand to tasks: sent
    to the workers once per run, tasks carry handles.
``map_unordered(func, tasks)``
    Yield ``func(task)`` for each task as it finishes, in any order; given a
    deque, also the tasks added to it meanwhile (a scheduler session).
``worker_ids()``
    Ids of the workers, for ``Task.where`` (a task that must run on the
    worker holding its data); local engines have the single id ``"local"``.
``release_state(token)``
    Drop what tasks kept in the workers for one fit (:mod:`._worker_state`).
``close()``
    Release what ``share`` made.

Dask and ipyparallel derive from :class:`~._engine_base.RemoteEngine`, which
owns batching, placeholders, the BLAS limit and the retry settings; the
death counts are :class:`~._deaths.Deaths`, the same rule on every engine.
"""

from joblib.parallel import BACKENDS, get_active_backend

from ._dask import DaskEngine, is_dask_backend
from ._ipyparallel import IPyParallelEngine, client_kwargs, is_ipyparallel_backend
from ._local import LocalEngine

#: Engines that need an optional extra, with the extra that installs them.
OPTIONAL_ENGINES = {"dask": "dask", "ipyparallel": "ipyparallel"}


def valid_backends():
    """Names accepted by ``backend=``, sorted."""
    return sorted(set(BACKENDS) | set(OPTIONAL_ENGINES))


def check_backend(backend):
    """Validate ``backend`` and return it; raise a ValueError listing valid names.

    Besides joblib backend names, ``"dask"``, a Dask scheduler address
    (``"tcp://host:8786"``) and a live ``distributed.Client`` are valid when
    ``parml[dask]`` is installed; ``"ipyparallel"``, ``"ipyparallel:<profile>"``,
    ``"ipyparallel:<profile>:<cluster_id>"``, ``"ipyparallel:<path>.json"`` and a
    live ``ipyparallel.Client`` when ``parml[ipyparallel]`` is installed.
    """
    if is_dask_backend(backend):
        try:
            import distributed  # noqa: F401
        except ImportError:
            pass
        else:
            return backend
    if is_ipyparallel_backend(backend):
        if isinstance(backend, str):
            client_kwargs(backend)  # a malformed string form: ValueError
        try:
            import ipyparallel  # noqa: F401
        except ImportError:
            raise ImportError(_missing_extra(backend, "ipyparallel")) from None
        return backend
    if backend is None or (isinstance(backend, str) and backend in BACKENDS
                           and backend not in OPTIONAL_ENGINES):
        return backend
    if isinstance(backend, str) and backend in OPTIONAL_ENGINES:
        raise ImportError(_missing_extra(backend, backend))
    raise ValueError(
        f"The 'backend' parameter must be None or one of {valid_backends()}; "
        f"got {backend!r}. Use None to follow joblib.parallel_config, 'loky' "
        "for local processes or 'threading' for threads."
    )


def _missing_extra(backend, engine):
    return (f"backend={backend!r} needs the {engine} engine, which is not "
            f'installed. Install it with: pip install "parml[{OPTIONAL_ENGINES[engine]}]"')


def make_engine(backend=None, n_jobs=None, pre_dispatch="2*n_jobs"):
    """The engine for ``backend`` (validated with :func:`check_backend`).

    ``backend=None`` inside ``joblib.parallel_config("dask")`` is the Dask
    engine on that configuration's client, as for scikit-learn.
    """
    backend = check_backend(backend)
    if backend is None:
        active = get_active_backend()[0]
        if type(active).__name__ == "DaskDistributedBackend":
            return DaskEngine(active.client, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
    if backend is not None and is_dask_backend(backend):
        return DaskEngine(backend, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
    if backend is not None and is_ipyparallel_backend(backend):
        return IPyParallelEngine(backend, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
    return LocalEngine(backend, n_jobs=n_jobs, pre_dispatch=pre_dispatch)
