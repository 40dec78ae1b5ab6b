"""Contract scenarios run against the REAL TensorRT bindings, in a subprocess (see test_tensorrt_contract.py).

Usage: ``PYTHONPATH=<unpacked wheel>:<repo> python -m tests.runtime.trt_stub.driver OUT.json``. Each
scenario drives edge_app's build / run / plan-cache code with doubles of the real classes (doubles.py)
and a numpy-backed CudaRuntime; the JSON holds, per scenario, ok/error and facts the tests check, plus
the TensorRT version, the version branch taken and every TensorRT API touched.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tests.runtime.trt_stub import gpu_path
from tests.runtime.trt_stub.world import CLASSES, H, W, World, dla_layers, engine_folder, expected_logits, has_dla

SCENARIOS = [
    "build_fp16",
    "parse_errors_in_full",
    "build_failure_reports_log",
    "dla_with_gpu_fallback",
    "dla_missing",
    "timing_cache_mismatch",
    "runner_fp16_output",
    "runner_cuda_graphs",
    "runner_rejects_corrupt_plan",
    "cache_builds_once_then_loads",
    "cache_rebuilds_truncated_plan",
    "cache_rebuilds_undeserializable_plan",
    "cache_never_loads_other_version",
    "no_build_is_a_clear_error",
    "missing_onnx_names_calibrate",
    "unsupported_precision_on_gpu",
    "runner_on_dla",
    "doubles_have_teeth",
    "runner_cuda_graph_capture_fails",
    "cache_picks_the_plan_holding_the_batch",
    "cache_rebuilds_for_other_settings",
    "dla_plan_is_fixed_shape_and_found",
    "timing_cache_is_merged_under_a_lock",
    "opt_level_reaches_the_config",
    "runner_names_both_profile_bounds",
    *gpu_path.SCENARIOS,
]


# ------------------------------------------------------------------------------------------------ scenarios
def build_fp16(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec, build_plan

    w = World(trt)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    lines: list[str] = []
    plan, cache = build_plan(w.trt, onnx, BuildSpec("fp16", BatchRange(1, 4, 8), workspace_gib=1.5), b"", lines.append)
    assert (plan, cache) == (b"PLAN-BYTES", b"TIMING"), (plan, cache)
    (flags,), _ = w.builder.called("create_network")[0]
    strongly = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    facts["network_flags"] = "STRONGLY_TYPED" if flags == strongly else str(flags)
    assert flags == (strongly if trt.__version__.startswith("10.") else 0), flags
    (pool, size), _ = w.config.called("set_memory_pool_limit")[0]
    assert pool == trt.MemoryPoolType.WORKSPACE and size == int(1.5 * (1 << 30))
    (name, lo, opt, hi), _ = w.profile.called("set_shape")[0]
    assert name == "images" and (tuple(lo), tuple(opt), tuple(hi)) == ((1, H, W, 3), (4, H, W, 3), (8, H, W, 3))
    assert w.config.called("add_optimization_profile")[0][0] == (w.profile,)
    assert w.config.called("set_flag") == [], "no precision flags: the network is strongly typed"
    assert w.config._props["profiling_verbosity"] == trt.ProfilingVerbosity.DETAILED, "layer info needs DETAILED"
    mon = w.config._props["progress_monitor"]
    assert isinstance(mon, trt.IProgressMonitor)
    mon.phase_start("Building engine", None, 3)
    mon.phase_start("Tactic search", "Building engine", 10)
    mon.phase_start("per-tactic detail", "Tactic search", 2)
    assert mon.step_complete("Building engine", 1) is True
    mon.phase_finish("Building engine")
    assert len(lines) == 2 and "Building engine (3 steps)" in lines[0] and "  Tactic search" in lines[1], lines
    assert isinstance(w.loggers[0], trt.ILogger)


def parse_errors_in_full(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt.builder import BuildError, BuildSpec, build_plan

    w = World(trt, parse_ok=False)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    try:
        build_plan(w.trt, onnx, BuildSpec("fp32"), b"", lambda s: None)
    except BuildError as e:
        msg = str(e)
    else:
        raise AssertionError("no BuildError")
    assert "2 error(s)" in msg and "full text of error 0" in msg and "full text of error 1" in msg, msg
    assert w.parser.called("parse")[0][0] == (b"onnx", str(onnx))


def build_failure_reports_log(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt.builder import BuildError, BuildSpec, build_plan

    w = World(trt, plan=None)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    try:
        build_plan(w.trt, onnx, BuildSpec("int8"), b"", lambda s: None)
    except BuildError as e:
        assert "int8 plan" in str(e) and "out of workspace" in str(e), str(e)
    else:
        raise AssertionError("no BuildError")


def dla_with_gpu_fallback(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec, build_plan

    w = World(trt, dla_cores=2)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    spec = BuildSpec("fp16", BatchRange(2, 2, 2), dla_core=1)
    if not has_dla(trt):
        try:
            build_plan(w.trt, onnx, spec, b"", lambda s: None)
        except UserError as e:
            assert "has no DLA support (11.0 to 11.4.0" in str(e), str(e)
        else:
            raise AssertionError(f"DLA accepted on TensorRT {trt.__version__}")
        assert w.config.called("set_flag") == []
        return
    build_plan(w.trt, onnx, spec, b"", lambda s: None)
    assert w.config._props["default_device_type"] == trt.DeviceType.DLA and w.config._props["DLA_core"] == 1
    assert w.config.called("set_flag")[0][0] == (trt.BuilderFlag.GPU_FALLBACK,)


def dla_missing(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec, build_plan

    cases = ((0, 0, "has no DLA"), (1, 1, "has 1 DLA core")) if has_dla(trt) else ((2, 0, "has no DLA support"),)
    for cores, dla, want in cases:
        w = World(trt, dla_cores=cores)
        onnx = tmp / "m.onnx"
        onnx.write_bytes(b"onnx")
        try:
            build_plan(w.trt, onnx, BuildSpec("fp16", BatchRange(1, 1, 1), dla_core=dla), b"", lambda s: None)
        except UserError as e:
            assert want in str(e), str(e)
        else:
            raise AssertionError(f"no UserError for --dla {dla} with {cores} cores")


def timing_cache_mismatch(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt.builder import BuildSpec, build_plan

    w = World(trt, cache_accepts=False)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    build_plan(w.trt, onnx, BuildSpec("fp32"), b"OLD-CACHE", lambda s: None)
    made = [a[0] for a, _ in w.config.called("create_timing_cache")]
    assert made == [b"OLD-CACHE", b""], made
    assert [a[1] for a, _ in w.config.called("set_timing_cache")] == [False, False]


def _runner(w: World, graphs: bool = False) -> Any:
    from edge_app.runtime.tensorrt import TensorRTEngine

    root = Path(tempfile.mkdtemp())
    ed = engine_folder(root)
    return TensorRTEngine(ed, ed.load_meta(), "fp16", b"PLAN", w.trt, w.cuda, cuda_graphs=graphs, model_file="x.plan")


def runner_fp16_output(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    eng = _runner(w)
    assert eng.max_batch == 8
    rng = np.random.default_rng(0)
    for n in (3, 3, 8, 1):
        x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
        y = eng.infer(x)["logits"]
        assert y.dtype == np.float32 and y.shape == (n, CLASSES)
        np.testing.assert_array_equal(y, expected_logits(x, np.float16).astype(np.float32))
    shapes = [tuple(a[1]) for a, _ in w.context.called("set_input_shape")]
    assert shapes == [(3, H, W, 3), (8, H, W, 3), (1, H, W, 3)], shapes  # set only when the batch size changes
    assert all(isinstance(a[1], trt.Dims) for a, _ in w.context.called("set_input_shape"))
    assert set(eng.last_timings) == {"h2d", "compute", "d2h"} and all(v == 1.0 for v in eng.last_timings.values())
    assert "h2d 3072" in w.cuda.log, "H2D carries uint8 bytes: 1 x 32 x 32 x 3"
    try:
        eng.infer(np.zeros((9, H, W, 3), np.uint8))
    except ValueError as e:
        assert "maximum of 8" in str(e)
    else:
        raise AssertionError("batch 9 accepted")
    eng.close()
    assert w.cuda.buffers == {} and w.cuda.live_objects == 0, (len(w.cuda.buffers), w.cuda.live_objects)


def runner_cuda_graphs(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt, out_dtype="FLOAT")
    eng = _runner(w, graphs=True)
    rng = np.random.default_rng(1)
    for n in (2, 2, 5, 2):
        x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
        np.testing.assert_array_equal(eng.infer(x)["logits"], expected_logits(x, np.float32))
    # A graph bakes in its shapes: captured again whenever the batch size changes (2, 5, back to 2).
    assert w.cuda.log.count("captured execute") == 3, w.cuda.log
    assert w.cuda.log.count("graph launch") == 4
    eng.close()
    assert w.cuda.buffers == {} and w.cuda.live_objects == 0


def runner_rejects_corrupt_plan(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt import PlanError

    w = World(trt, deserialize=lambda data: None)
    try:
        _runner(w)
    except PlanError:
        pass
    else:
        raise AssertionError("no PlanError")


def _open(w: World, ed: Any, **kw: Any) -> Any:
    from edge_app.runtime.tensorrt import open_tensorrt

    lines: list[str] = []
    kw.setdefault("batch", None)
    eng = open_tensorrt(
        ed,
        ed.load_meta(),
        kw.pop("precision", "fp16"),
        machine=kw.pop("machine", None) or w.machine(),
        emit=lines.append,
        **kw,
    )
    return eng, lines


def cache_builds_once_then_loads(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    ed = engine_folder(tmp)
    eng, lines = _open(w, ed)
    assert any("this happens once" in s for s in lines), lines
    ((key, rec),) = ed.load_meta().builds.items()
    assert (ed.plans_dir / f"{key}.plan").read_bytes() == b"PLAN-BYTES"
    tc = ed.plans_dir / f"timing_nvidia-geforce-rtx-4090_sm89x128_trt{trt.__version__}.cache"
    assert tc.read_bytes() == b"TIMING" and rec["timing_cache"] == f"plans/{tc.name}", sorted(ed.plans_dir.iterdir())
    assert rec["trt_version"] == trt.__version__ and rec["gpu"] == "NVIDIA GeForce RTX 4090" and rec["sm"] == "89"
    assert rec["batch"] == [1, 8, 32] and rec["precision"] == "fp16" and rec["build_s"] >= 0
    assert f"trt{trt.__version__}" in key and "sm89" in key and "b1-8-32" in key and "_gpu_" in key
    facts["plan_key"] = key
    eng.close()
    eng, lines = _open(w, ed)
    assert w.trt.constructed.count("Builder") == 1 and lines == [], "second open must load, not build"
    eng.close()


def cache_rebuilds_truncated_plan(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    ed = engine_folder(tmp)
    _open(w, ed)[0].close()
    plan = next(ed.plans_dir.glob("*.plan"))
    plan.write_bytes(b"PLAN")  # truncated
    seen: list[bytes] = []
    w.deserialize = lambda data: seen.append(data) or w.make_engine()
    _open(w, ed)[0].close()
    # the rebuilt plan is deserialized twice: once for its evidence (layers, timed run), once to run it
    assert w.trt.constructed.count("Builder") == 2 and seen == [b"PLAN-BYTES"] * 2, seen
    assert plan.read_bytes() == b"PLAN-BYTES"


def cache_rebuilds_undeserializable_plan(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    ed = engine_folder(tmp)
    _open(w, ed)[0].close()
    results = [None]  # the next deserialize fails (e.g. the plan is from a driver TensorRT rejects), then works
    w.deserialize = lambda data: results.pop(0) if results else w.make_engine()
    eng, lines = _open(w, ed)
    assert any("rebuilding" in s for s in lines) and w.trt.constructed.count("Builder") == 2, lines
    eng.close()


def cache_never_loads_other_version(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.cuda import DeviceInfo
    from edge_app.runtime.tensorrt import Machine

    w = World(trt)
    ed = engine_folder(tmp)
    other = Machine(w.trt, w.cuda, DeviceInfo(0, "Orin", (8, 7), 8 << 30, True, 12060, 12060))
    w.plan = b"ORIN-PLAN"
    _open(w, ed, machine=other)[0].close()
    w.plan = b"PLAN-BYTES"
    seen: list[bytes] = []
    w.deserialize = lambda data: seen.append(data) or w.make_engine()
    _open(w, ed)[0].close()
    assert seen == [b"PLAN-BYTES"] * 2, f"loaded {seen}"  # its evidence after the build, then the run
    assert len(list(ed.plans_dir.glob("*.plan"))) == 2


def no_build_is_a_clear_error(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError
    from edge_app.runtime.cuda import DeviceInfo
    from edge_app.runtime.tensorrt import Machine

    w = World(trt)
    ed = engine_folder(tmp)
    _open(w, ed, machine=Machine(w.trt, w.cuda, DeviceInfo(0, "Orin", (8, 7), 8 << 30, True, 12060, 12060)))[0].close()
    try:
        _open(w, ed, no_build=True)
    except UserError as e:
        msg = str(e)
    else:
        raise AssertionError("no UserError")
    assert (
        "no fp16 plan for TensorRT" in msg and "on Orin" in msg and "never loaded" in msg and "run.py build" in msg
    ), msg


def missing_onnx_names_calibrate(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError

    w = World(trt)
    ed = engine_folder(tmp)
    ed.onnx_path("int8", "trt").unlink()
    try:
        _open(w, ed, precision="int8")
    except UserError as e:
        assert "model.int8.trt.onnx' does not exist" in str(e) and "run.py calibrate" in str(e), str(e)
    else:
        raise AssertionError("no UserError")


def unsupported_precision_on_gpu(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError

    w = World(trt)
    ed = engine_folder(tmp)
    try:
        _open(w, ed, machine=w.machine(sm=(5, 2), name="Tesla M60"))
    except UserError as e:
        assert "Tesla M60 (compute capability 5.2) has no fast fp16" in str(e), str(e)
    else:
        raise AssertionError("no UserError")
    eng, _ = _open(w, ed, precision="auto", machine=w.machine(sm=(5, 2), name="Tesla M60"))
    assert eng.precision == "fp32"  # auto picks what the GPU runs fast
    eng.close()


def runner_on_dla(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt import TensorRTEngine

    w = World(trt)
    ed = engine_folder(tmp)
    eng = TensorRTEngine(ed, ed.load_meta(), "int8", b"PLAN", w.trt, w.cuda, dla_core=1)
    assert w.runtimes[0]._props["DLA_core"] == 1 and eng.device == "dla1"
    eng.close()


def doubles_have_teeth(trt: Any, tmp: Path, facts: dict) -> None:
    """The doubles reject what the real bindings would: so the passing scenarios above mean something."""
    w = World(trt)
    bad: list[tuple[str, Callable[[], Any], type]] = [
        ("string instead of MemoryPoolType", lambda: w.config.set_memory_pool_limit("WORKSPACE", 1), TypeError),
        ("misspelt property", lambda: setattr(w.config, "dla_core", 1), AttributeError),
        ("read-only property", lambda: setattr(w.network, "num_inputs", 3), AttributeError),
        ("extra argument", lambda: w.builder.create_network(1, 2), TypeError),
        ("stream object instead of int handle", lambda: w.context_double().execute_async_v3("stream"), TypeError),
        ("unknown module attribute", lambda: w.trt.BuilderFlags, AttributeError),
    ]
    for what, fn, exc in bad:
        try:
            fn()
        except exc:
            continue
        raise AssertionError(f"double accepted {what}")
    for name, fn in (
        ("BuilderFlag.FP16", lambda: trt.BuilderFlag.FP16),
        ("BuilderFlag.INT8", lambda: trt.BuilderFlag.INT8),
        ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", lambda: trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH),
        ("Builder.platform_has_fast_fp16", lambda: w.builder._static("platform_has_fast_fp16")),
        ("IInt8EntropyCalibrator2", lambda: trt.IInt8EntropyCalibrator2),
    ):
        try:
            fn()
            facts[name] = True
        except AttributeError:
            facts[name] = False


def runner_cuda_graph_capture_fails(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: a plan whose enqueue cannot be captured crashed the engine; trtexec goes on without a graph."""
    import logging

    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("edge_app.runtime.tensorrt").addHandler(Grab())
    w = World(trt, out_dtype="FLOAT", capture_fails=True)
    eng = _runner(w, graphs=True)
    rng = np.random.default_rng(2)
    for n in (2, 2, 5, 1):
        x = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
        np.testing.assert_array_equal(eng.infer(x)["logits"], expected_logits(x, np.float32))
    assert w.cuda.log.count("capture discarded") == 1 and w.cuda.capturing is None, w.cuda.log
    assert "graph launch" not in w.cuda.log and w.cuda.log.count("execute") == 4, w.cuda.log
    warnings = [r for r in records if "CUDA graph capture failed" in r]
    assert len(warnings) == 1 and "without CUDA graphs" in warnings[0], records
    assert eng.graph_error and "enqueue failed while being captured" in eng.graph_error
    eng.close()
    assert w.cuda.buffers == {} and w.cuda.live_objects == 0, w.cuda.live_objects


