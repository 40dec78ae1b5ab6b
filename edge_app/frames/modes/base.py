"""The labeller contract: a mode is a :class:`Labeller` subclass with two hooks and its own frozen config,
registered by name (as timm's ``@register_model``)::

    @register_mode("classify")
    class ClassifyLabeller(Labeller):
        config_type = ClassifyConfig   # the mode's settings: a frozen dataclass validated in __post_init__
        task = "classify"              # the engine task it runs on (meta.json 'task')
        outputs = ("logits",)          # the engine outputs decode() reads

        def prepare(self, frames):            # frames -> (engine batch, context for decode)
        def decode(self, outputs, context):   # {output name: array} -> one label list per frame

A config declares its command-line options with :meth:`ModeConfig.cli_options` (typed :class:`ModeOption`
records: flag, field, parser, help; the default is the dataclass field's), so a front end builds the flags
and the config of every registered mode without naming one: a configurable mode is one file.

:meth:`Labeller.label` runs prepare -> ``engine.infer_batched`` -> decode and times the three stages (plus
the engine's own split, e.g. h2d/compute/d2h) in one place, so every mode reports the same timings to the
pipeline, ``bench`` and the detection evaluation. A mode refuses an engine of another task, or one that
lacks an output it reads, with one sentence naming the mode and the engine's task.

Modes live one per file in this package and are found by importing every module of it on the first lookup
(as the runtime backends are); a mode defined anywhere else (a test, a plugin) registers itself with the
same decorator when its module is imported.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np

from edge_app.engine_dir import EngineMeta
from edge_app.errors import FieldError, UserError, shown
from edge_app.frames.results import Label
from edge_app.runtime.base import Engine

# Engines exported before meta.json carried a task are classifiers: that is all the exporter made then.
DEFAULT_TASK = "classify"
_NAME = re.compile(r"[a-z][a-z0-9_-]*")


def engine_task(meta: EngineMeta) -> str:
    """The task meta.json declares ('classify', 'detect', ...); engines without one are classifiers."""
    return meta.task or DEFAULT_TASK


@dataclass(frozen=True)
class ModeOption:
    """One command-line option of a mode's config: the flag, the field it sets, how to read and describe it.

    The default is not repeated here: it is the config dataclass field's (:meth:`default_in`), so the help
    and the library cannot disagree. Two modes may declare the same flag (``--conf`` for tiles and detect)
    when they read it the same way (same ``type``); the front end then has one flag that each mode takes.
    """

    flag: str  # e.g. "--top-k"
    field: str  # the config field it sets, e.g. "top_k"
    help: str  # what the setting does, without its default (the front end adds the field's default)
    # Text -> the field's value; raises ValueError with a sentence on text it cannot read. The range is the
    # config's __post_init__ to check, so a bad value reads the same from a flag, a Python caller or a worker.
    type: Callable[[str], Any] = str
    metavar: str | None = None
    show: Callable[[Any], str] = shown  # a field value as the user writes it (the help's default)
    default_text: str | None = None  # the default in words where the field's value says nothing (None fields)

    @property
    def dest(self) -> str:
        """The argparse attribute: ``--top-k`` -> ``top_k``."""
        return self.flag.lstrip("-").replace("-", "_")

    def default_in(self, config_type: type[ModeConfig]) -> Any:
        """The default of :attr:`field` in ``config_type`` (a dataclass): its default or default factory's value."""
        for f in dataclasses.fields(config_type):
            if f.name == self.field:
                if f.default is not dataclasses.MISSING:
                    return f.default
                if f.default_factory is not dataclasses.MISSING:
                    return f.default_factory()
                raise TypeError(f"{config_type.__name__}.{f.name} has no default; a mode config needs one per field")
        raise TypeError(f"option {self.flag} sets '{self.field}', which is not a field of {config_type.__name__}")

    def describe_default(self, config_type: type[ModeConfig]) -> str:
        """The default as the help shows it: ``default_text``, or the field's default as the user writes it."""
        if self.default_text is not None:
            return self.default_text
        value = self.default_in(config_type)
        return "none" if value is None else self.show(value)


