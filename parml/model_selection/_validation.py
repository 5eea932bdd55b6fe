"""cross_val_parallel: scikit-learn's ``cross_validate`` on parml's scheduler."""

import os
from numbers import Integral, Real

import joblib
import numpy as np
from sklearn import get_config
from sklearn.base import is_classifier
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.utils import Bunch, indexable
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)

from .. import _compat
from ..scheduler import Scheduler, Task, check_backend, store_folder
from ._checks import check_consistent_length
from ._fingerprint import fit_fingerprint, stored_failure, task_keys
from ._fit_and_score import fit_and_score, on_lost_handler
from ._results import (
    fill_error_scores,
    format_cross_validate,
    warn_or_raise_about_fit_failures,
)


@_compat.validate_params(
    {
        "estimator": [_compat.HasMethods("fit")],
        "X": ["array-like", "sparse matrix"],
        "y": ["array-like", None],
        "groups": ["array-like", None],
        "scoring": [
            _compat.StrOptions(set(get_scorer_names())),
            callable,
            list,
            tuple,
            dict,
            None,
        ],
        "cv": ["cv_object"],
        "n_jobs": [
            _compat.Interval(Integral, 1, None, closed="left"),
            _compat.Interval(Integral, None, -1, closed="right"),
            None,
        ],
        "backend": [str, None, object],
        "verbose": ["verbose"],
        "params": [dict, None],
        "pre_dispatch": [Integral, str],
        "return_train_score": ["boolean"],
        "return_estimator": ["boolean"],
        "return_indices": ["boolean"],
        "error_score": [_compat.StrOptions({"raise"}), Real],
        "progress": ["boolean"],
        "memory": [str, os.PathLike, joblib.Memory, None],
        "max_retries": [_compat.Interval(Integral, 0, None, closed="left")],
        "timeout": [_compat.Interval(Real, 0, None, closed="neither"), None],
    },
    prefer_skip_nested_validation=False,
)
def cross_val_parallel(
    estimator,
    X,
    y=None,
    *,
    groups=None,
    scoring=None,
    cv=None,
    n_jobs=None,
    backend=None,
    verbose=0,
    params=None,
    pre_dispatch="2*n_jobs",
    return_train_score=False,
    return_estimator=False,
    return_indices=False,
    error_score=np.nan,
    progress=False,
    memory=None,
    max_retries=2,
    timeout=None,
):
    """Evaluate metric(s) by cross-validation, one split per parallel task.

    Returns the same dict as :func:`sklearn.model_selection.cross_validate`,
    with the same values; the splits run on parml's scheduler (data shared
    once with the workers, results merged by split).

    Parameters
    ----------
    estimator : estimator object implementing 'fit'
        The object to fit on each training split.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The data to fit.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        The target, for supervised learning.
    groups : array-like of shape (n_samples,), default=None
        Group labels for a group splitter such as
        :class:`~sklearn.model_selection.GroupKFold` (only without metadata
        routing; with routing, pass ``params={"groups": groups}``).
    scoring : str, callable, list, tuple, dict or None, default=None
        One metric or several, as in scikit-learn.
    cv : int, cross-validation generator or iterable, default=None
        The splitting strategy (5-fold by default, stratified for classifiers).
    n_jobs : int, default=None
        Number of workers. ``None`` means 1 unless inside a
        :func:`joblib.parallel_config` context; ``-1`` means all processors.
    backend : str or None, default=None
        Where tasks run: None follows :func:`joblib.parallel_config` (else
        ``"loky"``), ``"threading"``, or a registered joblib backend name.
    verbose : int, default=0
        Verbosity, with scikit-learn's meaning.
    params : dict, default=None
        Parameters passed to the estimator's ``fit`` (per-sample values are
        split with the data), the scorer and the splitter.
    pre_dispatch : int or str, default="2*n_jobs"
        How many tasks are dispatched ahead of the workers.
    return_train_score : bool, default=False
        Also score each fit on its training split.
    return_estimator : bool, default=False
        Return the estimator fitted on each split.
    return_indices : bool, default=False
        Return the train and test indices of each split.
    error_score : 'raise' or numeric, default=np.nan
        Score given to a fit that raises; ``'raise'`` re-raises.
    progress : bool, default=False
        Show a progress bar counting finished fits (``parml[progress]``).
    memory : str, os.PathLike, joblib.Memory or None, default=None
        A result store (a folder): finished splits are written there as they
        arrive and reused by a later call with the same inputs.
    max_retries : int, default=2
        Runs of a fit whose worker died, before it is recorded as failed.
    timeout : float or None, default=None
        Seconds one fit may run before it is stopped and recorded as failed.

    Returns
    -------
    scores : dict of float arrays of shape (n_splits,)
        ``fit_time``, ``score_time``, ``test_<metric>`` (``test_score`` for a
        single metric), and ``train_<metric>``, ``estimator``, ``indices``
        when requested.

    See Also
    --------
    sklearn.model_selection.cross_validate : The scikit-learn original.
    ParallelGridSearchCV : Cross-validate a grid of candidates.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Lasso
    >>> from parml import cross_val_parallel
    >>> X, y = load_diabetes(return_X_y=True)
    >>> result = cross_val_parallel(Lasso(), X[:150], y[:150], cv=3, n_jobs=2)
    >>> sorted(result)
    ['fit_time', 'score_time', 'test_score']
    >>> result["test_score"].round(3)
    array([0.332, 0.08 , 0.035])
    """
    check_backend(backend)
    _check_groups_routing_disabled(groups)
    check_consistent_length(X, y)
    X, y = indexable(X, y)
    cv = check_cv(cv, y, classifier=is_classifier(estimator))
    scorers = check_scoring(estimator, scoring=scoring, raise_exc=(error_score == "raise"))
    routed = _route(estimator, cv, scorers, groups, {} if params is None else params)
    splits = list(cv.split(X, y, **routed.splitter.split))
    keys = {}
    if store_folder(memory) is not None:
        fingerprint = fit_fingerprint(
            estimator, X, y, routed, scorers, error_score=error_score,
            return_train_score=return_train_score, return_estimator=return_estimator,
        )
        keys = task_keys(fingerprint, [{}], splits)
    options = dict(scorer=scorers, return_train_score=return_train_score,
                   error_score=error_score)
    with Scheduler(
        backend, n_jobs, pre_dispatch, progress, "cross_val_parallel",
        max_retries=max_retries, memory=memory, timeout=timeout,
    ) as sched:
        data = sched.share({"X": X, "y": y, "splits": splits})
        tasks = [_split_task(estimator, data, split_idx, routed, options,
                             keys.get((0, split_idx)), return_estimator=return_estimator,
                             verbose=verbose)
                 for split_idx in range(len(splits))]
        records = [record.value for record in sched.run(tasks)]
    warn_or_raise_about_fit_failures(records, error_score)
    if callable(scoring):
        fill_error_scores(records, error_score)
    result = format_cross_validate(records, len(splits), return_train_score=return_train_score,
                                   return_estimator=return_estimator)
    if return_indices:
        train, test = zip(*splits)
        result["indices"] = {"train": train, "test": test}
    return result


