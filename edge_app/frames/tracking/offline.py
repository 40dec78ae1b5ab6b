"""Tracking stored detections without an engine, and rebuilding step state from written JSON lines.

- :func:`retrack`: read an ``annotate``/``live`` JSON-lines file, drop its old track IDs and counts, run new
  post-label steps (other tracker settings, new lines or zones) and write a new file (and MOT text).
- :func:`replay`: feed the lines a killed run already wrote back through fresh steps. Trackers update from
  the values JSON lines store (see :mod:`edge_app.frames.tracking.base`), so the state rebuilt equals the state
  the run had, and the resumed run hands out the IDs an uninterrupted run would; ``replay`` checks that the
  IDs it reproduces are the ones written, and says so when the file was tracked with other settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from edge_app.errors import UserError
from edge_app.frames.results import FrameResult, Label
from edge_app.frames.tracking.base import PostLabelStep, run_steps
from edge_app.fsutil import atomic_write
from edge_app.video.mot import check_mot_path, mot_rows


def read_annotations(path: str | os.PathLike, torn_tail: str = "error") -> list[FrameResult]:
    """The frames of an annotations JSON-lines file, in file order.

    A line that is not an annotation (a JSON object with ``frame`` and ``labels``) is refused naming it. A last
    line without its newline that does not parse is a run cut off while writing: ``torn_tail="error"`` refuses
    it naming the line, ``"drop"`` ignores it (what a resume does).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"annotations file '{p}' does not exist; pass the .jsonl file annotate or live wrote")
    text = p.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    out: list[FrameResult] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = n == len(lines) and not line.endswith("\n")
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if last:
                if torn_tail == "drop":
                    break
                raise UserError(
                    f"'{p}' ends in a torn line {n} (the run was cut off while writing it); resume that run, "
                    "or delete the last line"
                ) from None
            raise UserError(
                f"'{p}' line {n} is not JSON; pass an annotations .jsonl file written by annotate or live"
            ) from None
        if not (isinstance(d, dict) and "frame" in d and isinstance(d.get("labels"), list)):
            raise UserError(
                f"'{p}' line {n} is not an annotation (a JSON object with 'frame' and 'labels'); "
                "pass a .jsonl file written by annotate or live"
            )
        try:
            out.append(FrameResult.from_dict(d))
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(
                f"'{p}' line {n} is a malformed annotation ({e}); pass a file written by annotate or live"
            ) from None
    return out


def _untracked(result: FrameResult) -> list[Label]:
    return [lb if lb.track_id is None else replace(lb, track_id=None) for lb in result.labels]


def _retracked(result: FrameResult, labels: list[Label], extra: dict[str, Any]) -> FrameResult:
    kept = {k: v for k, v in result.extra.items() if k != "counts"}  # old counts describe old tracks
    return replace(result, labels=labels, extra={**kept, **extra})


def replay(steps: Sequence[PostLabelStep], results: Iterable[FrameResult]) -> int:
    """Rebuild ``steps``' state (fresh steps) from already-written frames; returns how many were replayed.

    Raises UserError on the first frame whose written track IDs the steps do not reproduce: that file was
    tracked with other settings (or another tracker), and resuming it would mix two sets of IDs.
    """
    n = 0
    for r in results:
        labels, _ = run_steps(steps, r.source_id or 0, r.index, _untracked(r))
        if [lb.track_id for lb in labels] != [lb.track_id for lb in r.labels]:
            raise UserError(
                f"frame {r.index} was written with other tracker settings (its track IDs do not replay); "
                "resume with the settings of the first run, or start a new output"
            )
        n += 1
    return n


@dataclass(frozen=True)
class RetrackSummary:
    """What :func:`retrack` wrote."""

    frames: int
    tracks: int  # distinct (source, track id) pairs
    out: Path
    mot: Path | None
    counts: dict[int, dict[str, Any]] = field(default_factory=dict)  # source id -> last frame's counts


def retrack(
    jsonl_in: str | os.PathLike,
    jsonl_out: str | os.PathLike,
    steps: Sequence[PostLabelStep],
    mot: str | os.PathLike | None = None,
) -> RetrackSummary:
    """Re-track the detections stored in ``jsonl_in`` with ``steps`` into ``jsonl_out`` (and MOT text).

    Old track IDs and counts are dropped; every other field of each line is kept. Both outputs are written
    atomically: a failure leaves no half-written file and never touches the input.
    """
    src, dst = Path(jsonl_in), Path(jsonl_out)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise UserError(f"--out '{dst}' is the input file; write the re-tracked lines to another file")
    mot_path = check_mot_path(mot) if mot is not None else None
    results = read_annotations(src)
    for r in results:  # states of earlier runs of the same steps would leak into this one
        for step in steps:
            step.reset(r.source_id or 0)
    out: list[FrameResult] = []
    for r in results:
        labels, extra = run_steps(steps, r.source_id or 0, r.index, _untracked(r))
        out.append(_retracked(r, labels, extra))
    sources = {r.source_id for r in out}
    if mot_path is not None and len(sources) > 1:
        raise UserError(f"'{src}' holds {len(sources)} sources but a MOT file holds one; drop --mot or split the file")
    atomic_write(dst, lambda p: p.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in out), encoding="utf-8"))
    if mot_path is not None:
        rows = [
            row
            for r in out
            for row in mot_rows(
                r.index, [(lb.track_id, lb.box, lb.score) for lb in r.labels if lb.track_id is not None and lb.box]
            )
        ]
        atomic_write(mot_path, lambda p: p.write_text("".join(x + "\n" for x in rows), encoding="utf-8"))
    ids = {(r.source_id, lb.track_id) for r in out for lb in r.labels if lb.track_id is not None}
    last = {r.source_id or 0: r.extra.get("counts", {}) for r in out}
    return RetrackSummary(len(out), len(ids), dst, mot_path, last)
