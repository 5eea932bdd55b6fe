"""scikit-learn's estimator checks for BaggedForest, as a classifier and as a regressor.

The expected failures are exactly those scikit-learn declares for its own
BaggingClassifier, BaggingRegressor and RandomForestClassifier
(sklearn/utils/_test_common/instance_generator.py), with its reasons: a
random draw of rows cannot make a weight of 2 equal to a repeated row, and
(classifier only) a draw may leave one label once zero weights are trimmed.
"""

from sklearn.base import is_classifier
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from parml import BaggedForest

REASON = "sample_weight is not equivalent to removing/repeating samples."
SKLEARN_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": REASON,
    "check_sample_weight_equivalence_on_sparse_data": REASON,
}
#: Only for classifiers, as for scikit-learn's RandomForestClassifier.
SKLEARN_CLASSIFIER_EXPECTED_FAILURES = {
    "check_classifiers_one_label_sample_weights": (
        "failed when fitted on one label after sample_weight trimming."
    ),
}


def expected_failed_checks(estimator):
    """The checks scikit-learn expects to fail for ``estimator``, with their reasons.

    Parameters
    ----------
    estimator : BaggedForest
        The forest being checked.

    Returns
    -------
    dict
        A new dict per estimator: check name -> reason.
    """
    failures = dict(SKLEARN_EXPECTED_FAILURES)
    if is_classifier(estimator):
        failures.update(SKLEARN_CLASSIFIER_EXPECTED_FAILURES)
    return failures


@parametrize_with_checks([BaggedForest(), BaggedForest(DecisionTreeRegressor())],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
