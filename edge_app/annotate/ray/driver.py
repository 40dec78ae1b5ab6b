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
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from edge_app.engine_dir import ONNX_FILES, EngineDir
from edge_app.errors import FieldError, UserError, shown
from edge_app.frames.labellers import Labeller, LabellerSpec
from edge_app.frames.pipeline import PipelineConfig

RAY_INSTALL = "pip install ray==2.60.0"  # ray core is enough: no dashboard, no Ray Data
POLL_S = 0.5  # progress poll and bar refresh
STOP_GRACE_S = 60.0  # after Ctrl-C, how long busy workers get to close their outputs before they are killed
START_TIMEOUT_S = 300.0  # a worker that has not opened its engine by then is given up (TensorRT builds take minutes)
_ADDRESS = re.compile(r"^(auto|\[?[A-Za-z0-9_.:-]+\]?:\d{1,5})$")


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RayOptions:
    """How the run uses Ray. Bad values raise :class:`FieldError` naming the field."""

    address: str | None = None  # None: start a local Ray instance sized to this machine; 'auto' or HOST:PORT: join
    workers: int = 0  # actors in the pool; 0: one per node (each holds one labeller)
    max_attempts: int = 3  # tries per file; a lost worker or node costs one
    # Engine open options that are not part of a LabellerSpec (TensorRT only), passed to every node.
    no_build: bool = False
    dla_core: int | None = None
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.address is not None and not _ADDRESS.match(self.address):
            hint = (
                "it names a file: put the inputs before --ray, or give the address first"
                if Path(self.address).exists()
                else "use auto or HOST:PORT of a cluster's head, e.g. 10.0.0.5:6379"
            )
            raise FieldError("address", f"'{self.address}'", f"is not a Ray address; {hint}")
        for name, low, fix in (("workers", 0, "0 = one per node"), ("max_attempts", 1, "e.g. 3")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise FieldError(name, shown(v), f"is not a whole number; {fix}")
            if v < low:
                raise FieldError(name, shown(v), f"must be at least {low}; {fix}")


@dataclass(frozen=True)
class FileJob:
    """One input and its outputs, as absolute paths (workers run in other folders)."""

    index: int
    video: str
    out_video: str
    out_jsonl: str
    resume: bool = False


@dataclass(frozen=True)
class WorkerOutcome:
    """What one attempt at one file did, as the worker saw it (counts include restored frames, as AnnotateResult's)."""

    index: int
    node: str
    pid: int
    frames_read: int
    frames_written: int
    frames_failed: int
    frames_restored: int
    seconds: float
    fps: float
    stopped_by: str
    already_complete: bool = False
    inference_p50_ms: float | None = None


@dataclass
class FileSummary:
    """Everything that happened to one input over the run (every attempt)."""

    job: FileJob
    total: int | None  # frames expected (the file's count, capped by max_frames); None: unknown
    attempts: int = 0
    done: int = 0  # frames with a complete JSON line, as last seen
    lost: list[str] = field(default_factory=list)  # nodes whose worker died on this file
    outcome: WorkerOutcome | None = None  # the last attempt that returned
    error: str = ""  # why this file was given up
    started: bool = False

    @property
    def complete(self) -> bool:
        o = self.outcome
        return o is not None and not self.error and o.stopped_by in ("end", "max_frames")


@dataclass
class RayRunResult:
    """The run: one :class:`FileSummary` per input, in input order."""

    files: list[FileSummary]
    seconds: float
    workers: list[dict[str, Any]]  # what each worker opened, where
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # workers lost or given up, said once each

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(f.complete for f in self.files)


# ---------------------------------------------------------------------------------------------- engine
def engine_files(engine: str | Path) -> dict[str, bytes]:
    """The files of an engine folder a worker needs, as bytes: meta.json, the ONNX models, checkpoint.pt.

    TensorRT plans (``plans/``) stay behind: they belong to one GPU and TensorRT version, so each node
    builds or finds its own.
    """
    ed = EngineDir(engine).require()
    names = ["meta.json", *sorted(set(ONNX_FILES.values())), "checkpoint.pt"]
    return {n: (ed.path / n).read_bytes() for n in names if (ed.path / n).is_file()}


def materialise_engine(files: dict[str, bytes], name: str, root: str | Path) -> Path:
    """Write ``files`` into ``root/name`` (a worker's private folder) and return that engine folder."""
    from edge_app.fsutil import atomic_write_bytes

    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    for n, data in files.items():
        if "/" in n or n.startswith("."):
            raise ValueError(f"engine file name '{n}' is not a plain file name")
        atomic_write_bytes(d / n, data)
    return d


# ---------------------------------------------------------------------------------------------- worker side
class _Stopped(Exception):
    """Raised inside the frame loop when the driver asked this worker to stop (Ctrl-C on the driver)."""


class _StopAware:
    """A labeller that raises :class:`_Stopped` at the next batch once ``stop`` is set; otherwise the same labeller."""

    def __init__(self, labeller: Labeller, stop: threading.Event) -> None:
        self._labeller, self._stop = labeller, stop

    def label(self, frames: list[Any]) -> Any:
        if self._stop.is_set():
            raise _Stopped
        return self._labeller.label(frames)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._labeller, name)


