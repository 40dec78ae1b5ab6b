#!/usr/bin/env bash
# Install the Debian packages that the real-part video tests use: ffmpeg (makes test videos and publishes
# the RTSP stream), an RTSP server (rtsp-server-perl) and chromium (loads the MJPEG page headless).
# Only as root with apt-get; quiet; skips what is installed; never fails the test run: where a package
# cannot be installed, the tests that need it skip with a reason.
set -u
PKGS="ffmpeg rtsp-server-perl chromium"

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not root or no apt-get; skipping ($PKGS); tests that need them will be skipped" >&2
    exit 0
fi
missing=""
for p in $PKGS; do
    # dpkg -s is instant; apt is only touched when something is missing.
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "system-deps: installing$missing (Debian packages for the video tests)" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt run (a parallel job) instead of failing on its lock.
APT="apt-get -qq -o DPkg::Lock::Timeout=300 -o Acquire::Retries=2"
if ! $APT install -y --no-install-recommends $missing >/dev/null 2>&1; then
    $APT update >/dev/null 2>&1 || true
    for p in $missing; do
        # One at a time so one unavailable package does not block the others.
        $APT install -y --no-install-recommends "$p" >/dev/null 2>&1 \
            || echo "system-deps: could not install $p; tests that need it will be skipped" >&2
    done
fi
exit 0
