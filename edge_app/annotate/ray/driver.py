"""``run.py annotate --ray [ADDRESS]``: spread the files of an ``annotate`` run over a Ray cluster.

One file is one unit of work. A pool of Ray actors (one per node unless ``workers`` says otherwise) each
holds one labeller, built where it runs from a :class:`~edge_app.frames.labellers.LabellerSpec`, so each
node opens its own fastest backend (a TensorRT plan is built per GPU, ``plans/`` is never shipped). Each
actor calls the same :func:`~edge_app.annotate.video.annotate_video` as a local run, so the outputs (atomic
writes, per-file JSON lines, annotated videos) and ``resume`` are exactly a local run's.

Why Ray Core actors and not Ray Data: the unit of work is a whole file whose outputs must be written in
frame order by one writer (an H.264 stream, JSON lines that ``--resume`` reads as a prefix), and what the
pool needs is a long-lived labeller per actor, a retry that resumes a file, a stop signal and a progress
count. Actors give all four in a few calls; Ray Data would cut files into rows and batches and need its own
sink to put them back in order, more machinery for no gain at one-file granularity.

What reaches the nodes, and how:

* The engine folder goes through Ray's object store, not a shared filesystem: ``meta.json``, the ONNX files
  and ``checkpoint.pt`` are read once by the driver, put into the object store as bytes, and written by each
  actor into a temporary folder of its own (removed when the actor closes).
* Inputs and outputs are paths: every node must see the inputs at the same path, and ``--out`` must be a
  folder every node can write (a shared or network folder). The driver checks that inputs exist on its own
  machine; a worker on a node where an input is missing fails that file with one sentence naming the node.
  Paths are made absolute on the driver, since workers run in other folders.
* The ``edge_app`` package, Ray and the backends must be installed on every node (as for a local run).

Faults and Ctrl-C:

* A worker process killed mid-file, or a node lost, loses no frame and writes none twice: the file goes
  back to the queue and is retried by another worker (a replacement actor is started on a live node) with
  ``resume=True``, which keeps the complete JSON lines, re-draws their frames into the video and continues
  at the first frame without a line. A file is tried at most ``max_attempts`` times.
* Ctrl-C reaches only the driver (Ray starts its processes with SIGINT blocked, ray/_private/services.py),
  which asks every busy worker to stop: its labeller raises at the next batch, the frame loop closes its
  sinks (the video is finalised, the JSON lines end with whole lines) and the run says to use ``--resume``.
  A second Ctrl-C kills the workers at once; the outputs are still resumable (``resume`` drops a torn line
  and re-draws the video from the lines).
* A partitioned node that Ray declares dead while its worker still writes could race the retry on the same
  output; Ray kills such a node's workers when it reconnects, but the window is not closed by this module.

Progress: the driver counts the frames of each input up front, polls each busy actor for the complete lines
of its current JSON-lines file (the frames done, restored ones included) and shows one bar for the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_app.annotate.ray.cluster import connect, import_ray, plan_workers
from edge_app.annotate.ray.options import FileJob, FileSummary, RayOptions, RayRunResult, WorkerOutcome
from edge_app.annotate.ray.worker import engine_files, remote_worker
from edge_app.engine_dir import EngineDir
from edge_app.errors import UserError
from edge_app.frames.labellers import LabellerSpec
from edge_app.frames.pipeline import PipelineConfig

POLL_S = 0.5  # progress poll and bar refresh
STOP_GRACE_S = 60.0  # after Ctrl-C, how long busy workers get to close their outputs before they are killed
START_TIMEOUT_S = 300.0  # a worker that has not opened its engine by then is given up (TensorRT builds take minutes)


@dataclass
class _Slot:
    """One actor of the pool, as the driver tracks it."""

    handle: Any
    resources: dict[str, float]
    spinning: bool
    info: dict[str, Any] = field(default_factory=dict)
    start_ref: Any = None
    task_ref: Any = None
    job: int = -1  # index of the file it annotates, -1 when idle
    created: float = field(default_factory=time.monotonic)


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a == b


def _frame_total(video: str, max_frames: int) -> int | None:
    from edge_app.video.sources import open_source

    try:
        src = open_source(video)
    except UserError:
        return None  # the worker says why, in the file's own error
    try:
        total = src.frame_count
    finally:
        src.close()
    if max_frames:
        total = min(max_frames, total) if total else max_frames
    return total


class _Run:
    """The driver's loop: start the pool, hand out files, retry lost ones with resume, stop on Ctrl-C."""

    def __init__(
        self,
        ray: Any,
        spec: LabellerSpec,
        jobs: list[FileJob],
        cfg: PipelineConfig,
        codec: str | None,
        options: RayOptions,
        progress: bool,
        log: Callable[[str], None],
        tracking: Any = None,
    ) -> None:
        self.ray, self.spec, self.cfg, self.codec, self.options, self.log = ray, spec, cfg, codec, options, log
        self.tracking = tracking  # a TrackingSpec: each file gets fresh steps on its worker
        self.files = [FileSummary(j, _frame_total(j.video, cfg.max_frames)) for j in jobs]
        self.pending: deque[int] = deque(range(len(jobs)))
        self.slots: list[_Slot] = []
        self.notes: list[str] = []
        self.replacements_left = max(1, len(jobs)) * options.max_attempts
        self.stopping = False
        self.files_ref: Any = None  # the engine folder's bytes in the object store
        self.bar = None
        if progress:
            from tqdm import tqdm

            totals = [f.total for f in self.files]
            self.bar = tqdm(
                total=sum(totals) if None not in totals else None,
                unit="frame",
                dynamic_ncols=True,  # type: ignore[arg-type]
                desc=f"{len(jobs)} file{'s' * (len(jobs) != 1)}",
            )

    # ------------------------------------------------------------------------------------------ pool
    def _new_slot(self, resources: dict[str, float], spinning: bool, node_id: str | None) -> _Slot:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts: dict[str, Any] = dict(resources)
        if node_id is not None:  # soft: a node that died meanwhile is no reason not to start elsewhere
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
        h = remote_worker().options(**opts).remote(dataclasses.replace(self.spec, spinning=spinning))
        s = _Slot(h, resources, spinning)
        if self.files_ref is not None:
            s.start_ref = h.start.remote(self.files_ref)
        self.slots.append(s)
        return s

    def _live(self) -> list[_Slot]:
        return [s for s in self.slots if s.handle is not None]

    def _lost(self, s: _Slot, why: str) -> None:
        """An actor died (its process or its node): requeue its file with resume, start a replacement."""
        node = s.info.get("node", "?")
        self.notes.append(f"worker pid {s.info.get('pid', '?')} on {node} was lost ({why})")
        if s.job >= 0:
            f = self.files[s.job]
            f.lost.append(node)
            if f.attempts >= self.options.max_attempts:
                f.error = f"given up after {f.attempts} attempts, each lost its worker ({why})"
            elif not self.stopping:
                # Its complete JSON lines are kept: the next worker resumes after them.
                f.job = dataclasses.replace(f.job, resume=True)
                self.pending.appendleft(s.job)
        try:
            self.ray.kill(s.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        s.handle, s.job, s.task_ref, s.start_ref = None, -1, None, None
        if not self.stopping and self.pending and self.replacements_left > 0:
            self.replacements_left -= 1
            self._new_slot(s.resources, s.spinning, None)

    def _dispatch(self) -> None:
        for s in self._live():
            if self.stopping or not self.pending:
                return
            if s.info and s.start_ref is None and s.task_ref is None:  # started and idle
                i = self.pending.popleft()
                f = self.files[i]
                f.attempts += 1
                f.started = True
                s.job = i
                s.task_ref = s.handle.annotate.remote(f.job, self.cfg, self.codec, self.tracking)

    # ------------------------------------------------------------------------------------------ events
    def _on_ready(self, ref: Any) -> None:
        ray = self.ray
        s = next(s for s in self.slots if _same(ref, s.start_ref) or _same(ref, s.task_ref))
        if _same(ref, s.start_ref):
            s.start_ref = None
            try:
                s.info = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(e.cause, BaseException) else e
                self._close_slot(s)
                if isinstance(cause, UserError) and not any(x.info or x.start_ref is not None for x in self._live()):
                    raise cause from None  # no worker could open the engine: the run cannot start
                self.notes.append(f"a worker could not open the engine: {cause}")
            except ray.exceptions.RayError as e:
                self._lost(s, type(e).__name__)
            return
        s.task_ref = None
        i, s.job = s.job, -1
        f = self.files[i]
        try:
            out: WorkerOutcome = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, BaseException) else None
            f.error = str(cause) if isinstance(cause, UserError) else f"{type(cause or e).__name__}: {cause or e}"
            return
        except ray.exceptions.RayError as e:
            s.job = i
            self._lost(s, type(e).__name__)
            return
        f.outcome = out
        f.done = out.frames_written if not out.already_complete else out.frames_restored

    def _close_slot(self, s: _Slot) -> None:
        try:
            self.ray.kill(s.handle, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
        s.handle = None

    def _poll_progress(self) -> None:
        busy = [s for s in self._live() if s.task_ref is not None]
        if not busy:
            return
        refs = [s.handle.progress.remote() for s in busy]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_S)
        for r in ready:
            try:
                i, lines = self.ray.get(r)
            except self.ray.exceptions.RayError:
                continue  # a dying worker: its task result says so
            if i >= 0:
                self.files[i].done = lines

    def _refresh_bar(self) -> None:
        if self.bar is not None:
            done = sum(f.done for f in self.files)
            self.bar.update(done - self.bar.n)

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> RayRunResult:
        ray = self.ray
        t0 = time.perf_counter()
        for node_id, res, spinning in plan_workers(ray.nodes(), self.options.workers):
            self._new_slot(res, spinning, node_id)  # the processes start while the engine is read and put
        self.files_ref = ray.put(engine_files(self.spec.engine_path))
        for s in self.slots:
            s.start_ref = s.handle.start.remote(self.files_ref)
        interrupted = False
        deadline: float | None = None
        interrupts = 0
        last_poll = 0.0
        while True:
            try:
                self._dispatch()
                live = self._live()
                waiting = [r for s in live for r in (s.start_ref, s.task_ref) if r is not None]
                busy = any(s.task_ref is not None for s in live)
                if not busy and (self.stopping or not self.pending):
                    break
                if not waiting:  # files left, nobody to do them
                    for i in self.pending:
                        self.files[i].error = self.files[i].error or "no worker was left to annotate it"
                    self.pending.clear()
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.notes.append(f"workers still busy {STOP_GRACE_S:.0f} s after Ctrl-C were killed")
                    break
                ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._on_ready(ref)
                self._check_start_timeout()
                if time.monotonic() - last_poll >= POLL_S:
                    last_poll = time.monotonic()
                    self._poll_progress()
                    self._refresh_bar()
            except KeyboardInterrupt:
                interrupts += 1
                interrupted = self.stopping = True
                if interrupts > 1:
                    self.notes.append("a second Ctrl-C killed the workers")
                    break
                self.log(
                    "stopping: workers finish their current batch and close their outputs (Ctrl-C again to kill them)"
                )
                self.pending.clear()
                deadline = time.monotonic() + STOP_GRACE_S
                for s in self._live():
                    s.handle.stop.remote()
        self._refresh_bar()
        if self.bar is not None:
            self.bar.close()
        self._shutdown_pool(graceful=not interrupts > 1)
        workers = [s.info for s in self.slots if s.info]
        return RayRunResult(self.files, time.perf_counter() - t0, workers, interrupted, self.notes)

    def _check_start_timeout(self) -> None:
        now = time.monotonic()
        for s in self._live():
            if s.start_ref is not None and now - s.created > START_TIMEOUT_S:
                self.notes.append(
                    f"a worker asking for {s.resources} did not start within {START_TIMEOUT_S:.0f} s; "
                    "the cluster may lack the resources (see `ray status`)"
                )
                self._close_slot(s)
                s.start_ref = None

    def _shutdown_pool(self, graceful: bool) -> None:
        ray = self.ray
        live = self._live()
        if graceful:
            refs = [s.handle.close.remote() for s in live if s.task_ref is None and s.start_ref is None]
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=10.0)
        for s in live:
            self._close_slot(s)


