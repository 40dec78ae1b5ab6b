"""CenterNet-style detector on the project's ResNets, with the box decode inside the graph.

Network: a ResNet trunk (``backbone.*`` keys are torchvision's, so ImageNet weights or a classifier checkpoint of
this project initialise it), a small top-down neck that upsamples stride 32 -> 4 with nearest ``Resize`` + 3x3
``Conv`` (no ConvTranspose, no deformable convs: every runtime, TensorRT included, runs them) plus 1x1 lateral
connections from the stride 16/8/4 stages, and three heads at stride 4: a class heatmap (sigmoid), the box size
and the sub-cell centre offset (Zhou et al. 2019, "Objects as Points").

Decode (:func:`decode`) uses standard ONNX ops only: a 3x3 MaxPool peak test (Equal), with ``agnostic`` < 1 a
ReduceMax over classes that scales a peak another class out-scores at the same place, TopK (K=100, sorted),
integer Div/Mul/Sub for the cell indices, GatherElements for size and offset. No NonZero, so the output has a
fixed shape: ``dets`` float32 (N, K, 6) = x1, y1, x2, y2, score, class in input pixels, best first; rows past
the real detections have low scores, and score exactly 0 once the local maxima run out (filter on the score).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edge_app.engine_dir import InputSpec
from edge_app.models.preprocess import InGraphPreprocess
from edge_app.models.registry import create_model
from edge_app.models.resnet import ResNet

STRIDE = 4  # output stride of the heads: CenterNet's, small objects keep a cell of their own
MAX_DETS = 100  # K of the in-graph TopK: the fixed number of rows of ``dets``
# Class-agnostic suppression of co-located peaks. CenterNet's peak test is per class (a 3x3 local maximum of each
# class map), so one object can come out once per class that fires on it: several boxes at one place. The decode
# multiplies the score of a class peak that another class out-scores in its 3x3 window by ``agnostic``: 1 keeps
# CenterNet's per-class peaks, 0 drops the weaker classes (one box per place, a class-agnostic NMS), 0.5 demotes
# them below the best class. Training picks one of AGNOSTIC_CHOICES by validation mAP; export can override it.
AGNOSTIC_CHOICES = (1.0, 0.5, 0.0)
DETS_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class")
HEAT_PRIOR = 0.01  # initial heatmap probability (focal-loss prior, as RetinaNet/CenterNet): bias -log(99)


class DetMaps(NamedTuple):
    """Raw head outputs at stride 4: what the training loss sees."""

    heat: torch.Tensor  # (N, C, H/4, W/4) logits
    size: torch.Tensor  # (N, 2, H/4, W/4) box width, height in stride-4 cells
    offset: torch.Tensor  # (N, 2, H/4, W/4) centre offset within the cell, x and y, in cells


def narrow_resnet(arch: str, base_width: int = 64) -> ResNet:
    """``arch`` with stage widths base, 2x, 4x, 8x (64 = torchvision's). Keys stay torchvision's; only at 64
    do shapes match ImageNet weights. Narrow trunks are for CPU training on small tasks (16: ~10x faster)."""
    net = create_model(arch, num_classes=1, zero_init_residual=True)
    if base_width == 64:
        return net
    if base_width < 4:
        raise ValueError(f"base_width must be at least 4, got {base_width}")
    block, layers, norm = net.block, net.layers_cfg, net._norm_layer
    net.inplanes = base_width
    net.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm(base_width)
    net.layer1 = net._make_layer(block, base_width, layers[0])
    net.layer2 = net._make_layer(block, base_width * 2, layers[1], stride=2)
    net.layer3 = net._make_layer(block, base_width * 4, layers[2], stride=2)
    net.layer4 = net._make_layer(block, base_width * 8, layers[3], stride=2)
    net.num_features = base_width * 8 * block.expansion
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    for m in net.modules():  # zero-init residual: the same short-training help the classifier uses
        if hasattr(m, "bn3"):
            nn.init.constant_(m.bn3.weight, 0)
        elif hasattr(m, "bn2") and hasattr(m, "conv2"):
            nn.init.constant_(m.bn2.weight, 0)
    return net


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _head(width: int, out: int, bias: float = 0.0) -> nn.Sequential:
    h = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, out, 1))
    nn.init.normal_(h[2].weight, std=0.001)
    nn.init.constant_(h[2].bias, bias)
    return h


class DetectorNet(nn.Module):
    """Normalised (N,3,H,W) float -> ``dets`` (N,K,6); :meth:`forward_maps` gives the raw maps for training.

    ``H`` and ``W`` must be multiples of 32 (five stride-2 stages, then three 2x upsamplings back to stride 4).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        width: int = 64,
        base_width: int = 64,
        max_dets: int = MAX_DETS,
        agnostic: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.agnostic = check_agnostic(agnostic)
        self.arch, self.num_classes, self.width, self.base_width, self.max_dets = (
            arch,
            num_classes,
            width,
            base_width,
            max_dets,
        )
        self.backbone = narrow_resnet(arch, base_width)
        self.backbone.fc = nn.Identity()  # unused: no 'backbone.fc.*' keys, no dead parameters
        exp = self.backbone.block.expansion
        c2, c3, c4, c5 = (base_width * m * exp for m in (1, 2, 4, 8))
        self.top = _conv_bn_relu(c5, width)
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (c4, c3, c2)])
        self.smooth = nn.ModuleList([_conv_bn_relu(width, width) for _ in range(3)])
        self.heat = _head(width, num_classes, bias=-float(torch.log(torch.tensor((1 - HEAT_PRIOR) / HEAT_PRIOR))))
        self.size = _head(width, 2)
        self.offset = _head(width, 2)

    def forward_maps(self, x: torch.Tensor) -> DetMaps:
        """Raw head outputs (heatmap logits, size, offset) at stride 4."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        c2 = b.layer1(x)
        c3 = b.layer2(c2)
        c4 = b.layer3(c3)
        y = self.top(b.layer4(c4))
        for skip, lat, smooth in zip((c4, c3, c2), self.lateral, self.smooth):
            # Upsample to the skip's size: exports as Resize with int64 'sizes' (no float 'scales' input,
            # which an fp16 cast of the float tensors would break: ONNX wants scales in float32).
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = smooth(y + lat(skip))
        return DetMaps(self.heat(y), self.size(y), self.offset(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> ``dets`` (N, K, 6) in input pixels."""
        maps = self.forward_maps(x)
        return decode(maps.heat, maps.size, maps.offset, x.shape[-1], x.shape[-2], self.max_dets, self.agnostic)


