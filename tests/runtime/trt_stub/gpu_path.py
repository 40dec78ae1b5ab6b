"""Contract scenarios of the GPU path a Jetson or desktop user walks (issue 21), against the REAL bindings.

Run by driver.py beside its own scenarios. A detector plan (``dets (-1, 100, 6)``) and a two-output plan open,
infer and agree with ONNX Runtime on the same input (the fake kernel runs the folder's own ONNX in ONNX
Runtime, so the runner's names, shapes, order, dtypes and batching are what is checked); builds leave layer
information, precision counts and a timed run; auto precision follows the timings; live tunes for batch 1;
DLA refuses what it cannot do; mapped memory skips copies and falls back; timing caches are per GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.runtime.trt_stub.world import CLASSES, H, W, World, engine_folder, layer_record

SCENARIOS = [
    "detector_plan_agrees_with_onnxruntime",
    "two_output_plan_agrees_with_onnxruntime",
    "mismatched_outputs_are_one_sentence",
    "build_records_layers_and_a_timed_run",
    "auto_precision_follows_measured_timings",
    "live_opens_a_plan_tuned_for_batch_1",
    "dla_plan_without_dla_layers_is_refused",
    "mapped_memory_skips_copies_and_falls_back",
    "timing_cache_per_gpu_and_version",
]

K = 100  # detector rows, as export_detect pads to


# ------------------------------------------------------------------------------------------------ models
def _graph(outputs: dict[str, tuple[int, ...]]) -> bytes:
    """A TensorRT-rule-clean ONNX: uint8 NHWC -> Cast -> Reshape(-1, 512, 6) -> per output a Slice, scaled.

    ``dets`` [N, 100, 6] is rows 0..99 of the pixels / 2; ``logits`` [N, 6] row 0 + 1; ``embedding`` [N, 16]
    the first 16 values / 4. Simple enough that any mix-up of names, order or rows shows.
    """
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([-1, (H * W * 3) // 6, 6], np.int64), "rows")]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f", "rows"], ["r"], name="rows"),
    ]
    recipe = {
        "dets": ([[0, 0], [K, 6]], [1, 2], [-1, K, 6], 0.5, 0.0),
        "logits": ([[0, 0], [1, 6]], [1, 2], [-1, CLASSES], 1.0, 1.0),
        "embedding": ([[0, 0], [3, 6]], [1, 2], [-1, 18], 0.25, 0.0),
    }
    outs = []
    for name, shape in outputs.items():
        (starts, ends), axes, flat, scale, bias = recipe[name]
        for tag, arr in (
            ("s", starts),
            ("e", ends),
            ("a", axes),
            ("shape", flat),
            ("scale", [scale]),
            ("bias", [bias]),
        ):
            dt = np.float32 if tag in ("scale", "bias") else np.int64
            inits.append(numpy_helper.from_array(np.array(arr, dt), f"{name}_{tag}"))
        nodes += [
            helper.make_node("Slice", ["r", f"{name}_s", f"{name}_e", f"{name}_a"], [f"{name}_c"], name=f"{name}_c"),
            helper.make_node("Reshape", [f"{name}_c", f"{name}_shape"], [f"{name}_v"], name=f"{name}_v"),
            helper.make_node("Mul", [f"{name}_v", f"{name}_scale"], [f"{name}_m"], name=f"{name}_m"),
            helper.make_node("Add", [f"{name}_m", f"{name}_bias"], [f"{name}_p"], name=f"{name}_p"),
        ]
        if name == "embedding":
            inits.append(numpy_helper.from_array(np.array([0], np.int64), "emb_s2"))
            inits.append(numpy_helper.from_array(np.array([16], np.int64), "emb_e2"))
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "emb_a2"))
            nodes.append(helper.make_node("Slice", ["embedding_p", "emb_s2", "emb_e2", "emb_a2"], [name], name=name))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_p"], [name], name=name))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape]))
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", H, W, 3])],
        outs,
        initializer=inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def task_folder(root: Path, outputs: dict[str, tuple[int, ...]]) -> Any:
    """An engine folder whose meta.json lists ``outputs`` with their layout (as export_detect writes it)."""
    ed = engine_folder(root)
    meta = ed.load_meta()
    for prec in ("fp32", "fp16"):
        ed.onnx_path(prec).write_bytes(_graph(outputs))
    meta.outputs = list(outputs)
    meta.extra["output_layout"] = {n: {"shape": ["batch", *s], "dtype": "float32"} for n, s in outputs.items()}
    if "dets" in outputs:
        meta.extra["task"] = "detect"
    ed.save_meta(meta)
    return ed


def _ort_world(trt: Any, ed: Any, outputs: dict[str, tuple[int, ...]], **kw: Any) -> World:
    """A world whose fake kernel runs the folder's model.onnx in ONNX Runtime on the runner's device buffer."""
    import onnxruntime as ort

    w = World(trt, outputs=outputs, **kw)
    sess = ort.InferenceSession(str(ed.onnx_path("fp32")), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    w.compute = lambda x: dict(zip(names, sess.run(None, {"images": x})))
    return w


def _agree(trt: Any, tmp: Path, outputs: dict[str, tuple[int, ...]], facts: dict) -> None:
    from edge_app.runtime import open_engine
    from edge_app.runtime.tensorrt import open_tensorrt

    ed = task_folder(tmp, outputs)
    w = _ort_world(trt, ed, outputs, out_dtype="FLOAT")
    x = np.random.default_rng(3).integers(0, 256, (5, H, W, 3), dtype=np.uint8)
    with open_engine(ed.path, "onnxruntime", "fp32", "cpu") as ref:
        want = ref.infer(x)
    eng = open_tensorrt(ed, ed.load_meta(), "fp32", batch=8, machine=w.machine(), emit=lambda s: None)
    with eng:
        for n in (5, 1, 3):
            got = eng.infer(x[:n])
            assert list(got) == list(outputs), (list(got), list(outputs))
            for name, shape in outputs.items():
                assert got[name].shape == (n, *shape) and got[name].dtype == np.float32, (name, got[name].shape)
                np.testing.assert_allclose(got[name], want[name][:n], rtol=0, atol=1e-6)
        facts["outputs"] = {k: list(v.shape) for k, v in got.items()}
        facts["choice"] = eng.choice


# ------------------------------------------------------------------------------------------------ scenarios
def detector_plan_agrees_with_onnxruntime(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: every detector plan was refused after its build ('plan output (-1, 100, 6) does not match 3 labels')."""
    _agree(trt, tmp, {"dets": (K, 6)}, facts)


