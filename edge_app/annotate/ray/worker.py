"""The worker side of ``annotate --ray``: the engine folder shipped as bytes, and the actor that annotates files.

Each actor writes its own copy of the engine folder, builds its labeller from the run's
:class:`~edge_app.frames.labellers.LabellerSpec` (the same ``build`` a local caller uses, with this actor's
share of the node's CPUs) and calls :func:`~edge_app.annotate.video.annotate_video` exactly as a local run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from edge_app.annotate.ray.options import FileJob, WorkerOutcome
from edge_app.engine_dir import ONNX_FILES, EngineDir
from edge_app.errors import UserError
from edge_app.frames.labellers import Labeller, LabellerSpec
from edge_app.frames.pipeline import PipelineConfig
from edge_app.video.jsonl import LineCounter


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


class AnnotateWorker:
    """One actor of the pool: a private copy of the engine folder, one labeller, one file at a time.

    Runs as a threaded actor so :meth:`progress` and :meth:`stop` answer while :meth:`annotate` works.
    """

    def __init__(self, spec: LabellerSpec) -> None:
        self.spec = spec  # the driver sets ``spinning`` per node (alone on a node, ONNX Runtime may spin)
        self._lab: Labeller | None = None
        self._dir: str | None = None
        self._stop = threading.Event()
        self._counter: LineCounter | None = None
        self._index = -1
        self.node = ""

    def start(self, files: dict[str, bytes]) -> dict[str, Any]:
        """Write the engine ``files`` here and build the labeller from the spec with this actor's share of the CPUs.

        ``files`` comes as an object-store reference that Ray resolves on this node, so the process starts
        (and imports) while the driver is still putting the bytes.
        """
        import cv2
        import ray

        cv2.setNumThreads(1)  # the frame loop has its own threads; OpenCV's pool would fight the engine for cores
        ctx = ray.get_runtime_context()
        cpus = ctx.get_assigned_resources().get("CPU", 1.0)
        threads = max(1, int(cpus))
        self.node = ray.util.get_node_ip_address()
        self._dir = tempfile.mkdtemp(prefix="edge_app-engine-")
        path = materialise_engine(files, Path(self.spec.engine_path).name or "engine", self._dir)
        self._lab = dataclasses.replace(self.spec, engine_path=str(path), threads=threads).build()
        engine = self._lab.engine
        return {
            "node": self.node,
            "node_id": ctx.get_node_id()[:8],
            "pid": os.getpid(),
            "engine": engine.description,
            "choice": engine.choice,
            "threads": threads,
            "gpus": ctx.get_accelerator_ids().get("GPU", []),
        }

    def annotate(self, job: FileJob, cfg: PipelineConfig, codec: str | None, tracking: Any = None) -> WorkerOutcome:
        """Annotate one file exactly as a local run does; a stop request ends it with resumable outputs.

        ``tracking``: a TrackingSpec; its steps are built fresh for this file, as a local run builds them.
        """
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
        steps, annotators = tracking.build() if tracking is not None else ([], [])
        try:
            r = annotate_video(
                _StopAware(self._lab, self._stop),  # type: ignore[arg-type]
                video,
                job.out_video,
                job.out_jsonl,
                cfg,
                resume=job.resume,
                codec=codec,
                steps=steps,
                annotators=annotators,
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
def remote_worker() -> Any:
    import ray

    # max_concurrency: annotate + progress + stop at once. No Ray restarts or task retries: the driver
    # retries the file itself, with resume, on whichever worker is free.
    return ray.remote(max_concurrency=4, max_restarts=0, max_task_retries=0)(AnnotateWorker)
