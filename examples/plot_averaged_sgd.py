"""
AveragedSGD: one linear model from data shards on two workers
=============================================================

:class:`parml.AveragedSGD` splits the rows into shards, one per worker
(``n_jobs=2``: two threads of this process, its default backend). Every
epoch each worker makes one SGD pass over its shard from the current averaged
parameters, then :func:`parml.allreduce` averages the workers' parameters over
a spanning tree. Here two workers are compared with a single-process
``SGDClassifier`` and with *one-shot* mixing (each worker trains alone and the
models are averaged once, at the end), for the same number of epochs.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier

from parml import AveragedSGD, allreduce

warnings.simplefilter("ignore")
X, y = make_classification(150_000, 40, n_informative=20, random_state=0)
X_train, y_train, X_test, y_test = X[:120_000], y[:120_000], X[120_000:], y[120_000:]
epochs = 5

start = time.perf_counter()
single = SGDClassifier(max_iter=epochs, tol=None, random_state=0).fit(X_train, y_train)
single_time = time.perf_counter() - start

start = time.perf_counter()
averaged = AveragedSGD(n_jobs=2, max_iter=epochs, tol=None,
                       random_state=0).fit(X_train, y_train)
averaged_time = time.perf_counter() - start

# One-shot mixing: each half trained alone, averaged once with allreduce.
halves = np.array_split(np.random.default_rng(0).permutation(len(y_train)), 2)
models = [SGDClassifier(max_iter=epochs, tol=None, random_state=i).fit(X_train[h], y_train[h])
          for i, h in enumerate(halves)]
once = models[0]
once.coef_, once.intercept_ = allreduce([(m.coef_, m.intercept_) for m in models],
                                        weights=[len(h) for h in halves])

scores = {"single process": single.score(X_test, y_test),
          "AveragedSGD (2 workers)": averaged.score(X_test, y_test),
          "one-shot mixing": once.score(X_test, y_test)}
for name, score in scores.items():
    print(f"{name:>24}: held-out accuracy {100 * score:.2f} %")
print(f"fit: single {single_time:.2f} s, AveragedSGD {averaged_time:.2f} s (2 threads, "
      f"shards included); AveragedSGD epochs: {np.round(averaged.epoch_times_, 3)} s")

# %%
# The held-out accuracies side by side.
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(scores), [100 * s for s in scores.values()], color=["0.6", "C0", "C1"])
ax.set_xlim(100 * min(scores.values()) - 5, 100 * max(scores.values()) + 2)
ax.set_xlabel("held-out accuracy (%)")
fig.tight_layout()
plt.show()

# %%
# With a tolerance, AveragedSGD stops as ``SGDClassifier`` does, on the
# training loss of the averaged model.
model = AveragedSGD(n_jobs=2, random_state=0).fit(X_train, y_train)
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(range(1, len(model.loss_curve_) + 1), model.loss_curve_, marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (hinge)")
ax.set_title(f"stopped after {model.n_iter_} epochs")
fig.tight_layout()
plt.show()
