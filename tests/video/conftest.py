"""Fixtures for the video tests: videos made by the real ffmpeg in tmp_path, free ports, process cleanup."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

FFMPEG = shutil.which("ffmpeg")
NEEDS_FFMPEG = pytest.mark.skipif(
    FFMPEG is None, reason="Debian's ffmpeg is not installed (scripts/system-deps.sh installs it as root)"
)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ffmpeg_encoders() -> str:
    """The output of ``ffmpeg -encoders`` ('' without ffmpeg)."""
    if FFMPEG is None:
        return ""
    return subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout


def make_video(
    path: Path,
    codec: str,
    size: tuple[int, int] = (320, 240),
    frames: int = 24,
    rate: str = "30000/1001",
    pix_fmt: str = "yuv420p",
    extra: tuple[str, ...] = (),
) -> Path:
    """Encode ffmpeg's moving test pattern (``testsrc`` keeps odd sizes exactly) into ``path``."""
    if FFMPEG is None:
        pytest.skip("Debian's ffmpeg is not installed")
    w, h = size
    if codec.startswith("libvpx"):
        extra = ("-deadline", "realtime", "-cpu-used", "8", *extra)  # libvpx's default pace takes seconds
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={w}x{h}:rate={rate}",
        "-frames:v",
        str(frames),
        "-c:v",
        codec,
        "-pix_fmt",
        pix_fmt,
        *extra,
        str(path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{r.stderr}")
    return path


@pytest.fixture()
def procs() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start processes with ``procs(cmd)``; every one is terminated (then killed) when the test ends."""
    started: list[subprocess.Popen] = []

    def start(cmd: list[str], **kw: object) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)  # a full, unread pipe would stall ffmpeg
        p = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
        started.append(p)
        return p

    yield start
    for p in started:
        stop_process(p)


def stop_process(p: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate ``p`` and wait; kill it if it does not exit in ``timeout`` seconds."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)
