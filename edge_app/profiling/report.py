"""Reports of ``bench``: the printed tables, ``bench.json`` and PNG plots, from the records of :mod:`.results`.

Plots use matplotlib's Agg backend (no display needed) and, like every file here, are written atomically.
The machine line is :mod:`.machine`'s.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_app.fsutil import atomic_write, atomic_write_json, ensure_writable_dir
from edge_app.profiling.results import ALONE_STAGES, BenchReport, CaseResult, PipelineBenchReport

LOOP_STAGES = ("capture", "preprocess", "inference", "postprocess", "overlay", "write")
PLOT_BINS_PER_DECADE = 20  # the JSON keeps the fine bins; a plot of few calls reads better coarser


def _f(v: float | None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def results_table(results: Sequence[CaseResult], baseline: str) -> str:
    """The model-only table: latency percentiles, throughput, speed-up over ``baseline`` (PyTorch fp32) and top-1."""
    header = [
        "variant",
        "batch",
        "min ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "mean ms",
        "img/s",
        f"x {baseline}",
        "top-1",
        "agree",
    ]
    rows = []
    for r in results:
        lat = r.latency_ms
        sp = r.speedup
        rows.append(
            [
                r.variant,
                str(r.batch),
                *(_f(lat[k]) for k in ("min", "p50", "p90", "p99", "max", "mean")),
                _f(r.throughput_ips, 1),
                f"{sp:.2f}x" if sp else "-",
                _f(r.accuracy_top1, 4),
                _f(r.agreement_fp32, 4),
            ]
        )
    text = _table(header, rows)
    stage_rows = [
        [r.variant, str(r.batch), name, _f(s["p50"], 3), _f(s["p99"], 3), _f(s["mean"], 3)]
        for r in results
        for name, s in r.stages_ms.items()
    ]
    if any(len(r.stages_ms) > 1 for r in results):
        text += "\n\ninternal stages reported by the engines:\n" + _table(
            ["variant", "batch", "stage", "p50 ms", "p99 ms", "mean ms"], stage_rows
        )
    return text


def pipeline_table(report: PipelineBenchReport) -> str:
    """The whole-loop table: per variant, frames/s (and its ratio to the baseline) then each stage's latency."""
    header = [
        "variant",
        "batch",
        "frames",
        "fps",
        f"x {report.baseline}",
        "top-1",
        "stage",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "mean ms",
    ]
    rows = []
    for r in report.results:
        stages = list(r.stages_ms.items()) + ([("end_to_end", r.end_to_end_ms)] if r.end_to_end_ms else [])
        for j, (name, s) in enumerate(stages):
            head = (
                [
                    r.variant,
                    str(r.batch),
                    str(r.frames),
                    _f(r.fps, 1),
                    f"{r.speedup:.2f}x" if r.speedup else "-",
                    _f(r.accuracy_top1, 4),
                ]
                if j == 0
                else [""] * 6
            )
            rows.append([*head, name, *(_f(s[k]) for k in ("p50", "p90", "p99", "max", "mean"))])
    return _table(header, rows)


def stages_alone_table(report: PipelineBenchReport) -> str:
    """Per variant: each stage run alone (wall and CPU ms per frame), the frame rate their CPU sum allows on
    the machine's cores, the loop's frame rate, and its share of that bound."""
    header = ["variant", "batch", "stage", "wall ms", "CPU ms", "allows fps", "loop fps", "share"]
    rows = []
    for r in report.results:
        alone = r.stages_alone
        if alone is None:
            continue
        names = [s for s in ALONE_STAGES if s in alone.stages]
        for j, name in enumerate(names):
            st = alone.stages[name]
            head = [r.variant, str(r.batch)] if j == 0 else ["", ""]
            label = f"{name} ({alone.decoder})" if name == "decode" and alone.decoder else name
            rows.append([*head, label, _f(st["wall"]), _f(st["cpu"]), "", "", ""])
        if "decode_pyav" in alone.stages:
            st = alone.stages["decode_pyav"]
            rows.append(["", "", "(decode with PyAV, not used)", _f(st["wall"]), _f(st["cpu"]), "", "", ""])
        rows.append(
            [
                "",
                "",
                f"sum, {alone.cores} cores" + (f", source {alone.paced_fps:g} fps" if alone.paced_fps else ""),
                "",
                _f(alone.cpu_sum_ms),
                _f(alone.cpu_bound_fps, 1),
                _f(r.fps, 1),
                _f(r.loop_efficiency, 2),
            ]
        )
    return _table(header, rows)


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write ``fig`` atomically as PNG, and close it (also when writing fails)."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display, in CI and over SSH
    import matplotlib.pyplot as plt

    return plt


