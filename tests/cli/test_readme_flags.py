"""README and ``--help`` agree: every command README runs exists, and every flag it gives one is in that
command's ``--help`` (renaming a flag without README fails here).

What counts as README giving a command a flag:
- ``python run.py CMD [SUB] ... --flag`` in code blocks and inline code (up to a ``#`` comment, ``&&``, ``;``);
- inline code that starts with a command name, as the Commands table's first column (```bench engines/NAME
  [--batch 1,8,32]```) and prose (```train --task detect```);
- sentences "`a`, `b` and `c` share `--x`, `--y` ..." (every named command must have every flag).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from edge_app.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SHARE = re.compile(r"((?:`[a-z]+`(?:,\s*|\s+and\s+))+`[a-z]+`)\s+share\s+(.*?)\.(?:\s|$)", re.S)

# README flags that the commands do not have (yet): (command, flag) -> why. README is being fixed; each entry
# must still be a real mismatch (a stale entry fails too), so this list only shrinks.
KNOWN_MISMATCHES: dict[tuple[str, str], str] = {}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """'train' -> its parser, 'eval heldout' -> its parser, ... for every (sub-)command."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[prefix + name] = sub
                out.update(_commands(sub, prefix + name + " "))
    return out


COMMANDS = _commands(build_parser())


def _command_of(words: list[str]) -> str | None:
    """The longest known (sub-)command the words start with; None when the first word is no command."""
    found = None
    for n in range(1, len(words) + 1):
        name = " ".join(words[:n])
        if name in COMMANDS:
            found = name
        elif found:
            break
    return found


def _cut(segment: str) -> str:
    """A shell segment up to its comment or the next command."""
    return re.split(r"\s#|&&|;|\s\|\s", segment, maxsplit=1)[0]


def readme_uses(text: str) -> list[tuple[str, str, str]]:
    """(command as README writes it, flag or '', where) for every command README runs and flag it gives one."""
    uses: list[tuple[str, str, str]] = []
    fenced = re.split(r"^```.*$", text, flags=re.M)
    for i, part in enumerate(fenced):
        code_lines = part.splitlines() if i % 2 else [ln for ln in part.splitlines() if ln.startswith("    ")]
        segments = [seg for ln in code_lines for seg in ln.split("python run.py ")[1:]]
        if not i % 2:
            for span in re.findall(r"`([^`]+)`", part):
                span = " ".join(span.split())
                if "python run.py " in span:
                    segments += span.split("python run.py ")[1:]
                elif _command_of(span.split()):
                    segments.append(span)
        for seg in segments:
            seg = _cut(seg)
            words = seg.split()
            cmd = _command_of(words)
            if cmd is None:
                if words and not words[0].startswith("<"):
                    uses.append((words[0], "", seg))  # an unknown command
                continue
            uses.append((cmd, "", seg))
            uses += [(cmd, f, seg) for f in FLAG.findall(seg)]
    prose = " ".join(re.split(r"^```.*$", text, flags=re.M)[0::2])
    for cmds, flags in SHARE.findall(prose):
        for cmd in re.findall(r"`([a-z]+)`", cmds):
            uses += [(cmd, f, "share: " + " ".join(flags.split())) for f in FLAG.findall(flags)]
    return uses


def _in_help(cmd: str, flag: str) -> bool:
    if cmd not in COMMANDS:
        return False
    return not flag or re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", COMMANDS[cmd].format_help()) is not None


USES = readme_uses(README.read_text(encoding="utf-8"))


def test_readme_is_parsed() -> None:
    """The parser finds the README's commands at all (an empty list would pass everything below)."""
    cmds = {c for c, _, _ in USES}
    assert {"train", "export", "calibrate", "build", "live", "annotate", "bench", "doctor"} <= cmds
    assert len(USES) > 50


def test_every_command_and_flag_readme_shows_is_in_help() -> None:
    missing = sorted({(c, f): w for c, f, w in USES if not _in_help(c, f) and (c, f) not in KNOWN_MISMATCHES}.items())
    assert not missing, "README shows what --help does not have:\n" + "\n".join(
        f"  run.py {c} {f or '(no such command)'}   in: {w}" for (c, f), w in missing
    )


def test_known_mismatches_are_still_mismatches() -> None:
    """An entry whose flag now exists (or that README no longer shows) must leave the allow-list."""
    shown = {(c, f) for c, f, _ in USES}
    stale = [k for k in KNOWN_MISMATCHES if k not in shown or _in_help(*k)]
    assert not stale, f"remove from KNOWN_MISMATCHES: {stale}"


@pytest.mark.parametrize(
    "text,expect",
    [
        ("    python run.py bench engines/x --batch 1,8   # --not-this\n", {("bench", "--batch")}),
        ("run `python run.py live --engine E` && more\n", {("live", "--engine")}),
        ("| `annotate IN --mode tiles\\|detect [--ray [ADDR]]` | x |\n", {("annotate", "--mode"), ("annotate", "--ray")}),
        ("`live` and `bench` share `--dla N` and `--cuda-graph`.\n", {(c, f) for c in ("live", "bench") for f in ("--dla", "--cuda-graph")}),
        ("```\npython run.py eval heldout --engine E --json out.json\n```\n", {("eval heldout", "--engine"), ("eval heldout", "--json")}),
    ],
)  # fmt: skip
def test_parser_finds_flags(text: str, expect: set[tuple[str, str]]) -> None:
    """The README reader itself: code blocks, inline code, table cells, shared-flag sentences, sub-commands."""
    assert {(c, f) for c, f, _ in readme_uses(text) if f} == expect


def test_a_renamed_flag_fails() -> None:
    """What the test is for: README naming a flag --help lacks is reported."""
    uses = readme_uses("    python run.py bench engines/x --batchez 8\n")
    assert [(c, f) for c, f, _ in uses if f and not _in_help(c, f)] == [("bench", "--batchez")]
