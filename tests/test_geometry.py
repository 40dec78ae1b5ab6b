"""Host-side resizing: the two-step area average (`shrink`) against one INTER_AREA, and the resize policies."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.engine_dir import InputSpec
from edge_app.geometry import resize_to_input, shrink
from tests.helpers import photos


def test_shrink_by_whole_factors_is_exactly_one_inter_area(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    for size in ((64, 72), (128, 72), (640, 360)):  # 1280/64 and 720/72 etc. are whole: one fast-path resize
        assert np.array_equal(shrink(img, size), cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def test_shrink_is_close_to_one_inter_area_on_real_photographs(tmp_path: Path) -> None:
    diffs = []
    for p in photos(tmp_path):
        img = cv2.imread(str(p))
        for size in ((64, 64), (224, 224), (97, 61)):
            got = shrink(img, size)
            assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
            diffs.append(np.abs(got.astype(float) - cv2.resize(img, size, interpolation=cv2.INTER_AREA)).mean())
    # Both are box filters; the two-step kernel is slightly wider. Measured: 1.2 grey levels on average.
    assert np.mean(diffs) < 2.5 and max(diffs) < 8, diffs


def test_shrink_of_a_720p_frame_to_64_goes_through_the_whole_factor_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = cv2.resize

    def spy(img, size, interpolation):  # noqa: ANN001, ANN202
        calls.append((img.shape[1], img.shape[0], *size))
        return real(img, size, interpolation=interpolation)

    monkeypatch.setattr(cv2, "resize", spy)
    out = shrink(np.zeros((720, 1280, 3), np.uint8), (64, 64))
    assert out.shape == (64, 64, 3)
    assert calls == [(1280, 720, 64, 72), (64, 72, 64, 64)]  # 20x10 blocks first, then 72 -> 64 rows


@pytest.mark.parametrize("src", [(50, 40), (64, 50), (100, 30), (1, 1)])
def test_enlarging_is_bilinear(src: tuple[int, int], rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    assert np.array_equal(shrink(img, (64, 64)), cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("policy", ["stretch", "letterbox", "center_crop"])
def test_every_resize_policy_gives_the_model_size(policy: str, rng: np.random.Generator) -> None:
    spec = InputSpec(height=96, width=128, resize=policy)
    for h, w in ((720, 1280), (1080, 1920), (480, 640), (50, 70), (333, 1001)):
        out = resize_to_input(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), spec)
        assert out.shape == (96, 128, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
