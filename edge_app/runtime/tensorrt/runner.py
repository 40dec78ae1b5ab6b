"""The TensorRT runner: one deserialized plan, one execution context, one stream, any number of named outputs.

Task-neutral, like Polygraphy's ``TrtRunner``: the plan's one uint8 input takes the raw frames, and every
output the plan has is checked once against meta.json (its names, and each output's per-sample shape
against the output layout, or ``(num_classes,)`` for a classifier) and returned as ``{name: array}``.
A classifier's ``logits`` and a detector's ``dets [N, K, 6]`` go through the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.runtime.base import Engine
from edge_app.runtime.cuda import CudaError, CudaRuntime
from edge_app.runtime.tensorrt.builder import make_logger

log = logging.getLogger(__name__)


class PlanError(RuntimeError):
    """TensorRT could not deserialize a plan file (corrupt, truncated or from another version)."""


def output_names(meta: EngineMeta) -> list[str]:
    """meta.json's output names, in the order ``infer`` returns them."""
    return [o if isinstance(o, str) else str(getattr(o, "name", o)) for o in meta.outputs]


def expected_shapes(meta: EngineMeta) -> dict[str, tuple[int | None, ...] | None]:
    """{output name: per-sample shape meta.json promises (None for a symbolic dim), or None when it says none}.

    The output layout (``output_layout``: ``{"dets": {"shape": ["batch", 100, 6], ...}}``) is the source; a
    classifier's single output without a layout holds one score per label.
    """
    layout = getattr(meta, "output_layout", None) or meta.extra.get("output_layout") or {}
    names = output_names(meta)
    want: dict[str, tuple[int | None, ...] | None] = {}
    for name in names:
        entry = layout.get(name) if isinstance(layout, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else getattr(entry, "shape", None)
        if shape:
            want[name] = tuple(d if isinstance(d, int) else None for d in list(shape)[1:])
        elif len(names) == 1 and not layout:
            want[name] = (meta.num_classes,)
        else:
            want[name] = None
    return want


@dataclass
class _Io:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per-sample shape (without batch)
    host: int = 0  # pinned (or mapped) host pointer
    device: int = 0  # device pointer; for mapped memory the device's view of ``host``
    view: np.ndarray | None = None  # numpy view of the host buffer, max batch
    mapped: bool = False  # zero-copy: the GPU reads and writes ``host`` directly, no H2D/D2H copies

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class TensorRTEngine(Engine):
    """One plan on one stream; uint8 frames in, every output as float32 ``{name: array}`` out.

    Buffers are allocated once for the profile's maximum batch; each call copies only ``n`` samples.
    With ``cuda_graphs`` the enqueue is captured into a CUDA graph and replayed (less launch overhead, which
    matters at batch 1 on Jetson). A graph bakes in the shapes it was captured with, so it is re-captured
    whenever the batch size changes; live video keeps one batch size, so that happens once. A plan whose
    enqueue cannot be captured runs on without graphs, said once in the log, as trtexec does.

    With ``mapped_memory`` (integrated GPUs: Jetson) the buffers are mapped pinned host memory that the GPU
    reads in place (``cudaHostAlloc(cudaHostAllocMapped)``, as jetson-inference does), so no copies are
    queued; where mapping fails the engine falls back to pinned host + device buffers and says why once.
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
        mapped_memory: bool = False,
    ) -> None:
        super().__init__(engine_dir, meta, precision, f"dla{dla_core}" if dla_core is not None else "cuda")
        self.model_file = model_file
        self._trt, self._cuda = trt, cuda
        self._graph: tuple[int, Any, Any] | None = None  # (batch size, graph, executable graph)
        self._use_graphs = cuda_graphs
        self.graph_error: str | None = None  # why CUDA graphs were turned off, if they were
        self.mapped_memory = mapped_memory  # stays True only when every buffer really is mapped
        self.mapped_error: str | None = None  # why mapped memory fell back to copies, if it did
        self.min_batch = 1  # the profile's minimum, read from the plan in _setup
        self.profile: tuple[int, int, int] = (1, 1, 1)  # the plan's (min, opt, max) batch
        self._batch_set = 0
        self._stream: Any = None
        self._events: list[Any] = []
        self._inp: _Io | None = None
        self._outs: list[_Io] = []
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

    # -------------------------------------------------------------------------------------- set-up
    def _dtypes(self) -> dict[Any, Any]:
        trt = self._trt
        table = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT32: np.int32}
        if hasattr(trt.DataType, "INT64"):
            table[trt.DataType.INT64] = np.int64
        return table

    def _setup(self) -> None:
        trt, eng = self._trt, self._engine
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            (inputs if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1 or eng.get_tensor_dtype(inputs[0]) != trt.DataType.UINT8:
            raise RuntimeError(
                f"expected a plan with one uint8 input (the raw frames), got inputs {inputs}; "
                "re-export the model and rebuild the plan"
            )
        want = expected_shapes(self.meta)
        if sorted(outputs) != sorted(want):
            raise RuntimeError(
                f"plan outputs {sorted(outputs)} do not match meta.json's outputs {sorted(want)}; "
                f"rebuild the plan from this folder's ONNX (`python run.py build {self.engine_dir.path} --force`)"
            )
        lo, opt, hi = (int(tuple(d)[0]) for d in eng.get_tensor_profile_shape(inputs[0], 0))
        self.profile, self.min_batch, self.max_batch = (lo, opt, hi), lo, hi
        spec = self.meta.input
        self._inp = _Io(inputs[0], np.dtype(np.uint8), (spec.height, spec.width, 3))
        dtypes = self._dtypes()
        by_name = {}
        for name in outputs:
            dt = eng.get_tensor_dtype(name)
            if dt not in dtypes:
                raise RuntimeError(f"plan output '{name}' has type {dt}; expected fp32, fp16 or int32; re-export")
            by_name[name] = _Io(name, np.dtype(dtypes[dt]), self._check_shape(name, eng.get_tensor_shape(name), want))
        self._outs = [by_name[n] for n in output_names(self.meta)]  # meta order, as every backend returns them
        cu = self._cuda
        self._stream = cu.stream_create()
        self._events = [cu.event_create() for _ in range(4)]  # start, after H2D, after compute, after D2H
        for io in (self._inp, *self._outs):
            self._alloc(io, self.max_batch * io.sample_bytes)
            io.view = cu.host_array(io.host, (self.max_batch, *io.shape), io.dtype)
            if not self._context.set_tensor_address(io.name, io.device):
                raise RuntimeError(f"TensorRT refused the device address for '{io.name}'")

    def _check_shape(self, name: str, dims: Any, want: dict[str, tuple[int | None, ...] | None]) -> tuple[int, ...]:
        """The per-sample shape of output ``name``; RuntimeError in one sentence when meta.json promises another."""
        full = tuple(int(d) for d in tuple(dims))
        rest = full[1:]
        rebuild = f"rebuild the plan (`python run.py build {self.engine_dir.path} --force`)"
        expect = want.get(name)
        if expect == (self.meta.num_classes,) and len(want) == 1 and rest != expect:
            raise RuntimeError(
                f"plan output '{name}' {full} does not match the {self.meta.num_classes} labels in meta.json; {rebuild}"
            )
        if any(d < 0 for d in rest):
            raise RuntimeError(
                f"plan output '{name}' has a data-dependent shape {full}; export a fixed number of rows "
                "(detectors pad to K rows) and rebuild the plan"
            )
        if expect is not None and (
            len(expect) != len(rest) or any(e is not None and e != d for e, d in zip(expect, rest))
        ):
            said = "(batch, " + ", ".join("?" if e is None else str(e) for e in expect) + ")"
            raise RuntimeError(
                f"plan output '{name}' has shape {full} but meta.json's output layout says {said}; {rebuild}"
            )
        return rest

    def _alloc(self, io: _Io, nbytes: int) -> None:
        """Mapped pinned memory when asked for (falling back once, with the reason), else pinned host + device."""
        cu = self._cuda
        if self.mapped_memory:
            try:
                io.host = cu.host_alloc_mapped(nbytes)
                io.device = cu.host_device_pointer(io.host)
                io.mapped = True
                return
            except CudaError as e:
                if io.host:
                    cu.free_host(io.host)
                    io.host = 0
                self._unmap(str(e))
        io.host = cu.malloc_host(nbytes)
        io.device = cu.malloc(nbytes)

    def _unmap(self, why: str) -> None:
        self.mapped_memory = False
        self.mapped_error = why
        log.warning("mapped host memory is not available (%s); using pinned host and device buffers with copies", why)

    # -------------------------------------------------------------------------------------- running
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

    def _set_batch(self, n: int) -> None:
        if not self.min_batch <= n <= (self.max_batch or n):
            raise ValueError(
                f"batch {n} is outside this plan's profile, which takes batch {self.min_batch} to {self.max_batch}; "
                f"build a plan that holds it (`python run.py build {self.engine_dir.path} --batch ...`)"
            )
        if n != self._batch_set:
            assert self._inp is not None  # set in _setup
            if not self._context.set_input_shape(self._inp.name, self._trt.Dims((n, *self._inp.shape))):
                raise ValueError(
                    f"TensorRT refused batch {n} for this plan (profile batch {self.min_batch} to {self.max_batch})"
                )
            self._batch_set = n

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        inp, cu, ev, s = self._inp, self._cuda, self._events, self._stream
        assert inp is not None and inp.view is not None  # set in _setup
        n = images.shape[0]
        self._set_batch(n)
        inp.view[:n] = images
        cu.event_record(ev[0], s)
        if not inp.mapped:
            cu.memcpy_h2d_async(inp.device, inp.host, n * inp.sample_bytes, s)  # uint8: 4x fewer bytes than fp32
        cu.event_record(ev[1], s)
        self._compute(n)
        cu.event_record(ev[2], s)
        for out in self._outs:
            if not out.mapped:
                cu.memcpy_d2h_async(out.host, out.device, n * out.sample_bytes, s)
        cu.event_record(ev[3], s)
        cu.stream_synchronize(s)
        self.last_timings = {
            "h2d": cu.event_elapsed_ms(ev[0], ev[1]),
            "compute": cu.event_elapsed_ms(ev[1], ev[2]),
            "d2h": cu.event_elapsed_ms(ev[2], ev[3]),
        }
        # Copies: the host buffers are reused by the next call.
        return {out.name: out.view[:n].astype(np.float32) for out in self._outs if out.view is not None}

    def measure(self, batch: int | None = None, warmup: int = 10, runs: int = 50) -> dict[str, Any]:
        """GPU time of ``runs`` enqueues at ``batch`` (default: the profile's opt) after ``warmup``: CUDA events
        around each enqueue, synchronised, so the numbers are compute only (trtexec's "GPU Compute Time")."""
        n = batch or self.profile[1]
        self._set_batch(n)
        assert self._inp is not None and self._inp.view is not None
        self._inp.view[:n] = 0
        cu, ev, s = self._cuda, self._events, self._stream
        if not self._inp.mapped:
            cu.memcpy_h2d_async(self._inp.device, self._inp.host, n * self._inp.sample_bytes, s)
        for _ in range(warmup):
            self._compute(n)
        cu.stream_synchronize(s)
        ms = []
        for _ in range(runs):
            cu.event_record(ev[1], s)
            self._compute(n)
            cu.event_record(ev[2], s)
            cu.stream_synchronize(s)
            ms.append(cu.event_elapsed_ms(ev[1], ev[2]))
        med = float(np.median(ms))
        return {
            "batch": n,
            "warmup": warmup,
            "runs": runs,
            "median_ms": round(med, 4),
            "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "ms_per_image": round(med / n, 4),
            "cuda_graphs": self._use_graphs,
        }

    def layer_info(self) -> str:
        """The engine inspector's JSON layer information (detailed when the plan was built with DETAILED)."""
        inspector = self._engine.create_engine_inspector()
        return str(inspector.get_engine_information(self._trt.LayerInformationFormat.JSON))

    def _close(self) -> None:
        cu = getattr(self, "_cuda", None)
        if cu is None:
            return
        try:
            if getattr(self, "_graph", None) is not None:
                self._drop_graph()
            for io in (self._inp, *self._outs):
                if io is not None and io.host:
                    io.view = None
                    cu.free_host(io.host)
                    if not io.mapped:
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
