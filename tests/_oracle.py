"""The oracle comparison shared by the test files: parml's search against sklearn's."""

import numpy as np


def assert_same_search(ours, theirs, X=None):
    """Everything but times equal; predictions of the refitted model equal."""
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    for key, expected in theirs.cv_results_.items():
        got = ours.cv_results_[key]
        if key == "params":
            assert got == expected
            continue
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        if "time" in key:
            continue
        if isinstance(expected, np.ma.MaskedArray):
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected))
            assert list(got.compressed()) == list(expected.compressed()), key
        else:
            np.testing.assert_array_equal(got, expected, err_msg=key)
    for attr in ("best_index_", "best_params_", "best_score_", "n_splits_", "multimetric_"):
        if hasattr(theirs, attr):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
        else:
            assert not hasattr(ours, attr), attr
    assert hasattr(ours, "best_estimator_") == hasattr(theirs, "best_estimator_")
    assert hasattr(ours, "refit_time_") == hasattr(theirs, "refit_time_")
    if hasattr(theirs, "best_estimator_") and X is not None:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
