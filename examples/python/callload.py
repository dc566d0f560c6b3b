#!/usr/bin/python3
"""The call-load job from Python: N full-duplex G.711 calls on loopback in one
process, built with PyGObject from the same elements as
`cargo run --release --example callload` (the Rust job, which also has
impairment, ramp-up and a stock-element mode).

Per call, two rtpmuxserver channels (leg A and leg B) send to each other; each
leg's packets come from an rtpsynthsrc on one shared thread and are received
into `rtpjbufdec ! rtppcmudepay ! ulawdec ! fakesink` (with --codec pcma:
payload type 8 into `rtppcmadepay ! g711alawdec`). One line a second shows
calls, packets/s, loss, erasures, CPU and threads; the end prints a summary
(with --json also one JSON object as the last line). Exit status 1 when a
packet went missing without being counted, or a leg's decoded audio is not
one packet's samples for every packet its source sent.

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/callload.py --calls 200 --seconds 20
"""

import argparse
import json
import os
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

# Per codec: RTP encoding name and static payload type, depayloader, decoder.
CODECS = {
    "pcmu": ("PCMU", 0, "rtppcmudepay", "ulawdec"),
    "pcma": ("PCMA", 8, "rtppcmadepay", "g711alawdec"),
}
# rtpjbufdec's wait behind a void, ms; the Rust job uses the same.
JBUF_LATENCY = 60


def rtp_caps(codec):
    name, pt, _, _ = CODECS[codec]
    return f"application/x-rtp,media=audio,clock-rate=8000,encoding-name={name},payload={pt}"


def receiver_chain(codec):
    _, _, depay, dec = CODECS[codec]
    return (
        f"rtpjbufdec latency={JBUF_LATENCY} erasure-mode=silence ! {depay} ! {dec}"
        " ! fakesink sync=false async=false enable-last-sample=false"
    )
WARMUP_S = 1.0
# After the sources stop: the server and sockets count as quiet once their
# counters hold still this many 100 ms polls in a row, waiting at most
# QUIET_LIMIT_S; then DRAIN_S for the jitter buffers' last releases.
QUIET_POLLS = 3
QUIET_LIMIT_S = 15.0
DRAIN_S = 0.3

MUX_DROPS = (
    "dropped-queue-full",
    "send-errors",
    "dropped-no-socket",
    "dropped-foreign-source",
    "dropped-not-rtp",
    "dropped-kernel",
    "dropped-downstream",
)
JBUF_FIELDS = (
    "received",
    "dropped-duplicate",
    "dropped-late",
    "dropped-parse",
    "dropped-outlier",
    "dropped-flushing",
    "dropped-rtcp",
    "dropped-ssrc-probation",
    "buffered",
    "erased-packets",
)


