"""Run scikit-learn's own test files with parml's classes swapped in.

A user swaps an import: ``from parml import ParallelGridSearchCV as
GridSearchCV``. :func:`swap_imports` does that to a test file that the
installed scikit-learn wheel ships (``sklearn/model_selection/tests/``), and
:func:`run_sklearn_tests` runs the rewritten file with pytest in a subprocess
(with scikit-learn's own ``conftest.py`` beside it, for its fixtures, random
seed and thread limits) and returns the outcome of every test.

``cross_validate`` needs no adapter: :func:`parml.cross_val_parallel` takes
the same arguments (positional ``estimator, X, y``, the rest keyword-only,
with the same names and defaults) and only adds keyword-only ones
(``backend``, ``progress``, ``memory``, ``max_retries``, ``timeout``).

This module is a helper of ``tests/test_sklearn_suites.py``, not a test file.
It can also be run directly to see the failures of one file::

    python tests/sklearn_swap.py test_search.py [--baseline] [-k EXPR]
"""

import ast
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import sklearn

#: scikit-learn's names and the parml names imported in their place.
SWAPS = {
    "GridSearchCV": "ParallelGridSearchCV",
    "RandomizedSearchCV": "ParallelRandomizedSearchCV",
    "HalvingGridSearchCV": "ParallelHalvingGridSearchCV",
    "HalvingRandomSearchCV": "ParallelHalvingRandomSearchCV",
    "cross_validate": "cross_val_parallel",
}
#: Modules whose imports of the names in SWAPS are swapped.
SWAPPED_MODULES = {
    "sklearn.model_selection",
    "sklearn.model_selection._search",
    "sklearn.model_selection._search_successive_halving",
    "sklearn.model_selection._validation",
}
#: Seconds one scikit-learn test may run (pytest-timeout) before it fails.
PER_TEST_TIMEOUT = 300

SKLEARN_DIR = Path(sklearn.__file__).parent
SKLEARN_TESTS = SKLEARN_DIR / "model_selection" / "tests"


def sklearn_version():
    """``"major.minor"`` of the installed scikit-learn."""
    return ".".join(sklearn.__version__.split(".")[:2])


def swap_imports(source, swaps=SWAPS):
    """Rewrite ``source`` so that the names in ``swaps`` are imported from parml.

    Each ``from <scikit-learn module> import ...`` (at module level) that
    names one of them loses it, and ``from parml import <parml name> as
    <name>`` is added in its place. Line numbers are kept (the statement is
    padded with blank lines), so tracebacks point at scikit-learn's lines.

    Returns
    -------
    source : str
        The rewritten source.
    swapped : list of str
        The scikit-learn names that now resolve to parml's.
    """
    lines = source.splitlines(keepends=True)
    swapped = []
    for node in reversed(ast.parse(source).body):
        if not (isinstance(node, ast.ImportFrom) and node.module in SWAPPED_MODULES):
            continue
        moved = [alias for alias in node.names if alias.name in swaps]
        if not moved:
            continue
        kept = [alias for alias in node.names if alias.name not in swaps]
        new = []
        if kept:
            new.append(ast.unparse(ast.ImportFrom(node.module, kept, node.level)))
        new.append("from parml import " + ", ".join(
            f"{swaps[alias.name]} as {alias.asname or alias.name}" for alias in moved
        ))
        n_lines = node.end_lineno - node.lineno + 1
        new += [""] * (n_lines - len(new))
        if len(new) > n_lines:  # one name on a single line: keep both statements on it
            new = ["; ".join(new)]
        lines[node.lineno - 1:node.end_lineno] = [line + "\n" for line in new]
        swapped += [alias.asname or alias.name for alias in moved]
    return "".join(lines), sorted(swapped)


@dataclass
class SuiteOutcome:
    """Per-test outcomes of one run of a scikit-learn test file.

    Attributes
    ----------
    outcomes : dict of str -> str
        Test id (``test_name[params]``) -> ``"passed"``, ``"failed"``,
        ``"skipped"`` or ``"xfailed"`` (an unexpected pass counts as passed).
    messages : dict of str -> str
        Test id -> the first line of the failure (failed tests only).
    seconds : float
        Wall time of the pytest run.
    swapped : list of str
        The names that resolved to parml's.
    """

    outcomes: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)
    seconds: float = 0.0
    swapped: list = field(default_factory=list)

    def having(self, outcome):
        """Sorted ids of the tests with ``outcome``."""
        return sorted(test for test, value in self.outcomes.items() if value == outcome)

    def counts(self):
        """``{outcome: number of tests}``."""
        counts = {}
        for value in self.outcomes.values():
            counts[value] = counts.get(value, 0) + 1
        return counts


