"""``run.py live``: label a live source into a window, files and/or a browser; latency first."""

from __future__ import annotations

import argparse

from edge_app.cli.common import loop_args, loop_config, loop_flags, mode_config, open_from_args
from edge_app.cli.post_label import add_post_label_args, post_label_from_args

HELP = (
    "label live sources (cameras, streams, files, synthetic; several in one engine call) into a window, files "
    "and/or a browser; latency first"
)


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `live` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py live", description=HELP)
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help="camera index, /dev/videoN, file, rtsp://, http(s)://, gst:..., csi://N, image folder/glob or synthetic "
        "(default); repeat it, or pass a .streams file (one source per line), to label several in one engine call",
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
        "--serve",
        default=None,
        metavar="HOST:PORT",
        help="MJPEG stream + stats page over HTTP, e.g. 127.0.0.1:8080 (several sources: a grid, and /stream/<i> each)",
    )
    p.add_argument(
        "--token",
        default=None,
        help="the token --serve asks for (default: none on loopback, a generated one on any other address)",
    )
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (default 0: no limit)")
    loop_args(p, batch=1)
    for action in p._actions:  # several sources: one frame of each per engine call, as DeepStream's batch-size
        if action.dest == "batch":
            action.default, action.help = None, "frames per engine call (default: 1 per source)"
    add_post_label_args(p)
    return p


def main(a: argparse.Namespace) -> int:
    """Run `live` until the sources end, --max-frames/--duration or Ctrl-C; returns the exit code."""
    from edge_app.errors import UserError
    from edge_app.frames.labellers import make_labeller
    from edge_app.frames.pipeline import run_pipeline
    from edge_app.video.grid import GridSink
    from edge_app.video.mjpeg import MjpegSink
    from edge_app.video.mot import MotSink
    from edge_app.video.sinks import close_all, open_sinks
    from edge_app.video.sources import open_source
    from edge_app.video.streams import expand_sources

    uris = expand_sources(a.source or ["synthetic"])
    n = len(uris)
    a.batch = a.batch if a.batch is not None else n
    if a.mot and n > 1:
        raise UserError(f"--mot writes one source's tracks but {n} sources are given; drop --mot or pass one --source")
    with loop_flags():
        cfg = loop_config(a, duration=a.duration)
        with open_from_args(a) as eng:
            print(f"engine: {eng.description} [{eng.choice}]")
            if eng.backend == "tensorrt" and eng.max_batch and a.batch > eng.max_batch:
                raise UserError(
                    f"{n} sources need batch {a.batch} but this TensorRT plan holds at most {eng.max_batch}; build one "
                    f"that holds it: python run.py build {a.engine} --precision {eng.precision} --batch 1:{a.batch}:{a.batch}"
                )
            # An engine the mode cannot use fails here, before the sources open.
            lab = make_labeller(eng, a.mode, mode_config(a))
            sources: list = []
            sinks: list = []
            try:
                for uri in uris:
                    sources.append(
                        open_source(
                            uri,
                            width=a.width,
                            height=a.height,
                            fps=a.fps,
                            loop=a.loop,
                            flip=a.flip,
                            pace=not a.max_speed,
                        )
                    )
                first = sources[0]
                post = post_label_from_args(a, eng.meta.task, first.size)
                fps = max(s.fps or 0.0 for s in sources) or 30.0
                size = first.size if n == 1 else (1280, 720)  # several sources: the recorded video is the grid
                sinks = open_sinks(
                    fps=fps,
                    size=size,
                    video=a.save,
                    jsonl=a.jsonl,
                    display=a.display,
                    serve=None,
                    title=f"edge_app: {', '.join(uris)}",
                    codec=a.codec,
                )
                if a.serve:
                    from edge_app.video.mjpeg import parse_serve

                    host, port = parse_serve(a.serve)
                    view = MjpegSink(
                        host, port, title=f"edge_app: {len(uris)} source(s)", token=a.token, sources=n, fps=fps
                    )
                    view.attach_source(first)
                    sinks.append(view)
                if a.mot:
                    sinks.append(MotSink(a.mot))
                if n > 1:  # the window and the video show the grid; JSON lines and the view take every frame
                    tiled = [s for s in sinks if s.takes_images and not isinstance(s, MjpegSink)]
                    sinks = [s for s in sinks if s not in tiled]
                    if tiled:
                        sinks.append(GridSink(tiled, n, size=size, fps=fps))
            except BaseException:
                close_all(sinks)
                for src in sources:
                    src.close()
                raise
            for s in sinks:
                if isinstance(s, MjpegSink):
                    print(
                        f"serving {s.url}"
                        + (
                            "".join(f"\n  source {i}: {s.server.url_for(f'stream/{i}')}" for i in range(n))
                            if n > 1
                            else ""
                        ),
                        flush=True,
                    )
            for i, src in enumerate(sources):
                print(f"source {i}: {src!r}" if n > 1 else f"source: {src!r}", flush=True)
            tracking = f"; tracking with {post.settings['tracker']}" if post.steps else ""
            print(f"mode {lab.mode}, batch {a.batch}{tracking}; Ctrl-C stops", flush=True)
            rep = run_pipeline(lab, sources, sinks, cfg, post.steps, annotators=post.annotators)
    print(rep.summary())
    for name, st in rep.stages.items():
        print(f"  {name:12s} p50 {st['p50']:8.2f} ms  p99 {st['p99']:8.2f} ms")
    for what in (a.save, a.jsonl, a.mot):
        if what:
            print(f"wrote {what}")
    return 130 if rep.stopped_by == "interrupt" else 0
