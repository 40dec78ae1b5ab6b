"""ResNet family with torchvision-compatible weights."""

from edge_app.models.registry import create_model, list_models, load_weights
from edge_app.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "create_model", "list_models", "load_weights"]
