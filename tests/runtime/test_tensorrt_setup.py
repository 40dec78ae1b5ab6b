"""scripts/setup.sh on a Jetson and with a CUDA 12 driver, decided without installing (EDGE_APP_SETUP_DRY=1).

The facts setup.sh reads (/etc/nv_tegra_release, nvidia-smi, /usr/local/cuda/version.json) are pointed at files
made here, so every machine kind is checked on this one; CI's own case (x86, no driver) must stay unchanged.
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


def dry_run(tmp_path: Path, *, tegra: bool = False, smi_cuda: str | None = None, toolkit: str | None = None) -> dict:
    env = {
        **os.environ,
        "EDGE_APP_SETUP_DRY": "1",
        "PYTHON": sys.executable,
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
    head, _, reqs = r.stdout.partition("--- requirements\n")
    facts = dict(line.split("=", 1) for line in head.splitlines())
    facts["requirements"] = reqs
    return facts


def test_ci_x86_without_driver_installs_requirements_txt_unchanged(tmp_path: Path) -> None:
    f = dry_run(tmp_path)
    assert (f["jetson"], f["driver_cuda_major"], f["venv_args"]) == ("0", "none", "")
    assert f["requirements"] == (REPO / "requirements.txt").read_text()


@pytest.mark.parametrize("smi, toolkit", [("12.4", None), (None, "12.6.68")])
def test_a_cuda_12_driver_gets_cuda_bindings_12(tmp_path: Path, smi: str | None, toolkit: str | None) -> None:
    f = dry_run(tmp_path, smi_cuda=smi, toolkit=toolkit)
    assert f["driver_cuda_major"] == "12"
    lines = f["requirements"].splitlines()
    assert "cuda-bindings>=12,<13" in lines
    assert not [s for s in lines if s.startswith(("cuda-bindings==13", "cuda-pathfinder"))], lines
    assert "torch==2.13.0" in lines and "onnxruntime==1.32.0" in lines


def test_a_cuda_13_driver_keeps_the_pinned_cuda_bindings(tmp_path: Path) -> None:
    f = dry_run(tmp_path, smi_cuda="13.0")
    assert f["driver_cuda_major"] == "13" and f["requirements"] == (REPO / "requirements.txt").read_text()


def test_jetson_gets_system_site_packages_and_cuda_12_bindings(tmp_path: Path) -> None:
    """JetPack 6: TensorRT 10.3 from python3-libnvinfer (system site-packages), CUDA 12.6, maybe no nvidia-smi."""
    f = dry_run(tmp_path, tegra=True, toolkit="12.6.68")
    assert (f["jetson"], f["venv_args"], f["driver_cuda_major"]) == ("1", "--system-site-packages", "12")
    assert "cuda-bindings>=12,<13" in f["requirements"].splitlines()
    # this interpreter's torch is the CPU build, so the pinned torch stays in the list
    assert f["system_cuda_torch"] == "0" and "torch==2.13.0" in f["requirements"].splitlines()


def test_setup_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SETUP)], capture_output=True).returncode == 0
