//! The G.711 encoders, `ulawenc` and `g711alawenc`: bit-exactness through
//! the element, metadata, caps, events, bad input, and where each differs
//! from the stock encoder of its law.

mod audio;
mod common;

use audio::*;
use gst::prelude::*;

fn all_inputs() -> Vec<i16> {
    (i16::MIN..=i16::MAX).collect()
}

#[test]
fn encodes_all_65536_inputs_like_the_core_and_keeps_metadata() {
    common::init();
    for law in LAWS {
        encodes_all_inputs(&law);
    }
}

fn encodes_all_inputs(law: &Law) {
    let mut h = harness_for(law.enc, raw_caps(8000, 1));
    let input = all_inputs();
    let (pts, dur) = (1_000_000_000, 8_192_000_000);
    h.push(buffer(le_bytes(&input), pts, dur, 8000, 65_536))
        .unwrap();
    let out = h.pull().unwrap();
    let expected: Vec<u8> = input.iter().map(|&x| (law.encode_sample)(x)).collect();
    assert_eq!(bytes_of(&out), expected, "{}", law.enc);
    assert_eq!(out.pts(), Some(gst::ClockTime::from_nseconds(pts)));
    assert_eq!(out.duration(), Some(gst::ClockTime::from_nseconds(dur)));
    assert_eq!((out.offset(), out.offset_end()), (8000, 8000 + 65_536));
    assert_eq!(
        h.sinkpad().unwrap().current_caps().unwrap(),
        (law.caps)(8000, 1)
    );
    assert_eq!(
        stats(&h.element().unwrap()).name().as_str(),
        format!("application/x-{}-stats", law.enc)
    );
    assert_eq!(
        stat_values(
            &h,
            &[
                "buffers-in",
                "buffers-out",
                "samples-in",
                "samples-out",
                "rejected-buffers"
            ]
        ),
        [1, 1, 65_536, 65_536, 0]
    );
}

/// Both allocation paths (plain system memory downstream: recycled spares;
/// here downstream asks for 64-byte alignment: its parameters) give the
/// same codes, metadata and counters.
#[test]
fn both_allocation_paths_give_the_same_buffers() {
    common::init();
    for law in LAWS {
        both_allocation_paths(&law);
    }
}

fn both_allocation_paths(law: &Law) {
    let input = all_inputs();
    let mut results = Vec::new();
    for aligned in [false, true] {
        let mut h = gst_check::Harness::new(law.enc);
        if aligned {
            demand_aligned_memory(&h, 63);
        }
        h.set_src_caps(raw_caps(8000, 1));
        let mut outs = Vec::new();
        for (i, chunk) in input.chunks(160).take(50).enumerate() {
            let mut b = buffer(
                le_bytes(chunk),
                i as u64 * 20_000_000,
                20_000_000,
                i as u64 * 160,
                160,
            );
            let bm = b.get_mut().unwrap();
            bm.set_dts(bm.pts());
            match i {
                7 => bm.set_flags(gst::BufferFlags::DISCONT),
                // Flags carried over whatever they mean, as BaseTransform
                // carries them; the outputs after them are recycled
                // buffers that had them.
                9 => bm.set_flags(gst::BufferFlags::RESYNC | gst::BufferFlags::DELTA_UNIT),
                _ => {}
            }
            h.push(b).unwrap();
            let out = h.pull().unwrap();
            if aligned {
                assert_eq!(data_address(&out) % 64, 0, "downstream's alignment");
            }
            outs.push((
                bytes_of(&out),
                out.pts(),
                out.dts(),
                out.duration(),
                out.offset(),
                out.offset_end(),
                out.flags(),
            ));
        }
        assert_eq!(
            stat_values(
                &h,
                &["buffers-in", "buffers-out", "samples-in", "samples-out"]
            ),
            [50, 50, 8000, 8000]
        );
        results.push(outs);
    }
    assert_eq!(results[0], results[1]);
    let flags = |i: usize| results[0][i].6;
    assert!(flags(7).contains(gst::BufferFlags::DISCONT));
    assert!(flags(9).contains(gst::BufferFlags::RESYNC | gst::BufferFlags::DELTA_UNIT));
    assert!(flags(10).is_empty() && flags(8).is_empty());
    assert_eq!(results[0][12].2, results[0][12].1, "DTS carried over");
}

