"""The unit of work of every search and cross-validation: fit on a split, score it."""

import copy
import time
from collections import OrderedDict
from functools import partial
from dataclasses import dataclass
from traceback import format_exc
from typing import Any, Optional

from joblib import logger
import numpy as np
from sklearn.base import clone
from sklearn.utils import get_tags

from .. import _compat
from ..scheduler import fit_state, state_lock
from ..scheduler._tasks import lost_task_message


@dataclass
class FitRecord:
    """Result of fitting one candidate on one split.

    Attributes
    ----------
    candidate_idx, split_idx : int
        The key: which parameter candidate, which CV split.
    test_scores, train_scores : float or dict or None
        Scores (a dict for multi-metric scoring); ``error_score`` on failure;
        ``train_scores`` is None unless requested.
    n_test_samples : int
    fit_time, score_time : float
        Seconds.
    fit_error : str or None
        The formatted traceback of a failed fit.
    estimator : estimator or None
        The fitted estimator, when requested.
    """

    candidate_idx: int
    split_idx: int
    test_scores: Any
    train_scores: Any
    n_test_samples: int
    fit_time: float
    score_time: float
    fit_error: Optional[str] = None
    estimator: Any = None


def fit_and_score(
    estimator,
    data,
    split_idx,
    *,
    candidate_idx=0,
    parameters=None,
    scorer,
    fit_params=None,
    score_params=None,
    return_train_score=False,
    return_estimator=False,
    error_score=float("nan"),
    verbose=0,
    progress=None,
    callback_ctx=None,
    caller=None,
):
    """Fit ``clone(estimator)`` with ``parameters`` on one split and score it.

    Behaves as scikit-learn's private ``_fit_and_score``: a failing fit follows
    ``error_score``, a failing scorer warns, verbose output has the same form.

    Parameters
    ----------
    estimator : estimator
        Unfitted template; it is cloned here.
    data : dict
        Shared data with keys ``"X"``, ``"y"`` and ``"splits"`` (a list of
        ``(train, test)`` index arrays); ``split_idx`` picks the split.
    split_idx : int
    candidate_idx : int
    parameters : dict or None
        Parameters set on the clone before fitting.
    scorer : callable
        A scorer, or scikit-learn's multi-metric scorer.
    fit_params, score_params : dict or None
        Per-sample values are indexed by the split here.
    return_train_score, return_estimator : bool
    error_score : 'raise' or float
    verbose : int
    progress : tuple of (int, int) or (int, int, int), or None
        ``(n_splits, n_candidates)`` for verbose messages, and the index of
        the first candidate of the batch (``candidate_idx`` counts from it).
    callback_ctx : scikit-learn CallbackContext or None
    caller : estimator or None
        The search, passed to callbacks.

    Returns
    -------
    record : FitRecord
    """
    X = data["X"]
    train, test = data["splits"][split_idx]
    estimator = clone(estimator)
    if parameters is not None:
        estimator = estimator.set_params(**clone(parameters, safe=False))
    fit_params = _compat.check_method_params(X, params=fit_params or {}, indices=train)
    score_params = score_params or {}
    score_params_train = _compat.check_method_params(X, params=score_params, indices=train)
    score_params_test = _compat.check_method_params(X, params=score_params, indices=test)

    start_time = time.time()
    X_train, y_train, X_test, y_test = split_data(estimator, data, split_idx)
    fit_error = None
    restore = None
    if not return_train_score and callback_ctx is None:
        restore = skip_defensive_copy(estimator, X_train, data["X"])
    try:
        _fit(estimator, X_train, y_train, fit_params, callback_ctx, caller)
    except Exception:
        if error_score == "raise":
            raise
        fit_error = format_exc()
    finally:
        if restore:
            estimator.set_params(**restore)
    fit_time = time.time() - start_time
    return scored_record(
        estimator, candidate_idx, split_idx, fit_time, fit_error,
        (X_train, y_train, score_params_train), (X_test, y_test, score_params_test),
        scorer=scorer, return_train_score=return_train_score,
        return_estimator=return_estimator, error_score=error_score,
        verbose=verbose, progress=progress, parameters=parameters,
    )


