"""The world a contract scenario runs in: the real ``tensorrt`` module with doubles for the objects that need
a GPU (Builder, Runtime, OnnxParser and everything they return), a numpy-backed CudaRuntime, and a fake
network whose output the runner's result can be checked against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

H = W = 32
CLASSES = 6


class World:
    """Real trt module + doubles + fake CUDA for one scenario."""

    def __init__(
        self,
        trt: Any,
        *,
        dla_cores: int = 0,
        parse_ok: bool = True,
        plan: bytes | None = b"PLAN-BYTES",
        cache_accepts: bool = True,
        out_dtype: str = "HALF",
        deserialize: Callable[[bytes], Any] | None = None,
        capture_fails: bool = False,
        profile: tuple[int, int, int] = (1, 4, 8),
        outputs: dict[str, tuple[int, ...]] | None = None,
        layers: list[Any] | None = None,
    ) -> None:
        from tests.runtime.trt_stub.doubles import Double, FakeCuda, TrtModule

        self.real, self.cuda = trt, FakeCuda()
        D = lambda cls, **kw: Double(trt, cls, **kw)  # noqa: E731
        self.D = D
        self.tensor = D(trt.ITensor, name="images", shape=trt.Dims((-1, H, W, 3)))
        self.network = D(trt.INetworkDefinition)
        self.network._props["num_inputs"] = 1  # read-only in TensorRT: configure the value directly
        self.network.returns("get_input", self.tensor)
        self.batch_profile = profile  # the plan's batch min/opt/max as the engine double reports it
        self.capture_fails = capture_fails  # execute_async_v3 returns False under stream capture (a graph-unsafe plan)
        self.cache = D(trt.ITimingCache).returns("serialize", b"TIMING").returns("combine", True)
        self.profile = D(trt.IOptimizationProfile).returns("set_shape", None)
        self.config = D(trt.IBuilderConfig)
        self.config.returns("set_memory_pool_limit", None).returns("add_optimization_profile", 0)
        self.config.returns("create_timing_cache", self.cache).returns("get_timing_cache", self.cache).returns(
            "set_flag", None
        )
        self._accepts = [cache_accepts, True]
        self.config.returns("set_timing_cache", lambda *a: self._accepts.pop(0) if self._accepts else True)
        self.builder = D(trt.Builder)
        self.builder._props["num_DLA_cores"] = dla_cores
        self.builder.returns("create_network", self.network).returns("create_builder_config", self.config)
        self.builder.returns("create_optimization_profile", self.profile)
        self.plan = plan
        self.builder.returns("build_serialized_network", lambda net, cfg: self._build())
        self.parser = D(trt.OnnxParser).returns("parse", parse_ok)
        self.parser._props["num_errors"] = 0 if parse_ok else 2
        self.parser.returns("get_error", lambda i: self._parser_error(i))
        self.loggers: list[Any] = []
        self.runtimes: list[Any] = []
        self.deserialize = deserialize or (lambda data: self.make_engine(out_dtype))
        self.addresses: dict[str, int] = {}
        self.shape: tuple = ()
        # The plan's outputs (per-sample shapes, batch first added as -1) and what the fake network computes for
        # them: by default the logits formula below; a scenario may run the real ONNX in ONNX Runtime instead.
        self.outputs = outputs or {"logits": (CLASSES,)}
        self.compute: Callable[[np.ndarray], dict[str, np.ndarray]] = lambda x: {
            "logits": expected_logits(x, np.float64)
        }
        # What the engine inspector reports (DETAILED verbosity): a list of layer records, see layer_record().
        self.layers = layers if layers is not None else default_layers()
        self.kernel_ms = 1.0  # fake GPU time of one enqueue: what the timed run after a build measures
        self.trt = TrtModule(
            trt, {"Builder": self._new_builder, "Runtime": self._new_runtime, "OnnxParser": lambda net, lg: self.parser}
        )

    def _parser_error(self, i: int) -> Any:
        from tests.runtime.trt_stub.doubles import set_str

        return set_str(
            self.D(self.real.ParserError), f"In node {i} (Conv_{i}): UNSUPPORTED_NODE: full text of error {i}"
        )

    def _new_builder(self, logger: Any) -> Any:
        self.loggers.append(logger)
        return self.builder

    def _build(self) -> Any:
        if self.plan is None:
            self.loggers[-1].log(
                self.real.ILogger.Severity.ERROR, "no implementation for layer conv1 (out of workspace)"
            )
        return self.plan

    def _new_runtime(self, logger: Any) -> Any:
        rt = self.D(self.real.Runtime).returns("deserialize_cuda_engine", lambda data: self.deserialize(bytes(data)))
        self.runtimes.append(rt)
        return rt

    def make_engine(self, out_dtype: str = "HALF") -> Any:
        trt = self.real
        eng = self.D(trt.ICudaEngine)
        names = ["images", *self.outputs]
        eng._props["num_io_tensors"] = len(names)
        eng.returns("get_tensor_name", lambda i: names[i])
        eng.returns("get_tensor_mode", lambda n: trt.TensorIOMode.INPUT if n == "images" else trt.TensorIOMode.OUTPUT)
        eng.returns(
            "get_tensor_dtype", lambda n: trt.DataType.UINT8 if n == "images" else getattr(trt.DataType, out_dtype)
        )
        eng.returns("get_tensor_profile_shape", lambda n, i: [trt.Dims((b, H, W, 3)) for b in self.batch_profile])
        eng.returns(
            "get_tensor_shape",
            lambda n: trt.Dims((-1, H, W, 3)) if n == "images" else trt.Dims((-1, *self.outputs[n])),
        )
        inspector = self.D(trt.EngineInspector)
        inspector.returns("get_engine_information", lambda fmt: json.dumps({"Layers": self.layers, "Bindings": names}))
        eng.returns("create_engine_inspector", inspector)
        self.inspector = inspector
        ctx = self.D(trt.IExecutionContext)
        ctx.returns("set_tensor_address", lambda n, p: self.addresses.__setitem__(n, p) or True)
        ctx.returns("set_input_shape", lambda n, s: setattr(self, "shape", tuple(s)) or True)
        ctx.returns("execute_async_v3", lambda h: self._execute(out_dtype))
        eng.returns("create_execution_context", ctx)
        self.context = ctx
        return eng

    def _execute(self, out_dtype: str) -> bool:
        if self.capture_fails and self.cuda.capturing is not None:
            return False
        self.cuda.submit(lambda n=self.shape[0]: self._kernel(n, out_dtype), "execute", self.kernel_ms)
        return True

    def _kernel(self, n: int, out_dtype: str) -> None:
        """What the fake 'network' computes (``self.compute``), written in the engine's output dtype."""
        src = self.cuda.buffers[self._device(self.addresses["images"])][: n * H * W * 3].reshape(n, H, W, 3)
        dt = np.float16 if out_dtype == "HALF" else np.float32
        for name, value in self.compute(src.copy()).items():
            out = self.cuda.buffers[self._device(self.addresses[name])].view(dt)
            out[: value.size] = np.asarray(value, dt).ravel()

    def _device(self, ptr: int) -> int:
        if ptr not in self.cuda.buffers:
            raise AssertionError(f"TensorRT was given {ptr:#x}, which is no buffer the fake CUDA allocated")
        return ptr

    def context_double(self) -> Any:
        """The execution context of a fresh engine double."""
        self.make_engine()
        return self.context

    def machine(
        self,
        sm: tuple[int, int] = (8, 9),
        name: str = "NVIDIA GeForce RTX 4090",
        sm_count: int = 128,
        mig: bool = False,
    ) -> Any:
        from edge_app.runtime.cuda import DeviceInfo
        from edge_app.runtime.tensorrt import Machine

        return Machine(self.trt, self.cuda, DeviceInfo(0, name, sm, 24 << 30, False, 12040, 12090, sm_count, mig))


