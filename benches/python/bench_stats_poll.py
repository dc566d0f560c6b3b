#!/usr/bin/python3
"""Time per poll of every session's statistics from Python (stock PyGObject),
side by side, each side under live traffic with RTCP running:

- ours: one rtpmuxserver with N channels, `rtcp=mux`, each echoing what it
  receives (src_N linked to sink_N, so it receives and sends RTP, and sends
  SRs with report blocks); a helper process sends every channel 50 packets/s
  of PCMU on loopback and throws the echo away. One poll = `rtpsynth.read(m)`
  (one `stats-packed` read decoded into a numpy structured array).
  (`src_N ! identity ! sink_N`: an element's own pads cannot be linked.)
- stock: N rtpbin sessions sending PCMU (audiotestsrc ! mulawenc !
  rtppcmupay) over loopback to N rtpbin sessions that receive it, RTCP on
  port + 1 both ways. One poll = for every receiving session,
  `get-internal-session` -> `stats` -> `source-stats`, each source's
  structure walked field by field into dicts, as applications poll today.

Prints mean, p99 and max per poll for each N and the ratio, and two floors
measured under the same traffic (see `ours`). Environment:
BENCH_POLLS (default 2000: enough for a p99), BENCH_STOCK_POLLS (default
200), BENCH_POLL_N (default 100,1000: our side),
BENCH_STOCK_N (default 100: the stock side, at most these N; its N
pipelines of threads are heavy), BENCH_WARMUP (s, default 3).

Run from the repository root:
  PYTHONPATH=python GST_PLUGIN_PATH=target/release /usr/bin/python3 \
    benches/python/bench_stats_poll.py
"""

import os
import statistics
import subprocess
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, GObject, Gst  # noqa: E402

import rtpsynth  # noqa: E402

