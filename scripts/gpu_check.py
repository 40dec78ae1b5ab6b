"""Prove the CUDA side on a machine with an NVIDIA GPU, with or without TensorRT; writes runs/gpu_check.json.

What it runs (each step is one entry of the report's "checks", with ok, numbers and the error if any):

1. ``runner``: the real TensorRT runner class (``TensorRTEngine``) on the real ``CudaRuntime`` with a stand-in
   for TensorRT whose enqueue launches a torch (or cupy) kernel on the runner's own stream handle: pinned
   buffers, async H2D/D2H copies, CUDA-event timings, results checked against numpy.
2. ``cuda_graphs``: the same with CUDA graphs: capture, replay, re-capture on every batch change.
3. ``graph_fallback``: an enqueue that refuses to be captured; the runner must end the capture, discard it and
   run on without graphs (trtexec's behaviour).
4. ``no_leak``: 1,000 calls across batch sizes with graphs; device memory (cudaMemGetInfo) must not shrink.
5. ``torch_vs_ort``: a demo-like engine made here (random weights, scripts/make_bench_engine.py): PyTorch CUDA
   fp32 and fp16 against ONNX Runtime CPU fp32: top-1 agreement, max |logit difference|, median time of each.
6. ``tensorrt``: where TensorRT imports: calibrate, build fp32/fp16/int8 plans and compare the same way.

    python scripts/gpu_check.py [--out runs/gpu_check.json] [--img 64] [--calls 1000]

Exit code 0 when every check passed, 1 when one failed, 2 when there is no usable NVIDIA GPU (nothing checked).
It installs nothing and needs no network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

H = W = 32  # the stand-in network's input: small, the CUDA plumbing is what is checked
CLASSES = 6
MAX_BATCH = 8


# ------------------------------------------------------------------------------------------------ a kernel on a raw stream
class _CudaArray:
    """A device pointer as __cuda_array_interface__, so torch / cupy wrap the runner's own buffers without a copy."""

    def __init__(self, ptr: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }


def make_kernel() -> tuple[str, Callable[[int, int, int, int], None]]:
    """(library, launch(stream_handle, in_ptr, out_ptr, n)): logits[i, c] = image_i.flat[c] / 2 + c, allocation-free.

    Allocation-free so it can be captured into a CUDA graph that is not torch's own; torch when it has CUDA,
    else cupy. The stand-in for TensorRT's ``execute_async_v3``.
    """
    try:
        import torch

        if torch.cuda.is_available():
            bias = torch.arange(CLASSES, dtype=torch.float32, device="cuda")

            def launch_torch(handle: int, inp: int, out: int, n: int) -> None:
                stream = torch.cuda.ExternalStream(handle)
                with torch.cuda.stream(stream):
                    x = torch.as_tensor(_CudaArray(inp, (MAX_BATCH, H * W * 3), "|u1"), device="cuda")
                    y = torch.as_tensor(_CudaArray(out, (MAX_BATCH, CLASSES), "<f4"), device="cuda")
                    y[:n].copy_(x[:n, :CLASSES])
                    y[:n].mul_(0.5).add_(bias)

            torch.cuda.synchronize()
            return f"torch {torch.__version__}", launch_torch
    except ImportError:
        pass
    import cupy as cp  # noqa: F401 - the fallback kernel library

    kern = cp.ElementwiseKernel(
        "raw uint8 x, int32 pixels",
        "float32 y",
        f"y = x[(i / {CLASSES}) * pixels + (i % {CLASSES})] * 0.5f + (i % {CLASSES})",
        "edge_app_fake_net",
    )

    def launch_cupy(handle: int, inp: int, out: int, n: int) -> None:
        with cp.cuda.ExternalStream(handle):
            mem_in = cp.cuda.MemoryPointer(cp.cuda.UnownedMemory(inp, MAX_BATCH * H * W * 3, None), 0)
            mem_out = cp.cuda.MemoryPointer(cp.cuda.UnownedMemory(out, MAX_BATCH * CLASSES * 4, None), 0)
            x = cp.ndarray((MAX_BATCH * H * W * 3,), cp.uint8, mem_in)
            y = cp.ndarray((n * CLASSES,), cp.float32, mem_out)
            kern(x, np.int32(H * W * 3), y)

    return f"cupy {cp.__version__}", launch_cupy


