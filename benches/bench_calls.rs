//! Call load: CPU-MHz per full-duplex call, threads and loss at N calls,
//! ours (rtpmuxserver + shared-thread rtpsynthsrc) beside the same calls
//! from stock elements. Each run is its own process, the callload example
//! with --json, so threads and memory are each run's own.
//!
//! BENCH_SECONDS (default 20): measured seconds per run.
//! BENCH_CALLS (default 100,500,1000,2000): the call counts.
//! BENCH_STOCK_MAX (default 100): the largest N run with stock elements; on
//! two cores stock calls cost about 26 MHz each, so 200 of them already fill
//! both cores.
//! BENCH_SERVERS (default 1): rtpmuxserver elements (worker threads).
//!
//! Each N also gets a floor: the same datagrams sent and received by one
//! thread with nothing done to them (benches/common/floor.rs), the part of
//! a call's cost that is the kernel's whatever the design.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A number field of the one-line JSON summary.
fn field(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}'])?;
    rest[..end].parse().ok()
}

/// Runs callload and returns its JSON line; None when it failed to produce
/// one or overran its time (it is killed then, so the bench never hangs).
fn run(bin: &PathBuf, calls: u64, seconds: f64, servers: u64, stock: bool) -> Option<String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--calls", &calls.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--servers", &servers.to_string()])
        .args(["--ramp", "0", "--quiet", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if stock {
        cmd.arg("--stock");
    }
    let mut child = cmd.spawn().ok()?;
    // Setting up, draining (at most 15 s) and tearing down, with room.
    let limit = Duration::from_secs_f64(seconds + 60.0 + calls as f64 / 20.0);
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("bench_calls: {calls} calls (stock: {stock}) overran {limit:?}; killed");
                return None;
            }
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    out.lines()
        .last()
        .filter(|l| l.starts_with('{'))
        .map(String::from)
}

/// A quoted string field of the JSON summary.
fn text<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &json[at..];
    Some(&rest[..rest.find('"')?])
}

fn describe(json: &Option<String>) -> String {
    let Some(j) = json else {
        return "no result".into();
    };
    let f = |k: &str| field(j, k).unwrap_or(f64::NAN);
    // Packet times the shared thread skipped: the machine could not keep up.
    let skipped = f("late_skipped") / (f("late_skipped") + f("packets_sent")) * 100.0;
    format!(
        "{:>7.3} MHz/call {:>4} threads {:>6} uncounted {:>5.1}% skipped {:>5.0} KiB/call  busiest {} {:.0}%",
        f("mhz_per_call"),
        f("threads"),
        f("lost_uncounted"),
        skipped,
        f("rss_kb_per_call"),
        text(j, "busiest_thread").unwrap_or("?"),
        f("busiest_thread_percent"),
    )
}

/// The kernel's share of N calls: 2N loopback sockets in pairs (leg A and
/// leg B), each sending one datagram to the other every 20 ms, from one
/// thread with nothing else done (see [`common::floor::exchange`]).
/// Returns (CPU-MHz per call, datagrams sent, datagrams received).
fn floor(calls: usize, seconds: f64) -> (f64, u64, u64) {
    let x = common::floor::exchange(2 * calls, 50.0, |i| i ^ 1, seconds);
    (
        x.cpu_share() * common::nominal_mhz() / calls as f64,
        x.sent,
        x.received,
    )
}

fn main() {
    let bin = std::env::var_os("CALLLOAD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/examples/callload"),
        PathBuf::from,
    );
    if !bin.exists() {
        eprintln!(
            "bench_calls: {} is missing: run `cargo build --release --example callload` \
             (scripts/bench.sh does)",
            bin.display()
        );
        std::process::exit(1);
    }
    let seconds: f64 = common::env_or("BENCH_SECONDS", 20.0);
    let stock_max: u64 = common::env_or("BENCH_STOCK_MAX", 100);
    let servers: u64 = common::env_or("BENCH_SERVERS", 1);
    let counts: Vec<u64> = common::env_list("BENCH_CALLS", "100,500,1000,2000");
    println!(
        "# bench_calls: {seconds} s per run, full-duplex PCMU calls at 50 packets/s each way, \
         CPU-MHz = CPU seconds / wall seconds × cpu MHz of core 0; stock run up to {stock_max} calls"
    );
    for &n in &counts {
        let ours = run(&bin, n, seconds, servers, false);
        println!("calls {n:>5} ours : {}", describe(&ours));
        let stock = (n <= stock_max)
            .then(|| run(&bin, n, seconds, 1, true))
            .flatten();
        if n <= stock_max {
            println!("calls {n:>5} stock: {}", describe(&stock));
        } else {
            println!("calls {n:>5} stock: not run (over BENCH_STOCK_MAX={stock_max})");
        }
        let (floor_mhz, sent, received) = floor(n as usize, seconds.min(10.0));
        println!(
            "calls {n:>5} floor: {floor_mhz:>7.3} MHz/call (UDP send and receive only, one thread; \
             {sent} sent, {received} received)"
        );
        let mhz = |j: &Option<String>| j.as_deref().and_then(|j| field(j, "mhz_per_call"));
        if let Some(o) = mhz(&ours) {
            common::report(
                &format!("callload {n} calls: CPU-MHz per call"),
                o,
                "MHz",
                mhz(&stock).map(|s| ("stock", s)),
                false,
            );
        }
        common::report(
            &format!("callload {n} calls: UDP-only floor, CPU-MHz per call"),
            floor_mhz,
            "MHz",
            None,
            false,
        );
    }
}
