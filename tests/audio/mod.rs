//! Helpers shared by the audio element tests (ulawenc, ulawdec,
//! linearresample).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use gst::prelude::*;

pub fn raw_caps(rate: i32, channels: i32) -> gst::Caps {
    raw_caps_of("S16LE", rate, channels)
}

/// Interleaved raw audio caps in sample `format`.
pub fn raw_caps_of(format: &str, rate: i32, channels: i32) -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", format)
        .field("layout", "interleaved")
        .field("rate", rate)
        .field("channels", channels)
        .build()
}

pub fn mulaw_caps(rate: i32, channels: i32) -> gst::Caps {
    gst::Caps::builder("audio/x-mulaw")
        .field("rate", rate)
        .field("channels", channels)
        .build()
}

/// A harness around a new `factory` element, its input set to `caps`.
pub fn harness_for(factory: &str, caps: gst::Caps) -> gst_check::Harness {
    let mut h = gst_check::Harness::new(factory);
    h.set_src_caps(caps);
    h
}

/// A harness around a new `factory` element, its input set to `caps` (none:
/// never negotiated), and what pushing four zero bytes into it returned.
pub fn push_four_bytes(
    factory: &str,
    caps: Option<gst::Caps>,
) -> (gst_check::Harness, Result<gst::FlowSuccess, gst::FlowError>) {
    let mut h = gst_check::Harness::new(factory);
    if let Some(caps) = caps {
        h.set_src_caps(caps);
    }
    let pushed = h.push(gst::Buffer::from_mut_slice(vec![0u8; 4]));
    (h, pushed)
}

/// A GAP event of 20 ms from `start`.
pub fn gap(start: gst::ClockTime) -> gst::Event {
    gst::event::Gap::builder(start)
        .duration(gst::ClockTime::from_mseconds(20))
        .build()
}

pub fn le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub fn samples(bytes: &[u8]) -> Vec<i16> {
    assert!(bytes.len().is_multiple_of(2), "odd S16 byte count");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A buffer holding `data`, stamped with `pts` and `duration` (ns) and the
/// sample `offset`.
pub fn buffer(data: Vec<u8>, pts: u64, duration: u64, offset: u64, frames: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(pts));
        b.set_duration(gst::ClockTime::from_nseconds(duration));
        b.set_offset(offset);
        b.set_offset_end(offset + frames);
    }
    b
}

pub fn bytes_of(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().to_vec()
}

/// Every buffer still queued in the harness, concatenated.
pub fn drain_bytes(h: &mut gst_check::Harness) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.extend_from_slice(&b.map_readable().unwrap());
    }
    out
}

pub fn stats(element: &gst::Element) -> gst::Structure {
    element.property::<gst::Structure>("stats")
}

pub fn stat(s: &gst::Structure, field: &str) -> u64 {
    s.get::<u64>(field)
        .unwrap_or_else(|e| panic!("stats field {field}: {e}"))
}

/// The harnessed element's `stats` counters named in `fields`, in order.
pub fn stat_values(h: &gst_check::Harness, fields: &[&str]) -> Vec<u64> {
    let s = stats(&h.element().unwrap());
    fields.iter().map(|f| stat(&s, f)).collect()
}

/// What crosses `pad` downstream, in order: "buffer", or the event type name.
pub fn record_flow(pad: &gst::Pad) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let what = match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => "buffer".to_string(),
                Some(gst::PadProbeData::Event(e)) => e.type_().name().to_string(),
                _ => "other".to_string(),
            };
            s.lock().unwrap().push(what);
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// The buffers and GAP events of a `record_flow` log, in order.
pub fn buffers_and_gaps(seen: &Mutex<Vec<String>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| *e == "buffer" || *e == "gap")
        .cloned()
        .collect()
}

