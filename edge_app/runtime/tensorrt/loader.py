"""Build or load the plan for this machine: ``build`` is what ``run.py build`` calls, ``open_tensorrt`` what
``open_engine`` calls.

A build leaves evidence beside the plan, as trtexec's ``--dumpLayerInfo`` and its timing summary do: the
engine inspector's layer information (``<key>.layers.json``), the count of INT8 / FP16 / FP32 (and DLA)
layers, and a short timed run (warm-up, then 50 enqueues) in the meta.json build record. ``--precision auto``
then picks the precision that was fastest on this GPU. A plan is checked against the sha256 recorded in
meta.json and rebuilt when TensorRT cannot deserialize it, so a truncated plan never crashes the app.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_bytes, sha256_bytes, sha256_file
from edge_app.runtime.tensorrt import plans
from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec, build_plan, onnx_for
from edge_app.runtime.tensorrt.layers import count_layers
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx
from edge_app.runtime.tensorrt.runner import PlanError, TensorRTEngine
from edge_app.runtime.tensorrt.support import Machine, check_dla_supported, check_precision_supported

log = logging.getLogger(__name__)

TIMED_WARMUP, TIMED_RUNS = 10, 50  # a short timed run per plan: enough for a stable median, under a second


def _evidence(ed: EngineDir, meta: EngineMeta, spec: BuildSpec, plan: bytes, m: Machine, key: str) -> dict[str, Any]:
    """Layer counts, the layer-information file and a timed run of a fresh plan, for its build record.

    A failure here never loses the finished plan: the record says what could not be measured and why.
    """
    out: dict[str, Any] = {}
    try:
        with TensorRTEngine(ed, meta, spec.precision, plan, m.trt, m.cuda, spec.dla_core) as eng:
            info = eng.layer_info()
            path = atomic_write_bytes(plans.layer_info_path(ed, key), info.encode())
            out["layer_info"] = f"plans/{path.name}"
            out["layers"] = count_layers(info)
            out["timing"] = eng.measure(spec.batch.opt, TIMED_WARMUP, TIMED_RUNS)
    except Exception as e:  # noqa: BLE001 - evidence is best effort; the plan itself was built and saved
        log.warning("could not inspect or time the new plan %s: %s: %s", key, type(e).__name__, e)
        out.setdefault("layers", {})
        out["timing"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def build(
    ed: EngineDir,
    spec: BuildSpec,
    machine: Machine | None = None,
    force: bool = False,
    emit: Callable[[str], None] = print,
    verbose: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the plan for ``spec`` on this machine; returns its meta.json build record plus 'key' and
    'cached'. Print it with :func:`edge_app.runtime.tensorrt.layers.format_build`."""
    meta = ed.load_meta()  # folder and ONNX first: a user error there is the one to report on any machine
    onnx = onnx_for(ed, spec.precision)
    require_trt_onnx(onnx)  # the parser's rules, checked without TensorRT: a clear sentence before a long build
    m = machine or Machine.detect()
    check_precision_supported(m.device, spec.precision)
    check_dla_supported(m.trt.__version__, spec.dla_core)
    onnx_sha = sha256_file(onnx)
    key = plans.plan_key(m.trt.__version__, m.device, spec, onnx_sha)
    if not force and plans.intact(ed, meta, key):
        return {**meta.builds.get(key, {}), "key": key, "cached": True}
    tc_path = plans.timing_cache_path(ed, m.trt.__version__, m.device)
    timing = tc_path.read_bytes() if tc_path.is_file() else b""
    emit(
        f"building TensorRT {m.trt.__version__} {spec.precision} plan for {m.device.name} (batch {spec.batch}"
        f"{f', DLA {spec.dla_core}' if spec.dla_core is not None else ''}) from {onnx.name}; this happens once per GPU and TensorRT version"
    )
    t0 = time.perf_counter()
    # The timing cache is merged into the file under a lock, so parallel builds keep each other's timings.
    plan, cache = build_plan(m.trt, onnx, spec, timing, emit, verbose, cache_path=tc_path)
    seconds = time.perf_counter() - t0
    evidence = _evidence(ed, meta, spec, plan, m, key)
    counts = evidence["layers"]
    if spec.dla_core is not None and counts.get("detailed") and counts.get("dla", 0) == 0:
        # GPU fallback moved every layer off the DLA: a plan keyed dla0 that never uses it must not be kept.
        plans.layer_info_path(ed, key).unlink(missing_ok=True)
        raise UserError(
            f"--dla {spec.dla_core}: TensorRT placed none of the {counts['layers']} layers on DLA (all fell back to "
            f"the GPU), so no plan was kept; build without --dla, or see the DLA layer support list for {onnx.name}"
        )
    path = atomic_write_bytes(plans.plan_path(ed, key), plan)
    record = {
        "precision": spec.precision,
        "batch": [spec.batch.min, spec.batch.opt, spec.batch.max],
        "dla_core": spec.dla_core,
        "workspace_gib": spec.workspace_gib,
        "opt_level": spec.opt_level,
        "trt_version": m.trt.__version__,
        "gpu": m.device.name,
        "sm": m.device.sm,
        "sm_count": m.device.sm_count,
        "mig": m.device.mig,
        "onnx": onnx.name,
        "onnx_sha256": onnx_sha,
        "plan": f"plans/{path.name}",
        "plan_sha256": sha256_bytes(plan),
        "plan_bytes": len(plan),
        "timing_cache": f"plans/{tc_path.name}",
        "timing_cache_bytes": len(cache),
        "build_s": round(seconds, 2),
        "built": now_iso(),
        **evidence,
    }
    meta = ed.load_meta()  # re-read: another command may have updated meta.json during a minutes-long build
    meta.builds[key] = record
    ed.save_meta(meta)
    emit(f"built {path} ({len(plan) / 1e6:.1f} MB) in {seconds:.1f} s")
    return {**record, "key": key, "cached": False}


