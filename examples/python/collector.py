#!/usr/bin/python3
"""A collector of many devices' RTP on one UDP port, read in batches.

Devices (here simulated with plain sockets, one per device, 50 packets/s
each) send to one port. `rtpmuxserver` gives each device a channel on that
shared port, told apart by its SSRC (`remote-ssrc`), and hands every
channel's packets to `src_all`: one buffer per worker round with all the
datagrams of the round. Python pulls one sample per round and reads its
index with one numpy call (`rtpsynth.batch_records`), whatever the number
of devices:

    rtpmuxserver tick=5 (sink_0 .. sink_N-1 on one port) src_all -> appsink

Run from the repository after `cargo build --release`:
    GST_PLUGIN_PATH=target/release PYTHONPATH=python /usr/bin/python3 \\
        examples/python/collector.py [--devices 200] [--seconds 5] [--json]

It prints what each device's channel received and checks it against what
the devices sent and the element's own counters; it exits with 1 when a
packet is unaccounted for.
"""

import argparse
import json
import socket
import struct
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import numpy  # noqa: E402

import rtpsynth  # noqa: E402

PPS = 50
PAYLOAD = bytes(160)  # 20 ms of PCMU


def device_ssrc(i):
    return 0x10000 + i


def send(devices, port, seconds, sent, stop):
    """Each device sends PPS packets a second to `port` until `seconds` pass."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(devices)]
    start = time.monotonic()
    seq = 0
    while not stop.is_set() and time.monotonic() - start < seconds:
        for i, s in enumerate(sockets):
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, device_ssrc(i))
            s.sendto(header + PAYLOAD, ("127.0.0.1", port))
            sent[i] += 1
        seq += 1
        time.sleep(max(0.0, start + seq / PPS - time.monotonic()))
    for s in sockets:
        s.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args()

    Gst.init(None)
    p = Gst.parse_launch("rtpmuxserver name=m tick=5 m.src_all ! appsink name=all sync=false max-buffers=0")
    m, appsink = p.get_by_name("m"), p.get_by_name("all")
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    port = 0
    for i in range(args.devices):
        pad = m.request_pad_simple(f"sink_{i}")
        pad.set_property("bind-address", "127.0.0.1")
        pad.set_property("shared-socket", True)
        pad.set_property("bind-port", port)
        pad.set_property("remote-ssrc", device_ssrc(i))
        port = pad.get_property("local-port")
    p.set_state(Gst.State.PLAYING)

    sent = [0] * args.devices
    stop = threading.Event()
    sender = threading.Thread(target=send, args=(args.devices, port, args.seconds, sent, stop))
    received = numpy.zeros(args.devices, dtype=numpy.uint64)
    octets = numpy.zeros(args.devices, dtype=numpy.uint64)
    buffers = 0
    sender.start()
    try:
        while True:
            sample = appsink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                # Done once the devices stopped and a second brought nothing.
                if not sender.is_alive():
                    break
                continue
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            if not ok:
                raise RuntimeError("cannot map a src_all buffer")
            try:
                records = rtpsynth.batch_records(info.data)
                numpy.add.at(received, records["channel"], 1)
                numpy.add.at(octets, records["channel"], records["length"])
            finally:
                buffer.unmap(info)
            buffers += 1
    finally:
        stop.set()
        sender.join()
    stats = m.get_property("stats")
    p.set_state(Gst.State.NULL)

    total_sent = sum(sent)
    total_received = int(received.sum())
    # What the element took but did not push (none here) and what the
    # kernel dropped on the shared socket are the only ways to lose one.
    counted = stats.get_value("dropped-downstream") + stats.get_value("dropped-kernel")
    uncounted = total_sent - total_received - counted
    result = {
        "devices": args.devices,
        "sent": total_sent,
        "received": total_received,
        "buffers": buffers,
        "packets-per-buffer": round(total_received / max(buffers, 1), 1),
        "octets-received": int(octets.sum()),
        "packets-pushed": stats.get_value("packets-pushed"),
        "dropped-unknown-source": stats.get_value("dropped-unknown-source"),
        "counted-drops": counted,
        "uncounted": uncounted,
        "devices-short": int((received < numpy.array(sent, dtype=numpy.uint64)).sum()),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0 if uncounted == 0 and result["packets-pushed"] == total_received else 1


if __name__ == "__main__":
    sys.exit(main())
