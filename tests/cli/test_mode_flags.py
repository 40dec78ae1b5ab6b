"""Modes declare their flags: the CLI builds `live`/`annotate`'s mode flags and each mode's config from the
mode registry, so a configurable mode is one file (here: one class in a test)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pytest

from edge_app.cli import build_parser
from edge_app.cli.common import mode_config, mode_configs
from edge_app.errors import FieldError, UserError, shown

# labellers first: it registers classify and tiles, the order --mode lists them in (the registry's order
# is the order modes are imported in).
from edge_app.frames.labellers import Labeller, ModeConfig, ModeOption, TileConfig, register_mode, unregister_mode
from edge_app.frames.modes.detect import DetectConfig


@dataclass(frozen=True)
class StripesConfig(ModeConfig):
    """Settings of a mode that lives in this test only."""

    stripes: int = 4
    conf: float = 0.25  # shares --conf with tiles and detect

    def __post_init__(self) -> None:
        if self.stripes < 1:
            raise FieldError("stripes", shown(self.stripes), "must be at least 1; e.g. 4")

    @classmethod
    def cli_options(cls) -> tuple[ModeOption, ...]:
        return (
            ModeOption("--stripes", "stripes", "horizontal stripes per frame", int, "N"),
            ModeOption("--conf", "conf", "minimum score of a stripe", float, "SCORE"),
        )


class StripesLabeller(Labeller):
    """Horizontal stripes -> one label each (a test mode)."""

    config_type = StripesConfig

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def decode(self, outputs: dict[str, np.ndarray], context: Any) -> list[list]:
        raise NotImplementedError


@pytest.fixture()
def stripes() -> Iterator[None]:
    register_mode("stripes")(StripesLabeller)
    try:
        yield
    finally:
        unregister_mode("stripes")


def parse(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["live", "--engine", "engines/x", *args])


def live_help() -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices["live"].format_help().split())


def test_a_mode_registered_anywhere_gets_its_flag_and_its_config(stripes: None) -> None:
    text = live_help()
    assert "--stripes N stripes mode: horizontal stripes per frame (default 4)" in text
    assert "stripes: horizontal stripes -> one label each" in text  # --mode's help, from the class docstring
    a = parse("--mode", "stripes", "--stripes", "7")
    assert mode_config(a) == StripesConfig(stripes=7)


def test_a_shared_flag_is_one_flag_that_each_mode_takes(stripes: None) -> None:
    text = live_help()
    assert text.count("[--conf SCORE]") == 1  # one flag in the usage line
    assert "tiles mode: minimum probability of a tile that makes a box (default 0.7)" in text
    assert "detect mode: minimum score of a box (default: the engine's own threshold)" in text
    assert "stripes mode: minimum score of a stripe (default 0.25)" in text
    configs = mode_configs(parse("--conf", "0.5"))
    assert configs["stripes"].conf == configs["tiles"].conf == configs["detect"].conf == 0.5
    defaults = mode_configs(parse())  # not given: each mode's own default, not one shared value
    assert (defaults["stripes"].conf, defaults["tiles"].conf, defaults["detect"].conf) == (0.25, 0.7, None)


def test_a_bad_value_names_the_flag_whichever_mode_runs(stripes: None) -> None:
    with pytest.raises(UserError, match=r"^--stripes 0 must be at least 1; e.g. 4$"):
        mode_configs(parse("--mode", "classify", "--stripes", "0"))
    with pytest.raises(UserError, match=r"^--stripes 'x' is not a whole number; e.g. 4$"):
        mode_configs(parse("--stripes", "x"))


def test_built_in_modes_flags_and_defaults_come_from_their_configs() -> None:
    text = live_help()
    for flag, default in (
        ("--top-k", "3"),
        ("--tiles", "3x3"),
        ("--scales", "0.75,0.6,0.5"),
        ("--iou", "0.2"),
        ("--max-det", "100"),
    ):
        assert flag in text and f"(default {default})" in text
    configs = mode_configs(parse())
    assert configs["tiles"] == TileConfig() and configs["detect"] == DetectConfig()
    got = mode_configs(parse("--tiles", "4x2", "--scales", "1,0.5", "--iou", "0.3", "--max-det", "9", "--top-k", "1"))
    assert (got["tiles"].grid, got["tiles"].scales, got["tiles"].iou) == ((4, 2), (1.0, 0.5), 0.3)
    assert (got["detect"].max_det, got["classify"].top_k) == (9, 1)


def test_two_modes_reading_one_flag_differently_is_a_programming_error(stripes: None) -> None:
    @dataclass(frozen=True)
    class OddConfig(ModeConfig):
        conf: str = "high"

        @classmethod
        def cli_options(cls) -> tuple[ModeOption, ...]:
            return (ModeOption("--conf", "conf", "a word", str),)

    class Odd(StripesLabeller):
        config_type = OddConfig

    register_mode("odd")(Odd)
    try:
        with pytest.raises(TypeError, match="both declare --conf but read it differently"):
            build_parser()
    finally:
        unregister_mode("odd")


def test_an_option_must_name_a_field_of_its_config() -> None:
    @dataclass(frozen=True)
    class TypoConfig(ModeConfig):
        stripes: int = 4

        @classmethod
        def cli_options(cls) -> tuple[ModeOption, ...]:
            return (ModeOption("--stripes", "stripe", "typo in the field", int),)

    class Typo(StripesLabeller):
        config_type = TypoConfig

    with pytest.raises(TypeError, match="sets 'stripe', which is not a field of TypoConfig"):
        register_mode("typo")(Typo)
    unregister_mode("typo")
