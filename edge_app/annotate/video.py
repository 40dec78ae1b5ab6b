"""``run.py annotate``: video files and folders of them -> annotated videos + JSON lines, completeness first.

Frames go through the threaded pipeline in batches (files never drop a frame), with a progress bar per
file. ``--resume`` continues an interrupted run from the last fully written frame:

* the JSON lines say which frames are done: the longest run of complete, parseable lines for frames
  0, 1, 2, ... (a line cut short by a crash is discarded);
* the video is restored by re-drawing those frames from the input with the saved results (labels, boxes,
  timings) instead of re-running inference, and re-encoding them; this works whatever state the old video
  file was left in (an interrupted MP4 written by OpenCV may have no index and be unreadable);
* inference continues at the first frame without a line, appending to the JSON lines;
* it continues only the same run: ``<out>.run.json`` (:mod:`edge_app.annotate.run_record`) records the
  engine, model file, backend, precision, mode and its settings, post-label steps and the input file, and a
  resume that differs is refused naming the difference.

Outputs that already hold results are not replaced unless asked (:func:`check_outputs`, ``--overwrite``).
Every line carries the frame's ``media_time`` (seconds into the file), and the H.264 output keeps the
source's timestamps, so a variable-frame-rate video plays back at its own pace.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from edge_app.annotate.run_record import check_resume, run_identity, write_record
from edge_app.errors import UserError
from edge_app.frames.labellers import Labeller
from edge_app.frames.overlay import HudInfo, OverlayConfig, build_annotators
from edge_app.frames.pipeline import PipelineConfig, PipelineReport, PostLabelStep, run_pipeline
from edge_app.frames.report import SourceReport
from edge_app.frames.results import FrameResult
from edge_app.frames.tracking.offline import replay
from edge_app.fsutil import atomic_write_text
from edge_app.video.base import Frame, FrameSource, Sink
from edge_app.video.jsonl import iter_jsonl

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
# Batches of 8 keep the engine busy while capture and encoding overlap with it (files never drop a frame).
ANNOTATE_BATCH = 8


def annotate_config(**kw: Any) -> PipelineConfig:
    """The loop settings ``annotate`` starts from (batches of ``ANNOTATE_BATCH``, a progress bar); ``kw`` overrides."""
    return PipelineConfig(**{"batch": ANNOTATE_BATCH, "progress": True, **kw})


@dataclass(frozen=True)
class AnnotateResult:
    """What annotating one file did. Frame counts include the frames restored from a previous run."""

    video: Path
    jsonl: Path
    frames_read: int
    frames_written: int
    frames_failed: int  # frames the input could not decode
    frames_restored: int  # frames re-drawn from the JSON lines of an interrupted run (resume), not re-inferred
    seconds: float  # wall time of this call
    fps: float  # frames the loop wrote per second of its own run (restored frames excluded)
    stopped_by: str  # as PipelineReport.stopped_by; "end" for a file that was already complete
    already_complete: bool = False  # resume found every frame done: nothing was written
    report: PipelineReport | None = None  # the loop's own report (None when the loop did not run)

    @property
    def inference_ms(self) -> dict[str, float]:
        """Per-frame inference latency statistics of this run (p50, p99, ...); empty when the loop did not run."""
        return dict(self.report.stages.get("inference", {})) if self.report else {}


def output_paths(inputs: list[Path], out: str | None) -> list[tuple[Path, Path]]:
    """(video, jsonl) per input: ``--out file.mp4`` for one input, else ``<out folder>/<stem>.mp4``."""
    if out and Path(out).suffix.lower() in VIDEO_EXTS:
        if len(inputs) != 1:
            raise UserError(
                f"--out '{out}' is one video file but there are {len(inputs)} inputs; pass a folder as --out"
            )
        v = Path(out)
        return [(v, v.with_suffix(".jsonl"))]
    folder = Path(out or "runs/annotate")
    seen: dict[str, int] = {}
    pairs = []
    for p in inputs:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stem = p.stem if n == 0 else f"{p.stem}-{n + 1}"  # two inputs with one name must not overwrite each other
        pairs.append((folder / f"{stem}.mp4", folder / f"{stem}.jsonl"))
    return pairs


def completed_results(jsonl: Path) -> list[FrameResult]:
    """The results of frames 0..K-1 fully written to ``jsonl`` (stops at the first bad, partial or out-of-order line)."""
    out: list[FrameResult] = []
    for d in iter_jsonl(jsonl):
        try:
            r = FrameResult.from_dict(d)
        except (KeyError, TypeError, ValueError):
            break
        if r.index != len(out):
            break
        out.append(r)
    return out


def _holds_results(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def check_outputs(outputs: Sequence[Path], *, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, to replace outputs that hold results unless ``overwrite`` (or
    ``resume``, which continues them); one sentence naming the first such file."""
    if resume and overwrite:
        raise UserError("--resume continues the outputs and --overwrite replaces them; pass one of them, not both")
    if resume or overwrite:
        return
    held = [p for p in outputs if _holds_results(Path(p))]
    if held:
        more = f" (and {len(held) - 1} more outputs)" if len(held) > 1 else ""
        raise UserError(
            f"'{held[0]}' already holds the results of a run{more}; pass --overwrite to replace them, "
            "--resume to continue them, or choose another --out"
        )


