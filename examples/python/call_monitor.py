#!/usr/bin/python3
"""A call monitor: N full-duplex calls through one rtpmuxserver (2N channels,
each leg fed by an rtpsynthsrc on one shared thread and received into an
rtpjbufdec), with a live table built once a second from ONE read of
`stats-packed`, decoded by the rtpsynth package in one call.

From the repository after `cargo build --release` (PYTHONPATH finds the
rtpsynth package in python/; after `meson install` it is not needed):

    GST_PLUGIN_PATH=target/release PYTHONPATH=python /usr/bin/python3 examples/python/call_monitor.py [--calls N] [--seconds S]
"""

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import rtpsynth  # noqa: E402

RTP_CAPS = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0"


def build(calls):
    p = Gst.Pipeline()
    m = Gst.ElementFactory.make("rtpmuxserver", "m")
    p.add(m)
    pads = []
    for ch in range(2 * calls):
        tx = m.request_pad_simple(f"sink_{ch}")
        rx = m.request_pad_simple(f"src_{ch}")
        tx.set_property("bind-address", "127.0.0.1")
        src = Gst.ElementFactory.make("rtpsynthsrc")
        src.set_property("shared-thread", "monitor")
        tail = Gst.parse_bin_from_description(
            f"capsfilter caps={RTP_CAPS} ! rtpjbufdec ! fakesink sync=false async=false", True)
        p.add(src)
        p.add(tail)
        src.get_static_pad("src").link(tx)
        rx.link(tail.get_static_pad("sink"))
        pads.append(tx)
    return p, m, pads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    Gst.init(None)
    p, m, pads = build(args.calls)
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    # Leg A (even channel) and leg B (odd channel) of a call send to each other.
    for a in range(0, len(pads), 2):
        for me, peer in ((a, a + 1), (a + 1, a)):
            pads[me].set_property("remote-address", "127.0.0.1")
            pads[me].set_property("remote-port", pads[peer].get_property("local-port"))
    p.set_state(Gst.State.PLAYING)

    columns = list(m.get_property("stats-columns"))
    print(f"{args.calls} calls, {2 * args.calls} channels; one stats-packed read per second")
    print(f"{'t/s':>4} {'recv/s':>9} {'sent/s':>9} {'q-full':>7} {'send-err':>8} {'worst ch':>9} {'poll µs':>8}")
    last = None
    for t in range(1, args.seconds + 1):
        time.sleep(1)
        t0 = time.perf_counter()
        rows = rtpsynth.read(m)  # one property read, one decode
        poll_us = (time.perf_counter() - t0) * 1e6
        if isinstance(rows, list):  # no numpy: list of dicts
            recv = sum(r["packets-received"] for r in rows)
            sent = sum(r["packets-sent"] for r in rows)
            qfull = sum(r["dropped-queue-full"] for r in rows)
            errs = sum(r["send-errors"] for r in rows)
            worst = min(rows, key=lambda r: r["packets-received"])["channel"]
        else:
            recv, sent = int(rows["packets-received"].sum()), int(rows["packets-sent"].sum())
            qfull, errs = int(rows["dropped-queue-full"].sum()), int(rows["send-errors"].sum())
            worst = int(rows["channel"][rows["packets-received"].argmin()])
        if last is not None:
            print(f"{t:>4} {recv - last[0]:>9} {sent - last[1]:>9} {qfull:>7} {errs:>8} {worst:>9} {poll_us:>8.0f}")
        last = (recv, sent)
    p.set_state(Gst.State.NULL)
    print(f"columns: {', '.join(columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
