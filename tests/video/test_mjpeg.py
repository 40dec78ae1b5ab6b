"""The MJPEG HTTP view against real sockets: the page, /stats, /snapshot.jpg, the multipart stream,
port conflicts, localhost by default, and a clean stop."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator

import cv2
import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.video.mjpeg import BOUNDARY, MjpegSink, parse_serve


def _frame(i: int) -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, :] = (40, 40, 40)
    img[20:100, 20 + i % 50 : 70 + i % 50] = (0, 0, 255)
    return img


def _get(url: str, timeout: float = 5) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture()
def sink() -> Iterator[MjpegSink]:
    s = MjpegSink("127.0.0.1", 0, title="test view")
    yield s
    s.close()


class Producer(threading.Thread):
    """Writes frames at ~50 fps until stopped, as the pipeline's writer thread would."""

    def __init__(self, sink: MjpegSink) -> None:
        super().__init__(daemon=True)
        self.sink = sink
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.sink.write(_frame(i), None)
            self.sink.update_stats({"frame": i, "fps": 50.0, "status": "ok"})
            i += 1
            time.sleep(0.02)


@pytest.mark.parametrize(
    "spec, want",
    [
        ("8080", ("127.0.0.1", 8080)),
        ("127.0.0.1:8081", ("127.0.0.1", 8081)),
        (":9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_serve(spec: str, want: tuple[str, int]) -> None:
    assert parse_serve(spec) == want


@pytest.mark.parametrize(
    "spec, match",
    [
        ("127.0.0.1:http", r"--serve '127.0.0.1:http' is not HOST:PORT; use e.g. --serve 127.0.0.1:8080"),
        ("127.0.0.1:70000", r"--serve port 70000 is out of range"),
    ],
)
def test_parse_serve_bad(spec: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        parse_serve(spec)


def test_page_stats_and_snapshot(sink: MjpegSink) -> None:
    assert sink.server.host == "127.0.0.1" and sink.url == f"http://127.0.0.1:{sink.port}/"
    code, ctype, body = _get(sink.url)
    assert code == 200 and ctype.startswith("text/html")
    page = body.decode()
    assert "<title>test view</title>" in page and '"/stream"' in page and '"/stats"' in page
    assert _get(sink.url + "snapshot.jpg")[0] == 503  # no frame yet
    sink.write(_frame(3), None)
    sink.update_stats({"fps": 29.97, "dropped": 4, "backend": "onnxruntime"})
    code, ctype, jpeg = _get(sink.url + "snapshot.jpg")
    assert code == 200 and ctype == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3) and np.abs(img.astype(int) - _frame(3).astype(int)).mean() < 6
    code, ctype, body = _get(sink.url + "stats")
    stats = json.loads(body)
    assert ctype == "application/json"
    assert stats["fps"] == 29.97 and stats["dropped"] == 4 and stats["backend"] == "onnxruntime"
    assert stats["server"]["frames_published"] == 1
    assert _get(sink.url + "nope")[0] == 404


def _read_parts(port: int, n: int, timeout: float = 10) -> list[bytes]:
    """Read ``n`` JPEG parts from /stream with a raw socket, as a browser's multipart parser would."""
    parts: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        status = f.readline()
        assert b" 200 " in status
        headers = {}
        while line := f.readline().strip():
            k, _, v = line.decode().partition(":")
            headers[k.lower()] = v.strip()
        assert headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        while len(parts) < n:
            assert f.readline().strip() == f"--{BOUNDARY}".encode()
            part = {}
            while line := f.readline().strip():
                k, _, v = line.decode().partition(":")
                part[k.lower()] = v.strip()
            assert part["content-type"] == "image/jpeg"
            parts.append(f.read(int(part["content-length"])))
            assert f.readline() == b"\r\n"
    return parts


def test_stream_delivers_successive_frames_and_counts_the_client(sink: MjpegSink) -> None:
    prod = Producer(sink)
    prod.start()
    try:
        parts = _read_parts(sink.port, 5)
    finally:
        prod.stop.set()
        prod.join(timeout=5)
    imgs = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(i is not None and i.shape == (120, 160, 3) for i in imgs)
    assert len({p for p in parts}) == 5  # each part is a newer frame, not a repeat
    deadline = time.monotonic() + 5
    while sink.server.clients and time.monotonic() < deadline:  # the handler notices the closed socket
        sink.write(_frame(0), None)
        time.sleep(0.02)
    s = sink.server.stats_snapshot()["server"]
    assert s["clients_served"] == 1 and s["frames_sent"] >= 5 and s["clients"] == 0


def test_port_in_use_is_a_user_error(sink: MjpegSink) -> None:
    with pytest.raises(
        UserError, match=rf"port {sink.port} on 127.0.0.1 is already in use; .* --serve 127.0.0.1:{sink.port + 1}"
    ):
        MjpegSink("127.0.0.1", sink.port)


def test_bad_address_and_quality() -> None:
    with pytest.raises(UserError, match=r"cannot listen on 203.0.113.7:0 .*use 127.0.0.1"):
        MjpegSink("203.0.113.7", 0)  # TEST-NET-3: never an address of this machine
    with pytest.raises(UserError, match=r"JPEG quality 0 is out of range"):
        MjpegSink(port=0, quality=0)


def test_close_stops_the_thread_ends_streams_and_frees_the_port() -> None:
    sink = MjpegSink("127.0.0.1", 0)
    port = sink.port
    sink.write(_frame(0), None)
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.recv(4096)
    t0 = time.monotonic()
    sink.close()
    sink.close()  # idempotent
    assert time.monotonic() - t0 < 5
    assert not sink.server._thread.is_alive()
    conn.settimeout(5)
    while conn.recv(65536):  # the stream ends (EOF) instead of hanging
        pass
    conn.close()
    again = MjpegSink("127.0.0.1", port)  # the port is free again
    again.close()
    sink.write(_frame(1), None)  # writing after close is harmless


def test_attached_source_status_is_reported_live(sink: MjpegSink) -> None:
    class Src:  # the three attributes the view reads from any Source
        status, reconnects, decode_errors = "ok", 0, 0

    src = Src()
    sink.attach_source(src)
    sink.update_stats({"fps": 25.0})
    src.status, src.reconnects = "reconnecting", 2  # no frame and no update_stats since
    stats = json.loads(_get(sink.url + "stats")[2])
    assert stats["status"] == "reconnecting" and stats["reconnects"] == 2 and stats["fps"] == 25.0
    assert 'state.textContent = "reconnecting"' in _get(sink.url)[2].decode()
