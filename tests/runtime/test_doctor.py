"""``run.py doctor`` on this machine (no GPU) and, through injected probes, on machines we do not have."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from edge_app import doctor
from edge_app.cli import main
from edge_app.runtime import backends
from edge_app.runtime.cuda import DeviceInfo
from edge_app.runtime.registry import Host

BACKEND_LINES = tuple(f"backend {b.name} {d}" for b in backends() for d in ("cuda", "cpu") if d in b.devices)
# The backends have no hand-written lines: each descriptor gives its lines (state, version, fix).
SECTIONS = ("python", "gpu", "opencv", "opencv ffmpeg", "opencv gstreamer", "opencv gui", "cameras", *BACKEND_LINES)
ORIN = DeviceInfo(0, "Orin", (8, 7), 15 << 30, True, 12060, 12090)


def test_doctor_runs_here_and_gives_a_fix_for_everything_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [m.group(2).strip() for line in lines if (m := re.match(r"\[(ok|--)\] (.+?)  ", line))]
    assert names == list(SECTIONS), lines
    for i, line in enumerate(lines):
        if line.startswith("[--]"):
            assert lines[i + 1].strip().startswith("fix: "), f"no fix after: {line}"
    assert lines[-1].startswith("auto backend here: ")


def test_doctor_json_lists_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["checks"]] == list(SECTIONS)
    assert all(c["fix"] for c in report["checks"] if not c["ok"])
    assert report["summary"].startswith("auto backend here: ")


def test_gpu_check_reports_device_and_driver() -> None:
    c = doctor.check_gpu(lambda: (ORIN, ""))
    assert c.ok and c.detail == (
        "Orin, compute capability 8.7, 15.0 GiB (integrated, Jetson); driver supports CUDA 12.6, "
        "cuda-python runtime 12.9"
    )


@pytest.mark.parametrize(
    "why, fix",
    [
        ("cuda-python is not installed; pip install cuda-bindings", "pip install cuda-bindings"),
        (
            "no usable NVIDIA GPU (cudaGetDeviceCount failed: cudaErrorNoDevice); install the NVIDIA driver",
            "install the NVIDIA driver",
        ),
    ],
)
def test_gpu_check_without_gpu_gives_a_fix(why: str, fix: str) -> None:
    c = doctor.check_gpu(lambda: (None, why))
    assert not c.ok and c.detail == why.split(";")[0] and fix in c.fix


def test_opencv_build_flags_are_read_from_build_information() -> None:
    info = """
  GUI:                           NONE
  Video I/O:
    FFMPEG:                      NO
    GStreamer:                   YES (1.22.0)
"""
    checks = {c.name: c for c in doctor.check_opencv(lambda: ("4.10.0", info))}
    assert checks["opencv"].detail == "OpenCV 4.10.0"
    assert checks["opencv gstreamer"].ok and checks["opencv gstreamer"].detail == "GStreamer: YES (1.22.0)"
    assert not checks["opencv ffmpeg"].ok and "opencv-python" in checks["opencv ffmpeg"].fix
    assert not checks["opencv gui"].ok and "headless" in checks["opencv gui"].fix


def test_video_devices(tmp_path: Path) -> None:
    empty = doctor.check_video_devices(str(tmp_path / "video*"))
    assert not empty.ok and "/dev/video" in empty.fix
    for n in (2, 0):
        (tmp_path / f"video{n}").touch()
    found = doctor.check_video_devices(str(tmp_path / "video*"))
    assert found.ok and found.detail == f"{tmp_path}/video0, {tmp_path}/video2"


@pytest.mark.parametrize(
    "gpu, trt, ort_gpu, want",
    [
        (True, True, False, "tensorrt on the GPU"),
        (True, False, True, "onnxruntime on the GPU"),
        (False, True, True, "onnxruntime on the CPU"),  # no GPU: GPU backends are skipped, as open_engine does
    ],
)
def test_summary_names_the_backend_auto_would_pick(gpu: bool, trt: bool, ort_gpu: bool, want: str) -> None:
    checks = [
        doctor.Check("gpu", gpu, ""),
        doctor.Check("backend tensorrt cuda", trt, ""),
        doctor.Check("backend onnxruntime cuda", ort_gpu, ""),
        doctor.Check("backend onnxruntime cpu", True, ""),
        doctor.Check("backend torch cpu", True, ""),
    ]
    assert doctor.summary(checks) == f"auto backend here: {want}"


def test_summary_without_any_backend_says_what_to_install() -> None:
    checks = [
        doctor.Check("gpu", False, "", "x"),
        doctor.Check("backend onnxruntime cpu", False, "", "pip install onnxruntime"),
    ]
    assert doctor.summary(checks) == "auto backend here: none (pip install onnxruntime)"


def test_every_registered_backend_has_a_doctor_line() -> None:
    from edge_app.runtime import backends

    names = {c.name for c in doctor.check_backends()}
    for b in backends():
        assert {f"backend {b.name} {d}" for d in b.devices} <= names
    assert any(c.ok for c in doctor.check_backends() if c.name == "backend onnxruntime cpu")


# ------------------------------------------------------------------------------------------------ fixes
def _pip_installs(text: str) -> list[str]:
    """The distributions a fix tells pip to install (``pip install X==1``: ``x``); options are not names."""
    return [m.split("==")[0].lower() for m in re.findall(r"pip install ([\w.=-]+)", text) if not m.startswith("-")]


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_fixes_suggest_installing_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fix tells pip to install a distribution that is installed (torch, onnxruntime were, while installed)."""
    here = doctor.run_checks()
    with_gpu = doctor.check_backends(host=Host(jetson=False), gpu_ok=True)  # as on a desktop with a GPU
    for c in [*here, *with_gpu]:
        for dist in _pip_installs(c.fix):
            assert not _installed(dist), f"{c.name}: '{c.fix}' installs {dist}, which is installed"
    assert all(c.fix for c in [*here, *with_gpu] if not c.ok)


