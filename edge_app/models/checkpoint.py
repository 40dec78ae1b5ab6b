"""Checkpoints: the file format, atomic save, validated load, and rebuilding the network of any task.

Below training, export, the runtimes and evaluation alike: each of them reads checkpoints, none of them
should have to import the training loop to do it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write
from edge_app.models.tasks import Rebuilt, checkpoint_task, get_task

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


def model_from_checkpoint(ckpt: dict[str, Any]) -> Rebuilt:
    """Rebuild the bare network (eval mode), its input spec and labels from a checkpoint of any task.

    The checkpoint's ``task`` (none: a classifier) picks the descriptor that knows how (:mod:`edge_app.models.tasks`).
    """
    return get_task(checkpoint_task(ckpt)).rebuild(ckpt)
