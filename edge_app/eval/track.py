"""Tracker scores (MOTA, IDF1, HOTA, ID switches), line-count error and tracker cost, ours beside a library's.

Every tracker runs on the SAME detections of the held-out tracking video (:mod:`edge_app.data.tracks`), the
way NVIDIA and Roboflow compare trackers:

- ``gt+noise``: the ground truth turned into detections by a seeded noise model (box jitter, dropped boxes
  and short bursts of misses, false positives, scores that fall with occlusion, hidden objects unseen);
- ``detector``: a detector engine's boxes, given as the JSON lines ``annotate --mode detect`` wrote for the
  held-out video (``write_track_set`` writes that video).

Scoring uses the ``trackers`` package's evaluation (Roboflow; the same matching and metrics as TrackEval),
reading MOTChallenge files, so the files it scores are the ones a user could hand TrackEval. ``motmetrics``
1.4 is not used: it calls ``np.asfarray``, removed in NumPy 2. The library trackers compared are the
``trackers`` package's ByteTrack and SORT, given our settings where theirs mean the same.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_app.data.tracks import HELDOUT_RECIPE, TEST_RECIPE, TrackRecipe, TrackTruth, gt_mot_text, simulate
from edge_app.errors import UserError
from edge_app.frames.results import Label
from edge_app.frames.tracking.base import PostLabelStep, TrackerConfig, build_tracker, tracker_defaults
from edge_app.frames.tracking.counting import LineCounter, LineSpec
from edge_app.frames.tracking.offline import read_annotations
from edge_app.video.mot import mot_rows

RECIPES = {"heldout": HELDOUT_RECIPE, "test": TEST_RECIPE}
TRACKERS_PIN = "trackers==2.6.1"  # the version these numbers were measured with (needs supervision 0.31)


# ---------------------------------------------------------------------------------------------- detections
@dataclass(frozen=True)
class NoiseConfig:
    """How ground truth becomes detections; defaults resemble a decent detector on this video."""

    jitter: float = 0.04  # box edge noise, std as a fraction of the box size
    drop: float = 0.06  # chance a visible object is missed in a frame
    burst: float = 0.01  # chance per object and frame that a 3-8 frame run of misses starts (flicker)
    false_positives: float = 0.5  # mean false boxes per frame (Poisson), mostly low scores
    min_visibility: float = 0.3  # an object less visible than this is not detected at all
    seed: int = 0


def noisy_detections(truth: TrackTruth, noise: NoiseConfig = NoiseConfig()) -> list[list[Label]]:
    """Per frame, detections made from ``truth`` with ``noise`` (seeded; the same for every tracker)."""
    from edge_app.data.synthetic import SHAPES

    rng = np.random.default_rng([noise.seed, truth.recipe.seed])
    w, h = truth.recipe.width, truth.recipe.height
    missing: dict[int, int] = {}
    out = []
    for rows in truth.frames:
        labels = []
        for g in rows:
            if missing.get(g.gt_id, 0) > 0:
                missing[g.gt_id] -= 1
                continue
            if rng.random() < noise.burst:
                missing[g.gt_id] = int(rng.integers(3, 9))
                continue
            if g.visibility < noise.min_visibility or rng.random() < noise.drop:
                continue
            x1, y1, x2, y2 = g.box
            bw, bh = x2 - x1, y2 - y1
            d = rng.normal(0, noise.jitter, 4) * np.array([bw, bh, bw, bh])
            box = np.clip([x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]], 0, [w - 1, h - 1, w - 1, h - 1])
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            # Occluded objects score lower: ByteTrack's second stage exists for exactly these boxes.
            score = float(np.clip(0.35 + 0.6 * g.visibility - abs(rng.normal(0, 0.12)), 0.05, 0.99))
            labels.append(Label(SHAPES.index(g.cls), g.cls, score, tuple(float(v) for v in box)))  # type: ignore[arg-type]
        for _ in range(rng.poisson(noise.false_positives)):
            s = rng.uniform(25, 90)
            x, y = rng.uniform(0, w - s), rng.uniform(0, h - s)
            c = int(rng.integers(0, len(SHAPES)))
            score = float(rng.choice([rng.uniform(0.1, 0.5), rng.uniform(0.5, 0.8)], p=[0.8, 0.2]))
            labels.append(Label(c, SHAPES[c], score, (x, y, x + s, y + s)))
        out.append(labels)
    return out


def detector_detections(jsonl: str | Path, frames: int) -> list[list[Label]]:
    """Per frame, the boxes of an annotations JSON-lines file (its track IDs dropped); missing frames: none."""
    out: list[list[Label]] = [[] for _ in range(frames)]
    for r in read_annotations(jsonl):
        if r.index < frames:
            out[r.index] = [dataclasses.replace(lb, track_id=None) for lb in r.labels if lb.box is not None]
    return out


# ---------------------------------------------------------------------------------------------- library trackers
class LibraryTracker:
    """The ``trackers`` package's ByteTrack or SORT behind our post-label step interface (one per source)."""

    def __init__(self, kind: str, config: TrackerConfig) -> None:
        try:
            import supervision as sv
            import trackers
        except ImportError:
            raise UserError(f"the library comparison needs the trackers package; pip install {TRACKERS_PIN}") from None
        self._sv = sv
        self.kind = kind
        common = dict(
            lost_track_buffer=config.buffer,
            frame_rate=30.0,
            track_activation_threshold=config.activation,
            minimum_consecutive_frames=config.min_hits,
            minimum_iou_threshold=config.match_iou,
        )
        if kind == "bytetrack":
            self._make: Callable[[], Any] = lambda: trackers.ByteTrackTracker(
                **common, high_conf_det_threshold=config.high_score
            )
        elif kind == "sort":
            self._make = lambda: trackers.SORTTracker(**common)
        else:
            raise UserError(f"library tracker '{kind}' is unknown; choose bytetrack or sort")
        self._low = config.low_score
        self._states: dict[int, Any] = {}

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """Labels with the library's IDs (+1, so they start at 1 as ours do)."""
        tr = self._states.get(source_id)
        if tr is None:
            tr = self._states[source_id] = self._make()
        idx = [i for i, lb in enumerate(labels) if lb.box is not None and lb.score >= self._low]
        dets = self._sv.Detections(
            xyxy=np.array([labels[i].box for i in idx], np.float32).reshape(-1, 4),
            confidence=np.array([labels[i].score for i in idx], np.float32),
            class_id=np.array([labels[i].class_id for i in idx], int),
            data={"index": np.array(idx, int)},
        )
        res = tr.update(dets)
        out = [dataclasses.replace(lb, track_id=None) for lb in labels]
        for i, tid in zip(res.data["index"].tolist(), res.tracker_id.tolist()):
            if tid >= 0:
                out[i] = dataclasses.replace(labels[i], track_id=int(tid) + 1)
        return out

    def reset(self, source_id: int) -> None:
        """Forget ``source_id``."""
        self._states.pop(source_id, None)


