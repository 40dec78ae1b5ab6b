"""INT8/FP16 models from cached ranges: TensorRT Q/DQ placement, u8s8 parity on the CPU, FP16 I/O, meta.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
from edge_app.compile.quantize import place_residual_qdq, preprocessing_nodes
from edge_app.engine_dir import EngineDir
from edge_app.fsutil import sha256_file


@pytest.fixture(scope="module")
def calibrated(tiny_engine: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the tiny engine calibrated once (minmax, 36 training images), with its run summary."""
    root = tmp_path_factory.mktemp("calibrated")
    eng = Path(shutil.copytree(tiny_engine, root / "tiny"))
    cfg = CalibrateConfig(
        images=str(tiny_dataset / "train"),
        num=36,
        method="minmax",
        cache_dir=str(root / "calibration"),
        speed=False,
        progress=False,
    )
    lines: list[str] = []
    r = run_calibrate(eng, cfg, say=lines.append)
    return {"engine": eng, "cfg": cfg, "summary": r, "lines": lines}


def _init(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _main_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    pre = set(preprocessing_nodes(model))
    return [n for n in model.graph.node if n.name not in pre]


def test_trt_model_is_symmetric_int8(calibrated: dict) -> None:
    m = onnx.load(str(EngineDir(calibrated["engine"]).onnx_path("int8", "trt")))
    init = _init(m)
    # Plain ONNX at opset 19: Q/DQ with FP16 scales on the FP16 graph (TensorRT's explicit quantization).
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 19)]
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for n in qs + dqs:
        zp = init[n.input[2]]
        assert zp.dtype == np.int8, n.name
        assert not zp.any(), f"{n.name} has a non-zero zero point"


def test_trt_conv_weights_per_channel_bias_float(calibrated: dict) -> None:
    m = onnx.load(str(EngineDir(calibrated["engine"]).onnx_path("int8", "trt")))
    init = _init(m)
    producer = {o: n for n in m.graph.node for o in n.output}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 20  # ResNet-18: stem + 16 block convs + 3 downsample convs
    for conv in convs:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        w = init[dq.input[0]]
        assert w.dtype == np.int8 and axis == 0
        assert init[dq.input[1]].shape == (w.shape[0],), f"{conv.name}: weight scale is not per output channel"
        if len(conv.input) > 2:
            # Bias stays a plain float initializer (FP16, as the graph it sits in), never int32-quantized.
            assert conv.input[2] in init and init[conv.input[2]].dtype == np.float16, f"{conv.name}: bias was quantized"
        # Every Conv input is quantized, including the first one, which follows the in-graph preprocessing.
        assert producer[conv.input[0]].op_type == "DequantizeLinear", conv.name


