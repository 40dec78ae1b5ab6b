#!/usr/bin/env bash
# One command: set up .venv and run the demo on built-in synthetic data (no arguments, no downloads).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python run.py demo "$@"
