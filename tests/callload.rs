//! The call-load job (examples/callload.rs) run in-process, briefly: every
//! packet accounted for, erasures matching the impairment, few threads, and
//! calls ending and starting (`--churn`) with nothing lost uncounted and no
//! descriptor or thread left behind.

#[allow(dead_code)]
#[path = "../examples/callload.rs"]
mod callload;

use std::sync::{Mutex, MutexGuard};

use callload::{Options, Summary, rtp_uncounted, run};

/// Runs share the process: one at a time, so thread counts are their own.
/// Every test takes it first, even those that run no calls: the test
/// harness starts a thread per test, and one started in the middle of a run
/// would show as a thread the run left behind.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_serial(o: &Options) -> Summary {
    let _guard = serial();
    run(o).unwrap()
}

fn options(args: &str) -> Options {
    Options::parse(args.split_whitespace().map(String::from))
        .unwrap()
        .unwrap()
}

/// Asserts `count` is within 4 standard deviations of `p` × `n` draws.
fn assert_binomial(what: &str, count: u64, n: u64, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - mean).abs() <= 4.0 * sd + 1.0,
        "{what}: {count} of {n}, expected about {mean:.0} ± {sd:.0}"
    );
}

#[test]
fn impaired_calls_account_for_every_packet() {
    let o = options(
        "--calls 20 --seconds 3 --ramp 40 --loss 0.05 --reorder 0.05 --duplicate 0.05 \
         --seed 7 --quiet",
    );
    let s = run_serial(&o);
    let j = s.json();
    assert_eq!(s.lost_uncounted, 0, "packets lost without a counter: {j}");
    assert_eq!(s.kernel_lost, 0, "{j}");
    assert_eq!(
        s.discontinuous_legs, 0,
        "a leg's samples do not add up: {j}"
    );
    // The sources stop before the server: no push of theirs is refused.
    assert_eq!(s.source_dropped, 0, "{j}");
    // 40 legs at 50 packets/s for the 3 measured seconds at least.
    assert!(s.packets_sent >= 40 * 50 * 3, "sent {}", s.packets_sent);
    assert!(s.packets_received > 0);
    // The server received what was sent, minus drops, plus duplicates.
    assert_eq!(
        s.packets_received,
        s.packets_sent - s.impairment_dropped + s.duplicated
    );
    // Each dropped packet is concealed, and nothing else is.
    assert_eq!(s.erased_packets, s.impairment_dropped);
    assert!(s.erasures > 0 && s.erasures <= s.erased_packets);
    // Every duplicate is dropped and counted by the jitter buffers.
    assert_eq!(s.counted_drops, s.duplicated);
    // The first packet of each leg and the 300 ms clean tail (15 packets)
    // are never impaired; a duplicate is drawn for packets not lost.
    let draws = s.packets_sent - 40 * 16;
    assert_binomial("lost", s.impairment_dropped, draws, 0.05);
    assert_binomial("duplicated", s.duplicated, draws, 0.05 * 0.95);
    // Main thread, the server's worker, the shared synthesis thread, and the
    // test harness's own.
    assert!(s.threads <= 8, "{} threads", s.threads);
    assert!(s.cpu_seconds > 0.0 && s.mhz_per_call > 0.0);
    assert!(s.rss_mb > 0.0);
}

