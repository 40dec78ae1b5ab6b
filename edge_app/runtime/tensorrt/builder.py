"""Build TensorRT plans from the engine folder's ONNX files (TensorRT 10.x and 11.x, strongly typed).

A chain of small steps, like Polygraphy's loaders: parse the ONNX into a network -> make a builder config
(profile, workspace, timing cache, DLA) -> build a serialized plan. Every function takes the ``tensorrt``
module as ``trt`` so the contract tests can hand in the real bindings with test doubles for the objects
that need a GPU.

Precision comes from the ONNX itself (strongly typed network): ``model.fp16.onnx`` holds FP16 weights and
casts, ``model.int8.trt.onnx`` holds Q/DQ nodes. So one code path serves TensorRT 10.x (where weak typing
still exists) and 11.x (where it is gone); no BuilderFlag.FP16 / INT8 and no calibrator.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from edge_app.engine_dir import PRECISIONS, EngineDir
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_bytes
from edge_app.runtime.tensorrt.support import check_dla_supported, trt_major

try:  # the timing cache is shared by concurrent builds; TensorRT runs on Linux and Windows, fcntl is POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


# TensorRT's default builder optimisation level (0 = fastest build, 5 = most tactics tried).
DEFAULT_OPT_LEVEL = 3


class BuildError(RuntimeError):
    """TensorRT could not parse the ONNX or build the plan; the message carries TensorRT's own errors."""