def two_output_plan_agrees_with_onnxruntime(trt: Any, tmp: Path, facts: dict) -> None:
    """Any number of named outputs come back as {name: array}, in meta.json's order, whatever the plan's order."""
    _agree(trt, tmp, {"logits": (CLASSES,), "embedding": (16,)}, facts)
    _agree(trt, tmp / "rev", {"embedding": (16,), "dets": (K, 6)}, facts)


def mismatched_outputs_are_one_sentence(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt import TensorRTEngine

    cases = [
        (
            {"logits": (CLASSES,)},
            {"logits": (3,)},
            r"plan output 'logits' (-1, 3) does not match the 6 labels in meta.json; rebuild the plan",
        ),
        (
            {"dets": (K, 6)},
            {"dets": (50, 6)},
            r"plan output 'dets' has shape (-1, 50, 6) but meta.json's output layout says (batch, 100, 6); rebuild the plan",
        ),
        (
            {"dets": (K, 6)},
            {"boxes": (K, 4)},
            r"plan outputs ['boxes'] do not match meta.json's outputs ['dets']; rebuild the plan",
        ),
        (
            {"dets": (K, 6)},
            {"dets": (-1, 6)},
            r"plan output 'dets' has a data-dependent shape (-1, -1, 6); export a fixed number of rows",
        ),
    ]
    messages = []
    for i, (meta_out, plan_out, want) in enumerate(cases):
        ed = task_folder(tmp / str(i), meta_out) if "logits" not in meta_out else engine_folder(tmp / str(i))
        w = World(trt, outputs=plan_out)
        try:
            TensorRTEngine(ed, ed.load_meta(), "fp16", b"PLAN", w.trt, w.cuda)
        except RuntimeError as e:
            msg = str(e)
        else:
            raise AssertionError(f"plan {plan_out} accepted for meta {meta_out}")
        assert msg.startswith(want) and msg.count(". ") == 0 and "\n" not in msg, msg
        assert w.cuda.buffers == {}, "a refused plan must not leave buffers behind"
        messages.append(msg)
    facts["messages"] = messages


def build_records_layers_and_a_timed_run(trt: Any, tmp: Path, facts: dict) -> None:
    from edge_app.runtime.tensorrt import build, format_build
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt)
    w.kernel_ms = 0.75
    ed = engine_folder(tmp)
    r = build(ed, BuildSpec("int8", BatchRange(1, 4, 8)), w.machine(), emit=lambda s: None)
    info = ed.path / r["layer_info"]
    assert info.name == f"{r['key']}.layers.json" and info.parent == ed.plans_dir
    assert json.loads(info.read_text())["Layers"][0]["Name"] == "conv1 + relu"
    assert r["layers"] == {"layers": 6, "int8": 3, "fp16": 2, "fp32": 1, "other": 0, "dla": 0, "detailed": True}
    t = r["timing"]
    assert (t["batch"], t["runs"], t["warmup"], t["median_ms"], t["ms_per_image"]) == (4, 50, 10, 0.75, 0.1875), t
    assert ed.load_meta().builds[r["key"]]["layers"]["int8"] == 3, "the record in meta.json holds the counts"
    lines = format_build(r)
    assert lines[0].startswith("built in ") and "int8, batch 1:4:8" in lines[0], lines
    assert lines[1].startswith("  layers: 6 layers: 3 INT8, 2 FP16, 1 FP32; layer information: plans/"), lines
    assert lines[2].startswith("  measured: 0.750 ms per call at batch 4 (0.188 ms per image; median of 50"), lines
    facts["lines"] = lines
    # the inspector was asked for JSON, through the real enum
    assert w.inspector.called("get_engine_information")[0][0] == (trt.LayerInformationFormat.JSON,)
    cached = build(ed, BuildSpec("int8", BatchRange(1, 4, 8)), w.machine(), emit=lambda s: None)
    assert cached["cached"] and format_build(cached)[0].startswith("up to date, nothing to do")


