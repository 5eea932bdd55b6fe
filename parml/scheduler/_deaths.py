"""The retry rule after worker deaths, the same on every engine.

A task that was running when its worker died may be the cause or a bystander.
Run loops count a death against a task only when it ran alone (so the count
says what the task itself did); the task is run again, alone, until its
count passes ``max_retries``, and then given up as a
:class:`~._tasks.LostTask`, which costs that task only (a search records it
as a failed fit, following ``error_score``).
"""

from ._tasks import LostTask


class Deaths:
    """Worker deaths counted per task, and the give-up rule.

    Parameters
    ----------
    max_retries : int
        Deaths a task may cause and still be run again.
    """

    def __init__(self, max_retries):
        self.max_retries = max_retries
        self._counts = {}  # Task.uid -> deaths

    def count(self, task):
        """Deaths counted against ``task`` so far."""
        return self._counts.get(task.uid, 0)

    def note(self, task, n=1):
        """Count ``n`` more deaths against ``task``; the new count."""
        self._counts[task.uid] = self.count(task) + n
        return self._counts[task.uid]

    def exhausted(self, task):
        """Whether ``task`` died more than ``max_retries`` times: give it up."""
        return self.count(task) > self.max_retries

    def give_up(self, task, reason):
        """The :class:`~._tasks.LostTask` of ``task``, with its count as attempts."""
        return LostTask(task=task, reason=reason, attempts=self.count(task))

    def __contains__(self, task):
        return task.uid in self._counts
