"""AveragedSGD: SGD on data shards, the parameters averaged after every epoch.

Iterative parameter mixing: ``k`` workers each hold one shard of the rows;
every epoch each runs one pass of the wrapped estimator's ``partial_fit`` over
its shard, starting from the current averaged parameters, and an AllReduce
(:func:`parml.allreduce`) averages ``coef_`` and ``intercept_`` weighted by the
shard sizes. This module validates, opens a worker group of parml's scheduler
(``Scheduler.worker_group``), runs the epochs and decides when to stop; how
many shards and where they go is in ``_shards``, what a worker does each
epoch in ``_epoch_program``, and how parameters move between workers is the
business of ``parml.allreduce``.
"""

import numbers
import time
import warnings

import numpy as np
from joblib.parallel import BACKENDS, get_active_backend
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._compat import HasMethods, Interval, StrOptions, fit_context
from .._live_backend import PortableBackendMixin
from ..allreduce._rounds import open_rounds
from ..scheduler import Scheduler, check_backend, is_dask_backend
from ..scheduler._groups import group_size
from ..scheduler._progress import tqdm_class
from ._epoch_program import EpochProgram
from ._shards import (
    MIN_ROWS_PER_WORKER,
    check_shard_list,
    plan_arrays,
    plan_dask,
    plan_list,
    shard_rows,
    source_kind,
)

__all__ = ["AveragedSGD", "MIN_ROWS_PER_WORKER", "shard_rows"]  # the last two for tests


def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", None)
        if est is None:
            est = self._template()
        return hasattr(est, attr)

    return check


# --------------------------------------------------------------------------- #
# The estimator                                                                #
# --------------------------------------------------------------------------- #


