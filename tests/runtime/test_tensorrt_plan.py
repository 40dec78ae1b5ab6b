"""TensorRT plan keys, build options, bad input and backend choice: the parts that need no TensorRT at all."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.engine_dir import EngineDir, EngineMeta, InputSpec
from edge_app.errors import UserError
from edge_app.runtime import open_engine
from edge_app.runtime import tensorrt as trt_backend
from edge_app.runtime.cuda import DeviceInfo
from edge_app.runtime.onnxruntime import gpu_provider_options
from edge_app.runtime.tensorrt import PlanError, support
from edge_app.runtime.tensorrt.builder import BatchRange, BuildError, BuildSpec, onnx_for
from edge_app.runtime.tensorrt.plans import plan_key
from edge_app.runtime.tensorrt.support import check_precision_supported
from tests.runtime.trt_stub.world import tiny_onnx

GPU = DeviceInfo(0, "NVIDIA GeForce RTX 4090", (8, 9), 24 << 30, False, 12040, 12090, sm_count=128)


def fake_engine_dir(root: Path, files: tuple[str, ...] = ("model.onnx",)) -> EngineDir:
    """An engine folder with meta.json and placeholder ONNX files (enough for checks that only look at paths)."""
    ed = EngineDir(root / "tiny")
    ed.path.mkdir(parents=True)
    for f in files:  # real graphs: build runs the TensorRT ONNX rules check on them before anything else
        (ed.path / f).write_bytes(tiny_onnx(f))
    ed.save_meta(EngineMeta(name="tiny", arch="resnet18", labels=["a", "b"], input=InputSpec(32, 32)))
    return ed


@pytest.mark.parametrize("text, want", [("1:8:32", (1, 8, 32)), ("4", (4, 4, 4)), ("2:2:64", (2, 2, 64))])
def test_batch_range_parses(text: str, want: tuple[int, int, int]) -> None:
    b = BatchRange.parse(text)
    assert (b.min, b.opt, b.max) == want and str(b) == ":".join(map(str, want))


@pytest.mark.parametrize(
    "text, match",
    [
        ("8:4:1", r"batch range 8:4:1 is invalid; use MIN:OPT:MAX"),
        ("0:1:2", r"batch range 0:1:2 is invalid"),
        ("a:b", r"--batch 'a:b' is not MIN:OPT:MAX"),
        ("1:2", r"--batch '1:2' is not MIN:OPT:MAX"),
    ],
)
def test_bad_batch_ranges_say_how_to_write_one(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        BatchRange.parse(text)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"dla_core": -1}, r"--dla -1 is not a DLA core number"),
        ({"workspace_gib": 0.0}, r"--workspace 0.0 must be more than 0 GiB"),
        ({"opt_level": 6}, r"--opt-level 6 is not a TensorRT builder optimisation level"),
        (
            {"dla_core": 0, "batch": BatchRange(1, 8, 32)},
            r"--dla 0 needs a fixed batch \(DLA runs static shapes only\), not the range 1:8:32; "
            r"give one number, e.g. --batch 8",
        ),
    ],
)
def test_bad_build_specs_are_user_errors(kw: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        BuildSpec(**kw)


BASE = ("10.16.1.11", GPU, BuildSpec("fp16", BatchRange(1, 8, 32)), "ab" * 32)
ORIN_64 = DeviceInfo(0, "Orin", (8, 7), 64 << 30, True, 12060, 12060, sm_count=16)


@pytest.mark.parametrize(
    "change",
    [
        ("10.3.0.30", GPU, BASE[2], BASE[3]),  # another TensorRT version
        (
            BASE[0],
            DeviceInfo(0, "NVIDIA RTX A6000", (8, 9), 48 << 30, False, 12040, 12090, sm_count=84),
            BASE[2],
            BASE[3],
        ),  # another GPU, same sm
        (
            BASE[0],
            DeviceInfo(0, GPU.name, (9, 0), 24 << 30, False, 12040, 12090, sm_count=128),
            BASE[2],
            BASE[3],
        ),  # another architecture
        (
            BASE[0],
            DeviceInfo(0, GPU.name, (8, 9), 24 << 30, False, 12040, 12090, sm_count=76),
            BASE[2],
            BASE[3],
        ),  # fewer SMs, same name
        (
            BASE[0],
            DeviceInfo(0, GPU.name, (8, 9), 24 << 30, False, 12040, 12090, sm_count=128, mig=True),
            BASE[2],
            BASE[3],
        ),  # a MIG slice
        (BASE[0], GPU, BuildSpec("int8", BatchRange(1, 8, 32)), BASE[3]),  # precision
        (BASE[0], GPU, BuildSpec("fp16", BatchRange(1, 8, 16)), BASE[3]),  # batch range
        (BASE[0], GPU, BuildSpec("fp16", BatchRange(1, 4, 32)), BASE[3]),  # batch opt
        (BASE[0], GPU, BuildSpec("fp16", BatchRange(1, 1, 1), dla_core=0), BASE[3]),  # DLA core
        (BASE[0], GPU, BuildSpec("fp16", BatchRange(1, 8, 32), workspace_gib=4.0), BASE[3]),  # workspace
        (BASE[0], GPU, BuildSpec("fp16", BatchRange(1, 8, 32), opt_level=5), BASE[3]),  # builder optimisation level
        (BASE[0], GPU, BASE[2], "cd" * 32),  # another ONNX
    ],
)
def test_plan_key_changes_with_everything_that_invalidates_a_plan(change: tuple) -> None:
    assert plan_key(*change) != plan_key(*BASE)
    assert re.fullmatch(r"[a-z0-9._-]+", plan_key(*change)), "keys are file names"


def test_plan_key_is_readable() -> None:
    assert plan_key(*BASE) == "fp16_b1-8-32_gpu_nvidia-geforce-rtx-4090_sm89x128_trt10.16.1.11_ws2_o3_abababab" + "ab"
    orin32 = DeviceInfo(0, "Orin", (8, 7), 32 << 30, True, 12060, 12060, sm_count=14)
    spec = BuildSpec("int8", BatchRange(1, 1, 1), dla_core=0, workspace_gib=1.5)
    assert (
        plan_key("10.3.0.30", orin32, spec, "cd" * 32)
        == "int8_b1-1-1_dla0_orin_sm87x14_trt10.3.0.30_ws1.5_o3_cdcdcdcdcd"
    )
    assert plan_key("10.3.0.30", ORIN_64, spec, "cd" * 32) != plan_key("10.3.0.30", orin32, spec, "cd" * 32)


def test_mig_instance_is_detected_from_the_visible_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app.runtime.cuda import in_mig_instance

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f6b8a2c-1d3e-5f70-8a9b-0c1d2e3f4a5b")
    assert in_mig_instance()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert not in_mig_instance()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert not in_mig_instance()


@pytest.mark.parametrize(
    "version, sm, ok",
    [
        ("10.16.1.11", (6, 1), False),
        ("10.16.1.11", (7, 0), False),
        ("10.16.1.11", (7, 5), True),
        ("10.3.0.30", (7, 2), True),
        ("10.3.0.30", (6, 1), False),
        ("10.4.0.26", (7, 0), True),
        ("10.5.0.18", (7, 0), False),
        ("11.4.0.106", (7, 5), True),
        ("11.4.0.106", (6, 0), False),
    ],
)
def test_tensorrt_is_unavailable_on_a_gpu_generation_it_does_not_support(
    monkeypatch: pytest.MonkeyPatch, version: str, sm: tuple[int, int], ok: bool
) -> None:
    """Defect: a Pascal GPU with TensorRT 10 was offered TensorRT, which then failed in the builder."""
    dev = DeviceInfo(0, "Tesla P4" if sm < (7, 0) else "GPU", sm, 8 << 30, False, 12040, 12090, sm_count=20)
    monkeypatch.setattr(support, "probe_gpu", lambda cuda=None: (dev, ""))
    got, why = trt_backend.available(trt=SimpleNamespace(__version__=version))  # type: ignore[arg-type]
    assert got is ok, why
    if not ok:
        need = "7.0" if version.startswith("10.") and int(version.split(".")[1]) < 5 else "7.5"
        assert re.search(
            rf"TensorRT {re.escape(version)} needs a GPU of compute capability {need} or newer, but {dev.name} is "
            rf"{sm[0]}\.{sm[1]}; .*--backend onnxruntime",
            why,
        ), why


def test_missing_onnx_names_the_calibrate_step(tmp_path: Path) -> None:
    ed = fake_engine_dir(tmp_path)
    assert onnx_for(ed, "fp32") == ed.path / "model.onnx"
    for prec, name in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.trt.onnx")):
        with pytest.raises(
            UserError,
            match=rf"{re.escape(name)}' does not exist; run `python run.py calibrate {re.escape(str(ed.path))}` first",
        ):
            onnx_for(ed, prec)


@pytest.mark.parametrize(
    "sm, precision, ok",
    [
        ((8, 7), "int8", True),
        ((6, 1), "int8", True),
        ((6, 0), "int8", False),
        ((5, 3), "fp16", True),
        ((5, 2), "fp16", False),
        ((5, 0), "fp32", True),
    ],
)
def test_precision_needs_a_capable_gpu(sm: tuple[int, int], precision: str, ok: bool) -> None:
    dev = DeviceInfo(0, "GPU X", sm, 1 << 30, False, 12000, 12000)
    if ok:
        check_precision_supported(dev, precision)
    else:
        with pytest.raises(
            UserError,
            match=rf"GPU X \(compute capability {sm[0]}.{sm[1]}\) has no fast {precision} kernels.*use --precision fp32",
        ):
            check_precision_supported(dev, precision)


def test_available_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        support,
        "probe_gpu",
        lambda cuda=None: (None, "no usable NVIDIA GPU (no driver); install the NVIDIA driver"),
    )
    assert trt_backend.available() == (False, "no usable NVIDIA GPU (no driver); install the NVIDIA driver")
    monkeypatch.setattr(support, "probe_gpu", lambda cuda=None: (GPU, ""))

    def no_trt() -> None:
        raise ImportError("TensorRT is not installed (No module named 'tensorrt'); on Jetson ...")

    monkeypatch.setattr(support, "load_trt", no_trt)
    ok, why = trt_backend.available()
    assert not ok and why.startswith("TensorRT is not installed")
    ok, why = trt_backend.available(trt=SimpleNamespace(__version__="8.6.1"))  # type: ignore[arg-type]
    assert not ok and "TensorRT 8.6.1 is too old" in why
    assert trt_backend.available(trt=SimpleNamespace(__version__="11.4.0.106")) == (
        True,
        "TensorRT 11.4.0.106 on NVIDIA GeForce RTX 4090 (sm 89)",
    )  # type: ignore[arg-type]


def _spy_build(monkeypatch: pytest.MonkeyPatch) -> list[BuildSpec]:
    """Replace tensorrt.build (no GPU here) with a recorder returning a plausible build record."""
    seen: list[BuildSpec] = []

    def fake_build(ed: EngineDir, spec: BuildSpec, **kw: object) -> dict:
        seen.append(spec)
        return {
            "cached": False,
            "build_s": 1.0,
            "plan": "plans/x.plan",
            "trt_version": "10.3.0.30",
            "gpu": "Orin",
            "precision": spec.precision,
            "batch": [spec.batch.min, spec.batch.opt, spec.batch.max],
        }

    monkeypatch.setattr(trt_backend, "build", fake_build)
    return seen


def test_cli_build_dla_forces_a_fixed_batch_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect: `build --dla 0` built the 1:8:32 range, which DLA cannot run."""
    seen = _spy_build(monkeypatch)
    ed = fake_engine_dir(tmp_path)
    assert main(["build", str(ed.path), "--precision", "fp16", "--dla", "0"]) == 0
    assert seen[-1].batch == BatchRange(1, 1, 1) and seen[-1].dla_core == 0
    out = capsys.readouterr().out
    assert "--dla 0: DLA runs fixed shapes only, so the plan is for batch 1" in out
    assert main(["build", str(ed.path), "--precision", "int8", "--dla", "1", "--batch", "4"]) == 0
    assert seen[-1].batch == BatchRange(4, 4, 4) and seen[-1].dla_core == 1
    assert main(["build", str(ed.path), "--precision", "fp32"]) == 0
    assert seen[-1].batch == BatchRange(1, 8, 32) and seen[-1].dla_core is None
    assert main(["build", str(ed.path), "--precision", "fp32", "--workspace", "4", "--opt-level", "5"]) == 0
    assert (seen[-1].workspace_gib, seen[-1].opt_level) == (4.0, 5)
    capsys.readouterr()
    assert main(["build", str(ed.path), "--precision", "fp16", "--dla", "0", "--batch", "1:8:32"]) == 2
    err = capsys.readouterr().err
    assert "--dla 0 needs a fixed batch" in err and len(err.strip().splitlines()) == 1, err


