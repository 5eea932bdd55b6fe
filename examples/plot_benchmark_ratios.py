"""
parml against scikit-learn: the benchmark ratios
================================================

The table in ``docs/benchmarks.md`` is written by
``benchmarks/bench_model_selection.py``, which times parml and scikit-learn
in the same run, on the same machine. This example reads the ratios from that
table and draws them with :func:`parml.plot.speedup`: below 1, parml is faster.
"""

import os
import re

import matplotlib.pyplot as plt

from parml import plot

here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
table = os.path.join(here, "..", "docs", "benchmarks.md")
ratios = {}
with open(table) as file:
    for line in file:
        match = re.match(r"\| ([^|]+?) \| \d+ \| [\d.]+ \| [\d.]+ \| \*\*([\d.]+)\*\*", line)
        if match:
            ratios[match.group(1).split(" (")[0]] = float(match.group(2))
print(ratios)

plot.speedup(ratios)
plt.show()
