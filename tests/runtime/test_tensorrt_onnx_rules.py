"""The TensorRT ONNX rules check: passes on every file the project makes, fails on each broken rule.

Graphs for the failing cases are built with onnx.helper, so each test shows the exact pattern TensorRT's
parser rejects (onnx-tensorrt ModelImporter.cpp / onnxOpImporters.cpp, quoted in compile/data).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
from edge_app.engine_dir import EngineDir
from edge_app.errors import UserError
from edge_app.runtime.tensorrt.onnx_rules import check_trt_onnx, require_trt_onnx, trt_table

REPO = Path(__file__).resolve().parents[2]


def model(nodes: list, inputs: list, outputs: list, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits or [])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name: str, dtype: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def images(shape: list | None = None) -> onnx.ValueInfoProto:
    return vi("images", TensorProto.UINT8, shape or ["batch", 8, 8, 3])


def init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(a, name)


def rules(m: onnx.ModelProto) -> list[tuple[str, str]]:
    return [(v.rule, v.node) for v in check_trt_onnx(m)]


def good_preprocess() -> onnx.ModelProto:
    """uint8 NHWC -> Cast -> Transpose -> float NCHW: what export now writes."""
    return model(
        [
            helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["y"], name="nchw", perm=[0, 3, 1, 2]),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 3, 8, 8])],
    )


# ----------------------------------------------------------------------------------------- the project's files
@pytest.fixture(scope="module")
def calibrated_engine(tiny_calibrated: Path) -> EngineDir:
    """The tiny engine after `calibrate` (fp16 and both int8 files written; the check ran inside)."""
    return EngineDir(tiny_calibrated)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_file_build_uses_passes(calibrated_engine: EngineDir, precision: str) -> None:
    path = calibrated_engine.onnx_path(precision, "trt")
    assert check_trt_onnx(path) == [], path.name
    require_trt_onnx(path)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_uint8_images_feed_only_a_cast(calibrated_engine: EngineDir, precision: str) -> None:
    """Defect 1: export fed `images` into a Transpose; the FP16 and Q/DQ derivations must keep the Cast first."""
    g = onnx.load(str(calibrated_engine.onnx_path(precision, "trt"))).graph
    consumers = [n for n in g.node if "images" in n.input]
    assert [n.op_type for n in consumers] == ["Cast"], [(n.name, n.op_type) for n in consumers]


def test_cpu_int8_file_is_for_onnx_runtime_and_not_required_to_pass(calibrated_engine: EngineDir) -> None:
    """u8s8 (asymmetric) Q/DQ is what ONNX Runtime's CPU kernels want; TensorRT never builds from it."""
    found = {v.rule for v in check_trt_onnx(calibrated_engine.onnx_path("int8", "cpu"))}
    assert "QDQ_ZERO_POINT" in found


def test_the_old_export_fails_naming_the_transpose() -> None:
    old = model(
        [
            helper.make_node("Transpose", ["images"], ["t"], name="/Transpose", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["y"], name="/Cast", to=TensorProto.FLOAT),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 3, 8, 8])],
    )
    assert rules(old) == [("UINT8_INPUT_CAST", "/Transpose"), ("UINT8_INTERMEDIATE", "/Transpose")]
    with pytest.raises(UserError, match=r"'old.onnx' breaks 2 TensorRT ONNX rule\(s\)") as e:
        require_trt_onnx(old, "old.onnx")
    msg = str(e.value)
    assert (
        "node '/Transpose' (Transpose) consumes the uint8 input 'images' directly" in msg
        and "[UINT8_INPUT_CAST]" in msg
    )
    assert "node '/Transpose' (Transpose) outputs the UINT8 tensor 't'" in msg and "[UINT8_INTERMEDIATE]" in msg
    assert "\n" not in str(e.value), "one line: the CLI prints it as one error"


def test_the_preprocessing_module_exports_cast_first() -> None:
    """Defect 1 at its source: InGraphPreprocess traced alone gives Cast before Transpose."""
    from edge_app.compile.export import onnx_bytes
    from edge_app.models.preprocess import InGraphPreprocess

    m = onnx.load_from_string(onnx_bytes(InGraphPreprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval(), 8, 8))
    assert [n.op_type for n in m.graph.node if "images" in n.input] == ["Cast"]
    assert check_trt_onnx(m) == []


def test_good_preprocess_passes() -> None:
    assert check_trt_onnx(good_preprocess()) == []


