"""Run ``run.py`` as a user does (a subprocess) and check the one-sentence user errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in its own process; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300
    )


def assert_user_error(r: subprocess.CompletedProcess, match: str) -> None:
    """Exit code 2, no traceback, and stderr matching ``match`` (a regular expression)."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert re.search(match, r.stderr), r.stderr
