"""Which backend x precision x device variants ``bench`` times, and opening them through ``open_engine``.

Every variant comes from a backend descriptor (:mod:`edge_app.runtime.registry`); nothing here names a
backend. Variants open through the same door ``live`` and ``annotate`` use, so the numbers are theirs.
"""

from __future__ import annotations

from pathlib import Path

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import FieldError, UserError
from edge_app.profiling.config import BenchConfig
from edge_app.profiling.results import BASELINE, Skipped
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Variant, backends, has_variant_file


def discover_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[Skipped]]:
    """Every variant this machine can run for ``ed`` (from each backend's descriptor), and the ones left out with why."""
    wanted = [b for b in backends() if cfg.backends is None or b.name in cfg.backends]
    devices = ("cuda", "cpu") if cfg.device == "auto" else ("cuda",) if cfg.device.startswith("cuda") else (cfg.device,)
    skipped: list[Skipped] = []
    variants: list[Variant] = []
    seen: set[str] = set()
    for b in wanted:
        reasons = []
        for dev in (d for d in devices if d in b.devices):
            ok, why = b.available(dev)
            if not ok:
                reasons.append(f"{dev}: {why}")
                continue
            for v in b.variants(ed, dev):
                if cfg.precisions is not None and v.precision not in cfg.precisions:
                    continue
                if v.key in seen:  # the same key on a later device (torch-fp32 on the CPU after CUDA): keep the first
                    continue
                seen.add(v.key)
                if not has_variant_file(ed, v):
                    skipped.append(Skipped(v.key, f"{v.file} is missing" + (f"; {v.hint}" if v.hint else "")))
                    continue
                variants.append(v)
            reasons = []  # one usable device is enough: the others are not "skipped", just absent
        if reasons:
            why = "; ".join(reasons)
            if cfg.backends is not None:  # named explicitly: the user expects it, so say how to get it
                raise FieldError(
                    "backends", b.name, f"is not available here ({why}); {b.install_hint}, or leave {b.name} out"
                )
            skipped.append(Skipped(b.name, why))
    variants.sort(key=lambda v: v.key != BASELINE)  # the baseline first, then registry order (stable sort)
    return variants, skipped


def runnable_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[Skipped]]:
    """``discover_variants``, or a UserError naming why nothing can run here."""
    variants, skipped = discover_variants(ed, cfg)
    if not variants:
        why = "; ".join(f"{s.variant}: {s.reason}" for s in skipped) or "nothing matched the backends and precisions"
        raise UserError(
            f"no variant of '{ed.path}' can run here ({why}); `python run.py doctor` says what to install, "
            "or pick other backends/precisions"
        )
    return variants, skipped


def accuracy_of(meta: EngineMeta, v: Variant) -> float | None:
    """The variant's validation top-1 from meta.json's accuracy row, or None when it was not measured."""
    entry = meta.accuracy.get(v.accuracy_key)
    return float(entry.top1) if entry is not None and entry.top1 is not None else None


def agreement_of(meta: EngineMeta, v: Variant) -> float | None:
    """Share of images where the variant's top-1 class matches fp32's (calibrate measures it), or None."""
    entry = meta.accuracy.get(v.accuracy_key)
    return float(entry.agreement) if entry is not None and entry.agreement is not None else None


def check_batches(ed: EngineDir, v: Variant, eng: Engine, batches: tuple[int, ...]) -> None:
    """Refuse, before measuring anything, a batch beyond the engine's optimisation profile."""
    too_big = [b for b in batches if eng.max_batch is not None and b > eng.max_batch]
    if too_big:
        b = max(too_big)
        # Only engines with a fixed optimisation profile (a built plan) have a maximum, so the rebuild named is
        # the plan build, without asking which backend this is.
        raise FieldError(
            "batches",
            str(b),
            f"exceeds the {v.key} engine's profile maximum of {eng.max_batch}; use batch sizes up to "
            f"{eng.max_batch}, build a plan for it (`python run.py build {ed.path} --precision {v.precision} "
            f"--batch 1:{b}:{b}`), or leave {v.backend} out",
        )


def open_variant(path: Path, v: Variant, cfg: BenchConfig, use: str = "throughput") -> Engine:
    """Open one variant through ``open_engine``, the same door ``live`` and ``annotate`` use.

    ``cfg.threads`` reaches every backend that takes a thread count (PyTorch's is process-wide), so a
    comparison at N threads is like for like.
    """
    from edge_app.runtime import open_engine

    # No ONNX Runtime thread spinning: spinning workers would steal the cores from the next variant's slice.
    return open_engine(
        path,
        v.backend,
        v.precision,
        v.device,
        threads=cfg.threads,
        spinning=False,
        use=use,
        dla_core=cfg.dla_core,
        cuda_graphs=cfg.cuda_graphs,
        no_build=cfg.no_build,
    )


def open_variants(
    ed: EngineDir, variants: list[Variant], cfg: BenchConfig, engines: list[tuple[Variant, Engine]]
) -> None:
    """Open each variant into ``engines`` and check its batch range; the caller closes ``engines``, also on error."""
    for v in variants:
        eng = open_variant(ed.path, v, cfg)
        engines.append((v, eng))
        check_batches(ed, v, eng, cfg.batches)


def batch_use(batch: int) -> str:
    """How a batch size is timed: batch 1 as ``live`` runs it (latency), larger ones as ``annotate`` (throughput)."""
    return "latency" if batch == 1 else "throughput"


def engine_for_use(
    path: Path, v: Variant, eng: Engine, use: str, cfg: BenchConfig, reopened: dict[tuple[str, str], Engine]
) -> Engine:
    """``eng``, or the variant opened for ``use`` when its backend compiles per use (kept in ``reopened``,
    which the caller closes)."""
    if not eng.use_sensitive or getattr(eng, "use", use) == use:
        return eng
    key = (v.key, use)
    if key not in reopened:
        reopened[key] = open_variant(path, v, cfg, use)
    return reopened[key]


__all__ = [
    "Variant",
    "discover_variants",
    "runnable_variants",
    "accuracy_of",
    "agreement_of",
    "check_batches",
    "open_variant",
    "open_variants",
    "batch_use",
    "engine_for_use",
]
