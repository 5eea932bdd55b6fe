"""Asynchronous successive halving (``asynchronous=True``): ASHA on a scheduler session.

The books (:mod:`parml.model_selection._asha`) are tested with hand-made
scores; the searches against scikit-learn as the oracle: the rungs are its
rungs, and each row of ``cv_results_`` is what scikit-learn gives for that
candidate on that rung's (sub)samples.
"""

import hashlib
import itertools
import math
import os
import random
import uuid

import numpy as np
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    StratifiedKFold,
)
from sklearn.model_selection._search_successive_halving import _SubsampleMetaSplitter
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from _doubles import CountingClassifier, count_fits
from parml import ParallelHalvingGridSearchCV, ParallelHalvingRandomSearchCV
from parml.model_selection._asha import JobQueue, Ladder, rung_schedule
from parml.model_selection._halving_async import rung_splits
from parml.model_selection._warm_start import warm_fit_and_score, warm_start_parameter
from test_run_search import ENGINES, Events

TESTS = os.path.dirname(os.path.abspath(__file__))
X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=0)
DISTRIBUTIONS = {"max_depth": randint(1, 9), "min_samples_leaf": randint(1, 12),
                 "min_weight_fraction_leaf": uniform(0, 0.05)}  # no two candidates alike
HALVING_ATTRIBUTES = ("n_resources_", "n_candidates_", "n_remaining_candidates_",
                      "n_iterations_", "n_required_iterations_", "n_possible_iterations_",
                      "min_resources_", "max_resources_")


# -- the books, without a scheduler ----------------------------------------------------

SCHEDULES = list(itertools.product(
    [1, 2, 5, 9, 27, 30, 81],               # candidates
    [2, 3, 2.5],                             # factor
    [1, 4, "smallest", "exhaust"],           # min_resources
    [30, 100],                               # max_resources
    [False, True],                           # aggressive_elimination
))


@pytest.mark.parametrize("n_candidates,factor,min_resources,max_resources,aggressive",
                         random.Random(0).sample(SCHEDULES, 60))
def test_rung_schedule_equals_sklearns_rungs(n_candidates, factor, min_resources,
                                             max_resources, aggressive):
    grid = {"c": list(range(n_candidates))}
    theirs = HalvingGridSearchCV(
        CountingClassifier(), grid, factor=factor, resource="sleep_on",
        min_resources=min_resources, max_resources=max_resources,
        aggressive_elimination=aggressive, cv=2,
    ).fit(X[:40], y[:40])
    start = 1 if min_resources in ("smallest", "exhaust") else min_resources
    ours = rung_schedule(n_candidates, factor=factor, min_resources=start,
                         max_resources=max_resources, exhaust=min_resources == "exhaust",
                         aggressive_elimination=aggressive)
    assert ours.min_resources == theirs.min_resources_
    assert ours.n_resources == theirs.n_resources_
    assert ours.n_candidates == theirs.n_candidates_
    assert ours.n_iterations == theirs.n_iterations_
    assert ours.n_required_iterations == theirs.n_required_iterations_
    assert ours.n_possible_iterations == theirs.n_possible_iterations_
    assert ours.n_remaining_candidates == theirs.n_remaining_candidates_


def _climb(ladder, scores, order):
    """Finish candidates in ``order`` of arrival, promoting as the ladder says; its events."""
    events, arrivals = [], [(0, cand) for cand in order]
    while arrivals:
        rung, cand = arrivals.pop(0)
        promotions = ladder.finish(rung, cand, scores[cand])
        events.append(((rung, cand), promotions))
        arrivals.extend(promotions)
    return events


