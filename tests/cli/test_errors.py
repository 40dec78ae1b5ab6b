"""The command line as a whole: its commands, and every user error as one sentence, exit code 2, no traceback."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from edge_app.cli import COMMANDS, build_parser
from tests.cli.runner import REPO, run_cli


def test_help_lists_commands() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_is_a_module_with_parser_and_main(name: str) -> None:
    """torchvision references' split: get_args_parser() builds the options alone, main(args) runs them."""
    mod = importlib.import_module(f"edge_app.cli.{name}")
    assert mod.HELP and callable(mod.main)
    assert mod.get_args_parser().prog == f"run.py {name}"


def test_no_main_blocks_and_no_long_files_in_the_package() -> None:
    """run.py is the one entry point; `python -m` mains hide commands from --help."""
    for path in (REPO / "edge_app").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            assert not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)), path
    for path in (REPO / "edge_app" / "cli").glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path


def test_no_command_prints_a_traceback_for_a_missing_subcommand() -> None:
    assert build_parser().parse_args([]).command is None
    r = run_cli()
    assert r.returncode == 2 and "usage: run.py" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "--data", "/nonexistent/ds"], "dataset folder '/nonexistent/ds' does not exist"),
        (["train", "--arch", "resnet19"], "unknown architecture 'resnet19'"),
        (["train", "--epochs", "0"], "must be at least 1"),
        (["export", "/nonexistent.pt", "--name", "x"], "checkpoint '/nonexistent.pt' does not exist"),
        # Inputs or engine first: either missing path is named (annotate checks its inputs before opening).
        (["annotate", "/nonexistent.mp4", "--engine", "/nonexistent"], r"'/nonexistent(\.mp4)?' does not exist"),
        (["bench", "/nonexistent", "--warmup", "-1"], "--warmup -1 is negative"),
        (["bench", "/nonexistent", "--backend", "tflite"], "--backends 'tflite' is not known"),
        (["live", "--engine", "/nonexistent", "--top-k", "x"], "--top-k 'x' is not a whole number; e.g. 3"),
        (["live", "--engine", "/nonexistent", "--tiles", "4"], r"--tiles: tile grid '4' is not COLSxROWS"),
    ],
)
def test_bad_input_is_one_clear_sentence(args: list[str], match: str) -> None:
    r = run_cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert re.search(match, r.stderr), r.stderr


def test_the_entry_points_agree() -> None:
    """pyproject's `edge-app = "edge_app.cli:main"` and run.py call the same function."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'edge-app = "edge_app.cli:main"' in text
    assert "from edge_app.cli import main" in (REPO / "run.py").read_text(encoding="utf-8")
    assert Path(importlib.import_module("edge_app.cli").__file__).name == "__init__.py"
