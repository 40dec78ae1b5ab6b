"""The threaded frame loop: capture thread -> bounded queue -> inference + postprocess thread -> bounded queue
-> writer thread (annotators + sinks).

* Live sources (``source.live``) drop the OLDEST queued frame when inference falls behind and count the
  drop (latency first); files block instead and never drop (completeness first).
* Every frame carries its capture time (``time.monotonic()``); end-to-end latency is measured in the
  writer thread after the image sinks have taken the frame, on the same clock.
* Stage timings go into one :class:`~edge_app.profiling.StageTimer`: its rolling window feeds the HUD, its
  whole-run summary feeds the report, and the same per-frame numbers go into each JSON line.
* Shutdown: end of source, ``max_frames`` / ``duration``, a key in a window sink, :meth:`Pipeline.stop`, or
  Ctrl-C in the main thread all stop the capture, let the frames already queued (a few, the queues are
  bounded) finish, and close every sink; a second Ctrl-C abandons the queued frames.

``run_pipeline(labeller, source, sinks, cfg, steps) -> PipelineReport`` is the API ``live``, ``annotate``
and ``bench --pipeline`` use. One labeller carries the choice: its engine, its mode and the mode's settings
(:mod:`edge_app.frames.labellers`); ``cfg`` holds loop settings only, so nothing has to agree with anything.
The loop never asks which mode labels the frames.

Post-label steps (trackers, line and zone counters: :class:`PostLabelStep`) run in the inference thread, in
order, on each frame's labels; they keep state per source and may add per-frame output (``frame_extra``)
that goes into the JSON line and the HUD.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

from edge_app.errors import FieldError, shown
from edge_app.frames.labellers import Labeller
from edge_app.frames.overlay import HUD_STAGES, HudInfo, OverlayConfig, build_annotators
from edge_app.frames.results import FrameResult, Label
from edge_app.timing import FpsMeter, StageTimer
from edge_app.video.base import Frame, FrameSource, Sink

_END = object()  # queue sentinel: no more items after this one
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc in a window sink (27 also when the window is closed)


@runtime_checkable
class PostLabelStep(Protocol):
    """A step after labelling (a tracker, a counter): state per source, rebuilt by replaying stored results."""

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """The labels of one frame of ``source_id`` after this step (e.g. with track ids set)."""
        ...

    def reset(self, source_id: int) -> None:
        """Forget everything about ``source_id`` (a new video, a reconnected stream)."""
        ...


def frame_extra(step: PostLabelStep, source_id: int) -> dict[str, Any]:
    """What ``step`` adds to the current frame's JSON line (``{}`` for steps that add nothing)."""
    fn = getattr(step, "frame_extra", None)
    return dict(fn(source_id)) if fn is not None else {}


@dataclass(frozen=True)
class PipelineConfig:
    """How the loop runs (loop settings only: the labeller carries the mode); frozen and validated once, on
    creation. Defaults suit ``live`` (latency first); ``annotate`` raises ``batch``. Bad values raise
    :class:`FieldError` naming the field."""

    # Frames per engine call. Files wait to fill a batch (throughput); live sources take only what is
    # already queued, up to this many, so a batch never waits for a frame that has not been captured.
    batch: int = 1
    # Capture queue length; 0 = automatic: 2 for live sources (a short queue is low latency), else 2*batch+2.
    queue_size: int = 0
    max_frames: int = 0  # stop after reading this many frames from the source (0: no limit)
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
        if not self.stats_every_s >= 0:
            raise FieldError("stats_every_s", shown(self.stats_every_s), "must be 0 (every frame) or more seconds")


