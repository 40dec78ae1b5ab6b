"""``run.py annotate`` on photographs: image files, folders and globs -> annotated images + one JSON-lines file.

Each image is decoded, labelled by the same labeller as a video frame (classify, tiles or detect), drawn
with the same overlays (no latency HUD: a photo has no frame rate) and written under the output folder with
its relative name. ``annotations.jsonl`` gets one line per image, ``{"image": path, "labels": [...]}`` with
the labels exactly as in video lines. Images stream through in batches, so memory stays flat however many
there are; unreadable files are counted and reported, never fatal. ``--resume`` skips images whose line is
already complete (a line cut short by a crash is dropped first).
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2

from edge_app.annotate.run_record import check_resume, run_identity, write_record
from edge_app.data.folder import IMAGE_EXTS, read_image
from edge_app.errors import UserError
from edge_app.frames.labellers import Labeller
from edge_app.frames.overlay import OverlayConfig, build_annotators
from edge_app.frames.results import FrameResult
from edge_app.fsutil import atomic_write_bytes, ensure_writable_dir
from edge_app.video.jsonl import iter_jsonl, truncate_torn_tail

JSONL_NAME = "annotations.jsonl"


@dataclass(frozen=True)
class ImageInput:
    """One photograph and the name its annotated copy gets under the output folder."""

    path: Path
    rel: Path


@dataclass(frozen=True)
class ImagesResult:
    """What annotating a set of images did."""

    jsonl: Path
    images: int  # inputs seen
    written: int  # annotated this run
    skipped: int  # already in the JSON lines (--resume)
    unreadable: list[str]  # files that could not be decoded
    seconds: float

    @property
    def per_second(self) -> float:
        """Images annotated per second of wall time."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


def is_image(path: Path) -> bool:
    """An image file by its extension."""
    return path.suffix.lower() in IMAGE_EXTS


def image_inputs(folder_or_pattern: str) -> list[ImageInput]:
    """The images of a folder (recursively, names relative to it) or of a glob pattern (names as found)."""
    p = Path(folder_or_pattern)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and is_image(f))
        return [ImageInput(f, f.relative_to(p)) for f in files]
    files = sorted(
        Path(f) for f in glob.glob(folder_or_pattern, recursive=True) if is_image(Path(f)) and Path(f).is_file()
    )
    return [ImageInput(f, Path(f.name)) for f in files]


def unique_names(items: list[ImageInput]) -> list[ImageInput]:
    """Two inputs with one relative name (from different folders) must not overwrite each other."""
    seen: dict[Path, int] = {}
    out = []
    for it in items:
        n = seen.get(it.rel, 0)
        seen[it.rel] = n + 1
        rel = it.rel if n == 0 else it.rel.with_name(f"{it.rel.stem}-{n + 1}{it.rel.suffix}")
        out.append(ImageInput(it.path, rel))
    return out


def done_images(jsonl: Path) -> set[str]:
    """Images whose JSON line is complete; a torn last line is cut off the file first."""
    if not jsonl.is_file():
        return set()
    truncate_torn_tail(jsonl)
    # A damaged line stands alone (one photograph per line): that image is done again, the others count.
    return {str(d["image"]) for d in iter_jsonl(jsonl, skip_bad=True) if "image" in d}


def _batches(items: list[ImageInput], size: int) -> Iterator[list[ImageInput]]:
    for s in range(0, len(items), size):
        yield items[s : s + size]


