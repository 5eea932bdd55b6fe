"""Searches of your own: ``_run_search(evaluate_candidates)`` works as in scikit-learn.

A subclass evaluates candidates in batches, choosing later ones from the
results of earlier ones; parml runs every batch on one scheduler (the data
shared once) and gives the cv_results_ scikit-learn gives, on every engine.
"""

import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, ParameterGrid
from sklearn.tree import DecisionTreeRegressor

from _doubles import CountingClassifier, count_fits
from _oracle import assert_same_search
from parml import ParallelGridSearchCV

ENGINES = {
    "n_jobs=1": dict(n_jobs=1),
    "loky": dict(n_jobs=2, backend="loky"),
    "threading": dict(n_jobs=2, backend="threading"),
}
engines = pytest.mark.parametrize("engine", list(ENGINES.values()), ids=list(ENGINES))

TESTS = os.path.dirname(os.path.abspath(__file__))
X, y = load_iris(return_X_y=True)
GRID = {"C": [0.01, 0.1]}


class TwoBatches:
    """``_run_search``: the grid, then the best candidate with ``C`` times 10 and / 10.

    ``second_cv`` splits the second batch with another splitter (of as many
    splits); each batch adds a ``batch`` column through ``more_results``.
    """

    step = "C"
    second_cv = None

    def _run_search(self, evaluate_candidates):
        first = list(ParameterGrid(self.param_grid))
        results = evaluate_candidates(first, more_results={"batch": [0] * len(first)})
        best = results["params"][int(np.argmin(results["rank_test_score"]))]
        value = best[self.step]
        second = [dict(best, **{self.step: value * 10}), dict(best, **{self.step: value / 10})]
        evaluate_candidates(second, cv=self.second_cv, more_results={"batch": [1, 1]})


class ParmlTwoBatches(TwoBatches, ParallelGridSearchCV):
    pass


class SklearnTwoBatches(TwoBatches, GridSearchCV):
    pass


def both(engine, estimator=None, grid=GRID, **kw):
    estimator = LogisticRegression(max_iter=500) if estimator is None else estimator
    ours = ParmlTwoBatches(estimator, grid, cv=3, **kw, **engine).fit(X, y)
    theirs = SklearnTwoBatches(estimator, grid, cv=3, **kw).fit(X, y)
    return ours, theirs


def assert_two_batches(ours, theirs):
    assert_same_search(ours, theirs, X)
    assert len(ours.cv_results_["params"]) == 4
    assert ours.cv_results_["batch"].tolist() == [0, 0, 1, 1]
    assert sorted((t["candidate_idx"], t["split_idx"]) for t in ours.trace_) == [
        (c, s) for c in range(4) for s in range(3)
    ]


@engines
def test_two_batches_equal_sklearn(engine):
    ours, theirs = both(engine, return_train_score=True)
    assert_two_batches(ours, theirs)


@engines
def test_second_batch_on_other_splits_equals_sklearn(engine):
    class Ours(ParmlTwoBatches):
        second_cv = KFold(3, shuffle=True, random_state=0)

    class Theirs(SklearnTwoBatches):
        second_cv = KFold(3, shuffle=True, random_state=0)

    ours = Ours(LogisticRegression(max_iter=500), GRID, cv=3, **engine).fit(X, y)
    theirs = Theirs(LogisticRegression(max_iter=500), GRID, cv=3).fit(X, y)
    assert_two_batches(ours, theirs)


def test_multimetric_and_refit_callable_across_batches():
    def best_accuracy(results):
        return int(np.argmax(results["mean_test_acc"]))

    class ThenCOne:
        def _run_search(self, evaluate_candidates):
            results = evaluate_candidates(ParameterGrid(self.param_grid))
            assert set(results) >= {"mean_test_acc", "rank_test_bal"}
            evaluate_candidates([{"C": 1.0}])

    class Ours(ThenCOne, ParallelGridSearchCV):
        pass

    class Theirs(ThenCOne, GridSearchCV):
        pass

    kw = dict(cv=3, scoring={"acc": "accuracy", "bal": "balanced_accuracy"},
              refit=best_accuracy)
    ours = Ours(LogisticRegression(max_iter=500), GRID, n_jobs=2, **kw).fit(X, y)
    theirs = Theirs(LogisticRegression(max_iter=500), GRID, **kw).fit(X, y)
    assert_same_search(ours, theirs, X)


class Events:
    """A FitCallback that records the names of the tasks that end."""

    def __init__(self):
        self.ended = []

    def setup(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, **kwargs):
        pass

    def on_fit_task_end(self, estimator, context, **kwargs):
        self.ended.append(context.task_name)

    def teardown(self, estimator, context):
        pass


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2, backend="threading")],
                         ids=["n_jobs=1", "threading"])
