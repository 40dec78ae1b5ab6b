"""cuda-python behind one small class: pinned/device memory, a stream, async copies, events, CUDA graphs.

NVIDIA's own TensorRT Python samples drive TensorRT with cuda-python (``cuda.bindings.runtime``), where
every call returns ``(err, value...)``. :class:`CudaRuntime` turns that into plain values and raises
:class:`CudaError` naming the call and the error, so the TensorRT runner reads like ordinary code. Tests
replace the whole class with a fake of the same shape (``tests/runtime/trt_stub/doubles.py``); the real
class is checked against the installed ``cuda.bindings.runtime`` and, on a GPU machine, executed.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

CUDA_PYTHON_FIX = "pip install cuda-bindings (12.x for CUDA 12 drivers, 13.x for CUDA 13 drivers)"


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and CUDA's error name and text."""


def load_cudart() -> ModuleType:
    """The cuda-python runtime module; raises ImportError with the install command when it is missing."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 layout
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python (11.8 - 12.5)
        except ImportError:
            raise ImportError(f"cuda-python is not installed; {CUDA_PYTHON_FIX}") from None
    return cudart


@dataclass(frozen=True)
class DeviceInfo:
    """What the plan cache key and ``doctor`` need to know about one GPU."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int  # bytes
    integrated: bool  # Jetson-style shared memory (DLA lives on these boards)
    driver_version: int  # e.g. 12040 = CUDA 12.4 capable driver
    runtime_version: int  # the CUDA runtime cuda-python was built against
    # Multiprocessor count: tells GPUs of one name apart (every Jetson Orin reports "Orin", sm 8.7, with 4 to 16
    # SMs) and a MIG slice from its whole GPU (a slice reports the parent's name but only its own SMs).
    sm_count: int = 0
    mig: bool = False  # running in a MIG instance (CUDA_VISIBLE_DEVICES names a MIG-... device)

    @property
    def sm(self) -> str:
        """Compute capability as in CUDA's 'sm_89' names, without the prefix: '89'."""
        return f"{self.compute_capability[0]}{self.compute_capability[1]}"


def cuda_version_str(v: int) -> str:
    """12040 -> '12.4' (CUDA's integer version encoding)."""
    return f"{v // 1000}.{(v % 1000) // 10}"


