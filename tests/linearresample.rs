//! `linearresample`: streaming equals the whole-signal formula for any
//! buffer split, timestamps follow the output count, DISCONT/flush reset the
//! phase, EOS drains, negotiation works like audioresample, bad input fails.

mod audio;
mod common;

use audio::*;
use gst::prelude::*;
use rtpsynth_core::prng::SplitMix64;
use rtpsynth_core::resample::resample;

fn harness(in_rate: i32, out_rate: i32, channels: i32) -> gst_check::Harness {
    let mut h = gst_check::Harness::new("linearresample");
    h.set_sink_caps(raw_caps(out_rate, channels));
    h.set_src_caps(raw_caps(in_rate, channels));
    h
}

fn noise(rng: &mut SplitMix64, n: usize) -> Vec<i16> {
    (0..n).map(|_| rng.next_u32() as i16).collect()
}

/// Pushes `input` (frames of `ch` channels) in the given frame chunks with
/// contiguous timestamps starting at `t0`; the first chunk is DISCONT.
fn push_chunks(
    h: &mut gst_check::Harness,
    input: &[i16],
    ch: usize,
    rate: u64,
    t0: u64,
    chunks: &[usize],
) {
    let mut at = 0;
    for (i, &c) in chunks.iter().enumerate() {
        let pts = t0 + at as u64 * 1_000_000_000 / rate;
        let end = t0 + (at + c) as u64 * 1_000_000_000 / rate;
        let mut b = buffer(
            le_bytes(&input[at * ch..(at + c) * ch]),
            pts,
            end - pts,
            at as u64,
            c as u64,
        );
        if i == 0 {
            b.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        h.push(b).unwrap();
        at += c;
    }
}

fn pull_all(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

/// Output buffers tile time exactly: each starts where the previous ended,
/// at t0 + offset / rate, with offsets counting output frames.
fn check_timeline(bufs: &[gst::Buffer], t0: u64, rate: u64, bpf: usize) {
    let mut frames = 0u64;
    let offset0 = t0 * rate / 1_000_000_000;
    for (i, b) in bufs.iter().enumerate() {
        let n = (b.size() / bpf) as u64;
        let pts = t0 + frames * 1_000_000_000 / rate;
        let end = t0 + (frames + n) * 1_000_000_000 / rate;
        assert_eq!(
            b.pts(),
            Some(gst::ClockTime::from_nseconds(pts)),
            "buffer {i}"
        );
        assert_eq!(
            b.duration(),
            Some(gst::ClockTime::from_nseconds(end - pts)),
            "buffer {i}"
        );
        assert_eq!(
            (b.offset(), b.offset_end()),
            (offset0 + frames, offset0 + frames + n)
        );
        assert_eq!(
            b.flags().contains(gst::BufferFlags::DISCONT),
            i == 0,
            "buffer {i}"
        );
        frames += n;
    }
}

#[test]
fn any_buffer_split_gives_the_whole_signal_formula() {
    common::init();
    let mut rng = SplitMix64::new(42);
    // Lengths that are whole multiples of the rate ratio, so that the
    // streamed output (which cannot know the end in advance) has exactly
    // the whole-signal length.
    for &(a, b, ch, n) in &[
        (8_000, 48_000, 1, 1_000),
        (48_000, 8_000, 1, 6_000),
        (44_100, 48_000, 2, 4_410),
        (48_000, 44_100, 2, 4_800),
        (16_000, 16_001, 1, 1_600),
    ] {
        let input = noise(&mut rng, n * ch);
        let whole = resample(&input, ch, a, b).unwrap();
        for round in 0..4 {
            let mut chunks = Vec::new();
            let mut left = n;
            while left > 0 {
                let c = (1 + rng.below(if round == 0 { 3 } else { 400 }) as usize).min(left);
                chunks.push(c);
                left -= c;
            }
            let mut h = harness(a as i32, b as i32, ch as i32);
            let t0 = 3_000_000_000;
            push_chunks(&mut h, &input, ch, a.into(), t0, &chunks);
            assert!(h.push_event(gst::event::Eos::new()));
            let bufs = pull_all(&mut h);
            let out: Vec<i16> = bufs.iter().flat_map(|b| samples(&bytes_of(b))).collect();
            assert_eq!(out, whole, "{a}->{b} ch {ch} chunks {chunks:?}");
            check_timeline(&bufs, t0, b.into(), 2 * ch);
            let s = stats(&h.element().unwrap());
            assert_eq!(s.name(), "application/x-linearresample-stats");
            assert_eq!(stat(&s, "buffers-in"), chunks.len() as u64);
            assert_eq!(stat(&s, "buffers-out"), bufs.len() as u64);
            assert_eq!(stat(&s, "samples-in"), n as u64);
            assert_eq!(stat(&s, "samples-out"), (whole.len() / ch) as u64);
            assert_eq!(stat(&s, "resets"), 0);
        }
    }
}

/// Both allocation paths (plain system memory downstream: recycled spares;
/// downstream asks for 64-byte alignment: its parameters) give the same
/// buffers and counters, also when short buffers complete no output.
#[test]
fn both_allocation_paths_give_the_same_buffers() {
    common::init();
    let mut rng = SplitMix64::new(5);
    let input = noise(&mut rng, 2 * 4_000);
    let chunks = [1, 2, 5, 960, 7, 3, 1_000, 13, 2_009];
    for (a, b) in [(48_000, 8_000), (8_000, 44_100)] {
        let mut results = Vec::new();
        for aligned in [false, true] {
            let mut h = gst_check::Harness::new("linearresample");
            if aligned {
                demand_aligned_memory(&h, 63);
            }
            h.set_sink_caps(raw_caps(b, 2));
            h.set_src_caps(raw_caps(a, 2));
            push_chunks(&mut h, &input, 2, a as u64, 0, &chunks);
            h.push_event(gst::event::Eos::new());
            let bufs = pull_all(&mut h);
            if aligned {
                // All but the EOS drain buffer, which the element makes.
                let (_, made) = bufs.split_last().unwrap();
                let m: Vec<usize> = made.iter().map(|b| data_address(b) % 64).collect();
                assert!(m.iter().all(|&x| x == 0), "{a} -> {b}: {m:?}");
            }
            let s = stats(&h.element().unwrap());
            let counts: Vec<u64> = ["buffers-in", "buffers-out", "samples-in", "samples-out"]
                .iter()
                .map(|f| stat(&s, f))
                .collect();
            let seen: Vec<_> = bufs
                .iter()
                .map(|b| {
                    (
                        bytes_of(b),
                        b.pts(),
                        b.duration(),
                        b.offset(),
                        b.offset_end(),
                        b.flags(),
                    )
                })
                .collect();
            results.push((seen, counts));
        }
        assert_eq!(results[0], results[1], "{a} -> {b}");
        assert_eq!(results[0].1[0], chunks.len() as u64);
    }
}

#[test]
fn equal_rates_pass_buffers_through_untouched() {
    common::init();
    let mut h = harness(8_000, 8_000, 1);
    let inbuf = buffer(le_bytes(&[1, 2, 3, 4]), 0, 500_000, 0, 4);
    let ptr = inbuf.as_ptr();
    h.push(inbuf).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.as_ptr(), ptr);
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(h.try_pull().is_none(), "nothing to drain in passthrough");
    // Passed through, and counted as any buffer is.
    assert_eq!(
        stat_values(
            &h,
            &["buffers-in", "samples-in", "buffers-out", "samples-out"]
        ),
        [1, 4, 1, 4]
    );
}

#[test]
fn discont_resets_phase_and_timeline() {
    common::init();
    let mut rng = SplitMix64::new(5);
    let (a_in, b_in) = (noise(&mut rng, 100), noise(&mut rng, 90));
    let mut h = harness(8_000, 48_000, 1);
    push_chunks(&mut h, &a_in, 1, 8_000, 0, &[100]);
    let first = pull_all(&mut h);
    // B starts over at its own timestamp; A's held tail is not emitted.
    push_chunks(&mut h, &b_in, 1, 8_000, 10_000_000_000, &[40, 50]);
    assert!(h.push_event(gst::event::Eos::new()));
    let second = pull_all(&mut h);
    let out_a: Vec<i16> = first.iter().flat_map(|b| samples(&bytes_of(b))).collect();
    let out_b: Vec<i16> = second.iter().flat_map(|b| samples(&bytes_of(b))).collect();
    // Streaming A alone yields every output whose right neighbour is known.
    let whole_a = resample(&a_in, 1, 8_000, 48_000).unwrap();
    assert_eq!(out_a, whole_a[..(99 * 6)]);
    assert_eq!(out_b, resample(&b_in, 1, 8_000, 48_000).unwrap());
    check_timeline(&first, 0, 48_000, 2);
    check_timeline(&second, 10_000_000_000, 48_000, 2);
    assert_eq!(stat(&stats(&h.element().unwrap()), "resets"), 1);
}

#[test]
fn flush_resets_phase() {
    common::init();
    let mut rng = SplitMix64::new(6);
    let (a_in, b_in) = (noise(&mut rng, 120), noise(&mut rng, 60));
    let mut h = harness(48_000, 8_000, 1);
    let mut b = buffer(le_bytes(&a_in), 0, 2_500_000, 0, 120);
    b.get_mut().unwrap().unset_flags(gst::BufferFlags::DISCONT);
    h.push(b).unwrap();
    pull_all(&mut h);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    // No DISCONT flag on purpose: the flush alone must restart the phase.
    let mut b = buffer(le_bytes(&b_in), 0, 1_250_000, 0, 60);
    b.get_mut().unwrap().unset_flags(gst::BufferFlags::DISCONT);
    h.push(b).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let out: Vec<i16> = pull_all(&mut h)
        .iter()
        .flat_map(|b| samples(&bytes_of(b)))
        .collect();
    assert_eq!(out, resample(&b_in, 1, 48_000, 8_000).unwrap());
    assert_eq!(stat(&stats(&h.element().unwrap()), "resets"), 1);
}

#[test]
fn short_downsampled_buffers_produce_nothing_until_a_frame_completes() {
    common::init();
    let mut h = harness(48_000, 8_000, 1);
    let input: Vec<i16> = (0..12).map(|i| i * 100).collect();
    // Output 0 needs input 1; output 1 (position 6) needs input 7.
    let mut produced = Vec::new();
    for (i, x) in input.iter().enumerate() {
        let mut b = buffer(le_bytes(&[*x]), i as u64 * 20_833, 20_833, i as u64, 1);
        if i == 0 {
            b.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        h.push(b).unwrap();
        produced.push(pull_all(&mut h).len());
    }
    assert_eq!(produced, [0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(stat_values(&h, &["buffers-in", "buffers-out"]), [12, 2]);
}

#[test]
fn negotiates_like_audioresample_in_pipelines() {
    common::init();
    let src = "audiotestsrc num-buffers=10 samplesperbuffer=441 wave=sine \
               ! audio/x-raw,format=S16LE,rate=44100,channels=1";
    // A fixed rate downstream decides.
    let (raw, out, caps) = before_and_after(src, "linearresample ! audio/x-raw,rate=8000");
    assert_eq!(caps.unwrap(), raw_caps(8000, 1));
    assert_eq!(samples(&out), resample(&raw, 1, 44_100, 8_000).unwrap());
    // An unconstrained downstream gets the input rate, in passthrough.
    let (out, caps) = run_to_appsink(&format!("{src} ! linearresample ! appsink name=out"));
    assert_eq!(caps.unwrap(), raw_caps(44_100, 1));
    assert_eq!(samples(&out), raw);
    // The rate constraint reaches through ulawenc, and audioconvert before
    // linearresample turns F32 into S16LE.
    let (out, caps) = run_to_appsink(
        "audiotestsrc num-buffers=5 samplesperbuffer=960 ! audio/x-raw,format=F32LE,rate=48000 \
         ! audioconvert ! linearresample ! ulawenc ! audio/x-mulaw,rate=8000 ! appsink name=out",
    );
    assert_eq!(caps.unwrap(), mulaw_caps(8000, 1));
    assert_eq!(out.len(), 800);
}

#[test]
fn gap_events_are_forwarded_in_order() {
    common::init();
    let mut h = harness(8_000, 16_000, 1);
    let el = h.element().unwrap();
    let seen = record_flow(&el.static_pad("src").unwrap());
    push_chunks(&mut h, &[1, 2, 3, 4], 1, 8_000, 0, &[4]);
    assert!(h.push_event(gap(gst::ClockTime::from_nseconds(500_000))));
    let mut b = buffer(le_bytes(&[5, 6]), 20_500_000, 250_000, 164, 2);
    b.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
    h.push(b).unwrap();
    assert_eq!(buffers_and_gaps(&seen), ["buffer", "gap", "buffer"]);
    assert_eq!(stat(&stats(&el), "gap-events"), 1);
}

#[test]
fn bad_buffers_and_caps_are_refused() {
    common::init();
    for (bytes, ch) in [(3usize, 1), (2, 2), (0, 1)] {
        let mut h = harness(8_000, 16_000, ch);
        assert_eq!(
            h.push(gst::Buffer::from_mut_slice(vec![0u8; bytes])),
            Err(gst::FlowError::Error),
            "{bytes} bytes, {ch} channels"
        );
        assert_eq!(stat_values(&h, &["rejected-buffers", "samples-in"]), [1, 0]);
    }
    // No caps at all.
    assert_eq!(
        push_four_bytes("linearresample", None).1,
        Err(gst::FlowError::NotNegotiated)
    );
    // Rates beyond 384 kHz, and formats other than S16LE.
    for caps in [raw_caps(400_000, 1), raw_caps_of("S16BE", 8000, 1)] {
        assert_eq!(
            push_four_bytes("linearresample", Some(caps.clone())).1,
            Err(gst::FlowError::NotNegotiated),
            "{caps}"
        );
    }
}

#[test]
fn reports_one_input_frame_of_latency() {
    common::init();
    let mut h = harness(8_000, 48_000, 1);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(20));
    push_chunks(&mut h, &[1, 2, 3, 4], 1, 8_000, 0, &[4]);
    assert_eq!(
        h.query_latency(),
        Some(gst::ClockTime::from_mseconds(20) + gst::ClockTime::from_useconds(125))
    );
    // Passthrough adds nothing.
    let mut h = harness(8_000, 8_000, 1);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(20));
    push_chunks(&mut h, &[1, 2, 3, 4], 1, 8_000, 0, &[4]);
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(20)));
}