def test_callbacks_of_a_run_search_with_a_context_per_call(engine):
    class PerCall:
        def _run_search(self, evaluate_candidates, callback_ctx=None):
            search = callback_ctx.subcontext(task_name="search", max_subtasks=None)
            for batch in ([{"C": 0.1}, {"C": 1.0}], [{"C": 10.0}]):
                ctx = search.subcontext(task_name="call", max_subtasks=None,
                                        sequential_subtasks=False)
                evaluate_candidates(batch, callback_ctx=ctx)
                ctx.call_on_fit_task_end(estimator=self)
            search.call_on_fit_task_end(estimator=self)

    class Ours(PerCall, ParallelGridSearchCV):
        pass

    class Theirs(PerCall, GridSearchCV):
        pass

    if not hasattr(GridSearchCV, "set_callbacks"):
        pytest.skip("this scikit-learn has no callback API")
    ours_events, theirs_events = Events(), Events()
    ours = Ours(LogisticRegression(max_iter=500), {}, cv=3, **engine)
    ours.set_callbacks(ours_events).fit(X, y)
    theirs = Theirs(LogisticRegression(max_iter=500), {}, cv=3)
    theirs.set_callbacks(theirs_events).fit(X, y)
    assert_same_search(ours, theirs, X)
    assert ours_events.ended.count("candidate-split-evaluation") == 9
    assert sorted(ours_events.ended) == sorted(theirs_events.ended)


def test_verbose_counts_each_call_as_sklearn_does(capsys):
    ParmlTwoBatches(LogisticRegression(max_iter=500), GRID, cv=3, verbose=10).fit(X, y)
    ours = capsys.readouterr().out
    SklearnTwoBatches(LogisticRegression(max_iter=500), GRID, cv=3, verbose=10).fit(X, y)
    theirs = capsys.readouterr().out

    def shape(text):  # the END lines and the counts; scikit-learn also prints START lines
        return sorted(line.split(" total time")[0] for line in text.splitlines()
                      if "END" in line or line.startswith("Fitting"))

    assert "Fitting 3 folds for each of 2 candidates, totalling 6 fits" in ours
    assert "[CV 3/3; 2/2] END" in ours, "candidates are counted per call, as in sklearn"
    assert shape(ours) == shape(theirs)


def test_each_call_has_its_own_progress_bar(capsys):
    pytest.importorskip("tqdm")
    ParmlTwoBatches(LogisticRegression(max_iter=500), GRID, cv=3, progress=True).fit(X, y)
    err = capsys.readouterr().err
    assert "ParmlTwoBatches" in err and "6/6" in err
    assert "ParmlTwoBatches (call 2)" in err


def test_no_call_to_evaluate_candidates_is_a_clear_error():
    class Lazy(ParallelGridSearchCV):
        def _run_search(self, evaluate_candidates):
            pass

    with pytest.raises(ValueError, match=r"Lazy._run_search evaluated no candidates"):
        Lazy(LogisticRegression(), GRID).fit(X, y)


def test_evaluate_candidates_after_fit_is_refused():
    kept = []

    class Keeper(ParallelGridSearchCV):
        def _run_search(self, evaluate_candidates):
            kept.append(evaluate_candidates)
            evaluate_candidates([{"C": 1.0}])

    Keeper(LogisticRegression(max_iter=500), GRID, cv=3).fit(X, y)
    with pytest.raises(RuntimeError, match="during fit"):
        kept[0]([{"C": 2.0}])


# -- the result store -------------------------------------------------------------

CX, Cy = make_classification(n_samples=90, random_state=0)


class CountingTwoBatches(ParmlTwoBatches):
    step = "c"


def test_memory_resumes_a_run_search_subclass_without_fitting(tmp_path):
    log, store = tmp_path / "log", str(tmp_path / "store")
    log.mkdir()

    def search():
        return CountingTwoBatches(CountingClassifier(log_dir=str(log)), {"c": [1, 2]}, cv=3,
                                  n_jobs=2, memory=store)

    first = search().fit(CX, Cy)
    assert count_fits(log) == 4 * 3 + 1 and first.trace_.n_cached == 0
    again = search().fit(CX, Cy)
    assert count_fits(log) == 4 * 3 + 2, "only the refit ran"
    assert again.trace_.n_cached == 12 and all(t["cached"] for t in again.trace_)
    assert again.cv_results_["params"] == [{"c": 1}, {"c": 2}, {"c": 20}, {"c": 0.2}]
    assert_same_search(again, first)