def _no_plan_error(
    ed: EngineDir, meta: EngineMeta, m: Machine, prec: str, spec: BuildSpec, here: dict[str, BuildSpec], want: Any
) -> UserError:
    here_id = (m.trt.__version__, m.device.name, m.device.sm_count)
    others = sorted(
        {
            f"TensorRT {r.get('trt_version')} on {r.get('gpu')}"
            for r in meta.builds.values()
            if (r.get("trt_version"), r.get("gpu"), r.get("sm_count")) != here_id
        }
    )
    ranges = sorted(f"{s.batch.min} to {s.batch.max}" for s in here.values())
    dla = spec.dla_core
    return UserError(
        f"no {prec} plan{f' holding batch {want}' if want is not None else ''}{f' on DLA {dla}' if dla is not None else ''} "
        f"for TensorRT {m.trt.__version__} on {m.device.name} in '{ed.plans_dir}'"
        + (f" (this GPU's plans take batch {', '.join(ranges)})" if ranges else "")
        + (f" (plans exist for {', '.join(others)}, which are never loaded here)" if others else "")
        + f"; run `python run.py build {ed.path} --precision {prec} --batch {spec.batch}"
        + (f" --dla {dla}" if dla is not None else "")
        + "` or drop --no-build"
    )


def open_tensorrt(
    ed: EngineDir,
    meta: EngineMeta,
    precision: str = "auto",
    batch: BatchRange | int | None = None,
    dla_core: int | None = None,
    no_build: bool = False,
    cuda_graphs: bool = False,
    machine: Machine | None = None,
    emit: Callable[[str], None] = print,
    use: str = "throughput",
    mapped_memory: bool = False,
) -> TensorRTEngine:
    """The engine for this machine: load the matching plan, building it first when missing (unless ``no_build``).

    ``batch``: a BatchRange opens (or builds) exactly that profile; an int opens a plan whose [min, max]
    holds that batch size (building one when none does). ``use='latency'`` (live) wants a plan tuned for the
    batch it runs (opt 1 for one camera) and builds one when only others exist; ``'throughput'`` takes any
    plan holding the batch. With ``dla_core`` only plans built for that DLA core, fixed-shape. The engine's
    ``choice`` names the precision (and why) and the profile used.
    """
    m = machine or Machine.detect()
    if mapped_memory and not m.device.integrated:
        # Zero-copy pays off only where host and GPU share DRAM; on a discrete GPU every access crosses PCIe.
        emit(f"mapped host memory is for integrated GPUs (Jetson); {m.device.name} is discrete, so copies are used")
        mapped_memory = False
    want = plans.wanted_batch(batch if isinstance(batch, int) else None, use)
    why = ""
    if precision == "auto":
        precision, why = plans.auto_precision(ed, meta, m.trt.__version__, m.device, dla_core, want)
    prec = precision
    check_precision_supported(m.device, prec)
    onnx_sha = sha256_file(onnx_for(ed, prec))
    here = plans.plans_here(meta, m.trt.__version__, m.device, prec, onnx_sha, dla_core)
    if isinstance(batch, BatchRange):
        spec = BuildSpec(prec, batch, dla_core)
    else:
        key = plans.select_plan(here, want)
        tuned = key and (use != "latency" or dla_core is not None or here[key].batch.opt == want)
        if key and not tuned and no_build:
            emit(
                f"no {prec} plan tuned for batch {want} (opt); using {here[key].batch}, built for batch "
                f"{here[key].batch.opt} (build one with --batch 1:{want}:{max(want or 1, 32)})"
            )
            tuned = True
        spec = here[key] if key and tuned else BuildSpec(prec, plans.default_batch(want, dla_core, use), dla_core)
    key = plans.plan_key(m.trt.__version__, m.device, spec, onnx_sha)
    for attempt in range(2):
        if not plans.intact(ed, meta, key):
            if no_build:
                raise _no_plan_error(ed, meta, m, prec, spec, here, batch if isinstance(batch, int) else None)
            build(ed, spec, m, force=True, emit=emit)
            meta = ed.load_meta()
        path = plans.plan_path(ed, key)
        try:
            eng = TensorRTEngine(
                ed, meta, prec, path.read_bytes(), m.trt, m.cuda, dla_core, cuda_graphs, path.name, mapped_memory
            )
        except PlanError as e:
            if attempt or no_build:
                raise UserError(
                    f"plan '{path}' cannot be loaded ({e}); delete it and run `python run.py build {ed.path}`"
                ) from None
            emit(f"plan {path.name} could not be deserialized ({e}); rebuilding it")
            path.unlink(missing_ok=True)
            continue
        lo, opt, hi = eng.profile
        eng.choice = (
            f"tensorrt {prec}{f' ({why})' if why else ''}; profile {lo}:{opt}:{hi} (tuned for batch {opt}, {use})"
            + ("; mapped host memory" if eng.mapped_memory else "")
        )
        return eng
    raise AssertionError("unreachable")  # the loop either returns or raises
