#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements (if they changed). Sourced by demo.sh/test.sh.
#
# On a Jetson (JetPack: /etc/nv_tegra_release) the venv sees the system's site-packages, because TensorRT comes
# from JetPack's python3-libnvinfer (TensorRT 10.3 on JetPack 6) and cannot be pip-installed there; JetPack's
# CUDA torch is kept when it is present. cuda-bindings must match the driver's CUDA major version: requirements.txt
# pins 13.x (CI: x86, no driver, unchanged); a CUDA 12 driver (JetPack 6, older desktops) gets 12.x instead.
#
# EDGE_APP_SETUP_DRY=1 prints the decisions and the effective requirements and installs nothing.
# TEGRA_RELEASE, CUDA_VERSION_JSON and NVIDIA_SMI override where those facts are read (for tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TEGRA_RELEASE="${TEGRA_RELEASE:-/etc/nv_tegra_release}"
CUDA_VERSION_JSON="${CUDA_VERSION_JSON:-/usr/local/cuda/version.json}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
DRY="${EDGE_APP_SETUP_DRY:-0}"

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found; install Python 3.10+ (apt-get install python3 python3-venv)" >&2; exit 2
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "error: $("$PYTHON" --version) is too old; edge_app needs Python 3.10+ (set PYTHON=python3.11)" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------- what machine is this
jetson=0
[ -f "$TEGRA_RELEASE" ] && jetson=1

# The CUDA major version the NVIDIA driver supports: nvidia-smi's "CUDA Version: 12.4", else (Jetson, where
# nvidia-smi may be missing) the CUDA that JetPack installed. Empty when there is no NVIDIA driver (CI).
driver_cuda_major() {
    local v=""
    if command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
        v="$("$NVIDIA_SMI" 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n1 || true)"
    fi
    if [ -z "$v" ] && [ -f "$CUDA_VERSION_JSON" ]; then
        v="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["cuda"]["version"].split(".")[0])' \
             "$CUDA_VERSION_JSON" 2>/dev/null || true)"
    fi
    echo "$v"
}
cuda_major="$(driver_cuda_major)"

# JetPack's torch is built for the Jetson GPU; the PyPI aarch64 torch is CPU-only. Keep the system one if it works.
system_cuda_torch=0
if [ "$jetson" = 1 ] && "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    system_cuda_torch=1
fi

# ---------------------------------------------------------------------------------------------- effective requirements
effective="$(mktemp)"
trap 'rm -f "$effective"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    name="$(printf '%s' "$line" | sed -n 's/^\([A-Za-z0-9_.-]*\).*/\1/p' | tr 'A-Z_' 'a-z-')"
    case "$name" in
        cuda-bindings|cuda-pathfinder)
            # cuda-bindings 13.x needs a CUDA 13 driver; with a CUDA 12 driver every call fails with
            # cudaErrorInsufficientDriver. cuda-pathfinder then follows whatever cuda-bindings 12.x asks for.
            if [ -n "$cuda_major" ] && [ "$cuda_major" -lt 13 ]; then continue; fi ;;
        torch)
            if [ "$system_cuda_torch" = 1 ]; then continue; fi ;;
    esac
    printf '%s\n' "$line" >> "$effective"
done < requirements.txt
if [ -n "$cuda_major" ] && [ "$cuda_major" -lt 13 ]; then
    printf 'cuda-bindings>=%s,<%s\n' "$cuda_major" "$((cuda_major + 1))" >> "$effective"
fi

venv_args=()
[ "$jetson" = 1 ] && venv_args+=(--system-site-packages)

if [ "$DRY" = 1 ]; then
    echo "jetson=$jetson"
    echo "driver_cuda_major=${cuda_major:-none}"
    echo "system_cuda_torch=$system_cuda_torch"
    echo "venv_args=${venv_args[*]:-}"
    echo "--- requirements"
    cat "$effective"
    exit 0
fi

# ---------------------------------------------------------------------------------------------- the venv
if [ -x "$VENV/bin/python" ] && [ "$jetson" = 1 ] && ! grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null; then
    echo "setup: $VENV cannot see JetPack's TensorRT (made without --system-site-packages); recreating it" >&2
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv ${venv_args[@]+"${venv_args[@]}"} "$VENV" 2>/dev/null; then
        # Debian/Ubuntu ship venv separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"; "$PYTHON" -m venv ${venv_args[@]+"${venv_args[@]}"} "$VENV"
        else
            echo "error: '$PYTHON -m venv' failed; install it with: sudo apt-get install python3-venv" >&2; exit 2
        fi
    fi
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$effective" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$effective"
    echo "$want" > "$stamp"
fi
if [ "$jetson" = 1 ] && ! "$VENV/bin/python" -c 'import tensorrt' >/dev/null 2>&1; then
    echo "setup: TensorRT does not import on this Jetson; install JetPack's bindings: sudo apt install python3-libnvinfer" >&2
fi
# Sample photographs for the tests (data files only; see requirements-photos.txt).
pstamp="$VENV/.requirements-photos.sha256"
pwant="$(sha256sum requirements-photos.txt | cut -d' ' -f1)"
if [ "$(cat "$pstamp" 2>/dev/null || true)" != "$pwant" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-photos.txt
    echo "$pwant" > "$pstamp"
fi