def test_stored_fits_take_the_index_of_their_candidate_in_this_search(tmp_path):
    log, store = tmp_path / "log", str(tmp_path / "store")
    log.mkdir()
    CountingTwoBatches(CountingClassifier(log_dir=str(log)), {"c": [1, 2]}, cv=3,
                       memory=store, refit=False, backend="threading", n_jobs=2).fit(CX, Cy)
    assert count_fits(log) == 12
    # the same candidates, in another order: every fit comes from the store
    grid = {"c": [0.2, 20, 2, 1]}
    ours = ParallelGridSearchCV(CountingClassifier(log_dir=str(log)), grid, cv=3,
                                memory=store, refit=False).fit(CX, Cy)
    assert count_fits(log) == 12 and ours.trace_.n_cached == 12
    assert_same_search(ours, GridSearchCV(CountingClassifier(), grid, cv=3,
                                          refit=False).fit(CX, Cy))


# -- scikit-learn's own test, with parml's class swapped in -----------------------

@engines
def test_custom_run_search(engine):
    # sklearn/model_selection/tests/test_search.py::test_custom_run_search
    def check_results(results, gscv):
        exp_results = gscv.cv_results_
        assert sorted(results.keys()) == sorted(exp_results)
        for k in results:
            if not k.endswith("_time"):
                # XXX: results['params'] is a list :|
                results[k] = np.asanyarray(results[k])
                if results[k].dtype.kind == "O":
                    assert_array_equal(exp_results[k], results[k], err_msg="Checking " + k)
                else:
                    assert_allclose(exp_results[k], results[k], err_msg="Checking " + k)

    def fit_grid(param_grid):
        return GridSearchCV(clf, param_grid, return_train_score=True).fit(X, y)

    class CustomSearchCV(ParallelGridSearchCV):
        def __init__(self, estimator, **kwargs):
            super().__init__(estimator, {}, **kwargs)

        def _run_search(self, evaluate):
            results = evaluate([{"max_depth": 1}, {"max_depth": 2}])
            check_results(results, fit_grid({"max_depth": [1, 2]}))
            results = evaluate([{"min_samples_split": 5}, {"min_samples_split": 10}])
            check_results(
                results,
                fit_grid([{"max_depth": [1, 2]}, {"min_samples_split": [5, 10]}]),
            )

    # Using regressor to make sure each score differs
    clf = DecisionTreeRegressor(random_state=0)
    X, y = make_classification(n_samples=100, n_informative=4, random_state=0)
    mycv = CustomSearchCV(clf, return_train_score=True, **engine).fit(X, y)
    gscv = fit_grid([{"max_depth": [1, 2]}, {"min_samples_split": [5, 10]}])

    results = mycv.cv_results_
    check_results(results, gscv)
    for attr in dir(gscv):
        if (
            attr[0].islower()
            and attr[-1:] == "_"
            and attr
            not in {
                "cv_results_",
                "best_estimator_",
                "refit_time_",
                "classes_",
                "scorer_",
            }
        ):
            assert getattr(gscv, attr) == getattr(mycv, attr), (
                "Attribute %s not equal" % attr
            )


# -- remote engines: a real Dask LocalCluster and real ipyparallel engines ---------

# (the dask_client and ipyparallel_client fixtures are in conftest.py)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("second_cv", [None, KFold(3, shuffle=True, random_state=0)],
                         ids=["same splits", "other splits"])
def test_two_batches_on_dask_equal_sklearn(dask_client, second_cv):
    ours, theirs = _remote(dict(backend=dask_client), second_cv)
    assert_two_batches(ours, theirs)
    assert {t["pid"] for t in ours.trace_} <= set(dask_client.run(os.getpid).values())


@pytest.mark.timeout(150)
@pytest.mark.parametrize("second_cv", [None, KFold(3, shuffle=True, random_state=0)],
                         ids=["same splits", "other splits"])
def test_two_batches_on_ipyparallel_equal_sklearn(ipyparallel_client, second_cv):
    ours, theirs = _remote(dict(backend=ipyparallel_client), second_cv)
    assert_two_batches(ours, theirs)
    pids = {ipyparallel_client[e].apply_sync(os.getpid) for e in ipyparallel_client.ids}
    assert {t["pid"] for t in ours.trace_} <= pids
    left = ipyparallel_client[:].apply_sync(_parml_names)
    assert [name for names in left for name in names] == [], "the pushed data is deleted"


def _remote(engine, second_cv):
    class Ours(ParmlTwoBatches):
        pass

    class Theirs(SklearnTwoBatches):
        pass

    Ours.second_cv = Theirs.second_cv = second_cv
    ours = Ours(LogisticRegression(max_iter=500), GRID, cv=3, **engine).fit(X, y)
    theirs = Theirs(LogisticRegression(max_iter=500), GRID, cv=3).fit(X, y)
    return ours, theirs


def _parml_names():
    """Names parml left in an engine's namespace."""
    import __main__

    names = set(vars(__main__))
    try:
        names |= set(get_ipython().user_ns)  # noqa: F821 (defined on an engine)
    except NameError:
        pass
    return sorted(name for name in names if name.startswith("_parml"))
