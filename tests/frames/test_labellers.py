"""Labeller modes: the registry, a mode added from outside the library, engine checks, field-named config
errors (flag-named in the CLI), and the picklable spec that rebuilds a labeller in another process."""

from __future__ import annotations

import dataclasses
import inspect
import json
import multiprocessing
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from edge_app.cli import main as cli_main
from edge_app.errors import FieldError
from edge_app.frames.labellers import (
    ClassifyConfig,
    ClassifyLabeller,
    Labeller,
    LabellerSpec,
    ModeConfig,
    TileConfig,
    TileLabeller,
    get_mode,
    make_labeller,
    mode_names,
    register_mode,
    unregister_mode,
)
from edge_app.frames.pipeline import PipelineConfig, run_pipeline
from edge_app.frames.postprocess import softmax
from edge_app.frames.results import Label
from edge_app.geometry import to_batch
from edge_app.video.sinks import JsonlSink
from tests.frames.fakes import LABELS, FakeDetEngine, FakeEngine, FakeSource, RecordingSink


# ------------------------------------------------------------------------------------------------ toy modes
# Written the way a new mode file would be, but here in the test: nothing in edge_app/ names them.
@dataclass(frozen=True)
class WholeFrameConfig(ModeConfig):
    min_score: float = 0.5  # below this, a frame gets no label

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise FieldError("min_score", f"{self.min_score:g}", "is not a probability; e.g. 0.5")


class WholeFrameLabeller(Labeller):
    """The best class as one box around the whole frame (its context is the frame sizes)."""

    config_type = WholeFrameConfig
    config: WholeFrameConfig

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        return to_batch(frames, self.spec), [(f.shape[1], f.shape[0]) for f in frames]

    def decode(self, outputs: dict[str, np.ndarray], sizes: Any) -> list[list[Label]]:
        out = []
        for p, (w, h) in zip(softmax(outputs["logits"]), sizes):
            c = int(p.argmax())
            out.append(
                [Label(c, self.names[c], float(p[c]), (0.0, 0.0, float(w), float(h)))]
                if p[c] >= self.config.min_score
                else []
            )
        return out


class DetsLabeller(Labeller):
    """What a detector mode looks like: task 'detect', reads ``dets``, scales boxes to frame pixels."""

    task = "detect"
    outputs = ("dets",)

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        return to_batch(frames, self.spec), [
            (f.shape[1] / self.spec.width, f.shape[0] / self.spec.height) for f in frames
        ]

    def decode(self, outputs: dict[str, np.ndarray], scales: Any) -> list[list[Label]]:
        return [
            [
                Label(int(c), self.names[int(c)], float(s), (x1 * sx, y1 * sy, x2 * sx, y2 * sy))
                for x1, y1, x2, y2, s, c in rows
                if s > 0
            ]
            for rows, (sx, sy) in zip(outputs["dets"], scales)
        ]


@pytest.fixture()
def toy_modes() -> Iterator[None]:
    register_mode("wholeframe")(WholeFrameLabeller)
    register_mode("toydet")(DetsLabeller)
    try:
        yield
    finally:
        unregister_mode("wholeframe")
        unregister_mode("toydet")


# ------------------------------------------------------------------------------------------------ registry
def test_registry_lists_classify_and_tiles_with_their_configs() -> None:
    assert mode_names()[:2] == ("classify", "tiles")
    assert get_mode("classify") is ClassifyLabeller and ClassifyLabeller.config_type is ClassifyConfig
    assert get_mode("tiles") is TileLabeller and TileLabeller.config_type is TileConfig
    assert isinstance(make_labeller(FakeEngine(), "tiles").config, TileConfig)  # None: the mode's defaults


def test_unknown_mode_is_one_sentence_naming_the_field() -> None:
    with pytest.raises(FieldError, match=r"^mode 'nope' is unknown; choose one of classify, tiles, detect$") as e:
        make_labeller(FakeEngine(), "nope")
    assert e.value.field == "mode"


