"""CPU spent by N live sources alone (no loop behind them): what a multi-stream benchmark pays before inference.

    .venv/bin/python scripts/source_cpu_cost.py --streams 6                  # rendered synthetic 720p30
    .venv/bin/python scripts/source_cpu_cost.py --streams 6 --source 'synthetic?replay=30'

Each source is read on its own thread (as the frame loop's capture threads do); after ``--warmup`` s, prints each
stream's FPS and the process's CPU time over ``--seconds`` (100 % = one core). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.profiling.streams_results import stream_uri  # noqa: E402
from edge_app.video.sources import open_source  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="synthetic")
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--size", default="1280x720")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    sources = [open_source(stream_uri(a.source, i), width=w, height=h, fps=30) for i in range(a.streams)]
    counts = [0] * a.streams

    def read(i: int) -> None:
        for _ in sources[i]:
            counts[i] += 1

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(a.streams)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)  # first frames (replay renders its frames here), thread start-up
    c0, r0, t0 = list(counts), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    time.sleep(a.seconds)
    c1, r1, dt = list(counts), resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
    for s in sources:
        s.close()
    for t in threads:
        t.join(timeout=5)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / dt * 100
    fps = ", ".join(f"{(b - a_) / dt:.1f}" for a_, b in zip(c0, c1))
    print(f"{a.streams} x '{a.source}' {a.size}: FPS per stream {fps}; CPU {cpu:.0f} % (100 = one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
