"""The detector network: in-graph decode against a NumPy reference, ONNX export (ops, parity), backbone keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.models import create_model, list_models
from edge_app.models.detector import DetectorModel, DetectorNet, decode, load_backbone_weights


def numpy_decode(
    heat_logits: np.ndarray, size: np.ndarray, offset: np.ndarray, in_w: int, in_h: int, k: int, agnostic: float = 1
) -> np.ndarray:
    """Reference CenterNet decode written plainly: 3x3 peak test, a peak out-scored by another class in its 3x3
    window scaled by ``agnostic``, top-k over class x cell, box from size/offset."""
    n, c, h, w = heat_logits.shape
    heat = 1 / (1 + np.exp(-heat_logits.astype(np.float64)))
    pad = np.pad(heat, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    window = np.array([pad[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    peak = window.max(axis=0)  # (n, c, h, w): each class map's own 3x3 maximum
    best = window.max(axis=(0, 2), keepdims=False)[:, None]  # (n, 1, h, w): every class's 3x3 maximum
    heat = np.where(peak == heat, heat, 0.0) * np.where(heat >= best, 1.0, agnostic)
    out = np.zeros((n, k, 6))
    for i in range(n):
        flat = heat[i].reshape(-1)
        order = np.argsort(-flat, kind="stable")[:k]
        for r, idx in enumerate(order):
            cls, pix = divmod(int(idx), h * w)
            y, x = divmod(pix, w)
            sx, sy = in_w / w, in_h / h
            cx, cy = (x + offset[i, 0, y, x]) * sx, (y + offset[i, 1, y, x]) * sy
            bw, bh = max(0.0, size[i, 0, y, x]) * sx, max(0.0, size[i, 1, y, x]) * sy
            out[i, r] = [
                np.clip(cx - bw / 2, 0, in_w),
                np.clip(cy - bh / 2, 0, in_h),
                np.clip(cx + bw / 2, 0, in_w),
                np.clip(cy + bh / 2, 0, in_h),
                flat[idx],
                cls,
            ]
    return out


@pytest.mark.parametrize(
    "shape,k,agnostic",
    [
        ((2, 3, 16, 16), 100, 1.0),
        ((1, 5, 8, 12), 100, 1.0),
        ((2, 1, 4, 4), 100, 1.0),
        ((1, 2, 16, 16), 7, 1.0),
        ((2, 3, 16, 16), 100, 0.5),
        ((1, 5, 8, 12), 100, 0.0),
        ((2, 1, 4, 4), 100, 0.0),  # one class: nothing to suppress
    ],
)
def test_decode_matches_numpy_reference(shape: tuple[int, int, int, int], k: int, agnostic: float) -> None:
    rng = np.random.default_rng(sum(shape))
    n, c, h, w = shape
    heat = rng.normal(0, 2, shape).astype(np.float32)  # continuous: no ties, so the order is defined
    size = rng.uniform(-1, 6, (n, 2, h, w)).astype(np.float32)  # negative sizes are clamped to 0
    off = rng.uniform(0, 1, (n, 2, h, w)).astype(np.float32)
    t = [torch.from_numpy(a) for a in (heat, size, off)]
    got = decode(*t, w * 4, h * 4, k, agnostic).numpy()
    ref = numpy_decode(heat, size, off, w * 4, h * 4, min(k, c * h * w), agnostic)
    assert got.shape == (n, min(k, c * h * w), 6)
    # Once the local maxima run out the rest score exactly 0, in no defined order: compare the peaks only.
    real = ref[..., 4] > 0
    np.testing.assert_allclose(got[real], ref[real], atol=1e-4)
    assert (got[~real][:, 4] == 0).all()
    assert (np.diff(got[..., 4], axis=1) <= 0).all()  # sorted, best first


def test_decode_suppresses_non_peaks() -> None:
    heat = torch.full((1, 1, 8, 8), -10.0)
    heat[0, 0, 3, 3], heat[0, 0, 3, 4] = 5.0, 4.0  # the neighbour is not a peak
    heat[0, 0, 6, 1] = 3.0
    d = decode(heat, torch.ones(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), 32, 32, 3).numpy()[0]
    assert d[0, 4] == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert d[1, 4] == pytest.approx(1 / (1 + np.exp(-3.0)))
    np.testing.assert_allclose(d[0, :4], [10, 10, 14, 14])  # cell (3,3) at stride 4, 1-cell box


def _two_classes_on_one_place() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmap logits: class 0 (score 0.9) and class 1 (0.6) peak at cell (3, 3), class 2 (0.5) at (4, 4), one
    cell from that pair, and class 1 (0.7) alone at (6, 1)."""
    heat = torch.full((1, 3, 8, 8), -10.0)
    heat[0, 0, 3, 3] = float(np.log(0.9 / 0.1))
    heat[0, 1, 3, 3] = float(np.log(0.6 / 0.4))
    heat[0, 2, 4, 4] = float(np.log(0.5 / 0.5))  # another class, in the 3x3 window of the pair
    heat[0, 1, 6, 1] = float(np.log(0.7 / 0.3))  # far from everything: untouched in every mode
    return heat, torch.ones(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)


