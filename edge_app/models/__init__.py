"""ResNet family with torchvision-compatible weights, and the CenterNet-style detector on it."""

from edge_app.models.detector import DetectorModel, DetectorNet, build_detector
from edge_app.models.registry import create_model, list_models, load_weights
from edge_app.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "create_model",
    "list_models",
    "load_weights",
    "DetectorNet",
    "DetectorModel",
    "build_detector",
]
