"""Progress bars over the stream of finished tasks (tqdm, an optional extra)."""

from contextlib import nullcontext

from .._optional import import_optional


class _NoBar:
    def update(self, n=1):
        pass


def progress_bar(enabled, *, total, desc):
    """A context manager yielding an object with ``update(n)``.

    With ``enabled`` it is a ``tqdm.auto.tqdm`` bar (the notebook widget in
    Jupyter, text on stderr in a terminal) counting finished tasks, with
    elapsed time and ETA; otherwise a no-op.
    """
    if not enabled:
        return nullcontext(_NoBar())
    tqdm = import_optional("tqdm.auto", extra="progress", purpose="progress=True")
    return tqdm.tqdm(total=total, desc=desc, unit="fit", dynamic_ncols=True)
