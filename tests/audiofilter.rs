//! The audio elements' pads (src/audiofilter.rs) as users see them: a
//! stream with DISCONT and GAP flags, a meta, a buffer without timestamps,
//! a reconfiguration and a QOS event mid-stream, refused DISCONT buffers
//! and position queries gives the same buffers, counters and positions
//! whether outputs are plain system memory (recycled spares) or downstream
//! asks for aligned memory (its allocator and parameters are used), with
//! flags, metas and DISCONT carried as `BaseTransform` carries them.

mod audio;
mod common;

use audio::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

const MS20: u64 = 20_000_000;

/// Everything an output buffer carries that either path could change.
#[derive(Clone, Debug, PartialEq)]
struct Out {
    bytes: Vec<u8>,
    pts: Option<gst::ClockTime>,
    dts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    offset: u64,
    offset_end: u64,
    flags: gst::BufferFlags,
    reference_timestamps: Vec<gst::ClockTime>,
}

impl Out {
    fn of(b: &gst::Buffer) -> Out {
        Out {
            bytes: bytes_of(b),
            pts: b.pts(),
            dts: b.dts(),
            duration: b.duration(),
            offset: b.offset(),
            offset_end: b.offset_end(),
            flags: b.flags(),
            reference_timestamps: b
                .iter_meta::<gst::ReferenceTimestampMeta>()
                .map(|m| m.timestamp())
                .collect(),
        }
    }
}

/// One element set up for the scenario.
struct Case {
    factory: &'static str,
    in_caps: gst::Caps,
    /// Fixed downstream caps, for a resampler.
    out_caps: Option<gst::Caps>,
    /// Input bytes per 20 ms buffer, and per frame.
    buffer_bytes: usize,
    frame_bytes: usize,
}

/// What one run produced: the outputs, the source pad's position after the
/// fifth buffer and at the end, the sink pad's at the end, and the stats
/// counters.
type Run = (Vec<Out>, [Option<gst::ClockTime>; 3], gst::Structure);

fn input(case: &Case, i: u64, bytes: usize) -> gst::Buffer {
    let data = (0..bytes)
        .map(|k| (k as u64 * 7 + i * 13) as u8)
        .collect::<Vec<u8>>();
    let frames = (bytes / case.frame_bytes) as u64;
    buffer(data, i * MS20, MS20, i * frames, frames)
}

fn run(case: &Case, aligned: bool) -> Run {
    let mut h = gst_check::Harness::new(case.factory);
    if aligned {
        demand_aligned_memory(&h, 63);
    }
    if let Some(out) = &case.out_caps {
        h.set_sink_caps(out.clone());
    }
    h.set_src_caps(case.in_caps.clone());
    let element = h.element().expect("harnessed element");
    let src_pad = element.static_pad("src").expect("src pad");
    let sink_pad = element.static_pad("sink").expect("sink pad");
    let position = || src_pad.query_position::<gst::ClockTime>();
    let mut outs = Vec::new();
    let mut mid_position = None;
    for i in 0..20u64 {
        let mut b = input(case, i, case.buffer_bytes);
        {
            let b = b.get_mut().unwrap();
            match i {
                3 => {
                    b.set_flags(gst::BufferFlags::GAP);
                    let caps = gst::Caps::new_empty_simple("timestamp/x-test");
                    gst::ReferenceTimestampMeta::add(
                        b,
                        &caps,
                        gst::ClockTime::from_seconds(7),
                        None,
                    );
                }
                6 => src_pad.mark_reconfigure(),
                8 => b.set_flags(gst::BufferFlags::DISCONT),
                9 => {
                    b.set_pts(None);
                    b.set_duration(None);
                }
                11 => {
                    let qos = gst::event::Qos::new(
                        gst::QOSType::Underflow,
                        0.5,
                        1_000_000_000,
                        gst::ClockTime::from_nseconds(i * MS20),
                    );
                    assert!(h.push_upstream_event(qos));
                }
                _ => {}
            }
        }
        if i == 13 || i == 16 {
            // Refused (not whole frames), with a DISCONT that the next
            // output must carry; the second time, a reconfiguration is
            // pending too.
            let mut bad = input(case, i, case.frame_bytes + 1);
            bad.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
            assert!(h.push(bad).is_err());
            if i == 16 {
                src_pad.mark_reconfigure();
            }
        }
        h.push(b).expect("pushed");
        while let Some(out) = h.try_pull() {
            outs.push(Out::of(&out));
        }
        if i == 4 {
            mid_position = position();
        }
    }
    let sink_position = sink_pad.query_position::<gst::ClockTime>();
    (
        outs,
        [mid_position, position(), sink_position],
        stats(&element),
    )
}

