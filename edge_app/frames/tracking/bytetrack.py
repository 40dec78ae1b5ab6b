"""ByteTrack (Zhang et al., ECCV 2022): two-stage association with a constant-velocity Kalman filter.

Each frame: predict every track with a Kalman filter on (cx, cy, aspect, height) and their velocities
(ByteTrack's ``KalmanFilter``, noise scaled by the box height); match high-score detections to confirmed and
lost tracks on IoU x score; match the low-score detections left over to tracks still unmatched (the occluded
ones, whose boxes score low: this second stage is what keeps their IDs); match tentative tracks to the
remaining high-score boxes; start tracks from unmatched boxes scoring at least ``activation``; drop lost
tracks after ``buffer`` frames.

Why written here rather than wrapping the ``trackers`` package's ``ByteTrackTracker``: the frame loop needs
per-source state that can be rebuilt by replaying JSON lines, class-aware matching, IDs shown only after
``min_hits`` frames without numbering gaps, and <= 1 ms per frame at 100 boxes; the package takes
``supervision.Detections`` (one more conversion per frame and supervision as a run-time dependency), is not
class-aware, and its Kalman filter runs per tracklet in Python. The filter here is ByteTrack's, vectorised
over all tracks (one batched predict and update), and the assignment is scipy's ``linear_sum_assignment``,
the solver the ``trackers`` package uses too. ``edge_app.eval.track`` scores both on the same detections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge_app.frames.tracking.base import Detections, Tracker, TrackerConfig, box_iou, register_tracker

# ByteTrack's filter constants: position / velocity noise as fractions of the box height per frame.
STD_POS = 1.0 / 20
STD_VEL = 1.0 / 160
# ByteTrack's fixed second-stage threshold (its cost 0.5): a low-score box is a weak cue, so it must overlap well.
LOW_MATCH_IOU = 0.5

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t
_H = np.eye(4, 8)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> centre x, centre y, aspect w/h, height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)  # a zero-height box would divide by zero
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], 1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xyah`."""
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], 1)


def kalman_initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (N, 8) and covariances (N, 8, 8) of new tracks from measurements (N, 4) xyah."""
    h = z[:, 3]
    std = np.stack(
        [2 * STD_POS * h, 2 * STD_POS * h, np.full_like(h, 1e-2), 2 * STD_POS * h]
        + [10 * STD_VEL * h, 10 * STD_VEL * h, np.full_like(h, 1e-5), 10 * STD_VEL * h],
        1,
    )
    mean = np.concatenate([z, np.zeros_like(z)], 1)
    cov = np.zeros((len(z), 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def kalman_predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One constant-velocity step for all tracks at once."""
    h = mean[:, 3]
    std = np.stack(
        [STD_POS * h, STD_POS * h, np.full_like(h, 1e-2), STD_POS * h]
        + [STD_VEL * h, STD_VEL * h, np.full_like(h, 1e-5), STD_VEL * h],
        1,
    )
    mean = mean @ _F.T
    cov = _F @ cov @ _F.T
    idx = np.arange(8)
    cov[:, idx, idx] += std**2
    return mean, cov