@dataclass(frozen=True)
class ModeConfig:
    """Base of every mode's settings: frozen (safe to share, to default and to pickle to a worker process).

    Subclasses validate in ``__post_init__`` and raise :class:`FieldError` naming the field, never a flag.
    A mode without settings uses this class itself. Every field has a default (the mode runs without flags).
    """

    @classmethod
    def cli_options(cls) -> tuple[ModeOption, ...]:
        """The command-line options of these settings; none by default (the mode runs with its defaults)."""
        return ()


@dataclass(frozen=True)
class StepTimings:
    """Milliseconds of one labelling step (a batch of frames), split by stage."""

    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    extra: Mapping[str, float] = field(default_factory=dict)  # the engine's own split, e.g. h2d/compute/d2h


class Labeller(abc.ABC):
    """An engine plus a mode's hooks; ``label(frames)`` -> one label list per frame and the step's timings.

    The engine is borrowed unless ``owns_engine`` (then :meth:`close` closes it): whoever opens an engine
    closes it.
    """

    mode: ClassVar[str] = ""  # set by @register_mode
    config_type: ClassVar[type[ModeConfig]] = ModeConfig
    task: ClassVar[str] = DEFAULT_TASK
    outputs: ClassVar[tuple[str, ...]] = ("logits",)

    def __init__(self, engine: Engine, config: ModeConfig | None = None, *, owns_engine: bool = False) -> None:
        self.config = type(self).resolve_config(config)
        self.engine = engine
        self.spec = engine.meta.input
        self.names = list(engine.meta.labels)
        self._owns_engine = owns_engine
        self._check_engine()
        self.setup()

    @classmethod
    def resolve_config(cls, config: ModeConfig | None) -> ModeConfig:
        """``config``, or this mode's defaults when None; the settings of another mode are an error."""
        if config is None:
            return cls.config_type()
        if not isinstance(config, cls.config_type):
            raise FieldError(
                "mode_config",
                type(config).__name__,
                f"does not configure mode '{cls.mode}'; pass a {cls.config_type.__name__} or None for its defaults",
            )
        return config

    def _check_engine(self) -> None:
        meta = self.engine.meta
        check_mode_task(self.mode, meta, self.task)
        missing = [o for o in self.outputs if o not in self.engine.outputs]
        if missing:
            raise FieldError(
                "mode",
                f"'{self.mode}'",
                f"reads the engine output {', '.join(missing)}, but engine '{meta.name}' "
                f"outputs {', '.join(self.engine.outputs) or 'nothing'}; re-export the engine folder",
            )

    # ------------------------------------------------------------------------------------------ hooks
    def setup(self) -> None:  # noqa: B027 - optional hook
        """Check what else the mode needs of the engine (raise FieldError on 'mode') and cache what it can."""

    @abc.abstractmethod
    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """BGR frames -> (the uint8 NHWC engine batch, whatever :meth:`decode` needs: sizes, tile layouts, ...)."""

    @abc.abstractmethod
    def decode(self, outputs: dict[str, np.ndarray], context: Any) -> list[list[Label]]:
        """The outputs this mode declared, for the whole batch -> one label list per frame (boxes in frame pixels)."""

    # ------------------------------------------------------------------------------------------ use
    def label(self, frames: list[np.ndarray]) -> tuple[list[list[Label]], StepTimings]:
        """Labels for each frame, and this step's stage timings; one batched engine call (chunked at its maximum)."""
        if not frames:
            return [], StepTimings()
        t0 = time.perf_counter()
        batch, context = self.prepare(frames)
        t1 = time.perf_counter()
        out = self.engine.infer_batched(batch)
        t2 = time.perf_counter()
        labels = self.decode({name: out[name] for name in self.outputs}, context)
        t3 = time.perf_counter()
        if len(labels) != len(frames):
            raise RuntimeError(f"mode '{self.mode}' decoded {len(labels)} label lists for {len(frames)} frames")
        return labels, StepTimings(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, dict(self.engine.last_timings or {})
        )

    def close(self) -> None:
        """Close the engine when this labeller opened it (:meth:`LabellerSpec.build`); safe to call twice."""
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> Labeller:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_mode_task(mode: str, meta: EngineMeta, want: str | None = None) -> None:
    """Raise :class:`FieldError` on 'mode' when ``mode`` (a labeller for ``want`` engines; None: the registered
    mode's task) does not run engines of ``meta``'s task."""
    want, task = want if want is not None else get_mode(mode).task, engine_task(meta)
    if task != want and _default_mode(task) != mode:
        fits = [f"'{n}'" for n, c in _registry().items() if c.task == task or n == _default_mode(task)]
        hint = f"modes for {task} engines: {', '.join(fits)}" if fits else f"no mode runs {task} engines"
        raise FieldError(
            "mode", f"'{mode}'", f"needs a {want} engine, but engine '{meta.name}' has task '{task}'; {hint}"
        )


