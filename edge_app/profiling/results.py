"""The records ``bench`` hands its reports: frozen dataclasses, each with ``to_dict`` for bench.json.

Both benches (model-only and ``--pipeline``) start their report with the same :class:`BenchHeader`; a
model-only run adds :class:`CaseResult` rows, a whole-loop run :class:`LoopResult` rows (with the
:class:`StageCosts` of each stage run alone). The measuring modules build these; :mod:`.report` only reads
them, so the two never import each other in a circle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from edge_app.profiling.config import BenchConfig

BASELINE = "torch-fp32"  # the speed-up column divides by this variant: the checkpoint in PyTorch
# The loop's stages run alone, in loop order; "decode_pyav" is measured for comparison only and is not summed.
ALONE_STAGES = ("decode", "preprocess", "inference", "postprocess", "overlay", "encode", "jsonl")
STAT_KEYS = ("min", "p50", "p90", "p99", "max", "mean")  # the statistics every latency entry carries


@dataclass(frozen=True)
class Skipped:
    """A variant (or a whole backend) that was not measured, and why."""

    variant: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """bench.json's entry."""
        return asdict(self)


@dataclass(frozen=True)
class CaseResult:
    """One variant at one batch size, measured: a row of the table and an entry of bench.json's ``results``."""

    variant: str  # Variant.key, e.g. "ort-int8-cpu"
    backend: str
    precision: str
    device: str
    description: str  # the engine's own words: runtime, provider, file
    model_file: str
    batch: int
    latency_ms: Mapping[str, float]  # min, p50, p90, p99, max, mean of one call
    percentiles_exact: bool  # False once calls outnumber the window: percentiles come from the histogram
    throughput_ips: float  # images per second over the measured time
    calls: int
    measured_s: float
    slices: int
    warmup_s: float
    warmup_calls: int
    stages_ms: Mapping[str, Mapping[str, float]]  # the engine's internal stages (h2d/compute/d2h), same statistics
    accuracy_top1: float | None  # from meta.json's accuracy row of the variant
    agreement_fp32: float | None
    histogram: Mapping[str, Any]  # the whole run's latency histogram (LogHistogram.to_dict)
    speedup: float | None = None  # throughput over BASELINE's at the same batch; None without a baseline

    @property
    def rate(self) -> float:
        """What the speed-up compares: images per second."""
        return self.throughput_ips

    def to_dict(self) -> dict[str, Any]:
        """bench.json's entry."""
        return asdict(self)


@dataclass(frozen=True)
class StageCosts:
    """Milliseconds per frame of each loop stage run alone: ``{stage: {"wall": ms, "cpu": ms}}``."""

    frames: int
    cores: int
    stages: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    decoder: str = ""  # what "decode" used (the source's reader)
    paced_fps: float | None = None  # a live source delivers frames at this rate, whatever the cores allow

    @property
    def cpu_sum_ms(self) -> float:
        """CPU ms per frame of the whole loop's work (the stages of :data:`ALONE_STAGES`)."""
        return sum(self.stages[s]["cpu"] for s in ALONE_STAGES if s in self.stages)

    @property
    def cpu_bound_fps(self) -> float:
        """Frames/s the cores could give if every stage overlapped perfectly and nothing else ran (at most a
        live source's own rate: a camera or paced synthetic source cannot be read faster)."""
        bound = self.cores * 1e3 / self.cpu_sum_ms if self.cpu_sum_ms > 0 else float("nan")
        return min(bound, self.paced_fps) if self.paced_fps else bound

    def to_dict(self) -> dict[str, Any]:
        """bench.json's ``stages_alone`` entry, with the derived sum and bound."""
        return {
            "frames": self.frames,
            "cores": self.cores,
            "decoder": self.decoder,
            "paced_fps": self.paced_fps,
            "stages": {k: dict(v) for k, v in self.stages.items()},
            "cpu_sum_ms": self.cpu_sum_ms,
            "cpu_bound_fps": self.cpu_bound_fps,
        }


