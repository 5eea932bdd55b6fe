"""The seed grid on each engine, and the cost per task of many tiny fits.

In one run: parml on local loky processes (n_jobs=2), parml on a 2-worker
Dask LocalCluster (processes, one thread each), parml on an ipyparallel
cluster of 2 engines, and scikit-learn's GridSearchCV on the Dask cluster
through joblib's Dask backend; medians of interleaved repeats after a
warm-up, ratios to parml on loky and to scikit-learn. Then 1,000 tiny fits
(DummyClassifier, 200 candidates x 5 folds) on loky, Dask and ipyparallel, as
milliseconds of wall time per fit. The clusters are started and stopped here.

Usage: ``python benchmarks/bench_engines.py [--repeats N]``; writes
``docs/benchmarks-engines.md``.
"""

import argparse
import os
import warnings

from joblib import parallel_config
from sklearn.datasets import load_digits, make_classification
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from _harness import compare, write_report
from parml import ParallelGridSearchCV

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "benchmarks-engines.md")
N_TINY_FITS = 1000  # 200 candidates x 5 folds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import ipyparallel
    from distributed import Client, LocalCluster

    X, y = load_digits(return_X_y=True)
    grid = {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}
    Xt, yt = make_classification(200, random_state=0)
    tiny = {"constant": list(range(200)), "strategy": ["prior"]}
    engines = ipyparallel.Cluster(n=2, log_level=40, controller_ip="127.0.0.1")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            engines as ipp_client:

        def sklearn_dask():
            with parallel_config("dask"):
                return GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)

        seed = compare({
            "parml, loky n_jobs=2": lambda: ParallelGridSearchCV(
                SVC(), grid, cv=3, n_jobs=2).fit(X, y),
            "parml, Dask 2 workers": lambda: ParallelGridSearchCV(
                SVC(), grid, cv=3, backend=client).fit(X, y),
            "parml, ipyparallel 2 engines": lambda: ParallelGridSearchCV(
                SVC(), grid, cv=3, backend=ipp_client).fit(X, y),
            "sklearn + joblib's Dask backend": sklearn_dask,
            "sklearn, loky n_jobs=2": lambda: GridSearchCV(
                SVC(), grid, cv=3, n_jobs=2).fit(X, y),
        }, repeats=args.repeats)
        small = compare({
            "parml, loky n_jobs=2": lambda: ParallelGridSearchCV(
                DummyClassifier(), tiny, cv=5, n_jobs=2).fit(Xt, yt),
            "parml, Dask 2 workers": lambda: ParallelGridSearchCV(
                DummyClassifier(), tiny, cv=5, backend=client).fit(Xt, yt),
            "parml, ipyparallel 2 engines": lambda: ParallelGridSearchCV(
                DummyClassifier(), tiny, cv=5, backend=ipp_client).fit(Xt, yt),
            "sklearn, loky n_jobs=2": lambda: GridSearchCV(
                DummyClassifier(), tiny, cv=5, n_jobs=2).fit(Xt, yt),
        }, repeats=max(3, args.repeats // 2))
    base, sk = seed["parml, loky n_jobs=2"], seed["sklearn, loky n_jobs=2"]
    rows = [[name, f"{t:.3f}", f"**{t / base:.2f}**", f"{t / sk:.2f}",
             f"{small[name] * 1e3 / N_TINY_FITS:.2f}" if name in small else ""]
            for name, t in seed.items()]
    write_report(args.out, [
        "# Benchmark: engines",
        "",
        "The seed grid (SVC on the digits, 3 x 3, cv=3: 27 fits) on each engine,",
        "and 1,000 tiny fits (DummyClassifier) as wall milliseconds per fit;",
        "medians of interleaved repeats after a warm-up, measured by",
        "`python benchmarks/bench_engines.py`. The Dask cluster is a",
        "LocalCluster of 2 worker processes with one thread each, on loopback;",
        "the ipyparallel cluster is a controller and 2 engines",
        "(`ipyparallel.Cluster(n=2)`), on loopback.",
    ], rows, ["engine", "seed grid (s)", "seed grid / parml loky",
              "seed grid / sklearn loky", "tiny fits (ms per fit)"],
        ratios={
            "seed grid, Dask / sklearn on Dask": round(
                seed["parml, Dask 2 workers"] / seed["sklearn + joblib's Dask backend"], 2),
            "seed grid, ipyparallel / sklearn loky": round(
                seed["parml, ipyparallel 2 engines"] / sk, 2),
        })


if __name__ == "__main__":
    main()