/// Runs a gst-launch style pipeline ending in `appsink name=out` to EOS and
/// returns the bytes that reached the sink and the sink's final caps.
pub fn run_to_appsink(desc: &str) -> (Vec<u8>, Option<gst::Caps>) {
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_property("sync", false);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut data = Vec::new();
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        caps = sample.caps().map(|c| c.to_owned());
        data.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
    }
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline ends");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("pipeline {desc}: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (data, caps)
}

/// Runs `src` to an appsink alone, then through `chain`: the samples `src`
/// made, and the bytes and caps that left `chain`.
pub fn before_and_after(src: &str, chain: &str) -> (Vec<i16>, Vec<u8>, Option<gst::Caps>) {
    let (raw, _) = run_to_appsink(&format!("{src} ! appsink name=out"));
    let (out, caps) = run_to_appsink(&format!("{src} ! {chain} ! appsink name=out"));
    (samples(&raw), out, caps)
}

/// Makes the harness answer allocation queries asking for memory aligned to
/// `align + 1` bytes. The elements then allocate through the allocator and
/// parameters downstream gave (recycled spares only stand in for plain
/// system memory), so a test can run both paths and compare.
pub fn demand_aligned_memory(h: &gst_check::Harness, align: usize) {
    let params = gst::AllocationParams::new(gst::MemoryFlags::empty(), align, 0, 0);
    h.sinkpad().expect("harness sink pad").add_probe(
        gst::PadProbeType::QUERY_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
                && let gst::QueryViewMut::Allocation(a) = q.view_mut()
            {
                // Answered here: the harness's own handler insists on an
                // empty query.
                a.add_allocation_param(None::<&gst::Allocator>, params);
                return gst::PadProbeReturn::Handled;
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// Address of the first byte of `b`'s data.
pub fn data_address(b: &gst::Buffer) -> usize {
    b.map_readable().expect("readable").as_ptr() as usize
}

pub fn alaw_caps(rate: i32, channels: i32) -> gst::Caps {
    gst::Caps::builder("audio/x-alaw")
        .field("rate", rate)
        .field("channels", channels)
        .build()
}

/// One G.711 law: our elements, the stock ones they compete with, and what
/// sets the law apart, so each G.711 test runs for both.
pub struct Law {
    /// Our encoder and decoder.
    pub enc: &'static str,
    pub dec: &'static str,
    /// Stock gst-plugins-good's encoder and decoder.
    pub stock_enc: &'static str,
    pub stock_dec: &'static str,
    /// The stock RTP payloader and depayloader for it.
    pub pay: &'static str,
    pub depay: &'static str,
    /// Caps of the coded stream.
    pub caps: fn(i32, i32) -> gst::Caps,
    /// The other law's caps, which the elements must refuse.
    pub other_caps: fn(i32, i32) -> gst::Caps,
    pub encode_sample: fn(i16) -> u8,
    pub decode_sample: fn(u8) -> i16,
}

pub const MULAW: Law = Law {
    enc: "ulawenc",
    dec: "ulawdec",
    stock_enc: "mulawenc",
    stock_dec: "mulawdec",
    pay: "rtppcmupay",
    depay: "rtppcmudepay",
    caps: mulaw_caps,
    other_caps: alaw_caps,
    encode_sample: rtpsynth_core::g711::encode_sample,
    decode_sample: rtpsynth_core::g711::decode_sample,
};

pub const ALAW: Law = Law {
    enc: "g711alawenc",
    dec: "g711alawdec",
    stock_enc: "alawenc",
    stock_dec: "alawdec",
    pay: "rtppcmapay",
    depay: "rtppcmadepay",
    caps: alaw_caps,
    other_caps: mulaw_caps,
    encode_sample: rtpsynth_core::g711::encode_alaw_sample,
    decode_sample: rtpsynth_core::g711::decode_alaw_sample,
};

pub const LAWS: [Law; 2] = [MULAW, ALAW];

impl Law {
    /// What our encoder and decoder make of `x` in turn.
    pub fn round_trip(&self, x: i16) -> i16 {
        (self.decode_sample)((self.encode_sample)(x))
    }
}