@dataclass
class PipelineReport:
    """What one run did: frame counts, per-stage and end-to-end latency percentiles (ms), throughput."""

    frames_read: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    frames_failed: int = 0  # frames the source could not decode
    seconds: float = 0.0
    stopped_by: str = ""  # end, max_frames, duration, key, stop, interrupt, error
    mode: str = "classify"
    batch: int = 1
    engine: str = ""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    end_to_end_ms: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0

    @property
    def throughput_fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return {
            "frames_read": self.frames_read,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "frames_failed": self.frames_failed,
            "seconds": self.seconds,
            "throughput_fps": self.throughput_fps,
            "stopped_by": self.stopped_by,
            "mode": self.mode,
            "batch": self.batch,
            "engine": self.engine,
            "stages_ms": self.stages,
            "end_to_end_ms": self.end_to_end_ms,
            "reconnects": self.reconnects,
        }

    def summary(self) -> str:
        """Two lines for the terminal."""
        e = self.end_to_end_ms
        return (
            f"{self.frames_read} frames read, {self.frames_written} written, {self.frames_dropped} dropped, "
            f"{self.frames_failed} failed to decode in {self.seconds:.1f}s ({self.throughput_fps:.1f} frames/s, stopped by {self.stopped_by})\n"
            f"end-to-end latency p50 {e.get('p50', float('nan')):.1f} ms  p99 {e.get('p99', float('nan')):.1f} ms"
        )


class _Aborted(Exception):
    """Raised inside a worker when another thread failed or a second Ctrl-C abandoned the run."""


