"""Architecture registry: names -> builders, plus loading of torchvision-format weight files."""

from __future__ import annotations

import os
from typing import Callable

from edge_app.errors import UserError
from edge_app.models.resnet import BasicBlock, Bottleneck, ResNet
from edge_app.models.weights import check_fits, read_state_dict

_REGISTRY: dict[str, Callable[..., ResNet]] = {}


def register(fn: Callable[..., ResNet]) -> Callable[..., ResNet]:
    """Register a model builder under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


@register
def resnet18(num_classes: int = 1000, **kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, **kw)


@register
def resnet34(num_classes: int = 1000, **kw) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, **kw)


@register
def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, **kw)


@register
def resnet101(num_classes: int = 1000, **kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, **kw)


@register
def resnet152(num_classes: int = 1000, **kw) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), num_classes, **kw)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY, key=lambda n: int(n.removeprefix("resnet")))


def create_model(arch: str, num_classes: int = 1000, **kw) -> ResNet:
    """Build ``arch`` with a head of ``num_classes`` outputs."""
    if arch not in _REGISTRY:
        raise UserError(f"unknown architecture '{arch}'; choose one of: {', '.join(list_models())}")
    return _REGISTRY[arch](num_classes=num_classes, **kw)


def load_weights(model: ResNet, path: str | os.PathLike, arch: str = "") -> dict[str, str]:
    """Load a torchvision-format state dict (or a checkpoint holding one) into ``model``.

    The file is read with ``weights_only=True`` (no code execution). A head whose class count differs from
    the model's is skipped and left freshly initialised (fine-tuning to new classes). Returns a short report.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_fits(body, {k: v for k, v in own.items() if not k.startswith("fc.")}, arch or "this architecture", str(path))
    head_ok = "fc.weight" in state and tuple(state["fc.weight"].shape) == tuple(own["fc.weight"].shape)
    if head_ok:
        body["fc.weight"], body["fc.bias"] = state["fc.weight"], state["fc.bias"]
    model.load_state_dict(body, strict=False)
    return {"weights": str(path), "head": "loaded" if head_ok else "replaced (class count differs)"}