def layer_record(name: str, kind: str, dtype: str, **extra: Any) -> dict[str, Any]:
    """One layer as the engine inspector writes it at DETAILED verbosity (formats as TensorRT words them)."""
    fmt = {
        "int8": "Thirty-two wide channel vectorized row major Int8 format",
        "fp16": "Channel major FP16 format where channel % 8 == 0",
        "fp32": "Row major linear FP32",
        "int32": "Row major linear Int32",
    }[dtype]
    tensor = {"Name": f"{name}_out", "Location": "Device", "Dimensions": [-1, 64, 8, 8], "Format/Datatype": fmt}
    return {"Name": name, "LayerType": kind, "Inputs": [dict(tensor, Name=f"{name}_in")], "Outputs": [tensor], **extra}


def default_layers() -> list[dict[str, Any]]:
    """A small INT8 ResNet-like plan: 3 INT8 convolutions, 2 FP16 layers, 1 FP32 reformat."""
    return [
        layer_record("conv1 + relu", "CaskConvolution", "int8"),
        layer_record("layer1.0.conv1 + relu", "CaskConvolution", "int8"),
        layer_record("layer1.0.conv2 + add + relu", "CaskConvolution", "int8"),
        layer_record("pool", "CaskPooling", "fp16"),
        layer_record("fc", "CaskGemmConvolution", "fp16"),
        layer_record("logits_to_fp32", "Reformat", "fp32"),
    ]


