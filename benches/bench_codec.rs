//! G.711 µ-law and linear resampling: cores against straightforward loops
//! measured in the same run, elements against stock `mulawenc`, `mulawdec`
//! and `audioresample quality=0` on the same pre-generated buffers.

mod common;

use common::*;
use gst::prelude::*;
use gstrtpsynth::prng::SplitMix64;
use gstrtpsynth::{g711, resample};

/// Medians of `ours` and `reference` over `runs()` runs each, interleaved so
/// that load from other processes on the machine hits both alike.
fn paired(mut ours: impl FnMut() -> f64, mut reference: impl FnMut() -> f64) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs() {
        a.push(ours());
        b.push(reference());
    }
    (middle(a), middle(b))
}

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

/// Speech-like test signal: noise shaped by a slow envelope, full range.
fn signal(n: usize) -> Vec<i16> {
    let mut rng = SplitMix64::new(1);
    (0..n)
        .map(|i| {
            let env = ((i as f64 / 800.0).sin() * 0.5 + 0.5) * 32767.0;
            ((rng.next_u32() as i32 as f64 / i32::MAX as f64) * env) as i16
        })
        .collect()
}

/// G.191 `ulaw_compress` as a plain loop with its per-sample branches: the
/// straightforward implementation the table-driven core replaces.
fn g191_loop_encode(input: &[i16], out: &mut [u8]) {
    for (o, &x) in out.iter_mut().zip(input) {
        *o = g711::g191::ulaw_compress(x);
    }
}

