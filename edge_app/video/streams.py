"""Many sources from the command line: repeated ``--source`` values and Ultralytics' ``.streams`` files.

A ``.streams`` file holds one source URI per line (anything ``--source`` takes); blank lines and lines
starting with ``#`` are skipped. Every problem is one sentence naming the value (and the line number).
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_app.errors import UserError

STREAMS_EXT = ".streams"


def read_streams_file(path: str | os.PathLike) -> list[str]:
    """The source URIs listed in a ``.streams`` file, in order."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read the streams file '{p}' ({e.strerror}); pass a readable file") from None
    except UnicodeDecodeError:
        raise UserError(f"'{p}' is not a text file; a .streams file lists one source per line") from None
    out: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if any(c in line for c in ("\x00", "\t")) or (" " in line and "://" not in line and not Path(line).exists()):
            raise UserError(f"line {n} of '{p}' ('{line[:60]}') is not a source; write one URI or path per line")
        out.append(line)
    if not out:
        raise UserError(f"the streams file '{p}' lists no sources; write one camera, file or URL per line")
    return out


def expand_sources(values: list[str]) -> list[str]:
    """``--source`` values with ``.streams`` files expanded; a source named twice is refused."""
    uris: list[str] = []
    for v in values:
        uris += read_streams_file(v) if v.endswith(STREAMS_EXT) else [v]
    seen: dict[str, int] = {}
    for i, u in enumerate(uris):
        key = _identity(u)
        if key in seen:
            raise UserError(
                f"source '{u}' is given twice (sources {seen[key] + 1} and {i + 1}); name each camera or file once"
            )
        seen[key] = i
    return uris


def _identity(uri: str) -> str:
    """What makes two source strings the same source: a file's resolved path, else the text itself."""
    if "://" in uri or uri.startswith(("gst:", "synthetic")) or uri.isdigit():
        return uri
    try:
        return str(Path(uri).resolve())
    except OSError:
        return uri
