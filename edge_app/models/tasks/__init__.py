"""Task descriptors, one per task, registered by meta.json's ``task`` name (see :mod:`.base`).

Importing this package registers every task of the model floor; a new task is one module here, imported below.
"""

from edge_app.models.tasks import classify, detect, tv_detect  # noqa: F401 - registers the tasks
from edge_app.models.tasks.base import (
    Rebuilt,
    Task,
    checkpoint_task,
    get_task,
    register_task,
    score_threshold,
    task_names,
)
from edge_app.models.tasks.detect import DEFAULT_THRESHOLD

__all__ = [
    "DEFAULT_THRESHOLD",
    "Rebuilt",
    "Task",
    "checkpoint_task",
    "get_task",
    "register_task",
    "score_threshold",
    "task_names",
]
