"""A real RTSP stream: Debian's rtsp-server-perl on 127.0.0.1, fed by ffmpeg, read by open_source; the
publisher is stopped mid-run and restarted, and the source must report "reconnecting" and then resume."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from edge_app.video.mjpeg import MjpegSink
from edge_app.video.sources import ReconnectPolicy, Source, open_source
from tests.video.conftest import FFMPEG, free_port, make_video, stop_process

SERVER = shutil.which("rtsp-server-perl")

pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.skipif(
        FFMPEG is None or SERVER is None,
        reason="needs Debian's ffmpeg and rtsp-server-perl (scripts/system-deps.sh installs them as root)",
    ),
]


def _wait_listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Reader(threading.Thread):
    """Iterates a source on its own thread (as the pipeline's capture thread does) and records frames."""

    def __init__(self, src: Source) -> None:
        super().__init__(daemon=True)
        self.src = src
        self.indexes: list[int] = []
        self.means: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for f in self.src:
                self.indexes.append(f.index)
                self.means.append(float(f.image.mean()))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_rtsp_stream_reconnects_when_the_publisher_comes_back(
    tmp_path: Path, procs: Callable[..., subprocess.Popen]
) -> None:
    video = make_video(
        tmp_path / "in.mp4", "libx264", size=(320, 240), frames=50, rate="25", extra=("-g", "5", "-tune", "zerolatency")
    )  # keyframes every 0.2 s: quick resume
    client_port, source_port, rtp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    log = open(tmp_path / "server.log", "wb")
    procs(
        [
            SERVER,
            "--clientport",
            str(client_port),
            "--serverport",
            str(source_port),
            "--rtp_start_port",
            str(rtp_port),
            "--client_listen_address",
            "127.0.0.1",
            "--source_listen_address",
            "127.0.0.1",
            "--loglevel",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _wait_listening(source_port, 15)
    _wait_listening(client_port, 15)
    publish = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(video),
        "-c",
        "copy",
        "-f",
        "rtsp",
        f"rtsp://127.0.0.1:{source_port}/live",
    ]
    publisher = procs(publish)

    # Short timeouts so the cut is noticed in seconds; the first open retries while ffmpeg announces.
    policy = ReconnectPolicy(
        open_attempts=20,
        initial_delay_s=0.25,
        max_delay_s=1.0,
        open_timeout_s=3,
        read_timeout_s=1.0,
        give_up_after_s=30,
    )
    src = open_source(f"rtsp://127.0.0.1:{client_port}/live", reconnect=policy)
    reader = Reader(src)
    view = MjpegSink("127.0.0.1", 0)  # the browser view reports the source's state while no frames flow
    view.attach_source(src)
    try:
        assert src.live and src.size == (320, 240) and src.frame_count is None
        assert src.fps == 25.0
        reader.start()
        _wait_for(lambda: len(reader.indexes) >= 15, 20, "15 frames from the stream")

        stop_process(publisher)  # the stream is cut mid-run
        _wait_for(lambda: src.status == "reconnecting", 20, "status 'reconnecting'")
        before = len(reader.indexes)
        with urllib.request.urlopen(view.url + "stats", timeout=5) as r:
            assert b'"status": "reconnecting"' in r.read()

        procs(publish)  # the publisher comes back on the same path
        _wait_for(
            lambda: src.reconnects >= 1 and len(reader.indexes) >= before + 15,
            30,
            "15 frames after the publisher restarted",
        )
        assert src.status == "ok"
    finally:
        view.close()
        src.close()
        reader.join(timeout=10)
        log.close()
    assert reader.error is None, reader.error
    assert not reader.is_alive()
    assert reader.indexes == list(range(len(reader.indexes)))  # one numbering across the reconnect
    assert min(reader.means) > 10  # decoded pictures, not blank frames
