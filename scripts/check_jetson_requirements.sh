#!/usr/bin/env bash
# Resolve the Jetson requirement set against PyPI for JetPack 6 (Python 3.10, glibc 2.35, aarch64) without a
# Jetson: pip's resolver with --dry-run, nothing installed. scripts/test.sh runs it after setup, so a pin without
# a cp310 aarch64 wheel fails CI instead of a user's `scripts/setup.sh` on the board.
#
# What is resolved is exactly what setup.sh would install on JetPack 6.1 (CUDA 12.6), taken from its dry-run mode,
# in both of its Jetson shapes: a typical JetPack (system CUDA torch and GStreamer cv2 kept: numpy 1.x, no
# opencv-python) and a bare one (neither kept); plus the sample-photo package (--no-deps, as setup.sh does).
#
# The platform list matters: pip does not expand `--platform manylinux_2_35_aarch64` to the older manylinux
# tags a glibc 2.35 machine accepts, so alone it rejects every manylinux_2_17/2_28 wheel (most of them). The
# list below is what pip on the board accepts: manylinux_2_35 ... manylinux_2_17 and manylinux2014.
#
# One line of result: "jetson requirements: OK ...", "... FAIL ..." (exit 1) or "... NOT CHECKED ..." (exit 2,
# PyPI unreachable after one retry). EDGE_APP_SKIP_JETSON_CHECK=1 skips it and says so (exit 0).
# JETSON_CHECK_INDEX_URL replaces https://pypi.org/simple (a mirror).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${EDGE_APP_SKIP_JETSON_CHECK:-0}" = 1 ]; then
    echo "jetson requirements: NOT CHECKED (EDGE_APP_SKIP_JETSON_CHECK=1)"; exit 0
fi
index="${JETSON_CHECK_INDEX_URL:-https://pypi.org/simple}"
py=.venv/bin/python
[ -x "$py" ] || py=python3
start=$SECONDS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --------------------------------------------------------------------------- the sets setup.sh would install
printf '# R36 (release), REVISION: 4.0, GCID: 0, BOARD: generic, EABI: aarch64\n' > "$work/nv_tegra_release"
printf '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}\n' > "$work/version.json"  # JetPack 6.1/6.2
cat > "$work/jetpack-python" <<'EOF'
#!/bin/sh
# The system python3 of a typical JetPack: CUDA torch imports, cv2 reports GStreamer.
case "$2" in *getBuildInformation*) printf '  Video I/O:\n    GStreamer:                   YES (1.20.3)\n' ;; esac
exit 0
EOF
chmod +x "$work/jetpack-python"
effective_set() {  # $1: scenario name, $2: PROBE_PYTHON -> $work/$1.txt (requirements) and $work/$1.photos.txt
    local out
    out="$(EDGE_APP_SETUP_DRY=1 PYTHON="$py" PROBE_PYTHON="$2" TEGRA_RELEASE="$work/nv_tegra_release" \
        CUDA_VERSION_JSON="$work/version.json" NVIDIA_SMI="$work/no-nvidia-smi" bash scripts/setup.sh)"
    printf '%s\n' "$out" | sed -n '/^--- requirements$/,/^--- photos$/p' | sed '1d;$d' > "$work/$1.txt"
    printf '%s\n' "$out" | sed -n '/^--- photos$/,$p' | sed '1d' > "$work/$1.photos.txt"
}
effective_set jetpack "$work/jetpack-python"
effective_set bare false

# --------------------------------------------------------------------------- resolve
platforms=()
for m in $(seq 35 -1 17); do platforms+=(--platform "manylinux_2_${m}_aarch64"); done
platforms+=(--platform manylinux2014_aarch64)
resolve() {  # $1: log file, rest: pip arguments. Only PyPI: the machine's pip config (local wheels, constraints) is left out.
    local log="$1"; shift
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT -u PIP_NO_INDEX \
        -u PIP_REQUIRE_VIRTUALENV PIP_CONFIG_FILE=/dev/null \
        "$py" -m pip install --dry-run --ignore-installed --target "$(mktemp -d -p "$work")" \
        --python-version 3.10 "${platforms[@]}" --only-binary=:all: --index-url "$index" \
        --disable-pip-version-check --retries 2 --timeout 30 "$@" >"$log" 2>&1
}
network_error() { grep -Eqi 'NameResolutionError|NewConnectionError|ConnectionError|Max retries exceeded|Read timed out|Temporary failure in name resolution|Could not fetch URL|SSLError|ProxyError|Name or service not known|Network is unreachable' "$1"; }

declare -A count=()
for scenario in jetpack bare photos; do
    case "$scenario" in
        photos) args=(--no-deps -r "$work/bare.photos.txt") ;;
        *) args=(-r "$work/$scenario.txt") ;;
    esac
    log="$work/$scenario.log"
    ok=0
    for attempt in 1 2; do
        if resolve "$log" "${args[@]}" --report "$work/$scenario.json"; then ok=1; break; fi
        network_error "$log" || break
        [ "$attempt" = 1 ] && sleep 5
    done
    if [ "$ok" = 0 ]; then
        why="$(grep -E '^ERROR' "$log" | head -n1)"; [ -n "$why" ] || why="$(tail -n1 "$log")"
        if network_error "$log"; then
            why="$(grep -Eoi "(NameResolutionError|NewConnectionError|ConnectionError|Read timed out|SSLError|ProxyError|Could not fetch URL).*" "$log" | head -n1 | cut -c1-160 || true)"
            echo "jetson requirements: NOT CHECKED ($index unreachable after one retry: $why)"; exit 2
        fi
        echo "jetson requirements: FAIL for cp310 manylinux_2_35 aarch64 ($scenario set, CUDA 12.6): $why"; exit 1
    fi
    n="$("$py" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["install"]))' "$work/$scenario.json")"
    count[$scenario]=$n
done
pins="$(grep -hE '^(numpy|cuda-python|cuda-bindings|opencv-python)==' "$work/jetpack.txt" "$work/bare.txt" | sort -u | paste -sd' ')"
echo "jetson requirements: OK (cp310 manylinux_2_35 aarch64, JetPack 6.1 / CUDA 12.6, $index):" \
    "JetPack torch+cv2 kept ${count[jetpack]} packages, bare ${count[bare]}, photos ${count[photos]}; $pins; $((SECONDS - start)) s"
