"""The out-of-bag estimate of a forest: pure functions of its members' records.

Each member returns its votes (or predictions) on the rows of its partition
that it did not draw; the estimate of a row is the mean over the members that
left it out. Rows are numbered partition after partition, so partition mode
and a single ``X`` are handled alike.
"""

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, r2_score


def oob_estimate(members, parts, indices, n_classes):
    """The out-of-bag attributes of a forest, from its fitted members.

    Parameters
    ----------
    members : dict of int to FittedMember
        The fitted members, by member index.
    parts : Partitions
        The partitions the members learned from (member ``i`` from partition
        ``i % len(parts)``).
    indices : iterable of int
        The member indices to take into account.
    n_classes : int or None
        The number of classes (classifier), or None (regressor).

    Returns
    -------
    attributes : dict
        ``oob_score_`` and either ``oob_decision_function_`` (classifier) or
        ``oob_prediction_`` (regressor).
    """
    offsets = np.concatenate([[0], np.cumsum(parts.n_samples)])
    n_total = int(offsets[-1])
    first = next((members[i].oob_values for i in indices
                  if members[i].oob_values is not None), None)
    if n_classes is not None:
        shape = (n_total, n_classes)
    else:  # regression: one column per output
        shape = (n_total,) + (() if first is None else first.shape[1:])
    total, counts = np.zeros(shape), np.zeros(n_total)
    for i in indices:
        member = members[i]
        if member.oob_values is None:
            continue
        rows = member.oob_rows + offsets[i % len(parts)]
        total[rows] += member.oob_values
        counts[rows] += 1
    seen = counts > 0
    if not seen.all():
        warnings.warn(f"{int((~seen).sum())} samples were used by every member and "
                      "have no out-of-bag estimate; oob_score_ leaves them out. Use "
                      "more members for a reliable estimate.", UserWarning)
    counts_b = counts.reshape((-1,) + (1,) * (total.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = total / counts_b
    y = all_targets(parts)
    if n_classes is not None:
        predicted = np.argmax(estimate[seen], axis=1)
        return {"oob_decision_function_": estimate,
                "oob_score_": accuracy_score(y[seen], predicted)}
    return {"oob_prediction_": estimate, "oob_score_": r2_score(y[seen], estimate[seen])}


def all_targets(parts):
    """All targets, encoded as class indices for classifiers (small: no X moves).

    Parameters
    ----------
    parts : Partitions
        The partitions; a target held by a worker (a future) is fetched.

    Returns
    -------
    y : ndarray
        The targets of every partition, one after the other.
    """
    ys = [np.asarray(y.result() if hasattr(y, "result") else y) for y in parts.y]
    y = np.concatenate(ys)
    if parts.classes is not None:
        y = np.searchsorted(parts.classes, y)
    return y
