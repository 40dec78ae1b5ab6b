#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU (TensorRT optional): the GPU tests, then scripts/gpu_check.py,
# which drives the real CUDA runner and compares PyTorch CUDA (and TensorRT where it imports) with ONNX Runtime.
# Installs nothing, needs no network; about 3-5 minutes (at most 8: each half has its own time limit).
# Writes runs/gpu_check.json (the check's report) and runs/gpu_check.pytest.log. Exit code 0 when both passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
mkdir -p runs

echo "== pytest -m gpu (limit 240 s)"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/runtime 2>&1 | tee runs/gpu_check.pytest.log
tests=${PIPESTATUS[0]}

echo "== scripts/gpu_check.py (limit 240 s)"
timeout 240 "$PY" scripts/gpu_check.py --out runs/gpu_check.json "$@"
check=$?

echo "gpu_check.sh: pytest -m gpu exit $tests, gpu_check.py exit $check; report runs/gpu_check.json"
[ "$tests" -eq 0 ] && [ "$check" -eq 0 ]
