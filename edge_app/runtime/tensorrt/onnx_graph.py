"""A read-only view of an ONNX graph for the TensorRT parser rules (``onnx_rules``): producers, consumers,
constant values (through Cast/Identity chains), tensor types; and the :class:`Violation` a rule reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, which node (or graph input/output), and one sentence saying what and why."""

    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} [{self.rule}]"


def _dtype_name(t: int) -> str:
    return TensorProto.DataType.Name(t) if t in TensorProto.DataType.values() else str(t)


class _Graph:
    """Lookups the rules need: element types after shape inference, producers, consumers, constant values."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - an uninferable graph is still checked with the types it declares
            pass
        g = self.g = model.graph
        self.model = model
        self.types: dict[str, int] = {}
        for v in [*g.input, *g.output, *g.value_info]:
            if v.type.HasField("tensor_type"):
                self.types[v.name] = v.type.tensor_type.elem_type
        self.inits = {t.name: t for t in g.initializer}
        for t in g.initializer:
            self.types[t.name] = t.data_type
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.types[n.output[0]] = a.t.data_type
        self.outputs = {o.name for o in g.output}
        self.inputs = [i for i in g.input if i.name not in self.inits]

    def is_const(self, name: str) -> bool:
        """An initializer or a Constant output: what the parser calls weights."""
        p = self.producer.get(name)
        return name in self.inits or (p is not None and p.op_type == "Constant")

    def value(self, name: str, through: tuple[str, ...] = ()) -> np.ndarray | None:
        """The constant value of ``name`` (following ``through`` op types, e.g. Identity/Cast), else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        p = self.producer.get(name)
        if p is None:
            return None
        if p.op_type == "Constant":
            for a in p.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
            return None
        if p.op_type in through and p.input:
            return self.value(p.input[0], through)
        return None

    def type_of(self, name: str) -> int:
        return self.types.get(name, TensorProto.UNDEFINED)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _who(node: onnx.NodeProto) -> str:
    return f"node '{node.name or node.output[0]}' ({node.op_type})"


# ----------------------------------------------------------------------------------------------------- rules