class Calls:
    """The pipeline: one rtpmuxserver and, per leg, a source and a receiver."""

    def __init__(self, calls, ptime, tick, codec="pcmu"):
        self.pipeline = Gst.Pipeline.new("calls")
        self.mux = Gst.ElementFactory.make("rtpmuxserver", "mux")
        self.mux.set_property("tick", tick)
        self.pipeline.add(self.mux)
        caps = Gst.Caps.from_string(rtp_caps(codec))
        receiver_description = receiver_chain(codec)
        self.sources, self.jbufs, self.decoders, self.sinks = [], [], [], []
        for ch in range(2 * calls):
            sink = self.mux.request_pad_simple(f"sink_{ch}")
            src = self.mux.request_pad_simple(f"src_{ch}")
            sink.set_property("bind-address", "127.0.0.1")
            src.set_property("rtp-caps", caps)
            source = Gst.ElementFactory.make("rtpsynthsrc")
            source.set_property("shared-thread", "calls")
            source.set_property("is-live", True)
            source.set_property("ptime", ptime)
            source.set_property("payload-type", CODECS[codec][1])
            receiver = Gst.parse_bin_from_description(receiver_description, True)
            self.pipeline.add(source)
            self.pipeline.add(receiver)
            if source.get_static_pad("src").link(sink) != Gst.PadLinkReturn.OK:
                raise RuntimeError(f"cannot link rtpsynthsrc to sink_{ch}")
            if src.link(receiver.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
                raise RuntimeError(f"cannot link src_{ch} to its receiver")
            self.sources.append(source)
            by_factory = {e.get_factory().get_name(): e for e in receiver.iterate_elements()}
            self.jbufs.append(by_factory["rtpjbufdec"])
            self.decoders.append(by_factory[CODECS[codec][3]])

    def start(self):
        # The sockets open on the way to PAUSED; targets need their ports.
        if self.pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the pipeline does not start")
        ports = []
        for ch in range(len(self.sources)):
            port = self.mux.get_static_pad(f"sink_{ch}").get_property("local-port")
            if port == 0:
                raise RuntimeError(f"rtpmuxserver channel {ch} has no socket")
            ports.append(port)
        # Leg A on channel 2i and leg B on 2i + 1 send to each other, so
        # what channel ch receives is leg ch ^ 1.
        for ch, port in enumerate(ports):
            pad = self.mux.get_static_pad(f"sink_{ch}")
            pad.set_property("remote-address", "127.0.0.1")
            pad.set_property("remote-port", ports[ch ^ 1])
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the pipeline does not play")

    def mux_totals(self):
        return self.mux.get_property("stats")

    def check_bus(self):
        bus = self.pipeline.get_bus()
        while True:
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            if msg is None:
                return
            err, dbg = msg.parse_error()
            raise RuntimeError(f"{msg.src.get_name()}: {err.message} ({dbg})")


def sums(elements, names):
    """Sums of u64 stats counters `names` over `elements`."""
    total = dict.fromkeys(names, 0)
    for e in elements:
        s = e.get_property("stats")
        for n in names:
            ok, v = s.get_uint64(n)
            total[n] += v if ok else 0
    return total


def field(structure, name):
    ok, v = structure.get_uint64(name)
    return v if ok else 0


def threads():
    return len(os.listdir("/proc/self/task"))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_mhz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    return 1000.0


def process_cpu():
    t = os.times()
    return t.user + t.system


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200, help="full-duplex calls (default 200)")
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds (default 20)")
    ap.add_argument("--ptime", type=int, default=20, help="packet duration, ms (default 20)")
    ap.add_argument("--tick", type=int, default=0, help="rtpmuxserver send tick, ms (default 0)")
    ap.add_argument("--csv", metavar="FILE", help="write the per-second rows to FILE")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    ap.add_argument("--quiet", action="store_true", help="no live lines nor table")
    ap.add_argument("--codec", choices=sorted(CODECS), default="pcmu",
                    help="G.711 law: pcmu (µ-law, payload type 0) or pcma (A-law, 8) (default pcmu)")
    args = ap.parse_args(argv)
    for name in ("calls", "ptime"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.seconds <= 0 or args.tick < 0:
        ap.error("--seconds must be positive and --tick not negative")
    return args


def run(args):
    Gst.init(None)
    calls = Calls(args.calls, args.ptime, args.tick, args.codec)
    calls.start()
    say = (lambda *a: None) if args.quiet else print
    say(f"{args.calls} calls, {2 * args.calls} channels, {len(calls.sources)} sources on one shared thread")
    header = ("t_s", "calls", "out_pps", "in_pps", "lost", "erased", "cpu_pct", "threads")
    say(" ".join(f"{h:>8}" for h in header))
    rows = []
    time.sleep(WARMUP_S)
    calls.check_bus()

    # The measured window. The monitor's own CPU (this thread) is left out,
    # as the Rust job leaves out its monitor thread.
    cpu0, mon0, t0 = process_cpu(), time.thread_time(), time.monotonic()
    last = (field(calls.mux_totals(), "packets-sent"), field(calls.mux_totals(), "packets-received"), cpu0, t0)
    max_threads = threads()
    end = t0 + args.seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(1.0, end - now))
        m = calls.mux_totals()
        out, inp, cpu, now = field(m, "packets-sent"), field(m, "packets-received"), process_cpu(), time.monotonic()
        dt = now - last[3]
        erased = sums(calls.jbufs, ("erased-packets",))["erased-packets"]
        row = (
            round(now - t0, 1),
            args.calls,
            round((out - last[0]) / dt),
            round((inp - last[1]) / dt),
            max(out - inp, 0),
            erased,
            round(100 * (cpu - last[2]) / dt, 1),
            threads(),
        )
        max_threads = max(max_threads, row[-1])
        rows.append(row)
        say(" ".join(f"{v:>8}" for v in row))
        last = (out, inp, cpu, now)
        calls.check_bus()
    window = time.monotonic() - t0
    cpu = process_cpu() - cpu0 - (time.thread_time() - mon0)
    rss = rss_mb()

    for s in calls.sources:
        s.set_state(Gst.State.NULL)
    quiet_end, still, before = time.monotonic() + QUIET_LIMIT_S, 0, None
    while still < QUIET_POLLS and time.monotonic() < quiet_end:
        time.sleep(0.1)
        m = calls.mux_totals()
        now = (field(m, "packets-sent"), field(m, "packets-received"))
        still = still + 1 if now == before else 0
        before = now
    time.sleep(DRAIN_S)
    calls.check_bus()

    src = sums(
        calls.sources, ("packets-sent", "late-skipped", "slow-pushes", "dropped-downstream")
    )
    m = calls.mux_totals()
    jb = sums(calls.jbufs, JBUF_FIELDS)
    mux_counted = sum(field(m, n) for n in MUX_DROPS)
    # Every drop reason, and what is still held.
    jb_counted = sum(jb[n] for n in JBUF_FIELDS[1:-1])
    lost_uncounted = src["packets-sent"] - (mux_counted + jb["received"])
    # Every leg decodes one packet's samples per packet sent (the packet or
    # the silence concealing it); a source that skipped late packet times
    # resumed across a timestamp jump, and the silence covers that time too.
    samples_per_packet = 8 * args.ptime
    discontinuous = 0
    for ch, source in enumerate(calls.sources):
        s = source.get_property("stats")
        expected = field(s, "packets-sent") * samples_per_packet
        decoded = field(calls.decoders[ch ^ 1].get_property("stats"), "samples-out")
        if decoded < expected or (field(s, "late-skipped") == 0 and decoded != expected):
            discontinuous += 1
    calls.pipeline.set_state(Gst.State.NULL)

    mhz = cpu / window * cpu_mhz() / args.calls
    summary = {
        "codec": CODECS[args.codec][0],
        "calls": args.calls,
        "seconds": round(window, 3),
        "packets_sent": src["packets-sent"],
        "packets_received": field(m, "packets-received"),
        "counted_drops": mux_counted + jb_counted,
        "lost_uncounted": lost_uncounted,
        "erasures": jb["erased-packets"],
        "late_skipped": src["late-skipped"],
        "slow_pushes": src["slow-pushes"],
        "source_dropped": src["dropped-downstream"],
        "discontinuous_legs": discontinuous,
        "cpu_seconds": round(cpu, 3),
        "mhz_per_call": round(mhz, 4),
        "threads": max_threads,
        "rss_mb": round(rss, 1),
    }
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(",".join(header) + "\n")
            for r in rows:
                f.write(",".join(str(v) for v in r) + "\n")
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        say(f"{k:<{width}}  {v}")
    if args.json:
        print(json.dumps(summary))
    return summary


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = run(args)
    except RuntimeError as e:
        print(f"callload: {e}", file=sys.stderr)
        return 2
    if summary["lost_uncounted"] != 0 or summary["discontinuous_legs"] != 0:
        print(
            f"callload: {summary['lost_uncounted']} packets missing without a counter, "
            f"{summary['discontinuous_legs']} legs with missing audio",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
