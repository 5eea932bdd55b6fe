"""The merge functions on hand-made records: no engine, no estimator."""

import random
import warnings

import numpy as np
import pytest
from sklearn.exceptions import FitFailedWarning

from parml.model_selection._fit_and_score import FitRecord
from parml.model_selection._results import (
    fill_error_scores,
    format_cross_validate,
    format_cv_results,
    param_arrays,
    rank_scores,
    records_by_key,
    warn_or_raise_about_fit_failures,
)


def make_records(n_candidates, n_splits, score=lambda c, s: c + s / 10.0, **kw):
    return [
        FitRecord(
            candidate_idx=c, split_idx=s, test_scores=score(c, s),
            train_scores=kw.get("train"), n_test_samples=10,
            fit_time=0.1 * c, score_time=0.01, fit_error=kw.get("error"),
        )
        for c in range(n_candidates)
        for s in range(n_splits)
    ]


def test_arrival_order_does_not_change_results():
    params = [{"a": i} for i in range(4)]
    records = make_records(4, 3)
    expected = format_cv_results(params, 3, records, False)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    got = format_cv_results(params, 3, shuffled, False)
    for key in expected:
        if key == "params":
            assert got[key] == expected[key]
        else:
            np.testing.assert_array_equal(got[key], expected[key])
    np.testing.assert_allclose(got["split2_test_score"], [0.2, 1.2, 2.2, 3.2])
    np.testing.assert_allclose(got["mean_test_score"], [0.1, 1.1, 2.1, 3.1])
    np.testing.assert_array_equal(got["rank_test_score"], [4, 3, 2, 1])
    assert got["rank_test_score"].dtype == np.int32


def test_missing_or_duplicate_keys_are_errors():
    records = make_records(2, 2)
    with pytest.raises(ValueError, match="No result for"):
        records_by_key(records[:-1], 2, 2)
    with pytest.raises(ValueError, match="Two results"):
        records_by_key(records + records[:1], 2, 2)


def test_param_arrays_mask_and_dtype():
    params = [{"kernel": "rbf", "gamma": 0.1}, {"kernel": "linear"},
              {"kernel": "rbf", "gamma": 1.0}]
    arrays = param_arrays(params)
    assert arrays["param_kernel"].dtype == object
    assert arrays["param_gamma"].dtype == np.float64
    np.testing.assert_array_equal(arrays["param_gamma"].mask, [False, True, False])
    ragged = param_arrays([{"w": [1]}, {"w": [2, 3]}])["param_w"]
    assert ragged.dtype == object and ragged[1] == [2, 3]


def test_rank_puts_nan_last_and_all_nan_first():
    np.testing.assert_array_equal(rank_scores(np.array([0.5, np.nan, 0.9, 0.5])), [2, 4, 1, 2])
    np.testing.assert_array_equal(rank_scores(np.array([np.nan, np.nan])), [1, 1])


def test_multimetric_and_train_scores():
    records = make_records(2, 2, score=lambda c, s: {"acc": c, "f1": -c},
                           train={"acc": 1.0, "f1": 1.0})
    out = format_cv_results([{"a": 0}, {"a": 1}], 2, records, True)
    np.testing.assert_array_equal(out["rank_test_acc"], [2, 1])
    np.testing.assert_array_equal(out["rank_test_f1"], [1, 2])
    np.testing.assert_array_equal(out["mean_train_f1"], [1.0, 1.0])


def test_failures_grouped_once_and_all_failed_raises():
    records = make_records(2, 2)
    for r in records[:3]:
        r.fit_error = "Traceback: ValueError: bad C"
    with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 4") as w:
        warn_or_raise_about_fit_failures(records, np.nan)
    assert len(w) == 1 and "3 fits failed with the following error" in str(w[0].message)
    records[3].fit_error = "other"
    with pytest.raises(ValueError, match="All the 4 fits failed"):
        warn_or_raise_about_fit_failures(records, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_or_raise_about_fit_failures(make_records(1, 1), np.nan)


def test_fill_error_scores_uses_names_of_successful_fits():
    records = make_records(1, 3, score=lambda c, s: {"a": 1.0, "b": 2.0})
    records[0].fit_error, records[0].test_scores = "boom", np.nan
    fill_error_scores(records, -1.0)
    assert records[0].test_scores == {"a": -1.0, "b": -1.0}


def test_format_cross_validate_orders_by_split():
    records = make_records(1, 3)[::-1]
    out = format_cross_validate(records, 3, return_train_score=False, return_estimator=False)
    np.testing.assert_allclose(out["test_score"], [0.0, 0.1, 0.2])
    assert sorted(out) == ["fit_time", "score_time", "test_score"]


def test_more_results_come_first_as_arrays_and_computed_keys_win():
    params = [{"a": 0}, {"a": 1}]
    more = {"iter": [0, 1], "mean_test_score": ["ignored", "ignored"]}
    results = format_cv_results(params, 2, make_records(2, 2), False, more_results=more)
    assert list(results)[0] == "iter"
    assert isinstance(results["iter"], np.ndarray) and results["iter"].tolist() == [0, 1]
    assert results["mean_test_score"].dtype == np.float64
    assert "iter" not in format_cv_results(params, 2, make_records(2, 2), False)
