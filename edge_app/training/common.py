"""What every task's training loop shares: the schedule, the optimiser and its step, resume, the metrics files.

The loops themselves are per task (:mod:`.classify`, :mod:`.detect`); they differ in data, loss and what
"best" means, and agree on everything here, so a fix to the schedule or the AMP step lands in every task.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from edge_app.fsutil import atomic_write


def warmup_cosine(total_steps: int, warmup_frac: float = 0.2) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over the first ``warmup_frac`` of steps, then cosine decay to 0."""
    warm = max(1, int(total_steps * warmup_frac))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weights only: biases and norm scales (1-D parameters) are not decayed."""
    decay = [p for _, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for _, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}], lr=lr
    )


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> None:
    """One backward pass and optimiser + schedule step, through the AMP grad scaler when there is one (CUDA)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    sched.step()


def grad_scaler(device: torch.device) -> torch.amp.GradScaler | None:
    """AMP's grad scaler on CUDA; None on the CPU, where training stays fp32."""
    return torch.amp.GradScaler("cuda") if device.type == "cuda" else None


def fast_forward(sched: Any, steps: int) -> None:
    """Advance a freshly built schedule by ``steps`` (resume: the run may have grown, so it is rebuilt, not loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(steps):
            sched.step()


def resumed_config(cls: type, saved: Mapping[str, Any], cfg: Any, keep: Sequence[str]) -> Any:
    """The saved run's config: data, model and schedule are fixed by the checkpoint; ``epochs`` may only grow,
    and the fields in ``keep`` (where to write, which device, how many threads) are this call's."""
    return cls(**{**saved, "epochs": max(cfg.epochs, saved["epochs"]), **{k: getattr(cfg, k) for k in keep}})


@dataclass(frozen=True)
class Panel:
    """One plot of metrics.png: ``series`` (label, column of the history rows) against the epoch."""

    ylabel: str
    series: tuple[tuple[str, str], ...]
    ylim: tuple[float, float] | None = None


def write_metrics(out: Path, rows: Sequence[Mapping[str, float]], panels: Sequence[Panel]) -> tuple[Path, Path]:
    """metrics.csv (every column of ``rows``) and metrics.png (one plot per panel), both written atomically."""
    csv_path, png_path = out / "metrics.csv", out / "metrics.png"
    keys = list(rows[0].keys())

    def write_csv(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    atomic_write(csv_path, write_csv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for ax, panel in zip(axes if len(panels) > 1 else [axes], panels):
        for label, col in panel.series:
            ax.plot(ep, [r[col] for r in rows], "o-", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.ylabel)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(png_path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return csv_path, png_path


class TrainOutcome(Protocol):
    """What every task's ``train`` returns: where the checkpoints went, and the line the command prints."""

    best: Path
    last: Path
    out: Path

    def summary(self) -> str: ...


@dataclass(frozen=True)
class Trainer:
    """One task's training hooks (registered per task in :mod:`edge_app.training.tasks`)."""

    task: str  # the models floor's task name (edge_app.models.tasks), written into every checkpoint
    config_type: type  # the run's config dataclass: its defaults are the task's (input size, output folder, ...)
    train: Callable[..., TrainOutcome]  # train(cfg, resume=None): train or resume a run

    def config(self, **given: Any) -> Any:
        """The task's config with ``given`` fields set (the others keep the task's defaults)."""
        return self.config_type(**given)
