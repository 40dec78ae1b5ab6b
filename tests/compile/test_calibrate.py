"""Calibration images, the tensor-range cache (hit and invalidation), the entropy search, and `calibrate` bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import main
from edge_app.compile import ranges as cal
from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
from edge_app.engine_dir import EngineDir, InputSpec
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from tests.helpers import write_tiny_video

REPO = Path(__file__).resolve().parents[2]
SPEC = InputSpec(height=32, width=32)


def _write_images(folder: Path, n: int, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # Half in a subfolder: calibration folders are searched recursively and need no labels.
        d = folder / "sub" if i % 2 else folder
        cv2.imwrite(str(d / f"{i:03d}.png"), rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8))
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------------------- images
def test_folder_is_sampled_evenly_and_resized_like_inference(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 10)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    plan = cal.plan_images(str(tmp_path / "imgs"), SPEC, num=6)
    assert plan.kind == "folder" and plan.total == 11 and len(plan.files) == 6
    all_files = sorted(p for p in (tmp_path / "imgs").rglob("*") if p.is_file())
    assert plan.files[0] == all_files[0] and plan.files[-1] == all_files[-1]  # spread over the whole set
    full = cal.load_images(cal.plan_images(str(tmp_path / "imgs"), SPEC, num=100), SPEC)
    assert full.images.shape == (10, 32, 32, 3) and full.images.dtype == np.uint8
    assert len(full.skipped) == 1 and full.skipped[0].endswith("broken.jpg")
    from edge_app.geometry import resize_to_input

    first = cv2.imread(str(all_files[0]))
    assert np.array_equal(full.images[0], resize_to_input(first, SPEC))


def test_video_frames_are_sampled_evenly(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "v.mp4", frames=12)
    plan = cal.plan_images(str(video), SPEC, num=4)
    assert plan.kind == "video" and plan.total == 12 and plan.frames == [0, 4, 7, 11]
    imgs = cal.load_images(plan, SPEC)
    assert imgs.images.shape == (4, 32, 32, 3) and not imgs.skipped


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.mkdir(), "holds no images"),
        (
            lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"\x89PNG garbage"), (p / "b.jpg").write_text("x")),
            "none of the 2 file",
        ),
        # Fixed, non-video bytes: random ones are now and then probed by FFmpeg as a raw stream with no frames.
        (lambda p: p.with_suffix(".mp4").write_bytes(b"not a video " * 170), "cannot open .* as a video"),
    ],
)
def test_bad_image_sources_are_one_sentence(tmp_path: Path, make, match: str) -> None:
    target = tmp_path / "src"
    make(target)
    src = target if target.exists() else target.with_suffix(".mp4")
    with pytest.raises(UserError, match=match):
        cal.load_images(cal.plan_images(str(src), SPEC, num=8), SPEC)


def test_num_zero_and_missing_source(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--num 0 asks for no calibration images"):
        cal.plan_images(str(tmp_path), SPEC, num=0)
    with pytest.raises(UserError, match="calibration images '.*nope' do not exist"):
        cal.plan_images(str(tmp_path / "nope"), SPEC, num=8)


# ----------------------------------------------------------------------------------------- cache key
def test_cache_is_invalidated_by_model_images_and_damage(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 6)
    plan = cal.plan_images(str(tmp_path / "imgs"), SPEC, num=8)
    imgs = cal.load_images(plan, SPEC)
    key = cal.cache_key("a" * 64, plan, "minmax")
    path = cal.cache_path(tmp_path / "calibration", "tiny", "minmax")
    cal.write_cache(path, key, plan, imgs, {"t": (-1.0, 2.0)}, 0.1)

    rec, why = cal.read_cache(path, key)
    assert rec is not None and rec["ranges"] == {"t": [-1.0, 2.0]} and "reusing" in why
    assert cal.read_cache(path, cal.cache_key("b" * 64, plan, "minmax"))[1].endswith(
        "(the model changed); recalibrating"
    )

    _write_images(tmp_path / "imgs", 7)  # one image more
    plan2 = cal.plan_images(str(tmp_path / "imgs"), SPEC, num=8)
    assert plan2.sha256 != plan.sha256
    assert "calibration images changed" in cal.read_cache(path, cal.cache_key("a" * 64, plan2, "minmax"))[1]
    os.utime(plan.files[0], ns=(0, 0))  # same names, an image edited in place
    assert cal.plan_images(str(tmp_path / "imgs"), SPEC, num=8).sha256 not in (plan.sha256, plan2.sha256)

    text = path.read_text()
    for damaged in (text[: len(text) // 2], "", json.dumps({"format": cal.CACHE_FORMAT, "ranges": {"t": "x"}})):
        path.write_text(damaged)
        rec, why = cal.read_cache(path, key)
        assert rec is None and "damaged or truncated" in why


# ----------------------------------------------------------------------------------------- entropy
def _reference_amax(hist: np.ndarray, edges: np.ndarray, nq: int = 128, start: int = 128) -> float:
    """NVIDIA pytorch-quantization's ``_compute_amax_entropy`` written out loop by loop (the slow original)."""
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    divergences, arguments = [], []
    for i in range(start, len(bins) + 1):
        space = np.linspace(0, i, num=nq + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        counts = np.zeros(nq)
        for idx, d in enumerate(digitized):
            if d != -1:
                counts[d] += bins[idx]
        for key in set(digitized.tolist()) - {-1}:
            counts[key] /= int((digitized == key).sum())
        new = np.array([counts[d] if d != -1 else 0.0 for d in digitized])
        ref = bins[:i].copy()
        ref[-1] += bins[i:].sum()
        p, q = ref / ref.sum(), new / new.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        divergences.append(np.inf if np.any((p > 0) & (q == 0)) else terms.sum())
        arguments.append(i)
    d = np.array(divergences)
    last = len(d) - 1 - int(np.argmin(d[::-1]))
    return float(edges[arguments[last]])


@pytest.mark.parametrize("seed,kind", [(0, "relu"), (1, "relu"), (2, "sparse"), (3, "sparse")])
def test_entropy_amax_matches_the_reference_algorithm(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    if kind == "relu":  # post-ReLU-like activations: many exact zeros, a long tail
        x = np.abs(np.maximum(rng.standard_normal(30000), 0) * rng.gamma(2.0, 1.0, 30000))
    else:  # few distinct values: most bins empty, so the masking of empty bins decides
        x = rng.poisson(3.0, 5000).astype(np.float64) * 0.37
    hist, edges = np.histogram(x, bins=300)
    got = cal.entropy_amax(hist, edges)
    assert got == pytest.approx(_reference_amax(hist, edges), rel=1e-12)
    assert 0 < got <= x.max()
    if kind == "relu":
        assert got < 0.9 * x.max()  # it clipped the long tail rather than keeping the full range


def test_entropy_ranges_follow_the_observed_sign(tmp_path: Path, tiny_engine: Path) -> None:
    """Ranges from the |x| histogram are intersected with the observed min/max: ReLU outputs start at 0."""
    import onnx

    from edge_app.compile.quantize import preprocess_model

    pre = preprocess_model(tiny_engine / "model.onnx", tmp_path / "pre.onnx")
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    ranges = cal.compute_ranges(pre, images, "entropy", tmp_path, progress=False)
    relu_out = [n.output[0] for n in onnx.load(str(pre)).graph.node if n.op_type == "Relu"]
    assert relu_out and all(ranges[t][0] == 0.0 < ranges[t][1] for t in relu_out)
    first_conv_in = next(n.input[0] for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv")
    lo, hi = ranges[first_conv_in]
    assert lo < 0 < hi  # normalised pixels are signed
    # The logits are never clipped: their range is exactly what the fp32 model produced.
    import onnxruntime as ort

    logits = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
    assert ranges["logits"] == pytest.approx((float(logits.min()), float(logits.max())), rel=1e-5)


# ----------------------------------------------------------------------------------------- end to end
@pytest.fixture()
def engine_copy(tiny_engine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_engine, tmp_path / "tiny"))


def test_rerun_is_a_cache_hit_and_changes_recalibrate(
    engine_copy: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = CalibrateConfig(
        images=str(tiny_dataset / "train"),
        num=24,
        method="minmax",
        cache_dir=str(tmp_path / "calibration"),
        speed=False,
        progress=False,
    )
    exported = EngineDir(engine_copy).load_meta().accuracy["fp32"]
    assert exported.from_training_run and exported.top1 is not None
    first: list[str] = []
    r1 = run_calibrate(engine_copy, cfg, say=first.append)
    assert r1.cache == cal.cache_path(cfg.cache_dir, "tiny", "minmax") and str(r1.cache) in r1.written
    cache = cal.cache_path(cfg.cache_dir, "tiny", "minmax")
    files = {p: p.stat().st_mtime_ns for p in [cache, *engine_copy.glob("model*.onnx")]}

    def no_calibration(*a, **k):
        raise AssertionError("the calibrator ran although the cache matched")

    monkeypatch.setattr(cal, "compute_ranges", no_calibration)
    again: list[str] = []
    r2 = run_calibrate(engine_copy, cfg, say=again.append)
    assert any(line.startswith("reusing cached ranges") for line in again)
    assert {p: p.stat().st_mtime_ns for p in files} == files  # nothing rewritten
    assert r2.written == (str(EngineDir(engine_copy).meta_path),)  # only the report went to meta.json
    # A second report keeps the export-time (PyTorch) top-1 beside the ORT one, as the first did.
    assert r2.report["fp32"].training_top1 == r1.report["fp32"].training_top1 == exported.top1

    # A damaged derived model is rebuilt from the cached ranges, still without calibrating.
    trt = engine_copy / "model.int8.trt.onnx"
    trt.write_bytes(trt.read_bytes()[:1000])
    run_calibrate(engine_copy, cfg, say=again.append)
    assert EngineDir(engine_copy).load_meta().files[trt.name] == sha256_file(trt)
    assert {p: p.stat().st_mtime_ns for p in files if p != trt} == {p: t for p, t in files.items() if p != trt}
    monkeypatch.undo()

    # A different image set recalibrates (and so rewrites both INT8 models).
    cfg2 = CalibrateConfig(**{**cfg.__dict__, "num": 12})
    third: list[str] = []
    run_calibrate(engine_copy, cfg2, say=third.append)
    assert any("calibration images changed" in line for line in third)
    assert any(line.startswith("calibrated 12 images") for line in third)
    assert json.loads(cache.read_text())["images"]["count"] == 12


def test_cli_corrupt_cache_recalibrates(
    engine_copy: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = cal.cache_path(tmp_path / "calibration", "tiny", "percentile")
    cache.parent.mkdir()
    cache.write_text('{"format": "edge_app.calibration/1", "ranges": {"x": [0, ')  # truncated mid-write
    rc = main(
        [
            "calibrate",
            str(engine_copy),
            "--images",
            str(tiny_dataset / "train"),
            "--num",
            "16",
            "--method",
            "percentile",
            "--cache-dir",
            str(tmp_path / "calibration"),
            "--no-speed",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "is damaged or truncated; recalibrating" in out.out
    assert "model.int8.cpu.onnx" in out.out and "warning: only 16 usable calibration images" in out.out
    assert json.loads(cache.read_text())["images"]["count"] == 16


@pytest.mark.parametrize(
    "args,match",
    [
        (["--num", "0"], r"--num 0 asks for no calibration images"),
        (["--method", "kl"], r"unknown calibration method 'kl'; choose one of entropy, percentile, minmax"),
        (["--images", "EMPTY"], r"holds no images"),
        (["--images", "NONIMAGES"], r"none of the 1 file\(s\) .* could be decoded"),
        (["--images", "BADVIDEO"], r"cannot open '.*bad\.mp4' as a video"),
        (["--val", "/nonexistent/val"], r"validation folder '/nonexistent/val' does not exist"),
    ],
)
def test_cli_bad_input_leaves_engine_untouched(
    engine_copy: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], match: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "nonimages").mkdir()
    (tmp_path / "nonimages" / "notes.png").write_text("not an image")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    subst = {"EMPTY": tmp_path / "empty", "NONIMAGES": tmp_path / "nonimages", "BADVIDEO": tmp_path / "bad.mp4"}
    args = [str(subst.get(a, a)) for a in args]
    if "--images" not in args:
        args += ["--images", str(tiny_dataset / "train")]
    before = _snapshot(engine_copy)
    rc = main(
        ["calibrate", str(engine_copy), "--cache-dir", str(tmp_path / "calibration"), "--no-speed", "--num", "8", *args]
    )
    err = capsys.readouterr().err
    assert rc == 2
    last = err.split("\r")[-1]  # after any progress bar
    assert last.startswith("error: ") and last.count("\n") == 1 and "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert _snapshot(engine_copy) == before
    assert not (tmp_path / "calibration").exists() or not any((tmp_path / "calibration").iterdir())


def test_cli_engine_without_model_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "eng").mkdir()
    (tmp_path / "eng" / "meta.json").write_text("{}")
    r = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "calibrate", str(tmp_path / "eng")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "has no model.onnx; run `python run.py export" in r.stderr
    assert sorted(p.name for p in (tmp_path / "eng").iterdir()) == ["meta.json"]
    assert not (tmp_path / "calibration").exists()


def test_calibrate_on_an_unlabelled_folder_of_real_photographs(engine_copy: Path, tmp_path: Path) -> None:
    from tests.helpers import PHOTOS, photos

    photos(tmp_path / "photos")
    cfg = CalibrateConfig(
        images=str(tmp_path / "photos"),
        num=len(PHOTOS),
        method="minmax",
        val=None,
        cache_dir=str(tmp_path / "calibration"),
        speed=False,
        progress=False,
    )
    r = run_calibrate(engine_copy, cfg, say=lambda s: None)
    assert (engine_copy / "model.int8.cpu.onnx").is_file() and (engine_copy / "model.int8.trt.onnx").is_file()
    assert r.report["int8.cpu"].n > 0
