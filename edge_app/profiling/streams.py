"""Streams per machine, measured like NVIDIA's KPI tables: N live sources in one batched loop against the same
N as N separate ``live`` processes (the jetson-inference way), side by side in one run.

Each measurement waits until every stream has written a frame, lets ``warmup`` seconds pass, then counts over
a window of ``seconds``: per stream the frames written whose capture time falls in the window (FPS), the gaps in
their frame indices (drops: an index counts frames read, so a gap is a frame dropped), and the end-to-end
latency the loop measured; CPU time is read at the window's edges (this process for the batched loop, the sum
of all N processes for the other way). Both ways read the same kind of record (frame index, capture time,
end-to-end ms), so one function computes both rows. ``time.monotonic`` is CLOCK_MONOTONIC, one clock for every
process of the machine, so child processes' capture times compare with ours.

:func:`search` steps N through ``steps`` for each way until a run no longer holds the sources' rate
(FPS per stream >= ``hold_ratio`` x rate and 0 drops); :func:`measure_stall` stalls one source for ``stall_s``
mid-window and reports how much the other sources' FPS fell.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from edge_app.errors import FieldError, shown
from edge_app.frames.labellers import Labeller
from edge_app.frames.pipeline import Pipeline, PipelineConfig
from edge_app.profiling.streams_results import (
    WAYS,
    Rec,
    StallResult,
    StreamsBenchReport,
    StreamsConfig,
    StreamsRow,
    make_row,
    stream_uri,
    window_stats,
)
from edge_app.video.base import Frame, FrameSource, SinkBase
from edge_app.video.jsonl import JsonlSink, complete_lines, read_jsonl

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
STOP_TIMEOUT_S = 15.0  # after Ctrl-C, how long the N processes together get to finish before they are killed


# --------------------------------------------------------------------------------------------- one run
class _Running(Protocol):
    """What :func:`_measure` needs of a run in progress."""

    def started(self) -> bool: ...  # every stream has written a frame
    def cpu_s(self) -> float: ...  # CPU seconds so far
    def check(self) -> None: ...  # raise if the run failed
    def stop(self) -> list[list[Rec]]: ...  # stop, wait, and return each stream's records


def _measure(
    run: _Running, cfg: StreamsConfig, on_window: Callable[[float, float], Any] | None = None
) -> tuple[list[list[Rec]], float, float, float]:
    """Wait for the start, the warm-up and the window; return (records, t0, t1, CPU seconds in the window)."""
    try:
        deadline = time.monotonic() + cfg.start_timeout_s
        while not run.started():
            run.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every stream wrote a frame within {cfg.start_timeout_s:g} s")
            time.sleep(0.05)
        t0 = time.monotonic() + cfg.warmup
        _sleep_until(t0, run)
        c0, t0 = run.cpu_s(), time.monotonic()
        if on_window is not None:
            on_window(t0, t0 + cfg.seconds)
        _sleep_until(t0 + cfg.seconds, run)
        c1, t1 = run.cpu_s(), time.monotonic()
        _sleep_until(t1 + cfg.grace_s, run)
    except BaseException:
        try:
            run.stop()
        except Exception:  # noqa: BLE001 - the first failure is the one to show
            pass
        raise
    return run.stop(), t0, t1, c1 - c0


def _sleep_until(t: float, run: _Running) -> None:
    while (left := t - time.monotonic()) > 0:
        run.check()
        time.sleep(min(left, 0.1))


class _RecordSink(SinkBase):
    """Keeps (frame index, capture time, end-to-end ms) per source: the batched loop's records."""

    takes_images = False  # a data sink: written after the image sinks, so end_to_end is set

    def __init__(self, n: int) -> None:
        self.recs: list[list[Rec]] = [[] for _ in range(n)]

    def write(self, frame: Any, result: Any) -> None:
        self.recs[result.source_id or 0].append((result.index, result.capture_time, result.timings["end_to_end"]))

    def close(self) -> None:
        pass


class _Batched:
    """Every source in one loop at batch N (DeepStream's batch-size = number of sources), on its own thread."""

    def __init__(self, labeller: Labeller, sources: Sequence[FrameSource], jsonl: Path | None) -> None:
        self.rec = _RecordSink(len(sources))
        try:
            sinks: list[Any] = [JsonlSink(jsonl)] if jsonl else []
            self.p = Pipeline(labeller, sources, [*sinks, self.rec], PipelineConfig(batch=len(sources)))
        except BaseException:
            for s in sources:  # the loop owns them only once it runs
                s.close()
            raise
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="streams-batched", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.p.run()
        except BaseException as e:  # noqa: BLE001 - re-raised in the measuring thread
            self.errors.append(e)

    def started(self) -> bool:
        return all(self.rec.recs)

    def cpu_s(self) -> float:
        t = os.times()
        return t.user + t.system

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]
        if not self.thread.is_alive():
            raise RuntimeError(f"the batched loop ended early ({self.p.report.stopped_by or 'no frames'})")

    def stop(self) -> list[list[Rec]]:
        self.p.stop("bench")
        self.thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]
        return self.rec.recs