class _Resumed:
    """A source whose first frames were already consumed: iterating continues the same iterator."""

    def __init__(self, source: FrameSource, it: Iterator[Frame]) -> None:
        self._source, self._it = source, it

    def __iter__(self) -> Iterator[Frame]:
        return self._it

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


def _restore_prefix(it: Iterator[Frame], done: list[FrameResult], sink: Sink, overlay: OverlayConfig) -> int:
    """Re-draw the frames ``done`` describes from the input and write them to the video ``sink``."""
    for r in done:
        try:
            frame = next(it)
        except StopIteration:
            raise UserError(
                f"the input has fewer frames than the {len(done)} lines of the JSON lines file to resume; "
                "it is not the video that run started on: annotate it again from the start, without resuming"
            ) from None
        info = HudInfo(stage_ms=r.timings, end_to_end_ms=r.timings.get("end_to_end", float("nan")))
        img = frame.image
        for a in build_annotators(overlay, lambda info=info: info):
            img = a.annotate(img, r)
        sink.write(img, r)
    return len(done)


@dataclass
class _Opened:
    """One input ready for the loop: its source (past the frames restored from a previous run) and sinks."""

    video: Path
    out_video: Path
    out_jsonl: Path
    source: Any  # a FrameSource, or a _Resumed one whose first frames were re-drawn from the lines
    sinks: list[Sink]
    restored: int
    total: int | None  # frames this file will have written when done (None: unknown)
    limit: int  # frames left to read under max_frames (0: no limit)

    def close(self) -> None:
        """Close the sinks and the source (on failure before the loop took them over)."""
        for s in self.sinks:
            s.close()
        self.source.close()


def _open_input(
    labeller: Labeller,
    video: Path,
    out_video: Path,
    out_jsonl: Path,
    cfg: PipelineConfig,
    *,
    resume: bool,
    codec: str | None,
    steps: Sequence[PostLabelStep],
    source_id: int = 0,
) -> _Opened | AnnotateResult:
    """Check, restore and open one input for the loop; an :class:`AnnotateResult` when nothing is left to do."""
    from edge_app.video.sinks import JsonlSink, VideoFileSink
    from edge_app.video.sources import open_source

    record = run_identity(labeller, video, steps)
    done = completed_results(out_jsonl) if resume else []
    if done:
        check_resume(out_jsonl, record)  # before any output is touched
        if steps:  # the tracker continues where the interrupted run stopped (this file is source_id)
            replay(steps, [dataclasses.replace(r, source_id=source_id) for r in done])
    src = open_source(str(video))
    total = src.frame_count
    if cfg.max_frames:
        total = min(cfg.max_frames, total) if total else cfg.max_frames
    if done and total is not None and len(done) >= total and out_video.is_file():
        src.close()
        return AnnotateResult(
            out_video,
            out_jsonl,
            frames_read=0,
            frames_written=0,
            frames_failed=0,
            frames_restored=len(done),
            seconds=0.0,
            fps=0.0,
            stopped_by="end",
            already_complete=True,
        )
    sinks: list[Sink] = []
    try:
        vs = VideoFileSink(out_video, src.fps, src.size, codec)
        sinks.append(vs)
        if not done:  # once the outputs can open, before the first line: lines always have their record
            write_record(out_jsonl, record)
        it = iter(src)
        restored = 0
        if done:
            # Keep exactly the finished lines (drop a torn last line), then append after them.
            atomic_write_text(out_jsonl, "".join(json.dumps(r.to_dict()) + "\n" for r in done))
            restored = _restore_prefix(it, done, vs, cfg.overlay)
        sinks.append(JsonlSink(out_jsonl, append=bool(done)))
    except BaseException:
        for s in sinks:
            s.close()
        src.close()
        raise
    opened = _Opened(
        Path(video), out_video, out_jsonl, _Resumed(src, it) if restored else src, sinks, restored, total, 0
    )
    if cfg.max_frames:
        opened.limit = cfg.max_frames - restored
        if opened.limit <= 0:
            # Every frame asked for was in the lines (a lost video); only the video had to be re-drawn.
            opened.close()
            return _result(opened, None, 0.0)
    return opened


def _result(o: _Opened, rep: SourceReport | PipelineReport | None, wall: float, loop_s: float = 0.0) -> AnnotateResult:
    """The outcome of one input: the loop's counts for it plus what was restored."""
    if rep is None:
        return AnnotateResult(
            o.out_video,
            o.out_jsonl,
            frames_read=o.restored,
            frames_written=o.restored,
            frames_failed=0,
            frames_restored=o.restored,
            seconds=wall,
            fps=0.0,
            stopped_by="max_frames",
        )
    loop_s = loop_s or getattr(rep, "seconds", 0.0)
    return AnnotateResult(
        o.out_video,
        o.out_jsonl,
        frames_read=rep.frames_read + o.restored,
        frames_written=rep.frames_written + o.restored,
        frames_failed=rep.frames_failed,
        frames_restored=o.restored,
        seconds=wall,
        fps=rep.frames_written / loop_s if loop_s > 0 else 0.0,
        stopped_by=getattr(rep, "stopped_by", "end"),
        report=rep if isinstance(rep, PipelineReport) else None,
    )