fn same_on_both_paths(case: Case) {
    let plain = run(&case, false);
    let aligned = run(&case, true);
    // Exact timestamps: the input's, and none for the buffer without.
    let pts: Vec<Option<u64>> = plain
        .0
        .iter()
        .map(|o| o.pts.map(|t| t.mseconds()))
        .collect();
    let expected: Vec<Option<u64>> = (0..20u64).map(|i| (i != 9).then_some(20 * i)).collect();
    if case.out_caps.is_none() {
        assert_eq!(pts, expected, "{}: timestamps", case.factory);
    }
    assert!(plain.0.len() >= 18, "{}: outputs missing", case.factory);
    assert_eq!(plain.0, aligned.0, "{}: buffers", case.factory);
    assert_eq!(plain.1, aligned.1, "{}: positions", case.factory);
    assert!(
        plain.1.iter().all(Option::is_some),
        "{}: positions",
        case.factory
    );
    assert_eq!(plain.2, aligned.2, "{}: stats", case.factory);
    // The meta was copied, GAP cleared, DISCONT carried over, the refused
    // buffer's DISCONT given to the next output.
    assert!(plain.0.iter().any(|o| !o.reference_timestamps.is_empty()));
    assert!(
        plain
            .0
            .iter()
            .all(|o| !o.flags.contains(gst::BufferFlags::GAP))
    );
    let disconts = plain
        .0
        .iter()
        .filter(|o| o.flags.contains(gst::BufferFlags::DISCONT))
        .count();
    assert!(
        disconts >= 3,
        "{}: {disconts} DISCONT outputs",
        case.factory
    );
}

#[test]
fn ulawenc_outputs_do_not_depend_on_allocation() {
    common::init();
    same_on_both_paths(Case {
        factory: "ulawenc",
        in_caps: raw_caps(8000, 1),
        out_caps: None,
        buffer_bytes: 320,
        frame_bytes: 2,
    });
}

#[test]
fn ulawdec_outputs_do_not_depend_on_allocation() {
    common::init();
    same_on_both_paths(Case {
        factory: "ulawdec",
        in_caps: mulaw_caps(8000, 2),
        out_caps: None,
        buffer_bytes: 320,
        frame_bytes: 2,
    });
}

#[test]
fn linearresample_outputs_do_not_depend_on_allocation() {
    common::init();
    same_on_both_paths(Case {
        factory: "linearresample",
        in_caps: raw_caps(48_000, 1),
        out_caps: Some(raw_caps(8000, 1)),
        buffer_bytes: 1920,
        frame_bytes: 2,
    });
}

/// With QoS enabled and a QOS event that makes the next buffers late, they
/// are dropped (and counted) and the next output is DISCONT, as
/// `BaseTransform` does it; with QoS off (the default) nothing is dropped.
#[test]
fn late_buffers_are_dropped_as_basetransform_drops_them() {
    common::init();
    let run = |aligned: bool, qos: bool| {
        let mut h = gst_check::Harness::new("ulawenc");
        if aligned {
            demand_aligned_memory(&h, 63);
        }
        h.set_src_caps(raw_caps(8000, 1));
        let element = h.element().unwrap();
        element.set_property("qos", qos);
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        let mut outs = Vec::new();
        for i in 0..12u64 {
            if i == 4 {
                // Buffers up to 150 ms of running time are late.
                let qos = gst::event::Qos::new(
                    gst::QOSType::Underflow,
                    1.0,
                    70_000_000,
                    gst::ClockTime::from_mseconds(80),
                );
                assert!(h.push_upstream_event(qos));
            }
            h.push(buffer(vec![i as u8; 320], i * MS20, MS20, i * 160, 160))
                .unwrap();
            while let Some(out) = h.try_pull() {
                outs.push(Out::of(&out));
            }
        }
        let qos_messages =
            std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Qos])).count();
        (outs, stat(&stats(&element), "qos-dropped"), qos_messages)
    };
    let (outs, dropped, messages) = run(false, true);
    assert_eq!(run(true, true), (outs.clone(), dropped, messages));
    let pts: Vec<u64> = outs.iter().map(|o| o.pts.unwrap().mseconds()).collect();
    assert_eq!(pts, [0, 20, 40, 60, 160, 180, 200, 220]);
    assert!(outs[4].flags.contains(gst::BufferFlags::DISCONT));
    assert_eq!((dropped, messages), (4, 4));
    let (outs, dropped, messages) = run(false, false);
    assert_eq!((outs.len(), dropped, messages), (12, 0, 0));
}

