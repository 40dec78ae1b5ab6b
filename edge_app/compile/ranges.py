"""Calibration data and per-tensor activation ranges, cached in ``calibration/<engine>.<method>.json``.

Calibration is done once per (model, image set, method): the ranges feed every derived INT8 model (the
symmetric one for TensorRT and the u8s8 one for the CPU), so both targets see identical statistics and a rerun
with the same inputs does no calibration work. Images go through the same host resize as inference
(:func:`edge_app.frames.preprocess.to_batch`) and the rest of preprocessing happens inside the graph, exactly as it
does at run time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from edge_app.data.folder import IMAGE_EXTS, list_images, read_image
from edge_app.engine_dir import InputSpec, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_json, sha256_bytes
from edge_app.geometry import resize_to_input

log = logging.getLogger(__name__)

METHODS = ("entropy", "percentile", "minmax")
CACHE_FORMAT = "edge_app.calibration/1"
SYNTHETIC = "synthetic"
# Below this many images the ranges of rarely-active channels are poorly estimated (TensorRT and ONNX
# Runtime both suggest a few hundred); we warn but go on, since a small set still beats no INT8 model.
MIN_RECOMMENDED = 100
# Settings per method. entropy is TensorRT's entropy calibrator (as in NVIDIA's pytorch-quantization): a
# 2048-bin histogram of |x|, and the clip with the least KL divergence when folded into 128 int8 levels.
# (ONNX Runtime's own entropy search works on the signed histogram without masking empty bins; on the demo
# model it cut INT8 top-1 by 6-14 points where this recipe, minmax and percentile stay within 1.)
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "entropy": {
        "histogram": "abs",
        "num_bins": 2048,
        "num_quantized_bins": 128,
        "start_bin": 128,
        "clip_outputs": False,
    },
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    "minmax": {},
}


# ----------------------------------------------------------------------------------------- image sources
@dataclass
class ImagePlan:
    """Which calibration images will be used, decided without decoding them, and a hash that names the set."""

    source: str
    kind: str  # "folder", "video" or "synthetic"
    files: list[Path] = field(default_factory=list)  # folder / synthetic: the sampled files
    frames: list[int] = field(default_factory=list)  # video: the sampled frame indices
    total: int = 0  # images (or frames) available before sampling
    sha256: str = ""

    def describe(self) -> str:
        """One line for logs and meta.json: what, where, how many."""
        unit = "frames" if self.kind == "video" else "images"
        n = len(self.frames) if self.kind == "video" else len(self.files)
        return f"{n} of {self.total} {unit} from {self.kind} '{self.source}'"


@dataclass
class CalibrationImages:
    """Decoded calibration batch (N,H,W,3 uint8 BGR at the model resolution) and what had to be skipped."""

    images: np.ndarray
    skipped: list[str] = field(default_factory=list)


def _even(n_total: int, num: int) -> list[int]:
    """``num`` indices spread evenly over ``range(n_total)`` (all of them when there are fewer)."""
    if n_total <= num:
        return list(range(n_total))
    return sorted(set(np.linspace(0, n_total - 1, num).round().astype(int).tolist()))


def _stat_key(p: Path) -> list[Any]:
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def plan_images(source: str, spec: InputSpec, num: int, synthetic_root: str | Path = "data/synthetic") -> ImagePlan:
    """Resolve ``source`` (a folder, a video file or 'synthetic') into an :class:`ImagePlan` of ``num`` images.

    The plan's hash covers the sampled files' paths, sizes and modification times (or the video's), the
    sample count and the input spec, so editing, adding or removing images changes it and recalibrates.
    """
    if num < 1:
        raise UserError(f"--num {num} asks for no calibration images; use a positive count such as 512")
    if source == SYNTHETIC:
        from edge_app.data.synthetic import SyntheticConfig, write_dataset

        # The train split: validation images stay unseen by calibration, so the accuracy report is fair.
        root = write_dataset(synthetic_root, SyntheticConfig(), progress=True) / "train"
        plan = _plan_folder(root, num, kind=SYNTHETIC)
    else:
        path = Path(source)
        if path.is_dir():
            plan = _plan_folder(path, num, kind="folder")
        elif path.is_file():
            plan = _plan_video(path, num)
        else:
            raise UserError(
                f"calibration images '{source}' do not exist; pass --images with a folder of images, a video file or 'synthetic'"
            )
    key = {
        "kind": plan.kind,
        "num": num,
        # pad only when set: the keys of caches written before InputSpec had it stay valid
        "input": {k: v for k, v in asdict(spec).items() if k != "pad" or v is not None},
        "items": [_stat_key(f) for f in plan.files] if plan.files else [_stat_key(Path(plan.source)), plan.frames],
    }
    plan.sha256 = sha256_bytes(json.dumps(key, sort_keys=True).encode())
    return plan


def _plan_folder(root: Path, num: int, kind: str) -> ImagePlan:
    files = list_images(root)
    if not files:
        raise UserError(
            f"calibration folder '{root}' holds no images ({', '.join(sorted(IMAGE_EXTS))}); "
            "point --images at a folder of representative images, a video file, or 'synthetic'"
        )
    return ImagePlan(source=str(root), kind=kind, files=[files[i] for i in _even(len(files), num)], total=len(files))


def _plan_video(path: Path, num: int) -> ImagePlan:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(
                f"cannot open '{path}' as a video; pass --images with a readable video file, a folder of images, or 'synthetic'"
            )
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if n <= 0:
        raise UserError(
            f"video '{path}' reports no frames; re-encode it (e.g. `ffmpeg -i in -c:v libx264 out.mp4`) or use a folder of images"
        )
    return ImagePlan(source=str(path), kind="video", frames=_even(n, num), total=n)


def load_images(plan: ImagePlan, spec: InputSpec, progress: bool = False) -> CalibrationImages:
    """Decode and resize the planned images; unreadable ones are skipped and counted, zero usable is an error."""
    out: list[np.ndarray] = []
    skipped: list[str] = []
    if plan.kind == "video":
        frames = _read_frames(Path(plan.source), plan.frames, skipped)
        out = [resize_to_input(f, spec) for f in frames]
    else:
        it: Any = plan.files
        if progress:
            from tqdm import tqdm

            it = tqdm(plan.files, desc="read images", unit="img", leave=False)
        for p in it:
            img = read_image(p)
            if img is None:
                skipped.append(str(p))
                continue
            out.append(resize_to_input(img, spec))
    if skipped:
        log.warning("skipped %d unreadable calibration image(s), e.g. %s", len(skipped), skipped[0])
    if not out:
        what = (
            f"none of the {len(skipped)} file(s) in '{plan.source}' could be decoded as an image"
            if plan.kind != "video"
            else f"no frame of '{plan.source}' could be decoded"
        )
        raise UserError(f"{what}; pass --images with readable images (png/jpg/...), a video file, or 'synthetic'")
    return CalibrationImages(np.stack(out), skipped)


def _read_frames(path: Path, wanted: list[int], skipped: list[str]) -> list[np.ndarray]:
    """Frames at the ``wanted`` (sorted) indices; grab() skips without decoding, which is much cheaper than read()."""
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        want = set(wanted)
        last = max(wanted) if wanted else -1
        for i in range(last + 1):
            if not cap.grab():
                skipped += [f"{path}#frame{j}" for j in wanted if j >= i]
                break
            if i in want:
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.ndim == 3:
                    frames.append(frame)
                else:
                    skipped.append(f"{path}#frame{i}")
    finally:
        cap.release()
    return frames


# ----------------------------------------------------------------------------------------- range cache
def cache_path(cache_dir: str | Path, engine_name: str, method: str) -> Path:
    """``<cache_dir>/<engine-name>.<method>.json``."""
    return Path(cache_dir) / f"{engine_name}.{method}.json"


def cache_key(model_sha256: str, plan: ImagePlan, method: str) -> dict[str, Any]:
    """Everything the ranges depend on; a cache whose key differs in any field is recalibrated."""
    import onnxruntime as ort

    return {
        "model_sha256": model_sha256,
        "images_sha256": plan.sha256,
        "method": method,
        "settings": METHOD_SETTINGS[method],
        "onnxruntime": ort.__version__,
    }


def read_cache(path: Path, key: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The cached record when it matches ``key``, else None and the reason it cannot be used."""
    if not path.is_file():
        return None, f"no cached ranges at {path}"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        ranges = rec["ranges"]
        ok = (
            rec.get("format") == CACHE_FORMAT
            and isinstance(ranges, dict)
            and ranges
            and all(
                isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
                for v in ranges.values()
            )
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        return None, f"cache {path} is damaged or truncated; recalibrating"
    for k, want in key.items():
        if rec.get("key", {}).get(k) != want:
            what = {"model_sha256": "the model changed", "images_sha256": "the calibration images changed"}.get(
                k, f"{k} changed"
            )
            return None, f"cache {path} is stale ({what}); recalibrating"
    return rec, f"reusing cached ranges {path} (same model and images)"


def write_cache(
    path: Path,
    key: dict[str, Any],
    plan: ImagePlan,
    images: CalibrationImages,
    ranges: dict[str, tuple[float, float]],
    seconds: float,
) -> dict[str, Any]:
    """Write the ranges and their provenance atomically; returns the record."""
    rec = {
        "format": CACHE_FORMAT,
        "created": now_iso(),
        "key": key,
        "images": {
            "source": plan.source,
            "kind": plan.kind,
            "count": int(len(images.images)),
            "available": plan.total,
            "skipped": len(images.skipped),
            "skipped_examples": images.skipped[:5],
        },
        "seconds": round(seconds, 2),
        "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(ranges.items())},
    }
    atomic_write_json(path, rec)
    return rec


# ----------------------------------------------------------------------------------------- calibration
def _chunks(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for s in range(0, len(images), size):
        yield images[s : s + size]


class _OneBatch:
    """A CalibrationDataReader over a single batch: the calibrator is fed chunk by chunk so memory stays bounded."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._item: dict[str, np.ndarray] | None = {input_name: batch}

    def get_next(self) -> dict[str, np.ndarray] | None:
        item, self._item = self._item, None
        return item


def compute_ranges(
    model_path: Path, images: np.ndarray, method: str, work_dir: Path, progress: bool = True
) -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max) ranges of every float activation of ``model_path`` over ``images``.

    ONNX Runtime's calibrator collects the statistics (min/max or histograms); for entropy the clip is then
    chosen by :func:`entropy_amax` on the |x| histogram.
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise UserError(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    # Entropy uses the same |x| histogram as symmetric percentile, then TensorRT's KL search on it.
    cm = {
        "entropy": CalibrationMethod.Percentile,
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }[method]
    opts = dict(METHOD_SETTINGS[method]) if method != "entropy" else {"num_bins": 2048, "symmetric": True}
    calibrator = create_calibrator(
        model_path, None, augmented_model_path=str(work_dir / "augmented.onnx"), calibrate_method=cm, extra_options=opts
    )
    input_name = calibrator.infer_session.get_inputs()[0].name
    h, w = images.shape[1:3]
    # All intermediate tensors of a chunk are held at once; keep a chunk near 32 images at 64x64.
    chunk = int(max(1, min(64, 32 * (64 * 64) // (h * w))))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=f"calibrate ({method})", unit="img", leave=False)
    try:
        for batch in _chunks(images, chunk):
            # The calibrator prints a line per call; keep the progress bar readable.
            with contextlib.redirect_stdout(io.StringIO()):
                calibrator.collect_data(_OneBatch(input_name, batch))
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    if method == "entropy":
        st = METHOD_SETTINGS["entropy"]
        outputs = set(calibrator.model_original_outputs)
        ranges = {}
        for name, (hist, edges, lo, hi) in calibrator.collector.histogram_dict.items():
            # Never clip the model's outputs: clipped logits tie the top classes, which is all that matters.
            amax = (
                float(edges[-1])
                if name in outputs
                else entropy_amax(hist, edges, st["num_quantized_bins"], st["start_bin"])
            )
            ranges[name] = (max(-amax, float(lo)), min(amax, float(hi)))
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            data = calibrator.compute_data()
        ranges = {
            name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1]))) for name, td in data.items()
        }
    del calibrator
    return ranges


def entropy_amax(hist: np.ndarray, edges: np.ndarray, num_quantized_bins: int = 128, start_bin: int = 128) -> float:
    """TensorRT's entropy calibration on a histogram of |x|: the clip ``amax`` whose 128-level quantization loses least.

    For every candidate clip (bin ``i`` from ``start_bin``), the reference p is the histogram up to ``i`` with
    the clipped tail added to its last bin; q is p merged into ``num_quantized_bins`` levels and spread back
    over the non-empty bins only. The clip with the smallest KL(p || q) wins (the last one on ties). Same
    result as NVIDIA pytorch-quantization's ``_compute_amax_entropy``; here all candidates are scored at once
    from cumulative sums, since KL(p || q) splits into a sum over bins and a sum over the 128 levels.
    """
    b = np.asarray(hist, dtype=np.float64).copy()
    edges = np.asarray(edges, dtype=np.float64)
    n = b.size
    if n <= 1 or b.sum() == 0:
        return float(edges[-1])
    b[0] = b[1]  # the spike of exact zeros (after ReLU) would dominate every candidate alike
    nq = num_quantized_bins
    total = b.sum()
    csum = np.concatenate([[0.0], np.cumsum(b)])  # csum[i] = sum(b[:i])
    cnz = np.concatenate([[0], np.cumsum(b != 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        blogb = np.concatenate([[0.0], np.cumsum(np.where(b > 0, b * np.log(np.where(b > 0, b, 1.0)), 0.0))])
    i = np.arange(min(start_bin, n), n + 1)  # candidate clip bins
    tail = total - csum[i]
    # Level g of candidate i holds bins [ceil(g*i/nq), ceil((g+1)*i/nq)): integer arithmetic, exact.
    bounds = (np.arange(nq + 1)[None, :] * i[:, None] + nq - 1) // nq
    mass = np.diff(csum[bounds], axis=1)
    count = np.diff(cnz[bounds], axis=1)
    s_i = csum[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(mass > 0, np.log(mass / np.maximum(count, 1)) - np.log(s_i)[:, None], 0.0)
        last = b[i - 1]
        p_last = last + tail
        # sum_j p_j log p_j (times total): every bin but the last as is, the last one carrying the tail.
        plogp = blogb[i - 1] - np.log(total) * csum[i - 1] + np.where(p_last > 0, p_last * np.log(p_last / total), 0.0)
        # sum_j p_j log q_j (times total): per level, plus the tail that sits on the last bin's level.
        plogq = (mass * level).sum(1) + np.where(last > 0, tail * level[:, -1], 0.0)
        kl = (plogp - plogq) / total
    # p > 0 where q = 0 (an empty last bin that receives the tail) is an infinite divergence; so is an empty q.
    kl = np.where(((last == 0) & (tail > 0)) | (s_i == 0), np.inf, kl)
    if not np.isfinite(kl).any():
        return float(edges[-1])
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))  # the last minimum, as in pytorch-quantization
    return float(edges[i[best]])
