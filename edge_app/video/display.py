"""The OpenCV window sink, and the check that says (once, in a child process) whether a window can open here."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from edge_app.video.base import SinkBase

log = logging.getLogger("edge_app.video")


@lru_cache(maxsize=1)
def display_available() -> tuple[bool, str]:
    """(True, "") when an OpenCV window can open here, else (False, why). Checked once per process."""
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui is None or gui.group(1).upper() == "NONE":
        return False, "this OpenCV build has no GUI support (opencv-python-headless?)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no DISPLAY or WAYLAND_DISPLAY is set (a headless machine, or SSH without -X)"
    # A DISPLAY that points nowhere makes OpenCV's Qt abort the whole process; probe in a child instead.
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"opening a test window failed ({e})"
    if r.returncode != 0:
        tail = (r.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return False, f"opening a test window failed ({tail})"
    return True, ""


class DisplaySink(SinkBase):
    """An OpenCV window; skipped with one message when there is no display. Reports keys via key_pressed()."""

    def __init__(self, title: str = "edge_app") -> None:
        self.title = title
        self.enabled, self.reason = display_available()
        self._key: int | None = None
        self._shown = False
        if not self.enabled:
            log.warning("display: no window: %s; watch in a browser with --serve 127.0.0.1:8080 instead", self.reason)

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Show the frame and poll the keyboard (HighGUI only draws while it is polled)."""
        if not self.enabled:
            return
        cv2.imshow(self.title, frame)
        k = cv2.waitKey(1)
        if k != -1:
            self._key = k & 0xFF
        elif self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._key = 27  # the user closed the window: same as Esc
        self._shown = True

    def key_pressed(self) -> int:
        """The last key pressed since the previous call (27 = Esc, also when the window was closed; -1: none)."""
        k, self._key = self._key, None
        return -1 if k is None else k

    def close(self) -> None:
        """Close the window; safe to call twice."""
        if self.enabled and self._shown:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        self._shown = False

    def __enter__(self) -> DisplaySink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
