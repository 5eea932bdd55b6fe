"""AveragedSGD's shards: where they come from, how many there are, where they go.

Three sources: in-memory arrays (rows dealt to ``k`` shards at random,
stratified for classifiers), shards the user already split (a list), and a
dask array's row blocks. A :class:`Plan` says how many shards there are and
places them on a worker group (a scheduler call): written once where each
member runs, and kept there for the fit.
"""

import numpy as np
from scipy import sparse
from sklearn.utils.validation import check_array, column_or_1d

#: Every shard gets at least this many rows: fewer workers for smaller data.
MIN_ROWS_PER_WORKER = 1_000


def source_kind(X):
    """``"list"`` (shards given), ``"dask"`` (a dask array) or ``"arrays"``."""
    if isinstance(X, (list, tuple)) and X and all(hasattr(x, "shape") for x in X) \
            and all(len(x.shape) == 2 for x in X):
        return "list"
    if type(X).__module__.startswith("dask.array") and hasattr(X, "chunks"):
        return "dask"
    return "arrays"


def shard_rows(y, n_shards, random_state, stratify, codes=None):
    """Row indices of each shard, sorted; classes dealt evenly when ``stratify``.

    Rows are drawn at random (fixed by ``random_state``); with ``stratify``
    each class is dealt round robin, so every shard gets its share of every
    class (a class with at least ``n_shards`` samples reaches every shard).
    ``codes`` (the class index of each row) spares finding them again.
    """
    n = len(y)
    order = random_state.permutation(n)
    if stratify:
        if codes is None:
            codes = np.unique(y, return_inverse=True)[1]
        # small codes sort by radix: the same stable order, faster
        codes = codes.astype(np.min_scalar_type(max(int(codes.max(initial=0)), 0)),
                             copy=False)
        order = order[np.argsort(codes[order], kind="stable")]
    owner = np.empty(n, dtype=np.intp)
    owner[order] = np.arange(n) % n_shards
    return [np.flatnonzero(owner == s) for s in range(n_shards)]


def n_shards(requested, n_samples, counts=None):
    """Shards for ``requested`` workers: at most one per :data:`MIN_ROWS_PER_WORKER`
    rows, and (classifiers: ``counts`` of each class) no more than the rarest
    class has samples."""
    k = min(requested, max(1, n_samples // MIN_ROWS_PER_WORKER))
    if counts is not None:
        k = min(k, int(np.min(counts)))
    return max(1, k)


def check_shard_list(X, y, is_classifier):
    """Validated ``[(X_i, y_i)]`` of shards given as lists, and their number of features."""
    if not isinstance(y, (list, tuple)) or len(y) != len(X):
        raise ValueError(
            f"X is a list of {len(X)} shards; y must be a list of as many target "
            "arrays, one per shard.")
    shards = []
    for Xi, yi in zip(X, y):
        if not (sparse.issparse(Xi) or (isinstance(Xi, np.ndarray)
                                        and Xi.dtype == np.float64
                                        and Xi.flags.c_contiguous)):
            Xi = check_array(Xi, accept_sparse="csr", dtype=np.float64, order="C")
        if sparse.issparse(Xi):
            Xi = check_array(Xi, accept_sparse="csr", dtype=np.float64)
        yi = column_or_1d(yi, warn=True)
        if not is_classifier:
            yi = yi.astype(np.float64, copy=False)
        if Xi.ndim != 2 or Xi.shape[0] != len(yi) or Xi.shape[0] == 0:
            raise ValueError("Each shard needs a non-empty 2-D X with one target "
                             f"per row; got X {Xi.shape} and y {yi.shape}.")
        shards.append((Xi, yi))
    n_features = {s[0].shape[1] for s in shards}
    if len(n_features) != 1:
        raise ValueError(f"All shards must have the same number of features; "
                         f"got {sorted(n_features)}.")
    return shards, n_features.pop()


def _check_two_classes(classes):
    if classes is not None and len(classes) < 2:
        raise ValueError(
            f"The number of classes has to be greater than one; got {len(classes)} "
            "class. AveragedSGD needs samples of at least 2 classes.")


class Plan:
    """How many shards, and how to place them on a worker group.

    Attributes
    ----------
    k : int
        Shards (one rank each).
    n_samples : int
        Rows of all shards (known after :meth:`place` for dask arrays).
    classes : ndarray or None
        Class labels (classifiers).
    """

    def __init__(self, k, n_samples, classes, place):
        self.k, self.n_samples, self.classes = k, n_samples, classes
        self._place = place

    def place(self, group):
        """The shards' ``(X, y)`` handles per rank, placed where each member runs."""
        return self._place(group)


def plan_arrays(X, y, requested, random_state, is_classifier):
    """Rows of in-memory ``X, y`` dealt to shards, each written once by the group."""
    classes = codes = counts = None
    if is_classifier:
        classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    _check_two_classes(classes)
    k = n_shards(requested, X.shape[0], counts)
    rows = shard_rows(y, k, random_state, stratify=is_classifier, codes=codes)
    return Plan(k, X.shape[0], classes, lambda group: group.place_rows((X, y), rows))


def plan_list(shards, is_classifier):
    """Shards the user split: one rank each, placed as they are."""
    classes = None
    if is_classifier:
        classes = np.unique(np.concatenate([np.unique(y) for _, y in shards]))
    _check_two_classes(classes)
    return Plan(len(shards), int(sum(len(y) for _, y in shards)), classes,
                lambda group: group.place(shards))


def plan_dask(X, y, is_classifier):
    """A dask array's row blocks: one rank each, used on the worker that holds it."""
    plan = Plan(X.numblocks[0], None, None, None)

    def place(group):
        if not hasattr(group, "place_blocks"):
            raise ValueError("A dask array X needs a Dask backend: backend=None with a "
                             "running client, 'dask', an address or a Client.")
        shards, summaries = group.place_blocks(X, y)
        plan.n_samples = int(sum(n for n, _ in summaries))
        if is_classifier:
            plan.classes = _block_classes(summaries)
        return shards

    plan._place = place
    return plan


def _block_classes(summaries):
    classes = np.unique(np.concatenate([labels for _, labels in summaries]))
    _check_two_classes(classes)
    for i, (_, labels) in enumerate(summaries):
        missing = np.setdiff1d(classes, labels)
        if len(missing):
            raise ValueError(
                f"Block {i} of the dask array has no sample of class(es) "
                f"{missing.tolist()}; every shard must see every class. Shuffle the "
                "rows before chunking, or rechunk into fewer, larger blocks.")
    return classes
