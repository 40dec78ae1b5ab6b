"""Task descriptors: registry, defaults, rebuild dispatch, and meta.json's typed task fields (old files too)."""

from __future__ import annotations

import copy
import json

import pytest

from edge_app.compile.tasks import compile_hooks
from edge_app.engine_dir import DEFAULT_TASK, EngineMeta, InputSpec
from edge_app.errors import UserError
from edge_app.models.tasks import DEFAULT_THRESHOLD, checkpoint_task, get_task, score_threshold, task_names
from edge_app.training.tasks import get_trainer, trainable_tasks


def test_every_task_has_its_hooks_on_every_floor() -> None:
    assert task_names()[0] == DEFAULT_TASK == "classify" and {"detect", "tv_detect"} <= set(task_names())
    # Imported detectors are exported from their weights, not trained here: every task but tv_detect trains.
    assert list(trainable_tasks()) == [n for n in task_names() if n != "tv_detect"]
    for name in task_names():
        task = get_task(name)
        assert task.name == name and task.outputs and task.default_mode
        assert compile_hooks(name).task == name
    for name in trainable_tasks():
        assert get_trainer(name).task == name
    assert get_task("detect").default_threshold == DEFAULT_THRESHOLD and get_task("classify").default_threshold is None
    with pytest.raises(UserError, match="unknown task 'keypoints'; choose one of: classify, detect, tv_detect"):
        get_task("keypoints")
    with pytest.raises(UserError, match="cannot be trained here"):
        get_trainer("keypoints")


def test_checkpoints_without_a_task_are_classifiers() -> None:
    assert checkpoint_task({}) == "classify" and checkpoint_task({"task": "detect"}) == "detect"


def _meta(**kw: object) -> EngineMeta:
    return EngineMeta(name="e", arch="resnet18", labels=["a"], input=InputSpec(32, 32), **kw)  # type: ignore[arg-type]


def test_threshold_is_the_engines_else_the_tasks_default() -> None:
    assert score_threshold(_meta(task="detect", threshold=0.42)) == 0.42
    assert score_threshold(_meta(task="detect")) == DEFAULT_THRESHOLD
    assert score_threshold(_meta()) == 0.0


def test_typed_keys_passed_in_extra_are_lifted() -> None:
    m = _meta(extra={"task": "detect", "threshold": 0.5, "opset": 17})
    assert (m.task, m.threshold, m.extra) == ("detect", 0.5, {"opset": 17})


# A detector meta.json as export wrote it before the fields were typed (trailing keys in this order).
OLD_DET = {
    "name": "det",
    "arch": "resnet18",
    "labels": ["circle"],
    "input": {"height": 64, "width": 64, "layout": "NHWC", "dtype": "uint8", "color": "BGR",
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "letterbox"},
    "outputs": ["dets"],
    "checkpoint_sha256": "c" * 64,
    "files": {},
    "created": "",
    "parity": {},
    "calibration": None,
    "quantization": {},
    "accuracy": {},
    "builds": {},
    "version": 1,
    "task": "detect",
    "output_layout": {"dets": {"columns": ["x1", "y1", "x2", "y2", "score", "class"]}},
    "threshold": 0.35,
    "detector": {"width": 16},
    "checkpoint": "run/last.pt",
    "opset": 17,
    "ops": ["Conv"],
    "data_root": "synthetic",
}  # fmt: skip


def test_old_detector_meta_reads_typed_and_writes_back_the_same_bytes() -> None:
    m = EngineMeta.from_dict(copy.deepcopy(OLD_DET))
    assert (m.task, m.threshold, m.data_root, m.weights_sha256) == ("detect", 0.35, "synthetic", None)
    assert "task" not in m.extra and m.extra["opset"] == 17
    assert json.dumps(m.to_dict(), indent=2) == json.dumps(OLD_DET, indent=2)


def test_new_meta_states_its_task() -> None:
    assert _meta().to_dict()["task"] == "classify"
    assert "threshold" not in _meta().to_dict() and _meta(task="detect", threshold=0.3).to_dict()["threshold"] == 0.3