class Pipeline:
    """One run of the loop over ``source`` into ``sinks``; it owns (and closes) both once :meth:`run` starts."""

    def __init__(
        self,
        labeller: Labeller,
        source: FrameSource,
        sinks: Sequence[Sink],
        cfg: PipelineConfig | None = None,
        steps: Sequence[PostLabelStep] = (),
        source_id: int = 0,
    ) -> None:
        cfg = cfg if cfg is not None else PipelineConfig()
        self.labeller = labeller
        self.engine = labeller.engine
        self.source = source
        self.sinks = list(sinks)
        self.cfg = cfg
        self.steps = list(steps)
        self.source_id = source_id
        self.live = bool(source.live)
        self.drop = self.live if cfg.drop is None else cfg.drop
        qs = cfg.queue_size or (2 if self.drop else 2 * cfg.batch + 2)
        self.q_in: queue.Queue = queue.Queue(maxsize=qs)
        self.q_out: queue.Queue = queue.Queue(maxsize=max(2, cfg.batch + 1))
        self.timer = StageTimer(window=cfg.hud_window)
        self._timer_lock = threading.Lock()  # three threads record into one timer
        self.fps = FpsMeter(cfg.fps_window)
        self.stop_event = threading.Event()
        self.abort_event = threading.Event()
        self.report = PipelineReport(mode=labeller.mode, batch=cfg.batch, engine=self.engine.description)
        self._errors: list[BaseException] = []
        self._stop_reason = ""
        # Image sinks (window, video, MJPEG) first, data sinks (JSON lines) last: their line then holds end_to_end.
        self._image_sinks = [s for s in self.sinks if s.takes_images]
        self._data_sinks = [s for s in self.sinks if not s.takes_images]
        self.annotators = build_annotators(cfg.overlay, self.hud_info)
        self._last_stats = 0.0

    # -------------------------------------------------------------------------------------------- control
    def stop(self, reason: str = "stop") -> None:
        """Ask the loop to finish: capture stops, queued frames are written, sinks are closed."""
        if not self._stop_reason:
            self._stop_reason = reason
        self.stop_event.set()

    def _record(self, name: str, ms: float) -> None:
        with self._timer_lock:
            self.timer.record(name, ms)

    def hud_info(self) -> HudInfo:
        """A snapshot of the rolling numbers for the HUD and the browser page."""
        with self._timer_lock:
            med = {k: v.percentile(50) for k, v in self.timer.stats.items()}
        return HudInfo(
            stage_ms={k: med[k] for k in HUD_STAGES if k in med},
            end_to_end_ms=med.get("end_to_end", float("nan")),
            fps=self.fps.fps,
            dropped=self.report.frames_dropped,
            backend=self.engine.backend,
            precision=self.engine.precision,
            status=self.source.status,
        )

    # -------------------------------------------------------------------------------------------- queues
    def _put(self, q: queue.Queue, item: Any) -> None:
        """Blocking put that gives up when the run is aborted (so no thread hangs on a dead consumer)."""
        while True:
            if self.abort_event.is_set():
                raise _Aborted
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        while True:
            if self.abort_event.is_set():
                raise _Aborted
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    def _put_dropping_oldest(self, item: Any) -> None:
        """Live policy: never wait for inference; if the queue is full, discard its oldest frame and count it."""
        while True:
            try:
                self.q_in.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.q_in.get_nowait()
                    self.report.frames_dropped += 1
                except queue.Empty:
                    pass

    # -------------------------------------------------------------------------------------------- threads
    def _worker(self, fn: Callable[[], None], name: str) -> threading.Event:
        """Start ``fn`` on a daemon thread; the returned event is set when it has finished.

        The main thread waits on these events, not on ``Thread.join``: a Ctrl-C that lands inside
        ``join`` can leave the thread marked finished while it still runs (CPython < 3.13), and the
        sinks would then be closed under the writer's feet.
        """
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            except _Aborted:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, re-raised there
                self._errors.append(e)
                self._stop_reason = self._stop_reason or "error"
                self.abort_event.set()
                self.stop_event.set()
            finally:
                done.set()

        threading.Thread(target=run, name=f"pipeline-{name}", daemon=True).start()
        return done

    def _capture(self) -> None:
        cfg = self.cfg
        it: Iterator[Frame] = iter(self.source)
        t_start = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if self.abort_event.is_set():
                    raise _Aborted
                if cfg.max_frames and self.report.frames_read >= cfg.max_frames:
                    self.stop("max_frames")
                    break
                if cfg.duration and time.monotonic() - t_start >= cfg.duration:
                    self.stop("duration")
                    break
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    self._stop_reason = self._stop_reason or "end"
                    break
                cap_ms = (time.perf_counter() - t0) * 1e3
                self._record("capture", cap_ms)
                self.report.frames_read += 1
                item = (frame, cap_ms)
                if self.drop:
                    self._put_dropping_oldest(item)
                else:
                    self._put(self.q_in, item)
        finally:
            self._put(self.q_in, _END)

    def _infer(self) -> None:
        cfg = self.cfg
        done = False
        while not done:
            first = self._get(self.q_in)
            if first is _END:
                break
            items = [first]
            while len(items) < cfg.batch:
                if self.drop:
                    try:
                        nxt = self.q_in.get_nowait()
                    except queue.Empty:
                        break
                else:
                    nxt = self._get(self.q_in)
                if nxt is _END:
                    done = True
                    break
                items.append(nxt)
            labels, t = self.labeller.label([f.image for f, _ in items])
            n = len(items)
            # A batched call is timed once; each frame is charged its share, so per-frame stage times sum
            # to the wall time the stage took.
            share = {"preprocess": t.preprocess / n, "inference": t.inference / n, "postprocess": t.postprocess / n}
            share.update({k: v / n for k, v in t.extra.items()})
            for (frame, cap_ms), labs in zip(items, labels):
                for k, v in share.items():
                    self._record(k, v)
                extra: dict[str, Any] = {}
                if self.steps:
                    t0 = time.perf_counter()
                    for step in self.steps:
                        labs = step.update(self.source_id, frame.index, labs)
                        extra.update(frame_extra(step, self.source_id))
                    self._record("post_label", (time.perf_counter() - t0) * 1e3)
                res = FrameResult(
                    frame.index,
                    frame.capture_time,
                    labs,
                    {"capture": cap_ms, **share},
                    media_time=frame.media_time,
                    extra=extra,
                )
                self._put(self.q_out, (frame, res))
        self._put(self.q_out, _END)

    def _write(self) -> None:
        cfg = self.cfg
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=cfg.progress_total,
                initial=cfg.progress_initial,
                desc=cfg.progress_desc or None,
                unit="frame",
                leave=True,
                dynamic_ncols=True,
            )
        try:
            while True:
                item = self._get(self.q_out)
                if item is _END:
                    break
                frame, res = item
                self._write_one(frame, res)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def _write_one(self, frame: Frame, res: FrameResult) -> None:
        img = frame.image
        t0 = time.perf_counter()
        for a in self.annotators:
            img = a.annotate(img, res)
        t1 = time.perf_counter()
        res.timings["overlay"] = (t1 - t0) * 1e3
        for s in self._image_sinks:
            s.write(img, res)
        t2 = time.perf_counter()
        res.timings["write"] = (t2 - t1) * 1e3
        res.timings["end_to_end"] = max(0.0, (time.monotonic() - frame.capture_time) * 1e3)
        for k in ("overlay", "write", "end_to_end"):
            self._record(k, res.timings[k])
        for s in self._data_sinks:
            s.write(img, res)
        self.report.frames_written += 1
        self.fps.tick()
        now = time.monotonic()
        if now - self._last_stats >= self.cfg.stats_every_s:
            self._last_stats = now
            stats = self.stats_dict()
            for s in self.sinks:
                s.update_stats(stats)
        for s in self.sinks:
            if s.key_pressed() in QUIT_KEYS:
                self.stop("key")

    def stats_dict(self) -> dict[str, Any]:
        """The HUD numbers as a plain dict (for the browser page and logs)."""
        h = self.hud_info()
        return {
            "stages_ms": {k: round(v, 2) for k, v in h.stage_ms.items()},
            "end_to_end_ms": round(h.end_to_end_ms, 2) if h.end_to_end_ms == h.end_to_end_ms else None,
            "fps": round(h.fps, 2) if h.fps == h.fps else None,
            "dropped": h.dropped,
            "frames_written": self.report.frames_written,
            "backend": h.backend,
            "precision": h.precision,
            "status": h.status,
            "mode": self.labeller.mode,
        }

    # -------------------------------------------------------------------------------------------- run
    def run(self) -> PipelineReport:
        """Run to the end (or a stop); close the source and every sink; return the report.

        Ctrl-C in the calling thread is a stop (``stopped_by == "interrupt"``), not an exception; errors
        from the worker threads are re-raised here after everything is closed.
        """
        t0 = time.perf_counter()
        threads: list[threading.Event] = []
        try:
            threads = [
                self._worker(self._capture, "capture"),
                self._worker(self._infer, "infer"),
                self._worker(self._write, "write"),
            ]
            interrupts = 0
            while not all(done.is_set() for done in threads):
                try:
                    time.sleep(0.02)
                except KeyboardInterrupt:
                    interrupts += 1
                    self.stop("interrupt")
                    if interrupts > 1:
                        self.abort_event.set()
        finally:
            if self._errors:
                self.abort_event.set()
            self.report.seconds = time.perf_counter() - t0
            self._close_all(threads)
        self.report.stopped_by = self._stop_reason or "end"
        self.report.frames_failed = int(self.source.decode_errors)
        self.report.reconnects = int(self.source.reconnects)
        with self._timer_lock:
            summary = self.timer.summary()
        self.report.end_to_end_ms = summary.pop("end_to_end", {})
        self.report.stages = summary
        if self._errors:
            raise self._errors[0]
        return self.report

    def _close_all(self, threads: list[threading.Event]) -> None:
        """Close sinks (flushing what they hold) and the source, even if a worker is stuck in a read."""
        self.stop_event.set()
        try:
            self.source.close()
        except Exception as e:  # noqa: BLE001 - closing must not hide the run's own outcome
            self._errors.append(e)
        for done in threads:
            done.wait(timeout=2.0)
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001
                self._errors.append(e)


def run_pipeline(
    labeller: Labeller,
    source: FrameSource,
    sinks: Sequence[Sink],
    cfg: PipelineConfig | None = None,
    steps: Sequence[PostLabelStep] = (),
) -> PipelineReport:
    """Run the threaded loop over ``source`` into ``sinks`` (both closed at the end); see :class:`Pipeline`."""
    return Pipeline(labeller, source, sinks, cfg, steps).run()
