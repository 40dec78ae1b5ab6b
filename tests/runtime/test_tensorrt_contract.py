"""The TensorRT build/run/plan-cache code against the REAL bindings of TensorRT 10.16 and 11.4.

Each version's wheel is downloaded once (cached outside the repo), given stub native libraries and
imported in a subprocess (trt_stub/driver.py), where every scenario runs edge_app's code with doubles
specced from the real classes. Skipped with the reason when the package registry or a C compiler is
not available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.runtime.trt_stub import wheels
from tests.runtime.trt_stub.driver import SCENARIOS

REPO = Path(__file__).resolve().parents[2]
MAJORS = sorted(wheels.BINDINGS)


@pytest.fixture(scope="session")
def contract_report(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """``get(major)`` -> the driver's JSON report for that TensorRT major version (run once per session)."""
    cache: dict[str, tuple[str, Any]] = {}

    def get(major: str) -> dict[str, Any]:
        if major not in cache:
            try:
                site = wheels.prepare(major)
            except wheels.Unavailable as e:
                cache[major] = ("skip", str(e))
            else:
                out = tmp_path_factory.mktemp(f"trt{major}") / "report.json"
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
                r = subprocess.run(
                    [sys.executable, "-m", "tests.runtime.trt_stub.driver", str(out)],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                if not out.is_file():
                    pytest.fail(
                        f"contract driver for TensorRT {major} wrote no report (exit {r.returncode}):\n{r.stderr[-3000:]}"
                    )
                cache[major] = ("ok", json.loads(out.read_text()))
        state, value = cache[major]
        if state == "skip":
            pytest.skip(value)
        return value

    return get


@pytest.mark.parametrize("major", MAJORS)
def test_real_bindings_import_at_the_pinned_version(contract_report, major: str) -> None:
    r = contract_report(major)
    assert "import_error" not in r, r.get("import_error")
    assert r["version"] == wheels.BINDINGS[major][1]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("major", MAJORS)
def test_scenario_against_real_api(contract_report, major: str, scenario: str) -> None:
    res = contract_report(major)["scenarios"][scenario]
    assert res["ok"], f"TensorRT {wheels.BINDINGS[major][1]}, {scenario}:\n{res.get('error')}"


@pytest.mark.parametrize("major, flags", [("10", "STRONGLY_TYPED"), ("11", "0")])
def test_each_version_takes_its_network_flags_branch(contract_report, major: str, flags: str) -> None:
    assert contract_report(major)["scenarios"]["build_fp16"]["facts"]["network_flags"] == flags


@pytest.mark.parametrize("major, present", [("10", True), ("11", False)])
def test_weak_typing_api_is_where_facts_say(contract_report, major: str, present: bool) -> None:
    """10.x still has FP16/INT8 flags and calibrators, 11.x removed them: the code must need neither."""
    facts = contract_report(major)["scenarios"]["doubles_have_teeth"]["facts"]
    assert facts and all(v is present for v in facts.values()), facts


@pytest.mark.parametrize("major", MAJORS)
def test_plan_key_names_version_gpu_precision_and_batch(contract_report, major: str) -> None:
    key = contract_report(major)["scenarios"]["cache_builds_once_then_loads"]["facts"]["plan_key"]
    assert key.startswith(
        "fp16_b1-8-32_gpu_nvidia-geforce-rtx-4090_sm89x128_trt" + wheels.BINDINGS[major][1] + "_ws2_o3_"
    )


@pytest.mark.parametrize("major", MAJORS)
def test_build_and_run_apis_were_exercised(contract_report, major: str) -> None:
    used = set(contract_report(major)["used"])
    for api in (
        "Builder.build_serialized_network",
        "IBuilderConfig.set_memory_pool_limit",
        "IBuilderConfig.set_timing_cache",
        "IOptimizationProfile.set_shape",
        "OnnxParser.parse",
        "Runtime.deserialize_cuda_engine",
        "Runtime.DLA_core",
        "IExecutionContext.set_input_shape",
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.execute_async_v3",
        "ICudaEngine.get_tensor_profile_shape",
        "tensorrt.MemoryPoolType",
        "tensorrt.TensorIOMode",
        "tensorrt.DataType",
        "IBuilderConfig.profiling_verbosity",
        "tensorrt.ProfilingVerbosity",
        "ICudaEngine.create_engine_inspector",
        "EngineInspector.get_engine_information",
        "tensorrt.LayerInformationFormat",
    ):
        assert api in used, f"{api} not exercised against TensorRT {wheels.BINDINGS[major][1]}"


@pytest.mark.parametrize("major", MAJORS)
def test_detector_and_two_output_plans_come_back_by_name(contract_report, major: str) -> None:
    """Issue 21: a detector plan and a two-output plan open, infer and agree with ONNX Runtime."""
    sc = contract_report(major)["scenarios"]
    assert sc["detector_plan_agrees_with_onnxruntime"]["facts"]["outputs"] == {"dets": [3, 100, 6]}
    assert sc["two_output_plan_agrees_with_onnxruntime"]["facts"]["outputs"] == {
        "embedding": [3, 16],
        "dets": [3, 100, 6],
    }


@pytest.mark.parametrize("major", MAJORS)
def test_output_mismatches_are_one_sentence_each(contract_report, major: str) -> None:
    msgs = contract_report(major)["scenarios"]["mismatched_outputs_are_one_sentence"]["facts"]["messages"]
    assert len(msgs) == 4 and msgs[0].startswith(
        "plan output 'logits' (-1, 3) does not match the 6 labels in meta.json"
    )


@pytest.mark.parametrize("major", MAJORS)
def test_build_output_shows_layer_precisions_and_the_timed_run(contract_report, major: str) -> None:
    lines = contract_report(major)["scenarios"]["build_records_layers_and_a_timed_run"]["facts"]["lines"]
    assert "3 INT8, 2 FP16, 1 FP32" in lines[1] and "0.750 ms per call at batch 4" in lines[2], lines
