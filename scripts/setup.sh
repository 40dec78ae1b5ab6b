#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements (if they changed). Sourced by demo.sh/test.sh.
#
# Desktop/CI: requirements.txt. cuda-bindings must match the driver's CUDA major version: requirements.txt pins
# 13.x (CI: x86, no driver, unchanged); a CUDA 12 driver (older desktops) gets cuda-bindings>=12,<13 instead.
#
# Jetson (JetPack 6.x: /etc/nv_tegra_release, Python 3.10, aarch64): requirements-jetson.txt (wheels that exist for
# cp310 aarch64), in a venv that sees the system's site-packages, because TensorRT comes from JetPack's
# python3-libnvinfer and cannot be pip-installed there. On top of that file:
#   - a system CUDA torch (NVIDIA's Jetson wheel) is kept (requirements-jetson.txt has no torch);
#   - the system cv2 is kept when it reports GStreamer YES (JetPack's, for csi://0 and gst: sources):
#     opencv-python is dropped from the requirements and removed from the venv where it would shadow it;
#   - numpy==1.26.4 replaces the numpy pin when a system torch or cv2 is kept (both are built against numpy 1.x);
#   - the CUDA bindings are pinned to the JetPack CUDA major.minor (/usr/local/cuda/version.json): CUDA 12.6 ->
#     cuda-python==12.6.* (cuda-bindings starts at 12.8; CUDA 12.8+ -> cuda-bindings==12.8.* etc.), never the
#     newest 12.x, which needs a newer driver than L4T's;
#   - the sample photographs come from scikit-image 0.25.2 (0.26 has no cp310 wheel).
#
# EDGE_APP_SETUP_DRY=1 prints the decisions and the effective requirements and installs nothing.
# TEGRA_RELEASE, CUDA_VERSION_JSON and NVIDIA_SMI override where those facts are read, and PROBE_PYTHON the
# interpreter asked about the system torch and cv2 (default: $PYTHON, the one the venv is made from) (for tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TEGRA_RELEASE="${TEGRA_RELEASE:-/etc/nv_tegra_release}"
CUDA_VERSION_JSON="${CUDA_VERSION_JSON:-/usr/local/cuda/version.json}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
PROBE_PYTHON="${PROBE_PYTHON:-$PYTHON}"
DRY="${EDGE_APP_SETUP_DRY:-0}"
JETSON_NUMPY1_PIN="numpy==1.26.4"       # newest numpy 1.x; cp310 manylinux2014 aarch64 wheel
JETSON_PHOTOS_PIN="scikit-image==0.25.2" # newest scikit-image with a cp310 aarch64 wheel (data files only)

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found; install Python 3.10+ (apt-get install python3 python3-venv)" >&2; exit 2
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "error: $("$PYTHON" --version) is too old; edge_app needs Python 3.10+ (set PYTHON=python3.11)" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------- what machine is this
jetson=0
[ -f "$TEGRA_RELEASE" ] && jetson=1

smi_cuda_version() {  # nvidia-smi's "CUDA Version: 12.4" -> 12.4 (empty without a driver)
    if command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
        "$NVIDIA_SMI" 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1 || true
    fi
}
toolkit_cuda_version() {  # /usr/local/cuda/version.json's "12.6.68" -> 12.6 (empty when absent)
    if [ -f "$CUDA_VERSION_JSON" ]; then
        "$PYTHON" -c 'import json, sys; print(".".join(json.load(open(sys.argv[1]))["cuda"]["version"].split(".")[:2]))' \
            "$CUDA_VERSION_JSON" 2>/dev/null || true
    fi
}
# The CUDA version that decides the bindings. Desktop: what the driver supports (nvidia-smi), else the installed
# toolkit. Jetson: the CUDA that JetPack installed (the L4T driver matches it; nvidia-smi may be missing).
if [ "$jetson" = 1 ]; then
    cuda_version="$(toolkit_cuda_version)"; [ -n "$cuda_version" ] || cuda_version="$(smi_cuda_version)"
else
    cuda_version="$(smi_cuda_version)"; [ -n "$cuda_version" ] || cuda_version="$(toolkit_cuda_version)"
fi
cuda_major="${cuda_version%%.*}"
cuda_minor=""
case "$cuda_version" in *.*) cuda_minor="${cuda_version#*.}" ;; esac

# JetPack's torch is built for the Jetson GPU; the PyPI aarch64 torch is CPU-only. Keep the system one if it works.
system_cuda_torch=0
if [ "$jetson" = 1 ] && "$PROBE_PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    system_cuda_torch=1
fi
# JetPack's cv2 is built with GStreamer (pip's opencv-python is not). Keep it when it says so.
system_cv2_gstreamer=0
if [ "$jetson" = 1 ] && "$PROBE_PYTHON" -c 'import cv2; print(cv2.getBuildInformation())' 2>/dev/null \
        | grep -Eq '^[[:space:]]*GStreamer:[[:space:]]*YES'; then
    system_cv2_gstreamer=1
fi

