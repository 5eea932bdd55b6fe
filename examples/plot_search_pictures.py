"""
Look at a search: scores over the grid and fits over time
=========================================================

The seed grid (SVC on the digits, ``C`` x ``gamma``) fitted with
:class:`parml.ParallelGridSearchCV` on 2 workers, then drawn twice: the mean
test score of every candidate, the best outlined, and a timeline of the fits
on each worker, coloured by candidate, where the gaps are idle time.
"""

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from parml import ParallelGridSearchCV, plot

X, y = load_digits(return_X_y=True)
search = ParallelGridSearchCV(
    SVC(), {"C": [1, 10, 100], "gamma": [1e-3, 1e-4, 1e-5]}, cv=3, n_jobs=2
).fit(X, y)
print("best:", search.best_params_, f"score {search.best_score_:.4f}")

# %%
# Mean test score over the grid; the red cell is ``best_params_``.
plot.grid_scores(search)
plt.show()

# %%
# Where and when each of the 27 fits ran (``search.trace_``).
plot.timeline(search)
plt.show()