def test_a_mode_registered_outside_the_library_runs_through_the_pipeline(toy_modes: None, tmp_path: Path) -> None:
    assert "wholeframe" in mode_names()
    eng, sink = FakeEngine(), RecordingSink()
    js = JsonlSink(tmp_path / "out.jsonl")
    lab = make_labeller(eng, "wholeframe", WholeFrameConfig(min_score=0.9))
    rep = run_pipeline(lab, FakeSource(n=10, size=(64, 48)), [sink, js], PipelineConfig(batch=4))
    assert rep.mode == "wholeframe" and rep.frames_written == 10 and eng.calls == [4, 4, 2]
    for r in sink.results:  # FakeSource frame i is filled with (i * 7) % 256; the fake engine calls > 127 a circle
        want = "circle" if (r.index * 7) % 256 > 127 else "background"
        assert [(lab.name, lab.box) for lab in r.labels] == [(want, (0.0, 0.0, 64.0, 48.0))]
        assert {"preprocess", "inference", "postprocess"} <= set(r.timings)
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["labels"][0]["box"] == [0.0, 0.0, 64.0, 48.0]


def test_a_detector_mode_runs_on_a_detect_engine_and_scales_boxes(toy_modes: None) -> None:
    sink = RecordingSink()
    rep = run_pipeline(
        make_labeller(FakeDetEngine(size=32), "toydet"),
        FakeSource(n=3, size=(128, 64)),
        [sink],
        PipelineConfig(batch=2),
    )
    assert rep.frames_written == 3
    assert [[(lab.name, lab.box) for lab in r.labels] for r in sink.results] == [
        [("circle", (32.0, 16.0, 96.0, 48.0))]
    ] * 3
    assert "h2d" in sink.results[0].timings  # the engine's own split reaches the frame's timings


def test_modes_refuse_an_engine_of_another_task_in_one_sentence(toy_modes: None) -> None:
    with pytest.raises(
        FieldError,
        match=r"^mode 'classify' needs a classify engine, but engine 'fakedet' has task 'detect'; "
        r"modes for detect engines: 'detect', 'toydet'$",
    ):
        make_labeller(FakeDetEngine(), "classify")
    with pytest.raises(
        FieldError, match=r"^mode 'toydet' needs a detect engine, but engine 'fake' has task 'classify'"
    ):
        make_labeller(FakeEngine(), "toydet")


def test_a_mode_refuses_an_engine_without_the_output_it_reads() -> None:
    eng = FakeEngine()
    eng.meta.outputs = ["probs"]
    with pytest.raises(
        FieldError, match=r"^mode 'classify' reads the engine output logits, but engine 'fake' outputs probs"
    ):
        make_labeller(eng, "classify")


def test_tiles_needs_a_background_class() -> None:
    eng = FakeEngine()
    eng.meta.labels = [n for n in LABELS if n != "background"] + ["other"]
    with pytest.raises(
        FieldError, match=r"^mode 'tiles' needs a 'background' class, but engine 'fake' has classes circle, "
    ):
        make_labeller(eng, "tiles")


def test_label_times_each_stage_once_and_adds_the_engines_split() -> None:
    lab = make_labeller(FakeEngine(delay_s=0.01), "classify", ClassifyConfig(top_k=2))
    labels, t = lab.label([np.zeros((48, 64, 3), np.uint8)] * 3)
    assert [len(x) for x in labels] == [2, 2, 2] and labels[0][0].name == "background"
    assert t.inference >= 10.0 and t.preprocess >= 0 and t.postprocess >= 0
    assert lab.label([]) == ([], type(t)())


