"""Native TensorRT backend: find or build the plan for this machine, then run it with cuda-python.

``open_tensorrt`` is what ``open_engine`` calls; ``build`` is what ``run.py build`` calls. Plans live in
``engines/NAME/plans/<key>.plan``, the key naming precision, batch range, DLA core, GPU, compute capability,
TensorRT version and the ONNX file's hash (see ``trt_build.plan_key``). A plan is only ever looked up by
the running machine's key, checked against the sha256 recorded in meta.json, and rebuilt when TensorRT
cannot deserialize it, so a plan from another GPU or TensorRT version is never loaded and a truncated one
never crashes the app.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_bytes, sha256_bytes, sha256_file
from edge_app.runtime.base import Engine
from edge_app.runtime.cuda import CudaError, CudaRuntime, DeviceInfo, probe_gpu
from edge_app.runtime.registry import Backend, OpenOptions, Variant
from edge_app.runtime.tensorrt.builder import (
    TRT_FIX,
    BatchRange,
    BuildError,
    BuildSpec,
    build_plan,
    check_gpu_supported,
    check_precision_supported,
    load_trt,
    make_logger,
    onnx_for,
    plan_key,
    trt_major,
)
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx

log = logging.getLogger(__name__)

# Live video and tiles fit in 32 per call; opt 8 is a typical tiles grid.
DEFAULT_BATCH = BatchRange(1, 8, 32)
# DLA runs static shapes only: a DLA plan holds one batch size; live video on Jetson runs batch 1.
DEFAULT_DLA_BATCH = 1


class PlanError(RuntimeError):
    """TensorRT could not deserialize a plan file (corrupt, truncated or from another version)."""


# ------------------------------------------------------------------------------------------------ availability
def available(trt: ModuleType | None = None, cuda: CudaRuntime | None = None) -> tuple[bool, str]:
    """(True, 'TensorRT 10.16 on <GPU>') when plans can be built and run here, else (False, why + fix)."""
    device, why = probe_gpu(cuda)
    if device is None:
        return False, why
    try:
        trt = trt or load_trt()
        trt_major(trt)
        check_gpu_supported(trt.__version__, device)  # e.g. a Pascal GPU with TensorRT 10: say so, do not fail later
    except (ImportError, UserError) as e:
        return False, str(e)
    return True, f"TensorRT {trt.__version__} on {device.name} (sm {device.sm})"


# ------------------------------------------------------------------------------------------------ the runner
@dataclass
class _Io:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per-sample shape (without batch)
    host: int = 0  # pinned host pointer
    device: int = 0  # device pointer
    view: np.ndarray | None = None  # numpy view of the pinned host buffer, max batch

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class TensorRTEngine(Engine):
    """One deserialized plan, one execution context, one stream; uint8 in, fp16/fp32 logits out as float32.

    Buffers are allocated once for the profile's maximum batch; each call copies only ``n`` samples.
    With ``cuda_graphs`` the enqueue is captured into a CUDA graph and replayed (less launch overhead, which
    matters at batch 1 on Jetson). A graph bakes in the shapes it was captured with, so it is re-captured
    whenever the batch size changes; live video keeps one batch size, so that happens once. A plan whose
    enqueue cannot be captured (some layers and plugins are not graph-safe) runs on without graphs, said
    once in the log, as trtexec does with --useCudaGraph.
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_dir: EngineDir,
        meta: EngineMeta,
        precision: str,
        plan: bytes,
        trt: ModuleType,
        cuda: CudaRuntime,
        dla_core: int | None = None,
        cuda_graphs: bool = False,
        model_file: str = "",
    ) -> None:
        super().__init__(engine_dir, meta, precision, f"dla{dla_core}" if dla_core is not None else "cuda")
        self.model_file = model_file
        self._trt, self._cuda = trt, cuda
        self._graph: tuple[int, Any, Any] | None = None  # (batch size, graph, executable graph)
        self._use_graphs = cuda_graphs
        self.graph_error: str | None = None  # why CUDA graphs were turned off, if they were
        self.min_batch = 1  # the profile's minimum, read from the plan in _setup
        self._batch_set = 0
        self._stream: Any = None
        self._events: list[Any] = []
        self._inp: _Io | None = None
        self._out: _Io | None = None
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            self._runtime.DLA_core = dla_core
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise PlanError(
                "TensorRT could not deserialize the plan: " + ("; ".join(self._logger.errors) or "no details")
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        try:
            self._setup()
        except BaseException:
            self._close()
            raise

    def _setup(self) -> None:
        trt, eng = self._trt, self._engine
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            mode = eng.get_tensor_mode(name)
            (inputs if mode == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(
                f"expected a plan with one input and one output, got inputs {inputs} and outputs {outputs}"
            )
        dtypes = {trt.DataType.UINT8: np.uint8, trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}
        in_dt, out_dt = eng.get_tensor_dtype(inputs[0]), eng.get_tensor_dtype(outputs[0])
        if in_dt != trt.DataType.UINT8 or out_dt not in (trt.DataType.FLOAT, trt.DataType.HALF):
            raise RuntimeError(
                f"expected uint8 input and fp32/fp16 output, got {in_dt} and {out_dt}; re-export the model"
            )
        lo, _opt, hi = eng.get_tensor_profile_shape(inputs[0], 0)
        self.min_batch, self.max_batch = int(tuple(lo)[0]), int(tuple(hi)[0])
        spec = self.meta.input
        self._inp = _Io(inputs[0], np.dtype(np.uint8), (spec.height, spec.width, 3))
        out_shape = tuple(eng.get_tensor_shape(outputs[0]))
        self._out = _Io(outputs[0], np.dtype(dtypes[out_dt]), tuple(int(d) for d in out_shape[1:]))
        if self._out.shape != (self.meta.num_classes,):
            raise RuntimeError(
                f"plan output {out_shape} does not match {self.meta.num_classes} labels in meta.json; rebuild the plan"
            )
        cu = self._cuda
        self._stream = cu.stream_create()
        self._events = [cu.event_create() for _ in range(4)]  # start, after H2D, after compute, after D2H
        for io in (self._inp, self._out):
            nbytes = self.max_batch * io.sample_bytes
            io.host = cu.malloc_host(nbytes)
            io.device = cu.malloc(nbytes)
            io.view = cu.host_array(io.host, (self.max_batch, *io.shape), io.dtype)
            if not self._context.set_tensor_address(io.name, io.device):
                raise RuntimeError(f"TensorRT refused the device address for '{io.name}'")

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._cuda.stream_handle(self._stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log lines above")

    def _compute(self, n: int) -> None:
        """Queue the network for batch ``n``: a CUDA graph replay when enabled, else a plain enqueue."""
        if not self._use_graphs:
            self._enqueue()
            return
        if self._graph is None or self._graph[0] != n:
            self._drop_graph()
            # One plain run first: TensorRT does lazy set-up on the first enqueue of a shape, which must not be captured.
            self._enqueue()
            self._cuda.stream_synchronize(self._stream)
            captured = self._capture(n)
            if captured is None:
                return  # capture failed: the plain run above has already computed this call
            self._graph = captured
        self._cuda.graph_launch(self._graph[2], self._stream)

    def _capture(self, n: int) -> tuple[int, Any, Any] | None:
        """(n, graph, executable graph) of one enqueue, or None after turning graphs off (trtexec's captureGraph).

        On failure the capture is ended and whatever it recorded discarded (``end_capture_on_error``), the
        stream is usable again, and the engine goes on without graphs, saying so once.
        """
        cu, s = self._cuda, self._stream
        # Thread-local capture: other threads of the frame loop may call CUDA meanwhile without breaking it.
        cu.begin_capture(s)
        graph: Any = None
        try:
            if not self._context.execute_async_v3(cu.stream_handle(s)):
                raise RuntimeError(
                    "TensorRT's enqueue failed while being captured (the plan has operations CUDA graphs do not allow)"
                )
            graph = cu.end_capture(s)
            return n, graph, cu.graph_instantiate(graph)
        except (CudaError, RuntimeError) as e:
            if graph is None:
                cu.end_capture_on_error(s)
            else:
                cu.graph_destroy(graph)
            self._use_graphs = False
            self.graph_error = str(e)
            log.warning("CUDA graph capture failed for batch %d (%s); running this engine without CUDA graphs", n, e)
            return None

    def _drop_graph(self) -> None:
        if self._graph is not None:
            _n, graph, graph_exec = self._graph
            self._graph = None
            self._cuda.graph_exec_destroy(graph_exec)
            self._cuda.graph_destroy(graph)

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        inp, out, cu, ev, s = self._inp, self._out, self._cuda, self._events, self._stream
        assert inp is not None and out is not None and inp.view is not None and out.view is not None  # set in _setup
        n = images.shape[0]
        if not self.min_batch <= n <= (self.max_batch or n):
            raise ValueError(
                f"batch {n} is outside this plan's profile, which takes batch {self.min_batch} to {self.max_batch}; "
                f"build a plan that holds it (`python run.py build {self.engine_dir.path} --batch ...`)"
            )
        inp.view[:n] = images
        if n != self._batch_set:
            if not self._context.set_input_shape(inp.name, self._trt.Dims((n, *inp.shape))):
                raise ValueError(
                    f"TensorRT refused batch {n} for this plan (profile batch {self.min_batch} to {self.max_batch})"
                )
            self._batch_set = n
        cu.event_record(ev[0], s)
        cu.memcpy_h2d_async(inp.device, inp.host, n * inp.sample_bytes, s)  # uint8: 4x fewer bytes than fp32
        cu.event_record(ev[1], s)
        self._compute(n)
        cu.event_record(ev[2], s)
        cu.memcpy_d2h_async(out.host, out.device, n * out.sample_bytes, s)
        cu.event_record(ev[3], s)
        cu.stream_synchronize(s)
        self.last_timings = {
            "h2d": cu.event_elapsed_ms(ev[0], ev[1]),
            "compute": cu.event_elapsed_ms(ev[1], ev[2]),
            "d2h": cu.event_elapsed_ms(ev[2], ev[3]),
        }
        return {out.name: out.view[:n].astype(np.float32)}  # a copy: the pinned buffer is reused by the next call

    def _close(self) -> None:
        cu = getattr(self, "_cuda", None)
        if cu is None:
            return
        try:
            if getattr(self, "_graph", None) is not None:
                self._drop_graph()
            for io in (self._inp, self._out):
                if io is not None and io.host:
                    io.view = None
                    cu.free_host(io.host)
                    cu.free(io.device)
                    io.host = io.device = 0
            for e in self._events:
                cu.event_destroy(e)
            self._events = []
            if self._stream is not None:
                cu.stream_destroy(self._stream)
                self._stream = None
        except CudaError as e:  # freeing after a device error must not mask the first error
            log.warning("TensorRT engine close: %s", e)
        # TensorRT objects are freed context -> engine -> runtime, the reverse of creation.
        self._context = self._engine = self._runtime = None


# ------------------------------------------------------------------------------------------------ plan cache
@dataclass
class Machine:
    """The running machine as far as plans care: TensorRT module and version, GPU, cuda-python runtime."""

    trt: ModuleType
    cuda: CudaRuntime
    device: DeviceInfo

    @classmethod
    def detect(cls, trt: ModuleType | None = None, cuda: CudaRuntime | None = None) -> Machine:
        """The local machine; UserError saying what is missing (and that ONNX Runtime is the fallback)."""
        try:
            cuda = cuda or CudaRuntime()
        except ImportError as e:
            raise UserError(f"TensorRT needs cuda-python: {e}") from None
        device, why = probe_gpu(cuda)
        if device is None:
            raise UserError(f"TensorRT needs an NVIDIA GPU: {why}")
        try:
            trt = trt or load_trt()
        except ImportError as e:
            raise UserError(f"{e}; without it use --backend onnxruntime") from None
        trt_major(trt)
        check_gpu_supported(trt.__version__, device)
        return cls(trt, cuda, device)


def plan_path(ed: EngineDir, key: str) -> Path:
    """Where the plan of ``key`` lives."""
    return ed.plans_dir / f"{key}.plan"


def timing_cache_path(ed: EngineDir) -> Path:
    """The TensorRT timing cache shared by every build of this engine folder."""
    return ed.plans_dir / "timing.cache"


def _spec_of(rec: dict[str, Any]) -> BuildSpec | None:
    """The BuildSpec a meta.json build record was made with; None for a record this version cannot read."""
    try:
        return BuildSpec(
            rec["precision"],
            BatchRange(*rec["batch"]),
            rec.get("dla_core"),
            float(rec.get("workspace_gib", 2.0)),
            int(rec.get("opt_level", 3)),
        )
    except (KeyError, TypeError, ValueError, UserError):
        return None


def _plans_here(
    meta: EngineMeta, m: Machine, precision: str, onnx_sha: str, dla_core: int | None
) -> dict[str, BuildSpec]:
    """{key: spec} of the plans built for exactly this machine (TensorRT, GPU identity), precision, ONNX and DLA choice.

    A record counts only when the key recomputed from it and the running machine is its own key, so a plan
    from another GPU, SM count, MIG slice or TensorRT version is never picked, whatever the record says.
    """
    found = {}
    for key, rec in meta.builds.items():
        spec = _spec_of(rec)
        if (
            spec is not None
            and spec.precision == precision
            and spec.dla_core == dla_core
            and plan_key(m.trt.__version__, m.device, spec, onnx_sha) == key
        ):
            found[key] = spec
    return found


def _select_plan(plans: dict[str, BuildSpec], want: int | None) -> str | None:
    """The plan whose [min, max] batch holds ``want``: the one tuned closest to it (opt), then the narrowest.

    With no batch asked for, a plan holding batch 1 (live video) with the widest range. Never a plan that
    cannot run the batch asked for, however wide its maximum.
    """
    n = want if want is not None else 1
    held = [(k, s) for k, s in plans.items() if s.holds(n)]
    if not held:
        return None
    if want is None:
        return max(held, key=lambda ks: (ks[1].batch.max, ks[0]))[0]
    return min(held, key=lambda ks: (abs(ks[1].batch.opt - n), ks[1].batch.max - ks[1].batch.min, ks[0]))[0]


def _default_batch(want: int | None, dla_core: int | None) -> BatchRange:
    """The profile to build when no plan holds ``want``: fixed for DLA, else DEFAULT_BATCH if it holds it."""
    if dla_core is not None:
        n = want or DEFAULT_DLA_BATCH
        return BatchRange(n, n, n)
    if want is None or DEFAULT_BATCH.min <= want <= DEFAULT_BATCH.max:
        return DEFAULT_BATCH
    return BatchRange(1, want, want)


def _intact(ed: EngineDir, meta: EngineMeta, key: str) -> bool:
    path = plan_path(ed, key)
    if not path.is_file():
        return False
    want = meta.builds.get(key, {}).get("plan_sha256")
    if want and sha256_file(path) != want:
        log.warning(
            "plan %s does not match the sha256 recorded at build time (truncated or damaged); rebuilding", path.name
        )
        return False
    return True


def build(
    ed: EngineDir,
    spec: BuildSpec,
    machine: Machine | None = None,
    force: bool = False,
    emit: Callable[[str], None] = print,
    verbose: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the plan for ``spec`` on this machine; returns its meta.json build record plus 'cached'."""
    meta = ed.load_meta()  # folder and ONNX first: a user error there is the one to report on any machine
    onnx = onnx_for(ed, spec.precision)
    require_trt_onnx(onnx)  # the parser's rules, checked without TensorRT: a clear sentence before a long build
    m = machine or Machine.detect()
    check_precision_supported(m.device, spec.precision)
    onnx_sha = sha256_file(onnx)
    key = plan_key(m.trt.__version__, m.device, spec, onnx_sha)
    if not force and _intact(ed, meta, key):
        return {**meta.builds.get(key, {}), "key": key, "cached": True}
    tc_path = timing_cache_path(ed)
    timing = tc_path.read_bytes() if tc_path.is_file() else b""
    emit(
        f"building TensorRT {m.trt.__version__} {spec.precision} plan for {m.device.name} (batch {spec.batch}"
        f"{f', DLA {spec.dla_core}' if spec.dla_core is not None else ''}) from {onnx.name}; this happens once per GPU and TensorRT version"
    )
    t0 = time.perf_counter()
    # The timing cache is merged into the file under a lock, so parallel builds keep each other's timings.
    plan, cache = build_plan(m.trt, onnx, spec, timing, emit, verbose, cache_path=tc_path)
    seconds = time.perf_counter() - t0
    path = atomic_write_bytes(plan_path(ed, key), plan)
    record = {
        "precision": spec.precision,
        "batch": [spec.batch.min, spec.batch.opt, spec.batch.max],
        "dla_core": spec.dla_core,
        "workspace_gib": spec.workspace_gib,
        "opt_level": spec.opt_level,
        "trt_version": m.trt.__version__,
        "gpu": m.device.name,
        "sm": m.device.sm,
        "sm_count": m.device.sm_count,
        "mig": m.device.mig,
        "onnx": onnx.name,
        "onnx_sha256": onnx_sha,
        "plan": f"plans/{path.name}",
        "plan_sha256": sha256_bytes(plan),
        "plan_bytes": len(plan),
        "timing_cache_bytes": len(cache),
        "build_s": round(seconds, 2),
        "built": now_iso(),
    }
    meta = ed.load_meta()  # re-read: another command may have updated meta.json during a minutes-long build
    meta.builds[key] = record
    ed.save_meta(meta)
    emit(f"built {path} ({len(plan) / 1e6:.1f} MB) in {seconds:.1f} s")
    return {**record, "key": key, "cached": False}


def _auto_precision(ed: EngineDir, device: DeviceInfo) -> str:
    """Fastest precision this folder has ONNX for and this GPU runs fast: int8, then fp16, then fp32."""
    from edge_app.runtime.tensorrt.builder import MIN_SM

    for prec in ("int8", "fp16"):
        if ed.onnx_path(prec, "trt").is_file() and device.compute_capability >= MIN_SM[prec]:
            return prec
    return "fp32"


def open_tensorrt(
    ed: EngineDir,
    meta: EngineMeta,
    precision: str = "auto",
    batch: BatchRange | int | None = None,
    dla_core: int | None = None,
    no_build: bool = False,
    cuda_graphs: bool = False,
    machine: Machine | None = None,
    emit: Callable[[str], None] = print,
) -> TensorRTEngine:
    """The engine for this machine: load the matching plan, building it first when missing (unless ``no_build``).

    ``batch``: a BatchRange opens (or builds) exactly that profile; an int opens a plan whose [min, max]
    holds that batch size (building one when none does); None prefers a plan that holds batch 1. With
    ``dla_core`` only plans built for that DLA core count, and they are fixed-shape (min = opt = max).
    """
    m = machine or Machine.detect()
    prec = _auto_precision(ed, m.device) if precision == "auto" else precision
    check_precision_supported(m.device, prec)
    onnx = onnx_for(ed, prec)
    onnx_sha = sha256_file(onnx)
    plans = _plans_here(meta, m, prec, onnx_sha, dla_core)
    want = batch if isinstance(batch, int) else None
    if isinstance(batch, BatchRange):
        spec = BuildSpec(prec, batch, dla_core)
        key = plan_key(m.trt.__version__, m.device, spec, onnx_sha)
    else:
        key = _select_plan(plans, want) or ""
        spec = plans[key] if key else BuildSpec(prec, _default_batch(want, dla_core), dla_core)
        key = key or plan_key(m.trt.__version__, m.device, spec, onnx_sha)
    for attempt in range(2):
        if not _intact(ed, meta, key):
            if no_build:
                here_id = (m.trt.__version__, m.device.name, m.device.sm_count)
                others = sorted(
                    {
                        f"TensorRT {r.get('trt_version')} on {r.get('gpu')}"
                        for r in meta.builds.values()
                        if (r.get("trt_version"), r.get("gpu"), r.get("sm_count")) != here_id
                    }
                )
                here = sorted(f"{s.batch.min} to {s.batch.max}" for s in plans.values())
                asked = f" holding batch {want}" if want is not None else ""
                raise UserError(
                    f"no {prec} plan{asked}{f' on DLA {dla_core}' if dla_core is not None else ''} for TensorRT "
                    f"{m.trt.__version__} on {m.device.name} in '{ed.plans_dir}'"
                    + (f" (this GPU's plans take batch {', '.join(here)})" if here else "")
                    + (f" (plans exist for {', '.join(others)}, which are never loaded here)" if others else "")
                    + f"; run `python run.py build {ed.path} --precision {prec} --batch {spec.batch}"
                    + (f" --dla {dla_core}" if dla_core is not None else "")
                    + "` or drop --no-build"
                )
            build(ed, spec, m, force=True, emit=emit)
            meta = ed.load_meta()
        try:
            return TensorRTEngine(
                ed,
                meta,
                prec,
                plan_path(ed, key).read_bytes(),
                m.trt,
                m.cuda,
                dla_core,
                cuda_graphs,
                model_file=plan_path(ed, key).name,
            )
        except PlanError as e:
            if attempt or no_build:
                raise UserError(
                    f"plan '{plan_path(ed, key)}' cannot be loaded ({e}); delete it and run `python run.py build {ed.path}`"
                ) from None
            emit(f"plan {plan_path(ed, key).name} could not be deserialized ({e}); rebuilding it")
            plan_path(ed, key).unlink(missing_ok=True)
    raise AssertionError("unreachable")  # the loop either returns or raises


# ------------------------------------------------------------------------------------------------ descriptor
def _available(device: str) -> tuple[bool, str]:
    return available() if device == "cuda" else (False, "TensorRT runs on NVIDIA GPUs only")


def _open(ed: EngineDir, meta: EngineMeta, opts: OpenOptions) -> TensorRTEngine:
    eng = open_tensorrt(
        ed,
        meta,
        opts.precision,
        batch=opts.batch,
        dla_core=opts.dla_core,
        no_build=opts.no_build,
        cuda_graphs=opts.cuda_graphs,
    )
    eng.choice = f"tensorrt {eng.precision}: {available()[1]}"
    return eng


def _variants(ed: EngineDir, device: str) -> list[Variant]:
    hint = "run `python run.py calibrate` to make it"
    return [
        Variant("trt-fp32", "tensorrt", "fp32", "cuda", ed.onnx_path("fp32").name, "fp32"),
        Variant("trt-fp16", "tensorrt", "fp16", "cuda", ed.onnx_path("fp16").name, "fp16", hint),
        Variant("trt-int8", "tensorrt", "int8", "cuda", ed.onnx_path("int8", "trt").name, "int8.trt", hint),
    ]


BACKEND = Backend(
    name="tensorrt",
    devices=("cuda",),
    priority=10,
    install_hint=TRT_FIX,
    available=_available,
    open=_open,
    variants=_variants,
)


__all__ = [
    "available",
    "open_tensorrt",
    "build",
    "TensorRTEngine",
    "Machine",
    "BuildSpec",
    "BatchRange",
    "BuildError",
    "PlanError",
    "DEFAULT_BATCH",
]
