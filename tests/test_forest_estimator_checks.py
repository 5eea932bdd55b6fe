"""scikit-learn's estimator checks for BaggedForest, as a classifier and as a regressor.

The expected failures are exactly those scikit-learn declares for its own
BaggingClassifier, BaggingRegressor and RandomForestClassifier
(sklearn/utils/_test_common/instance_generator.py), with its reason: a
random draw of rows cannot make a weight of 2 equal to a repeated row.
"""

from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from parml import BaggedForest

REASON = "sample_weight is not equivalent to removing/repeating samples."
SKLEARN_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": REASON,
    "check_sample_weight_equivalence_on_sparse_data": REASON,
}


@parametrize_with_checks([BaggedForest(), BaggedForest(DecisionTreeRegressor())],
                         expected_failed_checks=lambda est: SKLEARN_EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    check(estimator)