def kalman_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (M, 8) with their matched measurements (M, 4) xyah."""
    h = mean[:, 3]
    r = np.stack([STD_POS * h, STD_POS * h, np.full_like(h, 1e-1), STD_POS * h], 1) ** 2
    proj_cov = cov[:, :4, :4].copy()  # H P H^T with H = [I 0]
    idx = np.arange(4)
    proj_cov[:, idx, idx] += r
    pht = cov[:, :, :4]  # P H^T
    # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite).
    gain = np.linalg.solve(proj_cov, np.transpose(pht, (0, 2, 1))).transpose(0, 2, 1)
    innov = z - mean[:, :4]
    mean = mean + np.einsum("nij,nj->ni", gain, innov)
    cov = cov - gain @ proj_cov @ np.transpose(gain, (0, 2, 1))
    return mean, cov


def assign(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Optimal (row, col) pairs maximising similarity, keeping pairs at or above ``threshold``.

    Gated entries are zeroed before solving, as ByteTrack's ``lapjv(cost_limit=...)`` excludes them from the
    solution, so a gated pair never pushes a valid one aside.
    """
    if similarity.size == 0:
        return []
    gated = np.where(similarity >= threshold, similarity, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    keep = gated[rows, cols] >= threshold
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


@dataclass
class _Tracks:
    """One source's tracks as parallel arrays (vectorised Kalman steps); row order is creation order."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 8, 8)))
    tid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: tentative (no ID shown yet)
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # consecutive matched frames
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # frame index of the last match
    lost: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    frame: int | None = None  # the last frame index seen
    next_id: int = 1

    def keep(self, mask: np.ndarray) -> None:
        for name in ("mean", "cov", "tid", "cls", "hits", "last", "lost"):
            setattr(self, name, getattr(self, name)[mask])


def _similarity(
    tracks: _Tracks, rows: np.ndarray, pred: np.ndarray, dets: Detections, cols: np.ndarray, fuse: bool, aware: bool
) -> np.ndarray:
    sim = box_iou(pred[rows], dets.boxes[cols])
    if fuse:  # ByteTrack's fuse_score: a confident box wins a tie between two overlapping ones
        sim = sim * dets.scores[cols][None, :]
    if aware:
        sim = np.where(tracks.cls[rows][:, None] == dets.classes[cols][None, :], sim, 0.0)
    return sim


@register_tracker("bytetrack")
class ByteTracker(Tracker):
    """ByteTrack on one frame loop, with its state per source; see the module docstring."""

    defaults = TrackerConfig()

    def _new_state(self) -> _Tracks:
        return _Tracks()

    def _update(self, st: _Tracks, frame_index: int, dets: Detections) -> np.ndarray:
        cfg = self.config
        n_det = len(dets.scores)
        out = np.full(n_det, -1, np.int64)
        # Frames the source skipped (a live source drops frames) are predicted through, up to the buffer.
        steps = 1 if st.frame is None else int(min(max(frame_index - st.frame, 1), cfg.buffer + 1))
        st.frame = frame_index
        if len(st.tid):
            st.mean[st.lost, 7] = 0.0  # ByteTrack: a lost box stops growing or shrinking
            for _ in range(steps):
                st.mean, st.cov = kalman_predict(st.mean, st.cov)
        pred = xyah_to_xyxy(st.mean[:, :4])
        high = np.flatnonzero(dets.scores >= cfg.high_score)
        low = np.flatnonzero((dets.scores >= cfg.low_score) & (dets.scores < cfg.high_score))
        matched_rows: list[int] = []
        matched_cols: list[int] = []

        # Stage 1: confirmed tracks (tracked and lost) with the high-score boxes.
        confirmed = np.flatnonzero(st.tid >= 0)
        pairs = assign(_similarity(st, confirmed, pred, dets, high, True, cfg.class_aware), cfg.match_iou)
        for r, c in pairs:
            matched_rows.append(int(confirmed[r]))
            matched_cols.append(int(high[c]))
        left_high = np.setdiff1d(high, high[[c for _, c in pairs]], assume_unique=True)
        unmatched = np.setdiff1d(confirmed, confirmed[[r for r, _ in pairs]], assume_unique=True)

        # Stage 2: tracks tracked last frame but unmatched now, with the low-score boxes (occluded objects).
        tracked = unmatched[~st.lost[unmatched]]
        pairs = assign(_similarity(st, tracked, pred, dets, low, False, cfg.class_aware), LOW_MATCH_IOU)
        for r, c in pairs:
            matched_rows.append(int(tracked[r]))
            matched_cols.append(int(low[c]))

        # Stage 3: tentative tracks (seen last frame only) with the high-score boxes left.
        tentative = np.flatnonzero(st.tid < 0)
        pairs = assign(_similarity(st, tentative, pred, dets, left_high, True, cfg.class_aware), cfg.match_iou)
        for r, c in pairs:
            matched_rows.append(int(tentative[r]))
            matched_cols.append(int(left_high[c]))
        new = np.setdiff1d(left_high, left_high[[c for _, c in pairs]], assume_unique=True)

        # Correct the matched tracks in one batch.
        matched = np.zeros(len(st.tid), bool)
        if matched_rows:
            rows, cols = np.array(matched_rows), np.array(matched_cols)
            order = np.argsort(cols, kind="stable")  # IDs are handed out in detection order: deterministic
            rows, cols = rows[order], cols[order]
            st.mean[rows], st.cov[rows] = kalman_update(st.mean[rows], st.cov[rows], xyxy_to_xyah(dets.boxes[cols]))
            matched[rows] = True
            st.hits[rows] += 1
            st.last[rows] = frame_index
            st.lost[rows] = False
            st.cls[rows] = dets.classes[cols]
            for r, c in zip(rows.tolist(), cols.tolist()):
                if st.tid[r] < 0 and st.hits[r] >= cfg.min_hits:
                    st.tid[r] = st.next_id
                    st.next_id += 1
                out[c] = st.tid[r]

        # Unmatched: confirmed tracks become lost (kept ``buffer`` frames), tentative ones are dropped.
        st.hits[~matched] = 0
        st.lost[~matched & (st.tid >= 0)] = True
        st.keep(matched | ((st.tid >= 0) & (frame_index - st.last <= cfg.buffer)))

        # New tracks from confident boxes nothing claimed.
        new = new[dets.scores[new] >= cfg.activation]
        if len(new):
            mean, cov = kalman_initiate(xyxy_to_xyah(dets.boxes[new]))
            tid = np.full(len(new), -1, np.int64)
            if cfg.min_hits <= 1:
                tid = np.arange(st.next_id, st.next_id + len(new))
                st.next_id += len(new)
                out[new] = tid
            st.mean = np.concatenate([st.mean, mean])
            st.cov = np.concatenate([st.cov, cov])
            st.tid = np.concatenate([st.tid, tid])
            st.cls = np.concatenate([st.cls, dets.classes[new]])
            st.hits = np.concatenate([st.hits, np.ones(len(new), np.int64)])
            st.last = np.concatenate([st.last, np.full(len(new), frame_index, np.int64)])
            st.lost = np.concatenate([st.lost, np.zeros(len(new), bool)])
        return out