def check_agnostic(agnostic: float) -> float:
    """``agnostic`` as a float if it is in 0..1, else a ValueError naming it."""
    if not 0.0 <= float(agnostic) <= 1.0:
        raise ValueError(f"agnostic must be in 0..1 (1: per-class peaks, 0: one class per place), got {agnostic}")
    return float(agnostic)


def decode(
    heat_logits: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    in_w: int,
    in_h: int,
    k: int = MAX_DETS,
    agnostic: float = 1.0,
) -> torch.Tensor:
    """CenterNet decode with standard ops only -> (N, K, 6) = x1, y1, x2, y2, score, class (input pixels).

    ``agnostic`` < 1 scales the score of a class peak that another class out-scores in its 3x3 window (see
    :data:`AGNOSTIC_CHOICES`; ReduceMax + MaxPool + Equal in the graph). The cell indices are integer
    arithmetic on TopK's int64 indices (Div/Mul/Sub, no Mod): exact at any map size, and left alone by an FP16
    cast of the float graph. Boxes are clipped to the input.
    """
    n, c, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits)
    peak = F.max_pool2d(heat, 3, stride=1, padding=1)
    keep = (peak == heat).to(heat.dtype)  # local maxima of each class map (a 3x3 NMS per class)
    if check_agnostic(agnostic) < 1.0:  # the best score of every class in the 3x3 window
        best = F.max_pool2d(heat.amax(dim=1, keepdim=True), 3, stride=1, padding=1)
        # best >= heat everywhere (it is a max over this class too), so Equal is the exact ">=" test.
        keep = keep * (agnostic + (1.0 - agnostic) * (best == heat).to(heat.dtype))
    heat = heat * keep
    k = min(k, c * h * w)
    scores, idx = torch.topk(heat.flatten(1), k, dim=1, largest=True, sorted=True)
    hw = h * w
    cls = torch.div(idx, hw, rounding_mode="trunc")  # idx >= 0: truncation is floor, and exports as a plain Div
    pix = idx - cls * hw
    ys = torch.div(pix, w, rounding_mode="trunc")
    xs = pix - ys * w
    gidx = pix.unsqueeze(1).expand(n, 2, k)
    wh = torch.gather(size.flatten(2), 2, gidx).clamp(min=0.0)  # GatherElements; x1 <= x2 even if a size is < 0
    off = torch.gather(offset.flatten(2), 2, gidx)
    sx, sy = in_w / w, in_h / h
    cx = (xs.to(heat.dtype) + off[:, 0]) * sx
    cy = (ys.to(heat.dtype) + off[:, 1]) * sy
    half_w, half_h = wh[:, 0] * (sx / 2), wh[:, 1] * (sy / 2)
    x1 = (cx - half_w).clamp(0.0, float(in_w))
    y1 = (cy - half_h).clamp(0.0, float(in_h))
    x2 = (cx + half_w).clamp(0.0, float(in_w))
    y2 = (cy + half_h).clamp(0.0, float(in_h))
    return torch.stack([x1, y1, x2, y2, scores, cls.to(heat.dtype)], dim=2)


class DetectorModel(nn.Module):
    """uint8 (N,H,W,3) BGR -> ``dets`` (N,K,6): the exact graph export writes; :meth:`forward_maps` for training."""

    def __init__(self, net: DetectorNet, spec: InputSpec) -> None:
        super().__init__()
        if spec.height % 32 or spec.width % 32:
            raise ValueError(f"detector input {spec.height}x{spec.width} must be a multiple of 32 on both sides")
        self.pre = InGraphPreprocess(spec.mean, spec.std)
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.pre(images))

    def forward_maps(self, images: torch.Tensor) -> DetMaps:
        """Raw maps of a uint8 batch (training)."""
        return self.net.forward_maps(self.pre(images))


build_detector = DetectorNet  # the registry-style builder name: same arguments, a DetectorNet


def load_backbone_weights(net: DetectorNet, path: str, arch: str = "") -> dict[str, str]:
    """Initialise the trunk from torchvision-format weights or a classifier checkpoint of this project.

    The classifier head (``fc``) is ignored; any other missing, unexpected or mis-shaped key is a UserError
    naming it (e.g. ImageNet weights into a narrow ``base_width``).
    """
    from edge_app.models.weights import check_fits, read_state_dict

    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    own = net.backbone.state_dict()
    what = arch or net.arch
    if net.base_width != 64:
        what += f" with base_width {net.base_width} (weights need base_width 64)"
    check_fits(state, own, what, str(path))
    net.backbone.load_state_dict(state)
    return {"weights": str(path), "backbone": "loaded", "head": "freshly initialised"}