def test_a_candidate_is_promoted_once_it_ranks_in_the_top_third_of_those_finished():
    ladder = Ladder([9, 3, 1], factor=3)
    assert ladder.finish(0, 0, 0.5) == [] and ladder.finish(0, 1, 0.2) == []
    assert ladder.finish(0, 2, 0.1) == [(1, 0)], "best of 3 finished"
    assert ladder.finish(0, 3, 0.05) == [] and ladder.finish(0, 4, 0.3) == []
    assert ladder.finish(0, 5, 0.9) == [(1, 5)], "top 2 of 6: 5 and 0, 0 already promoted"
    assert ladder.finish(1, 0, 0.6) == [], "1 of 3 finished on rung 1"
    assert ladder.finish(0, 6, 0.0) == [] and ladder.finish(0, 7, 0.4) == []
    assert ladder.finish(0, 8, 0.45) == [(1, 8)], "rung 0 complete: the best not promoted"
    assert ladder.complete(0) and not ladder.is_open(0)
    assert ladder.finish(1, 5, 0.95) == [] and ladder.finish(1, 8, 0.1) == [(2, 5)]
    assert ladder.journal == [(1, 0), (1, 5), (1, 8), (2, 5)]
    with pytest.raises(ValueError, match="finished rung 0 twice"):
        ladder.finish(0, 8, 0.5)
    with pytest.raises(ValueError, match="without a promotion"):
        Ladder([9, 3], factor=3).finish(1, 4, 0.5)


def test_promotions_keep_pace_so_that_late_finishers_still_get_a_place():
    ladder = Ladder([9, 3, 1], factor=3)
    promoted = []
    for cand in range(9):  # each finisher better than all before it
        promoted += ladder.finish(0, cand, cand / 10)
    assert promoted == [(1, 2), (1, 5), (1, 8)], "one per 3 results, the best so far"


def test_failed_candidates_are_promoted_only_to_fill_a_finished_rung():
    nan = float("nan")
    ladder = Ladder([4, 2], factor=2)
    assert ladder.finish(0, 0, nan) == [] and ladder.finish(0, 1, nan) == []
    assert ladder.finish(0, 2, 0.1) == [(1, 2)]
    assert ladder.finish(0, 3, nan) == [(1, 0)], "rung complete: NaN fills the last place"


@pytest.mark.parametrize("seed", range(30))
def test_every_rung_gets_sklearns_places_whatever_the_order(seed):
    rng = random.Random(seed)
    n0, factor = rng.choice([(9, 3), (27, 3), (30, 2), (50, 2.5), (81, 3)])
    places = rung_schedule(n0, factor=factor, min_resources=1, max_resources=10**6).n_candidates
    scores = [rng.choice([rng.random(), float("nan")] if rng.random() < 0.1 else [rng.random()])
              for _ in range(n0)]
    ladder = Ladder(places, factor)
    events = _climb(ladder, scores, rng.sample(range(n0), n0))
    assert [len(s) for s in ladder.scores] == places
    assert all(ladder.complete(rung) for rung in range(len(places)))
    promoted_once = [cand for _, promotions in events for cand in promotions]
    assert len(promoted_once) == len(set(promoted_once)) == sum(places[1:])


@pytest.mark.parametrize("seed", range(10))
def test_a_journal_replays_the_promotions_whatever_the_order(seed):
    rng = random.Random(seed)
    scores = [rng.random() for _ in range(27)]
    first = Ladder([27, 9, 3, 1], 3)
    _climb(first, scores, rng.sample(range(27), 27))
    again = Ladder([27, 9, 3, 1], 3, journal=first.journal)
    _climb(again, scores, rng.sample(range(27), 27))
    assert sorted(again.journal) == sorted(first.journal)
    assert again.promoted == [sorted(p, key=p.index) for p in again.promoted]
    assert [sorted(p) for p in again.promoted] == [sorted(p) for p in first.promoted]


def test_a_journal_cut_short_keeps_its_decisions_and_the_rule_goes_on():
    scores = [c / 27 for c in range(27)]
    first = Ladder([27, 9, 3, 1], 3)
    _climb(first, scores, list(range(27)))
    head = first.journal[:5]
    resumed = Ladder([27, 9, 3, 1], 3, journal=head)
    assert resumed.decisions() == head, "not yet replayed, still decided"
    _climb(resumed, scores, list(range(26, -1, -1)))
    assert all(entry in resumed.journal for entry in head)
    assert [len(s) for s in resumed.scores] == [27, 9, 3, 1]


def test_a_journal_of_another_search_is_not_followed_past_its_first_impossible_entry():
    ladder = Ladder([9, 3, 1], 3, journal=[(1, 4), (2, 7), (1, 5)])
    assert ladder.decisions() == [(1, 4)], "7 was never promoted to rung 1"
    assert Ladder([9, 3], 3, journal=[(1, 20)]).decisions() == []
    assert Ladder([9, 3], 3, journal=[(3, 1)]).decisions() == []


