"""Merge fit records into results, by key. Pure functions: no engine, no estimator.

Records may arrive in any order (streaming, retries, resumed runs); every
function here indexes them by ``(candidate_idx, split_idx)``.
"""

import warnings
from collections import Counter, defaultdict

import numpy as np
from numpy.ma import MaskedArray
from scipy.stats import rankdata
from sklearn.exceptions import FitFailedWarning


def records_by_key(records, n_candidates, n_splits):
    """Arrange records in a ``n_candidates x n_splits`` grid (a list of lists).

    Raises
    ------
    ValueError
        If a key is missing or appears twice.
    """
    grid = [[None] * n_splits for _ in range(n_candidates)]
    for record in records:
        cell = grid[record.candidate_idx][record.split_idx]
        if cell is not None:
            raise ValueError(
                f"Two results for candidate {record.candidate_idx}, split "
                f"{record.split_idx}."
            )
        grid[record.candidate_idx][record.split_idx] = record
    missing = [
        (c, s) for c in range(n_candidates) for s in range(n_splits) if grid[c][s] is None
    ]
    if missing:
        raise ValueError(f"No result for (candidate, split) {missing[:5]}.")
    return grid


def warn_or_raise_about_fit_failures(records, error_score):
    """Report failed fits once, grouped by error, as scikit-learn does.

    Raises a ValueError if every fit failed; warns with a FitFailedWarning if
    some did.
    """
    fit_errors = [r.fit_error for r in records if r.fit_error is not None]
    if not fit_errors:
        return
    n_failed, n_fits = len(fit_errors), len(records)
    delimiter = "-" * 80 + "\n"
    summary = "\n".join(
        f"{delimiter}{n} fits failed with the following error:\n{error}"
        for error, n in Counter(fit_errors).items()
    )
    if n_failed == n_fits:
        raise ValueError(
            f"\nAll the {n_fits} fits failed.\n"
            "It is very likely that your model is misconfigured.\n"
            "You can try to debug the error by setting error_score='raise'.\n\n"
            f"Below are more details about the failures:\n{summary}"
        )
    warnings.warn(
        f"\n{n_failed} fits failed out of a total of {n_fits}.\n"
        "The score on these train-test partitions for these parameters"
        f" will be set to {error_score}.\n"
        "If these failures are not expected, you can try to debug them "
        "by setting error_score='raise'.\n\n"
        f"Below are more details about the failures:\n{summary}",
        FitFailedWarning,
    )


def fill_error_scores(records, error_score):
    """Give failed fits a score dict with the metric names of successful ones.

    Needed when ``scoring`` is a callable returning a dict: a failed fit only
    knows ``error_score``, the metric names come from the successful fits.
    """
    names = next(
        (r.test_scores for r in records if r.fit_error is None), None
    )
    if not isinstance(names, dict):
        return
    for record in records:
        if record.fit_error is not None:
            record.test_scores = {name: error_score for name in names}
            if record.train_scores is not None:
                record.train_scores = {name: error_score for name in names}


def scores_by_metric(scores):
    """``{metric: list of scores}`` from a list of floats or of dicts."""
    if isinstance(scores[0], dict):
        return {name: [s[name] for s in scores] for name in scores[0]}
    return {"score": list(scores)}


def param_arrays(candidate_params):
    """``{"param_<name>": MaskedArray}``, masked where a candidate lacks the name.

    The dtype is inferred as numpy would for the values, except that strings
    and values that form several dimensions give ``object`` (as scikit-learn).
    """
    values = defaultdict(dict)
    for idx, params in enumerate(candidate_params):
        for name, value in params.items():
            values[f"param_{name}"][idx] = value
    arrays = {}
    for key, by_idx in values.items():
        try:
            inferred = np.array(list(by_idx.values()))
        except ValueError:
            dtype = np.dtype(object)
        else:
            keep = inferred.dtype.kind != "U" and inferred.ndim == 1
            dtype = inferred.dtype if keep else np.dtype(object)
        array = MaskedArray(np.empty(len(candidate_params), dtype=dtype), mask=True)
        for idx, value in by_idx.items():
            array[idx] = value
        arrays[key] = array
    return arrays


def rank_scores(means):
    """Rank 1 for the best mean; NaNs tie with (after) the worst; int32."""
    if np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32, copy=False)


def _summarise(results, key_name, table, *, splits=False, rank=False):
    """Store mean/std (and per-split values, rank) of a candidates x splits table."""
    table = np.asarray(table, dtype=np.float64)
    if splits:
        for split_idx in range(table.shape[1]):
            results[f"split{split_idx}_{key_name}"] = table[:, split_idx]
    means = table.mean(axis=1)
    results[f"mean_{key_name}"] = means
    if key_name.startswith(("train_", "test_")) and not np.isfinite(means).all():
        warnings.warn(
            f"One or more of the {key_name.split('_')[0]} scores are non-finite: "
            f"{means}",
            category=UserWarning,
        )
    results[f"std_{key_name}"] = np.sqrt(((table - means[:, np.newaxis]) ** 2).mean(axis=1))
    if rank:
        results[f"rank_{key_name}"] = rank_scores(means)


def format_cv_results(candidate_params, n_splits, records, return_train_score,
                      more_results=None):
    """Build ``cv_results_`` from fit records, identical to scikit-learn's.

    Parameters
    ----------
    candidate_params : list of dict
    n_splits : int
    records : iterable of FitRecord
        One per (candidate, split), in any order.
    return_train_score : bool
    more_results : dict of str -> list, default=None
        Extra columns (``evaluate_candidates(..., more_results=...)``), one
        value per candidate. They come first, as arrays, as in scikit-learn;
        a computed key of the same name replaces one.

    Returns
    -------
    results : dict
    """
    grid = records_by_key(records, len(candidate_params), n_splits)
    flat = [record for row in grid for record in row]

    def table(values):
        return np.reshape(values, (len(candidate_params), n_splits))

    results = {key: np.asarray(values) for key, values in (more_results or {}).items()}
    _summarise(results, "fit_time", table([r.fit_time for r in flat]))
    _summarise(results, "score_time", table([r.score_time for r in flat]))
    results.update(param_arrays(candidate_params))
    results["params"] = candidate_params
    test = scores_by_metric([r.test_scores for r in flat])
    train = scores_by_metric([r.train_scores for r in flat]) if return_train_score else {}
    for name, values in test.items():
        _summarise(results, f"test_{name}", table(values), splits=True, rank=True)
        if return_train_score:
            _summarise(results, f"train_{name}", table(train[name]), splits=True)
    return results


def format_cross_validate(records, n_splits, *, return_train_score, return_estimator):
    """Build the dict of :func:`sklearn.model_selection.cross_validate`."""
    row = records_by_key(records, 1, n_splits)[0]
    out = {
        "fit_time": np.array([r.fit_time for r in row]),
        "score_time": np.array([r.score_time for r in row]),
    }
    if return_estimator:
        out["estimator"] = [r.estimator for r in row]
    test = scores_by_metric([r.test_scores for r in row])
    train = scores_by_metric([r.train_scores for r in row]) if return_train_score else {}
    for name in test:
        out[f"test_{name}"] = np.array(test[name])
        if return_train_score:
            out[f"train_{name}"] = np.array(train[name])
    return out
