from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edge_app.compile.classify import PARITY_TOLERANCE, Parity
from edge_app.compile.export import ExportResult, export
from edge_app.engine_dir import EngineDir
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.models.preprocess import InGraphPreprocess


def test_export_writes_onnx_and_meta_with_parity(tiny_engine) -> None:
    ed = EngineDir(tiny_engine)
    meta = ed.load_meta()
    assert meta.parity["max_abs_diff"] <= PARITY_TOLERANCE
    assert meta.labels[0] == "background" and meta.input.height == 32 and meta.input.layout == "NHWC"
    assert meta.files["model.onnx"] == sha256_file(ed.onnx_path())
    g = onnx.load(str(ed.onnx_path())).graph
    inp = g.input[0]
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 32, 32, 3]
    assert g.output[0].name == "logits"
    ops = {n.op_type for n in g.node}
    assert {"Cast", "Transpose"} <= ops  # preprocessing lives in the graph
    # TensorRT rejects UINT8 intermediate tensors: the uint8 input must feed the Cast, nothing else.
    assert [n.op_type for n in g.node if "images" in n.input] == ["Cast"]


def test_export_refuses_a_graph_tensorrt_would_reject_and_writes_nothing(
    tiny_checkpoint, tmp_path, monkeypatch
) -> None:
    """The old preprocessing (Transpose on uint8, then Cast) is caught by the TensorRT rules check in export."""

    def transpose_first(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.scale.dtype)
        return torch.flip(x, dims=[1]) * self.scale + self.shift

    monkeypatch.setattr(InGraphPreprocess, "forward", transpose_first)
    with pytest.raises(
        UserError,
        match=r"'model.onnx' breaks 2 TensorRT ONNX rule\(s\).*node '/pre/Transpose' \(Transpose\) "
        r"consumes the uint8 input 'images' directly",
    ):
        export(tiny_checkpoint, "old", tmp_path)
    assert not (tmp_path / "old" / "model.onnx").exists() and not (tmp_path / "old" / "meta.json").exists()


def test_export_is_cached_and_detects_a_new_checkpoint(tiny_checkpoint, tmp_path) -> None:
    r1 = export(tiny_checkpoint, "m", tmp_path)
    assert not r1.cached
    (tmp_path / "m" / "model.int8.cpu.onnx").write_bytes(b"stale")
    r2 = export(tiny_checkpoint, "m", tmp_path)
    assert r2.cached and r2.parity == r1.parity  # read back from meta.json
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["model"]["fc.bias"] += 1.0
    other = tmp_path / "other.pt"
    torch.save(ck, other)
    r3 = export(other, "m", tmp_path)
    assert not r3.cached
    assert not (tmp_path / "m" / "model.int8.cpu.onnx").exists()  # derived files of the old model removed


def test_in_graph_preprocessing_matches_the_reference_formula(rng) -> None:
    x = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = InGraphPreprocess(mean, std)(torch.from_numpy(x)).numpy()
    rgb = x[..., ::-1].astype(np.float32) / 255.0
    want = ((rgb - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_export_bad_inputs(tmp_path, tiny_checkpoint) -> None:
    with pytest.raises(UserError, match="not an edge_app checkpoint|not a readable checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"\x00" * 10)
        export(bad, "x", tmp_path)
    with pytest.raises(UserError, match="not a plain folder name"):
        export(tiny_checkpoint, "../evil", tmp_path)


def test_damaged_meta_is_reported(tiny_engine, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_engine, copy)
    (copy / "meta.json").write_text("{ not json")
    with pytest.raises(UserError, match="damaged"):
        EngineDir(copy).load_meta()
    assert json.loads((tiny_engine / "meta.json").read_text())["name"] == "tiny"


def test_export_result_is_typed_and_matches_meta(tiny_checkpoint, tmp_path) -> None:
    import dataclasses

    r = export(tiny_checkpoint, "typed", tmp_path)
    assert isinstance(r, ExportResult) and isinstance(r.parity, Parity)
    assert r.engine == tmp_path / "typed" and r.onnx == r.engine / "model.onnx" and r.onnx.is_file()
    assert r.parity.max_abs_diff <= r.parity.tolerance == PARITY_TOLERANCE and r.parity.batch == 4
    meta = EngineDir(r.engine).load_meta()
    assert meta.parity == r.parity.to_dict() == json.loads((r.engine / "meta.json").read_text())["parity"]
    assert r.meta.labels == meta.labels and r.meta.input == meta.input
    fp32 = meta.accuracy["fp32"]  # the checkpoint's validation top-1 until calibrate measures every model
    ck = torch.load(tiny_checkpoint, weights_only=True)
    assert fp32.from_training_run and fp32.top1 == ck["top1"] and fp32.data == ck["data_root"] and fp32.file is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.cached = True  # type: ignore[misc]
