"""``run.py build``: a TensorRT plan for this GPU and TensorRT version, cached under engines/NAME/plans."""

from __future__ import annotations

import argparse

from edge_app.cli.common import positive_float
from edge_app.errors import UserError

HELP = "build a TensorRT plan for this GPU and TensorRT version (cached under engines/NAME/plans)"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `build` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py build", description=HELP)
    p.add_argument("engine", help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--precision",
        default="fp16",
        choices=("fp32", "fp16", "int8"),
        help="which ONNX to build from: model.onnx, model.fp16.onnx or model.int8.trt.onnx (default fp16)",
    )
    p.add_argument(
        "--batch",
        default=None,
        help="optimisation profile MIN:OPT:MAX batch sizes, or N for a fixed batch "
        "(default 1:8:32; with --dla: 1, as DLA runs fixed shapes only)",
    )
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="run on DLA core N with GPU fallback (Jetson Xavier/Orin); needs a fixed batch",
    )
    p.add_argument(
        "--workspace", type=positive_float, default=2.0, metavar="GiB", help="builder workspace limit (default 2)"
    )
    p.add_argument(
        "--opt-level",
        type=int,
        default=3,
        metavar="0-5",
        help="TensorRT builder optimisation level: higher tries more tactics and builds longer (default 3)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when a matching plan exists")
    return p


def main(a: argparse.Namespace) -> int:
    """Build (or find cached) the plan; returns the exit code."""
    from edge_app.engine_dir import EngineDir
    from edge_app.runtime.tensorrt import (
        DEFAULT_BATCH,
        DEFAULT_DLA_BATCH,
        BatchRange,
        BuildError,
        BuildSpec,
        build,
        format_build,
    )

    if a.batch is None and a.dla is not None:
        batch = BatchRange(DEFAULT_DLA_BATCH, DEFAULT_DLA_BATCH, DEFAULT_DLA_BATCH)
        print(
            f"--dla {a.dla}: DLA runs fixed shapes only, so the plan is for batch {DEFAULT_DLA_BATCH} (give --batch N for another size)"
        )
    else:
        batch = BatchRange.parse(a.batch) if a.batch is not None else DEFAULT_BATCH
    spec = BuildSpec(a.precision, batch, a.dla, a.workspace, a.opt_level)
    try:
        r = build(EngineDir(a.engine), spec, force=a.force, verbose=getattr(a, "verbose", False))
    except BuildError as e:
        raise UserError(str(e)) from None
    for line in format_build({**r, "plan": f"{a.engine}/{r['plan']}"}):
        print(line)
    return 0
