"""In-graph preprocessing: the part of preprocessing that is traced into every ONNX file.

Only geometry happens on the host (:mod:`edge_app.frames.preprocess`). Everything numeric (cast, scale,
normalise, BGR->RGB, NHWC->NCHW) lives in :class:`InGraphPreprocess`, which is exported with the model and
also wraps the PyTorch model during training, so there is exactly one definition of preprocessing.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_app.engine_dir import InputSpec


class InGraphPreprocess(nn.Module):
    """uint8 (N,H,W,3) BGR -> float (N,3,H,W) RGB normalised, as one scale-and-shift per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # mean/std are in RGB order; forward() flips BGR->RGB before applying them.
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * s)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-m / s).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT's ONNX parser rejects UINT8 intermediate tensors ("TensorRT does not support
        # UINT8 types for intermediate tensors", onnx-tensorrt ModelImporter.cpp), so the uint8 input must
        # feed the Cast directly; a Transpose on uint8 would make its output such a tensor.
        x = images.to(self.scale.dtype).permute(0, 3, 1, 2)
        x = torch.flip(x, dims=[1])  # BGR -> RGB
        return x * self.scale + self.shift


class PreprocessedModel(nn.Module):
    """A classifier that takes raw uint8 NHWC BGR batches: the exact graph that is exported."""

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.pre = InGraphPreprocess(spec.mean, spec.std)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(images))
