//! The cores on their own, against the references they compete with:
//! librtpsynth's figures for synthesis and jitter buffering (from the
//! issues: librtpsynth is not built here), straightforward loops measured in
//! the same run for G.711 and resampling. The elements built on them are
//! measured by the plugin's benchmarks.

mod common;

use common::*;
use rtpsynth_core::jbuf::{Config, JitterBuffer, Output};
use rtpsynth_core::{g711, resample, synth};

/// The C library's figures on this machine, from the issue (packets/s).
const LIBRTPSYNTH_IN_ORDER: f64 = 37.7e6;
const LIBRTPSYNTH_MIXED: f64 = 32.5e6;

/// Reports `what` in items/s: `ours` against `reference` (named `ref_name`),
/// each timed [`paired`] over `reps` calls that process `items` items in all.
fn race(
    what: &str,
    ref_name: &str,
    items: u64,
    reps: usize,
    mut ours: impl FnMut(),
    mut reference: impl FnMut(),
) {
    let (o, r) = paired(
        || rate(items, || (0..reps).for_each(|_| ours())),
        || rate(items, || (0..reps).for_each(|_| reference())),
    );
    report(what, o, "/s", Some((ref_name, r)), true);
}

/// Packets per second the synthesizer writes into one reused buffer.
fn synth_rate(packets: u64) -> f64 {
    let config = synth::Config {
        payload_type: 0,
        clock_rate: 8000,
        ptime_ms: 20,
        payload_size: 160,
        ssrc: 1,
        first_seq: 0,
        first_timestamp: 0,
    };
    let mut synth = synth::Synth::new(&config).expect("valid config");
    let mut buf = [0u8; 172];
    rate(packets, || {
        for _ in 0..packets {
            let len = synth.write_next(keep(&mut buf), 0xff);
            keep(len);
        }
    })
}

/// Packets per second through the jitter buffer, in order or impaired.
fn jbuf_rate(n: usize, mixed: bool) -> f64 {
    // One flat buffer in arrival order, like a receive ring, rather than
    // scattered heap blocks.
    let arrivals = order(n, mixed);
    let mut data = vec![0u8; arrivals.len() * DATAGRAM_LEN];
    for (slot, &i) in data.chunks_exact_mut(DATAGRAM_LEN).zip(&arrivals) {
        datagram(i as u16, slot);
    }
    let cfg = Config {
        capacity: 20,
        ..Config::default()
    };
    median(runs(), || {
        let mut jb = JitterBuffer::new(cfg);
        let mut out = 0u64;
        let mut sink = |o: Output<u32>| {
            if let Output::Packet { item, .. } = o {
                out = out.wrapping_add(u64::from(item));
            }
        };
        let r = rate(arrivals.len() as u64, || {
            for (i, d) in data.chunks_exact(DATAGRAM_LEN).enumerate() {
                jb.push(d, i as u64, i as u32, &mut sink);
            }
            jb.flush(&mut sink);
        });
        keep(out);
        r
    })
}

/// One G.711 law as its bench lines exercise it: the core's slice
/// functions and the G.191 routines they are raced against.
trait Law {
    const NAME: &str;
    fn encode(input: &[i16], out: &mut [u8]) -> usize;
    fn decode(input: &[u8], out: &mut [i16]) -> usize;
    fn encode_s16le(input: &[u8], out: &mut [u8]) -> usize;
    fn decode_s16le(input: &[u8], out: &mut [u8]) -> usize;
    fn g191_compress(x: i16) -> u8;
    fn g191_expand(code: u8) -> i16;
}

struct Ulaw;
struct Alaw;

impl Law for Ulaw {
    const NAME: &str = "ulaw";
    fn encode(input: &[i16], out: &mut [u8]) -> usize {
        g711::encode(input, out)
    }
    fn decode(input: &[u8], out: &mut [i16]) -> usize {
        g711::decode(input, out)
    }
    fn encode_s16le(input: &[u8], out: &mut [u8]) -> usize {
        g711::encode_s16le(input, out)
    }
    fn decode_s16le(input: &[u8], out: &mut [u8]) -> usize {
        g711::decode_s16le(input, out)
    }
    fn g191_compress(x: i16) -> u8 {
        g711::g191::ulaw_compress(x)
    }
    fn g191_expand(code: u8) -> i16 {
        g711::g191::ulaw_expand(code)
    }
}

impl Law for Alaw {
    const NAME: &str = "alaw";
    fn encode(input: &[i16], out: &mut [u8]) -> usize {
        g711::encode_alaw(input, out)
    }
    fn decode(input: &[u8], out: &mut [i16]) -> usize {
        g711::decode_alaw(input, out)
    }
    fn encode_s16le(input: &[u8], out: &mut [u8]) -> usize {
        g711::encode_alaw_s16le(input, out)
    }
    fn decode_s16le(input: &[u8], out: &mut [u8]) -> usize {
        g711::decode_alaw_s16le(input, out)
    }
    fn g191_compress(x: i16) -> u8 {
        g711::g191::alaw_compress(x)
    }
    fn g191_expand(code: u8) -> i16 {
        g711::g191::alaw_expand(code)
    }
}

/// G.191's compress routine as a plain loop with its per-sample branches:
/// the straightforward implementation the table-driven core replaces.
fn g191_loop_encode<L: Law>(input: &[i16], out: &mut [u8]) {
    for (o, &x) in out.iter_mut().zip(input) {
        *o = L::g191_compress(x);
    }
}

/// G.191's expand routine as a plain loop.
fn g191_loop_decode<L: Law>(input: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(input) {
        *o = L::g191_expand(c);
    }
}