def test_job_queue_puts_higher_rungs_first_and_keeps_order_within_a_rung():
    queue = JobQueue()
    queue.add([(0, 0, 0), (0, 0, 1), (0, 1, 0)])
    assert queue.pop() == (0, 0, 0)
    queue.add([(1, 5, 0), (1, 5, 1), (2, 9, 0)])
    assert [queue.pop() for _ in range(len(queue))] == [
        (2, 9, 0), (1, 5, 0), (1, 5, 1), (0, 0, 1), (0, 1, 0)]
    with pytest.raises(IndexError):
        queue.pop()


@pytest.mark.parametrize("random_state", [0, 7])
def test_rung_splits_equal_sklearns_subsamples(random_state):
    cv = StratifiedKFold(3)
    ours = rung_splits(cv, X, y, {}, 0.4, random_state)
    theirs = _SubsampleMetaSplitter(base_cv=cv, fraction=0.4, subsample_test=True,
                                    random_state=random_state).split(X, y)
    for (a_train, a_test), (b_train, b_test) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)


# -- the oracle: scikit-learn evaluating the rows the asynchronous search chose --------

class ReplayRows(GridSearchCV):
    """scikit-learn's search over given rows, rung by rung, on each rung's splits."""

    rungs = ()  # [(params, cv, iter, n_resources)]

    def _run_search(self, evaluate_candidates):
        for params, cv, itr, n_resources in self.rungs:
            evaluate_candidates(params, cv, more_results={
                "iter": [itr] * len(params), "n_resources": [n_resources] * len(params)})


def replay(search, X=X, y=y):
    """scikit-learn's cv_results_ for the rows of ``search``, in its order."""
    results, cv = search.cv_results_, StratifiedKFold(search.n_splits_) \
        if isinstance(search.cv, int) else search.cv
    oracle = ReplayRows(clone(search.estimator), {}, refit=False, cv=cv,
                        return_train_score=search.return_train_score,
                        error_score=search.error_score, scoring=search.scoring)
    oracle.rungs = []
    for itr, n_resources in enumerate(search.n_resources_):
        rows = [p for p, i in zip(results["params"], results["iter"]) if i == itr]
        rung_cv = cv
        if search.resource == "n_samples":
            rung_cv = _SubsampleMetaSplitter(base_cv=cv, fraction=n_resources / len(X),
                                             subsample_test=True,
                                             random_state=search.random_state)
        oracle.rungs.append((rows, rung_cv, itr, n_resources))
    return oracle.fit(X, y).cv_results_


def assert_rows_equal_sklearn(search, X=X, y=y):
    """Every row equals scikit-learn's fit of that candidate on that rung; order as documented."""
    theirs = replay(search, X, y)
    ours = search.cv_results_
    assert set(ours) == set(theirs)
    for key, expected in theirs.items():
        if "time" in key:
            continue
        if key == "params":
            assert ours[key] == expected
        elif isinstance(expected, np.ma.MaskedArray):
            assert list(ours[key].compressed()) == list(expected.compressed()), key
        else:
            np.testing.assert_array_equal(ours[key], expected, err_msg=key)


def assert_async_halving(search, sklearn_cls, kw):
    """The rungs, the first rung, the row order and the choice of the best."""
    theirs = sklearn_cls(search.estimator, **kw).fit(X, y)
    for attr in HALVING_ATTRIBUTES:
        assert getattr(search, attr) == getattr(theirs, attr), attr
    results, iters = search.cv_results_, search.cv_results_["iter"]
    assert list(iters) == sorted(iters), "rows grouped by rung"
    assert [np.sum(iters == i) for i in range(search.n_iterations_)] == search.n_candidates_
    first = [p for p, i in zip(theirs.cv_results_["params"], theirs.cv_results_["iter"])
             if i == 0]
    assert [p for p, i in zip(results["params"], iters) if i == 0] == first, "same candidates"

    def strip(params):
        return {k: v for k, v in params.items() if k != search.resource}

    for itr in range(search.n_iterations_):
        positions = [[strip(f) for f in first].index(strip(p))
                     for p, i in zip(results["params"], iters) if i == itr]
        assert positions == sorted(positions), "within a rung, by first-rung index"
    last = np.flatnonzero(iters == iters.max())
    assert search.best_index_ == last[np.nanargmax(results["mean_test_score"][last])]
    assert search.best_params_ == results["params"][search.best_index_]
    assert search.best_score_ == results["mean_test_score"][search.best_index_]
    assert len(search.trace_) == len(results["params"]) * search.n_splits_
    assert_rows_equal_sklearn(search)


