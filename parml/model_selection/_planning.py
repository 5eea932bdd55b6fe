"""Plan the tasks of a search: one batch of candidates per ``evaluate_candidates`` call.

A batch is the candidates of one call, numbered after the candidates evaluated
before it (``Batch.first``), on the splits of that call. Every task carries its
key, which says which fits its value holds (:func:`fit_keys`):

- a fit task: ``(candidate_idx, split_idx)``;
- a task fitting candidates that share a pipeline prefix (see :mod:`._prefix`):
  ``("group", (candidate_idx, ...), split_idx)``.

Indices are those of ``cv_results_`` (the whole search, not the batch). A
task's result-store entry (``cache_key``) hashes what is fitted (estimator,
parameters, data, the split's indices, scorers, options), never an index, so a
stored fit is found again wherever its candidate lands in a later search; the
task key then gives its record the indices of this search (:func:`rekey`).
"""

from dataclasses import dataclass
from functools import partial

from ..scheduler import Task, store_folder
from ._fingerprint import fit_fingerprint, split_hashes, stored_failure, task_key
from ._fit_and_score import fit_and_score, fit_records, on_lost_handler
from ._prefix import fit_and_score_group, lost_group_records, prefix_groups


@dataclass
class SearchSetup:
    """What a search's ``fit`` settles before the first candidate is evaluated.

    Attributes
    ----------
    scorers : callable or scikit-learn's multi-metric scorer
    refit_metric : str
    routed : Bunch
        The fit parameters routed to the estimator, splitter and scorer.
    X, y : array-like
        The input, indexable.
    cv : cross-validation splitter
        The checked ``cv`` (``evaluate_candidates`` splits with it by default).
    """

    scorers: object
    refit_metric: str
    routed: object
    X: object
    y: object
    cv: object


@dataclass
class Batch:
    """The candidates of one ``evaluate_candidates`` call, and what their tasks share.

    Attributes
    ----------
    candidate_params : list of dict
    first : int
        Index in ``cv_results_`` of the batch's first candidate.
    splits : list of (train, test)
        The splits of this call.
    data : dict
        Shared handles of X, y and the splits, and the token naming their folds.
    callback_ctx : CallbackContext or None
        Parent of the tasks' callback contexts; None for no callback contexts.
    """

    candidate_params: list
    first: int
    splits: list
    data: dict
    callback_ctx: object = None


