"""State that workers keep for one fit, owned by the scheduler of that fit.

A task may keep data in its worker for the later tasks of the same fit (e.g.
a split's folds, made once per worker instead of once per fit): it calls
:func:`fit_state` with the token of its scheduler (:attr:`Scheduler.token`,
carried by the task). The state is released when the scheduler closes, on
every worker of its engine (:func:`release_everywhere`); as a backstop, a
worker drops the state of other fits when a task of a new fit asks for its
own, so a worker never holds two fits' state at once. No thread watches the
state: it lives exactly as long as its fit.
"""

import os
import threading
import time

#: Seconds a release task waits for the other workers to hold one (so that each gets one).
GATHER_SECONDS = 2.0

_STATE = {}  # token -> dict, in this process
_LOCK = threading.RLock()


def fit_state(token):
    """In a worker: the dict kept for the fit named ``token``, made on first use.

    The state of any other fit is dropped first: a worker holds one fit's state.
    """
    with _LOCK:
        for other in [t for t in _STATE if t != token]:
            del _STATE[other]
        return _STATE.setdefault(token, {})


def state_lock():
    """The lock that guards the state (threads of one worker share it; re-entrant)."""
    return _LOCK


def release(token):
    """In a worker: drop the state of the fit named ``token``, if any."""
    with _LOCK:
        _STATE.pop(token, None)


def held_tokens():
    """The tokens whose state this process holds (for tests and reports)."""
    with _LOCK:
        return sorted(_STATE)


def release_on_each(token, board_path, n_workers):
    """A release task for a pool without broadcast (loky): one lands on each worker.

    Each task releases, notes its process id on a shared board, then waits
    (bounded by :data:`GATHER_SECONDS`) until ``n_workers`` distinct
    processes have; a worker busy with one therefore takes no other, and the
    pool's idle workers get one each.
    """
    release(token)
    with open(board_path, "a") as board:
        board.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + GATHER_SECONDS
    while time.monotonic() < deadline:
        with open(board_path) as board:
            if len(set(board.read().split())) >= n_workers:
                break
        time.sleep(0.01)
    return os.getpid()