PAIRS = {
    ParallelHalvingRandomSearchCV: (HalvingRandomSearchCV,
                                    dict(param_distributions=DISTRIBUTIONS, n_candidates=20)),
    ParallelHalvingGridSearchCV: (HalvingGridSearchCV,
                                  dict(param_grid={"max_depth": [1, 2, 3, 4, 6, None],
                                                   "min_samples_leaf": [1, 3, 8]})),
}
RESOURCES = {
    "n_samples": (DecisionTreeClassifier(random_state=0), {}),
    "n_estimators": (ExtraTreesClassifier(n_estimators=1, random_state=0),
                     dict(resource="n_estimators", max_resources=18)),
}


@pytest.mark.parametrize("engine", list(ENGINES.values()), ids=list(ENGINES))
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda cls: cls.__name__)
def test_async_rows_are_sklearns_fits_on_sklearns_rungs(cls, resource, engine):
    sklearn_cls, searched = PAIRS[cls]
    estimator, resource_kw = RESOURCES[resource]
    kw = dict(searched, **resource_kw, factor=2, cv=3, random_state=0)
    search = cls(estimator, **kw, **engine, asynchronous=True).fit(X, y)
    assert_async_halving(search, sklearn_cls, kw)
    np.testing.assert_array_equal(search.predict(X),
                                  clone(estimator).set_params(**search.best_params_)
                                  .fit(X, y).predict(X))


def test_async_with_n_jobs_1_is_deterministic_and_refit_false_scoring_work():
    kw = dict(factor=3, cv=3, random_state=0, n_candidates=27, scoring="balanced_accuracy",
              refit=False, return_train_score=False, asynchronous=True, n_jobs=1)
    first = ParallelHalvingRandomSearchCV(DecisionTreeClassifier(random_state=0),
                                          DISTRIBUTIONS, **kw).fit(X, y)
    again = ParallelHalvingRandomSearchCV(DecisionTreeClassifier(random_state=0),
                                          DISTRIBUTIONS, **kw).fit(X, y)
    assert first.cv_results_["params"] == again.cv_results_["params"]
    assert not hasattr(first, "best_estimator_") and "mean_train_score" not in first.cv_results_
    assert_rows_equal_sklearn(first)


# -- no barrier --------------------------------------------------------------------------

def _rung_spans(search):
    """``{rung: [(start, end), ...]}`` of the fits, from ``trace_``."""
    spans = {}
    for event in search.trace_:
        rung = int(search.cv_results_["iter"][event["candidate_idx"]])
        spans.setdefault(rung, []).append((event["start"], event["end"]))
    return spans


@pytest.mark.parametrize("engine", [dict(n_jobs=2), dict(n_jobs=2, backend="threading")],
                         ids=["loky", "threading"])
def test_async_promotes_without_a_barrier_and_sync_waits(engine):
    kw = dict(factor=3, cv=2, resource="sleep_on", max_resources=9, min_resources=1,
              **engine)
    grid = {"c": list(range(27)), "delay": [0.02]}
    ours = ParallelHalvingGridSearchCV(CountingClassifier(), grid, asynchronous=True,
                                       **kw).fit(X, y)
    spans = _rung_spans(ours)
    for rung in range(1, ours.n_iterations_):
        first_start = min(start for start, _ in spans[rung])
        last_end_below = max(end for _, end in spans[rung - 1])
        assert first_start < last_end_below, f"rung {rung} waited for rung {rung - 1}"
    sync = ParallelHalvingGridSearchCV(CountingClassifier(), grid, **kw).fit(X, y)
    spans = _rung_spans(sync)
    for rung in range(1, sync.n_iterations_):
        assert min(s for s, _ in spans[rung]) >= max(e for _, e in spans[rung - 1])


# -- warm start ------------------------------------------------------------------------

