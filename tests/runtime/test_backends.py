"""Every behaviour runs across every backend available here."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.runtime import backends, open_engine
from edge_app.runtime.registry import Host, get_backend

# Every registered backend that can run on this machine's CPU (TensorRT needs a GPU: its own tests cover it).
BACKENDS = [b.name for b in backends() if "cpu" in b.devices and b.available("cpu")[0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_each_other(tiny_engine, backend, rng) -> None:
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with (
        open_engine(tiny_engine, "torch", "fp32", "cpu") as ref,
        open_engine(tiny_engine, backend, "fp32", "cpu") as eng,
    ):
        a, b = ref.infer(x)["logits"], eng.infer(x)["logits"]
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
    # The first CPU backend installed here, in registry order (openvino when installed, else onnxruntime).
    first = next(b.name for b in backends() if "cpu" in b.devices and b.available("cpu")[0])
    with open_engine(tiny_engine) as eng:
        assert eng.backend == first
        assert "CPU fp32" in eng.choice and "calibrate" in eng.choice


def test_open_engine_errors(tiny_engine, tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        open_engine(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no model.onnx"):
        open_engine(tmp_path / "empty")
    with pytest.raises(UserError, match="backend 'tflite' is unknown; choose auto or one of tensorrt, .*onnxruntime"):
        open_engine(tiny_engine, "tflite")
    with pytest.raises(UserError, match="model.int8.cpu.onnx' does not exist.*calibrate"):
        open_engine(tiny_engine, "onnxruntime", "int8")
    with pytest.raises(UserError, match="PyTorch backend runs fp32"):
        open_engine(tiny_engine, "torch", "int8")


def _two_output_engine(root, outputs: list[str]):
    """An engine folder whose model has two outputs: per-channel mean ('logits') and max ('extra')."""
    import onnx
    from onnx import TensorProto, helper

    from edge_app.engine_dir import EngineDir, EngineMeta, InputSpec

    g = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["x"], ["logits"], axes=[1, 2], keepdims=0),
            helper.make_node("ReduceMax", ["x"], ["extra"], axes=[1, 2], keepdims=0),
        ],
        "two",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 8, 8, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    ed = EngineDir(root / "two")
    ed.path.mkdir()
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), ed.onnx_path())
    ed.save_meta(EngineMeta(name="two", arch="none", labels=["b", "g", "r"], input=InputSpec(8, 8), outputs=outputs))
    return ed.path


def test_outputs_come_back_by_name(tmp_path, rng) -> None:
    x = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    with open_engine(_two_output_engine(tmp_path, ["logits", "extra"]), "onnxruntime", "fp32", "cpu") as eng:
        out = eng.infer(x)
        assert list(out) == ["logits", "extra"] == eng.outputs
        np.testing.assert_allclose(out["logits"], x.reshape(2, -1, 3).mean(1), rtol=1e-5)
        np.testing.assert_array_equal(out["extra"], x.reshape(2, -1, 3).max(1))
        assert eng.inputs[0].name == "images" and eng.inputs[0].shape == (None, 8, 8, 3)


def test_an_output_missing_from_the_model_is_named(tmp_path) -> None:
    with open_engine(_two_output_engine(tmp_path, ["logits", "dets"]), "onnxruntime", "fp32", "cpu") as eng:
        with pytest.raises(
            RuntimeError, match=r"returned outputs \['extra', 'logits'\], but meta.json lists \['logits', 'dets'\]"
        ):
            eng.infer(np.zeros((1, 8, 8, 3), np.uint8))


def test_a_backend_asked_for_on_a_device_it_does_not_run_on(tiny_engine) -> None:
    with pytest.raises(
        UserError, match="backend tensorrt runs on cuda only, not on device cpu; choose device cuda or another backend"
    ):
        open_engine(tiny_engine, "tensorrt", device="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cpu_backend_states_its_version_and_thread_setting(backend) -> None:
    """Reports read versions and thread counts from the descriptor; a CPU backend that runs here has both."""
    b = get_backend(backend)
    assert b.version() is not None
    assert b.threads is not None and b.threads(3) >= 1


@pytest.mark.parametrize("jetson", [False, True])
def test_every_fix_hint_is_one_clause_and_a_jetson_gets_no_pip_gpu_build(jetson: bool) -> None:
    host = Host(jetson=jetson)
    for b in backends():
        for dev in b.devices:
            fix = b.fix(dev, "not available", host)
            assert fix and "\n" not in fix, (b.name, dev)
            if jetson:  # pip has no Jetson GPU build of onnxruntime or torch (installed or not)
                assert "pip install onnxruntime-gpu" not in fix, (b.name, fix)
                assert dev == "cpu" or "pip install torch" not in fix, (b.name, fix)
