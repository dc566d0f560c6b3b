"""rtpmuxserver through PyGObject: two channels on loopback, and the bulk
statistics (stats-packed) agreeing with the stats structure and the traffic."""

import time

from gi.repository import Gst

import rtpsynth_stats as rs

PACKETS = 50
PACKET_LEN = 12 + 80  # RTP header + 10 ms of PCMU


def build_echo():
    """rtpsynthsrc -> m.sink_0 -> UDP -> channel 1 -> m.src_1 -> fakesink."""
    p = Gst.Pipeline()
    m = Gst.ElementFactory.make("rtpmuxserver", "m")
    src = Gst.ElementFactory.make("rtpsynthsrc", "src")
    src.set_property("ptime", 10)
    src.set_property("num-buffers", PACKETS)
    sink = Gst.ElementFactory.make("fakesink", "sink")
    sink.set_property("sync", False)
    sink.set_property("async", False)
    for e in (m, src, sink):
        p.add(e)
    tx = m.request_pad_simple("sink_0")
    rx = m.request_pad_simple("src_1")
    for pad in (tx, rx):
        pad.set_property("bind-address", "127.0.0.1")
    assert src.get_static_pad("src").link(tx) == Gst.PadLinkReturn.OK
    assert rx.link(sink.get_static_pad("sink")) == Gst.PadLinkReturn.OK
    return p, m, tx, rx


def wait_for(pred, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_bulk_stats_agree_with_structure_and_traffic():
    p, m, tx, rx = build_echo()
    # Sockets are bound in PAUSED; a live source sends nothing before PLAYING.
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    port = rx.get_property("local-port")
    assert port > 0
    tx.set_property("remote-address", "127.0.0.1")
    tx.set_property("remote-port", port)
    p.set_state(Gst.State.PLAYING)

    def received():
        return rs.to_dicts(m.get_property("stats-packed"), list(m.get_property("stats-columns")))[1]["packets-received"]

    assert wait_for(lambda: received() == PACKETS), f"received {received()} of {PACKETS}"
    packed = m.get_property("stats-packed")
    columns = list(m.get_property("stats-columns"))
    structure = m.get_property("stats")
    p.set_state(Gst.State.NULL)

    rows = rs.to_dicts(packed, columns)
    assert [r["channel"] for r in rows] == [0, 1]
    ch0, ch1 = rows
    assert ch0["packets-sent"] == PACKETS and ch0["octets-sent"] == PACKETS * PACKET_LEN
    assert ch1["packets-received"] == PACKETS and ch1["octets-received"] == PACKETS * PACKET_LEN
    assert ch1["local-port"] == port
    assert ch0["dropped-queue-full"] == ch0["send-errors"] == 0

    # The bulk rows hold exactly what the readable structure holds.
    for row in rows:
        per_channel = structure.get_value(f"channel-{row['channel']}")
        for name in columns[1:]:
            assert per_channel.get_value(name) == row[name], (row["channel"], name)

    arr = rs.to_numpy(packed, columns)
    assert int(arr["packets-received"].sum()) == structure.get_value("packets-received") == PACKETS
