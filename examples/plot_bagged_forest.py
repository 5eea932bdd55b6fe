"""
A random forest fitted as parallel tasks, and a forest on data partitions
=========================================================================

:class:`parml.BaggedForest` fits each member of a bagged ensemble as one task
of parml's scheduler. With the default member it is a random forest, as
accurate as scikit-learn's; for a fixed ``random_state`` it is the same forest
whatever the number of workers. With :meth:`~parml.BaggedForest.fit_partitions`
each member learns from one partition of data that is already split. The
picture shows when each member was fitted, on which worker, coloured by its
partition.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from parml import BaggedForest, plot

X, y = make_classification(6000, 30, n_informative=12, random_state=0)
X, X_test, y, y_test = train_test_split(X, y, random_state=0)

start = time.perf_counter()
forest = BaggedForest(n_estimators=60, n_jobs=2, random_state=0).fit(X, y)
ours = time.perf_counter() - start
start = time.perf_counter()
reference = RandomForestClassifier(60, n_jobs=2, random_state=0).fit(X, y)
theirs = time.perf_counter() - start
one_worker = BaggedForest(n_estimators=60, n_jobs=1, random_state=0).fit(X, y)
print(f"BaggedForest accuracy {forest.score(X_test, y_test):.3f} in {ours:.2f} s; "
      f"RandomForestClassifier {reference.score(X_test, y_test):.3f} in {theirs:.2f} s")
print("same forest on 1 and 2 workers:",
      np.array_equal(forest.predict_proba(X_test), one_worker.predict_proba(X_test)))

# %%
# Three partitions, as if each lived on its own machine: every member learns
# from one of them, and they are never gathered.
shards = [(X[i::3], y[i::3]) for i in range(3)]
partitioned = BaggedForest(n_estimators=30, n_jobs=2, random_state=0).fit_partitions(shards)
print(f"forest on partitions: accuracy {partitioned.score(X_test, y_test):.3f}")
plot.timeline(partitioned)
plt.show()
