"""The machine a benchmark ran on: CPU, cores, GPU, OS, library versions and each backend's thread count.

Backend versions and thread counts come from the backend descriptors (``versions``, ``threads``), so a new
backend shows up in every report without an edit here.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping

from edge_app.runtime.registry import backends, installed_version

# Libraries that are not backends but change the numbers (decode, host-side pre/postprocessing); first
# installed distribution wins.
OTHER_LIBS = {
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
    "numpy": ("numpy",),
}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The CUDA GPU PyTorch sees, or None (no torch, no CUDA build, or no GPU)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def library_versions() -> dict[str, str | None]:
    """Installed version of every backend's runtime (registry order) and of OpenCV and NumPy; None if absent."""
    out = {b.name: b.version() for b in backends()}
    out.update({name: installed_version(dists) for name, dists in OTHER_LIBS.items()})
    return out


def machine_info() -> dict[str, Any]:
    """CPU model and cores, GPU (or None), OS and library versions: what a reader needs to compare numbers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "gpu": gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(),
    }


def machine_line(m: Mapping[str, Any]) -> str:
    """One line stating the machine, e.g. for the top of the table."""
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return f"machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; {vers}"


def thread_counts(asked: int | None) -> dict[str, int | None]:
    """CPU threads each backend that takes a count ran with when ``asked`` (bench's ``threads``) was given.

    Numbers on 2 cores depend on them, so every report states them; GPU-only backends take no count.
    """
    return {b.name: b.threads(asked) for b in backends() if b.threads is not None}
