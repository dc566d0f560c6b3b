//! The cores on their own, against the references they compete with:
//! librtpsynth's figures for synthesis and jitter buffering (from the
//! issues: librtpsynth is not built here), straightforward loops measured in
//! the same run for G.711 and resampling, rtcp-types (the crate
//! gst-plugins-rs uses) for RTCP. The elements built on them are measured by
//! the plugin's benchmarks. `BENCH_ONLY=session` (or synth, jbuf, codec, a
//! comma-separated list; g711 or resample for half of codec) runs only
//! those sections.

mod common;

use common::*;
use rtpsynth_core::jbuf::{Config, JitterBuffer, Output};
use rtpsynth_core::{g711, resample, rtcp, rtp, session, synth};

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

/// The least any G.711 decoder must do: read `n` bytes and write `2 * n`,
/// here by zero-extending each byte to a little-endian 16-bit lane with the
/// widest instruction the CPU has. Decoders' lines are raced against it.
struct Widen {
    name: &'static str,
    run: fn(&[u8], &mut [u8]),
}

impl Widen {
    /// The AVX2 form, for CPUs with AVX2 only, when this one has it.
    fn avx2() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            return Some(Widen {
                name: "u8->u16 copy, AVX2",
                // SAFETY: the CPU has AVX2 (checked above).
                run: |i, o| unsafe { widen::avx2(i, o) },
            });
        }
        None
    }

    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512bw") {
                return Widen {
                    name: "u8->u16 copy, AVX-512",
                    // SAFETY: the CPU has AVX-512BW (checked above).
                    run: |i, o| unsafe { widen::avx512(i, o) },
                };
            }
        }
        if let Some(avx2) = Self::avx2() {
            return avx2;
        }
        Widen {
            name: "u8->u16 copy",
            run: |i, o| {
                for (o, &c) in o.chunks_exact_mut(2).zip(i) {
                    o.copy_from_slice(&u16::from(c).to_le_bytes());
                }
            },
        }
    }
}

