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

import time
from traceback import format_exc

import joblib
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from .. import _compat
from ._fit_and_score import FitRecord, error_scores, scored_record, split_data


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
        groups.setdefault(joblib.hash(prefix), []).append(idx)
    groups = list(groups.values())
    if len(groups) == len(candidate_params):
        return None
    return _split_for_workers(groups, n_workers)


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
    first = clone(estimator).set_params(**clone(candidates[0][1], safe=False))
    start = time.time()
    X_train, y_train, X_test, y_test = split_data(first, data, split_idx)
    train_part = (X_train, y_train, _compat.check_method_params(X, score_params, train))
    test_part = (X_test, y_test, _compat.check_method_params(X, score_params, test))
    prefix_error = None
    try:
        prefix = Pipeline(first.steps[:-1])
        Xt_train = prefix.fit_transform(X_train, y_train)
    except Exception:
        if error_score == "raise":
            raise
        prefix_error = format_exc()
    prefix_share = (time.time() - start) / len(candidates)

    records = []
    for cand_idx, params in candidates:
        pipeline = clone(estimator).set_params(**clone(params, safe=False))
        fit_start, fit_error = time.time(), prefix_error
        if fit_error is None:
            pipeline.steps[:-1] = prefix.steps
            try:
                final = pipeline.steps[-1][1]
                if final not in (None, "passthrough"):
                    final.fit(Xt_train, y_train)
            except Exception:
                if error_score == "raise":
                    raise
                fit_error = format_exc()
        fit_time = prefix_share + time.time() - fit_start
        records.append(scored_record(
            pipeline, cand_idx, split_idx, fit_time, fit_error, train_part, test_part,
            scorer=scorer, return_train_score=return_train_score, return_estimator=False,
            error_score=error_score, verbose=verbose, progress=progress, parameters=params,
        ))
    return records


def lost_group_records(reason, *, candidate_idxs, split_idx, scorer, return_train_score,
                       error_score):
    """``Task.on_lost`` of a group task: a failed record for every candidate."""
    return [
        FitRecord(
            candidate_idx=idx, split_idx=split_idx,
            test_scores=error_scores(scorer, error_score),
            train_scores=error_scores(scorer, error_score) if return_train_score else None,
            n_test_samples=0, fit_time=0.0, score_time=0.0,
            fit_error=f"The worker running this fit died: {reason}",
        )
        for idx in candidate_idxs
    ]