def skip_defensive_copy(estimator, X_train, X):
    """Fit on the fit's own training fold without the estimator copying it first.

    ``X_train`` was made for this fit alone (:func:`split_data`: a writable
    dense array apart from ``X``, never a shared fold) and is not read
    after the fit when no train score and no callback needs it. An
    estimator with ``copy_X=True`` (scikit-learn's linear models) would
    copy it before centring or scaling it; it is fitted with
    ``copy_X=False`` instead, which saves that copy (the fold's size per
    running fit) and gives the same model. Returns the parameters to set
    back after the fit (``{"copy_X": True}``), or None when nothing was
    changed.
    """
    if not (isinstance(X_train, np.ndarray) and X_train.flags.writeable
            and not np.may_share_memory(X_train, X)):
        return None
    if estimator.get_params(deep=False).get("copy_X") is not True:
        return None
    estimator.set_params(copy_X=False)
    return {"copy_X": True}


def error_scores(scorer, error_score):
    """The score(s) of a failed fit: ``error_score`` for every metric."""
    if _compat.is_multimetric_scorer(scorer):
        return {name: error_score for name in _compat.scorer_dict(scorer)}
    return error_score


def scored_record(estimator, candidate_idx, split_idx, fit_time, fit_error, train, test, *,
                  scorer, return_train_score, return_estimator, error_score, verbose,
                  progress, parameters):
    """Score a fitted estimator (or record its failure) into a :class:`FitRecord`.

    ``train`` and ``test`` are ``(X, y, score_params)`` of the split.
    """
    X_train, y_train, score_params_train = train
    X_test, y_test, score_params_test = test
    train_scores = None
    score_start = time.time()
    if fit_error is not None:
        test_scores = error_scores(scorer, error_score)
        if return_train_score:
            train_scores = error_scores(scorer, error_score)
        score_time = 0.0
    else:
        test_scores = _compat.score(
            estimator, X_test, y_test, scorer, score_params_test, error_score
        )
        score_time = time.time() - score_start
        if return_train_score:
            train_scores = _compat.score(
                estimator, X_train, y_train, scorer, score_params_train, error_score
            )
    if verbose > 1:
        _print_end(
            verbose, split_idx, candidate_idx, progress, parameters,
            test_scores, train_scores, fit_time + score_time,
        )
    return FitRecord(
        candidate_idx=candidate_idx,
        split_idx=split_idx,
        test_scores=test_scores,
        train_scores=train_scores,
        n_test_samples=_compat.num_samples(X_test),
        fit_time=fit_time,
        score_time=score_time,
        fit_error=fit_error,
        estimator=estimator if return_estimator else None,
    )


#: How many splits' fold data a worker keeps. Tasks are dispatched split by
#: split, so one is enough; a worker drops it before making the next split's,
#: so it never holds two.
MAX_CACHED_SPLITS = 1
#: Folds larger than this are not kept: each fit gets its own writable copy, as
#: in scikit-learn. (Shared folds must be read-only, and estimators that need
#: writable input then copy them again, which costs more memory than it saves.)
MAX_CACHED_FOLD_BYTES = 16 * 2**20


