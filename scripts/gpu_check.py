"""Prove the CUDA side on a machine with an NVIDIA GPU, with or without TensorRT, and bring every number back.

Writes ``OUT_DIR/report.json`` and ``OUT_DIR/table.txt`` (a plain-text table of every check and number, with
device, driver and torch versions). Each check is passed, failed (with the error) or skipped (with why):

1. ``runner`` / ``cuda_graphs`` / ``graph_fallback`` / ``no_leak``: the real TensorRT runner class on the real
   ``CudaRuntime`` with a stand-in for TensorRT whose enqueue launches a torch (or cupy) kernel on the runner's
   own stream: pinned buffers, async copies, event timings, graph capture/replay/re-capture, the fallback
   when capture is refused, and 1,000 calls without device memory loss.
2. ``runner_overhead``: host time per call beyond the GPU's own at a fixed batch, without and with graphs.
3. ``copy_bandwidth``: pinned vs pageable host<->device bandwidth (64 MiB).
4. ``torch_latency``: PyTorch CUDA, ResNet-18/50 at 224 and the detectors at their input size, batch 1/8/32,
   fp32 (TF32) / fp16 / bf16, channels_last, eager and CUDA-graph replay (CUDA events, warm-up, medians).
5. ``detector_parity``: the detector in fp16 on CUDA against fp32 on the CPU.
6. ``torch_vs_ort``: a demo-like engine, PyTorch CUDA fp32/fp16 against ONNX Runtime CPU fp32.
7. ``tensorrt``: where TensorRT imports, calibrate, build fp32/fp16/int8 plans and compare; else
   "TensorRT: NOT TESTED (not installed)".

    python scripts/gpu_check.py --out-dir /tmp/gpu_check [--img 64] [--det-size 256] [--calls 1000]

Exit code 0 when no check failed, 1 when one failed, 2 when there is no usable NVIDIA GPU (every check is
then marked skipped in the table). It installs nothing and needs no network.
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
    dtype = SimpleNamespace(UINT8="UINT8", FLOAT="FLOAT", HALF="HALF", INT32="INT32")

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
        not_installed = "not installed" in str(e)
        return {"ok": True, "skipped": "TensorRT is not installed" if not_installed else str(e)}
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


# ------------------------------------------------------------------------------------------------ measurements
def check_runner_overhead(
    launch: Callable, rng: np.random.Generator, calls: int = 300, batch: int = 8
) -> dict[str, Any]:
    """Host time per ``infer`` at a fixed batch beyond the GPU's own time, without and with CUDA-graph replay.

    The stand-in kernel is tiny, so wall time per call is almost all runner + CUDA API overhead: what a
    plan's own compute time is added to. Wall clock: perf_counter around each call; GPU: the runner's events.
    """
    out: dict[str, Any] = {"ok": True, "batch": batch, "calls": calls}
    x = rng.integers(0, 256, (batch, H, W, 3), dtype=np.uint8)
    for graphs in (False, True):
        cu = CountingCuda.make()
        with _runner(cu, fake_trt(launch, cu.rt), graphs=graphs) as eng:
            for _ in range(20):
                eng.infer(x)
            wall, gpu = [], []
            for _ in range(calls):
                t0 = time.perf_counter()
                eng.infer(x)
                wall.append((time.perf_counter() - t0) * 1e3)
                gpu.append(sum(eng.last_timings.values()))
        tag = "graph" if graphs else "no_graph"
        out[f"{tag}_call_us_p50"] = round(float(np.median(wall)) * 1e3, 1)
        out[f"{tag}_gpu_us_p50"] = round(float(np.median(gpu)) * 1e3, 1)
        out[f"{tag}_overhead_us_p50"] = round(float(np.median(np.array(wall) - np.array(gpu))) * 1e3, 1)
    return out


def check_copy_bandwidth(mib: int = 64, reps: int = 10) -> dict[str, Any]:
    """Pinned vs pageable host<->device copy bandwidth (GB/s, median of ``reps``), as bandwidthTest measures it."""
    from edge_app.runtime.cuda import CudaRuntime

    cu = CudaRuntime()
    rt = cu.rt
    n = mib << 20
    pinned, dev = cu.malloc_host(n), cu.malloc(n)
    pageable = np.ones(n, np.uint8)
    s = cu.stream_create()
    e0, e1 = cu.event_create(), cu.event_create()
    out: dict[str, Any] = {"ok": True, "mib": mib, "reps": reps}
    try:
        for kind, src_ptr in (("pinned", pinned), ("pageable", pageable.ctypes.data)):
            for direction in ("h2d", "d2h"):
                ms = []
                for _ in range(reps + 2):
                    cu.event_record(e0, s)
                    if kind == "pinned":
                        copy = cu.memcpy_h2d_async if direction == "h2d" else cu.memcpy_d2h_async
                        copy(dev, src_ptr, n, s) if direction == "h2d" else copy(src_ptr, dev, n, s)
                    else:  # pageable memory: the driver stages it through its own pinned buffer, synchronously
                        k = (
                            rt.cudaMemcpyKind.cudaMemcpyHostToDevice
                            if direction == "h2d"
                            else rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
                        )
                        args = (dev, src_ptr, n, k) if direction == "h2d" else (src_ptr, dev, n, k)
                        cu._call("cudaMemcpyAsync", *args, s)
                    cu.event_record(e1, s)
                    cu.stream_synchronize(s)
                    ms.append(cu.event_elapsed_ms(e0, e1))
                out[f"{kind}_{direction}_gb_s"] = round(n / (float(np.median(ms[2:])) * 1e-3) / 1e9, 2)
    finally:
        cu.event_destroy(e0)
        cu.event_destroy(e1)
        cu.stream_destroy(s)
        cu.free(dev)
        cu.free_host(pinned)
    out["ok"] = out["pinned_h2d_gb_s"] > 0 and out["pageable_h2d_gb_s"] > 0
    return out


# The models PyTorch CUDA latency is measured on: (name, builder, input size). Random weights: speed only.
def _latency_models(det_size: int) -> list[tuple[str, Callable[[], Any], int]]:
    from edge_app.models import create_model
    from edge_app.models.detector import build_detector

    return [
        ("resnet18", lambda: create_model("resnet18", num_classes=1000), 224),
        ("resnet50", lambda: create_model("resnet50", num_classes=1000), 224),
        ("detector-r18", lambda: build_detector("resnet18", 80), det_size),
        ("detector-r50", lambda: build_detector("resnet50", 80), det_size),
    ]


def _time_cuda(fn: Callable[[], Any], warmup: int, runs: int) -> float:
    """Median ms of ``fn`` by CUDA events, each run synchronised (warm-up excluded)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b))
    return float(np.median(ms))


