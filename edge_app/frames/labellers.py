"""Frames -> labels: the labelling modes of the frame loop, and a spec that rebuilds a labeller anywhere.

Each mode is a registered :class:`Labeller` with its own frozen config (see
:mod:`edge_app.frames.modes.base` for the contract): ``classify`` resizes each whole frame to the model
input and keeps the top-k classes; ``tiles`` cuts a grid of overlapping square tiles out of each frame,
runs every tile of every frame of the step in ONE batched engine call, and turns confident non-background
tiles into boxes merged by class-wise NMS. The pipeline, the detection evaluation and ``bench`` all call
these same classes, so the numbers they report come from the same code.

:class:`LabellerSpec` is what crosses a process boundary (a Ray actor, a worker pool): plain, picklable
values; :meth:`LabellerSpec.build` opens the engine where it runs (each node its own fastest backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_app.frames.modes.base import (
    Labeller,
    ModeConfig,
    ModeOption,
    StepTimings,
    engine_task,
    get_mode,
    make_labeller,
    mode_names,
    register_mode,
    resolve_config,
    unregister_mode,
)
from edge_app.frames.modes.classify import ClassifyConfig, ClassifyLabeller
from edge_app.frames.modes.tiles import TileConfig, TileLabeller


@dataclass(frozen=True)
class LabellerSpec:
    """Everything needed to rebuild a labeller in another process; validated (mode and its config) on creation."""

    engine_path: str
    mode: str = "classify"
    mode_config: ModeConfig | None = None  # None: the mode's defaults; resolved on creation
    backend: str = "auto"  # auto: each process picks its fastest (a node's TensorRT plan is its own)
    precision: str = "auto"
    device: str = "auto"
    use: str = "throughput"  # workers annotate files: throughput, not latency
    # TensorRT open options, carried whole so a worker opens exactly what the command line asked for.
    no_build: bool = False  # a missing plan is an error instead of a build
    dla_core: int | None = None
    cuda_graphs: bool = False
    mapped_memory: bool = False  # integrated GPUs: mapped pinned memory instead of copies
    # Where it runs decides these (a Ray actor's share of a node): None = the backend's own default.
    threads: int | None = None
    spinning: bool | None = None  # ONNX Runtime's spinning threads: only when alone on a node

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine_path", str(Path(self.engine_path)))
        object.__setattr__(self, "mode_config", resolve_config(self.mode, self.mode_config))

    def build(self) -> Labeller:
        """Open the engine here and return its labeller, which owns it: ``with spec.build() as lab: ...``."""
        from edge_app.runtime import open_engine

        engine = open_engine(
            self.engine_path,
            self.backend,
            self.precision,
            self.device,
            threads=self.threads,
            no_build=self.no_build,
            dla_core=self.dla_core,
            cuda_graphs=self.cuda_graphs,
            mapped_memory=self.mapped_memory,
            use=self.use,
            **({} if self.spinning is None else {"spinning": self.spinning}),
        )
        try:
            return make_labeller(engine, self.mode, self.mode_config, owns_engine=True)
        except BaseException:
            engine.close()
            raise


__all__ = [
    "ClassifyConfig",
    "ClassifyLabeller",
    "Labeller",
    "LabellerSpec",
    "ModeConfig",
    "ModeOption",
    "StepTimings",
    "TileConfig",
    "TileLabeller",
    "engine_task",
    "get_mode",
    "make_labeller",
    "mode_names",
    "register_mode",
    "resolve_config",
    "unregister_mode",
]
