"""Architecture registry: names -> builders, plus loading of torchvision-format weight files."""

from __future__ import annotations

import os
from typing import Callable

import torch

from edge_app.errors import UserError
from edge_app.models.resnet import BasicBlock, Bottleneck, ResNet

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
    the model's is skipped and left freshly initialised. Returns a short report of what happened.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights file '{path}' does not exist; pass the path of a saved state dict") from None
    except Exception as e:  # pickle errors, zip errors, unsupported globals: all mean "not a weights file"
        raise UserError(
            f"'{path}' is not a PyTorch weights file ({type(e).__name__}); "
            "save one with torch.save(model.state_dict(), path)"
        ) from None
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"'{path}' holds no state dict of tensors; save one with torch.save(model.state_dict(), path)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing = [k for k in own if not k.startswith("fc.") and k not in body]
    unexpected = [k for k in body if k not in own]
    mismatched = [k for k in body if k in own and tuple(body[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        bad = (missing or unexpected or mismatched)[0]
        raise UserError(
            f"weights file '{path}' does not fit {arch or 'this architecture'} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mis-shaped keys, "
            f"e.g. '{bad}'); pass --arch matching the weights"
        )
    head_ok = "fc.weight" in state and tuple(state["fc.weight"].shape) == tuple(own["fc.weight"].shape)
    if head_ok:
        body["fc.weight"], body["fc.bias"] = state["fc.weight"], state["fc.bias"]
    model.load_state_dict(body, strict=False)
    return {"weights": str(path), "head": "loaded" if head_ok else "replaced (class count differs)"}