# ----------------------------------------------------------------------------------------- one case per rule
def test_uint8_input_into_a_cast_to_uint8_is_still_an_error() -> None:
    m = model(
        [
            helper.make_node("Cast", ["images"], ["u"], name="noop", to=TensorProto.UINT8),
            helper.make_node("Cast", ["u"], ["y"], name="f", to=TensorProto.FLOAT),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 8, 8, 3])],
    )
    assert ("UINT8_INPUT_CAST", "noop") in rules(m) and ("UINT8_INTERMEDIATE", "noop") in rules(m)


def test_uint8_graph_output_is_allowed() -> None:
    m = model(
        [
            helper.make_node("Cast", ["images"], ["f"], name="f", to=TensorProto.FLOAT),
            helper.make_node("Cast", ["f"], ["out"], name="back", to=TensorProto.UINT8),
        ],
        [images()],
        [vi("out", TensorProto.UINT8, ["batch", 8, 8, 3])],
    )
    assert rules(m) == []


@pytest.mark.parametrize("opset, ok", [(9, True), (17, True), (24, True), (8, False), (25, False)])
def test_opset_range_comes_from_the_table(opset: int, ok: bool) -> None:
    m = good_preprocess()
    m.opset_import[0].version = opset
    found = [v for v in check_trt_onnx(m) if v.rule == "OPSET_RANGE"]
    assert (found == []) is ok, found
    if not ok:
        assert f"opset {opset}, outside the 9 to 24" in found[0].message


@pytest.mark.parametrize("op", ["Unique", "NonMaxSuppressionX", "QLinearConv"])
def test_unsupported_or_unknown_op(op: str) -> None:
    m = model(
        [
            helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
            helper.make_node(op, ["f"], ["y"], name="bad", domain="" if op != "NonMaxSuppressionX" else "custom"),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 8, 8, 3])],
    )
    m.opset_import.append(helper.make_opsetid("custom", 1))
    found = [v for v in check_trt_onnx(m) if v.rule == "UNSUPPORTED_OR_UNKNOWN_OP"]
    assert [v.node for v in found] == ["bad"] and f"op type {op}" in found[0].message


@pytest.mark.parametrize(
    "shape, bad",
    [(["batch", 8, 8, 3], False), ([1, 8, 8, 3], False), (["batch", "h", 8, 3], True), (["batch", 8, None, 3], True)],
)
def test_only_the_batch_dimension_may_be_dynamic(shape: list, bad: bool) -> None:
    m = good_preprocess()
    m.graph.input[0].CopyFrom(images(shape))
    found = [(v.rule, v.node) for v in check_trt_onnx(m) if v.rule == "DYNAMIC_DIMS"]
    assert found == ([("DYNAMIC_DIMS", "images")] if bad else [])


def test_io_types_and_cast_targets() -> None:
    m = model(
        [helper.make_node("Cast", ["images"], ["y"], name="c", to=TensorProto.UINT16)],
        [images()],
        [vi("y", TensorProto.UINT16, ["batch", 8, 8, 3])],
    )
    assert rules(m) == [("IO_DTYPE", "y"), ("CAST_TO", "c")]


def test_dynamic_output_dims() -> None:
    """An output whose size depends on data (here: as many values as the input has pixels per sample)."""
    m = model(
        [
            helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
            helper.make_node("Shape", ["f"], ["s"], name="shape", start=1),
            helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill"),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", "h", "w", "c"])],
    )
    assert rules(m) == [("DYNAMIC_DIMS", "y")]


def _topk(k: np.ndarray | None, **attrs: int) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["f"], ["flat"], name="flat", axis=1),
    ]
    inits = []
    if k is None:  # K computed at run time from the input's shape
        nodes += [
            helper.make_node("Shape", ["flat"], ["s"], name="shape", start=1),
            helper.make_node("TopK", ["flat", "s"], ["v", "i"], name="topk", **attrs),
        ]
    else:
        inits.append(init("k", k))
        nodes.append(helper.make_node("TopK", ["flat", "k"], ["v", "i"], name="topk", **attrs))
    return model(
        nodes,
        [images()],
        [vi("v", TensorProto.FLOAT, ["batch", None]), vi("i", TensorProto.INT64, ["batch", None])],
        inits,
    )


@pytest.mark.parametrize(
    "k, attrs, ok, text",
    [
        (np.array([100], np.int64), {}, True, ""),
        (np.array([3840], np.int64), {}, True, ""),
        (np.array([3841], np.int64), {}, False, "K = 3841; TensorRT's TopK supports K up to 3840"),
        (None, {}, False, "takes K from the computed tensor 's'"),
        (np.array([5], np.int64), {"sorted": 0}, False, "requires sorted = 1"),
    ],
)
def test_topk_k_is_constant_and_at_most_3840(k: np.ndarray | None, attrs: dict, ok: bool, text: str) -> None:
    found = [v for v in check_trt_onnx(_topk(k, **attrs)) if v.rule == "TOPK_K_LIMIT"]
    assert (found == []) is ok, found
    if not ok:
        assert found[0].node == "topk" and text in found[0].message


