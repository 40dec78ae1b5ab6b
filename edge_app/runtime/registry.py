"""One descriptor per backend, found by looking at the runtime package: a backend is one file.

Each backend module (``tensorrt/``, ``onnxruntime.py``, ``torch.py``, ...) ends with a module-level
``BACKEND = Backend(...)``: its name, the devices it runs on, how to tell whether it can run here (and
why not), how to install it and how to fix what is missing on this machine, the variants ``bench`` can
time, its place in the automatic choice, how to open an engine folder, which distributions' versions the
reports show, how many CPU threads it runs with, and what a report should say about how it was timed.
``open_engine``, ``bench`` and its reports, the CLI's choices, ``doctor`` and the cross-backend tests all
iterate over :func:`backends`; nothing else in the tool names a backend. Modules import their heavy
dependencies inside these callables, so finding the descriptors costs milliseconds.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edge_app.errors import UserError

if TYPE_CHECKING:
    from edge_app.engine_dir import EngineDir, EngineMeta
    from edge_app.runtime.base import Engine

DEVICES = ("cuda", "cpu")  # the automatic choice tries every GPU backend before any CPU backend
USES = ("latency", "throughput")
# L4T (JetPack's Linux) writes this file; desktop Linux never has it. pip has no GPU builds for Jetson, so a
# fix hint there points at what JetPack brings instead.
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class Host:
    """What a backend's fix hint needs to know about this machine (a parameter, so tests can be any machine)."""

    jetson: bool = False  # JetPack: GPU runtimes come from NVIDIA's JetPack, not from pip

    @classmethod
    def detect(cls, tegra_release: Path = TEGRA_RELEASE) -> Host:
        """This machine: a Jetson when ``tegra_release`` exists."""
        return cls(jetson=tegra_release.exists())


def installed_version(dists: tuple[str, ...]) -> str | None:
    """The version of the first of ``dists`` that is installed (importlib.metadata), or None."""
    for d in dists:
        try:
            return importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cpu_threads(asked: int | None) -> int | None:
    """The thread setting of runtimes that take an intra-op thread count: the one asked for, else one per core."""
    return asked or os.cpu_count()


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
    # TensorRT on integrated GPUs (Jetson): bind mapped pinned host memory instead of copying (jetson-inference
    # does); off until measured on a board, and ignored with a note on a discrete GPU.
    mapped_memory: bool = False


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
    """A backend as the rest of the tool sees it.

    The fields after ``variants`` have defaults so a descriptor written before them keeps working; each
    default is the plain answer (the distribution named like the backend, no CPU thread setting, no notes,
    the install hint as the fix).
    """

    name: str
    devices: tuple[str, ...]
    priority: int  # lower is tried first by the automatic choice, among the backends of one device
    install_hint: str  # one clause: how to get it (open_engine's and bench's errors end with it)
    available: Callable[[str], tuple[bool, str]]  # device -> (ok, why: the version when ok, the reason when not)
    open: Callable[[EngineDir, EngineMeta, OpenOptions], Engine]
    variants: Callable[[EngineDir, str], list[Variant]] = field(default=lambda ed, device: [])
    # Distributions whose installed version reports show, first installed wins (a runtime ships under several
    # names: onnxruntime / onnxruntime-gpu). Empty: the distribution named like the backend.
    versions: tuple[str, ...] = ()
    # The thread setting: asked (OpenOptions.threads, None when not given) -> the CPU threads it runs with, for
    # reports (numbers on 2 cores depend on it). None: the backend takes no thread count (a GPU runtime).
    threads: Callable[[int | None], int | None] | None = None
    # Sentences a report prints below its table when this backend was measured (how it was timed).
    notes: tuple[str, ...] = ()
    # (device, why it is not available, host) -> one clause: the fix for *this* machine, naming only what is
    # missing (no `pip install` of what is installed, no pip GPU build on a Jetson). None: ``install_hint``.
    fix_hint: Callable[[str, str, Host], str] | None = None

    def fix(self, device: str, why: str, host: Host) -> str:
        """What to do so this backend runs on ``device`` here, given why it does not (``available``'s reason)."""
        return self.fix_hint(device, why, host) if self.fix_hint is not None else self.install_hint

    def version(self) -> str | None:
        """The installed version of the backend's runtime (from ``versions``), or None when none is installed."""
        return installed_version(self.versions or (self.name,))


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
