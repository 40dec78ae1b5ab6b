"""``run.py bench``: latency and throughput of every backend x precision of an engine, interleaved in one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_app.cli.common import loop_flags
from edge_app.errors import FieldError, UserError

HELP = "latency and throughput of every backend x precision of an engine, interleaved in one run"

# BenchConfig field -> the flag that sets it (the library names fields; the user reads flags).
BENCH_FLAGS = {
    "warmup": "--warmup",
    "duration": "--duration",
    "iterations": "--iterations",
    "batches": "--batch",
    "slice_s": "--slice",
    "backends": "--backends",
    "precisions": "--precisions",
    "threads": "--threads",
    "dla_core": "--dla",
}


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `bench` (added to ``p``, the sub-command's parser, or to a new one)."""
    from edge_app.profiling.bench import BenchConfig
    from edge_app.runtime import backend_names

    p = p or argparse.ArgumentParser(prog="run.py bench", description=HELP)
    d = BenchConfig()
    p.add_argument("engine", help="engine folder, e.g. engines/demo")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1), e.g. 1,8,32")
    p.add_argument(
        "--warmup",
        type=float,
        default=d.warmup,
        help=f"warm-up seconds per variant and batch, not measured (default {d.warmup})",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        help=f"measured seconds per variant and batch (default {d.duration})",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=d.iterations,
        help=f"measured calls (frames with --pipeline) per variant at least; the longer of this and --duration wins (default {d.iterations})",
    )
    # --backend/--precision as live and annotate spell them: bench takes a list, and one backend is a list too.
    p.add_argument(
        "--backends",
        "--backend",
        dest="backends",
        default=None,
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(backend_names())} (default, or auto: every installed one)",
    )
    p.add_argument(
        "--precisions",
        "--precision",
        dest="precisions",
        default=None,
        metavar="NAMES",
        help="comma-separated subset of fp32,fp16,int8 (default, or auto: every one with a model file)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: every device present)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for ONNX Runtime, OpenVINO and PyTorch (default: one per core)",
    )
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="TensorRT on Jetson: run on DLA core N (a plan built with build --dla N)",
    )
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each call as a CUDA graph")
    p.add_argument("--no-build", action="store_true", help="TensorRT: fail instead of building a missing plan")
    p.add_argument(
        "--slice",
        type=float,
        default=d.slice_s,
        help=f"seconds one variant runs before the next takes its turn (default {d.slice_s})",
    )
    p.add_argument(
        "--pipeline",
        default=None,
        metavar="SOURCE",
        help="time the whole frame loop on this video source (and each of its stages alone) instead of the model alone",
    )
    from edge_app.frames.labellers import mode_names

    p.add_argument(
        "--mode",
        default="classify",
        choices=mode_names(),
        help="with --pipeline: the labelling mode the loop runs, with its default settings (default classify)",
    )
    p.add_argument(
        "--streams",
        default=None,
        metavar="N|auto",
        help="with --pipeline: N copies of the live SOURCE (synthetic gets seeds 1..N; 1280x720 at 30 fps) in one "
        "batched loop beside N separate `live` processes, each run --warmup s then --duration s measured (10 s is "
        "a fair window); auto steps N = 1,2,3,4,6,8,12,16,24,32 until each way drops a frame or falls under 95%% of "
        "the rate, then stalls one source for 5 s; one --backend and one --precision",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/bench/<engine name>)")
    return p


def main(a: argparse.Namespace) -> int:
    """Run `bench`; returns the exit code."""
    from edge_app.engine_dir import PRECISIONS
    from edge_app.profiling.bench import BenchConfig, parse_batches, parse_list
    from edge_app.runtime import backend_names

    try:
        cfg = BenchConfig(
            warmup=a.warmup,
            duration=a.duration,
            iterations=a.iterations,
            batches=parse_batches(a.batch),
            slice_s=a.slice,
            backends=parse_list(_all_if_auto(a.backends), backend_names(), "backends"),
            precisions=parse_list(_all_if_auto(a.precisions), PRECISIONS, "precisions"),
            device=a.device,
            threads=a.threads,
            dla_core=a.dla,
            cuda_graphs=a.cuda_graph,
            no_build=a.no_build,
        )
    except FieldError as e:
        raise e.reworded(BENCH_FLAGS) from None
    try:
        return _run(a, cfg)
    except FieldError as e:  # the library names the backends / batches it refuses; the user typed flags
        raise e.reworded(BENCH_FLAGS) from None


def _run(a: argparse.Namespace, cfg: Any) -> int:
    out = Path(a.out) if a.out else Path("runs/bench") / Path(a.engine).name
    if a.streams is not None:
        return _run_streams(a, cfg, out)
    if a.pipeline:
        from edge_app.profiling.bench_pipeline import print_pipeline_report, run_pipeline_bench

        with loop_flags():
            report = run_pipeline_bench(a.engine, a.pipeline, cfg, out, mode=a.mode)
        print_pipeline_report(report)
    else:
        if a.mode != "classify":
            raise UserError(f"--mode {a.mode} applies to the frame loop; add --pipeline SOURCE to time it")
        from edge_app.profiling.bench import print_report, run_bench

        print_report(run_bench(a.engine, cfg, out))
    return 0


def _all_if_auto(text: str | None) -> str | None:
    """``auto`` (live's and annotate's default spelling) means every one here: None."""
    return None if text is None or text.strip() == "auto" else text


def _run_streams(a: argparse.Namespace, cfg: Any, out: Path) -> int:
    """``--pipeline SOURCE --streams N|auto``: the streams table (edge_app.profiling.streams)."""
    import json

    from edge_app.profiling.streams import run_streams_bench
    from edge_app.profiling.streams_results import StreamsConfig, format_report, format_row

    if not a.pipeline:
        raise UserError("--streams needs a live source to copy; add --pipeline synthetic")
    picked = {}
    for flag, values in (("--backend", cfg.backends), ("--precision", cfg.precisions)):
        if values is not None and len(values) != 1:
            raise UserError(
                f"--streams measures one {flag[2:]}, not {','.join(values)}; pass one, e.g. {flag} {values[0]}"
            )
        picked[flag] = values[0] if values else "auto"
    if a.streams.strip() == "auto":
        steps: tuple[int, ...] = StreamsConfig("").steps
    elif a.streams.strip().isdigit() and int(a.streams) >= 1:
        steps = (int(a.streams),)
    else:
        raise UserError(f"--streams {a.streams} is not a stream count; pass a whole number such as 4, or auto")
    try:
        scfg = StreamsConfig(
            a.engine, a.mode, picked["--backend"], picked["--precision"], a.pipeline,
            seconds=a.duration, warmup=a.warmup, steps=steps,
        )  # fmt: skip
    except FieldError as e:
        raise e.reworded({"seconds": "--duration", "warmup": "--warmup", "steps": "--streams"}) from None
    # One measured run per N and way; the stalled-source check needs 2 streams and a window of 5 s + 2 s.
    stall = steps[-1] >= 2 and scfg.seconds >= scfg.stall_s + 2
    with loop_flags():
        rep = run_streams_bench(scfg, stall=stall, on_row=lambda r: print(format_row(r), flush=True))
    print("\n".join(format_report(rep)))
    if not stall:
        print(f"stalled-source check skipped: it needs 2 or more streams and --duration {scfg.stall_s + 2:g} or more")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "streams.json"
    path.write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
    print(f"wrote {path}")
    return 0