def expected(images: np.ndarray) -> np.ndarray:
    n = images.shape[0]
    return images.reshape(n, -1)[:, :CLASSES].astype(np.float32) * 0.5 + np.arange(CLASSES, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ a stand-in for TensorRT
def fake_trt(
    launch: Callable[[int, int, int, int], None], cudart: Any, refuse_capture: bool = False
) -> SimpleNamespace:
    """Just enough of the ``tensorrt`` module for TensorRTEngine: one uint8 input, one float output, profile 1..8."""

    class _Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    class ILogger:
        Severity = _Severity

        def __init__(self) -> None:
            pass

    io = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    dtype = SimpleNamespace(UINT8="UINT8", FLOAT="FLOAT", HALF="HALF")

    class Context:
        def __init__(self) -> None:
            self.addr: dict[str, int] = {}
            self.n = 0
            self.executes = 0

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            self.n = int(shape[0])
            return 1 <= self.n <= MAX_BATCH

        def execute_async_v3(self, handle: int) -> bool:
            if refuse_capture:
                err, status = cudart.cudaStreamIsCapturing(handle)[:2]
                if status != cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone:
                    return False  # what TensorRT does for a plan with graph-unsafe layers
            launch(handle, self.addr["images"], self.addr["logits"], self.n)
            self.executes += 1
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self) -> None:
            self.context = Context()

        def get_tensor_name(self, i: int) -> str:
            return ("images", "logits")[i]

        def get_tensor_mode(self, name: str) -> str:
            return io.INPUT if name == "images" else io.OUTPUT

        def get_tensor_dtype(self, name: str) -> str:
            return dtype.UINT8 if name == "images" else dtype.FLOAT

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple]:
            return [(1, H, W, 3), (4, H, W, 3), (MAX_BATCH, H, W, 3)]

        def get_tensor_shape(self, name: str) -> tuple:
            return (-1, H, W, 3) if name == "images" else (-1, CLASSES)

        def create_execution_context(self) -> Context:
            return self.context

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.DLA_core = -1

        def deserialize_cuda_engine(self, plan: bytes) -> Engine:
            return Engine()

    return SimpleNamespace(
        __version__="stand-in", ILogger=ILogger, Runtime=Runtime, TensorIOMode=io, DataType=dtype, Dims=tuple
    )


def _runner(cuda: Any, trt: Any, graphs: bool) -> Any:
    from edge_app.engine_dir import EngineDir, EngineMeta, InputSpec
    from edge_app.runtime.tensorrt import TensorRTEngine

    ed = EngineDir(Path(tempfile.mkdtemp(prefix="gpu_check-")) / "standin")
    ed.path.mkdir(parents=True)
    meta = EngineMeta(name="standin", arch="resnet18", labels=[f"c{i}" for i in range(CLASSES)], input=InputSpec(H, W))
    return TensorRTEngine(ed, meta, "fp32", b"PLAN", trt, cuda, cuda_graphs=graphs, model_file="standin.plan")


class CountingCuda:
    """The real CudaRuntime, counting graph captures (a subclass made at run time: cuda-python is imported lazily)."""

    @staticmethod
    def make() -> Any:
        from edge_app.runtime.cuda import CudaRuntime

        class _Counting(CudaRuntime):
            captures = 0
            discarded = 0

            def begin_capture(self, stream: Any) -> None:
                type(self).captures += 1
                super().begin_capture(stream)

            def end_capture_on_error(self, stream: Any) -> None:
                type(self).discarded += 1
                super().end_capture_on_error(stream)

        return _Counting()


def check_runner(launch: Callable, rng: np.random.Generator) -> dict[str, Any]:
    cu = CountingCuda.make()
    with _runner(cu, fake_trt(launch, cu.rt), graphs=False) as eng:
        timings = []
        for n in (1, 3, 8, 2):
            x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
            np.testing.assert_array_equal(eng.infer(x)["logits"], expected(x))
            timings.append(eng.last_timings)
    assert all(t["h2d"] > 0 and t["compute"] > 0 and t["d2h"] > 0 for t in timings), timings
    return {"ok": True, "timings_ms": timings[-1], "batches": [1, 3, 8, 2]}


def check_graphs(launch: Callable, rng: np.random.Generator) -> dict[str, Any]:
    cu = CountingCuda.make()
    trt = fake_trt(launch, cu.rt)
    with _runner(cu, trt, graphs=True) as eng:
        for n in (2, 2, 5, 5, 2):
            x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
            np.testing.assert_array_equal(eng.infer(x)["logits"], expected(x))
        assert eng.graph_error is None, eng.graph_error
    assert type(cu).captures == 3, f"{type(cu).captures} captures for batches 2, 2, 5, 5, 2 (want 3: one per change)"
    return {"ok": True, "captures": type(cu).captures, "calls": 5, "timings_ms": eng.last_timings}


