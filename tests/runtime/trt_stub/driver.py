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

from tests.runtime.trt_stub.world import CLASSES, H, W, World, engine_folder, expected_logits

SCENARIOS = ["build_fp16", "parse_errors_in_full", "build_failure_reports_log", "dla_with_gpu_fallback", "dla_missing",
             "timing_cache_mismatch", "runner_fp16_output", "runner_cuda_graphs", "runner_rejects_corrupt_plan",
             "cache_builds_once_then_loads", "cache_rebuilds_truncated_plan", "cache_rebuilds_undeserializable_plan",
             "cache_never_loads_other_version", "no_build_is_a_clear_error", "missing_onnx_names_calibrate",
             "unsupported_precision_on_gpu", "runner_on_dla", "doubles_have_teeth"]


# ------------------------------------------------------------------------------------------------ scenarios
def build_fp16(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.trt_build import BatchRange, BuildSpec, build_plan

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
    from edge_app.runtime.trt_build import BuildError, BuildSpec, build_plan

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
    from edge_app.runtime.trt_build import BuildError, BuildSpec, build_plan

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
    from edge_app.runtime.trt_build import BuildSpec, build_plan

    w = World(trt, dla_cores=2)
    onnx = tmp / "m.onnx"
    onnx.write_bytes(b"onnx")
    build_plan(w.trt, onnx, BuildSpec("fp16", dla_core=1), b"", lambda s: None)
    assert w.config._props["default_device_type"] == trt.DeviceType.DLA and w.config._props["DLA_core"] == 1
    assert w.config.called("set_flag")[0][0] == (trt.BuilderFlag.GPU_FALLBACK,)


def dla_missing(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError
    from edge_app.runtime.trt_build import BuildSpec, build_plan

    for cores, dla, want in ((0, 0, "has no DLA"), (1, 1, "has 1 DLA core")):
        w = World(trt, dla_cores=cores)
        onnx = tmp / "m.onnx"
        onnx.write_bytes(b"onnx")
        try:
            build_plan(w.trt, onnx, BuildSpec("fp16", dla_core=dla), b"", lambda s: None)
        except UserError as e:
            assert want in str(e), str(e)
        else:
            raise AssertionError(f"no UserError for --dla {dla} with {cores} cores")


def timing_cache_mismatch(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.trt_build import BuildSpec, build_plan

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
    eng = open_tensorrt(ed, ed.load_meta(), kw.pop("precision", "fp16"), machine=kw.pop("machine", None) or w.machine(),
                        emit=lines.append, **kw)
    return eng, lines


def cache_builds_once_then_loads(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    ed = engine_folder(tmp)
    eng, lines = _open(w, ed)
    assert any("this happens once" in s for s in lines), lines
    (key, rec), = ed.load_meta().builds.items()
    assert (ed.plans_dir / f"{key}.plan").read_bytes() == b"PLAN-BYTES"
    assert (ed.plans_dir / "timing.cache").read_bytes() == b"TIMING"
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
    assert w.trt.constructed.count("Builder") == 2 and seen == [b"PLAN-BYTES"], seen
    assert plan.read_bytes() == b"PLAN-BYTES"


def cache_rebuilds_undeserializable_plan(trt: Any, tmp: Path, facts: dict) -> None:
    w = World(trt)
    ed = engine_folder(tmp)
    results = [None]  # first deserialize fails (e.g. the plan is from a driver TensorRT rejects), then works
    w.deserialize = lambda data: results.pop(0) if results else w.make_engine()
    eng, lines = _open(w, ed)
    assert any("rebuilding" in s for s in lines) and w.trt.constructed.count("Builder") == 2, lines
    eng.close()


def cache_never_loads_other_version(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.cuda_buffers import DeviceInfo
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
    assert seen == [b"PLAN-BYTES"], f"loaded {seen}"
    assert len(list(ed.plans_dir.glob("*.plan"))) == 2


def no_build_is_a_clear_error(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError
    from edge_app.runtime.cuda_buffers import DeviceInfo
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
    assert "no fp16 plan for TensorRT" in msg and "on Orin" in msg and "never loaded" in msg and "run.py build" in msg, msg


def missing_onnx_names_calibrate(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.errors import UserError

    w = World(trt)
    ed = engine_folder(tmp)
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
    for name, fn in (("BuilderFlag.FP16", lambda: trt.BuilderFlag.FP16), ("BuilderFlag.INT8", lambda: trt.BuilderFlag.INT8),
                     ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", lambda: trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH),
                     ("Builder.platform_has_fast_fp16", lambda: w.builder._static("platform_has_fast_fp16")),
                     ("IInt8EntropyCalibrator2", lambda: trt.IInt8EntropyCalibrator2)):
        try:
            fn()
            facts[name] = True
        except AttributeError:
            facts[name] = False


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
                globals()[name](trt, Path(tmp), facts)
                report["scenarios"][name] = {"ok": True, "facts": facts}
            except Exception:
                report["scenarios"][name] = {"ok": False, "error": traceback.format_exc(), "facts": facts}
    report["used"] = sorted(USED)
    Path(out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
