"""AveragedSGD against single-process SGD and one-shot mixing, in the same run.

1,000,000 x 100 (``make_classification``), 80 % to train, 20 % held out. Three
contenders, each for the same number of epochs, interleaved after a warm-up,
repeated; the table reports medians:

- single process: ``SGDClassifier(max_iter=epochs, tol=None)``;
- ``AveragedSGD`` with 2 local workers (parameters averaged after every epoch);
- one-shot mixing: 2 workers (joblib, loky) each train ``SGDClassifier`` on
  their shard for all the epochs; the models are averaged once at the end.

Time per epoch is the fit's wall time divided by the epochs (everything:
sharding, starting workers, every epoch); for AveragedSGD the steady epoch
(median of its epochs after the first: the passes and the AllReduce) is shown
too. Accuracy is on the held-out rows.

Usage: ``python benchmarks/bench_sgd.py [--repeats N] [--epochs E] [--quick]``;
writes ``docs/benchmarks-sgd.md``.
"""

import argparse
import os
import statistics
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.utils import check_random_state

from _harness import compare, write_report
from parml import AveragedSGD
from parml.linear_model._averaged_sgd import shard_rows

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "benchmarks-sgd.md")


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


def run(repeats, epochs, n_samples):
    X, y = make_classification(n_samples, 100, n_informative=50, random_state=0)
    split = int(0.8 * n_samples)
    X_train, y_train, X_test, y_test = X[:split], y[:split], X[split:], y[split:]
    del X, y
    last = {}

    def single():
        last["single"] = SGDClassifier(max_iter=epochs, tol=None, random_state=0).fit(
            X_train, y_train)

    def averaged():
        last["averaged"] = AveragedSGD(n_workers=2, max_iter=epochs, tol=None,
                                       random_state=0, backend="loky").fit(X_train, y_train)

    def mixed_once():
        last["once"] = one_shot(X_train, y_train, 2, epochs)

    steady = []
    contenders = {"single": single, "averaged": averaged, "once": mixed_once}

    def averaged_recorded():
        averaged()
        steady.append(statistics.median(last["averaged"].epoch_times_[1:]))

    contenders["averaged"] = averaged_recorded
    medians = compare(contenders, repeats=repeats)
    acc = {name: model.score(X_test, y_test) for name, model in last.items()}
    per_epoch = {name: seconds / epochs for name, seconds in medians.items()}
    steady_epoch = statistics.median(steady[1:] or steady)
    base = per_epoch["single"]
    rows = [
        ["single-process SGDClassifier", f"{per_epoch['single']:.3f}", "", "1.00", "",
         f"{100 * acc['single']:.2f}"],
        ["AveragedSGD, 2 local workers", f"{per_epoch['averaged']:.3f}",
         f"{steady_epoch:.3f}", f"**{per_epoch['averaged'] / base:.2f}**",
         f"**{steady_epoch / base:.2f}**", f"{100 * acc['averaged']:.2f}"],
        ["one-shot mixing, 2 workers", f"{per_epoch['once']:.3f}", "",
         f"{per_epoch['once'] / base:.2f}", "", f"{100 * acc['once']:.2f}"],
    ]
    print(medians, steady, acc, flush=True)
    return rows, split, n_samples - split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n_samples = 200_000 if args.quick else 1_000_000
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows, n_train, n_test = run(args.repeats, args.epochs, n_samples)
    write_report(args.out, [
        "# Benchmarks: AveragedSGD",
        "",
        "Measured by `python benchmarks/bench_sgd.py`: a linear classifier on",
        f"`make_classification({n_samples:,}, 100, n_informative=50)`, {n_train:,} rows",
        f"to train and {n_test:,} held out, {args.epochs} epochs for every contender,",
        f"`tol=None`; interleaved after a warm-up, medians of {args.repeats} repeats.",
        "*Fit / epoch* is the whole fit's wall time divided by the epochs (sharding",
        "into memory maps and starting the workers included); *steady epoch* is the",
        "median time of AveragedSGD's epochs after the first (every worker's pass",
        "and the AllReduce). Ratios are to the single-process time per epoch",
        "(lower is better); accuracy is on the held-out rows.",
        "One-shot mixing trains one SGDClassifier per shard for all the epochs",
        "(2 loky workers) and averages the models once, at the end.",
        f"Load average (1 min) when the run started: {load:.2f} on "
        f"{os.cpu_count()} cores; above the core count, other jobs shared the",
        "cores, which slows AveragedSGD (it needs every core) more than the",
        "single process (it needs one).",
    ], rows, ["method", "fit / epoch (s)", "steady epoch (s)", "fit / epoch ratio",
              "steady epoch ratio", "held-out accuracy (%)"], outro=[""],
        ratios={"AveragedSGD, whole fit per epoch / SGD": float(rows[1][3].strip("*")),
                "AveragedSGD, steady epoch / SGD": float(rows[1][4].strip("*"))})


if __name__ == "__main__":
    main()