def test_a_cpu_build_of_onnxruntime_is_replaced_not_reinstalled() -> None:
    ort_gpu = next(c for c in doctor.check_backends(host=Host(), gpu_ok=True) if c.name == "backend onnxruntime cuda")
    if ort_gpu.ok:
        pytest.skip("onnxruntime-gpu runs here")
    assert ort_gpu.fix == "pip uninstall onnxruntime && pip install onnxruntime-gpu"
    assert ort_gpu.detail.startswith(f"onnxruntime {importlib.metadata.version('onnxruntime')} installed; ")


def test_without_a_gpu_gpu_backends_point_at_the_gpu_line() -> None:
    lines = doctor.check_backends(host=Host(), gpu_ok=False)
    assert all(c.fix == doctor.NO_GPU_FIX for c in lines if c.name.endswith(" cuda") and not c.ok)


def test_the_gpu_fallback_names_the_backend_auto_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not `--backend onnxruntime` where auto picks OpenVINO: the fallback is what the summary names."""
    checks = doctor.run_checks()
    gpu = next(c for c in checks if c.name == "gpu")
    if gpu.ok:
        pytest.skip("this machine has a GPU")
    summary = doctor.summary(checks)
    picked = summary.split(": ")[1].split(" on ")[0]
    assert f"runs on the CPU with {picked} (what backend auto picks here)" in gpu.fix, (gpu.fix, summary)
    assert "--backend onnxruntime" not in gpu.fix
    no_driver = doctor.check_gpu(lambda: (None, "no usable NVIDIA GPU; install the driver"), cpu_pick="openvino")
    assert no_driver.fix.endswith("runs on the CPU with openvino (what backend auto picks here)")


def test_on_a_jetson_doctor_never_offers_a_pip_gpu_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip has no onnxruntime GPU build for Jetson: the fix is JetPack's TensorRT (issue 21)."""
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(doctor, "probe_gpu", lambda cuda=None: (ORIN, ""))  # the Orin answers the probe
    checks = doctor.run_checks(tegra_release=release, video_pattern=str(tmp_path / "video*"))
    text = doctor.format_report(checks)
    assert "onnxruntime-gpu" not in text, text
    assert "Jetson, L4T R36 (release), REVISION: 4.0" in next(c.detail for c in checks if c.name == "python")
    ort_gpu = next(c for c in checks if c.name == "backend onnxruntime cuda")
    if not ort_gpu.ok:
        assert "no ONNX Runtime GPU build for Jetson" in ort_gpu.fix and "TensorRT comes with JetPack" in ort_gpu.fix
    torch_gpu = next(c for c in checks if c.name == "backend torch cuda")
    if not torch_gpu.ok:
        assert "NVIDIA's PyTorch wheel for your JetPack" in torch_gpu.fix
    # the same machine without the release file is a desktop, where pip's GPU build is the fix
    desktop = doctor.run_checks(tegra_release=tmp_path / "absent", video_pattern=str(tmp_path / "video*"))
    assert "Jetson" not in next(c.detail for c in desktop if c.name == "python")
    if not ort_gpu.ok:
        assert "pip install onnxruntime-gpu" in doctor.format_report(desktop)
