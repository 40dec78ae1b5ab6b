"""Logits -> labels: softmax, top-k, and the typed per-frame result that flows to annotators and sinks."""

from __future__ import annotations

import numpy as np

from edge_app.frames.results import Label


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topk(logits: np.ndarray, labels: list[str], k: int = 3) -> list[list[Label]]:
    """Top-``k`` labels per row of ``logits`` (N,C), highest score first."""
    if k < 1:
        raise ValueError(f"top-k must be at least 1, got {k}")
    probs = softmax(logits)
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1)[:, :k]
    return [[Label(int(c), labels[int(c)], float(p[c])) for c in row] for p, row in zip(probs, idx)]


# ----------------------------------------------------------------------------------------------- tiles -> boxes
BACKGROUND = "background"


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) against boxes (N,4), all x1,y1,x2,y2 floats."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, highest score first; drops boxes with IoU > ``iou``."""
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"NMS IoU threshold must be in [0, 1], got {iou}")
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            rest = np.asarray(order)
            ious = box_iou(boxes[i], boxes[rest])
            order = [int(j) for j, v in zip(rest, ious) if v <= iou]
    return keep


def classwise_nms(labels: list[Label], iou: float) -> list[Label]:
    """NMS run separately per class, so overlapping boxes of different classes both survive."""
    out: list[Label] = []
    for cid in sorted({lab.class_id for lab in labels}):
        group = [lab for lab in labels if lab.class_id == cid and lab.box is not None]
        keep = nms(np.array([lab.box for lab in group]), np.array([lab.score for lab in group]), iou)
        out += [group[k] for k in keep]
    return sorted(out, key=lambda lab: -lab.score)


def _shrink(box: np.ndarray, factor: float) -> np.ndarray:
    """Scale a box about its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def tiles_to_boxes(
    logits: np.ndarray,
    tiles: np.ndarray,
    labels: list[str],
    conf: float = 0.5,
    iou: float = 0.5,
    box_scale: float = 1.0,
    merge: bool = False,
    min_votes: int = 1,
) -> list[Label]:
    """Labels with boxes from per-tile logits (N,C) of square ``tiles`` (N,4), after class-wise NMS.

    A tile is a candidate when its best class is not ``background`` and its probability is >= ``conf``.
    Refinements, all off by default (see ``TileConfig`` for the measured settings):

    * ``box_scale`` < 1 shrinks each candidate's box about the tile centre toward the object size the
      model was trained on (objects fill 0.5-0.85 of a training crop);
    * a candidate's *votes* are the same-class candidates whose boxes overlap it (itself included);
      ``min_votes`` > 1 drops candidates no overlapping tile agrees with: an object is seen by several
      overlapping tiles, while a misreading (say, a square cut by the tile edge taken for a triangle) rarely
      repeats in the neighbouring tiles that see the object from elsewhere;
    * ``merge`` replaces each candidate's box by the score-weighted mean of the boxes that voted for it,
      so overlapping tiles agree on one box between them.

    Class-wise NMS with ``iou`` then keeps the best-scoring box of each cluster.
    """
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"confidence threshold must be in [0, 1], got {conf}")
    if not 0.0 < box_scale <= 1.0:
        raise ValueError(f"box_scale must be in (0, 1], got {box_scale}")
    if min_votes < 1:
        raise ValueError(f"min_votes must be at least 1, got {min_votes}")
    if len(logits) != len(tiles):
        raise ValueError(f"got {len(logits)} rows of logits for {len(tiles)} tiles")
    probs = softmax(logits) if len(logits) else np.zeros((0, len(labels)), np.float32)
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    bg = labels.index(BACKGROUND) if BACKGROUND in labels else -1
    cand = [i for i in range(len(tiles)) if best[i] != bg and probs[i, best[i]] >= conf]
    if not cand:
        return []
    boxes = np.array([_shrink(tiles[i].astype(np.float64), box_scale) for i in cand])
    scores = np.array([float(probs[i, best[i]]) for i in cand])
    classes = np.array([int(best[i]) for i in cand])
    keep = np.ones(len(cand), bool)
    fused = boxes.copy()
    if merge or min_votes > 1:
        for c in np.unique(classes):
            idx = np.flatnonzero(classes == c)
            for i in idx:
                voters = idx[box_iou(boxes[i], boxes[idx]) > 0.0]
                keep[i] = len(voters) >= min_votes
                if merge:
                    w = scores[voters]
                    fused[i] = (boxes[voters] * w[:, None]).sum(0) / w.sum()
    out = [
        Label(int(c), labels[int(c)], float(sc), tuple(float(v) for v in b))  # type: ignore[arg-type]
        for c, sc, b, k in zip(classes, scores, fused, keep)
        if k
    ]
    return classwise_nms(out, iou)
