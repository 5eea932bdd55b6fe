"""Input checks that fail early, naming the parameter, the value and the fix."""

from sklearn.base import clone

from .. import _compat


def check_consistent_length(X, y):
    """Raise if X and y have different numbers of samples."""
    if y is None:
        return
    n_X, n_y = _compat.num_samples(X), _compat.num_samples(y)
    if n_X != n_y:
        raise ValueError(
            f"X and y must have the same number of samples; got X with {n_X} "
            f"and y with {n_y}. Pass the targets that belong to the rows of X."
        )


def check_candidates(estimator, candidate_params, param_name):
    """Raise if a candidate names a parameter the estimator does not have.

    Each distinct set of names is tried once on a clone, so an unknown name
    fails before any worker starts (instead of as a failed fit per task).
    """
    seen = set()
    for params in candidate_params:
        names = frozenset(params)
        if names in seen:
            continue
        seen.add(names)
        try:
            clone(estimator).set_params(**clone(params, safe=False))
        except ValueError as exc:
            raise ValueError(
                f"The {param_name!r} parameter names a parameter that "
                f"{type(estimator).__name__} does not have: {exc}"
            ) from exc


def check_refit_for_multimetric(refit, scores):
    """Raise unless ``refit`` is False, a callable or one of the metric names."""
    if refit is False or callable(refit) or (isinstance(refit, str) and refit in scores):
        return
    raise ValueError(
        "For multi-metric scoring, the parameter refit must be set to a "
        "scorer key or a callable to refit an estimator with the best "
        "parameter setting on the whole data and make the best_* "
        "attributes available for that metric. If this is not needed, "
        f"refit should be set to False explicitly. {refit!r} was passed."
    )
