"""BaggedForest: the same forest on any number of workers, sklearn-level accuracy, partitions."""

import os

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import StratifiedKFold, check_cv, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from parml import BaggedForest, ParallelGridSearchCV

X_digits, y_digits = load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def reference():
    return BaggedForest(n_estimators=20, random_state=0, oob_score=True).fit(X_digits, y_digits)


@pytest.mark.parametrize("config", [dict(n_jobs=2), dict(n_jobs=2, backend="threading"),
                                    dict(n_jobs=2, backend="loky"), dict(n_jobs=-1)])
def test_same_forest_for_any_number_of_workers(reference, config):
    forest = BaggedForest(n_estimators=20, random_state=0, oob_score=True, **config)
    forest.fit(X_digits, y_digits)
    np.testing.assert_array_equal(forest.predict_proba(X_digits),
                                  reference.predict_proba(X_digits))
    assert forest.oob_score_ == reference.oob_score_
    for ours, theirs in zip(forest.estimators_samples_, reference.estimators_samples_):
        np.testing.assert_array_equal(ours, theirs)


def test_members_run_on_the_workers_and_predict_in_parallel(reference):
    forest = BaggedForest(n_estimators=20, random_state=0, n_jobs=2).fit(X_digits, y_digits)
    assert len({event["pid"] for event in forest.trace_}) == 2
    assert sorted(event["member"] for event in forest.trace_) == list(range(20))
    with parallel_config("threading", n_jobs=2):
        np.testing.assert_array_equal(forest.predict(X_digits), reference.predict(X_digits))


def test_parallel_config_picks_the_engine(reference):
    with parallel_config("threading", n_jobs=2):
        forest = BaggedForest(n_estimators=20, random_state=0).fit(X_digits, y_digits)
    assert {event["pid"] for event in forest.trace_} == {os.getpid()}
    assert len({event["thread"] for event in forest.trace_}) == 2
    np.testing.assert_array_equal(forest.predict(X_digits), reference.predict(X_digits))


def test_warm_start_grows_the_same_forest():
    whole = BaggedForest(n_estimators=12, random_state=3).fit(X_digits, y_digits)
    grown = BaggedForest(n_estimators=5, random_state=3, warm_start=True).fit(X_digits, y_digits)
    first = grown.estimators_[0]
    grown.set_params(n_estimators=12).fit(X_digits, y_digits)
    assert grown.estimators_[0] is first and len(grown.estimators_) == 12
    np.testing.assert_array_equal(grown.predict_proba(X_digits), whole.predict_proba(X_digits))
    with pytest.warns(UserWarning, match="without increasing n_estimators"):
        grown.fit(X_digits, y_digits)
    with pytest.raises(ValueError, match="n_estimators=3 must be at least"):
        grown.set_params(n_estimators=3).fit(X_digits, y_digits)


def test_different_seeds_give_different_forests():
    a = BaggedForest(n_estimators=5, random_state=0).fit(X_digits, y_digits)
    b = BaggedForest(n_estimators=5, random_state=1).fit(X_digits, y_digits)
    assert not np.array_equal(a.predict_proba(X_digits), b.predict_proba(X_digits))


def _held_out_scores(make, X, y, seeds=range(5)):
    scores = []
    for seed in seeds:
        X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=seed,
                                                            test_size=0.3)
        scores.append(make(seed).fit(X_train, y_train).score(X_test, y_test))
    return np.array(scores)


def _assert_within_spread(ours, theirs, slack):
    spread = max(ours.std(), theirs.std())
    assert abs(ours.mean() - theirs.mean()) <= 2 * spread + slack, (ours, theirs)


@pytest.mark.parametrize("load", [load_digits, load_breast_cancer])
def test_accuracy_matches_sklearn_random_forest_and_bagging(load):
    X, y = load(return_X_y=True)
    ours = _held_out_scores(lambda s: BaggedForest(n_estimators=40, random_state=s), X, y)
    forest = _held_out_scores(lambda s: RandomForestClassifier(40, random_state=s), X, y)
    bagging = _held_out_scores(lambda s: BaggingClassifier(
        DecisionTreeClassifier(max_features="sqrt"), 40, random_state=s), X, y)
    _assert_within_spread(ours, forest, slack=0.01)
    _assert_within_spread(ours, bagging, slack=0.01)
    single_tree = _held_out_scores(lambda s: DecisionTreeClassifier(random_state=s), X, y)
    assert ours.mean() > single_tree.mean() + 0.02  # bagging helps: a check that can fail