def make_step(name: str) -> PostLabelStep:
    """A tracker by comparison name: ``bytetrack``, ``bytetrack-any-class``, ``iou``, ``trackers-bytetrack``,
    ``trackers-sort`` (library trackers get our ByteTrack's settings, class-agnostic as they are)."""
    if name == "bytetrack-any-class":
        return build_tracker("bytetrack", class_aware=False)
    if name.startswith("trackers-"):
        return LibraryTracker(name.removeprefix("trackers-"), tracker_defaults("bytetrack"))
    return build_tracker(name)


DEFAULT_TRACKERS = ("bytetrack", "bytetrack-any-class", "iou", "trackers-bytetrack", "trackers-sort")


# ---------------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class TrackerScore:
    """One tracker on one set of detections."""

    tracker: str
    detections: str  # "gt+noise" or "detector"
    mota: float  # fractions (0.75 = 75 %)
    idf1: float
    hota: float
    id_switches: int
    ms_per_frame: float  # mean tracker update time on this video
    counted: int  # line crossings counted
    count_error: int  # sum over class and direction of |counted - ground truth|


@dataclass(frozen=True)
class BenchRow:
    """Tracker cost at ``detections`` boxes per frame."""

    tracker: str
    detections: int
    p50_ms: float
    p90_ms: float


