"""Asynchronous successive halving (ASHA): the books, apart from any scheduler.

Pure bookkeeping, tested with hand-made scores: :func:`rung_schedule` works out
scikit-learn's rungs (resources and candidates of each) from the search's
settings; :class:`Ladder` takes each candidate's score as it finishes a rung
and answers with the candidates to promote to the next rung at once;
:class:`JobQueue` orders the work not yet submitted (promotions before new
candidates). The search that drives them (:mod:`._halving_async`) only
submits what they return.

The promotion rule (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020): a candidate that finished rung ``k`` is
promoted to rung ``k + 1`` as soon as it ranks among the best
``floor(n_finished / factor)`` of the candidates finished at rung ``k``. Rung
``k + 1`` holds as many candidates as scikit-learn's synchronous search gives
it (``ceil(n_k / factor)``), so both modes spend the same budget: promotions
keep pace with the results (at most ``floor(n_finished / factor)`` while the
rung runs, so early finishers cannot take every place), and once every
candidate of rung ``k`` has finished, the best ones not yet promoted fill the
places left.
"""

from collections import deque
from dataclasses import dataclass
from math import ceil, floor, isnan, log

__all__ = ["JobQueue", "Ladder", "RungSchedule", "rung_schedule"]


@dataclass(frozen=True)
class RungSchedule:
    """The rungs of a halving search, as scikit-learn's ``_run_search`` computes them.

    Attributes
    ----------
    min_resources : int
        Resources of the first rung (raised by ``min_resources='exhaust'``).
    n_resources : list of int
        Resources of each rung.
    n_candidates : list of int
        Candidates of each rung.
    n_required_iterations, n_possible_iterations, n_iterations : int
        As scikit-learn's attributes of the same names (with a trailing ``_``).
    n_remaining_candidates : int
        Candidates the last rung would keep.
    """

    min_resources: int
    n_resources: list
    n_candidates: list
    n_required_iterations: int
    n_possible_iterations: int
    n_iterations: int
    n_remaining_candidates: int


