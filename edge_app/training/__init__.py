"""Training loops (classifier, detector), checkpoints, evaluation and detection metrics."""
