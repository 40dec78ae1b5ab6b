"""The browser view: a small HTTP server with the live annotated stream as MJPEG and the current stats.

Routes: ``/`` a page showing the stream and a stats table, ``/stream`` ``multipart/x-mixed-replace`` MJPEG,
``/stats`` JSON, ``/snapshot.jpg`` the latest frame. With several sources ``/stream`` is the tiled grid of all
of them and ``/stream/<i>`` (``/snapshot/<i>.jpg``) source ``i`` alone. Each client always gets the newest frame
(a slow client skips frames instead of building a queue). Standard library only, so it runs on a bare Jetson.

The view shows cameras, so it is not open to a network by accident: bound to an address other than loopback it
requires a token (given, or generated and printed at start) on every route, as ``?token=`` or an
``Authorization: Bearer`` header, compared in constant time; a wrong or missing token gets 401 and no frame.
On loopback it stays open unless a token is given.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.video.base import SinkBase
from edge_app.video.grid import GridSink
from edge_app.video.mjpeg_page import PAGE

log = logging.getLogger("edge_app.video")

BOUNDARY = "frame"
IDLE_ENCODE_S = 1.0  # with nobody watching, still refresh the snapshot this often (cheap, keeps it current)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_CHANNEL_PATH = re.compile(r"^/(stream|snapshot)/(\d+)(\.jpg)?$")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def parse_serve(spec: str) -> tuple[str, int]:
    """``--serve`` value -> (host, port): ``8080``, ``127.0.0.1:8080``, ``0.0.0.0:8080``, ``[::1]:8080``."""
    s = str(spec).strip()
    host = "127.0.0.1"  # localhost unless the user names an address: the stream is not for the whole LAN
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif ":" in s:
        h, _, port_s = s.rpartition(":")
        host = h or host
    else:
        port_s = s
    try:
        port = int(port_s)
    except ValueError:
        raise UserError(f"--serve '{spec}' is not HOST:PORT; use e.g. --serve 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise UserError(f"--serve port {port} is out of range; use a port between 1024 and 65535, e.g. 8080")
    return host, port


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung browser tab must never keep the program alive

    def __init__(self, addr: tuple[str, int], hub: MjpegServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.hub = hub
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and the stream ends by closing

    def log_message(self, fmt: str, *args: Any) -> None:
        """Request lines go to the debug log, not stderr (a browser polls /stats every second)."""
        log.debug("mjpeg %s: " + fmt, self.client_address[0], *args)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self, hub: MjpegServer) -> bool:
        """Whether the request carries the view's token (always, when the view has none)."""
        if hub.token is None:
            return True
        given = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        else:
            query = self.path.partition("?")[2]
            for part in query.split("&"):
                k, _, v = part.partition("=")
                if k == "token":
                    given = v
        return hmac.compare_digest(given.encode(), hub.token.encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        """Route / , /stats, /snapshot.jpg, /stream and, per source, /stream/<i> and /snapshot/<i>.jpg."""
        hub = self.server.hub
        path = self.path.split("?", 1)[0]
        try:
            if not self._authorised(hub):
                self._send(401, "text/plain", b"a token is needed: open the URL printed at start (?token=...)\n")
                return
            m = _CHANNEL_PATH.match(path)
            if m and int(m.group(2)) >= hub.channels - 1:
                self._send(404, "text/plain", f"no source {m.group(2)}: sources are 0..{hub.channels - 2}\n".encode())
            elif m and m.group(1) == "stream":
                self._stream(hub, int(m.group(2)) + 1)
            elif m:
                jpeg = hub.latest(int(m.group(2)) + 1)[1]
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)
            elif path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.format(title=hub.title).encode())
            elif path == "/stats":
                self._send(200, "application/json", json.dumps(hub.stats_snapshot()).encode())
            elif path == "/snapshot.jpg":
                jpeg = hub.latest()[1]
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)
            elif path == "/stream":
                self._stream(hub)
            else:
                self._send(404, "text/plain", b"not found: try / , /stream or /stats\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the browser went away

    def _stream(self, hub: MjpegServer, channel: int = 0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        hub.client_joined(channel)
        sent = 0
        seq = -1
        try:
            while not hub.stopping.is_set():
                seq, jpeg = hub.wait_newer(seq, timeout=0.5, channel=channel)
                if jpeg is None:
                    continue
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                )
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
                sent += 1
                hub.frame_sent(first=sent == 1)
        finally:
            hub.client_left(channel)


class MjpegServer:
    """The HTTP server thread and the latest JPEG of each channel it hands to every client.

    Channel 0 is the main view (``/stream``); with ``sources`` > 1, channel ``i + 1`` is source ``i`` alone.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        title: str = "edge_app",
        token: str | None = None,
        sources: int = 1,
    ) -> None:
        if token is not None and not re.fullmatch(r"[A-Za-z0-9_.~-]{8,128}", token):
            raise UserError(
                "--token must be 8 to 128 letters, digits or -_.~ (it goes into a URL); leave it out to get one"
            )
        self.title = title
        # Off loopback the view needs a token: given, or generated here (and printed with the URL).
        self.token = token if token is not None or is_loopback(host) else secrets.token_urlsafe(18)
        self.channels = 1 + (sources if sources > 1 else 0)
        self.stopping = threading.Event()
        self._cond = threading.Condition()
        self._seq = [0] * self.channels
        self._jpeg: list[bytes | None] = [None] * self.channels
        self._published_at = [0.0] * self.channels
        self._clients = [0] * self.channels
        self._stats: dict[str, Any] = {}
        self.source: Any = None  # a Source whose status /stats reports live (see MjpegSink.attach_source)
        self.clients_total = 0
        self.clients_served = 0  # /stream clients that received at least one frame
        self.frames_sent = 0
        self.frames_published = 0
        try:
            self.httpd = _Server((host, port), self)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use; stop the program using it or pick "
                    f"another port, e.g. --serve {host}:{port + 1}"
                ) from None
            if e.errno == errno.EACCES:
                raise UserError(
                    f"port {port} needs root to listen on; use a port above 1023, e.g. --serve {host}:8080"
                ) from None
            raise UserError(
                f"cannot listen on {host}:{port} ({e.strerror or e}); use 127.0.0.1 or an address of this machine"
            ) from None
        self.host, self.port = self.httpd.server_address[:2]
        if not is_loopback(str(host)):
            log.warning("the MJPEG view on %s:%d is reachable from the network; it needs its token", host, self.port)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name=f"mjpeg:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def clients(self) -> int:
        """Connected /stream clients now, all channels."""
        return sum(self._clients)

    def url_for(self, path: str = "") -> str:
        """The address of ``path`` (e.g. ``stream/1``), with the token when the view has one."""
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/{path}" + (f"?token={self.token}" if self.token else "")

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8080/`` (``?token=...`` when it needs one)."""
        return self.url_for("")

    # ---------------------------------------------------------------------------------------- producer side
    def wants_frame(self, channel: int = 0) -> bool:
        """Whether encoding a frame now is worth it: someone watches, or the snapshot is getting old."""
        return (
            self._clients[channel] > 0
            or self._jpeg[channel] is None
            or time.monotonic() - self._published_at[channel] > IDLE_ENCODE_S
        )

    def publish(self, jpeg: bytes, channel: int = 0) -> None:
        """Make ``jpeg`` the latest frame of ``channel`` and wake its stream clients."""
        with self._cond:
            self._jpeg[channel] = jpeg
            self._seq[channel] += 1
            self.frames_published += 1
            self._published_at[channel] = time.monotonic()
            self._cond.notify_all()

    def set_stats(self, stats: dict[str, Any]) -> None:
        """Replace the stats shown on the page (HUD numbers: fps, latency, drops, backend...)."""
        with self._cond:
            self._stats = dict(stats)

    # ---------------------------------------------------------------------------------------- client side
    def latest(self, channel: int = 0) -> tuple[int, bytes | None]:
        """(sequence number, JPEG) of the newest frame of ``channel``."""
        with self._cond:
            return self._seq[channel], self._jpeg[channel]

    def wait_newer(self, seq: int, timeout: float, channel: int = 0) -> tuple[int, bytes | None]:
        """Block until a frame of ``channel`` newer than ``seq`` exists (or ``timeout``); None when there is none."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq[channel] != seq or self.stopping.is_set(), timeout)
            cur = self._seq[channel]
            return (cur, self._jpeg[channel]) if cur != seq else (seq, None)

    def client_joined(self, channel: int = 0) -> None:
        """Count a /stream client that connected."""
        with self._cond:
            self._clients[channel] += 1
            self.clients_total += 1

    def client_left(self, channel: int = 0) -> None:
        """Count a /stream client that went away."""
        with self._cond:
            self._clients[channel] -= 1

    def frame_sent(self, first: bool) -> None:
        """Count a frame sent; ``first`` marks a client's first frame."""
        with self._cond:
            self.frames_sent += 1
            self.clients_served += int(first)

    def stats_snapshot(self) -> dict[str, Any]:
        """The stats set by the pipeline, the attached source's live state, the server's own counters."""
        src = self.source
        with self._cond:
            live = (
                {}
                if src is None
                else {  # read now: no frames flow while a stream is reconnecting
                    "status": getattr(src, "status", "ok"),
                    "reconnects": getattr(src, "reconnects", 0),
                    "decode_errors": getattr(src, "decode_errors", 0),
                }
            )
            return {
                **self._stats,
                **live,
                "server": {
                    "clients": self.clients,
                    "clients_total": self.clients_total,
                    "clients_served": self.clients_served,
                    "frames_published": self.frames_published,
                    "frames_sent": self.frames_sent,
                },
            }

    def close(self) -> None:
        """Stop streaming, stop the server thread and free the port; safe to call twice."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        with self._cond:
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class MjpegSink(SinkBase):
    """Sink that serves the annotated frames at ``http://host:port/`` (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        title: str = "edge_app",
        quality: int = 80,
        token: str | None = None,
        sources: int = 1,
        fps: float = 30.0,
    ) -> None:
        if not 1 <= quality <= 100:
            raise UserError(f"JPEG quality {quality} is out of range; use 1 to 100 (80 is a good default)")
        self.server = MjpegServer(host, port, title, token=token, sources=sources)
        self.quality = quality
        self.frames = 0
        # Several sources: /stream shows them tiled; each also has its own /stream/<i>.
        self._grid = GridSink([_Channel(self, 0)], sources, fps=fps) if sources > 1 else None
        log.info("live view at %s", self.server.url)

    @property
    def url(self) -> str:
        """The page's address."""
        return self.server.url

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0: the OS picks a free one)."""
        return int(self.server.port)

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Publish the frame (its source's channel and the grid with several sources; the view with one)."""
        self.frames += 1
        if self._grid is None:
            self.publish(frame, 0)
            return
        sid = getattr(result, "source_id", None) or 0
        self.publish(frame, sid + 1)
        self._grid.write(frame, result)

    def publish(self, frame: np.ndarray, channel: int) -> None:
        """Encode ``frame`` as JPEG for ``channel`` when someone watches it (or its snapshot is stale)."""
        if self.server.stopping.is_set() or not self.server.wants_frame(channel):
            return
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self.server.publish(buf.tobytes(), channel)

    def update_stats(self, stats: dict[str, Any]) -> None:
        """Set the numbers shown beside the stream (and returned by /stats)."""
        self.server.set_stats(stats)

    def attach_source(self, source: Any) -> None:
        """Report ``source.status`` / ``reconnects`` / ``decode_errors`` live in /stats and the page header,
        so "reconnecting" shows even while no frames (and so no update_stats calls) arrive."""
        self.server.source = source

    def close(self) -> None:
        """Stop the server thread and free the port; safe to call twice."""
        self.server.close()

    def __enter__(self) -> MjpegSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Channel(SinkBase):
    """One channel of an :class:`MjpegSink` as an image sink (what the grid writes its tiled view to)."""

    def __init__(self, sink: MjpegSink, channel: int) -> None:
        self.sink, self.channel = sink, channel

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Publish ``frame`` on this channel."""
        self.sink.publish(frame, self.channel)

    def close(self) -> None:
        """The sink closes the server."""
