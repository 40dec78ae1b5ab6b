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


def _serve(tmp_path: Path, procs: Callable[..., subprocess.Popen]) -> tuple[int, list[str]]:
    """rtsp-server-perl on 127.0.0.1 and the ffmpeg command that publishes a looped 320x240 25 fps clip to it;
    returns (the port clients read rtsp://127.0.0.1:PORT/live from, the publish command)."""
    video = make_video(
        tmp_path / "in.mp4", "libx264", size=(320, 240), frames=50, rate="25", extra=("-g", "5", "-tune", "zerolatency")
    )  # keyframes every 0.2 s: quick resume
    client_port, source_port, rtp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - the server writes to it until the test ends
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
    return client_port, publish


# Short timeouts so the cut is noticed in seconds; the first open retries while ffmpeg announces.
POLICY = ReconnectPolicy(
    open_attempts=20, initial_delay_s=0.25, max_delay_s=1.0, open_timeout_s=3, read_timeout_s=1.0, give_up_after_s=30
)


def test_rtsp_stream_reconnects_when_the_publisher_comes_back(
    tmp_path: Path, procs: Callable[..., subprocess.Popen]
) -> None:
    client_port, publish = _serve(tmp_path, procs)
    publisher = procs(publish)

    src = open_source(f"rtsp://127.0.0.1:{client_port}/live", reconnect=POLICY)
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
    assert reader.error is None, reader.error
    assert not reader.is_alive()
    assert reader.indexes == list(range(len(reader.indexes)))  # one numbering across the reconnect
    assert min(reader.means) > 10  # decoded pictures, not blank frames


def test_a_cut_rtsp_source_affects_only_itself_in_a_multi_source_loop(
    tmp_path: Path, procs: Callable[..., subprocess.Popen]
) -> None:
    """Issue 24: the RTSP stream and a synthetic camera in one batched loop; while the stream is cut and
    reconnecting, the camera's frames keep flowing at its rate; the stream comes back in the same loop, and each
    source's frames are numbered on their own."""
    from edge_app.frames.labellers import make_labeller
    from edge_app.frames.pipeline import Pipeline, PipelineConfig
    from tests.frames.fakes import FakeEngine, RecordingSink

    client_port, publish = _serve(tmp_path, procs)
    publisher = procs(publish)
    rtsp = open_source(f"rtsp://127.0.0.1:{client_port}/live", reconnect=POLICY)
    camera = open_source("synthetic?seed=3", width=320, height=240, fps=25)
    own = [RecordingSink(), RecordingSink()]
    p = Pipeline(
        make_labeller(FakeEngine()), [rtsp, camera], [], PipelineConfig(batch=2), source_sinks=[[s] for s in own]
    )
    runner = threading.Thread(target=p.run, daemon=True)
    runner.start()
    try:
        _wait_for(lambda: len(own[0].indices) >= 15 and len(own[1].indices) >= 15, 20, "frames from both sources")
        stop_process(publisher)  # the stream is cut mid-run
        _wait_for(lambda: rtsp.status == "reconnecting", 20, "status 'reconnecting'")
        cut_rtsp, cut_cam, t0 = len(own[0].indices), len(own[1].indices), time.monotonic()
        time.sleep(2.0)
        during = (len(own[1].indices) - cut_cam) / (time.monotonic() - t0)
        assert len(own[0].indices) - cut_rtsp <= 2  # nothing new from the cut stream (a frame in flight at most)
        assert during >= 15, f"the camera fell to {during:.1f} fps while the stream reconnected"  # 25 fps source
        procs(publish)  # the publisher comes back on the same path
        _wait_for(lambda: len(own[0].indices) >= cut_rtsp + 15, 30, "15 frames after the publisher restarted")
    finally:
        p.stop()
        runner.join(timeout=20)
    assert not runner.is_alive() and rtsp.reconnects >= 1
    for sink in own:  # each source's own numbering, every frame read written once, in order
        assert sink.indices == sorted(set(sink.indices))
    assert [r.source_id for r in own[0].results[:3]] == [0, 0, 0]
    assert {r.source_id for r in own[1].results} == {1}
