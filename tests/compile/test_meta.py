"""meta.json's typed accuracy and quantization sections: old files read, and written back key for key."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from edge_app.engine_dir import (
    ACCURACY_KEYS,
    TRAINING_SOURCE,
    AccuracyEntry,
    CpuSpeed,
    EngineDir,
    EngineMeta,
    QuantizationEntry,
)
from edge_app.errors import UserError

# What export wrote (before calibrate): the checkpoint's own validation top-1 for fp32.
EXPORTED = {
    "name": "demo",
    "arch": "resnet18",
    "labels": ["background", "circle"],
    "input": {
        "height": 64,
        "width": 64,
        "layout": "NHWC",
        "dtype": "uint8",
        "color": "BGR",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "stretch",
    },
    "outputs": ["logits"],
    "checkpoint_sha256": "c" * 64,
    "files": {"model.onnx": "a" * 64, "checkpoint.pt": "b" * 64},
    "created": "2026-11-20T10:00:00+0000",
    "parity": {
        "max_abs_diff": 1.9e-06,
        "mean_abs_diff": 3.1e-07,
        "batch": 4,
        "tolerance": 0.001,
        "reference": "torch 2.5.1 cpu fp32",
        "runtime": "onnxruntime 1.20.1 CPUExecutionProvider",
        "top1_agree": 1.0,
    },
    "calibration": None,
    "quantization": {},
    "accuracy": {"fp32": {"top1": 0.9583, "source": "training validation (PyTorch)", "data": "data/synthetic"}},
    "builds": {},
    "version": 1,
    "checkpoint": "runs/demo/train/best.pt",
    "opset": 17,
    "data_root": "data/synthetic",
}

_RUNTIME = "onnxruntime 1.20.1 CPU"
_DATA = "600 validation images of 'data/synthetic'"
_RECIPE = "edge_app.compile.quantize/2 onnxruntime/1.20.1"


def _int8(target: str) -> dict:
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "version": "1.20.1",
        "recipe": _RECIPE,
        "preprocess": "onnxruntime.quantization.shape_inference.quant_pre_process",
        "target": target,
        "ranges": "calibration/demo.entropy.json",
        "ranges_sha256": "r" * 64,
        "method": "entropy",
        "settings": {"activations": "int8" if target == "trt" else "uint8", "per_channel": True},
        "created": "2026-11-20T10:05:00+0000",
    }


# What calibrate wrote on top of it: four measured rows, three derived files, the CPU speed on the u8s8 file.
CALIBRATED = copy.deepcopy(EXPORTED)
CALIBRATED["quantization"] = {
    "model.int8.trt.onnx": _int8("trt"),
    "model.int8.cpu.onnx": {
        **_int8("cpu"),
        "cpu_speed": {
            "fp32_ms": 2.41,
            "int8_ms": 1.52,
            "ratio": 0.63,
            "batch": 1,
            "runs": 50,
            "threads": 2,
            "input": "64x64",
            "runtime": "onnxruntime 1.20.1 CPUExecutionProvider",
        },
    },
    "model.fp16.onnx": {
        "tool": "edge_app.compile.quantize.cast_fp16",
        "version": "2",
        "recipe": _RECIPE,
        "source_sha256": "a" * 64,
        "settings": {"keep_io_types": True},
        "created": "2026-11-20T10:05:01+0000",
    },
}
CALIBRATED["accuracy"] = {
    "fp32": {
        "file": "model.onnx",
        "runtime": _RUNTIME,
        "n": 600,
        "data": _DATA,
        "top1": 0.9583,
        "training_top1": 0.9583,
    },
    "fp16": {
        "file": "model.fp16.onnx",
        "runtime": _RUNTIME,
        "n": 600,
        "data": _DATA,
        "top1": 0.9583,
        "agreement": 1.0,
        "max_abs_dev": 0.0031,
        "mean_abs_dev": 0.0004,
    },
    "int8.trt": {
        "file": "model.int8.trt.onnx",
        "runtime": _RUNTIME,
        "n": 600,
        "data": _DATA,
        "top1": 0.955,
        "agreement": 0.9917,
        "max_abs_dev": 0.41,
        "mean_abs_dev": 0.052,
    },
    "int8.cpu": {
        "file": "model.int8.cpu.onnx",
        "runtime": _RUNTIME,
        "n": 600,
        "data": _DATA,
        "top1": 0.9567,
        "agreement": 0.9933,
        "max_abs_dev": 0.38,
        "mean_abs_dev": 0.049,
    },
}
CALIBRATED["calibration"] = {"method": "entropy", "images": {"count": 512}, "cache": "calibration/demo.entropy.json"}


def _deep_keys(o: object) -> object:
    """The key order of every object in ``o``: dict equality ignores it, a byte-compared file does not."""
    if isinstance(o, dict):
        return [(k, _deep_keys(v)) for k, v in o.items()]
    if isinstance(o, list):
        return [_deep_keys(v) for v in o]
    return None


@pytest.mark.parametrize("old", [EXPORTED, CALIBRATED], ids=["exported", "calibrated"])
def test_old_meta_json_reads_typed_and_writes_back_the_same(old: dict) -> None:
    meta = EngineMeta.from_dict(copy.deepcopy(old))
    assert all(isinstance(e, AccuracyEntry) for e in meta.accuracy.values())
    assert all(isinstance(q, QuantizationEntry) for q in meta.quantization.values())
    out = json.loads(json.dumps(meta.to_dict()))  # as written to the file (tuples become lists)
    assert out == old
    assert _deep_keys(out) == _deep_keys(old)  # same order too: a re-saved meta.json is the same bytes
    assert json.dumps(out, indent=2) == json.dumps(old, indent=2)


def test_meta_sections_are_typed_records(tmp_path: Path) -> None:
    meta = EngineMeta.from_dict(copy.deepcopy(CALIBRATED))
    assert set(meta.accuracy) == set(ACCURACY_KEYS)
    fp32, cpu8 = meta.accuracy["fp32"], meta.accuracy["int8.cpu"]
    assert (
        fp32.top1 == 0.9583 and fp32.training_top1 == 0.9583 and fp32.agreement is None and not fp32.from_training_run
    )
    assert (cpu8.file, cpu8.n, cpu8.agreement, cpu8.mean_abs_dev) == ("model.int8.cpu.onnx", 600, 0.9933, 0.049)
    q = meta.quantization["model.int8.cpu.onnx"]
    assert q.target == "cpu" and q.ranges_sha256 == "r" * 64 and q.source_sha256 is None and q.settings["per_channel"]
    assert isinstance(q.cpu_speed, CpuSpeed) and q.cpu_speed.ratio == 0.63 and q.cpu_speed.threads == 2
    assert meta.quantization["model.fp16.onnx"].source_sha256 == "a" * 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        cpu8.top1 = 1.0  # type: ignore[misc]
    # through the real file: save, load, same records
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "model.onnx").write_bytes(b"onnx")
    ed = EngineDir(tmp_path / "e")
    ed.save_meta(meta)
    again = ed.load_meta()
    assert again.accuracy == meta.accuracy and again.quantization == meta.quantization
    assert json.loads(ed.meta_path.read_text()) == CALIBRATED


def test_export_row_is_the_training_figure() -> None:
    row = EngineMeta.from_dict(copy.deepcopy(EXPORTED)).accuracy["fp32"]
    assert row == AccuracyEntry.from_training(0.9583, "data/synthetic")
    assert row.from_training_run and row.source == TRAINING_SOURCE and row.file is None
    # a checkpoint without a top-1 or a data folder (scripts/make_bench_engine.py) still writes both keys, as null
    assert AccuracyEntry.from_training(None, None).to_dict() == {"top1": None, "source": TRAINING_SOURCE, "data": None}


def test_missing_and_unknown_keys_are_tolerated() -> None:
    old = copy.deepcopy(EXPORTED)
    old["accuracy"] = {
        "int8.cpu": {"top1": 0.4321, "agreement": 0.97},  # a hand-written row: only what it has
        "fp16": {**CALIBRATED["accuracy"]["fp16"], "note": "from a newer tool"},
    }
    old["quantization"] = {"model.fp16.onnx": {"tool": "cast", "recipe": "r1", "future_field": [1, 2]}}
    del old["builds"]
    meta = EngineMeta.from_dict(old)
    assert meta.accuracy["int8.cpu"].top1 == 0.4321 and meta.accuracy["int8.cpu"].n is None
    assert meta.accuracy["fp16"].extra == {"note": "from a newer tool"}
    q = meta.quantization["model.fp16.onnx"]
    assert (q.tool, q.version, q.recipe, q.cpu_speed, q.extra) == ("cast", "", "r1", None, {"future_field": [1, 2]})
    out = meta.to_dict()
    assert out["accuracy"] == old["accuracy"]  # unknown keys survive, no null keys invented
    assert out["quantization"]["model.fp16.onnx"] == {
        "tool": "cast",
        "version": "",
        "recipe": "r1",
        "settings": {},
        "created": "",
        "future_field": [1, 2],
    }
    assert out["builds"] == {}  # a section missing from an old file is written with its default


def test_a_row_that_is_not_an_object_is_a_damaged_file(tmp_path: Path) -> None:
    bad = copy.deepcopy(EXPORTED)
    bad["accuracy"]["fp32"] = 0.95
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "e" / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(
        UserError, match=r"meta.json' is damaged \(TypeError: AccuracyEntry expects a JSON object, got float\)"
    ):
        EngineDir(tmp_path / "e").load_meta()