POLLS = int(os.environ.get("BENCH_POLLS", "2000"))
# The stock walk takes milliseconds per poll: fewer of them.
STOCK_POLLS = int(os.environ.get("BENCH_STOCK_POLLS", "200"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
PCMU = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0"

# The helper process: 50 packets/s of 160-byte PCMU to each port read from
# stdin, from one socket; what comes back is read and dropped so its buffer
# never fills. A separate process so that its work holds no GIL the poll
# waits on.
SENDER = r"""
import socket, struct, sys, time
ports = [int(p) for p in sys.stdin.read().split()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
payload = b"\xff" * 160
seq, t0, rounds = 0, time.monotonic(), 0
while True:
    for i, port in enumerate(ports):
        hdr = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x1000 + i)
        try:
            s.sendto(hdr + payload, ("127.0.0.1", port))
        except BlockingIOError:
            pass
    seq += 1
    try:
        while True:
            s.recv(2048)
    except BlockingIOError:
        pass
    rounds += 1
    wait = t0 + rounds * 0.02 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
"""


# GStreamer core warns "loop detected in the graph of bin" at each state
# change for each echo loop (docs/rtpmuxserver.md): thousands of lines that
# would bury the results. They are counted, and the count printed; any other
# warning is printed as usual.
LOOP_WARNING = "loop detected in the graph of bin"
loop_warnings = 0


def on_gstreamer_warning(domain, level, message, _data):
    global loop_warnings
    if LOOP_WARNING in message:
        loop_warnings += 1
    else:
        GLib.log_default_handler(domain, level, message, None)


def timed(poll, n=POLLS):
    poll()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        poll()
        times.append(time.perf_counter() - t)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.mean(times), p99, times[-1]


def ours(n):
    p = Gst.Pipeline()
    m = Gst.ElementFactory.make("rtpmuxserver")
    p.add(m)
    for ch in range(n):
        src = m.request_pad_simple(f"src_{ch}")
        sink = m.request_pad_simple(f"sink_{ch}")
        src.set_property("bind-address", "127.0.0.1")
        src.set_property("rtcp", "mux")
        src.set_property("rtcp-interval", 1000)
        src.set_property("rtp-caps", Gst.Caps.from_string(PCMU))
        # The echo: what channel N receives goes back out of channel N, to
        # the sender it latched. The sink pad's chain never waits. An
        # identity between them (no thread): an element's pads cannot be
        # linked to each other directly.
        echo = Gst.ElementFactory.make("identity")
        p.add(echo)
        assert src.link(echo.get_static_pad("sink")) == Gst.PadLinkReturn.OK
        assert echo.get_static_pad("src").link(sink) == Gst.PadLinkReturn.OK
    p.set_state(Gst.State.PLAYING)
    # Sockets are bound from PAUSED on; the element is live (no preroll).
    p.get_state(5 * Gst.SECOND)
    ports = [m.get_static_pad(f"src_{ch}").get_property("local-port") for ch in range(n)]
    sender = subprocess.Popen([sys.executable, "-c", SENDER], stdin=subprocess.PIPE)
    sender.stdin.write(" ".join(map(str, ports)).encode())
    sender.stdin.close()
    try:
        time.sleep(WARMUP)

        def poll():
            arr = rtpsynth.read(m)
            assert len(arr) == n

        result = timed(poll)
        # Floors, under the same traffic: a property read that needs
        # nothing of the worker (the round trip into the element and the
        # scheduling noise of a loaded machine), and getting bytes as many
        # as a read returns into numpy from a GBytes already held (the copy
        # PyGObject makes, which no bulk read avoids).
        held = m.get_property("stats-packed")

        def copy():
            assert len(rtpsynth.to_numpy(held)) == n

        floors = (timed(lambda: m.get_property("tick")), timed(copy))
        arr = rtpsynth.read(m)
        live = sum(1 for r in arr if r["rtcp-sent"] > 0 and r["rtp-packets-received"] > 0)
    finally:
        sender.kill()
        sender.wait()
        p.set_state(Gst.State.NULL)
    return result, live, floors


def walk(value):
    """A GValue from a stats structure, into plain Python, field by field."""
    if isinstance(value, Gst.Structure):
        return {value.nth_field_name(i): walk(value.get_value(value.nth_field_name(i)))
                for i in range(value.n_fields())}
    if isinstance(value, GObject.ValueArray):
        return [walk(value.get_nth(i)) for i in range(value.n_values)]
    if isinstance(value, list):
        return [walk(v) for v in value]
    return value


def stock(n, base_port=41000):
    """N sending and N receiving rtpbin sessions (two rtpbins), RTCP on
    port + 1 both ways; returns the timing of polling the receiving side."""
    p = Gst.Pipeline()
    tx = Gst.ElementFactory.make("rtpbin", "tx")
    rx = Gst.ElementFactory.make("rtpbin", "rx")
    p.add(tx)
    p.add(rx)

    def on_pad(_bin, pad):
        if pad.get_name().startswith("recv_rtp_src"):
            sink = Gst.ElementFactory.make("fakesink")
            sink.set_property("sync", False)
            sink.set_property("async", False)
            p.add(sink)
            sink.sync_state_with_parent()
            pad.link(sink.get_static_pad("sink"))

    rx.connect("pad-added", on_pad)

    def make(factory, **props):
        e = Gst.ElementFactory.make(factory)
        for k, v in props.items():
            e.set_property(k.rstrip("_").replace("_", "-"), v)
        p.add(e)
        return e

    for i in range(n):
        rtp, rtcp_rx, rtcp_tx = base_port + 4 * i, base_port + 4 * i + 1, base_port + 4 * i + 3
        src = make("audiotestsrc", is_live=True, samplesperbuffer=160)
        enc = make("mulawenc")
        pay = make("rtppcmupay")
        src.link(enc)
        enc.link(pay)
        pay.get_static_pad("src").link(tx.request_pad_simple(f"send_rtp_sink_{i}"))
        tx.get_static_pad(f"send_rtp_src_{i}").link(
            make("udpsink", host="127.0.0.1", port=rtp, sync=False, async_=False).get_static_pad("sink"))
        tx.request_pad_simple(f"send_rtcp_src_{i}").link(
            make("udpsink", host="127.0.0.1", port=rtcp_rx, sync=False, async_=False).get_static_pad("sink"))
        make("udpsrc", port=rtcp_tx, address="127.0.0.1").get_static_pad("src").link(
            tx.request_pad_simple(f"recv_rtcp_sink_{i}"))
        make("udpsrc", port=rtp, address="127.0.0.1", caps=Gst.Caps.from_string(PCMU)).get_static_pad(
            "src").link(rx.request_pad_simple(f"recv_rtp_sink_{i}"))
        make("udpsrc", port=rtcp_rx, address="127.0.0.1").get_static_pad("src").link(
            rx.request_pad_simple(f"recv_rtcp_sink_{i}"))
        rx.request_pad_simple(f"send_rtcp_src_{i}").link(
            make("udpsink", host="127.0.0.1", port=rtcp_tx, sync=False, async_=False).get_static_pad("sink"))
    p.set_state(Gst.State.PLAYING)
    time.sleep(WARMUP + 5)  # rtpbin's first RTCP comes after ~2.5-5 s
    sessions = [rx.emit("get-internal-session", i) for i in range(n)]

    def poll():
        out = [walk(s.get_property("stats")) for s in sessions]
        assert len(out) == n

    result = timed(poll, STOCK_POLLS)
    # How many sessions saw RTCP from the sender (an SR) by the end.
    with_sr = 0
    for s in sessions:
        for src in walk(s.get_property("stats"))["source-stats"]:
            if not src.get("internal") and src.get("have-sr"):
                with_sr += 1
    p.set_state(Gst.State.NULL)
    return result, with_sr


def fmt(t):
    return f"{t * 1e6:9.1f} µs"


def main():
    Gst.init(None)
    GLib.log_set_handler("GStreamer", GLib.LogLevelFlags.LEVEL_WARNING, on_gstreamer_warning, None)
    ns = [int(x) for x in os.environ.get("BENCH_POLL_N", "100,1000").split(",") if x]
    stock_max = int(os.environ.get("BENCH_STOCK_N", "100"))
    print(f"# Python {sys.version.split()[0]}, PyGObject {gi.__version__}, {POLLS} polls ({STOCK_POLLS} stock), "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    global loop_warnings
    for n in ns:
        loop_warnings = 0
        (om, op99, omax), live, floors = ours(n)
        line = (f"stats poll, N={n:<5} ours rtpsynth.read: mean {fmt(om)} p99 {fmt(op99)} max {fmt(omax)}"
                f" ({live}/{n} channels receiving and sending RTCP)")
        for name, (fm, fp99, fmax) in zip(("floor tick read", "floor copy into numpy"), floors):
            line += f" | {name}: mean {fmt(fm)} p99 {fmt(fp99)} max {fmt(fmax)}"
        if n <= stock_max:
            (sm, sp99, smax), with_sr = stock(n)
            line += (f" | stock rtpbin walk: mean {fmt(sm)} p99 {fmt(sp99)} max {fmt(smax)}"
                     f" ({with_sr}/{n} sessions with the sender's SR) | ratio {sm / om:7.1f}x")
        print(line, flush=True)
        print(f"#   N={n}: GStreamer core warned \"{LOOP_WARNING}\" {loop_warnings} times (the echo loops)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
