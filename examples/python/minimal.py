#!/usr/bin/python3
"""Synthesize, send, receive, jitter-buffer and decode, all in one process:

    rtpsynthsrc -> rtpmuxserver sink_0 ~~UDP 127.0.0.1~~> src_1 -> rtpjbufdec
                -> rtppcmudepay -> ulawdec -> fakesink

or, for G.711 A-law (PCMA, payload type 8), rtppcmadepay -> g711alawdec.
Run from the repository after `cargo build --release`:
    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/minimal.py [SECONDS] [pcmu|pcma]
"""

import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
CODEC = sys.argv[2] if len(sys.argv) > 2 else "pcmu"
# Per codec: RTP encoding name and static payload type, depayloader, decoder.
CODECS = {
    "pcmu": ("PCMU", 0, "rtppcmudepay", "ulawdec"),
    "pcma": ("PCMA", 8, "rtppcmadepay", "g711alawdec"),
}


def main():
    Gst.init(None)
    name, pt, depay, decoder = CODECS[CODEC]
    p = Gst.parse_launch(
        "rtpmuxserver name=m sink_0::bind-address=127.0.0.1 src_1::bind-address=127.0.0.1 "
        f"rtpsynthsrc name=src ptime=20 payload-type={pt} ! m.sink_0 "
        # src_N's caps are plain application/x-rtp: say what the stream is.
        f"m.src_1 ! application/x-rtp,media=audio,clock-rate=8000,encoding-name={name},payload={pt} "
        f"! rtpjbufdec name=jb ! {depay} ! {decoder} name=dec ! fakesink sync=false async=false"
    )
    m, src, jb, dec = (p.get_by_name(n) for n in ("m", "src", "jb", "dec"))
    # The sockets are bound in PAUSED: point channel 0 at channel 1's port.
    p.set_state(Gst.State.PAUSED)
    p.get_state(Gst.CLOCK_TIME_NONE)
    tx = m.get_static_pad("sink_0")
    rx = m.get_static_pad("src_1")
    tx.set_property("remote-address", "127.0.0.1")
    tx.set_property("remote-port", rx.get_property("local-port"))
    p.set_state(Gst.State.PLAYING)
    time.sleep(SECONDS)
    src.set_state(Gst.State.NULL)  # stop sending, let the last packets land
    sent = src.get_property("stats").get_value("packets-sent")

    def counts():
        # What went out (rtpsynthsrc also counts a packet that the stop
        # refused on its way to the server), what the jitter buffer received
        # and pushed, and the samples decoded.
        jbs = jb.get_property("stats")
        return (m.get_property("stats").get_value("packets-sent"), jbs.get_value("received"),
                jbs.get_value("pushed"), dec.get_property("stats").get_value("samples-out"))

    # On a busy machine the last datagrams can take a while: wait (at most
    # 3 s) until the jitter buffer has seen all that went out and the decoder
    # all that was pushed (rtpjbufdec counts a packet as pushed when it plans
    # the push, a moment before the decoder gets it), with the same counts
    # twice in a row: the last packet may still be on its way out.
    deadline = time.monotonic() + 3.0
    before = None
    while time.monotonic() < deadline:
        now = counts()
        out, received, pushed, decoded = now
        if out >= sent - 1 and received >= out and decoded == 160 * pushed and now == before:
            break
        before = now
        time.sleep(0.05)

    mux = m.get_property("stats")
    erasures = jb.get_property("stats").get_value("erasures")
    p.set_state(Gst.State.NULL)
    print(f"rtpsynthsrc sent      {sent} packets")
    print(f"rtpmuxserver sent     {out}, received {mux.get_value('packets-received')}")
    print(f"rtpjbufdec pushed     {pushed} of {received}, erasures {erasures}")
    print(f"{decoder:<21} {decoded} samples ({decoded / 8000:.2f} s of audio)")
    return 0 if sent - 1 <= out == pushed and decoded == 160 * pushed else 1


if __name__ == "__main__":
    sys.exit(main())
