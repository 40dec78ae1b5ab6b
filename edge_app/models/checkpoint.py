"""Checkpoints: the file format, atomic save, validated load, and rebuilding the network of any task.

Below training, export, the runtimes and evaluation alike: each of them reads checkpoints, none of them
should have to import the training loop to do it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write
from edge_app.models.detector import DetectorNet, build_detector
from edge_app.models.registry import create_model
from edge_app.models.resnet import ResNet

CHECKPOINT_FORMAT = "edge_app.checkpoint/1"


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device '{device}'; choose auto, cpu or cuda")
    return torch.device(device)


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Write a checkpoint atomically."""
    return atomic_write(path, lambda p: torch.save(ckpt, p))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate an edge_app checkpoint (``weights_only=True``: no code runs on load)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint '{p}' does not exist; train one with `python run.py train`")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"'{p}' is not a readable checkpoint ({type(e).__name__}); pass a best.pt or last.pt written by `python run.py train`"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"'{p}' is not an edge_app checkpoint; pass a best.pt or last.pt written by `python run.py train`"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[ResNet | nn.Module, InputSpec, list[str]]:
    """Rebuild the bare network (eval mode), its input spec and labels from a checkpoint.

    A classifier gives its ResNet; a detector (``"task": "detect"``) its DetectorNet, whose output is ``dets``.
    """
    if ckpt.get("task") == "detect":
        return detector_from_checkpoint(ckpt)
    labels = list(ckpt["labels"])
    model = create_model(ckpt["arch"], num_classes=len(labels))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, InputSpec(**ckpt["input"]), labels


def detector_from_checkpoint(ckpt: dict[str, Any]) -> tuple[DetectorNet, InputSpec, list[str]]:
    """Rebuild the :class:`DetectorNet` (eval mode; input normalised NCHW, output ``dets``), spec and labels."""
    labels = list(ckpt["labels"])
    d = ckpt["detector"]
    net = build_detector(
        ckpt["arch"], len(labels), width=d["width"], base_width=d["base_width"], max_dets=d["max_dets"]
    )
    net.load_state_dict(ckpt["model"])
    net.eval()
    return net, InputSpec(**ckpt["input"]), labels
