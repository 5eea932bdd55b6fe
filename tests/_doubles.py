"""Test doubles shared by several test files (importable by worker processes)."""

import ctypes
import os
import time
import uuid

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.tree import DecisionTreeClassifier


class CountingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fits leave a file in ``log_dir`` (to count them).

    ``crash_on`` makes the fit of candidate ``c == crash_on`` kill its worker:
    with ``"exit"`` via ``os._exit``, with ``"segfault"`` by reading address 0;
    with ``crash_once_marker`` only the first time. ``sleep_on`` makes that
    candidate sleep ``delay_on`` seconds; ``raise_on`` makes it raise. The score is
    deterministic: it depends on ``c`` and the test labels only.
    """

    def __init__(self, c=0, delay=0.0, log_dir=None, crash_on=None, crash_how="exit",
                 crash_once_marker=None, sleep_on=None, delay_on=0.0, raise_on=None):
        self.raise_on = raise_on
        self.c = c
        self.delay = delay
        self.log_dir = log_dir
        self.crash_on = crash_on
        self.crash_how = crash_how
        self.crash_once_marker = crash_once_marker
        self.sleep_on = sleep_on
        self.delay_on = delay_on

    def fit(self, X, y):
        if self.log_dir is not None:
            with open(os.path.join(self.log_dir, uuid.uuid4().hex), "w") as file:
                file.write(str(self.c))
        if self.raise_on is not None and self.c == self.raise_on:
            raise ValueError(f"c={self.c} cannot be fitted")
        if self.crash_on is not None and self.c == self.crash_on:
            marker = self.crash_once_marker
            if marker is None or not os.path.exists(marker):
                if marker is not None:
                    open(marker, "w").close()
                if self.crash_how == "segfault":
                    ctypes.string_at(0)
                os._exit(7)
        if self.sleep_on is not None and self.c == self.sleep_on:
            time.sleep(self.delay_on)
        time.sleep(self.delay)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def score(self, X, y):
        return self.c / 10 + float(np.mean(y)) / 100


def count_fits(log_dir):
    return len(os.listdir(log_dir))


class OtherCountingClassifier(CountingClassifier):
    """The same behaviour under another class name."""


class CountingScaler(TransformerMixin, BaseEstimator):
    """Scales by ``factor``; each fit leaves a file in ``log_dir``; ``fail`` raises."""

    def __init__(self, factor=1.0, log_dir=None, fail=False):
        self.factor = factor
        self.log_dir = log_dir
        self.fail = fail

    def fit(self, X, y=None):
        if self.log_dir is not None:
            with open(os.path.join(self.log_dir, uuid.uuid4().hex), "w") as file:
                file.write(str(self.factor))
        if self.fail:
            raise ValueError("this prefix always fails")
        self.mean_ = np.asarray(X).mean(axis=0)
        return self

    def transform(self, X):
        return (np.asarray(X) - self.mean_) * self.factor


class FailingClassifier(ClassifierMixin, BaseEstimator):
    """A decision tree that raises in fit when ``depth == 0``."""

    def __init__(self, depth=1):
        self.depth = depth

    def fit(self, X, y):
        if self.depth == 0:
            raise ValueError("depth 0 cannot be fitted")
        self.tree_ = DecisionTreeClassifier(max_depth=self.depth, random_state=0).fit(X, y)
        self.classes_ = self.tree_.classes_
        return self

    def predict(self, X):
        return self.tree_.predict(X)


_UNPICKLED = []


def _rebuild_counting_box(value):
    _UNPICKLED.append(1)
    return CountingBox(value)


class CountingBox:
    """A value that counts how often it was unpickled in this process."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return _rebuild_counting_box, (self.value,)


def unpickled_count():
    return len(_UNPICKLED)


def box_identity(box):
    """Which object a task got, and how often this process unpickled a box."""
    return id(box), os.getpid(), unpickled_count()


def square_or_exit(x, exit_on=None, delay=0.0):
    """``x * x`` after ``delay`` seconds; the worker process dies when ``x == exit_on``."""
    if x == exit_on:
        os._exit(1)
    if delay:
        time.sleep(delay)
    return x * x


def hang_on_first_run(x, log_dir, marker=None, release=None, delay=0.05):
    """``x * x``; the first call given ``marker`` creates it, then waits for ``release``.

    It waits 60 s at most; every call leaves a file in ``log_dir``.
    """
    open(os.path.join(log_dir, f"{x}-{os.getpid()}-{time.time()}"), "w").close()
    if marker is not None and not os.path.exists(marker):
        open(marker, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(delay)
    return x * x