/// Law `L`'s cores against the G.191 loops, and its byte-slice kernels
/// against its i16 cores, on the test signal `x`.
fn g711_cores<L: Law>(x: &[i16]) {
    let n = x.len();
    let mut codes = vec![0u8; n];
    let mut back = vec![0i16; n];
    // The reference loops write elsewhere: both closures live at once.
    let mut codes_ref = vec![0u8; n];
    let mut back_ref = vec![0i16; n];
    let reps = 5;
    let items = (n * reps) as u64;
    let law = L::NAME;
    race(
        &format!("{law} encode core (samples/s)"),
        "G.191 loop",
        items,
        reps,
        || {
            keep(L::encode(keep(x), &mut codes));
            keep(&codes);
        },
        || {
            g191_loop_encode::<L>(keep(x), &mut codes_ref);
            keep(&codes_ref);
        },
    );
    L::encode(x, &mut codes);
    race(
        &format!("{law} decode core (samples/s)"),
        "G.191 loop",
        items,
        reps,
        || {
            keep(L::decode(keep(&codes), &mut back));
            keep(&back);
        },
        || {
            g191_loop_decode::<L>(keep(&codes), &mut back_ref);
            keep(&back_ref);
        },
    );

    // The byte-slice kernels the elements run on mapped buffers (no
    // alignment guarantee), against the i16 cores above, on 1 s of 8 kHz
    // audio per call as in the 1 s element lines.
    let pcm: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut le = vec![0u8; 2 * n];
    race(
        &format!("{law} encode S16LE bytes, 1 s chunks (samples/s)"),
        "i16 core",
        items,
        reps,
        || {
            for (i, o) in pcm.chunks(16_000).zip(codes.chunks_mut(8_000)) {
                keep(L::encode_s16le(keep(i), o));
            }
            keep(&codes);
        },
        || {
            for (i, o) in x.chunks(8_000).zip(codes_ref.chunks_mut(8_000)) {
                keep(L::encode(keep(i), o));
            }
            keep(&codes_ref);
        },
    );
    race(
        &format!("{law} decode S16LE bytes, 1 s chunks (samples/s)"),
        "i16 core",
        items,
        reps,
        || {
            for (i, o) in codes.chunks(8_000).zip(le.chunks_mut(16_000)) {
                keep(L::decode_s16le(keep(i), o));
            }
            keep(&le);
        },
        || {
            for (i, o) in codes.chunks(8_000).zip(back_ref.chunks_mut(8_000)) {
                keep(L::decode(keep(i), o));
            }
            keep(&back_ref);
        },
    );
}

/// librtpsynth's `resample_linear` loop (f64 positions), for reference.
fn f64_loop_resample(input: &[i16], out: &mut [i16], in_rate: u32, out_rate: u32) {
    let n_in = input.len();
    let r = in_rate as f64 / out_rate as f64;
    for (i, o) in out.iter_mut().enumerate() {
        let pos = i as f64 * r;
        let k = pos as usize;
        let v = if k >= n_in - 1 {
            input[n_in - 1] as f64
        } else {
            let a = input[k] as f64;
            a + (input[k + 1] as f64 - a) * (pos - k as f64)
        };
        *o = v.round_ties_even().clamp(-32768.0, 32767.0) as i16;
    }
}

/// A rate as the bench lines name it: 8k, 44.1k.
fn khz(rate: u32) -> String {
    format!("{}k", f64::from(rate) / 1000.0)
}

/// G.711 and resampling cores against plain loops.
fn codec_cores() {
    let x = signal(scale(4_000_000) as usize);
    g711_cores::<Ulaw>(&x);
    g711_cores::<Alaw>(&x);

    for (a, b) in [
        (8_000u32, 48_000u32),
        (48_000, 8_000),
        (16_000, 48_000),
        (8_000, 16_000),
        (44_100, 48_000),
        (48_000, 44_100),
        (11_025, 48_000),
    ] {
        // One second of input per call, streamed: the element's use.
        let input = signal(a as usize);
        let calls = scale(if a < b { 100 } else { 300 });
        let mut r = resample::Resampler::new(a, b, 1).unwrap();
        let mut out = vec![0i16; r.output_frames(input.len()) + 8];
        let per_call = r.output_frames(input.len()) as u64;
        let mut out_ref = vec![0i16; per_call as usize];
        let (ours, naive) = paired(
            || {
                r.reset();
                rate(per_call * calls, || {
                    for _ in 0..calls {
                        keep(r.process(keep(&input), &mut out).unwrap());
                        keep(&out);
                    }
                })
            },
            || {
                rate(per_call * calls, || {
                    for _ in 0..calls {
                        f64_loop_resample(keep(&input), &mut out_ref, a, b);
                        keep(&out_ref);
                    }
                })
            },
        );
        report(
            &format!("resample core {}->{} (output samples/s)", khz(a), khz(b)),
            ours,
            "/s",
            Some(("f64 loop", naive)),
            true,
        );
    }
}

fn main() {
    let n = scale(50_000_000);
    let core = median(runs(), || synth_rate(n));
    report(
        "synth core: 172-byte PCMU packets",
        core,
        "pkt/s",
        Some(("librtpsynth (issue figure, not run)", 40e6)),
        true,
    );

    let n = scale(2_000_000) as usize;
    let in_order = jbuf_rate(n, false);
    report(
        &format!("jbuf core, {n} x 172 B in order, capacity 20"),
        in_order,
        "pkt/s",
        Some(("librtpsynth (issue figure)", LIBRTPSYNTH_IN_ORDER)),
        true,
    );
    let mixed = jbuf_rate(n, true);
    report(
        "jbuf core, 1% loss / 5% reorder<=4 / 1% dup",
        mixed,
        "pkt/s",
        Some(("librtpsynth (issue figure)", LIBRTPSYNTH_MIXED)),
        true,
    );
    codec_cores();
}
