"""What TensorRT runs where: find the module, read its version, check the GPU, precision and DLA against it.

Every rule here is a published support fact (TensorRT's support matrices, FACTS.md), checked before a
minutes-long build so the user gets one sentence instead of a builder error. :class:`Machine` is the running
machine as far as plans care; :func:`available` is the backend's answer to "can TensorRT run here?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from edge_app.errors import UserError
from edge_app.runtime.cuda import CudaRuntime, DeviceInfo, probe_gpu

TRT_FIX = (
    "on Jetson it comes with JetPack (sudo apt install python3-libnvinfer); on a desktop with an NVIDIA GPU, "
    "pip install tensorrt (it downloads from NVIDIA's package index)"
)
# Lowest compute capability with fast FP16 / INT8 (DP4A) kernels; TensorRT 11 dropped the
# platform_has_fast_fp16/int8 queries, so the table is the one check that works on both versions.
MIN_SM = {"fp32": (0, 0), "fp16": (5, 3), "int8": (6, 1)}
# TensorRT's own GPU floor (support matrices): 10.0-10.4 run on Volta (sm 7.0) and newer; 10.5 dropped Volta,
# so from 10.5 (and in 11.x) the floor is Turing, sm 7.5. Pascal (sm 6.x) needs TensorRT 8.6.
TRT_MIN_SM = ((10, 0, (7, 0)), (10, 5, (7, 5)))


def load_trt() -> ModuleType:
    """The TensorRT Python module (``tensorrt``, or the bare ``tensorrt_bindings`` wheel); ImportError says why."""
    try:
        import tensorrt as trt

        return trt
    except ImportError as e:
        first = e
    except OSError as e:  # the module is there but its native libraries are not
        raise ImportError(f"TensorRT is installed but its libraries do not load ({e}); {TRT_FIX}") from None
    try:
        import tensorrt_bindings as trt  # type: ignore[no-redef]

        return trt
    except (ImportError, OSError):
        raise ImportError(f"TensorRT is not installed ({first}); {TRT_FIX}") from None


def trt_version_tuple(version: str) -> tuple[int, int]:
    """'10.16.1.11' -> (10, 16); (0, 0) when unreadable."""
    m = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def trt_min_sm(version: str) -> tuple[int, int]:
    """The lowest compute capability TensorRT ``version`` runs on (see TRT_MIN_SM)."""
    v = trt_version_tuple(version)
    floor = (0, 0)
    for major, minor, sm in TRT_MIN_SM:
        if v >= (major, minor):
            floor = sm
    return floor


def check_gpu_supported(trt_version: str, device: DeviceInfo) -> None:
    """UserError when this TensorRT version does not run on this GPU generation at all (e.g. Pascal on 10.x)."""
    need = trt_min_sm(trt_version)
    if device.compute_capability < need:
        cc = f"{device.compute_capability[0]}.{device.compute_capability[1]}"
        raise UserError(
            f"TensorRT {trt_version} needs a GPU of compute capability {need[0]}.{need[1]} or newer, but {device.name} "
            f"is {cc}; use TensorRT 8.6 for Pascal (or 10.0-10.4 for Volta), or run with --backend onnxruntime or torch"
        )


def trt_major(trt: ModuleType) -> int:
    """Major version of the TensorRT module; UserError for versions this code was not written for."""
    m = re.match(r"(\d+)\.", str(getattr(trt, "__version__", "")))
    major = int(m.group(1)) if m else 0
    if major < 10:
        raise UserError(
            f"TensorRT {getattr(trt, '__version__', '?')} is too old; edge_app needs TensorRT 10.x or 11.x "
            "(JetPack 6.0 ships TensorRT 8.6, JetPack 6.1 and later ship 10.3: upgrade JetPack, or run with "
            "--backend onnxruntime)"
        )
    return major


# TensorRT releases whose support matrix lists no DLA on any platform (FACTS.md: DLA is not in 11.0-11.4.0).
NO_DLA = ((11, 0, 0), (11, 4, 0))


def trt_version_triple(version: str) -> tuple[int, int, int]:
    """'11.4.0.106' -> (11, 4, 0); missing parts read as 0."""
    nums = [int(x) for x in re.findall(r"\d+", str(version))[:3]]
    return tuple(nums + [0] * (3 - len(nums)))  # type: ignore[return-value]


def check_dla_supported(trt_version: str, dla_core: int | None) -> None:
    """UserError when DLA is asked for on a TensorRT release whose support matrix lists no DLA."""
    lo, hi = NO_DLA
    if dla_core is not None and lo <= trt_version_triple(trt_version) <= hi:
        raise UserError(
            f"--dla {dla_core}: TensorRT {trt_version} has no DLA support (11.0 to 11.4.0 list none); "
            "use the TensorRT 10.x of JetPack 6 for DLA, or leave --dla out to run on the GPU"
        )


def check_precision_supported(device: DeviceInfo, precision: str) -> None:
    """UserError when this GPU has no fast kernels for ``precision`` (e.g. FP16 on sm_52)."""
    need = MIN_SM[precision]
    if device.compute_capability < need:
        raise UserError(
            f"{device.name} (compute capability {device.compute_capability[0]}.{device.compute_capability[1]}) "
            f"has no fast {precision} kernels (needs {need[0]}.{need[1]} or newer); use --precision fp32"
        )


@dataclass
class Machine:
    """The running machine as far as plans care: TensorRT module and version, GPU, cuda-python runtime."""

    trt: ModuleType
    cuda: CudaRuntime
    device: DeviceInfo

    @classmethod
    def detect(cls, trt: ModuleType | None = None, cuda: CudaRuntime | None = None) -> Machine:
        """The local machine; UserError saying what is missing (and that ONNX Runtime is the fallback)."""
        try:
            cuda = cuda or CudaRuntime()
        except ImportError as e:
            raise UserError(f"TensorRT needs cuda-python: {e}") from None
        device, why = probe_gpu(cuda)
        if device is None:
            raise UserError(f"TensorRT needs an NVIDIA GPU: {why}")
        try:
            trt = trt or load_trt()
        except ImportError as e:
            raise UserError(f"{e}; without it use --backend onnxruntime") from None
        trt_major(trt)
        check_gpu_supported(trt.__version__, device)
        return cls(trt, cuda, device)


def available(trt: ModuleType | None = None, cuda: CudaRuntime | None = None) -> tuple[bool, str]:
    """(True, 'TensorRT 10.16 on <GPU>') when plans can be built and run here, else (False, why + fix)."""
    device, why = probe_gpu(cuda)
    if device is None:
        return False, why
    try:
        trt = trt or load_trt()
        trt_major(trt)
        check_gpu_supported(trt.__version__, device)  # e.g. a Pascal GPU with TensorRT 10: say so, do not fail later
    except (ImportError, UserError) as e:
        return False, str(e)
    return True, f"TensorRT {trt.__version__} on {device.name} (sm {device.sm})"
