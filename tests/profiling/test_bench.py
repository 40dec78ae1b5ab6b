"""`bench`: variant discovery, interleaved measurement, reports, and one-sentence errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.engine_dir import EngineDir
from edge_app.errors import FieldError, UserError
from edge_app.profiling import bench
from edge_app.profiling import variants as variants_mod
from edge_app.profiling.bench import BenchConfig, Case, measure, parse_batches, parse_list, run_bench
from edge_app.runtime.registry import Variant, backend_names, backends, get_backend
from edge_app.timing import StageTimer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quick(**kw: Any) -> BenchConfig:
    """A configuration short enough for CI on 2 shared cores."""
    return BenchConfig(**{"warmup": 0.05, "duration": 0.2, "iterations": 3, "slice_s": 0.05, "progress": False, **kw})


@pytest.fixture()
def engine_with_int8(tiny_engine: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny_engine`` that also has a model.int8.cpu.onnx and INT8 accuracy in meta.json.

    The "int8" file is the fp32 graph under the INT8 name: enough to check that bench finds, runs and labels it.
    """
    dst = tmp_path / "tiny8"
    dst.mkdir()
    for f in ("checkpoint.pt", "model.onnx"):
        (dst / f).symlink_to(tiny_engine / f)
    (dst / "model.int8.cpu.onnx").symlink_to(tiny_engine / "model.onnx")
    meta = json.loads((tiny_engine / "meta.json").read_text())
    meta["accuracy"]["int8.cpu"] = {"top1": 0.4321, "agreement": 0.97}  # the keys `calibrate` writes
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


class FakeEngine:
    """Sleeps ``ms`` per call and reports internal stages like the TensorRT backend; logs the call order."""

    def __init__(self, name: str, ms: float, log: list[str]) -> None:
        self.name, self.ms, self.log = name, ms, log
        self.last_timings: dict[str, float] = {}

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(self.ms / 1e3)
        self.log.append(self.name)
        self.last_timings = {"h2d": 0.1, "compute": self.ms, "d2h": 0.05}
        return {"logits": np.zeros((images.shape[0], 2), np.float32)}


def _case_result(variant: str, batch: int = 1, throughput: float = 10.0, **kw: Any) -> bench.CaseResult:
    """A measured case as ``run_bench`` records it, with made-up numbers."""
    stats = dict.fromkeys(("min", "p50", "p90", "p99", "max", "mean"), 1.0)
    return bench.CaseResult(
        **{
            "variant": variant,
            "backend": "fake",
            "precision": "fp32",
            "device": "cpu",
            "description": "fake engine",
            "model_file": "model.onnx",
            "batch": batch,
            "latency_ms": stats,
            "percentiles_exact": True,
            "throughput_ips": throughput,
            "calls": 10,
            "measured_s": 1.0,
            "slices": 2,
            "warmup_s": 0.1,
            "warmup_calls": 1,
            "stages_ms": {},
            "accuracy_top1": None,
            "agreement_fp32": None,
            "histogram": {"bins": {}},
            **kw,
        }
    )


def _fake_cases(log: list[str], *ms: float) -> list[Case]:
    return [
        Case(Variant(f"v{i}", "fake", "fp32", "cpu"), FakeEngine(f"v{i}", m, log), 1, StageTimer(10_000))  # type: ignore[arg-type]
        for i, m in enumerate(ms)
    ]


# ------------------------------------------------------------------------------------------------ parsing
def test_parse_batches_and_lists() -> None:
    assert parse_batches("1,8,32") == (1, 8, 32)
    assert parse_batches(" 4 , 4,2") == (4, 2)
    assert parse_list("torch,onnxruntime", backend_names(), "--backends") == ("torch", "onnxruntime")
    assert parse_list(None, backend_names(), "--backends") is None


