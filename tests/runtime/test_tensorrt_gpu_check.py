"""scripts/gpu_check.py without a GPU: it imports, --help works, it refuses clearly (exit 2), and its checks'
own logic (the stand-in for TensorRT, the expected logits, capture counting, the fallback) runs on the numpy
fake of CudaRuntime, so a GPU session only has to prove the CUDA side, not debug the script.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_app.runtime.cuda import probe_gpu
from tests.runtime.trt_stub.doubles import FakeCuda

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help_runs_without_a_gpu() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--out-dir" in r.stdout and "table.txt" in r.stdout and "--calls" in r.stdout, r.stderr


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path: Path) -> None:
    if probe_gpu()[0] is not None:
        pytest.skip("this machine has a GPU: gpu_check.sh runs the real check")
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(out)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "gpu_check: no GPU:" in r.stderr and "nothing was checked" in r.stderr and "Traceback" not in r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is False and report["gpu"] is None and report["reason"].startswith("no GPU")
    gc = load_script()
    assert set(report["checks"]) == set(gc.ORDER) and {c["state"] for c in report["checks"].values()} == {"skipped"}
    table = (out / "table.txt").read_text()
    assert f"summary: 0 passed, 0 failed, {len(gc.ORDER)} skipped" in table and table == r.stdout
    for name in gc.ORDER:
        assert re.search(rf"^{name} +skipped +reason +no GPU: ", table, re.M), name


def test_gpu_check_sh_without_a_gpu_writes_its_table_to_the_out_dir(tmp_path: Path) -> None:
    if probe_gpu()[0] is not None:
        pytest.skip("this machine has a GPU: gpu_check.sh runs the real check")
    out = tmp_path / "kept"
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**__import__("os").environ, "PYTHON": sys.executable},
    )
    assert r.returncode == 2 and "gpu_check.sh: no GPU" in r.stderr, (r.returncode, r.stderr[-500:])
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "report.json", "table.txt"]
    assert "skipped" in (out / "table.txt").read_text() and not (REPO / "runs" / "gpu_check.json").exists()


def _fake_cuda(gc: ModuleType) -> Any:
    """FakeCuda with the two cudart calls gpu_check makes itself, and capture counters like CountingCuda's."""

    class Counting(FakeCuda):
        captures = 0
        discarded = 0

        def __init__(self) -> None:
            super().__init__()
            status = SimpleNamespace(cudaStreamCaptureStatusNone=0, cudaStreamCaptureStatusActive=1)
            self.rt = SimpleNamespace(
                cudaStreamCaptureStatus=status,
                cudaMemGetInfo=lambda: (0, 1 << 30, 2 << 30),
                cudaStreamIsCapturing=lambda h: (0, 0 if self.capturing is None else 1),
            )

        def begin_capture(self, stream: Any) -> None:
            type(self).captures += 1
            super().begin_capture(stream)

        def end_capture_on_error(self, stream: Any) -> None:
            type(self).discarded += 1
            super().end_capture_on_error(stream)

    return Counting()


def test_the_checks_pass_on_the_numpy_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    gc = load_script()
    made: list[Any] = []

    def make() -> Any:
        made.append(_fake_cuda(gc))
        return made[-1]

    def launch(handle: int, inp: int, out: int, n: int) -> None:
        cu = made[-1]

        def kernel() -> None:
            src = cu.buffers[inp][: n * gc.H * gc.W * 3].reshape(n, gc.H, gc.W, 3)
            cu.buffers[out].view(np.float32)[: n * gc.CLASSES] = gc.expected(src).ravel()

        cu.submit(kernel, "execute")

    monkeypatch.setattr(gc.CountingCuda, "make", staticmethod(make))
    rng = np.random.default_rng(0)
    assert gc.check_runner(launch, rng)["ok"]
    g = gc.check_graphs(launch, rng)
    assert g["ok"] and g["captures"] == 3
    f = gc.check_graph_fallback(launch, rng)
    assert f["ok"] and "enqueue failed while being captured" in f["graph_error"]
    leak = gc.check_no_leak(launch, rng, calls=50)
    assert leak["ok"] and leak["lost_bytes"] == 0 and leak["captures"] >= 10
    assert all(cu.buffers == {} and cu.live_objects == 0 for cu in made), "every engine freed what it allocated"