def plot_latency(report: BenchReport, path: Path) -> Path:
    """Latency distribution per variant (whole-run histogram, log time axis), one panel per batch size."""
    plt = _pyplot()
    batches = sorted({r.batch for r in report.results})
    fig, axes = plt.subplots(len(batches), 1, figsize=(8, 2.8 * len(batches)), squeeze=False)
    for ax, b in zip(axes[:, 0], batches):
        for r in (r for r in report.results if r.batch == b):
            h = r.histogram
            bins = {int(k): v for k, v in h["bins"].items()}
            lo, bpd = h["lo_ms"], h["bins_per_decade"]
            # coarsen to PLOT_BINS_PER_DECADE and fill the empty bins in between, so sparse runs draw as bars
            group = max(1, bpd // PLOT_BINS_PER_DECADE)
            coarse: dict[int, int] = {}
            for i, n in bins.items():
                if 0 < i <= h.get("n_bins", i):  # the under/overflow bins have no width to draw
                    coarse[(i - 1) // group] = coarse.get((i - 1) // group, 0) + n
            if not coarse:
                continue
            idx = np.arange(min(coarse) - 1, max(coarse) + 2)
            left = lo * 10.0 ** (idx * group / bpd)
            frac = np.array([coarse.get(int(i), 0) for i in idx]) / max(1, h["count"])
            ax.step(left, frac, where="post", label=f"{r.variant} (p50 {r.latency_ms['p50']:.2f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("latency per call (ms, log scale)")
        ax.set_ylabel("fraction of calls")
        ax.set_title(f"{report.name} {report.input}, batch {b}")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_throughput(report: BenchReport, path: Path) -> Path:
    """Throughput (images/s) against batch size, one line per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for v in dict.fromkeys(r.variant for r in report.results):
        rs = sorted((r for r in report.results if r.variant == v), key=lambda r: r.batch)
        ax.plot([r.batch for r in rs], [r.throughput_ips for r in rs], marker="o", label=v)
    ax.set_xscale("log", base=2)
    batches = sorted({r.batch for r in report.results})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title(f"{report.name} {report.input}: throughput")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_stages(report: PipelineBenchReport, path: Path) -> Path:
    """Stacked bars of the mean time per stage of the frame loop, one bar per variant."""
    plt = _pyplot()
    results = report.results
    # the loop's own stages only: engine-internal ones (compute, h2d, ...) are inside "inference" already
    stages = [s for s in LOOP_STAGES if any(s in r.stages_ms for r in results)]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(results) + 3), 4.5))
    x = np.arange(len(results))
    bottom = np.zeros(len(results))
    for s in stages:
        h = np.array([r.stages_ms[s]["mean"] if s in r.stages_ms else 0.0 for r in results])
        ax.bar(x, h, bottom=bottom, label=s, width=0.6)
        bottom += h
    for xi, r, top in zip(x, results, bottom):
        ax.text(xi, top, f"{r.fps:.1f} fps", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [r.variant for r in results])
    ax.set_ylabel("mean ms per frame")
    ax.set_title(
        f"{report.name} on {report.source_name}: mean ms per frame and stage\n"
        "(stages overlap in three threads; frames/s on top)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def write_report(report: BenchReport, out: Path) -> BenchReport:
    """Write a model-only run's plots and ``bench.json`` (plots first, so the JSON can list them); returns the
    report with ``files`` (name -> path) filled in."""
    ensure_writable_dir(out)
    written = {
        "latency_png": str(plot_latency(report, out / "latency.png")),
        "throughput_png": str(plot_throughput(report, out / "throughput.png")),
    }
    report = replace(report, files={**written, "json": str(out / "bench.json")})
    atomic_write_json(out / "bench.json", _jsonable(report.to_dict()))
    return report


def write_pipeline_report(report: PipelineBenchReport, out: Path) -> PipelineBenchReport:
    """Write ``bench --pipeline``'s stacked-bar plot and ``bench.json``; returns the report with ``files``."""
    ensure_writable_dir(out)
    written = {"stages_png": str(plot_stages(report, out / "pipeline_stages.png"))}
    report = replace(report, files={**written, "json": str(out / "bench.json")})
    atomic_write_json(out / "bench.json", _jsonable(report.to_dict()))
    return report


def _jsonable(o: Any) -> Any:
    """NaN and infinity become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o