def annotate_on_ray(
    spec: LabellerSpec,
    jobs: list[FileJob],
    cfg: PipelineConfig,
    options: RayOptions,
    *,
    codec: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    tracking: Any = None,
) -> RayRunResult:
    """Annotate ``jobs`` on a Ray cluster (``options.address``; None: a local instance) with labellers built
    from ``spec`` on each node; outputs and resume as :func:`~edge_app.annotate.video.annotate_video`.

    ``cfg`` is the loop configuration of every file (its progress bar is replaced by one for the run).
    Ray is connected here and disconnected (a local instance shut down) before returning.
    """
    ray = import_ray()
    EngineDir(spec.engine_path).require()  # before any cluster work: a bad engine folder is one sentence here
    cfg = dataclasses.replace(cfg, progress=False)
    connect(options.address)
    try:
        return _Run(ray, spec, jobs, cfg, codec, options, progress, log, tracking).run()
    finally:
        ray.shutdown()  # disconnects; a local instance this run started stops with it


def make_jobs(inputs: list[Path], outputs: list[tuple[Path, Path]], resume: bool) -> list[FileJob]:
    """Jobs with absolute paths for the inputs and :func:`~edge_app.annotate.video.output_paths`' outputs."""
    return [
        FileJob(i, str(src.resolve()), str(v.resolve()), str(j.resolve()), resume)
        for i, (src, (v, j)) in enumerate(zip(inputs, outputs))
    ]
