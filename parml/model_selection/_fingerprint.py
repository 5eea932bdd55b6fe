"""Result-store keys of fit tasks: a hash of everything that changes a result.

A stored record is reused only when the estimator (class and every
parameter), the candidate's parameters, the data (X, y, groups and fit and
score parameters), the split's indices, the scorers, the options that shape
a record, and the versions of parml and scikit-learn are all the same.
"""

import joblib
import sklearn
from sklearn.base import clone


def _hash(what, value):
    try:
        return joblib.hash(value)
    except Exception as exc:
        raise ValueError(
            f"memory= needs to fingerprint the {what}, but it cannot be hashed "
            f"({type(exc).__name__}: {exc}). Use picklable objects (e.g. a named "
            "function instead of a lambda), or memory=None."
        ) from exc


def fit_fingerprint(estimator, X, y, routed, scorers, **options):
    """One hash of what all tasks of a fit share."""
    from .. import __version__

    return _hash(
        "fit inputs",
        {
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
        },
    )


def split_hashes(splits):
    """A hash of each split's (train, test) indices."""
    return [_hash("split indices", split) for split in splits]


def task_key(fingerprint, params, split_hash):
    """The store key of a task fitting ``params`` (a dict, or a list of dicts
    for a group of candidates fitted together) on one split."""
    return joblib.hash((fingerprint, _hash("candidate parameters", params), split_hash))


def task_keys(fingerprint, candidate_params, splits):
    """``{(candidate_idx, split_idx): key}`` for every fit task."""
    hashes = split_hashes(splits)
    return {
        (cand_idx, split_idx): task_key(fingerprint, params, split_hash)
        for cand_idx, params in enumerate(candidate_params)
        for split_idx, split_hash in enumerate(hashes)
    }