@pytest.mark.parametrize(
    "text, msg",
    [
        ("0", r"^batches 0 is not a batch size"),
        ("1,x", r"^batches '1,x': 'x' is not a whole number"),
        ("-3", r"^batches -3 is not a batch size"),
    ],
)
def test_parse_batches_rejects_bad_sizes_naming_the_field(text: str, msg: str) -> None:
    with pytest.raises(FieldError, match=msg) as e:
        parse_batches(text)
    assert "--" not in str(e.value)  # a library error names the field; the CLI re-words it as its flag


def test_parse_list_rejects_unknown_backend() -> None:
    with pytest.raises(
        UserError, match=r"--backends 'tflite' is not known; choose from tensorrt, .*onnxruntime, .*torch"
    ):
        parse_list("torch,tflite", backend_names(), "--backends")


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"duration": -1}, r"^duration -1 is negative"),
        ({"warmup": -0.5}, r"^warmup -0.5 is negative"),
        ({"iterations": 0}, r"^iterations 0 is below 1"),
        ({"batches": (2, 0)}, r"^batches 0 is not"),
        ({"batches": ()}, r"^batches \(none\) is empty"),
        ({"slice_s": 0.0}, r"^slice_s 0 must be greater than 0"),
        ({"threads": 0}, r"^threads 0 must be at least 1"),
        ({"dla_core": -1}, r"^dla_core -1 is not a DLA core"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kw: dict[str, Any], msg: str) -> None:
    """Library errors name the field (a Ray worker or a Python caller never sees a flag), with no flag in them."""
    with pytest.raises(FieldError, match=msg) as e:
        BenchConfig(**kw)
    assert e.value.field == next(iter(kw)) and "--" not in str(e.value)


def test_config_is_frozen() -> None:
    """A report keeps the settings it ran with: nobody can change them under it."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        BenchConfig().warmup = 2.0  # type: ignore[misc]


def test_discovery_adds_gpu_variants_where_present(engine_with_int8: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT and ONNX Runtime GPU variants appear when their runtime and model files do (no GPU needed to check)."""
    import edge_app.runtime.onnxruntime as ort_backend

    (engine_with_int8 / "model.fp16.onnx").symlink_to(engine_with_int8 / "model.onnx")
    everywhere = tuple(dataclasses.replace(b, available=lambda dev: (True, "")) for b in backends())
    monkeypatch.setattr(variants_mod, "backends", lambda: everywhere)
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    variants, skipped = bench.discover_variants(EngineDir(engine_with_int8), BenchConfig())
    keys = [v.key for v in variants if v.backend in ("tensorrt", "onnxruntime", "torch")]
    # the baseline first, then registry order; PyTorch on the GPU replaces PyTorch on the CPU (one torch-fp32)
    assert keys == [
        "torch-fp32",
        "trt-fp32",
        "trt-fp16",
        "ort-gpu-fp32",
        "ort-gpu-fp16",
        "ort-fp32",
        "ort-int8-cpu",
        "torch-fp16",
    ]
    assert next(v for v in variants if v.key == "torch-fp32").device == "cuda"
    assert (
        bench.Skipped("trt-int8", "model.int8.trt.onnx is missing; run `python run.py calibrate` to make it") in skipped
    )
    only = bench.discover_variants(EngineDir(engine_with_int8), BenchConfig(device="cpu", precisions=("int8",)))[0]
    assert [v.key for v in only if v.backend == "onnxruntime"] == ["ort-int8-cpu"]


# ------------------------------------------------------------------------------------------------ measuring
def test_measure_interleaves_variants_in_slices_and_respects_windows() -> None:
    log: list[str] = []
    cases = _fake_cases(log, 2.0, 5.0)
    cfg = BenchConfig(warmup=0.05, duration=0.3, iterations=1, slice_s=0.05, progress=False)
    measure(cases, np.zeros((1, 8, 8, 3), np.uint8), cfg)
    runs = [log[0]]
    for name in log[1:]:
        if name != runs[-1]:
            runs.append(name)
    # after the two warm-ups, the variants alternate: many turns each, not one long block per variant
    assert runs[:2] == ["v0", "v1"] and runs[2:8] == ["v0", "v1"] * 3
    for c in cases:
        assert (
            cfg.warmup <= c.warmup_s <= cfg.warmup + 0.1
        )  # one call past the deadline at most (slack: shared CI cores)
        assert cfg.duration <= c.measured_s <= cfg.duration + cfg.slice_s + 0.1
        assert c.slices >= 5 and c.calls == c.timer.stats["latency"].count
        assert c.timer.stats["latency"].percentile(50) >= c.engine.ms  # type: ignore[attr-defined]
        # the engine's own stage timings (TensorRT: h2d / compute / d2h) are kept per call
        assert c.timer.stats["compute"].count == c.calls and c.timer.stats["d2h"].last == 0.05