def test_trt_residual_add_has_qdq_on_skip_only(calibrated: dict) -> None:
    m = onnx.load(str(EngineDir(calibrated["engine"]).onnx_path("int8", "trt")))
    producer = {o: n for n in m.graph.node for o in n.output}
    adds = [n for n in _main_nodes(m) if n.op_type == "Add"]
    assert len(adds) == 8  # one per BasicBlock
    for add in adds:
        kinds = sorted(producer[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], f"{add.name} inputs come from {kinds}"
    assert calibrated["summary"].report  # the run that wrote it finished with a report
    meta = EngineDir(calibrated["engine"]).load_meta()
    assert meta.quantization["model.int8.trt.onnx"].settings["residual_add_qdq_removed"] == 8


def test_residual_pass_picks_the_deeper_conv_branch() -> None:
    """Downsampling block: both Add inputs are Convs; the main branch (deeper) loses its Q/DQ, the shortcut keeps it."""
    from onnx import helper

    def qdq(x: str, tag: str) -> list[onnx.NodeProto]:
        return [
            helper.make_node("QuantizeLinear", [x, "s", "z"], [f"{tag}_q"], name=f"{tag}_Q"),
            helper.make_node("DequantizeLinear", [f"{tag}_q", "s", "z"], [f"{tag}_dq"], name=f"{tag}_DQ"),
        ]

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w"], ["c2"], name="conv2"),
        helper.make_node("Conv", ["x", "w"], ["ds"], name="downsample"),
        *qdq("c2", "main"),
        *qdq("ds", "skip"),
        helper.make_node("Add", ["main_dq", "skip_dq"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"),
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ],
    )
    m = helper.make_model(g)
    assert place_residual_qdq(m) == 1
    add = next(n for n in m.graph.node if n.op_type == "Add")
    assert list(add.input) == ["c2", "skip_dq"]
    assert {n.name for n in m.graph.node} == {"conv1", "relu1", "conv2", "downsample", "skip_Q", "skip_DQ", "add"}


def test_cpu_model_is_u8s8_and_agrees_with_fp32(calibrated: dict) -> None:
    ed = EngineDir(calibrated["engine"])
    m = onnx.load(str(ed.onnx_path("int8", "cpu")))
    init = _init(m)
    act = {init[n.input[2]].dtype for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert act == {np.dtype(np.uint8)}
    producer = {o: n for n in m.graph.node for o in n.output}
    for conv in (n for n in m.graph.node if n.op_type == "Conv"):
        assert init[producer[conv.input[1]].input[0]].dtype == np.int8
    r = calibrated["summary"].report["int8.cpu"]
    ref = calibrated["summary"].report["int8.trt"]
    assert r.n == 24 and r.top1 is not None  # the tiny dataset's 6 classes x 4 validation images
    # A 1-epoch model has near-tied logits, so top-1 agreement is a weak signal here; the logit error is not.
    assert r.mean_abs_dev < 0.05 and ref.mean_abs_dev < 0.05, (r, ref)
    assert r.agreement >= 0.75


def test_u8s8_model_runs_in_onnxruntime_engine(calibrated: dict, rng: np.random.Generator) -> None:
    from edge_app.runtime import open_engine

    with open_engine(calibrated["engine"], "onnxruntime", "fp32") as f32, open_engine(calibrated["engine"]) as auto:
        assert auto.model_file == "model.int8.cpu.onnx"  # auto now prefers the u8s8 model on the CPU
        x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        a, b = f32.infer(x)["logits"], auto.infer(x)["logits"]
    assert b.shape == a.shape == (3, 6) and b.dtype == np.float32
    assert np.abs(a - b).max() < 0.5 * (np.abs(a).max() + 1e-6)


def test_fp16_model_keeps_io_and_is_fp16_inside(calibrated: dict, rng: np.random.Generator) -> None:
    import onnxruntime as ort

    ed = EngineDir(calibrated["engine"])
    m = onnx.load(str(ed.onnx_path("fp16")))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    dtypes = {t.name: t.data_type for t in m.graph.initializer}
    conv_w = [n.input[1] for n in m.graph.node if n.op_type == "Conv"]
    assert conv_w and all(dtypes[w] == TensorProto.FLOAT16 for w in conv_w)
    x = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    s32 = ort.InferenceSession(str(ed.onnx_path()), providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(str(ed.onnx_path("fp16")), providers=["CPUExecutionProvider"])
    a, b = s32.run(None, {"images": x})[0], s16.run(None, {"images": x})[0]
    assert b.dtype == np.float32 and np.abs(a - b).max() < 0.05


def test_meta_records_tools_hashes_and_accuracy(calibrated: dict) -> None:
    ed = EngineDir(calibrated["engine"])
    meta = ed.load_meta()
    for f in ("model.int8.trt.onnx", "model.int8.cpu.onnx", "model.fp16.onnx"):
        assert meta.files[f] == sha256_file(ed.path / f)
        assert meta.quantization[f].tool and meta.quantization[f].settings
    assert meta.quantization["model.int8.cpu.onnx"].version == __import__("onnxruntime").__version__
    cal = meta.calibration
    assert cal["method"] == "minmax" and cal["images"]["count"] == 36 and Path(cal["cache"]).is_file()
    assert cal["cache_sha256"] == sha256_file(cal["cache"])
    for key in ("fp32", "fp16", "int8.trt", "int8.cpu"):
        assert meta.accuracy[key].n == 24 and 0.0 <= meta.accuracy[key].top1 <= 1.0
    assert meta.accuracy["int8.cpu"].agreement is not None and meta.accuracy["fp16"].max_abs_dev is not None
    assert meta.accuracy["fp32"].agreement is None  # fp32 is the reference, not compared with itself
    table = "\n".join(calibrated["lines"])
    assert "model.int8.trt.onnx" in table and "top-1" in table


def test_calibrate_result_is_what_meta_json_holds(calibrated: dict) -> None:
    from edge_app.compile.calibrate import CalibrateResult
    from edge_app.compile.classify import format_report
    from edge_app.engine_dir import ACCURACY_KEYS, AccuracyEntry

    r = calibrated["summary"]
    ed = EngineDir(calibrated["engine"])
    meta = ed.load_meta()
    assert isinstance(r, CalibrateResult) and r.engine == ed.path and r.cache.is_file()
    assert list(r.report) == list(ACCURACY_KEYS) and all(isinstance(e, AccuracyEntry) for e in r.report.values())
    assert {k: meta.accuracy[k] for k in ACCURACY_KEYS} == dict(r.report)  # the report is what meta.json now holds
    assert r.speed is None  # speed=False
    assert all(w.startswith("WARNING: ") and w in calibrated["lines"] for w in r.warnings)
    assert r.written[-1] == str(ed.meta_path) and str(ed.onnx_path("int8", "trt")) in r.written
    table = format_report(r.report, None)  # what calibrate printed, from the typed report
    start = calibrated["lines"].index(table[0])
    assert calibrated["lines"][start : start + len(table)] == table and len(table) == 2 + len(ACCURACY_KEYS)
    # the export-time (PyTorch) figure is kept beside the ORT one
    assert r.report["fp32"].training_top1 is not None and r.report["fp32"].source is None


def test_cpu_latency_ratio_measures_both_models(calibrated: dict) -> None:
    """Structure only: timings are checked by the benchmark commands, not by tests on a shared machine."""
    from edge_app.compile.calibrate import cpu_latency_ratio

    ed = EngineDir(calibrated["engine"])
    s = cpu_latency_ratio(ed, ed.load_meta(), rounds=2, block=3, settle=1, threads=1)
    assert s.runs == 6 and s.threads == 1 and s.input == "32x32"
    assert s.fp32_ms > 0 and s.int8_ms > 0
    assert s.ratio == pytest.approx(s.int8_ms / s.fp32_ms)
