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
//! BENCH_SERVERS (default 1): rtpmuxserver elements.
//! BENCH_LAYOUT_CALLS (default 1000): the call counts also run with each
//! layout of our channels: one socket per channel or `--shared-ports`, each
//! with `--workers` 1 and 2.
//!
//! Each N also gets a floor: the same datagrams sent and received by one
//! thread with nothing done to them (benches/common/floor.rs), the part of
//! a call's cost that is the kernel's whatever the design; the layout
//! counts also the shared-port floor (the A legs on one socket, the B legs
//! on another, written and read 64 datagrams at a time).
//!
//! Then the soak: `callload --churn`, calls ending and starting all along
//! under loss, reordering and duplicates, with its summary printed and a
//! verdict from its exit status (a packet lost without a counter, a leg's
//! audio not whole, or descriptors, threads or memory that grew after the
//! first minute fail it).
//! BENCH_SOAK_SECONDS (default 600; 0 skips the soak): its measured seconds.
//! BENCH_SOAK_CALLS (default 200): calls up all along.
//! BENCH_SOAK_CHURN (default 10): calls ended and started per second.

mod common;

use common::floor::Carriers;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A number field of the one-line JSON summary.
fn field(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}'])?;
    rest[..end].parse().ok()
}

/// Runs callload with `args` and returns its JSON line (None when it gave
/// none) and its exit status (None when it could not be started or
/// overran `limit`: it is killed then, so the bench never hangs).
fn run_callload(
    bin: &PathBuf,
    args: &[String],
    limit: Duration,
) -> (Option<String>, Option<ExitStatus>) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(["--quiet", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return (None, None);
    };
    // The JSON line is short, but read as it comes all the same, so a full
    // pipe never blocks the child.
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return (None, None);
    };
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "bench_calls: callload {} overran {limit:?}; killed",
                    args.join(" ")
                );
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    let json = out
        .lines()
        .last()
        .filter(|l| l.starts_with('{'))
        .map(String::from);
    (json, status)
}

