"""The terminal summary of an ``annotate --ray`` run: one line per file, the workers, a total."""

from __future__ import annotations

from edge_app.annotate.ray.options import RayRunResult


def format_summary(result: RayRunResult) -> list[str]:
    """One line per file (every frame accounted for: read, written, failed to decode, carried over a lost
    worker), the workers, and a total line."""
    lines = [
        f"worker on {w['node']} (node {w['node_id']}, pid {w['pid']}, {w['threads']} threads{', GPU ' + ','.join(map(str, w['gpus'])) if w['gpus'] else ''}): "
        f"{w['engine']}"
        for w in result.workers
    ]
    read = written = failed = fresh = 0
    for f in result.files:
        src, o = f.job.video, f.outcome
        lost = f" after {len(f.lost)} lost worker{'s' * (len(f.lost) != 1)} (on {', '.join(f.lost)})" if f.lost else ""
        tries = f", {f.attempts} attempts" if f.attempts > 1 else ""
        if f.error:
            done = f"; {f.done} frames were complete in {f.job.out_jsonl} (resumable)" if f.done else ""
            lines.append(f"{src}: FAILED{lost}{tries}: {f.error}{done}")
            continue
        if o is None:
            if f.started:  # stopped (Ctrl-C) before its worker answered, or its worker lost while stopping
                lines.append(f"{src}: interrupted at {f.done} complete frames{lost}; run again with --resume")
            else:
                lines.append(f"{src}: not started")
            continue
        if o.already_complete:
            lines.append(f"{src}: already complete ({o.frames_restored} frames in {f.job.out_jsonl}), skipped")
            continue
        if o.stopped_by == "interrupt":
            lines.append(f"{src}: interrupted at {o.frames_written} complete frames{lost}; run again with --resume")
            read, written = read + o.frames_read, written + o.frames_written
            continue
        carried = f", {o.frames_restored} carried over by resume{lost}" if o.frames_restored else ""
        total = f" of {f.total}" if f.total is not None else ""
        lines.append(
            f"{src}: annotated {o.frames_written}{total} frames ({o.frames_read} read, {o.frames_failed} failed to decode"
            f"{carried}{tries}) at {o.fps:.1f} frames/s on {o.node} -> {f.job.out_video}, {f.job.out_jsonl}"
        )
        read, written, failed = read + o.frames_read, written + o.frames_written, failed + o.frames_failed
        fresh += o.frames_written - o.frames_restored
    lines += [f"note: {n}" for n in result.notes]
    fps = fresh / result.seconds if result.seconds > 0 else 0.0
    ok = sum(f.complete for f in result.files)
    lines.append(
        f"total: {len(result.files)} files ({ok} complete), {read} frames read, {written} written, {failed} failed to decode, "
        f"{fps:.1f} frames/s over {result.seconds:.1f} s of cluster work"
    )
    return lines