def check_torch_latency(
    det_size: int, batches: tuple[int, ...] = (1, 8, 32), budget_s: float = 120.0, warmup: int = 10, runs: int = 30
) -> dict[str, Any]:
    """PyTorch CUDA latency: each model x batch x fp32 (TF32) / fp16 / bf16, channels_last, eager and graph replay.

    Medians of ``runs`` CUDA-event timings after ``warmup``; CUDA graphs by torch.cuda.CUDAGraph on a side
    stream (torch's own recipe). Past ``budget_s`` the remaining cases are listed as not measured.
    """
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out: dict[str, Any] = {"ok": True, "layout": "channels_last", "warmup": warmup, "runs": runs, "ms": {}}
    t_end = time.perf_counter() + budget_s
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    skipped = []
    for name, make, size in _latency_models(det_size):
        net = make().eval().cuda().to(memory_format=torch.channels_last)
        for prec, dt in dtypes.items():
            model = net.to(dt)
            for b in batches:
                key = f"{name}@{size} b{b} {prec}"
                if time.perf_counter() > t_end:
                    skipped.append(key)
                    continue
                x = torch.randn(b, 3, size, size, device="cuda", dtype=dt).to(memory_format=torch.channels_last)
                with torch.inference_mode():
                    eager = _time_cuda(lambda m=model, xx=x: m(xx), warmup, runs)
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            model(x)
                    torch.cuda.current_stream().wait_stream(s)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        model(x)
                    graph = _time_cuda(g.replay, warmup, runs)
                    del g
                out["ms"][key] = {"eager": round(eager, 3), "graph": round(graph, 3)}
        del net
        torch.cuda.empty_cache()
    if skipped:
        out["not_measured"] = f"{len(skipped)} case(s) past the {budget_s:.0f} s budget, from {skipped[0]}"
    return out


