"""AveragedSGD: estimator checks, accuracy against single-process SGD, shards, engines, errors."""


import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Perceptron, SGDClassifier, SGDRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from parml import AveragedSGD


@parametrize_with_checks([AveragedSGD(), AveragedSGD(SGDRegressor())])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def one_shot_mixing(X, y, n_workers, epochs, random_state):
    """Train one SGDClassifier per shard independently; average once at the end."""
    from sklearn.utils import check_random_state

    from parml.linear_model._averaged_sgd import shard_rows

    rows = shard_rows(y, n_workers, check_random_state(random_state), stratify=True)
    models = [SGDClassifier(max_iter=epochs, tol=None, random_state=i).fit(X[r], y[r])
              for i, r in enumerate(rows)]
    sizes = [len(r) for r in rows]
    mixed = models[0]
    mixed.coef_ = np.average([m.coef_ for m in models], axis=0, weights=sizes)
    mixed.intercept_ = np.average([m.intercept_ for m in models], axis=0, weights=sizes)
    return mixed


@pytest.fixture(scope="module")
def big_problem():
    X, y = make_classification(250_000, 50, n_informative=25, random_state=1)
    return X[:200_000], y[:200_000], X[200_000:], y[200_000:]


def test_accuracy_of_two_workers_matches_single_sgd_and_beats_one_shot(big_problem):
    X, y, X_test, y_test = big_problem
    epochs = 5
    kw = dict(n_jobs=2, max_iter=epochs, tol=None, random_state=0)
    ours = AveragedSGD(**kw).fit(X, y)  # threads of this process
    assert ours.n_workers_ == 2 and ours.n_iter_ == epochs
    single = SGDClassifier(max_iter=epochs, tol=None, random_state=0).fit(X, y)
    once = one_shot_mixing(X, y, 2, epochs, random_state=0)
    acc, acc_single, acc_once = (m.score(X_test, y_test) for m in (ours, single, once))
    assert acc >= acc_single - 0.005, (acc, acc_single)
    assert acc > acc_once, (acc, acc_once)
    # threads and worker processes computed exactly what the in-process reference does
    reference = AveragedSGD(backend="sequential", **kw).fit(X, y)
    processes = AveragedSGD(backend="loky", **kw).fit(X, y)
    for model in (ours, processes):
        np.testing.assert_array_equal(model.coef_, reference.coef_)
        np.testing.assert_array_equal(model.intercept_, reference.intercept_)


def test_tol_stops_like_sgd(big_problem):
    X, y, X_test, y_test = big_problem
    X, y = X[:40_000], y[:40_000]
    model = AveragedSGD(n_jobs=3, backend="loky", random_state=0).fit(X, y)
    assert 1 < model.n_iter_ < model.max_iter
    assert len(model.loss_curve_) == model.n_iter_ - 1
    assert model.score(X_test, y_test) > 0.75


def test_early_stopping_on_a_validation_score_like_sgd():
    # The wrapped estimator's early_stopping=True: stop when the averaged
    # model's score on held-out rows of every shard stops improving by tol.
    X, y = make_classification(40_000, 20, random_state=0)
    wrapped = SGDClassifier(early_stopping=True, n_iter_no_change=3, random_state=0)
    kw = dict(n_jobs=2, max_iter=200, random_state=0)
    local = AveragedSGD(wrapped, backend="loky", **kw).fit(X, y)
    inline = AveragedSGD(wrapped, backend="sequential", **kw).fit(X, y)
    np.testing.assert_array_equal(local.coef_, inline.coef_)
    assert local.validation_scores_ == inline.validation_scores_
    assert 1 < local.n_iter_ < 200 and local.loss_curve_ == []
    assert len(local.validation_scores_) == local.n_iter_ - 1
    scores = np.array(local.validation_scores_)
    assert ((0.7 < scores) & (scores <= 1)).all()
    # it stopped because the last n_iter_no_change scores did not beat the
    # best before them by tol
    best_before = scores[:-3].max()
    assert (scores[-3:] < best_before + wrapped.tol).all()
    single = SGDClassifier(early_stopping=True, n_iter_no_change=3, random_state=0).fit(X, y)
    assert local.score(X, y) > single.score(X, y) - 0.02  # averaging is no worse
    # without early stopping the criterion is the training loss
    plain = AveragedSGD(SGDClassifier(random_state=0), backend="sequential", **kw).fit(X, y)
    assert plain.validation_scores_ == [] and len(plain.loss_curve_) == plain.n_iter_ - 1


