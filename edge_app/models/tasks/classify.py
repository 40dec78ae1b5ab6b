"""The ``classify`` task: a ResNet classifier, output ``logits`` (N, num_classes)."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from edge_app.engine_dir import DEFAULT_TASK, InputSpec
from edge_app.models.preprocess import PreprocessedModel
from edge_app.models.registry import create_model
from edge_app.models.tasks.base import Rebuilt, Task, register_task


@register_task
class Classify(Task):
    """Image classification: one label per image (or per tile, in tiles mode)."""

    name = DEFAULT_TASK
    outputs = ("logits",)
    default_mode = "classify"
    checkpoint_keys = ("format", "arch", "labels", "input", "model", "top1", "epoch")

    def rebuild(self, ckpt: Mapping[str, Any]) -> Rebuilt:
        labels = list(ckpt["labels"])
        model = create_model(ckpt["arch"], num_classes=len(labels))
        model.load_state_dict(ckpt["model"])
        model.eval()
        return Rebuilt(model, InputSpec(**ckpt["input"]), labels)

    def graph(self, net: nn.Module, spec: InputSpec) -> nn.Module:
        return PreprocessedModel(net, spec)
