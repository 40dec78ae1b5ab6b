"""ONNX Runtime backend: CPU, or the CUDA / TensorRT execution providers when onnxruntime-gpu is installed."""

from __future__ import annotations

import os

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.runtime.base import Engine
from edge_app.runtime.cuda import gpu_absent_reason
from edge_app.runtime.registry import Backend, Host, OpenOptions, Variant, cpu_threads

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def available_providers() -> list[str]:
    """Execution providers of the installed onnxruntime ([] when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def onnx_target(provider: str) -> str:
    """Which int8 model a provider wants: TensorRT takes symmetric s8s8 Q/DQ, everything else u8s8."""
    return "trt" if provider == "TensorrtExecutionProvider" else "cpu"


def gpu_provider_options(provider: str, engine_dir: EngineDir, precision: str = "fp32") -> dict[str, str]:
    """Provider options: the TensorRT provider caches its engines under plans/ort-trt (a build takes minutes) and
    is told the precision of the model file it runs.

    ONNX Runtime's TensorRT provider builds weakly typed networks: without ``trt_fp16_enable`` it runs the
    FP16 model's layers in FP32, and without ``trt_int8_enable`` it ignores the Q/DQ model's INT8 (ORT's
    TensorRT-ExecutionProvider docs: INT8 mode is ``trt_int8_enable``; a calibration table "should not be
    provided for QDQ model because TensorRT doesn't allow calibration table to be loaded if there is any Q/DQ
    node in the model", so none is given). Only the precision the file states is enabled.
    """
    if provider != "TensorrtExecutionProvider":
        return {}
    cache = str(engine_dir.plans_dir / "ort-trt")
    opts = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
    }
    if precision == "fp16":
        opts["trt_fp16_enable"] = "True"
    elif precision == "int8":
        opts["trt_int8_enable"] = "True"
    return opts


class OnnxRuntimeEngine(Engine):
    """Runs one of the engine folder's ONNX files in an InferenceSession."""

    backend = "onnxruntime"

    def __init__(
        self,
        engine_dir: EngineDir,
        meta: EngineMeta,
        precision: str = "fp32",
        provider: str = "CPUExecutionProvider",
        threads: int | None = None,
        spinning: bool = True,
        optimize: bool = True,
    ) -> None:
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            raise UserError(
                f"ONNX Runtime provider '{provider}' is not available here (have: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu for CUDA/TensorRT providers"
            )
        path = engine_dir.onnx_path(precision, onnx_target(provider))
        if not path.is_file():
            raise UserError(
                f"'{path}' does not exist; run `python run.py calibrate {engine_dir.path}` to make the {precision} models"
            )
        device = {
            "CPUExecutionProvider": "cpu",
            "CUDAExecutionProvider": "cuda",
            "TensorrtExecutionProvider": "cuda-trt",
        }.get(provider, provider)
        super().__init__(engine_dir, meta, precision, device)
        so = ort.SessionOptions()
        # optimize=False: run the graph as written. ONNX Runtime's CPU fusions rewrite Q/DQ on an FP16 graph
        # (TensorRT's INT8 form) into other numerics (top-1 agreement 0.77 vs 0.94 unfused on a ResNet-18):
        # measuring that file is only faithful to what TensorRT runs without them.
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        so.intra_op_num_threads = threads or os.cpu_count() or 1
        so.log_severity_level = 3
        # Worker threads spin after each call for lower latency; that steals the cores from whatever runs
        # next, so benchmarks that interleave backends turn it off (``spinning=False``).
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers: list = [(provider, gpu_provider_options(provider, engine_dir, precision))]
        providers += ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.model_file = path.name
        self._in = self.session.get_inputs()[0].name
        self._outs = [o.name for o in self.session.get_outputs()]

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._outs, self.session.run(self._outs, {self._in: images})))

    def _close(self) -> None:
        self.session = None  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------ descriptor
def _available(device: str) -> tuple[bool, str]:
    provs = available_providers()
    if not provs:
        return False, "onnxruntime is not installed"
    if device == "cpu":
        return True, "CPUExecutionProvider"
    gpu = [p for p in GPU_PROVIDERS if p in provs]
    if not gpu:
        return False, "no GPU execution provider (this onnxruntime is the CPU build)"
    # onnxruntime-gpu lists its GPU providers even on a machine without a GPU; they would fall back to the CPU.
    absent = gpu_absent_reason()
    return (False, absent.split(";")[0]) if absent else (True, gpu[0])


