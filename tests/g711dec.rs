//! The G.711 decoders, `ulawdec` and `g711alawdec`: all 256 codes through
//! the element, agreement with the stock decoders, RTP interop with the
//! stock payloaders and elements in both directions, events and bad input.

mod audio;
mod common;

use audio::*;
use gst::prelude::*;

fn all_codes() -> Vec<u8> {
    // Stereo: 128 frames holding all 256 codes.
    (0..=255).collect()
}

#[test]
fn decodes_all_256_codes_like_the_core_and_keeps_metadata() {
    common::init();
    for law in LAWS {
        let mut h = harness_for(law.dec, (law.caps)(16000, 2));
        h.push(buffer(all_codes(), 40_000_000, 8_000_000, 640, 128))
            .unwrap();
        let out = h.pull().unwrap();
        let expected: Vec<i16> = all_codes().into_iter().map(law.decode_sample).collect();
        assert_eq!(samples(&bytes_of(&out)), expected, "{}", law.dec);
        assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!(out.duration(), Some(gst::ClockTime::from_mseconds(8)));
        assert_eq!((out.offset(), out.offset_end()), (640, 768));
        assert_eq!(
            h.sinkpad().unwrap().current_caps().unwrap(),
            raw_caps(16000, 2)
        );
        assert_eq!(
            stats(&h.element().unwrap()).name().as_str(),
            format!("application/x-{}-stats", law.dec)
        );
        assert_eq!(
            stat_values(
                &h,
                &["buffers-in", "buffers-out", "samples-in", "samples-out"]
            ),
            [1, 1, 128, 128]
        );
    }
}

#[test]
fn agrees_with_the_stock_decoders_on_every_code() {
    common::init();
    for law in LAWS {
        let mut h = harness_for(law.stock_dec, (law.caps)(8000, 1));
        h.push(buffer(all_codes(), 0, 0, 0, 256)).unwrap();
        let stock = samples(&bytes_of(&h.pull().unwrap()));
        let ours: Vec<i16> = all_codes().into_iter().map(law.decode_sample).collect();
        assert_eq!(ours, stock, "{}", law.dec);
    }
}

/// Our encoder through the stock payloader, depayloader and decoder, and
/// the stock encoder through the stock RTP elements into our decoder: both
/// sample-exact, since every decoder here is G.191's expansion.
#[test]
fn rtp_interop_with_the_stock_elements_both_ways() {
    common::init();
    let src = "audiotestsrc num-buffers=20 samplesperbuffer=160 wave=sine freq=440 volume=0.8 \
               ! audio/x-raw,format=S16LE,rate=8000,channels=1";
    for law in LAWS {
        let (raw, out, caps) = before_and_after(
            src,
            &format!(
                "{} ! {} ! {} ! {}",
                law.enc, law.pay, law.depay, law.stock_dec
            ),
        );
        assert_eq!(caps.unwrap(), raw_caps(8000, 1));
        let expected: Vec<i16> = raw.iter().map(|&x| law.round_trip(x)).collect();
        assert_eq!(expected.len(), 3200);
        assert_eq!(samples(&out), expected, "{} to stock", law.enc);

        // The reverse: what stock encodes, ours decodes as stock does.
        let (_, ours, _) = before_and_after(
            src,
            &format!(
                "{} ! {} ! {} ! {}",
                law.stock_enc, law.pay, law.depay, law.dec
            ),
        );
        let (_, theirs, _) = before_and_after(
            src,
            &format!(
                "{} ! {} ! {} ! {}",
                law.stock_enc, law.pay, law.depay, law.stock_dec
            ),
        );
        assert_eq!(ours.len(), 6400);
        assert_eq!(ours, theirs, "stock {} to {}", law.stock_enc, law.dec);
    }
}

