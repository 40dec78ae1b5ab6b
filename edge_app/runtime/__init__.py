"""Backends behind one interface, and ``open_engine`` which picks the fastest one available and says why.

Preference (auto): native TensorRT on an NVIDIA GPU, then ONNX Runtime on the GPU, then ONNX Runtime on
the CPU (INT8 u8s8 model when it exists), then PyTorch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_app.engine_dir import PRECISIONS, EngineDir
from edge_app.errors import UserError
from edge_app.runtime.base import Engine

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


def _have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _no_gpu_reason() -> str:
    """Why there is certainly no usable NVIDIA GPU; '' when there is one or cuda-python is not there to tell."""
    from edge_app.runtime.cuda_buffers import probe_gpu

    device, why = probe_gpu()
    return "" if device is not None or "not installed" in why else why


def _cpu_precision(ed: EngineDir, precision: str) -> tuple[str, str]:
    """Precision for a CPU backend given the request; int8 (u8s8) is ~2.7x faster there when it exists."""
    if precision != "auto":
        return precision, "asked for"
    if ed.onnx_path("int8", "cpu").is_file():
        return "int8", "model.int8.cpu.onnx exists (u8s8, the fast CPU form)"
    return "fp32", "no INT8 model yet (run `calibrate` to make one)"


def open_engine(path: str | Path, backend: str = "auto", precision: str = "auto", device: str = "auto",
                threads: int | None = None, no_build: bool = False, spinning: bool = True) -> Engine:
    """Open ``engines/<name>`` with ``backend`` at ``precision``; the engine's ``choice`` says what and why.

    ``no_build``: with TensorRT, a missing plan is an error instead of a (minutes-long, once) build.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; choose auto or one of {', '.join(PRECISIONS)}")
    ed = EngineDir(path)
    meta = ed.load_meta()
    reasons: list[str] = []

    if backend == "tensorrt" or (backend == "auto" and device in ("auto", "cuda")):
        try:
            from edge_app.runtime import tensorrt as trt_backend
        except ImportError:
            trt_backend = None  # type: ignore[assignment]
        if trt_backend is not None and hasattr(trt_backend, "open_tensorrt"):
            ok, why = trt_backend.available()
            if ok:
                eng = trt_backend.open_tensorrt(ed, meta, precision, no_build=no_build)
                eng.choice = f"tensorrt: {why}"  # type: ignore[attr-defined]
                return eng
            reasons.append(f"TensorRT not used: {why}")
            if backend == "tensorrt":
                raise UserError(f"--backend tensorrt is not available here: {why}; use --backend auto to fall back to ONNX Runtime")
        elif backend == "tensorrt":
            raise UserError("--backend tensorrt is not available in this build; use --backend onnxruntime")

    if backend in ("auto", "onnxruntime") and _have_onnxruntime():
        from edge_app.runtime.onnxruntime import GPU_PROVIDERS, OnnxRuntimeEngine, available_providers

        provs = available_providers()
        gpu = [p for p in GPU_PROVIDERS if p in provs and device in ("auto", "cuda")]
        no_gpu = _no_gpu_reason() if gpu else ""
        if no_gpu:
            # onnxruntime-gpu lists its GPU providers even on a machine without a GPU; they would fall back to the CPU.
            reasons.append(f"onnxruntime GPU providers not used: {no_gpu}")
            gpu = []
        if gpu:
            prec = precision if precision != "auto" else ("int8" if ed.onnx_path("int8", "trt").is_file() and gpu[0] == "TensorrtExecutionProvider"
                                                          else "fp16" if ed.onnx_path("fp16").is_file() else "fp32")
            eng = OnnxRuntimeEngine(ed, meta, prec, gpu[0], threads, spinning)
            eng.choice = f"onnxruntime {gpu[0]}: GPU provider available; " + "; ".join(reasons)  # type: ignore[attr-defined]
            return eng
        if device == "cuda":
            raise UserError("--device cuda: onnxruntime has no GPU provider here; install onnxruntime-gpu or use --device cpu")
        prec, why = _cpu_precision(ed, precision)
        if prec == "fp16":
            raise UserError("fp16 on the CPU is not supported by ONNX Runtime's CPU provider at useful speed; use --precision fp32 or int8")
        eng = OnnxRuntimeEngine(ed, meta, prec, "CPUExecutionProvider", threads, spinning)
        reasons.append("no GPU provider in onnxruntime" if not gpu else "")
        eng.choice = f"onnxruntime CPU {prec}: {why}; " + "; ".join(r for r in reasons if r)  # type: ignore[attr-defined]
        return eng
    if backend == "onnxruntime":
        raise UserError("--backend onnxruntime: onnxruntime is not installed; `pip install onnxruntime` (or onnxruntime-gpu)")

    from edge_app.runtime.torch import TorchEngine

    prec = "fp32" if precision == "auto" else precision
    eng = TorchEngine(ed, meta, prec, device)
    eng.choice = "torch: " + ("asked for" if backend == "torch" else "onnxruntime not installed")  # type: ignore[attr-defined]
    return eng


__all__ = ["Engine", "open_engine", "BACKENDS"]