# ------------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class BatchRange:
    """The optimisation profile's batch sizes: TensorRT tunes kernels for ``opt`` and accepts min..max."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise UserError(
                f"batch range {self.min}:{self.opt}:{self.max} is invalid; use MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:8:32"
            )

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """'1:8:32' -> BatchRange(1, 8, 32); a single 'N' means N:N:N."""
        parts = text.split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) == 1:
            nums = nums * 3
        if len(nums) != 3:
            raise UserError(f"--batch '{text}' is not MIN:OPT:MAX; write e.g. 1:8:32 (or one number for a fixed batch)")
        return cls(*nums)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
class BuildSpec:
    """What to build. The plan key is made from this, the TensorRT version, the GPU and the ONNX hash."""

    precision: str = "fp16"
    batch: BatchRange = BatchRange()
    dla_core: int | None = None  # Jetson DLA core; layers DLA cannot run fall back to the GPU
    # 2 GiB lets TensorRT try the fast tactics for ResNets at batch 32 and still fits a Jetson Orin Nano.
    workspace_gib: float = 2.0
    opt_level: int = DEFAULT_OPT_LEVEL  # builder optimisation level 0-5: more tactics, longer build, maybe faster plan

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.dla_core is not None and self.dla_core < 0:
            raise UserError(
                f"--dla {self.dla_core} is not a DLA core number; use 0 or 1 (Jetson AGX/NX) or leave it out"
            )
        if self.dla_core is not None and self.precision == "fp32":
            # DLA runs FP16 and INT8 only: with GPU fallback every fp32 layer would silently move to the GPU.
            raise UserError(
                f"--dla {self.dla_core} runs FP16 and INT8 only, not fp32; build with --precision fp16 or int8, "
                "or leave --dla out"
            )
        if self.dla_core is not None and self.batch.min != self.batch.max:
            # DLA runs only static shapes: an optimisation profile with a range is not DLA-compatible.
            raise UserError(
                f"--dla {self.dla_core} needs a fixed batch (DLA runs static shapes only), not the range {self.batch}; "
                f"give one number, e.g. --batch {self.batch.opt}"
            )
        if not self.workspace_gib > 0:
            raise UserError(f"--workspace {self.workspace_gib} must be more than 0 GiB, e.g. 2")
        if not 0 <= self.opt_level <= 5:
            raise UserError(
                f"--opt-level {self.opt_level} is not a TensorRT builder optimisation level; use 0 to 5 (default 3)"
            )

    def holds(self, n: int) -> bool:
        """Whether the profile accepts batch ``n``."""
        return self.batch.min <= n <= self.batch.max


def onnx_for(ed: EngineDir, precision: str) -> Path:
    """The ONNX file TensorRT builds ``precision`` from; UserError naming the step that makes it when missing."""
    path = ed.onnx_path(precision, "trt")
    if not path.is_file():
        made_by = {
            "fp16": "it casts model.onnx to strongly typed FP16",
            "int8": "it calibrates and writes symmetric Q/DQ for TensorRT",
        }.get(precision, "")
        raise UserError(
            f"'{path}' does not exist; run `python run.py calibrate {ed.path}` first ({made_by}), "
            "or build --precision fp32"
        )
    return path


# ------------------------------------------------------------------------------------------------ TensorRT glue
def make_logger(trt: ModuleType, verbose: bool = False) -> Any:
    """A ``trt.ILogger`` that forwards to Python logging and keeps error lines for the BuildError message."""
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.INFO,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(msg)
            if level >= logging.WARNING or verbose:
                logging.getLogger("tensorrt").log(level if level >= logging.WARNING else logging.WARNING, msg)

    return _Logger()


def make_progress(trt: ModuleType, emit: Callable[[str], None]) -> Any:
    """A ``trt.IProgressMonitor`` printing the builder's top phases (a ResNet-50 build takes minutes)."""

    class _Progress(trt.IProgressMonitor):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}
            self.t0 = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            d = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = d
            if d <= 1:  # deeper phases are per-tactic and would flood the terminal
                emit(f"[build {time.perf_counter() - self.t0:6.1f}s] {'  ' * d}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.depth.pop(phase_name, None)

    return _Progress()


def network_flags(trt: ModuleType) -> int:
    """Creation flags for a strongly typed network on either major version."""
    if trt_major(trt) == 10:
        # TensorRT 10.x: weak typing still exists (deprecated since 10.12) and EXPLICIT_BATCH is a no-op;
        # ask for strong typing so the ONNX's own types decide precision, exactly as 11.x does.
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # TensorRT 11.x: every network is strongly typed and explicit batch; the flag would be ignored.
    return 0


def parse_onnx(trt: ModuleType, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser) from an ONNX file; BuildError with every parser error in full on failure."""
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    # ``path`` lets the parser find external weight files next to the model (models > 2 GB).
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(
            f"TensorRT could not parse '{onnx_path}' ({len(errors)} error(s)):\n  "
            + "\n  ".join(errors or logger.errors)
        )
    return network, parser


def make_config(
    trt: ModuleType, builder: Any, network: Any, spec: BuildSpec, timing_cache: bytes, progress: Any | None = None
) -> tuple[Any, Any]:
    """(builder config, timing cache): workspace, batch profile for every input, timing cache, DLA."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gib * (1 << 30)))
    config.builder_optimization_level = spec.opt_level
    # DETAILED keeps per-layer precision, formats and tactics in the plan, so the engine inspector can write
    # the layer information (trtexec --profilingVerbosity=detailed --dumpLayerInfo) that the build record counts.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    b = spec.batch
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise BuildError(
                f"input '{tensor.name}' has dynamic non-batch dimensions {shape}; re-export with a fixed image size"
            )
        rest = tuple(shape[1:])
        profile.set_shape(tensor.name, trt.Dims((b.min, *rest)), trt.Dims((b.opt, *rest)), trt.Dims((b.max, *rest)))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, False):
        # A cache from another GPU or TensorRT version is rejected; start a fresh one instead of failing.
        log.warning("timing cache does not match this GPU/TensorRT; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    if spec.dla_core is not None:
        check_dla_supported(trt.__version__, spec.dla_core)
        cores = int(builder.num_DLA_cores)
        if cores == 0:
            raise UserError(
                f"--dla {spec.dla_core}: this machine has no DLA (only Jetson Xavier/Orin boards do); leave --dla out"
            )
        if spec.dla_core >= cores:
            raise UserError(
                f"--dla {spec.dla_core}: this machine has {cores} DLA core(s); use --dla 0"
                + (" or 1" if cores > 1 else "")
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU instead of failing
    if progress is not None:
        config.progress_monitor = progress
    return config, cache


@contextlib.contextmanager
def file_lock(path: Path):  # noqa: ANN201 - a context manager
    """An exclusive advisory lock on ``path`` (created if missing) for the duration of the block.

    A separate lock file, not the cache itself: the cache is replaced by rename, which would leave a lock
    on the old inode. Where fcntl does not exist (Windows) the block runs unlocked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def save_timing_cache(config: Any, cache_path: Path) -> bytes:
    """Write the config's timing cache to ``cache_path``, combined with what is there now; returns the bytes.

    Two builds (two precisions, two engines in parallel, `build` while `live` builds) each start from the
    cache as it was and would otherwise overwrite each other's new timings. As Polygraphy's
    ``save_timing_cache`` does: under a file lock, load the cache on disk, combine it into ours, serialize.
    """
    cache = config.get_timing_cache()
    with file_lock(cache_path.with_name(cache_path.name + ".lock")):
        if cache_path.is_file():
            try:
                prev = config.create_timing_cache(cache_path.read_bytes())
                if prev is not None and not cache.combine(prev, False):
                    log.warning("timing cache %s is from another GPU/TensorRT; replacing it", cache_path)
            except Exception as e:  # noqa: BLE001 - a damaged cache file must not lose a finished build
                log.warning("could not merge timing cache %s (%s); replacing it", cache_path, e)
        data = bytes(cache.serialize())
        atomic_write_bytes(cache_path, data)
    return data


def build_plan(
    trt: ModuleType,
    onnx_path: Path,
    spec: BuildSpec,
    timing_cache: bytes,
    emit: Callable[[str], None] = print,
    verbose: bool = False,
    cache_path: Path | None = None,
) -> tuple[bytes, bytes]:
    """(serialized plan, updated timing cache) for ``onnx_path``; raises BuildError when TensorRT fails.

    With ``cache_path`` the updated timing cache is also merged into that file (see ``save_timing_cache``).
    """
    logger = make_logger(trt, verbose)
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(trt, builder, logger, onnx_path)  # the parser must outlive the build
    progress = make_progress(trt, emit)  # held here: TensorRT keeps only a raw pointer to it during the build
    config, _cache = make_config(trt, builder, network, spec, timing_cache, progress)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        details = "\n  ".join(logger.errors) or "(no error text from TensorRT; run with -v for its log)"
        raise BuildError(f"TensorRT failed to build a {spec.precision} plan from '{onnx_path.name}':\n  {details}")
    if cache_path is not None:
        return bytes(plan), save_timing_cache(config, cache_path)
    return bytes(plan), bytes(config.get_timing_cache().serialize())
