"""User-facing errors.

Anything the user can fix (a bad path, a bad option, a file of the wrong kind) is raised as
:class:`UserError` with one sentence naming the bad value and the fix. The CLI prints that sentence and
exits non-zero; every other exception is a bug and keeps its traceback.

Configuration errors name the *field*, so each front end can name its own option: the library validates
every config dataclass once, in its ``__post_init__``, and raises :class:`FieldError` whose sentence starts
with the field (``top_k 0 must be at least 1``). A Ray worker or a Python caller never sees a command-line
flag; a front end that knows which option sets which field re-words the same sentence with
:meth:`FieldError.reworded` (``--top-k 0 must be at least 1``).
"""

from __future__ import annotations

from typing import Mapping


class UserError(Exception):
    """An error caused by input the user can correct; its message is shown without a traceback."""

    exit_code = 2


class FieldError(UserError):
    """A bad value of one config field: ``"<field> <value> <problem and fix>"``."""

    def __init__(self, field: str, value: str, problem: str) -> None:
        self.field, self.value, self.problem = field, value, problem
        super().__init__(self.sentence(field))

    def sentence(self, name: str) -> str:
        """The message with ``name`` (a field, or the flag that sets it) in front."""
        return f"{name} {self.value} {self.problem}"

    def reworded(self, names: Mapping[str, str]) -> UserError:
        """The same error naming ``names[field]`` (e.g. ``--top-k``); unchanged when the field is not in ``names``."""
        if self.field not in names:
            return self
        return UserError(self.sentence(names[self.field]))

    def __reduce__(self) -> tuple:
        # Exceptions pickle as cls(*args) with args == (message,); a worker process ships this one back whole.
        return (type(self), (self.field, self.value, self.problem))


def shown(value: object) -> str:
    """A value as a user wrote it: floats without trailing zeros (``2`` not ``2.0``), sequences comma-joined."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(shown(v) for v in value)
    return str(value)
