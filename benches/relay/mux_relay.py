#!/usr/bin/python3
"""One rtpmuxserver relaying N calls (2N channels: call i is channel 2i for
endpoint A_i and 2i + 1 for B_i), for bench_relay.py.

Modes:
  pipeline  src_A ! identity ! sink_B and back: how a GStreamer application
            relays today, every packet a GstBuffer through the pads.
  relay-to  each channel its own port; pad property relay-to pairs them, so
            the worker sends what one receives out of the other itself.
  shared    relay-to, with all A channels on one port and all B channels on
            another (shared-socket), each told its endpoint's SSRC
            (remote-ssrc) besides its address; with workers W > 1, W such
            pairs of ports (call i on pair i % W), as the element's docs
            advise: a pair's two sockets go to one worker (a relay's
            channels follow each other) and the pairs spread over the
            workers.

--offload (with relay-to or shared) sets the element's relay-offload: the
kernel forwards the relayed RTP (a tc program; root and Linux 6.6 needed).
When the element says it cannot (its WARNING), the row is "not available".

In the relay-to modes only src_N pads are requested and left unlinked:
the worker relays without GstBuffers (packets-pushed in the totals shows
any it pushes anyway).

stdin: N lines "portA portB" then an empty line: the endpoints' ports. Each
channel's remote is set from them, as a relay learns it from SDP, so nothing
sent before the far side's first packet is lost. stdout: "pid <own pid>",
N lines "relayA relayB" (the ports A_i and B_i send to); the driver then
relays until stdin closes and prints one line "mux key=value ..." of the
element's totals. A property this build lacks: one line "not available:
<reason>" and exit status 3, before anything else is printed.
"""

import argparse
import os
import resource
import socket
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

import rtpsynth  # noqa: E402

LOOPBACK = "127.0.0.1"
PCMU = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0"
SSRC_BASE = 0x10000  # loadgen.c: A_i sends SSRC_BASE + 2i, B_i SSRC_BASE + 2i + 1
NOT_AVAILABLE = 3


class NotAvailable(Exception):
    pass


def set_props(obj, **props):
    """Sets each property (underscores for dashes); a name the object's
    class lacks raises NotAvailable naming it."""
    for key, value in props.items():
        name = key.replace("_", "-")
        if obj.find_property(name) is None:
            kind = "pad" if isinstance(obj, Gst.Pad) else "element"
            raise NotAvailable(f"rtpmuxserver has no {kind} property {name} in this build")
        obj.set_property(name, value)