/// Buffers released on another thread (after a queue) and recycled there:
/// a real pipeline gives the core's exact samples.
#[test]
fn recycled_buffers_across_queues_keep_the_samples_exact() {
    common::init();
    let src = "audiotestsrc num-buffers=300 samplesperbuffer=160 wave=sine freq=700 \
               ! audio/x-raw,format=S16LE,rate=8000,channels=1";
    let (raw, out, _) = before_and_after(
        src,
        "ulawenc ! queue max-size-buffers=3 ! ulawdec ! queue max-size-buffers=3 \
         ! linearresample ! audio/x-raw,rate=16000 ! queue max-size-buffers=3 \
         ! ulawenc ! ulawdec",
    );
    let decoded: Vec<i16> = raw
        .iter()
        .map(|&x| rtpsynth_core::g711::decode_sample(rtpsynth_core::g711::encode_sample(x)))
        .collect();
    let resampled = rtpsynth_core::resample::resample(&decoded, 1, 8_000, 16_000).unwrap();
    let expected: Vec<i16> = resampled
        .iter()
        .map(|&x| rtpsynth_core::g711::decode_sample(rtpsynth_core::g711::encode_sample(x)))
        .collect();
    assert_eq!(expected.len(), 96_000);
    assert_eq!(samples(&out), expected);
}

/// A downstream that changes what it accepts mid-stream (new sink caps and
/// a RECONFIGURE) gets the new output caps before the next buffer, and the
/// resampler's output follows them.
#[test]
fn reconfigure_renegotiates_before_the_next_buffer() {
    common::init();
    let mut h = gst_check::Harness::new("linearresample");
    h.set_sink_caps(raw_caps(8000, 1));
    h.set_src_caps(raw_caps(48_000, 1));
    h.push(buffer(vec![0u8; 1920], 0, MS20, 0, 960)).unwrap();
    assert_eq!(h.pull().unwrap().size(), 320);
    h.set_sink_caps(raw_caps(16_000, 1));
    assert!(h.push_upstream_event(gst::event::Reconfigure::new()));
    h.push(buffer(vec![0u8; 1920], MS20, MS20, 960, 960))
        .unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.size(), 640, "20 ms at 16 kHz");
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps, raw_caps(16_000, 1));
}

/// Caps queries answer what the peer of the other pad accepts, mapped
/// through the element, both ways: a µ-law rate fixed downstream of
/// `ulawenc` is what its sink pad offers upstream, and a raw rate fixed
/// upstream of `ulawdec` is what its source pad offers downstream.
#[test]
fn caps_queries_reach_through_in_both_directions() {
    common::init();
    let mut enc = gst_check::Harness::new("ulawenc");
    enc.set_sink_caps(mulaw_caps(16_000, 2));
    let sink = enc.element().unwrap().static_pad("sink").unwrap();
    let offered = sink.query_caps(None);
    assert!(offered.is_fixed(), "{offered}");
    assert_eq!(offered, raw_caps(16_000, 2));

    let mut dec = gst_check::Harness::new("ulawdec");
    dec.set_src_caps(mulaw_caps(8000, 1));
    let src = dec.element().unwrap().static_pad("src").unwrap();
    let offered = src.query_caps(None);
    assert_eq!(offered, raw_caps(8000, 1));
    // A filter that cannot match gives nothing.
    assert!(src.query_caps(Some(&raw_caps(16_000, 1))).is_empty());
}

/// QOS, seeks and other upstream events pass through to the element
/// before, whatever `qos` is set to.
#[test]
fn upstream_events_pass_through() {
    common::init();
    for factory in ["ulawenc", "linearresample"] {
        let mut h = gst_check::Harness::new(factory);
        h.set_src_caps(raw_caps(8000, 1));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        h.srcpad()
            .unwrap()
            .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    log.lock().unwrap().push(e.type_());
                }
                gst::PadProbeReturn::Ok
            });
        let qos = gst::event::Qos::new(gst::QOSType::Overflow, 0.9, -5, gst::ClockTime::SECOND);
        h.push_upstream_event(qos);
        h.push_upstream_event(gst::event::Latency::new(gst::ClockTime::from_mseconds(5)));
        assert_eq!(
            *seen.lock().unwrap(),
            [gst::EventType::Qos, gst::EventType::Latency],
            "{factory}"
        );
    }
}

/// A buffer refused because a RECONFIGURE found nothing downstream accepts
/// is counted (buffers-in and rejected-buffers), not silently lost.
#[test]
fn a_buffer_refused_by_renegotiation_is_counted() {
    common::init();
    let mut h = gst_check::Harness::new("ulawenc");
    h.set_src_caps(raw_caps(8000, 1));
    h.push(buffer(vec![0u8; 320], 0, MS20, 0, 160)).unwrap();
    h.set_sink_caps(raw_caps(8000, 1));
    assert!(h.push_upstream_event(gst::event::Reconfigure::new()));
    assert_eq!(
        h.push(buffer(vec![0u8; 320], MS20, MS20, 160, 160)),
        Err(gst::FlowError::NotNegotiated)
    );
    assert_eq!(
        stat_values(&h, &["buffers-in", "buffers-out", "rejected-buffers"]),
        [2, 1, 1]
    );
}
