"""TensorRT 10.x ONNX-parser rules, checked statically: no TensorRT needed, so CI and `build` catch a bad graph early.

TensorRT cannot be installed on our development machines, and a graph it will not parse only fails on the
user's GPU box after a long export/calibrate. This module encodes the rules of onnx-tensorrt (the parser
TensorRT uses) that can be checked on the graph alone, from ``data/onnx_trt_ops_10x.json``: the operator
table of onnx-tensorrt ``docs/operators.md`` for TensorRT 10.15 (the ``source`` block names the repository,
path and commit) plus parser rules quoted from ``ModelImporter.cpp`` / ``onnxOpImporters.cpp``.

``check_trt_onnx`` returns every :class:`Violation`; ``require_trt_onnx`` raises a UserError with one sentence
per violation, naming the node and the rule. Rules (ids as in the JSON where it has one):

- OPSET_RANGE: the ai.onnx opset lies in the table's documented range (9..24 for 10.15).
- UINT8_INPUT_CAST: a uint8 graph input feeds only Cast nodes (casting to a non-uint8 type).
- UINT8_INTERMEDIATE: no node but Constant outputs a UINT8 tensor that is not a graph output
  ("TensorRT does not support UINT8 types for intermediate tensors").
- UNSUPPORTED_OR_UNKNOWN_OP: every op type has a builtin importer marked supported in the table.
- IO_DTYPE / CAST_TO: graph I/O and Cast targets use types TensorRT converts.
- DYNAMIC_DIMS: only the batch (first) dimension of graph inputs and outputs is dynamic.
- TOPK_K_LIMIT: TopK's K is an initializer/Constant and at most 3840; ``sorted`` is 1.
- POOL_DILATIONS_INDICES: MaxPool/AveragePool dilations are all 1; MaxPool has no Indices output.
- RESIZE_MODES: Resize mode, coordinate transformation, nearest mode, aspect policy; no antialias.
- QDQ_ZERO_POINT / QDQ_SCALE / QDQ_PER_AXIS: Q/DQ is int8 with zero point 0, constant scales are positive,
  and per-axis (per-channel) scales quantize weights (initializers) only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from edge_app.errors import UserError
from edge_app.runtime.tensorrt.onnx_graph import Violation, _attr, _dtype_name, _Graph, _who

TABLE_FILE = "onnx_trt_ops_10x.json"
# TensorRT's ITopKLayer: "Currently only values up to 3840 are supported." (operators.md says "less than").
TOPK_MAX_K = 3840
# convertDtype (importerUtils.cpp): the ONNX element types the parser turns into TensorRT types.
TRT_DTYPES = {
    TensorProto.DOUBLE,
    TensorProto.FLOAT,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.BOOL,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.FLOAT8E4M3FN,
    TensorProto.INT4,
    getattr(TensorProto, "FLOAT4E2M1", -1),
}
RESIZE_MODES = ("nearest", "linear", "cubic")  # the parser's checker accepts cubic too; docs list nearest, linear
RESIZE_CTM = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@lru_cache(maxsize=1)
def trt_table() -> dict[str, Any]:
    """The packaged onnx-tensorrt operator table and parser rules (with its ``source`` block)."""
    text = (
        resources.files("edge_app.runtime.tensorrt").joinpath("data").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    )
    return json.loads(text)


def _opset(gr: _Graph, table: dict[str, Any]) -> list[Violation]:
    lo, hi = table["opset"]["min"], table["opset"]["max"]
    versions = [o.version for o in gr.model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        return [
            Violation("OPSET_RANGE", "graph", f"the model declares no ai.onnx opset; TensorRT needs opset {lo} to {hi}")
        ]
    v = max(versions)
    if not lo <= v <= hi:
        return [
            Violation(
                "OPSET_RANGE",
                "graph",
                f"the model uses ai.onnx opset {v}, outside the {lo} to {hi} that "
                f"TensorRT 10.x documents; re-export with opset {min(max(v, lo), hi)}",
            )
        ]
    return []


def _uint8(gr: _Graph) -> list[Violation]:
    out = []
    for i in gr.inputs:
        if i.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        for c in gr.consumers.get(i.name, []):
            if c.op_type != "Cast" or _attr(c, "to") == TensorProto.UINT8:
                out.append(
                    Violation(
                        "UINT8_INPUT_CAST",
                        c.name or c.output[0],
                        f"{_who(c)} consumes the uint8 input '{i.name}' directly; TensorRT only accepts "
                        "uint8 straight into a Cast to float, so cast before any other op",
                    )
                )
    for n in gr.g.node:
        if n.op_type in ("Constant", "QuantizeLinear"):  # constants are weights; Q output is judged by the Q/DQ rules
            continue
        for o in n.output:
            if o and o not in gr.outputs and gr.type_of(o) == TensorProto.UINT8:
                out.append(
                    Violation(
                        "UINT8_INTERMEDIATE",
                        n.name or o,
                        f"{_who(n)} outputs the UINT8 tensor '{o}'; TensorRT does not support UINT8 "
                        "intermediate tensors (only as network input or output)",
                    )
                )
    return out


def _ops(gr: _Graph, table: dict[str, Any]) -> list[Violation]:
    ops, out = table["ops"], []
    for n in gr.g.node:
        entry = ops.get(n.op_type)
        if entry is None or not entry.get("supported"):
            why = "is not in" if entry is None else "is marked unsupported in"
            out.append(
                Violation(
                    "UNSUPPORTED_OR_UNKNOWN_OP",
                    n.name or n.output[0],
                    f"{_who(n)}: op type {n.op_type} {why} the TensorRT 10.x ONNX operator table, so the "
                    "parser would need a plugin for it",
                )
            )
    return out


def _io(gr: _Graph) -> list[Violation]:
    out = []
    for kind, values in (("input", gr.inputs), ("output", list(gr.g.output))):
        for v in values:
            tt = v.type.tensor_type
            if tt.elem_type not in TRT_DTYPES:
                out.append(
                    Violation(
                        "IO_DTYPE",
                        v.name,
                        f"graph {kind} '{v.name}' has type {_dtype_name(tt.elem_type)}, which TensorRT cannot convert",
                    )
                )
            if not tt.HasField("shape"):
                out.append(
                    Violation(
                        "DYNAMIC_DIMS",
                        v.name,
                        f"graph {kind} '{v.name}' has no shape; TensorRT needs every "
                        "dimension but the batch to be fixed",
                    )
                )
                continue
            dyn = [k for k, d in enumerate(tt.shape.dim) if k > 0 and not (d.HasField("dim_value") and d.dim_value > 0)]
            if dyn:
                out.append(
                    Violation(
                        "DYNAMIC_DIMS",
                        v.name,
                        f"graph {kind} '{v.name}' has dynamic dimension(s) {dyn}; only "
                        "the batch dimension (0) may be dynamic, re-export with a fixed image size",
                    )
                )
    for n in gr.g.node:
        if n.op_type == "Cast" and _attr(n, "to") not in TRT_DTYPES:
            out.append(
                Violation(
                    "CAST_TO",
                    n.name or n.output[0],
                    f"{_who(n)} casts to {_dtype_name(_attr(n, 'to'))}, a type TensorRT does not have",
                )
            )
    return out


def _topk(gr: _Graph, n: onnx.NodeProto) -> list[Violation]:
    out = []
    who = n.name or n.output[0]
    if len(n.input) > 1 and n.input[1]:
        k = gr.value(n.input[1])
        if k is None:
            out.append(
                Violation(
                    "TOPK_K_LIMIT",
                    who,
                    f"{_who(n)} takes K from the computed tensor '{n.input[1]}'; make K "
                    f"an initializer or Constant so its limit of {TOPK_MAX_K} can be checked",
                )
            )
        elif int(np.max(k)) > TOPK_MAX_K:
            out.append(
                Violation(
                    "TOPK_K_LIMIT",
                    who,
                    f"{_who(n)} has K = {int(np.max(k))}; TensorRT's TopK supports K up to {TOPK_MAX_K}",
                )
            )
    elif _attr(n, "k") is not None and int(_attr(n, "k")) > TOPK_MAX_K:
        out.append(
            Violation(
                "TOPK_K_LIMIT", who, f"{_who(n)} has k = {_attr(n, 'k')}; TensorRT's TopK supports K up to {TOPK_MAX_K}"
            )
        )
    if _attr(n, "sorted", 1) != 1:
        out.append(Violation("TOPK_K_LIMIT", who, f"{_who(n)} has sorted = 0; TensorRT's TopK requires sorted = 1"))
    return out


def _pool(n: onnx.NodeProto) -> list[Violation]:
    out = []
    who = n.name or n.output[0]
    dil = _attr(n, "dilations")
    if dil and any(d != 1 for d in dil):
        out.append(
            Violation(
                "POOL_DILATIONS_INDICES",
                who,
                f"{_who(n)} has dilations {list(dil)}; TensorRT pools only with dilations of 1",
            )
        )
    if n.op_type == "MaxPool" and len(n.output) > 1 and n.output[1]:
        out.append(
            Violation(
                "POOL_DILATIONS_INDICES",
                who,
                f"{_who(n)} asks for the Indices output '{n.output[1]}', which TensorRT does not support",
            )
        )
    return out


def _resize(n: onnx.NodeProto) -> list[Violation]:
    out = []
    who = n.name or n.output[0]
    checks = [
        ("mode", "nearest", RESIZE_MODES),
        ("coordinate_transformation_mode", "half_pixel", RESIZE_CTM),
        ("nearest_mode", "round_prefer_floor", RESIZE_NEAREST),
        ("keep_aspect_ratio_policy", "stretch", ("stretch",)),
    ]
    for name, default, allowed in checks:
        v = _attr(n, name, default)
        if v not in allowed:
            out.append(
                Violation("RESIZE_MODES", who, f"{_who(n)} has {name} '{v}'; TensorRT supports {', '.join(allowed)}")
            )
    if _attr(n, "antialias", 0):
        out.append(
            Violation("RESIZE_MODES", who, f"{_who(n)} has antialias = 1; TensorRT does not support antialiasing")
        )
    if (
        _attr(n, "coordinate_transformation_mode") == "tf_half_pixel_for_nn"
        and _attr(n, "nearest_mode", "round_prefer_floor") != "round_prefer_floor"
    ):
        out.append(
            Violation(
                "RESIZE_MODES",
                who,
                f"{_who(n)} uses tf_half_pixel_for_nn, which TensorRT supports only with "
                "nearest_mode round_prefer_floor",
            )
        )
    return out


def _is_weight(gr: _Graph, n: onnx.NodeProto) -> bool:
    """Whether a Q/DQ node quantizes a weight: its data is constant, or (DQ) comes from a Q of a constant."""
    x = n.input[0]
    if gr.is_const(x):
        return True
    p = gr.producer.get(x)
    return (
        n.op_type == "DequantizeLinear" and p is not None and p.op_type == "QuantizeLinear" and gr.is_const(p.input[0])
    )


def _qdq(gr: _Graph, n: onnx.NodeProto) -> list[Violation]:
    out = []
    who = n.name or n.output[0]
    zp_name = n.input[2] if len(n.input) > 2 and n.input[2] else ""
    if not zp_name:
        if n.op_type == "QuantizeLinear" and _attr(n, "output_dtype", TensorProto.UINT8) != TensorProto.INT8:
            out.append(
                Violation(
                    "QDQ_ZERO_POINT",
                    who,
                    f"{_who(n)} has no zero point, so it quantizes to uint8; TensorRT "
                    "needs int8 with an explicit zero point of 0",
                )
            )
    else:
        zp_type = gr.type_of(zp_name)
        if zp_type not in (TensorProto.INT8, TensorProto.UNDEFINED):
            out.append(
                Violation(
                    "QDQ_ZERO_POINT",
                    who,
                    f"{_who(n)} has a {_dtype_name(zp_type)} zero point '{zp_name}'; "
                    "TensorRT needs int8 (symmetric) quantization",
                )
            )
        zp = gr.value(zp_name, through=("Identity", "Cast"))
        if zp is not None and np.any(zp != 0):
            out.append(
                Violation(
                    "QDQ_ZERO_POINT",
                    who,
                    f"{_who(n)} has a non-zero zero point '{zp_name}'; TensorRT supports "
                    "only symmetric quantization (zero point 0)",
                )
            )
    scale = gr.value(n.input[1]) if len(n.input) > 1 else None
    if scale is not None:
        if not np.all(np.isfinite(scale) & (scale > 0)):
            out.append(
                Violation(
                    "QDQ_SCALE",
                    who,
                    f"{_who(n)} has a scale '{n.input[1]}' that is not positive everywhere; TensorRT needs scales > 0",
                )
            )
        if scale.size > 1 and not _is_weight(gr, n):
            out.append(
                Violation(
                    "QDQ_PER_AXIS",
                    who,
                    f"{_who(n)} quantizes the activation '{n.input[0]}' per axis "
                    f"({scale.size} scales); use one scale per activation tensor, per-axis "
                    "scales only for weights (initializers)",
                )
            )
    return out


def check_trt_onnx(model_or_path: onnx.ModelProto | str | Path) -> list[Violation]:
    """Every TensorRT 10.x ONNX-parser rule the graph breaks (see the module docstring); [] when it parses cleanly."""
    model = _load(model_or_path)
    table = trt_table()
    gr = _Graph(model)
    found = _opset(gr, table) + _uint8(gr) + _ops(gr, table) + _io(gr)
    for n in gr.g.node:
        if n.op_type == "TopK":
            found += _topk(gr, n)
        elif n.op_type in ("MaxPool", "AveragePool"):
            found += _pool(n)
        elif n.op_type == "Resize":
            found += _resize(n)
        elif n.op_type in QDQ_OPS:
            found += _qdq(gr, n)
    return found


def require_trt_onnx(model_or_path: onnx.ModelProto | str | Path, name: str | None = None) -> None:
    """UserError with one sentence per violation when TensorRT's ONNX parser would reject the graph."""
    found = check_trt_onnx(model_or_path)
    if not found:
        return
    what = name or (str(model_or_path) if isinstance(model_or_path, (str, Path)) else "the model")
    src = trt_table()["source"]
    raise UserError(
        f"'{what}' breaks {len(found)} TensorRT ONNX rule(s) (onnx-tensorrt {src['path']} @ {src['commit'][:7]}): "
        + " ".join(f"{v}." for v in found)
    )


def _load(model_or_path: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = Path(model_or_path)
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise UserError(f"'{path}' does not exist; nothing to check against TensorRT's ONNX rules") from None
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise UserError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {e}); re-export it") from None
    if not model.graph.node and not model.opset_import:  # protobuf parses many byte strings as an empty message
        raise UserError(f"'{path}' is not a readable ONNX model (no graph in it); re-export it")
    return model


__all__ = ["Violation", "check_trt_onnx", "require_trt_onnx", "trt_table"]
