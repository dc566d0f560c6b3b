//! G.711 µ-law and A-law and linear resampling elements against stock
//! `mulawenc`, `mulawdec`, `alawenc`, `alawdec` and `audioresample
//! quality=0` on the same pre-generated buffers (the cores against plain loops are in rtpsynth-core's
//! `bench_cores`).

mod common;

use common::*;
use gst::prelude::*;
use rtpsynth_core::g711;

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
    // (ours, stock, coded media type, the law's encoder), both laws.
    type Law = (
        &'static str,
        &'static str,
        &'static str,
        fn(&[i16], &mut [u8]) -> usize,
    );
    let laws: [Law; 2] = [
        ("ulaw", "mulaw", "audio/x-mulaw", g711::encode),
        ("g711alaw", "alaw", "audio/x-alaw", g711::encode_alaw),
    ];
    for (ours, stock, media, encode) in laws {
        let mut codes = vec![0u8; x.len()];
        encode(&x, &mut codes);
        let coded_caps = gst::Caps::builder(media)
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
                &format!("{ours}enc, {label} buffers"),
                "samples",
                n,
                ("", &format!("{ours}enc !"), &format!("{stock}enc !")),
                &raw_caps(8000),
                &raw,
            );
            drop(raw);
            let enc = buffers(&codes, 8_000, per_buf, total, 1);
            compare(
                &format!("{ours}dec, {label} buffers"),
                "samples",
                n,
                ("", &format!("{ours}dec !"), &format!("{stock}dec !")),
                &coded_caps,
                &enc,
            );
        }
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
    bench_elements();
}
