"""Each element driven through PyGObject: created by name, configured, run,
and its stats checked against what was sent."""

from gi.repository import Gst


def test_plugin_lists_elements():
    plugin = Gst.Registry.get().find_plugin("rtpsynth")
    assert plugin is not None, "GST_PLUGIN_PATH must point at the build"
    names = {f.get_name() for f in Gst.Registry.get().get_feature_list_by_plugin("rtpsynth")}
    assert {"rtpsynthsrc", "rtpjbufdec", "ulawenc", "ulawdec", "linearresample"} <= names


def test_rtpsynthsrc_stats_match_packets(run):
    counted = []

    def count(pad, info):
        is_list = info.type & Gst.PadProbeType.BUFFER_LIST
        counted.append(info.get_buffer_list().length() if is_list else 1)
        return Gst.PadProbeReturn.OK

    def probe(pipeline):
        pad = pipeline.get_by_name("sink").get_static_pad("sink")
        pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, count)

    src = Gst.ElementFactory.make("rtpsynthsrc", "src")
    assert src is not None
    assert src.get_property("payload-type") == 0 and src.get_property("ptime") == 20
    p = run("rtpsynthsrc name=src is-live=false num-buffers=10 packets-per-buffer=5 seed=1 ! fakesink name=sink",
            before=probe)
    stats = p.get_by_name("src").get_property("stats")
    assert stats.get_name() == "application/x-rtpsynthsrc-stats"
    assert sum(counted) == 50
    assert stats.get_value("packets-sent") == 50
    assert stats.get_value("octets-sent") == 50 * 172


def test_rtpjbufdec_counters_add_up(run):
    p = run("rtpsynthsrc is-live=false num-buffers=20 packets-per-buffer=10 ! rtpjbufdec name=jb capacity=8 ! fakesink")
    s = p.get_by_name("jb").get_property("stats")
    assert s.get_name() == "application/x-rtpjbufdec-stats"
    dropped = sum(s.get_value(s.nth_field_name(i)) for i in range(s.n_fields())
                  if s.nth_field_name(i).startswith("dropped-"))
    assert s.get_value("received") == 200
    assert s.get_value("pushed") + dropped == s.get_value("received")
    assert s.get_value("pushed") == 200


def test_codec_chain_sample_counts(run):
    # 10 buffers of 960 samples at 48 kHz are 1600 samples at 8 kHz.
    p = run("audiotestsrc num-buffers=10 samplesperbuffer=960 ! audio/x-raw,format=S16LE,rate=48000,channels=1 "
            "! linearresample name=rs ! audio/x-raw,rate=8000 ! ulawenc name=enc ! ulawdec name=dec ! fakesink")
    rs = p.get_by_name("rs").get_property("stats")
    enc = p.get_by_name("enc").get_property("stats")
    dec = p.get_by_name("dec").get_property("stats")
    assert rs.get_value("samples-in") == 9600
    assert abs(rs.get_value("samples-out") - 1600) <= 1
    assert enc.get_value("samples-in") == rs.get_value("samples-out")
    assert dec.get_value("samples-out") == enc.get_value("samples-out")
