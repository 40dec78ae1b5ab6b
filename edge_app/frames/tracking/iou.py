"""The IOU tracker (Bochinski et al., AVSS 2017), with jetson-inference's ``--tracking`` defaults.

No motion model: a track continues with the box of the next frame that overlaps its last box the most.
jetson-inference's ``trackerIOU`` adds what this class has too: a track shows its ID after ``min_hits``
consecutive frames (``minFrames`` 3), is kept ``buffer`` frames after its object vanished (``dropFrames``
15) and needs an overlap of ``match_iou`` (``overlapThreshold`` 0.5). It costs next to nothing and suits
slow objects seen at a high frame rate; fast or long-occluded objects lose their ID (ByteTrack keeps it).

Matching is greedy by overlap, as Bochinski's tracker is (each track takes its best box); done over all
pairs at once in descending IoU so the result does not depend on the order of the tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_app.frames.tracking.base import Detections, Tracker, TrackerConfig, box_iou, register_tracker


def greedy_assign(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs taken in descending similarity, each row and column once, all >= ``threshold``."""
    if similarity.size == 0:
        return []
    rows, cols = np.nonzero(similarity >= threshold)
    order = np.argsort(-similarity[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class _IouTracks:
    box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    tid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: not shown yet
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    best: np.ndarray = field(default_factory=lambda: np.zeros(0))  # best score so far (Bochinski's sigma_h test)
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    next_id: int = 1

    def keep(self, mask: np.ndarray) -> None:
        for name in ("box", "tid", "cls", "hits", "best", "last"):
            setattr(self, name, getattr(self, name)[mask])


@register_tracker("iou")
class IouTracker(Tracker):
    """Bochinski's IOU tracker with jetson-inference's settings; see the module docstring."""

    # jetson-inference trackerIOU: minFrames 3, dropFrames 15, overlapThreshold 0.5.
    defaults = TrackerConfig(activation=0.5, high_score=0.5, low_score=0.1, buffer=15, match_iou=0.5, min_hits=3)

    def _new_state(self) -> _IouTracks:
        return _IouTracks()

    def _update(self, st: _IouTracks, frame_index: int, dets: Detections) -> np.ndarray:
        cfg = self.config
        out = np.full(len(dets.scores), -1, np.int64)
        cand = np.flatnonzero(dets.scores >= cfg.low_score)
        sim = box_iou(st.box, dets.boxes[cand])
        if cfg.class_aware:
            sim = np.where(st.cls[:, None] == dets.classes[cand][None, :], sim, 0.0)
        pairs = greedy_assign(sim, cfg.match_iou)
        matched = np.zeros(len(st.tid), bool)
        claimed = np.zeros(len(cand), bool)
        for r, c in sorted(pairs, key=lambda p: p[1]):  # IDs in detection order: deterministic
            d = cand[c]
            matched[r], claimed[c] = True, True
            st.box[r] = dets.boxes[d]
            st.cls[r] = dets.classes[d]
            st.hits[r] += 1
            st.best[r] = max(st.best[r], dets.scores[d])
            st.last[r] = frame_index
            if st.tid[r] < 0 and st.hits[r] >= cfg.min_hits and st.best[r] >= cfg.activation:
                st.tid[r] = st.next_id
                st.next_id += 1
            out[d] = st.tid[r]
        # A shown track waits ``buffer`` frames at its last box; a track not shown yet needs consecutive frames.
        st.hits[~matched] = 0
        st.keep(matched | ((st.tid >= 0) & (frame_index - st.last <= cfg.buffer)))
        new = cand[~claimed]
        if len(new):
            tid = np.full(len(new), -1, np.int64)
            if cfg.min_hits <= 1:
                ok = dets.scores[new] >= cfg.activation
                tid[ok] = np.arange(st.next_id, st.next_id + int(ok.sum()))
                st.next_id += int(ok.sum())
                out[new] = tid
            st.box = np.concatenate([st.box, dets.boxes[new]])
            st.tid = np.concatenate([st.tid, tid])
            st.cls = np.concatenate([st.cls, dets.classes[new]])
            st.hits = np.concatenate([st.hits, np.ones(len(new), np.int64)])
            st.best = np.concatenate([st.best, dets.scores[new]])
            st.last = np.concatenate([st.last, np.full(len(new), frame_index, np.int64)])
        return out
