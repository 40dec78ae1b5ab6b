"""Fakes for the frame-loop tests: an engine with a known answer and speed, sources with known frames,
and a sink that records what reached it. They implement the same small interfaces as the real ones."""

from __future__ import annotations

import _thread
import threading
import time
from typing import Any, Iterator

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta, InputSpec
from edge_app.runtime.base import Engine
from edge_app.video.base import Frame, SinkBase

LABELS = ["background", "circle", "square", "triangle", "star", "cross"]


class FakeEngine(Engine):
    """Logits from a rule: class 1 ('circle') where the input's mean brightness > ``bright``, else background."""

    backend = "fake"

    def __init__(
        self, delay_s: float = 0.0, bright: float = 127.0, size: int = 32, fail: bool = False, interrupt_after: int = 0
    ) -> None:
        meta = EngineMeta(name="fake", arch="none", labels=list(LABELS), input=InputSpec(size, size))
        super().__init__(EngineDir("/nonexistent"), meta, "fp32", "cpu")
        self.delay_s, self.bright, self.fail = delay_s, bright, fail
        self.interrupt_after = interrupt_after  # > 0: press Ctrl-C (in the main thread) on that call
        self.calls: list[int] = []  # batch size of every call

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(len(images))
        if len(self.calls) == self.interrupt_after:
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread, mid-run
        if self.fail:
            raise RuntimeError("fake engine failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.zeros((len(images), len(LABELS)), np.float32)
        hit = images.reshape(len(images), -1).mean(1) > self.bright
        out[hit, 1] = 8.0
        out[~hit, 0] = 8.0
        return {"logits": out}


class FakeDetEngine(Engine):
    """A detector as meta.json will describe one: task 'detect', one output ``dets`` of (N, K, 6) rows
    x1, y1, x2, y2 (model-input pixels), score, class id. It finds one 'circle' in the middle of each image."""

    backend = "fake"

    def __init__(self, size: int = 32) -> None:
        meta = EngineMeta(
            name="fakedet",
            arch="none",
            labels=list(LABELS[1:]),
            input=InputSpec(size, size),
            outputs=["dets"],
            extra={"task": "detect"},
        )
        super().__init__(EngineDir("/nonexistent"), meta, "fp32", "cpu")
        self.last_timings = {"h2d": 0.25}  # as a GPU backend reports its own split

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        s = images.shape[1]
        dets = np.zeros((len(images), 2, 6), np.float32)
        dets[:, 0] = (s / 4, s / 4, 3 * s / 4, 3 * s / 4, 0.9, 0)  # class 0 of this engine's labels: 'circle'
        return {"dets": dets}  # the second row has score 0: no object


class FakeSource:
    """``n`` frames (0 = endless) of ``size``; ``live`` as given; ``period_s`` between frames (0: as fast as possible)."""

    def __init__(
        self, n: int = 20, live: bool = False, size: tuple[int, int] = (64, 48), period_s: float = 0.0
    ) -> None:
        self.n, self.live, self.size, self.period_s = n, live, size, period_s
        self.fps = 30.0
        self.frame_count = n or None
        self.name = "fake"
        self.status = "ok"
        self.decode_errors = 0
        self.reconnects = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while (not self.n or i < self.n) and not self.closed.is_set():
            if self.period_s:
                time.sleep(self.period_s)
            img = np.full((self.size[1], self.size[0], 3), (i * 7) % 256, np.uint8)
            yield Frame(i, time.monotonic(), img)
            i += 1

    def close(self) -> None:
        self.closed.set()


class RecordingSink(SinkBase):
    """Keeps the index and timings of every frame written; ``quit_after`` makes key_pressed() say 'q'."""

    def __init__(self, quit_after: int = 0) -> None:
        self.indices: list[int] = []
        self.results: list[Any] = []
        self.closed = False
        self.quit_after = quit_after
        self.stats: list[dict] = []

    def write(self, frame: np.ndarray, result: Any) -> None:
        if self.closed:
            raise RuntimeError("write after close")
        self.indices.append(result.index)
        self.results.append(result)

    def key_pressed(self) -> int:
        return ord("q") if self.quit_after and len(self.indices) >= self.quit_after else -1

    def update_stats(self, stats: dict) -> None:
        self.stats.append(stats)

    def close(self) -> None:
        self.closed = True
