"""Export from torchvision-format weights (no training), with torchvision's resize-then-crop preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_app.compile.from_weights import WeightsSource, export_weights
from edge_app.engine_dir import EngineDir, InputSpec
from edge_app.errors import UserError
from edge_app.geometry import resize_to_input
from edge_app.models import create_model
from edge_app.runtime import open_engine
from tests.helpers import photos


@pytest.fixture(scope="module")
def r18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision-format resnet18 weights with 1000 outputs (random: no weights can be downloaded here)."""
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(create_model("resnet18", num_classes=1000).eval().state_dict(), p)
    return p


def test_resize_then_centre_crop_is_torchvisions_geometry() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[:, 150:] = 255  # right half white: the crop's centre column sits on the edge
    spec = InputSpec(64, 64, resize="center_crop", resize_size=73)
    out = resize_to_input(img, spec)
    assert out.shape == (64, 64, 3)
    # shorter side 200 -> 73, longer 300 -> int(73 * 300 / 200) = 109; crop offset round((109 - 64) / 2) = 22
    ref = cv2.resize(img, (109, 73), interpolation=cv2.INTER_AREA)[4:68, 22:86]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"resize_size": 60}, "resize_size 60 is smaller than the crop 64x64"),
        ({"resize": "stretch", "resize_size": 80}, "applies to the center_crop policy only"),
    ],
)
def test_bad_resize_sizes(kw: dict, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        InputSpec(64, 64, **{"resize": "center_crop", **kw})


def test_export_from_weights_runs_on_real_photographs(r18_weights: Path, tmp_path: Path) -> None:
    src = WeightsSource("resnet18", r18_weights, labels="imagenet", img=64, resize_size=73)
    r = export_weights(src, "r18", tmp_path / "engines")
    assert not r.cached and r.parity.max_abs_diff < 1e-3
    ed = EngineDir(r.engine)
    meta = ed.load_meta()
    assert meta.arch == "resnet18" and len(meta.labels) == 1000 and meta.labels[0] == "tench"
    assert meta.input.resize == "center_crop" and meta.input.resize_size == 73
    assert meta.weights_sha256 == r.meta.weights_sha256 and ed.checkpoint_path.is_file()
    assert "fp32" not in meta.accuracy  # nothing measured: no validation set came with the weights
    imgs = [cv2.imread(str(p)) for p in photos(tmp_path / "photos")]
    batch = np.stack([resize_to_input(im, meta.input) for im in imgs])
    with (
        open_engine(r.engine, "torch", "fp32", "cpu") as ref,
        open_engine(r.engine, "onnxruntime", "fp32", "cpu") as ort,
    ):
        a, b = ref.infer(batch)["logits"], ort.infer(batch)["logits"]
    assert a.shape == (len(imgs), 1000)
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert export_weights(src, "r18", tmp_path / "engines").cached  # same weights and settings: nothing written


def test_weights_that_do_not_fit_name_the_arch_that_would(r18_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match="do not fit resnet34 .*missing 'layer1.2.conv1.weight'.*these weights fit --arch resnet18"
    ):
        export_weights(WeightsSource("resnet34", r18_weights, img=64, resize_size=73), "x", tmp_path)
    assert not (tmp_path / "x" / "model.onnx").exists()


def test_label_count_must_match(r18_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="3 labels were given but the weights .* have 1000 outputs"):
        export_weights(WeightsSource("resnet18", r18_weights, labels="a,b,c", img=64, resize_size=73), "x", tmp_path)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"img": 100}, "img 100 must be a multiple of 32"),
        ({"arch": "resnet7"}, "arch 'resnet7' is unknown"),
        ({"std": (0.2, 0.0, 0.2)}, "must be positive"),
    ],
)
def test_bad_settings(r18_weights: Path, kw: dict, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        WeightsSource(**{"arch": "resnet18", "weights": r18_weights, **kw})


def test_cli_export_from_weights_and_its_bad_input(
    r18_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_app.cli import main

    eng = str(tmp_path / "engines")
    assert (
        main(
            [
                "export",
                "--name",
                "r",
                "--engines",
                eng,
                "--weights",
                str(r18_weights),
                "--arch",
                "resnet18",
                "--img",
                "64",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "exported:" in out and "resnet18, 1000 classes, 64x64 input, resize 73 + centre crop" in out
    )  # 256/224 of the crop
    cases = [
        (
            ["r.pt", "--weights", str(r18_weights), "--arch", "resnet18"],
            "either a checkpoint or --weights/--pretrained, not both",
        ),
        ([], "nothing to export; pass a checkpoint"),
        (["--weights", str(r18_weights)], "--arch is needed with --weights/--pretrained"),
        (
            ["--weights", str(r18_weights), "--arch", "resnet18", "--labels", "a,b"],
            "2 labels were given .* 1000 outputs",
        ),
        (
            ["--weights", str(r18_weights), "--arch", "resnet18", "--img", "64", "--resize", "-1"],
            "--resize -1 must be 0",
        ),
        (["--weights", str(tmp_path / "none.pth"), "--arch", "resnet18"], "weights file '.*none.pth' does not exist"),
    ]
    for argv, msg in cases:
        assert main(["export", *argv, "--name", "bad", "--engines", eng]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert __import__("re").search(msg, err), err
    assert not (tmp_path / "engines" / "bad" / "model.onnx").exists()
