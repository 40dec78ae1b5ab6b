"""model.int8.trt.onnx is Q/DQ on the FP16 graph (issue 21 item 4): what TensorRT will build, checked without it.

A tiny ResNet-like graph (uint8 in, preprocessing, Conv, residual Add, pool, FC) is calibrated on random
images and quantized both ways; the TensorRT file must be opset 19 with FP16 scales, FP16 DQ outputs and FP16
unquantized layers (preprocessing FP32), clean under the TensorRT ONNX rules, and as accurate as Q/DQ on the
FP32 graph; the CPU u8s8 file must be unchanged (opset 17, FP32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_app.compile import quantize as qz
from edge_app.runtime.tensorrt.onnx_rules import check_trt_onnx

S = 16


def tiny_resnet(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32))  # noqa: E731
    inits = {
        "scale": numpy_helper.from_array(np.array([1 / 255], np.float32)),
        "w1": w(8, 3, 3, 3),
        "b1": w(8),
        "w2": w(8, 8, 3, 3),
        "b2": w(8),
        "fc": w(4, 8),
        "fcb": w(4),
    }
    for k, t in inits.items():
        t.name = k
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="/pre/Cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], name="/pre/Transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["t", "scale"], ["x"], name="/pre/Mul"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["v"], name="flat"),
        helper.make_node("Gemm", ["v", "fc", "fcb"], ["logits"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", S, S, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializer=list(inits.values()),
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from edge_app.compile.ranges import compute_ranges

    tmp = tmp_path_factory.mktemp("q")
    src = tiny_resnet(tmp / "model.onnx")
    pre = qz.preprocess_model(src, tmp / "pre.onnx")
    images = np.random.default_rng(1).integers(0, 256, (32, S, S, 3), dtype=np.uint8)
    ranges = compute_ranges(pre, images, "minmax", tmp, False)
    trt = qz.quantize_int8(pre, ranges, "trt", tmp / "model.int8.trt.onnx", tmp)
    cpu = qz.quantize_int8(pre, ranges, "cpu", tmp / "model.int8.cpu.onnx", tmp)
    return {"tmp": tmp, "src": src, "pre": pre, "ranges": ranges, "trt": trt, "cpu": cpu, "images": images}


def _types(model: onnx.ModelProto) -> dict[str, int]:
    m = onnx.shape_inference.infer_shapes(model)
    vi = list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)
    types = {v.name: v.type.tensor_type.elem_type for v in vi}
    types.update({t.name: t.data_type for t in m.graph.initializer})
    return types


def test_trt_int8_file_is_qdq_on_the_fp16_graph(quantized: dict) -> None:
    m = onnx.load(str(quantized["tmp"] / "model.int8.trt.onnx"))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 19)]
    types = _types(m)
    qdq = [n for n in m.graph.node if n.op_type in qz.QDQ_OPS]
    assert qdq and all(types[n.input[1]] == TensorProto.FLOAT16 for n in qdq), "every scale FP16"
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in qdq if n.op_type == "DequantizeLinear")
    by_name = {n.name: n for n in m.graph.node}
    assert types[by_name["fc"].output[0]] == TensorProto.FLOAT16, "the unquantized FC tail runs FP16"
    assert types[by_name["pool"].output[0]] == TensorProto.FLOAT16
    assert types[by_name["/pre/Mul"].output[0]] == TensorProto.FLOAT, "preprocessing stays FP32"
    assert types["logits"] == TensorProto.FLOAT and types["images"] == TensorProto.UINT8
    assert check_trt_onnx(m) == [], "TensorRT's ONNX rules hold for the FP16 Q/DQ file"
    s = quantized["trt"]["unquantized_layers"]
    assert (s["compute"], s["opset"]) == ("float16", 19) and "/pre/Cast" in s["kept_fp32"]


def test_cpu_u8s8_file_is_unaffected(quantized: dict) -> None:
    m = onnx.load(str(quantized["tmp"] / "model.int8.cpu.onnx"))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    types = _types(m)
    assert all(types[n.input[1]] == TensorProto.FLOAT for n in m.graph.node if n.op_type in qz.QDQ_OPS)
    assert "unquantized_layers" not in quantized["cpu"]


def test_fp16_qdq_is_as_accurate_as_qdq_on_fp32(quantized: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as TensorRT would (explicit Q/DQ, no ORT fusions): FP16 around the INT8 layers costs ~nothing."""
    import onnxruntime as ort

    tmp = quantized["tmp"]
    monkeypatch.setattr(qz, "qdq_on_fp16", lambda m, keep_fp32=(): (m, {}))
    qz.quantize_int8(quantized["pre"], quantized["ranges"], "trt", tmp / "fp32qdq.onnx", tmp)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = quantized["images"]
    run = lambda p: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]  # noqa: E731
    ref, fp16, fp32 = run(quantized["src"]), run(tmp / "model.int8.trt.onnx"), run(tmp / "fp32qdq.onnx")
    err16, err32 = np.abs(ref - fp16).mean(), np.abs(ref - fp32).mean()
    assert err16 <= err32 * 1.25 + 1e-3, (err16, err32)


def test_scales_below_fp16_range_are_raised_and_weights_requantized() -> None:
    q = numpy_helper.from_array(np.array([[100], [-50]], np.int8), "w")
    scale = numpy_helper.from_array(np.array([1e-6, 0.5], np.float32), "s")
    zp = numpy_helper.from_array(np.zeros(2, np.int8), "z")
    dq = helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], axis=0)
    g = helper.make_graph(
        [dq], "g", [], [helper.make_tensor_value_info("wf", TensorProto.FLOAT, [2, 1])], [q, scale, zp]
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    assert qz._raise_tiny_scales(m) == 1
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    assert inits["s"][0] == np.float32(qz.FP16_TINY) and inits["s"][1] == np.float32(0.5)
    assert inits["w"].tolist() == [[2], [-50]], "100 * 1e-6 / 6.1e-5 rounds to 2; the normal channel is untouched"