def test_regression_matches_sklearn():
    X, y = load_diabetes(return_X_y=True)
    ours = _held_out_scores(lambda s: BaggedForest(DecisionTreeRegressor(), n_estimators=40,
                                                   random_state=s), X, y)
    forest = _held_out_scores(lambda s: RandomForestRegressor(40, random_state=s), X, y)
    bagging = _held_out_scores(lambda s: BaggingRegressor(DecisionTreeRegressor(), 40,
                                                          random_state=s), X, y)
    _assert_within_spread(ours, forest, slack=0.02)
    _assert_within_spread(ours, bagging, slack=0.02)


def test_type_and_tags_follow_the_member():
    assert is_classifier(BaggedForest()) and not is_regressor(BaggedForest())
    assert is_regressor(BaggedForest(DecisionTreeRegressor()))
    cv = check_cv(3, y_digits, classifier=is_classifier(BaggedForest()))
    assert isinstance(cv, StratifiedKFold)
    assert not hasattr(BaggedForest(DecisionTreeRegressor()), "predict_proba")


def test_oob_estimate_is_close_to_sklearn_random_forest():
    X, y = load_breast_cancer(return_X_y=True)
    ours = BaggedForest(n_estimators=60, oob_score=True, random_state=0).fit(X, y)
    theirs = RandomForestClassifier(60, oob_score=True, random_state=0).fit(X, y)
    assert abs(ours.oob_score_ - theirs.oob_score_) < 0.03
    assert ours.oob_decision_function_.shape == (len(y), 2)
    np.testing.assert_allclose(ours.oob_decision_function_.sum(axis=1), 1.0)
    X, y = load_diabetes(return_X_y=True)
    reg = BaggedForest(DecisionTreeRegressor(), 60, oob_score=True, random_state=0).fit(X, y)
    ref = RandomForestRegressor(60, oob_score=True, random_state=0).fit(X, y)
    assert abs(reg.oob_score_ - ref.oob_score_) < 0.06 and reg.oob_prediction_.shape == y.shape


def test_hard_vote_for_members_without_predict_proba():
    X, y = load_iris(return_X_y=True)
    forest = BaggedForest(RidgeClassifier(), n_estimators=8, random_state=0).fit(X, y)
    proba = forest.predict_proba(X)
    np.testing.assert_allclose((proba * 8) % 1, 0, atol=1e-12)  # fractions of 8 votes
    np.testing.assert_allclose(proba.sum(axis=1), 1)


def test_non_tree_members_fit_on_their_drawn_rows_and_features():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    forest = BaggedForest(LogisticRegression(max_iter=500), n_estimators=3, max_samples=0.5,
                          max_features=10, bootstrap=False, random_state=0).fit(X, y)
    for member, rows, cols in zip(forest.estimators_, forest.estimators_samples_,
                                  forest.estimators_features_):
        assert len(rows) == len(set(rows)) == len(y) // 2 and len(cols) == 10
        alone = clone(forest.estimator_).set_params(random_state=member.random_state)
        alone.fit(X[rows][:, cols], y[rows])
        np.testing.assert_allclose(member.coef_, alone.coef_)


def test_sample_weight_is_honoured():
    X, y = load_iris(return_X_y=True)
    weight = np.where(y == 2, 0.0, 1.0)
    forest = BaggedForest(n_estimators=10, random_state=0).fit(X, y, sample_weight=weight)
    assert (forest.predict_proba(X)[:, 2] == 0).all()
    with pytest.raises(ValueError, match="does not accept sample_weight"):
        BaggedForest(KNeighborsClassifier(), 3).fit(X, y, sample_weight=weight)


