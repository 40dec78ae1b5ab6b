#!/usr/bin/env bash
# One command: set up .venv and run the test suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/check_jetson_requirements.sh  # the Jetson pins resolve for cp310 aarch64 on PyPI (a dry run, ~8 s)
bash scripts/system-deps.sh || true  # ffmpeg, rtsp-server-perl, chromium for the video tests (root + apt only)
# Lint and format check first: a style slip fails fast, before minutes of tests.
.venv/bin/ruff check edge_app tests scripts run.py
.venv/bin/ruff format --check edge_app tests scripts run.py
# The floors of DESIGN.md (.importlinter): imports only point down, no cycles.
.venv/bin/lint-imports --no-cache
# The package as pip installs it (issue 25): build the wheel, install it into a fresh venv, run the installed
# command's --help and a tiny annotate (~5 min; skipped when test.sh is given pytest arguments).
if [ $# -eq 0 ]; then bash scripts/check_wheel.sh; fi
exec .venv/bin/python -m pytest -q "$@"
