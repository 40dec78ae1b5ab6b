"""The plan cache: keys, file paths, which recorded plan fits a request, and the measured precision choice.

Plans live in ``engines/NAME/plans/<key>.plan`` beside ``<key>.layers.json`` (the engine inspector's layer
information); the key names precision, batch profile, DLA core, GPU identity, TensorRT version, workspace,
optimisation level and the ONNX file's hash. A plan is only ever looked up by the running machine's key, so
a plan from another GPU or TensorRT version is never loaded. Timing caches are per GPU identity and TensorRT
version in the same folder, so a folder shared between machines (NFS, a copied engine) keeps one per GPU.
Nothing here touches TensorRT or CUDA.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.runtime.cuda import DeviceInfo
from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec
from edge_app.runtime.tensorrt.support import MIN_SM

log = logging.getLogger(__name__)

# Throughput (annotate, bench) and tiles fit in 32 per call; opt 8 is a typical tiles grid.
DEFAULT_BATCH = BatchRange(1, 8, 32)
# DLA runs static shapes only: a DLA plan holds one batch size; live video on Jetson runs batch 1.
DEFAULT_DLA_BATCH = 1
USES = ("latency", "throughput")


# ------------------------------------------------------------------------------------------------ keys and paths
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def gpu_identity(device: DeviceInfo) -> str:
    """'nvidia-geforce-rtx-4090_sm89x128': name, compute capability, SM count (and -mig for a MIG slice).

    The name and compute capability alone do not tell every Jetson Orin apart ("Orin", sm 8.7, 4 to 16 SMs)
    nor a MIG slice from its whole GPU; the SM count does, and plans are tuned to it.
    """
    return f"{_slug(device.name)}_sm{device.sm}x{device.sm_count}{'-mig' if device.mig else ''}"


def _num(x: float) -> str:
    return f"{x:g}".replace("+", "")


def plan_key(trt_version: str, device: DeviceInfo, spec: BuildSpec, onnx_sha256: str) -> str:
    """File-name-safe key of every setting that changes a plan: precision, batch profile, DLA core, GPU identity
    (name, compute capability, SM count, MIG), TensorRT version, workspace, optimisation level and the ONNX hash.

    Plans are not portable across TensorRT versions or GPUs, and a plan built with other settings is another
    plan, so anything that would change it is part of its name; a plan is only ever looked up by the key
    of the running machine and the settings asked for (``build --workspace 4`` after a 2 GiB build rebuilds).
    """
    b = spec.batch
    where = f"dla{spec.dla_core}" if spec.dla_core is not None else "gpu"
    return (
        f"{spec.precision}_b{b.min}-{b.opt}-{b.max}_{where}_{gpu_identity(device)}"
        f"_trt{trt_version}_ws{_num(spec.workspace_gib)}_o{spec.opt_level}_{onnx_sha256[:10]}"
    )


def plan_path(ed: EngineDir, key: str) -> Path:
    """Where the plan of ``key`` lives."""
    return ed.plans_dir / f"{key}.plan"


def layer_info_path(ed: EngineDir, key: str) -> Path:
    """The engine inspector's JSON layer information of plan ``key``, written beside it at build time."""
    return ed.plans_dir / f"{key}.layers.json"


def timing_cache_path(ed: EngineDir, trt_version: str, device: DeviceInfo) -> Path:
    """The timing cache of this GPU identity and TensorRT version; every build of the folder on it shares it.

    One file per GPU and TensorRT version: a cache from another GPU is rejected by TensorRT anyway, and two
    machines building into one folder would otherwise throw each other's timings away on every build.
    """
    return ed.plans_dir / f"timing_{gpu_identity(device)}_trt{trt_version}.cache"


# ------------------------------------------------------------------------------------------------ records
def spec_of(rec: dict[str, Any]) -> BuildSpec | None:
    """The BuildSpec a meta.json build record was made with; None for a record this version cannot read."""
    try:
        return BuildSpec(
            rec["precision"],
            BatchRange(*rec["batch"]),
            rec.get("dla_core"),
            float(rec.get("workspace_gib", 2.0)),
            int(rec.get("opt_level", 3)),
        )
    except (KeyError, TypeError, ValueError, UserError):
        return None


def plans_here(
    meta: EngineMeta, trt_version: str, device: DeviceInfo, precision: str, onnx_sha: str, dla_core: int | None
) -> dict[str, BuildSpec]:
    """{key: spec} of the plans built for exactly this machine (TensorRT, GPU identity), precision, ONNX and DLA choice.

    A record counts only when the key recomputed from it and the running machine is its own key, so a plan
    from another GPU, SM count, MIG slice or TensorRT version is never picked, whatever the record says.
    """
    found = {}
    for key, rec in meta.builds.items():
        spec = spec_of(rec)
        if (
            spec is not None
            and spec.precision == precision
            and spec.dla_core == dla_core
            and plan_key(trt_version, device, spec, onnx_sha) == key
        ):
            found[key] = spec
    return found


def intact(ed: EngineDir, meta: EngineMeta, key: str) -> bool:
    """Whether plan ``key`` exists and matches the sha256 recorded when it was built."""
    path = plan_path(ed, key)
    if not path.is_file():
        return False
    want = meta.builds.get(key, {}).get("plan_sha256")
    if want and sha256_file(path) != want:
        log.warning(
            "plan %s does not match the sha256 recorded at build time (truncated or damaged); rebuilding", path.name
        )
        return False
    return True


