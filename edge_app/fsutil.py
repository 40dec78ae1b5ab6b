"""Atomic file writes and hashing: a crash never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from edge_app.errors import UserError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as e:
        raise UserError(f"cannot write to folder '{p}' ({e.strerror or e}); choose a writable output folder") from None
    return p


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # os.umask can only be read by setting it; restore it at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def plain_write_mode(dest: Path) -> int:
    """The permissions a plain ``open(dest, "w")`` would leave: an existing file keeps its own, a new one
    gets 0o666 under the umask (``mkstemp`` makes 0o600, which would hide engines and results from others)."""
    try:
        return dest.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename the temp file over ``path`` (same folder, so the rename is atomic);
    the file gets the permissions a plain write would give (:func:`plain_write_mode`)."""
    dest = Path(path)
    ensure_writable_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, plain_write_mode(dest))
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return dest


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
