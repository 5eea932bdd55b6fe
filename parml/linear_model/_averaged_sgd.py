"""AveragedSGD: SGD on data shards, the parameters averaged after every epoch.

Iterative parameter mixing: ``k`` workers each hold one shard of the rows;
every epoch each runs one pass of the wrapped estimator's ``partial_fit`` over
its shard, starting from the current averaged parameters, and an AllReduce
(:func:`parml.allreduce`) averages ``coef_`` and ``intercept_`` weighted by the
shard sizes. This module plans shards and epochs and decides when to stop;
what a worker does each epoch is in ``_epoch_program``, and how parameters
move between workers is the business of ``parml.allreduce``.
"""

import numbers
import time
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from .._compat import HasMethods, Interval, fit_context
from .._live_backend import PortableBackendMixin
from ..allreduce import _engines
from ..scheduler._progress import tqdm_class
from ._epoch_program import EpochProgram

#: Below this many values (rows x features), ``backend=None`` stays in-process.
IN_PROCESS_BELOW = 100_000
#: ``n_workers=None`` gives each worker at least this many rows.
MIN_ROWS_PER_WORKER = 1_000


def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", None)
        if est is None:
            est = self._template()
        return hasattr(est, attr)

    return check


# --------------------------------------------------------------------------- #
# Shards                                                                       #
# --------------------------------------------------------------------------- #


def shard_rows(y, n_shards, random_state, stratify):
    """Row indices of each shard, sorted; classes dealt evenly when ``stratify``.

    Rows are drawn at random (fixed by ``random_state``); with ``stratify``
    each class is dealt round robin, so every shard gets its share of every
    class (a class with at least ``n_shards`` samples reaches every shard).
    """
    n = len(y)
    order = random_state.permutation(n)
    if stratify:
        _, codes = np.unique(y, return_inverse=True)
        order = order[np.argsort(codes[order], kind="stable")]
    owner = np.empty(n, dtype=np.intp)
    owner[order] = np.arange(n) % n_shards
    return [np.flatnonzero(owner == s) for s in range(n_shards)]


# --------------------------------------------------------------------------- #
# The estimator                                                                #
# --------------------------------------------------------------------------- #