class CudaRuntime:
    """Thin, checked wrapper over ``cuda.bindings.runtime``; pass ``cudart`` to inject a test double."""

    def __init__(self, cudart: ModuleType | None = None) -> None:
        self.rt = cudart if cudart is not None else load_cudart()

    # -------------------------------------------------------------------------------------- plumbing
    def _call(self, name: str, *args: Any) -> Any:
        """Call ``cudart.<name>(*args)``; raise CudaError unless it returned cudaSuccess; unwrap the values."""
        res = getattr(self.rt, name)(*args)
        err, vals = (res[0], res[1:]) if isinstance(res, tuple) else (res, ())
        if err != self.rt.cudaError_t.cudaSuccess:
            raise CudaError(f"{name} failed: {self.error_text(err)}")
        if not vals:
            return None
        return vals[0] if len(vals) == 1 else vals

    def error_text(self, err: Any) -> str:
        """'cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)' for an error code."""
        try:
            name = self.rt.cudaGetErrorName(err)[1]
            text = self.rt.cudaGetErrorString(err)[1]
            return f"{name.decode() if isinstance(name, bytes) else name} ({text.decode() if isinstance(text, bytes) else text})"
        except Exception:  # error reporting must never hide the original error
            return str(err)

    # -------------------------------------------------------------------------------------- devices
    def device_count(self) -> int:
        """Number of visible CUDA devices; raises CudaError (e.g. no driver) when CUDA cannot start."""
        return int(self._call("cudaGetDeviceCount"))

    def device_info(self, index: int = 0) -> DeviceInfo:
        """Name, compute capability, memory and versions of device ``index``."""
        prop = self._call("cudaGetDeviceProperties", index)
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return DeviceInfo(
            index=index,
            name=name.rstrip("\x00").strip(),
            compute_capability=(int(prop.major), int(prop.minor)),
            total_memory=int(prop.totalGlobalMem),
            integrated=bool(prop.integrated),
            driver_version=self.driver_version(),
            runtime_version=self.runtime_version(),
            sm_count=int(prop.multiProcessorCount),
            mig=in_mig_instance(),
        )

    def driver_version(self) -> int:
        """The CUDA version the installed driver supports (12040 = 12.4); 0 when no NVIDIA driver is installed."""
        return int(self._call("cudaDriverGetVersion"))

    def runtime_version(self) -> int:
        """The CUDA runtime version cuda-python (cuda-bindings) was built for, e.g. 13000."""
        return int(self._call("cudaRuntimeGetVersion"))

    def set_device(self, index: int) -> None:
        """Make ``index`` the current device of this thread."""
        self._call("cudaSetDevice", index)

    # -------------------------------------------------------------------------------------- memory
    def malloc_host(self, nbytes: int) -> int:
        """Pinned (page-locked) host memory: async copies need it and it is ~2x faster over PCIe."""
        return int(self._call("cudaMallocHost", nbytes))

    def free_host(self, ptr: int) -> None:
        """Free memory from :meth:`malloc_host`."""
        self._call("cudaFreeHost", ptr)

    def malloc(self, nbytes: int) -> int:
        """Device memory; returns the device pointer as an int (what ``set_tensor_address`` takes)."""
        return int(self._call("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        """Free memory from :meth:`malloc`."""
        self._call("cudaFree", ptr)

    def host_alloc_mapped(self, nbytes: int) -> int:
        """Pinned host memory mapped into the GPU's address space (free with :meth:`free_host`).

        On an integrated GPU (Jetson) host and device share one DRAM, so the GPU can read and write this in
        place and the H2D/D2H copies disappear (jetson-inference's cudaAllocMapped); on a discrete GPU every
        access would cross PCIe, so the runner uses it only when asked.
        """
        return int(self._call("cudaHostAlloc", nbytes, self.rt.cudaHostAllocMapped))

    def host_device_pointer(self, host_ptr: int) -> int:
        """The device pointer of mapped host memory from :meth:`host_alloc_mapped` (what TensorRT is given)."""
        return int(self._call("cudaHostGetDevicePointer", host_ptr, 0))

    def host_array(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A numpy view (no copy) of pinned host memory at ``ptr``."""
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dt).reshape(shape)

    def memcpy_h2d_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        """Queue a host -> device copy on ``stream``."""
        self._call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def memcpy_d2h_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        """Queue a device -> host copy on ``stream``."""
        self._call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    # -------------------------------------------------------------------------------------- streams and events
    def stream_create(self) -> Any:
        """A new non-blocking CUDA stream: it does not synchronise with the legacy default stream, so other
        libraries' work on stream 0 (PyTorch, OpenCV CUDA) neither waits for nor breaks a graph capture on it."""
        return self._call("cudaStreamCreateWithFlags", self.rt.cudaStreamNonBlocking)

    def stream_handle(self, stream: Any) -> int:
        """The stream as the integer handle ``execute_async_v3`` takes."""
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        """Wait until everything queued on ``stream`` has finished."""
        self._call("cudaStreamSynchronize", stream)

    def stream_destroy(self, stream: Any) -> None:
        """Destroy a stream from :meth:`stream_create`."""
        self._call("cudaStreamDestroy", stream)

    def event_create(self) -> Any:
        """A new CUDA event (with timing, the default)."""
        return self._call("cudaEventCreate")

    def event_record(self, event: Any, stream: Any) -> None:
        """Record ``event`` on ``stream``: it completes when all work queued before it has."""
        self._call("cudaEventRecord", event, stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two completed events (GPU clock, ~0.5 us resolution)."""
        return float(self._call("cudaEventElapsedTime", start, end))

    def event_destroy(self, event: Any) -> None:
        """Destroy an event from :meth:`event_create`."""
        self._call("cudaEventDestroy", event)

    # -------------------------------------------------------------------------------------- CUDA graphs
    def begin_capture(self, stream: Any) -> None:
        """Start recording the work queued on ``stream`` into a graph instead of running it."""
        self._call("cudaStreamBeginCapture", stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)

    def end_capture(self, stream: Any) -> Any:
        """Stop recording; returns the captured graph."""
        return self._call("cudaStreamEndCapture", stream)

    def end_capture_on_error(self, stream: Any) -> None:
        """End a capture that failed and discard whatever it recorded; never raises (trtexec's endCaptureOnError).

        A capture fails in one of two ways: the stream is invalidated (cudaErrorStreamCaptureInvalidated, no
        graph), or the enqueue reported failure (a graph comes back but must not be used). Either way the
        stream leaves capture mode and the sticky error is cleared, so the next plain enqueue works.
        """
        res = self.rt.cudaStreamEndCapture(stream)
        err, graph = (res[0], res[1]) if isinstance(res, tuple) and len(res) > 1 else (res, None)
        if err == self.rt.cudaError_t.cudaSuccess and graph is not None:
            self.rt.cudaGraphDestroy(graph)
        self.rt.cudaGetLastError()  # clears the error the failed capture left behind

    def graph_instantiate(self, graph: Any) -> Any:
        """An executable graph from a captured one."""
        return self._call("cudaGraphInstantiate", graph, 0)

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        """Queue a whole captured graph on ``stream`` with one launch (saves per-kernel launch cost)."""
        self._call("cudaGraphLaunch", graph_exec, stream)

    def graph_destroy(self, graph: Any) -> None:
        """Destroy a captured graph."""
        self._call("cudaGraphDestroy", graph)

    def graph_exec_destroy(self, graph_exec: Any) -> None:
        """Destroy an executable graph."""
        self._call("cudaGraphExecDestroy", graph_exec)


def in_mig_instance() -> bool:
    """Whether this process sees a MIG slice (CUDA_VISIBLE_DEVICES=MIG-<uuid>, as set by nvidia-docker and k8s)."""
    return any(d.strip().startswith("MIG-") for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(","))


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is installed: desktop (/proc/driver/nvidia), Jetson (nv_tegra_release), or libcuda."""
    if Path("/proc/driver/nvidia").exists() or Path("/etc/nv_tegra_release").exists():
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def no_gpu_reason(cuda: CudaRuntime, err: CudaError) -> str:
    """Why CUDA could not start, in words: no GPU/driver at all, or a driver too old for this cuda-bindings.

    CUDA says cudaErrorInsufficientDriver in both cases, so on a machine with no NVIDIA driver at all it
    would read as a version problem; cudaDriverGetVersion (0 = no driver) and the driver's files tell them apart.
    """
    try:
        driver = cuda.driver_version()
    except CudaError:
        driver = 0
    if driver == 0 or not nvidia_driver_present():
        return "no NVIDIA GPU/driver on this machine (no NVIDIA kernel driver or libcuda found); run on the CPU with ONNX Runtime"
    if "cudaErrorInsufficientDriver" in str(err):
        try:
            runtime = cuda.runtime_version()
        except CudaError:
            runtime = 0
        have, need = cuda_version_str(driver), cuda_version_str(runtime) if runtime else "a newer CUDA"
        return (
            f"the NVIDIA driver supports CUDA {have} but cuda-bindings needs CUDA {need}: "
            f"pip install 'cuda-bindings=={driver // 1000}.*' (or update the NVIDIA driver)"
        )
    return f"no usable NVIDIA GPU ({err}); check the NVIDIA driver with nvidia-smi, or run on the CPU with ONNX Runtime"


def probe_gpu(cuda: CudaRuntime | None = None) -> tuple[DeviceInfo | None, str]:
    """(device 0, '') when an NVIDIA GPU is usable, else (None, one sentence saying why and the fix)."""
    try:
        cuda = cuda or CudaRuntime()
    except ImportError as e:
        return None, str(e)
    try:
        n = cuda.device_count()
    except CudaError as e:
        return None, no_gpu_reason(cuda, e)
    if n < 1:
        return None, "no NVIDIA GPU found (cudaGetDeviceCount = 0); run on the CPU with ONNX Runtime"
    try:
        return cuda.device_info(0), ""
    except CudaError as e:
        return None, f"NVIDIA GPU 0 cannot be queried ({e}); check the driver with nvidia-smi"


def gpu_absent_reason(cuda: CudaRuntime | None = None) -> str:
    """Why there is certainly no usable NVIDIA GPU; '' when there is one or cuda-python is not there to tell."""
    found, why = probe_gpu(cuda)
    return "" if found is not None or "not installed" in why else why
