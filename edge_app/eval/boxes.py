"""Detection-style evaluation: precision and recall of boxes against a video's ground-truth JSON lines.

A predicted box is a true positive when it has the same class as a ground-truth box and IoU >= the
threshold (0.3 by default) with it; each ground-truth box matches at most one prediction (greedy, highest
score first, as in PASCAL VOC). Ground truth is ``<video>.truth.jsonl`` from
:func:`edge_app.data.synthetic.write_video`: ``{"frame": i, "objects": [{"class": .., "box": [x1,y1,x2,y2]}]}``.

Entry point: :func:`run_boxes` (engine folder and video -> :class:`BoxEvalReport`) and :func:`format_boxes`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from edge_app.errors import UserError
from edge_app.frames.postprocess import box_iou
from edge_app.frames.results import Label
from edge_app.runtime.base import Engine

if TYPE_CHECKING:
    from edge_app.frames.labellers import TileConfig


@dataclass
class DetectionScore:
    """Counts over a set of frames and the rates derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when nothing was predicted (no false alarms)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "frames": self.frames,
            "per_class": self.per_class,
        }


def load_truth(path: str | Path) -> dict[int, list[tuple[str, tuple[float, float, float, float]]]]:
    """frame index -> [(class, box)] from a ``*.truth.jsonl`` file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"ground-truth file '{p}' does not exist; pass the .truth.jsonl written beside the synthetic video"
        )
    out: dict[int, list[tuple[str, tuple[float, float, float, float]]]] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out[int(d["frame"])] = [(o["class"], tuple(float(v) for v in o["box"])) for o in d["objects"]]  # type: ignore[misc]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"line {n} of '{p}' is not a ground-truth record ({type(e).__name__}); regenerate it with `run.py demo`"
            ) from None
    return out


def match_frame(
    pred: list[Label], truth: list[tuple[str, tuple[float, float, float, float]]], iou: float = 0.3
) -> tuple[int, int, int, list[tuple[str, str]]]:
    """(tp, fp, fn, [(class, 'tp'|'fp'|'fn')]) for one frame; greedy by score, one match per truth box."""
    used = [False] * len(truth)
    tb = np.array([b for _, b in truth], dtype=np.float64).reshape(-1, 4)
    events: list[tuple[str, str]] = []
    tp = fp = 0
    for lab in sorted((p for p in pred if p.box is not None), key=lambda p: -p.score):
        ious = box_iou(np.asarray(lab.box, dtype=np.float64), tb) if len(tb) else np.zeros(0)
        best, best_iou = -1, iou
        for j, v in enumerate(ious):
            if not used[j] and truth[j][0] == lab.name and v >= best_iou:
                best, best_iou = j, v
        if best >= 0:
            used[best] = True
            tp += 1
            events.append((lab.name, "tp"))
        else:
            fp += 1
            events.append((lab.name, "fp"))
    fn = used.count(False)
    events += [(truth[j][0], "fn") for j in range(len(truth)) if not used[j]]
    return tp, fp, fn, events


def score(preds: Iterable[tuple[int, list[Label]]], truth: dict[int, list], iou: float = 0.3) -> DetectionScore:
    """Accumulate :func:`match_frame` over ``(frame index, labels)`` pairs; frames without truth are an error."""
    s = DetectionScore()
    for idx, labels in preds:
        if idx not in truth:
            raise UserError(f"frame {idx} has no ground truth; evaluate the video the truth file was written for")
        tp, fp, fn, events = match_frame(labels, truth[idx], iou)
        s.tp += tp
        s.fp += fp
        s.fn += fn
        s.frames += 1
        for cls, kind in events:
            s.per_class.setdefault(cls, {"tp": 0, "fp": 0, "fn": 0})[kind] += 1
    return s


def labels_from_jsonl(path: str | Path) -> list[tuple[int, list[Label]]]:
    """(frame, labels) pairs from the JSON lines ``live``/``annotate`` write."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        out.append(
            (
                int(d["frame"]),
                [
                    Label(
                        int(lb["class_id"]),
                        lb["class"],
                        float(lb["score"]),
                        tuple(lb["box"]) if lb.get("box") else None,
                    )
                    for lb in d["labels"]
                ],
            )
        )
    return out


