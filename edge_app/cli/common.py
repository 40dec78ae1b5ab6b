"""Flags and helpers shared by the commands: number parsers, the engine options, the frame-loop options.

The library validates each config once and names the *field* in its errors (:class:`FieldError`); the
helpers here know which flag sets which field and re-word those errors, so the user reads the flag they
typed and a Ray worker or a Python caller never sees one.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from edge_app.errors import UserError

if TYPE_CHECKING:
    from edge_app.frames.modes.base import ModeConfig, ModeOption
    from edge_app.frames.pipeline import PipelineConfig
    from edge_app.runtime.base import Engine


def positive_int(s: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def positive_float(s: str) -> float:
    """argparse type: a number greater than 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {s}")
    return v


def floats3(flag: str) -> Callable[[str], tuple[float, float, float]]:
    """argparse type for ``flag``: three comma-separated numbers (an R,G,B triple)."""

    def parse(s: str) -> tuple[float, float, float]:
        try:
            v = tuple(float(x) for x in s.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{s}' is not three comma-separated numbers, e.g. 0.485,0.456,0.406"
            ) from None
        if len(v) != 3:
            raise argparse.ArgumentTypeError(f"{flag} needs three values (R,G,B), got {len(v)}")
        return v  # type: ignore[return-value]

    return parse


# ------------------------------------------------------------------------------------------------ engine
def backend_args(p: argparse.ArgumentParser) -> None:
    """--backend / --precision; the choices come from the backend registry and the engine folder's precisions."""
    from edge_app.engine_dir import PRECISIONS
    from edge_app.runtime import backend_names

    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *backend_names()),
        help="inference backend (default: fastest available)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", *PRECISIONS),
        help="model precision (default: fastest available)",
    )


def engine_args(p: argparse.ArgumentParser) -> None:
    """--backend / --precision / --device / --no-build / --dla / --cuda-graph, for every command that runs an engine."""
    backend_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-build", action="store_true", help="with TensorRT: fail instead of building a missing plan")
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="with TensorRT on Jetson: run on DLA core N (a plan built with build --dla N)",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="with TensorRT: replay each call as a CUDA graph (less launch overhead at batch 1)",
    )
    p.add_argument(
        "--mapped-memory",
        action="store_true",
        help="with TensorRT on a Jetson: bind mapped pinned memory instead of copying (integrated GPUs only)",
    )


def open_from_args(a: argparse.Namespace, use: str = "latency") -> Engine:
    """``open_engine`` with the options of :func:`engine_args` (and ``--batch`` as the expected batch size)."""
    from edge_app.runtime import open_engine

    if a.dla is not None and a.dla < 0:
        raise UserError(f"--dla {a.dla} is not a DLA core; Jetson AGX Orin/Xavier have cores 0 and 1")
    batch = getattr(a, "batch", 1)
    return open_engine(
        a.engine,
        a.backend,
        a.precision,
        a.device,
        no_build=a.no_build,
        dla_core=a.dla,
        cuda_graphs=a.cuda_graph,
        mapped_memory=getattr(a, "mapped_memory", False),
        use=use,
        batch=batch if isinstance(batch, int) and batch >= 1 else None,  # a bad --batch is worded by the loop config
    )


# ------------------------------------------------------------------------------------------------ frame loop
# PipelineConfig field -> the flag that sets it. The modes' own flags come from their configs' cli_options().
PIPELINE_FLAGS = {"mode": "--mode", "batch": "--batch", "max_frames": "--max-frames", "duration": "--duration"}


@dataclass(frozen=True)
class LoopFlag:
    """One mode flag on the command line and every mode that takes it (a flag two modes share is one flag)."""

    option: ModeOption  # the first declaration; the others read the text the same way
    modes: tuple[tuple[str, type[ModeConfig], ModeOption], ...]  # (mode name, its config type, its declaration)


def mode_flags(
    names: Sequence[str] | None = None, extra: Mapping[str, Sequence[ModeOption]] | None = None
) -> dict[str, LoopFlag]:
    """Flag -> :class:`LoopFlag` from the ``cli_options()`` of each mode in ``names`` (None: every registered
    one, in registry order) and the ``extra`` options a command adds for a mode (mode name -> options)."""
    from edge_app.frames.labellers import get_mode, mode_names

    flags: dict[str, LoopFlag] = {}
    for name in mode_names() if names is None else names:
        ct = get_mode(name).config_type
        for opt in (*ct.cli_options(), *(extra or {}).get(name, ())):
            have = flags.get(opt.flag)
            if have is None:
                flags[opt.flag] = LoopFlag(opt, ((name, ct, opt),))
                continue
            if have.option.type is not opt.type:
                first = have.modes[0][0]
                raise TypeError(f"modes '{first}' and '{name}' both declare {opt.flag} but read it differently")
            flags[opt.flag] = LoopFlag(have.option, (*have.modes, (name, ct, opt)))
    return flags


def loop_flag_names() -> dict[str, str]:
    """Every frame-loop field -> the flag that sets it (the loop's own, then every mode's), for FieldError."""
    names = dict(PIPELINE_FLAGS)
    for flag in mode_flags().values():
        for _, _, opt in flag.modes:
            names.setdefault(opt.field, opt.flag)
    return names


@contextlib.contextmanager
def loop_flags() -> Iterator[None]:
    """Turn the library's field-named errors (FieldError) into the same sentence naming the flag."""
    from edge_app.errors import FieldError

    try:
        yield
    except FieldError as e:
        raise e.reworded(loop_flag_names()) from None