def test_early_stopping_regressor_scores_r2():
    X, y = make_regression(20_000, 10, noise=5.0, random_state=0)
    model = AveragedSGD(SGDRegressor(early_stopping=True), n_jobs=2, max_iter=100,
                        backend="sequential", random_state=0).fit(X, y)
    assert model.n_iter_ < 100 and 0.95 < model.validation_scores_[-1] <= 1.0


def test_regressor_and_wrapped_classifiers():
    from sklearn.base import is_classifier, is_regressor

    X, y = make_regression(20_000, 20, noise=1.0, random_state=0)
    model = AveragedSGD(SGDRegressor(), n_jobs=2, max_iter=10, tol=None, random_state=0,
                        backend="loky").fit(X, y)
    single = SGDRegressor(max_iter=10, tol=None, random_state=0).fit(X, y)
    assert is_regressor(model) and not is_classifier(model)
    assert model.coef_.shape == single.coef_.shape
    assert model.score(X, y) == pytest.approx(single.score(X, y), abs=0.01)

    Xc, yc = make_classification(3000, 10, n_classes=3, n_informative=5, random_state=0)
    for est in [Perceptron(), SGDClassifier(loss="log_loss")]:
        fitted = AveragedSGD(est, n_jobs=2, max_iter=10, tol=None, random_state=0,
                             backend="sequential").fit(Xc, yc)
        assert is_classifier(fitted)
        assert fitted.coef_.shape == (3, 10) and list(fitted.classes_) == [0, 1, 2]
        assert fitted.score(Xc, yc) > 0.6
    assert hasattr(fitted, "predict_proba")
    np.testing.assert_allclose(fitted.predict_proba(Xc[:5]).sum(axis=1), 1.0)
    assert not hasattr(AveragedSGD(), "predict_proba")  # hinge loss has none


@pytest.mark.parametrize("estimator, error, match", [
    ("logistic", TypeError, "partial_fit"),
    ("naive_bayes", TypeError, "coef_ and intercept_"),
    ("average", ValueError, "average=False"),
])
def test_bad_estimators(estimator, error, match):
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB

    est = {"logistic": LogisticRegression(), "naive_bayes": MultinomialNB(),
           "average": SGDClassifier(average=True)}[estimator]
    X, y = make_classification(100, 5, random_state=0)
    with pytest.raises(error, match=match):
        AveragedSGD(est).fit(np.abs(X), y)


def test_n_jobs_has_joblib_meaning_and_small_data_gets_fewer_workers():
    from joblib import cpu_count, parallel_config

    X, y = make_classification(5_000, 5, random_state=0)
    kw = dict(max_iter=2, tol=None, random_state=0)
    assert AveragedSGD(**kw).fit(X, y).n_workers_ == 1  # None is 1, as for joblib
    with parallel_config(n_jobs=2):
        assert AveragedSGD(**kw).fit(X, y).n_workers_ == 2
    assert AveragedSGD(n_jobs=-1, **kw).fit(X, y).n_workers_ == min(cpu_count(), 5)
    assert AveragedSGD(n_jobs=4, **kw).fit(X, y).n_workers_ == 4
    # at least 1,000 rows per worker
    assert AveragedSGD(n_jobs=4, **kw).fit(X[:2_500], y[:2_500]).n_workers_ == 2
    assert AveragedSGD(n_jobs=101, **kw).fit(X[:100], y[:100]).n_workers_ == 1
    # every shard sees every class: no more workers than the rarest class has samples
    y_rare = y.copy()
    y_rare[:] = 0
    y_rare[:2] = 1
    assert AveragedSGD(n_jobs=3, **kw).fit(X, y_rare).n_workers_ == 2
    with pytest.raises(ValueError, match="n_jobs=0 has no meaning"):
        AveragedSGD(n_jobs=0).fit(X, y)


