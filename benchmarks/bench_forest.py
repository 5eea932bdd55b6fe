"""BaggedForest against scikit-learn's forests: fit time, same run, same cores.

A 50,000 x 50 classification problem, 100 members (random-forest trees:
``DecisionTreeClassifier(max_features="sqrt")``) on all cores: parml's
BaggedForest on loky processes and on threads, sklearn's
``RandomForestClassifier(n_jobs=-1)`` and ``BaggingClassifier(n_jobs=-1)``
with the same trees. Medians of interleaved repeats after a warm-up; ratios
to each sklearn contender; held-out accuracy of each.

Usage: ``python benchmarks/bench_forest.py [--repeats N]``; writes
``docs/benchmarks-forest.md``.
"""

import argparse
import os

from sklearn.datasets import make_classification
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from _harness import compare, write_report
from parml import BaggedForest

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "benchmarks-forest.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    X, y = make_classification(n_samples=60_000, n_features=50, n_informative=20,
                               random_state=0)
    X, X_test, y, y_test = train_test_split(X, y, train_size=50_000, random_state=0)
    tree = DecisionTreeClassifier(max_features="sqrt")
    makers = {
        "parml BaggedForest, loky n_jobs=-1": lambda: BaggedForest(
            n_estimators=100, n_jobs=-1, random_state=0),
        "parml BaggedForest, threading n_jobs=-1": lambda: BaggedForest(
            n_estimators=100, n_jobs=-1, backend="threading", random_state=0),
        "sklearn RandomForestClassifier(n_jobs=-1)": lambda: RandomForestClassifier(
            100, n_jobs=-1, random_state=0),
        "sklearn BaggingClassifier(n_jobs=-1)": lambda: BaggingClassifier(
            tree, 100, n_jobs=-1, random_state=0),
    }
    fitted = {}

    def fit(name):
        fitted[name] = makers[name]().fit(X, y)

    medians = compare({name: (lambda n=name: fit(n)) for name in makers},
                      repeats=args.repeats)
    forest = medians["sklearn RandomForestClassifier(n_jobs=-1)"]
    bagging = medians["sklearn BaggingClassifier(n_jobs=-1)"]
    rows = [[name, f"{t:.2f}", f"**{t / forest:.2f}**", f"**{t / bagging:.2f}**",
             f"{fitted[name].score(X_test, y_test):.4f}"] for name, t in medians.items()]
    write_report(args.out, [
        "# Benchmark: BaggedForest",
        "",
        "Fit time of 100 random-forest trees on a 50,000 x 50 problem",
        "(`make_classification`, 20 informative features) on all cores, in one",
        "run: medians of interleaved repeats after a warm-up, measured by",
        "`python benchmarks/bench_forest.py`. Targets: no slower than",
        "`BaggingClassifier` and within 15% of `RandomForestClassifier`.",
    ], rows, ["fit", "time (s)", "/ RandomForest", "/ Bagging", "held-out accuracy"],
        ratios={"forest (loky) / RandomForest": round(
                    medians["parml BaggedForest, loky n_jobs=-1"] / forest, 2),
                "forest (loky) / Bagging": round(
                    medians["parml BaggedForest, loky n_jobs=-1"] / bagging, 2)})


if __name__ == "__main__":
    main()
