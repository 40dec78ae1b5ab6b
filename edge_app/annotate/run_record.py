"""What defines an annotation run, kept beside its outputs, so ``--resume`` continues only the same run.

A resumed file is the first run's lines followed by the new run's; the two must be one run or the file
mixes labels of different models, modes or inputs without a trace. The record is a sidecar,
``<out>.run.json`` beside ``<out>.jsonl``, written atomically before the first line:

* a sidecar, not a first metadata line, because every reader of our JSON lines (eval, MOT export, the
  Ray progress counter, users' own scripts) takes one line per frame or photo; a header line would break
  them all, and a sidecar keeps old files byte-equal;
* the input is identified by its size and the sha256 of its first MiB, not its mtime: a copy to another
  node or a `touch` changes the mtime of the same video, while a different video almost never shares both;
* what may change between attempts is left out: ``max_frames`` (a longer run continues a shorter one), the
  batch size, the overlay and the codec (the video is re-drawn from the lines on resume anyway).

Outputs written before records existed have none; resuming them is allowed with a warning (there is
nothing to check against) and the record is written then, so the next resume is checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_json, sha256_file

log = logging.getLogger("edge_app.annotate")

RECORD_VERSION = 1
HEAD_BYTES = 1 << 20  # the part of an input that is hashed: enough to tell videos apart, cheap for any size
SHOWN_DIFFERENCES = 3  # a refusal names this many differences and counts the rest


def record_path(jsonl: str | Path) -> Path:
    """The run record of the JSON lines ``jsonl``: ``a.jsonl`` -> ``a.run.json``."""
    p = Path(jsonl)
    return p.with_name(f"{p.stem}.run.json")


def file_identity(path: str | Path) -> dict[str, Any]:
    """Size and the sha256 of the first MiB of ``path`` (see the module docstring for why not the mtime)."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(HEAD_BYTES)
    return {"name": p.name, "size": p.stat().st_size, "head_sha256": hashlib.sha256(head).hexdigest()}


def _settings(obj: Any) -> Any:
    """A step's or config's settings as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return obj if isinstance(obj, (int, float, str, bool, type(None))) else str(obj)


def step_identity(step: Any) -> dict[str, Any]:
    """A post-label step (tracker, counter): its type and its settings (config/spec dataclasses, scalar options)."""
    out: dict[str, Any] = {"type": type(step).__name__}
    for name, v in sorted(vars(step).items()):
        if name.startswith("_"):
            continue
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out[name] = _settings(v)
        elif isinstance(v, (int, float, str, bool)):
            out[name] = v
    return out


def engine_identity(engine: Any) -> dict[str, Any]:
    """Name, task and the model file actually run (with its sha256), backend and precision actually used."""
    meta = engine.meta
    model = Path(engine.model_file).name if getattr(engine, "model_file", "") else ""
    sha = meta.files.get(model) if model else None
    if sha is None and model and Path(engine.model_file).is_file():
        sha = sha256_file(engine.model_file)
    return {
        "name": meta.name,
        "task": getattr(meta, "task", None),
        "model_file": model,
        "model_sha256": sha or meta.checkpoint_sha256 or None,
        "backend": engine.backend,
        "precision": engine.precision,
    }


def run_identity(labeller: Any, input_path: str | Path | None, steps: Sequence[Any] = ()) -> dict[str, Any]:
    """Everything that makes two attempts one run (see the module docstring)."""
    rec: dict[str, Any] = {
        "version": RECORD_VERSION,
        "engine": engine_identity(labeller.engine),
        "mode": {"name": labeller.mode, "settings": _settings(labeller.config)},
    }
    if steps:
        rec["steps"] = [step_identity(s) for s in steps]
    if input_path is not None:
        rec["input"] = file_identity(input_path)
    return rec


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list):
        out = {f"{prefix}count": len(d)}
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: d}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"mode.name classify -> tiles"`` for each setting that differs (the version aside)."""
    a, b = _flat(old), _flat(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if k != "version" and a.get(k) != b.get(k):
            out.append(f"{k} {_shown(a.get(k))} -> {_shown(b.get(k))}")
    return out


def _shown(v: Any) -> str:
    if v is None:
        return "(none)"
    s = str(v)
    return s[:12] + "..." if len(s) > 16 and all(c in "0123456789abcdef" for c in s) else s


def write_record(jsonl: str | Path, record: dict[str, Any]) -> Path:
    """Write the run record of ``jsonl`` atomically."""
    return atomic_write_json(record_path(jsonl), record)


def check_resume(jsonl: str | Path, record: dict[str, Any]) -> None:
    """Refuse to resume ``jsonl`` with a run that differs from the one that wrote it (one sentence naming the
    differences and how to start afresh); an output without a record is accepted with a warning and given one."""
    path = record_path(jsonl)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.warning("%s has no run record (written before records existed): resuming it unchecked", jsonl)
        write_record(jsonl, record)
        return
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot resume '{jsonl}': its run record '{path}' is unreadable ({e}); "
            "start afresh with --overwrite instead of --resume"
        ) from None
    diff = differences(old, record)
    if diff:
        more = f" and {len(diff) - SHOWN_DIFFERENCES} more" if len(diff) > SHOWN_DIFFERENCES else ""
        raise UserError(
            f"cannot resume '{jsonl}': this run differs from the one that wrote it "
            f"({'; '.join(diff[:SHOWN_DIFFERENCES])}{more}); resume with the same settings, "
            "or start afresh with --overwrite instead of --resume"
        )