def _split_task(estimator, data, split_idx, routed, options, cache_key, *,
                return_estimator, verbose):
    """The task that fits and scores ``estimator`` on split ``split_idx``.

    ``options`` holds ``scorer``, ``return_train_score`` and ``error_score``.
    """
    return Task(
        key=(0, split_idx),
        func=fit_and_score,
        kwargs=dict(
            estimator=estimator, data=data, split_idx=split_idx,
            fit_params=routed.estimator.fit, score_params=routed.scorer.score,
            return_estimator=return_estimator, verbose=verbose, **options,
        ),
        on_lost=on_lost_handler(candidate_idx=0, split_idx=split_idx, **options),
        cache_key=cache_key,
        rerun_stored=stored_failure,
    )


def _route(estimator, cv, scorers, groups, params):
    """Route ``params`` to splitter, estimator and scorer, as ``cross_validate``."""
    if not get_config()["enable_metadata_routing"]:
        return Bunch(
            splitter=Bunch(split={"groups": groups}),
            estimator=Bunch(fit=params),
            scorer=Bunch(score={}),
        )
    router = (
        MetadataRouter(owner="cross_val_parallel")
        .add(splitter=cv, method_mapping=MethodMapping().add(caller="fit", callee="split"))
        .add(
            estimator=estimator,
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )
        .add(scorer=scorers, method_mapping=MethodMapping().add(caller="fit", callee="score"))
    )
    try:
        return process_routing(router, "fit", **params)
    except UnsetMetadataPassedError as exc:
        # As cross_validate: the user called cross_val_parallel, not its "fit".
        raise UnsetMetadataPassedError(
            message=str(exc).replace("cross_val_parallel.fit", "cross_val_parallel"),
            unrequested_params=exc.unrequested_params,
            routed_params=exc.routed_params,
        ) from None


def _check_groups_routing_disabled(groups):
    """Raise if ``groups`` is passed while metadata routing is enabled, as scikit-learn."""
    if groups is not None and get_config()["enable_metadata_routing"]:
        raise ValueError(
            "`groups` can only be passed if metadata routing is not enabled via"
            " `sklearn.set_config(enable_metadata_routing=True)`. When routing is"
            " enabled, pass `groups` alongside other metadata via the `params` argument"
            " instead."
        )