def loop_args(p: argparse.ArgumentParser, batch: int) -> None:
    """Options shared by `live` and `annotate`: the mode and every mode's flags, batching, overlay, engine."""
    from edge_app.frames.labellers import get_mode, mode_names

    # Each mode's help is the first line of its class docstring, so a new mode file describes itself here.
    first = [((get_mode(n).__doc__ or "").strip().splitlines() or [""])[0].rstrip(".") for n in mode_names()]
    modes = "; ".join(f"{n}: {d[:1].lower()}{d[1:]}" for n, d in zip(mode_names(), first))
    p.add_argument("--mode", default="classify", choices=mode_names(), help=f"{modes} (default classify)")
    _add_mode_flags(p, mode_flags())
    p.add_argument("--batch", type=int, default=batch, help=f"frames per engine call (default {batch})")
    p.add_argument(
        "--max-frames", type=int, default=0, help="stop after reading this many frames (default 0: no limit)"
    )
    p.add_argument("--no-labels", action="store_true", help="do not draw whole-frame labels")
    p.add_argument("--no-boxes", action="store_true", help="do not draw boxes")
    p.add_argument("--no-hud", action="store_true", help="do not draw the latency HUD")
    engine_args(p)


def _read_flag(flag: LoopFlag, text: str) -> Any:
    """The value of ``flag`` typed as ``text``, or a UserError naming the flag and the expected form."""
    opt = flag.option
    try:
        return opt.type(text)
    except (TypeError, ValueError) as e:
        kind = {int: "a whole number", float: "a number"}.get(opt.type)  # type: ignore[call-overload]
        if kind is None:
            raise UserError(f"{opt.flag}: {e}") from None
        name, ct, _ = flag.modes[0]
        default = opt.default_in(ct)
        example = f"; e.g. {opt.show(default)}" if default is not None else ""
        raise UserError(f"{opt.flag} '{text}' is not {kind}{example}") from None


def _add_mode_flags(p: argparse.ArgumentParser, flags: Mapping[str, LoopFlag]) -> None:
    """One argparse option per flag; its help names each mode that takes it, with that mode's default."""
    for flag in flags.values():
        helps = "; ".join(
            f"{name} mode: {opt.help} (default{':' if opt.default_text else ''} {opt.describe_default(ct)})"
            for name, ct, opt in flag.modes
        )
        # The text is kept as typed (None: not given) and read per mode by _configs(), so a flag can fall back
        # to each mode's own default and a bad value is worded like every other loop error.
        p.add_argument(flag.option.flag, dest=flag.option.dest, default=None, metavar=flag.option.metavar, help=helps)


def _configs(a: argparse.Namespace, flags: Mapping[str, LoopFlag], names: Sequence[str]) -> dict[str, ModeConfig]:
    """The config of each mode in ``names`` from the ``flags`` given in ``a`` (not given: the mode's default)."""
    from edge_app.errors import FieldError
    from edge_app.frames.labellers import get_mode

    given: dict[str, dict[str, Any]] = {name: {} for name in names}
    for flag in flags.values():
        text = getattr(a, flag.option.dest, None)
        if text is None:
            continue
        value = _read_flag(flag, text)
        for name, _, opt in flag.modes:
            given[name][opt.field] = value
    configs: dict[str, ModeConfig] = {}
    for name, values in given.items():
        ct = get_mode(name).config_type
        try:
            configs[name] = ct(**values)
        except FieldError as e:
            # This mode's own flags, not a field-wide map: two modes may set one field from different flags.
            raise e.reworded({opt.field: f for f, lf in flags.items() for n, _, opt in lf.modes if n == name}) from None
    return configs


def mode_configs(a: argparse.Namespace) -> dict[str, ModeConfig]:
    """Every registered mode's settings from its flags (a flag not given: that mode's default).

    All are built, so a bad value is an error whichever mode runs (a typo in --conf is a typo in classify
    mode too). A FieldError of a mode's config names that mode's flag; call inside :func:`loop_flags`.
    """
    from edge_app.frames.labellers import mode_names

    return _configs(a, mode_flags(), mode_names())


def mode_args(p: argparse.ArgumentParser, mode: str, extra: Sequence[ModeOption] = ()) -> None:
    """The flags of one mode's settings (its ``cli_options()`` and ``extra``), for a command that runs only it."""
    _add_mode_flags(p, mode_flags([mode], {mode: extra}))


def config_for_mode(a: argparse.Namespace, mode: str, extra: Sequence[ModeOption] = ()) -> ModeConfig:
    """``mode``'s settings from the flags :func:`mode_args` added (FieldErrors name the flag)."""
    return _configs(a, mode_flags([mode], {mode: extra}), [mode])[mode]


def mode_config(a: argparse.Namespace) -> ModeConfig | None:
    """The settings of the mode ``--mode`` names, from its flags (every mode's flags are checked)."""
    return mode_configs(a).get(a.mode)


def loop_config(a: argparse.Namespace, **kw: Any) -> PipelineConfig:
    """PipelineConfig from the shared options; validated by the library (call inside :func:`loop_flags`).

    Every mode's flags are checked here too, so a typo in one fails before an engine or a source opens.
    """
    from edge_app.frames.overlay import OverlayConfig
    from edge_app.frames.pipeline import PipelineConfig

    mode_configs(a)
    overlay = OverlayConfig(labels=not a.no_labels, boxes=not a.no_boxes, hud=not a.no_hud)
    return PipelineConfig(batch=a.batch, max_frames=a.max_frames, overlay=overlay, **kw)
