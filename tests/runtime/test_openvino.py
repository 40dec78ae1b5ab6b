"""The OpenVINO backend: same numbers as ONNX Runtime on the same files, any batch, the automatic choice on a CPU."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_app.engine_dir import EngineDir
from edge_app.errors import UserError
from edge_app.runtime import backends, open_engine
from edge_app.runtime import openvino as ov_backend
from edge_app.runtime.cuda import gpu_absent_reason
from edge_app.runtime.registry import Host, get_backend

OV_OK, OV_WHY = ov_backend._available("cpu")
needs_ov = pytest.mark.skipif(not OV_OK, reason=f"{OV_WHY}; {ov_backend.PIN} runs these tests")


@pytest.fixture(scope="module")
def calibrated(tiny_calibrated: Path) -> Path:
    """The tiny engine with real INT8 files (minmax ranges from 24 training images)."""
    return tiny_calibrated


# ------------------------------------------------------------------------------------------------ descriptor
def test_descriptor_runs_before_onnxruntime_on_the_cpu_only() -> None:
    desc = get_backend("openvino")
    assert desc.devices == ("cpu",) and desc.priority < get_backend("onnxruntime").priority
    names = [b.name for b in backends() if "cpu" in b.devices]
    assert names.index("openvino") < names.index("onnxruntime")
    assert desc.available("cuda") == (False, "this backend runs on the CPU only")
    assert desc.install_hint == f"pip install {ov_backend.PIN}"
    # what reports read from the descriptor: its distribution, thread setting and how bench timed it
    assert desc.versions == ("openvino",) and desc.threads is not None and desc.threads(2) == 2
    assert any("LATENCY" in n and "THROUGHPUT" in n for n in desc.notes)


def test_without_openvino_it_says_so_and_how_to_install(monkeypatch: pytest.MonkeyPatch, tiny_engine: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert ov_backend._available("cpu") == (False, "openvino is not installed")
    # doctor's fix for this machine: the pinned wheel (a broken install gets --force-reinstall instead)
    assert get_backend("openvino").fix("cpu", "openvino is not installed", Host()) == f"pip install {ov_backend.PIN}"
    with pytest.raises(
        UserError,
        match=r"backend openvino is not available here \(openvino cpu not available: openvino is "
        r"not installed\); pip install openvino==\S+, or use backend auto",
    ):
        open_engine(tiny_engine, "openvino")
    with open_engine(tiny_engine, device="cpu") as eng:  # auto falls back to the next CPU backend, and says why
        assert eng.backend != "openvino" and "openvino cpu not available: openvino is not installed" in eng.choice


def test_variants_and_their_accuracy_rows(tiny_engine: Path) -> None:
    vs = get_backend("openvino").variants(EngineDir(tiny_engine), "cpu")
    assert [(v.key, v.precision, v.file, v.accuracy_key) for v in vs] == [
        ("ov-fp32", "fp32", "model.onnx", "fp32"),
        ("ov-int8", "int8", "model.int8.cpu.onnx", "int8.cpu"),
    ]
    assert get_backend("openvino").variants(EngineDir(tiny_engine), "cuda") == []


# ------------------------------------------------------------------------------------------------ numbers
@needs_ov
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("use", ["latency", "throughput"])
def test_fp32_agrees_with_onnxruntime(tiny_engine: Path, rng: np.random.Generator, batch: int, use: str) -> None:
    x = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    with (
        open_engine(tiny_engine, "onnxruntime", "fp32", "cpu") as ref,
        open_engine(tiny_engine, "openvino", "fp32", "cpu", threads=2, use=use) as eng,
    ):
        a, b = ref.infer(x)["logits"], eng.infer(x)["logits"]
        assert b.shape == (batch, eng.meta.num_classes) and b.dtype == np.float32
        np.testing.assert_allclose(b, a, atol=1e-3)  # fp32 stays fp32 (no silent bf16 on AMX CPUs)
        assert eng.backend == "openvino" and eng.device == "cpu" and eng.model_file == "model.onnx"
        assert eng.description == "openvino cpu fp32 (model.onnx)" and f"fp32 ({use}, " in eng.choice
        # The batch stays dynamic: another size after the first call, and back.
        assert eng.infer(x[:1])["logits"].shape == (1, eng.meta.num_classes)
        np.testing.assert_allclose(eng.infer(x)["logits"], b, atol=1e-5)


@needs_ov
@pytest.mark.parametrize("batch", [1, 3])
def test_int8_agrees_with_onnxruntime_int8(calibrated: Path, rng: np.random.Generator, batch: int) -> None:
    x = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    with (
        open_engine(calibrated, "onnxruntime", "int8", "cpu") as ref,
        open_engine(calibrated, "openvino", "int8", "cpu") as eng,
    ):
        a, b = ref.infer(x)["logits"], eng.infer(x)["logits"]
        assert eng.model_file == "model.int8.cpu.onnx" and eng.precision == "int8"
        # Both run the same Q/DQ graph; rounding inside fused INT8 kernels differs by a step or so
        # (measured here: ~3% of the largest logit, as far as ORT int8 is from fp32).
        scale = float(np.abs(a).max())
        assert np.abs(b - a).max() <= 0.1 * scale + 1e-3, (a, b)


@needs_ov
def test_int8_falls_back_to_the_symmetric_file(calibrated: Path, tmp_path: Path, rng: np.random.Generator) -> None:
    eng_dir = Path(shutil.copytree(calibrated, tmp_path / "trt_only"))
    (eng_dir / "model.int8.cpu.onnx").unlink()
    x = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with (
        open_engine(eng_dir, "openvino", "int8", "cpu") as eng,
        open_engine(eng_dir, "onnxruntime", "fp32", "cpu") as ref,
    ):
        assert eng.model_file == "model.int8.trt.onnx" and "only the symmetric model.int8.trt.onnx exists" in eng.choice
        a, b = ref.infer(x)["logits"], eng.infer(x)["logits"]
        assert np.abs(b - a).max() <= 0.15 * float(np.abs(a).max()) + 1e-3


# ------------------------------------------------------------------------------------------------ errors
@needs_ov
def test_bad_input_is_rejected_with_the_expected_shape(tiny_engine: Path) -> None:
    with open_engine(tiny_engine, "openvino", "fp32", "cpu") as eng:
        with pytest.raises(ValueError, match=r"expected a uint8 batch of shape \(N,32,32,3\), got float32"):
            eng.infer(np.zeros((1, 32, 32, 3), np.float32))
        with pytest.raises(ValueError, match=r"got uint8 \(2, 64, 64, 3\)"):
            eng.infer(np.zeros((2, 64, 64, 3), np.uint8))
        with pytest.raises(ValueError, match=r"got uint8 \(32, 32, 3\)"):
            eng.infer(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        eng.infer(np.zeros((1, 32, 32, 3), np.uint8))


@needs_ov
def test_missing_int8_file_says_how_to_make_it(tiny_engine: Path) -> None:
    with pytest.raises(UserError, match=r"model.int8.cpu.onnx' does not exist; run `python run.py calibrate"):
        open_engine(tiny_engine, "openvino", "int8", "cpu")
    with pytest.raises(
        UserError, match=r"backend openvino runs on cpu only, not on device cuda; choose device cpu or another backend"
    ):
        open_engine(tiny_engine, "openvino", device="cuda")


# ------------------------------------------------------------------------------------------------ auto
@needs_ov
@pytest.mark.skipif(not gpu_absent_reason(), reason="this machine has an NVIDIA GPU: auto picks a GPU backend first")
def test_auto_picks_openvino_int8_on_a_cpu_machine_and_says_why(tiny_engine: Path, calibrated: Path) -> None:
    with open_engine(calibrated) as eng:
        assert eng.backend == "openvino" and eng.precision == "int8" and eng.model_file == "model.int8.cpu.onnx"
        assert eng.choice.startswith("openvino CPU int8 (latency, 1 stream): model.int8.cpu.onnx exists")
        assert "no GPU backend" in eng.choice
    with open_engine(tiny_engine) as eng:  # no INT8 file yet: fp32, and the hint to calibrate
        assert eng.backend == "openvino" and eng.precision == "fp32" and "run `calibrate`" in eng.choice