def _build(w: World, ed: Any, spec: Any, machine: Any = None) -> dict:
    from edge_app.runtime.tensorrt import build

    return build(ed, spec, machine or w.machine(), emit=lambda s: None)


def cache_picks_the_plan_holding_the_batch(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: open picked the plan with the widest max even when its min was above the batch asked for."""
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt)
    ed = engine_folder(tmp)
    small = _build(w, ed, BuildSpec("fp16", BatchRange(1, 1, 2)))["key"]
    big = _build(w, ed, BuildSpec("fp16", BatchRange(4, 8, 16)))["key"]
    opened: list[bytes] = []
    w.plan = b"unused"
    w.deserialize = lambda data: opened.append(data) or w.make_engine()
    keys = {}
    for want in (1, 2, 8, 16, None):
        eng, lines = _open(w, ed, batch=want)
        keys[want] = eng.model_file
        assert lines == [], f"batch {want}: no build expected, got {lines}"
        eng.close()
    assert keys[1] == keys[2] == keys[None] == f"{small}.plan" and keys[8] == keys[16] == f"{big}.plan", keys
    try:
        _open(w, ed, batch=64, no_build=True)
    except UserError as e:
        msg = str(e)
    else:
        raise AssertionError("no UserError for batch 64")
    assert (
        "no fp16 plan holding batch 64" in msg and "take batch 1 to 2, 4 to 16" in msg and "--batch 1:64:64" in msg
    ), msg
    eng, lines = _open(w, ed, batch=64)  # without --no-build: builds a plan that holds it
    assert any("batch 1:64:64" in s for s in lines), lines
    eng.close()


def cache_rebuilds_for_other_settings(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: `build --workspace 4` after a 2 GiB build said 'up to date'; so did another Orin with fewer SMs."""
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt)
    ed = engine_folder(tmp)
    b = BatchRange(1, 8, 32)
    first = _build(w, ed, BuildSpec("fp16", b, workspace_gib=2.0))
    assert not first["cached"] and _build(w, ed, BuildSpec("fp16", b, workspace_gib=2.0))["cached"]
    for spec, machine in (
        (BuildSpec("fp16", b, workspace_gib=4.0), None),
        (BuildSpec("fp16", b, opt_level=5), None),
        (BuildSpec("fp16", b), w.machine(sm=(8, 7), name="Orin", sm_count=8)),
        (BuildSpec("fp16", b), w.machine(sm=(8, 7), name="Orin", sm_count=16)),
        (BuildSpec("fp16", b), w.machine(sm_count=14, mig=True)),
    ):
        r = _build(w, ed, spec, machine)
        assert not r["cached"], (spec, machine.device if machine else None)
    builds = ed.load_meta().builds
    assert len(builds) == 6 and len(list(ed.plans_dir.glob("*.plan"))) == 6
    rec = builds[first["key"]]
    assert (rec["sm_count"], rec["mig"], rec["workspace_gib"], rec["opt_level"]) == (128, False, 2.0, 3), rec
    facts["keys"] = sorted(builds)