def test_n_workers_is_a_deprecated_alias_of_n_jobs():
    X, y = make_classification(5_000, 5, random_state=0)
    kw = dict(max_iter=3, tol=None, random_state=0, backend="sequential")
    with pytest.warns(FutureWarning, match="'n_workers' .* deprecated .* use 'n_jobs'"):
        old = AveragedSGD(n_workers=2, **kw).fit(X, y)
    new = AveragedSGD(n_jobs=2, **kw).fit(X, y)
    assert old.n_workers_ == new.n_workers_ == 2
    np.testing.assert_array_equal(old.coef_, new.coef_)
    with pytest.warns(FutureWarning, match="n_workers=None is n_jobs=-1"):
        AveragedSGD(n_workers=None, **kw).fit(X, y)
    with pytest.raises(ValueError, match="both set.*Set n_jobs only"):
        AveragedSGD(n_workers=2, n_jobs=2).fit(X, y)
    assert "n_jobs" in AveragedSGD().get_params()


def test_bad_shards_and_backends():
    X, y = make_classification(100, 5, random_state=0)
    # given shards: the second has no sample of class 1
    shards_X, shards_y = [X[:50], X[50:]], [y[:50], np.zeros(50, dtype=int)]
    for backend in ["sequential", "threading", "loky"]:
        with pytest.raises(ValueError, match="Shard 1 has no sample of class"):
            AveragedSGD(backend=backend).fit(shards_X, shards_y)
    with pytest.raises(ValueError, match="as many target arrays"):
        AveragedSGD().fit([X[:50], X[50:]], y)
    with pytest.raises(ValueError, match="The 'backend' parameter must be .* got 'nope'"):
        AveragedSGD(backend="nope").fit(X, y)