def _cpu_precision(ed: EngineDir, precision: str) -> tuple[str, str]:
    """Precision for the CPU given the request; int8 (u8s8) is ~2.7x faster there when it exists."""
    if precision != "auto":
        return precision, "asked for"
    if ed.onnx_path("int8", "cpu").is_file():
        return "int8", "model.int8.cpu.onnx exists (u8s8, the fast CPU form)"
    return "fp32", "no INT8 model yet (run `calibrate` to make one)"


def _open(ed: EngineDir, meta: EngineMeta, opts: OpenOptions) -> OnnxRuntimeEngine:
    if opts.device == "cuda":
        provider = _available("cuda")[1]
        if opts.precision != "auto":
            prec, why = opts.precision, "asked for"
        elif ed.onnx_path("int8", "trt").is_file() and provider == "TensorrtExecutionProvider":
            prec, why = "int8", "model.int8.trt.onnx exists"
        elif ed.onnx_path("fp16").is_file():
            prec, why = "fp16", "model.fp16.onnx exists"
        else:
            prec, why = "fp32", "no fp16/int8 model yet (run `calibrate` to make them)"
        eng = OnnxRuntimeEngine(ed, meta, prec, provider, opts.threads, opts.spinning)
        eng.choice = f"onnxruntime {provider} {prec}: {why}"
        return eng
    prec, why = _cpu_precision(ed, opts.precision)
    if prec == "fp16":
        raise UserError(
            "fp16 on the CPU is not supported by ONNX Runtime's CPU provider at useful speed; use precision fp32 or int8"
        )
    eng = OnnxRuntimeEngine(ed, meta, prec, "CPUExecutionProvider", opts.threads, opts.spinning)
    eng.choice = f"onnxruntime CPU {prec}: {why}"
    return eng


def _variants(ed: EngineDir, device: str) -> list[Variant]:
    if device == "cpu":
        return [
            Variant("ort-fp32", "onnxruntime", "fp32", "cpu", ed.onnx_path("fp32").name, "fp32"),
            Variant(
                "ort-int8-cpu",
                "onnxruntime",
                "int8",
                "cpu",
                ed.onnx_path("int8", "cpu").name,
                "int8.cpu",
                "run `python run.py calibrate` to make it",
            ),
        ]
    return [
        Variant("ort-gpu-fp32", "onnxruntime", "fp32", "cuda", ed.onnx_path("fp32").name, "fp32"),
        Variant(
            "ort-gpu-fp16",
            "onnxruntime",
            "fp16",
            "cuda",
            ed.onnx_path("fp16").name,
            "fp16",
            "run `python run.py calibrate` to make it",
        ),
    ]


def _fix(device: str, why: str, host: Host) -> str:
    """Only what is missing: the CPU build when nothing is installed, the GPU build in its place when the CPU
    build is; on a Jetson, TensorRT instead (pip has no onnxruntime GPU build for Jetson)."""
    installed = bool(available_providers())
    if device == "cpu":
        return "pip install onnxruntime" if not installed else "pip install --force-reinstall onnxruntime"
    if host.jetson:
        return (
            "pip has no ONNX Runtime GPU build for Jetson; on the GPU use backend tensorrt "
            "(TensorRT comes with JetPack: sudo apt install python3-libnvinfer)"
        )
    if not installed:
        return "pip install onnxruntime-gpu"
    if not any(p in available_providers() for p in GPU_PROVIDERS):
        # Both wheels install the same `onnxruntime` module: the CPU one must go, or it shadows the GPU one.
        return "pip uninstall onnxruntime && pip install onnxruntime-gpu"
    return "check the NVIDIA driver with nvidia-smi (onnxruntime-gpu is installed)"


BACKEND = Backend(
    name="onnxruntime",
    devices=("cuda", "cpu"),
    priority=30,
    install_hint="pip install onnxruntime (CPU) or onnxruntime-gpu (NVIDIA)",
    available=_available,
    open=_open,
    variants=_variants,
    versions=("onnxruntime", "onnxruntime-gpu"),
    threads=cpu_threads,  # SessionOptions.intra_op_num_threads (see OnnxRuntimeEngine)
    fix_hint=_fix,
)