def auto_precision_follows_measured_timings(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: auto took int8 blindly; on this 'GPU' fp16 measured fastest, so auto must open fp16."""
    from edge_app.runtime.tensorrt import build
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt)
    ed = engine_folder(tmp)
    eng, _ = _open(w, ed, precision="auto")
    assert eng.precision == "int8" and "nothing measured on this GPU yet" in eng.choice, eng.choice
    eng.close()
    for prec, ms in (("fp32", 3.0), ("fp16", 1.5), ("int8", 2.0)):
        w.kernel_ms = ms
        build(ed, BuildSpec(prec, BatchRange(1, 8, 32)), w.machine(), force=True, emit=lambda s: None)
    eng, lines = _open(w, ed, precision="auto", batch=8)
    assert eng.precision == "fp16" and lines == [], (eng.precision, lines)
    assert "fastest measured on this GPU at batch 8 (fp16 1.500, int8 2.000, fp32 3.000 ms per call)" in eng.choice
    facts["choice"] = eng.choice
    eng.close()


def _open(w: World, ed: Any, **kw: Any) -> tuple[Any, list[str]]:
    from edge_app.runtime.tensorrt import open_tensorrt

    lines: list[str] = []
    eng = open_tensorrt(ed, ed.load_meta(), kw.pop("precision", "fp16"), machine=w.machine(), emit=lines.append, **kw)
    return eng, lines


def live_opens_a_plan_tuned_for_batch_1(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: live ran on kernels TensorRT tuned for batch 8 (profile 1:8:32)."""
    from edge_app.runtime.tensorrt import build
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec

    w = World(trt)
    ed = engine_folder(tmp)
    build(ed, BuildSpec("fp16", BatchRange(1, 8, 32)), w.machine(), emit=lambda s: None)
    w.batch_profile = (1, 1, 32)
    # with --no-build the existing plan is used, and the user is told it is tuned for 8
    eng, lines = _open(w, ed, use="latency", no_build=True)
    assert len(lines) == 1 and "no fp16 plan tuned for batch 1" in lines[0] and "--batch 1:1:32" in lines[0], lines
    eng.close()
    eng, lines = _open(w, ed, use="latency")
    assert any("batch 1:1:32" in s for s in lines), lines
    assert "profile 1:1:32 (tuned for batch 1, latency)" in eng.choice, eng.choice
    assert eng.model_file.startswith("fp16_b1-1-32_gpu_"), eng.model_file
    eng.close()
    eng, lines = _open(w, ed, use="latency")  # now found, not built again
    assert lines == [] and eng.model_file.startswith("fp16_b1-1-32_")
    eng.close()
    eng, lines = _open(w, ed, use="throughput", batch=8)  # annotate keeps its larger opt
    assert lines == [] and eng.model_file.startswith("fp16_b1-8-32_"), eng.model_file
    facts["choice"] = eng.choice
    eng.close()


def dla_plan_without_dla_layers_is_refused(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: `--dla` plans whose every layer fell back to the GPU were kept under a dla0 key."""
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt import build
    from edge_app.runtime.tensorrt.builder import BatchRange, BuildSpec
    from tests.runtime.trt_stub.world import dla_layers, has_dla

    if not has_dla(trt):
        facts["skipped"] = f"TensorRT {trt.__version__} has no DLA (refused earlier, see dla_missing)"
        return
    w = World(trt, dla_cores=2)  # the default layers: none on DLA
    ed = engine_folder(tmp)
    try:
        build(ed, BuildSpec("fp16", BatchRange(1, 1, 1), dla_core=0), w.machine(), emit=lambda s: None)
    except UserError as e:
        assert str(e).startswith("--dla 0: TensorRT placed none of the 6 layers on DLA"), str(e)
    else:
        raise AssertionError("a DLA plan without DLA layers was kept")
    assert not list(ed.plans_dir.glob("*.plan")) and not ed.load_meta().builds
    w.layers = dla_layers()
    r = build(ed, BuildSpec("int8", BatchRange(1, 1, 1), dla_core=0), w.machine(), emit=lambda s: None)
    assert r["layers"]["dla"] == 1 and r["layers"]["layers"] == 3, r["layers"]


def mapped_memory_skips_copies_and_falls_back(trt: Any, tmp: Path, facts: dict) -> None:
    """Jetson zero-copy: no H2D/D2H copies with mapped memory; where mapping fails, copies, said once."""
    import logging

    from edge_app.runtime.cuda import DeviceInfo
    from edge_app.runtime.tensorrt import Machine, TensorRTEngine
    from tests.runtime.trt_stub.world import expected_logits

    ed = engine_folder(tmp)
    x = np.random.default_rng(4).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    w = World(trt, out_dtype="FLOAT")
    eng = TensorRTEngine(ed, ed.load_meta(), "fp16", b"PLAN", w.trt, w.cuda, mapped_memory=True)
    np.testing.assert_array_equal(eng.infer(x)["logits"], expected_logits(x, np.float32))
    assert eng.mapped_memory and not [s for s in w.cuda.log if s.startswith(("h2d", "d2h"))], w.cuda.log
    assert w.addresses["images"] in w.cuda.mapped, "TensorRT must be given the mapped buffer's device pointer"
    eng.close()
    assert w.cuda.buffers == {} and w.cuda.live_objects == 0

    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("edge_app.runtime.tensorrt").addHandler(Grab())
    w = World(trt, out_dtype="FLOAT")
    w.cuda.can_map = False
    eng = TensorRTEngine(ed, ed.load_meta(), "fp16", b"PLAN", w.trt, w.cuda, mapped_memory=True)
    np.testing.assert_array_equal(eng.infer(x)["logits"], expected_logits(x, np.float32))
    assert not eng.mapped_memory and "cudaErrorNotSupported" in (eng.mapped_error or "")
    assert "h2d 9216" in w.cuda.log and "d2h 72" in w.cuda.log, w.cuda.log
    assert len([r for r in records if "mapped host memory is not available" in r]) == 1, records
    eng.close()
    assert w.cuda.buffers == {} and w.cuda.live_objects == 0
    # a discrete GPU is told mapped memory is for integrated GPUs, and copies are used
    w = World(trt)
    dev = DeviceInfo(0, "NVIDIA H100", (9, 0), 80 << 30, False, 12040, 12090, 132)
    lines: list[str] = []
    from edge_app.runtime.tensorrt import open_tensorrt

    with open_tensorrt(
        ed, ed.load_meta(), "fp16", machine=Machine(w.trt, w.cuda, dev), emit=lines.append, mapped_memory=True
    ) as eng:
        assert not eng.mapped_memory and any("mapped host memory is for integrated GPUs" in s for s in lines), lines
    orin = DeviceInfo(0, "Orin", (8, 7), 16 << 30, True, 12060, 12060, 8)
    with open_tensorrt(
        ed, ed.load_meta(), "fp16", machine=Machine(w.trt, w.cuda, orin), emit=lambda s: None, mapped_memory=True
    ) as eng:
        assert eng.mapped_memory and "mapped host memory" in eng.choice, eng.choice


def timing_cache_per_gpu_and_version(trt: Any, tmp: Path, facts: dict) -> None:
    """Defect: one timing.cache per folder was thrown away whenever another GPU built into the same folder."""
    from edge_app.runtime.tensorrt import build
    from edge_app.runtime.tensorrt.builder import BuildSpec

    w = World(trt)
    ed = engine_folder(tmp)
    build(ed, BuildSpec("fp16"), w.machine(), emit=lambda s: None)
    build(ed, BuildSpec("fp16"), w.machine(sm=(8, 7), name="Orin", sm_count=8), emit=lambda s: None)
    names = sorted(p.name for p in ed.plans_dir.glob("timing_*.cache"))
    assert names == [
        f"timing_nvidia-geforce-rtx-4090_sm89x128_trt{trt.__version__}.cache",
        f"timing_orin_sm87x8_trt{trt.__version__}.cache",
    ], names
    facts["caches"] = names


__all__ = ["SCENARIOS", "layer_record"]
