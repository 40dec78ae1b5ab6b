"""What ``bench`` is asked to do: :class:`BenchConfig`, validated once, and the parsers of its list fields.

Errors name the field (``duration -1 is negative ...``), never a command-line flag: a front end that knows
which option sets which field re-words them (:meth:`edge_app.errors.FieldError.reworded`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_app.errors import FieldError, shown


@dataclass(frozen=True)
class BenchConfig:
    """Options of ``bench``; defaults follow trtexec where a CPU does not need more."""

    warmup: float = 1.0  # seconds per variant and batch before measuring (trtexec: 0.2 s; ORT's thread pool and arena need longer on a CPU)
    duration: float = 3.0  # seconds of measured calls per variant and batch (trtexec's default)
    iterations: int = 10  # ... or at least this many calls, whichever takes longer (trtexec's default)
    batches: tuple[int, ...] = (1,)
    slice_s: float = 0.1  # one variant runs this long before the next takes over: short, so noise hits all alike
    backends: tuple[str, ...] | None = None  # None: every installed backend
    precisions: tuple[str, ...] | None = None  # None: every precision with a model file
    device: str = "auto"
    threads: int | None = (
        None  # CPU threads of every backend that takes a count (None: one per core, as `live` runs it)
    )
    dla_core: int | None = None  # TensorRT on Jetson: time the plan built for this DLA core (as `live --dla N`)
    cuda_graphs: bool = False  # TensorRT: replay each call as a CUDA graph (as `live --cuda-graph`)
    no_build: bool = False  # TensorRT: a missing plan is a skipped variant instead of a minutes-long build
    window: int = 100_000  # samples kept per variant; percentiles are exact up to this many calls, histogram beyond
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.warmup >= 0:  # `not >=` also refuses NaN
            raise FieldError(
                "warmup", shown(self.warmup), "is negative; give the warm-up in seconds, 0 or more (e.g. 1)"
            )
        if not self.duration >= 0:
            raise FieldError(
                "duration", shown(self.duration), "is negative; give the measuring time in seconds, 0 or more (e.g. 3)"
            )
        if self.iterations < 1:
            raise FieldError(
                "iterations", shown(self.iterations), "is below 1; give at least 1 measured call per variant"
            )
        if not self.batches:
            raise FieldError("batches", "(none)", "is empty; give one or more batch sizes, e.g. 1,8,32")
        for b in self.batches:
            if b < 1:
                raise FieldError("batches", shown(b), _NOT_A_BATCH)
        if not self.slice_s > 0:
            raise FieldError("slice_s", shown(self.slice_s), "must be greater than 0 seconds, e.g. 0.1")
        if self.threads is not None and self.threads < 1:
            raise FieldError("threads", shown(self.threads), "must be at least 1")
        if self.dla_core is not None and self.dla_core < 0:
            raise FieldError(
                "dla_core", shown(self.dla_core), "is not a DLA core; Jetson AGX Orin/Xavier have cores 0 and 1"
            )


_NOT_A_BATCH = "is not a batch size; use whole numbers of at least 1, e.g. 1,8,32"


def parse_batches(text: str, field: str = "batches") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)`` (repeats dropped); a bad entry is a FieldError on ``field`` naming it."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            b = int(part)
        except ValueError:
            raise FieldError(field, f"'{text}':", f"'{part}' is not a whole number; give sizes like 1,8,32") from None
        if b < 1:
            raise FieldError(field, shown(b), _NOT_A_BATCH)
        if b not in out:
            out.append(b)
    return tuple(out)


def parse_list(text: str | None, choices: tuple[str, ...], field: str) -> tuple[str, ...] | None:
    """``"a,b"`` -> ``("a", "b")`` checked against ``choices``; None stays None (meaning all)."""
    if text is None:
        return None
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    for s in items:
        if s not in choices:
            raise FieldError(field, f"'{s}'", f"is not known; choose from {', '.join(choices)}")
    return items