def dla_plan_is_fixed_shape_and_found(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: DLA needs min = opt = max; open with dla_core must find (or build) that fixed plan."""
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt, dla_cores=2, layers=dla_layers())
    ed = engine_folder(tmp)
    if not has_dla(trt):
        try:
            _open(w, ed, dla_core=0)
        except UserError as e:
            assert "has no DLA support" in str(e), str(e)
        else:
            raise AssertionError(f"DLA plan built on TensorRT {trt.__version__}")
        return
    try:
        BuildSpec("fp16", BatchRange(1, 8, 32), dla_core=0)
    except UserError as e:
        assert "needs a fixed batch" in str(e) and "--batch 8" in str(e), str(e)
    else:
        raise AssertionError("DLA build with a batch range accepted")
    eng, lines = _open(w, ed, dla_core=0)  # nothing built yet: builds the fixed batch-1 DLA plan
    assert any("batch 1:1:1, DLA 0" in s for s in lines), lines
    ((key, rec),) = ed.load_meta().builds.items()
    assert rec["batch"] == [1, 1, 1] and rec["dla_core"] == 0 and "_dla0_" in key
    _name, lo, opt, hi = w.profile.called("set_shape")[-1][0]
    assert tuple(lo) == tuple(opt) == tuple(hi) == (1, H, W, 3)
    assert eng.device == "dla0"
    eng.close()
    _build(w, ed, BuildSpec("fp16", BatchRange(4, 4, 4), dla_core=0))
    for want, batch in ((None, [1, 1, 1]), (1, [1, 1, 1]), (4, [4, 4, 4])):
        eng, lines = _open(w, ed, dla_core=0, batch=want, no_build=True)
        assert lines == [] and ed.load_meta().builds[eng.model_file[:-5]]["batch"] == batch, (want, eng.model_file)
        eng.close()
    gpu, lines = _open(w, ed)  # a DLA plan is never picked for the GPU
    assert any("batch 1:8:32)" in s for s in lines), lines
    gpu.close()


def timing_cache_is_merged_under_a_lock(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: parallel builds overwrote each other's timing cache; now the file on disk is combined in, locked."""
    import fcntl
    import threading

    w = World(trt)
    ed = engine_folder(tmp)
    ed.plans_dir.mkdir(parents=True)
    from edge_app.runtime.tensorrt.plans import timing_cache_path

    tc = timing_cache_path(ed, trt.__version__, w.machine().device)
    tc.write_bytes(b"CACHE-ON-DISK")
    disk = w.D(trt.ITimingCache)
    w.config.returns("create_timing_cache", lambda data: disk if bytes(data) == b"CACHE-ON-DISK" else w.cache)
    lock = tc.with_name(tc.name + ".lock")
    lock.touch()
    holder = open(lock, "rb")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another build is saving right now
    done = threading.Event()
    t = threading.Thread(target=lambda: (_open(w, ed)[0].close(), done.set()))
    t.start()
    t.join(1.0)
    assert not done.is_set() and tc.read_bytes() == b"CACHE-ON-DISK", "saved the cache without the lock"
    fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
    holder.close()
    t.join(10)
    assert done.is_set()
    assert w.cache.called("combine") == [((disk, False), {})], w.cache.called("combine")
    assert tc.read_bytes() == b"TIMING"


def opt_level_reaches_the_config(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt.builder import BuildSpec, build_plan

    w = World(trt)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    build_plan(w.trt, onnx, BuildSpec("fp16", opt_level=5), b"", lambda s: None)
    assert w.config._props["builder_optimization_level"] == 5


def runner_names_both_profile_bounds(trt: Any, tmp: Path, facts: dict) -> None:
    """A batch below the profile's minimum is refused before TensorRT sees it, naming min and max."""
    w = World(trt, profile=(4, 4, 8))
    eng = _runner(w)
    assert (eng.min_batch, eng.max_batch) == (4, 8)
    eng.infer(np.zeros((4, H, W, 3), np.uint8))
    try:
        eng.infer(np.zeros((2, H, W, 3), np.uint8))
    except ValueError as e:
        assert "batch 2 is outside this plan's profile, which takes batch 4 to 8" in str(e), str(e)
    else:
        raise AssertionError("batch 2 accepted by a 4..8 plan")
    assert [tuple(a[1])[0] for a, _ in w.context.called("set_input_shape")] == [4]
    eng.close()


def main(out: str) -> int:
    """Run every scenario; write the JSON report to ``out``."""
    try:
        import tensorrt_bindings as trt
    except Exception as e:  # reported to the test, which fails with this text
        Path(out).write_text(json.dumps({"import_error": f"{type(e).__name__}: {e}"}))
        return 1
    from tests.runtime.trt_stub.doubles import USED

    report: dict[str, Any] = {"version": trt.__version__, "scenarios": {}}
    for name in SCENARIOS:
        facts: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                (globals().get(name) or getattr(gpu_path, name))(trt, Path(tmp), facts)
                report["scenarios"][name] = {"ok": True, "facts": facts}
            except Exception:
                report["scenarios"][name] = {"ok": False, "error": traceback.format_exc(), "facts": facts}
    report["used"] = sorted(USED)
    Path(out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
