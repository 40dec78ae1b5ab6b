"""Time ``annotate --ray`` against a plain local annotate, in one run (machines are noisy: compare ratios).

Runs itself inside a network namespace with only loopback up (``unshare -n``, root), so Ray binds
127.0.0.1 only and probes nothing outside. One Ray node sized to this machine is started once
(``ray.cluster_utils.Cluster``); each --ray run then joins it as ``annotate --ray ADDRESS`` would, so the
per-run cost (engine shipped, actors started, engines opened) is measured apart from starting Ray, which is
timed once on its own. Variants are interleaved, ``--repeats`` rounds after one warm-up round; medians.

    .venv/bin/python scripts/ray_annotate_bench.py --engine /tmp/engines/r18-224 --frames 300

Reported per variant: wall seconds of the whole call, frames/s over that wall, and the frame loop's own
frames/s as annotate_video reports it (the worker's, for Ray).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MARK = "EDGE_APP_BENCH_NETNS"


def reexec_in_namespace() -> None:
    """Run this script again inside a fresh network namespace with only loopback up."""
    if os.environ.get(MARK) == "1":
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        sys.exit("needs root and unshare: Ray must run in a loopback-only network namespace here")
    cmd = "ip link set lo up && exec " + " ".join(
        [sys.executable, *map(repr, [os.path.abspath(__file__), *sys.argv[1:]])]
    )
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", cmd], {**os.environ, MARK: "1", "RAY_USAGE_STATS_ENABLED": "0"})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", required=True)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", default="640x480")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args()
    reexec_in_namespace()

    from ray.cluster_utils import Cluster

    from edge_app.annotate.ray.driver import annotate_on_ray, make_jobs
    from edge_app.annotate.ray.options import RayOptions
    from edge_app.annotate.video import annotate_config, annotate_video
    from edge_app.frames.labellers import LabellerSpec, make_labeller
    from edge_app.runtime import open_engine
    from tests.helpers import write_tiny_video

    w, h = map(int, a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    videos = [write_tiny_video(tmp / f"in{i}.mp4", frames=a.frames, size=(w, h), fps=30.0) for i in range(2)]
    cfg = annotate_config(progress=False)
    spec = LabellerSpec(a.engine, use="throughput")
    ncpu = os.cpu_count() or 1

    t0 = time.perf_counter()
    import ray

    ray.init(num_cpus=ncpu, include_dashboard=False, logging_level="WARNING")
    ray_start_s = time.perf_counter() - t0
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": ncpu, "include_dashboard": False})
    listen = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.split("\n")
    addrs = sorted({line.split()[3].rsplit(":", 1)[0] for line in listen if line.strip()})

    def local(files: list[Path], out: Path) -> dict:
        t = time.perf_counter()
        with open_engine(a.engine, use="throughput") as eng:  # what `annotate` without --ray does
            lab = make_labeller(eng, spec.mode, spec.mode_config)
            rs = [annotate_video(lab, f, out / f"{f.stem}.mp4", out / f"{f.stem}.jsonl", cfg) for f in files]
        wall = time.perf_counter() - t
        return {
            "wall_s": wall,
            "frames": sum(r.frames_written for r in rs),
            "loop_fps": [r.fps for r in rs],
            "engine": eng.description,
        }

    def on_ray(files: list[Path], out: Path, workers: int) -> dict:
        jobs = make_jobs(files, [(out / f"{f.stem}.mp4", out / f"{f.stem}.jsonl") for f in files], False)
        t = time.perf_counter()
        r = annotate_on_ray(
            spec, jobs, cfg, RayOptions(address=cluster.address, workers=workers), progress=False, log=lambda s: None
        )
        wall = time.perf_counter() - t
        assert r.ok, [f.error for f in r.files]
        return {
            "wall_s": wall,
            "frames": sum(f.outcome.frames_written for f in r.files),
            "pool_s": r.seconds,
            "loop_fps": [f.outcome.fps for f in r.files],
            "engine": r.workers[0]["engine"] if r.workers else "",
        }

    variants = {
        "local, 1 file": lambda o: local(videos[:1], o),
        "ray 1 worker, 1 file": lambda o: on_ray(videos[:1], o, 1),
        "ray 2 workers, 1 file": lambda o: on_ray(videos[:1], o, 2),
        "local, 2 files": lambda o: local(videos, o),
        "ray 1 worker, 2 files": lambda o: on_ray(videos, o, 1),
        "ray 2 workers, 2 files": lambda o: on_ray(videos, o, 2),
    }
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for rnd in range(a.repeats + 1):  # round 0 warms caches and is not kept
        for name, fn in variants.items():
            out = tmp / f"out-{rnd}-{len(runs[name])}-{abs(hash(name))}"
            r = fn(out)
            if rnd:
                runs[name].append(r)
            shutil.rmtree(out, ignore_errors=True)
            print(f"round {rnd} {name}: {r['frames']} frames in {r['wall_s']:.2f} s", flush=True)
    cluster.shutdown()

    summary = {
        "cpus": ncpu,
        "frames_per_file": a.frames,
        "size": a.size,
        "repeats": a.repeats,
        "ray_init_local_s": ray_start_s,
        "listen_addresses": addrs,
        "variants": {},
    }
    print(
        f"\nRay listened on: {', '.join(addrs)}; starting a local Ray instance took {ray_start_s:.1f} s (once per run without ADDRESS)"
    )
    print(f"{'variant':26s} {'wall s':>8s} {'frames/s (wall)':>16s} {'loop frames/s':>14s}")
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        fps = statistics.median(r["frames"] / r["wall_s"] for r in rs)
        loop = statistics.median(statistics.mean(r["loop_fps"]) for r in rs)
        summary["variants"][name] = {"wall_s_median": wall, "fps_wall_median": fps, "loop_fps_median": loop, "runs": rs}
        print(f"{name:26s} {wall:8.2f} {fps:16.1f} {loop:14.1f}")
    v = summary["variants"]
    for n in ("1 file", "2 files"):
        ratio = v[f"ray 1 worker, {n}"]["wall_s_median"] / v[f"local, {n}"]["wall_s_median"]
        print(f"ray 1 worker / local, {n}: wall x{ratio:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
