"""Detector export and calibration through the one export/calibrate flow: engine folder, op allow-list, parity,
backends, Q/DQ kept off the head/decode, the held-out evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_app.compile.detect import ALLOWED_OPS, DetParity
from edge_app.compile.export import export


def test_engine_folder(det_engine: Path, det_checkpoint: Path) -> None:
    meta = json.loads((det_engine / "meta.json").read_text())
    assert meta["task"] == "detect" and meta["outputs"] == ["dets"]
    assert meta["labels"] == ["circle", "square", "triangle", "star", "cross"]
    assert meta["input"]["resize"] == "letterbox" and meta["input"]["height"] == 64
    assert meta["output_layout"]["dets"]["columns"] == ["x1", "y1", "x2", "y2", "score", "class"]
    assert meta["output_layout"]["dets"]["shape"] == ["batch", 100, 6]
    assert 0 < meta["threshold"] < 1 and set(meta["ops"]) <= ALLOWED_OPS
    assert meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"]
    assert {"model.onnx", "checkpoint.pt"} <= set(meta["files"])
    m = onnx.load(str(det_engine / "model.onnx"))
    assert not m.graph.initializer or all(not i.external_data for i in m.graph.initializer)  # one self-contained file
    out = m.graph.output[0]
    assert out.name == "dets" and [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [100, 6]
    again = export(det_checkpoint, "det", det_engine.parent)
    assert again.cached and isinstance(again.parity, DetParity) and again.meta.task == "detect"
    assert again.meta.threshold == meta["threshold"] and "task detect" in again.summary()[1]


def test_torch_and_onnxruntime_backends_agree(det_engine: Path) -> None:
    """The engine folder opens in the PyTorch backend (checkpoint rebuilt through model_from_checkpoint) and ORT."""
    from edge_app.compile.detect import compare_dets, parity_images
    from edge_app.runtime import open_engine

    x = parity_images(64, 64, n=4, seed=3)
    with (
        open_engine(det_engine, "torch", "fp32", "cpu") as t,
        open_engine(det_engine, "onnxruntime", "fp32", "cpu") as o,
    ):
        a, b = t.infer(x), o.infer(x)
    assert set(a) == set(b) == {"dets"} and a["dets"].shape == (4, 100, 6)
    c = compare_dets(a["dets"], b["dets"])
    assert c.max_abs_diff < 1e-3 and c.class_agree == 1.0


def test_calibrate_keeps_head_and_decode_float(det_engine: Path, tmp_path: Path) -> None:
    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = run_calibrate(
            det_engine, CalibrateConfig(num=8, method="minmax", progress=False, speed=False), say=lambda s: None
        )
    finally:
        os.chdir(cwd)
    assert set(r.report) == {"fp32", "fp16", "int8.trt", "int8.cpu"}
    for rep in r.report.values():
        assert 0.0 <= rep.extra["map50"] <= 1.0 and "map50_95" in rep.extra and "precision" in rep.extra
    q = json.loads((det_engine / "meta.json").read_text())["quantization"]["model.int8.cpu.onnx"]
    assert q["settings"]["kept_float"] == "preprocessing, head last convs, sigmoid, decode"
    for f in ("model.int8.trt.onnx", "model.int8.cpu.onnx"):
        m = onnx.load(str(det_engine / f))
        producer = {o: n for n in m.graph.node for o in n.output}
        qdq = {n.name for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
        assert qdq  # the trunk is quantized
        for n in m.graph.node:  # nothing from the head's last convs on is fed through Q/DQ
            if n.op_type in ("Sigmoid", "TopK", "GatherElements", "Equal") or (
                n.op_type == "MaxPool" and "Sigmoid" in producer.get(n.input[0], n).op_type
            ):
                assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in n.input), (
                    f,
                    n.name,
                )
        head_convs = [
            n
            for n in m.graph.node
            if n.op_type == "Conv"
            and any(c.op_type == "Sigmoid" or c.op_type == "Flatten" for c in m.graph.node if n.output[0] in c.input)
        ]
        assert head_convs and all(
            producer[n.input[1]].op_type != "DequantizeLinear" for n in head_convs if n.input[1] in producer
        )
    meta = json.loads((det_engine / "meta.json").read_text())
    assert meta["accuracy"]["int8.cpu"]["file"] == "model.int8.cpu.onnx"
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    from edge_app.runtime import open_engine

    with open_engine(det_engine, "onnxruntime", "int8", "cpu") as e:
        assert e.infer(x)["dets"].shape == (2, 100, 6)
    import onnxruntime as ort  # the ORT backend refuses fp16 on the CPU (too slow); the file itself runs

    got = ort.InferenceSession(str(det_engine / "model.fp16.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    assert got.shape == (2, 100, 6) and got.dtype == np.float32


def test_heldout_report_and_speed(det_engine: Path) -> None:
    """The held-out evaluation runs end to end on an engine folder (numbers are meaningless for a 1-epoch model)."""
    from edge_app.engine_dir import EngineDir
    from edge_app.eval.heldout import format_heldout, heldout_report, run_heldout, speed_720p

    ed = EngineDir(det_engine)
    meta = ed.load_meta()
    rep = heldout_report(ed, meta, n_scenes=4, n_frames=2)
    assert "fp32" in rep.scenes and "fp32" in rep.video
    assert rep.video["fp32"].images == 2 and rep.video["fp32"].boxes == 14
    assert rep.threshold == meta.threshold
    speed = speed_720p(ed, meta, rounds=1, block=2, settle=1, threads=1)
    assert speed.files["fp32"].total_p50_ms > 0
    assert any("720p frame" in line for line in format_heldout(rep, speed))
    run = run_heldout(det_engine, scenes=2, frames=1, speed=False)
    assert run.speed is None and "fp32" in run.to_dict()["heldout"]["video"]


def test_heldout_refuses_a_classifier(tiny_engine: Path) -> None:
    from edge_app.errors import UserError
    from edge_app.eval.heldout import run_heldout

    with pytest.raises(UserError, match="not a detector engine"):
        run_heldout(tiny_engine, speed=False)


def test_export_agnostic_setting_goes_into_graph_meta_and_checkpoint(det_checkpoint: Path, tmp_path: Path) -> None:
    """`export --agnostic F` replaces the factor training chose: the graph decodes with it, meta.json and the
    folder's checkpoint.pt record it, and a folder exported with another factor is not reused (its derived files
    would decode the old way)."""
    import torch

    from edge_app.compile.detect import compare_dets, parity_images
    from edge_app.fsutil import sha256_file
    from edge_app.runtime import open_engine

    before = sha256_file(det_checkpoint)
    hard = export(det_checkpoint, "det", tmp_path, settings={"agnostic": 0.0})
    assert not hard.cached and hard.meta.extra["detector"]["agnostic"] == 0.0
    assert torch.load(hard.engine / "checkpoint.pt", weights_only=False)["detector"]["agnostic"] == 0.0
    assert "ReduceMax" in hard.meta.extra["ops"]
    x = parity_images(64, 64, n=4, seed=5)
    with open_engine(hard.engine, "onnxruntime", "fp32", "cpu") as o, open_engine(hard.engine, "torch") as t:
        a, b = o.infer(x)["dets"], t.infer(x)["dets"]
    assert compare_dets(b, a).max_abs_diff < 1e-3  # the PyTorch backend rebuilds the same decode
    for img in a:  # factor 0: no two kept boxes of different classes share a centre cell
        kept = img[img[:, 4] > 0]
        centres = {(round((r[0] + r[2]) / 8, 3), round((r[1] + r[3]) / 8, 3)) for r in kept}
        assert len(centres) == len(kept)
    assert export(det_checkpoint, "det", tmp_path, settings={"agnostic": 0.0}).cached
    (hard.engine / "model.int8.cpu.onnx").write_bytes(b"stale")  # as if calibrated with factor 0
    soft = export(det_checkpoint, "det", tmp_path, settings={"agnostic": 1.0})
    assert not soft.cached and soft.meta.extra["detector"]["agnostic"] == 1.0
    assert not (hard.engine / "model.int8.cpu.onnx").exists()
    assert sha256_file(det_checkpoint) == before  # the training checkpoint itself is never rewritten


@pytest.mark.parametrize(
    "settings,message",
    [({"agnostic": 1.5}, "--agnostic 1.5 is not in 0..1"), ({"agnostic": -0.1}, "--agnostic -0.1 is not in 0..1")],
)
def test_export_agnostic_out_of_range_writes_nothing(
    det_checkpoint: Path, tmp_path: Path, settings: dict, message: str
) -> None:
    from edge_app.errors import UserError

    with pytest.raises(UserError, match=message):
        export(det_checkpoint, "det", tmp_path, settings=settings)
    assert not (tmp_path / "det" / "model.onnx").exists()


def test_export_agnostic_refused_for_a_classifier(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from edge_app.errors import UserError

    with pytest.raises(UserError, match="agnostic does not apply to a classify checkpoint"):
        export(tiny_checkpoint, "tiny", tmp_path, settings={"agnostic": 0.5})
