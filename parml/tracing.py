"""See where and when each task ran: ``trace_`` records, Chrome traces, logging.

Every fitted search has ``trace_``: one dict per (candidate, split) fit with
the worker that ran it and its wall-clock start and end. This module turns
them into a pandas DataFrame or a Chrome/Perfetto trace-event file, which
``chrome://tracing`` or https://ui.perfetto.dev open as a timeline.
"""

import json
import logging

#: The logger parml writes to; configure it like any ``logging`` logger.
logger = logging.getLogger("parml")

__all__ = ["Trace", "logger", "to_chrome_trace", "to_frame", "trace_events"]


class Trace(list):
    """The ``trace_`` of a search: a list of one dict per fit, and store counts.

    It is a list (of the dicts :func:`trace_events` makes) and is used as
    one; it also says how the result store (``memory=``) served the run.

    Attributes
    ----------
    n_cached : int
        Fits read from the result store instead of run.
    n_rerun : int
        Fits found in the result store as failed and run again (a failed fit
        is stored, but not reused). A group of candidates sharing a pipeline
        prefix is stored as one entry: all its fits run again together.

    See Also
    --------
    trace_events : Makes the per-fit dicts.

    Examples
    --------
    >>> from parml.tracing import Trace
    >>> trace = Trace([{"cached": True, "rerun": False},
    ...                {"cached": False, "rerun": True}])
    >>> len(trace), trace.n_cached, trace.n_rerun
    (2, 1, 1)
    >>> trace.summary()
    '2 fits: 1 from the result store, 1 run (1 stored failure run again)'
    """

    @property
    def n_cached(self):
        """Fits read from the result store instead of run."""
        return sum(1 for event in self if event.get("cached"))

    @property
    def n_rerun(self):
        """Fits found in the result store as failed and run again."""
        return sum(1 for event in self if event.get("rerun"))

    def summary(self):
        """One line: how many fits ran, came from the store, were run again."""
        n_cached, n_rerun = self.n_cached, self.n_rerun
        text = f"{len(self)} fits: {n_cached} from the result store, {len(self) - n_cached} run"
        if n_rerun:
            text += f" ({n_rerun} stored failure{'s' if n_rerun != 1 else ''} run again)"
        return text


def trace_events(records, candidate_params):
    """One dict per fit, from the scheduler's task records.

    Parameters
    ----------
    records : list of TaskRecord
        Records whose ``value`` is a fit record, or a list of them.
    candidate_params : list of dict

    Returns
    -------
    trace : Trace
        A list of dicts with keys: ``candidate_idx``, ``split_idx``,
        ``params``, ``worker``, ``host``, ``pid``, ``thread``, ``start``,
        ``end`` (seconds since the epoch), ``duration``, ``fit_time``,
        ``score_time``, ``failed``, ``cached`` (read from a result store),
        ``rerun`` (a failure found in the result store, run again), ``lost``
        (its worker died) and ``grouped`` (fitted in one task with candidates
        sharing a pipeline prefix; the task's time is split evenly between
        them). Its ``n_cached`` and ``n_rerun`` count the cached and rerun fits.
    """
    trace = []
    for record in records:
        fits = record.value if isinstance(record.value, list) else [record.value]
        # A task fitting a group of candidates (shared pipeline prefix) ran them
        # one after the other: give each its slice of the task's time span.
        start = record.start
        for fit in fits:
            share = (record.end - record.start) / len(fits) if len(fits) > 1 else None
            end = record.end if share is None else start + share
            trace.append(
                {
                    "candidate_idx": fit.candidate_idx,
                    "split_idx": fit.split_idx,
                    "params": candidate_params[fit.candidate_idx],
                    "worker": record.worker,
                    "host": record.host,
                    "pid": record.pid,
                    "thread": record.thread,
                    "start": start,
                    "end": end,
                    "duration": end - start,
                    "fit_time": fit.fit_time,
                    "score_time": fit.score_time,
                    "failed": fit.fit_error is not None,
                    "cached": record.cached,
                    "rerun": record.rerun,
                    "lost": record.lost,
                    "grouped": len(fits) > 1,
                }
            )
            start = end
    return Trace(sorted(trace, key=lambda t: (t["candidate_idx"], t["split_idx"])))


def _trace_of(search_or_trace):
    trace = getattr(search_or_trace, "trace_", search_or_trace)
    if not isinstance(trace, list):
        raise TypeError(
            "Expected a fitted parml search (with a trace_ attribute) or its "
            f"trace_ list; got {type(search_or_trace).__name__}."
        )
    return trace


def to_frame(search):
    """The trace of a fitted search as a :class:`pandas.DataFrame`.

    Parameters
    ----------
    search : fitted ParallelGridSearchCV or ParallelRandomizedSearchCV, or its ``trace_``

    Returns
    -------
    frame : pandas.DataFrame
        One row per fit, with ``start`` and ``end`` relative to the first start.
    """
    from ._optional import import_optional

    pd = import_optional("pandas", extra="pandas", purpose="parml.tracing.to_frame")
    frame = pd.DataFrame(_trace_of(search))
    if len(frame):
        origin = frame["start"].min()
        frame["start"] -= origin
        frame["end"] -= origin
    return frame


def to_chrome_trace(search, path=None):
    """Write the trace in Chrome's trace-event JSON format.

    One complete event (``"ph": "X"``) per fit, on a row per worker process
    and thread, named by candidate and split, with the parameters in ``args``.
    Open the file in https://ui.perfetto.dev or ``chrome://tracing``.

    Parameters
    ----------
    search : fitted search, or its ``trace_`` list
    path : str or os.PathLike, default=None
        Where to write the JSON; None only returns it.

    Returns
    -------
    trace : dict
        The trace-event document (``{"traceEvents": [...], ...}``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from parml import ParallelGridSearchCV
    >>> from parml.tracing import to_chrome_trace
    >>> X, y = load_iris(return_X_y=True)
    >>> search = ParallelGridSearchCV(LogisticRegression(max_iter=500),
    ...                               {"C": [0.1, 1.0]}, cv=3).fit(X, y)
    >>> doc = to_chrome_trace(search)
    >>> sum(event["ph"] == "X" for event in doc["traceEvents"])
    6
    """
    trace = _trace_of(search)
    origin = min((t["start"] for t in trace), default=0.0)
    events, threads = [], {}
    for t in trace:
        tid = threads.setdefault((t["pid"], t["thread"]), len(threads))
        events.append(
            {
                "name": f"candidate {t['candidate_idx']} / split {t['split_idx']}",
                "cat": "cached" if t["cached"] else ("failed" if t["failed"] else "fit"),
                "ph": "X",
                "ts": round((t["start"] - origin) * 1e6, 3),
                "dur": round(t["duration"] * 1e6, 3),
                "pid": t["pid"],
                "tid": tid,
                "args": {
                    "params": {k: repr(v) for k, v in t["params"].items()},
                    "host": t["host"],
                    "fit_time": t["fit_time"],
                    "score_time": t["score_time"],
                },
            }
        )
    for (pid, thread), tid in threads.items():
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"name": thread}})
    for pid in {pid for pid, _ in threads}:
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": f"worker {pid}"}})
    doc = {"traceEvents": events, "displayTimeUnit": "ms"}
    if path is not None:
        with open(path, "w") as file:
            json.dump(doc, file)
    return doc
