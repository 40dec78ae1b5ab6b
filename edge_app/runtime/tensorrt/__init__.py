"""Native TensorRT backend: find or build the plan for this machine, then run it with cuda-python.

The package holds one job per module: ``support`` (what TensorRT runs where: version, GPU, precision and DLA
rules, :class:`Machine`), ``builder`` (the build chain ONNX -> network -> config -> serialized plan),
``plans`` (plan keys, paths, selection, measured precision choice, timing-cache paths), ``layers`` (the
engine inspector's layer information, counted), ``runner`` (:class:`TensorRTEngine`), ``loader`` (build or
load on this machine) and ``onnx_rules`` (the ONNX parser's rules, checked without TensorRT). This file is
the backend's descriptor and the names the rest of the tool imports.
"""

from __future__ import annotations

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.runtime.cuda import CUDA_PYTHON_FIX
from edge_app.runtime.registry import Backend, Host, OpenOptions, Variant
from edge_app.runtime.tensorrt.builder import BatchRange, BuildError, BuildSpec
from edge_app.runtime.tensorrt.layers import format_build
from edge_app.runtime.tensorrt.loader import build, open_tensorrt
from edge_app.runtime.tensorrt.plans import DEFAULT_BATCH, DEFAULT_DLA_BATCH
from edge_app.runtime.tensorrt.runner import PlanError, TensorRTEngine
from edge_app.runtime.tensorrt.support import TRT_FIX, Machine, available


def _available(device: str) -> tuple[bool, str]:
    return available() if device == "cuda" else (False, "TensorRT runs on NVIDIA GPUs only")


def _open(ed: EngineDir, meta: EngineMeta, opts: OpenOptions) -> TensorRTEngine:
    eng = open_tensorrt(
        ed,
        meta,
        opts.precision,
        batch=opts.batch,
        dla_core=opts.dla_core,
        no_build=opts.no_build,
        cuda_graphs=opts.cuda_graphs,
        use=opts.use,
        # Jetson zero-copy stays opt-in until measured on a board; the field arrives with the registry's options.
        mapped_memory=opts.mapped_memory,
    )
    eng.choice = f"{eng.choice}: {available()[1]}"
    return eng


def _variants(ed: EngineDir, device: str) -> list[Variant]:
    hint = "run `python run.py calibrate` to make it"
    return [
        Variant("trt-fp32", "tensorrt", "fp32", "cuda", ed.onnx_path("fp32").name, "fp32"),
        Variant("trt-fp16", "tensorrt", "fp16", "cuda", ed.onnx_path("fp16").name, "fp16", hint),
        Variant("trt-int8", "tensorrt", "int8", "cuda", ed.onnx_path("int8", "trt").name, "int8.trt", hint),
    ]


def _fix(device: str, why: str, host: Host) -> str:
    """Only what is missing here: the GPU/driver, cuda-python, TensorRT itself, or a newer one (JetPack on Jetson)."""
    if device != "cuda":
        return "TensorRT runs on NVIDIA GPUs only; use backend onnxruntime or openvino on the CPU"
    if "cuda-python is not installed" in why:
        return CUDA_PYTHON_FIX
    if "too old" in why:
        return "upgrade to JetPack 6.1 or later (TensorRT 10.3)" if host.jetson else "pip install 'tensorrt>=10,<12'"
    if "not installed" in why or "do not load" in why:
        return (
            "sudo apt install python3-libnvinfer (TensorRT comes with JetPack)"
            if host.jetson
            else "pip install tensorrt (it downloads from NVIDIA's package index)"
        )
    if "compute capability" in why and ";" in why:
        return why.split(";", 1)[1].strip()  # the version rule already names the TensorRT that runs this GPU
    return "check the NVIDIA driver with nvidia-smi, or use backend onnxruntime on the CPU"


BACKEND = Backend(
    name="tensorrt",
    devices=("cuda",),
    priority=10,
    install_hint=TRT_FIX,
    available=_available,
    open=_open,
    variants=_variants,
    # PyPI names of the full TensorRT and of the bare bindings; JetPack's apt package has no pip metadata.
    versions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"),
    threads=None,  # a GPU runtime: no CPU thread setting
    notes=(
        "TensorRT: one plan per precision, built for this GPU and TensorRT version before timing; "
        "h2d / compute / d2h are CUDA-event times, latency is the wall clock around infer().",
    ),
    fix_hint=_fix,
)


__all__ = [
    "BACKEND",
    "DEFAULT_BATCH",
    "DEFAULT_DLA_BATCH",
    "BatchRange",
    "BuildError",
    "BuildSpec",
    "Machine",
    "PlanError",
    "TensorRTEngine",
    "available",
    "build",
    "format_build",
    "open_tensorrt",
]
