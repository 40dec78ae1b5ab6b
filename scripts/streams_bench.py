"""Streams per machine, NVIDIA KPI-table style: N live sources in one batched loop vs N separate `live` processes
(the jetson-inference way), stepping N until each way no longer holds the sources' rate with 0 drops, then one
source stalled for 5 s among the most streams the batched loop held.

    python scripts/streams_bench.py --engine engines/demo-det --mode detect --backend openvino --precision int8

Prints a Markdown table (README's multi-camera section) and, with --json, writes every number there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.errors import UserError  # noqa: E402
from edge_app.profiling.streams import run_streams_bench  # noqa: E402
from edge_app.profiling.streams_results import WAYS, StreamsConfig, format_report, format_row  # noqa: E402


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{s}' is not WIDTHxHEIGHT; e.g. 1280x720") from None
    return w, h


def _steps(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"steps '{s}' are not comma-separated stream counts; e.g. 1,2,3,4,6,8"
        ) from None


def main() -> int:
    d = StreamsConfig("")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo-det")
    ap.add_argument("--mode", default=d.mode, help=f"labelling mode (default {d.mode})")
    ap.add_argument("--backend", default=d.backend)
    ap.add_argument("--precision", default=d.precision)
    ap.add_argument("--source", default=d.source, help="every stream's URI; synthetic gets seed=1..N (default)")
    ap.add_argument("--size", type=_size, default=(d.width, d.height), help="WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--fps", type=float, default=d.fps, help=f"the sources' rate (default {d.fps:g})")
    ap.add_argument("--seconds", type=float, default=d.seconds, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=d.warmup, help="seconds after every stream's first frame")
    ap.add_argument(
        "--steps", type=_steps, default=d.steps, help="stream counts to try, rising (default 1,2,3,4,6,8,12,16)"
    )
    ap.add_argument("--ways", default=",".join(WAYS), help="batched, processes or both (default)")
    ap.add_argument("--stall", type=float, default=d.stall_s, help="seconds the stalled source delivers nothing")
    ap.add_argument("--no-stall", action="store_true", help="skip the stalled-source check")
    ap.add_argument("--json", default=None, metavar="OUT.json", help="write the report here too")
    a = ap.parse_args()
    try:
        cfg = StreamsConfig(
            a.engine, a.mode, a.backend, a.precision, a.source, a.size[0], a.size[1], a.fps,
            a.seconds, a.warmup, a.steps, stall_s=a.stall,
        )  # fmt: skip
        rep = run_streams_bench(
            cfg,
            tuple(w for w in a.ways.split(",") if w),
            stall=not a.no_stall,
            on_row=lambda r: print(format_row(r), flush=True),
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print("\n".join(format_report(rep)))
    if a.json:
        Path(a.json).write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
