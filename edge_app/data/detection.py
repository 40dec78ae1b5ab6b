"""Detection data: the in-memory set, COCO JSON and YOLO txt readers, and box geometry of the host resize.

A :class:`DetectionSet` holds images already at the model resolution (uint8 NHWC BGR, resized by the same
:func:`edge_app.frames.preprocess.resize_to_input` inference uses) and boxes in those pixels. Readers never stop
on one bad annotation: boxes outside the image, unknown classes, degenerate boxes and missing or unreadable
images are skipped, counted and reported (:class:`DetectionReport`); only input that cannot be read at all
(not JSON, no ``images``/``annotations`` key, a YOLO line of the wrong field count) or a set with nothing usable
left is a :class:`UserError` naming the value and the fix.

Layouts:
- COCO: ``--data DIR`` with ``DIR/instances.json`` (or ``DIR/annotations/instances*.json``) or ``--data
  FILE.json``; images at ``file_name`` relative to the JSON's folder, or under ``images/`` there.
- YOLO: ``DIR/images/`` and ``DIR/labels/`` (same stems; ``train/``/``val/`` subfolders are used as the split
  when both exist), class names one per line in ``DIR/classes.txt`` (or ``obj.names`` / ``names.txt``);
  each label line is ``class cx cy w h`` normalised to 0..1. An image without a label file has no objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.data.folder import IMAGE_EXTS, read_image
from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.geometry import boxes_to_input, resize_to_input

NAME_FILES = ("classes.txt", "obj.names", "names.txt")


@dataclass
class DetectionSet:
    """Images (N,H,W,3 uint8 BGR at the model resolution) with per-image boxes (M,4 x1,y1,x2,y2) and class ids."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    names: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N,H,W,3), got {self.images.dtype} {self.images.shape}")
        if not len(self.images) == len(self.boxes) == len(self.classes):
            raise ValueError(
                f"{len(self.images)} images but {len(self.boxes)} box lists and {len(self.classes)} class lists"
            )
        self.boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in self.boxes]
        self.classes = [np.asarray(c, np.int64).reshape(-1) for c in self.classes]
        for b, c in zip(self.boxes, self.classes):
            if len(b) != len(c):
                raise ValueError(f"{len(b)} boxes but {len(c)} classes in one image")
            if len(c) and (c.min() < 0 or c.max() >= len(self.names)):
                raise ValueError(f"class id out of range 0..{len(self.names) - 1}: {c.tolist()}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def subset(self, idx: np.ndarray | list[int]) -> DetectionSet:
        """The images at ``idx`` (in that order)."""
        idx = [int(i) for i in idx]
        return DetectionSet(
            self.images[idx],
            [self.boxes[i] for i in idx],
            [self.classes[i] for i in idx],
            list(self.names),
            self.source,
        )


@dataclass
class DetectionReport:
    """What a reader found and what it had to skip, and why."""

    source: str
    classes: list[str]
    images: int = 0  # usable images
    boxes: int = 0  # usable boxes
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first example

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    def summary(self) -> str:
        """One line: counts and each skip reason with its first example."""
        s = f"{self.images} images, {self.boxes} boxes, {len(self.classes)} classes"
        if self.skipped:
            s += "; skipped " + "; ".join(f"{n} {r} (e.g. {self.examples[r]})" for r, n in sorted(self.skipped.items()))
        return s


# ----------------------------------------------------------------------------------------------- shared
def _clip_box(box: np.ndarray, w: int, h: int, report: DetectionReport, where: str) -> np.ndarray | None:
    """Clip a box to the image; None (counted) when nothing of it is inside or it has no area."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])) or x2 <= x1 or y2 <= y1:
        report.skip("degenerate box (no area or not finite)", where)
        return None
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        report.skip("box outside the image", where)
        return None
    tol = 1.0  # a pixel of slack: annotation tools often round the far edge up
    if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
        report.skip("box partly outside the image (clipped, kept)", where)
    return np.array([cx1, cy1, cx2, cy2], np.float32)


Item = tuple[Path, list[np.ndarray], list[int], bool]  # image, boxes, class ids, boxes normalised to 0..1


def _assemble(items: list[Item], names: list[str], spec: InputSpec, report: DetectionReport) -> DetectionSet:
    """Decode, resize and map the boxes of ``items``; unreadable images are counted and skipped."""
    images, boxes, classes = [], [], []
    for path, bxs, cls, normalised in items:
        img = read_image(path)
        if img is None:
            report.skip("missing or unreadable image", str(path))
            continue
        h, w = img.shape[:2]
        kept_b, kept_c = [], []
        for b, c in zip(bxs, cls):
            if normalised:
                b = b * np.array([w, h, w, h], np.float32)
            cb = _clip_box(b, w, h, report, f"{path.name} box {[round(float(v), 1) for v in b]}")
            if cb is not None:
                mb = boxes_to_input(cb[None], (h, w), spec)[0]
                if mb[2] - mb[0] >= 1 and mb[3] - mb[1] >= 1:
                    kept_b.append(mb)
                    kept_c.append(c)
                else:
                    report.skip("box under a pixel at the model resolution", f"{path.name}")
        images.append(resize_to_input(img, spec))
        boxes.append(np.array(kept_b, np.float32).reshape(-1, 4))
        classes.append(np.array(kept_c, np.int64))
    report.images += len(images)
    report.boxes += int(sum(len(b) for b in boxes))
    arr = np.stack(images) if images else np.zeros((0, spec.height, spec.width, 3), np.uint8)
    return DetectionSet(arr, boxes, classes, names, report.source)


# ----------------------------------------------------------------------------------------------- COCO
def _coco_json(path: Path) -> Path:
    if path.is_file():
        return path
    for cand in [path / "instances.json", *sorted((path / "annotations").glob("instances*.json"))]:
        if cand.is_file():
            return cand
    raise UserError(
        f"no COCO annotations in '{path}': expected '{path}/instances.json' or '{path}/annotations/instances*.json'; "
        "pass the JSON file itself with --data FILE.json"
    )


def read_coco(path: str | Path) -> tuple[list[Item], list[str], DetectionReport]:
    """Parse a COCO instances JSON: ([(image path, boxes xyxy in image px, class indices)], class names, report).

    Images are not decoded here; boxes are validated against the JSON's width/height when given.
    """
    jpath = _coco_json(Path(path))
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"'{jpath}' is not JSON ({type(e).__name__}: {e}); pass a COCO instances.json") from None
    if not isinstance(doc, dict):
        raise UserError(
            f"'{jpath}' holds a JSON {type(doc).__name__}, not an object; pass a COCO instances.json with 'images' and 'annotations'"
        )
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise UserError(
                f"'{jpath}' has no '{key}' list; a COCO instances file needs 'images', 'annotations' and 'categories'"
            )
    cats = doc.get("categories")
    if not isinstance(cats, list) or not cats:
        raise UserError(
            f'\'{jpath}\' has no \'categories\' list; add [{{"id": 1, "name": "..."}}, ...] naming every class'
        )
    try:
        cats = sorted(((int(c["id"]), str(c["name"])) for c in cats), key=lambda t: t[0])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"'{jpath}': every category needs an integer 'id' and a 'name'") from None
    cat_index = {cid: i for i, (cid, _) in enumerate(cats)}
    names = [n for _, n in cats]
    report = DetectionReport(source=str(jpath), classes=names)
    root = jpath.parent
    images: dict[int, list] = {}
    for im in doc["images"]:
        try:
            iid, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            report.skip("image record without id/file_name", str(im)[:60])
            continue
        p = root / fname
        if not p.is_file() and (root / "images" / fname).is_file():
            p = root / "images" / fname
        images[iid] = [p, [], [], im.get("width"), im.get("height")]
    for a in doc["annotations"]:
        try:
            iid, cid = int(a["image_id"]), int(a["category_id"])
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            report.skip("annotation without image_id/category_id/bbox [x,y,w,h]", str(a)[:60])
            continue
        if iid not in images:
            report.skip("annotation of an image not in 'images'", f"image_id {iid}")
            continue
        if cid not in cat_index:
            report.skip("unknown class", f"category_id {cid} in image_id {iid}")
            continue
        if a.get("iscrowd"):
            report.skip("crowd annotation (ignored)", f"image_id {iid}")
            continue
        rec = images[iid]
        box = np.array([x, y, x + w, y + h], np.float32)
        if rec[3] and rec[4]:  # validate against the declared size now; again against the real size on decode
            b = _clip_box(box, int(rec[3]), int(rec[4]), report, f"{rec[0].name} bbox {[x, y, w, h]}")
            if b is None:
                continue
            box = b
        rec[1].append(box)
        rec[2].append(cat_index[cid])
    items = []
    for p, b, c, _, _ in images.values():
        if not p.is_file():
            report.skip("missing or unreadable image", str(p))
            continue
        items.append((p, b, c, False))
    return items, names, report


# ----------------------------------------------------------------------------------------------- YOLO
def _yolo_names(root: Path) -> list[str]:
    for n in NAME_FILES:
        f = root / n
        if f.is_file():
            names = [s.strip() for s in f.read_text(encoding="utf-8").splitlines() if s.strip()]
            if not names:
                raise UserError(f"class names file '{f}' is empty; write one class name per line")
            return names
    raise UserError(f"no class names file in '{root}': write one class name per line to '{root}/classes.txt'")


def read_yolo(
    root: str | Path, images_sub: str = "images", labels_sub: str = "labels"
) -> tuple[list[Item], list[str], DetectionReport]:
    """Parse a YOLO folder: ([(image path, boxes xyxy in image px, class indices)], names, report).

    Boxes stay normalised (the item's last field is True) until the image is decoded.
    """
    root = Path(root)
    names = _yolo_names(root)
    idir, ldir = root / images_sub, root / labels_sub
    if not idir.is_dir():
        raise UserError(
            f"no '{images_sub}' folder in '{root}'; a YOLO set has images/ and labels/ with the same file stems"
        )
    report = DetectionReport(source=str(root), classes=names)
    imgs = sorted(p for p in idir.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    stems = {p.relative_to(idir).with_suffix("") for p in imgs}
    if ldir.is_dir():
        for lab in sorted(ldir.rglob("*.txt")):
            if lab.relative_to(ldir).with_suffix("") not in stems:
                report.skip("missing or unreadable image", f"{lab} has no image")
    items = []
    for p in imgs:
        lab = (ldir / p.relative_to(idir)).with_suffix(".txt")
        rows: list[tuple[int, list[float]]] = []
        if lab.is_file():
            for n, line in enumerate(lab.read_text(encoding="utf-8").splitlines(), 1):
                f = line.split()
                if not f:
                    continue
                if len(f) != 5:
                    raise UserError(
                        f"line {n} of '{lab}' has {len(f)} fields ('{line.strip()[:60]}'); a YOLO box line is "
                        "'class cx cy w h' (5 fields, coordinates 0..1); segmentation polygons are not supported"
                    )
                try:
                    c = int(f[0])
                    vals = [float(v) for v in f[1:]]
                except ValueError:
                    raise UserError(
                        f"line {n} of '{lab}' is not numbers ('{line.strip()[:60]}'); write 'class cx cy w h' "
                        "with an integer class and coordinates 0..1"
                    ) from None
                rows.append((c, vals))
        bxs, cls = [], []
        for c, (cx, cy, bw, bh) in rows:
            if not 0 <= c < len(names):
                report.skip("unknown class", f"class {c} in {lab.name}")
                continue
            # Normalised here; _assemble scales by the image size when it decodes the image anyway.
            bxs.append(np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], np.float32))
            cls.append(c)
        items.append((p, bxs, cls, True))
    return items, names, report


# ----------------------------------------------------------------------------------------------- loading
def detect_format(path: Path) -> str:
    """'coco' or 'yolo' from what is at ``path``; UserError naming both layouts when it is neither."""
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if path.is_dir():
        if (path / "instances.json").is_file() or any((path / "annotations").glob("instances*.json")):
            return "coco"
        if (path / "images").is_dir():
            return "yolo"
    raise UserError(
        f"'{path}' is neither a COCO set (instances.json + images) nor a YOLO set (images/, labels/, classes.txt); "
        "pass one of those, or 'synthetic' for the built-in scenes"
    )


def load_detection_data(
    path: str | Path, spec: InputSpec, val_fraction: float = 0.15, seed: int = 0
) -> tuple[DetectionSet, DetectionSet, DetectionReport]:
    """Read a COCO or YOLO set at the model resolution and split it into train and val.

    YOLO sets with ``images/train`` and ``images/val`` keep that split; otherwise a seeded random
    ``val_fraction`` of the images is held out. UserError when no usable image or no box is left.
    """
    text = str(path)
    given = next((f for f in ("coco", "yolo") if text.startswith(f + ":")), None)  # --data coco:PATH / yolo:PATH
    p = Path(text[len(given) + 1 :]) if given else Path(text)
    if given and not p.exists():
        raise UserError(
            f"--data {text}: '{p}' does not exist; pass the folder (or instances.json) of the {given.upper()} set"
        )
    fmt = given or detect_format(p)
    if fmt == "yolo" and (p / "images" / "train").is_dir() and (p / "images" / "val").is_dir():
        tr_items, names, report = read_yolo(p, "images/train", "labels/train")
        va_items, _, rv = read_yolo(p, "images/val", "labels/val")
        for r, n in rv.skipped.items():
            report.skipped[r] = report.skipped.get(r, 0) + n
            report.examples.setdefault(r, rv.examples[r])
    else:
        items, names, report = read_coco(p) if fmt == "coco" else read_yolo(p)
        order = np.random.default_rng(seed).permutation(len(items))
        n_val = int(round(len(items) * val_fraction))
        if val_fraction > 0 and len(items) > 1:  # at least one validation image, at least one training image
            n_val = min(max(n_val, 1), len(items) - 1)
        va_items = [items[i] for i in sorted(order[:n_val])]
        tr_items = [items[i] for i in sorted(order[n_val:])]
    train = _assemble(tr_items, names, spec, report)
    val = _assemble(va_items, names, spec, report)
    if not len(train):
        raise UserError(
            f"no usable training image in '{p}' ({report.summary()}); check the image paths and annotations"
        )
    if train.num_boxes == 0:
        raise UserError(f"no usable box in '{p}' ({report.summary()}); check the class ids and box coordinates")
    return train, val, report
