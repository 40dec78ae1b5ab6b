"""Fetch a real TensorRT bindings wheel (cached), unpack it and give it stub native libraries.

Used by the contract-test fixture. The result is a folder to put on PYTHONPATH in a subprocess, where
``import tensorrt_bindings`` then loads NVIDIA's real Python module for that version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

STUB_C = Path(__file__).with_name("stub.c")
# The two binding wheels that install from PyPI (FACTS.md): TensorRT 10.x for CUDA 12, 11.x for CUDA 13.
BINDINGS = {"10": ("tensorrt-cu12-bindings", "10.16.1.11"), "11": ("tensorrt-cu13-bindings", "11.4.0.106")}


class Unavailable(Exception):
    """The wheel or a tool to prepare it is not available here; the message is the skip reason."""


def cache_root() -> Path:
    """Download cache outside the repository, reused across runs (override with EDGE_APP_CACHE)."""
    return Path(os.environ.get("EDGE_APP_CACHE") or Path.home() / ".cache" / "edge_app")


def download(name: str, version: str, dest: Path) -> Path:
    """The wheel file for this interpreter, downloaded with pip once."""
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"{name.replace('-', '_')}-{version}-"
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = [p for p in dest.glob(stem + "*.whl") if tag in p.name or "py3" in p.name]
    if found:
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        f"{name}=={version}",
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip download {name}=={version} timed out (package registry unreachable?)") from None
    found = [p for p in dest.glob(stem + "*.whl") if tag in p.name or "py3" in p.name]
    if r.returncode != 0 or not found:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"cannot download {name}=={version} for Python {tag} (registry unreachable?): {tail[0]}")
    return found[0]


def needed_sonames(so: Path, major: str) -> list[str]:
    """The TensorRT library sonames ``so`` links against (readelf/objdump; FACTS.md's names as a fallback)."""
    for tool, args in (("readelf", ["-d"]), ("objdump", ["-p"])):
        if shutil.which(tool):
            out = subprocess.run([tool, *args, str(so)], capture_output=True, text=True).stdout
            names = [
                w.strip("[]")
                for line in out.splitlines()
                if "NEEDED" in line
                for w in line.split()
                if w.strip("[]").startswith("libnv")
            ]
            if names:
                return sorted(set(names))
    return [f"lib{n}.so.{major}" for n in ("nvinfer", "nvonnxparser", "nvinfer_plugin")]


def prepare(major: str) -> Path:
    """A folder holding the real ``tensorrt_bindings`` of TensorRT ``major`` plus stub libraries; cached."""
    name, version = BINDINGS[major]
    root = cache_root() / "trt-wheels"
    site = root / f"{name}-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    if (site / ".ready").is_file():
        return site
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        raise Unavailable("no C compiler (cc/gcc) to build the stub TensorRT libraries; apt-get install gcc")
    wheel = download(name, version, root)
    tmp = root / f".{site.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp)
    so = next(tmp.glob("tensorrt_bindings/tensorrt*.so"), None)
    if so is None:
        raise Unavailable(f"{wheel.name} has no tensorrt_bindings/tensorrt*.so (unexpected wheel layout)")
    for soname in needed_sonames(so, major):
        r = subprocess.run(
            [cc, "-shared", "-fPIC", "-o", str(so.parent / soname), str(STUB_C), f"-Wl,-soname,{soname}"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise Unavailable(f"compiling the stub {soname} failed: {r.stderr.strip()[-300:]}")
    (tmp / ".ready").write_text(f"{name}=={version}\n")
    shutil.rmtree(site, ignore_errors=True)
    os.replace(tmp, site)  # atomic: a concurrent or interrupted run never sees a half-made folder
    return site
