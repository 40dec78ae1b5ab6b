"""ONNX Runtime backend: CPU, or the CUDA / TensorRT execution providers when onnxruntime-gpu is installed."""

from __future__ import annotations

import os

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.runtime.base import Engine

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


def gpu_provider_options(provider: str, engine_dir: EngineDir) -> dict[str, str]:
    """Provider options: the TensorRT provider caches its engines under plans/ort-trt (a build takes minutes)."""
    if provider != "TensorrtExecutionProvider":
        return {}
    cache = str(engine_dir.plans_dir / "ort-trt")
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache}


class OnnxRuntimeEngine(Engine):
    """Runs one of the engine folder's ONNX files in an InferenceSession."""

    backend = "onnxruntime"

    def __init__(self, engine_dir: EngineDir, meta: EngineMeta, precision: str = "fp32",
                 provider: str = "CPUExecutionProvider", threads: int | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            raise UserError(f"ONNX Runtime provider '{provider}' is not available here (have: {', '.join(ort.get_available_providers())}); "
                            "install onnxruntime-gpu for CUDA/TensorRT providers")
        path = engine_dir.onnx_path(precision, onnx_target(provider))
        if not path.is_file():
            raise UserError(f"'{path}' does not exist; run `python run.py calibrate {engine_dir.path}` to make the {precision} models")
        device = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda-trt"}.get(provider, provider)
        super().__init__(engine_dir, meta, precision, device)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or os.cpu_count() or 1
        so.log_severity_level = 3
        # Worker threads spin after each call for lower latency; that steals the cores from whatever runs
        # next, so benchmarks that interleave backends turn it off (``spinning=False``).
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers: list = [(provider, gpu_provider_options(provider, engine_dir))]
        providers += ["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else []
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.model_file = path.name
        self._in = self.session.get_inputs()[0].name
        self._out = self.session.get_outputs()[0].name

    def _infer(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self._out], {self._in: images})[0]

    def _close(self) -> None:
        self.session = None  # type: ignore[assignment]
