"""AveragedSGD against single-process SGD, whole fits, in the same run.

``make_classification(600,000, 100, n_informative=50)``: 500,000 rows to train,
100,000 held out; 5 epochs for every contender (``tol=None``), 2 workers for
AveragedSGD. Two measures, each the median of ``--repeats`` repeats, the
contenders interleaved:

- **first fit in a fresh interpreter**: each repeat runs each contender in a
  new Python process, which imports the libraries and makes the data (not
  timed), then times its first ``fit`` (for AveragedSGD: starting its workers,
  placing the shards, every epoch);
- **later fits**: in this process, after one fit of each contender (workers
  started), the whole ``fit`` again (a grid search's next candidate).

Contenders: ``SGDClassifier(max_iter=5, tol=None)``; ``AveragedSGD(n_jobs=2)``
(its default backend: threads of the process); ``AveragedSGD(n_jobs=2,
backend="loky")`` (the local pool's worker processes, shards written to
memory maps); one-shot mixing (each of 2 loky workers trains an SGDClassifier
on its shard for all the epochs; the models are averaged once, at the end),
for accuracy. Held-out accuracy is on the 100,000 rows.

Usage: ``python benchmarks/bench_sgd.py [--repeats N] [--quick]``; writes
``docs/benchmarks-sgd.md`` and ``results/benchmarks-sgd.json``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.utils import check_random_state

from _harness import timed, write_report
from parml import AveragedSGD
from parml.linear_model._averaged_sgd import shard_rows

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "benchmarks-sgd.md")
EPOCHS = 5

CHILD = """
import json, sys, time, warnings
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from parml import AveragedSGD
warnings.simplefilter("ignore")
name, n_train, n_test, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X, y = make_classification(n_train + n_test, 100, n_informative=50, random_state=0)
X, y, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
kw = dict(max_iter=epochs, tol=None, random_state=0)
model = {"single": lambda: SGDClassifier(**kw),
         "threads": lambda: AveragedSGD(n_jobs=2, **kw),
         "processes": lambda: AveragedSGD(n_jobs=2, backend="loky", **kw)}[name]()