def annotate_video(
    labeller: Labeller,
    video: str | Path,
    out_video: str | Path,
    out_jsonl: str | Path,
    cfg: PipelineConfig | None = None,
    *,
    resume: bool = False,
    codec: str | None = None,
    steps: Sequence[PostLabelStep] = (),
    annotators: Sequence[Any] = (),
) -> AnnotateResult:
    """Annotate one file with the loop settings ``cfg`` (None: :func:`annotate_config`); files never drop a frame.

    ``cfg.max_frames`` counts from the file's first frame, restored frames included. ``resume`` continues
    from the last complete line of ``out_jsonl`` (see the module docstring). ``labeller``: the engine and
    mode (the caller builds and keeps it for many files). ``steps``: fresh post-label steps (trackers,
    counters) for this file; on resume their state is rebuilt by replaying the finished lines, so the IDs
    continue exactly as an uninterrupted run's. ``annotators``: the steps' drawing. ``codec``: the annotated
    video's (None: its extension's default, H.264 for .mp4).
    """
    cfg = cfg if cfg is not None else annotate_config()
    t0 = time.perf_counter()
    o = _open_input(
        labeller, Path(video), Path(out_video), Path(out_jsonl), cfg, resume=resume, codec=codec, steps=steps
    )
    if isinstance(o, AnnotateResult):
        return o
    run = dataclasses.replace(
        cfg,
        drop=False,
        max_frames=o.limit,
        progress_desc=Path(video).name,
        progress_total=o.total,
        progress_initial=o.restored,
    )
    try:
        rep = run_pipeline(labeller, o.source, o.sinks, run, steps, annotators=annotators)
    except BaseException:
        o.close()
        raise
    return _result(o, rep, time.perf_counter() - t0)


def annotate_videos(
    labeller: Labeller,
    jobs: Sequence[tuple[Path, Path, Path]],
    cfg: PipelineConfig | None = None,
    *,
    resume: bool = False,
    codec: str | None = None,
    tracking: Any = None,
    at_once: int = 4,
) -> Iterator[AnnotateResult]:
    """Annotate (video, out_video, out_jsonl) ``jobs`` ``at_once`` files at a time in ONE batched loop each.

    Every file still gets its own outputs, run record, resume and tracker state (``tracking``, a
    TrackingSpec: one fresh set of steps per group, each file its own source id); the engine sees batches
    mixed from the group's files, as a multi-camera ``live`` does. Results come back per file, in order.
    """
    if at_once < 1:
        raise UserError(f"files at once {at_once} must be at least 1")
    cfg = cfg if cfg is not None else annotate_config()
    for g in range(0, len(jobs), at_once):
        group = list(jobs[g : g + at_once])
        t0 = time.perf_counter()
        steps, annotators = tracking.build() if tracking is not None else ([], [])
        slots: list[_Opened | AnnotateResult] = []
        try:
            for sid, (video, out_video, out_jsonl) in enumerate(group):
                slots.append(
                    _open_input(
                        labeller,
                        video,
                        out_video,
                        out_jsonl,
                        cfg,
                        resume=resume,
                        codec=codec,
                        steps=steps,
                        source_id=sid,
                    )
                )
        except BaseException:
            for o in slots:
                if isinstance(o, _Opened):
                    o.close()
            raise
        opened = [o for o in slots if isinstance(o, _Opened)]
        rep: PipelineReport | None = None
        if opened:
            known = [o.total for o in opened]
            run = dataclasses.replace(
                cfg,
                drop=False,
                max_frames=0,
                progress_desc=f"{len(opened)} files" if len(opened) > 1 else opened[0].video.name,
                progress_total=sum(t for t in known if t) if all(known) else None,
                progress_initial=sum(o.restored for o in opened),
            )
            try:
                rep = run_pipeline(
                    labeller,
                    [o.source for o in opened],
                    [],
                    run,
                    steps,
                    source_sinks=[o.sinks for o in opened],
                    annotators=annotators,
                    limits=[o.limit for o in opened],
                    label_sources=False,  # each file's lines stay as a one-file run writes them
                )
            except BaseException:
                for o in opened:
                    o.close()
                raise
        wall = time.perf_counter() - t0
        it = iter(rep.sources if rep is not None else [])
        for o in slots:
            if isinstance(o, AnnotateResult):
                yield o
            else:
                src_rep = next(it)
                r = _result(o, src_rep, wall, rep.seconds if rep is not None else 0.0)
                yield dataclasses.replace(r, stopped_by=rep.stopped_by if rep is not None else "end")
