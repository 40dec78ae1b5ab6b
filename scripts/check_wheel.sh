#!/usr/bin/env bash
# CI check that `pip install .` gives a working command: build the wheel, install it into a fresh venv (the
# pinned versions of requirements.txt as constraints, so torch comes from the same wheel source and version as
# the main venv; pip's cache is reused), then, outside the repository so only the installed package is seen,
# run `edge-app --help`, export a tiny random ResNet-18 and `annotate` a tiny generated video with it.
#
#   scripts/check_wheel.sh            # prints each step's time and "check_wheel: ok" at the end
#   KEEP=1 scripts/check_wheel.sh     # keep the work folder for a look
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-"$REPO/.venv/bin/python"}
[ -x "$PY" ] || PY=python3
WORK=$(mktemp -d /tmp/check-wheel.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
step() { printf '%s check_wheel: %s\n' "$(date +%T)" "$*"; }
t0=$(date +%s)

step "build the wheel"
# From a copy of what the wheel is made of: setuptools writes build/ and *.egg-info beside the sources.
mkdir "$WORK/src"
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/edge_app" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip wheel -q --no-deps --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/edge_app-*.whl)

step "install $(basename "$WHEEL") into a fresh venv"
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
# Constraints, not requirements: only what the wheel declares is installed, at the versions CI tests.
grep -vE '^\s*(#|$)' "$REPO/requirements.txt" >"$WORK/constraints.txt"
# (The grep drops pip's notes about index folders this machine's pip.conf names but does not have.)
"$V/python" -m pip install -q --disable-pip-version-check -c "$WORK/constraints.txt" "$WHEEL" 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }

cd "$WORK"  # not the repository: `import edge_app` must find the installed package
step "edge-app --help"
"$V/edge-app" --help >/dev/null
"$V/edge-app" annotate --help >/dev/null
"$V/python" -c "import edge_app, sys; assert '/site-packages/' in edge_app.__file__, edge_app.__file__"

step "a tiny engine (random ResNet-18 at 32 px) and a tiny video"
"$V/python" - <<'PY'
import torch
from edge_app.models.registry import create_model
torch.save(create_model("resnet18", num_classes=3).state_dict(), "w.pth")
from edge_app.data.synthetic import VideoConfig, write_video
write_video("clip.mp4", VideoConfig(width=96, height=64, fps=10, frames=8, objects=1, min_size=20, max_size=30))
PY
"$V/edge-app" export --weights w.pth --arch resnet18 --labels a,b,c --img 32 --resize 0 --name tiny --engines engines >/dev/null

step "edge-app annotate"
"$V/edge-app" annotate clip.mp4 --engine engines/tiny --out out --no-progress
test -s out/clip.jsonl && test -s out/clip.mp4
[ "$(wc -l <out/clip.jsonl)" -eq 8 ]
step "ok in $(($(date +%s) - t0)) s"
