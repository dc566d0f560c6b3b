"""Shared setup: the plugin is found through GST_PLUGIN_PATH (set by make test)."""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))

Gst.init(None)


@pytest.fixture
def run():
    """Runs a pipeline description to EOS (or fails on error/timeout); returns the pipeline."""

    def _run(desc, timeout_s=10, before=None):
        pipeline = Gst.parse_launch(desc)
        if before:
            before(pipeline)
        bus = pipeline.get_bus()
        pipeline.set_state(Gst.State.PLAYING)
        msg = bus.timed_pop_filtered(timeout_s * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        pipeline.set_state(Gst.State.NULL)
        assert msg is not None, f"{desc}: timed out"
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            pytest.fail(f"{desc}: {err.message} ({dbg})")
        return pipeline

    return _run