class LineCounter:
    """Complete lines of a growing file, read incrementally; a file replaced (resume rewrites it) is recounted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ino: int | None = None
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._ino, self._offset, self._lines = None, 0, 0
            return 0
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._ino, self._offset, self._lines = st.st_ino, 0, 0
        if st.st_size > self._offset:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
            self._offset += len(data)
            self._lines += data.count(b"\n")
        return self._lines


class AnnotateWorker:
    """One actor of the pool: a private copy of the engine folder, one labeller, one file at a time.

    Runs as a threaded actor so :meth:`progress` and :meth:`stop` answer while :meth:`annotate` works.
    """

    def __init__(self, spec: LabellerSpec, options: RayOptions, spinning: bool) -> None:
        self.spec, self.options, self.spinning = spec, options, spinning
        self._lab: Labeller | None = None
        self._dir: str | None = None
        self._stop = threading.Event()
        self._counter: LineCounter | None = None
        self._index = -1
        self.node = ""

    def start(self, files: dict[str, bytes]) -> dict[str, Any]:
        """Write the engine ``files`` here, open the engine with this actor's share of the CPUs, build the labeller.

        ``files`` comes as an object-store reference that Ray resolves on this node, so the process starts
        (and imports) while the driver is still putting the bytes.
        """
        import cv2
        import ray

        from edge_app.frames.labellers import make_labeller
        from edge_app.runtime import open_engine

        cv2.setNumThreads(1)  # the frame loop has its own threads; OpenCV's pool would fight the engine for cores
        ctx = ray.get_runtime_context()
        cpus = ctx.get_assigned_resources().get("CPU", 1.0)
        threads = max(1, int(cpus))
        self.node = ray.util.get_node_ip_address()
        self._dir = tempfile.mkdtemp(prefix="edge_app-engine-")
        path = materialise_engine(files, Path(self.spec.engine_path).name or "engine", self._dir)
        o = self.options
        engine = open_engine(
            path,
            self.spec.backend,
            self.spec.precision,
            self.spec.device,
            threads=threads,
            spinning=self.spinning,
            no_build=o.no_build,
            dla_core=o.dla_core,
            cuda_graphs=o.cuda_graphs,
            use=self.spec.use,
        )
        try:
            self._lab = make_labeller(engine, self.spec.mode, self.spec.mode_config, owns_engine=True)
        except BaseException:
            engine.close()
            raise
        return {
            "node": self.node,
            "node_id": ctx.get_node_id()[:8],
            "pid": os.getpid(),
            "engine": engine.description,
            "choice": engine.choice,
            "threads": threads,
            "gpus": ctx.get_accelerator_ids().get("GPU", []),
        }

    def annotate(self, job: FileJob, cfg: PipelineConfig, codec: str | None) -> WorkerOutcome:
        """Annotate one file exactly as a local run does; a stop request ends it with resumable outputs."""
        from edge_app.annotate.video import annotate_video, completed_results

        if self._lab is None:
            raise RuntimeError("AnnotateWorker.annotate called before start()")
        video = Path(job.video)
        if not video.is_file():
            raise UserError(
                f"input '{video}' is not on node {self.node}; every node must see the inputs at the same path "
                "(a shared folder), or run without --ray"
            )
        if self._stop.is_set():
            return WorkerOutcome(job.index, self.node, os.getpid(), 0, 0, 0, 0, 0.0, 0.0, "interrupt")
        self._index, self._counter = job.index, LineCounter(job.out_jsonl)
        try:
            r = annotate_video(
                _StopAware(self._lab, self._stop),  # type: ignore[arg-type]
                video,
                job.out_video,
                job.out_jsonl,
                cfg,
                resume=job.resume,
                codec=codec,
            )
        except _Stopped:
            done = len(completed_results(Path(job.out_jsonl)))
            return WorkerOutcome(job.index, self.node, os.getpid(), done, done, 0, 0, 0.0, 0.0, "interrupt")
        finally:
            self._index, self._counter = -1, None
        p50 = r.inference_ms.get("p50")
        return WorkerOutcome(
            job.index,
            self.node,
            os.getpid(),
            r.frames_read,
            r.frames_written,
            r.frames_failed,
            r.frames_restored,
            r.seconds,
            r.fps,
            r.stopped_by,
            r.already_complete,
            p50,
        )

    def progress(self) -> tuple[int, int]:
        """(index of the file being annotated or -1, its complete JSON lines so far)."""
        counter, index = self._counter, self._index
        return (index, counter.count()) if counter is not None else (-1, 0)

    def stop(self) -> None:
        """Finish the current file at its next batch with closed, resumable outputs; start no other."""
        self._stop.set()

    def close(self) -> None:
        """Close the labeller (and its engine) and remove the engine copy."""
        if self._lab is not None:
            self._lab.close()
            self._lab = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


@lru_cache(maxsize=1)
def _remote_worker() -> Any:
    import ray

    # max_concurrency: annotate + progress + stop at once. No Ray restarts or task retries: the driver
    # retries the file itself, with resume, on whichever worker is free.
    return ray.remote(max_concurrency=4, max_restarts=0, max_task_retries=0)(AnnotateWorker)


# ---------------------------------------------------------------------------------------------- driver side
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            f"--ray needs Ray, which is not installed here; install it with `{RAY_INSTALL}` "
            "(on every node of the cluster)"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """HOST:PORT must accept a TCP connection: one sentence instead of Ray's minute of retries."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as e:
        raise UserError(
            f"cannot reach a Ray cluster at '{address}' ({e.strerror or e}); start one with `ray start --head` "
            "on the head node and pass the address it prints, or leave out the address to run on this machine"
        ) from None


