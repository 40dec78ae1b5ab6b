"""cuda-python buffers and the TensorRT backend executed for real: only on a machine with an NVIDIA GPU.

Skipped with the reason elsewhere (CI has no GPU). The TensorRT tests also need the full TensorRT
(builder included), which JetPack or NVIDIA's package index provide.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.engine_dir import EngineDir
from edge_app.runtime import open_engine
from edge_app.runtime.cuda import CudaRuntime, probe_gpu

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> CudaRuntime:
    """The real CudaRuntime on device 0, or a skip saying why there is none."""
    device, why = probe_gpu()
    if device is None:
        pytest.skip(f"needs an NVIDIA GPU with CUDA: {why}")
    print(f"\nGPU: {device.name} sm {device.sm}, driver CUDA {device.driver_version}")
    return CudaRuntime()


@pytest.fixture(scope="module")
def machine(cuda: CudaRuntime):  # noqa: ANN201 - Machine, imported lazily
    """The local Machine for TensorRT, or a skip naming what is missing."""
    from edge_app.errors import UserError
    from edge_app.runtime.tensorrt import Machine

    try:
        return Machine.detect(cuda=cuda)
    except UserError as e:
        pytest.skip(f"needs TensorRT: {e}")


def test_pinned_copies_events_and_graph_replay(cuda: CudaRuntime) -> None:
    n = 1 << 20
    src, dst, dev = cuda.malloc_host(n), cuda.malloc_host(n), cuda.malloc(n)
    s = cuda.stream_create()
    e = [cuda.event_create() for _ in range(3)]
    try:
        a, b = cuda.host_array(src, (n,), np.uint8), cuda.host_array(dst, (n,), np.uint8)
        a[:] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)
        cuda.event_record(e[0], s)
        cuda.memcpy_h2d_async(dev, src, n, s)
        cuda.event_record(e[1], s)
        cuda.memcpy_d2h_async(dst, dev, n, s)
        cuda.event_record(e[2], s)
        cuda.stream_synchronize(s)
        np.testing.assert_array_equal(a, b)
        h2d, d2h = cuda.event_elapsed_ms(e[0], e[1]), cuda.event_elapsed_ms(e[1], e[2])
        print(f"1 MiB pinned: H2D {h2d:.3f} ms, D2H {d2h:.3f} ms")
        assert h2d > 0 and d2h > 0
        b[:] = 0
        cuda.begin_capture(s)
        cuda.memcpy_d2h_async(dst, dev, n, s)
        graph = cuda.end_capture(s)
        assert not b.any(), "captured work must not run before launch"
        gexec = cuda.graph_instantiate(graph)
        cuda.graph_launch(gexec, s)
        cuda.stream_synchronize(s)
        np.testing.assert_array_equal(a, b)
        cuda.graph_exec_destroy(gexec)
        cuda.graph_destroy(graph)
    finally:
        for ev in e:
            cuda.event_destroy(ev)
        cuda.stream_destroy(s)
        cuda.free(dev)
        cuda.free_host(src)
        cuda.free_host(dst)


@pytest.fixture()
def engine_copy(machine, request: pytest.FixtureRequest, tmp_path: Path) -> EngineDir:  # noqa: ANN001
    """A private copy of the tiny engine folder, so plans built here do not leak into other tests."""
    import shutil

    # Looked up only after ``machine``: without a GPU the test skips before the session trains tiny_engine.
    tiny_engine: Path = request.getfixturevalue("tiny_engine")
    shutil.copytree(tiny_engine, tmp_path / "tiny")
    return EngineDir(tmp_path / "tiny")


@pytest.mark.parametrize("graphs", [False, True])
def test_tensorrt_fp32_matches_onnxruntime_and_caches_the_plan(machine, engine_copy: EngineDir, graphs: bool) -> None:  # noqa: ANN001
    from edge_app.runtime.tensorrt import BatchRange, open_tensorrt

    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with open_engine(engine_copy.path, "onnxruntime", "fp32", "cpu") as ref:
        want = ref.infer(x)["logits"]
    lines: list[str] = []
    meta = engine_copy.load_meta()
    with open_tensorrt(
        engine_copy, meta, "fp32", BatchRange(1, 2, 4), cuda_graphs=graphs, machine=machine, emit=lines.append
    ) as eng:
        assert any("happens once" in s for s in lines), lines
        for n in (3, 1, 3, 4):
            got = eng.infer(x[:n] if n <= 3 else np.concatenate([x, x[:1]]))["logits"]
            np.testing.assert_allclose(got[: min(n, 3)], want[: min(n, 3)], atol=2e-2)  # TF32 convolutions
        print(f"TensorRT fp32 batch 4 graphs={graphs}: {eng.last_timings}")
        assert set(eng.last_timings) == {"h2d", "compute", "d2h"} and eng.last_timings["compute"] > 0
    lines.clear()
    with open_tensorrt(
        engine_copy, engine_copy.load_meta(), "fp32", BatchRange(1, 2, 4), machine=machine, emit=lines.append
    ) as eng:
        assert lines == [], "second open must load the cached plan"
        np.testing.assert_allclose(eng.infer(x)["logits"], want, atol=2e-2)


def test_truncated_plan_is_rebuilt_not_crashed_on(machine, engine_copy: EngineDir) -> None:  # noqa: ANN001
    from edge_app.runtime.tensorrt import BatchRange, open_tensorrt

    open_tensorrt(
        engine_copy, engine_copy.load_meta(), "fp32", BatchRange(1, 1, 2), machine=machine, emit=lambda s: None
    ).close()
    plan = next(engine_copy.plans_dir.glob("*.plan"))
    plan.write_bytes(plan.read_bytes()[:1000])
    lines: list[str] = []
    with open_tensorrt(
        engine_copy, engine_copy.load_meta(), "fp32", BatchRange(1, 1, 2), machine=machine, emit=lines.append
    ) as eng:
        assert any("happens once" in s for s in lines)
        assert eng.infer(np.zeros((2, 32, 32, 3), np.uint8))["logits"].shape == (2, 6)
