"""The training floor's hook per task: task name -> :class:`~edge_app.training.common.Trainer` (loop and config).

Keyed by the names of :mod:`edge_app.models.tasks` (the models floor cannot import a training loop). Each loop
module ends in a ``TRAINER`` descriptor; a new task adds its module to the tuple below.
"""

from __future__ import annotations

from edge_app.errors import UserError
from edge_app.models.tasks import task_names
from edge_app.training import classify, detect
from edge_app.training.common import Trainer

_TRAINERS: dict[str, Trainer] = {t.task: t for t in (classify.TRAINER, detect.TRAINER)}


def trainable_tasks() -> list[str]:
    """Tasks that can be trained here, in the models floor's order (the default task first)."""
    return [n for n in task_names() if n in _TRAINERS]


def get_trainer(task: str) -> Trainer:
    """The training hooks of ``task``; a UserError naming the tasks that can be trained for any other."""
    if task not in _TRAINERS:
        raise UserError(f"task '{task}' cannot be trained here; choose one of: {', '.join(trainable_tasks())}")
    return _TRAINERS[task]