/// G.191 `ulaw_expand` as a plain loop.
fn g191_loop_decode(input: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(input) {
        *o = g711::g191::ulaw_expand(c);
    }
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

fn bench_cores() {
    let n = scale(4_000_000) as usize;
    let x = signal(n);
    let mut codes = vec![0u8; n];
    let mut back = vec![0i16; n];
    // The reference loops write elsewhere: both closures live at once.
    let mut codes_ref = vec![0u8; n];
    let mut back_ref = vec![0i16; n];
    let reps = 5;
    let items = (n * reps) as u64;
    race(
        "ulaw encode core (samples/s)",
        "G.191 loop",
        items,
        reps,
        || {
            keep(g711::encode(keep(&x), &mut codes));
            keep(&codes);
        },
        || {
            g191_loop_encode(keep(&x), &mut codes_ref);
            keep(&codes_ref);
        },
    );
    g711::encode(&x, &mut codes);
    race(
        "ulaw decode core (samples/s)",
        "G.191 loop",
        items,
        reps,
        || {
            keep(g711::decode(keep(&codes), &mut back));
            keep(&back);
        },
        || {
            g191_loop_decode(keep(&codes), &mut back_ref);
            keep(&back_ref);
        },
    );

    // The byte-slice kernels the elements run on mapped buffers (no
    // alignment guarantee), against the i16 cores above, on 1 s of 8 kHz
    // audio per call as in the 1 s element lines.
    let pcm: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut le = vec![0u8; 2 * n];
    race(
        "ulaw encode S16LE bytes, 1 s chunks (samples/s)",
        "i16 core",
        items,
        reps,
        || {
            for (i, o) in pcm.chunks(16_000).zip(codes.chunks_mut(8_000)) {
                keep(g711::encode_s16le(keep(i), o));
            }
            keep(&codes);
        },
        || {
            for (i, o) in x.chunks(8_000).zip(codes_ref.chunks_mut(8_000)) {
                keep(g711::encode(keep(i), o));
            }
            keep(&codes_ref);
        },
    );
    race(
        "ulaw decode S16LE bytes, 1 s chunks (samples/s)",
        "i16 core",
        items,
        reps,
        || {
            for (i, o) in codes.chunks(8_000).zip(le.chunks_mut(16_000)) {
                keep(g711::decode_s16le(keep(i), o));
            }
            keep(&le);
        },
        || {
            for (i, o) in codes.chunks(8_000).zip(back_ref.chunks_mut(8_000)) {
                keep(g711::decode(keep(i), o));
            }
            keep(&back_ref);
        },
    );

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

/// Where the element under test finds its input.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// In the cache, as behind a real upstream element (a depayloader,
    /// decoder or `filesrc`) that has just written it: a probe on appsrc's
    /// pad reads each list of buffers (at most [`LIST_BYTES`]) just before
    /// pushing it, in every pipeline alike, so the floor holds that read.
    Cached,
    /// Straight from memory: the pre-generated buffers (tens of MB) are
    /// far out of cache by the time the element reads them.
    Memory,
}

/// Bytes per list appsrc pushes: within the L1 data cache (48 KiB here),
/// so that a list read on its way out is still there when the element
/// reads it.
const LIST_BYTES: usize = 32 * 1024;

/// (wall, CPU) seconds `appsrc ! <chain> ! fakesink` takes to move `bufs`
/// (`chain` empty: the floor, the same pipeline without the element).
fn pipeline_seconds(
    chain: &str,
    caps: &gst::Caps,
    bufs: &[gst::Buffer],
    input: Input,
) -> (f64, f64) {
    // Lists amortise appsrc's queue; the elements still see one buffer at a
    // time (their pads split lists).
    let per_list = (LIST_BYTES / bufs[0].size()).clamp(1, 100);
    let lists = bufs.chunks(per_list).map(|chunk| {
        let mut list = gst::BufferList::new_sized(chunk.len());
        let l = list.get_mut().expect("new list");
        for b in chunk {
            l.add(b.clone());
        }
        list
    });
    appsrc_seconds(
        &format!("{chain} fakesink sync=false enable-last-sample=false"),
        caps,
        lists,
        |pipeline| {
            if input == Input::Cached {
                read_on_exit(pipeline);
            }
        },
    )
}

/// Reads the buffers appsrc pushes (every cache line of their bytes, and
/// their metas), as it pushes them.
fn read_on_exit(pipeline: &gst::Pipeline) {
    let pad = pipeline
        .by_name("src")
        .and_then(|src| src.static_pad("src"))
        .expect("appsrc");
    pad.add_probe(gst::PadProbeType::BUFFER_LIST, |_, info| {
        if let Some(list) = info.buffer_list() {
            for b in list.iter() {
                // Its metas (none) are looked up by every element.
                keep(b.iter_meta::<gst::Meta>().count());
                if let Ok(map) = b.map_readable() {
                    keep(map.chunks(64).fold(0u8, |acc, line| acc ^ line[0]));
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Times `appsrc ! ours ! fakesink`, `appsrc ! stock ! fakesink` and the
/// floor `appsrc ! floor ! fakesink` in turns within each run (so machine
/// load hits them alike) and reports, each against stock: the end-to-end rate
/// of `items` (wall clock), and the element's own cost per buffer (pipeline
/// minus floor of the same run, process CPU and wall). `floor` holds what
/// `ours` and `stock` have besides the element (the resamplers' output
/// capsfilter: a capsfilter of the input caps), so it is not counted as the
/// element's. The input is [`Input::Cached`], as in a real pipeline; the own
/// CPU cost is also given with the input coming from memory.
fn compare(
    what: &str,
    items: &str,
    n_items: f64,
    (floor_chain, ours, stock): (&str, &str, &str),
    caps: &gst::Caps,
    bufs: &[gst::Buffer],
) {
    if !selected(what) {
        return;
    }
    let per_buf = |secs: f64| secs / bufs.len() as f64 * 1e9;
    // (ours, stock) per run; the floor's pair is (wall, CPU).
    type Runs = (Vec<f64>, Vec<f64>);
    let (mut e2e, mut own_cpu, mut own_wall, mut from_memory, mut floor): (
        Runs,
        Runs,
        Runs,
        Runs,
        Runs,
    ) = Default::default();
    let push = |v: &mut Runs, o: f64, s: f64| {
        v.0.push(o);
        v.1.push(s);
    };
    for _ in 0..runs() {
        let time = |chain: &str, input| pipeline_seconds(chain, caps, bufs, input);
        let (f, o, s) = (
            time(floor_chain, Input::Cached),
            time(ours, Input::Cached),
            time(stock, Input::Cached),
        );
        push(&mut floor, per_buf(f.0), per_buf(f.1));
        push(&mut e2e, n_items / o.0, n_items / s.0);
        push(&mut own_wall, per_buf(o.0 - f.0), per_buf(s.0 - f.0));
        push(&mut own_cpu, per_buf(o.1 - f.1), per_buf(s.1 - f.1));
        let (f, o, s) = (
            time(floor_chain, Input::Memory),
            time(ours, Input::Memory),
            time(stock, Input::Memory),
        );
        push(&mut from_memory, per_buf(o.1 - f.1), per_buf(s.1 - f.1));
    }
    let stock_name = stock.split(" !").next().unwrap_or(stock);
    report(
        &format!("{what}: end-to-end ({items}/s)"),
        middle(e2e.0),
        "/s",
        Some((stock_name, middle(e2e.1))),
        true,
    );
    for (how, (o, s)) in [
        ("CPU", own_cpu),
        ("wall", own_wall),
        ("CPU, input from memory,", from_memory),
    ] {
        report(
            &format!("{what}: own {how} ns/buffer"),
            middle(o),
            "ns",
            Some((stock_name, middle(s))),
            false,
        );
    }
    report(
        &format!(
            "{what}: floor {} CPU, wall ns/buffer",
            format!("appsrc ! {floor_chain} fakesink").replace("  ", " ")
        ),
        middle(floor.1),
        &format!("ns, {:.0} ns", middle(floor.0)),
        None,
        false,
    );
}

/// `total` frames of `bytes_per_frame` at `rate` in buffers of `per_buf`
/// frames, contiguous timestamps, made before anything is timed.
fn buffers(
    data: &[u8],
    rate: u64,
    per_buf: usize,
    total: usize,
    bytes_per_frame: usize,
) -> Vec<gst::Buffer> {
    let chunk = per_buf * bytes_per_frame;
    (0..total / per_buf)
        .map(|i| {
            let off = (i * chunk) % (data.len() - chunk + 1);
            let mut b = gst::Buffer::from_slice(data[off..off + chunk].to_vec());
            let bm = b.get_mut().unwrap();
            let start = (i * per_buf) as u64;
            bm.set_pts(gst::ClockTime::from_nseconds(start * 1_000_000_000 / rate));
            bm.set_duration(gst::ClockTime::from_nseconds(
                per_buf as u64 * 1_000_000_000 / rate,
            ));
            bm.set_offset(start);
            bm.set_offset_end(start + per_buf as u64);
            b
        })
        .collect()
}

fn raw_caps(rate: i32) -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("layout", "interleaved")
        .field("rate", rate)
        .field("channels", 1)
        .build()
}

fn bench_elements() {
    let x = signal(8_000 * 4);
    let pcm: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut codes = vec![0u8; x.len()];
    g711::encode(&x, &mut codes);
    let mulaw_caps = gst::Caps::builder("audio/x-mulaw")
        .field("rate", 8000)
        .field("channels", 1)
        .build();

    for (label, per_buf, total) in [
        ("20 ms", 160usize, scale(16_000_000) as usize),
        ("1 s", 8_000, scale(80_000_000) as usize),
    ] {
        let raw = buffers(&pcm, 8_000, per_buf, total, 2);
        let n = (raw.len() * per_buf) as f64;
        compare(
            &format!("ulawenc, {label} buffers"),
            "samples",
            n,
            ("", "ulawenc !", "mulawenc !"),
            &raw_caps(8000),
            &raw,
        );
        drop(raw);
        let enc = buffers(&codes, 8_000, per_buf, total, 1);
        compare(
            &format!("ulawdec, {label} buffers"),
            "samples",
            n,
            ("", "ulawdec !", "mulawdec !"),
            &mulaw_caps,
            &enc,
        );
    }

    for (a, b) in [(8_000u32, 48_000u32), (48_000, 8_000)] {
        let src = signal(a as usize * 2);
        let pcm: Vec<u8> = src.iter().flat_map(|s| s.to_le_bytes()).collect();
        for (label, ms, secs) in [
            ("20 ms", 20usize, scale(200) as usize),
            ("1 s", 1_000, scale(400) as usize),
        ] {
            let per_buf = a as usize * ms / 1000;
            let bufs = buffers(&pcm, a.into(), per_buf, a as usize * secs, 2);
            let out_frames = (bufs.len() * per_buf) as f64 * b as f64 / a as f64;
            let caps = format!("audio/x-raw,rate={b}");
            compare(
                &format!("linearresample {}k->{}k, {label}", a / 1000, b / 1000),
                "output samples",
                out_frames,
                (
                    &format!("audio/x-raw,rate={a} !"),
                    &format!("linearresample ! {caps} !"),
                    &format!("audioresample quality=0 ! {caps} !"),
                ),
                &raw_caps(a as i32),
                &bufs,
            );
        }
    }
}

/// `BENCH_ONLY=<text>` runs only the lines whose name contains it (to
/// profile one element with `perf record`).
fn selected(what: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| what.contains(&only))
}

fn main() {
    gst::init().unwrap();
    gstrtpsynth::plugin_register_static().unwrap();
    if selected("core") {
        bench_cores();
    }
    bench_elements();
}