_PYTEST_INI = """[pytest]
addopts = -p no:cacheprovider -p no:randomly
timeout = {timeout}
"""


def prepare(filename, folder, *, swap=True):
    """Write ``filename`` (rewritten unless ``swap=False``) and its conftest into ``folder``.

    Returns the names swapped.
    """
    folder = Path(folder)
    source = (SKLEARN_TESTS / filename).read_text(encoding="utf-8")
    swapped = []
    if swap:
        source, swapped = swap_imports(source)
    (folder / filename).write_text(source, encoding="utf-8")
    # scikit-learn's own fixtures (global_random_seed, pyplot...) and set-up
    # (thread limits, markers), as when its tests run from the package.
    shutil.copyfile(SKLEARN_DIR / "conftest.py", folder / "conftest.py")
    (folder / "pytest.ini").write_text(_PYTEST_INI.format(timeout=PER_TEST_TIMEOUT))
    return swapped


def run_sklearn_tests(filename, folder, *, swap=True, timeout=1500, extra_args=()):
    """Run scikit-learn's ``filename`` (parml's classes swapped in) in ``folder``.

    Parameters
    ----------
    filename : str
        A file of ``sklearn/model_selection/tests``, e.g. ``"test_search.py"``.
    folder : path-like
        An empty folder the run may write to (the test's ``tmp_path``).
    swap : bool, default=True
        False runs the file as scikit-learn ships it (the baseline).
    timeout : float, default=1500
        Seconds the whole run may take; then it is killed and this raises.
    extra_args : sequence of str
        More pytest arguments (``-k`` to run a subset).

    Returns
    -------
    outcome : SuiteOutcome
    """
    folder = Path(folder)
    swapped = prepare(filename, folder, swap=swap)
    report = folder / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-rN", f"--junitxml={report}",
               filename, *extra_args]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "SKLEARN_TESTS_GLOBAL_RANDOM_SEED"))}
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
        raise TimeoutError(
            f"pytest on scikit-learn's {filename} did not finish in {timeout} s; killed. "
            f"Last output:\n{output[-3000:]}"
        ) from None
    seconds = time.monotonic() - start
    if not report.exists():
        raise RuntimeError(
            f"pytest on scikit-learn's {filename} wrote no report (exit code "
            f"{process.returncode}). Output:\n{output[-5000:]}"
        )
    outcome = parse_junit(report)
    outcome.seconds, outcome.swapped = seconds, swapped
    return outcome


def parse_junit(path):
    """The :class:`SuiteOutcome` of a pytest ``--junitxml`` report."""
    outcome = SuiteOutcome()
    for case in ET.parse(path).getroot().iter("testcase"):
        test = case.get("name")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            value = "failed"
            message = failure.get("message") or ""
            outcome.messages[test] = message.splitlines()[0] if message else ""
        elif skipped is not None:
            value = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            value = "passed"
        if outcome.outcomes.get(test) == "failed":
            continue  # a test that failed, then errored in teardown: one failure
        outcome.outcomes[test] = value
    return outcome


def _main(argv):
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("filename")
    parser.add_argument("--baseline", action="store_true", help="run it unswapped")
    parser.add_argument("-k", default=None)
    args = parser.parse_args(argv)
    extra = ["-k", args.k] if args.k else []
    with tempfile.TemporaryDirectory() as folder:
        outcome = run_sklearn_tests(args.filename, folder, swap=not args.baseline,
                                    extra_args=extra)
    print(f"{args.filename}: {outcome.counts()} in {outcome.seconds:.1f} s "
          f"(scikit-learn {sklearn.__version__}; swapped: {outcome.swapped})")
    for test in outcome.having("failed"):
        print(f"FAILED {test}: {outcome.messages.get(test, '')[:300]}")


if __name__ == "__main__":
    _main(sys.argv[1:])
