"""torchvision-format ResNet weights: read a file, tell which architecture it fits, fetch the official ones.

``--weights FILE`` takes a state dict as ``torch.save(torchvision.models.resnet50(weights=...).state_dict())``
writes it, or a checkpoint holding one under ``state_dict`` / ``model``; it is read with
``weights_only=True`` (no code runs). ``--pretrained`` downloads torchvision's own file (URL and sha256
prefix from ``data/torchvision_resnet_weights.json``) with ``torch.hub.load_state_dict_from_url(...,
check_hash=True)`` into a cache, once.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edge_app.errors import UserError

# Blocks per stage and block type of each architecture: what a state dict's keys reveal.
LAYOUT = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
    "resnet152": ((3, 8, 36, 3), "bottleneck"),
}


@lru_cache(maxsize=1)
def torchvision_table() -> dict[str, Any]:
    """torchvision's ResNet weight entries (URL, sha256 prefix, eval sizes), kept as data with their source."""
    text = (
        resources.files("edge_app.models").joinpath("data/torchvision_resnet_weights.json").read_text(encoding="utf-8")
    )
    return json.loads(text)


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a weights file (``module.`` prefixes of DataParallel removed); UserError when it is not one."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights file '{path}' does not exist; pass the path of a saved state dict") from None
    except Exception as e:  # pickle errors, zip errors, unsupported globals: all mean "not a weights file"
        raise UserError(
            f"'{path}' is not a PyTorch weights file ({type(e).__name__}); "
            "save one with torch.save(model.state_dict(), path)"
        ) from None
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"'{path}' holds no state dict of tensors; save one with torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def arch_of(state: dict[str, Any]) -> str | None:
    """The ResNet whose layout these keys have (blocks per stage, basic or bottleneck), or None."""
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    return next((a for a, lay in LAYOUT.items() if lay == (blocks, kind)), None)


def num_classes_of(state: dict[str, Any], source: str) -> int:
    """Outputs of the classifier head ``fc``."""
    w = state.get("fc.weight")
    if w is None or w.ndim != 2:
        raise UserError(
            f"weights in '{source}' have no classifier head 'fc.weight'; pass a ResNet classifier's state dict"
        )
    return int(w.shape[0])


def check_fits(state: dict[str, Any], own: dict[str, Any], arch: str, source: str) -> None:
    """One sentence naming the first missing/unexpected/mis-shaped keys and the architecture that would fit."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = [
        f"{what} {', '.join(repr(k) for k in keys[:3])}" + (" ..." if len(keys) > 3 else "")
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
        if keys
    ]
    fit = arch_of(state)
    hint = f"these weights fit --arch {fit}" if fit and fit != arch else "pass weights of a torchvision-style ResNet"
    raise UserError(f"weights in '{source}' do not fit {arch} ({'; '.join(parts)}); {hint}")


def pretrained_entry(arch: str, variant: str = "DEFAULT") -> dict[str, Any]:
    """torchvision's entry for ``arch`` (``DEFAULT``, ``IMAGENET1K_V1`` or ``IMAGENET1K_V2``)."""
    table = torchvision_table()["weights"]
    if arch not in table:
        raise UserError(f"no pretrained weights are known for '{arch}'; choose one of {', '.join(table)}")
    entries = table[arch]
    name = entries["default"] if variant == "DEFAULT" else variant
    if name not in entries or name == "default":
        raise UserError(
            f"{arch} has no weights '{variant}'; choose DEFAULT or one of "
            f"{', '.join(k for k in entries if k != 'default')}"
        )
    return {"name": name, **entries[name]}


def fetch_pretrained(
    arch: str, variant: str = "DEFAULT", cache_dir: str | os.PathLike | None = None, url: str | None = None
) -> Path:
    """Download (once) and hash-check torchvision's weights for ``arch``; the cached file's path.

    ``url`` overrides the table (a mirror, or a ``file://`` URL in tests); its file name must keep the
    ``<name>-<sha256 prefix>.pth`` form for the hash check. Offline: one sentence naming the URL and
    ``--weights`` as the way round.
    """
    return download_weights(url or pretrained_entry(arch, variant)["url"], cache_dir)


def download_weights(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (once) and hash-check the weights file at ``url`` (``<name>-<sha256 prefix>.pth``); its path.

    Offline: one sentence naming the URL and ``--weights`` as the way round.
    """
    import torch

    cache = Path(cache_dir or Path(torch.hub.get_dir()) / "checkpoints")
    target = cache / Path(url.split("?")[0]).name
    if not target.is_file():
        try:
            torch.hub.load_state_dict_from_url(
                url, model_dir=str(cache), map_location="cpu", progress=True, check_hash=True, weights_only=True
            )
        except RuntimeError as e:
            if "invalid hash value" in str(e):
                raise UserError(
                    f"the file downloaded from {url} failed its sha256 check ({e}); nothing was kept; "
                    "try again or pass a file you trust with --weights"
                ) from None
            raise
        except OSError as e:  # URLError (no network, DNS), HTTP errors, a missing file:// path
            raise UserError(
                f"cannot download {url} ({getattr(e, 'reason', e)}); on a machine without internet, "
                f"download it elsewhere and pass it with --weights FILE"
            ) from None
    return target
