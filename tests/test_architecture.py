"""The layout shows the architecture: layers hold, modules and functions stay small.

The import contracts are in ``setup.cfg`` (``[importlinter]``); sizes are
counted here: no module of ``parml/`` over :data:`MAX_MODULE_LINES` lines, no
function over :data:`MAX_FUNCTION_LINES` lines of code (its docstring not
counted).
"""

import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "parml")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def function_lengths(source):
    """``(name, first line, lines of code)`` of every function in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        first = node.body[0]
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            length -= first.end_lineno - first.lineno + 1
        yield node.name, node.lineno, length


def test_function_lengths_are_counted_without_the_docstring():
    source = 'def f():\n    """Doc.\n\n    More.\n    """\n    a = 1\n    return a\n'
    assert list(function_lengths(source)) == [("f", 1, 3)]


def test_modules_and_functions_are_small():
    too_long = []
    for path in _modules():
        with open(path, encoding="utf-8") as file:
            source = file.read()
        where = os.path.relpath(path, ROOT)
        n_lines = len(source.splitlines())
        if n_lines > MAX_MODULE_LINES:
            too_long.append(f"{where}: {n_lines} lines (max {MAX_MODULE_LINES})")
        too_long += [f"{where}:{line} {name}: {length} lines of code (max "
                     f"{MAX_FUNCTION_LINES})"
                     for name, line, length in function_lengths(source)
                     if length > MAX_FUNCTION_LINES]
    assert not too_long, "Split these:\n" + "\n".join(too_long)


def test_import_layers_hold():
    """setup.cfg's import-linter contracts: estimators -> scheduler -> engines."""
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    result = subprocess.run([lint, "--config", os.path.join(ROOT, "setup.cfg")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout, result.stdout[-2000:]
