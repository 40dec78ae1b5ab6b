"""The task descriptor: what the model floor knows about one task, registered by meta.json's ``task`` name.

timm registers model builders by name; here a *task* (classify, detect, ...) registers one descriptor that says
how to rebuild its network from a checkpoint, which module export traces (uint8 NHWC in, the task's outputs),
the outputs' names and layout, which ONNX nodes stay float when the rest is quantized to INT8, the labelling
mode that shows its results and its default score threshold.

Hooks that live on higher floors register per floor under the same name, because this floor may not import
them: the training loop and its config in :mod:`edge_app.training.tasks`, the export parity check and the
calibration accuracy report in :mod:`edge_app.compile.tasks`; the frame loop's modes name the task they run on
(``Labeller.task``). Adding a task is one descriptor here plus one hook module per floor that has a hook.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, NamedTuple, TypeVar

from torch import nn

from edge_app.engine_dir import DEFAULT_TASK, EngineMeta, InputSpec
from edge_app.errors import UserError

T = TypeVar("T", bound="Task")


class Rebuilt(NamedTuple):
    """A network rebuilt from a checkpoint (eval mode, normalised NCHW in), its input spec and labels.

    A NamedTuple so callers that unpack ``net, spec, labels = model_from_checkpoint(ckpt)`` keep working.
    """

    net: nn.Module
    spec: InputSpec
    labels: list[str]


class Task:
    """Base of every task descriptor; a subclass sets the class attributes and overrides the hooks it needs."""

    name: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]  # the exported graph's outputs, in meta.json's order
    default_mode: ClassVar[str]  # the frame loop's mode that shows this task's results
    # Rows/boxes below this score are not shown; None: the task has no score threshold (a classifier's top-1).
    default_threshold: ClassVar[float | None] = None
    # What export keeps of a checkpoint in the engine folder's slim checkpoint.pt (no optimiser state).
    checkpoint_keys: ClassVar[tuple[str, ...]]
    kept_float_note: ClassVar[str] = ""  # what :meth:`float_nodes` keeps float, for the quantization record

    def rebuild(self, ckpt: Mapping[str, Any]) -> Rebuilt:
        """The bare network of ``ckpt`` (eval mode), its input spec and labels."""
        raise NotImplementedError

    def graph(self, net: nn.Module, spec: InputSpec) -> nn.Module:
        """The module export traces and the PyTorch backend runs: uint8 (N,H,W,3) BGR in, :attr:`outputs` out."""
        raise NotImplementedError

    def output_dims(self, net: nn.Module, spec: InputSpec) -> tuple[str | int, ...] | None:
        """Dimensions of the single output to write into the ONNX graph where the tracer leaves them symbolic
        (None: keep the tracer's)."""
        return None

    def output_layout(self, net: nn.Module, spec: InputSpec) -> dict[str, Any] | None:
        """meta.json's description of the outputs for consumers (None: the output names say it all)."""
        return None

    def with_settings(self, ckpt: Mapping[str, Any], settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """``ckpt`` with export's task options applied (e.g. a detector's ``agnostic``); a UserError names any
        option this task does not have."""
        if settings:
            raise UserError(f"{', '.join(settings)} does not apply to a {self.name} checkpoint")
        return ckpt

    def meta_settings(self, ckpt: Mapping[str, Any]) -> dict[str, Any]:
        """Task-specific keys export writes into meta.json beside the common ones (e.g. a detector's head)."""
        return {}

    def float_nodes(self, model: Any) -> list[str]:
        """Names of nodes of ``model`` (onnx.ModelProto) to keep float when the rest is quantized to INT8."""
        return []

    def fp32_nodes(self, model: Any) -> list[str]:
        """Names of nodes of ``model`` that stay FP32 in the FP16 files too (model.fp16.onnx and the FP16 graph
        under model.int8.trt.onnx): e.g. a detector's box decode and NMS. None by default."""
        return []


_TASKS: dict[str, Task] = {}


def register_task(cls: type[T]) -> type[T]:
    """Class decorator: register one instance of ``cls`` under ``cls.name`` (meta.json's and the checkpoint's ``task``)."""
    if cls.name in _TASKS:
        raise ValueError(f"task '{cls.name}' is registered twice")
    _TASKS[cls.name] = cls()
    return cls


def task_names() -> list[str]:
    """Names accepted by :func:`get_task`, in registration order (the default task first)."""
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The descriptor of ``name``; a UserError listing the known ones for any other name."""
    if name not in _TASKS:
        raise UserError(f"unknown task '{name}'; choose one of: {', '.join(task_names())}")
    return _TASKS[name]


def checkpoint_task(ckpt: Mapping[str, Any]) -> str:
    """The task a checkpoint was trained for; checkpoints from before tasks existed are classifiers."""
    return str(ckpt.get("task") or DEFAULT_TASK)


def score_threshold(meta: EngineMeta) -> float:
    """The engine's own score threshold (chosen at training time), else its task's default, else 0."""
    if meta.threshold is not None:
        return float(meta.threshold)
    default = get_task(meta.task).default_threshold
    return float(default) if default is not None else 0.0