class TaskPlanner:
    """Builds the tasks of each batch of one ``fit`` of a search.

    Parameters
    ----------
    search : ParallelGridSearchCV or ParallelRandomizedSearchCV
        Read for the estimator and the options that shape a fit record.
    setup : SearchSetup
    n_workers : int
        Workers of the engine (groups are split so that none idles).
    """

    def __init__(self, search, setup, n_workers):
        self.search = search
        self.setup = setup
        self.n_workers = n_workers
        self._fingerprint = None
        self._split_hashes = {}

    def tasks(self, batch):
        """The tasks of ``batch``, split by split (a worker reuses a split's folds)."""
        groups = None
        if batch.callback_ctx is None:
            groups = prefix_groups(self.search.estimator, batch.candidate_params,
                                   self.setup.routed.estimator.fit, self.n_workers)
        if groups is not None:
            return self._group_tasks(batch, groups)
        return self._fit_tasks(batch)

    def _fit_tasks(self, batch):
        n_splits = len(batch.splits)
        contexts = task_contexts(batch.callback_ctx, len(batch.candidate_params) * n_splits)
        cache_key, options = self._cache_keys(batch), self._task_options(batch)
        caller = self.search if batch.callback_ctx is not None else None
        tasks = []
        for split_idx in range(n_splits):
            for position, parameters in enumerate(batch.candidate_params):
                cand_idx = batch.first + position
                tasks.append(Task(
                    key=(cand_idx, split_idx),
                    func=fit_and_score,
                    kwargs=dict(
                        options, estimator=self.search.estimator, data=batch.data,
                        split_idx=split_idx, candidate_idx=cand_idx, parameters=parameters,
                        fit_params=self.setup.routed.estimator.fit,
                        callback_ctx=contexts[position * n_splits + split_idx], caller=caller,
                    ),
                    on_lost=on_lost_handler(candidate_idx=cand_idx, split_idx=split_idx,
                                            **self._lost_options()),
                    cache_key=cache_key(parameters, split_idx),
                    rerun_stored=stored_failure,
                ))
        return tasks

    def _group_tasks(self, batch, groups):
        """One task per (group of candidates sharing a pipeline prefix, split)."""
        cache_key, options = self._cache_keys(batch), self._task_options(batch)
        tasks = []
        for split_idx in range(len(batch.splits)):
            for group in groups:
                idxs = tuple(batch.first + position for position in group)
                candidates = [(batch.first + p, batch.candidate_params[p]) for p in group]
                on_lost = None
                if self.search.error_score != "raise":
                    on_lost = partial(lost_group_records, candidate_idxs=idxs,
                                      split_idx=split_idx, **self._lost_options())
                tasks.append(Task(
                    key=("group", idxs, split_idx),
                    func=fit_and_score_group,
                    kwargs=dict(options, estimator=self.search.estimator, data=batch.data,
                                split_idx=split_idx, candidates=candidates),
                    on_lost=on_lost,
                    cache_key=cache_key([p for _, p in candidates], split_idx),
                    rerun_stored=stored_failure,
                ))
        return tasks

    def _task_options(self, batch):
        search = self.search
        return dict(
            scorer=self.setup.scorers,
            score_params=self.setup.routed.scorer.score,
            return_train_score=search.return_train_score,
            error_score=search.error_score,
            verbose=search.verbose,
            progress=(len(batch.splits), len(batch.candidate_params), batch.first),
        )

    def _lost_options(self):
        return dict(scorer=self.setup.scorers, return_train_score=self.search.return_train_score,
                    error_score=self.search.error_score)

    def _cache_keys(self, batch):
        """``cache_key(params, split_idx)``: the store key of a task (None without memory).

        The fingerprint of the fit (X, y, estimator, scorers...) is hashed once
        per ``fit``; the hashes of a batch's splits once per set of splits.
        """
        if store_folder(self.search.memory) is None:
            return lambda params, split_idx: None
        if self._fingerprint is None:
            setup, search = self.setup, self.search
            self._fingerprint = fit_fingerprint(
                search.estimator, setup.X, setup.y, setup.routed, setup.scorers,
                error_score=search.error_score, return_train_score=search.return_train_score,
            )
        token = batch.data.get("token")
        if token not in self._split_hashes:
            self._split_hashes[token] = split_hashes(batch.splits)
        hashes, fingerprint = self._split_hashes[token], self._fingerprint
        return lambda params, split_idx: task_key(fingerprint, params, hashes[split_idx])


def task_contexts(callback_ctx, n_tasks):
    """The callback context of each task of a batch (None each without ``callback_ctx``).

    As scikit-learn's ``evaluate_candidates``: one ``candidate-split-evaluation``
    subcontext per (candidate, split) of the call, ``task_id`` in
    ``candidate * n_splits + split`` order.
    """
    if callback_ctx is None:
        return [None] * n_tasks
    return [
        callback_ctx.subcontext(task_name="candidate-split-evaluation", task_id=i)
        for i in range(n_tasks)
    ]


def fit_keys(task_key):
    """``[(candidate_idx, split_idx), ...]``: the fits a task's value holds, in order.

    Examples
    --------
    >>> fit_keys((3, 1))
    [(3, 1)]
    >>> fit_keys(("group", (4, 5), 2))
    [(4, 2), (5, 2)]
    """
    if isinstance(task_key, tuple) and task_key[0] == "group":
        _, candidate_idxs, split_idx = task_key
        return [(cand_idx, split_idx) for cand_idx in candidate_idxs]
    return [tuple(task_key)]


def rekey(task_record):
    """Give the fit records of ``task_record`` the indices its task key names.

    A record read from the result store holds the indices of the search that
    stored it; the same candidate may sit elsewhere in this search (a grid
    grown in front, a ``_run_search`` that asks in another order).

    Returns
    -------
    task_record : TaskRecord
        The same record, its fits re-indexed in place.
    """
    for fit, (cand_idx, split_idx) in zip(
        fit_records(task_record), fit_keys(task_record.key), strict=True
    ):
        fit.candidate_idx, fit.split_idx = cand_idx, split_idx
    return task_record
