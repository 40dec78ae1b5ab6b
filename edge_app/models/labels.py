"""Class names for an engine: the shipped ImageNet-1k list, a text file, or a comma-separated list.

``imagenet`` is torchvision's ``_IMAGENET_CATEGORIES`` (models/_meta.py at the commit named in
``data/torchvision_resnet_weights.json``), index 0 "tench" ... 999 "toilet tissue", the order torchvision's
ImageNet weights were trained with. ``coco`` is torchvision's ``_COCO_CATEGORIES`` (91 entries: index 0
"__background__", ten "N/A" gaps, 80 real names), the label ids torchvision's COCO detectors output.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from edge_app.errors import UserError

BUILTIN = ("imagenet", "coco")
# Names that stand for no class (torchvision's COCO gaps and its background id): a detector's row with one of
# them is never shown, whatever its score.
UNNAMED = ("__background__", "N/A")


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in torchvision's index order."""
    text = resources.files("edge_app.models").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@lru_cache(maxsize=1)
def coco_labels() -> tuple[str, ...]:
    """torchvision's 91 COCO category names in label-id order (N/A where COCO skipped an id)."""
    text = resources.files("edge_app.models").joinpath("data/coco_labels.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def resolve_labels(spec: str) -> list[str]:
    """``imagenet``, ``coco``, a path to a text file (one name per line), or ``a,b,c``; a bad spec is a UserError."""
    spec = spec.strip()
    if spec in BUILTIN:
        return list(imagenet_labels() if spec == "imagenet" else coco_labels())
    p = Path(spec).expanduser()
    if p.is_file():
        try:
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"labels file '{p}' is not UTF-8 text; write one class name per line") from None
        if not names:
            raise UserError(f"labels file '{p}' holds no names; write one class name per line")
    elif "," in spec:
        names = [s.strip() for s in spec.split(",")]
        if not all(names):
            raise UserError(f"labels '{spec}' has an empty name; write them like cat,dog,bird")
    elif p.suffix.lower() in (".txt", ".names", ".labels") or "/" in spec:
        raise UserError(f"labels file '{spec}' does not exist; pass an existing file, imagenet, or names like cat,dog")
    else:
        raise UserError(
            f"labels '{spec}' is neither imagenet, coco, a file, nor a comma-separated list; e.g. labels imagenet or cat,dog"
        )
    dup = sorted({n for n in names if names.count(n) > 1 and n not in UNNAMED})
    if dup:
        raise UserError(f"labels '{spec}' repeat the name '{dup[0]}'; every class needs its own name")
    return names


def check_label_count(labels: list[str], num_classes: int, source: str) -> None:
    """One sentence when the labels do not match the classifier's outputs."""
    if len(labels) != num_classes:
        raise UserError(
            f"{len(labels)} labels were given but the weights in '{source}' have {num_classes} outputs (fc); "
            f"pass {num_classes} labels" + (" (imagenet has 1000)" if num_classes == 1000 else "")
        )
