"""CudaRuntime (cuda-python wrapper) against the real ``cuda.bindings.runtime``, without a GPU.

Every call CudaRuntime makes goes through a recorder that resolves the name in the real module and
checks the arguments against the real signature (the first docstring line Cython writes, e.g.
``cudaMemcpyAsync(dst, src, size_t count, kind: cudaMemcpyKind, stream)``) and that enum arguments are
the real enums; results are made with the real types (cudaError_t, cudaDeviceProp, cudaStream_t).
The fake used by the contract tests must have exactly CudaRuntime's interface.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np
import pytest

from edge_app.runtime.cuda import CudaError, CudaRuntime, probe_gpu
from tests.runtime.trt_stub.doubles import FakeCuda

cudart = pytest.importorskip(
    "cuda.bindings.runtime", reason="cuda-bindings is not installed (pip install -r requirements.txt)"
)


class RecordingCudart:
    """Resolves names in the real module; functions are checked against their real signature, then faked."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(cudart, name)  # AttributeError: this cuda-python has no such name
        if isinstance(real, type) or not callable(real):
            return real  # enums, handle types and constants (cudaStreamNonBlocking) are the real ones
        first = (real.__doc__ or "").strip().splitlines()[0]
        m = re.match(rf"{name}\((.*)\)$", first)
        assert m, f"cannot read the signature of {name}: {first!r}"
        params = [p.strip() for p in m.group(1).split(",") if p.strip()]

        def call(*args: Any) -> Any:
            assert len(args) == len(params), f"{name} takes ({', '.join(params)}), called with {len(args)} argument(s)"
            for p, a in zip(params, args):
                if ":" in p:
                    enum = getattr(cudart, p.split(":")[1].strip())
                    assert isinstance(a, enum), f"{name}: {p} got {a!r}"
            self.calls.append((name, args))
            r = self.results.get(name, ())
            r = r(*args) if callable(r) else r
            return (
                r
                if isinstance(r, tuple) and r and isinstance(r[0], cudart.cudaError_t)
                else (cudart.cudaError_t.cudaSuccess, *r)
            )

        return call


def test_every_cuda_runtime_method_fits_the_real_cuda_python() -> None:
    host = np.arange(64, dtype=np.uint8)
    prop = cudart.cudaDeviceProp()
    prop.major, prop.minor, prop.totalGlobalMem, prop.integrated, prop.multiProcessorCount = 8, 7, 16 << 30, 1, 8
    prop.name = b"Orin".ljust(256, b"\0")
    rec = RecordingCudart(
        {
            "cudaMallocHost": (host.ctypes.data,),
            "cudaMalloc": (4096,),
            "cudaHostAlloc": (host.ctypes.data,),
            "cudaHostGetDevicePointer": (8192,),
            "cudaGetDeviceCount": (1,),
            "cudaGetDeviceProperties": (prop,),
            "cudaDriverGetVersion": (12060,),
            "cudaRuntimeGetVersion": (12090,),
            "cudaStreamCreateWithFlags": (cudart.cudaStream_t(77),),
            "cudaEventCreate": (cudart.cudaEvent_t(),),
            "cudaEventElapsedTime": (0.25,),
            "cudaStreamEndCapture": (cudart.cudaGraph_t(),),
            "cudaGraphInstantiate": (cudart.cudaGraphExec_t(),),
        }
    )
    cu = CudaRuntime(rec)  # type: ignore[arg-type]
    info = cu.device_info(0)
    assert (info.name, info.compute_capability, info.sm, info.integrated, info.total_memory) == (
        "Orin",
        (8, 7),
        "87",
        True,
        16 << 30,
    )
    assert (info.sm_count, info.driver_version, info.runtime_version) == (8, 12060, 12090)
    assert cu.device_count() == 1
    ptr = cu.malloc_host(64)
    view = cu.host_array(ptr, (4, 16), np.uint8)
    view[0, 0] = 200
    assert host[0] == 200, "host_array is a view of the pinned memory, not a copy"
    dev = cu.malloc(64)
    mapped = cu.host_alloc_mapped(64)  # Jetson zero-copy: pinned host memory the GPU reads in place
    assert cu.host_device_pointer(mapped) == 8192
    (size, flags) = [a for n, a in rec.calls if n == "cudaHostAlloc"][0]
    assert (size, flags) == (64, cudart.cudaHostAllocMapped)
    cu.free_host(mapped)
    s = cu.stream_create()
    assert cu.stream_handle(s) == 77
    (flags,) = [a for n, a in rec.calls if n == "cudaStreamCreateWithFlags"][0]
    assert flags == cudart.cudaStreamNonBlocking, (
        "the runner's stream must not synchronise with the legacy default stream"
    )
    ev = [cu.event_create(), cu.event_create()]
    cu.event_record(ev[0], s)
    cu.memcpy_h2d_async(dev, ptr, 64, s)
    cu.memcpy_d2h_async(ptr, dev, 64, s)
    cu.event_record(ev[1], s)
    cu.stream_synchronize(s)
    assert cu.event_elapsed_ms(*ev) == 0.25
    cu.begin_capture(s)
    graph = cu.end_capture(s)
    gexec = cu.graph_instantiate(graph)
    cu.graph_launch(gexec, s)
    cu.graph_exec_destroy(gexec)
    cu.graph_destroy(graph)
    cu.begin_capture(s)
    cu.end_capture_on_error(s)  # a capture that failed: ended, its graph destroyed, the error cleared
    for e in ev:
        cu.event_destroy(e)
    cu.stream_destroy(s)
    cu.free(dev)
    cu.free_host(ptr)
    cu.set_device(0)
    kinds = [a[3] for n, a in rec.calls if n == "cudaMemcpyAsync"]
    assert kinds == [cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost]
    assert {n for n, _ in rec.calls} == {
        "cudaGetDeviceCount",
        "cudaGetDeviceProperties",
        "cudaDriverGetVersion",
        "cudaRuntimeGetVersion",
        "cudaSetDevice",
        "cudaMallocHost",
        "cudaHostAlloc",
        "cudaHostGetDevicePointer",
        "cudaFreeHost",
        "cudaMalloc",
        "cudaFree",
        "cudaMemcpyAsync",
        "cudaStreamCreateWithFlags",
        "cudaGetLastError",
        "cudaStreamSynchronize",
        "cudaStreamDestroy",
        "cudaEventCreate",
        "cudaEventRecord",
        "cudaEventElapsedTime",
        "cudaEventDestroy",
        "cudaStreamBeginCapture",
        "cudaStreamEndCapture",
        "cudaGraphInstantiate",
        "cudaGraphLaunch",
        "cudaGraphDestroy",
        "cudaGraphExecDestroy",
    }


