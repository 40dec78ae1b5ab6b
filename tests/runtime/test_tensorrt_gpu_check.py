"""scripts/gpu_check.py without a GPU: it imports, --help works, it refuses clearly (exit 2), and its checks'
own logic (the stand-in for TensorRT, the expected logits, capture counting, the fallback) runs on the numpy
fake of CudaRuntime, so a GPU session only has to prove the CUDA side, not debug the script.
"""

from __future__ import annotations

import importlib.util
import json
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
    assert r.returncode == 0 and "runs/gpu_check.json" in r.stdout and "--calls" in r.stdout, r.stderr


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path: Path) -> None:
    if probe_gpu()[0] is not None:
        pytest.skip("this machine has a GPU: gpu_check.sh runs the real check")
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "gpu_check: no GPU:" in r.stderr and "nothing was checked" in r.stderr and "Traceback" not in r.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["gpu"] is None and report["reason"].startswith("no GPU")


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
    assert "-m gpu" in text and "scripts/gpu_check.py" in text and "timeout 240" in text


def test_the_model_comparison_runs_on_the_cpu(tmp_path: Path) -> None:
    """make_engine (random weights, exported as `export` does) and the torch-vs-ORT comparison, on the CPU here."""
    gc = load_script()
    engine = gc.make_engine(tmp_path, 32)
    r = gc.check_torch_vs_ort(engine, np.random.default_rng(0), 32, device="cpu", precisions=("fp32",))
    assert r["ok"], r
    assert r["torch_cpu_fp32"]["agreement"] == 1.0 and r["torch_cpu_fp32"]["max_abs_diff"] < 1e-3
    assert r["ort_cpu_fp32_ms"] > 0 and r["torch_cpu_fp32"]["ms"] > 0
