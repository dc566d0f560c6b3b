//! `ulawdec`: all 256 codes through the element, agreement with stock
//! `mulawdec`, RTP interop, events and bad input.

mod audio;
mod common;

use audio::*;
use gst::prelude::*;
use rtpsynth_core::g711;

fn all_codes() -> Vec<u8> {
    // Stereo: 128 frames holding all 256 codes.
    (0..=255).collect()
}

#[test]
fn decodes_all_256_codes_like_the_core_and_keeps_metadata() {
    common::init();
    let mut h = harness_for("ulawdec", mulaw_caps(16000, 2));
    h.push(buffer(all_codes(), 40_000_000, 8_000_000, 640, 128))
        .unwrap();
    let out = h.pull().unwrap();
    let mut expected = vec![0i16; 256];
    g711::decode(&all_codes(), &mut expected);
    assert_eq!(samples(&bytes_of(&out)), expected);
    assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(40)));
    assert_eq!(out.duration(), Some(gst::ClockTime::from_mseconds(8)));
    assert_eq!((out.offset(), out.offset_end()), (640, 768));
    assert_eq!(
        h.sinkpad().unwrap().current_caps().unwrap(),
        raw_caps(16000, 2)
    );
    assert_eq!(
        stats(&h.element().unwrap()).name(),
        "application/x-ulawdec-stats"
    );
    assert_eq!(
        stat_values(
            &h,
            &["buffers-in", "buffers-out", "samples-in", "samples-out"]
        ),
        [1, 1, 128, 128]
    );
}

#[test]
fn agrees_with_stock_mulawdec_on_every_code() {
    common::init();
    let mut h = harness_for("mulawdec", mulaw_caps(8000, 1));
    h.push(buffer(all_codes(), 0, 0, 0, 256)).unwrap();
    let stock = samples(&bytes_of(&h.pull().unwrap()));
    let ours: Vec<i16> = all_codes().into_iter().map(g711::decode_sample).collect();
    assert_eq!(ours, stock);
}

#[test]
fn rtp_round_trip_with_stock_payloader() {
    common::init();
    // linearresample -> ulawenc -> PCMU RTP -> ulawdec: what comes out is the
    // core's decode(encode(resample(x))) of what audiotestsrc made.
    let src = "audiotestsrc num-buffers=20 samplesperbuffer=960 wave=sine freq=440 \
               ! audio/x-raw,format=S16LE,rate=48000,channels=1";
    let (raw, dec, caps) = before_and_after(
        src,
        "linearresample ! audio/x-raw,rate=8000 ! ulawenc ! rtppcmupay \
         ! rtppcmudepay ! ulawdec",
    );
    assert_eq!(caps.unwrap(), raw_caps(8000, 1));
    let resampled = rtpsynth_core::resample::resample(&raw, 1, 48_000, 8_000).unwrap();
    let expected: Vec<i16> = resampled
        .iter()
        .map(|&x| g711::decode_sample(g711::encode_sample(x)))
        .collect();
    assert_eq!(expected.len(), 3200);
    assert_eq!(samples(&dec), expected);
}

#[test]
fn decodes_then_upsamples_through_linearresample() {
    common::init();
    // The receive direction: 8 kHz µ-law to 48 kHz S16, exact samples.
    let src = "audiotestsrc num-buffers=10 samplesperbuffer=160 wave=sine freq=1000 \
               ! audio/x-raw,format=S16LE,rate=8000,channels=1";
    let (raw, out, caps) = before_and_after(
        src,
        "ulawenc ! ulawdec ! linearresample ! audio/x-raw,rate=48000",
    );
    assert_eq!(caps.unwrap(), raw_caps(48000, 1));
    let decoded: Vec<i16> = raw
        .into_iter()
        .map(|x| g711::decode_sample(g711::encode_sample(x)))
        .collect();
    let expected = rtpsynth_core::resample::resample(&decoded, 1, 8_000, 48_000).unwrap();
    assert_eq!(expected.len(), 9600);
    assert_eq!(samples(&out), expected);
}

#[test]
fn gap_events_are_forwarded_in_order() {
    common::init();
    let mut h = harness_for("ulawdec", mulaw_caps(8000, 1));
    let el = h.element().unwrap();
    let seen = record_flow(&el.static_pad("src").unwrap());
    assert!(h.push_event(gap(gst::ClockTime::ZERO)));
    h.push(buffer(vec![0xFF; 160], 20_000_000, 20_000_000, 160, 160))
        .unwrap();
    assert_eq!(buffers_and_gaps(&seen), ["gap", "buffer"]);
    assert_eq!(stat(&stats(&el), "gap-events"), 1);
}

#[test]
fn partial_frames_empty_buffers_and_wrong_caps_are_refused() {
    common::init();
    for (data, channels) in [(vec![0u8; 3], 2), (vec![], 1)] {
        let mut h = harness_for("ulawdec", mulaw_caps(8000, channels));
        assert_eq!(
            h.push(gst::Buffer::from_mut_slice(data)),
            Err(gst::FlowError::Error)
        );
        assert_eq!(
            stat_values(&h, &["rejected-buffers", "buffers-out"]),
            [1, 0]
        );
    }
    assert_eq!(
        push_four_bytes("ulawdec", None).1,
        Err(gst::FlowError::NotNegotiated)
    );
    let alaw = gst::Caps::builder("audio/x-alaw")
        .field("rate", 8000)
        .field("channels", 1)
        .build();
    assert_eq!(
        push_four_bytes("ulawdec", Some(alaw)).1,
        Err(gst::FlowError::NotNegotiated)
    );
}