class AveragedSGD(PortableBackendMixin, MetaEstimatorMixin, BaseEstimator):
    """Linear model trained by SGD on data shards, averaged after every epoch.

    Iterative parameter mixing (as Vowpal Wabbit's AllReduce): the rows are
    split into one shard per worker (stratified for classifiers, so every
    shard sees every class). Each epoch, every worker makes one pass of the
    wrapped estimator's ``partial_fit`` over its shard, starting from the
    current averaged parameters; then :func:`parml.allreduce` averages
    ``coef_`` and ``intercept_`` weighted by shard sizes. With ``k`` workers an
    epoch takes about ``1/k`` of a single-process epoch, at about the same
    accuracy.

    The workers are a worker group of parml's scheduler, on the same engine
    as every other parml tool: each keeps its shard and its state for the
    whole fit, and only the parameters move. Threads of this process by
    default; with ``backend="loky"`` the loky processes the searches use,
    started once per process and reused by every fit; on Dask the cluster's
    workers, on ipyparallel its engines.

    Read more in the :doc:`user guide </averaged_sgd>`.

    Parameters
    ----------
    estimator : estimator object, default=None
        A linear model with ``partial_fit``, ``coef_`` and ``intercept_``:
        ``SGDClassifier`` (the default, ``SGDClassifier()``),
        ``SGDRegressor``, ``Perceptron``, ``PassiveAggressiveClassifier`` or
        ``PassiveAggressiveRegressor``. Its own ``max_iter``, ``tol``,
        ``shuffle`` and ``random_state`` are replaced by this object's. Its
        parameters can be set or searched as ``estimator__<name>`` (e.g.
        ``estimator__alpha``) even when it is None: ``set_params`` then first
        sets ``estimator`` to a new ``SGDClassifier()``.
    n_jobs : int, default=None
        Number of workers, with joblib's meaning, as for every parml
        estimator: None is 1 unless inside a :func:`joblib.parallel_config`
        context that sets ``n_jobs``, -1 is all cores (on a Dask or
        ipyparallel cluster, None and -1 are all its workers). One shard per
        worker, fewer for small data: each shard gets at least 1,000 rows
        and, for classifiers, every shard sees every class (``n_workers_``
        says how many ran). Given shards (a list, or a dask array's blocks)
        set the number of workers themselves.
    max_iter : int, default=1000
    max_iter : int, default=1000
        Maximum number of epochs (passes over all the data).
    tol : float or None, default=1e-3
        Stop when the training loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs in a row, as ``SGDClassifier`` does. When
        the wrapped estimator has ``early_stopping=True``, the criterion is
        instead its score (accuracy or R^2) on ``validation_fraction`` of the
        rows, held out from every shard (stratified for classifiers), as in
        ``SGDClassifier``.
        ``None``: run ``max_iter`` epochs. The loss is that of the averaged
        model over all shards (the wrapped estimator's loss, without penalty),
        measured at the start of the next epoch, so stopping is decided one
        epoch later than by a single-process SGD.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    shuffle : bool, default=True
        Shuffle each shard before every pass (a new order each epoch).
    backend : str, distributed.Client, ipyparallel.Client or None, default=None
        Where the workers run, with the meaning of every parml estimator
        (see the engines guide). None follows :func:`joblib.parallel_config`
        when it names a backend; otherwise threads of this process, as
        scikit-learn's forests prefer: SGD's passes release the GIL, so
        threads run them in parallel without starting processes or copying
        shards. ``"threading"``: threads. ``"loky"`` (or ``"multiprocessing"``):
        the local worker processes every parml tool shares, each shard written
        once to a memory map they read. ``"sequential"``: every shard in this
        process, one after the other (the same model, no parallelism).
        ``"dask"``, a scheduler address or a ``distributed.Client``: the Dask
        cluster's workers. ``"ipyparallel"`` (or its string forms) or an
        ``ipyparallel.Client``: the cluster's engines. Fitted inside a worker
        (a search with ``n_jobs > 1``), a local backend runs in that worker's
        process, never a nested pool.
    random_state : int, RandomState instance or None, default=None
        Seeds the shard assignment and each worker's shuffling. A fixed value
        gives the same model, for the same number of workers, whatever the
        backend or the order in which the workers finish.
    verbose : int, default=0
        Print the loss and time of each epoch.
    progress : bool, default=False
        Show a progress bar over epochs (``parml[progress]``).
    n_workers : int or None
        Deprecated alias of ``n_jobs`` (a FutureWarning says so; ``None``
        there meant all cores, ``n_jobs=-1``). Use ``n_jobs``.

    Attributes
    ----------
    estimator_ : estimator object
        A clone of ``estimator`` holding the averaged parameters; predictions
        are delegated to it.
    coef_ : ndarray
        Averaged coefficients, shaped as the wrapped estimator's.
    intercept_ : ndarray
        Averaged intercept.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    n_iter_ : int
        Epochs run.
    n_workers_ : int
        Shards (workers) used: ``n_jobs``, fewer for small data.
    loss_curve_ : list of float
        Training loss of the averaged model after each epoch but the last
        (empty when ``tol=None``).
    validation_scores_ : list of float
        Validation score of the averaged model after each epoch but the last
        (only when the wrapped estimator has ``early_stopping=True``).
    epoch_times_ : list of float
        Wall time of each epoch (all workers' passes and the AllReduce).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    parml.allreduce : the tree reduce used after every epoch.
    sklearn.linear_model.SGDClassifier : the single-process model.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from parml import AveragedSGD
    >>> X, y = make_classification(2000, 20, random_state=0)
    >>> model = AveragedSGD(n_jobs=2, max_iter=5, tol=None, random_state=0)
    >>> model.fit(X, y).score(X, y) > 0.8
    True
    """

    _parameter_constraints = {
        "estimator": [None, HasMethods(["partial_fit", "fit"])],
        "n_jobs": [None, numbers.Integral],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [None, Interval(numbers.Real, None, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "backend": [str, None, object],  # checked by parml.scheduler at fit
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "progress": ["boolean"],
        "n_workers": [None, Interval(numbers.Integral, 1, None, closed="left"),
                      StrOptions({"deprecated"})],
    }

    def __init__(self, estimator=None, *, n_jobs=None, max_iter=1000, tol=1e-3,
                 n_iter_no_change=5, shuffle=True, backend=None, random_state=None,
                 verbose=0, progress=False, n_workers="deprecated"):
        self.estimator = estimator
        self.n_jobs = n_jobs
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose
        self.progress = progress
        self.n_workers = n_workers

    # -- type and tags follow the wrapped estimator ------------------------- #

    def _template(self):
        return SGDClassifier() if self.estimator is None else self.estimator

    def set_params(self, **params):
        """Set the parameters of this estimator, ``estimator__<name>`` ones included.

        With ``estimator=None``, ``estimator__<name>`` parameters first set
        ``estimator`` to a new ``SGDClassifier()`` (the default it stands
        for), whose parameters they then set; so
        ``AveragedSGD().set_params(estimator__alpha=1e-3)`` wraps
        ``SGDClassifier(alpha=1e-3)``, and a search can go over
        ``estimator__alpha``.

        Parameters
        ----------
        **params : dict
            Parameters of this estimator, and ``estimator__<name>`` for the
            wrapped one.

        Returns
        -------
        self : object
            This estimator.
        """
        if params.get("estimator", self.estimator) is None and any(
                key.startswith("estimator__") for key in params):
            params = {**params, "estimator": SGDClassifier()}
        return super().set_params(**params)

    def _is_classifier(self):
        return get_tags(self._template()).estimator_type == "classifier"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self._template())
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.target_tags.required = True
        tags.target_tags.single_output = inner.target_tags.single_output
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.input_tags.sparse = inner.input_tags.sparse
        return tags

    # -- fit ---------------------------------------------------------------- #

    def _check_estimator(self):
        est = self._template()
        if not hasattr(est, "partial_fit"):
            raise TypeError(
                f"AveragedSGD needs an estimator with partial_fit; "
                f"{type(est).__name__} has none. Use SGDClassifier, SGDRegressor, "
                "Perceptron or PassiveAggressiveClassifier/Regressor.")
        if not hasattr(type(est), "densify") and not _is_linear(est):
            raise TypeError(
                f"AveragedSGD averages linear parameters (coef_ and intercept_); "
                f"{type(est).__name__} does not have them. Use SGDClassifier, "
                "SGDRegressor, Perceptron or PassiveAggressiveClassifier/Regressor.")
        params = est.get_params()
        if params.get("average"):
            raise ValueError(
                "AveragedSGD cannot wrap an estimator with average=True (its averaged "
                "and raw weights would diverge); set average=False on the estimator.")
        self._validation_fraction = (params.get("validation_fraction", 0.1)
                                     if params.get("early_stopping") else None)
        overrides = {"shuffle": self.shuffle, "max_iter": 1, "tol": None,
                     "early_stopping": False, "warm_start": False, "n_jobs": None,
                     "verbose": 0}
        return clone(est).set_params(**{k: v for k, v in overrides.items() if k in params})

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the averaged linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), \
                list of arrays, or dask array
            Training data. A list (or tuple) of arrays is taken as shards
            already split (one per worker, ``y`` a list of the same length);
            a dask array's row blocks are the shards, each used where it lives.
        y : array-like of shape (n_samples,), list of arrays, or dask array
            Target values (class labels for classifiers).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        template = self._check_estimator()
        is_classifier = self._is_classifier()
        n_jobs = self._n_jobs()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        source = source_kind(X)
        X, y = self._checked_input(X, y, source, is_classifier)
        with Scheduler(backend=self._engine_backend(source), n_jobs=n_jobs) as scheduler:
            if source == "arrays":
                plan = plan_arrays(X, y, group_size(scheduler.engine, n_jobs), rng,
                                   is_classifier)
            elif source == "list":
                plan = plan_list(X, is_classifier)
            else:
                plan = plan_dask(X, y, is_classifier)
            with scheduler.worker_group(plan.k) as group:
                shards = plan.place(group)
                validation = self._validation_fraction if self.tol is not None else None
                program = EpochProgram(template, plan.classes, seed, plan.n_samples,
                                       self.tol is not None, validation,
                                       checked=source == "arrays")
                with open_rounds(group, shards, program) as rounds:
                    params = self._epochs(rounds, plan.k, plan.classes)
        self._set_fitted(template, params, plan)
        return self

    def _n_jobs(self):
        """``n_jobs``, or the deprecated ``n_workers`` with a FutureWarning."""
        if isinstance(self.n_workers, str) and self.n_workers == "deprecated":
            n_jobs = self.n_jobs
        elif self.n_jobs is not None:
            raise ValueError(
                f"n_workers={self.n_workers!r} and n_jobs={self.n_jobs!r} are both set; "
                "n_workers is the deprecated alias of n_jobs. Set n_jobs only.")
        else:
            warnings.warn(
                "The 'n_workers' parameter of AveragedSGD is deprecated and will be "
                "removed; use 'n_jobs' (joblib's meaning: the number of workers, -1 for "
                f"all cores). n_workers={self.n_workers!r} is n_jobs="
                f"{-1 if self.n_workers is None else self.n_workers!r}.", FutureWarning)
            n_jobs = -1 if self.n_workers is None else self.n_workers
        if n_jobs == 0:
            raise ValueError("n_jobs=0 has no meaning: use n_jobs=None (1 worker), a "
                             "positive number of workers, or -1 for all cores.")
        return n_jobs

    def _engine_backend(self, source):
        """The scheduler's ``backend``: this one, threads by default (see ``backend``)."""
        backend = check_backend(self.backend)
        if backend is None:
            active = get_active_backend(prefer="threads")[0]
            if type(active).__name__ == "DaskDistributedBackend":
                return None  # the scheduler takes the parallel_config's client
            if source == "dask":
                return "dask"
            return "threading" if isinstance(active, BACKENDS["threading"]) else None
        if source == "dask" and not is_dask_backend(backend):
            raise ValueError(
                f"X is a dask array, whose blocks live on a Dask cluster, but "
                f"backend={backend!r} does not run there. A dask array X needs a Dask "
                "backend: backend=None with a running client, 'dask', an address or a "
                "Client.")
        return backend

    def _checked_input(self, X, y, source, is_classifier):
        """``(X, y)`` validated: arrays, a list of shards, or dask arrays."""
        if source == "arrays":
            X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64,
                                 order="C", y_numeric=not is_classifier)
            if is_classifier:
                check_classification_targets(y)
            return X, y
        if source == "dask":
            if X.ndim != 2 or y is None or getattr(y, "ndim", 0) != 1:
                raise ValueError("With a dask array X (2-D), y must be a 1-D dask array.")
            self.n_features_in_ = X.shape[1]
            return X, y
        shards, self.n_features_in_ = check_shard_list(X, y, is_classifier)
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return shards, None

    @staticmethod
    def _validation_score(extras, is_classifier):
        n = float(extras["val_n"])
        if n == 0:
            raise ValueError(
                "early_stopping=True but no shard has a validation row: raise the "
                "estimator's validation_fraction or give more samples.")
        if is_classifier:
            return float(extras["val_a"]) / n
        total = float(extras["val_c"]) - float(extras["val_b"]) ** 2 / n
        return 1.0 - float(extras["val_a"]) / total if total > 0 else 0.0

    def _epochs(self, rounds, k, classes):
        """Run epochs until ``max_iter`` or the stopping criterion; the last average."""
        bar = _progress(self.progress, self.max_iter)
        self._best, self._no_improvement = np.inf, 0
        self.loss_curve_, self.epoch_times_, self.validation_scores_ = [], [], []
        self.n_iter_ = 0
        try:
            for epoch in range(self.max_iter):
                start = time.perf_counter()
                extras = rounds.epoch(epoch)
                self.epoch_times_.append(time.perf_counter() - start)
                self.n_iter_ = epoch + 1
                bar.update(1)
                if self.verbose:
                    print(f"-- Epoch {epoch + 1}, {k} workers, time "
                          f"{self.epoch_times_[-1]:.3f} s", flush=True)
                if self.tol is not None and epoch > 0 and self._converged(extras, classes):
                    break
            return rounds.result()
        finally:
            bar.close()

    def _converged(self, extras, classes):
        """Record the criterion of the average of the last epoch; whether to stop."""
        if self._validation_fraction is not None:
            # stop on the validation score, as sklearn's SGD with
            # early_stopping=True: its negative is minimised here
            score = self._validation_score(extras, classes is not None)
            self.validation_scores_.append(score)
            loss = -score
        else:
            loss = float(extras["loss"]) / float(extras["n"])
            self.loss_curve_.append(loss)
        if self.verbose:
            what = ("validation score" if self._validation_fraction is not None
                    else "training loss")
            print(f"   {what} of the average after epoch {self.n_iter_ - 1}: "
                  f"{abs(loss):.6f}", flush=True)
        if loss > self._best - self.tol:
            self._no_improvement += 1
        else:
            self._no_improvement = 0
        self._best = min(self._best, loss)
        return self._no_improvement >= self.n_iter_no_change

    def _set_fitted(self, template, params, plan):
        """The fitted attributes: the wrapped estimator holding the average."""
        del self._best, self._no_improvement
        self.n_workers_ = plan.k
        if self.tol is not None and self.n_iter_ == self.max_iter:
            warnings.warn("Maximum number of iteration reached before convergence. "
                          "Consider increasing max_iter to improve the fit.",
                          ConvergenceWarning)
        est = clone(template)
        est.coef_ = np.asarray(params["coef"])
        est.intercept_ = np.asarray(params["intercept"])
        est.t_ = 1.0 + self.n_iter_ * plan.n_samples
        est.n_iter_ = self.n_iter_
        est.n_features_in_ = self.n_features_in_
        if plan.classes is not None:
            est.classes_ = plan.classes
            self.classes_ = plan.classes
        self.estimator_ = est
        self.coef_ = est.coef_
        self.intercept_ = est.intercept_

    # -- predictions -------------------------------------------------------- #

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, accept_sparse="csr", reset=False)

    def predict(self, X):
        """Predict with the averaged model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X = self._validated(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Confidence scores of the averaged model (classifiers).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        X = self._validated(X)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, where the wrapped estimator has them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._validated(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log of class probabilities, where the wrapped estimator has them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._validated(X)
        return self.estimator_.predict_log_proba(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifiers) or R^2 (regressors) of the averaged model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        metric = accuracy_score if self._is_classifier() else r2_score
        return float(metric(y, self.predict(X), sample_weight=sample_weight))


def _is_linear(est):
    names = set(dir(type(est)))
    return "partial_fit" in names and ("decision_function" in names or "predict" in names) \
        and hasattr(est, "get_params") and _fits_coef(est)


def _fits_coef(est):
    """Whether the estimator class documents (or is known for) ``coef_``."""
    doc = type(est).__doc__ or ""
    return "coef_" in doc and "intercept_" in doc


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(enabled, total):
    if not enabled:
        return _NoBar()
    return tqdm_class()(total=total, desc="AveragedSGD", unit="epoch", dynamic_ncols=True)
