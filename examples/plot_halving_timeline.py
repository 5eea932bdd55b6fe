"""
Successive halving over time: rung barriers and asynchronous promotions
=======================================================================

Successive halving fits every candidate on few resources, then the best
``1 / factor`` of them on ``factor`` times more, rung after rung. In the
synchronous mode (scikit-learn's, and parml's default) a rung starts when the
one before it has finished: a worker that finishes its last fit of a rung waits
for the others. With ``asynchronous=True`` (ASHA) a candidate is promoted as
soon as it ranks in the best ``1 / factor`` of the candidates finished at its
rung, so the workers never wait for a rung to fill.

Here both modes run the same search: an SVC over a wide range of ``C`` and
``gamma`` (some candidates fit many times slower than others), 81 candidates,
``factor=3``, resource ``n_samples``, 4 splits, on 2 worker processes. Each
fit is a bar on its worker's row, from its start to its end, coloured by its
rung; ``trace_`` records them.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import loguniform
from sklearn.datasets import make_classification
from sklearn.svm import SVC

X, y = make_classification(n_samples=4000, n_features=20, n_informative=8, flip_y=0.05,
                           random_state=0)
space = {"C": loguniform(1e-2, 1e4), "gamma": loguniform(1e-4, 1e0)}


def fitted_search(asynchronous, n_candidates=81):
    """The search in one mode or the other (the same ``random_state``: the same candidates)."""
    from parml import ParallelHalvingRandomSearchCV

    search = ParallelHalvingRandomSearchCV(SVC(), space, n_candidates=n_candidates, factor=3,
                                           min_resources="exhaust", cv=4, random_state=0,
                                           n_jobs=2, asynchronous=asynchronous)
    return search.fit(X, y)


# A small search first: it starts the worker processes, whose start-up would
# otherwise show as a gap at the beginning of the first timeline.
fitted_search(False, n_candidates=9)

sync = fitted_search(asynchronous=False)
asha = fitted_search(asynchronous=True)
print("rungs (resources):", sync.n_resources_, " candidates per rung:", sync.n_candidates_)
print("synchronous:  best", sync.best_params_, f"score {sync.best_score_:.3f}")
print("asynchronous: best", asha.best_params_, f"score {asha.best_score_:.3f}")

# %%
# The timeline
# ------------
# A fit's rung is the ``iter`` of its row in ``cv_results_``. In the synchronous
# timeline, dashed lines mark where each rung's last fit ended: nothing of the
# next rung starts before it.


def timeline(search, ax, title, boundaries=False):
    trace, rungs = search.trace_, search.cv_results_["iter"]
    origin = min(t["start"] for t in trace)
    span = max(t["end"] for t in trace) - origin
    workers = sorted({t["worker"] for t in trace})
    colors = plt.get_cmap("viridis", search.n_iterations_)
    for row, worker in enumerate(workers):
        fits = [t for t in trace if t["worker"] == worker]
        ax.broken_barh([(t["start"] - origin, t["duration"]) for t in fits], (row - 0.4, 0.8),
                       facecolors=[colors(rungs[t["candidate_idx"]]) for t in fits])
    for rung in range(search.n_iterations_ if boundaries else 0):
        last_end = max(t["end"] for t in trace if rungs[t["candidate_idx"]] == rung)
        ax.axvline(last_end - origin, color="black", linestyle="--", linewidth=1)
    busy = sum(t["duration"] for t in trace) / (len(workers) * span)
    ax.set_yticks(range(len(workers)), [f"worker {i + 1}" for i in range(len(workers))])
    ax.set_title(f"{title}: {span:.1f} s from first to last fit, workers busy {busy:.0%}")
    ax.set_xlabel("seconds since the first fit started")
    return colors


fig, axes = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True, layout="constrained")
timeline(sync, axes[0], "synchronous", boundaries=True)
colors = timeline(asha, axes[1], "asynchronous (ASHA)")
handles = [plt.Rectangle((0, 0), 1, 1, color=colors(rung)) for rung in range(sync.n_iterations_)]
fig.legend(handles, [f"rung {rung}: {n} samples" for rung, n in enumerate(sync.n_resources_)],
           loc="outside right center")
plt.show()

# %%
# What the picture shows
# ----------------------
# In the synchronous mode each rung is a block: the first rung's many short fits,
# then fewer and longer ones, and before each dashed line a worker often idles
# while the other ends the rung's last fit (the thin white gaps between fits
# are the time to send a fit and bring its result back). In the asynchronous
# mode the colours mix: the first promotions run while most of the first rung
# is still waiting, so neither worker waits at a rung boundary. The last rung
# has a single candidate, which can only start once the rung below has
# finished, in either mode. Both modes fit the same number of candidates on
# each rung; which ones climb in the asynchronous mode depends on the order
# fits finish, so its best candidate may differ from the synchronous one, and
# so may the time its fits take. With 2 workers a barrier costs little; with
# many workers it costs much more (see the simulation in the halving
# benchmarks).

first_async_rung1 = min(t["start"] for t in asha.trace_
                        if asha.cv_results_["iter"][t["candidate_idx"]] == 1)
last_async_rung0 = max(t["end"] for t in asha.trace_
                       if asha.cv_results_["iter"][t["candidate_idx"]] == 0)
print(f"asynchronous: the first rung-1 fit started "
      f"{last_async_rung0 - first_async_rung1:.2f} s before the last rung-0 fit ended")
print("rows per rung, both modes:", np.bincount(sync.cv_results_["iter"]),
      np.bincount(asha.cv_results_["iter"]))