def check_graph_fallback(launch: Callable, rng: np.random.Generator) -> dict[str, Any]:
    cu = CountingCuda.make()
    with _runner(cu, fake_trt(launch, cu.rt, refuse_capture=True), graphs=True) as eng:
        for n in (2, 4, 4):
            x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
            np.testing.assert_array_equal(eng.infer(x)["logits"], expected(x))
        assert eng.graph_error and type(cu).discarded == 1 and type(cu).captures == 1, (
            eng.graph_error,
            type(cu).discarded,
        )
        return {"ok": True, "graph_error": eng.graph_error}


def check_no_leak(launch: Callable, rng: np.random.Generator, calls: int) -> dict[str, Any]:
    cu = CountingCuda.make()

    def free() -> int:  # the runner synchronises its stream on every call, so nothing is in flight here
        _err, free_b, _total = cu.rt.cudaMemGetInfo()
        return int(free_b)

    batches = [1, 1, 4, 8, 2]
    imgs = {n: rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8) for n in batches}
    with _runner(cu, fake_trt(launch, cu.rt), graphs=True) as eng:
        for n in batches * 4:  # warm-up: allocator pools, lazy module loads
            eng.infer(imgs[n])
        before = free()
        t0 = time.perf_counter()
        for i in range(calls):
            eng.infer(imgs[batches[i % len(batches)]])
        seconds = time.perf_counter() - t0
        after = free()
    lost = before - after
    ok = lost <= 4 << 20  # a leaked graph or buffer per call would be far more over 1,000 calls
    return {
        "ok": ok,
        "calls": calls,
        "free_before": before,
        "free_after": after,
        "lost_bytes": lost,
        "captures": type(cu).captures,
        "us_per_call": seconds / calls * 1e6,
        **({} if ok else {"error": f"device memory fell by {lost / 2**20:.1f} MiB over {calls} calls"}),
    }


# ------------------------------------------------------------------------------------------------ backends on a real model
def _compare(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    return {"agreement": float((ref.argmax(1) == got.argmax(1)).mean()), "max_abs_diff": float(np.abs(ref - got).max())}


def _time(eng: Any, x: np.ndarray, runs: int = 20) -> float:
    for _ in range(3):
        eng.infer(x)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        eng.infer(x)
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1e3)


def make_engine(root: Path, img: int) -> Path:
    """A demo-like engine folder: ResNet-18, random weights with BN statistics, exported as `export` does."""
    from make_bench_engine import make_checkpoint

    from edge_app.compile.export import export

    ckpt = make_checkpoint(root / "random.pt", "resnet18", img, CLASSES)
    return Path(export(ckpt, "gpu-check", root / "engines", force=True).engine)


# Max |logit difference| against ONNX Runtime CPU fp32: TF32 convolutions for fp32, half precision for fp16; INT8 on
# random weights is judged by top-1 agreement only (its deviation is reported, not bounded).
TOLERANCE = {"fp32": 5e-2, "fp16": 0.25, "int8": float("inf")}


def check_torch_vs_ort(
    engine: Path,
    rng: np.random.Generator,
    img: int,
    device: str = "cuda",
    precisions: tuple[str, ...] = ("fp32", "fp16"),
) -> dict[str, Any]:
    from edge_app.engine_dir import EngineDir
    from edge_app.runtime.onnxruntime import OnnxRuntimeEngine
    from edge_app.runtime.torch import TorchEngine

    ed = EngineDir(engine)
    meta = ed.load_meta()
    x = rng.integers(0, 256, (16, img, img, 3), dtype=np.uint8)
    out: dict[str, Any] = {"ok": True, "batch": 16}
    with OnnxRuntimeEngine(ed, meta, "fp32") as ort_eng:
        ref = ort_eng.infer(x)["logits"]
        out["ort_cpu_fp32_ms"] = _time(ort_eng, x, 5)
    for prec in precisions:
        with TorchEngine(ed, meta, prec, device) as t:
            r = {**_compare(ref, t.infer(x)["logits"]), "ms": _time(t, x)}
        r["ok"] = r["agreement"] >= 0.9 and r["max_abs_diff"] <= TOLERANCE[prec]
        out[f"torch_{device}_{prec}"] = r
        out["ok"] = out["ok"] and r["ok"]
    return out