def test_register_mode_checks_the_class_it_is_given() -> None:
    @dataclass
    class Loose:  # a mutable config: a shared default could be changed under another run's feet
        top_k: int = 3

    class Another(ClassifyLabeller):
        pass

    class LooseConfig(ClassifyLabeller):
        config_type = Loose  # type: ignore[assignment]

    with pytest.raises(
        ValueError, match="mode 'classify' is already registered by edge_app.frames.modes.classify.ClassifyLabeller"
    ):
        register_mode("classify")(Another)
    with pytest.raises(ValueError, match="must be lower-case"):
        register_mode("Bad Name")(Another)
    with pytest.raises(TypeError, match="decorates a Labeller subclass"):
        register_mode("thing")(dict)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="config_type must be a frozen dataclass subclassing ModeConfig"):
        register_mode("thing")(LooseConfig)
    assert "thing" not in mode_names() and get_mode("classify") is ClassifyLabeller


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    "make,field,message",
    [
        (lambda: ClassifyConfig(top_k=0), "top_k", r"^top_k 0 must be at least 1"),
        (lambda: ClassifyConfig(top_k=2.5), "top_k", r"^top_k 2.5 is not a whole number"),
        (lambda: TileConfig(grid=(0, 3)), "grid", r"^grid 0x3 needs 1 to 32 columns and rows"),
        (lambda: TileConfig(scales=(1.0, 0.0)), "scales", r"^scales 1,0 is out of range; use values in \(0, 1\]"),
        (lambda: TileConfig(conf=2.0), "conf", r"^conf 2 is not a probability"),
        (lambda: TileConfig(iou=-0.1), "iou", r"^iou -0.1 is not an overlap fraction"),
        (lambda: TileConfig(min_votes=0), "min_votes", r"^min_votes 0 must be at least 1"),
        (lambda: PipelineConfig(batch=0), "batch", r"^batch 0 must be at least 1"),
        (lambda: PipelineConfig(max_frames=-1), "max_frames", r"^max_frames -1 must be at least 0"),
        (lambda: PipelineConfig(duration=-1.0), "duration", r"^duration -1 must be 0 \(no limit\) or more seconds"),
        (
            lambda: make_labeller(FakeEngine(), "tiles", ClassifyConfig()),
            "mode_config",
            r"^mode_config ClassifyConfig does not configure mode 'tiles'; pass a TileConfig",
        ),
        (
            lambda: LabellerSpec("engines/x", "classify", TileConfig()),
            "mode_config",
            r"^mode_config TileConfig does not configure",
        ),
    ],
)
def test_library_errors_name_the_field_not_a_flag(make: Callable[[], Any], field: str, message: str) -> None:
    with pytest.raises(FieldError, match=message) as e:
        make()
    assert e.value.field == field and "--" not in str(e.value)


def test_configs_are_frozen_and_resolved_once() -> None:
    cfg = PipelineConfig()
    assert LabellerSpec("engines/x", "tiles").mode_config == TileConfig()  # None became the mode's defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TileConfig().conf = 0.1  # type: ignore[misc]
    assert TileConfig(grid=[2, 2], scales=[1]).grid == (2, 2)  # lists from JSON become the declared tuples


def test_no_function_of_the_frame_loop_defaults_to_a_mutable_config() -> None:
    import edge_app.annotate.video
    import edge_app.eval.boxes
    import edge_app.frames.labellers
    import edge_app.frames.modes.base
    import edge_app.frames.pipeline

    found = []
    for mod in (
        edge_app.annotate.video,
        edge_app.eval.boxes,
        edge_app.frames.labellers,
        edge_app.frames.modes.base,
        edge_app.frames.pipeline,
    ):
        for name, fn in inspect.getmembers(mod, inspect.isfunction) + [
            (f"{c}.__init__", cls.__init__) for c, cls in inspect.getmembers(mod, inspect.isclass)
        ]:
            for p in inspect.signature(fn).parameters.values():
                d = p.default
                if dataclasses.is_dataclass(d) and not type(d).__dataclass_params__.frozen:  # type: ignore[attr-defined]
                    found.append(f"{mod.__name__}.{name}({p.name}=...)")
    assert not found