@dataclass(frozen=True)
class TrackEvalResult:
    """What :func:`run_track_eval` measured."""

    recipe: str
    frames: int
    gt_ids: int
    gt_crossings: int
    scores: tuple[TrackerScore, ...]
    bench: tuple[BenchRow, ...]
    out_dir: Path
    gt_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def gt_crossings(truth: TrackTruth) -> dict[str, dict[str, int]]:
    """Crossings of the recipe's line in view: the LineCounter without a band on the true boxes, one identity
    per leg (an object leaving on one side and re-entering on the other has not crossed in view)."""
    counter = LineCounter(LineSpec("line", *truth.recipe.counting_line()), hysteresis=0.0, min_margin=0.0)
    for t, rows in enumerate(truth.frames):
        labels = [Label(0, g.cls, 1.0, g.box, g.gt_id * 1000 + g.leg) for g in rows]
        counter.update(0, t, labels)
    return counter.counts(0)


def _count_error(counted: dict[str, dict[str, int]], truth: dict[str, dict[str, int]]) -> int:
    err = 0
    for direction in ("in", "out"):
        a, b = Counter(counted.get(direction, {})), Counter(truth.get(direction, {}))
        err += sum(abs(a[k] - b[k]) for k in set(a) | set(b))
    return err


def _evaluate(gt_path: Path, mot_path: Path) -> tuple[float, float, float, int]:
    try:
        from trackers.eval import evaluate_mot_sequence
    except ImportError:
        raise UserError(f"scoring trackers needs the trackers package; pip install {TRACKERS_PIN}") from None
    if mot_path.stat().st_size == 0:
        return 0.0, 0.0, 0.0, 0
    r = evaluate_mot_sequence(gt_path, mot_path, metrics=["CLEAR", "HOTA", "Identity"])
    return float(r.CLEAR.MOTA), float(r.Identity.IDF1), float(r.HOTA.HOTA), int(r.CLEAR.IDSW)


def score_tracker(
    name: str, detections: list[list[Label]], truth: TrackTruth, gt_path: Path, out_dir: Path, kind: str
) -> TrackerScore:
    """Track ``detections`` with tracker ``name``, write its MOT file into ``out_dir`` and score it."""
    step = make_step(name)
    counter = LineCounter(LineSpec("line", *truth.recipe.counting_line()))
    rows: list[str] = []
    spent = 0.0
    for t, labels in enumerate(detections):
        t0 = time.perf_counter()
        tracked = step.update(0, t, labels)
        spent += time.perf_counter() - t0
        counter.update(0, t, tracked)
        rows += mot_rows(t, [(lb.track_id, lb.box, lb.score) for lb in tracked if lb.track_id is not None])
    mot_path = out_dir / f"{kind.replace('+', '_')}.{name}.txt"
    mot_path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    mota, idf1, hota, idsw = _evaluate(gt_path, mot_path)
    counts = counter.counts(0)
    return TrackerScore(
        name,
        kind,
        mota,
        idf1,
        hota,
        idsw,
        spent / max(1, len(detections)) * 1e3,
        sum(sum(v.values()) for v in counts.values()),
        _count_error(counts, gt_crossings(truth)),
    )