@dataclass(frozen=True)
class LoopResult:
    """One variant at one batch size through the whole frame loop (``bench --pipeline``), turns pooled."""

    variant: str
    backend: str
    precision: str
    device: str
    description: str
    batch: int
    frames: int
    seconds: float
    fps: float
    dropped: int
    turns: int
    warmup_s: float
    warmup_frames: int
    stages_ms: Mapping[str, Mapping[str, float]]  # the loop's stages first (LOOP_STAGES order), then the engine's
    end_to_end_ms: Mapping[str, float]  # capture to write; {} when the loop did not time it
    percentiles_exact: bool
    accuracy_top1: float | None
    agreement_fp32: float | None
    loop_mode: str
    stages_alone: StageCosts | None = None  # each stage run alone on the source's first frames
    speedup: float | None = None  # fps over BASELINE's at the same batch

    @property
    def rate(self) -> float:
        """What the speed-up compares: frames per second."""
        return self.fps

    @property
    def loop_efficiency(self) -> float | None:
        """The loop's frame rate over what its stages' CPU sum allows on these cores (None without stages alone)."""
        if self.stages_alone is None:
            return None
        return self.fps / self.stages_alone.cpu_bound_fps if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """bench.json's entry; ``stages_alone`` and ``loop_efficiency`` only when the stages ran alone."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("stages_alone", "speedup")}
        d["stages_ms"] = {k: dict(v) for k, v in self.stages_ms.items()}
        d["end_to_end_ms"] = dict(self.end_to_end_ms)
        if self.stages_alone is not None:
            d["stages_alone"] = self.stages_alone.to_dict()
            d["loop_efficiency"] = self.loop_efficiency
        d["speedup"] = self.speedup
        return d


@dataclass(frozen=True)
class BenchHeader:
    """What every bench report starts with: the engine, the settings, the machine and thread counts."""

    engine: Path
    name: str
    arch: str
    input: str  # "HxW"
    created: str
    mode: str  # "model" (run_bench) or "pipeline" (bench --pipeline)
    baseline: str
    wall_s: float
    config: BenchConfig
    machine: Mapping[str, Any]  # edge_app.profiling.machine.machine_info()
    threads: Mapping[str, int | None]  # backend -> the CPU threads it ran with (backends that take a count)

    def header_fields(self) -> dict[str, Any]:
        """The header's own fields, for building a report on it (``BenchReport(**h.header_fields(), ...)``)."""
        return {f.name: getattr(self, f.name) for f in fields(BenchHeader)}

    def to_dict(self) -> dict[str, Any]:
        """bench.json's leading keys; the config as its JSON settings (tuples as lists, no progress flag)."""
        d = self.header_fields()
        d["engine"] = str(self.engine)
        d["config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.config).items() if k != "progress"
        }
        d["machine"], d["threads"] = dict(self.machine), dict(self.threads)
        return d


@dataclass(frozen=True)
class BenchReport(BenchHeader):
    """What ``run_bench`` returns and writes as bench.json (``to_dict``), and ``print_report`` prints."""

    results: tuple[CaseResult, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # what was written: latency_png, throughput_png, json

    def to_dict(self) -> dict[str, Any]:
        """bench.json: the header, then results, skipped and files."""
        return {
            **super().to_dict(),
            "results": [r.to_dict() for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
            "files": dict(self.files),
        }


@dataclass(frozen=True)
class PipelineBenchReport(BenchHeader):
    """What ``run_pipeline_bench`` returns and writes as bench.json, and ``print_pipeline_report`` prints."""

    source: str = ""
    source_name: str = ""  # the file name (or the URI) for plot titles
    loop_mode: str = "classify"
    turn_s: float = 0.0  # seconds per turn of one variant
    results: tuple[LoopResult, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # what was written: stages_png, json

    def to_dict(self) -> dict[str, Any]:
        """bench.json: the header, the source and turn, then results, skipped and files."""
        return {
            **super().to_dict(),
            "source": self.source,
            "source_name": self.source_name,
            "loop_mode": self.loop_mode,
            "turn_s": self.turn_s,
            "results": [r.to_dict() for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
            "files": dict(self.files),
        }


R = TypeVar("R", CaseResult, LoopResult)


def add_ratios(results: Sequence[R]) -> list[R]:
    """``results`` with ``speedup``: rate over the PyTorch fp32 baseline's at the same batch (None without one)."""
    base = {r.batch: r.rate for r in results if r.variant == BASELINE}
    return [replace(r, speedup=r.rate / base[r.batch] if base.get(r.batch) else None) for r in results]
