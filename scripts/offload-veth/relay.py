"""The relay of run.sh: an rtpmuxserver with relay-offload relaying between
10.10.1.1:40000 and 10.10.2.1:40002 for argv[1] seconds, then its channels'
counters."""

import sys
import time

import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch("rtpmuxserver name=m relay-offload=true "
    "sink_0::bind-address=10.10.1.1 sink_0::bind-port=40000 sink_0::relay-to=1 "
    "sink_1::bind-address=10.10.2.1 sink_1::bind-port=40002 sink_1::relay-to=0 "
    "fakesrc num-buffers=0 ! fakesink")
m = p.get_by_name("m")
p.set_state(Gst.State.PLAYING)
w = p.get_bus().timed_pop_filtered(500 * Gst.MSECOND, Gst.MessageType.WARNING)
print("warning:", w.parse_warning()[0].message if w else None, flush=True)
time.sleep(float(sys.argv[1]))
s = m.get_property("stats")
for ch in (0, 1):
    c = s.get_value(f"channel-{ch}")
    print(ch, {k: c.get_value(k) for k in ("packets-received", "packets-sent", "relayed", "relayed-offloaded", "dropped-foreign-source", "send-errors", "rtp-packets-received", "packets-lost", "jitter")}, flush=True)
p.set_state(Gst.State.NULL)