#[test]
fn rtp_round_trip_with_stock_payloader() {
    common::init();
    // linearresample -> our encoder -> RTP -> our decoder: what comes out is
    // the core's decode(encode(resample(x))) of what audiotestsrc made.
    let src = "audiotestsrc num-buffers=20 samplesperbuffer=960 wave=sine freq=440 \
               ! audio/x-raw,format=S16LE,rate=48000,channels=1";
    for law in LAWS {
        let (raw, dec, caps) = before_and_after(
            src,
            &format!(
                "linearresample ! audio/x-raw,rate=8000 ! {} ! {} ! {} ! {}",
                law.enc, law.pay, law.depay, law.dec
            ),
        );
        assert_eq!(caps.unwrap(), raw_caps(8000, 1));
        let resampled = rtpsynth_core::resample::resample(&raw, 1, 48_000, 8_000).unwrap();
        let expected: Vec<i16> = resampled.iter().map(|&x| law.round_trip(x)).collect();
        assert_eq!(expected.len(), 3200);
        assert_eq!(samples(&dec), expected, "{}", law.dec);
    }
}

#[test]
fn decodes_then_upsamples_through_linearresample() {
    common::init();
    // The receive direction: 8 kHz G.711 to 48 kHz S16, exact samples.
    let src = "audiotestsrc num-buffers=10 samplesperbuffer=160 wave=sine freq=1000 \
               ! audio/x-raw,format=S16LE,rate=8000,channels=1";
    for law in LAWS {
        let (raw, out, caps) = before_and_after(
            src,
            &format!(
                "{} ! {} ! linearresample ! audio/x-raw,rate=48000",
                law.enc, law.dec
            ),
        );
        assert_eq!(caps.unwrap(), raw_caps(48000, 1));
        let decoded: Vec<i16> = raw.into_iter().map(|x| law.round_trip(x)).collect();
        let expected = rtpsynth_core::resample::resample(&decoded, 1, 8_000, 48_000).unwrap();
        assert_eq!(expected.len(), 9600);
        assert_eq!(samples(&out), expected, "{}", law.dec);
    }
}

#[test]
fn gap_events_are_forwarded_in_order() {
    common::init();
    for law in LAWS {
        let mut h = harness_for(law.dec, (law.caps)(8000, 1));
        let el = h.element().unwrap();
        let seen = record_flow(&el.static_pad("src").unwrap());
        assert!(h.push_event(gap(gst::ClockTime::ZERO)));
        h.push(buffer(vec![0xFF; 160], 20_000_000, 20_000_000, 160, 160))
            .unwrap();
        assert_eq!(buffers_and_gaps(&seen), ["gap", "buffer"]);
        assert_eq!(stat(&stats(&el), "gap-events"), 1);
    }
}

#[test]
fn partial_frames_empty_buffers_and_wrong_caps_are_refused() {
    common::init();
    for law in LAWS {
        for (data, channels) in [(vec![0u8; 3], 2), (vec![], 1)] {
            let mut h = harness_for(law.dec, (law.caps)(8000, channels));
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
            push_four_bytes(law.dec, None).1,
            Err(gst::FlowError::NotNegotiated)
        );
        assert_eq!(
            push_four_bytes(law.dec, Some((law.other_caps)(8000, 1))).1,
            Err(gst::FlowError::NotNegotiated),
            "{}",
            law.dec
        );
    }
}

/// Our A-law elements do not take the stock elements' names: with both
/// plugins loaded, `alawenc` and `alawdec` are still stock's, and ours are
/// found under their own names.
#[test]
fn stock_alaw_elements_keep_their_names() {
    common::init();
    for (ours, stock, stock_type) in [
        ("g711alawenc", "alawenc", "GstALawEnc"),
        ("g711alawdec", "alawdec", "GstALawDec"),
    ] {
        let stock_el = gst::ElementFactory::make(stock).build().unwrap();
        assert_eq!(stock_el.type_().name(), stock_type);
        let ours_el = gst::ElementFactory::make(ours).build().unwrap();
        assert_eq!(
            ours_el.factory().unwrap().plugin_name().as_deref(),
            Some("rtpsynth")
        );
    }
}
