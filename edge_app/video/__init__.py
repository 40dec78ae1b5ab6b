"""Video sources (cameras, files, streams, synthetic) and sinks (files, JSON lines, window, MJPEG)."""