def test_field_errors_survive_pickling_as_a_worker_sends_them_back() -> None:
    e = pickle.loads(pickle.dumps(FieldError("batch", "0", "must be at least 1; e.g. 8")))
    assert isinstance(e, FieldError) and e.field == "batch" and str(e) == "batch 0 must be at least 1; e.g. 8"
    assert str(e.reworded({"batch": "--batch"})) == "--batch 0 must be at least 1; e.g. 8"
    assert e.reworded({}) is e


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "args,match",
    [
        (["--top-k", "0"], r"^error: --top-k 0 must be at least 1"),
        (["--iou", "1.5"], r"^error: --iou 1.5 is not an overlap fraction"),
        (["--max-frames", "-1"], r"^error: --max-frames -1 must be at least 0"),
        (["--duration", "-1"], r"^error: --duration -1 must be 0 \(no limit\) or more seconds"),
        (["--scales", "1.0,big"], r"^error: --scales: tile scales '1.0,big' are not a comma-separated list"),
    ],
)
def test_cli_errors_name_the_flag(
    args: list[str], match: str, tiny_engine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["live", "--engine", str(tiny_engine), "--source", "synthetic", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re_search(match, err)
    assert "top_k" not in err and "max_frames" not in err


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def _engine_copy(src: Path, dst: Path, **meta_changes: Any) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(meta_changes)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def test_cli_names_the_mode_flag_when_the_engine_does_not_fit(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    det = _engine_copy(tiny_engine, tmp_path / "det", task="detect")
    assert cli_main(["live", "--engine", str(det), "--source", "synthetic", "--max-frames", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --mode 'classify' needs a classify engine, but engine 'tiny' has task 'detect'; ")
    labels = json.loads((tiny_engine / "meta.json").read_text())["labels"]
    nobg = _engine_copy(tiny_engine, tmp_path / "nobg", labels=[n if n != "background" else "nothing" for n in labels])
    assert (
        cli_main(["live", "--engine", str(nobg), "--source", "synthetic", "--mode", "tiles", "--max-frames", "2"]) == 2
    )
    assert capsys.readouterr().err.startswith("error: --mode 'tiles' needs a 'background' class")


# ------------------------------------------------------------------------------------------------ spec
def _label_in_worker(blob: bytes) -> list[list[str]]:
    """A worker process: unpickle the spec, open the engine there, label two frames."""
    spec = pickle.loads(blob)
    frames = [np.zeros((48, 64, 3), np.uint8), np.full((48, 64, 3), 200, np.uint8)]
    with spec.build() as lab:
        labels, _ = lab.label(frames)
    return [[lab.name for lab in per_frame] for per_frame in labels]


def test_spec_pickles_and_builds_here(tiny_engine: Path) -> None:
    spec = LabellerSpec(
        tiny_engine, "tiles", TileConfig(grid=(2, 1), scales=(1.0,)), backend="onnxruntime", precision="fp32"
    )
    back = pickle.loads(pickle.dumps(spec))
    assert (
        back == spec
        and back.engine_path == str(tiny_engine)
        and back.mode_config == TileConfig(grid=(2, 1), scales=(1.0,))
    )
    with back.build() as lab:
        assert isinstance(lab, TileLabeller) and lab.config == spec.mode_config
        assert lab.engine.backend == "onnxruntime"
        labels, t = lab.label([np.zeros((96, 160, 3), np.uint8)])
        assert len(labels) == 1 and lab.tiles_per_frame == 2 and t.inference > 0
    assert lab.engine._closed  # the labeller opened the engine, so it closed it
    assert LabellerSpec(tiny_engine).mode_config == ClassifyConfig()


def test_spec_rebuilds_the_labeller_in_another_process(tiny_engine: Path, tmp_path: Path) -> None:
    spec = LabellerSpec(tiny_engine, "classify", ClassifyConfig(top_k=2), backend="onnxruntime", precision="fp32")
    labels = json.loads((tiny_engine / "meta.json").read_text())["labels"]
    nobg = _engine_copy(tiny_engine, tmp_path / "nobg", labels=[n if n != "background" else "nothing" for n in labels])
    bad = LabellerSpec(nobg, "tiles", backend="onnxruntime", precision="fp32")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = pool.submit(_label_in_worker, pickle.dumps(spec)).result(timeout=120)
        assert len(got) == 2 and all(len(names) == 2 and set(names) <= set(labels) for names in got)
        with pytest.raises(FieldError, match=r"^mode 'tiles' needs a 'background' class") as e:
            pool.submit(_label_in_worker, pickle.dumps(bad)).result(timeout=120)
    assert e.value.field == "mode" and "--" not in str(e.value)  # a worker's error names the field, never a flag


def test_the_labeller_carries_the_mode_and_its_settings_through_the_pipeline() -> None:
    eng = FakeEngine()
    lab = make_labeller(eng, "classify", ClassifyConfig(top_k=1))
    sink = RecordingSink()
    rep = run_pipeline(lab, FakeSource(n=3), [sink], PipelineConfig())
    assert rep.frames_written == 3 and rep.mode == "classify" and all(len(r.labels) == 1 for r in sink.results)
    assert not hasattr(PipelineConfig(), "mode")  # loop settings only: nothing to disagree with the labeller