def test_a_wrong_kernel_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks have teeth: a kernel that writes the wrong logits is caught."""
    gc = load_script()
    made: list[Any] = []
    monkeypatch.setattr(gc.CountingCuda, "make", staticmethod(lambda: made.append(_fake_cuda(gc)) or made[-1]))

    def wrong(handle: int, inp: int, out: int, n: int) -> None:
        made[-1].submit(lambda: None, "execute")  # computes nothing

    with pytest.raises(AssertionError):
        gc.check_runner(wrong, np.random.default_rng(0))


def test_gpu_check_sh_is_valid_bash_and_runs_both_halves() -> None:
    sh = REPO / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(sh)], capture_output=True).returncode == 0
    text = sh.read_text()
    assert "-m gpu -rA" in text and "scripts/gpu_check.py --out-dir" in text and "timeout 200" in text
    assert "timeout 120" in text, "both halves fit in ~4 minutes on an H100"


def test_runner_overhead_measures_both_modes_on_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    gc = load_script()
    made: list[Any] = []
    monkeypatch.setattr(gc.CountingCuda, "make", staticmethod(lambda: made.append(_fake_cuda(gc)) or made[-1]))

    def launch(handle: int, inp: int, out: int, n: int) -> None:
        made[-1].submit(lambda: None, "execute")

    r = gc.check_runner_overhead(launch, np.random.default_rng(0), calls=20, batch=4)
    assert r["ok"] and r["batch"] == 4
    for tag in ("no_graph", "graph"):
        assert r[f"{tag}_call_us_p50"] > 0 and f"{tag}_overhead_us_p50" in r
    assert all(cu.buffers == {} and cu.live_objects == 0 for cu in made)


def test_the_table_has_three_states_and_every_number() -> None:
    gc = load_script()
    report = {
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "sm": "90", "sm_count": 132, "memory_gib": 79.1},
        "env": {
            "driver_cuda": "12.8",
            "runtime_cuda": "12.9",
            "torch": "2.14.1 (CUDA 12.8)",
            "tensorrt": "not installed",
        },
        "started": "2026-12-05T12:00:00",
        "seconds": 170.0,
        "checks": {},
    }
    gc.run_check(
        report,
        "copy_bandwidth",
        lambda: {"ok": True, "pinned_h2d_gb_s": 25.1, "pageable_h2d_gb_s": 9.5},
        say=lambda s: None,
    )
    gc.run_check(
        report,
        "torch_latency",
        lambda: {"ok": True, "ms": {"resnet50@224 b8 fp16": {"eager": 2.1, "graph": 1.4}}},
        say=lambda s: None,
    )
    gc.run_check(report, "detector_parity", lambda: 1 / 0, say=lambda s: None)
    gc.run_check(report, "tensorrt", lambda: {"ok": True, "skipped": "TensorRT is not installed"}, say=lambda s: None)
    states = {n: c["state"] for n, c in report["checks"].items()}
    assert states == {
        "copy_bandwidth": "passed",
        "torch_latency": "passed",
        "detector_parity": "failed",
        "tensorrt": "skipped",
    }
    text = "\n".join(gc.format_table(report))
    assert (
        "device: NVIDIA H100 80GB HBM3 (sm 90, 132 SMs, 79.1 GiB); driver CUDA 12.8" in text and "torch 2.14.1" in text
    )
    assert re.search(r"^copy_bandwidth +passed +pinned_h2d_gb_s +25\.1$", text, re.M), text
    assert re.search(r"^ +ms\.resnet50@224 b8 fp16\.graph +1\.4$", text, re.M), text
    assert re.search(r"^detector_parity +failed +error +ZeroDivisionError", text, re.M), text
    assert "TensorRT: NOT TESTED (not installed)" in text
    assert "summary: 2 passed, 1 failed, 1 skipped" in text, "a skipped check is never counted as passed"


def test_the_model_comparison_runs_on_the_cpu(tmp_path: Path) -> None:
    """make_engine (random weights, exported as `export` does) and the torch-vs-ORT comparison, on the CPU here."""
    gc = load_script()
    engine = gc.make_engine(tmp_path, 32)
    r = gc.check_torch_vs_ort(engine, np.random.default_rng(0), 32, device="cpu", precisions=("fp32",))
    assert r["ok"], r
    assert r["torch_cpu_fp32"]["agreement"] == 1.0 and r["torch_cpu_fp32"]["max_abs_diff"] < 1e-3
    assert r["ort_cpu_fp32_ms"] > 0 and r["torch_cpu_fp32"]["ms"] > 0
