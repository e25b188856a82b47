"""The architecture contract: layers import only downward (import-linter contracts in
pyproject.toml, function-level imports included), a back edge fails the check, and every
import left inside a function states why it is lazy."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("treesearch", "policies", "critics")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command; sys.exit(lint_imports_command())"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_back_edge_breaks_the_build(tmp_path):
    """The engine importing the step search (a layer above it) must fail the check."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, symlinks=True,
                        ignore=shutil.ignore_patterns("priors", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    forest = tmp_path / "treesearch" / "engine" / "forest.py"
    forest.write_text(forest.read_text() + "\n\ndef _back_edge():\n"
                      "    from treesearch.search import StepSearch  # noqa: F401\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert "treesearch.engine.forest -> treesearch.search" in out.stdout


def _function_level_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub


def test_function_level_imports_say_why():
    """An import inside a function is only for an optional or slow dependency, and says so
    with a ``# lazy: <reason>`` comment on its line."""
    missing = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for node in _function_level_imports(path):
                text = " ".join(lines[node.lineno - 1:node.end_lineno])
                if "# lazy:" not in text:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text.strip()}")
    assert not missing, "function-level imports without '# lazy: <reason>':\n" + "\n".join(missing)
