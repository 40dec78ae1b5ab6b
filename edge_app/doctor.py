"""``run.py doctor``: what this machine can run, and a one-line fix for each thing that is missing.

Every check is a small function returning :class:`Check`; probes that touch the system (cuda-python,
OpenCV, /dev/video*, the Jetson release file) are parameters so tests can run the whole report on any
machine. The backends' lines come from their descriptors (:mod:`edge_app.runtime.registry`): whether each
runs here, its version, and the descriptor's fix for *this* machine, which names only what is missing
(never a `pip install` of what is installed, never a pip GPU build on a Jetson). The last line names the
backend ``open_engine(backend="auto")`` would pick, and the GPU line's fallback names the same one.
"""

from __future__ import annotations

import glob
import platform
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from edge_app.runtime.cuda import CudaRuntime, DeviceInfo, cuda_version_str, probe_gpu
from edge_app.runtime.registry import DEVICES, TEGRA_RELEASE, Backend, Host, backends

NO_GPU_FIX = "needs a usable NVIDIA GPU first (see the gpu line)"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` False means something is missing and ``fix`` says what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def jetson_release(tegra_release: Path = TEGRA_RELEASE) -> str | None:
    """The first line of L4T's release file (e.g. ``# R36 (release), REVISION: 4.0``), or None off a Jetson."""
    try:
        lines = tegra_release.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return lines[0].lstrip("# ").strip() if lines else "L4T"


def check_python(tegra_release: Path = TEGRA_RELEASE) -> Check:
    """Interpreter and platform, and the L4T release on a Jetson (always ok; context for bug reports)."""
    l4t = jetson_release(tegra_release)
    return Check(
        "python",
        True,
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()} ({sys.executable})"
        + (f"; Jetson, L4T {l4t}" if l4t else ""),
    )


def _cpu_fallback(cpu_pick: str | None) -> str:
    """The GPU line's 'or run on the CPU' clause, naming what auto picks there (not a backend it would not)."""
    if cpu_pick:
        return f"without one, edge_app runs on the CPU with {cpu_pick} (what backend auto picks here)"
    return "without one, edge_app needs a CPU backend (see the backend lines)"


def check_gpu(probe: Callable[[], tuple[DeviceInfo | None, str]] = probe_gpu, cpu_pick: str | None = None) -> Check:
    """GPU, compute capability and driver through cuda-python; ``cpu_pick``: the CPU backend auto would use."""
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
                f"pip install cuda-bindings (then re-run doctor); {_cpu_fallback(cpu_pick)}",
            )
        return Check(
            "gpu",
            False,
            why.split(";")[0],
            f"install the NVIDIA driver (nvidia-smi must work); {_cpu_fallback(cpu_pick)}",
        )
    gib = device.total_memory / (1 << 30)
    return Check(
        "gpu",
        True,
        f"{device.name}, compute capability {device.compute_capability[0]}.{device.compute_capability[1]}, "
        f"{gib:.1f} GiB{' (integrated, Jetson)' if device.integrated else ''}; driver supports CUDA "
        f"{cuda_version_str(device.driver_version)}, cuda-python runtime {cuda_version_str(device.runtime_version)}",
    )


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


def _backend_line(b: Backend, device: str, host: Host, gpu_ok: bool) -> Check:
    """One backend on one device: its version and state, and (when it cannot run) the fix for this machine."""
    ok, why = b.available(device)
    version = b.version()
    # A reason's first clause is the state; what follows a ';' is a fix, and the fix line below is this machine's.
    detail = why if ok else why.split(";")[0]
    if version and version not in detail:  # the installed version, also when the backend cannot run
        detail = f"{b.name} {version}" + (f": {detail}" if ok else f" installed; {detail}")
    if ok:
        return Check(f"backend {b.name} {device}", True, detail)
    # Without a GPU no GPU runtime is worth installing: the one fix is the GPU line's.
    fix = NO_GPU_FIX if device == "cuda" and not gpu_ok else b.fix(device, why, host)
    return Check(f"backend {b.name} {device}", False, detail, fix)


def check_backends(devices: tuple[str, ...] = DEVICES, host: Host | None = None, gpu_ok: bool = True) -> list[Check]:
    """One line per backend x device from the backend registry: can it run here, and what is missing if not.

    ``host``: this machine as the fix hints see it (detected when None); ``gpu_ok``: whether the GPU line passed.
    """
    host = host or Host.detect()
    return [_backend_line(b, dev, host, gpu_ok) for b in backends() for dev in devices if dev in b.devices]


def auto_pick(checks: list[Check], gpu_ok: bool) -> tuple[str, str] | None:
    """(backend, device) that ``open_engine(backend='auto')`` tries first here, from the backend lines.

    Devices in the automatic order, GPU backends only when the GPU line passed (``open_engine`` skips them
    without a GPU), backends in registry order within a device; None when nothing can run.
    """
    for dev in DEVICES:
        if dev == "cuda" and not gpu_ok:
            continue
        for c in checks:
            parts = c.name.split()
            if len(parts) == 3 and parts[0] == "backend" and parts[2] == dev and c.ok:
                return parts[1], dev
    return None


def run_checks(
    cuda: CudaRuntime | None = None, video_pattern: str = "/dev/video*", tegra_release: Path = TEGRA_RELEASE
) -> list[Check]:
    """Every check, in report order; ``tegra_release`` is the file whose presence marks a Jetson."""
    host = Host.detect(tegra_release)
    device, why = probe_gpu(cuda)
    gpu_ok = device is not None
    lines = check_backends(DEVICES, host, gpu_ok)
    cpu = auto_pick([c for c in lines if c.name.endswith(" cpu")], gpu_ok=False)
    return [
        check_python(tegra_release),
        check_gpu(lambda: (device, why), cpu[0] if cpu else None),
        *check_opencv(),
        check_video_devices(video_pattern),
        *lines,
    ]


def summary(checks: list[Check]) -> str:
    """Which backend ``open_engine(backend='auto')`` would try first: the first available one in registry order.

    GPU backends count only when the GPU check passed (as ``open_engine`` skips them without a GPU). With
    none, the fix of the first CPU backend says what to install.
    """
    have = {c.name: c.ok for c in checks}
    pick = auto_pick(checks, bool(have.get("gpu")))
    if pick is not None:
        name, dev = pick
        return f"auto backend here: {name} on {'the GPU' if dev == 'cuda' else 'the CPU'}"
    fix = next((c.fix for c in checks if c.name.startswith("backend ") and c.name.endswith(" cpu") and c.fix), "")
    return "auto backend here: none" + (f" ({fix})" if fix else "")


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