class AveragedSGD(PortableBackendMixin, MetaEstimatorMixin, BaseEstimator):
    """Linear model trained by SGD on data shards, averaged after every epoch.

    Iterative parameter mixing (as Vowpal Wabbit's AllReduce): the rows are
    split into ``n_workers`` shards (stratified for classifiers, so every
    shard sees every class). Each epoch, every worker makes one pass of the
    wrapped estimator's ``partial_fit`` over its shard, starting from the
    current averaged parameters; then :func:`parml.allreduce` averages
    ``coef_`` and ``intercept_`` weighted by shard sizes. With ``k`` workers an
    epoch takes about ``1/k`` of a single-process epoch, at about the same
    accuracy.

    Workers are long-lived processes that keep their shard (a read-only
    memory map) across epochs; only the parameters move. On a Dask cluster
    each shard lives on a worker and each epoch is a task there.

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
    n_workers : int, default=None
        Number of shards and workers. ``None``: the number of cores (the
        number of Dask workers on a cluster), capped so each worker has at
        least 1,000 rows and, for classifiers, every shard sees every class.
        Given shards (a list, or a Dask array's blocks) set it themselves.
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
    backend : {None, "loky", "sequential", "dask"}, str address or \
            distributed.Client, default=None
        Where workers run. ``None``: local worker processes, or in this
        process when the data has fewer than 100,000 values (rows x features)
        or there is one worker, where processes would cost more than they
        save; inside ``joblib.parallel_config("dask")`` the Dask cluster.
        ``"loky"``: local worker processes (parml's own long-lived processes,
        whatever the size). ``"sequential"``: every shard in this process, one
        after the other (the same result, no parallelism). ``"dask"``, a
        scheduler address or a ``Client``: a Dask cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds the shard assignment and each worker's shuffling. A fixed value
        gives the same model whatever the backend or scheduling order.
    verbose : int, default=0
        Print the loss and time of each epoch.
    progress : bool, default=False
        Show a progress bar over epochs (``parml[progress]``).

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
        Shards (workers) used.
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
    >>> model = AveragedSGD(n_workers=2, max_iter=5, tol=None, random_state=0)
    >>> model.fit(X, y).score(X, y) > 0.8
    True
    """

    _parameter_constraints = {
        "estimator": [None, HasMethods(["partial_fit", "fit"])],
        "n_workers": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [None, Interval(numbers.Real, None, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "backend": "no_validation",  # checked by parml.allreduce at fit
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "progress": ["boolean"],
    }

    def __init__(self, estimator=None, *, n_workers=None, max_iter=1000, tol=1e-3,
                 n_iter_no_change=5, shuffle=True, backend=None, random_state=None,
                 verbose=0, progress=False):
        self.estimator = estimator
        self.n_workers = n_workers
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose
        self.progress = progress

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
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        source = _engines.source_kind(X)
        backend = None
        try:
            if source == "arrays":
                X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64,
                                     order="C", y_numeric=not is_classifier)
                if is_classifier:
                    check_classification_targets(y)
                classes = np.unique(y) if is_classifier else None
                n_samples = X.shape[0]
                if is_classifier and len(classes) < 2:
                    raise ValueError(
                        f"The number of classes has to be greater than one; got "
                        f"{len(classes)} class. AveragedSGD needs samples of at least 2 "
                        "classes.")
                backend = _engines.resolve_backend(self.backend)
                k = self._n_workers(n_samples, y if is_classifier else None, backend)
                rows = shard_rows(y, k, rng, stratify=is_classifier)
                in_process = backend == "sequential" or k == 1 or (
                    self.backend is None and backend == "loky"
                    and n_samples * X.shape[1] < IN_PROCESS_BELOW)
                open_transport = lambda program: _engines.rows_transport(  # noqa: E731
                    backend, X, y, rows, program, in_process=in_process)
            else:
                shards, n_features = self._check_shards(X, y, source)
                backend = _engines.resolve_backend(self.backend, default_dask=source == "dask")
                open_transport, sizes, classes = _engines.shards_transport(
                    backend, source, shards, is_classifier)
                n_samples = int(sum(sizes))
                if self.n_workers is not None and self.n_workers != len(sizes):
                    raise ValueError(
                        f"n_workers={self.n_workers} but {len(sizes)} shards were given; "
                        "leave n_workers=None with shards.")
                if is_classifier and len(classes) < 2:
                    raise ValueError("The number of classes has to be greater than one; "
                                     f"got {len(classes)} class.")
                self.n_features_in_ = n_features
                k = len(sizes)
            validation = self._validation_fraction if self.tol is not None else None
            program = EpochProgram(template, classes, seed, n_samples, self.tol is not None,
                                   validation)
            self._run(lambda: open_transport(program), k, template, classes, n_samples)
        except BaseException:
            if isinstance(backend, _engines._Dask):
                backend.close()  # a client opened for this fit, from an address
            raise
        return self

    def _check_shards(self, X, y, source):
        if source == "dask":
            if X.ndim != 2 or y is None or getattr(y, "ndim", 0) != 1:
                raise ValueError("With a dask array X (2-D), y must be a 1-D dask array.")
            return (X, y), X.shape[1]
        if not isinstance(y, (list, tuple)) or len(y) != len(X):
            raise ValueError(
                f"X is a list of {len(X)} shards; y must be a list of as many target "
                "arrays, one per shard.")
        is_classifier = self._is_classifier()
        shards = []
        for Xi, yi in zip(X, y):
            if not (sparse.issparse(Xi) or (isinstance(Xi, np.ndarray)
                                            and Xi.dtype == np.float64
                                            and Xi.flags.c_contiguous)):
                Xi = check_array(Xi, accept_sparse="csr", dtype=np.float64, order="C")
            if sparse.issparse(Xi):
                Xi = check_array(Xi, accept_sparse="csr", dtype=np.float64)
            yi = column_or_1d(yi, warn=True)
            if not is_classifier:
                yi = yi.astype(np.float64, copy=False)
            if Xi.ndim != 2 or Xi.shape[0] != len(yi) or Xi.shape[0] == 0:
                raise ValueError("Each shard needs a non-empty 2-D X with one target "
                                 f"per row; got X {Xi.shape} and y {yi.shape}.")
            shards.append((Xi, yi))
        n_features = {s[0].shape[1] for s in shards}
        if len(n_features) != 1:
            raise ValueError(f"All shards must have the same number of features; "
                             f"got {sorted(n_features)}.")
        return shards, n_features.pop()

    def _n_workers(self, n_samples, y, backend):
        if self.n_workers is not None:
            k = self.n_workers
            if k > n_samples:
                raise ValueError(
                    f"n_workers={k} is more than the {n_samples} samples; every worker "
                    f"needs rows. Use n_workers <= {n_samples}.")
            if y is not None:
                labels, counts = np.unique(y, return_counts=True)
                if counts.min() < k:
                    rare = labels[np.argmin(counts)]
                    raise ValueError(
                        f"Class {rare!r} has only {counts.min()} samples, so some of the "
                        f"{k} shards would miss it and every shard must see every "
                        f"class. Use n_workers <= {counts.min()}, or n_workers=None.")
            return k
        cores = _engines.default_workers(backend)
        k = min(cores, max(1, n_samples // MIN_ROWS_PER_WORKER))
        if y is not None:
            k = min(k, int(np.unique(y, return_counts=True)[1].min()))
        return max(1, k)

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

    def _run(self, open_transport, k, template, classes, n_total):
        bar = _progress(self.progress, self.max_iter)
        best, no_improvement = np.inf, 0
        self.loss_curve_, self.epoch_times_ = [], []
        self.validation_scores_ = []
        epoch = 0
        try:
            with open_transport() as transport:
                for epoch in range(self.max_iter):
                    start = time.perf_counter()
                    extras = transport.epoch(epoch)
                    self.epoch_times_.append(time.perf_counter() - start)
                    bar.update(1)
                    if self.verbose:
                        print(f"-- Epoch {epoch + 1}, {k} workers, time "
                              f"{self.epoch_times_[-1]:.3f} s", flush=True)
                    if self.tol is None or epoch == 0:
                        continue
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
                        print(f"   {what} of the average after epoch {epoch}: "
                              f"{abs(loss):.6f}", flush=True)
                    if loss > best - self.tol:
                        no_improvement += 1
                    else:
                        no_improvement = 0
                    best = min(best, loss)
                    if no_improvement >= self.n_iter_no_change:
                        break
                params = transport.result()
        finally:
            bar.close()
        self.n_iter_ = epoch + 1
        self.n_workers_ = k
        if self.tol is not None and self.n_iter_ == self.max_iter:
            warnings.warn("Maximum number of iteration reached before convergence. "
                          "Consider increasing max_iter to improve the fit.",
                          ConvergenceWarning)
        est = clone(template)
        est.coef_ = np.asarray(params["coef"])
        est.intercept_ = np.asarray(params["intercept"])
        est.t_ = 1.0 + self.n_iter_ * n_total
        est.n_iter_ = self.n_iter_
        est.n_features_in_ = self.n_features_in_
        if classes is not None:
            est.classes_ = classes
            self.classes_ = classes
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