def test_pipeline_and_parallel_grid_search():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from parml import ParallelGridSearchCV

    X, y = make_classification(2000, 10, random_state=0)
    pipe = make_pipeline(StandardScaler(), AveragedSGD(max_iter=10, tol=None, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.8
    X, y = make_classification(4_000, 10, random_state=0)
    grid = {"estimator": [SGDClassifier(alpha=1e-4), SGDClassifier(alpha=1e-2)]}
    kw = dict(max_iter=10, tol=None, random_state=0)
    # fitted inside the search's worker processes: in that process, no nested pool
    search = ParallelGridSearchCV(AveragedSGD(n_jobs=2, backend="loky", **kw), grid,
                                  cv=2, n_jobs=2).fit(X, y)
    assert search.best_score_ > 0.8
    assert isinstance(search.best_estimator_, AveragedSGD)
    inline = ParallelGridSearchCV(AveragedSGD(n_jobs=2, backend="sequential", **kw), grid,
                                  cv=2).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  inline.cv_results_["mean_test_score"])


def test_shards_given_as_a_list(tmp_path):
    X, y = make_classification(30_000, 20, random_state=0)
    X_shards, y_shards = [X[:10_000], X[10_000:]], [y[:10_000], y[10_000:]]
    # a shard that is already a memory map is opened in place by its worker
    np.save(tmp_path / "x1.npy", X_shards[1])
    X_shards[1] = np.load(tmp_path / "x1.npy", mmap_mode="r")
    kw = dict(max_iter=5, tol=None, random_state=0)
    ours = AveragedSGD(backend="loky", **kw).fit(X_shards, y_shards)
    reference = AveragedSGD(backend="sequential", **kw).fit(X_shards, y_shards)
    threads = AveragedSGD(backend="threading", n_jobs=5, **kw).fit(X_shards, y_shards)
    assert ours.n_workers_ == threads.n_workers_ == 2 and ours.n_features_in_ == 20
    np.testing.assert_array_equal(ours.coef_, reference.coef_)
    np.testing.assert_array_equal(threads.coef_, reference.coef_)
    assert ours.score(X, y) > 0.8


def test_dask_array_shards_stay_on_their_workers():
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    import dask

    with dask.config.set({"distributed.scheduler.active-memory-manager.start": False}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        X, y = make_classification(20_000, 10, random_state=0)
        kw = dict(max_iter=5, tol=None, random_state=0)
        dX = da.from_array(X, chunks=(5_000, 10)).persist()
        dy = da.from_array(y, chunks=5_000).persist()
        blocks = distributed.futures_of(dX)
        distributed.wait(blocks + distributed.futures_of(dy))
        before = {k: set(v) for k, v in client.who_has(blocks).items()}
        ours = AveragedSGD(backend=client, **kw).fit(dX, dy)
        after = client.who_has(blocks)
        # every block is still only where it was: no shard moved
        assert {k: set(v) for k, v in after.items()} == before
        assert all(len(v) == 1 for v in after.values())
        assert ours.n_workers_ == 4 and ours.score(X, y) > 0.8
        # the same model as in-process over the same blocks
        shards = [X[i:i + 5_000] for i in range(0, 20_000, 5_000)]
        labels = [y[i:i + 5_000] for i in range(0, 20_000, 5_000)]
        reference = AveragedSGD(backend="sequential", **kw).fit(shards, labels)
        np.testing.assert_array_equal(ours.coef_, reference.coef_)
        # numpy data on the cluster: shards scattered once, same model as locally
        on_dask = AveragedSGD(n_jobs=2, backend=client, **kw).fit(X, y)
        local = AveragedSGD(n_jobs=2, backend="sequential", **kw).fit(X, y)
        np.testing.assert_array_equal(on_dask.coef_, local.coef_)
        # a client opened from an address is closed, even when the fit fails early

        def connected(dask_scheduler):
            return len(dask_scheduler.clients)

        clients = client.run_on_scheduler(connected)
        with pytest.raises(ValueError, match="Shard 1 has no sample of class"):
            AveragedSGD(backend=cluster.scheduler_address).fit(
                [X[:50], X[50:100]], [y[:50], np.zeros(50, dtype=int)])
        AveragedSGD(n_jobs=2, backend=cluster.scheduler_address, **kw).fit(X, y)
        assert client.run_on_scheduler(connected) == clients
    finally:
        client.close()
        cluster.close()


def test_wrapped_parameters_can_be_set_without_an_estimator():
    # estimator=None stands for SGDClassifier(): estimator__<name> first makes
    # it a new SGDClassifier, never a shared default that another object sees.
    model = AveragedSGD().set_params(estimator__alpha=1e-3, estimator__loss="log_loss")
    assert isinstance(model.estimator, SGDClassifier)
    assert model.estimator.get_params()["alpha"] == 1e-3
    assert model.estimator.get_params()["loss"] == "log_loss"
    assert AveragedSGD().estimator is None and AveragedSGD().set_params().estimator is None
    replaced = AveragedSGD().set_params(estimator=None, estimator__alpha=1e-2)
    assert replaced.estimator.get_params()["alpha"] == 1e-2
    given = AveragedSGD().set_params(estimator=Perceptron(), estimator__alpha=1e-2)
    assert isinstance(given.estimator, Perceptron) and given.estimator.alpha == 1e-2
    with pytest.raises(ValueError, match="Invalid parameter 'nope' for estimator SGDClassifier"):
        AveragedSGD().set_params(estimator__nope=1)
    X, y = make_classification(500, 5, random_state=0)
    fitted = model.set_params(max_iter=5, tol=None, random_state=0).fit(X, y)
    assert fitted.estimator_.alpha == 1e-3 and hasattr(fitted, "predict_proba")


def test_docs_grid_over_estimator_alpha_matches_sklearn_grid_search():
    # The search of docs/averaged_sgd.md, as written, with the default estimator.
    from sklearn.model_selection import GridSearchCV

    from parml import ParallelGridSearchCV

    X, y = make_classification(2000, 20, random_state=0)
    grid = {"estimator__alpha": [1e-5, 1e-4, 1e-3]}
    search = ParallelGridSearchCV(AveragedSGD(random_state=0), grid, cv=3)
    search.fit(X, y)
    theirs = GridSearchCV(AveragedSGD(random_state=0), grid, cv=3).fit(X, y)
    assert search.best_params_ == theirs.best_params_
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               theirs.cv_results_["mean_test_score"])
    best = search.best_estimator_
    assert isinstance(best.estimator, SGDClassifier)
    assert best.estimator.alpha == search.best_params_["estimator__alpha"]
    assert search.best_score_ > 0.8


def test_progress_in_jupyter_without_ipywidgets_is_a_text_bar_without_warning(
        jupyter_without_ipywidgets, capsys):
    import importlib
    import sys
    import warnings

    from tqdm import TqdmWarning

    # the simulation is faithful: tqdm.auto itself warns here
    with pytest.warns(TqdmWarning, match="IProgress not found"):
        importlib.import_module("tqdm.auto")
    for name in jupyter_without_ipywidgets:
        sys.modules.pop(name, None)
    X, y = make_classification(500, 5, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AveragedSGD(max_iter=3, tol=None, random_state=0, progress=True).fit(X, y)
    assert [str(w.message) for w in caught] == []
    err = capsys.readouterr().err
    assert "AveragedSGD" in err and "3/3" in err  # tqdm's text bar, on stderr
