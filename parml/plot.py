"""Look at a search: scores over the grid, tasks over time, benchmark ratios.

Needs matplotlib (``pip install "parml[plot]"``). Every function draws on the
Axes it is given (or a new figure) and returns the Axes, so plots compose
with the rest of a matplotlib figure.
"""

import itertools

import numpy as np

from ._optional import import_optional

__all__ = ["grid_scores", "speedup", "timeline"]


def _pyplot():
    return import_optional("matplotlib.pyplot", extra="plot", purpose="parml.plot")


def _axes(ax, **subplots):
    if ax is not None:
        return ax
    # A figure of our own: lay it out so long tick labels are not clipped.
    _, ax = _pyplot().subplots(layout="constrained", **subplots)
    return ax


def _searched_params(results):
    """Names of the parameters that take more than one value."""
    names = []
    for key in results:
        if key.startswith("param_"):
            column = results[key]
            values = {repr(v) for v in np.ma.getdata(column)[~np.ma.getmaskarray(column)]}
            if len(values) > 1:
                names.append(key[len("param_"):])
    return names


def _values(results, name):
    column = results[f"param_{name}"]
    seen = []
    for value in np.ma.getdata(column)[~np.ma.getmaskarray(column)]:
        if not any(value is v or (type(value) is type(v) and value == v) for v in seen):
            seen.append(value)
    try:
        return sorted(seen)
    except TypeError:
        return seen


def _label(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid_scores(search, params=None, *, metric=None, ax=None, cmap="viridis"):
    """Mean test score over the grid, best candidate marked.

    Two parameters give a heatmap (one cell per pair of values, the score
    written in each cell, the best cell outlined); one parameter gives a line
    with a band of plus or minus one standard deviation over the splits; more
    parameters give one heatmap per combination of the others (facets).

    Parameters
    ----------
    search : fitted ParallelGridSearchCV (or any fitted scikit-learn search)
    params : list of str, default=None
        The parameters to draw, without the ``param_`` prefix; by default those
        that take more than one value.
    metric : str, default=None
        The metric for multi-metric searches (default: the refit metric).
    ax : matplotlib Axes, default=None
        Where to draw (one or two parameters only).
    cmap : str, default="viridis"

    Returns
    -------
    ax : matplotlib Axes, or an array of Axes for facets
    """
    results = search.cv_results_
    if metric is None:
        metric = search.refit if isinstance(getattr(search, "refit", None), str) else "score"
    key = f"mean_test_{metric}"
    if key not in results:
        raise ValueError(f"metric={metric!r} is not in cv_results_; it has "
                         f"{sorted(k[10:] for k in results if k.startswith('mean_test_'))}.")
    params = list(params) if params is not None else _searched_params(results)
    if not params:
        raise ValueError("The search varied no parameter: nothing to plot.")
    best = _best_params(search, results, metric)
    if len(params) == 1:
        return _line(results, params[0], metric, _axes(ax), best)
    if len(params) == 2:
        everything = np.arange(len(results["params"]))
        return _heatmap(results, params, metric, _axes(ax), cmap, everything, best)
    return _facets(results, params, metric, cmap, best)


def _best_params(search, results, metric):
    """The best candidate's parameters: the search's choice for its refit metric."""
    refit_metric = search.refit if isinstance(search.refit, str) else "score"
    if hasattr(search, "best_index_") and metric == refit_metric:
        return results["params"][search.best_index_]
    return results["params"][int(np.nanargmax(results[f"mean_test_{metric}"]))]


def _line(results, name, metric, ax, best_params):
    values = _values(results, name)
    means, stds = [], []
    for value in values:
        idx = [i for i, p in enumerate(results["params"]) if name in p and p[name] == value]
        best = max(idx, key=lambda i: results[f"mean_test_{metric}"][i])
        means.append(results[f"mean_test_{metric}"][best])
        stds.append(results[f"std_test_{metric}"][best])
    means, stds = np.array(means), np.array(stds)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x = np.array(values, dtype=float) if numeric else np.arange(len(values))
    ax.plot(x, means, marker="o", color="C0", label=f"mean test {metric}")
    ax.fill_between(x, means - stds, means + stds, color="C0", alpha=0.2, label="± 1 std")
    best = next(k for k, v in enumerate(values) if v == best_params.get(name))
    ax.plot([x[best]], [means[best]], marker="*", markersize=16, color="C3",
            linestyle="none", label="best")
    if numeric and min(values) > 0 and max(values) / min(values) >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(x, [_label(v) for v in values])
    ax.set_xlabel(name)
    ax.set_ylabel(f"mean test {metric}")
    ax.legend(loc="best")
    return ax


def _heatmap(results, params, metric, ax, cmap, rows, best_params, limits=None):
    row_name, col_name = params
    row_values, col_values = _values(results, row_name), _values(results, col_name)
    grid = np.full((len(row_values), len(col_values)), np.nan)
    means = results[f"mean_test_{metric}"]
    for i in rows:
        p = results["params"][i]
        if row_name in p and col_name in p:
            r = next(k for k, v in enumerate(row_values) if v == p[row_name])
            c = next(k for k, v in enumerate(col_values) if v == p[col_name])
            grid[r, c] = means[i] if np.isnan(grid[r, c]) else max(grid[r, c], means[i])
    vmin, vmax = limits if limits is not None else (None, None)
    image = ax.imshow(grid, cmap=cmap, aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, label=f"mean test {metric}")
    ax.set_xticks(range(len(col_values)), [_label(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), [_label(v) for v in row_values])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    finite = grid[np.isfinite(grid)]
    low, high = limits if limits is not None else (
        (finite.min(), finite.max()) if finite.size else (0, 0))
    middle = (low + high) / 2
    for r, c in itertools.product(range(grid.shape[0]), range(grid.shape[1])):
        if np.isfinite(grid[r, c]):
            ax.text(c, r, f"{grid[r, c]:.3f}", ha="center", va="center", fontsize=9,
                    color="black" if grid[r, c] > middle else "white")
    best_row = [i for i in rows if results["params"][i] == best_params]
    if best_row:
        r = next(k for k, v in enumerate(row_values) if v == best_params[row_name])
        c = next(k for k, v in enumerate(col_values) if v == best_params[col_name])
        ax.add_patch(_pyplot().Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False,
                                         edgecolor="red", linewidth=3, label="best"))
    return ax


def _facets(results, params, metric, cmap, best_params):
    plt = _pyplot()
    rest = params[2:]
    combos = list(itertools.product(*[_values(results, name) for name in rest]))
    ncols = min(3, len(combos))
    nrows = -(-len(combos) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 4 * nrows), squeeze=False)
    means = results[f"mean_test_{metric}"]
    limits = (np.nanmin(means), np.nanmax(means))  # one colour scale for all facets
    for ax, combo in zip(axes.flat, combos):
        rows = [i for i, p in enumerate(results["params"])
                if all(name in p and p[name] == v for name, v in zip(rest, combo))]
        _heatmap(results, params[:2], metric, ax, cmap, rows, best_params, limits)
        ax.set_title(", ".join(f"{n}={_label(v)}" for n, v in zip(rest, combo)), fontsize=10)
    for ax in axes.flat[len(combos):]:
        ax.set_visible(False)
    fig.tight_layout()
    return axes