def annotate_images(
    labeller: Labeller,
    items: list[ImageInput],
    out_dir: str | Path,
    batch: int = 8,
    overlay: OverlayConfig | None = None,
    resume: bool = False,
    progress: bool = False,
) -> ImagesResult:
    """Label and draw ``items`` into ``out_dir``; lines go to ``out_dir/annotations.jsonl`` (appended on ``resume``)."""
    if batch < 1:
        raise UserError(f"batch {batch} must be at least 1")
    out = ensure_writable_dir(out_dir)
    jsonl = out / JSONL_NAME
    record = run_identity(labeller, None)  # many inputs: the engine and mode define the run
    done = done_images(jsonl) if resume else set()
    if done:
        check_resume(jsonl, record)
    else:
        write_record(jsonl, record)
    todo = [it for it in items if str(it.path) not in done]
    ov = overlay or OverlayConfig()
    annotators = build_annotators(OverlayConfig(labels=ov.labels, boxes=ov.boxes, hud=False, max_labels=ov.max_labels))
    unreadable: list[str] = []
    written = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="images", unit="image", dynamic_ncols=True)
    t0 = time.perf_counter()
    with open(jsonl, "a" if resume else "w", encoding="utf-8") as f:
        for group in _batches(todo, batch):
            pairs = []
            for it in group:
                img = read_image(it.path)
                if img is None:
                    unreadable.append(str(it.path))
                else:
                    pairs.append((it, img))
            if pairs:
                labels, _ = labeller.label([img for _, img in pairs])
                lines = []
                for (it, img), labs in zip(pairs, labels):
                    res = FrameResult(0, 0.0, labs)
                    drawn = img
                    for a in annotators:
                        drawn = a.annotate(drawn, res)
                    _write_image(out / it.rel, drawn)
                    lines.append(json.dumps({"image": str(it.path), "labels": [lab.to_dict() for lab in labs]}) + "\n")
                f.write("".join(lines))  # whole lines per batch, flushed: a crash leaves complete lines only
                f.flush()
                os.fsync(f.fileno())
                written += len(pairs)
            if bar is not None:
                bar.update(len(group))
    if bar is not None:
        bar.close()
    return ImagesResult(jsonl, len(items), written, len(items) - len(todo), unreadable, time.perf_counter() - t0)


def _write_image(path: Path, img) -> None:  # noqa: ANN001 - a BGR uint8 array
    """Encode in the input's own format (PNG for formats OpenCV cannot write) and rename into place."""
    ext = path.suffix.lower()
    ok, buf = (
        cv2.imencode(ext, img)
        if ext in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
        else (False, None)
    )
    if not ok:
        path = path.with_suffix(".png")
        ok, buf = cv2.imencode(".png", img)
    atomic_write_bytes(path, buf.tobytes())


@dataclass(frozen=True)
class Inputs:
    """What ``annotate``'s inputs hold: videos, photographs, and every file passed over with the reason."""

    videos: list[Path]
    images: list[ImageInput]
    skipped: list[tuple[str, str]]  # (path, why)


def _kind(path: Path) -> str:
    from edge_app.annotate.video import VIDEO_EXTS

    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else ""


def _walk(found: list[Path], base: Path | None, inputs: Inputs) -> None:
    """Sort ``found`` files into videos and images (names relative to ``base``); note the others as skipped."""
    for f in found:
        kind = _kind(f)
        if kind == "video":
            inputs.videos.append(f)
        elif kind == "image":
            inputs.images.append(ImageInput(f, f.relative_to(base) if base else Path(f.name)))
        elif not f.name.startswith("."):  # hidden files (.DS_Store, partial outputs) are nobody's input
            inputs.skipped.append((str(f), f"not a video or image file ({f.suffix or 'no extension'})"))


def find_inputs(inputs: list[str]) -> Inputs:
    """``annotate``'s inputs: files (an image by its extension, anything else is read as a video), folders
    searched recursively and quoted glob patterns (``'clips/**/*.mp4'``), videos and images alike. A missing
    input, or a folder or pattern with neither, is a UserError; other files found are listed in ``skipped``."""
    found = Inputs([], [], [])
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            before = len(found.videos) + len(found.images)
            _walk(sorted(f for f in p.rglob("*") if f.is_file()), p, found)
            if len(found.videos) + len(found.images) == before:
                raise UserError(
                    f"folder '{p}' holds no video or image files (searched recursively for .mp4, .mkv, .avi, .jpg, "
                    ".png, ...); pass a folder of videos or photographs"
                )
        elif p.is_file():
            if is_image(p):
                found.images.append(ImageInput(p, Path(p.name)))
            else:
                found.videos.append(p)
        elif any(c in s for c in "*?["):
            before = len(found.videos) + len(found.images)
            _walk(sorted(Path(f) for f in glob.glob(s, recursive=True) if Path(f).is_file()), None, found)
            if len(found.videos) + len(found.images) == before:
                raise UserError(
                    f"pattern '{s}' matches no video or image files; check it (quote it so the shell does not expand it)"
                )
        else:
            raise UserError(f"input '{p}' does not exist; pass an existing video, image, folder or quoted glob pattern")
    return Inputs(found.videos, unique_names(found.images), found.skipped)


def split_inputs(inputs: list[str]) -> tuple[list[Path], list[ImageInput]]:
    """(videos, images) of :func:`find_inputs`, without the skipped files."""
    found = find_inputs(inputs)
    return found.videos, found.images
