"""Backends behind one interface, and ``open_engine`` which picks the fastest one available and says why.

The backends are the descriptors of :mod:`edge_app.runtime.registry` (one per module). The automatic
choice tries every backend that runs on an NVIDIA GPU first (TensorRT, then ONNX Runtime's GPU providers,
then PyTorch CUDA), then the CPU backends, each in its descriptor's priority order. A backend that is
installed but fails to open (a TensorRT build error, a plan that does not load) is passed over with its
reason; asked for by name, the same failure is one clear error.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from edge_app.engine_dir import PRECISIONS, EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.runtime.base import Engine, TensorInfo
from edge_app.runtime.cuda import gpu_absent_reason
from edge_app.runtime.registry import DEVICES, USES, Backend, OpenOptions, backend_names, backends, get_backend

log = logging.getLogger(__name__)


def _devices(device: str) -> tuple[str, ...]:
    if device == "auto":
        return DEVICES
    if device.split(":")[0] not in DEVICES:
        raise UserError(f"device '{device}' is unknown; choose auto, cpu or cuda")
    return ("cuda",) if device.startswith("cuda") else ("cpu",)


def open_engine(
    path: str | Path,
    backend: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    no_build: bool = False,
    spinning: bool = True,
    dla_core: int | None = None,
    cuda_graphs: bool = False,
    use: str = "latency",
    batch: int | None = None,
    mapped_memory: bool = False,
) -> Engine:
    """Open ``engines/<name>`` with ``backend`` at ``precision``; the engine's ``choice`` says what and why.

    ``no_build``: with TensorRT, a missing plan is an error instead of a (minutes-long, once) build.
    ``dla_core`` / ``cuda_graphs``: TensorRT only. ``use``: 'latency' (live) or 'throughput' (annotate,
    bench), a hint for backends that tune for one or the other. ``batch``: the largest batch the caller will
    pass, so TensorRT opens a plan whose profile holds it (None: batch 1). ``mapped_memory``: TensorRT on an
    integrated GPU binds mapped pinned memory instead of copying.
    """
    if backend != "auto":
        get_backend(backend)  # unknown name: one sentence listing the known ones
    if precision != "auto" and precision not in PRECISIONS:
        raise UserError(f"precision '{precision}' is unknown; choose auto or one of {', '.join(PRECISIONS)}")
    if use not in USES:
        raise UserError(f"use '{use}' is unknown; choose one of {', '.join(USES)}")
    ed = EngineDir(path)
    meta = ed.load_meta()
    if batch is not None and batch < 1:
        raise UserError(f"batch {batch} must be at least 1")
    opts = OpenOptions(precision, device, threads, no_build, spinning, dla_core, cuda_graphs, use, batch, mapped_memory)
    explicit = backend != "auto"
    cands = [b for b in backends() if b.name == backend or not explicit]
    passed_over: list[str] = []
    for dev in _devices(device):
        if dev == "cuda" and not explicit and device == "auto":
            absent = gpu_absent_reason()
            if absent:
                passed_over.append(f"no GPU backend: {absent.split(';')[0]}")
                continue
        for b in cands:
            if dev not in b.devices:
                continue
            eng = _try_open(b, ed, meta, dataclasses.replace(opts, device=dev), explicit, passed_over)
            if eng is not None:
                eng.choice = "; ".join([eng.choice or f"{b.name} {dev} {eng.precision}"] + passed_over)
                return eng
    if explicit:
        b = get_backend(backend)
        if not passed_over:  # nothing was tried: the backend does not run on the device asked for
            raise UserError(
                f"backend {b.name} runs on {' and '.join(b.devices)} only, not on device {device}; "
                f"choose device {b.devices[0]} or another backend"
            )
        raise UserError(
            f"backend {b.name} is not available here ({'; '.join(passed_over)}); "
            f"{b.install_hint}, or use backend auto to fall back to another"
        )
    raise UserError(f"no backend can open '{ed.path}' here ({'; '.join(passed_over)})")


def _try_open(
    b: Backend, ed: EngineDir, meta: EngineMeta, opts: OpenOptions, explicit: bool, passed_over: list[str]
) -> Engine | None:
    """``b.open`` or None with the reason added to ``passed_over``; asked for by name, a failure is an error."""
    ok, why = b.available(opts.device)
    if not ok:
        passed_over.append(f"{b.name} {opts.device} not available: {why}")
        return None
    try:
        return b.open(ed, meta, opts)
    except UserError as e:
        if explicit:
            raise
        passed_over.append(f"{b.name} {opts.device} not used: {e}")
    except Exception as e:  # noqa: BLE001 - a backend that fails to build or load is passed over, said once
        if explicit:
            raise UserError(f"backend {b.name} failed to open '{ed.path}': {type(e).__name__}: {e}") from None
        log.warning(
            "%s on %s failed (%s: %s); falling back to the next backend", b.name, opts.device, type(e).__name__, e
        )
        passed_over.append(f"{b.name} {opts.device} failed: {type(e).__name__}: {e}")
    return None


__all__ = ["Engine", "TensorInfo", "OpenOptions", "open_engine", "backends", "backend_names", "get_backend"]
