"""``run.py doctor`` on this machine (no GPU) and, through injected probes, on machines we do not have."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_app import doctor
from edge_app.cli import main
from edge_app.runtime import backends
from edge_app.runtime.cuda import DeviceInfo

BACKEND_LINES = tuple(f"backend {b.name} {d}" for b in backends() for d in ("cuda", "cpu") if d in b.devices)
SECTIONS = (
    "python",
    "gpu",
    "tensorrt",
    "onnxruntime",
    "opencv",
    "opencv ffmpeg",
    "opencv gstreamer",
    "opencv gui",
    "cameras",
    "pytorch",
    *BACKEND_LINES,
)


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
    dev = DeviceInfo(0, "Orin", (8, 7), 15 << 30, True, 12060, 12090)
    c = doctor.check_gpu(lambda: (dev, ""))
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


def test_tensorrt_check() -> None:
    def missing() -> None:
        raise ImportError("TensorRT is not installed (No module named 'tensorrt'); on Jetson ...")

    c = doctor.check_tensorrt(missing)
    assert not c.ok and c.detail == "TensorRT is not installed (No module named 'tensorrt')" and "JetPack" in c.fix
    assert doctor.check_tensorrt(lambda: SimpleNamespace(__version__="10.3.0.30")).ok
    old = doctor.check_tensorrt(lambda: SimpleNamespace(__version__="8.6.1"))
    assert not old.ok and "10.x or 11.x" in old.fix


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


def test_every_registered_backend_has_a_doctor_line() -> None:
    from edge_app.runtime import backends

    names = {c.name for c in doctor.check_backends()}
    for b in backends():
        assert {f"backend {b.name} {d}" for d in b.devices} <= names
    assert any(c.ok for c in doctor.check_backends() if c.name == "backend onnxruntime cpu")
