"""The first parallel call of a fresh interpreter: parml against scikit-learn.

Most searches in a notebook or a script are the first parallel call of
their process. Each repeat runs each contender in a new interpreter, which
imports the libraries and loads the data (not timed), then times its first
call (worker start-up included) and a second one in the same process
(workers warm), and reports where the first fit of the first call started.

Scenarios (``n_jobs=2``):

- seed grid: SVC on the digits, C in [1, 10, 100] x gamma in [1e-4, 1e-3,
  1e-2], cv=3 (27 fits and a refit); ``ParallelGridSearchCV`` against
  ``GridSearchCV``;
- cross-validation: LogisticRegression on 20,000 x 50, 5 folds;
  ``cross_val_parallel`` against ``cross_validate``.

parml runs twice: with its default start (warm workers forked from a
template of the process, on Linux) and with ``PARML_WORKER_START=loky``
(new interpreters, as scikit-learn's joblib starts them).

Usage: ``python benchmarks/bench_cold_start.py [--repeats N]``; writes
``docs/benchmarks-cold-start.md`` and ``results/benchmarks-cold-start.json``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from _harness import write_report

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "benchmarks-cold-start.md")

CHILD = """
import json, sys, time, warnings
import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.svm import SVC
from parml import ParallelGridSearchCV, cross_val_parallel
warnings.simplefilter("ignore")
scenario, library = sys.argv[1], sys.argv[2]
if scenario == "grid":
    X, y = load_digits(return_X_y=True)
    grid = {"C": [1, 10, 100], "gamma": [1e-4, 1e-3, 1e-2]}
    if library == "sklearn":
        call = lambda: GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)
    else:
        call = lambda: ParallelGridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)
else:
    X, y = make_classification(20000, 50, n_informative=20, random_state=0)
    estimator = LogisticRegression(max_iter=1000)
    if library == "sklearn":
        call = lambda: cross_validate(estimator, X, y, cv=5, n_jobs=2)
    else:
        call = lambda: cross_val_parallel(estimator, X, y, cv=5, n_jobs=2)
times, first_fit = [], None
for _ in range(2):
    start = time.time()
    result = call()
    times.append(time.time() - start)
    trace = getattr(result, "trace_", None)
    if first_fit is None and trace:
        first_fit = min(event["start"] for event in trace) - start
print(json.dumps({"first": times[0], "second": times[1], "first_fit": first_fit}))
"""

CONTENDERS = [("scikit-learn", "sklearn", "loky"), ("parml", "parml", "warm"),
              ("parml, PARML_WORKER_START=loky", "parml", "loky")]
SCENARIOS = [("grid", "seed grid (SVC, digits, 27 fits)"),
             ("cv", "cross-validation (LogisticRegression, 20,000 x 50, 5 folds)")]


def measure(scenario, library, start):
    env = dict(os.environ, PARML_WORKER_START=start)
    proc = subprocess.run([sys.executable, "-c", CHILD, scenario, library], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def medians(runs, key):
    values = [run[key] for run in runs if run[key] is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    runs = {(scenario, name): [] for scenario, _ in SCENARIOS for name, *_ in CONTENDERS}
    for repeat in range(args.repeats):
        for scenario, _ in SCENARIOS:
            for name, library, start in CONTENDERS:
                runs[scenario, name].append(measure(scenario, library, start))
                print(repeat, scenario, name, runs[scenario, name][-1], flush=True)
    rows, ratios = [], {}
    for scenario, label in SCENARIOS:
        reference = medians(runs[scenario, "scikit-learn"], "first")
        for name, *_ in CONTENDERS:
            first = medians(runs[scenario, name], "first")
            second = medians(runs[scenario, name], "second")
            first_fit = medians(runs[scenario, name], "first_fit")
            rows.append([label, name, f"{first:.2f}", f"{second:.2f}",
                         f"**{first / reference:.2f}**",
                         "" if first_fit is None else f"{first_fit:.2f}"])
        parml_first = medians(runs[scenario, "parml"], "first")
        short = "seed grid" if scenario == "grid" else "cross_val_parallel"
        ratios[f"first call, {short}: time / sklearn"] = round(parml_first / reference, 2)
    write_report(args.out, [
        "# Benchmark: the first parallel call of a process",
        "",
        "Each repeat runs each contender in a new interpreter: it imports the",
        "libraries and loads the data (not timed), then times its first call,",
        "worker start-up included, and a second call in the same process (warm",
        f"workers). `n_jobs=2`; medians of {args.repeats} repeats, measured by",
        "`python benchmarks/bench_cold_start.py`; the ratio is the first call's",
        "time over scikit-learn's first call's. *First fit starts* is when the",
        "first fit of parml's first call started, after the call began (from",
        "`trace_`): what remains of the start-up.",
    ], rows, ["scenario", "contender", "first call (s)", "second call (s)",
              "first call / scikit-learn's", "first fit starts (s)"], ratios=ratios,
        outro=OUTRO)


OUTRO = [
    "What the first call pays: scikit-learn's workers (joblib's loky executor)",
    "are new interpreters, each importing numpy, scipy and scikit-learn before",
    "its first fit, about a second on this machine's cores, which the two",
    "workers pay at once. parml's workers are forks of a template of the",
    "process, made from a fresh thread when the first call needs them",
    "(`parml/scheduler/_warm_template.py`): they start with everything the",
    "process had imported. What remains is the fork of the template and of",
    "each worker, and the workers' first use of code paths that the parent",
    "had not run; the table's last column shows how soon the first fit",
    "starts. `PARML_WORKER_START=loky` is the start of scikit-learn's workers,",
    "for comparison; it is what macOS and Windows get (see",
    "[the engines guide](engines.md#start-up)).",
    "",
]


if __name__ == "__main__":
    main()
