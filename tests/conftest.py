"""Shared fixtures: tiny synthetic datasets, a tiny trained checkpoint and its exported engine.

Everything is generated in pytest's tmp folders; nothing touches the network.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_python() -> Iterator[None]:
    """Tests press Ctrl-C with ``_thread.interrupt_main()``, which does nothing while SIGINT is ignored, and a
    test run started as a shell's background job (``cmd &`` without job control) inherits SIGINT ignored: the
    Ctrl-C tests would then wait forever. Python's own handler is restored for the session."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic image folder (train/ and val/, 6 classes, 48 px)."""
    from edge_app.data.synthetic import SyntheticConfig, write_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    return write_dataset(root, SyntheticConfig(image_size=48, train_per_class=12, val_per_class=4, seed=3))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 at 32 px trained for one epoch on ``tiny_dataset`` (accuracy irrelevant, format real)."""
    from edge_app.training.classify import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run")
    r = train(
        TrainConfig(data=str(tiny_dataset), arch="resnet18", img=32, epochs=1, batch=16, out=str(out), device="cpu")
    )
    return r.best


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` exported to an engine folder."""
    from edge_app.compile.export import export

    root = tmp_path_factory.mktemp("engines")
    return export(tiny_checkpoint, "tiny", root).engine


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def det_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector trained for one short epoch at 64 px (accuracy irrelevant, format real)."""
    from edge_app.training.detect import DetectConfig, train_detector

    out = tmp_path_factory.mktemp("det_ckpt")
    cwd = os.getcwd()
    os.chdir(out)
    try:
        r = train_detector(
            DetectConfig(
                img=64,
                width=16,
                base_width=8,
                epochs=1,
                batch=8,
                scenes=32,
                val_scenes=8,
                lr=1e-2,
                out="run",
                device="cpu",
                threads=1,
            )
        )
    finally:
        os.chdir(cwd)
    return out / r.last


@pytest.fixture(scope="session")
def det_engine(det_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("det_engines")
    from edge_app.compile.export import export

    return export(det_checkpoint, "det", root).engine


@pytest.fixture(scope="session")
def tiny_calibrated(tiny_engine: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``tiny_engine`` after `calibrate` (minmax ranges of 24 training images: fp16 and both INT8 files).

    Shared by every test module that needs real INT8/FP16 files; tests that change it work on a copy. The
    calibration cache sits beside it in ``calibration/``.
    """
    import shutil

    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate

    root = tmp_path_factory.mktemp("calibrated")
    eng = Path(shutil.copytree(tiny_engine, root / "tiny"))
    cfg = CalibrateConfig(
        images=str(tiny_dataset / "train"),
        num=24,
        method="minmax",
        cache_dir=str(root / "calibration"),
        speed=False,
        progress=False,
    )
    run_calibrate(eng, cfg, say=lambda line: None)
    return eng
