"""Soak the multi-source live loop: 4 sources for N minutes, one RTSP stream cut and restored twice, one file
that ends early; prints memory / threads / fds / per-source FPS, latency and drops every 10 s and the slopes.

    python scripts/soak.py --engine engines/demo-det --mode detect --minutes 10

Needs Debian's ffmpeg and rtsp-server-perl (scripts/system-deps.sh); everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.frames.labellers import make_labeller  # noqa: E402
from edge_app.frames.pipeline import Pipeline, PipelineConfig  # noqa: E402
from edge_app.profiling.soak import run_soak  # noqa: E402
from edge_app.runtime import open_engine  # noqa: E402
from edge_app.video.base import ReconnectPolicy  # noqa: E402
from edge_app.video.jsonl import JsonlSink  # noqa: E402
from edge_app.video.sources import open_source  # noqa: E402


def _port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True)
    ap.add_argument("--mode", default="detect")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--size", default="1280x720")
    a = ap.parse_args()
    ffmpeg, server = shutil.which("ffmpeg"), shutil.which("rtsp-server-perl")
    if not (ffmpeg and server):
        print("needs ffmpeg and rtsp-server-perl: bash scripts/system-deps.sh", file=sys.stderr)
        return 2
    w, h = (int(v) for v in a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    clip = tmp / "loop.mp4"
    short = tmp / "short.mp4"
    for path, secs in ((clip, 20), (short, 30)):
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30", "-t", str(secs)]
            + ["-c:v", "libx264", "-g", "15", "-tune", "zerolatency", "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )
    cport, sport, rport = _port(), _port(), _port(socket.SOCK_DGRAM)
    procs: list[subprocess.Popen] = []
    procs.append(
        subprocess.Popen(
            [server, "--clientport", str(cport), "--serverport", str(sport), "--rtp_start_port", str(rport)]
            + ["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1", "--loglevel", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    _wait_port(sport)
    _wait_port(cport)
    publish = [ffmpeg, "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "rtsp"]
    publish.append(f"rtsp://127.0.0.1:{sport}/live")
    pub = subprocess.Popen(publish)
    time.sleep(2.0)
    policy = ReconnectPolicy(open_attempts=20, initial_delay_s=0.25, max_delay_s=2.0, read_timeout_s=2.0)
    sources = [
        open_source("synthetic?seed=1&objects=6", width=w, height=h),
        open_source("synthetic?seed=2&objects=6", width=w, height=h),
        open_source(f"rtsp://127.0.0.1:{cport}/live", reconnect=policy),
        open_source(str(short), pace=True),  # a file played at its own rate that ends after 30 s
    ]
    duration = a.minutes * 60.0
    cuts = [duration * 0.3, duration * 0.6]

    def cutter() -> None:
        nonlocal pub
        t0 = time.monotonic()
        for at in cuts:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            pub.terminate()
            pub.wait(10)
            print(f"[{time.monotonic() - t0:6.0f} s] RTSP publisher stopped", flush=True)
            time.sleep(15)
            pub = subprocess.Popen(publish)
            print(f"[{time.monotonic() - t0:6.0f} s] RTSP publisher restarted", flush=True)

    threading.Thread(target=cutter, daemon=True).start()
    with open_engine(a.engine, use="throughput") as eng:
        print(f"engine: {eng.description}; sources: {', '.join(repr(s) for s in sources)}", flush=True)
        lab = make_labeller(eng, a.mode)
        p = Pipeline(lab, sources, [JsonlSink(tmp / "soak.jsonl")], PipelineConfig(batch=4, duration=duration))
        rep = run_soak(p, every_s=a.every, warmup_s=a.warmup, on_sample=lambda s: print(s, flush=True))
    pub.terminate()
    for pr in procs:
        pr.terminate()
    print("\n".join(rep.lines()))
    print(f"outputs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
