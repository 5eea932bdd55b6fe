"""Run every benchmark in turn, then draw their headline ratios into the docs.

Each ``bench_*.py`` measures parml and its reference (scikit-learn, and the
engines' own paths) in the same run and writes its table into ``docs/``;
this script runs them one after the other (never at once: they would compete
for the cores), then draws every ratio it finds in ``results/`` with
:func:`parml.plot.speedup` into ``docs/_static/benchmark-ratios.png``, which
``docs/benchmarks.md`` shows.

Usage: ``python benchmarks/run_all.py [--only NAME ...] [--plot-only]``
(needs ``pip install -e ".[bench]"``: Dask, ipyparallel, matplotlib and,
as a contender, dask-ml). Takes about half an hour on 2 cores.
"""

import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "docs", "_static", "benchmark-ratios.png")
BENCHMARKS = ["model_selection", "cold_start", "memory", "engines", "forest", "sgd", "halving"]
#: Scripts that follow a benchmark and read its results (not timed themselves).
FOLLOW_UPS = {"halving": ["sim_halving.py"]}


def collect_ratios():
    ratios = {}
    for path in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))):
        with open(path) as file:
            ratios.update(json.load(file)["ratios"])
    return ratios


def draw(ratios, path=PLOT):
    import matplotlib

    matplotlib.use("Agg")
    from parml import plot

    ax = plot.speedup(ratios, reference="the reference")
    ax.figure.set_size_inches(8, 0.6 + 0.35 * len(ratios))
    ax.set_xlabel("parml / the reference, time or memory (lower is better)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ax.figure.savefig(path, dpi=100)
    print(f"wrote {os.path.relpath(path)} ({len(ratios)} ratios)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the plot from the last results")
    args = parser.parse_args()
    if not args.plot_only:
        for name in args.only:
            script = os.path.join(HERE, f"bench_{name}.py")
            if not os.path.exists(script):
                continue
            print(f"== {name}", flush=True)
            subprocess.run([sys.executable, script], cwd=HERE, check=True)
            for follow_up in FOLLOW_UPS.get(name, []):
                subprocess.run([sys.executable, os.path.join(HERE, follow_up)], cwd=HERE,
                               check=True)
    draw(collect_ratios())


if __name__ == "__main__":
    main()
