"""Per-frame cost of the video sources and sinks at 720p on this machine (medians; a measurement, not a test).

Usage: .venv/bin/python scripts/video_io_cost.py [VIDEO]   (default: a 150-frame 720p h264 clip made by ffmpeg)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.frames.results import FrameResult  # noqa: E402
from edge_app.video.mjpeg import MjpegSink  # noqa: E402
from edge_app.video.sinks import JsonlSink, VideoFileSink  # noqa: E402
from edge_app.video.sources import open_source  # noqa: E402


def median_ms(samples: list[float]) -> float:
    """Median of durations in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def main() -> int:
    """Time reading, rendering, encoding and serving 720p frames; print one line per case."""
    tmp = Path(tempfile.mkdtemp(prefix="video_io_cost_"))
    try:
        video = sys.argv[1] if len(sys.argv) > 1 else str(tmp / "720p.mp4")
        if len(sys.argv) == 1:
            ffmpeg = shutil.which("ffmpeg")
            if ffmpeg is None:
                print("error: pass a video, or install ffmpeg to make one", file=sys.stderr)
                return 2
            subprocess.run(
                [
                    ffmpeg,
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=1280x720:rate=30",
                    "-frames:v",
                    "150",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuv420p",
                    video,
                ],
                check=True,
            )
        frames, ts = [], []
        t = time.perf_counter()
        for f in open_source(video):
            ts.append(time.perf_counter() - t)
            frames.append(f.image)
            t = time.perf_counter()
        print(
            f"read {video}: {median_ms(ts):.2f} ms/frame ({len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]})"
        )
        ts = []
        t = time.perf_counter()
        for _ in open_source("synthetic?frames=60", fps=1000):  # fps 1000: measure rendering, not pacing
            ts.append(time.perf_counter() - t)
            t = time.perf_counter()
        print(f"synthetic source 1280x720 render: {median_ms(ts):.2f} ms/frame")
        h, w = frames[0].shape[:2]
        for ext in (".mp4", ".avi", ".mkv", ".webm"):
            with VideoFileSink(tmp / f"out{ext}", 30.0, (w, h)) as v:
                ts = []
                for img in frames:
                    t = time.perf_counter()
                    v.write(img, None)
                    ts.append(time.perf_counter() - t)
            print(f"VideoFileSink {ext} ({v.codec}): {median_ms(ts):.2f} ms/frame")
        with MjpegSink(port=0) as m:
            m.server.clients = 1  # as if a browser watched: every frame is encoded
            ts = []
            for img in frames:
                t = time.perf_counter()
                m.write(img, None)
                ts.append(time.perf_counter() - t)
            m.server.clients = 0
        print(f"MjpegSink JPEG q80 encode + publish: {median_ms(ts):.2f} ms/frame")
        with JsonlSink(tmp / "out.jsonl") as j:
            ts = []
            for i in range(len(frames)):
                t = time.perf_counter()
                j.write(None, FrameResult(i, time.monotonic()))
                ts.append(time.perf_counter() - t)
        print(f"JsonlSink: {median_ms(ts) * 1000:.1f} us/frame")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
