"""Progress bars over the stream of finished tasks (tqdm, an optional extra)."""

import warnings
from contextlib import nullcontext

from .._optional import import_optional


class _NoBar:
    def update(self, n=1):
        pass


def tqdm_class():
    """tqdm's bar class: the Jupyter widget where ipywidgets is installed, else text.

    ``tqdm.auto`` picks the notebook widget in a Jupyter kernel. Without
    ipywidgets it falls back to the text bar itself, but warns ``IProgress
    not found`` when it is imported; that warning is silenced here, as the
    text bar is parml's documented fallback (``pip install ipywidgets`` gives
    the widget).

    Returns
    -------
    tqdm : type
        ``tqdm.auto.tqdm``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        module = import_optional("tqdm.auto", extra="progress", purpose="progress=True")
    return module.tqdm


def progress_bar(enabled, *, total, desc):
    """A context manager yielding an object with ``update(n)``.

    With ``enabled`` it is a ``tqdm.auto.tqdm`` bar (the notebook widget in
    Jupyter when ipywidgets is installed, text on stderr otherwise) counting
    finished tasks, with elapsed time and ETA; otherwise a no-op.
    """
    if not enabled:
        return nullcontext(_NoBar())
    return tqdm_class()(total=total, desc=desc, unit="fit", dynamic_ncols=True)