def test_measure_runs_at_least_the_iterations_when_they_take_longer() -> None:
    log: list[str] = []
    cases = _fake_cases(log, 3.0)
    measure(
        cases,
        np.zeros((1, 8, 8, 3), np.uint8),
        BenchConfig(warmup=0.0, duration=0.01, iterations=25, slice_s=0.02, progress=False),
    )
    assert cases[0].calls >= 25 and cases[0].measured_s >= 25 * 3e-3


# ------------------------------------------------------------------------------------------------ whole runs
def test_run_bench_measures_every_variant_and_writes_reports(engine_with_int8: Path, tmp_path: Path) -> None:
    cfg = quick(batches=(1, 2))
    out = tmp_path / "out"
    rep = run_bench(engine_with_int8, cfg, out)
    got = {(r.variant, r.batch) for r in rep.results}
    ov = ("ov-fp32", "ov-int8") if get_backend("openvino").available("cpu")[0] else ()  # registered, installed or not
    assert got == {(v, b) for v in ("torch-fp32", "ort-fp32", "ort-int8-cpu", *ov) for b in (1, 2)}
    meta = EngineDir(engine_with_int8).load_meta()
    for r in rep.results:
        lat = r.latency_ms
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r.throughput_ips == pytest.approx(r.calls * r.batch / r.measured_s)
        assert r.measured_s >= cfg.duration and r.calls >= cfg.iterations and r.warmup_s >= cfg.warmup
        assert r.percentiles_exact and sum(r.histogram["bins"].values()) == r.calls
        if r.variant == "torch-fp32":
            assert r.speedup == pytest.approx(1.0)
            assert r.accuracy_top1 == meta.accuracy["fp32"].top1
        if r.variant == "ort-int8-cpu":
            assert r.accuracy_top1 == 0.4321 and r.agreement_fp32 == 0.97 and r.model_file == "model.int8.cpu.onnx"
    assert rep.files == {
        "latency_png": str(out / "latency.png"),
        "throughput_png": str(out / "throughput.png"),
        "json": str(out / "bench.json"),
    }
    saved = json.loads((out / "bench.json").read_text())
    # bench.json keeps the keys (and their order) it had when the report was a dict
    assert list(saved) == [
        "engine",
        "name",
        "arch",
        "input",
        "created",
        "mode",
        "baseline",
        "wall_s",
        "config",
        "machine",
        "threads",
        "results",
        "skipped",
        "files",
    ]
    assert list(saved["results"][0]) == [
        "variant",
        "backend",
        "precision",
        "device",
        "description",
        "model_file",
        "batch",
        "latency_ms",
        "percentiles_exact",
        "throughput_ips",
        "calls",
        "measured_s",
        "slices",
        "warmup_s",
        "warmup_calls",
        "stages_ms",
        "accuracy_top1",
        "agreement_fp32",
        "histogram",
        "speedup",
    ]
    assert saved["engine"] == str(engine_with_int8) and saved["mode"] == "model" and saved["files"] == rep.files
    assert saved["results"][0]["variant"] == rep.results[0].variant and saved["skipped"] == [
        s.to_dict() for s in rep.skipped
    ]
    assert "progress" not in saved["config"] and saved["config"]["warmup"] == cfg.warmup
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["versions"]["onnxruntime"]
    assert len(saved["results"]) == len(got) and saved["config"]["batches"] == [1, 2]
    for png in ("latency.png", "throughput.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_cli_bench_prints_table_with_ratios_and_missing_accuracy(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "bench",
            str(tiny_engine),
            "--warmup",
            "0.05",
            "--duration",
            "0.2",
            "--iterations",
            "2",
            "--slice",
            "0.05",
            "--backends",
            "torch,onnxruntime",
            "--precisions",
            "fp32",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "machine: " in out and " cores, GPU: " in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("torch-fp32 ", "ort-fp32 "))}
    assert rows["torch-fp32"][9] == "1.00x" and rows["ort-fp32"][9].endswith("x")
    assert (
        "not measured: ort-int8-cpu (model.int8.cpu.onnx is missing; run `python run.py calibrate`" not in out
    )  # filtered by --precisions
    assert f"{tmp_path / 'o' / 'bench.json'}" in out


