"""edge_app: ResNet recognition on the edge (TensorRT / ONNX Runtime / PyTorch) with an OpenCV frame loop."""

__version__ = "0.1.0"
