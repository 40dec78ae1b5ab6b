"""torchvision's COCO detectors to an engine folder (``tv_detect``): export --weights through the CLI, bad input,
calibration with the decode and NMS kept FP32, and detect mode's class filter and N/A ids.

The weights are small random versions (ResNet-18 body, 32 FPN channels) with torchvision's keys, saved in
tmp_path: export reads the body and FPN width from the file, so they take the same path as torchvision's
ResNet-50 files, at 128 px in seconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
from edge_app.engine_dir import EngineDir
from edge_app.errors import FieldError
from edge_app.frames.modes.base import make_labeller
from edge_app.frames.modes.detect import DetectConfig
from edge_app.models.labels import coco_labels
from edge_app.models.registry import create_model
from edge_app.runtime import open_engine
from tests.cli.runner import assert_user_error, run_cli
from tests.helpers import photos
from tests.models.test_tv_detectors import tiny

COCO = 91


def _tiny_file(tmp: Path, arch: str) -> Path:
    path = tmp / f"{arch}.pth"
    if not path.is_file():
        import tests.models.test_tv_detectors as t

        old, t.NUM_CLASSES = t.NUM_CLASSES, COCO
        try:
            torch.save(tiny(arch).state_dict(), path)
        finally:
            t.NUM_CLASSES = old
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tv")


@pytest.fixture(scope="module")
def fcos_engine(work: Path) -> Path:
    w = _tiny_file(work, "fcos_resnet50_fpn")
    r = run_cli(
        "export", "--weights", str(w), "--arch", "fcos_resnet50_fpn", "--labels", "coco", "--img", "128",
        "--name", "fcos", "--engines", str(work / "engines"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "task tv_detect" in r.stdout and "letterbox" in r.stdout
    return work / "engines" / "fcos"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_export_writes_a_tv_detect_engine(fcos_engine: Path) -> None:
    meta = EngineDir(fcos_engine).load_meta()
    assert meta.task == "tv_detect" and meta.arch == "fcos_resnet50_fpn" and meta.outputs == ["dets"]
    assert meta.labels == list(coco_labels()) and len(meta.labels) == COCO
    assert meta.threshold == 0.2  # torchvision's FCOS score threshold
    spec = meta.input
    assert (spec.height, spec.width, spec.resize) == (128, 128, "letterbox")
    # round(mean * 255) in BGR: normalises to ~0, as torchvision's zero padding of the normalised batch
    assert spec.pad == (104, 116, 124)
    assert meta.extra["tv_detector"]["body"] == "resnet18" and meta.extra["tv_detector"]["nms_iou"] == 0.6
    assert meta.parity["max_abs_diff"] <= meta.parity["tolerance"]
    model = onnx.load(str(fcos_engine / "model.onnx"))
    assert [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim] == ["batch", 100, 6]
    assert "NonMaxSuppression" in meta.extra["ops"]


@pytest.mark.parametrize("arch", ["retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"])
def test_export_retinanets(work: Path, arch: str) -> None:
    r = run_cli(
        "export", "--weights", str(_tiny_file(work, arch)), "--arch", arch, "--img", "128", "--name", arch,
        "--engines", str(work / "engines"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = EngineDir(work / "engines" / arch).load_meta()
    assert meta.threshold == 0.05 and len(meta.labels) == COCO  # --labels defaults to coco for detectors


def test_bad_input_is_one_sentence_and_keeps_the_folder(work: Path, fcos_engine: Path) -> None:
    before = _digest(fcos_engine)
    classifier = work / "resnet18.pth"
    torch.save(create_model("resnet18", num_classes=10).state_dict(), classifier)
    good = _tiny_file(work, "fcos_resnet50_fpn")
    cut = work / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    retina = _tiny_file(work, "retinanet_resnet50_fpn_v2")
    base = ["export", "--arch", "fcos_resnet50_fpn", "--name", "fcos", "--engines", str(work / "engines")]
    cases = [
        (
            ["--weights", str(retina), "--img", "128"],
            r"holds retinanet_resnet50_fpn_v2 weights .*not fcos_resnet50_fpn",
        ),
        (["--weights", str(classifier), "--img", "128"], r"holds a ResNet classifier \(key 'fc.weight'\)"),
        (["--weights", str(cut), "--img", "128"], r"is not a PyTorch weights file"),
        (["--weights", str(good), "--img", "100"], r"--img 100 must be a multiple of 32 and at least 128"),
        (["--weights", str(good), "--img", "96"], r"--img 96 must be a multiple of 32 and at least 128"),
        (["--weights", str(good), "--img", "128", "--labels", "a,b,c"], r"3 labels .* has 91 class ids; pass 91"),
    ]
    for extra, match in cases:
        assert_user_error(run_cli(*base, *extra), match)
    assert _digest(fcos_engine) == before


def test_calibrate_keeps_decode_and_nms_fp32(work: Path, fcos_engine: Path) -> None:
    imgs = photos(work / "photos")
    r = run_calibrate(
        fcos_engine,
        CalibrateConfig(images=str(imgs[0].parent), num=8, cache_dir=str(work / "cal"), speed=False, progress=False),
        say=lambda s: None,
    )
    assert set(r.report) == {"fp32", "fp16", "int8.trt", "int8.cpu"}
    assert r.report["fp32"].extra["map50"] > 0.9  # fp32 against its own detections
    for f in ("model.fp16.onnx", "model.int8.trt.onnx"):
        m = onnx.shape_inference.infer_shapes(onnx.load(str(fcos_engine / f)))
        nms = next(n for n in m.graph.node if n.op_type == "NonMaxSuppression")
        types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
        assert types[nms.input[0]] == onnx.TensorProto.FLOAT, f  # boxes into NMS stay FP32
    cpu = onnx.load(str(fcos_engine / "model.int8.cpu.onnx"))
    q_inputs = {n.input[0] for n in cpu.graph.node if n.op_type == "QuantizeLinear"}
    convs = [n for n in cpu.graph.node if n.op_type == "Conv" and "cls_logits" in n.name]
    assert convs and not any(i in q_inputs for c in convs for i in c.input)  # head last convs float
    from edge_app.compile.files import open_model_file

    ed = EngineDir(fcos_engine)
    with open_model_file(ed, ed.load_meta(), "fp16") as eng:  # ONNX Runtime runs the FP16 file as written
        out = eng.infer(np.zeros((1, 128, 128, 3), np.uint8))["dets"]
    assert out.shape == (1, 100, 6) and out.dtype == np.float32


def test_detect_mode_drops_na_ids_and_filters_classes(fcos_engine: Path) -> None:
    names = list(coco_labels())
    dets = np.zeros((1, 100, 6), np.float32)
    for row, (cls, score) in enumerate([(names.index("person"), 0.9), (12, 0.8), (names.index("car"), 0.7)]):
        dets[0, row] = [10, 10, 50, 50, score, cls]  # 12 is an N/A gap
    assert names[12] == "N/A"
    frame = np.zeros((128, 128, 3), np.uint8)
    with open_engine(fcos_engine, "onnxruntime", "fp32", "cpu") as eng:
        every = make_labeller(eng, "detect").decode({"dets": dets}, [frame.shape[:2]])[0]
        assert [lb.name for lb in every] == ["person", "car"]
        cars = make_labeller(eng, "detect", DetectConfig(classes=("car",))).decode({"dets": dets}, [(128, 128)])[0]
        assert [lb.name for lb in cars] == ["car"]
        with pytest.raises(FieldError, match=r"'kat' is not a class of engine 'fcos'; it has 80 classes, e.g. person"):
            make_labeller(eng, "detect", DetectConfig(classes=("person", "kat")))
        with pytest.raises(FieldError, match=r"'N/A' is not a class"):
            make_labeller(eng, "detect", DetectConfig(classes=("N/A",)))


def test_classes_flag_on_the_command_line(work: Path, fcos_engine: Path) -> None:
    img = photos(work / "p2")[0]
    r = run_cli("annotate", str(img), "--engine", str(fcos_engine), "--mode", "detect", "--classes", "person,kat",
                "--out", str(work / "ann"))  # fmt: skip
    assert_user_error(r, r"--classes 'kat' is not a class of engine 'fcos'; it has 80 classes")


def test_every_cpu_backend_returns_dets_by_name(fcos_engine: Path) -> None:
    """OpenVINO renamed the detector's output port ('/post/Concat_..._output_0'); every backend must give `dets`."""
    import numpy as np

    from edge_app.runtime import open_engine

    images = np.random.default_rng(0).integers(0, 255, (1, 128, 128, 3), dtype=np.uint8)
    got = {}
    for backend in ("onnxruntime", "openvino"):
        with open_engine(fcos_engine, backend, "fp32", "cpu") as eng:
            got[backend] = eng.infer(images)["dets"]
    assert got["openvino"].shape == got["onnxruntime"].shape
    np.testing.assert_allclose(got["openvino"][..., 4], got["onnxruntime"][..., 4], atol=1e-3)