def bench_tracker(name: str, detections: int = 100, frames: int = 300, warmup: int = 30, seed: int = 0) -> BenchRow:
    """Per-frame cost of tracker ``name`` at ``detections`` moving boxes (warm-up excluded), p50 / p90 in ms."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1800, (detections, 2))
    vel = rng.uniform(-3, 3, (detections, 2))
    size = rng.uniform(20, 60, (detections, 1))
    scores = rng.uniform(0.3, 1.0, detections)
    step = make_step(name)
    times = []
    for t in range(frames + warmup):
        p = pos + vel * t + rng.normal(0, 1, pos.shape)
        boxes = np.concatenate([p, p + size], 1)
        labels = [Label(0, "obj", float(s), tuple(b.tolist())) for s, b in zip(scores, boxes)]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        step.update(0, t, labels)
        if t >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return BenchRow(name, detections, float(np.percentile(times, 50)), float(np.percentile(times, 90)))


def run_track_eval(
    recipe: str | TrackRecipe = "heldout",
    detections_jsonl: str | Path | None = None,
    trackers: Sequence[str] = DEFAULT_TRACKERS,
    noise: NoiseConfig = NoiseConfig(),
    out_dir: str | Path | None = None,
    bench: bool = True,
    bench_detections: int = 100,
) -> TrackEvalResult:
    """Score ``trackers`` on recipe ``recipe``'s ground truth with noise and, given ``detections_jsonl``, on a
    detector's boxes; MOT files and ``gt.txt`` go to ``out_dir`` (a temporary folder when None)."""
    if isinstance(recipe, str) and recipe not in RECIPES:
        raise UserError(f"tracking recipe '{recipe}' is unknown; choose one of {', '.join(RECIPES)}")
    truth = simulate(RECIPES[recipe] if isinstance(recipe, str) else recipe)
    name = recipe if isinstance(recipe, str) else f"seed {recipe.seed}"
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="track-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    gt_path = out / "gt.txt"
    gt_path.write_text(gt_mot_text(truth), encoding="utf-8")
    sets = [("gt+noise", noisy_detections(truth, noise))]
    if detections_jsonl is not None:
        sets.append(("detector", detector_detections(detections_jsonl, len(truth.frames))))
    scores = tuple(score_tracker(n, dets, truth, gt_path, out, kind) for kind, dets in sets for n in trackers)
    rows = tuple(bench_tracker(n, bench_detections) for n in trackers) if bench else ()
    gtc = gt_crossings(truth)
    return TrackEvalResult(
        name,
        len(truth.frames),
        len(truth.classes),
        sum(sum(v.values()) for v in gtc.values()),
        scores,
        rows,
        out,
        gtc,
    )


def format_track_eval(result: TrackEvalResult) -> list[str]:
    """The result as table lines (MOTA, IDF1, HOTA in %, ID switches, line counts, cost)."""
    lines = [
        f"tracking video '{result.recipe}': {result.frames} frames, {result.gt_ids} identities, "
        f"{result.gt_crossings} line crossings in view",
        f"{'detections':<10} {'tracker':<20} {'MOTA':>6} {'IDF1':>6} {'HOTA':>6} {'IDsw':>5} "
        f"{'counted':>7} {'err':>4} {'ms/frame':>8}",
    ]
    for s in result.scores:
        lines.append(
            f"{s.detections:<10} {s.tracker:<20} {s.mota * 100:6.1f} {s.idf1 * 100:6.1f} {s.hota * 100:6.1f} "
            f"{s.id_switches:5d} {s.counted:7d} {s.count_error:4d} {s.ms_per_frame:8.3f}"
        )
    if result.bench:
        lines.append(f"tracker cost at {result.bench[0].detections} boxes per frame (warm-up excluded):")
        for b in result.bench:
            lines.append(f"  {b.tracker:<20} p50 {b.p50_ms:.3f} ms  p90 {b.p90_ms:.3f} ms")
    lines.append(f"MOT files and gt.txt: {result.out_dir}")
    return lines
