"""FFmpeg's and OpenCV's own logs: silent by default, shown with ``--verbose`` (edge_app logging at DEBUG).

A cut MP4 makes FFmpeg print "partial file" once per packet (265 lines for one test file) and a closed RTSP
port prints its socket errors before our one sentence; users need the sentence, developers the log. Three
libraries log on their own: OpenCV's bundled FFmpeg (read from ``OPENCV_FFMPEG_LOGLEVEL`` once, when OpenCV
opens its first capture), OpenCV itself (``cv2.utils.logging``) and PyAV's FFmpeg (``av.logging``, off
unless set). The choice follows the ``edge_app`` logger, so the command line's ``-v/--verbose`` (which
sets DEBUG) turns them all on; a variable the user set in the environment wins.
"""

from __future__ import annotations

import logging
import os
import sys

OPENCV_FFMPEG_LOGLEVEL = "OPENCV_FFMPEG_LOGLEVEL"
AV_LOG_QUIET, AV_LOG_VERBOSE = -8, 40  # libavutil/log.h


def verbose() -> bool:
    """Whether edge_app logs at DEBUG (``--verbose``)."""
    return logging.getLogger("edge_app").isEnabledFor(logging.DEBUG)


def apply_library_logs() -> None:
    """Set the libraries' log levels from :func:`verbose`; call before opening a capture or writer."""
    loud = verbose()
    os.environ.setdefault(OPENCV_FFMPEG_LOGLEVEL, str(AV_LOG_VERBOSE if loud else AV_LOG_QUIET))
    import cv2

    lv = cv2.utils.logging
    lv.setLogLevel(lv.LOG_LEVEL_INFO if loud else lv.LOG_LEVEL_ERROR)
    av = sys.modules.get("av")  # set only where PyAV is in use: importing it costs ~0.1 s
    if av is not None:
        av.logging.set_level(av.logging.VERBOSE if loud else None)
