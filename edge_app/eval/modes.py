"""``detect`` against ``tiles`` on the same held-out video, scored by the same tool, timed side by side.

Both modes run through the frame loop's own labellers on the same 720p frames of the held-out video
(:data:`edge_app.data.scenes.HELDOUT_VIDEO`: never trained on, never used to choose a setting), one frame per
call as ``live`` runs them, the two modes taking turns in blocks so machine noise hits both alike. Each is
scored twice with faster-coco-eval (:mod:`edge_app.training.detect_metrics`):

* mAP@0.5 and mAP@0.5:0.95 of every box the mode ranks (tiles at conf 0.05, the detector at 0.001), the
  standard detector figure;
* precision and recall (IoU >= 0.5, class match) of the boxes it draws at its operating threshold (its
  default ``conf``), which is what ``live`` and ``annotate`` show a user.

Run: ``python -m edge_app.eval.modes --detector engines/demo-det --classifier engines/demo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_app.errors import UserError
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


def main(argv: list[str] | None = None) -> int:
    """Print detect vs tiles on the held-out video."""
    from edge_app.runtime import open_engine

    p = argparse.ArgumentParser(prog="python -m edge_app.eval.modes", description=__doc__.splitlines()[0])
    p.add_argument("--detector", default="engines/demo-det", help="detector engine (default engines/demo-det)")
    p.add_argument("--classifier", default="engines/demo", help="classifier engine for tiles (default engines/demo)")
    p.add_argument("--frames", type=int, default=60, help="held-out frames (every 5th of the video; default 60)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto")
    a = p.parse_args(argv)
    try:
        if a.frames < 1:
            raise UserError(f"--frames {a.frames} scores nothing; give at least 1, e.g. 60")
        with (
            open_engine(a.detector, a.backend, a.precision) as det,
            open_engine(a.classifier, a.backend, a.precision) as cls,
        ):
            res = heldout_comparison(det, cls, a.frames)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in res.values():
        print(r.line())
    d, t = res["detect"], res["tiles"]
    print(f"detect takes {d.ms_per_frame / t.ms_per_frame:.2f}x the ms per frame of tiles ({d.frames} frames, 720p)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
