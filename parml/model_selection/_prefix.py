"""Pipeline-prefix dedup: fit a shared pipeline prefix once per split.

In a grid over a :class:`~sklearn.pipeline.Pipeline`, candidates that differ
only in the final step's parameters share the fitted transformers before it.
scikit-learn refits them for every candidate; parml groups such candidates
into one task per (group, split) that fits the prefix once and then fits and
scores every candidate's final step on its output. Scores are identical:
each candidate is scored as a whole fitted pipeline on the raw test data.

Fit times are attributed fairly: each candidate's ``fit_time`` is its own
final-step fit plus an equal share of the prefix fit.
"""

import logging
import time
from traceback import format_exc

import joblib
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from .. import _compat
from ..scheduler._tasks import lost_task_message
from ._fit_and_score import (
    FitRecord, error_scores, private_copies, scored_record, split_data,
)

logger = logging.getLogger(__name__)


def prefix_groups(estimator, candidate_params, fit_params, n_workers):
    """Group candidate indices that share the parameters of the pipeline prefix.

    Returns None when dedup does not apply (not a Pipeline, fewer than two
    steps, a Pipeline with ``memory``, fit parameters, or no two candidates
    sharing a prefix). Groups are split further when there are fewer groups
    than workers, so dedup never idles a worker.
    """
    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None
    if estimator.memory is not None or fit_params:
        return None
    final_name = estimator.steps[-1][0]
    groups = {}
    for idx, params in enumerate(candidate_params):
        prefix = {k: v for k, v in params.items() if k.split("__")[0] != final_name}
        groups.setdefault(_prefix_key(prefix, idx), []).append(idx)
    groups = list(groups.values())
    if len(groups) == len(candidate_params):
        return None
    return _split_for_workers(groups, n_workers)


def _prefix_key(prefix, idx):
    """A hash of the prefix parameters; a key of the candidate's own if they cannot be hashed.

    Parameters that cannot be pickled (a lambda defined in ``__main__``, an
    open file) cannot be compared, so that candidate fits its prefix itself,
    as in scikit-learn.
    """
    try:
        return joblib.hash(prefix)
    except Exception as exc:  # joblib wraps pickling errors of many kinds
        logger.debug("No pipeline-prefix dedup for candidate %d: its prefix parameters "
                     "cannot be hashed (%s: %s)", idx, type(exc).__name__, exc)
        return ("unhashable", idx)


def _split_for_workers(groups, n_workers):
    groups = [list(g) for g in groups]
    while len(groups) < n_workers:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        if len(groups[largest]) < 2:
            break
        group = groups.pop(largest)
        half = len(group) // 2
        groups[largest:largest] = [group[:half], group[half:]]
    return groups


def fit_and_score_group(estimator, data, split_idx, candidates, *, scorer,
                        score_params=None, return_train_score=False,
                        error_score=float("nan"), verbose=0, progress=None):
    """Fit the shared prefix once, then each candidate's final step; score each.

    Parameters
    ----------
    estimator : Pipeline
        Unfitted template.
    data : dict
        Shared ``"X"``, ``"y"``, ``"splits"``.
    split_idx : int
    candidates : list of (int, dict)
        ``(candidate_idx, parameters)``; all share the prefix parameters.
    scorer, score_params, return_train_score, error_score, verbose, progress
        As :func:`~parml.model_selection._fit_and_score.fit_and_score`.

    Returns
    -------
    records : list of FitRecord
    """
    X = data["X"]
    train, test = data["splits"][split_idx]
    score_params = score_params or {}
    train_params = _compat.check_method_params(X, score_params, train)
    test_params = _compat.check_method_params(X, score_params, test)
    first = clone(estimator).set_params(**clone(candidates[0][1], safe=False))
    start = time.time()
    X_train, y_train, X_test, y_test = split_data(first, data, split_idx)
    prefix, Xt_train, prefix_error = _fit_prefix(first, X_train, y_train, error_score)
    prefix_share = (time.time() - start) / len(candidates)
    folds = (X_train, y_train, Xt_train, X_test, y_test)

    records = []
    for position, (cand_idx, params) in enumerate(candidates):
        fit_start, fit_error = time.time(), prefix_error
        # Each candidate gets the folds in the state its own fit would see:
        # its final step (or its scoring, through the prefix) may write into
        # them, as scikit-learn's copy_X=False models and copy=False scalers do.
        last = position == len(candidates) - 1
        x_tr, y_tr, xt_tr, x_te, y_te = folds if last or fit_error else private_copies(folds)
        pipeline = clone(estimator).set_params(**clone(params, safe=False))
        if fit_error is None:
            pipeline.steps[:-1] = prefix.steps
            fit_error = _fit_final(pipeline.steps[-1][1], xt_tr, y_tr, error_score)
        fit_time = prefix_share + time.time() - fit_start
        records.append(scored_record(
            pipeline, cand_idx, split_idx, fit_time, fit_error,
            (x_tr, y_tr, train_params), (x_te, y_te, test_params),
            scorer=scorer, return_train_score=return_train_score, return_estimator=False,
            error_score=error_score, verbose=verbose, progress=progress, parameters=params,
        ))
    return records


def _fit_prefix(pipeline, X_train, y_train, error_score):
    """``(prefix, Xt_train, error)``: the fitted prefix and its output, or the traceback."""
    try:
        prefix = Pipeline(pipeline.steps[:-1])
        return prefix, prefix.fit_transform(X_train, y_train), None
    except Exception:
        if error_score == "raise":
            raise
        return None, None, format_exc()


def _fit_final(final, Xt_train, y_train, error_score):
    """Fit the final step on the prefix output; the traceback if it fails."""
    if final in (None, "passthrough"):
        return None
    try:
        final.fit(Xt_train, y_train)
    except Exception:
        if error_score == "raise":
            raise
        return format_exc()
    return None


def lost_group_records(reason, *, candidate_idxs, split_idx, scorer, return_train_score,
                       error_score):
    """``Task.on_lost`` of a group task: a failed record for every candidate."""
    return [
        FitRecord(
            candidate_idx=idx, split_idx=split_idx,
            test_scores=error_scores(scorer, error_score),
            train_scores=error_scores(scorer, error_score) if return_train_score else None,
            n_test_samples=0, fit_time=0.0, score_time=0.0,
            fit_error=lost_task_message(reason, "fit"),
        )
        for idx in candidate_idxs
    ]
