"""The threaded frame loop: one capture thread per source -> per-source slots -> batcher + inference +
postprocess thread -> bounded queue -> writer thread (annotators + sinks).

* One engine call serves every source: :mod:`edge_app.frames.batcher` fills a batch across sources and pushes
  it when each delivering source has a frame or one frame interval has passed, so a slow or stalled source
  never holds the others back. Results carry their ``source_id`` and go to the shared sinks and to that
  source's own sinks.
* Live sources (``source.live``) drop the OLDEST waiting frame when inference falls behind and count the
  drop per source (latency first); files block instead and never drop (completeness first).
* Every frame carries its capture time (``time.monotonic()``); end-to-end latency is measured in the
  writer thread after the image sinks have taken the frame, on the same clock.
* Stage timings go into one :class:`~edge_app.profiling.StageTimer`: its rolling window feeds the HUD, its
  whole-run summary feeds the report, and the same per-frame numbers go into each JSON line.
* Annotators draw only for frames an image sink (window, video, MJPEG) will take: a run that writes only
  JSON lines spends nothing on drawing.
* Shutdown: end of every source, ``max_frames`` (per source) / ``duration``, a key in a window sink, :meth:`Pipeline.stop`, or
  Ctrl-C in the main thread all stop the capture, let the frames already queued (a few, the queues are
  bounded) finish, and close every sink; a second Ctrl-C abandons the queued frames.

``run_pipeline(labeller, source, sinks, cfg, steps) -> PipelineReport`` is the API ``live``, ``annotate``
and ``bench --pipeline`` use. One labeller carries the choice: its engine, its mode and the mode's settings
(:mod:`edge_app.frames.labellers`); ``cfg`` holds loop settings only, so nothing has to agree with anything.
The loop never asks which mode labels the frames.

Post-label steps (trackers, line and zone counters: :class:`~edge_app.frames.tracking.base.PostLabelStep`)
run in the inference thread, in order, on each frame's labels; they keep state per source and may add
per-frame output (``frame_extra``: counts) that goes into the JSON line. ``annotators`` (e.g. track trails,
counting lines) draw after the boxes and labels, under the HUD.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from edge_app.frames.batcher import Aborted, FrameSlots
from edge_app.frames.config import PipelineConfig
from edge_app.frames.labellers import Labeller
from edge_app.frames.overlay import HUD_STAGES, HudInfo, LatencyAnnotator, build_annotators
from edge_app.frames.report import PipelineReport, SourceReport
from edge_app.frames.results import FrameResult
from edge_app.frames.tracking.base import PostLabelStep, run_steps
from edge_app.timing import FpsMeter, RollingStats, StageTimer
from edge_app.video.base import Frame, FrameSource, Sink

_END = object()  # queue sentinel: no more items after this one
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc in a window sink (27 also when the window is closed)


class Pipeline:
    """One run of the loop over ``sources`` into ``sinks``; it owns (and closes) them once :meth:`run` starts.

    ``sinks`` take every source's frames; ``source_sinks[i]`` (optional) only source ``i``'s. A single source
    may be passed on its own.
    """

    def __init__(
        self,
        labeller: Labeller,
        sources: FrameSource | Sequence[FrameSource],
        sinks: Sequence[Sink] = (),
        cfg: PipelineConfig | None = None,
        steps: Sequence[PostLabelStep] = (),
        source_sinks: Sequence[Sequence[Sink]] = (),
        annotators: Sequence[Any] = (),
        limits: Sequence[int] = (),
        label_sources: bool | None = None,
    ) -> None:
        cfg = cfg if cfg is not None else PipelineConfig()
        self.sources: list[FrameSource] = [sources] if isinstance(sources, FrameSource) else list(sources)
        if not self.sources:
            raise ValueError("the frame loop needs at least one source")
        if source_sinks and len(source_sinks) != len(self.sources):
            raise ValueError(f"source_sinks has {len(source_sinks)} entries for {len(self.sources)} sources")
        if limits and len(limits) != len(self.sources):
            raise ValueError(f"limits has {len(limits)} entries for {len(self.sources)} sources")
        # Frames to read per source (0: no limit): each source's own --max-frames budget (a resumed file has
        # fewer left than a fresh one).
        self.limits = list(limits) or [cfg.max_frames] * len(self.sources)
        # Results carry their source id when several sources share sinks; files with sinks of their own
        # (annotate) keep lines as a single-source run writes them.
        self.label_sources = len(self.sources) > 1 if label_sources is None else label_sources
        self.labeller = labeller
        self.engine = labeller.engine
        self.sinks = list(sinks)
        self.source_sinks = [list(s) for s in source_sinks] or [[] for _ in self.sources]
        self.cfg = cfg
        self.steps = list(steps)
        n = len(self.sources)
        self.drop = [bool(s.live) if cfg.drop is None else cfg.drop for s in self.sources]
        self.live = any(bool(s.live) for s in self.sources)
        sizes = [cfg.queue_size or (2 if d else 2 * cfg.batch + 2) for d in self.drop]
        self.stop_event = threading.Event()
        self.abort_event = threading.Event()
        self.slots = FrameSlots(sizes, self.drop, self.abort_event.is_set, self.stop_event.is_set)
        rates = [float(getattr(s, "fps", 0.0) or 0.0) for s in self.sources]
        self.push_timeout_s = cfg.push_timeout_s or 1.0 / max([r for r in rates if r > 0] or [30.0])
        self.q_out: queue.Queue = queue.Queue(maxsize=max(2, cfg.batch + 1))
        self.timer = StageTimer(window=cfg.hud_window)
        self._timer_lock = threading.Lock()  # every thread records into one timer
        self.fps = FpsMeter(cfg.fps_window)
        self._fps = [FpsMeter(cfg.fps_window) for _ in range(n)]
        self._e2e = [RollingStats(cfg.hud_window) for _ in range(n)]
        self._read = [0] * n
        self._written = [0] * n
        self.report = PipelineReport(mode=labeller.mode, batch=cfg.batch, engine=self.engine.description)
        self._errors: list[BaseException] = []
        self._stop_reason = ""
        # Image sinks (window, video, MJPEG) first, data sinks (JSON lines) last: their line then holds end_to_end.
        self._image_sinks = [[s for s in self.sinks + own if s.takes_images] for own in self.source_sinks]
        self._data_sinks = [[s for s in self.sinks + own if not s.takes_images] for own in self.source_sinks]
        self._all_sinks = self.sinks + [s for own in self.source_sinks for s in own]
        # The steps' own drawing (track ids and trails, counting lines and zones) goes under the HUD.
        self.annotators = []
        for i in range(n):
            base = build_annotators(cfg.overlay, functools.partial(self.hud_info, i))
            hud = [a for a in base if isinstance(a, LatencyAnnotator)]
            self.annotators.append([a for a in base if a not in hud] + list(annotators) + hud)
        self._last_stats = 0.0

    @property
    def source(self) -> FrameSource:
        """The first (or only) source."""
        return self.sources[0]

    # -------------------------------------------------------------------------------------------- control
    def stop(self, reason: str = "stop") -> None:
        """Ask the loop to finish: capture stops, queued frames are written, sinks are closed."""
        if not self._stop_reason:
            self._stop_reason = reason
        self.stop_event.set()

    def _record(self, name: str, ms: float) -> None:
        with self._timer_lock:
            self.timer.record(name, ms)

    def hud_info(self, source_id: int = 0) -> HudInfo:
        """A snapshot of the rolling numbers for the HUD and the browser page (FPS, latency, drops: per source)."""
        with self._timer_lock:
            med = {k: v.percentile(50) for k, v in self.timer.stats.items()}
            e2e = self._e2e[source_id].percentile(50)
        return HudInfo(
            stage_ms={k: med[k] for k in HUD_STAGES if k in med},
            end_to_end_ms=e2e,
            fps=self._fps[source_id].fps,
            dropped=self.slots.dropped[source_id],
            backend=self.engine.backend,
            precision=self.engine.precision,
            status=self.sources[source_id].status,
        )

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
            except Aborted:
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

    def _capture(self, sid: int) -> None:
        cfg = self.cfg
        it: Iterator[Frame] = iter(self.sources[sid])
        t_start = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if self.abort_event.is_set():
                    raise Aborted
                limit = self.limits[sid]
                if limit and self._read[sid] >= limit:
                    if all(lim and r >= lim for r, lim in zip(self._read, self.limits)):
                        self.stop("max_frames")
                    break
                if cfg.duration and time.monotonic() - t_start >= cfg.duration:
                    self.stop("duration")
                    break
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                cap_ms = (time.perf_counter() - t0) * 1e3
                self._record("capture", cap_ms)
                self._read[sid] += 1
                self.slots.put(sid, (frame, cap_ms))
        finally:
            self.slots.end(sid)

    def _infer(self) -> None:
        cfg = self.cfg
        while True:
            items = self.slots.take(cfg.batch, self.push_timeout_s)
            if not items:
                break
            labels, t = self.labeller.label([f.image for _, (f, _) in items])
            n = len(items)
            # A batched call is timed once; each frame is charged its share, so per-frame stage times sum
            # to the wall time the stage took.
            share = {"preprocess": t.preprocess / n, "inference": t.inference / n, "postprocess": t.postprocess / n}
            share.update({k: v / n for k, v in t.extra.items()})
            many = self.label_sources
            for (sid, (frame, cap_ms)), labs in zip(items, labels):
                for k, v in share.items():
                    self._record(k, v)
                extra: dict[str, Any] = {}
                if self.steps:
                    t0 = time.perf_counter()
                    labs, extra = run_steps(self.steps, sid, frame.index, labs)
                    self._record("post_label", (time.perf_counter() - t0) * 1e3)
                res = FrameResult(
                    frame.index,
                    frame.capture_time,
                    labs,
                    {"capture": cap_ms, **share},
                    source_id=sid if many else None,
                    media_time=frame.media_time,
                    extra=extra,
                )
                self._put_out((sid, frame, res))
        self._put_out(_END)

    def _put_out(self, item: Any) -> None:
        """Blocking put that gives up when the run is aborted (so no thread hangs on a dead consumer)."""
        while True:
            if self.abort_event.is_set():
                raise Aborted
            try:
                self.q_out.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

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
                if self.abort_event.is_set():
                    raise Aborted
                try:
                    item = self.q_out.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                self._write_one(*item)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def _write_one(self, sid: int, frame: Frame, res: FrameResult) -> None:
        img = frame.image
        t0 = time.perf_counter()
        image_sinks = self._image_sinks[sid]
        if image_sinks:  # nobody sees the drawing otherwise
            for a in self.annotators[sid]:
                img = a.annotate(img, res)
        t1 = time.perf_counter()
        res.timings["overlay"] = (t1 - t0) * 1e3
        for s in image_sinks:
            s.write(img, res)
        t2 = time.perf_counter()
        res.timings["write"] = (t2 - t1) * 1e3
        res.timings["end_to_end"] = max(0.0, (time.monotonic() - frame.capture_time) * 1e3)
        for k in ("overlay", "write", "end_to_end"):
            self._record(k, res.timings[k])
        with self._timer_lock:
            self._e2e[sid].add(res.timings["end_to_end"])
        for s in self._data_sinks[sid]:
            s.write(img, res)
        self.report.frames_written += 1
        self._written[sid] += 1
        self.fps.tick()
        self._fps[sid].tick()
        now = time.monotonic()
        if now - self._last_stats >= self.cfg.stats_every_s:
            self._last_stats = now
            stats = self.stats_dict()
            for s in self._all_sinks:
                s.update_stats(stats)
        for s in self._all_sinks:
            if s.key_pressed() in QUIT_KEYS:
                self.stop("key")

    def stats_dict(self) -> dict[str, Any]:
        """The HUD numbers as a plain dict (for the browser page and logs); per source when there are several."""
        h = self.hud_info(0)
        d: dict[str, Any] = {
            "stages_ms": {k: round(v, 2) for k, v in h.stage_ms.items()},
            "end_to_end_ms": _rounded(h.end_to_end_ms),
            "fps": _rounded(self.fps.fps),
            "dropped": sum(self.slots.dropped),
            "frames_written": self.report.frames_written,
            "backend": h.backend,
            "precision": h.precision,
            "status": h.status,
            "mode": self.labeller.mode,
        }
        if len(self.sources) > 1:
            d["sources"] = [
                {
                    "source_id": i,
                    "fps": _rounded(hi.fps),
                    "end_to_end_ms": _rounded(hi.end_to_end_ms),
                    "dropped": hi.dropped,
                    "status": hi.status,
                }
                for i, hi in ((i, self.hud_info(i)) for i in range(len(self.sources)))
            ]
        return d

    # -------------------------------------------------------------------------------------------- run
    def run(self) -> PipelineReport:
        """Run to the end (or a stop); close every source and sink; return the report.

        Ctrl-C in the calling thread is a stop (``stopped_by == "interrupt"``), not an exception; errors
        from the worker threads are re-raised here after everything is closed.
        """
        t0 = time.perf_counter()
        threads: list[threading.Event] = []
        try:
            threads = [
                self._worker(functools.partial(self._capture, i), f"capture{i}") for i in range(len(self.sources))
            ]
            loop = [self._worker(self._infer, "infer"), self._worker(self._write, "write")]
            threads += loop
            interrupts = 0
            # The run is over when the labelling and writing threads are: a capture thread blocked in a read
            # (a stalled camera) is released by closing its source in _close_all.
            while not all(done.is_set() for done in loop):
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
        self._finish_report()
        if self._errors:
            raise self._errors[0]
        return self.report

    def _finish_report(self) -> None:
        rep = self.report
        rep.stopped_by = self._stop_reason or "end"
        rep.frames_read = sum(self._read)
        # Frames captured but never labelled (a capture thread's last read after the loop stopped) count as dropped,
        # so every source's frames read = written + dropped.
        dropped = [self.slots.dropped[i] + self.slots.leftover(i) for i in range(len(self.sources))]
        rep.frames_dropped = sum(dropped)
        rep.frames_failed = sum(int(s.decode_errors) for s in self.sources)
        rep.reconnects = sum(int(s.reconnects) for s in self.sources)
        with self._timer_lock:
            summary = self.timer.summary()
            e2e = [st.run_summary() if st.count else {} for st in self._e2e]
        rep.end_to_end_ms = summary.pop("end_to_end", {})
        rep.stages = summary
        secs = rep.seconds
        rep.sources = [
            SourceReport(
                source_id=i,
                name=str(getattr(s, "name", i)),
                frames_read=self._read[i],
                frames_written=self._written[i],
                frames_dropped=dropped[i],
                frames_failed=int(s.decode_errors),
                reconnects=int(s.reconnects),
                fps=self._written[i] / secs if secs > 0 else 0.0,
                end_to_end_ms={k: v for k, v in e2e[i].items() if k in ("p50", "p90", "p99", "max", "mean")},
            )
            for i, s in enumerate(self.sources)
        ]

    def _close_all(self, threads: list[threading.Event]) -> None:
        """Close sinks (flushing what they hold) and the sources, even if a worker is stuck in a read."""
        self.stop_event.set()
        for src in self.sources:
            try:
                src.close()
            except Exception as e:  # noqa: BLE001 - closing must not hide the run's own outcome
                self._errors.append(e)
        for done in threads:
            done.wait(timeout=2.0)
        for s in self._all_sinks:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001
                self._errors.append(e)


def _rounded(v: float) -> float | None:
    return round(v, 2) if v == v else None


def run_pipeline(
    labeller: Labeller,
    sources: FrameSource | Sequence[FrameSource],
    sinks: Sequence[Sink] = (),
    cfg: PipelineConfig | None = None,
    steps: Sequence[PostLabelStep] = (),
    source_sinks: Sequence[Sequence[Sink]] = (),
    annotators: Sequence[Any] = (),
    limits: Sequence[int] = (),
    label_sources: bool | None = None,
) -> PipelineReport:
    """Run the threaded loop over ``sources`` into ``sinks`` (all closed at the end); see :class:`Pipeline`."""
    return Pipeline(labeller, sources, sinks, cfg, steps, source_sinks, annotators, limits, label_sources).run()
