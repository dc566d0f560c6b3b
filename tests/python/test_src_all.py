"""rtpmuxserver's src_all through PyGObject: channels on a shared port and
an IPv6 one, without src_N, reach an appsink in batches that rtpsynth
decodes into exactly the datagrams sent, with and without numpy."""

import json
import os
import socket
import struct
import subprocess
import sys

import pytest
from gi.repository import Gst

import rtpsynth

from conftest import wait_for


def rtp(seq, ssrc, size=40):
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes((seq + i) % 256 for i in range(size))


def pull_all(appsink, want):
    """(channel, (host, port), datagram) of every batch until `want` came, and how many buffers."""
    got, buffers = [], 0
    while len(got) < want:
        sample = appsink.emit("try-pull-sample", 5 * Gst.SECOND)
        assert sample is not None, f"{len(got)} of {want} datagrams came"
        caps = sample.get_caps().get_structure(0)
        assert caps.get_name() == "application/x-rtpmuxserver-batch"
        assert caps.get_value("layout") == rtpsynth.BATCH_LAYOUT_VERSION
        ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
        assert ok
        try:
            packets = rtpsynth.batch_packets(info.data)
            # The records view the mapped bytes: read them before the unmap.
            records = rtpsynth.batch_records(info.data)
            # The numpy records say what the tuples say.
            assert records["channel"].tolist() == [p[0] for p in packets]
            assert records["port"].tolist() == [p[1][1] for p in packets]
            assert records["length"].tolist() == [len(p[2]) for p in packets]
        finally:
            sample.get_buffer().unmap(info)
        got += packets
        buffers += 1
    return got, buffers


def test_src_all_batches_decode_to_the_datagrams_sent():
    p = Gst.parse_launch(
        "rtpmuxserver name=m tick=5 "
        "m.src_all ! appsink name=all sync=false max-buffers=0 emit-signals=false"
    )
    m = p.get_by_name("m")
    appsink = p.get_by_name("all")
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    port = 0
    for i in range(3):
        pad = m.request_pad_simple(f"sink_{i}")
        pad.set_property("bind-address", "127.0.0.1")
        pad.set_property("shared-socket", True)
        pad.set_property("bind-port", port)
        pad.set_property("remote-ssrc", 0x100 + i)
        port = pad.get_property("local-port")
    v6 = m.request_pad_simple("sink_3")
    v6.set_property("bind-address", "::1")
    p.set_state(Gst.State.PLAYING)
    try:
        peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        peers.append(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        for peer, host in zip(peers, ["127.0.0.1"] * 3 + ["::1"]):
            peer.bind((host, 0))
        targets = [("127.0.0.1", port)] * 3 + [("::1", v6.get_property("local-port"))]
        sent = {}
        for seq in range(5):
            for i, (peer, target) in enumerate(zip(peers, targets)):
                data = rtp(seq, 0x100 + i, size=20 + i)
                peer.sendto(data, target)
                sent.setdefault(i, []).append(data)
        got, buffers = pull_all(appsink, 20)
        assert len(got) == 20
        assert buffers < 20
        for i, peer in enumerate(peers):
            host, pport = peer.getsockname()[:2]
            mine = [d for (channel, source, d) in got if channel == i]
            assert mine == sent[i], f"channel {i}"
            assert {source for (channel, source, _) in got if channel == i} == {(host, pport)}
        assert wait_for(lambda: m.get_property("stats").get_value("packets-pushed") == 20)
    finally:
        p.set_state(Gst.State.NULL)


def test_bytes_of_another_layout_are_refused():
    header = struct.pack("<4I", 2, 0, 32, 0)
    with pytest.raises(rtpsynth.LayoutError):
        rtpsynth.batch_packets(header)
    with pytest.raises(rtpsynth.LayoutError):
        rtpsynth.batch_records(struct.pack("<4I", 1, 3, 32, 0))
    one = struct.pack("<4I", 1, 1, 32, 0) + struct.pack("<3IHBx16s", 0, 48, 10, 9, 4, bytes(16))
    with pytest.raises(rtpsynth.LayoutError):
        rtpsynth.batch_packets(one)
    with pytest.raises(rtpsynth.LayoutError):
        rtpsynth.batch_records(one)
    assert rtpsynth.batch_packets(one + bytes(10)) == [(0, ("0.0.0.0", 9), bytes(10))]


COLLECTOR = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "collector.py")


def test_collector_example_accounts_for_every_packet():
    r = subprocess.run([sys.executable, COLLECTOR, "--devices", "50", "--seconds", "1", "--json"],
                       capture_output=True, text=True, timeout=60, env=os.environ)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["devices"] == 50 and s["sent"] >= 50 * 40
    assert s["received"] == s["sent"] == s["packets-pushed"]
    assert s["uncounted"] == 0 and s["devices-short"] == 0 and s["dropped-unknown-source"] == 0
    # Batches, not a buffer per packet.
    assert s["packets-per-buffer"] > 1
