"""``run.py annotate``: label every frame of videos and photos into annotated copies and JSON lines."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge_app.cli.common import loop_args, loop_config, loop_flags, mode_config, open_from_args, positive_int
from edge_app.cli.post_label import add_post_label_args, post_label_from_args
from edge_app.errors import UserError

HELP = (
    "label every frame of videos and photos (files, folders, globs): annotated copies + JSON lines, batched, resumable"
)

# Library field -> flag, for the errors of `annotate --ray` (the library names fields: a Ray worker never sees a flag).
RAY_FLAGS = {"address": "--ray", "workers": "--workers", "dla_core": "--dla"}


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `annotate` (added to ``p``, the sub-command's parser, or to a new one)."""
    from edge_app.annotate.video import ANNOTATE_BATCH

    p = p or argparse.ArgumentParser(prog="run.py annotate", description=HELP)
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, image files, folders of either (searched recursively), or quoted globs such as 'clips/*.mp4'",
    )
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default runs/annotate), or OUT.mp4 for a single input; JSON lines go beside each video",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the last frame its JSON lines hold; refused when the run differs "
        "(engine, model file, backend, precision, mode and its settings, trackers, input file: see <out>.run.json)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that already hold results (without it, or --resume, such outputs are refused)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--files-at-once",
        type=positive_int,
        default=4,
        metavar="N",
        help="videos read and labelled together in one batched loop, each with its own outputs (default 4)",
    )
    loop_args(p, batch=ANNOTATE_BATCH)
    p.add_argument(
        "--codec",
        default=None,
        choices=("h264", "vp9", "mjpeg", "mp4v"),  # edge_app.video.sinks.CODECS
        help="video codec (default by extension: .mp4 h264, .webm vp9, .avi mjpeg); vp9 needs --out OUT.webm",
    )
    add_post_label_args(p, mot=False)
    p.add_argument(
        "--mot",
        action="store_true",
        help="with --track: also write each video's tracks as MOTChallenge text (<name>.mot.txt beside its JSON lines)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="spread the files over a Ray cluster, one file per task: without ADDRESS a local Ray instance on "
        "this machine, with 'auto' or HOST:PORT an existing cluster (`ray start --head`); the engine folder "
        "is shipped through Ray, but inputs must be at the same path on every node and --out must be a "
        "folder every node can write (a shared folder); put --ray after the inputs",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --ray: Ray actors in the pool, each with one engine (default: one per node)",
    )
    return p


def main(a: argparse.Namespace) -> int:
    """Run `annotate` over every input; returns the exit code."""
    from edge_app.annotate.images import JSONL_NAME, annotate_images, find_inputs
    from edge_app.annotate.video import VIDEO_EXTS, annotate_videos, check_outputs, completed_results, output_paths
    from edge_app.frames.labellers import make_labeller
    from edge_app.video.mot import write_mot

    if a.mot and not a.track:
        raise UserError("--mot writes track IDs; add --track bytetrack (or --track iou)")
    if a.ray is not None:
        return _annotate_on_ray(a)
    if a.workers is not None:
        raise UserError(
            f"--workers {a.workers} applies only with --ray; add --ray to spread the files over Ray workers"
        )
    with loop_flags():
        cfg = loop_config(a, progress=not a.no_progress)
        read = written = failed = 0
        seconds = 0.0
        found = find_inputs(a.inputs)
        videos, images = found.videos, found.images
        if images and a.out and Path(a.out).suffix.lower() in VIDEO_EXTS:
            raise UserError(
                f"--out '{a.out}' is one video file but the inputs include {len(images)} images; pass a folder as --out"
            )
        outs = output_paths(videos, a.out)
        image_jsonl = [Path(a.out or "runs/annotate") / JSONL_NAME] if images else []
        check_outputs([p for pair in outs for p in pair] + image_jsonl, resume=a.resume, overwrite=a.overwrite)
        with open_from_args(a, use="throughput") as eng:
            print(f"engine: {eng.description} [{eng.choice}]")
            # An engine the mode cannot use fails here, before any output is written.
            lab = make_labeller(eng, a.mode, mode_config(a))
            tracking = post_label_from_args(a, eng.meta.task).spec  # each file gets fresh steps from it
            jobs = [(src, vid, jl) for src, (vid, jl) in zip(videos, outs)]
            t_videos = time.perf_counter()
            results = annotate_videos(
                lab, jobs, cfg, resume=a.resume, codec=a.codec, tracking=tracking, at_once=a.files_at_once
            )
            for (src, (vid, jl)), r in zip(zip(videos, outs), results):
                if a.mot:
                    # From the JSON lines, so a resumed file's MOT text holds every frame exactly once.
                    mot = write_mot(jl.with_suffix(".mot.txt"), completed_results(jl))
                    print(f"{src}: tracks -> {mot}")
                if r.already_complete:
                    print(f"{src}: already complete ({r.frames_restored} frames in {jl}), skipped")
                    continue
                resumed = f", resumed after frame {r.frames_restored - 1}" if r.frames_restored else ""
                print(
                    f"{src}: annotated {r.frames_written} frames ({r.frames_read} read, {r.frames_failed} failed to decode{resumed}) "
                    f"at {r.fps:.1f} frames/s -> {vid}, {jl}"
                )
                read, written, failed = read + r.frames_read, written + r.frames_written, failed + r.frames_failed
                if r.stopped_by == "interrupt":
                    print(
                        "interrupted: what was written is complete up to the last JSON line; run again with --resume to continue",
                        file=sys.stderr,
                    )
                    return 130
            seconds = time.perf_counter() - t_videos  # files of a group share one loop: their wall time is one
            if images:
                ri = annotate_images(
                    lab, images, a.out or "runs/annotate", cfg.batch, cfg.overlay, a.resume, progress=not a.no_progress
                )
                skipped = f", {ri.skipped} already done" if ri.skipped else ""
                print(
                    f"{len(images)} images: annotated {ri.written}{skipped}, {len(ri.unreadable)} unreadable, "
                    f"{ri.per_second:.1f} images/s -> {ri.jsonl.parent}/, {ri.jsonl}"
                )
                for bad in ri.unreadable[:5]:
                    print(f"  unreadable: {bad}", file=sys.stderr)
                if ri.unreadable and not ri.written and not ri.skipped:
                    raise UserError(
                        f"none of the {len(images)} images could be decoded (e.g. '{ri.unreadable[0]}'); pass JPEG, PNG, BMP, WebP or TIFF files"
                    )
    if len(videos) > 1:
        fps = written / seconds if seconds else 0.0
        print(
            f"total: {len(videos)} files, {read} frames read, {written} written, {failed} failed to decode, {fps:.1f} frames/s"
        )
    print_skipped(found.skipped)
    return 0