def _default_mode(task: str) -> str | None:
    """The mode the task's descriptor names as showing its results (a task with no descriptor here: None).

    So a new task whose output an existing mode reads (``tv_detect``'s ``dets``) needs no change of that mode.
    """
    from edge_app.models.tasks import get_task

    try:
        return get_task(task).default_mode
    except UserError:  # an engine of a task this version does not know: only the mode's own task runs
        return None


# ---------------------------------------------------------------------------------------------- registry
_MODES: dict[str, type[Labeller]] = {}
L = TypeVar("L", bound=type[Labeller])


def register_mode(name: str) -> Callable[[L], L]:
    """Class decorator: make a :class:`Labeller` subclass the mode called ``name``."""

    def deco(cls: L) -> L:
        if not (isinstance(cls, type) and issubclass(cls, Labeller)):
            raise TypeError(f"@register_mode('{name}') decorates a Labeller subclass, got {cls!r}")
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"mode name '{name}' must be lower-case letters, digits, '-' or '_', starting with a letter"
            )
        ct = cls.config_type
        if not (
            isinstance(ct, type)
            and issubclass(ct, ModeConfig)
            and dataclasses.is_dataclass(ct)
            and ct.__dataclass_params__.frozen
        ):  # type: ignore[attr-defined]
            raise TypeError(f"mode '{name}': config_type must be a frozen dataclass subclassing ModeConfig, got {ct!r}")
        for opt in ct.cli_options():
            if not (isinstance(opt, ModeOption) and opt.flag.startswith("--")):
                raise TypeError(
                    f"mode '{name}': cli_options() must return ModeOption records with --flags, got {opt!r}"
                )
            opt.default_in(ct)  # a typo in a field name fails at registration, not when a user types the flag
        old = _MODES.get(name)
        if old is not None and old is not cls:
            raise ValueError(f"mode '{name}' is already registered by {old.__module__}.{old.__qualname__}")
        cls.mode = name
        _MODES[name] = cls
        return cls

    return deco


def unregister_mode(name: str) -> None:
    """Forget the mode ``name`` (a test's or plugin's); unknown names are ignored."""
    _MODES.pop(name, None)


@lru_cache(maxsize=1)
def _import_mode_modules() -> None:
    """Import every module of this package once, so each registers its mode."""
    import edge_app.frames.modes as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name != "base":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def _registry() -> dict[str, type[Labeller]]:
    _import_mode_modules()
    return _MODES


def mode_names() -> tuple[str, ...]:
    """Every registered mode, in registration order (this package's files are imported on the first lookup)."""
    return tuple(_registry())


def get_mode(name: str) -> type[Labeller]:
    """The Labeller class of mode ``name``; a FieldError on 'mode' listing the known ones otherwise."""
    modes = _registry()
    if name not in modes:
        raise FieldError("mode", f"'{name}'", f"is unknown; choose one of {', '.join(modes)}")
    return modes[name]


def resolve_config(mode: str, config: ModeConfig | None) -> ModeConfig:
    """The settings mode ``mode`` runs with: ``config``, or its defaults when None (validated on creation)."""
    return get_mode(mode).resolve_config(config)


def make_labeller(
    engine: Engine, mode: str = "classify", config: ModeConfig | None = None, *, owns_engine: bool = False
) -> Labeller:
    """The labeller of ``mode`` on ``engine`` with ``config`` (None: the mode's defaults)."""
    return get_mode(mode)(engine, config, owns_engine=owns_engine)
