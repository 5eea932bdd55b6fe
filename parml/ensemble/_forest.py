"""BaggedForest: a bagged ensemble whose members are scheduler tasks."""

import time
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import (
    ClassifierTags,
    RegressorTags,
    check_array,
    check_random_state,
    column_or_1d,
    get_tags,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _compat
from .._compat import HasMethods, Interval, RealNotInt
from .._live_backend import PortableBackendMixin
from ..scheduler import Scheduler, Task, check_backend, is_dask_backend
from ..tracing import logger
from ._checks import check_fit
from ._members import (
    MAX_INT,
    Draw,
    draw_member,
    fit_member,
    fits_by_weight,
    sum_predictions,
    vote_weights,
)
from ._oob import oob_estimate
from ._partitions import from_dask, from_shards, is_dask_collection, warn_small


def _default_member():
    """A random forest's tree: the member of ``BaggedForest(estimator=None)``."""
    return DecisionTreeClassifier(max_features="sqrt")


def _classifier(forest):
    return is_classifier(forest._template())


def _regressor(forest):
    return not _classifier(forest)


class BaggedForest(PortableBackendMixin, MetaEstimatorMixin, BaseEstimator):
    """A bagged ensemble fitted in parallel: a random forest by default.

    Each member is a clone of ``estimator`` fitted on a random draw of the
    samples (and optionally of the features), as one task of parml's
    scheduler: on local cores (the data memory-mapped once and shared, never
    copied per member) or on a Dask cluster. With a classifier the forest is
    a classifier and averages its members' ``predict_proba`` (a hard vote for
    members without it); with a regressor it is a regressor and averages
    their predictions.

    Data already split into partitions, a list of ``(X, y)`` shards or a dask
    array on a cluster, is fitted with :meth:`fit_partitions`: each member
    learns from one partition, on the worker that holds it.

    Parameters
    ----------
    estimator : estimator object, default=None
        The member to clone. None is a random forest's tree,
        ``DecisionTreeClassifier(max_features="sqrt")``. Pass a regressor
        (e.g. ``DecisionTreeRegressor()``) for a regression forest. Its
        parameters can be set or searched as ``estimator__<name>`` even when
        it is None: ``set_params(estimator__max_depth=3)`` first sets
        ``estimator`` to a new default tree.
    n_estimators : int, default=100
        Number of members.
    max_samples : int or float, default=1.0
        Samples drawn for each member: a count, or a fraction of the rows
        (of the member's partition in partition mode).
    max_features : int or float, default=1.0
        Features drawn for each member: a count, or a fraction of the columns.
    bootstrap : bool, default=True
        Draw samples with replacement.
    bootstrap_features : bool, default=False
        Draw features with replacement.
    oob_score : bool, default=False
        Score the forest on each row with the members that did not see it
        (needs ``bootstrap=True``).
    warm_start : bool, default=False
        Keep the fitted members and add new ones up to ``n_estimators``. A
        forest grown in steps equals one fitted at once.
    n_jobs : int, default=None
        Number of workers, with joblib's meaning (None is 1 unless inside a
        :func:`joblib.parallel_config` context; -1 is all cores). Also the
        number of threads that predict.
    backend : str, distributed.Client or None, default=None
        The engine that fits the members (see the engines guide): None follows
        :func:`joblib.parallel_config` (loky processes by default), ``"loky"``,
        ``"threading"``, ``"dask"`` or a Dask client / scheduler address.
    random_state : int, RandomState instance or None, default=None
        Seeds every member's draws and its own ``random_state``: member ``i``
        depends on ``random_state`` and ``i`` only, so an int gives the same
        forest for any ``n_jobs`` and engine.
    verbose : int, default=0
        Print a line per fit when > 0 (it is always logged to the ``"parml"``
        logger).
    progress : bool, default=False
        Show a progress bar of fitted members (``pip install "parml[progress]"``).

    Attributes
    ----------
    estimator_ : estimator object
        The unfitted member every member was cloned from.
    estimators_ : list of estimators
        The fitted members.
    estimators_features_ : list of ndarray
        The features each member was fitted on.
    estimators_partitions_ : ndarray of shape (n_estimators,)
        The partition each member learned from (all 0 unless fitted with
        :meth:`fit_partitions`).
    classes_ : ndarray of shape (n_classes,)
        The class labels (classifiers only).
    n_classes_ : int
        The number of classes (classifiers only).
    oob_score_ : float
        Accuracy (classifier) or R^2 (regressor) of the out-of-bag estimate,
        when ``oob_score=True``.
    oob_decision_function_ : ndarray of shape (n_samples, n_classes)
        Out-of-bag class probabilities (classifiers with ``oob_score=True``).
    oob_prediction_ : ndarray of shape (n_samples,)
        Out-of-bag predictions (regressors with ``oob_score=True``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.
    trace_ : list of dict
        Where and when each member was fitted: ``member``, ``partition``,
        ``worker``, ``host``, ``pid``, ``thread``, ``start``, ``end`` (seconds
        since the epoch), ``duration`` and ``fit_time``;
        :func:`parml.plot.timeline` draws it.

    See Also
    --------
    sklearn.ensemble.RandomForestClassifier : sklearn's random forest (threads).
    sklearn.ensemble.BaggingClassifier : sklearn's bagging meta-estimator.

    Notes
    -----
    Tree members (any :class:`sklearn.tree.BaseDecisionTree`) are fitted as
    random forests fit them: on all rows, with each row weighted by the
    number of times it was drawn, so the shared data is never copied. Other
    members are fitted on the drawn rows. ``X`` is converted to float32 once
    for tree members, as trees would do on every fit.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from parml import BaggedForest
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> forest = BaggedForest(n_estimators=10, random_state=0).fit(X, y)
    >>> forest.predict(X[:3])
    array([0, 0, 1])
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 1, None, closed="left"),
                        Interval(RealNotInt, 0, 1, closed="right")],
        "max_features": [Interval(Integral, 1, None, closed="left"),
                         Interval(RealNotInt, 0, 1, closed="right")],
        "bootstrap": ["boolean"],
        "bootstrap_features": ["boolean"],
        "oob_score": ["boolean"],
        "warm_start": ["boolean"],
        "n_jobs": [None, Integral],
        "backend": [str, None, object],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        estimator=None,
        n_estimators=100,
        *,
        max_samples=1.0,
        max_features=1.0,
        bootstrap=True,
        bootstrap_features=False,
        oob_score=False,
        warm_start=False,
        n_jobs=None,
        backend=None,
        random_state=None,
        verbose=0,
        progress=False,
    ):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.bootstrap_features = bootstrap_features
        self.oob_score = oob_score
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose
        self.progress = progress

    # -- type and tags follow the member ------------------------------------

    def _template(self):
        return _default_member() if self.estimator is None else self.estimator

    def set_params(self, **params):
        """Set the parameters of this forest, ``estimator__<name>`` ones included.

        With ``estimator=None``, ``estimator__<name>`` first sets ``estimator``
        to a new default tree, so the default's parameters can be searched.

        Parameters
        ----------
        **params : dict
            Parameters of the forest, and ``estimator__<name>`` for the member.

        Returns
        -------
        self : object
            This forest.
        """
        if params.get("estimator", self.estimator) is None and any(
                key.startswith("estimator__") for key in params):
            params = {**params, "estimator": _default_member()}
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self._template())
        tags.estimator_type = "classifier" if is_classifier(self._template()) else "regressor"
        if tags.estimator_type == "classifier":
            tags.classifier_tags = ClassifierTags()
            tags.regressor_tags = None
            tags.target_tags.multi_output = False
        else:
            tags.regressor_tags = RegressorTags()
            tags.classifier_tags = None
            tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.target_tags.required = True
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        return tags

    # -- fitting --------------------------------------------------------------

    @_compat.fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit ``n_estimators`` members, each on a random draw of ``(X, y)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. A dask array or dataframe is fitted partition by
            partition, as :meth:`fit_partitions` does.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values (several outputs for regressors that support them).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples; the member must accept ``sample_weight``.

        Returns
        -------
        self : object
            The fitted forest.
        """
        if is_dask_collection(X):
            if sample_weight is not None:
                raise ValueError("sample_weight is not supported with dask data; "
                                 "weigh rows in each partition with fit_partitions.")
            return self._fit_dask(X, y)
        classifier = _classifier(self)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], dtype=None,
                             ensure_all_finite=False, multi_output=not classifier)
        if classifier or (y.ndim == 2 and y.shape[1] == 1):
            y = column_or_1d(y, warn=True)
        if classifier:
            check_classification_targets(y)
            self.classes_, y = np.unique(y, return_inverse=True)
            self.n_classes_ = len(self.classes_)
        if sample_weight is not None:
            sample_weight = _compat.check_sample_weight(sample_weight, X)
        partitions = from_shards([(self._member_input(X), y, sample_weight)],
                                 is_classifier=False)
        return self._fit_members(partitions, classes=None)

    def fit_partitions(self, partitions, y=None):
        """Fit the members on data already split into partitions, where each lives.

        Member ``i`` learns from partition ``i % n_partitions`` only (on a
        random draw of its rows, as in :meth:`fit`): the partitions are never
        gathered or moved between workers. This is the "ensembles on
        partitions" way to fit a forest on data that does not fit one machine.

        Parameters
        ----------
        partitions : list of tuple, or dask array / dataframe
            Either a list of ``(X, y)`` or ``(X, y, sample_weight)`` shards in
            this process (all with the same columns), or a dask collection
            whose row chunks (partitions) are held by the workers of a Dask
            cluster; then each member is fitted on the worker that holds its
            chunk (the engine is ``backend``, or the current Dask client).
        y : dask array or series, default=None
            The targets when ``partitions`` is a dask collection (rechunked
            to its row chunks); None for a list of shards.

        Returns
        -------
        self : object
            The fitted forest.

        Notes
        -----
        Each member's vote (or prediction) is weighted by its partition's
        rows. A partition of one row, or of fewer rows than classes, is fitted
        with a warning naming it; an empty one is an error naming it.
        DataFrame partitions must share their columns, which set
        ``feature_names_in_`` (checked by :meth:`predict`, as in scikit-learn).
        """
        self._validate_params()
        if is_dask_collection(partitions):
            return self._fit_dask(partitions, y)
        if y is not None:
            raise ValueError("fit_partitions takes y inside each shard: pass "
                             "[(X0, y0), (X1, y1), ...] and leave y=None.")
        classifier = _classifier(self)
        parts = from_shards(partitions, is_classifier=classifier,
                            accept_sparse=("csr", "csc"))
        if self._tree_members():
            parts.X = [self._member_input(X) for X in parts.X]
        self._set_partition_attributes(parts, classifier, first=partitions[0][0])
        return self._fit_members(parts, classes=parts.classes)

    def _fit_dask(self, X, y):
        check_backend(self.backend)
        backend = self.backend
        if backend is not None and not is_dask_backend(backend):
            raise ValueError(
                f"X is a dask collection, whose partitions live on a Dask cluster, but "
                f"backend={backend!r} runs on this machine. Use backend=None or 'dask' "
                "(the current client) or pass the Dask client."
            )
        with Scheduler(backend="dask" if backend is None else backend, n_jobs=self.n_jobs,
                       progress=self.progress, desc=type(self).__name__) as scheduler:
            classifier = _classifier(self)
            parts = from_dask(X, y, scheduler, is_classifier=classifier)
            self._set_partition_attributes(parts, classifier)
            return self._fit_members(parts, classes=parts.classes, scheduler=scheduler)

    def _set_partition_attributes(self, parts, classifier, first=None):
        """Fitted attributes of a partitioned fit; warn about tiny partitions.

        ``feature_names_in_`` is read from ``first`` (partition 0's X, whose
        columns all partitions share) by ``validate_data``; dask X has none.
        """
        if first is not None:
            validate_data(self, first, reset=True, skip_check_array=True)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = parts.n_features
        if classifier:
            self.classes_ = parts.classes
            self.n_classes_ = len(parts.classes)
        warn_small(parts)

    def _tree_members(self):
        return fits_by_weight(self._template())

    def _member_input(self, X):
        """X as tree members read it (float32, CSC), converted once; else as is."""
        if self._tree_members():
            return check_array(X, dtype=np.float32, accept_sparse="csc",
                               ensure_all_finite=False)
        return X

    def _continuing(self):
        return self.warm_start and hasattr(self, "estimators_")

    def _fit_members(self, parts, classes, scheduler=None):
        check_fit(self, self._template(), parts)
        start = 0
        if self._continuing():
            start = len(self.estimators_)
            if self.n_estimators < start:
                raise ValueError(f"n_estimators={self.n_estimators} must be at least "
                                 f"len(estimators_)={start} when warm_start=True; raise "
                                 "n_estimators or set warm_start=False.")
            if self.n_estimators == start:
                warnings.warn("Warm-start fitting without increasing n_estimators does "
                              "not fit new members.", UserWarning)
                return self
        else:
            self.estimator_ = clone(self._template())
            self._seed = int(check_random_state(self.random_state).randint(MAX_INT))
            self.estimators_, self.estimators_features_ = [], []
            self._member_n_samples, self.trace_ = [], []
            self.estimators_partitions_ = np.zeros(0, dtype=int)
        draw = Draw(self.max_samples, self.max_features, self.bootstrap,
                    self.bootstrap_features)
        n_classes = self.n_classes_ if _classifier(self) else None
        indices = range(start, self.n_estimators)
        began = time.perf_counter()
        fitted = self._run_members(parts, indices, draw, n_classes, classes, scheduler)
        self._merge(fitted, parts, indices, n_classes)
        message = (f"{type(self).__name__}: fitted {len(indices)} members on "
                   f"{len(parts)} partition(s) in {time.perf_counter() - began:.2f} s")
        logger.info(message)
        if self.verbose > 0:
            print(message)
        return self

    def _run_members(self, parts, indices, draw, n_classes, classes, scheduler):
        if scheduler is None:
            with Scheduler(backend=self.backend, n_jobs=self.n_jobs, progress=self.progress,
                           desc=type(self).__name__) as scheduler:
                return self._run_on(scheduler, parts, indices, draw, n_classes, classes)
        return self._run_on(scheduler, parts, indices, draw, n_classes, classes)

    def _run_on(self, scheduler, parts, indices, draw, n_classes, classes):
        if parts.where is None:  # in this process: share once with the workers
            data = {}
            for j in range(len(parts)):
                data[f"X{j}"], data[f"y{j}"] = parts.X[j], parts.y[j]
                data[f"w{j}"] = None if parts.sample_weight is None else parts.sample_weight[j]
            shared = scheduler.share(data)
            handles = [(shared[f"X{j}"], shared[f"y{j}"], shared[f"w{j}"])
                       for j in range(len(parts))]
        else:  # futures of chunks held by workers
            handles = [(parts.X[j], parts.y[j], None) for j in range(len(parts))]
        tasks = []
        for i in indices:
            j = i % len(parts)
            X, y, weight = handles[j]
            tasks.append(Task(
                key=i, func=fit_member,
                kwargs=dict(estimator=self.estimator_, X=X, y=y, sample_weight=weight,
                            seed=self._seed, index=i, draw=draw, oob=self.oob_score,
                            n_classes=n_classes, classes=classes),
                where=None if parts.where is None else parts.where[j],
            ))
        records = {}
        for record in scheduler.run(tasks):
            records[record.key] = record
        return records

    def _merge(self, records, parts, indices, n_classes):
        n_features = parts.n_features
        for i in indices:
            record, j = records[i], i % len(parts)
            member = record.value
            self.estimators_.append(member.estimator)
            self.estimators_features_.append(
                np.arange(n_features) if member.features is None else member.features)
            self._member_n_samples.append(parts.n_samples[j])
            self.trace_.append({
                "member": i, "partition": j, "worker": record.worker, "host": record.host,
                "pid": record.pid, "thread": record.thread, "start": record.start,
                "end": record.end,
                "duration": record.end - record.start, "fit_time": member.fit_time,
            })
        self.estimators_partitions_ = np.concatenate(
            [self.estimators_partitions_, [i % len(parts) for i in indices]]).astype(int)
        if self.oob_score:
            members = {i: records[i].value for i in indices}
            for name, value in oob_estimate(members, parts, indices, n_classes).items():
                setattr(self, name, value)

    # -- prediction -----------------------------------------------------------

    def _summed(self, X, n_classes):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=None,
                          ensure_all_finite=False, reset=False)
        if self._tree_members():
            X = check_array(X, dtype=np.float32, accept_sparse="csr",
                            ensure_all_finite=False)
        weights = vote_weights(self._member_n_samples)
        members = [(member, self._cols(features), weight) for member, features, weight
                   in zip(self.estimators_, self.estimators_features_, weights)]
        with Scheduler(backend="threading", n_jobs=self.n_jobs) as scheduler:
            n_groups = min(scheduler.n_workers, len(members))
            tasks = [Task(key=g, func=sum_predictions,
                          kwargs=dict(members=members[g::n_groups], X=X, n_classes=n_classes))
                     for g in range(n_groups)]
            total = sum(record.value for record in scheduler.run(tasks))
        return total / weights.sum()

    def _cols(self, features):
        if len(features) == self.n_features_in_ and np.array_equal(
                features, np.arange(self.n_features_in_)):
            return None
        return features

    @available_if(_classifier)
    def predict_proba(self, X):
        """Class probabilities: the mean of the members' (votes where they have none).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        return self._summed(X, self.n_classes_)

    @available_if(_classifier)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted class (highest mean probability) or mean prediction of the members.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        if _classifier(self):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return self._summed(X, None)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifier) or R^2 (regressor) on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        metric = accuracy_score if _classifier(self) else r2_score
        return metric(y, self.predict(X), sample_weight=sample_weight)

    # -- fitted attributes derived from the members ---------------------------

    @property
    def estimators_samples_(self):
        """The rows each member drew (indices into its partition; repeats if bootstrap)."""
        check_is_fitted(self)
        draw = Draw(self.max_samples, self.max_features, self.bootstrap,
                    self.bootstrap_features)
        return [draw_member(self._seed, i, n, self.n_features_in_, draw)[2]
                for i, n in enumerate(self._member_n_samples)]

    @property
    def feature_importances_(self):
        """Mean of the members' ``feature_importances_``, normalised to sum to 1."""
        check_is_fitted(self)
        if not all(hasattr(m, "feature_importances_") for m in self.estimators_):
            raise AttributeError(f"The members ({type(self.estimator_).__name__}) have no "
                                 "feature_importances_.")
        total = np.zeros(self.n_features_in_)
        for member, features in zip(self.estimators_, self.estimators_features_):
            np.add.at(total, features, member.feature_importances_)
        return total / total.sum() if total.sum() > 0 else total
