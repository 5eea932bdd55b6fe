"""Warm start between rungs: a promoted candidate continues from its fitted state.

When the resource of a halving search is the parameter that an estimator's
``warm_start`` grows (the trees of a forest, the stages of gradient boosting,
the members of a bagging ensemble, the iterations of histogram gradient
boosting), a candidate promoted from ``r`` to ``factor * r`` resources needs
only the ``factor * r - r`` new members: the fitted estimator of the rung
below travels with the promoted task and is fitted further
(:func:`warm_fit_and_score`). For a forest with an int ``random_state`` the
result is the estimator a fit from scratch gives (its new trees draw the same
seeds); other estimators continue as their ``warm_start`` documents.
"""

import copy
import time
from traceback import format_exc

from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
    RandomTreesEmbedding,
)

from .. import _compat
from ._fit_and_score import fit_and_score, scored_record, split_data

__all__ = ["WARM_STARTABLE", "warm_fit_and_score", "warm_start_parameter"]

#: Estimators whose ``warm_start=True`` keeps the fitted members and adds new
#: ones up to the resource parameter: ``(class, resource parameter)``.
#: Subclasses qualify too. Iterative models whose ``warm_start`` restarts the
#: optimiser from the last solution for ``max_iter`` *more* iterations
#: (LogisticRegression, SGD, MLP) do not: their resource would not mean the
#: same thing, so they are fitted from scratch on every rung.
WARM_STARTABLE = (
    (RandomForestClassifier, "n_estimators"),
    (RandomForestRegressor, "n_estimators"),
    (ExtraTreesClassifier, "n_estimators"),
    (ExtraTreesRegressor, "n_estimators"),
    (RandomTreesEmbedding, "n_estimators"),
    (GradientBoostingClassifier, "n_estimators"),
    (GradientBoostingRegressor, "n_estimators"),
    (BaggingClassifier, "n_estimators"),
    (BaggingRegressor, "n_estimators"),
    (IsolationForest, "n_estimators"),
    (HistGradientBoostingClassifier, "max_iter"),
    (HistGradientBoostingRegressor, "max_iter"),
)


def warm_start_parameter(estimator, resource):
    """Whether ``estimator`` can continue a fit to more ``resource``.

    Parameters
    ----------
    estimator : estimator
        The search's estimator (not a pipeline: its steps are fitted again
        anyway, so a pipeline is fitted from scratch on every rung).
    resource : str
        The search's ``resource``.

    Returns
    -------
    qualifies : bool
        True when ``estimator`` is one of :data:`WARM_STARTABLE` (or a
        subclass) with ``resource`` as its growing parameter, and has a
        ``warm_start`` parameter.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.svm import SVC
    >>> warm_start_parameter(RandomForestClassifier(), "n_estimators")
    True
    >>> warm_start_parameter(RandomForestClassifier(), "n_samples")
    False
    >>> warm_start_parameter(SVC(), "max_iter")
    False
    """
    if "warm_start" not in estimator.get_params(deep=False):
        return False
    return any(isinstance(estimator, cls) and resource == name for cls, name in WARM_STARTABLE)


def warm_fit_and_score(estimator, data, split_idx, *, fitted=None, resource, n_resources,
                       parameters=None, candidate_idx=0, scorer, fit_params=None,
                       score_params=None, return_train_score=False, return_estimator=False,
                       error_score=float("nan"), verbose=0, progress=None):
    """Fit ``fitted`` further to ``n_resources`` on one split (warm start), and score it.

    Without ``fitted`` (the first rung, or a fit of the rung below that
    failed) this is :func:`~._fit_and_score.fit_and_score` from scratch.

    Parameters
    ----------
    estimator : estimator
        Unfitted template (used when ``fitted`` is None).
    data : dict
        Shared X, y and splits (see :func:`~._fit_and_score.fit_and_score`).
    split_idx : int
    fitted : estimator or None
        The candidate's estimator fitted on this split at the rung below. A
        copy is fitted further: the object given is left as it was.
    resource : str
        The parameter that grows (``n_estimators``, ``max_iter``).
    n_resources : int
        Its value on this rung (also in ``parameters``).
    parameters : dict or None
        The candidate's parameters, ``resource`` included.
    candidate_idx : int
    scorer, fit_params, score_params, return_train_score, return_estimator,
    error_score, verbose, progress
        As for :func:`~._fit_and_score.fit_and_score`.

    Returns
    -------
    record : FitRecord
        Its ``fit_time`` counts only the fit that continued.
    """
    options = dict(candidate_idx=candidate_idx, parameters=parameters, scorer=scorer,
                   fit_params=fit_params, score_params=score_params,
                   return_train_score=return_train_score, return_estimator=return_estimator,
                   error_score=error_score, verbose=verbose, progress=progress)
    if fitted is None:
        return fit_and_score(estimator, data, split_idx, **options)
    X = data["X"]
    train, test = data["splits"][split_idx]
    model = copy.deepcopy(fitted)  # threads and one worker share the object given
    model.set_params(**{resource: n_resources, "warm_start": True})
    fit_params = _compat.check_method_params(X, params=fit_params or {}, indices=train)
    score_params = score_params or {}
    start = time.time()
    X_train, y_train, X_test, y_test = split_data(model, data, split_idx)
    fit_error = None
    try:
        model.fit(X_train, y_train, **fit_params)
    except Exception:
        if error_score == "raise":
            raise
        fit_error = format_exc()
    return scored_record(
        model, candidate_idx, split_idx, time.time() - start, fit_error,
        (X_train, y_train, _compat.check_method_params(X, params=score_params, indices=train)),
        (X_test, y_test, _compat.check_method_params(X, params=score_params, indices=test)),
        scorer=scorer, return_train_score=return_train_score,
        return_estimator=return_estimator, error_score=error_score, verbose=verbose,
        progress=progress, parameters=parameters,
    )
