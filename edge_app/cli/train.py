"""``run.py train``: train or fine-tune a ResNet classifier, or a detector on the ResNet backbone."""

from __future__ import annotations

import argparse

from edge_app.cli.common import positive_float, positive_int
from edge_app.errors import FieldError, UserError

# Config field -> the flag that sets it, for the library's field-named errors.
FLAGS = {k: f"--{k}" for k in ("data", "arch", "img", "epochs", "batch", "lr", "weights", "out", "seed", "device")}
HELP = "train or fine-tune a ResNet classifier, or a detector on the ResNet backbone (--task detect)"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `train` (added to ``p``, the sub-command's parser, or to a new one)."""
    from edge_app.models import list_models
    from edge_app.models.tasks import task_names

    p = p or argparse.ArgumentParser(prog="run.py train", description=HELP)
    # Defaults differ by task (a 64 px classifier, a 128 px quarter-width detector): None means "the task's own".
    tasks = task_names()
    p.add_argument(
        "--task",
        default=tasks[0],
        choices=tasks,
        help=f"{' or '.join(tasks)} (default {tasks[0]}; detect: CenterNet-style head)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="'synthetic' (built-in, generated; default); classify: an image folder <class>/*.jpg or "
        "train/ and val/; detect: a COCO instances.json (or its folder) or a YOLO folder, detected by "
        "their files or named with coco:PATH / yolo:PATH",
    )
    p.add_argument("--arch", default=None, help=f"one of {', '.join(list_models())} (default resnet18)")
    p.add_argument(
        "--img",
        type=positive_int,
        default=None,
        help="input size in pixels (default 64 classify, 128 detect; detect: a multiple of 32)",
    )
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (AdamW, warm-up + cosine)")
    p.add_argument(
        "--weights",
        default=None,
        help="torchvision-format .pth (or, for detect, a classifier checkpoint) to start from",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default runs/train or runs/detect)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue the run of this last.pt")
    p.add_argument("--seed", type=int, default=None)
    return p


def main(a: argparse.Namespace) -> int:
    """Run `train`; returns the exit code."""
    from edge_app.models import list_models

    if a.arch is not None and a.arch not in list_models():
        raise UserError(f"unknown architecture '{a.arch}'; choose one of: {', '.join(list_models())}")
    if a.img is not None and a.img < 32:
        raise UserError(f"--img {a.img} is too small for a ResNet (5 stride-2 stages); use at least 32")
    given = {
        k: v
        for k, v in (
            ("data", a.data),
            ("arch", a.arch),
            ("img", a.img),
            ("epochs", a.epochs),
            ("batch", a.batch),
            ("lr", a.lr),
            ("weights", a.weights),
            ("out", a.out),
            ("seed", a.seed),
        )
        if v is not None
    }
    from edge_app.training.tasks import get_trainer

    trainer = get_trainer(a.task)
    try:
        r = trainer.train(trainer.config(device=a.device, **given), resume=a.resume)
    except FieldError as e:  # the library names config fields; this command's user typed flags
        raise e.reworded(FLAGS) from None
    print(r.summary())
    return 0
