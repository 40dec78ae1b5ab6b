"""``run.py annotate``: video files and folders of them -> annotated videos + JSON lines, completeness first.

Frames go through the threaded pipeline in batches (files never drop a frame), with a progress bar per
file. ``--resume`` continues an interrupted run from the last fully written frame:

* the JSON lines say which frames are done: the longest run of complete, parseable lines for frames
  0, 1, 2, ... (a line cut short by a crash is discarded);
* the video is restored by re-drawing those frames from the input with the saved results (labels, boxes,
  timings) instead of re-running inference, and re-encoding them; this works whatever state the old video
  file was left in (an interrupted MP4 written by OpenCV may have no index and be unreadable);
* inference continues at the first frame without a line, appending to the JSON lines.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_text
from edge_app.frames.labellers import TileConfig
from edge_app.frames.overlay import HudInfo, OverlayConfig, build_annotators
from edge_app.frames.pipeline import PipelineConfig, PipelineReport, run_pipeline
from edge_app.frames.postprocess import FrameResult

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")


@dataclass
class AnnotateConfig:
    """Options of ``annotate``; batch 8 keeps the engine busy while capture and encoding overlap with it."""

    top_k: int = 3
    mode: str = "classify"
    tiles: TileConfig = field(default_factory=TileConfig)
    batch: int = 8
    max_frames: int = 0  # 0: the whole file
    progress: bool = True
    resume: bool = False
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    codec: str | None = None  # the annotated video's codec (None: its extension's default, H.264 for .mp4)


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Video files named directly, plus the video files (by extension) directly inside named folders."""
    out: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                raise UserError(f"folder '{p}' holds no video files ({', '.join(VIDEO_EXTS[:4])}, ...); pass a video file or a folder of them")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"input '{p}' does not exist; pass an existing video file or folder of video files")
    return out


def output_paths(inputs: list[Path], out: str | None) -> list[tuple[Path, Path]]:
    """(video, jsonl) per input: ``--out file.mp4`` for one input, else ``<out folder>/<stem>.mp4``."""
    if out and Path(out).suffix.lower() in VIDEO_EXTS:
        if len(inputs) != 1:
            raise UserError(f"--out '{out}' is one video file but there are {len(inputs)} inputs; pass a folder as --out")
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
    if not jsonl.is_file():
        return []
    out: list[FrameResult] = []
    data = jsonl.read_bytes().decode("utf-8", errors="replace")
    for line in data.split("\n")[:-1]:  # the piece after the last newline is unfinished by definition
        try:
            r = FrameResult.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            break
        if r.index != len(out):
            break
        out.append(r)
    return out


class _Resumed:
    """A source whose first frames were already consumed: iterating continues the same iterator."""

    def __init__(self, source: Any, it: Iterator) -> None:
        self._source, self._it = source, it

    def __iter__(self) -> Iterator:
        return self._it

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


def _restore_prefix(it: Iterator, done: list[FrameResult], sink: Any, overlay: OverlayConfig) -> int:
    """Re-draw the frames ``done`` describes from the input and write them to the video ``sink``."""
    for r in done:
        try:
            frame = next(it)
        except StopIteration:
            raise UserError(f"the input has fewer frames than the {len(done)} lines of the JSON lines file to resume; "
                            "it is not the video that run started on: run again without --resume") from None
        info = HudInfo(stage_ms=r.timings, end_to_end_ms=r.timings.get("end_to_end", float("nan")))
        img = frame.image
        for a in build_annotators(overlay, lambda info=info: info):
            img = a.annotate(img, r)
        sink.write(img, r)
    return len(done)


def annotate_video(engine: Any, video: str | Path, out_video: str | Path, out_jsonl: str | Path,
                   cfg: AnnotateConfig = AnnotateConfig()) -> dict[str, Any]:
    """Annotate one file; returns a summary dict (frames read/written/failed, throughput, paths, report)."""
    from edge_app.video.sinks import JsonlSink, VideoFileSink
    from edge_app.video.sources import open_source

    out_video, out_jsonl = Path(out_video), Path(out_jsonl)
    done = completed_results(out_jsonl) if cfg.resume else []
    src = open_source(str(video))
    total = src.frame_count
    if cfg.max_frames:
        total = min(cfg.max_frames, total) if total else cfg.max_frames
    if done and total is not None and len(done) >= total and out_video.is_file():
        src.close()
        return {"video": str(out_video), "jsonl": str(out_jsonl), "frames_read": 0, "frames_written": 0,
                "frames_failed": 0, "frames_restored": len(done), "already_complete": True, "seconds": 0.0,
                "fps": 0.0, "report": None, "inference_ms": {}}
    t0 = time.perf_counter()
    sinks: list = []
    try:
        vs = VideoFileSink(out_video, src.fps, src.size, cfg.codec)
        sinks.append(vs)
        it = iter(src)
        restored = 0
        if done:
            # Keep exactly the finished lines (drop a torn last line), then append after them.
            atomic_write_text(out_jsonl, "".join(json.dumps(r.to_dict()) + "\n" for r in done))
            restored = _restore_prefix(it, done, vs, cfg.overlay)
        js = JsonlSink(out_jsonl, append=bool(done))
        sinks.append(js)
        pcfg = PipelineConfig(mode=cfg.mode, top_k=cfg.top_k, tiles=cfg.tiles, batch=cfg.batch,
                              max_frames=max(0, cfg.max_frames - restored) if cfg.max_frames else 0,
                              drop=False, overlay=cfg.overlay, progress=cfg.progress, progress_desc=Path(video).name,
                              progress_total=total, progress_initial=restored)
        source = _Resumed(src, it) if restored else src
        rep: PipelineReport = run_pipeline(engine, source, sinks, pcfg)
    except BaseException:
        for s in sinks:
            s.close()
        src.close()
        raise
    wall = time.perf_counter() - t0
    inf = rep.stages.get("inference", {})
    return {"video": str(out_video), "jsonl": str(out_jsonl), "frames_read": rep.frames_read + restored,
            "frames_written": rep.frames_written + restored, "frames_failed": rep.frames_failed,
            "frames_restored": restored, "already_complete": False, "seconds": wall,
            "fps": rep.frames_written / rep.seconds if rep.seconds > 0 else 0.0, "stopped_by": rep.stopped_by,
            "report": rep, "inference_ms": inf, "frames": rep.frames_written + restored}
