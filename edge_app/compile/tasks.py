"""The compile floor's hooks per task (:class:`~edge_app.compile.hooks.CompileHooks`), keyed by task name.

Keyed by the names of :mod:`edge_app.models.tasks`; each task's hook module ends in a ``HOOKS`` descriptor,
and a new task adds its module to the tuple below.
"""

from __future__ import annotations

from edge_app.compile import classify, detect, tv_detect
from edge_app.compile.hooks import CompileHooks
from edge_app.errors import UserError
from edge_app.models.tasks import task_names

_HOOKS: dict[str, CompileHooks] = {h.task: h for h in (classify.HOOKS, detect.HOOKS, tv_detect.HOOKS)}


def compile_hooks(task: str) -> CompileHooks:
    """The export and calibration hooks of ``task``; a UserError naming the tasks this floor knows otherwise."""
    if task not in _HOOKS:
        known = [n for n in task_names() if n in _HOOKS]
        raise UserError(f"task '{task}' cannot be exported or calibrated here; known tasks: {', '.join(known)}")
    return _HOOKS[task]
