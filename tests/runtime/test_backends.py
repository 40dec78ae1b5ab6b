"""Every behaviour runs across every backend available here."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.runtime import open_engine

BACKENDS = ["onnxruntime", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_each_other(tiny_engine, backend, rng) -> None:
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with open_engine(tiny_engine, "torch", "fp32", "cpu") as ref, open_engine(tiny_engine, backend, "fp32", "cpu") as eng:
        a, b = ref.infer(x), eng.infer(x)
        assert b.shape == (3, eng.meta.num_classes) and b.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-3)
        assert eng.backend == backend and backend in eng.description


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_batches_are_rejected_with_the_expected_shape(tiny_engine, backend) -> None:
    with open_engine(tiny_engine, backend, "fp32", "cpu") as eng:
        with pytest.raises(ValueError, match=r"expected a uint8 batch of shape \(N,32,32,3\), got float32"):
            eng.infer(np.zeros((1, 32, 32, 3), np.float32))
        with pytest.raises(ValueError, match=r"got uint8 \(32, 32, 3\)"):
            eng.infer(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        eng.infer(np.zeros((1, 32, 32, 3), np.uint8))


def test_auto_says_what_it_chose(tiny_engine) -> None:
    with open_engine(tiny_engine) as eng:
        assert eng.backend == "onnxruntime"
        assert "CPU fp32" in eng.choice and "calibrate" in eng.choice


def test_open_engine_errors(tiny_engine, tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        open_engine(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no model.onnx"):
        open_engine(tmp_path / "empty")
    with pytest.raises(UserError, match="unknown backend 'tflite'"):
        open_engine(tiny_engine, "tflite")
    with pytest.raises(UserError, match="model.int8.cpu.onnx' does not exist.*calibrate"):
        open_engine(tiny_engine, "onnxruntime", "int8")
    with pytest.raises(UserError, match="PyTorch backend runs fp32"):
        open_engine(tiny_engine, "torch", "int8")
