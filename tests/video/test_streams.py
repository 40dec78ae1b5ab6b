"""Several sources from the command line: repeated --source and .streams files, one sentence per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.errors import UserError
from edge_app.video.streams import expand_sources, read_streams_file


def test_streams_files_expand_in_place_skipping_blanks_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "cams.streams"
    f.write_text("# two cameras\nrtsp://127.0.0.1:8554/a\n\n  synthetic?seed=2  \n")
    assert expand_sources(["0", str(f), "clip.mp4"]) == ["0", "rtsp://127.0.0.1:8554/a", "synthetic?seed=2", "clip.mp4"]


def test_a_source_given_twice_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(UserError, match=r"source '.*a.mp4' is given twice \(sources 1 and 2\)"):
        expand_sources([str(clip), str(tmp_path / "." / "a.mp4")])
    with pytest.raises(UserError, match=r"source 'synthetic' is given twice"):
        expand_sources(["synthetic", "synthetic"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"lists no sources; write one camera, file or URL per line"),
        ("# only a comment\n", r"lists no sources"),
        ("0\nnot a source here\n", r"line 2 of '.*bad.streams' \('not a source here'\) is not a source"),
    ],
)
def test_bad_streams_files_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.streams"
    f.write_text(text)
    with pytest.raises(UserError, match=message):
        read_streams_file(f)


def test_a_missing_streams_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cannot read the streams file '.*none.streams'"):
        expand_sources([str(tmp_path / "none.streams")])
