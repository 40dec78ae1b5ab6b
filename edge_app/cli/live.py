"""``run.py live``: label a live source into a window, files and/or a browser; latency first."""

from __future__ import annotations

import argparse

from edge_app.cli.common import loop_args, loop_config, loop_flags, mode_config, open_from_args

HELP = "label a live source (camera, stream, file, synthetic) into a window, files and/or a browser; latency first"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `live` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py live", description=HELP)
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--source",
        default="synthetic",
        help="camera index, /dev/videoN, file, rtsp://, http(s)://, gst:..., csi://N, image folder/glob or synthetic (default)",
    )
    p.add_argument("--width", type=int, default=None, help="requested frame width (with --height)")
    p.add_argument("--height", type=int, default=None, help="requested frame height (with --width)")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate: asked of cameras, the pace of synthetic and images, and the playback rate of a video "
        "file (default: the file's own rate, as a camera would deliver it)",
    )
    p.add_argument(
        "--max-speed",
        action="store_true",
        help="read a video file as fast as it decodes instead of at its own rate (never drops a frame)",
    )
    p.add_argument("--loop", action="store_true", help="restart files and image folders at the end")
    p.add_argument("--flip", default=None, choices=("h", "v", "180"), help="mirror or rotate frames")
    p.add_argument(
        "--display",
        action="store_true",
        help="show a window (q or Esc quits); skipped with a message without a display",
    )
    p.add_argument("--save", default=None, metavar="OUT.mp4", help="write the annotated video here")
    p.add_argument(
        "--codec",
        default=None,
        choices=("h264", "vp9", "mjpeg", "mp4v"),  # edge_app.video.sinks.CODECS
        help="codec of --save (default by extension: .mp4 h264, .webm vp9, .avi mjpeg); mp4v plays in no browser",
    )
    p.add_argument("--jsonl", default=None, metavar="OUT.jsonl", help="write one JSON line per frame here")
    p.add_argument(
        "--serve", default=None, metavar="HOST:PORT", help="MJPEG stream + stats page over HTTP, e.g. 127.0.0.1:8080"
    )
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (default 0: no limit)")
    loop_args(p, batch=1)
    return p


def main(a: argparse.Namespace) -> int:
    """Run `live` until the source ends, --max-frames/--duration or Ctrl-C; returns the exit code."""
    from edge_app.frames.labellers import make_labeller
    from edge_app.frames.pipeline import run_pipeline
    from edge_app.video.mjpeg import MjpegSink
    from edge_app.video.sinks import open_sinks
    from edge_app.video.sources import open_source

    with loop_flags():
        cfg = loop_config(a, duration=a.duration)
        with open_from_args(a) as eng:
            print(f"engine: {eng.description} [{eng.choice}]")
            # An engine the mode cannot use fails here, before the source opens.
            lab = make_labeller(eng, a.mode, mode_config(a))
            src = open_source(
                a.source, width=a.width, height=a.height, fps=a.fps, loop=a.loop, flip=a.flip, pace=not a.max_speed
            )
            try:
                sinks = open_sinks(
                    fps=src.fps,
                    size=src.size,
                    video=a.save,
                    jsonl=a.jsonl,
                    display=a.display,
                    serve=a.serve,
                    title=f"edge_app: {a.source}",
                    codec=a.codec,
                )
            except BaseException:
                src.close()
                raise
            for s in sinks:
                if isinstance(s, MjpegSink):
                    print(f"serving {s.url}", flush=True)
            print(f"source: {src!r}; mode {lab.mode}; Ctrl-C stops", flush=True)
            rep = run_pipeline(lab, src, sinks, cfg)
    print(rep.summary())
    for name, st in rep.stages.items():
        print(f"  {name:12s} p50 {st['p50']:8.2f} ms  p99 {st['p99']:8.2f} ms")
    for what in (a.save, a.jsonl):
        if what:
            print(f"wrote {what}")
    return 130 if rep.stopped_by == "interrupt" else 0
