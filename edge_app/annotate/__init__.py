"""The application on top of the frame loop: annotate videos, photos and folders, locally or on Ray."""
