#!/usr/bin/python3
"""Time per poll of all statistics from Python (stock PyGObject), side by side:

- ours: one rtpmuxserver with N channels; one poll = one read of
  `stats-packed` decoded by the rtpsynth package into a numpy structured array
  (columns read once, as an application does);
- stock: N rtpsession elements (what rtpbin makes per session), each having
  seen RTP from one sender; one poll = each session's `stats` structure
  walked field by field into dicts, the way applications poll them today.

Prints mean, p99 and max over 200 polls for N = 100 and 1000, and the ratio.
Run by scripts/bench.sh, with PYTHONPATH=python for the rtpsynth package.
"""

import os
import statistics
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GObject, Gst  # noqa: E402

import rtpsynth  # noqa: E402

POLLS = int(os.environ.get("BENCH_POLLS", "200"))


def timed(poll, n=POLLS):
    poll()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        poll()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.mean(times), times[int(len(times) * 0.99) - 1], times[-1]


def ours(n):
    p = Gst.Pipeline()
    m = Gst.ElementFactory.make("rtpmuxserver")
    p.add(m)
    for ch in range(n):
        pad = m.request_pad_simple(f"src_{ch}")
        pad.set_property("bind-address", "127.0.0.1")
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    columns = list(m.get_property("stats-columns"))

    def poll():
        arr = rtpsynth.to_numpy(m.get_property("stats-packed"), columns)
        assert len(arr) == n

    result = timed(poll)
    p.set_state(Gst.State.NULL)
    return result


def walk(value):
    """A GValue from a stats structure, into plain Python, field by field."""
    if isinstance(value, Gst.Structure):
        return {value.nth_field_name(i): walk(value.get_value(value.nth_field_name(i)))
                for i in range(value.n_fields())}
    if isinstance(value, GObject.ValueArray):
        return [walk(value.get_nth(i)) for i in range(value.n_values)]
    return value


def stock(n):
    p = Gst.Pipeline()
    sessions = []
    segment = Gst.Segment.new()
    segment.init(Gst.Format.TIME)
    caps = Gst.Caps.from_string("application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0")
    for i in range(n):
        s = Gst.ElementFactory.make("rtpsession")
        p.add(s)
        sessions.append(s)
    p.set_state(Gst.State.PLAYING)
    for i, s in enumerate(sessions):
        # One received packet makes a remote source, as in a real call.
        pad = s.request_pad_simple("recv_rtp_sink")
        pad.send_event(Gst.Event.new_stream_start(f"s{i}"))
        pad.send_event(Gst.Event.new_caps(caps))
        pad.send_event(Gst.Event.new_segment(segment))
        data = bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0x10, i & 0xff]) + b"\xff" * 160
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = 0
        pad.chain(buf)

    def poll():
        out = [walk(s.get_property("stats")) for s in sessions]
        assert len(out) == n

    result = timed(poll)
    p.set_state(Gst.State.NULL)
    return result


def fmt(t):
    return f"{t * 1e6:9.1f} µs"


def main():
    Gst.init(None)
    print(f"# Python {sys.version.split()[0]}, PyGObject {gi.__version__}, {POLLS} polls each")
    for n in (100, 1000):
        om, op99, omax = ours(n)
        sm, sp99, smax = stock(n)
        print(f"stats poll, N={n:<5} ours stats-packed: mean {fmt(om)} p99 {fmt(op99)} max {fmt(omax)}"
              f" | stock rtpsession walk: mean {fmt(sm)} p99 {fmt(sp99)} max {fmt(smax)}"
              f" | ratio {sm / om:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
