"""OpenVINO backend: the engine folder's own ONNX files on x86/ARM CPUs (INT8 Q/DQ included).

Measured on our 2-core Xeon (ResNet-18 224, batch 1, 2 threads, interleaved with ONNX Runtime): the u8s8
INT8 file runs in 4.17 ms here against 6.47 ms in ONNX Runtime, fp32 is on par. So on a CPU the automatic
choice tries this backend before ONNX Runtime (priority 20 < 30). No conversion step and no extra files:
OpenVINO reads ``model*.onnx`` directly and keeps the batch dimension dynamic.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Backend, Host, OpenOptions, Variant, cpu_threads

PIN = "openvino==2026.4.1"  # the version measured and tested (requirements.txt)


class OpenVinoEngine(Engine):
    """Runs one of the engine folder's ONNX files on OpenVINO's CPU plugin.

    ``use='latency'`` compiles for one stream using every thread on each call (live video);
    ``use='throughput'`` lets OpenVINO pick several streams and splits each batch across them
    (annotate, bench), so a batch of 8 on 2 cores runs as two batches of 4 side by side.
    """

    backend = "openvino"
    use_sensitive = True

    def __init__(
        self,
        engine_dir: EngineDir,
        meta: EngineMeta,
        precision: str = "fp32",
        target: str = "cpu",
        threads: int | None = None,
        use: str = "latency",
    ) -> None:
        import openvino as ov

        path = engine_dir.onnx_path(precision, target)
        if not path.is_file():
            raise UserError(
                f"'{path}' does not exist; run `python run.py calibrate {engine_dir.path}` to make the {precision} models"
            )
        super().__init__(engine_dir, meta, precision, "cpu")
        core = ov.Core()
        model = core.read_model(str(path))
        if model.input(0).get_partial_shape()[0].is_static:  # our exports are dynamic; a fixed-batch file is not
            model.reshape({model.input(0): ov.PartialShape([-1, meta.input.height, meta.input.width, 3])})
        config: dict[str, object] = {
            "PERFORMANCE_HINT": use.upper(),
            "INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1,
        }
        if precision in ("fp32", "int8"):
            # On CPUs with AMX / AVX-512 BF16 OpenVINO runs float layers in bfloat16 by default (fp32 logits off
            # by ~1e-2 here). fp32 is the numerical reference, and int8 should match ONNX Runtime's int8 (its
            # accuracy row in meta.json), so float layers stay f32; the quantized convolutions run in INT8 anyway.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(model, "CPU", config)
        self.streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        # An output port can carry several tensor names after OpenVINO's fusions (a detector's `dets` came back as
        # '/post/Concat_24_output_0'): take the one meta.json declares, else any.
        wanted = set(meta.outputs)
        self._outs = [
            next((n for n in sorted(o.get_names()) if n in wanted), o.get_any_name()) for o in self.compiled.outputs
        ]
        self.model_file = path.name
        self.use = use

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if self.streams == 1 or len(images) == 1:
            res = self.requests[0].infer({0: images})
            return {n: res[i] for i, n in enumerate(self._outs)}
        chunks = np.array_split(images, min(self.streams, len(images)))
        used = self.requests[: len(chunks)]
        for req, chunk in zip(used, chunks):
            req.start_async({0: chunk})
        for req in used:
            req.wait()
        return {
            n: np.concatenate([req.get_output_tensor(i).data.copy() for req in used]) for i, n in enumerate(self._outs)
        }

    def _close(self) -> None:
        self.requests = []
        self.compiled = None  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------ descriptor
def _available(device: str) -> tuple[bool, str]:
    if device != "cpu":
        return False, "this backend runs on the CPU only"
    if importlib.util.find_spec("openvino") is None:
        return False, "openvino is not installed"
    try:
        import openvino as ov
    except Exception as e:  # noqa: BLE001 - a broken install is a reason, not a crash of doctor
        return False, f"openvino does not import ({type(e).__name__}: {e})"
    return True, f"OpenVINO {ov.get_version().split('-')[0]} CPU"


def _open(ed: EngineDir, meta: EngineMeta, opts: OpenOptions) -> OpenVinoEngine:
    prec, target, why = opts.precision, "cpu", "asked for"
    if prec == "auto":
        if ed.onnx_path("int8", "cpu").is_file():
            prec, why = "int8", "model.int8.cpu.onnx exists (u8s8 Q/DQ, OpenVINO's fastest CPU path)"
        else:
            prec, why = "fp32", "no INT8 model yet (run `calibrate` to make one)"
    elif prec == "int8" and not ed.onnx_path("int8", "cpu").is_file() and ed.onnx_path("int8", "trt").is_file():
        # OpenVINO runs the symmetric TensorRT-form file at INT8 speed too (4.87 vs 4.17 ms measured).
        target, why = "trt", "asked for; only the symmetric model.int8.trt.onnx exists"
    eng = OpenVinoEngine(ed, meta, prec, target, opts.threads, opts.use)
    eng.choice = f"openvino CPU {prec} ({opts.use}, {eng.streams} stream{'s' * (eng.streams > 1)}): {why}"
    return eng


def _variants(ed: EngineDir, device: str) -> list[Variant]:
    if device != "cpu":
        return []
    return [
        Variant("ov-fp32", "openvino", "fp32", "cpu", ed.onnx_path("fp32").name, "fp32"),
        Variant(
            "ov-int8",
            "openvino",
            "int8",
            "cpu",
            ed.onnx_path("int8", "cpu").name,
            "int8.cpu",
            "run `python run.py calibrate` to make it",
        ),
    ]


def _fix(device: str, why: str, host: Host) -> str:
    """The pinned wheel when it is missing; reinstalled when it is there but does not import."""
    if importlib.util.find_spec("openvino") is None:
        return f"pip install {PIN}"
    return f"pip install --force-reinstall {PIN}"


BACKEND = Backend(
    name="openvino",
    devices=("cpu",),
    priority=20,
    install_hint=f"pip install {PIN}",
    available=_available,
    open=_open,
    variants=_variants,
    versions=("openvino",),
    threads=cpu_threads,  # INFERENCE_NUM_THREADS (see OpenVinoEngine)
    # It compiles per use (Engine.use_sensitive), so bench times each batch as the command that runs it would.
    notes=(
        "OpenVINO runs batch 1 with its LATENCY hint (as `live`) and larger batches with THROUGHPUT (as `annotate`)",
    ),
    fix_hint=_fix,
)
