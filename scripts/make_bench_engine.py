"""Make an engine folder for timing only: a ResNet with random weights at any input size, exported as usual.

No training and no download: weights are random, and BatchNorm statistics are estimated on a few random
batches so activations have realistic ranges (INT8 calibration of such a model behaves like a trained one's
for speed purposes). Accuracy of the result is meaningless; latency is what it is for.

    .venv/bin/python scripts/make_bench_engine.py --img 224 --name r18-224 --engines /tmp/engines
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.compile.export import export  # noqa: E402
from edge_app.engine_dir import InputSpec  # noqa: E402
from edge_app.models import create_model  # noqa: E402
from edge_app.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint  # noqa: E402
from edge_app.models.preprocess import PreprocessedModel  # noqa: E402


def make_checkpoint(path: Path, arch: str, img: int, classes: int, seed: int = 0) -> Path:
    """Write an edge_app checkpoint with random weights and BatchNorm statistics from random uint8 images."""
    torch.manual_seed(seed)
    labels = [f"class{i}" for i in range(classes)]
    spec = InputSpec(height=img, width=img)
    model = create_model(arch, num_classes=classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches below, not an EMA
    wrapped = PreprocessedModel(model, spec).train()
    with torch.no_grad():
        for _ in range(4):
            wrapped(torch.randint(0, 256, (8, img, img, 3), dtype=torch.uint8))
    model.eval()
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "labels": labels,
        "input": asdict(spec),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "top1": None,
        "epoch": 0,
    }
    return save_checkpoint(path, ckpt)


def main() -> int:
    """Parse options, write the checkpoint to a temp folder and export it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--name", default="r18-224")
    p.add_argument("--engines", default="engines")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp) / "random.pt", a.arch, a.img, a.classes)
        r = export(ckpt, a.name, a.engines, force=True)
    print(f"wrote {r.engine} (parity max |diff| {r.parity.max_abs_diff:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
