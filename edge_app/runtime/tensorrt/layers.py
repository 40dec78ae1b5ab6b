"""What a built plan really runs: the engine inspector's layer information, counted by precision and device.

TensorRT decides each layer's precision and device during the build; the ONNX only says what is allowed. A
plan built with ``ProfilingVerbosity.DETAILED`` keeps, per layer, the formats of its input and output tensors
(``"Format/Datatype": "Row major linear FP16 format"``, ``"Thirty-two wide channel vectorized row major Int8
format"``), which is what trtexec's ``--dumpLayerInfo`` prints. :func:`count_layers` reduces that JSON to
INT8 / FP16 / FP32 / other layer counts and the layers placed on DLA; :func:`format_build` turns a build
record into the lines ``run.py build`` prints.
"""

from __future__ import annotations

import json
import re
from typing import Any

PRECISION_ORDER = ("int8", "fp16", "fp32", "other")
# Datatype words TensorRT writes into a tensor's "Format/Datatype" text, lowest precision first: a layer with
# any Int8 tensor runs an INT8 kernel (a fused DQ+Conv reads Int8 and may write FP16).
_DTYPE_WORDS = (("int8", r"\bint8\b"), ("fp16", r"\b(fp16|half)\b"), ("fp32", r"\b(fp32|float)\b"))


def _tensor_formats(layer: dict[str, Any]) -> list[str]:
    texts = []
    for key in ("Inputs", "Outputs"):
        for t in layer.get(key) or []:
            if isinstance(t, dict):
                texts.append(str(t.get("Format/Datatype", "")))
    return texts


def layer_precision(layer: dict[str, Any] | str) -> str:
    """'int8', 'fp16', 'fp32' or 'other' (only int32/bool tensors, or a name-only record) for one layer."""
    if not isinstance(layer, dict):
        return "other"  # LAYER_NAMES_ONLY verbosity: a bare name, no formats
    texts = " ".join(_tensor_formats(layer)).lower()
    for name, pattern in _DTYPE_WORDS:
        if re.search(pattern, texts):
            return name
    return "other"


def on_dla(layer: dict[str, Any] | str) -> bool:
    """Whether TensorRT placed the layer on a DLA core (a DLA subgraph is one layer whose type names DLA)."""
    if not isinstance(layer, dict):
        return False
    return "dla" in str(layer.get("LayerType", "")).lower() or "dla" in str(layer.get("Device", "")).lower()


def parse_layer_info(text: str) -> list[dict[str, Any] | str]:
    """The ``Layers`` list of the inspector's JSON; ValueError naming what was received when it is not that."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"engine inspector output is not JSON ({e}): {text[:80]!r}") from None
    layers = doc.get("Layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise ValueError(
            f"engine inspector JSON has no 'Layers' list; got keys {sorted(doc) if isinstance(doc, dict) else type(doc).__name__}"
        )
    return layers


def count_layers(text: str) -> dict[str, Any]:
    """{'layers': N, 'int8': .., 'fp16': .., 'fp32': .., 'other': .., 'dla': .., 'detailed': bool} of a plan."""
    layers = parse_layer_info(text)
    counts: dict[str, Any] = {"layers": len(layers), **{p: 0 for p in PRECISION_ORDER}, "dla": 0}
    for layer in layers:
        counts[layer_precision(layer)] += 1
        counts["dla"] += on_dla(layer)
    # Name-only records (a plan built without DETAILED) cannot be counted by precision: say so in the record.
    counts["detailed"] = any(isinstance(layer, dict) for layer in layers)
    return counts


def format_counts(counts: dict[str, Any]) -> str:
    """'48 layers: 40 INT8, 6 FP16, 2 FP32 (0 on DLA)' for a build record's layer counts."""
    if not counts:
        return "layer information not recorded"
    if not counts.get("detailed", True):
        return f"{counts['layers']} layers (precisions unknown: the plan was built without detailed profiling)"
    parts = [f"{counts[p]} {p.upper()}" for p in ("int8", "fp16", "fp32") if counts.get(p)]
    if counts.get("other"):
        parts.append(f"{counts['other']} other (int32/bool)")
    dla = f" ({counts['dla']} on DLA)" if counts.get("dla") or counts.get("dla_requested") else ""
    return f"{counts['layers']} layers: {', '.join(parts) or 'none'}{dla}"


def format_build(record: dict[str, Any]) -> list[str]:
    """The lines ``run.py build`` prints for one build record: state, plan, layers by precision, measured speed."""
    batch = ":".join(str(b) for b in record.get("batch", []))
    state = "up to date, nothing to do" if record.get("cached") else f"built in {record.get('build_s', 0):.1f} s"
    dla = f", DLA {record['dla_core']}" if record.get("dla_core") is not None else ""
    lines = [
        f"{state}: {record.get('plan', '?')} (TensorRT {record.get('trt_version', '?')}, {record.get('gpu', '?')}, "
        f"{record.get('precision', '?')}, batch {batch}{dla})"
    ]
    counts = record.get("layers") or {}
    info = record.get("layer_info")
    lines.append(f"  layers: {format_counts(counts)}" + (f"; layer information: {info}" if info else ""))
    t = record.get("timing") or {}
    if t.get("median_ms") is not None:
        lines.append(
            f"  measured: {t['median_ms']:.3f} ms per call at batch {t['batch']} ({t['ms_per_image']:.3f} ms per image; "
            f"median of {t['runs']} enqueues after {t['warmup']} warm-up, GPU compute only)"
        )
    elif t.get("error"):
        lines.append(f"  measured: not timed ({t['error']})")
    return lines
