"""`live` with several sources, tracking and the view's token: through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.cli import main as cli_main


def _lines(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def test_two_sources_one_loop_one_jsonl_with_source_ids(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    jl, out = tmp_path / "live.jsonl", tmp_path / "grid.mp4"
    code = cli_main(
        ["live", "--engine", str(tiny_engine), "--source", "synthetic?seed=1&frames=12", "--source",
         "synthetic?seed=2&frames=8", "--jsonl", str(jl), "--save", str(out), "--backend", "onnxruntime"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = _lines(jl)
    by_source = {sid: [ln["frame"] for ln in lines if ln["source_id"] == sid] for sid in (0, 1)}
    assert by_source[0] and by_source[1]  # both sources labelled in one run
    assert all(b == sorted(b) for b in by_source.values())  # each source counts its own frames
    assert "batch 2" in printed and "source 1 synthetic" in printed and out.is_file()


def test_a_streams_file_and_tracking_on_a_detector(det_engine: Path, tmp_path: Path, capsys) -> None:
    streams = tmp_path / "cams.streams"
    streams.write_text("synthetic?seed=3&frames=10\n")
    jl = tmp_path / "t.jsonl"
    code = cli_main(
        ["live", "--engine", str(det_engine), "--mode", "detect", "--source", str(streams), "--jsonl", str(jl),
         "--track", "bytetrack", "--track-min-hits", "1", "--conf", "0.05", "--line", "gate=0,300,1279,300"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    lines = _lines(jl)
    assert len(lines) == 10 and all("counts" in ln and "gate" in ln["counts"] for ln in lines)
    assert "source_id" not in lines[0]  # one source: lines as before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--track", "bytetrack"], r"--track needs boxes, but classify mode labels whole frames"),
        (["--line", "0,0,5,5"], r"--line counts and writes track IDs; add --track bytetrack"),
        (
            ["--source", "synthetic?seed=9", "--mot", "m.txt"],
            r"--mot writes one source's tracks but 2 sources are given",
        ),
        (["--source", "synthetic"], r"source 'synthetic' is given twice"),
        (["--serve", "127.0.0.1:0", "--token", "short"], r"--token must be 8 to 128 letters"),
    ],
)
def test_bad_multi_source_and_tracking_input_is_one_sentence(
    extra: list[str], message: str, tiny_engine: Path, tmp_path: Path, capsys
) -> None:
    code = cli_main(["live", "--engine", str(tiny_engine), "--source", "synthetic", "--max-frames", "3", *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    import re

    assert re.search(message, err), err