def check_detector_parity(det_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """The detector in fp16 on CUDA against fp32 on the CPU (PyTorch, same random weights, same images).

    Compared on rows the CPU scores >= 0.3 (what the frame loop keeps): max |score| and |box| differences and
    class agreement; the padding rows below the threshold may reorder freely.
    """
    import torch

    from edge_app.models.detector import build_detector

    torch.manual_seed(0)
    net = build_detector("resnet18", 3).eval()
    with torch.no_grad():
        net.heat[-1].bias.fill_(0.0)  # random weights score everything ~0.5: enough rows above the threshold
    x = torch.from_numpy(rng.standard_normal((4, 3, det_size, det_size)).astype(np.float32))
    with torch.inference_mode():
        ref = net(x).numpy()
        got = net.cuda().half()(x.cuda().half()).float().cpu().numpy()
    keep = ref[..., 4] >= 0.3
    out: dict[str, Any] = {"size": det_size, "rows_compared": int(keep.sum())}
    if not keep.any():
        return {**out, "ok": False, "error": "no detection scored >= 0.3 on the CPU; nothing to compare"}
    same = np.all(np.abs(ref[..., :6] - got[..., :6]) < np.array([2, 2, 2, 2, 0.02, 0.5]), axis=-1)
    out["score_max_abs_diff"] = float(np.abs(ref[..., 4] - got[..., 4])[keep].max())
    out["box_max_abs_diff_px"] = float(np.abs(ref[..., :4] - got[..., :4])[keep].max())
    out["rows_matching"] = float(same[keep].mean())
    out["ok"] = out["rows_matching"] >= 0.95
    return out


# ------------------------------------------------------------------------------------------------ three-state results
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
ORDER = [
    "runner",
    "cuda_graphs",
    "graph_fallback",
    "no_leak",
    "runner_overhead",
    "copy_bandwidth",
    "torch_latency",
    "detector_parity",
    "make_engine",
    "torch_vs_ort",
    "tensorrt",
]


def _state(res: dict[str, Any]) -> str:
    if res.get("skipped"):
        return SKIPPED
    return PASSED if res.get("ok") else FAILED


def run_check(report: dict, name: str, fn: Callable[[], dict[str, Any]], say: Callable[[str], None] = print) -> None:
    """Run one check into ``report['checks'][name]``: passed / failed (with the error) / skipped (with why)."""
    t0 = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
        res = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    res["seconds"] = round(time.perf_counter() - t0, 2)
    res["state"] = _state(res)
    report["checks"][name] = res
    why = res.get("error") or res.get("skipped") or ""
    say(f"gpu_check: {name:<16} {res['state'].upper()} ({res['seconds']:.1f}s){': ' + why if why else ''}")


def skip_all(report: dict, reason: str) -> None:
    """Mark every check skipped with ``reason`` (no GPU: nothing could run)."""
    for name in ORDER:
        report["checks"][name] = {"ok": False, "state": SKIPPED, "skipped": reason}


def _flat(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            if k in ("ok", "state", "skipped", "error", "traceback"):
                continue
            rows += _flat(f"{prefix}.{k}" if prefix else str(k), v)
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:.4g}")]
    if isinstance(value, (int, str, bool)) or value is None:
        return [(prefix, str(value))]
    return [(prefix, json.dumps(value, default=str))]


def format_table(report: dict) -> list[str]:
    """The plain-text table of every check and every number, for README and the session note."""
    gpu = report.get("gpu") or {}
    env = report.get("env") or {}
    lines = [
        "gpu_check results",
        f"device: {gpu.get('name', 'none')}"
        + (f" (sm {gpu['sm']}, {gpu['sm_count']} SMs, {gpu['memory_gib']} GiB)" if gpu else "")
        + f"; driver CUDA {env.get('driver_cuda', '-')}; cuda-bindings runtime {env.get('runtime_cuda', '-')}; "
        f"torch {env.get('torch', '-')}; TensorRT {env.get('tensorrt', '-')}",
        f"started {report.get('started', '?')}; {report.get('seconds', 0)} s",
        "",
        f"{'check':<16} {'state':<8} {'metric':<44} value",
        f"{'-' * 16} {'-' * 8} {'-' * 44} {'-' * 24}",
    ]
    for name in ORDER + [n for n in report["checks"] if n not in ORDER]:
        res = report["checks"].get(name)
        if res is None:
            continue
        state = res.get("state", _state(res))
        rows = _flat("", res) if state != SKIPPED else []
        why = res.get("skipped") or res.get("error")
        if why:
            rows = [("reason" if state == SKIPPED else "error", str(why).splitlines()[0][:200])] + rows
        if state != SKIPPED:
            rows = [r for r in rows if r[0] != "seconds"] + [("seconds", str(res.get("seconds", "-")))]
        for i, (metric, value) in enumerate(rows):
            lines.append(f"{name if i == 0 else '':<16} {state if i == 0 else '':<8} {metric:<44} {value}")
    lines.append(tensorrt_line(report))
    counts = {s: sum(1 for c in report["checks"].values() if c.get("state") == s) for s in (PASSED, FAILED, SKIPPED)}
    lines.append(f"summary: {counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped")
    return lines


def tensorrt_line(report: dict) -> str:
    """'TensorRT: tested (10.16.1.11, passed)', or 'TensorRT: NOT TESTED (not installed)' / (the reason)."""
    tr = report["checks"].get("tensorrt", {})
    if (report.get("env") or {}).get("tensorrt") == "not installed":
        return "TensorRT: NOT TESTED (not installed)"
    if tr.get("state") in (PASSED, FAILED):
        return f"TensorRT: tested ({tr.get('version', '?')}, {tr['state']})"
    return f"TensorRT: NOT TESTED ({tr.get('skipped') or 'not run'})"


def _env(device: Any) -> dict[str, Any]:
    from edge_app.runtime.cuda import cuda_version_str

    env: dict[str, Any] = {
        "driver_cuda": cuda_version_str(device.driver_version) if device else "-",
        "runtime_cuda": cuda_version_str(device.runtime_version) if device else "-",
    }
    try:
        import torch

        env["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
    except ImportError:
        env["torch"] = "not installed"
    try:
        from edge_app.runtime.tensorrt.support import load_trt

        env["tensorrt"] = load_trt().__version__
    except ImportError:
        env["tensorrt"] = "not installed"
    return env


def write_report(out_dir: Path, report: dict) -> Path:
    """report.json and table.txt in ``out_dir``; returns the table's path."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    table = out_dir / "table.txt"
    table.write_text("\n".join(format_table(report)) + "\n")
    return table


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Run every check; write report.json and table.txt; 0 none failed, 1 a check failed, 2 no usable GPU."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default=str(REPO / "runs" / "gpu_check"), help="where report.json and table.txt go")
    p.add_argument("--img", type=int, default=64, help="input size of the demo-like engine (default 64, the demo's)")
    p.add_argument("--det-size", type=int, default=256, help="detector input size for latency/parity (default 256)")
    p.add_argument("--calls", type=int, default=1000, help="calls of the leak check (default 1000)")
    p.add_argument("--latency-budget", type=float, default=120.0, help="seconds for the PyTorch latency sweep")
    a = p.parse_args(argv)
    from edge_app.runtime.cuda import probe_gpu

    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device, why = probe_gpu()
    report: dict[str, Any] = {"ok": False, "gpu": None, "checks": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report["env"] = _env(device)
    if device is None:
        report["reason"] = f"no GPU: {why}"
        skip_all(report, f"no GPU: {why}")
        table = write_report(out_dir, report)
        print("\n".join(format_table(report)))
        print(f"gpu_check: no GPU: {why}; nothing was checked (table: {table})", file=sys.stderr)
        return 2
    report["gpu"] = {
        "name": device.name,
        "sm": device.sm,
        "sm_count": device.sm_count,
        "mig": device.mig,
        "memory_gib": round(device.total_memory / 2**30, 1),
    }
    print(f"gpu_check: {device.name} sm {device.sm} x{device.sm_count}", flush=True)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    try:
        lib, launch = make_kernel()
        report["kernel"] = lib
    except ImportError as e:
        for name in ("runner", "cuda_graphs", "graph_fallback", "no_leak", "runner_overhead"):
            report["checks"][name] = {
                "ok": False,
                "state": SKIPPED,
                "skipped": f"neither torch with CUDA nor cupy: {e}",
            }
    else:
        run_check(report, "runner", lambda: check_runner(launch, rng))
        run_check(report, "cuda_graphs", lambda: check_graphs(launch, rng))
        run_check(report, "graph_fallback", lambda: check_graph_fallback(launch, rng))
        run_check(report, "no_leak", lambda: check_no_leak(launch, rng, a.calls))
        run_check(report, "runner_overhead", lambda: check_runner_overhead(launch, rng))
    run_check(report, "copy_bandwidth", check_copy_bandwidth)
    run_check(
        report,
        "torch_latency",
        lambda: _needs_torch_cuda() or check_torch_latency(a.det_size, budget_s=a.latency_budget),
    )
    run_check(report, "detector_parity", lambda: _needs_torch_cuda() or check_detector_parity(a.det_size, rng))
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        holder: dict[str, Path] = {}
        run_check(
            report, "make_engine", lambda: {"ok": True, "engine": str(holder.setdefault("e", make_engine(work, a.img)))}
        )
        if "e" in holder:
            run_check(
                report, "torch_vs_ort", lambda: _needs_torch_cuda() or check_torch_vs_ort(holder["e"], rng, a.img)
            )
            run_check(report, "tensorrt", lambda: check_tensorrt(holder["e"], rng, a.img, work))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    states = [c["state"] for c in report["checks"].values()]
    report["ok"] = FAILED not in states
    table = write_report(out_dir, report)
    print("\n".join(format_table(report)))
    print(f"gpu_check: {'no check failed' if report['ok'] else 'FAILED'} in {report['seconds']:.0f}s; table: {table}")
    return 0 if report["ok"] else 1


def _needs_torch_cuda() -> dict[str, Any] | None:
    """None when PyTorch has CUDA here, else the skip record saying why."""
    try:
        import torch
    except ImportError:
        return {"ok": False, "skipped": "PyTorch is not installed"}
    if not torch.cuda.is_available():
        return {"ok": False, "skipped": f"this PyTorch ({torch.__version__}) has no CUDA"}
    return None


if __name__ == "__main__":
    raise SystemExit(main())
