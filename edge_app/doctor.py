"""``run.py doctor``: what this machine can run, and a one-line fix for each thing that is missing.

Every check is a small function returning :class:`Check`; probes that touch the system (cuda-python,
TensorRT, OpenCV, /dev/video*) are parameters so tests can run the whole report on any machine.
"""

from __future__ import annotations

import glob
import platform
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

from edge_app.runtime.cuda import CudaRuntime, DeviceInfo, cuda_version_str, probe_gpu


@dataclass
class Check:
    """One line of the report: ``ok`` False means something is missing and ``fix`` says what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_python() -> Check:
    """Interpreter and platform (always ok; context for bug reports)."""
    return Check(
        "python",
        True,
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()} ({sys.executable})",
    )


def check_gpu(probe: Callable[[], tuple[DeviceInfo | None, str]] = probe_gpu) -> Check:
    """GPU, compute capability and driver through cuda-python."""
    device, why = probe()
    if device is None:
        if "cuda-bindings needs" in why:  # a driver older than the installed cuda-bindings: the fix is the pip line
            said, fix = why.split(": pip", 1)
            return Check("gpu", False, said, "pip" + fix)
        if "not installed" in why:
            return Check(
                "gpu",
                False,
                why.split(";")[0],
                "pip install cuda-bindings (then re-run doctor); without an NVIDIA GPU "
                "edge_app runs on ONNX Runtime CPU",
            )
        return Check(
            "gpu",
            False,
            why.split(";")[0],
            "install the NVIDIA driver (nvidia-smi must work), or use the CPU: --backend onnxruntime",
        )
    gib = device.total_memory / (1 << 30)
    return Check(
        "gpu",
        True,
        f"{device.name}, compute capability {device.compute_capability[0]}.{device.compute_capability[1]}, "
        f"{gib:.1f} GiB{' (integrated, Jetson)' if device.integrated else ''}; driver supports CUDA "
        f"{cuda_version_str(device.driver_version)}, cuda-python runtime {cuda_version_str(device.runtime_version)}",
    )


def check_tensorrt(load: Callable[[], Any] | None = None) -> Check:
    """TensorRT version, or why it cannot be imported."""
    from edge_app.runtime.tensorrt.builder import TRT_FIX, load_trt

    try:
        trt = (load or load_trt)()
    except ImportError as e:
        return Check("tensorrt", False, str(e).split(";")[0], TRT_FIX)
    version = str(getattr(trt, "__version__", "?"))
    if not re.match(r"1\d\.", version):
        return Check(
            "tensorrt", False, f"TensorRT {version} is too old", "install TensorRT 10.x or 11.x (JetPack 6 or newer)"
        )
    return Check("tensorrt", True, f"TensorRT {version} ({getattr(trt, '__file__', '')})")


def check_onnxruntime() -> Check:
    """ONNX Runtime version and execution providers."""
    try:
        import onnxruntime as ort
    except ImportError:
        return Check(
            "onnxruntime",
            False,
            "onnxruntime is not installed",
            "pip install onnxruntime (CPU) or onnxruntime-gpu (NVIDIA)",
        )
    provs = list(ort.get_available_providers())
    gpu = [p for p in provs if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    detail = f"onnxruntime {ort.__version__}, providers: {', '.join(provs)}"
    if not gpu:
        return Check(
            "onnxruntime",
            True,
            detail + " (CPU only)",
            "for GPU inference without native TensorRT: pip uninstall onnxruntime && pip install onnxruntime-gpu",
        )
    return Check("onnxruntime", True, detail)


def parse_opencv_build(info: str) -> dict[str, str]:
    """FFmpeg / GStreamer / GUI lines of ``cv2.getBuildInformation()`` -> {'ffmpeg': 'YES ...', ...}."""
    out: dict[str, str] = {}
    for key, pattern in (
        ("ffmpeg", r"^\s*FFMPEG:\s*(.+)$"),
        ("gstreamer", r"^\s*GStreamer:\s*(.+)$"),
        ("gui", r"^\s*GUI:\s*(.+)$"),
    ):
        m = re.search(pattern, info, re.MULTILINE)
        out[key] = m.group(1).strip() if m else "NO"
    return out


def check_opencv(build_info: Callable[[], tuple[str, str]] | None = None) -> list[Check]:
    """OpenCV version and whether it can decode files (FFmpeg), open GStreamer pipelines, show windows."""
    if build_info is None:
        try:
            import cv2
        except ImportError as e:
            return [Check("opencv", False, f"OpenCV does not import ({e})", "pip install opencv-python")]
        version, info = cv2.__version__, cv2.getBuildInformation()
    else:
        version, info = build_info()
    b = parse_opencv_build(info)
    yes = {k: v.upper().startswith("YES") or (k == "gui" and v.upper() not in ("NO", "NONE")) for k, v in b.items()}
    return [
        Check("opencv", True, f"OpenCV {version}"),
        Check(
            "opencv ffmpeg",
            yes["ffmpeg"],
            f"FFmpeg: {b['ffmpeg']}",
            ""
            if yes["ffmpeg"]
            else "pip install opencv-python (its wheels include FFmpeg) to read and write video files",
        ),
        Check(
            "opencv gstreamer",
            yes["gstreamer"],
            f"GStreamer: {b['gstreamer']}",
            ""
            if yes["gstreamer"]
            else "PyPI OpenCV wheels have no GStreamer; for gst pipelines (Jetson CSI cameras) use the "
            "distribution's python3-opencv or JetPack's OpenCV, or read cameras by /dev/videoN instead",
        ),
        Check(
            "opencv gui",
            yes["gui"],
            f"GUI: {b['gui']}",
            ""
            if yes["gui"]
            else "no window support (headless build): pip install opencv-python instead of "
            "opencv-python-headless, or watch over MJPEG/HTTP",
        ),
    ]


def check_video_devices(pattern: str = "/dev/video*") -> Check:
    """Camera device nodes (V4L2)."""
    devs = sorted(glob.glob(pattern))
    if not devs:
        return Check(
            "cameras",
            False,
            f"no video devices ({pattern})",
            "plug in a USB/CSI camera (check `ls /dev/video*`; in Docker pass --device /dev/video0), or use a file, "
            "rtsp:// URL or the synthetic source",
        )
    return Check("cameras", True, ", ".join(devs))


def check_torch() -> Check:
    """PyTorch version and whether it sees CUDA (the reference backend and training)."""
    try:
        import torch
    except ImportError:
        return Check("pytorch", False, "PyTorch is not installed", "pip install torch (needed for train/export)")
    cuda = torch.cuda.is_available()
    return Check(
        "pytorch",
        True,
        f"torch {torch.__version__}, CUDA {'available' if cuda else 'not available (CPU build or no GPU)'}",
    )


def check_backends(devices: tuple[str, ...] = ("cuda", "cpu")) -> list[Check]:
    """One line per backend x device from the backend registry: can it run here, and how to get it if not."""
    from edge_app.runtime import backends

    out = []
    for b in backends():
        for dev in (d for d in devices if d in b.devices):
            ok, why = b.available(dev)
            out.append(Check(f"backend {b.name} {dev}", ok, why, "" if ok else b.install_hint))
    return out


def run_checks(cuda: CudaRuntime | None = None, video_pattern: str = "/dev/video*") -> list[Check]:
    """Every check, in report order."""
    return [
        check_python(),
        check_gpu(lambda: probe_gpu(cuda)),
        check_tensorrt(),
        check_onnxruntime(),
        *check_opencv(),
        check_video_devices(video_pattern),
        check_torch(),
        *check_backends(),
    ]


def summary(checks: list[Check]) -> str:
    """Which backend ``open_engine(backend='auto')`` would try first: the first available one in registry order.

    GPU backends count only when the GPU check passed (as ``open_engine`` skips them without a GPU).
    """
    have = {c.name: c.ok for c in checks}
    for dev in ("cuda", "cpu"):
        if dev == "cuda" and not have.get("gpu"):
            continue
        for c in checks:
            if c.name.startswith("backend ") and c.name.endswith(f" {dev}") and c.ok:
                return f"auto backend here: {c.name.split()[1]} on {'the GPU' if dev == 'cuda' else 'the CPU'}"
    return "auto backend here: none (install onnxruntime or torch)"


def format_report(checks: list[Check]) -> str:
    """Aligned text: '[ok]' / '[--]' marker, name, detail, and an indented 'fix:' line where needed."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"[{'ok' if c.ok else '--'}] {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"     {'':<{width}}  fix: {c.fix}")
    lines.append(summary(checks))
    return "\n".join(lines)


def as_json(checks: list[Check]) -> dict[str, Any]:
    """The report as a JSON-able dict (for bug reports and scripts)."""
    return {"checks": [asdict(c) for c in checks], "summary": summary(checks)}