class TreeCountingForest(RandomForestClassifier):
    """A random forest that counts the trees its fits build (in this process).

    With ``interrupt_at`` (a class attribute, not a parameter) set to N, the
    fit after N fits raises KeyboardInterrupt (Ctrl-C), once.
    """

    built = []
    interrupt_at = None

    def fit(self, X, y, sample_weight=None):
        cls = type(self)
        if cls.interrupt_at is not None and len(cls.built) >= cls.interrupt_at:
            cls.interrupt_at = None
            raise KeyboardInterrupt
        before = len(getattr(self, "estimators_", [])) if self.warm_start else 0
        super().fit(X, y, sample_weight=sample_weight)
        cls.built.append(len(self.estimators_) - before)
        return self


def _warm_trees(search):
    """Trees a warm-started search builds: the first rung's, then only the new ones."""
    resources, places = search.n_resources_, search.n_candidates_
    return search.n_splits_ * (resources[0] * places[0] + sum(
        (resources[k] - resources[k - 1]) * places[k] for k in range(1, len(places))))


def test_warm_start_qualifies_the_ensembles_whose_warm_start_adds_members():
    assert warm_start_parameter(RandomForestClassifier(), "n_estimators")
    assert warm_start_parameter(HistGradientBoostingClassifier(), "max_iter")
    assert warm_start_parameter(TreeCountingForest(), "n_estimators")
    assert not warm_start_parameter(HistGradientBoostingClassifier(), "max_depth")
    assert not warm_start_parameter(LogisticRegression(), "max_iter")
    assert not warm_start_parameter(make_pipeline(StandardScaler(), RandomForestClassifier()),
                                    "randomforestclassifier__n_estimators")


def test_warm_fit_continues_a_copy_and_equals_a_fit_from_scratch():
    from sklearn.metrics import get_scorer

    data = {"X": X, "y": y, "splits": [(np.arange(200), np.arange(200, 300))]}
    fitted = RandomForestClassifier(n_estimators=2, random_state=0).fit(X[:200], y[:200])
    options = dict(resource="n_estimators", n_resources=6, scorer=get_scorer("accuracy"),
                   return_estimator=True, parameters={"n_estimators": 6})
    record = warm_fit_and_score(RandomForestClassifier(random_state=0), data, 0,
                                fitted=fitted, **options)
    assert len(fitted.estimators_) == 2, "the estimator given is left as it was"
    assert len(record.estimator.estimators_) == 6 and record.estimator.warm_start
    scratch = RandomForestClassifier(n_estimators=6, random_state=0).fit(X[:200], y[:200])
    assert record.test_scores == scratch.score(X[200:], y[200:])
    fresh = warm_fit_and_score(RandomForestClassifier(random_state=0), data, 0, fitted=None,
                               **options)
    assert fresh.test_scores == record.test_scores and not fresh.estimator.warm_start


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2)], ids=["n_jobs=1", "loky"])
def test_warm_start_builds_only_the_new_trees_and_scores_as_from_scratch(engine):
    kw = dict(n_candidates=18, factor=3, resource="n_estimators", max_resources=18, cv=3,
              random_state=0, asynchronous=True)
    TreeCountingForest.built.clear()
    search = ParallelHalvingRandomSearchCV(TreeCountingForest(random_state=0), DISTRIBUTIONS,
                                           **kw, **engine).fit(X, y)
    resources, places = search.n_resources_, search.n_candidates_
    assert len(resources) == 3 and places == [18, 6, 2]
    if engine["n_jobs"] == 1:  # the trees were built in this process
        from_scratch = 3 * sum(r * n for r, n in zip(resources, places))
        assert sum(TreeCountingForest.built) == _warm_trees(search) + resources[-1], "+ refit"
        assert _warm_trees(search) < from_scratch
    assert_rows_equal_sklearn(search)  # each row: scikit-learn's fit from scratch


# -- failures ----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2)], ids=["n_jobs=1", "loky"])
@pytest.mark.parametrize("error_score", [np.nan, -1.0])
def test_a_failing_fit_follows_error_score(error_score, engine):
    search = ParallelHalvingGridSearchCV(
        CountingClassifier(raise_on=3), {"c": list(range(9))}, factor=3, cv=3,
        resource="sleep_on", min_resources=1, max_resources=9, error_score=error_score,
        asynchronous=True, **engine)
    with pytest.warns(FitFailedWarning, match="c=3 cannot be fitted"):
        search.fit(X, y)
    rows = [i for i, p in enumerate(search.cv_results_["params"]) if p["c"] == 3]
    assert len(rows) == 1, "a failed candidate is not promoted"
    got = search.cv_results_["mean_test_score"][rows[0]]
    assert np.isnan(got) if np.isnan(error_score) else got == error_score
    assert search.best_params_["c"] == 8
    raising = clone(search).set_params(error_score="raise")
    with pytest.raises(ValueError, match="c=3 cannot be fitted"):
        raising.fit(X, y)


