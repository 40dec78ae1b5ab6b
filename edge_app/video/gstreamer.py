"""GStreamer sources: a raw ``gst:`` pipeline and Jetson CSI cameras (``csi://N``, nvarguscamerasrc), both read
through OpenCV's GStreamer backend (JetPack's OpenCV has one; pip's opencv-python does not)."""

from __future__ import annotations

import re
from fractions import Fraction

import cv2

from edge_app.errors import UserError
from edge_app.video.base import ReconnectPolicy
from edge_app.video.capture import CaptureSource


def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (pip's opencv-python cannot; JetPack's can)."""
    m = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(m and m.group(1).upper() == "YES")


def open_gstreamer(
    name: str,
    pipeline: str,
    *,
    fps: float | None,
    policy: ReconnectPolicy,
    width: int | None = None,
    height: int | None = None,
    flip: str | None = None,
) -> CaptureSource:
    """A raw GStreamer pipeline ending in ``appsink`` (``gst:...``); live unless it reads a file."""
    if not pipeline:
        raise UserError("'gst:' needs a pipeline after it; e.g. gst:videotestsrc ! videoconvert ! appsink")
    if not gstreamer_available():
        raise UserError(
            f"source '{name}' needs OpenCV built with GStreamer, and this one has none; install "
            "your platform's OpenCV with GStreamer (JetPack's python3-opencv) or use another source"
        )
    cannot = f"GStreamer pipeline '{pipeline}' did not start or gave no frames; test it with gst-launch-1.0"
    return CaptureSource(
        name,
        lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
        live="filesrc" not in pipeline,
        cannot_open=cannot,
        policy=policy,
        fps=fps,
        width=width,
        height=height,
        flip=flip,
    )


CSI_FLIP_METHOD = {None: 0, "180": 2, "h": 4, "v": 6}  # nvvidconv flip-method values


def csi_pipeline(
    sensor_id: int, width: int = 1280, height: int = 720, fps: float = 30.0, flip: str | None = None
) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc); flips in the ISP, not on the CPU."""
    if flip not in CSI_FLIP_METHOD:
        raise UserError(f"--flip '{flip}' is not supported; use one of h, v, 180")
    rate = Fraction(fps).limit_denominator(1001)
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){rate.numerator}/{rate.denominator}, format=(string)NV12 ! "
        f"nvvidconv flip-method={CSI_FLIP_METHOD[flip]} ! "
        f"video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def open_csi(
    name: str,
    sensor: str,
    *,
    fps: float | None,
    policy: ReconnectPolicy,
    width: int | None = None,
    height: int | None = None,
    flip: str | None = None,
) -> CaptureSource:
    """``csi://N``: Jetson CSI camera N through nvarguscamerasrc (needs OpenCV with GStreamer)."""
    if not re.fullmatch(r"\d+", sensor):
        raise UserError(f"source '{name}' needs a sensor number; use csi://0 or csi://1")
    pipeline = csi_pipeline(int(sensor), width or 1280, height or 720, fps or 30.0, flip)
    return open_gstreamer(name, pipeline, fps=fps, policy=policy, width=width, height=height, flip=None)