# ------------------------------------------------------------------------------------------------ selection
def wanted_batch(want: int | None, use: str) -> int | None:
    """The batch the plan should be tuned for: live (latency) runs one frame per call unless told otherwise."""
    if use not in USES:
        raise UserError(f"use '{use}' is unknown; choose one of {', '.join(USES)}")
    return want if want is not None or use == "throughput" else 1


def select_plan(plans: dict[str, BuildSpec], want: int | None) -> str | None:
    """The plan whose [min, max] batch holds ``want``: the one tuned closest to it (opt), then the narrowest.

    With no batch asked for (throughput without a batch), a plan holding batch 1 with the widest range.
    Never a plan that cannot run the batch asked for, however wide its maximum.
    """
    n = want if want is not None else 1
    held = [(k, s) for k, s in plans.items() if s.holds(n)]
    if not held:
        return None
    if want is None:
        return max(held, key=lambda ks: (ks[1].batch.max, ks[0]))[0]
    return min(held, key=lambda ks: (abs(ks[1].batch.opt - n), ks[1].batch.max - ks[1].batch.min, ks[0]))[0]


def default_batch(want: int | None, dla_core: int | None, use: str = "throughput") -> BatchRange:
    """The profile to build when no plan fits: fixed for DLA; opt = the batch for latency; else DEFAULT_BATCH."""
    if dla_core is not None:
        n = want or DEFAULT_DLA_BATCH
        return BatchRange(n, n, n)
    if use == "latency" and want is not None:
        # TensorRT picks kernels for opt: live tunes for the batch it will really run (1 for one camera).
        return BatchRange(1, want, max(want, DEFAULT_BATCH.max))
    if want is None or DEFAULT_BATCH.min <= want <= DEFAULT_BATCH.max:
        return DEFAULT_BATCH
    return BatchRange(1, want, want)


# ------------------------------------------------------------------------------------------------ precision choice
def candidate_precisions(ed: EngineDir, device: DeviceInfo, dla_core: int | None) -> list[str]:
    """Precisions this folder has ONNX for and this GPU (or DLA) runs fast, fastest in principle first."""
    found = []
    for prec in ("int8", "fp16", "fp32"):
        if prec == "fp32" and dla_core is not None:
            continue  # DLA runs FP16/INT8 only
        if (prec == "fp32" or ed.onnx_path(prec, "trt").is_file()) and device.compute_capability >= MIN_SM[prec]:
            found.append(prec)
    return found


def _onnx_sha(ed: EngineDir, meta: EngineMeta, prec: str) -> str:
    path = ed.onnx_path(prec, "trt")
    return meta.files.get(path.name) or (sha256_file(path) if path.is_file() else "")


def measured_ms(
    ed: EngineDir, meta: EngineMeta, trt_version: str, device: DeviceInfo, dla_core: int | None, want: int | None
) -> tuple[int, dict[str, float]]:
    """(batch, {precision: median ms per call}) of the timed runs recorded for this machine and these ONNX files.

    Timings are compared at one batch size only (per-image time falls with batch): the batch measured for the
    most precisions, the one asked for winning a tie.
    """
    by_batch: dict[int, dict[str, float]] = {}
    for prec in candidate_precisions(ed, device, dla_core):
        sha = _onnx_sha(ed, meta, prec)
        for key in plans_here(meta, trt_version, device, prec, sha, dla_core):
            t = meta.builds[key].get("timing") or {}
            if isinstance(t.get("median_ms"), (int, float)) and isinstance(t.get("batch"), int):
                row = by_batch.setdefault(t["batch"], {})
                row[prec] = min(row.get(prec, float("inf")), float(t["median_ms"]))
    if not by_batch:
        return 0, {}
    n = want or 1
    batch = max(by_batch, key=lambda b: (len(by_batch[b]), b == n, -abs(b - n)))
    return batch, by_batch[batch]


def auto_precision(
    ed: EngineDir,
    meta: EngineMeta,
    trt_version: str,
    device: DeviceInfo,
    dla_core: int | None = None,
    want: int | None = None,
) -> tuple[str, str]:
    """(precision, why): the fastest precision measured on this GPU; before any timing, int8 > fp16 > fp32."""
    cands = candidate_precisions(ed, device, dla_core)
    if not cands:
        raise UserError(
            f"no precision of '{ed.path}' runs on DLA {dla_core}: DLA needs model.fp16.onnx or model.int8.trt.onnx; "
            f"run `python run.py calibrate {ed.path}`"
        )
    batch, ms = measured_ms(ed, meta, trt_version, device, dla_core, want)
    if ms:
        best = min(ms, key=lambda p: ms[p])
        table = ", ".join(f"{p} {v:.3f}" for p, v in sorted(ms.items(), key=lambda pv: pv[1]))
        unmeasured = [p for p in cands if p not in ms]
        return best, (
            f"fastest measured on this GPU at batch {batch} ({table} ms per call)"
            + (f"; not measured: {', '.join(unmeasured)}" if unmeasured else "")
        )
    return cands[0], (
        f"{cands[0]}: nothing measured on this GPU yet, so the first of {' > '.join(cands)} "
        f"(each `python run.py build {ed.path} --precision P` records a timed run)"
    )