/// Both stock encoders quantize the magnitude of a negative sample where
/// G.191 quantizes its one's complement (stock mulawenc with the Sun/CCITT
/// code, bias 0x84 on negated samples; stock alawenc with `s16_to_alaw`
/// on |x|); the two part on negative inputs at step boundaries. This
/// measures exactly where, on the installed stock elements.
#[test]
fn differs_from_the_stock_encoders_on_127_negative_inputs() {
    common::init();
    for law in LAWS {
        let mut h = harness_for(law.stock_enc, raw_caps(8000, 1));
        let input = all_inputs();
        h.push(buffer(le_bytes(&input), 0, 0, 0, 65_536)).unwrap();
        let stock = bytes_of(&h.pull().unwrap());
        assert_eq!(stock.len(), input.len());
        let differ: Vec<i16> = input
            .iter()
            .zip(&stock)
            .filter(|&(&x, &c)| (law.encode_sample)(x) != c)
            .map(|(&x, _)| x)
            .collect();
        assert!(differ.iter().all(|&x| x < 0), "{}: {differ:?}", law.enc);
        // Every difference is one quantization step (A-law: a step and a
        // half where stock's code starts the next segment), decoded
        // further from zero by stock.
        for &x in &differ {
            let ours = law.round_trip(x) as i32;
            let theirs = (law.decode_sample)(stock[(x as i32 + 32768) as usize]) as i32;
            assert!(
                theirs < ours && ours - theirs <= 1024,
                "{}: {x}: {ours} vs {theirs}",
                law.enc
            );
        }
        assert_eq!(differ.len(), 127, "{}: {differ:?}", law.enc);
    }
}

#[test]
fn multichannel_and_caps_queries_through_converters() {
    common::init();
    // audioconvert and audioresample upstream negotiate F32 at 44.1 k into
    // S16LE at 16 k because ulawenc answers caps queries from downstream.
    for law in LAWS {
        let media = (law.caps)(16000, 2);
        let media = media.structure(0).unwrap().name();
        let (data, caps) = run_to_appsink(&format!(
            "audiotestsrc num-buffers=10 samplesperbuffer=441 ! audio/x-raw,format=F32LE,rate=44100,channels=2 \
             ! audioconvert ! audioresample ! {} ! {media},rate=16000 ! appsink name=out",
            law.enc
        ));
        let caps = caps.unwrap();
        assert_eq!(caps, (law.caps)(16000, 2));
        // 0.1 s at 16 kHz, two channels, one byte each (audioresample keeps
        // the total length within a few samples).
        assert!((data.len() as i64 - 3200).abs() <= 16, "{}", data.len());
    }
}

#[test]
fn gap_events_are_forwarded_in_order() {
    common::init();
    for law in LAWS {
        gap_events_in_order(&law);
    }
}

fn gap_events_in_order(law: &Law) {
    let mut h = harness_for(law.enc, raw_caps(8000, 1));
    let el = h.element().unwrap();
    let seen = record_flow(&el.static_pad("src").unwrap());
    h.push(buffer(le_bytes(&[1, 2, 3, 4]), 0, 500_000, 0, 4))
        .unwrap();
    assert!(h.push_event(gap(gst::ClockTime::from_nseconds(500_000))));
    h.push(buffer(le_bytes(&[5, 6]), 20_500_000, 250_000, 164, 2))
        .unwrap();
    assert_eq!(buffers_and_gaps(&seen), ["buffer", "gap", "buffer"]);
    assert_eq!(stat(&stats(&el), "gap-events"), 1);
}

#[test]
fn odd_and_empty_buffers_are_stream_errors() {
    common::init();
    for (data, why) in [
        (vec![1u8, 2, 3], "not a whole number"),
        (vec![], "zero-length"),
        (vec![1u8, 2], "not a whole number"), // one sample of a 2-channel frame
    ] {
        let channels = if data.len() == 2 { 2 } else { 1 };
        for law in LAWS {
            let mut h = harness_for(law.enc, raw_caps(8000, channels));
            let bus = gst::Bus::new();
            h.element().unwrap().set_bus(Some(&bus));
            assert_eq!(
                h.push(gst::Buffer::from_mut_slice(data.clone())),
                Err(gst::FlowError::Error)
            );
            let msg = bus
                .pop_filtered(&[gst::MessageType::Error])
                .expect("error posted");
            let gst::MessageView::Error(e) = msg.view() else {
                unreachable!()
            };
            assert!(
                e.error().to_string().contains(why),
                "{} {:?}",
                e.error(),
                e.debug()
            );
            assert_eq!(
                stat_values(&h, &["buffers-in", "rejected-buffers", "buffers-out"]),
                [1, 1, 0]
            );
        }
    }
}

#[test]
fn missing_caps_and_unsupported_formats_do_not_negotiate() {
    common::init();
    for law in LAWS {
        refuses_without_caps(&law);
    }
}

fn refuses_without_caps(law: &Law) {
    let (h, pushed) = push_four_bytes(law.enc, None);
    assert_eq!(pushed, Err(gst::FlowError::NotNegotiated));
    // Refused before or by the element, never counted as passed on.
    let s = stats(&h.element().unwrap());
    assert_eq!(stat(&s, "buffers-in"), stat(&s, "rejected-buffers"));
    assert_eq!(stat(&s, "buffers-out"), 0);
    for caps in [
        raw_caps_of("S16BE", 8000, 1),
        raw_caps_of("F32LE", 8000, 1),
        (law.caps)(8000, 1),
    ] {
        assert_eq!(
            push_four_bytes(law.enc, Some(caps.clone())).1,
            Err(gst::FlowError::NotNegotiated),
            "{caps}"
        );
    }
}
