"""torchvision's FCOS / RetinaNet v1 / v2 as project code: keys, loading, export, NMS semantics, bad weights.

Small random-weight versions (ResNet-18 body, 32 FPN channels, 128x128 input) keep every test to seconds; the
key-name checks build the real ResNet-50 layouts. Faithfulness to torchvision itself is measured by
``scripts/torchvision_detector_agreement.py`` (torchvision does not import in this environment).
"""

from __future__ import annotations

import io
import re
import warnings
from importlib import resources

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_app.compile.export import onnx_bytes
from edge_app.errors import UserError
from edge_app.models.registry import create_model
from edge_app.models.tv_detection import (
    TV_DETECTORS,
    OnnxNonMaxSuppression,
    TvDetector,
    TvDetectorGraph,
    build_tv_detector,
    load_tv_detector_weights,
    make_anchors,
)

try:
    from edge_app.runtime.tensorrt.onnx_rules import check_trt_onnx
except ImportError:  # before the runtime/tensorrt split
    from edge_app.compile.trt_rules import check_trt_onnx

ARCHS = tuple(TV_DETECTORS)
SIZE = 128
NUM_CLASSES = 5


def tiny(arch: str, seed: int = 0) -> TvDetector:
    """A small network whose heads fire on image content (torchvision's init scores every class 0.01)."""
    torch.manual_seed(seed)
    model = build_tv_detector(arch, num_classes=NUM_CLASSES, body="resnet18", fpn_channels=32, bn_eps=1e-5).eval()
    head = model.head
    with torch.no_grad():
        torch.nn.init.normal_(head.classification_head.cls_logits.weight, std=0.3)
        head.classification_head.cls_logits.bias.fill_(-2.0)
        torch.nn.init.normal_(head.regression_head.bbox_reg.weight, std=0.05)
        if arch.startswith("fcos"):
            head.regression_head.bbox_reg.bias.fill_(1.5)  # distances > 0: boxes, not points
            head.regression_head.bbox_ctrness.bias.fill_(1.0)
    return model


