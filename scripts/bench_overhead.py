"""Check `bench`'s own overhead and windows: its ONNX Runtime p50 against a bare ``session.run`` loop.

Both run in this one process on the same model, input and session settings, alternating in rounds so that
machine noise hits both alike. Prints both p50s and their ratio (target: within 5 %), and how long the
warm-up and measurement windows really lasted against what was asked (target: within 10 %).

    .venv/bin/python scripts/bench_overhead.py engines/r18-224 --duration 3 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.bench import BenchConfig, run_bench  # noqa: E402
from edge_app.engine_dir import EngineDir  # noqa: E402


def bare_loop(model: Path, images: np.ndarray, warmup: float, duration: float, threads: int) -> list[float]:
    """Milliseconds per ``session.run`` after ``warmup`` seconds, for ``duration`` seconds; nothing else in the loop."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as edge_app's ONNX Runtime backend
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    feed = {name: images}
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:
        sess.run([out], feed)
    ms: list[float] = []
    t_end = time.perf_counter() + duration
    while True:
        t0 = time.perf_counter()
        sess.run([out], feed)
        t1 = time.perf_counter()
        ms.append((t1 - t0) * 1e3)
        if t1 >= t_end:
            return ms


def main() -> int:
    """Alternate bare loop and bench for ``--rounds``; print p50s, their ratio and the window timings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    a = p.parse_args()
    ed = EngineDir(a.engine)
    meta = ed.load_meta()
    model = ed.onnx_path("fp32") if a.precision == "fp32" else ed.onnx_path("int8", "cpu")
    threads = os.cpu_count() or 1
    # bench draws its batch from default_rng(seed=0); use the very same images
    images = np.random.default_rng(0).integers(0, 256, (1, meta.input.height, meta.input.width, 3), dtype=np.uint8)
    cfg = BenchConfig(warmup=a.warmup, duration=a.duration, batches=(1,), backends=("onnxruntime",),
                      precisions=(a.precision,), device="cpu", threads=threads, progress=False)
    bare_all: list[float] = []
    bench_p50: list[float] = []
    windows: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            bare = bare_loop(model, images, a.warmup, a.duration, threads)
            rep = run_bench(ed.path, cfg, Path(tmp) / f"round{r}")
            res = rep["results"][0]
            bare_all += bare
            bench_p50.append(res["latency_ms"]["p50"])
            windows.append((res["warmup_s"], res["measured_s"]))
            print(f"round {r + 1}: bare session.run p50 {np.percentile(bare, 50):.3f} ms ({len(bare)} calls); "
                  f"bench {res['variant']} p50 {res['latency_ms']['p50']:.3f} ms ({res['calls']} calls); "
                  f"bench warm-up {res['warmup_s']:.3f} s (asked {a.warmup:g}), measured {res['measured_s']:.3f} s (asked {a.duration:g})")
    b50, m50 = float(np.percentile(bare_all, 50)), float(np.median(bench_p50))
    print(f"bare session.run p50 {b50:.3f} ms; bench p50 {m50:.3f} ms (median of rounds); bench/bare = {m50 / b50:.3f} "
          f"({'within' if abs(m50 / b50 - 1) <= 0.05 else 'OUTSIDE'} the 5 % target)")
    worst_w = max(abs(w / a.warmup - 1) for w, _ in windows) if a.warmup > 0 else 0.0
    worst_d = max(abs(d / a.duration - 1) for _, d in windows) if a.duration > 0 else 0.0
    print(f"windows: warm-up off by at most {worst_w:.1%}, measurement off by at most {worst_d:.1%} "
          f"({'within' if max(worst_w, worst_d) <= 0.10 else 'OUTSIDE'} the 10 % target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
