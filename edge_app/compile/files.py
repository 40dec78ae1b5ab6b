"""The four model files of an engine folder, and opening any of them on ONNX Runtime's CPU to measure it.

Calibration's accuracy report and the held-out evaluation measure every file on the CPU, the GPU forms
included (the s8s8 TensorRT file and the FP16 file run slowly there, with the numerics a GPU approximates).
"""

from __future__ import annotations

from pathlib import Path

from edge_app.engine_dir import ACCURACY_KEYS, EngineDir, EngineMeta
from edge_app.runtime import open_engine
from edge_app.runtime.base import Engine

# meta.json's accuracy row -> (precision, target) of its file, in report order.
MODEL_FILES: dict[str, tuple[str, str]] = dict(
    zip(ACCURACY_KEYS, (("fp32", "any"), ("fp16", "any"), ("int8", "trt"), ("int8", "cpu")))
)


class _OneFile(EngineDir):
    """The engine folder seen through one of its files: every ONNX path is that file."""

    def __init__(self, ed: EngineDir, file: Path) -> None:
        super().__init__(ed.path)
        self._file = file

    def onnx_path(self, precision: str = "fp32", target: str = "any") -> Path:
        return self._file


def model_file(ed: EngineDir, key: str) -> Path:
    """The file of accuracy row ``key`` (one of :data:`MODEL_FILES`)."""
    return ed.onnx_path(*MODEL_FILES[key])


def open_model_file(
    ed: EngineDir, meta: EngineMeta, key: str, threads: int | None = None, spinning: bool = True
) -> Engine:
    """The file of accuracy row ``key`` as an engine on ONNX Runtime's CPU.

    fp32 and the u8s8 INT8 file open through :func:`edge_app.runtime.open_engine`. It refuses FP16 on the CPU
    (too slow to serve) and picks the INT8 form by provider, so the two GPU forms are opened with the same
    ONNX Runtime engine class over that one file, to measure their numerics.
    """
    prec, target = MODEL_FILES[key]
    if target != "trt" and prec != "fp16":
        return open_engine(ed.path, "onnxruntime", prec, "cpu", threads=threads, spinning=spinning)
    from edge_app.runtime.onnxruntime import OnnxRuntimeEngine

    # The TensorRT form is measured unfused: ONNX Runtime's CPU fusions would change its numerics.
    return OnnxRuntimeEngine(
        _OneFile(ed, model_file(ed, key)), meta, prec, threads=threads, spinning=spinning, optimize=target != "trt"
    )
