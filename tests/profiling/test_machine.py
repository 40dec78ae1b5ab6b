"""What bench says about the machine and the backends comes from the backend descriptors, not from names here."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path

import pytest

from edge_app.engine_dir import EngineDir
from edge_app.profiling import bench, machine
from edge_app.profiling.results import BenchReport, CaseResult
from edge_app.runtime.registry import Backend, backends, get_backend


def _fake_backend(**kw: object) -> Backend:
    """A registered-looking backend that runs nowhere, with the descriptor fields under test."""
    return Backend(
        name="fakert",
        devices=("cpu",),
        priority=99,
        install_hint="pip install fakert",
        available=lambda dev: (False, "fakert is not installed"),
        open=lambda ed, meta, opts: None,  # type: ignore[arg-type,return-value]
        **kw,  # type: ignore[arg-type]
    )


def test_versions_cover_every_backend_openvino_included() -> None:
    """Every backend's runtime has a version entry (OpenVINO was missing when the list was hand-written)."""
    vers = machine.machine_info()["versions"]
    assert [b.name for b in backends()] == list(vers)[: len(backends())]
    assert {"opencv", "numpy"} <= set(vers)
    assert vers["openvino"] == (
        importlib.metadata.version("openvino") if get_backend("openvino").available("cpu")[0] else None
    )
    assert vers["onnxruntime"] == importlib.metadata.version("onnxruntime")


def test_a_new_backend_reports_its_version_and_threads_without_an_edit_here(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_backend(versions=("no-such-dist", "numpy"), threads=lambda asked: (asked or 1) * 10)
    monkeypatch.setattr(machine, "backends", lambda: (*backends(), fake))
    assert machine.library_versions()["fakert"] == importlib.metadata.version("numpy")  # first installed wins
    assert machine.thread_counts(3)["fakert"] == 30


def test_thread_counts_are_the_descriptors_thread_settings() -> None:
    """Backends that take a thread count say what they run with; a GPU-only one (TensorRT) is left out."""
    counts = machine.thread_counts(3)
    with_threads = [b.name for b in backends() if b.threads is not None]
    assert list(counts) == with_threads and "tensorrt" not in counts
    assert counts["onnxruntime"] == 3 and counts["openvino"] == 3
    import torch

    assert counts["torch"] == torch.get_num_threads()  # process-wide, as bench sets it


def _report(tiny_engine: Path, *backend_names: str) -> BenchReport:
    ed = EngineDir(tiny_engine)
    header = bench.bench_header(ed, ed.load_meta(), bench.BenchConfig(progress=False), "model", 1.0)
    stats = dict.fromkeys(("min", "p50", "p90", "p99", "max", "mean"), 1.0)
    rows = tuple(
        CaseResult(
            f"{n}-fp32", n, "fp32", "cpu", n, "model.onnx", 1, stats, True, 10.0, 10, 1.0, 2, 0.1, 1, {}, None, None, {}
        )
        for n in backend_names
    )
    return BenchReport(**header.header_fields(), results=rows, files={"json": "b.json"})


def test_print_report_prints_the_notes_of_the_backends_measured(
    tiny_engine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _fake_backend(notes=("fakert ran with its own clock",))
    monkeypatch.setattr(bench, "backends", lambda: (*backends(), fake))
    bench.print_report(_report(tiny_engine, "fakert"))
    out = capsys.readouterr().out
    assert "fakert ran with its own clock" in out
    ov_note = get_backend("openvino").notes[0]
    assert ov_note not in out  # OpenVINO was not measured: its note stays out
    bench.print_report(_report(tiny_engine, "openvino", "onnxruntime"))
    out = capsys.readouterr().out
    assert ov_note in out and "fakert ran" not in out


def test_descriptor_defaults_keep_an_older_descriptor_working() -> None:
    """A descriptor written before versions/threads/notes/fix_hint: its name as distribution, install hint as fix."""
    old = _fake_backend()
    assert old.versions == () and old.threads is None and old.notes == ()
    from edge_app.runtime.registry import Host

    assert old.fix("cpu", "fakert is not installed", Host()) == "pip install fakert"
    assert dataclasses.replace(old, name="numpy").version() == importlib.metadata.version("numpy")