/// [`Widen`]'s kernels: whole vectors, then a scalar tail (at most one
/// vector's worth per 1 s chunk, which does not move the figure).
#[cfg(target_arch = "x86_64")]
mod widen {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub fn avx2(input: &[u8], output: &mut [u8]) {
        let n = input.len().min(output.len() / 2);
        let (codes, rest) = input[..n].as_chunks::<16>();
        let (outs, rest_out) = output[..2 * n].as_chunks_mut::<32>();
        for (c, o) in codes.iter().zip(outs) {
            // SAFETY: 16 readable and 32 writable bytes; `loadu` and `storeu`
            // need no alignment.
            unsafe {
                let w = _mm256_cvtepu8_epi16(_mm_loadu_si128(c.as_ptr().cast()));
                _mm256_storeu_si256(o.as_mut_ptr().cast(), w);
            }
        }
        for (o, &c) in rest_out.chunks_exact_mut(2).zip(rest) {
            o.copy_from_slice(&u16::from(c).to_le_bytes());
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub fn avx512(input: &[u8], output: &mut [u8]) {
        let n = input.len().min(output.len() / 2);
        let (codes, rest) = input[..n].as_chunks::<32>();
        let (outs, rest_out) = output[..2 * n].as_chunks_mut::<64>();
        for (c, o) in codes.iter().zip(outs) {
            // SAFETY: 32 readable and 64 writable bytes; `loadu` and `storeu`
            // need no alignment.
            unsafe {
                let w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(c.as_ptr().cast()));
                _mm512_storeu_si512(o.as_mut_ptr().cast(), w);
            }
        }
        for (o, &c) in rest_out.chunks_exact_mut(2).zip(rest) {
            o.copy_from_slice(&u16::from(c).to_le_bytes());
        }
    }
}

/// Law `L`'s S16LE decoder against the [`Widen`] floor, on 1 s buffers: all
/// of `codes` streamed through in 1 s chunks (4 MB in and 8 MB out: L3 on
/// the bench machine), and one 1 s buffer decoded over and over (8 KB in,
/// 16 KB out: L1 and L2), which is what the kernel itself costs.
fn g711_decode_vs_floor<L: Law>(codes: &[u8]) {
    let floor = Widen::detect();
    let law = L::NAME;
    let n = codes.len();
    let mut le = vec![0u8; 2 * n];
    let mut le_ref = vec![0u8; 2 * n];
    let reps = 5;
    race(
        &format!("{law} decode S16LE, 1 s chunks (samples/s)"),
        floor.name,
        (n * reps) as u64,
        reps,
        || {
            for (i, o) in codes.chunks(8_000).zip(le.chunks_mut(16_000)) {
                keep(L::decode_s16le(keep(i), o));
            }
            keep(&le);
        },
        || {
            for (i, o) in codes.chunks(8_000).zip(le_ref.chunks_mut(16_000)) {
                (floor.run)(keep(i), o);
            }
            keep(&le_ref);
        },
    );
    let calls = scale(5_000) as usize;
    let (one, out, out_ref) = (&codes[..8_000], &mut le[..16_000], &mut le_ref[..16_000]);
    race(
        &format!("{law} decode S16LE, 1 s buffer in cache (samples/s)"),
        floor.name,
        (8_000 * calls) as u64,
        calls,
        || {
            keep(L::decode_s16le(keep(one), keep(&mut *out)));
        },
        || {
            (floor.run)(keep(one), keep(&mut *out_ref));
        },
    );
    // The same against G.191's loop, which the streamed core lines above
    // race on 4 MB.
    let mut lin = vec![0i16; 8_000];
    race(
        &format!("{law} decode S16LE, 1 s buffer in cache (samples/s)"),
        "G.191 loop",
        (8_000 * calls) as u64,
        calls,
        || {
            keep(L::decode_s16le(keep(one), keep(&mut *out)));
        },
        || {
            g191_loop_decode::<L>(keep(one), keep(&mut lin));
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

/// G.711 cores against plain loops and the copy floor.
fn g711_all_cores() {
    let x = signal(scale(4_000_000) as usize);
    g711_cores::<Ulaw>(&x);
    g711_cores::<Alaw>(&x);
    let mut codes = vec![0u8; x.len()];
    g711::encode(&x, &mut codes);
    g711_decode_vs_floor::<Ulaw>(&codes);
    g711::encode_alaw(&x, &mut codes);
    g711_decode_vs_floor::<Alaw>(&codes);
    // The floor itself, widest form against AVX2's: what a decoder that
    // stayed with AVX2 could reach at most. Its output is a fresh vector,
    // where the lines above write into one of 8 MB, which the allocator
    // maps 16 bytes past a page boundary: every 64-byte store there spans
    // two cache lines, which halves the copy (bound by its stores) and
    // leaves the decoders (bound by their permutes) as they are.
    let (floor, avx2) = (Widen::detect(), Widen::avx2());
    if let Some(avx2) = avx2.filter(|a| a.name != floor.name) {
        let calls = scale(5_000) as usize;
        let (one, mut out, mut out_ref) = (&codes[..8_000], vec![0u8; 16_000], vec![0u8; 16_000]);
        race(
            &format!("floor: {}, 1 s buffer in cache (samples/s)", floor.name),
            "AVX2",
            (8_000 * calls) as u64,
            calls,
            || (floor.run)(keep(one), keep(&mut out)),
            || (avx2.run)(keep(one), keep(&mut out_ref)),
        );
    }
}

/// Resampling cores against the f64 loop.
fn resample_cores() {
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

/// CNAME of the benchmark compounds: the length of a typical user@host.
const CNAME: &str = "rtpsynth@media-7.example.net";

/// The report block of the benchmark compounds, varied by `i` so that no
/// write is the same as the last.
fn bench_block(i: u64) -> rtcp::ReportBlock {
    rtcp::ReportBlock {
        ssrc: 0x2222,
        fraction_lost: 3,
        cumulative_lost: -2,
        extended_highest_seq: 0x1_0000 + i as u32,
        jitter: 80,
        last_sr: 0xabcd_0000 ^ i as u32,
        delay_since_last_sr: 0x8000,
    }
}

/// The compound a channel sends every few seconds, SR + 1 report block +
/// SDES CNAME, by our writer.
fn write_ours(out: &mut [u8], i: u64) -> usize {
    let info = rtcp::SenderInfo {
        ntp: 0xe000_0000_0000_0000 + (i << 20),
        rtp_timestamp: i as u32 * 160,
        packet_count: i as u32,
        octet_count: i as u32 * 160,
    };
    let Ok(sr) = rtcp::write_sr(out, 0x1111, &info, &[bench_block(i)]) else {
        return 0;
    };
    sr + rtcp::write_sdes_cname(&mut out[sr..], 0x1111, CNAME.as_bytes()).unwrap_or(0)
}

/// The same compound through rtcp-types' builders, as gst-plugins-rs writes.
fn write_rtcp_types(out: &mut [u8], i: u64) -> usize {
    use rtcp_types::{
        Compound, ReportBlock, RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem, SenderReport,
    };
    let b = bench_block(i);
    let block = ReportBlock::builder(b.ssrc)
        .fraction_lost(b.fraction_lost)
        .cumulative_lost(b.cumulative_lost as u32 & 0xff_ffff)
        .extended_sequence_number(b.extended_highest_seq)
        .interarrival_jitter(b.jitter)
        .last_sender_report_timestamp(b.last_sr)
        .delay_since_last_sender_report_timestamp(b.delay_since_last_sr);
    let sr = SenderReport::builder(0x1111)
        .ntp_timestamp(0xe000_0000_0000_0000 + (i << 20))
        .rtp_timestamp(i as u32 * 160)
        .packet_count(i as u32)
        .octet_count(i as u32 * 160)
        .add_report_block(block);
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(0x1111).add_item(SdesItem::builder(SdesItem::CNAME, CNAME)));
    Compound::builder()
        .add_packet(sr)
        .add_packet(sdes)
        .write_into(out)
        .unwrap_or(0)
}

/// What a receiver reads of the compound, summed, by our reader.
fn read_ours(data: &[u8]) -> u64 {
    let Ok(c) = rtcp::Compound::parse(data) else {
        return 0;
    };
    let mut sum = 0u64;
    for p in c.packets() {
        match p {
            rtcp::Packet::SenderReport(sr) => {
                let i = sr.sender_info();
                sum += u64::from(sr.ssrc()) + i.ntp + u64::from(i.rtp_timestamp);
                sum += u64::from(i.packet_count) + u64::from(i.octet_count);
                for b in sr.report_blocks() {
                    sum += u64::from(b.ssrc) + u64::from(b.fraction_lost);
                    sum += b.cumulative_lost as u64 + u64::from(b.extended_highest_seq);
                    sum += u64::from(b.jitter) + u64::from(b.last_sr);
                    sum += u64::from(b.delay_since_last_sr);
                }
            }
            rtcp::Packet::Sdes(sdes) => {
                for chunk in sdes.chunks() {
                    for (item, value) in chunk.items() {
                        if item == rtcp::SDES_CNAME {
                            sum += u64::from(chunk.ssrc) + value.len() as u64;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    sum
}

/// The same reading through rtcp-types, with the 24-bit cumulative count
/// sign-extended as it must be by its users.
fn read_rtcp_types(data: &[u8]) -> u64 {
    use rtcp_types::{Compound, Packet, SdesItem};
    let Ok(c) = Compound::parse(data) else {
        return 0;
    };
    let mut sum = 0u64;
    for p in c {
        match p {
            Ok(Packet::Sr(sr)) => {
                sum += u64::from(sr.ssrc()) + sr.ntp_timestamp() + u64::from(sr.rtp_timestamp());
                sum += u64::from(sr.packet_count()) + u64::from(sr.octet_count());
                for b in sr.report_blocks() {
                    sum += u64::from(b.ssrc()) + u64::from(b.fraction_lost());
                    sum += (((b.cumulative_lost() << 8) as i32) >> 8) as u64;
                    sum += u64::from(b.extended_sequence_number());
                    sum += u64::from(b.interarrival_jitter());
                    sum += u64::from(b.last_sender_report_timestamp());
                    sum += u64::from(b.delay_since_last_sender_report_timestamp());
                }
            }
            Ok(Packet::Sdes(sdes)) => {
                for chunk in sdes.chunks() {
                    for item in chunk.items() {
                        if item.type_() == SdesItem::CNAME {
                            sum += u64::from(chunk.ssrc()) + item.value().len() as u64;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    sum
}

/// RTCP reading and writing against rtcp-types, the crate gst-plugins-rs
/// uses, and the session's per-packet paths.
fn session_cores() {
    let n = scale(1_000_000);
    let reps = 3;
    let mut data = [0u8; 256];
    let len = write_ours(&mut data, 7);
    let mut check = [0u8; 256];
    assert_eq!(
        write_rtcp_types(&mut check, 7),
        len,
        "both write the same compound"
    );
    assert_eq!(&check[..len], &data[..len], "byte for byte");
    assert_eq!(read_ours(&data[..len]), read_rtcp_types(&data[..len]));
    let compound = &data[..len];
    race(
        &format!("rtcp read SR+block+SDES, {len} B (compounds/s)"),
        "rtcp-types",
        n * reps,
        reps as usize,
        || {
            for _ in 0..n {
                keep(read_ours(keep(compound)));
            }
        },
        || {
            for _ in 0..n {
                keep(read_rtcp_types(keep(compound)));
            }
        },
    );
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    race(
        &format!("rtcp write SR+block+SDES, {len} B (compounds/s)"),
        "rtcp-types",
        n * reps,
        reps as usize,
        || {
            for i in 0..n {
                // Through black_box as &mut, so no write can be skipped as
                // already done by the last call.
                keep(write_ours(keep(&mut a), i));
            }
        },
        || {
            for i in 0..n {
                keep(write_rtcp_types(keep(&mut b), i));
            }
        },
    );

    // One channel's receive path: the datagram parsed as RTP and counted,
    // with the jitter computed, as the UDP worker will for each packet.
    let packets = scale(2_000_000) as usize;
    let mut datagrams = vec![0u8; packets * DATAGRAM_LEN];
    for (i, d) in datagrams.chunks_exact_mut(DATAGRAM_LEN).enumerate() {
        datagram(i as u16, d);
    }
    let config = session::Config {
        ssrc: 0x1111,
        clock_rate: Some(8000),
        ..session::Config::default()
    };
    let received = median(runs(), || {
        let mut s = session::Session::new(&config, CNAME, 0).expect("valid config");
        let r = rate(packets as u64, || {
            for (i, d) in datagrams.chunks_exact(DATAGRAM_LEN).enumerate() {
                if let Ok(p) = rtp::Packet::parse(keep(d)) {
                    keep(s.handle_rtp(&p, i as u64 * 20_000_000));
                }
            }
        });
        keep(s.stats());
        r
    });
    report(
        "session: RTP parsed and counted",
        received,
        "pkt/s",
        None,
        true,
    );

    let in_rtcp = median(runs(), || {
        let mut s = session::Session::new(&config, CNAME, 0).expect("valid config");
        let r = rate(n, || {
            for i in 0..n {
                keep(s.handle_rtcp(keep(compound), i)).ok();
            }
        });
        keep(s.stats());
        r
    });
    report(
        "session: RTCP SR+block+SDES taken in",
        in_rtcp,
        "/s",
        None,
        true,
    );
}

/// Whether to run `section`: all run unless `BENCH_ONLY` names some (a
/// comma-separated list of synth, jbuf, codec, session; g711 and resample
/// are the two halves of codec).
fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == section))
}

fn main() {
    if wanted("synth") {
        let n = scale(50_000_000);
        let core = median(runs(), || synth_rate(n));
        report(
            "synth core: 172-byte PCMU packets",
            core,
            "pkt/s",
            Some(("librtpsynth (issue figure, not run)", 40e6)),
            true,
        );
    }

    if wanted("jbuf") {
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
    }
    if wanted("codec") || wanted("g711") {
        g711_all_cores();
    }
    if wanted("codec") || wanted("resample") {
        resample_cores();
    }
    if wanted("session") {
        session_cores();
    }
}
