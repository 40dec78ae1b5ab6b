"""One engine call across sources: per-source frame slots that capture threads fill and the batcher empties.

DeepStream's nvstreammux is the model: a batch is pushed when every source has a frame ready, or when a
timeout (one frame interval of the fastest source, ``batched-push-timeout``) has passed since the batch's first
frame, so a slow or stalled source never holds the others back. Unlike Ultralytics' multi-stream loader,
which waits for every stream and so runs the group at the slowest stream's rate (ultralytics 3559).

* Live sources keep only their newest frames (a full slot drops its oldest frame, counted per source): the
  delay never grows. Files never drop: a full slot blocks its capture thread (completeness first).
* Files only: a batch is filled to ``batch`` frames, round-robin across the sources that still have frames
  (throughput; files never stall). With any live source a batch goes as soon as every source that is
  delivering has a frame in it, after also taking whatever is already waiting, up to ``batch``.
* A source that has delivered nothing for :data:`STALLED_INTERVALS` push timeouts is not waited for; it
  rejoins with its next frame.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

STALLED_INTERVALS = 3  # push timeouts without a frame after which a source is not waited for
STOP_GRACE_S = 0.5  # after a stop, how long the batcher waits for capture threads to hand over their last frame


class Aborted(Exception):
    """The run was abandoned (another thread failed, or a second Ctrl-C) while a thread waited here."""


class FrameSlots:
    """Bounded per-source buffers behind one condition variable."""

    def __init__(
        self,
        maxlen: Sequence[int],
        drop: Sequence[bool],
        is_aborted: Callable[[], bool],
        is_stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        if len(maxlen) != len(drop) or not maxlen:
            raise ValueError(f"need one maxlen and one drop flag per source, got {len(maxlen)} and {len(drop)}")
        self.n = len(maxlen)
        self._maxlen = [max(1, int(m)) for m in maxlen]
        self._drop = list(drop)
        self._buf: list[deque[Any]] = [deque() for _ in range(self.n)]
        self._ended = [False] * self.n
        self._last_put: list[float | None] = [None] * self.n
        self._cond = threading.Condition()
        self._rr = 0  # round-robin start: no source always goes first
        self._is_aborted = is_aborted
        self._is_stopping = is_stopping  # a stop: what waits is still labelled, nothing more is waited for
        self.dropped = [0] * self.n
        self._t0 = time.monotonic()
        self._stop_seen: float | None = None

    @property
    def any_live(self) -> bool:
        """True when some source drops (live): batches then go on time, not full."""
        return any(self._drop)

    def put(self, sid: int, item: Any) -> None:
        """Hand one captured frame of source ``sid`` to the batcher (blocks only a file source's thread)."""
        with self._cond:
            buf = self._buf[sid]
            if self._drop[sid]:
                while len(buf) >= self._maxlen[sid]:
                    buf.popleft()
                    self.dropped[sid] += 1
            else:
                while len(buf) >= self._maxlen[sid]:
                    if self._is_aborted():
                        raise Aborted
                    self._cond.wait(0.05)
            buf.append(item)
            self._last_put[sid] = time.monotonic()
            self._cond.notify_all()

    def end(self, sid: int) -> None:
        """Source ``sid`` has no more frames (what it already put is still taken)."""
        with self._cond:
            self._ended[sid] = True
            self._cond.notify_all()

    def leftover(self, sid: int) -> int:
        """Frames of ``sid`` still waiting (after the run: captured but never labelled)."""
        with self._cond:
            return len(self._buf[sid])

    def _active(self) -> list[int]:
        return [s for s in range(self.n) if not self._ended[s] or self._buf[s]]

    def _expected(self, sid: int, now: float, timeout_s: float) -> bool:
        """Whether a batch should wait for ``sid``: it is still running and not stalled."""
        if self._ended[sid]:
            return False
        last = self._last_put[sid]
        window = max(STALLED_INTERVALS * timeout_s, 0.2)
        if last is None:  # not started yet: wait for it during start-up only
            return now - self._t0 < 1.0
        return now - last < window

    def _round(self, items: list[tuple[int, Any]], batch: int, got: set[int]) -> bool:
        """Take at most one frame from each source, round-robin; True if anything was taken."""
        took = False
        for k in range(self.n):
            if len(items) >= batch:
                break
            sid = (self._rr + k) % self.n
            if self._buf[sid]:
                items.append((sid, self._buf[sid].popleft()))
                got.add(sid)
                took = True
        self._rr = (self._rr + 1) % self.n
        return took

    def take(self, batch: int, timeout_s: float) -> list[tuple[int, Any]]:
        """The next batch as (source id, item) pairs; ``[]`` when every source has ended and nothing is left."""
        items: list[tuple[int, Any]] = []
        got: set[int] = set()
        deadline: float | None = None
        with self._cond:
            while True:
                if self._is_aborted():
                    raise Aborted
                took = self._round(items, batch, got)
                self._cond.notify_all()  # a file source blocked on a full slot may go on
                if len(items) >= batch or not self._active():
                    return items
                now = time.monotonic()
                if self._is_stopping() and not took:
                    # A stop: a capture thread finishing its last read still hands that frame over, but a
                    # source blocked in a read (a stalled camera) must not keep the loop from finishing.
                    if self._stop_seen is None:
                        self._stop_seen = now
                    if items or now - self._stop_seen >= STOP_GRACE_S:
                        return items
                if items and self.any_live:
                    waiting = [s for s in range(self.n) if s not in got and self._expected(s, now, timeout_s)]
                    if not waiting:
                        while len(items) < batch and self._round(items, batch, got):
                            pass  # what is already here rides along; nothing more is waited for
                        return items
                    if deadline is None:
                        deadline = now + timeout_s
                    if now >= deadline:
                        return items
                if took:
                    continue
                wait = 0.05 if deadline is None else min(0.05, max(0.0, deadline - now))
                self._cond.wait(wait)