def split_data(estimator, data, split_idx):
    """``X_train, y_train, X_test, y_test`` of one split.

    Every call returns folds of its own, writable, as scikit-learn's fits get:
    an estimator (or a user's pipeline step) may write into its input. Small
    folds (up to ``MAX_CACHED_FOLD_BYTES``) are made once per worker and kept
    read-only; each fit gets a copy of them, which costs a memory copy instead
    of indexing X again for each of many small fits; they are state of the
    fit (``data["fit"]``, the scheduler's token, see
    :func:`parml.scheduler.fit_state`), released on every worker when the
    fit ends. Larger folds are made per fit. Data without a ``"token"``
    (one-off use) is split directly.
    """
    X, y = data["X"], data["y"]
    train, test = data["splits"][split_idx]
    token, fit = data.get("token"), data.get("fit")
    if token is None or fit is None:
        return _make_folds(estimator, X, y, train, test)
    key = (token, split_idx, get_tags(estimator).input_tags.pairwise)
    with state_lock():  # held while making folds: threads of a worker make each once
        kept = fit_state(fit).setdefault("folds", OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return private_copies(kept[key])
        while len(kept) >= MAX_CACHED_SPLITS:
            kept.popitem(last=False)  # before making the next: never two at once
        folds = _make_folds(estimator, X, y, train, test)
        if sum(getattr(part, "nbytes", 0) for part in folds) > MAX_CACHED_FOLD_BYTES:
            return folds
        for array in folds:
            if isinstance(array, np.ndarray):
                array.setflags(write=False)
        kept[key] = folds
        return private_copies(folds)


def private_copy(value):
    """A writable copy of a fold (array, sparse matrix, DataFrame, list) or None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return np.array(value, order="K", copy=True)
    if hasattr(value, "copy"):
        return value.copy()
    return copy.deepcopy(value)


def private_copies(values):
    """:func:`private_copy` of each value, the same copy where values are the same object."""
    copies = {}
    for value in values:
        if id(value) not in copies:
            copies[id(value)] = private_copy(value)
    return tuple(copies[id(value)] for value in values)


def _make_folds(estimator, X, y, train, test):
    return (
        *_compat.safe_split(estimator, X, y, train),
        *_compat.safe_split(estimator, X, y, test, train),
    )


def _fit(estimator, X_train, y_train, fit_params, callback_ctx, caller):
    args = (X_train,) if y_train is None else (X_train, y_train)
    if callback_ctx is None:
        estimator.fit(*args, **fit_params)
        return
    sample_weight = fit_params.get("sample_weight")
    metadata = None if sample_weight is None else {"sample_weight": sample_weight}
    try:
        with callback_ctx.propagate_callback_context(estimator):
            callback_ctx.call_on_fit_task_begin(
                estimator=caller, X=X_train, y=y_train, metadata=metadata
            )
            estimator.fit(*args, **fit_params)
    finally:
        callback_ctx.call_on_fit_task_end(
            estimator=caller, X=X_train, y=y_train, metadata=metadata
        )


def _print_end(verbose, split_idx, candidate_idx, progress, parameters,
               test_scores, train_scores, total_time):
    """Print scikit-learn's ``[CV i/n] END ...`` line."""
    progress_msg = ""
    if verbose > 2 and progress is not None:
        n_splits, n_candidates, first = (*progress, 0)[:3]
        progress_msg = f" {split_idx + 1}/{n_splits}"
        if verbose > 9:  # as scikit-learn: the position in this evaluate_candidates call
            progress_msg += f"; {candidate_idx - first + 1}/{n_candidates}"
    params_msg = ""
    if parameters is not None:
        params_msg = ", ".join(f"{k}={parameters[k]}" for k in sorted(parameters))
    end_msg = f"[CV{progress_msg}] END "
    result_msg = params_msg + (";" if params_msg else "")
    if verbose > 2:
        if isinstance(test_scores, dict):
            for name in sorted(test_scores):
                result_msg += f" {name}: ("
                if train_scores is not None:
                    result_msg += f"train={train_scores[name]:.3f}, "
                result_msg += f"test={test_scores[name]:.3f})"
        elif train_scores is not None:
            result_msg += f", score=(train={train_scores:.3f}, test={test_scores:.3f})"
        else:
            result_msg += f", score={test_scores:.3f}"
    result_msg += f" total time={logger.short_format_time(total_time)}"
    end_msg += "." * (80 - len(end_msg) - len(result_msg))
    print(end_msg + result_msg)


def lost_fit_record(reason, *, candidate_idx, split_idx, scorer, return_train_score,
                    error_score):
    """The record of a fit whose worker kept dying: a failed fit, ``error_score``.

    Used as ``Task.on_lost``; the failure is then reported with the others.
    """
    return FitRecord(
        candidate_idx=candidate_idx,
        split_idx=split_idx,
        test_scores=error_scores(scorer, error_score),
        train_scores=error_scores(scorer, error_score) if return_train_score else None,
        n_test_samples=0,
        fit_time=0.0,
        score_time=0.0,
        fit_error=lost_task_message(reason, "fit"),
    )


def on_lost_handler(*, candidate_idx, split_idx, scorer, return_train_score, error_score):
    """``Task.on_lost`` for a fit task: None (raise) when ``error_score='raise'``."""
    if error_score == "raise":
        return None
    return partial(
        lost_fit_record,
        candidate_idx=candidate_idx,
        split_idx=split_idx,
        scorer=scorer,
        return_train_score=return_train_score,
        error_score=error_score,
    )


def fit_records(task_record):
    """The fit records in a task's value: one, or a group's list."""
    value = task_record.value
    return value if isinstance(value, list) else [value]
