#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU (TensorRT optional): scripts/gpu_check.py (the CUDA runner, PyTorch
# CUDA latency, parity, runner overhead, copy bandwidth, TensorRT where installed), then the GPU tests with -rA.
# Everything it writes goes to --out-dir (default runs/gpu_check): report.json, table.txt, gpu_check.log,
# pytest.log. Give an out dir that survives the machine (a GPU machine is wiped when returned).
# About 3-4 minutes on an H100; each half has its own time limit. Installs nothing, needs no network.
# Exit 0: no check failed; 1: a check or test failed; 2: no usable NVIDIA GPU (every check marked skipped).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=runs/gpu_check
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) OUT="$2"; shift 2 ;;
    --out-dir=*) OUT="${1#--out-dir=}"; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; echo "usage: scripts/gpu_check.sh [--out-dir DIR] [gpu_check.py options]"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
mkdir -p "$OUT"

echo "== scripts/gpu_check.py --out-dir $OUT (limit 200 s)"
timeout 200 "$PY" scripts/gpu_check.py --out-dir "$OUT" "${ARGS[@]+"${ARGS[@]}"}" 2>&1 | tee "$OUT/gpu_check.log"
check=${PIPESTATUS[0]}
if [ "$check" -eq 2 ]; then
  echo "gpu_check.sh: no GPU: nothing was run; pytest -m gpu skipped; table: $OUT/table.txt" >&2
  exit 2
fi

echo "== pytest -m gpu -rA (limit 120 s)"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rA tests/runtime 2>&1 | tee "$OUT/pytest.log"
tests=${PIPESTATUS[0]}
summary=$(grep -E '^=+ .*(passed|failed|skipped|error).* =+$' "$OUT/pytest.log" | tail -1 | tr -d '=')
echo "pytest -m gpu (exit $tests):${summary:- no summary (timed out?)}" | tee -a "$OUT/table.txt"

echo "== table ($OUT/table.txt)"
cat "$OUT/table.txt"
echo "gpu_check.sh: gpu_check.py exit $check, pytest -m gpu exit $tests; everything is in $OUT"
[ "$tests" -eq 0 ] && [ "$check" -eq 0 ]
