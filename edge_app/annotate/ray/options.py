"""What an ``annotate --ray`` run is told and what it reports: options, one job per file, outcomes, summaries.

Plain, picklable records: they cross between the driver and the workers (:mod:`.worker`, :mod:`.driver`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_app.errors import FieldError, shown

_ADDRESS = re.compile(r"^(auto|\[?[A-Za-z0-9_.:-]+\]?:\d{1,5})$")


@dataclass(frozen=True)
class RayOptions:
    """How the run uses Ray. Bad values raise :class:`FieldError` naming the field."""

    address: str | None = None  # None: start a local Ray instance sized to this machine; 'auto' or HOST:PORT: join
    workers: int = 0  # actors in the pool; 0: one per node (each holds one labeller)
    max_attempts: int = 3  # tries per file; a lost worker or node costs one

    def __post_init__(self) -> None:
        if self.address is not None and not _ADDRESS.match(self.address):
            hint = (
                "it names a file: put the inputs before --ray, or give the address first"
                if Path(self.address).exists()
                else "use auto or HOST:PORT of a cluster's head, e.g. 10.0.0.5:6379"
            )
            raise FieldError("address", f"'{self.address}'", f"is not a Ray address; {hint}")
        for name, low, fix in (("workers", 0, "0 = one per node"), ("max_attempts", 1, "e.g. 3")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise FieldError(name, shown(v), f"is not a whole number; {fix}")
            if v < low:
                raise FieldError(name, shown(v), f"must be at least {low}; {fix}")


@dataclass(frozen=True)
class FileJob:
    """One input and its outputs, as absolute paths (workers run in other folders)."""

    index: int
    video: str
    out_video: str
    out_jsonl: str
    resume: bool = False


@dataclass(frozen=True)
class WorkerOutcome:
    """What one attempt at one file did, as the worker saw it (counts include restored frames, as AnnotateResult's)."""

    index: int
    node: str
    pid: int
    frames_read: int
    frames_written: int
    frames_failed: int
    frames_restored: int
    seconds: float
    fps: float
    stopped_by: str
    already_complete: bool = False
    inference_p50_ms: float | None = None


@dataclass
class FileSummary:
    """Everything that happened to one input over the run (every attempt)."""

    job: FileJob
    total: int | None  # frames expected (the file's count, capped by max_frames); None: unknown
    attempts: int = 0
    done: int = 0  # frames with a complete JSON line, as last seen
    lost: list[str] = field(default_factory=list)  # nodes whose worker died on this file
    outcome: WorkerOutcome | None = None  # the last attempt that returned
    error: str = ""  # why this file was given up
    started: bool = False

    @property
    def complete(self) -> bool:
        o = self.outcome
        return o is not None and not self.error and o.stopped_by in ("end", "max_frames")


@dataclass
class RayRunResult:
    """The run: one :class:`FileSummary` per input, in input order."""

    files: list[FileSummary]
    seconds: float
    workers: list[dict[str, Any]]  # what each worker opened, where
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # workers lost or given up, said once each

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(f.complete for f in self.files)
