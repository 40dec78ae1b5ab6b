"""Atomic writes: complete or absent, and with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_app.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, current_umask


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("write", [atomic_write_bytes, atomic_write_text, atomic_write_json])
def test_new_file_gets_the_mode_of_a_plain_write(write, tmp_path: Path, umask_022) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    p = tmp_path / "atomic"
    write(p, b"x" if write is atomic_write_bytes else ("x" if write is atomic_write_text else {"a": 1}))
    assert mode(p) == mode(plain) == 0o644


def test_replacing_a_file_keeps_its_mode(tmp_path: Path, umask_022) -> None:
    p = tmp_path / "shared.json"
    p.write_text("{}")
    p.chmod(0o664)
    atomic_write_text(p, "{}\n")
    assert mode(p) == 0o664 and p.read_text() == "{}\n"


def test_umask_is_read_without_changing_it(umask_022) -> None:
    os.umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def boom(_: Path) -> None:
        raise RuntimeError("disk full")

    from edge_app.fsutil import atomic_write

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "x", boom)
    assert list(tmp_path.iterdir()) == []