def test_feature_importances():
    X, y = load_breast_cancer(return_X_y=True)
    ours = BaggedForest(n_estimators=60, random_state=0).fit(X, y).feature_importances_
    theirs = RandomForestClassifier(60, random_state=0).fit(X, y).feature_importances_
    assert ours.sum() == pytest.approx(1.0)
    assert len(set(np.argsort(ours)[-5:]) & set(np.argsort(theirs)[-5:])) >= 3
    with pytest.raises(AttributeError, match="feature_importances_"):
        BaggedForest(LogisticRegression(), 2).fit(X[:, :3], y).feature_importances_


def test_usable_in_a_pipeline_and_a_parallel_search():
    X, y = X_digits[:600], y_digits[:600]
    pipe = make_pipeline(StandardScaler(), BaggedForest(n_estimators=10, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.95
    search = ParallelGridSearchCV(BaggedForest(n_estimators=10, random_state=0),
                                  {"max_features": [0.5, 1.0]}, cv=3, n_jobs=2).fit(X, y)
    assert search.best_params_["max_features"] in (0.5, 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("params, message", [
    (dict(max_samples=1.5), "'max_samples' parameter of BaggedForest must be"),
    (dict(max_samples=0), "'max_samples' parameter of BaggedForest must be"),
    (dict(max_samples=10_000), "max_samples=10000 is more than the 1797 samples X has"),
    (dict(max_features=65), "max_features=65 is more than the 64 features"),
    (dict(max_features=-0.5), "'max_features' parameter of BaggedForest must be"),
    (dict(estimator=object()), "'estimator' parameter of BaggedForest must be"),
    (dict(oob_score=True, bootstrap=False), "oob_score=True needs bootstrap=True"),
    (dict(oob_score=True, warm_start=True), "cannot be combined with warm_start=True"),
    (dict(n_estimators=0), "'n_estimators' parameter of BaggedForest must be"),
])
def test_bad_parameters_say_what_to_do(params, message):
    with pytest.raises(ValueError, match=message):
        BaggedForest(**params).fit(X_digits, y_digits)


def test_partitions_each_member_learns_from_its_own_partition():
    X, y = load_iris(return_X_y=True)
    parts = [(X[y != 2], y[y != 2]), (X[y != 1], y[y != 1]), (X[y != 0], y[y != 0])]
    forest = BaggedForest(n_estimators=9, random_state=0, n_jobs=2).fit_partitions(parts)
    np.testing.assert_array_equal(forest.estimators_partitions_, [0, 1, 2] * 3)
    np.testing.assert_array_equal(forest.classes_, [0, 1, 2])
    for member, partition in zip(forest.estimators_, forest.estimators_partitions_):
        np.testing.assert_array_equal(member.classes_, np.setdiff1d([0, 1, 2], [2 - partition]))
    assert forest.score(X, y) > 0.9
    again = BaggedForest(n_estimators=9, random_state=0).fit_partitions(parts)
    np.testing.assert_array_equal(again.predict_proba(X), forest.predict_proba(X))


def test_partitions_keep_labels_and_weights_and_oob():
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.array(["benign", "malignant"])[y]
    parts = [(X[:300], labels[:300], np.ones(300)), (X[300:], labels[300:], np.ones(269))]
    forest = BaggedForest(n_estimators=20, random_state=0, oob_score=True).fit_partitions(parts)
    assert set(forest.predict(X)) <= {"benign", "malignant"} and forest.score(X, labels) > 0.9
    assert forest.oob_decision_function_.shape == (569, 2) and 0.85 < forest.oob_score_ <= 1


@pytest.mark.parametrize("partitions, y, message", [
    ([(np.zeros((5, 3)), np.zeros(5)), (np.zeros((5, 4)), np.zeros(5))], None,
     "Partition 1 has 4 features but partition 0 has 3"),
    ([(np.zeros((5, 3)), np.zeros(4))], None, "Partition 0 has 5 rows in X but 4 labels"),
    ([np.zeros((5, 3))], None, r"must be a tuple \(X, y\)"),
    ([], None, "non-empty list"),
    ([(np.zeros((5, 3)), np.zeros(5))], np.zeros(5), "takes y inside each shard"),
])
def test_bad_partitions_say_what_to_do(partitions, y, message):
    with pytest.raises(ValueError, match=message):
        BaggedForest(n_estimators=2).fit_partitions(partitions, y)
