"""The frame loop: pipeline threads, labelling modes, pre/postprocessing, overlays, annotate (local, photos, Ray)."""
