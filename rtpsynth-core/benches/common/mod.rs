//! Shared by every benchmark, the cores' here and the elements' in the
//! plugin crate (which include this file): medians over repeated runs, one
//! report line format, and the test traffic both kinds measure on, so
//! `make bench` prints comparable figures for every core and element.
#![allow(dead_code)]

use std::str::FromStr;
use std::time::Instant;

use rtpsynth_core::prng::SplitMix64;
use rtpsynth_core::rtp::{Extras, Header, write_packet};

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
    clock_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU seconds used by the calling thread so far.
pub fn thread_cpu_seconds() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "the CPU-time clocks are available on Linux");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Medians of `ours` and `reference` over `runs()` runs each, interleaved so
/// that load from other processes on the machine hits both alike.
pub fn paired(mut ours: impl FnMut() -> f64, mut reference: impl FnMut() -> f64) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs() {
        a.push(ours());
        b.push(reference());
    }
    (middle(a), middle(b))
}

/// Length of the jitter-buffer benchmarks' PCMU datagrams.
pub const DATAGRAM_LEN: usize = 172;

/// The 172-byte PCMU datagram with sequence number `seq`.
pub fn datagram(seq: u16, out: &mut [u8]) {
    let h = Header {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: u32::from(seq).wrapping_mul(160),
        ssrc: 0x5eed,
    };
    write_packet(out, &h, &Extras::default(), &[0xff; 160]).expect("172 bytes fit");
}

/// Arrival order of packet numbers: all of them, or impaired (1 % loss,
/// 1 % duplicates, 5 % moved up to 3 places).
pub fn order(n: usize, mixed: bool) -> Vec<usize> {
    if !mixed {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(1);
    let mut v = Vec::with_capacity(n + n / 50);
    for i in 0..n {
        if rng.chance(0.01) {
            continue;
        }
        v.push(i);
        if rng.chance(0.01) {
            v.push(i);
        }
    }
    for i in 0..v.len().saturating_sub(4) {
        if rng.chance(0.05) {
            let j = i + 1 + rng.below(3) as usize;
            v.swap(i, j);
        }
    }
    v
}

/// Speech-like test signal: noise shaped by a slow envelope, full range.
pub fn signal(n: usize) -> Vec<i16> {
    let mut rng = SplitMix64::new(1);
    (0..n)
        .map(|i| {
            let env = ((i as f64 / 800.0).sin() * 0.5 + 0.5) * 32767.0;
            ((rng.next_u32() as i32 as f64 / i32::MAX as f64) * env) as i16
        })
        .collect()
}
