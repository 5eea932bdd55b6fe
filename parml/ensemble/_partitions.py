"""Data that arrives already split into partitions: a list of shards or a dask collection.

A partitioned fit never gathers the data: each member is fitted on one
partition, where that partition lives (this machine's memory for a list of
shards; the worker holding the chunk for a dask array or dataframe).
"""

import warnings
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets

from .._optional import import_optional


def is_dask_collection(obj):
    """Whether ``obj`` is a dask array, dataframe or series (without importing dask)."""
    return (type(obj).__module__ or "").startswith("dask") and hasattr(obj, "__dask_graph__")


@dataclass
class Partitions:
    """Partitions of ``(X, y[, sample_weight])``, as handles tasks can carry."""

    X: List[Any]
    y: List[Any]
    sample_weight: Optional[List[Any]]
    n_samples: List[int]
    n_features: int
    #: The worker holding each partition (dask), or None (this machine).
    where: Optional[List[str]] = None
    classes: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.X)


def column_names(X):
    """The feature names of ``X`` as scikit-learn reads them, or None.

    A dataframe whose column names are all strings has feature names; any
    other ``X`` (an array, or integer column names) has none.

    Parameters
    ----------
    X : array-like or dataframe
        One partition's features.

    Returns
    -------
    names : ndarray of object or None
        The column names, in order.
    """
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(columns, dtype=object)
    if len(names) and all(isinstance(name, str) for name in names):
        return names
    return None


def _check_columns(index, names, first):
    """Raise if partition ``index`` does not have partition 0's feature names."""
    if names is None and first is None:
        return
    if names is not None and first is not None and np.array_equal(names, first):
        return
    if names is None or first is None:
        which, other = (0, index) if names is None else (index, 0)
        raise ValueError(
            f"Partition {which} has feature names but partition {other} has none "
            "(an array, or columns that are not all strings); pass every partition "
            "as a DataFrame with the same columns, or every one as an array."
        )
    have, want = set(names), set(first)
    missing = [n for n in first if n not in have]
    extra = [n for n in names if n not in want]
    detail = (f"it lacks {missing[:5]} and has {extra[:5]} instead"
              if missing or extra else "they are in another order")
    raise ValueError(
        f"Partition {index} has other columns than partition 0: {detail}. Every "
        f"partition must have the same columns in the same order; select them as "
        f"partition 0 has them, e.g. X{index}[X0.columns]."
    )


