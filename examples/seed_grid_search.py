"""
The seed grid search: SVC on the digits, side by side with scikit-learn
=======================================================================

The grid search from the talk parml grew from: an RBF support vector
classifier on the handwritten digits, ``C`` in ``[1, 10, 100]`` by ``gamma``
in ``[1e-3, 1e-4, 1e-5]``, 3-fold cross-validation: 27 fits.

``ParallelGridSearchCV`` takes the same arguments as scikit-learn's
``GridSearchCV`` and gives the same ``cv_results_``; it runs the fits on
2 worker processes with a progress bar.

Two timings: the search as the first parallel call of a fresh interpreter
(each library in a new Python process, imports and data loading not timed:
scikit-learn's workers import scikit-learn first, parml's are forks of the
process on Linux), then the search once both worker pools are warm.
"""

import json
import subprocess
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from parml import ParallelGridSearchCV

GRID = {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}


FIRST_CALL = """
import json, sys, time
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from parml import ParallelGridSearchCV
X, y = load_digits(return_X_y=True)
grid = json.loads(sys.argv[2])
search = (GridSearchCV if sys.argv[1] == "sklearn" else ParallelGridSearchCV)(
    SVC(), grid, cv=3, n_jobs=2)
start = time.perf_counter()
search.fit(X, y)
print(time.perf_counter() - start)
"""


def first_call(library):
    """Seconds of the search as the first parallel call of a new interpreter."""
    proc = subprocess.run([sys.executable, "-c", FIRST_CALL, library, json.dumps(GRID)],
                          capture_output=True, text=True, timeout=300, check=True)
    return float(proc.stdout.split()[-1])


def timed(make_search, X, y):
    start = time.perf_counter()
    search = make_search().fit(X, y)
    return search, time.perf_counter() - start


def same_scores(ours, theirs):
    keys = [k for k in theirs.cv_results_ if "test_score" in k]
    return all(np.array_equal(ours.cv_results_[k], theirs.cv_results_[k]) for k in keys)


def main():
    X, y = load_digits(return_X_y=True)
    print(f"Digits: {X.shape[0]} images of {X.shape[1]} pixels; grid {GRID}, cv=3", flush=True)

    print("\nFirst call of a fresh interpreter (each library in a new process):", flush=True)
    cold = {}
    for library in ("sklearn", "parml"):
        cold[library] = first_call(library)
        print(f"  {library:8}{cold[library]:6.2f}s", flush=True)
    print(f"  parml / sklearn: {cold['parml'] / cold['sklearn']:.2f}"
          " (one run; benchmarks/bench_cold_start.py reports medians)")

    def parml_search(progress=False):
        return ParallelGridSearchCV(SVC(), GRID, cv=3, n_jobs=2, progress=progress)

    def sklearn_search():
        return GridSearchCV(SVC(), GRID, cv=3, n_jobs=2)

    # Warm-up: start both worker pools, so the timings below compare searches.
    parml_search().fit(X[:200], y[:200])
    sklearn_search().fit(X[:200], y[:200])

    print("\nWarm workers: parml ParallelGridSearchCV(n_jobs=2, progress=True):", flush=True)
    ours, ours_time = timed(lambda: parml_search(progress=True), X, y)
    theirs, theirs_time = timed(sklearn_search, X, y)

    print(f"\n{'':30}{'best params':>32}{'best CV score':>15}{'wall time':>11}")
    for name, search, seconds in [
        ("parml ParallelGridSearchCV", ours, ours_time),
        ("sklearn GridSearchCV", theirs, theirs_time),
    ]:
        print(f"{name:30}{str(search.best_params_):>32}{search.best_score_:>15.4f}"
              f"{seconds:>10.2f}s")
    print(f"\nparml / sklearn wall time: {ours_time / theirs_time:.2f}"
          " (one run; benchmarks/bench_model_selection.py reports medians)")
    print("cv_results_ test scores identical to scikit-learn's:", same_scores(ours, theirs))


if __name__ == "__main__":
    main()
