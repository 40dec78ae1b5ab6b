"""INT8 with a COCO detector's head quantised too, against the default (head's last convs kept float).

    .venv/bin/python scripts/quantized_head_agreement.py engines/fcos512 --images photos/ --method minmax

Copies the engine folder to ``--out`` (default: a temporary folder) and calibrates the copy with only the
decode and NMS kept float; prints `calibrate`'s agreement report for it. Compare with `calibrate`'s report of the
engine itself on the same images and method (the copy computes its own ranges from the same images, under its own
cache name). A measurement, not an option of the product: the head's last convs stay float in `calibrate`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.compile.calibrate import CalibrateConfig, run_calibrate  # noqa: E402
from edge_app.models.tasks import tv_detect  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("engine")
    ap.add_argument("--images", required=True)
    ap.add_argument("--num", type=int, default=512)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--cache-dir", default="calibration")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    src = Path(a.engine)
    dst = Path(a.out or tempfile.mkdtemp(prefix="qhead-")) / f"{src.name}_qhead"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    # Only the postprocess (decode, top-k, NMS) stays float: the head's last convs are quantised as well.
    tv_detect.TvDetect.float_nodes = lambda self, model: tv_detect.postprocess_nodes(model, self.outputs[0])
    tv_detect.TvDetect.kept_float_note = "preprocessing, decode, NMS (head last convs quantised)"
    cfg = CalibrateConfig(
        images=a.images, num=a.num, method=a.method, cache_dir=a.cache_dir, force=True, speed=False, progress=False
    )
    run_calibrate(dst, cfg, say=print)
    print(f"head-quantised copy: {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