def _pool(op: str, outputs: list[str], **attrs: object) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], name="nchw", perm=[0, 3, 1, 2]),
        helper.make_node(op, ["x"], outputs, name="pool", kernel_shape=[3, 3], **attrs),
    ]
    outs = [vi(outputs[0], TensorProto.FLOAT, ["batch", 3, None, None])]
    if len(outputs) > 1:
        outs.append(vi(outputs[1], TensorProto.INT64, ["batch", 3, None, None]))
    return model(nodes, [images()], outs)


def test_maxpool_dilations_and_indices() -> None:
    assert [
        v for v in check_trt_onnx(_pool("MaxPool", ["y"], pads=[1, 1, 1, 1])) if v.rule == "POOL_DILATIONS_INDICES"
    ] == []
    dil = [v for v in check_trt_onnx(_pool("MaxPool", ["y"], dilations=[2, 2])) if v.rule == "POOL_DILATIONS_INDICES"]
    assert [v.node for v in dil] == ["pool"] and "dilations [2, 2]" in dil[0].message
    idx = [v for v in check_trt_onnx(_pool("MaxPool", ["y", "ind"])) if v.rule == "POOL_DILATIONS_INDICES"]
    assert [v.node for v in idx] == ["pool"] and "Indices output 'ind'" in idx[0].message


def _resize(**attrs: object) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], name="nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs),
    ]
    return model(
        nodes,
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [init("scales", np.array([1, 1, 2, 2], np.float32))],
        opset=19,
    )


@pytest.mark.parametrize(
    "attrs, text",
    [
        ({"mode": "nearest"}, ""),
        ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, ""),
        ({"mode": "linear", "antialias": 1}, "antialias = 1"),
        (
            {"coordinate_transformation_mode": "tf_crop_and_resize"},
            "coordinate_transformation_mode 'tf_crop_and_resize'",
        ),
        (
            {"coordinate_transformation_mode": "half_pixel_symmetric"},
            "coordinate_transformation_mode 'half_pixel_symmetric'",
        ),
        ({"keep_aspect_ratio_policy": "not_larger"}, "keep_aspect_ratio_policy 'not_larger'"),
        (
            {"coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": "floor"},
            "only with nearest_mode round_prefer_floor",
        ),
    ],
)
def test_resize_modes_and_antialias(attrs: dict, text: str) -> None:
    found = [v for v in check_trt_onnx(_resize(**attrs)) if v.rule == "RESIZE_MODES"]
    if not text:
        assert found == []
    else:
        assert found and found[0].node == "up" and any(text in v.message for v in found), found


def _qdq(zp: np.ndarray | None, scale: np.ndarray, weight_scale: np.ndarray, weight_zp: np.ndarray) -> onnx.ModelProto:
    """Cast -> Transpose -> Q/DQ (activation) -> Conv with an int8 weight through DQ: ORT's QDQ layout."""
    act_in = ["x", "s_act"] + (["zp_act"] if zp is not None else [])
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], name="nchw", perm=[0, 3, 1, 2]),
        helper.make_node("QuantizeLinear", act_in, ["xq"], name="q_act"),
        helper.make_node(
            "DequantizeLinear", ["xq", "s_act"] + (["zp_act"] if zp is not None else []), ["xd"], name="dq_act"
        ),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "zp_w"], ["w"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xd", "w"], ["y"], name="conv", kernel_shape=[3, 3]),
    ]
    inits = [
        init("s_act", scale),
        init("w_q", np.ones((4, 3, 3, 3), np.int8)),
        init("s_w", weight_scale),
        init("zp_w", weight_zp),
    ]
    if zp is not None:
        inits.append(init("zp_act", zp))
    return model(nodes, [images()], [vi("y", TensorProto.FLOAT, ["batch", 4, 6, 6])], inits)


OK_W = (np.full(4, 0.1, np.float32), np.zeros(4, np.int8))


def test_symmetric_int8_qdq_with_per_channel_weights_passes() -> None:
    assert check_trt_onnx(_qdq(np.int8(0), np.float32(0.02), *OK_W)) == []