def _as_shard(index, shard, accept_sparse):
    if not isinstance(shard, (tuple, list)) or len(shard) not in (2, 3):
        raise ValueError(
            f"Partition {index} must be a tuple (X, y) or (X, y, sample_weight); got "
            f"{type(shard).__name__}. Pass partitions as [(X0, y0), (X1, y1), ...]."
        )
    X = check_array(shard[0], accept_sparse=accept_sparse, ensure_all_finite=False,
                    dtype=None, ensure_min_samples=0)
    if X.shape[0] == 0:
        raise ValueError(
            f"Partition {index} is empty (0 rows); every partition needs rows to fit "
            "its members. Drop the empty ones, e.g. partitions = [p for p in "
            "partitions if len(p[1])]."
        )
    y = np.asarray(shard[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if len(y) != X.shape[0]:
        raise ValueError(
            f"Partition {index} has {X.shape[0]} rows in X but {len(y)} labels in y; "
            "each partition's X and y must have the same number of rows."
        )
    weight = None
    if len(shard) == 3 and shard[2] is not None:
        weight = np.asarray(shard[2], dtype=np.float64)
        if weight.shape != (X.shape[0],):
            raise ValueError(
                f"Partition {index} has sample_weight of shape {weight.shape}; "
                f"expected ({X.shape[0]},), one weight per row of its X."
            )
    return X, y, weight


def from_shards(shards, *, is_classifier, accept_sparse=("csr", "csc")):
    """Validate a list of ``(X, y[, sample_weight])`` shards held in this process."""
    if not isinstance(shards, (list, tuple)) or len(shards) == 0:
        raise ValueError(
            "partitions must be a non-empty list of (X, y) tuples, e.g. "
            "[(X0, y0), (X1, y1)], or a dask array with a dask y."
        )
    X_parts, y_parts, weights = [], [], []
    for index, shard in enumerate(shards):
        X, y, weight = _as_shard(index, shard, list(accept_sparse))
        if X_parts and X.shape[1] != X_parts[0].shape[1]:
            raise ValueError(
                f"Partition {index} has {X.shape[1]} features but partition 0 has "
                f"{X_parts[0].shape[1]}; every partition must have the same columns."
            )
        _check_columns(index, column_names(shard[0]), column_names(shards[0][0]))
        X_parts.append(X)
        y_parts.append(y)
        weights.append(weight)
    has_weight = [w is not None for w in weights]
    if any(has_weight) and not all(has_weight):
        raise ValueError("Either every partition has a sample_weight or none has; "
                         "give (X, y, sample_weight) for all of them.")
    classes = None
    if is_classifier:
        for y in y_parts:
            check_classification_targets(y)
        classes = np.unique(np.concatenate(y_parts))
    return Partitions(X=X_parts, y=y_parts, sample_weight=weights if all(has_weight) else None,
                      n_samples=[X.shape[0] for X in X_parts],
                      n_features=X_parts[0].shape[1], classes=classes)


def from_dask(X, y, scheduler, *, is_classifier):
    """Keep a dask ``X`` (rows in chunks) and ``y`` on the cluster; find who holds each.

    Column chunks are joined (a member needs whole rows) and ``y`` is
    rechunked to ``X``'s row chunks; the row chunks of ``X`` are not moved
    (:meth:`Scheduler.place`).
    """
    da = import_optional("dask.array", extra="dask", purpose="Partitions given as dask data")
    if y is None or not is_dask_collection(y):
        raise ValueError("With X as a dask collection, y must be a dask array or series "
                         "with the same rows; got " f"{type(y).__name__}.")
    if hasattr(X, "to_dask_array"):  # dataframe / series
        X = X.to_dask_array(lengths=True)
    if hasattr(y, "to_dask_array"):
        y = y.to_dask_array(lengths=True)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (rows x features); got {X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}.")
    empty = [j for j, size in enumerate(X.chunks[0]) if size == 0]
    if empty:
        raise ValueError(
            f"Partition {empty[0]} (row chunk {empty[0]} of X) is empty (0 rows); every "
            "partition needs rows to fit its members. Keep the non-empty ones, in X and "
            "y alike: keep = [i for i, n in enumerate(X.chunks[0]) if n] (for a "
            "dataframe, enumerate(X.map_partitions(len).compute())), then pass "
            "X.partitions[keep] and y.partitions[keep]."
        )
    X = X.rechunk({1: -1})
    y = y.rechunk((X.chunks[0],))
    x_chunks, y_chunks = scheduler.place([X, y])
    classes = None
    if is_classifier:
        classes = da.unique(y).compute()
        check_classification_targets(classes)
    return Partitions(
        X=[handle for handle, _ in x_chunks], y=[handle for handle, _ in y_chunks],
        sample_weight=None, n_samples=[int(c) for c in X.chunks[0]],
        n_features=int(X.shape[1]), where=[worker for _, worker in x_chunks],
        classes=classes,
    )


def warn_small(parts):
    """Warn about partitions too small for a sensible member.

    A partition with a single row, or (for a classifier) fewer rows than the
    forest has classes, gives members that cannot learn the problem. They
    still vote, weighted by their partition's rows, so their harm is small;
    the warning names them so that they can be merged or dropped.

    Parameters
    ----------
    parts : Partitions
        The partitions of a fit; ``classes`` is None for a regressor.
    """
    n_classes = 0 if parts.classes is None else len(parts.classes)
    small = [(j, n) for j, n in enumerate(parts.n_samples) if n < max(2, n_classes)]
    if not small:
        return
    listed = ", ".join(f"{j} has {n} row{'' if n == 1 else 's'}" for j, n in small[:5])
    listed += f" (and {len(small) - 5} more)" if len(small) > 5 else ""
    them = "it" if len(small) == 1 else "them"
    if n_classes > 1:
        why = f"fewer than the {n_classes} classes: members fitted on {them} miss classes"
    else:
        why = f"too few to fit a model: members fitted on {them} predict a constant"
    warnings.warn(
        f"Partition {listed} (of {sum(parts.n_samples)} rows in all), {why}. Each "
        "member's vote is weighted by its partition's rows, so they count little; "
        "merge small partitions into larger ones, or drop them.",
        UserWarning,
    )
