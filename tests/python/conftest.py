"""Shared setup: the plugin is found through GST_PLUGIN_PATH and the rtpsynth
package through PYTHONPATH (make test sets both to this tree's build and
python/)."""

import os
import time
from types import SimpleNamespace

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import pytest  # noqa: E402

SOURCE_PACKAGE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "python", "rtpsynth"))

try:
    import rtpsynth  # noqa: E402
except ImportError:
    pytest.exit("cannot import rtpsynth: run with PYTHONPATH=python (make test does)", returncode=4)
# An installed copy would shadow the tree's when PYTHONPATH is missing: the
# tests are of this tree's package.
if os.path.dirname(os.path.abspath(rtpsynth.__file__)) != SOURCE_PACKAGE:
    pytest.exit(f"rtpsynth comes from {rtpsynth.__file__}, not {SOURCE_PACKAGE}: put python/ first in PYTHONPATH",
                returncode=4)

Gst.init(None)

# What the echo fixture sends: ptime 10 ms packets of PCMU.
ECHO_PACKETS = 50
ECHO_PACKET_LEN = 12 + 80  # RTP header + 10 ms of PCMU


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


def wait_for(pred, timeout_s=5.0):
    """Polls `pred` every 20 ms until it holds (True) or `timeout_s` passes (False)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def echo():
    """A live rtpmuxserver with two channels on loopback after `packets`
    packets of `packet_len` bytes went from rtpsynthsrc through channel 0
    to channel 1 (and on to a fakesink): the namespace has those two, the
    pipeline `p`, the server `m`, channel 0's `tx` pad, channel 1's `rx` pad
    and the `port` rx is bound to. The pipeline is still PLAYING, with
    nothing more to send."""
    p = Gst.Pipeline()
    m = Gst.ElementFactory.make("rtpmuxserver", "m")
    src = Gst.ElementFactory.make("rtpsynthsrc", "src")
    src.set_property("ptime", 10)
    src.set_property("num-buffers", ECHO_PACKETS)
    sink = Gst.ElementFactory.make("fakesink", "sink")
    sink.set_property("sync", False)
    sink.set_property("async", False)
    for e in (m, src, sink):
        p.add(e)
    tx = m.request_pad_simple("sink_0")
    rx = m.request_pad_simple("src_1")
    for pad in (tx, rx):
        pad.set_property("bind-address", "127.0.0.1")
        # No report interval closes while a test runs (it would change
        # fraction-lost and mos between two reads that must agree).
        pad.set_property("rtcp-interval", 3_600_000)
    assert src.get_static_pad("src").link(tx) == Gst.PadLinkReturn.OK
    assert rx.link(sink.get_static_pad("sink")) == Gst.PadLinkReturn.OK
    # Sockets are bound in PAUSED; a live source sends nothing before PLAYING.
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    port = rx.get_property("local-port")
    assert port > 0
    tx.set_property("remote-address", "127.0.0.1")
    tx.set_property("remote-port", port)
    p.set_state(Gst.State.PLAYING)

    def received():
        return m.get_property("stats").get_value("packets-received")

    try:
        assert wait_for(lambda: received() == ECHO_PACKETS), f"received {received()} of {ECHO_PACKETS}"
        yield SimpleNamespace(packets=ECHO_PACKETS, packet_len=ECHO_PACKET_LEN, p=p, m=m, tx=tx, rx=rx, port=port)
    finally:
        p.set_state(Gst.State.NULL)
