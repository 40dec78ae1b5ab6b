"""One descriptor per backend, found by looking at the runtime package: a backend is one file.

Each backend module (``tensorrt.py``, ``onnxruntime.py``, ``torch.py``, ...) ends with a module-level
``BACKEND = Backend(...)``: its name, the devices it runs on, how to tell whether it can run here (and
why not), how to install it, the variants ``bench`` can time, its place in the automatic choice, and how
to open an engine folder. ``open_engine``, ``bench``, the CLI's choices, ``doctor`` and the cross-backend
tests all iterate over :func:`backends`; nothing else in the tool names a backend. Modules import their
heavy dependencies inside these callables, so finding the descriptors costs milliseconds.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

from edge_app.errors import UserError

if TYPE_CHECKING:
    from edge_app.engine_dir import EngineDir, EngineMeta
    from edge_app.runtime.base import Engine

DEVICES = ("cuda", "cpu")  # the automatic choice tries every GPU backend before any CPU backend
USES = ("latency", "throughput")


@dataclass(frozen=True)
class OpenOptions:
    """What the caller asks of a backend; ``device`` is resolved to 'cpu' or 'cuda' before ``open``."""

    precision: str = "auto"  # auto: the fastest precision whose model file exists
    device: str = "auto"
    threads: int | None = None  # CPU threads (None: one per core)
    no_build: bool = False  # TensorRT: a missing plan is an error instead of a minutes-long build
    spinning: bool = True  # ONNX Runtime: spin after each call (lower latency; benchmarks turn it off)
    dla_core: int | None = None  # TensorRT on Jetson: run on this DLA core
    cuda_graphs: bool = False  # TensorRT: replay the enqueue as a CUDA graph
    use: str = "latency"  # latency (live) or throughput (annotate, bench): a hint backends may take
    # The largest batch the caller will pass (TensorRT picks, or builds, a plan whose profile holds it).
    # None: batch 1 (live video).
    batch: int | None = None


@dataclass(frozen=True)
class Variant:
    """One backend x precision x device that ``bench`` can time, and the model file it needs."""

    key: str  # short name in tables and bench.json, e.g. "ort-int8-cpu"
    backend: str
    precision: str
    device: str
    file: str = ""  # file of the engine folder it runs ("" when it needs none beyond meta.json)
    accuracy_key: str = ""  # its row in meta.json's accuracy section (fp32, fp16, int8.trt, int8.cpu)
    hint: str = ""  # how to make ``file`` when it is missing


@dataclass(frozen=True)
class Backend:
    """A backend as the rest of the tool sees it."""

    name: str
    devices: tuple[str, ...]
    priority: int  # lower is tried first by the automatic choice, among the backends of one device
    install_hint: str  # one clause: how to get it
    available: Callable[[str], tuple[bool, str]]  # device -> (ok, why: the version when ok, the reason when not)
    open: Callable[[EngineDir, EngineMeta, OpenOptions], Engine]
    variants: Callable[[EngineDir, str], list[Variant]] = field(default=lambda ed, device: [])


@lru_cache(maxsize=1)
def backends() -> tuple[Backend, ...]:
    """Every backend module's descriptor, in automatic-choice order."""
    import edge_app.runtime as pkg

    found = []
    for mod in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{mod.name}")
        desc = getattr(module, "BACKEND", None)
        if isinstance(desc, Backend):
            found.append(desc)
    return tuple(sorted(found, key=lambda b: (b.priority, b.name)))


def backend_names() -> tuple[str, ...]:
    """Names of every backend, in automatic-choice order."""
    return tuple(b.name for b in backends())


def get_backend(name: str) -> Backend:
    """The descriptor called ``name``; a UserError listing the known names otherwise."""
    for b in backends():
        if b.name == name:
            return b
    raise UserError(f"backend '{name}' is unknown; choose auto or one of {', '.join(backend_names())}")


def has_variant_file(ed: EngineDir, v: Variant) -> bool:
    """Whether the engine folder holds the file ``v`` runs."""
    return not v.file or (ed.path / v.file).is_file()
