"""
parml against scikit-learn: the benchmark ratios
================================================

Every benchmark in ``benchmarks/`` times (or measures the memory of) parml
and its reference in the same run, on the same machine, and leaves its
headline ratios in ``benchmarks/results/*.json``: the warm searches of
``docs/benchmarks.md``, the first call of a fresh interpreter
(``docs/benchmarks-cold-start.md``), the memory of a large-data grid, the
remote engines, the forests and SGD. This example reads them all and draws
them with :func:`parml.plot.speedup`: below 1, parml is faster (or leaner).
"""

import glob
import json
import os

import matplotlib.pyplot as plt

from parml import plot

here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
ratios = {}
for path in sorted(glob.glob(os.path.join(here, "..", "benchmarks", "results", "*.json"))):
    with open(path) as file:
        ratios.update(json.load(file)["ratios"])
print(ratios)

ax = plot.speedup(ratios, reference="the reference")
ax.figure.set_size_inches(8, 0.6 + 0.35 * len(ratios))
plt.show()