/// `--churn`: calls end and new ones start on new channels while the
/// traffic is impaired; each ended call's packets and samples are in the
/// account, and the process ends holding what it held at the start.
#[test]
fn churning_calls_account_for_every_packet_and_leave_nothing_behind() {
    let o = options(
        "--calls 20 --churn 10 --seconds 3 --ramp 40 --loss 0.05 --reorder 0.05 \
         --duplicate 0.05 --seed 11 --quiet",
    );
    assert_eq!(o.churn, 10.0);
    let s = run_serial(&o);
    let j = s.json();
    assert!(s.ok(), "{j}");
    assert_eq!(s.lost_uncounted, 0, "packets lost without a counter: {j}");
    assert_eq!(s.kernel_lost, 0, "{j}");
    assert_eq!(
        s.discontinuous_legs, 0,
        "a leg's samples do not add up: {j}"
    );
    // 10 a second for 3 s; every call that ended was replaced.
    assert!(s.calls_ended >= 20, "{j}");
    assert_eq!(s.calls_started, 20 + s.calls_ended, "{j}");
    assert_eq!(
        s.packets_received,
        s.packets_sent - s.impairment_dropped + s.duplicated,
        "{j}"
    );
    // Each dropped packet, in ended calls as in the others, is concealed,
    // and nothing else is; every duplicate is counted by a jitter buffer.
    assert_eq!(s.erased_packets, s.impairment_dropped, "{j}");
    assert_eq!(s.counted_drops, s.duplicated, "{j}");
    // Every leg of every call started (new ones too) was impaired: its
    // first packet and its 300 ms clean tail (15 packets) excepted.
    let draws = s.packets_sent - 2 * s.calls_started * 16;
    assert_binomial("lost", s.impairment_dropped, draws, 0.05);
    assert_binomial("duplicated", s.duplicated, draws, 0.05 * 0.95);
    // Back to what the process held when the window opened: the ended
    // calls' sockets are closed and no thread was started for them.
    assert_eq!(s.held_end.fds, s.held_start.fds, "{j}");
    assert_eq!(s.held_end.threads, s.held_start.threads, "{j}");
    assert!(s.held_start.fds >= 2 * 20, "a socket per channel: {j}");
    assert!(s.resources_steady(), "{j}");
    assert!(s.threads <= 8, "{} threads", s.threads);
}

/// `--shared-ports --workers 2`: each side of all calls on one port, told
/// apart by SSRC, while calls churn, impaired: every packet reaches its own
/// leg (a leg's samples would not add up otherwise) and the process holds
/// two sockets, not two per call.
#[test]
fn calls_on_shared_ports_with_two_workers_account_for_every_packet() {
    let o = options(
        "--calls 20 --churn 5 --seconds 3 --ramp 40 --loss 0.05 --reorder 0.05 \
         --seed 13 --shared-ports --workers 2 --quiet",
    );
    assert!(o.shared_ports);
    assert_eq!(o.workers, 2);
    let s = run_serial(&o);
    let j = s.json();
    assert!(s.ok(), "{j}");
    assert_eq!(s.lost_uncounted, 0, "{j}");
    assert_eq!(s.kernel_lost, 0, "{j}");
    assert_eq!(s.discontinuous_legs, 0, "{j}");
    assert_eq!(
        s.packets_received,
        s.packets_sent - s.impairment_dropped,
        "{j}"
    );
    assert_eq!(s.erased_packets, s.impairment_dropped, "{j}");
    assert!(s.calls_ended >= 10, "{j}");
    // RTCP reached its own channel too: round trips measured, and the
    // loss each side reports is the loss injected.
    let l = s.sessions.as_ref().unwrap();
    assert!(l.rtcp_sent > 0 && l.rtcp_received == l.rtcp_sent, "{j}");
    assert!(l.rtt_ms_mean().is_some(), "{j}");
    let loss = l.loss_percent().unwrap();
    assert!((3.0..=7.0).contains(&loss), "reported loss {loss} %: {j}");
    // Two ports for 40 channels; the held descriptors do not grow with
    // the calls.
    assert!(s.held_start.fds < 20, "{j}");
    assert!(s.resources_steady(), "{j}");
    // Main thread, two workers, the synthesis thread and the harness's.
    assert!(s.threads <= 8, "{} threads", s.threads);
}

#[test]
fn stock_calls_need_threads_per_stream() {
    let o = options("--calls 3 --seconds 2 --ramp 0 --stock --loss 0.05 --seed 5 --quiet");
    let s = run_serial(&o);
    println!("{}", s.json());
    assert!(s.stock);
    assert_eq!(s.lost_uncounted, 0);
    assert!(s.packets_received > 0);
    assert_eq!(
        s.packets_received,
        s.packets_sent - s.impairment_dropped + s.duplicated
    );
    assert_eq!((s.calls_started, s.calls_ended), (3, 0));
    // audiotestsrc, udpsrc and rtpjitterbuffer's timer per direction.
    assert!(s.threads >= 3 * 2 * 3, "{} threads", s.threads);
}

