"""scripts/setup.sh's decisions on a desktop, with a CUDA 12 driver and on a Jetson, made without installing
(EDGE_APP_SETUP_DRY=1).

The facts setup.sh reads (/etc/nv_tegra_release, nvidia-smi, /usr/local/cuda/version.json) are pointed at files made
here, and the system interpreter it asks about torch and cv2 (PROBE_PYTHON) at a fake one, so every machine kind is
checked on this one; CI's own case (x86, no driver) must stay unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup.sh"
CHECK = REPO / "scripts" / "check_jetson_requirements.sh"
JETSON_FILE = REPO / "requirements-jetson.txt"

# What cv2.getBuildInformation() prints around its GStreamer line (JetPack 6's OpenCV 4.8 / pip's opencv-python).
BUILD_INFO = """General configuration for OpenCV 4.8.0 =====================================
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.134.100)
    GStreamer:                   {gst}
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


def fake_system_python(tmp_path: Path, *, cuda_torch: bool | None = None, cv2_gstreamer: bool | None = None) -> Path:
    """A stand-in for the Jetson's python3, answering setup.sh's two probes.

    cuda_torch: None = no torch, False = torch without CUDA, True = CUDA torch.
    cv2_gstreamer: None = no cv2, False/True = cv2 whose build information says GStreamer NO/YES.
    """
    torch_rc = {None: 1, False: 1, True: 0}[cuda_torch]
    if cv2_gstreamer is None:
        cv2 = "exit 1"
    else:
        info = BUILD_INFO.format(gst="YES (1.20.3)" if cv2_gstreamer else "NO")
        cv2 = f"cat <<'EOF'\n{info}EOF\nexit 0"
    script = tmp_path / "system-python3"
    script.write_text(f'#!/bin/sh\ncase "$2" in\n*torch*) exit {torch_rc} ;;\n*cv2*)\n{cv2}\n;;\nesac\nexit 1\n')
    script.chmod(0o755)
    return script


