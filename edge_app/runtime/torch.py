"""PyTorch backend: the checkpoint itself, the numerical reference every other backend is compared with."""

from __future__ import annotations

import time

import numpy as np
import torch

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.models.preprocess import PreprocessedModel
from edge_app.runtime.base import Engine


class TorchEngine(Engine):
    """Runs ``checkpoint.pt`` of the engine folder; fp16 by autocast on CUDA."""

    backend = "torch"

    def __init__(self, engine_dir: EngineDir, meta: EngineMeta, precision: str = "fp32", device: str = "auto") -> None:
        from edge_app.training.train import load_checkpoint, model_from_checkpoint, resolve_device

        dev = resolve_device(device)
        if precision == "int8":
            raise UserError("the PyTorch backend runs fp32 (and fp16 on CUDA) only; use --backend onnxruntime for int8")
        if precision == "fp16" and dev.type != "cuda":
            raise UserError("fp16 with the PyTorch backend needs a CUDA GPU; use --precision fp32 on the CPU")
        if not engine_dir.checkpoint_path.is_file():
            raise UserError(f"'{engine_dir.checkpoint_path}' is missing; re-run `python run.py export` to restore it")
        super().__init__(engine_dir, meta, precision, str(dev))
        model, spec, _ = model_from_checkpoint(load_checkpoint(engine_dir.checkpoint_path))
        self.model = PreprocessedModel(model, spec).to(dev).eval()
        self.dev = dev
        self.model_file = engine_dir.checkpoint_path.name

    @torch.inference_mode()
    def _infer(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).to(self.dev, non_blocking=True)
        t0 = time.perf_counter()
        with torch.autocast(self.dev.type, dtype=torch.float16, enabled=self.precision == "fp16"):
            out = self.model(x)
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.last_timings = {"compute": (time.perf_counter() - t0) * 1e3}
        return out.float().cpu().numpy()