@pytest.mark.parametrize(
    "agnostic,expected",
    [
        (1.0, [(0, 0.9), (1, 0.7), (1, 0.6), (2, 0.5)]),  # CenterNet: a box per class at one place
        (0.5, [(0, 0.9), (1, 0.7), (1, 0.3), (2, 0.25)]),  # the out-scored classes demoted below the best
        (0.0, [(0, 0.9), (1, 0.7)]),  # one box per place: a class-agnostic NMS of co-located peaks
    ],
)
def test_decode_agnostic_scales_co_located_peaks(agnostic: float, expected: list[tuple[int, float]]) -> None:
    d = decode(*_two_classes_on_one_place(), 32, 32, 6, agnostic).numpy()[0]
    got = [(int(c), round(float(s), 4)) for c, s in zip(d[:, 5], d[:, 4]) if s > 1e-3]
    assert got == [(c, pytest.approx(s, abs=1e-4)) for c, s in expected]


def test_agnostic_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="agnostic must be in 0..1.*got 1.5"):
        DetectorNet("resnet18", 3, width=8, base_width=8, agnostic=1.5)


def _random_heads(net: DetectorNet, seed: int = 0) -> DetectorNet:
    """Spread the freshly initialised heads so scores differ (a fresh net scores every cell ~0.01 alike)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (net.heat, net.size, net.offset):
            head[2].weight.normal_(0, 0.5, generator=g)
        net.heat[2].bias.zero_()  # scores near 0.5, where the sigmoid separates them best
    return net.eval()


@pytest.fixture(scope="module")
def tiny_net() -> DetectorModel:
    torch.manual_seed(0)
    net = _random_heads(DetectorNet("resnet18", 3, width=16, base_width=8))
    return DetectorModel(net, InputSpec(64, 96, resize="letterbox")).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_net: DetectorModel) -> bytes:
    from edge_app.compile.export import onnx_bytes
    from edge_app.models.tasks import get_task

    dims = get_task("detect").output_dims(tiny_net.net, InputSpec(64, 96))
    return onnx_bytes(tiny_net, 64, 96, "dets", dims)


def test_forward_shapes(tiny_net: DetectorModel) -> None:
    x = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        maps = tiny_net.forward_maps(x)
        dets = tiny_net(x)
    assert (
        maps.heat.shape == (2, 3, 16, 24) and maps.size.shape == (2, 2, 16, 24) and maps.offset.shape == (2, 2, 16, 24)
    )
    assert dets.shape == (2, 100, 6) and dets.dtype == torch.float32
    assert (dets[..., 0] <= dets[..., 2]).all() and (dets[..., 2] <= 96).all() and (dets[..., 3] <= 64).all()


def test_onnx_runtime_matches_pytorch(tiny_net: DetectorModel, tiny_onnx: bytes) -> None:
    import onnxruntime as ort

    from edge_app.compile.detect import compare_dets

    x = np.random.default_rng(1).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = tiny_net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(tiny_onnx, providers=["CPUExecutionProvider"]).run(["dets"], {"images": x})[0]
    assert got.shape == (3, 100, 6)
    c = compare_dets(ref, got)
    assert c.rows_compared > 150  # most rows are separated in score, so boxes are compared too
    assert c.max_abs_diff < 1e-3 and c.class_agree == 1.0


def test_exported_ops_are_standard(tiny_onnx: bytes) -> None:
    import onnx

    from edge_app.compile.detect import ALLOWED_OPS, FORBIDDEN_OPS, check_ops

    ops = set(check_ops(onnx.load_from_string(tiny_onnx)))
    assert ops <= ALLOWED_OPS and not ops & FORBIDDEN_OPS
    assert {"Resize", "MaxPool", "TopK", "GatherElements", "Conv"} <= ops
    assert "NonZero" not in ops and "ConvTranspose" not in ops


def test_agnostic_decode_exports_and_runs_on_onnx_runtime(tiny_net: DetectorModel) -> None:
    """The co-located peak factor is part of the graph (ReduceMax over classes), within the allowed ops and the
    TensorRT rules, and ONNX Runtime matches PyTorch with it."""
    import copy

    import onnx
    import onnxruntime as ort

    from edge_app.compile.detect import ALLOWED_OPS, check_ops, compare_dets
    from edge_app.compile.export import onnx_bytes
    from edge_app.models.tasks import get_task
    from edge_app.runtime.tensorrt.onnx_rules import check_trt_onnx

    model = copy.deepcopy(tiny_net)
    model.net.agnostic = 0.5
    data = onnx_bytes(model, 64, 96, "dets", get_task("detect").output_dims(model.net, InputSpec(64, 96)))
    proto = onnx.load_from_string(data)
    assert "ReduceMax" in check_ops(proto) and set(check_ops(proto)) <= ALLOWED_OPS
    assert check_trt_onnx(proto) == []
    x = np.random.default_rng(2).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        ref, per_class = model(torch.from_numpy(x)).numpy(), tiny_net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["dets"], {"images": x})[0]
    c = compare_dets(ref, got)
    assert c.max_abs_diff < 1e-3 and c.class_agree == 1.0
    assert not np.allclose(ref[..., 4], per_class[..., 4])  # the factor changed scores on these images


def test_images_feed_a_cast_first(tiny_onnx: bytes) -> None:
    import onnx

    g = onnx.load_from_string(tiny_onnx).graph
    consumers = [n for n in g.node if "images" in n.input]
    assert consumers and all(n.op_type == "Cast" for n in consumers)


def test_input_must_be_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorModel(DetectorNet("resnet18", 2, width=8, base_width=8), InputSpec(64, 80))


@pytest.mark.parametrize("arch", list_models())
def test_every_resnet_carries_a_detector(arch: str) -> None:
    net = DetectorNet(arch, 2, width=8, base_width=8).eval()
    with torch.no_grad():
        d = net(torch.zeros(1, 3, 64, 64))
    assert d.shape == (1, 100, 6)
    keys = {k.removeprefix("backbone.") for k in net.state_dict() if k.startswith("backbone.")}
    want = {k for k in create_model(arch).state_dict() if not k.startswith("fc.")}
    assert keys == want  # torchvision's names: ImageNet or classifier weights load by key


def test_backbone_loads_classifier_weights(tmp_path) -> None:
    src = create_model("resnet18", num_classes=6)
    torch.save({"model": src.state_dict()}, tmp_path / "cls.pt")
    net = DetectorNet("resnet18", 2, width=8)
    info = load_backbone_weights(net, str(tmp_path / "cls.pt"))
    assert info["backbone"] == "loaded"
    assert torch.equal(net.backbone.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    narrow = DetectorNet("resnet18", 2, width=8, base_width=16)
    with pytest.raises(UserError, match="base_width"):
        load_backbone_weights(narrow, str(tmp_path / "cls.pt"))
    with pytest.raises(UserError, match="resnet18"):
        load_backbone_weights(DetectorNet("resnet50", 2, width=8), str(tmp_path / "cls.pt"))