def dry_run(
    tmp_path: Path,
    *,
    tegra: bool = False,
    smi_cuda: str | None = None,
    toolkit: str | None = None,
    probe: Path | None = None,
) -> dict:
    env = {
        **os.environ,
        "EDGE_APP_SETUP_DRY": "1",
        "PYTHON": sys.executable,
        "PROBE_PYTHON": str(probe or fake_system_python(tmp_path)),
        "TEGRA_RELEASE": str(tmp_path / "nv_tegra_release"),
        "CUDA_VERSION_JSON": str(tmp_path / "version.json"),
        "NVIDIA_SMI": str(tmp_path / "nvidia-smi"),
    }
    if tegra:
        (tmp_path / "nv_tegra_release").write_text(
            "# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n"
        )
    if toolkit:
        (tmp_path / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": toolkit}}))
    if smi_cuda:
        smi = tmp_path / "nvidia-smi"
        smi.write_text(
            f"#!/bin/sh\necho '| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: {smi_cuda}     |'\n"
        )
        smi.chmod(0o755)
    r = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    head, _, rest = r.stdout.partition("--- requirements\n")
    reqs, _, photos = rest.partition("--- photos\n")
    facts = dict(line.split("=", 1) for line in head.splitlines())
    facts["requirements"] = reqs
    facts["lines"] = reqs.splitlines()
    facts["photos"] = photos
    return facts


def pins(lines: list[str]) -> dict[str, str]:
    """{'numpy': 'numpy==2.2.6', ...} for the requirement lines (comments and blanks left out)."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
            out[name] = line
    return out


# ---------------------------------------------------------------------------------------------- desktop / CI


def test_ci_x86_without_driver_installs_requirements_txt_unchanged(tmp_path: Path) -> None:
    f = dry_run(tmp_path)
    assert (f["jetson"], f["driver_cuda_major"], f["venv_args"]) == ("0", "none", "")
    assert f["requirements_file"] == "requirements.txt"
    assert f["requirements"] == (REPO / "requirements.txt").read_text()
    assert f["photos"] == (REPO / "requirements-photos.txt").read_text()


def test_desktop_ignores_a_system_cuda_torch_and_gstreamer_cv2(tmp_path: Path) -> None:
    """The Jetson probes are Jetson-only: a desktop's own python3 with torch/cv2 changes nothing."""
    probe = fake_system_python(tmp_path, cuda_torch=True, cv2_gstreamer=True)
    f = dry_run(tmp_path, probe=probe)
    assert (f["system_cuda_torch"], f["system_cv2_gstreamer"], f["drop_from_venv"]) == ("0", "0", "")
    assert f["requirements"] == (REPO / "requirements.txt").read_text()


@pytest.mark.parametrize("smi, toolkit", [("12.4", None), (None, "12.6.68")])
def test_a_cuda_12_desktop_driver_gets_cuda_bindings_12(tmp_path: Path, smi: str | None, toolkit: str | None) -> None:
    f = dry_run(tmp_path, smi_cuda=smi, toolkit=toolkit)
    assert f["driver_cuda_major"] == "12"
    lines = f["lines"]
    assert "cuda-bindings>=12,<13" in lines
    assert not [s for s in lines if s.startswith(("cuda-bindings==13", "cuda-pathfinder"))], lines
    assert "torch==2.13.0" in lines and "onnxruntime==1.32.0" in lines


def test_a_cuda_13_driver_keeps_the_pinned_cuda_bindings(tmp_path: Path) -> None:
    f = dry_run(tmp_path, smi_cuda="13.0")
    assert f["driver_cuda_major"] == "13" and f["requirements"] == (REPO / "requirements.txt").read_text()


# ---------------------------------------------------------------------------------------------- Jetson


def test_bare_jetson_gets_the_jetson_file_plus_the_cuda_minor_pin(tmp_path: Path) -> None:
    """JetPack 6.1 without a system torch or cv2: requirements-jetson.txt as written, cuda-python 12.6.x."""
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68")
    assert (f["jetson"], f["venv_args"], f["requirements_file"]) == (
        "1",
        "--system-site-packages",
        "requirements-jetson.txt",
    )
    assert (f["cuda_version"], f["cuda_pin"], f["numpy_pin"]) == ("12.6", "cuda-python==12.6.*", "from file")
    assert (f["system_cuda_torch"], f["system_cv2_gstreamer"], f["drop_from_venv"]) == ("0", "0", "")
    assert f["requirements"] == JETSON_FILE.read_text() + "cuda-python==12.6.*\n"
    assert f["photos"].splitlines()[-1] == "scikit-image==0.25.2"  # 0.26 has no cp310 wheel


def test_jetson_keeps_a_gstreamer_system_cv2_and_pins_numpy_1(tmp_path: Path) -> None:
    probe = fake_system_python(tmp_path, cv2_gstreamer=True)
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", probe=probe)
    assert (f["system_cv2_gstreamer"], f["system_cuda_torch"]) == ("1", "0")
    p = pins(f["lines"])
    assert "opencv-python" not in p, "pip's opencv-python (no GStreamer) would shadow JetPack's cv2"
    assert p["numpy"] == "numpy==1.26.4" and f["numpy_pin"] == "numpy==1.26.4"
    assert "opencv-python" in f["drop_from_venv"].split() and "torch" not in f["drop_from_venv"].split()


def test_jetson_does_not_keep_a_system_cv2_without_gstreamer(tmp_path: Path) -> None:
    probe = fake_system_python(tmp_path, cv2_gstreamer=False)
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", probe=probe)
    assert f["system_cv2_gstreamer"] == "0" and f["numpy_pin"] == "from file"
    assert pins(f["lines"])["opencv-python"] == pins(JETSON_FILE.read_text().splitlines())["opencv-python"]


def test_jetson_keeps_a_system_cuda_torch_and_pins_numpy_1(tmp_path: Path) -> None:
    probe = fake_system_python(tmp_path, cuda_torch=True)
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", probe=probe)
    assert (f["system_cuda_torch"], f["system_cv2_gstreamer"]) == ("1", "0")
    p = pins(f["lines"])
    assert "torch" not in p and p["numpy"] == "numpy==1.26.4"
    assert f["drop_from_venv"].split() == ["torch"]
    # no system cv2 here, so pip's opencv-python stays; its pin must accept numpy 1.x (4.12+/5.x need numpy >= 2)
    assert p["opencv-python"].startswith("opencv-python==4.11.")


def test_jetson_typical_jetpack_keeps_both(tmp_path: Path) -> None:
    probe = fake_system_python(tmp_path, cuda_torch=True, cv2_gstreamer=True)
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", probe=probe)
    p = pins(f["lines"])
    assert "opencv-python" not in p and "torch" not in p and p["numpy"] == "numpy==1.26.4"
    assert set(f["drop_from_venv"].split()) >= {"torch", "opencv-python", "opencv-python-headless"}


def test_a_cpu_only_system_torch_is_not_kept(tmp_path: Path) -> None:
    probe = fake_system_python(tmp_path, cuda_torch=False)
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", probe=probe)
    assert f["system_cuda_torch"] == "0" and f["numpy_pin"] == "from file"


@pytest.mark.parametrize(
    "toolkit, pin",
    [
        ("12.2.140", "cuda-python==12.2.*"),  # JetPack 6.0
        ("12.6.68", "cuda-python==12.6.*"),  # JetPack 6.1 / 6.2 (no cuda-bindings 12.6.x exists)
        ("12.8.93", "cuda-bindings==12.8.*"),  # cuda-bindings starts at 12.8
        ("13.0.48", "cuda-bindings==13.0.*"),
    ],
)
def test_jetson_cuda_bindings_follow_the_jetpack_cuda_minor(tmp_path: Path, toolkit: str, pin: str) -> None:
    f = dry_run(tmp_path, tegra=True, toolkit=toolkit)
    cuda_lines = [s for s in f["lines"] if s.startswith(("cuda-bindings", "cuda-python", "cuda-pathfinder"))]
    assert cuda_lines == [pin], "not >=12,<13, which resolves to 12.9 on a CUDA 12.6 L4T driver"


def test_jetson_prefers_jetpacks_cuda_to_nvidia_smi(tmp_path: Path) -> None:
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68", smi_cuda="12.9")
    assert f["cuda_pin"] == "cuda-python==12.6.*"


def test_jetson_without_version_json_reads_nvidia_smi(tmp_path: Path) -> None:
    f = dry_run(tmp_path, tegra=True, smi_cuda="12.6")
    assert f["cuda_pin"] == "cuda-python==12.6.*"


def test_jetson_without_any_cuda_version_adds_no_cuda_pin(tmp_path: Path) -> None:
    f = dry_run(tmp_path, tegra=True)
    assert f["cuda_pin"] == "from file" and f["requirements"] == JETSON_FILE.read_text()


def test_the_jetson_file_leaves_jetpacks_packages_out_and_pins_exactly() -> None:
    p = pins(JETSON_FILE.read_text().splitlines())
    assert not {"torch", "torchvision", "tensorrt", "cuda-bindings", "cuda-python", "ray"} & set(p), p
    assert all("==" in line for line in p.values()), p
    # the versions FACTS found without a cp310 aarch64 wheel (they need Python >= 3.11)
    assert p["numpy"] == "numpy==2.2.6" and p["onnxruntime"] == "onnxruntime==1.23.2"
    assert p["matplotlib"] == "matplotlib==3.10.9" and p["av"] == "av==17.1.0"


def test_scripts_are_valid_bash() -> None:
    for script in (SETUP, CHECK):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script


def test_resolution_check_can_be_skipped_and_says_so() -> None:
    env = {**os.environ, "EDGE_APP_SKIP_JETSON_CHECK": "1"}
    r = subprocess.run(["bash", str(CHECK)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "jetson requirements: NOT CHECKED (EDGE_APP_SKIP_JETSON_CHECK=1)"
