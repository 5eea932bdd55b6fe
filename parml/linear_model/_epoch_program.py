"""The per-worker program of AveragedSGD: what one node does with its shard each epoch.

A node keeps a clone of the wrapped estimator and its shard; every epoch it
starts from the averaged parameters, makes one ``partial_fit`` pass, and
returns its parameters (to be averaged by ``parml.allreduce``) with the sums
the stopping criterion needs (training loss, or validation score).
"""

import numpy as np
from sklearn import config_context
from sklearn.base import clone
from sklearn.utils.extmath import safe_sparse_dot


def _margins(y, classes):
    """+1 / -1 targets of each one-vs-rest problem (binary: one column)."""
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return np.where(y[:, None] == classes[None, :], 1.0, -1.0)


def _mean_loss(name, scores, y, epsilon):
    """Mean per-sample loss, as sklearn's SGD names them (``y`` in {-1, 1} or real)."""
    if name in ("hinge", "perceptron", "squared_hinge", "log_loss", "modified_huber"):
        z = y * scores
        if name == "hinge":
            loss = np.maximum(0.0, 1.0 - z)
        elif name == "perceptron":
            loss = np.maximum(0.0, -z)
        elif name == "squared_hinge":
            loss = np.maximum(0.0, 1.0 - z) ** 2
        elif name == "log_loss":
            loss = np.logaddexp(0.0, -z)
        else:
            loss = np.where(z >= 1.0, 0.0, np.where(z >= -1.0, (1.0 - z) ** 2, -4.0 * z))
    else:
        r = np.abs(scores - y)
        if name == "squared_error":
            loss = 0.5 * r ** 2
        elif name == "huber":
            loss = np.where(r <= epsilon, 0.5 * r ** 2, epsilon * (r - 0.5 * epsilon))
        elif name == "epsilon_insensitive":
            loss = np.maximum(0.0, r - epsilon)
        else:  # squared_epsilon_insensitive
            loss = np.maximum(0.0, r - epsilon) ** 2
    return float(loss.sum(axis=0).mean() if loss.ndim == 1 else loss.mean(axis=0).sum())


_KNOWN_LOSSES = {"hinge", "perceptron", "squared_hinge", "log_loss", "modified_huber",
                 "squared_error", "huber", "epsilon_insensitive",
                 "squared_epsilon_insensitive"}


class EpochProgram:
    """One node's work: keep a clone of the estimator, pass over the shard.

    ``step`` depends only on (shard, parameters, epoch), so every transport
    gives the same result. The criterion of epoch ``e`` is measured on the
    average of epoch ``e - 1`` (the parameters the node starts from).
    """

    def __init__(self, estimator, classes, seed, n_total, criterion, validation=None,
                 checked=False):
        self.estimator = estimator
        self.classes = classes
        self.seed = seed
        self.n_total = n_total
        self.criterion = criterion
        #: Fraction of each shard held out to score the average (early stopping).
        self.validation = validation
        #: The shards were checked for NaN and inf already (rows of a validated X).
        self.checked = checked

    def open(self, X, y, rank):
        est = clone(self.estimator)
        if self.classes is not None:
            present = np.unique(y)
            missing = np.setdiff1d(self.classes, present)
            if len(missing):
                raise ValueError(
                    f"Shard {rank} has no sample of class(es) {missing.tolist()}; every "
                    "shard must see every class. Shuffle the rows across shards, pass "
                    "fewer, larger shards, or use fewer workers (n_workers).")
        state = {"est": est, "X": X, "y": y, "rank": rank}
        if self.validation:
            val = self._validation_rows(y, rank)
            train = np.setdiff1d(np.arange(len(y)), val)
            state.update(X=X[train], y=y[train], X_val=X[val], y_val=y[val])
        return state

    def _validation_rows(self, y, rank):
        """Rows of this shard held out for the validation score (stratified by class)."""
        rng = np.random.RandomState(
            np.random.SeedSequence([self.seed, rank, 1]).generate_state(1)[0])
        if self.classes is None:
            return np.sort(rng.permutation(len(y))[:int(self.validation * len(y))])
        rows = []
        for label in self.classes:
            members = np.flatnonzero(y == label)
            # keep at least one row of each class to train on
            n_val = min(int(round(self.validation * len(members))), len(members) - 1)
            rows.append(rng.permutation(members)[:n_val])
        return np.sort(np.concatenate(rows))

    def step(self, state, params, epoch):
        est, X, y = state["est"], state["X"], state["y"]
        crit = 0.0
        if params is not None:
            est.coef_ = np.array(params["coef"], copy=True)
            est.intercept_ = np.array(params["intercept"], copy=True)
            # the learning-rate schedule counts the samples seen by all nodes
            est.t_ = 1.0 + epoch * self.n_total
            if self.criterion and not self.validation:
                crit = self._loss(est, X, y) * len(y)
        seed = np.random.SeedSequence([self.seed, state["rank"], epoch]).generate_state(1)
        est.set_params(random_state=int(seed[0]))
        # the shard was checked for NaN and inf (by fit, or at the first pass); it
        # has not changed since
        with config_context(assume_finite=self.checked or epoch > 0 or None):
            if self.classes is not None:
                est.partial_fit(X, y, classes=self.classes)
            else:
                est.partial_fit(X, y)
        value = {"coef": est.coef_, "intercept": est.intercept_}
        extras = {"loss": crit, "n": float(len(y))}
        if self.validation:
            extras.update(self._validation_sums(est, state, params is not None))
        return value, float(len(y)), extras

    def _validation_sums(self, est, state, scored):
        """Sums from which the validation score of the average is found (summed over nodes).

        Computed before this epoch's pass, from the average of the previous
        one: the number of correct predictions (classifiers), or the squared
        error and the sums of y and y**2 (R^2 for regressors).
        """
        X_val, y_val = state["X_val"], state["y_val"]
        sums = {"val_n": float(len(y_val)) if scored else 0.0, "val_a": 0.0,
                "val_b": 0.0, "val_c": 0.0}
        if not scored or len(y_val) == 0:
            return sums
        scores = np.asarray(safe_sparse_dot(X_val, est.coef_.T)) + est.intercept_
        if self.classes is not None:
            scores = scores.reshape(len(y_val), -1)
            if scores.shape[1] == 1:
                predicted = self.classes[(scores[:, 0] > 0).astype(int)]
            else:
                predicted = self.classes[np.argmax(scores, axis=1)]
            sums["val_a"] = float(np.sum(predicted == y_val))
        else:
            y_val = np.asarray(y_val, dtype=float)
            sums["val_a"] = float(np.sum((y_val - scores.ravel()) ** 2))
            sums["val_b"] = float(np.sum(y_val))
            sums["val_c"] = float(np.sum(y_val ** 2))
        return sums

    def _loss(self, est, X, y):
        scores = safe_sparse_dot(X, est.coef_.T)
        scores = np.asarray(scores) + est.intercept_
        name = getattr(est, "loss", None)
        epsilon = getattr(est, "epsilon", 0.1)
        if self.classes is not None:
            return _mean_loss(name, scores.reshape(len(y), -1), _margins(y, self.classes),
                              epsilon)
        return _mean_loss(name, scores.ravel(), np.asarray(y, dtype=float), epsilon)
