"""Shared pieces of the benchmarks: alternate the contenders, report medians and ratios."""

import json
import os
import platform
import statistics
import time
from datetime import date

import joblib
import numpy as np
import sklearn


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def compare(contenders, repeats):
    """Run each contender ``repeats`` times, interleaved; return medians (s).

    ``contenders`` maps a name to a zero-argument callable. Every contender
    runs once before timing (worker pools started, caches warm).
    """
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn)[1])
    return {name: statistics.median(values) for name, values in times.items()}


def environment():
    from parml import __version__

    return (
        f"{date.today().isoformat()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, parml {__version__}, scikit-learn "
        f"{sklearn.__version__}, joblib {joblib.__version__}, numpy {np.__version__}"
    )


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


#: Where each benchmark leaves its headline ratios for ``run_all.py``'s plot.
RATIOS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_report(path, intro, rows, header, outro=(), ratios=None):
    """Write (and print) a markdown report: intro lines, environment, table, outro.

    ``ratios`` (label -> parml / reference, measured in this run) is also
    saved as ``results/<report name>.json`` for the summary plot.
    """
    text = "\n".join([*intro, "", f"Environment: {environment()}.", "",
                      table(rows, header), "", *outro])
    with open(path, "w") as file:
        file.write(text)
    print(text)
    if ratios:
        os.makedirs(RATIOS_DIR, exist_ok=True)
        name = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(RATIOS_DIR, f"{name}.json"), "w") as file:
            json.dump({"environment": environment(), "ratios": ratios}, file, indent=1)
