"""Labels, torchvision-format weights and the pretrained download (with file:// URLs: no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from edge_app.errors import UserError
from edge_app.models import create_model
from edge_app.models.labels import check_label_count, imagenet_labels, resolve_labels
from edge_app.models.weights import (
    LAYOUT,
    arch_of,
    fetch_pretrained,
    pretrained_entry,
    read_state_dict,
    torchvision_table,
)


def test_imagenet_labels_are_torchvisions_order() -> None:
    names = imagenet_labels()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
    assert names[134] == "crane bird" and names[517] == "crane"  # torchvision made these two unique


def test_labels_from_file_list_and_builtin(tmp_path: Path) -> None:
    f = tmp_path / "names.txt"
    f.write_text("cat\n\n dog \nbird\n")
    assert resolve_labels(str(f)) == ["cat", "dog", "bird"]
    assert resolve_labels("a, b,c") == ["a", "b", "c"]
    assert len(resolve_labels("imagenet")) == 1000


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("a,,b", "has an empty name"),
        ("a,b,a", "repeat the name 'a'"),
        ("missing.txt", "labels file 'missing.txt' does not exist"),
        ("cats", "neither imagenet, coco, a file, nor a comma-separated list"),
    ],
)
def test_bad_labels_are_one_sentence(spec: str, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        resolve_labels(spec)


def test_label_count_must_match_the_head() -> None:
    with pytest.raises(
        UserError, match=r"3 labels were given but the weights in 'w.pth' have 10 outputs \(fc\); pass 10 labels"
    ):
        check_label_count(["a", "b", "c"], 10, "w.pth")


@pytest.mark.parametrize("arch", list(LAYOUT))
def test_arch_is_recognised_from_the_keys(arch: str) -> None:
    assert arch_of(create_model(arch, num_classes=4).state_dict()) == arch


def test_checkpoint_style_files_and_module_prefixes_are_read(tmp_path: Path) -> None:
    sd = create_model("resnet18", num_classes=3).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "c.pth")
    got = read_state_dict(tmp_path / "c.pth")
    assert set(got) == set(sd)


def test_pretrained_table_has_every_resnet() -> None:
    table = torchvision_table()
    assert table["source"]["repo"] == "pytorch/vision"
    for arch in LAYOUT:
        e = pretrained_entry(arch)
        assert e["url"].startswith("https://download.pytorch.org/models/" + arch + "-")
        assert e["url"].endswith(f"-{e['sha256_prefix']}.pth") and e["crop_size"] == 224
    assert (
        pretrained_entry("resnet50")["name"] == "IMAGENET1K_V2" and pretrained_entry("resnet50")["resize_size"] == 232
    )
    assert pretrained_entry("resnet18", "IMAGENET1K_V1")["resize_size"] == 256
    with pytest.raises(
        UserError, match="resnet18 has no weights 'IMAGENET1K_V2'; choose DEFAULT or one of IMAGENET1K_V1"
    ):
        pretrained_entry("resnet18", "IMAGENET1K_V2")


def _hashed_weights(tmp_path: Path, arch: str = "resnet18") -> Path:
    src = tmp_path / "src" / "w.pth"
    src.parent.mkdir()
    torch.save(create_model(arch, num_classes=1000).state_dict(), src)
    prefix = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    named = src.with_name(f"{arch}-{prefix}.pth")
    src.rename(named)
    return named


def test_pretrained_download_is_hash_checked_and_cached(tmp_path: Path) -> None:
    f = _hashed_weights(tmp_path)
    cache = tmp_path / "cache"
    got = fetch_pretrained("resnet18", cache_dir=cache, url=f.as_uri())
    assert got == cache / f.name and got.read_bytes() == f.read_bytes()
    f.unlink()  # cached now: a second call needs no source
    assert fetch_pretrained("resnet18", cache_dir=cache, url=f.as_uri()) == got


def test_pretrained_with_a_bad_hash_keeps_nothing(tmp_path: Path) -> None:
    f = _hashed_weights(tmp_path)
    bad = f.with_name("resnet18-00000000.pth")
    f.rename(bad)
    with pytest.raises(UserError, match="failed its sha256 check"):
        fetch_pretrained("resnet18", cache_dir=tmp_path / "cache", url=bad.as_uri())
    assert not any((tmp_path / "cache").glob("*.pth"))


def test_pretrained_offline_names_the_url_and_weights(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "resnet18-f37072fd.pth").as_uri()
    with pytest.raises(
        UserError, match=r"cannot download file://.*resnet18-f37072fd.pth .*pass it with --weights FILE"
    ):
        fetch_pretrained("resnet18", cache_dir=tmp_path / "cache", url=url)
