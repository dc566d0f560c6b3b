//! Shared by every benchmark: medians over repeated runs and one report line
//! format, so `make bench` prints comparable figures for every element.
#![allow(dead_code)]

pub mod floor;

use std::str::FromStr;
use std::time::Instant;

use gst::prelude::*;

/// The median of `v` (the upper middle one of an even count).
pub fn middle(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` `runs` times and returns the median of what it reports.
pub fn median<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    middle((0..runs).map(|_| f()).collect())
}

/// Items per second of `f`, which processes `items` items per call.
pub fn rate(items: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    items as f64 / t.elapsed().as_secs_f64()
}

/// Seconds taken by `f`.
pub fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Environment variable `name` parsed, or `default` when it is unset or
/// does not parse.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The comma-separated list in environment variable `name`, or in `default`
/// when it is unset; entries that do not parse are skipped.
pub fn env_list<T: FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Number of repetitions from `BENCH_RUNS` (default 5): medians of this many.
pub fn runs() -> usize {
    match env_or("BENCH_RUNS", 5) {
        0 => 5,
        n => n,
    }
}

/// Scales work from `BENCH_SCALE` (default 1.0), so a quick run is possible.
pub fn scale(n: u64) -> u64 {
    let s: f64 = env_or("BENCH_SCALE", 1.0);
    ((n as f64 * s) as u64).max(1)
}

/// Human-readable rate: 41.2 M/s.
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.1} ")
    }
}

/// One result line: what was measured, our figure, and the reference measured
/// in the same run with the ratio (higher is better for us when
/// `higher_is_better`).
pub fn report(
    name: &str,
    ours: f64,
    unit: &str,
    reference: Option<(&str, f64)>,
    higher_is_better: bool,
) {
    match reference {
        Some((ref_name, r)) => {
            let ratio = if higher_is_better { ours / r } else { r / ours };
            println!(
                "{name:<52} {:>12}{unit:<10} vs {ref_name}: {:>12}{unit:<10} ratio {ratio:>7.2}x",
                si(ours),
                si(r)
            );
        }
        None => println!("{name:<52} {:>12}{unit}", si(ours)),
    }
}

/// Keeps the optimizer from removing work whose result is unused.
pub fn keep<T>(v: T) -> T {
    std::hint::black_box(v)
}

/// The clock of core 0 as /proc/cpuinfo gives it, in MHz: CPU seconds per
/// second times this is CPU-MHz.
pub fn nominal_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")?
                .split(':')
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(1000.0)
}

/// CPU seconds used by the whole process so far (all threads). Unlike wall
/// time it does not count the time other processes on this shared machine
/// take the cores away, which made wall-time differences swing 3x.
pub fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_PROCESS_CPUTIME_ID is available on Linux");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// (wall, CPU) seconds `appsrc ! downstream` (a launch line ending in a
/// sink) takes to play `lists` to EOS without a clock. All lists are queued
/// in the appsrc, given `caps` and no size limit, while the sink holds the
/// preroll, so the clock then times the streaming thread alone, not its
/// hand-offs with the thread that feeds appsrc. `setup` configures the other
/// elements before the pipeline starts.
pub fn appsrc_seconds(
    downstream: &str,
    caps: &gst::Caps,
    lists: impl IntoIterator<Item = gst::BufferList>,
    setup: impl FnOnce(&gst::Pipeline),
) -> (f64, f64) {
    let pipeline = gst::parse::launch(&format!("appsrc name=src format=time ! {downstream}"))
        .expect("pipeline builds")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    pipeline.use_clock(None::<&gst::Clock>);
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .expect("appsrc");
    src.set_caps(Some(caps));
    src.set_max_bytes(0);
    setup(&pipeline);
    pipeline.set_state(gst::State::Paused).expect("pauses");
    for list in lists {
        src.push_buffer_list(list).expect("appsrc takes the list");
    }
    src.end_of_stream().expect("eos");
    let (prerolled, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    prerolled.expect("prerolls");
    let cpu = cpu_seconds();
    let wall = Instant::now();
    play_to_eos(pipeline.upcast_ref(), downstream);
    let secs = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    pipeline.set_state(gst::State::Null).expect("stops");
    secs
}

/// Sets `pipeline` PLAYING and returns at its EOS; panics, naming `what`, on
/// an error message or when no EOS comes within 120 s.
pub fn play_to_eos(pipeline: &gst::Element, what: &str) {
    pipeline.set_state(gst::State::Playing).expect("plays");
    let msg = pipeline
        .bus()
        .expect("bus")
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline ends");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{what}: {} ({:?})", e.error(), e.debug());
    }
}
