"""Check `bench`'s own overhead and windows: its ONNX Runtime p50 against a bare ``session.run`` loop.

Both run in this one process on the same model, input and session settings, alternating in short rounds so
that machine noise hits both alike (the median of the per-round ratios), then once more with both inside bench's
own round-robin (0.1 s slices), which cancels load changes best. Prints the p50s and their ratios (target:
within 5 %), and how long the warm-up and measurement windows really lasted against what was asked (target:
within 10 %).

    .venv/bin/python scripts/bench_overhead.py engines/r18-224 --duration 2 --rounds 5
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

from edge_app.engine_dir import EngineDir  # noqa: E402
from edge_app.profiling.bench import BenchConfig, Case, measure, open_variant, run_bench  # noqa: E402
from edge_app.runtime.registry import Variant  # noqa: E402
from edge_app.timing import StageTimer  # noqa: E402


def make_session(model: Path, threads: int):  # noqa: ANN201 - onnxruntime.InferenceSession
    """An InferenceSession with the settings bench opens edge_app's ONNX Runtime backend with (no spinning)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


class BareSession:
    """Just ``session.run``: no input checks, no conversions; what bench's engine path is compared with."""

    device, model_file, description = "cpu", "", "bare session.run"

    def __init__(self, model: Path, threads: int) -> None:
        self.sess = make_session(model, threads)
        self.name, self.out = self.sess.get_inputs()[0].name, self.sess.get_outputs()[0].name
        self.last_timings: dict[str, float] = {}

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.sess.run([self.out], {self.name: images})[0]


def interleaved(ed: EngineDir, model: Path, images: np.ndarray, cfg: BenchConfig, threads: int) -> tuple[float, float]:
    """p50 of bench's engine path and of a bare session, measured by bench's own interleaved loop side by side."""
    v = Variant(
        "ort-" + cfg.precisions[0] + ("-cpu" if cfg.precisions[0] == "int8" else ""),
        "onnxruntime",
        cfg.precisions[0],
        "cpu",
    )
    eng = open_variant(ed.path, v, cfg)
    cases = [
        Case(v, eng, 1, StageTimer(cfg.window)),
        Case(
            Variant("bare", "onnxruntime", cfg.precisions[0], "cpu"),
            BareSession(model, threads),
            1,
            StageTimer(cfg.window),
        ),
    ]  # type: ignore[arg-type]
    measure(cases, images, cfg)
    eng.close()
    return cases[0].timer.stats["latency"].percentile(50), cases[1].timer.stats["latency"].percentile(50)


def bare_loop(model: Path, images: np.ndarray, warmup: float, duration: float, threads: int) -> list[float]:
    """Milliseconds per ``session.run`` after ``warmup`` seconds, for ``duration`` seconds; nothing else in the loop."""
    sess = make_session(model, threads)
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
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    a = p.parse_args()
    ed = EngineDir(a.engine)
    meta = ed.load_meta()
    model = ed.onnx_path("fp32") if a.precision == "fp32" else ed.onnx_path("int8", "cpu")
    threads = os.cpu_count() or 1
    # bench draws its batch from default_rng(seed=0); use the very same images
    images = np.random.default_rng(0).integers(0, 256, (1, meta.input.height, meta.input.width, 3), dtype=np.uint8)
    cfg = BenchConfig(
        warmup=a.warmup,
        duration=a.duration,
        batches=(1,),
        backends=("onnxruntime",),
        precisions=(a.precision,),
        device="cpu",
        threads=threads,
        progress=False,
    )
    ratios: list[float] = []
    windows: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            bare = float(np.percentile(bare_loop(model, images, a.warmup, a.duration, threads), 50))
            rep = run_bench(ed.path, cfg, Path(tmp) / f"round{r}")
            res = rep.results[0]
            ratios.append(res.latency_ms["p50"] / bare)
            windows.append((res.warmup_s, res.measured_s))
            print(
                f"round {r + 1}: bare session.run p50 {bare:.3f} ms; bench {res.variant} p50 {res.latency_ms['p50']:.3f} ms "
                f"({res.calls} calls); ratio {ratios[-1]:.3f}; bench warm-up {res.warmup_s:.3f} s (asked {a.warmup:g}), "
                f"measured {res.measured_s:.3f} s (asked {a.duration:g})"
            )
    # rounds are paired (bare then bench, seconds apart), so the median of per-round ratios cancels slow drifts in load
    med = float(np.median(ratios))
    print(
        f"bench p50 / bare session.run p50: median over {a.rounds} rounds {med:.3f} "
        f"({'within' if abs(med - 1) <= 0.05 else 'OUTSIDE'} the 5 % target); per round: {', '.join(f'{x:.3f}' for x in ratios)}"
    )
    # the same comparison with both sides in bench's round-robin: load changes hit both within 0.1 s
    eng50, bare50 = interleaved(
        ed, model, images, BenchConfig(**{**vars(cfg), "duration": a.duration * a.rounds}), threads
    )
    print(
        f"interleaved in 0.1 s slices for {a.duration * a.rounds:g} s each: bench engine path p50 {eng50:.3f} ms, bare session.run "
        f"p50 {bare50:.3f} ms, ratio {eng50 / bare50:.3f} ({'within' if abs(eng50 / bare50 - 1) <= 0.05 else 'OUTSIDE'} the 5 % target)"
    )
    worst_w = max(abs(w / a.warmup - 1) for w, _ in windows) if a.warmup > 0 else 0.0
    worst_d = max(abs(d / a.duration - 1) for _, d in windows) if a.duration > 0 else 0.0
    print(
        f"windows: warm-up off by at most {worst_w:.1%}, measurement off by at most {worst_d:.1%} "
        f"({'within' if max(worst_w, worst_d) <= 0.10 else 'OUTSIDE'} the 10 % target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