/// PCMA calls: rtpsynthsrc with payload type 8 into `rtppcmadepay !
/// g711alawdec`, and the stock A-law elements for `--stock`; every packet
/// and every leg's samples accounted for.
#[test]
fn pcma_calls_run_on_the_alaw_elements() {
    for extra in ["", "--stock"] {
        let o = options(&format!(
            "--calls 3 --seconds 2 --ramp 0 --codec pcma --loss 0.02 --seed 3 --quiet {extra}"
        ));
        assert_eq!(o.codec, callload::Codec::Pcma);
        let s = run_serial(&o);
        let j = s.json();
        assert!(j.contains("\"codec\":\"PCMA\""), "{j}");
        assert!(s.ok(), "{j}");
        assert!(s.packets_received > 0, "{j}");
        assert_eq!(
            s.packets_received,
            s.packets_sent - s.impairment_dropped + s.duplicated,
            "{j}"
        );
    }
}

/// RTCP on the RTP port (the default): every channel's session reports
/// both ways, and with 2 % loss the sessions report 2 % ± 0.5 lost and a
/// lower MOS than without; `--rtcp off` sends none.
#[test]
fn sessions_report_the_loss_and_the_mos_falls_with_it() {
    let run_with = |extra: &str| {
        let o = options(&format!(
            "--calls 10 --seconds 8 --ramp 0 --seed 11 --quiet {extra}"
        ));
        let s = run_serial(&o);
        assert!(s.ok(), "{}", s.json());
        s
    };
    let clean = run_with("");
    let lossy = run_with("--loss 0.02");
    let (c, l) = (clean.sessions.unwrap(), lossy.sessions.unwrap());
    let j = lossy.json();
    assert_eq!(lossy.rtcp, "mux");
    assert!(j.contains("\"rtcp\":\"mux\""), "{j}");
    // 20 channels, each reporting at least once in 8 s (5 s minimum,
    // halved before the first report, randomised).
    assert!(l.rtcp_sent >= 20 && l.rtcp_received >= 20, "{j}");
    let loss = l.loss_percent().unwrap();
    assert!((1.5..=2.5).contains(&loss), "reported loss {loss} %: {j}");
    assert_eq!(c.loss_percent(), Some(0.0), "{}", clean.json());
    let (mos_clean, mos_lossy) = (c.mos_mean().unwrap(), l.mos_mean().unwrap());
    assert!(mos_clean > 4.0, "{}", clean.json());
    assert!(mos_lossy < mos_clean - 0.5, "{mos_lossy} vs {mos_clean}");
    assert!(l.mos_worst().unwrap() <= mos_lossy);
    assert!(l.rtt_ms_mean().is_some_and(|rtt| rtt < 100.0), "{j}");
    assert!(l.jitter_ms_mean().is_some(), "{j}");

    let off = run_with("--rtcp off --seconds 2");
    assert_eq!(off.sessions.unwrap().rtcp_sent, 0, "{}", off.json());
}

#[test]
fn json_is_one_line_with_the_required_fields() {
    let o = options("--calls 1 --seconds 0.5 --ramp 0 --quiet --json");
    assert!(o.json);
    let s = run_serial(&o);
    let j = s.json();
    assert!(j.starts_with('{') && j.ends_with('}') && !j.contains('\n'));
    for key in [
        "calls",
        "packets_sent",
        "packets_received",
        "lost_uncounted",
        "drops_maybe_rtcp",
        "erasures",
        "source_dropped",
        "cpu_seconds",
        "mhz_per_call",
        "threads",
        "rss_mb",
        "churn",
        "calls_started",
        "calls_ended",
        "mos_mean",
        "loss_percent",
        "rtt_ms_mean",
        "rtcp_sent",
        "fds_start",
        "fds_after_1min",
        "fds_end",
        "threads_start",
        "threads_after_1min",
        "threads_end",
        "rss_mb_start",
        "rss_mb_after_1min",
        "rss_mb_end",
        "resources_steady",
    ] {
        assert!(j.contains(&format!("\"{key}\":")), "{key} missing in {j}");
    }
    assert!(j.contains("\"calls\":1,"));
    assert!(j.contains("\"lost_uncounted\":0,"));
    assert!(j.contains("\"calls_started\":1,\"calls_ended\":0,"), "{j}");
}

