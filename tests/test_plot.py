"""The plots, drawn headlessly (Agg) from real fitted searches: check what they drew."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from parml import ParallelGridSearchCV, plot  # noqa: E402

X, y = load_digits(return_X_y=True)
X, y = X[:400], y[:400]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def seed_search():
    grid = {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}
    return ParallelGridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)


def best_rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() == "best"]


def test_heatmap_cells_labels_and_best_cell(seed_search):
    ax = plot.grid_scores(seed_search)
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 3)
    assert ax.get_ylabel() == "C" and ax.get_xlabel() == "gamma"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1e-05", "0.0001", "0.001"]
    cells = [t for t in ax.texts if t.get_text().startswith("0.")]
    assert len(cells) == 9
    rect, = best_rectangles(ax)
    col, row = rect.get_x() + 0.5, rect.get_y() + 0.5
    best = seed_search.best_params_
    assert [1, 10, 100][int(row)] == best["C"] and [1e-5, 1e-4, 1e-3][int(col)] == best["gamma"]
    assert image[int(row), int(col)] == pytest.approx(seed_search.best_score_)


def test_line_plot_for_one_parameter():
    search = ParallelGridSearchCV(LogisticRegression(max_iter=300),
                                  {"C": [0.001, 0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    ax = plot.grid_scores(search)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0.001, 0.01, 0.1, 1.0])
    np.testing.assert_allclose(line.get_ydata(), search.cv_results_["mean_test_score"])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "C"
    star = ax.get_lines()[1]
    assert star.get_xdata()[0] == search.best_params_["C"]
    assert len(ax.collections) == 1  # the std band


def test_facets_for_three_parameters_mark_one_best_cell():
    grid = {"C": [1, 10], "gamma": [1e-3, 1e-4], "kernel": ["rbf", "sigmoid"]}
    search = ParallelGridSearchCV(SVC(), grid, cv=3).fit(X, y)
    axes = plot.grid_scores(search)
    assert axes.size >= 2
    titles = [ax.get_title() for ax in axes.flat if ax.get_visible()]
    assert titles == ["kernel=rbf", "kernel=sigmoid"]
    assert sum(len(best_rectangles(ax)) for ax in axes.flat) == 1


def test_timeline_has_one_bar_per_fit_on_each_worker(seed_search):
    ax = plot.timeline(seed_search)
    bars = sum(len(c.get_paths()) for c in ax.collections)
    assert bars == 27
    workers = {t["worker"] for t in seed_search.trace_}
    assert len(ax.get_yticks()) == len(workers)
    assert ax.get_xlabel() == "seconds since the first fit started"
    assert "27 fits on" in ax.get_title()


def test_timeline_of_a_forest_colours_members_by_partition():
    from sklearn.datasets import load_iris

    from parml import BaggedForest

    Xi, yi = load_iris(return_X_y=True)
    parts = [(Xi[::2], yi[::2]), (Xi[1::2], yi[1::2])]
    forest = BaggedForest(n_estimators=6, n_jobs=2, backend="threading",
                          random_state=0).fit_partitions(parts)
    ax = plot.timeline(forest)
    assert sum(len(c.get_paths()) for c in ax.collections) == 6
    assert ax.get_title().endswith("(colour: partition)")
    colours = {tuple(c) for coll in ax.collections for c in coll.get_facecolors()}
    assert len(colours) == 2


def test_speedup_bars():
    ax = plot.speedup({"seed grid": 0.96, "pipeline grid": 0.37})
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [0.37, 0.96]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["seed grid", "pipeline grid"]
    with pytest.raises(ValueError, match="ratios is empty"):
        plot.speedup({})


def test_bad_metric_is_named(seed_search):
    with pytest.raises(ValueError, match="metric='f1' is not in cv_results_"):
        plot.grid_scores(seed_search, metric="f1")