def test_all_fits_of_a_rung_failing_raises_as_sklearn():
    search = ParallelHalvingGridSearchCV(
        CountingClassifier(raise_on=0), {"c": [0]}, factor=3, cv=3, resource="sleep_on",
        min_resources=1, max_resources=9, asynchronous=True, n_jobs=1)
    with pytest.raises(ValueError, match="All the 3 fits failed"):
        search.fit(X, y)


def test_a_fit_that_kills_its_worker_is_retried_then_costs_its_candidate(tmp_path):
    search = ParallelHalvingGridSearchCV(
        CountingClassifier(crash_on=4), {"c": list(range(9))}, factor=3, cv=3,
        resource="sleep_on", min_resources=1, max_resources=9, asynchronous=True,
        n_jobs=2, max_retries=1)
    with pytest.warns(FitFailedWarning, match="died"):
        search.fit(X, y)
    row = [i for i, p in enumerate(search.cv_results_["params"]) if p["c"] == 4]
    assert np.isnan(search.cv_results_["mean_test_score"][row[0]])
    assert search.best_params_["c"] == 8 and search.n_candidates_ == [9, 3, 1]
    assert [t["lost"] for t in search.trace_].count(True) == 3, "its 3 splits, given up"


def test_the_resource_cannot_be_searched():
    search = ParallelHalvingGridSearchCV(CountingClassifier(), {"c": [1, 2], "sleep_on": [1]},
                                         resource="sleep_on", max_resources=4,
                                         asynchronous=True)
    with pytest.raises(ValueError, match="Cannot use parameter sleep_on as the resource"):
        search.fit(X, y)


# -- resume with memory= -----------------------------------------------------------------

class RungClassifier(ClassifierMixin, BaseEstimator):
    """Scores ``c / 10``; each fit leaves a file naming (c, steps, its data) in ``log_dir``.

    While a file ``<log_dir>.interrupt`` holding N exists, the fit that finds N
    files in ``log_dir`` removes it and raises KeyboardInterrupt (Ctrl-C). It is
    not a parameter: the resumed search has the same parameters, so the same
    result-store keys.
    """

    def __init__(self, c=0, steps=1, log_dir=None):
        self.c = c
        self.steps = steps
        self.log_dir = log_dir

    def fit(self, X, y):
        digest = hashlib.sha1(np.ascontiguousarray(X).tobytes()).hexdigest()[:12]
        with open(os.path.join(self.log_dir, f"{self.c}-{self.steps}-{digest}-"
                               f"{uuid.uuid4().hex}"), "w"):
            pass
        trigger = self.log_dir + ".interrupt"
        if os.path.exists(trigger):
            with open(trigger) as file:
                at = int(file.read())
            if count_fits(self.log_dir) >= at:
                os.remove(trigger)
                raise KeyboardInterrupt
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def score(self, X, y):
        return self.c / 10 + float(np.mean(y)) / 100


def _repeated_fits(log):
    """The fits logged more than once: ``(c, steps, data digest)``."""
    names = ["-".join(name.split("-")[:3]) for name in os.listdir(log)]
    return sorted({name for name in names if names.count(name) > 1})


def _resumable(log, store, asynchronous, **engine):
    return ParallelHalvingGridSearchCV(
        RungClassifier(log_dir=str(log)), {"c": list(range(18))},
        factor=3, cv=3, resource="steps", min_resources=1, max_resources=9,
        memory=str(store), asynchronous=asynchronous, **engine)


@pytest.mark.parametrize("engine", [dict(n_jobs=1), dict(n_jobs=2, backend="threading"),
                                    dict(n_jobs=2)], ids=["n_jobs=1", "threading", "loky"])