def print_skipped(skipped: list[tuple[str, str]]) -> None:
    """Every input passed over, and why (a folder's notes.txt is not silently ignored)."""
    if skipped:
        print(f"skipped {len(skipped)} input{'s' * (len(skipped) != 1)}:")
        for path, why in skipped:
            print(f"  {path}: {why}")


def _annotate_on_ray(a: argparse.Namespace) -> int:
    """`annotate --ray`: the same files, outputs and resume, spread over Ray workers (edge_app.annotate.ray)."""
    from edge_app.annotate.images import find_inputs
    from edge_app.annotate.ray import driver as ar
    from edge_app.annotate.ray.options import RayOptions
    from edge_app.annotate.ray.summary import format_summary
    from edge_app.annotate.video import check_outputs, output_paths
    from edge_app.errors import FieldError
    from edge_app.frames.labellers import LabellerSpec

    with loop_flags():
        try:
            opts = RayOptions(address=a.ray or None, workers=a.workers or 0)
        except FieldError as e:
            raise e.reworded(RAY_FLAGS) from None
        cfg = loop_config(a, progress=False)
        found = find_inputs(a.inputs)
        inputs, images = found.videos, found.images
        if images:
            raise UserError(
                f"--ray spreads video files over workers, but {len(images)} inputs are images "
                f"(e.g. '{images[0].path}'); annotate photos without --ray"
            )
        outs = output_paths(inputs, a.out)
        check_outputs([p for pair in outs for p in pair], resume=a.resume, overwrite=a.overwrite)
        spec = LabellerSpec(
            a.engine,
            a.mode,
            mode_config(a),
            a.backend,
            a.precision,
            a.device,
            use="throughput",
            no_build=a.no_build,
            dla_core=a.dla,
            cuda_graphs=a.cuda_graph,
            mapped_memory=a.mapped_memory,
        )
        from edge_app.engine_dir import EngineDir

        tracking = post_label_from_args(a, EngineDir(a.engine).load_meta().task).spec  # workers build the steps
        result = ar.annotate_on_ray(
            spec,
            ar.make_jobs(inputs, outs, a.resume),
            cfg,
            opts,
            codec=a.codec,
            progress=not a.no_progress,
            tracking=tracking,
        )
    for line in format_summary(result):
        print(line)
    if a.mot:
        from edge_app.annotate.video import completed_results
        from edge_app.video.mot import write_mot

        for _, jl in outs:
            if jl.is_file():
                print(f"tracks -> {write_mot(jl.with_suffix('.mot.txt'), completed_results(jl))}")
    print_skipped(found.skipped)
    if result.interrupted:
        print(
            "interrupted: what was written is complete up to the last JSON line of each file; "
            "run again with --resume to continue",
            file=sys.stderr,
        )
        return 130
    return 0 if result.ok else 1