start = time.perf_counter()
model.fit(X, y)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "accuracy": model.score(X_test, y_test)}))
"""

#: (label, child name) of the contenders timed in fresh interpreters.
COLD = [("single-process SGDClassifier", "single"),
        ("AveragedSGD(n_jobs=2), threads (default)", "threads"),
        ("AveragedSGD(n_jobs=2, backend='loky')", "processes")]


def fresh_fit(name, n_train, n_test):
    """Seconds of the first ``fit`` of contender ``name`` in a new interpreter."""
    proc = subprocess.run([sys.executable, "-c", CHILD, name, str(n_train), str(n_test),
                           str(EPOCHS)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the {name} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def first_fits(repeats, n_train, n_test):
    """Median first-fit seconds per contender, fresh interpreters interleaved."""
    times = {name: [] for _, name in COLD}
    for repeat in range(repeats):
        for _, name in COLD:
            times[name].append(fresh_fit(name, n_train, n_test))
        print(f"fresh interpreters, repeat {repeat + 1}: "
              f"{ {k: round(v[-1], 3) for k, v in times.items()} }", flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def _spin(seconds_of_work=20_000_000):
    import time

    start, total = time.perf_counter(), 0
    for i in range(seconds_of_work):
        total += i
    return time.perf_counter() - start


def free_cores():
    """How many cores two processes got: 1 process's time for a CPU loop over 2's.

    2.0 when two cores are free, 1.0 when other jobs left the equivalent of one.
    """
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin, [1, 1]))
        alone = statistics.median(next(pool.map(_spin, [20_000_000])) for _ in range(3))
        both = statistics.median(max(pool.map(_spin, [20_000_000] * 2)) for _ in range(3))
    return 2 * alone / both


def one_shot(X, y, n_workers, epochs, random_state=0):
    rows = shard_rows(y, n_workers, check_random_state(random_state), stratify=True)
    models = Parallel(n_jobs=n_workers)(
        delayed(SGDClassifier(max_iter=epochs, tol=None, random_state=i).fit)(X[r], y[r])
        for i, r in enumerate(rows))
    sizes = [len(r) for r in rows]
    mixed = models[0]
    mixed.coef_ = np.average([m.coef_ for m in models], axis=0, weights=sizes)
    mixed.intercept_ = np.average([m.intercept_ for m in models], axis=0, weights=sizes)
    return mixed


def later_fits(repeats, n_train, n_test):
    """Median seconds of a fit after a first one, in this process; accuracies; epochs."""
    X, y = make_classification(n_train + n_test, 100, n_informative=50, random_state=0)
    X, y, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    kw = dict(max_iter=EPOCHS, tol=None, random_state=0)
    last, steady = {}, {"threads": [], "processes": []}

    def averaged(name, backend):
        def fit():
            last[name] = AveragedSGD(n_jobs=2, backend=backend, **kw).fit(X, y)
            steady[name].append(statistics.median(last[name].epoch_times_[1:]))
        return fit

    contenders = {
        "single": lambda: last.__setitem__("single", SGDClassifier(**kw).fit(X, y)),
        "threads": averaged("threads", None),
        "processes": averaged("processes", "loky"),
        "once": lambda: last.__setitem__("once", one_shot(X, y, 2, EPOCHS)),
    }
    for fit in contenders.values():  # one fit each first: workers started, caches warm
        fit()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fit in contenders.items():
            times[name].append(timed(fit)[1])
    print("later fits:", {name: [round(t, 3) for t in values]
                          for name, values in times.items()}, flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    accuracy = {name: model.score(X_test, y_test) for name, model in last.items()}
    epochs = {name: statistics.median(values[1:]) for name, values in steady.items()}
    print(medians, accuracy, epochs, flush=True)
    return medians, accuracy, epochs


def _row(label, name, cold, warm, accuracy, epochs):
    base_cold, base_warm = cold.get("single"), warm["single"]
    cells = [label]
    if name in cold:
        cells += [f"{cold[name]:.3f}", f"**{cold[name] / base_cold:.2f}**"]
    else:
        cells += ["", ""]
    cells += [f"{warm[name]:.3f}", f"**{warm[name] / base_warm:.2f}**"]
    cells += [f"{epochs[name]:.3f}" if name in epochs else "",
              f"{100 * accuracy[name]:.2f}"]
    return cells


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100,000 rows to train")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n_train, n_test = (100_000, 20_000) if args.quick else (500_000, 100_000)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = [free_cores()]
    cold = first_fits(args.repeats, n_train, n_test)
    warm, accuracy, epochs = later_fits(args.repeats, n_train, n_test)
    cores.append(free_cores())
    rows = [_row(label, name, cold, warm, accuracy, epochs) for label, name in
            COLD + [("one-shot mixing, 2 loky workers", "once")]]
    ratios = {
        "AveragedSGD, first fit in a fresh interpreter / SGD": cold["threads"] / cold["single"],
        "AveragedSGD, a later fit / SGD": warm["threads"] / warm["single"],
        "AveragedSGD on loky processes, first fit / SGD": cold["processes"] / cold["single"],
        "AveragedSGD on loky processes, a later fit / SGD": warm["processes"] / warm["single"],
    }
    write_report(args.out, [
        "# Benchmarks: AveragedSGD",
        "",
        "Measured by `python benchmarks/bench_sgd.py`: a linear classifier on",
        f"`make_classification({n_train + n_test:,}, 100, n_informative=50)`, {n_train:,}",
        f"rows to train and {n_test:,} held out, {EPOCHS} epochs for every contender,",
        f"`tol=None`, 2 workers for AveragedSGD; medians of {args.repeats} repeats, the",
        "contenders interleaved. *First fit* is timed in a fresh interpreter (a new",
        "Python process per contender and repeat, which imports the libraries and",
        "makes the data untimed, then times its first `fit`: worker start-up and",
        "shard placement included). *Later fit* is a whole `fit` in this process",
        "after one fit of each contender, as a grid search's next candidate runs.",
        "*Steady epoch* is the median of AveragedSGD's epochs after the first",
        "(every worker's pass and the AllReduce). Ratios are to the",
        "single-process SGDClassifier of the same measure (lower is better).",
        f"Load average (1 min) when the run started: {load:.2f} on {os.cpu_count()} cores;",
        "above the core count, other jobs shared the cores, which slows AveragedSGD",
        "(it needs every core) more than the single process (it needs one). Cores",
        "free for this run, measured before and after it (two processes running the",
        "same CPU loop, against one: 2.0 when two cores are free, 1.0 when other",
        f"jobs left the equivalent of one): {cores[0]:.2f} and {cores[1]:.2f}.",
    ], rows, ["method", "first fit (s)", "first fit ratio", "later fit (s)",
              "later fit ratio", "steady epoch (s)", "held-out accuracy (%)"],
        outro=["", f"Held-out accuracy, AveragedSGD minus SGDClassifier: "
               f"{100 * (accuracy['threads'] - accuracy['single']):+.2f} points (the same",
               "model on threads and processes: the same shards, the same additions).",
               "",
               "Where the time goes. Threads (AveragedSGD's default) start nothing and",
               "write nothing: each worker copies its rows in memory, in parallel, and the",
               "epochs run on both cores (SGD's passes release the GIL). Worker processes",
               "are started once per process (forks of a warm template on Linux) and reused",
               "by every later fit, but each fit writes its shards to memory maps (every",
               "byte of X once, into fresh pages), and a process reads its shard through",
               "4 KiB pages of the shared-memory file rather than the huge pages of private",
               "memory, which makes its epochs a little slower.", ""],
        ratios={k: round(v, 3) for k, v in ratios.items()})


if __name__ == "__main__":
    main()
