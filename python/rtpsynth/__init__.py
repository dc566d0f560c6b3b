"""rtpsynth: Python helpers for the ``rtpsynth`` GStreamer plugin."""

from .stats import LAYOUT_VERSION, LayoutError, header, raw, read, to_dicts, to_numpy

__all__ = ["LAYOUT_VERSION", "LayoutError", "raw", "header", "to_numpy", "to_dicts", "read"]