def check_tensorrt(engine: Path, rng: np.random.Generator, img: int, work: Path) -> dict[str, Any]:
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt import Machine

    try:
        machine = Machine.detect()
    except UserError as e:
        return {"ok": True, "skipped": str(e)}
    import cv2

    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
    from edge_app.engine_dir import EngineDir
    from edge_app.runtime.onnxruntime import OnnxRuntimeEngine
    from edge_app.runtime.tensorrt import BatchRange, open_tensorrt

    calib = work / "calib"
    calib.mkdir()
    for i in range(64):
        cv2.imwrite(str(calib / f"{i:03d}.png"), rng.integers(0, 256, (img, img, 3), dtype=np.uint8))
    run_calibrate(
        engine,
        CalibrateConfig(
            images=str(calib), num=64, method="minmax", cache_dir=str(work / "cal"), speed=False, progress=False
        ),
        say=lambda s: None,
    )
    ed = EngineDir(engine)
    x = rng.integers(0, 256, (8, img, img, 3), dtype=np.uint8)
    with OnnxRuntimeEngine(ed, ed.load_meta(), "fp32") as ort_eng:
        ref = ort_eng.infer(x)["logits"]
    out: dict[str, Any] = {"ok": True, "version": machine.trt.__version__}
    for prec in ("fp32", "fp16", "int8"):
        t0 = time.perf_counter()
        with open_tensorrt(ed, ed.load_meta(), prec, BatchRange(1, 8, 8), machine=machine, emit=lambda s: None) as eng:
            r = {
                **_compare(ref, eng.infer(x)["logits"]),
                "build_and_load_s": time.perf_counter() - t0,
                "ms": _time(eng, x),
                "timings_ms": eng.last_timings,
            }
        r["ok"] = r["agreement"] >= (0.9 if prec != "int8" else 0.5) and r["max_abs_diff"] <= TOLERANCE[prec]
        out[prec] = r
        out["ok"] = out["ok"] and r["ok"]
    return out


# ------------------------------------------------------------------------------------------------ main
def _run(report: dict, name: str, fn: Callable[[], dict[str, Any]]) -> None:
    t0 = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
        res = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    res["seconds"] = round(time.perf_counter() - t0, 2)
    report["checks"][name] = res
    print(
        f"gpu_check: {name:<15} {'ok' if res['ok'] else 'FAILED'} ({res['seconds']:.1f}s)"
        + (f": {res['error']}" if not res["ok"] else f" {res.get('skipped', '')}"),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every check; write the report; 0 all ok, 1 a check failed, 2 no usable GPU."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=str(REPO / "runs" / "gpu_check.json"), help="report file (default runs/gpu_check.json)"
    )
    p.add_argument("--img", type=int, default=64, help="input size of the demo-like engine (default 64, the demo's)")
    p.add_argument("--calls", type=int, default=1000, help="calls of the leak check (default 1000)")
    a = p.parse_args(argv)
    from edge_app.runtime.cuda import probe_gpu

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device, why = probe_gpu()
    report: dict[str, Any] = {"ok": False, "gpu": None, "checks": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device is None:
        report["reason"] = f"no GPU: {why}"
        out.write_text(json.dumps(report, indent=1))
        print(f"gpu_check: no GPU: {why}; nothing was checked (report: {out})", file=sys.stderr)
        return 2
    report["gpu"] = {
        "name": device.name,
        "sm": device.sm,
        "sm_count": device.sm_count,
        "mig": device.mig,
        "memory_gib": round(device.total_memory / 2**30, 1),
        "driver_cuda": device.driver_version,
        "runtime_cuda": device.runtime_version,
    }
    print(f"gpu_check: {device.name} sm {device.sm} x{device.sm_count}", flush=True)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    try:
        lib, launch = make_kernel()
        report["kernel"] = lib
    except ImportError as e:
        report["checks"]["kernel"] = {"ok": False, "error": f"neither torch with CUDA nor cupy imports: {e}"}
    else:
        _run(report, "runner", lambda: check_runner(launch, rng))
        _run(report, "cuda_graphs", lambda: check_graphs(launch, rng))
        _run(report, "graph_fallback", lambda: check_graph_fallback(launch, rng))
        _run(report, "no_leak", lambda: check_no_leak(launch, rng, a.calls))
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        holder: dict[str, Path] = {}
        _run(
            report, "make_engine", lambda: {"ok": True, "engine": str(holder.setdefault("e", make_engine(work, a.img)))}
        )
        if "e" in holder:
            _run(report, "torch_vs_ort", lambda: check_torch_vs_ort(holder["e"], rng, a.img))
            _run(report, "tensorrt", lambda: check_tensorrt(holder["e"], rng, a.img, work))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["ok"] = bool(report["checks"]) and all(c["ok"] for c in report["checks"].values())
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"gpu_check: {'all checks passed' if report['ok'] else 'FAILED'} in {report['seconds']:.0f}s; report: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