def test_a_completed_async_search_reruns_nothing_but_the_refit(tmp_path, engine):
    log, store = tmp_path / "log", tmp_path / "store"
    log.mkdir()
    first = _resumable(log, store, True, **engine).fit(X, y)
    n_fits = len(first.cv_results_["params"]) * 3
    assert count_fits(log) == n_fits + 1 and first.trace_.n_cached == 0
    again = _resumable(log, store, True, **engine).fit(X, y)
    assert count_fits(log) == n_fits + 2, "only the refit ran"
    assert again.trace_.n_cached == n_fits
    assert again.cv_results_["params"] == first.cv_results_["params"], "the same promotions"
    assert again.best_params_ == first.best_params_


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_an_interrupted_halving_search_resumes_where_it_stopped(tmp_path, asynchronous):
    log, store = tmp_path / "log", tmp_path / "store"
    log.mkdir()
    (tmp_path / "log.interrupt").write_text("40")
    with pytest.raises(KeyboardInterrupt, match="kept in the result store"):
        _resumable(log, store, asynchronous, n_jobs=1).fit(X, y)
    done_before = count_fits(log) - 1  # the interrupted fit did not finish
    assert done_before == 39
    resumed = _resumable(log, store, asynchronous, n_jobs=1).fit(X, y)
    n_fits = len(resumed.cv_results_["params"]) * 3
    assert resumed.trace_.n_cached == done_before, "every finished fit read from the store"
    assert count_fits(log) == (done_before + 1) + (n_fits - done_before) + 1, "+ the refit"
    assert len(_repeated_fits(log)) == 1, "only the interrupted fit ran twice"
    assert resumed.n_candidates_ == [18, 6, 2]
    assert_rows_equal_sklearn(resumed)


@pytest.mark.parametrize("interrupt_at", [None, 30], ids=["completed", "interrupted"])
def test_a_warm_started_search_resumes_its_chains(tmp_path, interrupt_at):
    kw = dict(n_candidates=18, factor=3, resource="n_estimators", max_resources=18, cv=3,
              random_state=0, asynchronous=True, n_jobs=1, memory=str(tmp_path / "store"))
    TreeCountingForest.built.clear()
    TreeCountingForest.interrupt_at = interrupt_at
    try:
        first = ParallelHalvingRandomSearchCV(TreeCountingForest(random_state=0),
                                              DISTRIBUTIONS, **kw).fit(X, y)
    except KeyboardInterrupt:
        first = None
    finally:
        TreeCountingForest.interrupt_at = None
    n_done = len(TreeCountingForest.built) - (first is not None)  # without the refit
    trees_before = sum(TreeCountingForest.built[:n_done])
    TreeCountingForest.built.clear()
    again = ParallelHalvingRandomSearchCV(TreeCountingForest(random_state=0), DISTRIBUTIONS,
                                          **kw).fit(X, y)
    assert again.trace_.n_cached == n_done
    trees_now = sum(TreeCountingForest.built) - again.n_resources_[-1]  # without the refit
    assert trees_before + trees_now == _warm_trees(again), "no tree was built twice"
    if first is not None:
        assert trees_now == 0
        assert again.cv_results_["params"] == first.cv_results_["params"]
        np.testing.assert_array_equal(again.cv_results_["mean_test_score"],
                                      first.cv_results_["mean_test_score"])
    assert_rows_equal_sklearn(again)


# -- remote engines ----------------------------------------------------------------------

def _remote(backend):
    sklearn_cls, searched = PAIRS[ParallelHalvingRandomSearchCV]
    estimator, resource_kw = RESOURCES["n_estimators"]
    kw = dict(searched, **resource_kw, factor=2, cv=3, random_state=0)
    search = ParallelHalvingRandomSearchCV(estimator, **kw, backend=backend,
                                           asynchronous=True).fit(X, y)
    assert_async_halving(search, sklearn_cls, kw)
    return search


@pytest.mark.timeout(150)
def test_async_halving_on_dask(dask_client):
    search = _remote(dask_client)
    assert {t["pid"] for t in search.trace_} <= set(dask_client.run(os.getpid).values())


@pytest.mark.timeout(150)
def test_async_halving_on_ipyparallel(ipyparallel_client):
    search = _remote(ipyparallel_client)
    pids = {ipyparallel_client[e].apply_sync(os.getpid) for e in ipyparallel_client.ids}
    assert {t["pid"] for t in search.trace_} <= pids


