"""AveragedSGD: estimator checks, accuracy against single-process SGD, shards, errors."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Perceptron, SGDClassifier, SGDRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from parml import AveragedSGD


@parametrize_with_checks([AveragedSGD(), AveragedSGD(SGDRegressor())])
def test_sklearn_compatible(estimator, check):
    check(estimator)