def test_speedup_is_relative_to_the_baseline_at_the_same_batch() -> None:
    results = [
        _case_result("torch-fp32", 1, 10.0),
        _case_result("ort-fp32", 1, 25.0),
        _case_result("ort-fp32", 8, 80.0),
    ]
    got = bench.add_ratios(results)
    assert [r.speedup for r in got] == [pytest.approx(1.0), pytest.approx(2.5), None]  # no baseline at batch 8
    assert results[1].speedup is None  # the records are frozen: add_ratios returns new ones
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].speedup = 3.0  # type: ignore[misc]


def test_report_to_dict_is_bench_json_shape(tiny_engine: Path) -> None:
    ed = EngineDir(tiny_engine)
    header = bench.bench_header(ed, ed.load_meta(), quick(batches=(1, 4)), "model", 1.5)
    rep = bench.BenchReport(
        **header.header_fields(),
        results=(_case_result("torch-fp32"),),
        skipped=(bench.Skipped("trt", "no GPU"),),
        files={"json": "x/bench.json"},
    )
    d = rep.to_dict()
    assert d["engine"] == str(tiny_engine) and d["input"] == "32x32" and d["wall_s"] == 1.5
    assert d["config"]["batches"] == [1, 4] and "progress" not in d["config"]
    assert d["skipped"] == [{"variant": "trt", "reason": "no GPU"}] and d["files"] == {"json": "x/bench.json"}
    assert d["results"][0]["variant"] == "torch-fp32" and d["results"][0]["speedup"] is None
    assert json.loads(json.dumps(d)) == d  # plain JSON types only
    # bench --pipeline builds its report on the same header
    assert bench.bench_header(ed, ed.load_meta(), quick(), "pipeline", 1.0).to_dict()["mode"] == "pipeline"


def test_accuracy_missing_shows_dash(engine_with_int8: Path) -> None:
    meta = EngineDir(engine_with_int8).load_meta()
    v = Variant("trt-fp16", "tensorrt", "fp16", "cuda", "model.fp16.onnx", "fp16")
    assert bench.accuracy_of(meta, v) is None
    from edge_app.profiling.report import results_table

    row = results_table([_case_result("trt-fp16")], "torch-fp32").splitlines()[-1].split()
    assert row[-3:] == ["-", "-", "-"]  # no speed-up, top-1 or agreement: dashes, not blanks


