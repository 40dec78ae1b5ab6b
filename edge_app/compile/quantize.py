"""INT8 and FP16 models derived from ``model.onnx`` and one set of cached calibration ranges.

- ``model.int8.trt.onnx``: symmetric s8s8 Q/DQ in TensorRT's placement (zero points 0, per-channel Conv weights
  on axis 0, float bias, only op inputs quantized, and on each residual Add the Q/DQ on the skip input only so
  Conv+Add fuse), on top of the FP16 graph (opset 19: FP16 scales, DQ outputs FP16), so every layer left
  unquantized runs FP16, not FP32. TensorRT 10/11 read precision from these nodes and types; there are no
  builder flags for it any more.
- ``model.int8.cpu.onnx``: u8s8 Q/DQ (uint8 asymmetric activations, int8 per-channel weights), the form ONNX
  Runtime's CPU kernels run 2.7-3x faster than fp32.
- ``model.fp16.onnx``: FP16 weights and compute, uint8 ``images`` in and float32 ``logits`` out as before; the
  in-graph preprocessing stays fp32 (it is cheap, and 0..255 pixel arithmetic is where fp16 rounds worst).

Both INT8 models are made by ONNX Runtime's ``quantize_static`` on the ``quant_pre_process`` output, fed the
cached ranges instead of recalibrating. The in-graph preprocessing is excluded from quantization; the first
Conv's input (the preprocessing output) is quantized like every other Conv input.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write, sha256_bytes

log = logging.getLogger(__name__)

# What TensorRT fuses and runs in INT8 for a ResNet. Relu stays out: a Q/DQ between Add and Relu would
# split the Conv+Add+Relu fusion; TensorRT quantizes the Relu output where the next op's input Q/DQ sits.
TRT_OP_TYPES = ["Conv", "Gemm", "Add", "MaxPool", "GlobalAveragePool", "AveragePool"]
TRT_EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": True,  # zero point 0: the only activation form TensorRT accepts
    "WeightSymmetric": True,
    "QuantizeBias": False,  # TensorRT takes a float bias and folds it into the INT8 kernel
    "DedicatedQDQPair": True,  # TensorRT cannot share one Q/DQ pair between consumers
    "OpTypesToExcludeOutputQuantization": TRT_OP_TYPES,  # quantize op inputs only (NVIDIA's placement advice)
}
CPU_EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": False,  # uint8 asymmetric activations: what the fast u8s8 CPU kernels take
    "WeightSymmetric": True,
}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Bump when the graph passes or settings here change, so existing derived models are rebuilt on the next run.
RECIPE_VERSION = "3"  # 3: the TensorRT INT8 file is Q/DQ on the FP16 graph (opset 19)


def recipe() -> str:
    """Names what made a derived model (this module's recipe and the ONNX Runtime version), for up-to-date checks."""
    return f"edge_app.compile.quantize/{RECIPE_VERSION} onnxruntime/{ort_version()}"


def ort_version() -> str:
    """The installed ONNX Runtime version (the quantization tool), for meta.json."""
    import onnxruntime as ort

    return ort.__version__


# ----------------------------------------------------------------------------------------- graph helpers
def first_conv(model: onnx.ModelProto) -> onnx.NodeProto:
    """The first Conv node: its data input is where the in-graph preprocessing ends."""
    for n in model.graph.node:
        if n.op_type == "Conv":
            return n
    raise UserError("the model has no Conv node; calibrate supports the ResNet models that `export` writes")


def float_boundary(model: onnx.ModelProto) -> str:
    """The tensor where the in-graph preprocessing ends: the first Conv's input, or in a Q/DQ model the tensor
    its input Q/DQ pair quantizes."""
    producer = {o: n for n in model.graph.node for o in n.output}
    t = first_conv(model).input[0]
    while t in producer and producer[t].op_type in QDQ_OPS:
        t = producer[t].input[0]
    return t


def preprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the first Conv's input (Cast, Transpose, Slice, Mul, Add)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    stack = [float_boundary(model)]
    while stack:
        t = stack.pop()
        node = producer.get(t)
        if node is not None and node.name not in names:
            names.append(node.name)
            stack.extend(node.input)
    return names


def preprocess_model(src: Path, dst: Path) -> Path:
    """ONNX Runtime's ``quant_pre_process`` (shape inference + basic graph optimisation), required for u8s8."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(src), str(dst))
    return dst


def tensor_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor name produced or consumed in the graph."""
    names = {i.name for i in model.graph.input}
    for n in model.graph.node:
        names.update(n.input)
        names.update(n.output)
    return names


# ----------------------------------------------------------------------------------------- INT8
def quantize_int8(
    pre_model: Path,
    ranges: dict[str, list[float]],
    target: str,
    dst: Path,
    work_dir: Path,
    exclude: list[str] | tuple[str, ...] = (),
    kept_float: str = "",
    keep_fp32: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``dst`` (atomically) as the ``target`` ('trt' or 'cpu') Q/DQ model; returns the settings used.

    ``exclude``: more nodes to keep in float beside the preprocessing (a detector's head and decode), named
    in the settings as ``kept_float``. ``keep_fp32``: nodes that stay FP32 in the TensorRT file's FP16 graph.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if target not in ("trt", "cpu"):
        raise ValueError(f"target must be 'trt' or 'cpu', got {target!r}")
    model = onnx.load(str(pre_model))
    nodes = {n.name for n in model.graph.node}
    exclude = preprocessing_nodes(model) + [n for n in exclude if n in nodes]
    if target == "trt":
        kw: dict[str, Any] = {
            "activation_type": QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "op_types_to_quantize": TRT_OP_TYPES,
            "extra_options": dict(TRT_EXTRA_OPTIONS),
        }
    else:
        kw = {
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "extra_options": dict(CPU_EXTRA_OPTIONS),
        }
    # quantize_static takes precomputed ranges through its calibration cache; a fresh TensorsData per call,
    # because the quantizer adjusts ranges in place (e.g. Relu inputs).
    tensors = TensorsData(
        CalibrationMethod.MinMax,
        {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()},
    )
    ort_cache = work_dir / f"ranges.{target}.json"
    ort_cache.unlink(missing_ok=True)
    save_tensors_data(tensors, ort_cache)
    raw = work_dir / f"raw.{target}.onnx"
    ort_log = logging.getLogger()
    level = ort_log.level
    ort_log.setLevel(logging.ERROR)  # quantize_static logs advice we have already followed
    try:
        quantize_static(
            str(pre_model),
            str(raw),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=ort_cache,
            **kw,
        )
    finally:
        ort_log.setLevel(level)
    qmodel = onnx.load(str(raw))
    removed = place_residual_qdq(qmodel) if target == "trt" else 0
    _drop_unused_opsets(qmodel)
    fp16: dict[str, Any] = {}
    if target == "trt":
        qmodel, fp16 = qdq_on_fp16(qmodel, keep_fp32)
    onnx.checker.check_model(qmodel)
    atomic_write(dst, lambda p: onnx.save(qmodel, str(p)))
    settings = {
        "format": "QDQ",
        "per_channel": True,
        "reduce_range": False,
        "activations": "int8 symmetric" if target == "trt" else "uint8 asymmetric",
        "weights": "int8 symmetric per-channel (Conv axis 0)",
        "op_types": kw.get("op_types_to_quantize", "all supported"),
        "excluded_nodes": exclude,
        **({"kept_float": kept_float} if kept_float else {}),
        "extra_options": kw["extra_options"],
    }
    if target == "trt":
        settings["residual_add_qdq_removed"] = removed
        settings["unquantized_layers"] = fp16
    return settings


def _depths(model: onnx.ModelProto) -> dict[str, int]:
    """Longest path (in non-Q/DQ nodes) from the graph inputs to each tensor."""
    depth = {i.name: 0 for i in model.graph.input}
    for init in model.graph.initializer:
        depth[init.name] = 0
    for n in model.graph.node:  # ONNX graphs are stored in topological order
        d = max((depth.get(i, 0) for i in n.input if i), default=0) + (0 if n.op_type in QDQ_OPS else 1)
        for o in n.output:
            depth[o] = d
    return depth


def place_residual_qdq(model: onnx.ModelProto) -> int:
    """On every Add fed by two Q/DQ pairs, drop the pair on the Conv-branch input; returns how many were dropped.

    TensorRT fuses Conv + Add (+ Relu) into one INT8 kernel only when the Conv output reaches the Add in float,
    with the skip connection arriving through Q/DQ (NVIDIA's Q/DQ placement rules; ModelOpt's
    ``remove_partial_input_qdq``). The branch is the input with the longer path from the graph input: for a
    downsampling block both inputs are Convs, and the main branch (two Convs deep) is the one to fuse.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    depth = _depths(model)
    drop: list[onnx.NodeProto] = []
    removed = 0
    for add in [n for n in g.node if n.op_type == "Add"]:
        pairs = []
        for idx, name in enumerate(add.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                break
            src = producer.get(q.input[0])
            pairs.append((idx, q, dq, src))
        if len(pairs) != 2:
            continue
        convs = [p for p in pairs if p[3] is not None and p[3].op_type == "Conv"]
        if not convs:
            continue
        idx, q, dq, src = max(convs, key=lambda p: depth.get(p[1].input[0], 0))
        add.input[idx] = q.input[0]
        if len(consumers.get(dq.output[0], [])) == 1:
            drop.append(dq)
            if len(consumers.get(q.output[0], [])) == 1:
                drop.append(q)
        removed += 1
    for n in drop:
        g.node.remove(n)
    _drop_unused_initializers(model)
    return removed


def _drop_unused_opsets(model: onnx.ModelProto) -> None:
    """ORT's optimiser declares every domain it knows (com.microsoft, ...); keep only those the nodes use,
    so parsers that reject unknown domains (older TensorRT) see a plain ONNX graph."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


# ----------------------------------------------------------------------------------------- INT8 on FP16
# QuantizeLinear/DequantizeLinear take FP16 inputs and scales (so DQ outputs FP16) from opset 19.
QDQ_FP16_OPSET = 19
FP16_TINY = float(np.finfo(np.float16).tiny)  # smallest normal FP16: a smaller scale loses precision or vanishes


def qdq_on_fp16(model: onnx.ModelProto, keep_fp32: Sequence[str] = ()) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The Q/DQ model on top of the FP16 graph: scales FP16, DQ outputs FP16, every unquantized layer FP16.

    Under strong typing TensorRT runs each tensor in the type the ONNX gives it, so Q/DQ on an FP32 graph
    leaves every layer without Q/DQ (preprocessing aside: pooling, the FC tail, a detector's head and decode)
    in FP32. NVIDIA's explicit-quantization guidance is Q/DQ on the FP16 graph; that needs opset 19, where
    Q/DQ accept FP16. Scales below FP16's smallest normal are raised to it (weights requantized to match),
    so no scale underflows to zero. The preprocessing stays FP32 as in model.fp16.onnx.
    """
    from onnx import version_converter

    version = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    m = version_converter.convert_version(model, QDQ_FP16_OPSET) if version < QDQ_FP16_OPSET else model
    raised = _raise_tiny_scales(m)
    m, settings = cast_fp16(m, keep_fp32)
    return m, {"compute": "float16", "opset": QDQ_FP16_OPSET, "scales_raised_to_fp16_min": raised, **settings}


def _raise_tiny_scales(model: onnx.ModelProto) -> int:
    """Raise Q/DQ scales below FP16_TINY to it (requantizing int8 weight initializers); returns how many."""
    inits = {t.name: t for t in model.graph.initializer}
    raised = 0
    for n in model.graph.node:
        if n.op_type not in QDQ_OPS or len(n.input) < 2 or n.input[1] not in inits:
            continue
        st = inits[n.input[1]]
        scale = numpy_helper.to_array(st).astype(np.float32)
        small = scale < FP16_TINY
        if not small.any():
            continue
        new = np.maximum(scale, FP16_TINY).astype(np.float32)
        w = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if w is not None and w.data_type == TensorProto.INT8:
            q = numpy_helper.to_array(w).astype(np.float32)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim == 1 and scale.size > 1:
                shape[axis] = scale.size
            ratio = (scale / new).reshape(shape) if scale.size > 1 else scale / new
            w.CopyFrom(numpy_helper.from_array(np.clip(np.round(q * ratio), -127, 127).astype(np.int8), w.name))
        st.CopyFrom(numpy_helper.from_array(new.reshape(scale.shape), st.name))
        raised += int(small.sum())
    return raised


# ----------------------------------------------------------------------------------------- FP16
def cast_fp16(model: onnx.ModelProto, keep_fp32: Sequence[str] = ()) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """FP16 copy of an fp32 model: weights and compute in fp16 after the preprocessing, same uint8/float32 I/O.

    One Cast to fp16 after the in-graph preprocessing and one Cast back to fp32 before each output, so the
    graph is strongly typed (TensorRT 11 builds it as written) and every backend still takes uint8 pixels.
    ``keep_fp32``: nodes that stay FP32 (a detector's decode and NMS): their float inputs from FP16 nodes get
    a Cast back to FP32, their outputs stay FP32.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    pre = set(preprocessing_nodes(m))
    kept = {n.name for n in g.node if n.name in set(keep_fp32)} - pre
    boundary = float_boundary(m)
    main = [n for n in g.node if n.name not in pre and n.name not in kept]
    typed = onnx.shape_inference.infer_shapes(model) if kept else model  # the float tensors, before the cast
    float_t = {v.name for v in typed.graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    pre_inputs = {i for n in g.node if n.name in pre for i in n.input}
    kept_inputs = {i for n in g.node if n.name in kept for i in n.input}
    main_inputs = {i for n in main for i in n.input}
    for t in list(g.initializer):  # a float constant both kept and cast nodes read: the cast ones get a copy
        if t.data_type == TensorProto.FLOAT and t.name in main_inputs and t.name in kept_inputs:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(t), t.name + "_fp16"))
            for n in main:
                for k, name in enumerate(n.input):
                    if name == t.name:
                        n.input[k] = t.name + "_fp16"
    main_inputs = {i for n in main for i in n.input}
    overflow = 0
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and t.name in main_inputs:
            if t.name in pre_inputs:
                raise UserError(
                    f"initializer '{t.name}' is shared by preprocessing and the network; re-export the model"
                )
            a = numpy_helper.to_array(t)
            overflow += int((np.abs(a) > 65504).sum())
            t.CopyFrom(numpy_helper.from_array(np.clip(a, -65504, 65504).astype(np.float16), t.name))
    for n in main:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
        elif n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
        for k, name in enumerate(n.input):
            if name == boundary:
                n.input[k] = boundary + "_fp16"
    nodes = _cast_into_kept(m, main, kept, float_t) if kept else list(g.node)
    cut = max(i for i, n in enumerate(nodes) if n.name in pre) + 1
    nodes.insert(
        cut, helper.make_node("Cast", [boundary], [boundary + "_fp16"], name="to_fp16", to=TensorProto.FLOAT16)
    )
    kept_outputs = {o for n in nodes if n.name in kept for o in n.output}
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT or out.name in kept_outputs:
            continue
        for n in nodes:
            for k, o in enumerate(n.output):
                if o == out.name:
                    n.output[k] = out.name + "_fp16"
        nodes.append(
            helper.make_node("Cast", [out.name + "_fp16"], [out.name], name=f"{out.name}_to_fp32", to=TensorProto.FLOAT)
        )
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m)
    return m, {
        "compute": "float16",
        "io": "uint8 images in, float32 logits out",
        "kept_fp32": sorted(pre) + sorted(kept),
        "weights_clipped_to_fp16_range": overflow,
    }


def _cast_into_kept(
    model: onnx.ModelProto, main: list[onnx.NodeProto], kept: set[str], float_t: set[str]
) -> list[onnx.NodeProto]:
    """The graph's nodes with a Cast to FP32 after every FP16 tensor (``float_t``: the float ones) a kept node reads."""
    main_names = {n.name for n in main}
    produced = {o: n.name for n in model.graph.node for o in n.output}
    into_kept = {
        i for n in model.graph.node if n.name in kept for i in n.input if i in float_t and produced.get(i) in main_names
    }
    nodes: list[onnx.NodeProto] = []
    for n in model.graph.node:
        if n.name in kept:
            for k, name in enumerate(n.input):
                if name in into_kept:
                    n.input[k] = name + "_fp32"
        nodes.append(n)
        for o in n.output:
            if o in into_kept:
                nodes.append(helper.make_node("Cast", [o], [o + "_fp32"], name=f"{o}_to_fp32", to=TensorProto.FLOAT))
    return nodes


def write_fp16(
    src: Path, dst: Path, keep_fp32: Callable[[onnx.ModelProto], Sequence[str]] | None = None
) -> dict[str, Any]:
    """Write ``dst`` (atomically) as the FP16 model of ``src``; returns the settings.

    ``keep_fp32``: the task's nodes to keep FP32, found in ``src``'s graph."""
    model = onnx.load(str(src))
    model, settings = cast_fp16(model, keep_fp32(model) if keep_fp32 else ())
    atomic_write(dst, lambda p: onnx.save(model, str(p)))
    return settings


def ranges_sha256(ranges: dict[str, list[float]]) -> str:
    """A stable hash of a range table, to tell whether a derived model was made from these exact ranges."""
    return sha256_bytes(json.dumps(ranges, sort_keys=True).encode())
