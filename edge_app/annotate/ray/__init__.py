"""annotate --ray: files spread over a Ray cluster, outputs and resume exactly as a local run."""