def _killing_searches(tmp_path, backend):
    """A search whose fit of c=7 kills its worker once, then one where c=4 always does."""
    grid = {"c": list(range(9))}
    kw = dict(factor=3, cv=3, resource="sleep_on", min_resources=1, max_resources=9,
              asynchronous=True, backend=backend)
    once = CountingClassifier(crash_on=7, delay=0.02,
                              crash_once_marker=str(tmp_path / "crashed"))
    always = CountingClassifier(crash_on=4, delay=0.02)
    return (ParallelHalvingGridSearchCV(once, grid, **kw),
            ParallelHalvingGridSearchCV(always, grid, **kw, max_retries=1, refit=False))


def _assert_killed_worker_survived(search, tmp_path):
    assert (tmp_path / "crashed").exists(), "a worker was killed"
    assert not any(t["failed"] for t in search.trace_), "its fit ran again"
    assert search.best_params_["c"] == 8 and search.n_candidates_ == [9, 3, 1]


def _assert_candidate_given_up(search, warned):
    assert any("worker running this fit died" in str(w.message) for w in warned)
    rows = [i for i, p in enumerate(search.cv_results_["params"]) if p["c"] == 4]
    assert len(rows) == 1 and np.isnan(search.cv_results_["mean_test_score"][rows[0]])
    assert search.best_params_["c"] == 8


@pytest.mark.timeout(240)
def test_async_on_dask_retries_a_dead_workers_fits_then_gives_them_up(tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        once, always = _killing_searches(tmp_path, client)
        _assert_killed_worker_survived(once.fit(X, y), tmp_path)
        client.wait_for_workers(2, timeout=60)
        with pytest.warns(FitFailedWarning) as warned:
            always.fit(X, y)
        _assert_candidate_given_up(always, warned)
    finally:
        client.close()
        cluster.close()


@pytest.mark.timeout(240)
def test_async_on_ipyparallel_retries_a_dead_engines_fits(tmp_path):
    ipyparallel = pytest.importorskip("ipyparallel")
    cluster = ipyparallel.Cluster(n=3, log_level=40, controller_ip="127.0.0.1")
    client = cluster.start_and_connect_sync()
    try:
        client[:].execute(f"import sys; sys.path.insert(0, {TESTS!r})", block=True)
        once, _ = _killing_searches(tmp_path, client)
        _assert_killed_worker_survived(once.fit(X, y), tmp_path)
        assert len(client.ids) == 2, "one engine died"
    finally:
        client.close()
        cluster.stop_cluster_sync()


# -- estimator protocol ------------------------------------------------------------------

def test_asynchronous_is_a_parameter_and_is_validated():
    search = ParallelHalvingRandomSearchCV(DecisionTreeClassifier(), DISTRIBUTIONS,
                                           asynchronous=True)
    assert search.get_params()["asynchronous"] is True
    assert clone(search).asynchronous is True
    assert ParallelHalvingGridSearchCV(DecisionTreeClassifier(), {}).asynchronous is False
    with pytest.raises(ValueError, match="'asynchronous' parameter"):
        search.set_params(asynchronous="yes").fit(X, y)


def test_callbacks_see_the_search_and_the_refit():
    if not hasattr(HalvingGridSearchCV, "set_callbacks"):
        pytest.skip("this scikit-learn has no callback API")
    events = Events()
    search = ParallelHalvingGridSearchCV(DecisionTreeClassifier(random_state=0),
                                         {"max_depth": [1, 2, 3, 4, 5, 6]}, cv=3,
                                         asynchronous=True, n_jobs=1)
    search.set_callbacks(events).fit(X, y)
    assert events.ended == ["refit-with-best-params", "fit"]


def test_async_sampling_uses_sklearns_candidates_with_a_continuous_distribution():
    kw = dict(n_candidates=12, factor=3, cv=3, random_state=3)
    dists = {"C": loguniform(1e-3, 1e2)}
    ours = ParallelHalvingRandomSearchCV(LogisticRegression(), dists, **kw,
                                         asynchronous=True, n_jobs=1).fit(X, y)
    theirs = HalvingRandomSearchCV(LogisticRegression(), dists, **kw).fit(X, y)
    assert ours.cv_results_["params"][:12] == theirs.cv_results_["params"][:12]
    assert math.isclose(ours.cv_results_["mean_test_score"][0],
                        theirs.cv_results_["mean_test_score"][0])
