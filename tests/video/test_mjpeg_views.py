"""The MJPEG view of many sources (a grid and one stream per source) and its token off loopback.

Real HTTP requests: on 127.0.0.1, and on a non-loopback address of a network namespace the test makes itself
(``unshare -n`` with 10.213.0.1 on its own ``lo``: the traffic never leaves the namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.frames.results import FrameResult
from edge_app.video.mjpeg import MjpegSink, is_loopback

REPO = Path(__file__).resolve().parents[2]


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(200000) if "stream" not in url else r.read(7)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_each_source_has_its_own_stream_and_the_main_one_is_the_grid() -> None:
    with MjpegSink("127.0.0.1", 0, sources=2, fps=1000.0) as sink:
        for sid, val in ((0, 40), (1, 200)):
            sink.write(np.full((48, 64, 3), val, np.uint8), FrameResult(0, 0.0, source_id=sid))
        base = sink.url
        code, grid = _get(base + "snapshot.jpg")
        code0, one = _get(base + "snapshot/0.jpg")
        code1, two = _get(base + "snapshot/1.jpg")
        assert (code, code0, code1) == (200, 200, 200)
        import cv2

        g = cv2.imdecode(np.frombuffer(grid, np.uint8), cv2.IMREAD_COLOR)
        a = cv2.imdecode(np.frombuffer(one, np.uint8), cv2.IMREAD_COLOR)
        b = cv2.imdecode(np.frombuffer(two, np.uint8), cv2.IMREAD_COLOR)
        assert a.shape == (48, 64, 3) and abs(int(a.mean()) - 40) < 5 and abs(int(b.mean()) - 200) < 5
        assert g.shape[1] > g.shape[0]  # two tiles side by side
        assert _get(base + "snapshot/2.jpg")[0] == 404
        code, body = _get(base + "stream/1")
        assert code == 200 and body.startswith(b"--frame")


def test_loopback_is_open_and_a_given_token_is_checked() -> None:
    with MjpegSink("127.0.0.1", 0) as open_view:
        assert open_view.server.token is None and _get(open_view.url + "stats")[0] == 200
    with MjpegSink("127.0.0.1", 0, token="s3cret-token") as sink:
        sink.write(np.zeros((8, 8, 3), np.uint8))
        assert sink.url.endswith("/?token=s3cret-token")
        host = sink.url.split("?")[0]
        assert _get(host + "stats")[0] == 401
        assert _get(host + "snapshot.jpg?token=wrong-token")[0] == 401
        code, body = _get(host + "stream")
        assert code == 401 and b"--frame" not in body
        assert _get(host + "stats?token=s3cret-token")[0] == 200
        assert _get(host + "snapshot.jpg", {"Authorization": "Bearer s3cret-token"})[0] == 200


def test_a_bad_token_is_one_sentence() -> None:
    with pytest.raises(UserError, match=r"--token must be 8 to 128 letters"):
        MjpegSink("127.0.0.1", 0, token="a b")


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.213.0.1")


NETNS_SCRIPT = r"""
import json, sys, urllib.request, urllib.error
import numpy as np
from edge_app.video.mjpeg import MjpegSink

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

with MjpegSink("10.213.0.1", 0) as sink:
    sink.write(np.zeros((8, 8, 3), np.uint8))
    token = sink.server.token
    bare = sink.url.split("?")[0]
    print(json.dumps({
        "token": bool(token) and len(token) >= 16,
        "url_has_token": sink.url.endswith("?token=" + token),
        "no_token": get(bare + "snapshot.jpg"),
        "wrong": get(bare + "snapshot.jpg?token=" + "x" * len(token)),
        "right": get(sink.url.replace("/?", "/snapshot.jpg?")),
    }))
"""


def test_off_loopback_the_view_generates_a_token_and_refuses_requests_without_it() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root with unshare and ip to make a network namespace")
    cmd = (
        "ip link set lo up && ip addr add 10.213.0.1/32 dev lo && "
        f"{sys.executable} -c '{NETNS_SCRIPT.replace(chr(39), chr(34))}'"
    )
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "Operation not permitted" in r.stderr:
        pytest.skip("this machine does not allow network namespaces")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"token": True, "url_has_token": True, "no_token": 401, "wrong": 401, "right": 200}