def timeline(search, *, ax=None, cmap="tab20"):
    """Gantt chart of the fits per worker, coloured by candidate (or partition).

    One row per worker (process and thread), one bar per fit from its start to
    its end; white space between bars is idle time. The title gives the share
    of worker time spent in fits.

    Parameters
    ----------
    search : a fitted parml search or BaggedForest (with ``trace_``), or its ``trace_``
    ax : matplotlib Axes, default=None
    cmap : str, default="tab20"

    Returns
    -------
    ax : matplotlib Axes
    """
    trace = getattr(search, "trace_", search)
    if not trace:
        raise ValueError("The trace is empty: fit the search first.")
    ax = _axes(ax, figsize=(9, 1.2 + 0.5 * len({t["worker"] for t in trace})))
    origin = min(t["start"] for t in trace)
    end = max(t["end"] for t in trace) - origin
    workers = sorted({t["worker"] for t in trace})
    colour_by = "candidate_idx" if "candidate_idx" in trace[0] else "partition"
    colors = _pyplot().get_cmap(cmap)
    busy = 0.0
    for row, worker in enumerate(workers):
        fits = [t for t in trace if t["worker"] == worker]
        busy += sum(t["duration"] for t in fits)
        ax.broken_barh(
            [(t["start"] - origin, t["duration"]) for t in fits], (row - 0.4, 0.8),
            facecolors=[colors(t[colour_by] % colors.N) for t in fits],
            edgecolors="white", linewidth=0.5,
        )
    ax.set_yticks(range(len(workers)), [f"pid {w.split(':')[1]} {w.split(':')[2]}"
                                        for w in workers])
    ax.set_xlim(0, end * 1.01 if end > 0 else 1)
    ax.set_ylim(-0.6, len(workers) - 0.4)
    ax.set_xlabel("seconds since the first fit started")
    ax.set_ylabel("worker")
    utilisation = busy / (end * len(workers)) if end > 0 else 1.0
    ax.set_title(f"{len(trace)} fits on {len(workers)} workers, "
                 f"{utilisation:.0%} of worker time in fits "
                 f"(colour: {colour_by.replace('_idx', '')})")
    return ax


def speedup(ratios, *, ax=None, reference="scikit-learn"):
    """Horizontal bars of time ratios (parml / reference; below 1 is faster).

    Parameters
    ----------
    ratios : dict of str -> float
        Benchmark name to ratio, as in ``docs/benchmarks.md``.
    ax : matplotlib Axes, default=None
    reference : str, default="scikit-learn"

    Returns
    -------
    ax : matplotlib Axes
    """
    if not ratios:
        raise ValueError("ratios is empty: pass {benchmark name: ratio}.")
    names, values = list(ratios), [float(v) for v in ratios.values()]
    ax = _axes(ax, figsize=(7, 0.6 + 0.6 * len(names)))
    colors = ["C2" if v <= 1 else "C3" for v in values]
    ax.barh(range(len(names)), values, color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.annotate(reference, xy=(1.0, 1.0), xycoords=("data", "axes fraction"),
                xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                fontsize=9)
    for i, v in enumerate(values):
        ax.text(v, i, f"{v:.2f} ", ha="right", va="center", fontsize=9, color="white",
                fontweight="bold")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(values), 1.0) * 1.2)
    ax.set_xlabel(f"wall time, parml / {reference} (lower is faster)")
    return ax
