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
    let mut it = [a, b].into_iter().map(|mut v| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    });
    (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0))
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
        let mut absno = if x < 0 {
            ((!x) >> 2) + 33
        } else {
            (x >> 2) + 33
        };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let code = ((8 - segno) << 4) | (15 - ((absno >> segno) & 15));
        *o = if x >= 0 { code | 0x80 } else { code } as u8;
    }
}

/// G.191 `ulaw_expand` as a plain loop.
fn g191_loop_decode(input: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(input) {
        let sign = if c < 0x80 { -1 } else { 1 };
        let m = !(c as i16);
        let e = (m >> 4) & 7;
        let step = 4 << (e + 1);
        *o = sign * ((0x80 << e) + step * (m & 15) + step / 2 - 132);
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
    let (ours, naive) = paired(
        || {
            rate(items, || {
                for _ in 0..reps {
                    keep(g711::encode(keep(&x), &mut codes));
                    keep(&codes);
                }
            })
        },
        || {
            rate(items, || {
                for _ in 0..reps {
                    g191_loop_encode(keep(&x), &mut codes_ref);
                    keep(&codes_ref);
                }
            })
        },
    );
    report(
        "ulaw encode core (samples/s)",
        ours,
        "/s",
        Some(("G.191 loop", naive)),
        true,
    );
    g711::encode(&x, &mut codes);
    let (ours, naive) = paired(
        || {
            rate(items, || {
                for _ in 0..reps {
                    keep(g711::decode(keep(&codes), &mut back));
                    keep(&back);
                }
            })
        },
        || {
            rate(items, || {
                for _ in 0..reps {
                    g191_loop_decode(keep(&codes), &mut back_ref);
                    keep(&back_ref);
                }
            })
        },
    );
    report(
        "ulaw decode core (samples/s)",
        ours,
        "/s",
        Some(("G.191 loop", naive)),
        true,
    );

    for (a, b) in [(8_000u32, 48_000u32), (48_000, 8_000)] {
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
            &format!(
                "resample core {}k->{}k (output samples/s)",
                a / 1000,
                b / 1000
            ),
            ours,
            "/s",
            Some(("f64 loop", naive)),
            true,
        );
    }
}

/// Pushes pre-made buffers through `appsrc name=src caps=... ! <chain> !
/// fakesink` and returns the seconds from the first push to EOS.
fn run_pipeline(chain: &str, caps: &gst::Caps, bufs: &[gst::Buffer]) -> f64 {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time max-bytes=0 ! {chain} ! fakesink sync=false enable-last-sample=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(caps));
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let secs = seconds(|| {
        // Lists amortise appsrc's queue hand-off (the same for both
        // elements); the elements still see one buffer at a time.
        for chunk in bufs.chunks(100) {
            let mut list = gst::BufferList::new_sized(chunk.len());
            {
                let list = list.get_mut().unwrap();
                for b in chunk {
                    list.add(b.clone());
                }
            }
            src.push_buffer_list(list).unwrap();
        }
        src.end_of_stream().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .unwrap();
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("{chain}: {}", e.error());
        }
    });
    pipeline.set_state(gst::State::Null).unwrap();
    secs
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
        ("20 ms", 160usize, scale(8_000_000) as usize),
        ("1 s", 8_000, scale(80_000_000) as usize),
    ] {
        let raw = buffers(&pcm, 8_000, per_buf, total, 2);
        let n = (raw.len() * per_buf) as u64;
        // The floor every element here sits on: appsrc and fakesink alone.
        let floor = median(runs(), || {
            n as f64 / run_pipeline("identity", &raw_caps(8000), &raw)
        });
        report(
            &format!("appsrc ! identity ! fakesink, {label} (samples/s)"),
            floor,
            "/s",
            None,
            true,
        );
        let (ours, stock) = paired(
            || n as f64 / run_pipeline("ulawenc", &raw_caps(8000), &raw),
            || n as f64 / run_pipeline("mulawenc", &raw_caps(8000), &raw),
        );
        report(
            &format!("ulawenc element, {label} buffers (samples/s)"),
            ours,
            "/s",
            Some(("mulawenc", stock)),
            true,
        );
        drop(raw);
        let enc = buffers(&codes, 8_000, per_buf, total, 1);
        let (ours, stock) = paired(
            || n as f64 / run_pipeline("ulawdec", &mulaw_caps, &enc),
            || n as f64 / run_pipeline("mulawdec", &mulaw_caps, &enc),
        );
        report(
            &format!("ulawdec element, {label} buffers (samples/s)"),
            ours,
            "/s",
            Some(("mulawdec", stock)),
            true,
        );
    }

    for (a, b) in [(8_000u32, 48_000u32), (48_000, 8_000)] {
        let src = signal(a as usize * 2);
        let pcm: Vec<u8> = src.iter().flat_map(|s| s.to_le_bytes()).collect();
        for (label, ms, secs) in [
            ("20 ms", 20usize, scale(100) as usize),
            ("1 s", 1_000, scale(400) as usize),
        ] {
            let per_buf = a as usize * ms / 1000;
            let bufs = buffers(&pcm, a.into(), per_buf, a as usize * secs, 2);
            let out_frames = (bufs.len() * per_buf) as f64 * b as f64 / a as f64;
            let caps = format!("audio/x-raw,rate={b}");
            let (ours, stock) = paired(
                || {
                    out_frames
                        / run_pipeline(
                            &format!("linearresample ! {caps}"),
                            &raw_caps(a as i32),
                            &bufs,
                        )
                },
                || {
                    out_frames
                        / run_pipeline(
                            &format!("audioresample quality=0 ! {caps}"),
                            &raw_caps(a as i32),
                            &bufs,
                        )
                },
            );
            report(
                &format!(
                    "linearresample {}k->{}k, {label} (output samples/s)",
                    a / 1000,
                    b / 1000
                ),
                ours,
                "/s",
                Some(("audioresample q=0", stock)),
                true,
            );
        }
    }
}

fn main() {
    gst::init().unwrap();
    gstrtpsynth::plugin_register_static().unwrap();
    bench_cores();
    bench_elements();
}