@pytest.mark.parametrize(
    "args, rule, node, text",
    [
        ((np.int8(3), np.float32(0.02), *OK_W), "QDQ_ZERO_POINT", "q_act", "non-zero zero point 'zp_act'"),
        ((np.uint8(128), np.float32(0.02), *OK_W), "QDQ_ZERO_POINT", "q_act", "UINT8 zero point 'zp_act'"),
        ((None, np.float32(0.02), *OK_W), "QDQ_ZERO_POINT", "q_act", "no zero point, so it quantizes to uint8"),
        ((np.int8(0), np.float32(0.0), *OK_W), "QDQ_SCALE", "q_act", "not positive everywhere"),
        (
            (np.int8(0), np.float32(0.02), np.array([0.1, -0.1, 0.1, 0.1], np.float32), OK_W[1]),
            "QDQ_SCALE",
            "dq_w",
            "not positive",
        ),
        (
            (np.int8(0), np.float32(0.02), OK_W[0], np.array([0, 1, 0, 0], np.int8)),
            "QDQ_ZERO_POINT",
            "dq_w",
            "non-zero zero point 'zp_w'",
        ),
        (
            (np.zeros(3, np.int8), np.full(3, 0.02, np.float32), *OK_W),
            "QDQ_PER_AXIS",
            "q_act",
            "quantizes the activation 'x' per axis",
        ),
    ],
)
def test_qdq_rules(args: tuple, rule: str, node: str, text: str) -> None:
    found = [v for v in check_trt_onnx(_qdq(*args)) if v.rule == rule]
    assert any(v.node == node and text in v.message for v in found), check_trt_onnx(_qdq(*args))


# ----------------------------------------------------------------------------------------- the table and the callers
def test_packaged_table_names_its_source_and_is_package_data() -> None:
    t = trt_table()
    assert t["source"]["repo"] == "onnx/onnx-tensorrt" and t["source"]["path"] == "docs/operators.md"
    assert re.fullmatch(r"[0-9a-f]{40}", t["source"]["commit"])
    assert (t["opset"]["min"], t["opset"]["max"]) == (9, 24) and len(t["ops"]) == t["counts"]["ops"]
    assert t["ops"]["Cast"]["supported"] and not t["ops"]["Unique"]["supported"]
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(
        r'\[tool\.setuptools\.package-data\]\s*\n(#.*\n)*"edge_app\.runtime\.tensorrt" = \["data/\*\.json"\]', text
    )
    assert json.loads((REPO / "edge_app/runtime/tensorrt/data/onnx_trt_ops_10x.json").read_text()) == t


def test_unreadable_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    for junk in (b"not onnx", b"placeholder", b"\xff\xfe\x00garbage"):
        bad.write_bytes(junk)
        with pytest.raises(UserError, match=r"'.*m.onnx' is not a readable ONNX model"):
            check_trt_onnx(bad)
    with pytest.raises(UserError, match=r"does not exist"):
        check_trt_onnx(tmp_path / "none.onnx")


def test_build_refuses_a_graph_tensorrt_would_reject_before_looking_for_a_gpu(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_app.cli import main

    eng = Path(shutil.copytree(tiny_engine, tmp_path / "tiny"))
    old = model(
        [
            helper.make_node("Transpose", ["images"], ["t"], name="/Transpose", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["y"], name="/Cast", to=TensorProto.FLOAT),
        ],
        [images()],
        [vi("y", TensorProto.FLOAT, ["batch", 3, 8, 8])],
    )
    onnx.save(old, str(eng / "model.onnx"))
    assert main(["build", str(eng), "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    assert "model.onnx' breaks 2 TensorRT ONNX rule(s)" in err and "node '/Transpose' (Transpose)" in err, err
    assert "NVIDIA GPU" not in err and len(err.strip().splitlines()) == 1, err


def test_calibrate_runs_the_check_on_the_files_build_uses(
    calibrated_engine: EngineDir, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import edge_app.compile.calibrate as calibrate

    eng = Path(shutil.copytree(calibrated_engine.path, tmp_path / "tiny"))  # the shared engine stays as it is

    seen: list[str] = []
    monkeypatch.setattr(calibrate, "require_trt_onnx", lambda p, *a: seen.append(Path(p).name))
    cfg = CalibrateConfig(
        images=str(tiny_dataset / "train"),
        num=24,
        method="minmax",
        cache_dir=str(calibrated_engine.path.parent / "calibration"),
        speed=False,
        progress=False,
    )
    run_calibrate(eng, cfg, say=lambda s: None)
    assert seen == ["model.onnx", "model.fp16.onnx", "model.int8.trt.onnx"]