def images(batch: int, seed: int = 1) -> torch.Tensor:
    """Smooth random uint8 NHWC images (blocks, so features vary over the picture)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (batch, 3, 8, 8), generator=g, dtype=torch.uint8).float()
    big = torch.nn.functional.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize(
    ("arch", "present", "absent", "n_keys", "p6_in"),
    [
        (
            "fcos_resnet50_fpn",
            ["head.regression_head.bbox_ctrness.weight", "head.classification_head.conv.1.weight"],
            ["head.classification_head.conv.0.0.weight"],
            372,
            256,
        ),
        (
            "retinanet_resnet50_fpn",
            ["head.classification_head.conv.3.0.bias", "head.regression_head.bbox_reg.weight"],
            ["head.classification_head.conv.0.1.weight"],
            354,
            256,
        ),
        (
            "retinanet_resnet50_fpn_v2",
            ["head.classification_head.conv.0.1.weight", "head.regression_head.conv.3.1.bias"],
            ["head.classification_head.conv.0.0.bias"],
            362,
            2048,
        ),
    ],
)
def test_torchvision_key_names(arch: str, present: list[str], absent: list[str], n_keys: int, p6_in: int) -> None:
    # Key counts and names as torchvision 0.29's randomly initialised models write them (checked there).
    state = build_tv_detector(arch).state_dict()
    assert len(state) == n_keys
    common = [
        "backbone.body.conv1.weight",
        "backbone.body.layer4.2.bn3.running_var",
        "backbone.body.layer1.0.downsample.1.num_batches_tracked",
        "backbone.fpn.inner_blocks.0.0.weight",
        "backbone.fpn.layer_blocks.2.0.bias",
        "backbone.fpn.extra_blocks.p7.bias",
        "head.classification_head.cls_logits.weight",
    ]
    for key in common + present:
        assert key in state, key
    for key in absent + ["backbone.body.fc.weight"]:
        assert key not in state, key
    assert state["backbone.fpn.extra_blocks.p6.weight"].shape == (256, p6_in, 3, 3)
    anchors = 1 if arch.startswith("fcos") else 9
    assert state["head.classification_head.cls_logits.weight"].shape == (anchors * 91, 256, 3, 3)
    assert state["backbone.fpn.inner_blocks.0.0.weight"].shape == (256, 512, 1, 1)


def test_v2_parameter_count_is_torchvisions() -> None:
    # torchvision's weights metadata: num_params 38,198,935 (v2 keeps BatchNorm2d, so every parameter counts).
    assert sum(p.numel() for p in build_tv_detector("retinanet_resnet50_fpn_v2").parameters()) == 38_198_935


@pytest.mark.parametrize("arch", ARCHS)
def test_strict_round_trip_and_frozen_bn_files(arch: str, tmp_path) -> None:
    src, dst = tiny(arch, seed=0), tiny(arch, seed=1)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    report = load_tv_detector_weights(dst, path, arch)
    assert report["arch"] == arch
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    # Pretrained torchvision detectors use FrozenBatchNorm2d: no num_batches_tracked in the file.
    frozen = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_tv_detector_weights(tiny(arch, seed=2), frozen, arch)


def _pre_013(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Key names as torchvision < 0.13 wrote them: flat FPN blocks, flat RetinaNet towers (conv.{2i}.*).
    out = {}
    for k, v in state.items():
        if m := re.match(r"(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0\.(weight|bias)$", k):
            k = f"{m[1]}.{m[2]}"
        if m := re.match(r"(head\.\w+_head\.conv)\.(\d)\.0\.(weight|bias)$", k):
            k = f"{m[1]}.{2 * int(m[2])}.{m[3]}"
        out[k] = v
    return out


def test_pre_013_key_names_load() -> None:
    # The RetinaNet v1 COCO file (retinanet_resnet50_fpn_coco-eeacb38b.pth) predates torchvision 0.13.
    old = _pre_013(tiny("retinanet_resnet50_fpn").state_dict())
    assert "backbone.fpn.inner_blocks.0.weight" in old and "head.classification_head.conv.6.bias" in old
    dst = tiny("retinanet_resnet50_fpn", seed=3)
    load_tv_detector_weights(dst, old, "retinanet_resnet50_fpn")
    loaded = dst.state_dict()["head.classification_head.conv.3.0.bias"]
    assert torch.equal(loaded, old["head.classification_head.conv.6.bias"])


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_runtime_equals_pytorch_and_passes_trt_rules(arch: str) -> None:
    graph = TvDetectorGraph(tiny(arch), (SIZE, SIZE), max_det=50).eval()
    x = images(2)
    with torch.no_grad():
        ref = graph(x).numpy()
    assert ref.shape == (2, 50, 6) and ref.dtype == np.float32
    assert (ref[:, :, 4] > 0).sum(axis=1).min() >= 3, "the test network should detect something"
    model = onnx.load_from_string(onnx_bytes(graph, SIZE, SIZE, output_name="dets"))
    assert check_trt_onnx(model) == []
    assert "NonMaxSuppression" in {n.op_type for n in model.graph.node}
    # ONNX shape inference (what TensorRT and the rules check see) resolves K through the final Reshape.
    out = onnx.shape_inference.infer_shapes(model).graph.output[0]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [50, 6]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):  # dynamic batch axis
        got = sess.run(None, {sess.get_inputs()[0].name: batch.numpy()})[0]
        want = ref[: len(batch)]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got[:, :, 5], want[:, :, 5])
        np.testing.assert_allclose(got[:, :, 4], want[:, :, 4], atol=1e-4)
        np.testing.assert_allclose(got[:, :, :4], want[:, :, :4], atol=1e-3)
    real = ref[ref[:, :, 4] > 0]
    assert (real[:, 5] >= 0).all() and (real[:, 5] < NUM_CLASSES).all()
    assert (real[:, [0, 1]] >= 0).all() and (real[:, [2, 3]] <= SIZE).all()
    pad = ref[ref[:, :, 4] == 0]
    assert (pad == 0).all()


class _Nms(torch.nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return OnnxNonMaxSuppression.apply(boxes, scores, 10, 0.5, 0.05)


def test_nms_semantics_eager_and_onnx() -> None:
    boxes = torch.tensor([[[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]]], dtype=torch.float32)
    # Per-class score rows, one class per candidate: 0 and 1 overlap (IoU 0.68) in class 0; 2 is the same box
    # as 0 but class 1; 3 is far away in class 0; a score at the threshold is dropped (strictly greater).
    scores = torch.zeros(1, 2, 4)
    scores[0, 0, 0], scores[0, 0, 1], scores[0, 1, 2], scores[0, 0, 3] = 0.9, 0.8, 0.7, 0.05
    expected = {(0, 0, 0), (0, 1, 2)}
    eager = {tuple(r) for r in OnnxNonMaxSuppression.apply(boxes, scores, 10, 0.5, 0.05).tolist()}
    assert eager == expected
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the eager forward; the symbolic replaces it
        torch.onnx.export(_Nms(), (boxes, scores), buf, opset_version=17, dynamo=False, input_names=["b", "s"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = {tuple(r) for r in sess.run(None, {"b": boxes.numpy(), "s": scores.numpy()})[0].tolist()}
    assert got == expected


def test_anchor_constants_are_torchvisions() -> None:
    retina = make_anchors("retinanet_resnet50_fpn", (640, 640))
    assert [len(a) for a in retina] == [80 * 80 * 9, 40 * 40 * 9, 20 * 20 * 9, 10 * 10 * 9, 5 * 5 * 9]
    # size 32, aspect 0.5: w = 32 * sqrt(2), h = 32 / sqrt(2), rounded halves
    assert retina[0][0].tolist() == [-23.0, -11.0, 23.0, 11.0]
    assert retina[4][9].tolist() == (retina[4][0] + torch.tensor([128.0, 0.0, 128.0, 0.0])).tolist()
    fcos = make_anchors("fcos_resnet50_fpn", (608, 640))
    assert fcos[0][1].tolist() == [4.0, -4.0, 12.0, 4.0]
    # torchvision's strides are image size // grid size: 608 // 10 = 60 at P6, not 64
    assert fcos[3][10].tolist() == [-32.0, 60 - 32.0, 32.0, 60 + 32.0]


def test_coco_labels_are_torchvisions() -> None:
    text = resources.files("edge_app.models").joinpath("data/coco_labels.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    assert len(names) == 91 and names.count("N/A") == 10
    assert (names[0], names[1], names[3], names[90]) == ("__background__", "person", "car", "toothbrush")


def test_bad_weight_files(tmp_path) -> None:
    model = tiny("retinanet_resnet50_fpn_v2")
    classifier = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", num_classes=10).state_dict(), classifier)
    with pytest.raises(UserError, match=r"holds a ResNet classifier \(key 'fc.weight'\).*torchvision.models.detection"):
        load_tv_detector_weights(model, classifier, "retinanet_resnet50_fpn_v2")
    fcos = tmp_path / "fcos.pth"
    torch.save(tiny("fcos_resnet50_fpn").state_dict(), fcos)
    with pytest.raises(UserError, match=r"holds fcos_resnet50_fpn weights \(key 'head.regression_head.bbox_ctrness"):
        load_tv_detector_weights(model, fcos, "retinanet_resnet50_fpn_v2")
    truncated = tmp_path / "cut.pth"
    good = tmp_path / "good.pth"
    torch.save(model.state_dict(), good)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=r"'.*cut.pth' is not a PyTorch weights file"):
        load_tv_detector_weights(model, truncated, "retinanet_resnet50_fpn_v2")
    other = build_tv_detector("retinanet_resnet50_fpn_v2", num_classes=3, body="resnet18", fpn_channels=32)
    with pytest.raises(UserError, match=r"detector for 3 classes.*build it with num_classes=3"):
        load_tv_detector_weights(model, other.state_dict(), "retinanet_resnet50_fpn_v2")
    state = model.state_dict()
    del state["backbone.fpn.extra_blocks.p7.weight"]
    with pytest.raises(UserError, match=r"missing key 'backbone.fpn.extra_blocks.p7.weight'"):
        load_tv_detector_weights(model, state, "retinanet_resnet50_fpn_v2")
    with pytest.raises(UserError, match=r"weights file '.*nope.pth' does not exist"):
        load_tv_detector_weights(model, tmp_path / "nope.pth", "retinanet_resnet50_fpn_v2")


def test_bad_sizes_and_arch() -> None:
    model = tiny("fcos_resnet50_fpn")
    with pytest.raises(UserError, match=r"input size 100x128 is not a multiple of 32"):
        TvDetectorGraph(model, (100, 128))
    with pytest.raises(UserError, match=r"topk_candidates 2000 gives .* more than TensorRT's 5000"):
        TvDetectorGraph(model, (640, 640), topk_candidates=2000)
    with pytest.raises(UserError, match=r"unknown detector architecture 'yolo'"):
        build_tv_detector("yolo")