def measure_batched(
    labeller: Labeller,
    sources: Sequence[FrameSource],
    cfg: StreamsConfig,
    workdir: Path | None = None,
    on_window: Callable[[float, float], Any] | None = None,
) -> tuple[StreamsRow, list[list[Rec]]]:
    """All ``sources`` in one loop at batch N (closed at the end); returns its row and the raw records."""
    jsonl = Path(workdir) / f"batched-{len(sources)}.jsonl" if cfg.jsonl and workdir is not None else None
    recs, t0, t1, cpu = _measure(_Batched(labeller, sources, jsonl), cfg, on_window)
    return make_row("batched", recs, t0, t1, cpu, cfg, len(sources)), recs


# --------------------------------------------------------------------------------------------- processes
Command = Callable[[StreamsConfig, int, Path], Sequence[str]]


def live_command(cfg: StreamsConfig, i: int, jsonl: Path) -> list[str]:
    """Stream ``i`` as its own ``run.py live`` process at batch 1, writing only JSON lines."""
    limit = cfg.start_timeout_s + cfg.warmup + cfg.seconds + cfg.grace_s + 60  # a safety net: we stop it first
    return [
        sys.executable, str(RUN_PY), "live", "--engine", cfg.engine, "--mode", cfg.mode,
        "--backend", cfg.backend, "--precision", cfg.precision, "--source", stream_uri(cfg.source, i),
        "--width", str(cfg.width), "--height", str(cfg.height), "--fps", f"{cfg.fps:g}",
        "--batch", "1", "--duration", f"{limit:g}", "--jsonl", str(jsonl),
    ]  # fmt: skip


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process (all its threads) from /proc; 0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3, utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C stops it even when we were started with SIGINT ignored (a background
    job of a script), since Python keeps an inherited SIG_IGN and `live` would then never see the stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _first_line_seen(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"\n" in f.read(1 << 16)
    except OSError:
        return False


class _Processes:
    """One ``live`` process per stream, started at once, each writing its own JSON lines; logs beside them."""

    def __init__(self, cfg: StreamsConfig, n: int, workdir: Path, command: Command) -> None:
        self.paths = [workdir / f"process-{n}-{i}.jsonl" for i in range(n)]
        self.logs = [workdir / f"process-{n}-{i}.log" for i in range(n)]
        self.procs: list[subprocess.Popen] = []
        self._seen = [False] * n
        try:
            for i in range(n):
                with open(self.logs[i], "wb") as log:
                    self.procs.append(
                        subprocess.Popen(
                            list(command(cfg, i, self.paths[i])),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            preexec_fn=_default_sigint,
                        )
                    )
        except BaseException:
            self.stop()
            raise

    def started(self) -> bool:
        self._seen = [s or _first_line_seen(p) for s, p in zip(self._seen, self.paths)]
        return all(self._seen)

    def cpu_s(self) -> float:
        return sum(_proc_cpu_s(p.pid) for p in self.procs)

    def check(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                tail = self.logs[i].read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"process {i} exited with {p.returncode} mid-run: {' | '.join(tail)}")

    def stop(self) -> list[list[Rec]]:
        for p in self.procs:  # Ctrl-C: `live` stops, writes what is queued and closes its JSON lines
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S  # one deadline for all: a stuck process costs it once
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return [read_records(path) for path in self.paths]


def read_records(path: Path) -> list[Rec]:
    """(frame, capture time, end-to-end ms) of a single-source JSON-lines file (lines with a source_id skipped)."""
    out = []
    for d in read_jsonl(path) if complete_lines(path) else []:
        t = d.get("timings_ms", {})
        if "source_id" not in d and "end_to_end" in t:
            out.append((int(d["frame"]), float(d["capture_time"]), float(t["end_to_end"])))
    return out


def measure_processes(cfg: StreamsConfig, n: int, workdir: Path, command: Command = live_command) -> StreamsRow:
    """``n`` streams as ``n`` processes started at once, each at batch 1 with its own JSON lines."""
    recs, t0, t1, cpu = _measure(_Processes(cfg, n, Path(workdir), command), cfg)
    return make_row("processes", recs, t0, t1, cpu, cfg, 1)


# --------------------------------------------------------------------------------------------- stall
class StallingSource:
    """A live source that, once armed, hands over nothing for ``seconds`` (a camera that hangs), then goes on."""

    def __init__(self, inner: FrameSource, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self._at: float | None = None
        self._closed = threading.Event()
        self.stall: tuple[float, float] | None = None  # (last frame before, first frame after), monotonic

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def arm(self, at: float) -> None:
        """Stall at the first frame after monotonic time ``at``."""
        self._at = at

    def __iter__(self) -> Iterator[Frame]:
        last = 0.0
        for f in self.inner:
            if self._at is not None and self.stall is None and time.monotonic() >= self._at:
                if self._closed.wait(self.seconds):
                    return
                self.stall = (last, 0.0)
                continue  # the frame held through the stall is stale: a hung camera's next frame is new
            if self.stall is not None and not self.stall[1]:
                self.stall = (self.stall[0], f.capture_time)
            last = f.capture_time
            yield f

    def close(self) -> None:
        self._closed.set()
        self.inner.close()


def measure_stall(
    labeller: Labeller, sources: Sequence[FrameSource], cfg: StreamsConfig, workdir: Path | None = None
) -> StallResult:
    """The batched loop over ``sources`` with the first one stalled for ``cfg.stall_s`` mid-window."""
    if cfg.seconds < cfg.stall_s + 2:
        raise FieldError("seconds", shown(cfg.seconds), f"must be at least the stall ({cfg.stall_s:g} s) + 2 s")
    if len(sources) < 2:
        raise ValueError("a stall check needs at least 2 sources: one stalls, the others are watched")
    stalling = StallingSource(sources[0], cfg.stall_s)
    window: list[float] = []

    def arm(t0: float, t1: float) -> None:
        window[:] = [t0, t1]
        stalling.arm(t0 + (t1 - t0 - cfg.stall_s) / 2)

    _, recs = measure_batched(labeller, [stalling, *sources[1:]], cfg, workdir, on_window=arm)
    if stalling.stall is None or not stalling.stall[1]:
        raise RuntimeError("the stalled source never came back within the window; give the run more seconds")
    (a, b), (t0, t1) = stalling.stall, window
    others = recs[1:]
    during = window_stats(others, a, b)[0]
    before, after = window_stats(others, t0, a)[0], window_stats(others, b, t1)[0]
    outside = [(x * (a - t0) + y * (t1 - b)) / max(t1 - t0 - (b - a), 1e-9) for x, y in zip(before, after)]
    drops = [100.0 * (1 - d / o) if o > 0 else 100.0 for d, o in zip(during, outside)]
    return StallResult(
        streams=len(recs),
        stalled_s=b - a,
        others_fps_outside=statistics.fmean(outside),
        others_fps_during=statistics.fmean(during),
        worst_drop_pct=max(drops),
        stalled_frames_after=sum(1 for r in recs[0] if r[1] >= b),
    )


# --------------------------------------------------------------------------------------------- search
Measure = Callable[[str, int], StreamsRow]


def search(
    cfg: StreamsConfig, measure: Measure, ways: Sequence[str] = WAYS, on_row: Callable[[StreamsRow], Any] | None = None
) -> list[StreamsRow]:
    """Step N through ``cfg.steps``, both ways side by side at each N, until each way fails to hold the rate."""
    alive, rows = list(ways), []
    for n in cfg.steps:
        for way in list(alive):
            row = measure(way, n)
            rows.append(row)
            if on_row is not None:
                on_row(row)
            if not row.holds:
                alive.remove(way)
        if not alive:
            break
    return rows


def run_streams_bench(
    cfg: StreamsConfig,
    ways: Sequence[str] = WAYS,
    stall: bool = True,
    on_row: Callable[[StreamsRow], Any] | None = None,
    command: Command = live_command,
) -> StreamsBenchReport:
    """Open the engine once for the batched loop, search both ways, then stall one of the most streams held."""
    from edge_app.frames.labellers import make_labeller
    from edge_app.profiling.machine import machine_info, machine_line
    from edge_app.runtime import open_engine
    from edge_app.video.sources import open_source

    bad = [w for w in ways if w not in WAYS]
    if bad or not ways:
        raise FieldError("ways", shown(list(ways)), f"must name some of {', '.join(WAYS)}")

    def sources(n: int) -> list[FrameSource]:
        return [
            open_source(stream_uri(cfg.source, i), width=cfg.width, height=cfg.height, fps=cfg.fps, pace=True)
            for i in range(n)
        ]

    engine = open_engine(cfg.engine, cfg.backend, cfg.precision, use="latency", batch=cfg.steps[-1])
    with engine, tempfile.TemporaryDirectory(prefix="streams-bench-") as tmp:
        lab = make_labeller(engine, cfg.mode)
        work = Path(tmp)

        def measure(way: str, n: int) -> StreamsRow:
            if way == "batched":
                return measure_batched(lab, sources(n), cfg, work)[0]
            return measure_processes(cfg, n, work, command)

        rows = search(cfg, measure, ways, on_row)
        result = None
        if stall and "batched" in ways:
            n = max(2, max((r.streams for r in rows if r.way == "batched" and r.holds), default=2))
            result = measure_stall(lab, sources(n), cfg, work)
        return StreamsBenchReport(cfg, engine.description, machine_line(machine_info()), tuple(rows), result)