def test_cuda_errors_name_the_call_and_the_error() -> None:
    rec = RecordingCudart(
        {
            "cudaMalloc": (cudart.cudaError_t.cudaErrorMemoryAllocation, None),
            "cudaGetErrorName": lambda e: (b"cudaErrorMemoryAllocation",),
            "cudaGetErrorString": lambda e: (b"out of memory",),
        }
    )
    with pytest.raises(CudaError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation \(out of memory\)"):
        CudaRuntime(rec).malloc(1 << 40)  # type: ignore[arg-type]


def _insufficient(driver: int) -> RecordingCudart:
    """cuda-bindings 13 (runtime 13.0) on a machine whose driver reports ``driver`` (0: no driver at all)."""
    return RecordingCudart(
        {
            "cudaGetDeviceCount": (cudart.cudaError_t.cudaErrorInsufficientDriver, None),
            "cudaGetErrorName": lambda e: (b"cudaErrorInsufficientDriver",),
            "cudaGetErrorString": lambda e: (b"CUDA driver version is insufficient for CUDA runtime version",),
            "cudaDriverGetVersion": (driver,),
            "cudaRuntimeGetVersion": (13000,),
        }
    )


def test_no_driver_at_all_says_there_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: CI (cuda-bindings 13, no driver) was told 'cudaErrorInsufficientDriver', a version problem it does not have."""
    monkeypatch.setattr("edge_app.runtime.cuda.nvidia_driver_present", lambda: False)
    device, why = probe_gpu(CudaRuntime(_insufficient(0)))  # type: ignore[arg-type]
    assert device is None
    assert (
        why.startswith("no NVIDIA GPU/driver on this machine") and "ONNX Runtime" in why and "Insufficient" not in why
    ), why
    # cudaDriverGetVersion says 0 ("no driver installed") even where a stray libcuda is found
    monkeypatch.setattr("edge_app.runtime.cuda.nvidia_driver_present", lambda: True)
    assert probe_gpu(CudaRuntime(_insufficient(0)))[1].startswith("no NVIDIA GPU/driver")  # type: ignore[arg-type]


def test_an_old_driver_is_worded_as_the_version_mismatch_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA 12.4 driver (JetPack 6, older desktops) under cuda-bindings 13: say which cuda-bindings to install."""
    monkeypatch.setattr("edge_app.runtime.cuda.nvidia_driver_present", lambda: True)
    device, why = probe_gpu(CudaRuntime(_insufficient(12040)))  # type: ignore[arg-type]
    assert device is None
    assert why == (
        "the NVIDIA driver supports CUDA 12.4 but cuda-bindings needs CUDA 13.0: "
        "pip install 'cuda-bindings==12.*' (or update the NVIDIA driver)"
    ), why


def test_this_machine_reports_no_gpu_rather_than_a_driver_version() -> None:
    """The real cuda-bindings here: whatever this machine is, the sentence must not blame a version on no driver."""
    from edge_app.runtime.cuda import nvidia_driver_present

    device, why = probe_gpu()
    if device is not None:
        pytest.skip("this machine has a usable GPU")
    if not nvidia_driver_present():
        assert why.startswith("no NVIDIA GPU/driver on this machine"), why


def test_probe_without_cuda_python_says_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("cuda-python is not installed; pip install cuda-bindings")

    monkeypatch.setattr("edge_app.runtime.cuda.load_cudart", missing)
    device, why = probe_gpu()
    assert device is None and "pip install cuda-bindings" in why


def test_contract_tests_fake_cuda_has_exactly_the_real_interface() -> None:
    public = {n: f for n, f in vars(CudaRuntime).items() if not n.startswith("_") and callable(f)}
    not_faked = {"host_array", "error_text"}  # pure host-side code: the fake inherits the real one
    for name, func in public.items():
        if name in not_faked:
            assert name not in vars(FakeCuda)
            continue
        assert name in vars(FakeCuda), f"FakeCuda does not fake CudaRuntime.{name}"
        assert inspect.signature(vars(FakeCuda)[name]) == inspect.signature(func), name
    assert not {n for n in vars(FakeCuda) if not n.startswith("_")} - set(public) - {"submit"}, "FakeCuda has extra API"


def test_doctor_gives_the_pip_line_for_a_driver_version_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app import doctor

    monkeypatch.setattr("edge_app.runtime.cuda.nvidia_driver_present", lambda: True)
    c = doctor.check_gpu(lambda: probe_gpu(CudaRuntime(_insufficient(12060))))  # type: ignore[arg-type]
    assert not c.ok and c.detail == "the NVIDIA driver supports CUDA 12.6 but cuda-bindings needs CUDA 13.0"
    assert c.fix == "pip install 'cuda-bindings==12.*' (or update the NVIDIA driver)"
