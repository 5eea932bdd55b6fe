"""One streaming run on a local executor: loky's worker processes, or threads.

Tasks are taken from a queue that may grow while the run goes on (a
scheduler session adds to it between two records) and submitted as futures,
tiny ones in batches (:mod:`._batching`), at most a few per worker ahead, so
that a task added late starts soon. Results are yielded as they finish.

With worker processes, a worker that dies (segfault, out of memory, killed)
breaks the whole pool, and every task in it with it. Each task marks a shared
board when it starts, so the run knows which tasks were running: those are
run again one at a time, alone, in a fresh pool (the task that kills its
worker is thus identified and costs only itself), up to ``max_retries``
times, then yielded as a :class:`~._tasks.LostTask`; the tasks that had not
started go back to the queue. An exception raised by a task propagates, and
Ctrl-C too; either way the workers are stopped, as joblib does.
"""

from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait

import numpy as np

from .._tempfiles import make_file, remove
from ._batching import Batches
from ._deaths import Deaths

#: Seconds between two looks at the futures (Ctrl-C is seen within this).
POLL_SECONDS = 0.2
#: Seconds to wait for the futures of a broken pool to be settled.
BROKEN_SECONDS = 60.0
#: Pools in a row broken before any task started, before a run gives up.
MAX_BARREN_CRASHES = 3
#: Tasks a run can mark as started (the board is a sparse file: unused pages cost nothing).
BOARD_SIZE = 1 << 24


class FuturesRun:
    """Yield ``func(task)`` for the tasks of ``queue`` as they finish.

    Parameters
    ----------
    func : callable
        Runs one task in a worker (:func:`~._tasks.execute`).
    queue : collections.deque of Task
        The tasks to run; tasks appended while the run goes on run too.
    n_workers : int
        Tasks that run at once.
    new_executor : callable
        Returns the executor to submit to; called again after a worker death.
    max_retries : int, default=2
        Runs alone of a task that was running when a worker died, before it
        is given up.
    processes : bool, default=True
        Whether workers are processes that can die (a board marks starts).
    """

    def __init__(self, func, queue, n_workers, new_executor, max_retries=2, processes=True):
        self.func = func
        self.batches = Batches(queue, n_workers, in_flight=2 * max(n_workers, 1))
        self.new_executor = new_executor
        self.max_retries = max_retries
        self.processes = processes
        self.running = {}  # future -> [(index, task)]
        self.suspects = []  # (index, task): run alone, one at a time
        self.deaths = Deaths(max_retries)
        self.trial = None
        self.n_indexed = 0
        self.n_barren = 0  # pools broken in a row before a task started
        self.executor = None
        self.board = None

    def __iter__(self):
        finished = False
        self.board = _StartedBoard() if self.processes else None
        try:
            self.executor = self.new_executor()
            while self.batches or self.running or self.suspects:
                self._dispatch()
                done, _ = wait(list(self.running), timeout=POLL_SECONDS,
                               return_when=FIRST_COMPLETED)
                for future in done:
                    if future in self.running:
                        yield from self._collect(future)
            finished = True
        finally:
            if not finished:
                self._abort()
            elif not self.processes:
                self.executor.shutdown(wait=False)
            if self.board is not None:
                self.board.close()

    # -- sending ------------------------------------------------------------------

    def _dispatch(self):
        if self.suspects:
            if not self.running:  # a suspect runs alone
                self.trial = self.suspects.pop(0)
                self._submit([self.trial])
            return
        while self.batches.may_send(len(self.running)):
            unit = [(self.n_indexed + i, task)
                    for i, task in enumerate(self.batches.next_unit())]
            self.n_indexed += len(unit)
            self._submit(unit)

    def _submit(self, unit):
        path = None if self.board is None else self.board.path
        future = self.executor.submit(_run_unit, self.func, path, unit)
        self.running[future] = unit

    # -- receiving ----------------------------------------------------------------

    def _collect(self, future):
        unit = self.running.pop(future)
        try:
            results = future.result()
        except BrokenExecutor as crash:
            yield from self._after_crash(unit, crash)
            return
        self.n_barren = 0
        for _, value in results:
            self.batches.record(value)
            yield value
        if self.trial is not None and unit[0] is self.trial:
            self.trial = None

    def _after_crash(self, unit, crash):
        """Settle every future of the broken pool; sort their tasks; start a new pool."""
        broken = [unit]
        settled, stuck = wait(list(self.running), timeout=BROKEN_SECONDS)
        for future in list(self.running):
            other = self.running.pop(future)
            if future in settled and future.exception() is None:
                for _, value in future.result():
                    yield value
            else:
                broken.append(other)
        if stuck:
            raise RuntimeError(
                f"{len(stuck)} tasks of a worker pool broken by a worker's death were "
                f"not settled after {BROKEN_SECONDS:g} s; giving up ({_describe(crash)}).")
        started = self.board.started() if self.board is not None else set()
        self._check_barren(broken, started, crash)
        requeue = []
        for index, task in (item for items in broken for item in items):
            if index in started:
                yield from self._suspect(index, task, crash)
            else:
                requeue.append(task)
        self.batches.queue.extendleft(reversed(requeue))
        self.trial = None
        self.executor = self.new_executor()

    def _check_barren(self, broken, started, crash):
        """Give up when worker processes keep dying before they run any task.

        Workers that die at start-up (a broken environment, an import that
        crashes) would otherwise be replaced, and die, for ever.
        """
        if any(index in started for items in broken for index, _ in items):
            self.n_barren = 0
            return
        self.n_barren += 1
        if self.n_barren >= MAX_BARREN_CRASHES:
            raise RuntimeError(
                f"The worker processes died {self.n_barren} times in a row before running "
                f"any task ({_describe(crash)}); giving up. They fail at start-up: try "
                "n_jobs=1 or backend='threading' to see the error in this process.")

    def _suspect(self, index, task, crash):
        """A task that was running when a worker died: run alone, or given up."""
        self.deaths.note(task)
        if self.deaths.exhausted(task):
            yield self.deaths.give_up(task, _describe(crash))
        else:
            self.suspects.append((self._next_index(), task))

    def _next_index(self):
        self.n_indexed += 1
        return self.n_indexed - 1

    def _abort(self):
        """Stop early (an error, Ctrl-C, the caller stopped): drop queued work, stop workers."""
        self.batches.clear()
        if not self.processes:
            for future in self.running:
                future.cancel()
        # loky's own shutdown settles the futures of the workers it kills: a
        # future cancelled here first would break its manager thread, and the
        # workers would be left running
        if self.executor is not None and (self.running or not self.processes):
            _stop(self.executor, self.processes)
        self.running = {}