/// Counted drops that may have been RTCP explain a surplus of counted
/// drops, never a packet missing without a counter.
#[test]
fn rtcp_among_counted_drops_explains_only_a_surplus() {
    assert_eq!(rtp_uncounted(0, 0), 0);
    // 3,007 more counted than lost, up to 4,000 of the drops RTCP: none.
    assert_eq!(rtp_uncounted(-3_007, 4_000), 0);
    // What RTCP cannot explain stays.
    assert_eq!(rtp_uncounted(-3_007, 3_000), -7);
    assert_eq!(rtp_uncounted(-5, 0), -5);
    // Missing RTP is missing, whatever the drops were.
    assert_eq!(rtp_uncounted(12, 4_000), 12);
}

/// The account sums every rtpjbufdec counter a datagram can end in but
/// `pushed`: a drop reason added to the jitter buffer and not read here
/// would be a loss that the account calls uncounted.
#[test]
fn jb_reads_every_outcome() {
    let _guard = serial();
    for name in rtpsynth_core::jbuf::Counters::dropped_or_held() {
        assert!(callload::JB.contains(&name), "{name} not read");
    }
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let _guard = serial();
    let parse = |a: &str| Options::parse(a.split_whitespace().map(String::from));
    for (args, needle) in [
        ("--calls 0", "--calls"),
        ("--calls x", "cannot parse"),
        ("--loss 1.5", "probability"),
        ("--loss 1", "every packet"),
        ("--seconds 0", "--seconds"),
        ("--ptime 3", "--ptime"),
        ("--ramp -1", "--ramp"),
        ("--tick 5000", "--tick"),
        ("--seed", "needs a value"),
        ("--frobnicate", "unknown argument"),
        ("--codec g722", "unknown codec"),
        ("--rtcp yes", "off, mux or port+1"),
        ("--churn -1", "--churn"),
        ("--churn x", "cannot parse"),
        ("--churn NaN", "--churn"),
        (
            "--calls 5000 --churn 2000",
            "--churn 2000 must be 0 to 1000",
        ),
        ("--calls 2 --churn 5", "more than --calls"),
        ("--calls 4 --churn 1 --stock", "our elements only"),
        ("--workers 0", "--workers"),
        ("--shared-ports --rtcp port+1", "not port+1"),
        ("--shared-ports --stock", "our elements only"),
    ] {
        let e = parse(args).unwrap_err();
        assert!(e.contains(needle), "{args}: {e}");
    }
    assert!(parse("--help").unwrap().is_none());
    let o = parse("--calls 7 --csv /tmp/x.csv --stock")
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.calls, o.csv.as_deref(), o.stock),
        (7, Some("/tmp/x.csv"), true)
    );
    assert_eq!(o.churn, 0.0, "churn is off unless asked for");
    let o = parse("--calls 7 --churn 0.5").unwrap().unwrap();
    assert_eq!(o.churn, 0.5);
}

#[test]
fn csv_has_a_row_a_second() {
    let path = std::env::temp_dir().join(format!("callload-{}.csv", std::process::id()));
    let mut o = options("--calls 2 --seconds 2 --ramp 0 --quiet");
    o.csv = Some(path.to_string_lossy().into_owned());
    let s = run_serial(&o);
    assert!(s.ok());
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "t/s,calls,out/s,in/s,lost/s,erased/s,cpu%,threads,mos"
    );
    assert!((2..=3).contains(&(lines.len() - 1)), "{text}");
    for row in &lines[1..] {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 9, "{row}");
        assert_eq!(cols[1], "2");
    }
}