# ---------------------------------------------------------------------------------------------- effective requirements
requirements=requirements.txt
[ "$jetson" = 1 ] && requirements=requirements-jetson.txt
numpy_pin=""   # the numpy line that replaces the file's one (empty: keep the file's)
cuda_pin=""    # the CUDA bindings line appended (empty: keep the file's)
drop_from_venv=()  # venv-local packages that would shadow a kept system package
if [ "$jetson" = 1 ]; then
    if [ "$system_cuda_torch" = 1 ] || [ "$system_cv2_gstreamer" = 1 ]; then numpy_pin="$JETSON_NUMPY1_PIN"; fi
    [ "$system_cuda_torch" = 1 ] && drop_from_venv+=(torch)
    [ "$system_cv2_gstreamer" = 1 ] && drop_from_venv+=(opencv-python opencv-python-headless opencv-contrib-python opencv-contrib-python-headless)
    if [ -n "$cuda_major" ] && [ -n "$cuda_minor" ]; then
        # cuda-bindings (split out of cuda-python) exists from 12.8 on; before that the package is cuda-python.
        if [ "$cuda_major" -gt 12 ] || { [ "$cuda_major" -eq 12 ] && [ "$cuda_minor" -ge 8 ]; }; then
            cuda_pin="cuda-bindings==$cuda_version.*"
        else
            cuda_pin="cuda-python==$cuda_version.*"
        fi
    fi
elif [ -n "$cuda_major" ] && [ "$cuda_major" -lt 13 ]; then
    # cuda-bindings 13.x needs a CUDA 13 driver; with a CUDA 12 driver every call fails with
    # cudaErrorInsufficientDriver. cuda-pathfinder then follows whatever cuda-bindings 12.x asks for.
    cuda_pin="cuda-bindings>=$cuda_major,<$((cuda_major + 1))"
fi

effective="$(mktemp)"
photos="$(mktemp)"
trap 'rm -f "$effective" "$photos"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    name="$(printf '%s' "$line" | sed -n 's/^\([A-Za-z0-9_.-]*\).*/\1/p' | tr 'A-Z_' 'a-z-')"
    case "$name" in
        cuda-bindings|cuda-pathfinder|cuda-python)
            if [ -n "$cuda_pin" ]; then continue; fi ;;
        torch)
            if [ "$system_cuda_torch" = 1 ]; then continue; fi ;;
        opencv-python)
            if [ "$system_cv2_gstreamer" = 1 ]; then continue; fi ;;
        numpy)
            if [ -n "$numpy_pin" ]; then line="$numpy_pin"; fi ;;
    esac
    printf '%s\n' "$line" >> "$effective"
done < "$requirements"
if [ -n "$cuda_pin" ]; then printf '%s\n' "$cuda_pin" >> "$effective"; fi
if [ "$jetson" = 1 ]; then
    sed "s/^scikit-image==.*/$JETSON_PHOTOS_PIN/" requirements-photos.txt > "$photos"
else
    cat requirements-photos.txt > "$photos"
fi

venv_args=()
[ "$jetson" = 1 ] && venv_args+=(--system-site-packages)

if [ "$DRY" = 1 ]; then
    echo "jetson=$jetson"
    echo "cuda_version=${cuda_version:-none}"
    echo "driver_cuda_major=${cuda_major:-none}"
    echo "system_cuda_torch=$system_cuda_torch"
    echo "system_cv2_gstreamer=$system_cv2_gstreamer"
    echo "requirements_file=$requirements"
    echo "numpy_pin=${numpy_pin:-from file}"
    echo "cuda_pin=${cuda_pin:-from file}"
    echo "drop_from_venv=${drop_from_venv[*]:-}"
    echo "venv_args=${venv_args[*]:-}"
    echo "--- requirements"
    cat "$effective"
    echo "--- photos"
    cat "$photos"
    exit 0
fi

if [ "$jetson" = 1 ]; then
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' ||
        echo "setup: requirements-jetson.txt is made for JetPack 6 (Python 3.10); $("$PYTHON" --version) may not find every wheel" >&2
    [ -n "$cuda_pin" ] ||
        echo "setup: no CUDA version in $CUDA_VERSION_JSON; not installing CUDA bindings (the TensorRT runner needs them: pip install 'cuda-python==<JetPack CUDA major.minor>.*')" >&2
    [ "$system_cuda_torch" = 1 ] ||
        echo "setup: no CUDA torch in the system Python; inference does not need it, training/export do: install NVIDIA's Jetson torch wheel for your JetPack into $PYTHON, then re-run setup" >&2
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
    # A kept system torch/cv2 is only seen when the venv has no copy of its own (an earlier install may have one).
    for pkg in ${drop_from_venv[@]+"${drop_from_venv[@]}"}; do
        if "$VENV/bin/python" -m pip list --local --format=freeze --disable-pip-version-check 2>/dev/null | grep -qi "^$pkg=="; then
            echo "setup: removing $pkg from $VENV so the system one is used" >&2
            "$VENV/bin/python" -m pip uninstall -q -y --disable-pip-version-check "$pkg"
        fi
    done
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$effective"
    echo "$want" > "$stamp"
fi
if [ "$jetson" = 1 ] && ! "$VENV/bin/python" -c 'import tensorrt' >/dev/null 2>&1; then
    echo "setup: TensorRT does not import on this Jetson; install JetPack's bindings: sudo apt install python3-libnvinfer" >&2
fi
# Sample photographs for the tests (data files only; see requirements-photos.txt).
pstamp="$VENV/.requirements-photos.sha256"
pwant="$(sha256sum "$photos" | cut -d' ' -f1)"
if [ "$(cat "$pstamp" 2>/dev/null || true)" != "$pwant" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$photos"
    echo "$pwant" > "$pstamp"
fi
