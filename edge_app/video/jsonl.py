"""JSON lines: the one place that knows what a *complete* line is, and the sink that only writes whole ones.

A run killed mid-write leaves at most one torn line at the end of a file (every writer here writes whole
lines, flushed together). Readers therefore trust only the bytes up to the last newline:

* :func:`complete_lines` - the raw complete lines (the piece after the last newline is unfinished);
* :func:`read_jsonl` - their objects, stopping at the first line that does not parse (``skip_bad=True``:
  skipping it instead, for files where lines stand alone, such as one line per photograph);
* :func:`truncate_torn_tail` - cut a torn tail off before appending (``--resume``);
* :class:`LineCounter` - complete lines of a growing file, read incrementally (progress of a remote worker).

:class:`JsonlSink` writes one object per frame in whole lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.video.base import SinkBase


def complete_lines(path: str | Path) -> list[str]:
    """The complete lines of ``path`` (without their newline); [] when it does not exist."""
    p = Path(path)
    if not p.is_file():
        return []
    data = p.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # the piece after the last newline is unfinished by definition
    return data.decode("utf-8", errors="replace").split("\n")[:-1]


def iter_jsonl(path: str | Path, *, skip_bad: bool = False) -> Iterator[dict[str, Any]]:
    """The objects of the complete lines of ``path``; stops at the first bad line (``skip_bad``: skips it)."""
    for line in complete_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if skip_bad:
                continue
            return
        if not isinstance(obj, dict):
            if skip_bad:
                continue
            return
        yield obj


def read_jsonl(path: str | Path, *, skip_bad: bool = False) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file as objects (a torn last line from a killed run is ignored)."""
    return list(iter_jsonl(path, skip_bad=skip_bad))


def truncate_torn_tail(path: str | Path) -> int:
    """Cut a JSON-lines file after its last complete line; return the number of complete lines kept."""
    p = Path(path)
    data = p.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(p, "r+b") as f:
            f.truncate(keep)
    return data[:keep].count(b"\n")


class LineCounter:
    """Complete lines of a growing file, read incrementally; a file replaced (resume rewrites it) is recounted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ino: int | None = None
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        """Complete lines now (reads only what was appended since the last call)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._ino, self._offset, self._lines = None, 0, 0
            return 0
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._ino, self._offset, self._lines = st.st_ino, 0, 0
        if st.st_size > self._offset:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
            self._offset += len(data)
            self._lines += data.count(b"\n")
        return self._lines


def _result_dict(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else result.to_dict()


class JsonlSink(SinkBase):
    """One JSON object per frame (``FrameResult.to_dict()``), written in whole lines and flushed per batch.

    Lines are buffered and written together every ``flush_every`` frames or ``flush_interval_s`` seconds,
    whichever comes first, so the file only ever grows by complete lines. ``append=True`` continues an
    existing file (``--resume``) after dropping a torn last line; ``existing_lines`` says how many it kept.
    """

    takes_images = False  # a data sink: written after the image sinks, so each line holds end-to-end latency

    def __init__(
        self, path: str | Path, append: bool = False, flush_every: int = 16, flush_interval_s: float = 1.0
    ) -> None:
        self.path = Path(path)
        ensure_writable_dir(self.path.parent)
        self.flush_every = max(1, flush_every)
        self.flush_interval_s = flush_interval_s
        self.existing_lines = truncate_torn_tail(self.path) if append and self.path.is_file() else 0
        try:
            self.f: IO[str] | None = open(self.path, "a" if append else "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write '{self.path}' ({e.strerror}); choose a writable output path") from None
        self.frames = 0
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def write(self, frame: np.ndarray | None, result: Any) -> None:
        """Queue the line for ``result`` (a FrameResult or a dict); flush when the batch is full or old."""
        if self.f is None:
            raise RuntimeError(f"JSON-lines sink '{self.path}' is closed")
        self._pending.append(json.dumps(_result_dict(result)) + "\n")
        self.frames += 1
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the queued lines in one call and hand them to the OS."""
        if self.f is not None and self._pending:
            # Taken off the queue first: a Ctrl-C between write and clear must not write lines twice.
            data = "".join(self._pending)
            self._pending.clear()
            self.f.write(data)
            self.f.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self.f is not None:
            self.flush()
            self.f.close()
            self.f = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