def test_dla_with_fp32_is_refused_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Defect: `--dla` with fp32 built a plan keyed dla0 whose every layer had silently fallen back to the GPU."""
    with pytest.raises(
        UserError, match=r"^--dla 0 runs FP16 and INT8 only, not fp32; build with --precision fp16 or int8"
    ):
        BuildSpec("fp32", BatchRange(1, 1, 1), dla_core=0)
    ed = fake_engine_dir(tmp_path)
    assert main(["build", str(ed.path), "--precision", "fp32", "--dla", "0"]) == 2
    err = capsys.readouterr().err
    assert "runs FP16 and INT8 only" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "version, refused",
    [("10.3.0.30", False), ("10.16.1.11", False), ("11.0.0.1", True), ("11.4.0.106", True), ("11.4.1.2", False)],
)
def test_dla_is_refused_where_tensorrt_lists_none(version: str, refused: bool) -> None:
    from edge_app.runtime.tensorrt.support import check_dla_supported

    check_dla_supported(version, None)  # no DLA asked for: nothing to check
    if refused:
        with pytest.raises(
            UserError, match=rf"^--dla 0: TensorRT {re.escape(version)} has no DLA support \(11.0 to 11.4.0"
        ):
            check_dla_supported(version, 0)
    else:
        check_dla_supported(version, 0)


def test_too_old_tensorrt_names_the_jetpack_that_ships_it() -> None:
    from edge_app.runtime.tensorrt.support import trt_major

    with pytest.raises(
        UserError,
        match=r"TensorRT 8\.6\.2 is too old; .*JetPack 6\.0 ships TensorRT 8\.6, JetPack 6\.1 and later ship 10\.3",
    ):
        trt_major(SimpleNamespace(__version__="8.6.2"))  # type: ignore[arg-type]


def test_bench_passes_dla_and_cuda_graph_to_open_engine(tiny_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_app.runtime as rt
    from edge_app.profiling import bench
    from edge_app.runtime.registry import Variant

    calls: list[dict] = []
    monkeypatch.setattr(rt, "open_engine", lambda *a, **k: calls.append(k) or "engine")
    v = Variant("trt-fp16", "tensorrt", "fp16", "cuda", "model.fp16.onnx", "fp16")
    assert bench.open_variant(tiny_engine, v, bench.BenchConfig(dla_core=1, cuda_graphs=True)) == "engine"
    assert calls[-1]["dla_core"] == 1 and calls[-1]["cuda_graphs"] is True
    bench.open_variant(tiny_engine, v, bench.BenchConfig())
    assert calls[-1]["dla_core"] is None and calls[-1]["cuda_graphs"] is False
    with pytest.raises(UserError, match=r"dla_core -1 is not a DLA core"):  # the library names fields
        bench.BenchConfig(dla_core=-1)
    cfgs: list = []
    monkeypatch.setattr(bench, "run_bench", lambda engine, cfg, out: cfgs.append(cfg) or {})
    monkeypatch.setattr(bench, "print_report", lambda r: None)
    assert main(["bench", str(tiny_engine), "--dla", "0", "--cuda-graph", "--out", str(tiny_engine.parent / "b")]) == 0
    assert cfgs[-1].dla_core == 0 and cfgs[-1].cuda_graphs is True


def _pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU 'is there' for open_engine, but no GPU backend except the one a test sets up can use it."""
    import edge_app.runtime as rt

    monkeypatch.setattr(rt, "gpu_absent_reason", lambda: "")
    monkeypatch.setattr("edge_app.runtime.onnxruntime.available_providers", lambda: ["CPUExecutionProvider"])


