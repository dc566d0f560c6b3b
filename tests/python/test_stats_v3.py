"""stats-packed layout 3 (the RTP session columns) read from a live
rtpmuxserver whose two channels exchange RTP and RTCP, one of them sending
every packet twice so that packets-lost goes negative on both sides of the
RTCP exchange."""

import struct
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import rtpsynth  # noqa: E402
from conftest import wait_for  # noqa: E402

UNKNOWN = 2**64 - 1
UNKNOWN_SIGNED = -(2**63)
PACKETS = 50
DUP_SSRC = 0xD0D0D0D0


def pcmu(seq):
    """A 20 ms PCMU packet of SSRC DUP_SSRC."""
    header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, DUP_SSRC)
    return header + b"\xff" * 160


@pytest.fixture
def exchange():
    """rtpmuxserver with channels 0 and 1 on loopback, RTCP muxed every
    200 ms: an appsrc feeds sink_0 each packet twice, rtpsynthsrc feeds
    sink_1; each channel sends to the other."""
    p = Gst.parse_launch(
        "appsrc name=dup is-live=true format=time caps=application/x-rtp ! m.sink_0 "
        "rtpsynthsrc name=synth ptime=20 num-buffers=50 ! m.sink_1 "
        "rtpmuxserver name=m "
        "m.src_0 ! fakesink sync=false async=false m.src_1 ! fakesink sync=false async=false"
    )
    m = p.get_by_name("m")
    pads = [m.get_static_pad(f"sink_{i}") for i in range(2)]
    for pad in pads:
        pad.set_property("bind-address", "127.0.0.1")
        pad.set_property("clock-rate", 8000)
        pad.set_property("rtcp-interval", 200)
        pad.set_property("remote-address", "127.0.0.1")
        Gst.util_set_object_arg(pad, "rtcp", "mux")
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    ports = [pad.get_property("local-port") for pad in pads]
    assert all(ports)
    pads[0].set_property("remote-port", ports[1])
    pads[1].set_property("remote-port", ports[0])
    p.set_state(Gst.State.PLAYING)
    try:
        yield p, m
    finally:
        p.set_state(Gst.State.NULL)


def test_layout_3_decodes_live_session_columns_and_negative_losses(exchange):
    p, m = exchange
    dup = p.get_by_name("dup")
    for seq in range(PACKETS):
        packet = pcmu(seq)
        for _ in range(2):
            assert dup.emit("push-buffer", Gst.Buffer.new_wrapped(packet)) == Gst.FlowReturn.OK
        time.sleep(0.02)

    def rows():
        return {r["channel"]: r for r in rtpsynth.read(m, as_numpy=False)}

    # Channel 1 counts from the second sequence number (the first is on
    # probation): 49 expected, each received twice. Its reports carry the
    # negative count to channel 0.
    want = -(PACKETS - 1)
    assert wait_for(
        lambda: rows()[0]["remote-packets-lost"] == want and rows()[1]["packets-lost"] == want,
        timeout_s=10,
    ), rows()

    # No report after the one already due, so the two reads below (packed,
    # then the structure) see the same numbers.
    for i in range(2):
        m.get_static_pad(f"sink_{i}").set_property("rtcp-interval", 3_600_000)
    time.sleep(0.5)
    packed = m.get_property("stats-packed")
    columns = list(m.get_property("stats-columns"))
    # Layout 5 (the live element's): layout 3's session columns, with the
    # relay counters before them.
    assert rtpsynth.header(packed, columns) == (5, 1 + 14 + 31, 2)
    assert columns == rtpsynth.layout(5).names
    dicts = {r["channel"]: r for r in rtpsynth.to_dicts(packed, columns)}
    table = rtpsynth.to_numpy(packed, columns)
    assert table.dtype["packets-lost"] == np.dtype("<i8")
    assert table.dtype["remote-packets-lost"] == np.dtype("<i8")
    assert table.dtype["rtt-us"] == np.dtype("<u8")

    ch0, ch1 = dicts[0], dicts[1]
    assert ch1["packets-lost"] == want and ch1["packets-expected"] == PACKETS - 1
    assert ch1["rtp-packets-received"] == 2 * (PACKETS - 1)
    assert ch0["remote-packets-lost"] == want
    assert int(table["packets-lost"][list(table["channel"]).index(1)]) == want
    assert ch1["remote-ssrc"] == DUP_SSRC == ch0["local-ssrc"]
    for row in (ch0, ch1):
        assert row["sr-received"] > 0 and row["rtcp-sent"] > 0 and row["rtcp-received"] > 0
        assert row["rtcp-dropped"] == 0
    # Channel 0 hears rtpsynthsrc's clean stream.
    assert ch0["packets-lost"] == 0 and ch0["jitter-us"] != UNKNOWN
    assert ch0["rtt-us"] != UNKNOWN and ch0["rtt-us"] < 100_000

    # The packed rows hold exactly what the structure holds, signed
    # columns as int64 on both sides.
    structure = m.get_property("stats")
    for channel, row in dicts.items():
        per_channel = structure.get_value(f"channel-{channel}")
        for name in columns[1:]:
            assert per_channel.get_value(name) == row[name], (channel, name)
    assert structure.get_value("packets-lost") == sum(r["packets-lost"] for r in dicts.values())


def test_unknown_values_are_sentinels_in_both_signednesses():
    m = Gst.ElementFactory.make("rtpmuxserver")
    p = Gst.Pipeline()
    p.add(m)
    pad = m.request_pad_simple("src_%u")
    pad.set_property("bind-address", "127.0.0.1")
    p.set_state(Gst.State.PLAYING)
    try:
        (row,) = rtpsynth.read(m, as_numpy=False)
        assert row["remote-ssrc"] == UNKNOWN and row["rtt-us"] == UNKNOWN and row["mos"] == UNKNOWN
        assert row["remote-packets-lost"] == UNKNOWN_SIGNED
        assert row["packets-lost"] == 0
    finally:
        p.set_state(Gst.State.NULL)
