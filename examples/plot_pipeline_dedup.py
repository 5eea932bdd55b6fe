"""
A pipeline grid: each PCA is fitted once per split
==================================================

In a grid over ``PCA(n_components) -> LogisticRegression(C)``, scikit-learn
refits the PCA for every value of ``C``. :class:`parml.ParallelGridSearchCV`
fits each PCA once per split and reuses it for every ``C``, with the same
``cv_results_``. The picture shows the scores; the printout compares timings.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from parml import ParallelGridSearchCV, plot

warnings.simplefilter("ignore")
X, y = make_classification(3000, 100, n_informative=20, random_state=0)
pipe = Pipeline([("pca", PCA(svd_solver="full")), ("lr", LogisticRegression())])
grid = {"pca__n_components": [5, 20, 50], "lr__C": [0.01, 0.1, 1, 10]}

start = time.perf_counter()
ours = ParallelGridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
ours_time = time.perf_counter() - start
start = time.perf_counter()
theirs = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
theirs_time = time.perf_counter() - start
same = np.array_equal(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
print(f"parml {ours_time:.2f} s, scikit-learn {theirs_time:.2f} s; identical scores: {same}")

# %%
plot.grid_scores(ours)
plt.show()