def connect(address: str | None) -> bool:
    """``ray.init`` a local instance (address None; returns True: this run owns it) or join ``address``."""
    import logging

    ray = _import_ray()
    if address is None:
        ray.init(
            num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True
        )
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        raise UserError(
            f"cannot join the Ray cluster at '{address}' ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "start one with `ray start --head` and pass its address, or leave out the address to run on this machine"
        ) from None
    return False


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


def plan_workers(nodes: list[dict[str, Any]], workers: int) -> list[tuple[str, dict[str, float], bool]]:
    """(node id, resources per actor, spinning) for each actor: spread round-robin over ``nodes``, each node's
    CPUs (and GPUs) split evenly among the actors it gets, so the pool never oversubscribes a node's cores."""
    alive = [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not alive:
        raise UserError("the Ray cluster has no live node with CPUs; check it with `ray status`")
    n = workers or len(alive)
    per_node = [0] * len(alive)
    for i in range(n):
        per_node[i % len(alive)] += 1
    plan = []
    for i in range(n):
        node = alive[i % len(alive)]
        k = per_node[i % len(alive)]
        res = node["Resources"]
        r = {"num_cpus": round(res["CPU"] / k, 4)}
        if res.get("GPU", 0) > 0:
            r["num_gpus"] = round(res["GPU"] / k, 4)
        # ONNX Runtime's spinning threads steal cores from a neighbour; alone on a node they cut latency.
        plan.append((node["NodeID"], r, k == 1))
    return plan


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
    ) -> None:
        self.ray, self.spec, self.cfg, self.codec, self.options, self.log = ray, spec, cfg, codec, options, log
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
        h = _remote_worker().options(**opts).remote(self.spec, self.options, spinning)
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
                s.task_ref = s.handle.annotate.remote(f.job, self.cfg, self.codec)

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
) -> RayRunResult:
    """Annotate ``jobs`` on a Ray cluster (``options.address``; None: a local instance) with labellers built
    from ``spec`` on each node; outputs and resume as :func:`~edge_app.annotate.video.annotate_video`.

    ``cfg`` is the loop configuration of every file (its progress bar is replaced by one for the run).
    Ray is connected here and disconnected (a local instance shut down) before returning.
    """
    ray = _import_ray()
    EngineDir(spec.engine_path).require()  # before any cluster work: a bad engine folder is one sentence here
    cfg = dataclasses.replace(cfg, progress=False)
    connect(options.address)
    try:
        return _Run(ray, spec, jobs, cfg, codec, options, progress, log).run()
    finally:
        ray.shutdown()  # disconnects; a local instance this run started stops with it