def free_udp_port():
    # The shared ports are chosen here: channels sharing a socket must all
    # name the same port, so none of them can ask for port 0.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def build(mode, endpoint_ports, tick, workers, offload):
    pipeline = Gst.Pipeline()
    mux = Gst.ElementFactory.make("rtpmuxserver")
    if mux is None:
        raise NotAvailable("no rtpmuxserver element (is GST_PLUGIN_PATH set?)")
    pipeline.add(mux)
    set_props(mux, tick=tick)
    if workers is not None:
        set_props(mux, workers=workers)
    if offload:
        set_props(mux, relay_offload=True)
    pairs = [(free_udp_port(), free_udp_port()) for _ in range(workers or 1)] if mode == "shared" else None
    for ch, port in enumerate(p for call in endpoint_ports for p in call):
        src = mux.request_pad_simple(f"src_{ch}")
        settings = dict(bind_address=LOOPBACK, remote_address=LOOPBACK, remote_port=port)
        if mode == "pipeline":
            settings["rtp_caps"] = Gst.Caps.from_string(PCMU)
        else:
            settings["relay_to"] = ch ^ 1
        if pairs:
            pair = pairs[(ch // 2) % len(pairs)]
            settings.update(bind_port=pair[ch & 1], shared_socket=True, remote_ssrc=SSRC_BASE + ch)
        set_props(src, **settings)
    if mode == "pipeline":
        for ch in range(2 * len(endpoint_ports)):
            # An element's own pads cannot be linked to each other: an
            # identity between them (no thread of its own).
            hop = Gst.ElementFactory.make("identity")
            pipeline.add(hop)
            sink = mux.request_pad_simple(f"sink_{ch ^ 1}")
            if mux.get_static_pad(f"src_{ch}").link(hop.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
                raise RuntimeError(f"src_{ch} does not link")
            if hop.get_static_pad("src").link(sink) != Gst.PadLinkReturn.OK:
                raise RuntimeError(f"sink_{ch ^ 1} does not link")
    return pipeline, mux


def relay_ports(mux, calls):
    port = [mux.get_static_pad(f"src_{ch}").get_property("local-port") for ch in range(2 * calls)]
    if 0 in port:
        errors = {mux.get_static_pad(f"src_{ch}").get_property("error") for ch in range(2 * calls)}
        raise RuntimeError(f"channels without a socket: {errors - {None}}")
    return [(port[2 * i], port[2 * i + 1]) for i in range(calls)]


def totals(mux):
    """The element's totals (stats): datagrams in and out, pushed, relayed
    when it has the counter, every drop; how many channels dropped; and
    what a channel received that its peer neither sent nor counted as
    dropped (read after the traffic ended, so none should be in flight)."""
    stats = mux.get_property("stats")
    names = [stats.nth_field_name(i) for i in range(stats.n_fields())]
    wanted = [n for n in names if n in ("packets-received", "packets-sent", "packets-pushed", "relayed", "not-relayed",
                                        "relayed-offloaded")
              or n.startswith("dropped") or n == "send-errors"]
    rows = rtpsynth.read(mux)
    rows = rows[rows["channel"].argsort()]
    drops = [n for n in rows.dtype.names if n.startswith("dropped")]
    dropping = int((sum(rows[n] for n in drops) > 0).sum())
    # What each channel's peer (2i and 2i + 1, both ways) gave it to send:
    # what the peer received but did not refuse to relay.
    given = rows["packets-received"].astype("i8")
    if "not-relayed" in rows.dtype.names:
        given -= rows["not-relayed"].astype("i8")
    peer_given = given.reshape(-1, 2)[:, ::-1].reshape(-1)
    accounted = (rows["packets-sent"] + rows["dropped-queue-full"] + rows["send-errors"]).astype("i8")
    missing = (peer_given - accounted).clip(min=0)
    return (" ".join(f"{n}={stats.get_value(n)}" for n in wanted)
            + f" channels-dropping={dropping} unaccounted={int(missing.sum())}"
            + f" channels-unaccounted={int((missing > 0).sum())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("pipeline", "relay-to", "shared"), default="pipeline")
    ap.add_argument("--tick", type=int, default=0, help="element property tick, ms")
    ap.add_argument("--workers", type=int, help="element property workers (left at its default when absent)")
    ap.add_argument("--offload", action="store_true", help="element property relay-offload")
    args = ap.parse_args()

    endpoint_ports = []
    for line in iter(sys.stdin.readline, ""):
        if not line.strip():
            break
        endpoint_ports.append(tuple(int(p) for p in line.split()))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    Gst.init(None)
    try:
        pipeline, mux = build(args.mode, endpoint_ports, args.tick, args.workers, args.offload)
    except NotAvailable as e:
        print(f"not available: {e}", flush=True)
        return NOT_AVAILABLE
    pipeline.set_state(Gst.State.PLAYING)
    try:
        ok, _, _ = pipeline.get_state(30 * Gst.SECOND)
        if ok == Gst.StateChangeReturn.FAILURE:
            msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
            raise RuntimeError(f"rtpmuxserver does not start: {msg.parse_error()[0].message if msg else ok}")
        warning = pipeline.get_bus().pop_filtered(Gst.MessageType.WARNING)
        if args.offload and warning is not None:
            print(f"not available: {warning.parse_warning()[0].message}", flush=True)
            return NOT_AVAILABLE
        print("pid", os.getpid())
        for a, b in relay_ports(mux, len(endpoint_ports)):
            print(a, b)
        sys.stdout.flush()
        sys.stdin.read()
        print(f"mux {totals(mux)}", flush=True)
    finally:
        pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