def rung_schedule(n_candidates, *, factor, min_resources, max_resources, exhaust=False,
                  aggressive_elimination=False):
    """The rungs scikit-learn's successive halving runs for these settings.

    The same arithmetic as ``BaseSuccessiveHalving._run_search`` (floating
    point ``log`` included), so both modes have the same rungs.

    Parameters
    ----------
    n_candidates : int
        Candidates of the first rung.
    factor : int or float
    min_resources, max_resources : int
        ``min_resources_`` and ``max_resources_`` as the search checked them.
    exhaust : bool, default=False
        ``min_resources='exhaust'``: start as high as lets the last rung use
        nearly ``max_resources``.
    aggressive_elimination : bool, default=False

    Returns
    -------
    schedule : RungSchedule

    Examples
    --------
    >>> schedule = rung_schedule(20, factor=3, min_resources=20, max_resources=1000)
    >>> schedule.n_resources, schedule.n_candidates
    ([20, 60, 180], [20, 7, 3])
    """
    n_required = 1 + floor(log(n_candidates, factor))
    if exhaust:
        min_resources = max(min_resources, max_resources // factor ** (n_required - 1))
    n_possible = 1 + floor(log(max_resources // min_resources, factor))
    n_iterations = n_required if aggressive_elimination else min(n_possible, n_required)
    resources, candidates, n = [], [], n_candidates
    for itr in range(n_iterations):
        power = itr
        if aggressive_elimination:
            power = max(0, itr - n_required + n_possible)
        resources.append(min(int(factor ** power * min_resources), max_resources))
        candidates.append(n)
        n = ceil(n / factor)
    return RungSchedule(min_resources, resources, candidates, n_required, n_possible,
                        n_iterations, n)


def _rank_key(item):
    """Best first: higher score, NaN last, then the lower candidate index."""
    cand, score = item
    return (isnan(score), -score if not isnan(score) else 0.0, cand)


class Ladder:
    """ASHA's books: who finished which rung with which score, who was promoted.

    Parameters
    ----------
    n_candidates : list of int
        Places of each rung (scikit-learn's ``n_candidates_``); the first
        rung holds candidates ``0 .. n_candidates[0] - 1``.
    factor : int or float
    journal : iterable of (int, int), default=()
        Promotions ``(rung, candidate)`` of an earlier run of the same search
        (a resumed one): each is made again as soon as its candidate has
        finished the rung below, before the rule promotes anyone else to that
        rung, so the resumed run asks for the fits the first one made.

    Attributes
    ----------
    scores : list of dict
        Per rung, ``{candidate: mean test score}`` of the candidates finished.
    promoted : list of list
        Per rung, the candidates promoted from it, in the order promoted.
    journal : list of (int, int)
        Every promotion ``(rung it goes to, candidate)`` of this run, in order.

    Examples
    --------
    >>> ladder = Ladder([6, 2], factor=3)
    >>> ladder.finish(0, 4, 0.5), ladder.finish(0, 1, 0.9), ladder.finish(0, 2, 0.7)
    ([], [], [(1, 1)])
    >>> ladder.finish(0, 0, 0.1), ladder.finish(0, 3, 0.2), ladder.finish(0, 5, 0.3)
    ([], [], [(1, 2)])
    >>> ladder.complete(0), ladder.complete(1)
    (True, False)
    """

    def __init__(self, n_candidates, factor, journal=()):
        self.n_candidates = list(n_candidates)
        self.factor = factor
        n_rungs = len(self.n_candidates)
        self.scores = [{} for _ in range(n_rungs)]
        self.promoted = [[] for _ in range(n_rungs)]
        self.journal = []
        self._replay = [deque() for _ in range(n_rungs)]  # per rung promoted from
        for rung, cand in _consistent(journal, self.n_candidates):
            self._replay[rung - 1].append(cand)

    @property
    def n_rungs(self):
        return len(self.n_candidates)

    def members(self, rung):
        """Candidates of ``rung`` so far: all of the first, the promoted ones of the others."""
        if rung == 0:
            return list(range(self.n_candidates[0]))
        return list(self.promoted[rung - 1])

    def complete(self, rung):
        """Whether every place of ``rung`` is taken and each candidate there finished."""
        return len(self.scores[rung]) == self.n_candidates[rung]

    def is_open(self, rung):
        """Whether candidates may still be promoted from ``rung`` (a place is left above)."""
        return rung + 1 < self.n_rungs and len(self.promoted[rung]) < self.n_candidates[rung + 1]

    def finish(self, rung, cand, score):
        """Record that ``cand`` finished ``rung`` with ``score`` (NaN: failed).

        Returns
        -------
        promotions : list of (int, int)
            ``(rung + 1, candidate)`` for each candidate to run on the next
            rung now, best first.
        """
        if cand in self.scores[rung]:
            raise ValueError(f"Candidate {cand} finished rung {rung} twice.")
        if rung > 0 and cand not in self.promoted[rung - 1]:
            raise ValueError(f"Candidate {cand} finished rung {rung} without a promotion.")
        self.scores[rung][cand] = float(score)
        if not self.is_open(rung):
            return []
        chosen = self._replayed(rung)
        self.promoted[rung].extend(chosen)
        if not self._replay[rung]:  # the journal's promotions first, then the rule's
            by_rank = self._by_rank(rung)
            self.promoted[rung].extend(by_rank)
            chosen += by_rank
        promotions = [(rung + 1, cand) for cand in chosen]
        self.journal.extend(promotions)
        return promotions

    def decisions(self):
        """Every promotion decided: those made, then the journal's still to replay.

        What a later run of the same search must replay to ask for the fits
        this one asked for, even if this run stops before replaying them all.
        """
        pending = [(rung + 1, cand) for rung, cands in enumerate(self._replay)
                   for cand in cands]
        return self.journal + pending

    def _replayed(self, rung):
        """Journal promotions from ``rung`` whose candidate has now finished it."""
        pending, chosen = self._replay[rung], []
        for cand in list(pending):
            if cand in self.scores[rung]:
                pending.remove(cand)
                chosen.append(cand)
        return chosen

    def _by_rank(self, rung):
        """Candidates of ``rung`` the rule promotes now.

        While the rung runs, its promotions keep pace with its results: at
        most ``floor(n_finished / factor)`` in all, each the best not yet
        promoted among the best ``floor(n_finished / factor)`` finished (a
        failed fit, NaN, never). So a candidate that was in the top early but
        fell out of it takes no place from a better one that finishes later.
        Once the rung is complete, the best not yet promoted fill the places
        left.
        """
        scores = self.scores[rung]
        taken = set(self.promoted[rung])
        places = self.n_candidates[rung + 1] - len(taken)
        ranked = [cand for cand, _ in sorted(scores.items(), key=_rank_key)]
        if not self.complete(rung):
            n_top = floor(len(scores) / self.factor)
            ranked = [cand for cand in ranked[:n_top] if not isnan(scores[cand])]
            places = min(places, n_top - len(taken))
        return [cand for cand in ranked if cand not in taken][:max(places, 0)]


def _consistent(journal, n_candidates):
    """The journal's promotions up to the first that this search could not have made."""
    promoted = [[] for _ in n_candidates]  # promoted[r]: candidates promoted to rung r
    promoted[0] = list(range(n_candidates[0]))
    for rung, cand in journal:
        if not (1 <= rung < len(n_candidates)) or cand not in promoted[rung - 1] \
                or cand in promoted[rung] or len(promoted[rung]) >= n_candidates[rung]:
            return
        promoted[rung].append(cand)
        yield rung, cand


class JobQueue:
    """Work waiting to be submitted, in ASHA's order: ``(rung, ...)`` items.

    An item is one fit (or a job: one candidate on one rung), its rung first.
    Promotions go before the first rung's candidates, higher rungs first (a
    fit closer to the end of the search unblocks the promotions after it);
    items of a rung keep the order they were added in.

    Examples
    --------
    >>> queue = JobQueue()
    >>> queue.add([(0, 0), (0, 1), (2, 7), (1, 4)])
    >>> [queue.pop() for _ in range(len(queue))]
    [(2, 7), (1, 4), (0, 0), (0, 1)]
    """

    def __init__(self):
        self._rungs = {}

    def add(self, items):
        """Queue ``(rung, ...)`` items."""
        for item in items:
            self._rungs.setdefault(item[0], deque()).append(item)

    def pop(self):
        """The next item to submit; IndexError when none is queued."""
        for rung in sorted(self._rungs, reverse=True):
            if self._rungs[rung]:
                return self._rungs[rung].popleft()
        raise IndexError("No work is queued.")

    def __len__(self):
        return sum(len(items) for items in self._rungs.values())
