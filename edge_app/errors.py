"""User-facing errors.

Anything the user can fix (a bad path, a bad option, a file of the wrong kind) is raised as
:class:`UserError` with one sentence naming the bad value and the fix. The CLI prints that sentence and
exits non-zero; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user can correct; its message is shown without a traceback."""

    exit_code = 2