def _stop(executor, processes):
    if not processes:
        executor.shutdown(wait=False, cancel_futures=True)
    elif hasattr(executor, "terminate"):  # joblib's executor: also its temporary files
        executor.terminate(kill_workers=True)
    else:
        executor.shutdown(wait=False, kill_workers=True)


class _StartedBoard:
    """One byte per task in a shared file: set by the worker when a task starts.

    The file is removed by :meth:`close`, or when this process dies however
    it dies.
    """

    def __init__(self, size=BOARD_SIZE):
        self.path = make_file("started")
        self._board = np.memmap(self.path, dtype=np.uint8, mode="w+", shape=(size,))

    def started(self):
        """Indices of the tasks marked started (a copy: surviving workers may still write)."""
        return set(np.flatnonzero(np.array(self._board)).tolist())

    def close(self):
        del self._board
        remove(self.path)


_BOARDS = {}


def _run_unit(func, board_path, unit):
    """In a worker: mark each task of ``unit`` started on the board, run it."""
    board = None
    if board_path is not None:
        board = _BOARDS.get(board_path)
        if board is None:
            _BOARDS.clear()  # one board per run: drop the maps of finished runs
            board = _BOARDS[board_path] = np.memmap(board_path, dtype=np.uint8, mode="r+")
    results = []
    for index, task in unit:
        if board is not None:
            board[index] = 1
        results.append((index, func(task)))
    return results


def _describe(crash):
    return f"{type(crash).__name__}: {str(crash).splitlines()[0] if str(crash) else ''}"
