"""One ensemble member: its random draws, its fit task, its share of a prediction.

Everything here is a module-level function of plain arguments, so any engine
can run it. A member's randomness depends on the forest's seed and the
member's index only: the same forest comes out whatever the engine, the
number of workers or the order in which members finish.
"""

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from sklearn.base import clone
from sklearn.tree import BaseDecisionTree
from sklearn.utils.random import sample_without_replacement
from sklearn.utils.validation import has_fit_parameter

MAX_INT = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Draw:
    """How a forest draws its members' samples and features."""

    max_samples: Any
    max_features: Any
    bootstrap: bool
    bootstrap_features: bool


@dataclass
class FittedMember:
    """What a member's fit task returns."""

    estimator: Any
    features: Optional[np.ndarray]
    #: Out-of-bag rows and the member's scores for them (None: not asked).
    oob_rows: Optional[np.ndarray]
    oob_values: Optional[np.ndarray]
    fit_time: float


def member_rng(seed, index):
    """The random generator of member ``index`` of a forest seeded with ``seed``."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0]
    return np.random.RandomState(state)


def resolve_count(value, total):
    """``max_samples`` / ``max_features`` as a count out of ``total``."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    return max(1, int(value * total))


def draw_member(seed, index, n_samples, n_features, draw):
    """The member's estimator seed, feature indices and sample indices.

    ``features`` is None when the member sees every feature in order (no
    column copy is needed).
    """
    rng = member_rng(seed, index)
    estimator_seed = rng.randint(MAX_INT)
    n_feat = resolve_count(draw.max_features, n_features)
    if draw.bootstrap_features:
        features = rng.randint(0, n_features, n_feat)
    elif n_feat < n_features:
        features = np.sort(sample_without_replacement(n_features, n_feat, random_state=rng))
    else:
        features = None
    n_draw = resolve_count(draw.max_samples, n_samples)
    if draw.bootstrap:
        samples = rng.randint(0, n_samples, n_draw)
    else:
        samples = sample_without_replacement(n_samples, n_draw, random_state=rng)
    return estimator_seed, features, samples


def seeded_clone(estimator, seed):
    """A clone of ``estimator`` whose ``*random_state`` parameters derive from ``seed``."""
    member = clone(estimator)
    rng = np.random.RandomState(seed)
    names = sorted(k for k in member.get_params(deep=True)
                   if k == "random_state" or k.endswith("__random_state"))
    if names:
        member.set_params(**{name: rng.randint(MAX_INT) for name in names})
    return member


def fits_by_weight(estimator):
    """Whether a bootstrap sample is given as sample counts rather than rows.

    Trees weigh a row drawn twice exactly as two copies of it (this is how
    random forests fit), so they fit on the shared data with counts and never
    copy rows; other estimators fit on the drawn rows.
    """
    return isinstance(estimator, BaseDecisionTree)


def fit_member(*, estimator, X, y, sample_weight, seed, index, draw, oob, n_classes,
               classes=None):
    """Fit member ``index`` on its draw of ``(X, y)``; return a :class:`FittedMember`.

    ``oob`` asks for the member's votes (``n_classes`` columns) or predictions
    (``n_classes=None``) on the rows it did not see, for the out-of-bag
    estimate. ``classes`` encodes raw labels as their index in it (data
    partitions arrive unencoded).
    """
    start = time.perf_counter()
    if classes is not None:
        y = np.searchsorted(classes, np.asarray(y))
    n_samples, n_features = X.shape
    estimator_seed, features, samples = draw_member(seed, index, n_samples, n_features, draw)
    member = seeded_clone(estimator, estimator_seed)
    X_cols = X if features is None else X[:, features]
    if fits_by_weight(member):
        weight = np.bincount(samples, minlength=n_samples).astype(np.float64)
        if sample_weight is not None:
            weight *= sample_weight
        member.fit(X_cols, y, sample_weight=weight)
    else:
        fit_params = {}
        if sample_weight is not None:
            fit_params["sample_weight"] = sample_weight[samples]
        member.fit(X_cols[samples], y[samples], **fit_params)
    oob_rows = oob_values = None
    if oob:
        mask = np.ones(n_samples, dtype=bool)
        mask[samples] = False
        oob_rows = np.flatnonzero(mask)
        if len(oob_rows):
            X_oob = X_cols[oob_rows]
            oob_values = (np.asarray(member.predict(X_oob), dtype=np.float64)
                          if n_classes is None else class_votes(member, X_oob, n_classes))
    return FittedMember(member, features, oob_rows, oob_values,
                        time.perf_counter() - start)


def accepts_sample_weight(estimator):
    """Whether ``estimator.fit`` takes ``sample_weight``."""
    return has_fit_parameter(estimator, "sample_weight")


def class_votes(member, X, n_classes):
    """A member's class probabilities on ``X``, in the forest's class columns.

    Members that drew only some classes have fewer columns; members without
    ``predict_proba`` give a hard vote.
    """
    if hasattr(member, "predict_proba"):
        proba = member.predict_proba(X)
        if proba.shape[1] == n_classes:
            return proba
        full = np.zeros((X.shape[0], n_classes))
        full[:, member.classes_.astype(int)] = proba
        return full
    votes = np.zeros((X.shape[0], n_classes))
    votes[np.arange(X.shape[0]), member.predict(X).astype(int)] = 1.0
    return votes


def sum_predictions(*, members, X, n_classes):
    """Weighted sum of members' class votes (``n_classes``) or predictions (None) on ``X``.

    ``members`` is a list of ``(estimator, columns, weight)``: ``columns`` the
    features the member reads (None: all, in order), ``weight`` the factor of
    its votes (a weight of 1.0 leaves them exactly as they are).
    """
    total = None
    for member, cols, weight in members:
        X_cols = X if cols is None else X[:, cols]
        value = (member.predict(X_cols) if n_classes is None
                 else class_votes(member, X_cols, n_classes))
        value = np.asarray(value, dtype=np.float64) * weight
        total = value if total is None else total + value
    return total


def vote_weights(member_n_samples):
    """Each member's vote weight: its partition's rows over the largest partition's.

    Members fitted on partitions of the same size (every member of
    :meth:`BaggedForest.fit`) all weigh exactly 1.0, so their mean is the
    plain mean.
    """
    sizes = np.asarray(member_n_samples, dtype=np.float64)
    return sizes / sizes.max()
