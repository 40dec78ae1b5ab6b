from __future__ import annotations

import pytest
import torch

from edge_app.errors import UserError
from edge_app.models import create_model, list_models, load_weights

# torchvision.models.resnetNN(num_classes=1000) parameter counts.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
BLOCKS = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def torchvision_keys(arch: str) -> set[str]:
    """The state-dict keys torchvision's ResNet has, written out from its naming scheme."""
    bottleneck = arch in ("resnet50", "resnet101", "resnet152")
    convs = ("conv1", "conv2", "conv3") if bottleneck else ("conv1", "conv2")
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight", "fc.bias"} | {f"bn1.{k}" for k in bn}
    for li, n in enumerate(BLOCKS[arch], 1):
        for b in range(n):
            for c in convs:
                keys.add(f"layer{li}.{b}.{c}.weight")
                keys |= {f"layer{li}.{b}.bn{c[-1]}.{k}" for k in bn}
        if bottleneck or li > 1:
            keys.add(f"layer{li}.0.downsample.0.weight")
            keys |= {f"layer{li}.0.downsample.1.{k}" for k in bn}
    return keys


def test_registry_lists_five_architectures() -> None:
    assert list_models() == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.parametrize("arch", list(TORCHVISION_PARAMS))
def test_parameter_counts_and_keys_match_torchvision(arch: str) -> None:
    m = create_model(arch, num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == TORCHVISION_PARAMS[arch]
    assert set(m.state_dict()) == torchvision_keys(arch)


@pytest.mark.parametrize("arch,feat", [("resnet18", 512), ("resnet50", 2048)])
def test_forward_shapes(arch: str, feat: int) -> None:
    m = create_model(arch, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, feat, 2, 3)
        assert m.forward_head(f, pre_logits=True).shape == (2, feat)
        assert m(x).shape == (2, 7)


def test_unknown_arch_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown architecture 'resnet19'.*resnet18"):
        create_model("resnet19")


def test_weights_round_trip_and_head_replacement(tmp_path) -> None:
    src = create_model("resnet18", num_classes=1000)
    path = tmp_path / "tv.pth"
    torch.save(src.state_dict(), path)
    same = create_model("resnet18", num_classes=1000)
    assert load_weights(same, path)["head"] == "loaded"
    assert torch.equal(same.fc.weight, src.fc.weight)
    other = create_model("resnet18", num_classes=6)
    assert load_weights(other, path)["head"].startswith("replaced")
    assert torch.equal(other.conv1.weight, src.conv1.weight)
    assert other.fc.weight.shape == (6, 512)


def test_weights_of_wrong_architecture_are_refused(tmp_path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(create_model("resnet50", num_classes=10).state_dict(), path)
    with pytest.raises(
        UserError, match=r"do not fit resnet18 \(unexpected .layer1.0.conv3.weight.*these weights fit --arch resnet50"
    ):
        load_weights(create_model("resnet18"), path, "resnet18")


def test_not_a_weights_file(tmp_path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a zip or pickle")
    with pytest.raises(UserError, match="not a PyTorch weights file"):
        load_weights(create_model("resnet18"), path)
    with pytest.raises(UserError, match="does not exist"):
        load_weights(create_model("resnet18"), tmp_path / "missing.pth")