@dataclass(frozen=True)
class BoxEvalReport:
    """Tiles mode's boxes on a video against its ground truth, and how long labelling took."""

    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    frames: int
    per_class: Mapping[str, Mapping[str, int]]  # class -> {'tp', 'fp', 'fn'}
    iou: float  # IoU a prediction needs to count as found
    tiles_per_frame: int
    ms_per_frame: float  # preprocess + inference + postprocess, per frame
    seconds: float
    config: TileConfig  # the tiles settings that ran
    engine: str = ""  # the engine's description, when run_boxes opened it

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return dataclasses.asdict(self)


def evaluate_video(
    engine: Engine,
    video: str | Path,
    truth_path: str | Path,
    tiles: TileConfig | None = None,
    iou: float = 0.3,
    max_frames: int = 0,
    stride: int = 1,
    batch: int = 4,
) -> BoxEvalReport:
    """Run tiles mode (``tiles``: its settings, None: the defaults) over ``video`` (every ``stride``-th frame)
    and score it against ``truth_path``."""
    import cv2

    from edge_app.frames.labellers import TileLabeller

    truth = load_truth(truth_path)
    lab = TileLabeller(engine, tiles)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise UserError(f"cannot read video '{video}'; pass the synthetic video written by `run.py demo`")
    preds: list[tuple[int, list[Label]]] = []
    pending: list[tuple[int, np.ndarray]] = []
    t0, i, ms = time.perf_counter(), 0, []

    def flush() -> None:
        labels, t = lab.label([im for _, im in pending])
        ms.append((t.preprocess + t.inference + t.postprocess) / len(pending))
        preds.extend((k, lb) for (k, _), lb in zip(pending, labels))
        pending.clear()

    try:
        while not max_frames or i < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            if i % stride == 0:
                pending.append((i, img))
                if len(pending) >= batch:
                    flush()
            i += 1
        if pending:
            flush()
    finally:
        cap.release()
    s = score(preds, truth, iou)
    return BoxEvalReport(
        precision=s.precision,
        recall=s.recall,
        tp=s.tp,
        fp=s.fp,
        fn=s.fn,
        frames=s.frames,
        per_class=s.per_class,
        iou=iou,
        tiles_per_frame=lab.tiles_per_frame,
        ms_per_frame=float(np.mean(ms)) if ms else float("nan"),
        seconds=time.perf_counter() - t0,
        config=lab.config,
    )


def run_boxes(
    engine: str | Path = "engines/demo",
    video: str | Path = "data/synthetic_video.mp4",
    truth: str | Path | None = None,
    tiles: TileConfig | None = None,
    match_iou: float = 0.3,
    max_frames: int = 0,
    stride: int = 1,
    backend: str = "auto",
    precision: str = "auto",
) -> BoxEvalReport:
    """Open ``engine`` and score tiles mode on ``video`` against ``truth`` (default: ``<video stem>.truth.jsonl``)."""
    from edge_app.runtime import open_engine

    truth = truth or Path(video).with_suffix(".truth.jsonl")
    with open_engine(engine, backend, precision) as eng:
        r = evaluate_video(eng, video, truth, tiles, match_iou, max_frames, stride)
        return dataclasses.replace(r, engine=eng.description)


def format_boxes(r: BoxEvalReport) -> list[str]:
    """The settings line, precision/recall and the per-class counts, for the terminal."""
    c = r.config
    lines = [
        f"tiles {'x'.join(map(str, c.grid))} scales {','.join(f'{v:g}' for v in c.scales)} overlap {c.min_overlap} "
        f"conf {c.conf} iou {c.iou} box_scale {c.box_scale} merge {c.merge} votes {c.min_votes}; "
        f"{r.tiles_per_frame} tiles/frame ({r.engine})",
        f"precision {r.precision:.3f}  recall {r.recall:.3f}  at IoU>={r.iou} with class match "
        f"(tp {r.tp}, fp {r.fp}, fn {r.fn}, {r.frames} frames, {r.ms_per_frame:.1f} ms/frame)",
    ]
    for cls, n in sorted(r.per_class.items()):
        lines.append(f"  {cls:10s} tp {n['tp']:4d}  fp {n['fp']:4d}  fn {n['fn']:4d}")
    return lines