def make_jobs(inputs: list[Path], outputs: list[tuple[Path, Path]], resume: bool) -> list[FileJob]:
    """Jobs with absolute paths for the inputs and :func:`~edge_app.annotate.video.output_paths`' outputs."""
    return [
        FileJob(i, str(src.resolve()), str(v.resolve()), str(j.resolve()), resume)
        for i, (src, (v, j)) in enumerate(zip(inputs, outputs))
    ]


def format_summary(result: RayRunResult) -> list[str]:
    """One line per file (every frame accounted for: read, written, failed to decode, carried over a lost
    worker), the workers, and a total line."""
    lines = [
        f"worker on {w['node']} (node {w['node_id']}, pid {w['pid']}, {w['threads']} threads{', GPU ' + ','.join(map(str, w['gpus'])) if w['gpus'] else ''}): "
        f"{w['engine']}"
        for w in result.workers
    ]
    read = written = failed = fresh = 0
    for f in result.files:
        src, o = f.job.video, f.outcome
        lost = f" after {len(f.lost)} lost worker{'s' * (len(f.lost) != 1)} (on {', '.join(f.lost)})" if f.lost else ""
        tries = f", {f.attempts} attempts" if f.attempts > 1 else ""
        if f.error:
            done = f"; {f.done} frames were complete in {f.job.out_jsonl} (resumable)" if f.done else ""
            lines.append(f"{src}: FAILED{lost}{tries}: {f.error}{done}")
            continue
        if o is None:
            if f.started:  # stopped (Ctrl-C) before its worker answered, or its worker lost while stopping
                lines.append(f"{src}: interrupted at {f.done} complete frames{lost}; run again with --resume")
            else:
                lines.append(f"{src}: not started")
            continue
        if o.already_complete:
            lines.append(f"{src}: already complete ({o.frames_restored} frames in {f.job.out_jsonl}), skipped")
            continue
        if o.stopped_by == "interrupt":
            lines.append(f"{src}: interrupted at {o.frames_written} complete frames{lost}; run again with --resume")
            read, written = read + o.frames_read, written + o.frames_written
            continue
        carried = f", {o.frames_restored} carried over by resume{lost}" if o.frames_restored else ""
        total = f" of {f.total}" if f.total is not None else ""
        lines.append(
            f"{src}: annotated {o.frames_written}{total} frames ({o.frames_read} read, {o.frames_failed} failed to decode"
            f"{carried}{tries}) at {o.fps:.1f} frames/s on {o.node} -> {f.job.out_video}, {f.job.out_jsonl}"
        )
        read, written, failed = read + o.frames_read, written + o.frames_written, failed + o.frames_failed
        fresh += o.frames_written - o.frames_restored
    lines += [f"note: {n}" for n in result.notes]
    fps = fresh / result.seconds if result.seconds > 0 else 0.0
    ok = sum(f.complete for f in result.files)
    lines.append(
        f"total: {len(result.files)} files ({ok} complete), {read} frames read, {written} written, {failed} failed to decode, "
        f"{fps:.1f} frames/s over {result.seconds:.1f} s of cluster work"
    )
    return lines
