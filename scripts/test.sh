#!/usr/bin/env bash
# One command: set up .venv and run the test suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/system-deps.sh || true  # ffmpeg, rtsp-server-perl, chromium for the video tests (root + apt only)
exec .venv/bin/python -m pytest -q "$@"
