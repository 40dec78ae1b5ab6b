"""``detect`` against ``tiles`` on the same held-out video, scored by the same tool, timed side by side.

Both modes run through the frame loop's own labellers on the same 720p frames of the held-out video
(:data:`edge_app.data.scenes.HELDOUT_VIDEO`: never trained on, never used to choose a setting), one frame per
call as ``live`` runs them, the two modes taking turns in blocks so machine noise hits both alike. Each is
scored twice with faster-coco-eval (:mod:`edge_app.training.detect_metrics`):

* mAP@0.5 and mAP@0.5:0.95 of every box the mode ranks (tiles at conf 0.05, the detector at 0.001), the
  standard detector figure;
* precision and recall (IoU >= 0.5, class match) of the boxes it draws at its operating threshold (its
  default ``conf``), which is what ``live`` and ``annotate`` show a user.

Entry point: :func:`run_modes` (two engine folders -> scores per mode) and :func:`format_modes`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_app.errors import FieldError, UserError
from edge_app.frames.labellers import Labeller, ModeConfig, TileConfig, make_labeller
from edge_app.frames.results import Label
from edge_app.runtime.base import Engine

RANK_CONF = {"tiles": 0.05, "detect": 0.001}  # scores kept for mAP: the whole ranking each mode can give


def labels_to_dets(labels: Sequence[Label], names: Sequence[str]) -> np.ndarray:
    """One frame's boxes as detector rows (x1, y1, x2, y2, score, index in ``names``); labels without a box
    or of a class not in ``names`` (a classifier's 'background') are left out."""
    rows = [(*lab.box, lab.score, names.index(lab.name)) for lab in labels if lab.box is not None and lab.name in names]
    return np.asarray(rows, np.float32).reshape(-1, 6)


@dataclass(frozen=True)
class ModeScore:
    """One mode on the held-out frames."""

    mode: str
    engine: str  # the engine's description (backend, device, precision, file)
    map50: float
    map50_95: float
    precision: float  # at the operating threshold, IoU >= 0.5, class match
    recall: float
    conf: float  # the operating threshold
    ms_per_frame: float  # median wall ms of one label() call on one 720p frame (preprocess + inference + decode)
    ms_p90: float
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return (
            f"{self.mode:7s} mAP@0.5 {self.map50:.3f}  mAP@0.5:0.95 {self.map50_95:.3f}  P {self.precision:.3f} "
            f"R {self.recall:.3f} @conf {self.conf:.2f}  {self.ms_per_frame:.1f} ms/frame (p90 {self.ms_p90:.1f})  "
            f"[{self.engine}]"
        )


def _operating(labeller: Labeller) -> float:
    """The score threshold the labeller draws at (detect resolves its default from the engine)."""
    conf = getattr(labeller, "conf", None)
    return float(conf if conf is not None else getattr(labeller.config, "conf", 0.0))


def compare_modes(
    engines: dict[str, Engine],
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    names: Sequence[str],
    configs: dict[str, ModeConfig] | None = None,
    block: int = 5,
) -> dict[str, ModeScore]:
    """Score and time each ``{mode: engine}`` on ``frames`` (ground truth ``boxes``/``classes`` in frame pixels,
    class ids into ``names``). ``configs``: each mode's operating settings (None: its defaults)."""
    from edge_app.training import detect_metrics as dm

    configs = configs or {}
    ops = {m: make_labeller(e, m, configs.get(m)) for m, e in engines.items()}
    ranked = {
        m: make_labeller(e, m, dataclasses.replace(ops[m].config, conf=RANK_CONF.get(m, 0.0)))
        for m, e in engines.items()
    }
    drawn: dict[str, list[np.ndarray]] = {m: [] for m in engines}
    ranks: dict[str, list[np.ndarray]] = {m: [] for m in engines}
    ms: dict[str, list[float]] = {m: [] for m in engines}
    for s in range(0, len(frames), block):  # modes take turns, a block of frames each
        for m in engines:
            for f in frames[s : s + block]:
                t0 = time.perf_counter()
                (labs,), _ = ops[m].label([f])
                ms[m].append((time.perf_counter() - t0) * 1e3)
                drawn[m].append(labels_to_dets(labs, names))
                (labs,), _ = ranked[m].label([f])
                ranks[m].append(labels_to_dets(labs, names))
    out = {}
    for m, e in engines.items():
        conf = _operating(ops[m])
        full = dm.coco_map(ranks[m], boxes, classes, names)
        tp, fp, fn = dm.match_counts(drawn[m], boxes, classes, conf, 0.5)
        out[m] = ModeScore(
            mode=m,
            engine=e.description,
            map50=float(full["map50"]),
            map50_95=float(full["map50_95"]),
            precision=tp / max(1, tp + fp),
            recall=tp / max(1, tp + fn),
            conf=conf,
            ms_per_frame=float(np.median(ms[m])),
            ms_p90=float(np.percentile(ms[m], 90)),
            frames=len(frames),
        )
    return out


def heldout_comparison(
    detector: Engine, classifier: Engine, n_frames: int = 60, tiles: TileConfig | None = None
) -> dict[str, ModeScore]:
    """:func:`compare_modes` of detect (``detector``) and tiles (``classifier``) on the held-out 720p video."""
    from edge_app.data.scenes import CLASSES, heldout_video_frames

    for eng in (detector, classifier):
        if not set(CLASSES) <= set(eng.meta.labels):
            raise UserError(
                f"engine '{eng.meta.name}' does not know the built-in shapes ({', '.join(CLASSES)}), which the "
                "held-out video shows; compare engines trained on the built-in synthetic data"
            )
    frames, boxes, classes = heldout_video_frames(n_frames)
    return compare_modes(
        {"detect": detector, "tiles": classifier}, frames, boxes, classes, list(CLASSES), {"tiles": tiles}
    )


def run_modes(
    detector: str | Path = "engines/demo-det",
    classifier: str | Path = "engines/demo",
    frames: int = 60,
    backend: str = "auto",
    precision: str = "auto",
    tiles: TileConfig | None = None,
) -> dict[str, ModeScore]:
    """Open both engine folders and score detect (``detector``) against tiles (``classifier``) on ``frames``
    frames of the held-out video."""
    from edge_app.runtime import open_engine

    if frames < 1:
        raise FieldError("frames", str(frames), "scores nothing; give at least 1, e.g. 60")
    with open_engine(detector, backend, precision) as det, open_engine(classifier, backend, precision) as cls:
        return heldout_comparison(det, cls, frames, tiles)


def format_modes(scores: Mapping[str, ModeScore]) -> list[str]:
    """One line per mode and, with both detect and tiles, the ratio of their ms per frame."""
    lines = [r.line() for r in scores.values()]
    if "detect" in scores and "tiles" in scores:
        d, t = scores["detect"], scores["tiles"]
        lines.append(
            f"detect takes {d.ms_per_frame / t.ms_per_frame:.2f}x the ms per frame of tiles ({d.frames} frames, 720p)"
        )
    return lines
