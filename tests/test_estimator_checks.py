"""scikit-learn's estimator checks for the search classes.

The instances mirror those scikit-learn checks its own GridSearchCV with
(sklearn/utils/_test_common/instance_generator.py), and the expected failures
are exactly the ones scikit-learn declares for its GridSearchCV there, with
its reasons:

- check_supervised_y_2d: "DataConversionWarning not caught" (the search does
  not warn about a column-vector y; the estimator inside does, in a worker);
- check_requires_y_none: "Doesn't fail gracefully".
"""

from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from parml import ParallelGridSearchCV, ParallelRandomizedSearchCV

SKLEARN_EXPECTED_FAILURES = {
    "check_supervised_y_2d": "DataConversionWarning not caught",
    "check_requires_y_none": "Doesn't fail gracefully",
}

INSTANCES = [
    ParallelGridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2, error_score="raise"),
    ParallelGridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, error_score="raise"),
    ParallelGridSearchCV(Pipeline([("pca", PCA()), ("ridge", Ridge())]),
                         {"ridge__alpha": [0.1, 1.0]}, cv=2, error_score="raise"),
    ParallelGridSearchCV(Pipeline([("pca", PCA()), ("lr", LogisticRegression())]),
                         {"lr__C": [0.1, 1.0]}, cv=2, error_score="raise"),
    ParallelRandomizedSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, n_iter=2, cv=2,
                               random_state=0, error_score="raise"),
]


@parametrize_with_checks(INSTANCES, expected_failed_checks=lambda est: SKLEARN_EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    check(estimator)
