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
