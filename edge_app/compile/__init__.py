"""Export, calibration ranges, INT8 Q/DQ and FP16 models, the TensorRT ONNX rules check: checkpoint -> engine folder."""
