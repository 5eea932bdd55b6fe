"""Estimators whose ``backend`` may be a live client, and still pickle, copy and clone."""

from .scheduler._portable import is_live_client, portable_backend


class PortableBackendMixin:
    """Save a live Dask or ipyparallel client in ``backend`` as the string that reconnects.

    A live client cannot be pickled or deep-copied. The pickled (and
    deep-copied) state holds :func:`~parml.scheduler._portable.portable_backend`
    instead: the scheduler address for Dask, the connection file (or profile
    and cluster id) for ipyparallel, so a loaded estimator refits on the same
    cluster. :func:`sklearn.base.clone` and a shallow :func:`copy.copy` share
    the live client: a connection is shared, not copied. Put this class before
    :class:`~sklearn.base.BaseEstimator` in the bases.
    """

    def __getstate__(self):
        state = super().__getstate__()
        if is_live_client(state.get("backend")):
            state = dict(state, backend=portable_backend(state["backend"]))
        return state

    def __copy__(self):
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def __sklearn_clone__(self):
        backend = getattr(self, "backend", None)
        if not is_live_client(backend):
            return super().__sklearn_clone__()
        # scikit-learn's clone deep-copies parameters that are not estimators:
        # clone a twin without the client, then give the clone the same client.
        twin = self.__copy__()
        twin.backend = None
        clone = super(PortableBackendMixin, twin).__sklearn_clone__()
        clone.backend = backend
        return clone