# ------------------------------------------------------------------------------------------------ bad input
def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_cli_batch_zero(tiny_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--batch 0 is not a batch size" in _cli_error(["bench", str(tiny_engine), "--batch", "0"], capsys)


def test_cli_negative_duration(tiny_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--duration -1 is negative" in _cli_error(["bench", str(tiny_engine), "--duration", "-1"], capsys)


def test_cli_engine_folder_without_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    err = _cli_error(["bench", str(tmp_path / "empty")], capsys)
    assert "has no model.onnx; run `python run.py export" in err


def test_cli_batch_beyond_engine_profile(
    tiny_engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_open = variants_mod.open_variant

    def open_with_profile(path: Path, v: Variant, cfg: BenchConfig) -> Any:
        eng = real_open(path, v, cfg)
        eng.max_batch = 4  # what a TensorRT engine built for batches 1..4 reports
        return eng

    monkeypatch.setattr(variants_mod, "open_variant", open_with_profile)
    err = _cli_error(
        ["bench", str(tiny_engine), "--backends", "onnxruntime", "--batch", "1,8", "--out", str(tmp_path)], capsys
    )
    assert "--batch 8 exceeds the ort-fp32 engine's profile maximum of 4; use batch sizes up to 4" in err


def test_cli_backend_not_installed(
    tiny_engine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tuple(
        dataclasses.replace(b, available=lambda dev: (False, "onnxruntime is not installed"))
        if b.name == "onnxruntime"
        else b
        for b in backends()
    )
    monkeypatch.setattr(variants_mod, "backends", lambda: gone)
    err = _cli_error(["bench", str(tiny_engine), "--backends", "onnxruntime"], capsys)
    assert (
        "--backends onnxruntime is not available here (cuda: onnxruntime is not installed; cpu: onnxruntime is not "
        "installed); pip install onnxruntime" in err
    )


def test_cli_tensorrt_named_where_it_is_missing(tiny_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if get_backend("tensorrt").available("cuda")[0]:
        pytest.skip("TensorRT is usable on this machine")
    err = _cli_error(["bench", str(tiny_engine), "--backends", "tensorrt"], capsys)
    assert "--backends tensorrt is not available here (cuda:" in err and "JetPack" in err
    assert "or leave tensorrt out" in err


def test_no_runnable_variant(tiny_engine: Path, tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"no variant of .* can run here \(ort-int8-cpu: model.int8.cpu.onnx is missing"
    ):
        run_bench(tiny_engine, quick(backends=("onnxruntime",), precisions=("int8",)), tmp_path)


# ------------------------------------------------------------------------------------------------ scripts
def _script(*args: str) -> str:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_overhead_script_prints_both_p50s_and_windows(tiny_engine: Path) -> None:
    out = _script(
        "scripts/bench_overhead.py", str(tiny_engine), "--warmup", "0.05", "--duration", "0.2", "--rounds", "1"
    )
    assert "round 1: bare session.run p50 " in out and "bench ort-fp32 p50 " in out
    assert "interleaved in 0.1 s slices" in out and "windows: warm-up off by at most" in out


def test_make_bench_engine_script_exports_a_runnable_engine(tmp_path: Path) -> None:
    out = _script(
        "scripts/make_bench_engine.py", "--img", "32", "--classes", "3", "--name", "r", "--engines", str(tmp_path)
    )
    assert f"wrote {tmp_path / 'r'}" in out
    meta = EngineDir(tmp_path / "r").load_meta()
    assert meta.arch == "resnet18" and (meta.input.height, meta.num_classes) == (32, 3)


def test_batch_one_is_timed_with_the_latency_hint_and_larger_batches_with_throughput(
    engine_with_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO compiles per use: bench opens it once per use; backends that do not are opened once."""
    if not get_backend("openvino").available("cpu")[0]:
        pytest.skip("openvino is not installed")
    import edge_app.runtime as runtime

    opened: list[tuple[str, str]] = []
    real = runtime.open_engine

    def spy(path, backend, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        eng = real(path, backend, *a, **kw)
        opened.append((backend, kw["use"]))
        return eng

    monkeypatch.setattr(runtime, "open_engine", spy)
    assert bench.batch_use(1) == "latency" and bench.batch_use(8) == "throughput"
    rep = run_bench(
        engine_with_int8, quick(backends=("openvino", "onnxruntime"), precisions=("fp32",), batches=(1, 2)), tmp_path
    )
    assert sorted(opened) == [("onnxruntime", "throughput"), ("openvino", "latency"), ("openvino", "throughput")]
    assert sorted((r.variant, r.batch) for r in rep.results) == [
        ("ort-fp32", 1),
        ("ort-fp32", 2),
        ("ov-fp32", 1),
        ("ov-fp32", 2),
    ]
