"""Result-store keys of fit tasks (a hash of everything that changes a result),
and which stored fits are reused.

A stored record is reused only when the estimator (class and every
parameter), the candidate's parameters, the data (X, y, groups and fit and
score parameters), the split's indices, the scorers, the options that shape
a record, and the versions of parml and scikit-learn are all the same, and
when it holds no failed fit (:func:`stored_failure`).

A class is keyed by its module and qualified name, not by its code. Classes
defined in ``__main__`` (a script or a notebook, where a class is edited and
run again under the same name) are also keyed on their source, when
:mod:`inspect` finds it; when it does not, on their name alone.
"""

import inspect

import joblib
import sklearn
from sklearn.base import clone

from .._version import __version__


def _hash(what, value):
    try:
        return joblib.hash(value)
    except Exception as exc:
        raise ValueError(
            f"memory= needs to fingerprint the {what}, but it cannot be hashed "
            f"({type(exc).__name__}: {exc}). Use picklable objects (e.g. a named "
            "function instead of a lambda), or memory=None."
        ) from exc


def _source(cls):
    """The source of ``cls``, else of its methods (notebook cells), else None."""
    try:
        return inspect.getsource(cls)
    except Exception:  # no file to read (a notebook on Python < 3.13, python -c)
        pass
    parts = []
    for attr in vars(cls).values():
        func = getattr(attr, "__func__", attr)  # staticmethod, classmethod
        func = getattr(func, "fget", func)  # property
        if inspect.isfunction(func):
            try:
                parts.append(inspect.getsource(func))
            except Exception:
                pass
    return "\n".join(parts) or None


def _main_classes(obj, found, seen):
    """Add to ``found`` the ``__main__`` classes of ``obj``, its parameters and items."""
    if id(obj) in seen:
        return
    seen[id(obj)] = obj  # kept alive, so that its id is not reused by another
    cls = obj if isinstance(obj, type) else type(obj)
    found.update(c for c in cls.__mro__ if getattr(c, "__module__", None) == "__main__")
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif hasattr(obj, "get_params") and not isinstance(obj, type):
        try:
            items = obj.get_params(deep=True).values()
        except Exception:  # a broken get_params is reported by the search itself
            items = ()
    else:
        items = ()
    for item in items:
        _main_classes(item, found, seen)


def main_sources(obj):
    """``((qualname, source), ...)`` of the classes defined in ``__main__`` in ``obj``.

    ``obj`` is an estimator (walked through ``get_params(deep=True)``), a
    class, or a list, tuple or dict of them. Classes whose source cannot be
    found are left out: they are keyed by name only, as every other class.
    """
    found = set()
    _main_classes(obj, found, {})
    sources = ((cls.__qualname__, _source(cls)) for cls in found)
    return tuple(sorted(item for item in sources if item[1] is not None))


def fit_fingerprint(estimator, X, y, routed, scorers, **options):
    """One hash of what all tasks of a fit share."""
    inputs = {
        "estimator": (type(estimator).__module__, type(estimator).__qualname__,
                      _hash("estimator", clone(estimator))),
        "X": _hash("X", X),
        "y": _hash("y", y),
        "fit_params": _hash("fit parameters", routed.estimator.fit),
        "score_params": _hash("score parameters", routed.scorer.score),
        "split_params": _hash("groups", routed.splitter.split),
        "scorers": _hash("scorers", scorers),
        "options": options,
        "versions": (__version__, sklearn.__version__),
    }
    sources = main_sources(estimator)
    if sources:  # only then, so that the keys of other fits stay as they were
        inputs["main_sources"] = sources
    return _hash("fit inputs", inputs)


def split_hashes(splits):
    """A hash of each split's (train, test) indices."""
    return [_hash("split indices", split) for split in splits]


def task_key(fingerprint, params, split_hash):
    """The store key of a task fitting ``params`` (a dict, or a list of dicts
    for a group of candidates fitted together) on one split."""
    parts = (fingerprint, _hash("candidate parameters", params), split_hash)
    sources = main_sources(params)
    return joblib.hash(parts + (sources,) if sources else parts)


def task_keys(fingerprint, candidate_params, splits):
    """``{(candidate_idx, split_idx): key}`` for every fit task."""
    hashes = split_hashes(splits)
    return {
        (cand_idx, split_idx): task_key(fingerprint, params, split_hash)
        for cand_idx, params in enumerate(candidate_params)
        for split_idx, split_hash in enumerate(hashes)
    }


def stored_failure(value):
    """Whether a stored task value holds a failed fit: ``Task.rerun_stored`` of fit tasks.

    A fit that raised is stored (as failed), but a later fit runs it again
    rather than report its ``error_score`` forever: the failure may have
    passed (out of memory, a busy file system) or been fixed since. Fits
    lost to dead workers or timeouts are never stored, so they run again too.

    Parameters
    ----------
    value : FitRecord or list of FitRecord
        The stored value of a fit task, or of a group task.

    Returns
    -------
    failed : bool
    """
    fits = value if isinstance(value, list) else [value]
    return any(getattr(fit, "fit_error", None) is not None for fit in fits)
