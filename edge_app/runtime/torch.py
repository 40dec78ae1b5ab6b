"""PyTorch backend: the checkpoint itself, the numerical reference every other backend is compared with."""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Backend, Host, OpenOptions, Variant


class TorchEngine(Engine):
    """Runs ``checkpoint.pt`` of the engine folder; fp16 by autocast on CUDA."""

    backend = "torch"

    def __init__(self, engine_dir: EngineDir, meta: EngineMeta, precision: str = "fp32", device: str = "auto") -> None:
        from edge_app.models.checkpoint import load_checkpoint, model_from_checkpoint, resolve_device
        from edge_app.models.preprocess import PreprocessedModel

        dev = resolve_device(device)
        if precision == "int8":
            raise UserError(
                "the PyTorch backend runs fp32 (and fp16 on CUDA) only; for int8 use backend auto (it picks one that runs it)"
            )
        if precision == "fp16" and dev.type != "cuda":
            raise UserError("fp16 with the PyTorch backend needs a CUDA GPU; use precision fp32 on the CPU")
        if not engine_dir.checkpoint_path.is_file():
            raise UserError(f"'{engine_dir.checkpoint_path}' is missing; re-run `python run.py export` to restore it")
        super().__init__(engine_dir, meta, precision, str(dev))
        model, spec, _ = model_from_checkpoint(load_checkpoint(engine_dir.checkpoint_path))
        self.model = PreprocessedModel(model, spec).to(dev).eval()
        self.dev = dev
        self.model_file = engine_dir.checkpoint_path.name

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(images).to(self.dev, non_blocking=True)
        t0 = time.perf_counter()
        with (
            torch.inference_mode(),
            torch.autocast(self.dev.type, dtype=torch.float16, enabled=self.precision == "fp16"),
        ):
            out = self.model(x)
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.last_timings = {"compute": (time.perf_counter() - t0) * 1e3}
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.float().cpu().numpy() for n, o in zip(self.meta.outputs, outs)}


# ------------------------------------------------------------------------------------------------ descriptor
def _available(device: str) -> tuple[bool, str]:
    if importlib.util.find_spec("torch") is None:
        return False, "PyTorch is not installed"
    if device == "cpu":
        return True, "PyTorch CPU"
    import torch

    if not torch.cuda.is_available():
        return False, "PyTorch sees no CUDA GPU (CPU build of torch, or no driver)"
    return True, f"PyTorch CUDA on {torch.cuda.get_device_name(0)}"


def _open(ed: EngineDir, meta: EngineMeta, opts: OpenOptions) -> TorchEngine:
    prec = "fp32" if opts.precision == "auto" else opts.precision
    if opts.threads and opts.device == "cpu":
        import torch

        torch.set_num_threads(opts.threads)  # process-wide: a comparison at N threads is like for like
    eng = TorchEngine(ed, meta, prec, opts.device)
    eng.choice = f"torch {opts.device} {prec}: the checkpoint itself (reference numerics)"
    return eng


def _variants(ed: EngineDir, device: str) -> list[Variant]:
    hint = "re-run `python run.py export` to restore it"
    out = [Variant("torch-fp32", "torch", "fp32", device, ed.checkpoint_path.name, "fp32", hint)]
    if device == "cuda":
        out.append(Variant("torch-fp16", "torch", "fp16", device, ed.checkpoint_path.name, "fp16", hint))
    return out


def _threads(asked: int | None) -> int | None:
    """PyTorch's intra-op threads: process-wide, set by ``_open`` when asked; None when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return int(torch.get_num_threads())


def _fix(device: str, why: str, host: Host) -> str:
    """Only what is missing: torch itself, or (installed without CUDA) the CUDA build; NVIDIA's own wheel on a
    Jetson, as pip's aarch64 torch has no CUDA."""
    installed = importlib.util.find_spec("torch") is not None
    if device == "cpu":
        return "pip install torch" if not installed else "pip install --force-reinstall torch"
    if host.jetson:
        return "install NVIDIA's PyTorch wheel for your JetPack (pip's aarch64 torch has no CUDA)"
    if not installed:
        return "pip install torch (its Linux x86-64 wheels include CUDA)"
    import torch

    if torch.version.cuda:  # a CUDA build that sees no GPU: the driver is older than the CUDA it was built for
        return f"this torch is built for CUDA {torch.version.cuda}: update the NVIDIA driver to one that supports it"
    return (
        "this torch is a CPU build: replace it with a CUDA build, pip install --force-reinstall torch "
        "--index-url https://download.pytorch.org/whl/cu126 (or the CUDA version your driver supports)"
    )


# Last in the automatic choice: the reference, slower than a compiled runtime on the same device.
BACKEND = Backend(
    name="torch",
    devices=("cuda", "cpu"),
    priority=90,
    install_hint="pip install torch",
    available=_available,
    open=_open,
    variants=_variants,
    versions=("torch",),
    threads=_threads,  # torch.set_num_threads in _open (process-wide)
    fix_hint=_fix,
)
