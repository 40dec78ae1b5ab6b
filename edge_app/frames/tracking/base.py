"""The post-label step contract, the tracker registry and the trackers' shared settings.

A post-label step runs after a mode decoded a frame's labels and before annotators and sinks::

    step.update(source_id, frame_index, labels) -> labels   # per source: its own state for each source id
    step.reset(source_id)                                    # a new video / stream on that source
    step.frame_extra(source_id) -> dict                      # optional: keys added to this frame's JSON line

Trackers come first in a loop's list of steps (they set ``Label.track_id``), counters after them (they read
it). Trackers register by name, as modes do (``@register_tracker("bytetrack")``), and share one frozen
:class:`TrackerConfig`; :func:`cli_options` describes the flags a front end builds from it.

Every tracker updates its state from the values a JSON line stores (boxes to 0.1 px, scores to 5 decimals),
not from the engine's full-precision floats: replaying the lines of an interrupted run then feeds the tracker
bit-identical input and rebuilds bit-identical state, so a resumed run's IDs equal an uninterrupted run's.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from edge_app.errors import FieldError, shown
from edge_app.frames.results import Label

_NAME = re.compile(r"[a-z][a-z0-9_-]*")


@runtime_checkable
class PostLabelStep(Protocol):
    """A step of the frame loop after decoding: a tracker or a counter, with state kept per source."""

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """This frame's labels after the step (a tracker sets ``track_id``; a counter returns them unchanged)."""
        ...

    def reset(self, source_id: int) -> None:
        """Forget everything about ``source_id`` (a new video or stream starts there)."""
        ...


def merge_extras(steps: Sequence[Any], source_id: int) -> dict[str, Any]:
    """The JSON-line additions of every step that has ``frame_extra``; the ``counts`` of counters are merged."""
    out: dict[str, Any] = {}
    for step in steps:
        extra = getattr(step, "frame_extra", None)
        if extra is None:
            continue
        for key, value in extra(source_id).items():
            if key == "counts":  # one sub-dict per line/zone name, several counters share the key
                out.setdefault("counts", {}).update(value)
            else:
                out[key] = value
    return out


