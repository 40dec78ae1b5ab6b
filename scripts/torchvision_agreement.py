"""How close edge_app's preprocessing is to torchvision's ImageNet eval pipeline, on real photographs.

Reference: torchvision's own ``ResNet*_Weights.IMAGENET1K_V1.transforms()`` (Resize(256) on a PIL image,
bilinear with antialias, CenterCrop(224), ToTensor, Normalize) feeding ``torchvision.models.resnetNN``.
Ours: ``cv2.imread`` (BGR) -> ``resize_to_input`` (center_crop, resize_size 256) -> the in-graph
preprocessing -> edge_app's ResNet. Both networks hold the SAME state dict (loaded into torchvision's model
by its own key names), so every difference comes from preprocessing. No ImageNet weights can be downloaded
on the machines this was written on; with ``--weights FILE`` (a torchvision state dict) it measures the
real thing, otherwise seeded random weights (top-1 agreement is then a weak proxy; the input and logit
differences are still exact measurements).

Needs torchvision, which does not import with the CPU torch wheel: run it in an environment with
``pip install torch==2.14.1 torchvision==0.29.1`` (see FACTS in the README), with the repository on
PYTHONPATH. The photographs are scikit-image's sample data (for evaluation only):

    PYTHONPATH=. /tmp/tvenv/bin/python scripts/torchvision_agreement.py --photos .venv/lib/python3.11/site-packages/skimage/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.engine_dir import InputSpec  # noqa: E402
from edge_app.geometry import resize_to_input  # noqa: E402
from edge_app.models import create_model  # noqa: E402
from edge_app.models.preprocess import PreprocessedModel  # noqa: E402

# Real photographs in scikit-image's data folder (textures and grayscale scans left out).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "immunohistochemistry.png",
    "color.png",
    "logo.png",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="folder of photographs")
    ap.add_argument("--arch", default="resnet18,resnet50")
    ap.add_argument("--weights", default=None, help="torchvision state dict (default: seeded random weights)")
    ap.add_argument("--out", default="runs/torchvision_agreement.json")
    a = ap.parse_args()

    import torchvision
    from PIL import Image

    folder = Path(a.photos)
    paths = [folder / p for p in PHOTOS if (folder / p).is_file()]
    if not paths:
        print(f"no photographs found in {folder}", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    report = {
        "torchvision": torchvision.__version__,
        "torch": torch.__version__,
        "photos": [p.name for p in paths],
        "archs": {},
    }
    for arch in a.arch.split(","):
        tv_model = getattr(torchvision.models, arch)().eval()
        if a.weights:
            tv_model.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True))
        else:
            torch.manual_seed(0)
            for m in tv_model.modules():  # random but non-degenerate BN statistics, so logits vary with the input
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        ours = create_model(arch, num_classes=1000).eval()
        ours.load_state_dict(tv_model.state_dict())  # torchvision's key names load as they are
        spec = InputSpec(224, 224, resize="center_crop", resize_size=256)
        model = PreprocessedModel(ours, spec).eval()
        tf = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.transforms()
        rows = []
        with torch.inference_mode():
            for p in paths:
                bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
                ref_in = tf(Image.open(p).convert("RGB")).unsqueeze(0)
                ref = tv_model(ref_in)[0].numpy()
                ours_u8 = resize_to_input(bgr, spec)[None]
                x = torch.from_numpy(ours_u8)
                our_in = model.pre(x)
                got = model(x)[0].numpy()
                d_in = (our_in - ref_in).abs()
                rows.append(
                    {
                        "photo": p.name,
                        "size": f"{bgr.shape[1]}x{bgr.shape[0]}",
                        "input_max_abs": float(d_in.max()),
                        "input_mean_abs": float(d_in.mean()),
                        "logit_max_abs": float(np.abs(got - ref).max()),
                        "logit_range": float(ref.max() - ref.min()),
                        "top1_agree": bool(got.argmax() == ref.argmax()),
                        "top5_overlap": len(set(np.argsort(-got)[:5]) & set(np.argsort(-ref)[:5])),
                    }
                )
        agree = float(np.mean([r["top1_agree"] for r in rows]))
        report["archs"][arch] = {
            "weights": a.weights or "seeded random (no ImageNet weights here)",
            "rows": rows,
            "top1_agreement": agree,
            "input_max_abs": max(r["input_max_abs"] for r in rows),
            "input_mean_abs": float(np.mean([r["input_mean_abs"] for r in rows])),
            "logit_max_abs": max(r["logit_max_abs"] for r in rows),
        }
        print(
            f"{arch}: {len(rows)} photos, top-1 agreement {agree:.3f}, input |diff| max {report['archs'][arch]['input_max_abs']:.3f} "
            f"mean {report['archs'][arch]['input_mean_abs']:.4f} (normalised units), logit |diff| max {report['archs'][arch]['logit_max_abs']:.4f}"
        )
        for r in rows:
            print(
                f"  {r['photo']:<28} {r['size']:>10}  input max {r['input_max_abs']:.3f} mean {r['input_mean_abs']:.4f}  "
                f"logit max {r['logit_max_abs']:.4f} (range {r['logit_range']:.2f})  top-1 {'same' if r['top1_agree'] else 'DIFFERENT'}  top-5 overlap {r['top5_overlap']}/5"
            )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
