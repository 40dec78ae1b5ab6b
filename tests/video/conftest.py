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


def make_vfr_video(path: Path, times: list[float], size: tuple[int, int] = (96, 64)) -> Path:
    """An H.264 file whose frames sit at ``times`` (seconds; uneven gaps = variable frame rate), written with
    PyAV timestamps in milliseconds. Each frame has its own brightness, so frames can be told apart."""
    from fractions import Fraction

    import numpy as np

    av = pytest.importorskip("av")
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = tb
        s.codec_context.time_base = tb
        for i, t in enumerate(times):
            img = np.full((size[1], size[0], 3), (i * 37) % 256, np.uint8)
            img[:, : size[0] // 4] = 255 - img[:, : size[0] // 4]
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts, f.time_base = round(t * 1000), tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def frame_times(path: Path) -> list[float]:
    """Presentation times (s, from the first frame) of every frame of ``path``, read with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = s.start_time or 0
        return [float((f.pts - start) * f.time_base) for f in c.decode(s)]
