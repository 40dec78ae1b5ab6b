"""The MJPEG page in a real headless Chromium (Debian's ``chromium``): load it, check frames arrive and the
stats render, take a screenshot (also copied to runs/browser/mjpeg_page.png for people to look at)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.video.mjpeg import MjpegSink
from edge_app.video.sources import open_source
from tests.conftest import REPO

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
BANNER_BGR = (200, 0, 200)  # a colour the page itself never uses: finding it in the screenshot means a frame

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (scripts/system-deps.sh installs it as root)"
    ),
]


class Producer(threading.Thread):
    """Annotated frames from the live synthetic source into the sink, with stats, until stopped."""

    def __init__(self, sink: MjpegSink) -> None:
        super().__init__(daemon=True)
        self.sink = sink
        self.src = open_source("synthetic?seed=4", width=640, height=360, fps=25)

    def run(self) -> None:
        for f in self.src:
            img = f.image
            img[:36] = BANNER_BGR
            cv2.putText(
                img,
                f"edge_app browser test  frame {f.index}",
                (10, 26),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.8,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
            for obj in f.truth or []:
                x1, y1, x2, y2 = obj["box"]
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
                cv2.putText(img, obj["class"], (x1, max(50, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
            self.sink.write(img, None)
            self.sink.update_stats(
                {"frame": f.index, "fps": round(self.src.fps, 2), "status": self.src.status, "source": "synthetic"}
            )


def _chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1100,480",
        "--virtual-time-budget=8000",  # room for the player page to wait out a stalled playhead (<= 5 s)
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=tmp)


def test_page_in_headless_chromium(tmp_path: Path) -> None:
    sink = MjpegSink("127.0.0.1", 0, title="edge_app live")
    prod = Producer(sink)
    prod.start()
    try:
        deadline = time.monotonic() + 10
        while sink.server.frames_published == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        dom = _chromium(sink.url, tmp_path, "--dump-dom")
        shot = tmp_path / "mjpeg_page.png"
        r = _chromium(sink.url, tmp_path, f"--screenshot={shot}")
        served = sink.server.stats_snapshot()["server"]
    finally:
        prod.src.close()
        prod.join(timeout=5)
        sink.close()
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    # The <img> fired onload (a JPEG part arrived and decoded) and the stats table was filled from /stats.
    assert '<span id="state">streaming</span>' in dom.stdout
    assert "<td>source</td><td>synthetic</td>" in dom.stdout
    assert served["clients_served"] >= 2 and served["frames_sent"] >= 2  # one client per Chromium run
    out = REPO / "runs" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, out / "mjpeg_page.png")
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (480, 1100)
    banner = np.all(np.abs(img.astype(int) - BANNER_BGR) < 30, axis=2)
    assert banner.sum() > 0.6 * 640 * 36  # the frame's banner is on screen, at (nearly) full size


# ----------------------------------------------------------------------------------------------- saved videos
PLAYER = """<!doctype html><html><body>
<video id="v" src="{src}" muted autoplay playsinline></video>
<pre id="out">waiting</pre>
<script>
const v = document.getElementById('v'), out = document.getElementById('out');
v.addEventListener('error', () => {{ out.textContent = JSON.stringify({{error: v.error ? v.error.code : -1}}); }});
// t1 after ~0.7 s; then wait (up to 5 s, polling) for the playhead to move on: a busy CI machine can stall
// headless playback for a moment, which is not the codec failing.
setTimeout(() => {{ const t1 = v.currentTime; const start = Date.now();
  const report = () => {{ out.textContent = JSON.stringify({{ready: v.readyState, t1: t1, t2: v.currentTime,
                           w: v.videoWidth, h: v.videoHeight, duration: v.duration}}); }};
  const poll = () => {{ if (v.error) return; if (v.currentTime > t1 || Date.now() - start > 5000) report();
                        else setTimeout(poll, 100); }};
  setTimeout(poll, 700); }}, 700);
</script></body></html>"""


def _play_in_chromium(video: Path, tmp: Path) -> dict:
    """Load ``video`` in a <video> element; what it reports after ~0.7 s and once its playhead moves on (<= 5 s)."""
    import json
    import re

    page = video.with_name("player.html")
    page.write_text(PLAYER.format(src=video.name))
    r = _chromium(page.as_uri(), tmp, "--autoplay-policy=no-user-gesture-required", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'<pre id="out">(.*?)</pre>', r.stdout)
    assert m and m.group(1) != "waiting", r.stdout[-2000:]
    return json.loads(m.group(1).replace("&quot;", '"'))


def _write_clip(path: Path, codec: str | None = None) -> Path:
    """90 numbered frames (3 s at 29.97 fps) through the product's own VideoFileSink."""
    from edge_app.video.sinks import VideoFileSink

    with VideoFileSink(path, 30000 / 1001, (320, 240), codec=codec) as sink:
        for i in range(90):
            img = np.full((240, 320, 3), 40, np.uint8)
            cv2.putText(img, str(i), (60, 160), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 4)
            sink.write(img, None)
    return path


@pytest.mark.parametrize("name, codec", [("clip.mp4", None), ("clip.webm", None)])
def test_saved_video_plays_in_headless_chromium(tmp_path: Path, name: str, codec: str | None) -> None:
    """The default .mp4 (H.264 through PyAV) and .webm (VP9) play in a browser: frames decode and time advances."""
    from edge_app.video import sinks

    if name.endswith(".mp4") and not sinks.pyav_available():
        pytest.skip(f"PyAV is not installed ({sinks.PYAV_PIN} writes H.264)")
    got = _play_in_chromium(_write_clip(tmp_path / name, codec), tmp_path)
    assert "error" not in got, got
    assert got["ready"] >= 2 and (got["w"], got["h"]) == (320, 240)  # HAVE_CURRENT_DATA: a frame decoded
    assert got["t2"] > got["t1"] > 0  # playing, not stuck on the first frame
    assert abs(got["duration"] - 90 * 1001 / 30000) < 0.05


def test_mp4v_does_not_play_in_chromium_which_is_why_it_is_not_the_default(tmp_path: Path) -> None:
    got = _play_in_chromium(_write_clip(tmp_path / "clip.mp4", "mp4v"), tmp_path)
    assert got == {"error": 4}, got  # MEDIA_ERR_SRC_NOT_SUPPORTED: MPEG-4 part 2 is no browser's codec