/// Runs callload and returns its JSON line; None when it failed to produce
/// one or overran its time.
fn run(bin: &PathBuf, calls: u64, seconds: f64, servers: u64, extra: &[&str]) -> Option<String> {
    let mut args: Vec<String> = [
        "--calls",
        &calls.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--servers",
        &servers.to_string(),
        "--ramp",
        "0",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    // Setting up, draining (at most 15 s) and tearing down, with room.
    let limit = Duration::from_secs_f64(seconds + 60.0 + calls as f64 / 20.0);
    run_callload(bin, &args, limit).0
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

/// The kernel's share of N calls: 2N loopback streams in pairs (leg A and
/// leg B), each sending one datagram to the other every 20 ms, from one
/// thread with nothing else done (see [`common::floor::exchange`]), each
/// on a socket of its own or, as `--shared-ports` has them, the A legs on
/// one socket and the B legs on another. Returns (CPU-MHz per call,
/// datagrams sent, datagrams received).
fn floor(calls: usize, carriers: Carriers, seconds: f64) -> (f64, u64, u64) {
    let x = common::floor::exchange(2 * calls, 50.0, |i| i ^ 1, carriers, seconds);
    (
        x.cpu_share() * common::nominal_mhz() / calls as f64,
        x.sent,
        x.received,
    )
}

/// The soak: `calls` calls up for `seconds` while `churn` of them end and
/// as many start each second, 2 % of packets lost, 2 % reordered, 1 %
/// duplicated. Prints the command, the figures and the verdict.
fn soak(bin: &PathBuf, calls: u64, churn: f64, seconds: f64) {
    let args: Vec<String> = [
        "--calls",
        &calls.to_string(),
        "--churn",
        &churn.to_string(),
        "--loss",
        "0.02",
        "--reorder",
        "0.02",
        "--duplicate",
        "0.01",
        "--seconds",
        &seconds.to_string(),
    ]
    .map(String::from)
    .to_vec();
    println!(
        "# soak: callload {} (load average before: {})",
        args.join(" "),
        load_average()
    );
    // The ramp at 100 calls per second, the drain and the teardown, with room.
    let limit = Duration::from_secs_f64(seconds + 120.0 + calls as f64 / 20.0);
    let (json, status) = run_callload(bin, &args, limit);
    let verdict = match status {
        Some(s) if s.success() => "passed".to_string(),
        Some(s) => format!("FAILED ({s})"),
        None => "FAILED (did not finish)".to_string(),
    };
    let Some(j) = json else {
        println!("soak: {verdict}, no summary");
        return;
    };
    let f = |k: &str| field(&j, k).unwrap_or(f64::NAN);
    println!(
        "soak: {verdict}: {} calls started, {} ended; {} packets sent, {} received, {} dropped and \
         {} duplicated by the impairment, {} erased, {} uncounted, {} discontinuous legs",
        f("calls_started"),
        f("calls_ended"),
        f("packets_sent"),
        f("packets_received"),
        f("impairment_dropped"),
        f("duplicated"),
        f("erased_packets"),
        f("lost_uncounted"),
        f("discontinuous_legs"),
    );
    println!(
        "soak: start / after 1 min / end: {} / {} / {} file descriptors, {} / {} / {} threads, \
         {} / {} / {} MB resident",
        f("fds_start"),
        f("fds_after_1min"),
        f("fds_end"),
        f("threads_start"),
        f("threads_after_1min"),
        f("threads_end"),
        f("rss_mb_start"),
        f("rss_mb_after_1min"),
        f("rss_mb_end"),
    );
    println!(
        "soak: CPU {:.1} % of one core ({:.2} MHz per call up), busiest thread {} {:.0} %, {} packet \
         times skipped, {} slow pushes (load average after: {})",
        f("cpu_seconds") / f("window_seconds") * 100.0,
        f("mhz_per_call"),
        text(&j, "busiest_thread").unwrap_or("?"),
        f("busiest_thread_percent"),
        f("late_skipped"),
        f("slow_pushes"),
        load_average(),
    );
    println!("soak: {j}");
}

/// The 1, 5 and 15 minute load averages: the machine's other work, which
/// the soak competes with.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Our channels' layouts beside the default run (a socket per channel, one
/// worker): a name and the callload arguments.
const LAYOUTS: [(&str, &[&str]); 4] = [
    ("ours, 2 workers", &["--workers", "2"]),
    ("ours, shared ports", &["--shared-ports"]),
    (
        "ours, shared ports, gso=false",
        &["--shared-ports", "--no-gso"],
    ),
    (
        "ours, shared ports, 2 workers",
        &["--shared-ports", "--workers", "2"],
    ),
];

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
    let layout_counts: Vec<u64> = common::env_list("BENCH_LAYOUT_CALLS", "1000");
    let mut stock_per_call: Option<(u64, f64)> = None;
    println!(
        "# bench_calls: {seconds} s per run, full-duplex PCMU calls at 50 packets/s each way, \
         CPU-MHz = CPU seconds / wall seconds × cpu MHz of core 0; stock run up to {stock_max} calls"
    );
    for &n in &counts {
        let ours = run(&bin, n, seconds, servers, &[]);
        println!("calls {n:>5} ours : {}", describe(&ours));
        let stock = (n <= stock_max)
            .then(|| run(&bin, n, seconds, 1, &["--stock"]))
            .flatten();
        if n <= stock_max {
            println!("calls {n:>5} stock: {}", describe(&stock));
        } else {
            println!("calls {n:>5} stock: not run (over BENCH_STOCK_MAX={stock_max})");
        }
        let (floor_mhz, sent, received) = floor(n as usize, Carriers::PerStream, seconds.min(10.0));
        println!(
            "calls {n:>5} floor: {floor_mhz:>7.3} MHz/call (UDP send and receive only, one thread; \
             {sent} sent, {received} received)"
        );
        let mhz = |j: &Option<String>| j.as_deref().and_then(|j| field(j, "mhz_per_call"));
        if let Some(s) = mhz(&stock) {
            stock_per_call = Some((n, s));
        }
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
        if layout_counts.contains(&n) {
            let (shared_mhz, sent, received) =
                floor(n as usize, Carriers::Shared(2), seconds.min(10.0));
            println!(
                "calls {n:>5} shared floor: {shared_mhz:>7.3} MHz/call (the same on two shared \
                 sockets, sendmmsg and recvmmsg of 64; {sent} sent, {received} received)"
            );
            common::report(
                &format!("callload {n} calls: UDP-only shared-port floor, CPU-MHz per call"),
                shared_mhz,
                "MHz",
                None,
                false,
            );
            // Each shared socket sends all it has to the other: what GSO
            // (the element's default) takes off the kernel's work.
            let (gso_mhz, sent, received) =
                floor(n as usize, Carriers::SharedGso(2), seconds.min(10.0));
            println!(
                "calls {n:>5} shared gso floor: {gso_mhz:>7.3} MHz/call (the same, each round's \
                 datagrams for the other socket as UDP GSO messages; {sent} sent, {received} \
                 received)"
            );
            common::report(
                &format!("callload {n} calls: UDP-only shared-port GSO floor, CPU-MHz per call"),
                gso_mhz,
                "MHz",
                None,
                false,
            );
            for (name, extra) in LAYOUTS {
                let j = run(&bin, n, seconds, servers, extra);
                println!("calls {n:>5} {name}: {}", describe(&j));
                if let Some(o) = mhz(&j) {
                    // Stock calls cost about the same each at any N: the
                    // largest N they ran at stands in where they cannot.
                    let label = stock_per_call.map(|(at, s)| (format!("stock at {at}"), s));
                    common::report(
                        &format!("callload {n} calls, {name}: CPU-MHz per call"),
                        o,
                        "MHz",
                        label.as_ref().map(|(l, s)| (l.as_str(), *s)),
                        false,
                    );
                }
            }
        }
    }
    let soak_seconds: f64 = common::env_or("BENCH_SOAK_SECONDS", 600.0);
    if soak_seconds > 0.0 {
        soak(
            &bin,
            common::env_or("BENCH_SOAK_CALLS", 200),
            common::env_or("BENCH_SOAK_CHURN", 10.0),
            soak_seconds,
        );
    }
}
