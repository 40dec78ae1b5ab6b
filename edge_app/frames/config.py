"""The frame loop's settings: one frozen dataclass, validated once, naming the field on a bad value."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_app.errors import FieldError, shown
from edge_app.frames.overlay import OverlayConfig


@dataclass(frozen=True)
class PipelineConfig:
    """How the loop runs (loop settings only: the labeller carries the mode); frozen and validated once, on
    creation. Defaults suit ``live`` (latency first); ``annotate`` raises ``batch``. Bad values raise
    :class:`FieldError` naming the field."""

    # Frames per engine call. Files wait to fill a batch (throughput); with live sources a batch goes once
    # every delivering source has a frame in it (or push_timeout_s passed), taking what waits, up to this many.
    batch: int = 1
    # Frames waiting per source; 0 = automatic: 2 for live sources (a short queue is low latency), else 2*batch+2.
    queue_size: int = 0
    # Longest a batch waits for the other sources after its first frame; 0 = one frame interval of the
    # fastest source (DeepStream's batched-push-timeout), 1/30 s when no source knows its rate.
    push_timeout_s: float = 0.0
    max_frames: int = 0  # stop each source after reading this many of its frames (0: no limit)
    duration: float = 0.0  # stop after this many seconds (0: no limit)
    drop: bool | None = None  # None: drop when the source is live
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    hud_window: int = 60  # frames in the HUD's rolling medians: ~2 s at 30 FPS, steady but responsive
    fps_window: int = 30  # frames in the HUD's FPS window: 1 s at 30 FPS
    progress: bool = False  # a tqdm bar of frames written
    progress_desc: str = ""
    progress_total: int | None = None
    progress_initial: int = 0
    stats_every_s: float = 0.5  # how often sinks with update_stats() get the HUD numbers

    def __post_init__(self) -> None:
        for name, low, fix in (
            ("batch", 1, "e.g. 8"),
            ("queue_size", 0, "0 = automatic"),
            ("max_frames", 0, "0 = no limit"),
            ("hud_window", 1, "e.g. 60"),
            ("fps_window", 2, "an FPS needs two frames; e.g. 30"),
            ("progress_initial", 0, "frames already done"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise FieldError(name, shown(v), f"is not a whole number; {fix}")
            if v < low:
                raise FieldError(name, shown(v), f"must be at least {low}; {fix}")
        if not self.duration >= 0:
            raise FieldError("duration", shown(self.duration), "must be 0 (no limit) or more seconds")
        if not self.push_timeout_s >= 0:
            raise FieldError("push_timeout_s", shown(self.push_timeout_s), "must be 0 (one frame interval) or more")
        if not self.stats_every_s >= 0:
            raise FieldError("stats_every_s", shown(self.stats_every_s), "must be 0 (every frame) or more seconds")