def test_auto_falls_back_and_says_why_tensorrt_was_not_used(tiny_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_gpu(monkeypatch)
    monkeypatch.setattr(trt_backend, "available", lambda: (False, "no usable NVIDIA GPU (test)"))
    with open_engine(tiny_engine) as eng:  # PyTorch CUDA where torch has CUDA, else ONNX Runtime on the CPU
        assert eng.backend != "tensorrt" and "tensorrt cuda not available: no usable NVIDIA GPU (test)" in eng.choice
        assert eng.infer(np.zeros((2, 32, 32, 3), np.uint8))["logits"].shape == (2, 6)
    with pytest.raises(
        UserError,
        match=r"backend tensorrt is not available here \(tensorrt cuda not available: no usable NVIDIA GPU \(test\)\); on Jetson",
    ):
        open_engine(tiny_engine, "tensorrt")


@pytest.mark.parametrize(
    "failure",
    [
        TypeError("pybind11::init(): factory function returned nullptr"),
        BuildError("TensorRT could not parse model.onnx: UINT8 intermediate"),
        PlanError("could not deserialize"),
    ],
)
def test_a_tensorrt_that_fails_to_open_is_passed_over_by_auto_and_an_error_when_asked_for(
    tiny_engine: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """Defect: a build or load failure crashed live/annotate/bench instead of falling back."""
    _pretend_gpu(monkeypatch)
    monkeypatch.setattr(trt_backend, "available", lambda: (True, "TensorRT 10.16 on a test GPU"))

    def fail(*a: object, **k: object) -> None:
        raise failure

    monkeypatch.setattr(trt_backend, "open_tensorrt", fail)
    with open_engine(tiny_engine) as eng:
        assert eng.backend != "tensorrt"
        assert f"tensorrt cuda failed: {type(failure).__name__}: {failure}" in eng.choice
    with pytest.raises(UserError, match=f"backend tensorrt failed to open .*{type(failure).__name__}"):
        open_engine(tiny_engine, "tensorrt")


def test_device_cpu_never_tries_tensorrt(tiny_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> tuple[bool, str]:
        raise AssertionError("TensorRT probed although --device cpu")

    monkeypatch.setattr(trt_backend, "available", boom)
    with open_engine(tiny_engine, device="cpu") as eng:
        assert eng.device == "cpu"


def test_ort_tensorrt_provider_caches_engines_in_the_plans_folder(tmp_path: Path) -> None:
    ed = EngineDir(tmp_path / "e")
    opts = gpu_provider_options("TensorrtExecutionProvider", ed)
    assert opts["trt_engine_cache_path"] == str(ed.plans_dir / "ort-trt") and opts["trt_engine_cache_enable"] == "True"
    assert gpu_provider_options("CUDAExecutionProvider", ed) == {}


@pytest.mark.parametrize(
    "precision, enabled", [("fp32", set()), ("fp16", {"trt_fp16_enable"}), ("int8", {"trt_int8_enable"})]
)
def test_ort_tensorrt_provider_is_told_the_model_files_precision(tmp_path: Path, precision: str, enabled: set) -> None:
    """Defect: the TensorRT provider ran model.fp16.onnx / model.int8.trt.onnx with FP16/INT8 off (weak typing: FP32)."""
    ed = EngineDir(tmp_path / "e")
    opts = gpu_provider_options("TensorrtExecutionProvider", ed, precision)
    assert {k for k in ("trt_fp16_enable", "trt_int8_enable") if opts.get(k) == "True"} == enabled
    assert "trt_int8_calibration_table_name" not in opts, "Q/DQ models must not be given a calibration table"
    assert gpu_provider_options("CUDAExecutionProvider", ed, precision) == {}


def test_ort_engine_passes_the_precision_options_to_the_session(
    tiny_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options reach InferenceSession for the file being opened (TensorRT provider faked: no GPU here)."""
    import shutil

    import onnxruntime as ort

    from edge_app.runtime.onnxruntime import OnnxRuntimeEngine

    ed = EngineDir(tiny_engine)
    seen: list = []
    real = ort.InferenceSession

    def session(path: str, so: object, providers: list) -> object:
        seen.append((Path(path).name, providers))
        return real(path, so, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    copy = EngineDir(Path(shutil.copytree(tiny_engine, tiny_engine.parent / "ort-opts", dirs_exist_ok=True)))
    shutil.copy(copy.onnx_path("fp32"), copy.onnx_path("fp16"))  # any valid graph: only the options are checked
    with OnnxRuntimeEngine(copy, ed.load_meta(), "fp16", "TensorrtExecutionProvider"):
        pass
    name, providers = seen[-1]
    assert name == "model.fp16.onnx" and providers[0][0] == "TensorrtExecutionProvider"
    assert providers[0][1]["trt_fp16_enable"] == "True" and "trt_int8_enable" not in providers[0][1]


def test_cli_build_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ed = fake_engine_dir(tmp_path)
    cases = [
        (["build", str(tmp_path / "none")], r"engine folder '.*none' does not exist"),
        (["build", str(ed.path), "--batch", "32:8:1"], r"batch range 32:8:1 is invalid"),
        (
            ["build", str(ed.path), "--precision", "int8"],
            r"model.int8.trt.onnx' does not exist; run `python run.py calibrate",
        ),
        (["build", str(ed.path), "--dla", "-2"], r"--dla -2 is not a DLA core number"),
    ]
    for argv, match in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert re.search(match, err) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_cli_build_without_gpu_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        support,
        "probe_gpu",
        lambda cuda=None: (None, "no usable NVIDIA GPU (no driver); install the NVIDIA driver"),
    )
    monkeypatch.setattr(support, "CudaRuntime", lambda: object())
    ed = fake_engine_dir(tmp_path)
    assert main(["build", str(ed.path), "--precision", "fp32"]) == 2
    assert "error: TensorRT needs an NVIDIA GPU: no usable NVIDIA GPU (no driver)" in capsys.readouterr().err


def test_onnxruntime_gpu_providers_are_not_used_without_a_gpu(
    tiny_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu lists CUDA/TensorRT providers on any machine; without a GPU auto must pick the CPU."""
    import edge_app.runtime.cuda as cb

    monkeypatch.setattr(trt_backend, "available", lambda: (False, "no GPU (test)"))
    monkeypatch.setattr(
        "edge_app.runtime.onnxruntime.available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(cb, "probe_gpu", lambda cuda=None: (None, "no usable NVIDIA GPU (test driver)"))
    with open_engine(tiny_engine) as eng:
        assert eng.device == "cpu"
        assert "no GPU backend: no usable NVIDIA GPU (test driver)" in eng.choice
    with open_engine(tiny_engine, "onnxruntime") as eng:  # asked for by name, device auto: the CPU provider
        assert eng.device == "cpu"
        assert "onnxruntime cuda not available: no usable NVIDIA GPU (test driver)" in eng.choice


def test_the_loops_batch_reaches_the_plan_choice(tiny_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """live/annotate pass --batch so TensorRT opens (or builds) a plan whose profile holds it, not one for batch 1."""
    from edge_app.runtime.registry import OpenOptions

    seen: dict = {}

    def fake_open(ed, meta, precision, **kw):  # noqa: ANN001, ANN003
        seen.update(kw)
        raise PlanError("stop here")

    monkeypatch.setattr(trt_backend, "open_tensorrt", fake_open)
    ed = EngineDir(tiny_engine)
    with pytest.raises(PlanError):
        trt_backend.BACKEND.open(ed, ed.load_meta(), OpenOptions(device="cuda", batch=8, dla_core=1))
    assert seen["batch"] == 8 and seen["dla_core"] == 1
    with pytest.raises(UserError, match="batch 0 must be at least 1"):
        open_engine(tiny_engine, batch=0)


# ----------------------------------------------------------------------------------------- layer information
def test_layer_counts_read_the_inspectors_formats() -> None:
    import json

    from edge_app.runtime.tensorrt.layers import count_layers, format_counts
    from tests.runtime.trt_stub.world import dla_layers, layer_record

    layers = [*dla_layers(), layer_record("argmax", "TopK", "int32"), "a name only"]
    c = count_layers(json.dumps({"Layers": layers}))
    assert c == {"layers": 5, "int8": 0, "fp16": 3, "fp32": 0, "other": 2, "dla": 1, "detailed": True}
    assert format_counts(c) == "5 layers: 3 FP16, 2 other (int32/bool) (1 on DLA)"
    names_only = count_layers(json.dumps({"Layers": ["conv1", "fc"]}))
    assert "precisions unknown: the plan was built without detailed profiling" in format_counts(names_only)


def test_layer_info_that_is_not_the_inspectors_json_is_one_sentence() -> None:
    from edge_app.runtime.tensorrt.layers import count_layers

    with pytest.raises(ValueError, match=r"^engine inspector output is not JSON"):
        count_layers("Layers: conv1")
    with pytest.raises(ValueError, match=r"^engine inspector JSON has no 'Layers' list; got keys \['Bindings'\]"):
        count_layers('{"Bindings": []}')


def test_latency_builds_opt_at_the_batch_it_runs_and_throughput_keeps_the_default() -> None:
    from edge_app.runtime.tensorrt.plans import default_batch, wanted_batch

    assert wanted_batch(None, "latency") == 1 and wanted_batch(None, "throughput") is None
    assert default_batch(1, None, "latency") == BatchRange(1, 1, 32)
    assert default_batch(4, None, "latency") == BatchRange(1, 4, 32)  # four cameras, one call
    assert default_batch(None, None, "throughput") == BatchRange(1, 8, 32)
    assert default_batch(2, 0, "latency") == BatchRange(2, 2, 2)  # DLA: fixed shapes
    with pytest.raises(UserError, match=r"^use 'fast' is unknown; choose one of latency, throughput"):
        wanted_batch(None, "fast")


@pytest.mark.parametrize(
    "why, jetson, fix",
    [
        (
            "TensorRT is not installed (No module named 'tensorrt'); on Jetson ...",
            True,
            "sudo apt install python3-libnvinfer",
        ),
        (
            "TensorRT is not installed (No module named 'tensorrt'); on Jetson ...",
            False,
            "pip install tensorrt (it downloads",
        ),
        (
            "TensorRT 8.6.2 is too old; edge_app needs TensorRT 10.x or 11.x",
            True,
            "upgrade to JetPack 6.1 or later (TensorRT 10.3)",
        ),
        ("cuda-python is not installed; pip install cuda-bindings", False, "pip install cuda-bindings"),
        (
            "TensorRT 10.16 needs a GPU of compute capability 7.5 or newer, but Tesla P4 is 6.1; use TensorRT 8.6 for Pascal",
            False,
            "use TensorRT 8.6 for Pascal",
        ),
    ],
)
def test_descriptor_fix_names_only_what_is_missing(why: str, jetson: bool, fix: str) -> None:
    from edge_app.runtime.registry import Host

    got = trt_backend.BACKEND.fix("cuda", why, Host(jetson=jetson))
    assert got.startswith(fix) and ("pip" not in got or not jetson), got
    assert trt_backend.BACKEND.threads is None and trt_backend.BACKEND.notes