def dla_layers() -> list[dict[str, Any]]:
    """A Jetson plan: the backbone as one DLA subgraph, the tail on the GPU."""
    return [
        layer_record("{ForeignNode[conv1...layer4.1.relu]}", "DLA", "fp16"),
        layer_record("pool", "CaskPooling", "fp16"),
        layer_record("fc", "CaskGemmConvolution", "fp16"),
    ]


def has_dla(trt: Any) -> bool:
    """Whether this TensorRT version lists DLA (FACTS.md: not 11.0-11.4.0)."""
    from edge_app.runtime.tensorrt.support import NO_DLA, trt_version_triple

    return not NO_DLA[0] <= trt_version_triple(trt.__version__) <= NO_DLA[1]


def expected_logits(images: np.ndarray, dt: Any) -> np.ndarray:
    """The fake kernel's formula, for checking what the runner returns."""
    n = images.shape[0]
    return (images.reshape(n, -1).mean(1)[:, None] / 16 + np.arange(CLASSES)[None]).astype(dt)


def tiny_onnx(name: str) -> bytes:
    """A real, TensorRT-rule-clean ONNX graph of the engine's shape (uint8 NHWC in, CLASSES logits out).

    The parser is a double, so TensorRT never reads it; ``build`` does run the static TensorRT ONNX rules
    check on it first, as it would on a user's file.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["images"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], name="nchw", perm=[0, 3, 1, 2]),
        helper.make_node("GlobalAveragePool", ["x"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["v"], name="flat", axis=1),
        helper.make_node("Gemm", ["v", "w"], ["logits"], name="fc", transB=1),
    ]
    w = numpy_helper.from_array(np.ones((CLASSES, 3), np.float32), "w")
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", H, W, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def engine_folder(root: Path) -> Any:
    """A minimal engines/tiny folder: meta.json and real fp32/fp16 ONNX files (see ``tiny_onnx``)."""
    from edge_app.engine_dir import EngineDir, EngineMeta, InputSpec

    ed = EngineDir(root / "tiny")
    ed.path.mkdir(parents=True)
    ed.onnx_path("fp32").write_bytes(tiny_onnx("fp32"))
    ed.onnx_path("fp16").write_bytes(tiny_onnx("fp16"))
    ed.onnx_path("int8", "trt").write_bytes(tiny_onnx("int8"))
    ed.save_meta(
        EngineMeta(name="tiny", arch="resnet18", labels=[f"c{i}" for i in range(CLASSES)], input=InputSpec(H, W))
    )
    return ed