def run_steps(
    steps: Sequence[PostLabelStep], source_id: int, frame_index: int, labels: list[Label]
) -> tuple[list[Label], dict[str, Any]]:
    """Run ``steps`` in order on one frame; returns its labels and the extra keys for its JSON line."""
    for step in steps:
        labels = step.update(source_id, frame_index, labels)
    return labels, merge_extras(steps, source_id)


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TrackerConfig:
    """Settings of every tracker; each tracker has its own defaults (:func:`tracker_defaults`).

    The defaults here are ByteTrack's (Zhang et al. 2022, its MOT17 settings): detections at or above
    ``high_score`` are matched first, those between ``low_score`` and ``high_score`` only to tracks the first
    stage left unmatched (they keep occluded objects' IDs alive), and only a detection at or above
    ``activation`` starts a new track (ByteTrack's ``track_thresh + 0.1``).
    """

    activation: float = 0.6  # a detection must score this much to start a track
    high_score: float = 0.5  # first-stage (high) / second-stage (low) split
    low_score: float = 0.1  # below this a detection is ignored by the tracker (it still shows, without an ID)
    buffer: int = 30  # frames a lost track is kept for re-identification (1 s at 30 FPS, ByteTrack's track_buffer)
    match_iou: float = 0.2  # least overlap of a match (ByteTrack's match_thresh 0.8 is a cost, 1 - IoU)
    min_hits: int = 2  # consecutive matched frames before an ID is shown (hides one-frame false positives)
    class_aware: bool = True  # match only boxes of the same class: two classes crossing never swap IDs

    def __post_init__(self) -> None:
        for name in ("activation", "high_score", "low_score"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise FieldError(name, shown(v), "must be a score in [0, 1]")
        if self.low_score > self.high_score:
            raise FieldError(
                "low_score", shown(self.low_score), f"must not exceed high_score {shown(self.high_score)}; lower it"
            )
        if self.buffer < 0:
            raise FieldError("buffer", shown(self.buffer), "must be at least 0 frames")
        if not 0.0 < self.match_iou <= 1.0:
            raise FieldError("match_iou", shown(self.match_iou), "must be an overlap in (0, 1]")
        if self.min_hits < 1:
            raise FieldError("min_hits", shown(self.min_hits), "must be at least 1 frame")


@dataclass(frozen=True)
class CliOption:
    """One command-line flag of a tracker setting; ``argparse_kwargs`` are ready for ``add_argument``."""

    flag: str
    field: str  # the TrackerConfig field it sets ("" for --track itself)
    help: str
    type: type | None = None
    metavar: str | None = None
    action: str | None = None  # "store_false" for a boolean field turned off by the flag
    choices: tuple[str, ...] | None = None

    def argparse_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``parser.add_argument(self.flag, ...)``; None default: the tracker's own."""
        kw: dict[str, Any] = {"help": self.help, "dest": self.dest}
        if self.action:
            kw.update(action="store_const", const=False, default=None)
        else:
            kw.update(type=self.type, default=None, metavar=self.metavar)
            if self.choices:
                kw["choices"] = self.choices
        return kw

    @property
    def dest(self) -> str:
        """The argparse attribute: ``--track-buffer`` -> ``track_buffer``."""
        return self.flag.lstrip("-").replace("-", "_")


def cli_options() -> tuple[CliOption, ...]:
    """The tracker flags: ``--track NAME`` and one per :class:`TrackerConfig` field (default: the tracker's)."""
    return (
        CliOption(
            "--track", "", "give labels track IDs with this tracker (boxes modes)", str, "NAME", None, tracker_names()
        ),
        CliOption("--track-activation", "activation", "least score that starts a track", float, "SCORE"),
        CliOption("--track-high", "high_score", "score split of ByteTrack's two matching stages", float, "SCORE"),
        CliOption("--track-low", "low_score", "detections below this score are not tracked", float, "SCORE"),
        CliOption("--track-buffer", "buffer", "frames a lost track is kept for re-identification", int, "FRAMES"),
        CliOption("--track-iou", "match_iou", "least IoU between a track and its next box", float, "IOU"),
        CliOption("--track-min-hits", "min_hits", "consecutive frames before an ID is shown", int, "FRAMES"),
        CliOption("--track-any-class", "class_aware", "match boxes across classes", action="store_false"),
    )


def flag_names() -> dict[str, str]:
    """TrackerConfig field -> flag, for :meth:`FieldError.reworded`."""
    return {o.field: o.flag for o in cli_options() if o.field}


def config_from_options(name: str, values: Mapping[str, Any]) -> TrackerConfig:
    """Tracker ``name``'s defaults with the flags given in ``values`` (argparse dests; None: not given).

    A bad value raises :class:`FieldError` on the field; the CLI rewords it with :func:`flag_names`.
    """
    given = {o.field: values[o.dest] for o in cli_options() if o.field and values.get(o.dest) is not None}
    return dataclasses.replace(tracker_defaults(name), **given)


# ---------------------------------------------------------------------------------------------- geometry
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1,y1,x2,y2 boxes; 0 where a box has no area."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    # One (N, M) array per coordinate: numpy broadcasts a trailing axis of 2 about 5x slower than this.
    w = np.minimum(a[:, 2:3], b[:, 2]) - np.maximum(a[:, 0:1], b[:, 0])
    h = np.minimum(a[:, 3:4], b[:, 3]) - np.maximum(a[:, 1:2], b[:, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def stored_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``box`` as a JSON line stores it (``Label.to_dict``): 0.1 px."""
    return tuple(round(float(v), 1) for v in box)  # type: ignore[return-value]


def stored_score(score: float) -> float:
    """``score`` as a JSON line stores it: 5 decimals."""
    return round(score, 5)


# ---------------------------------------------------------------------------------------------- trackers
@dataclass
class Detections:
    """A frame's boxed labels as arrays, in the values a JSON line stores (see the module docstring)."""

    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int

    @classmethod
    def from_labels(cls, labels: Sequence[Label]) -> Detections:
        """Arrays of ``labels`` (all with boxes)."""
        n = len(labels)
        # Python's round, as json stores the value (numpy's rounds differently in rare half-way cases).
        boxes = np.array([round(float(v), 1) for lb in labels for v in lb.box], np.float64).reshape(n, 4)  # type: ignore[union-attr]
        scores = np.array([round(lb.score, 5) for lb in labels], np.float64)
        return cls(boxes, scores, np.array([lb.class_id for lb in labels], np.int64))


def _with_track_id(label: Label, track_id: int | None) -> Label:
    """A copy of a validated ``label`` with another track ID, without re-validating (0.1 ms less at 100 boxes)."""
    new = Label.__new__(Label)
    new.__dict__.update(label.__dict__)
    new.track_id = track_id
    return new


class Tracker(abc.ABC):
    """Base of the trackers: per-source state, labels in and out, ID numbering; subclasses write ``_update``.

    IDs start at 1 on each source and are handed out only when a track is shown (after ``min_hits`` frames),
    so shown IDs have no gaps. Labels without a box pass through untouched.
    """

    name: ClassVar[str] = ""  # set by @register_tracker
    defaults: ClassVar[TrackerConfig] = TrackerConfig()

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else type(self).defaults
        if not isinstance(self.config, TrackerConfig):
            raise FieldError("config", type(self.config).__name__, "is not a TrackerConfig; pass one or None")
        self._states: dict[int, Any] = {}

    @abc.abstractmethod
    def _new_state(self) -> Any:
        """A fresh per-source state."""

    @abc.abstractmethod
    def _update(self, state: Any, frame_index: int, dets: Detections) -> np.ndarray:
        """Advance ``state`` by one frame; returns one track ID per detection (-1: no ID shown)."""

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """The labels with ``track_id`` set on those that belong to a shown track (others: None)."""
        state = self._states.get(source_id)
        if state is None:
            state = self._states[source_id] = self._new_state()
        boxed = [i for i, lb in enumerate(labels) if lb.box is not None]
        ids = self._update(state, frame_index, Detections.from_labels([labels[i] for i in boxed]))
        out = list(labels)
        for i, tid in zip(boxed, ids.tolist()):
            lb = labels[i]
            track_id = tid if tid >= 0 else None
            if lb.track_id != track_id:
                out[i] = _with_track_id(lb, track_id)
        return out

    def reset(self, source_id: int) -> None:
        """Forget ``source_id``'s tracks; its next IDs start at 1 again."""
        self._states.pop(source_id, None)

    def reset_all(self) -> None:
        """Forget every source."""
        self._states.clear()


_TRACKERS: dict[str, type[Tracker]] = {}
_NOT_TRACKERS = frozenset({"base", "counting", "offline", "trails"})  # this package's other modules
T = TypeVar("T", bound=type[Tracker])


def register_tracker(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`Tracker` subclass the tracker called ``name`` (``--track name``)."""

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Tracker)):
            raise TypeError(f"@register_tracker('{name}') decorates a Tracker subclass, got {cls!r}")
        if not _NAME.fullmatch(name):
            raise ValueError(f"tracker name '{name}' must be lower-case letters, digits, '-' or '_'")
        old = _TRACKERS.get(name)
        if old is not None and old is not cls:
            raise ValueError(f"tracker '{name}' is already registered by {old.__module__}.{old.__qualname__}")
        cls.name = name
        _TRACKERS[name] = cls
        return cls

    return deco


@lru_cache(maxsize=1)
def _import_tracker_modules() -> None:
    """Import every module of this package once, so each registers its tracker."""
    import edge_app.frames.tracking as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name not in _NOT_TRACKERS:
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def tracker_names() -> tuple[str, ...]:
    """Every registered tracker."""
    _import_tracker_modules()
    return tuple(sorted(_TRACKERS))


def get_tracker(name: str) -> type[Tracker]:
    """The tracker class ``name``; a FieldError on 'tracker' listing the known ones otherwise."""
    _import_tracker_modules()
    if name not in _TRACKERS:
        raise FieldError("tracker", f"'{name}'", f"is unknown; choose one of {', '.join(sorted(_TRACKERS))}")
    return _TRACKERS[name]


def tracker_defaults(name: str) -> TrackerConfig:
    """The settings tracker ``name`` runs with when none are given."""
    return get_tracker(name).defaults


def build_tracker(name: str, config: TrackerConfig | None = None, **overrides: Any) -> Tracker:
    """Tracker ``name`` with ``config`` (None: its defaults), then ``overrides`` of single fields."""
    cls = get_tracker(name)
    cfg = config if config is not None else cls.defaults
    return cls(dataclasses.replace(cfg, **overrides) if overrides else cfg)
