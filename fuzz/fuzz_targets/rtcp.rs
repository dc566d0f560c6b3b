//! Arbitrary datagrams through a session's receive paths. Input layout:
//! byte 0 = flags (bit 0: clock rate known; bit 1: RTP records are packets
//! we send, else packets we receive; bit 2: randomized report interval, else
//! fixed; bit 3, without bit 1: RTP with our configured SSRC is sent, the
//! rest received, a full-duplex call; bit 4: RTCP off, intervals closed
//! without a report), then records of [length, time step,
//! bytes...]: a step below 240 is that many ms, 240 and up that many hours
//! less 239, so reports cross the 18-hour wrap of the NTP short clock.
//! A record that parses as RTP and is not RTCP by `is_rtcp` goes to the RTP
//! path; every other record goes to `handle_rtcp`, so the RTCP reader sees
//! every shape of input; an empty record instead changes the clock rate
//! (unknown → 8000 → 48000 → unknown), as new caps do, and a one-byte
//! record the report interval (bit 7: randomized, else fixed; bits 0-6:
//! tens of ms, 0 refused). After each record the session is polled: what it
//! writes must read back, come from our SSRC with our CNAME, and its report
//! block must agree with the stats; with RTCP off the interval is closed
//! instead, and nothing written. A new interval applies from now. Checks that the RTCP counters add up:
//! every datagram given is accepted or dropped under one fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::rtcp::{self, Compound, ReportBlock, clamp_cumulative_lost};
use rtpsynth_core::rtp::{Packet, is_rtcp};
use rtpsynth_core::session::{
    Config, MAX_COMPOUND_LEN, ReportInterval, Session, SessionStats, UNKNOWN, UNKNOWN_SIGNED,
};

const OUR_SSRC: u32 = 0x1111;
const CNAME: &str = "fuzz@example.org";
const MS: u64 = 1_000_000;
const HOUR: u64 = 3_600_000 * MS;

/// Reads one of our compounds: SR or RR first, from `ssrc`, at most one
/// report block, then our CNAME; a BYE only when `bye`.
fn read_ours(data: &[u8], ssrc: u32, bye: bool) -> Option<ReportBlock> {
    let c = Compound::parse(data).expect("we write valid RTCP");
    assert!(c.starts_with_report());
    let mut packets = c.packets();
    let block = match packets.next() {
        Some(rtcp::Packet::SenderReport(sr)) => {
            assert_eq!(sr.ssrc(), ssrc);
            assert!(sr.report_blocks().len() <= 1);
            sr.report_blocks().next()
        }
        Some(rtcp::Packet::ReceiverReport(rr)) => {
            assert_eq!(rr.ssrc(), ssrc);
            assert!(rr.report_blocks().len() <= 1);
            rr.report_blocks().next()
        }
        other => panic!("report first: {other:?}"),
    };
    let Some(rtcp::Packet::Sdes(sdes)) = packets.next() else {
        panic!("SDES second");
    };
    let chunk = sdes.chunks().next().expect("one chunk");
    assert_eq!(chunk.ssrc, ssrc);
    let items: Vec<_> = chunk.items().collect();
    assert_eq!(items, [(rtcp::SDES_CNAME, CNAME.as_bytes())]);
    match packets.next() {
        Some(rtcp::Packet::Bye(b)) if bye => assert!(b.ssrcs().eq([ssrc])),
        None if !bye => {}
        other => panic!("BYE only at the end: {other:?}"),
    }
    assert!(packets.next().is_none());
    block
}

/// Reads what the session does not: BYE reasons, every SDES item.
fn walk(data: &[u8]) {
    let c = Compound::parse(data).expect("the session accepted it");
    for p in c.packets() {
        match p {
            rtcp::Packet::Bye(b) => {
                if let Some(r) = b.reason() {
                    assert!(r.len() <= rtcp::MAX_TEXT_LEN);
                }
            }
            rtcp::Packet::Sdes(s) => {
                for chunk in s.chunks() {
                    for (_, value) in chunk.items() {
                        assert!(value.len() <= rtcp::MAX_TEXT_LEN);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A report block we wrote must say what the stats say.
fn check_block(block: Option<ReportBlock>, s: &SessionStats) {
    let Some(b) = block else {
        return;
    };
    assert_eq!(u64::from(b.ssrc), s.remote_ssrc);
    assert_eq!(
        i64::from(b.cumulative_lost),
        i64::from(clamp_cumulative_lost(s.packets_lost))
    );
    assert_eq!(u64::from(b.fraction_lost), s.fraction_lost);
    assert!(
        (100..=450).contains(&s.mos),
        "MOS of the interval: {}",
        s.mos
    );
}

fn check_stats(s: &SessionStats, clock_known: bool) {
    assert_eq!(
        s.packets_lost,
        s.packets_expected as i64 - s.packets_received as i64
    );
    let remote = s.remote_ssrc != UNKNOWN;
    assert_eq!(
        remote,
        s.packets_expected > 0,
        "expected counts from the first"
    );
    assert_eq!(s.jitter != UNKNOWN, remote && clock_known);
    assert!(s.fraction_lost <= 255);
    assert!(s.mos == UNKNOWN || (100..=450).contains(&s.mos));
    assert!(
        s.remote_packets_lost == UNKNOWN_SIGNED
            || (rtcp::CUMULATIVE_LOST_MIN..=rtcp::CUMULATIVE_LOST_MAX)
                .contains(&s.remote_packets_lost)
    );
    let faults = s.rtcp_dropped_too_short
        + s.rtcp_dropped_bad_version
        + s.rtcp_dropped_length_overrun
        + s.rtcp_dropped_report_overrun
        + s.rtcp_dropped_bad_padding
        + s.rtcp_dropped_sdes_overrun
        + s.rtcp_dropped_bye_overrun;
    assert_eq!(s.rtcp_dropped, faults);
}

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let mut clock_rate = (flags & 1 != 0).then_some(8000);
    let config = Config {
        ssrc: OUR_SSRC,
        clock_rate,
        interval: if flags & 4 != 0 {
            ReportInterval::Randomized { min_ms: 5 }
        } else {
            ReportInterval::Fixed { ms: 5 }
        },
        seed: 1,
        ntp_at_zero: 0xe000_0000_0000_0000,
    };
    let Ok(mut session) = Session::new(&config, CNAME, 0) else {
        return;
    };
    let all_ours = flags & 2 != 0;
    let duplex = flags & 8 != 0;
    let rtcp_off = flags & 16 != 0;
    let mut out = [0u8; MAX_COMPOUND_LEN];
    let (mut now, mut rest, mut accepted) = (0u64, rest, 0u64);
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let datagram = &tail[..len];
        rest = &tail[len..];
        now += match *step {
            step @ 0..240 => u64::from(step) * MS,
            step => u64::from(step - 239) * HOUR,
        };
        if datagram.is_empty() {
            clock_rate = match clock_rate {
                None => Some(8000),
                Some(8000) => Some(48000),
                Some(_) => None,
            };
            session.set_clock_rate(clock_rate);
        }
        if let [b] = *datagram {
            let ms = u64::from(b & 0x7f) * 10;
            let interval = if b & 0x80 != 0 {
                ReportInterval::Randomized { min_ms: ms }
            } else {
                ReportInterval::Fixed { ms }
            };
            let before = session.next_deadline();
            let set = session.set_interval(interval, now);
            assert_eq!(set.is_err(), ms == 0);
            let after = session.next_deadline();
            assert!(
                after <= before,
                "a new interval never delays the next report"
            );
            // The randomized interval is at most 1.5 / (e - 3/2) of it.
            assert!(after == before || after <= now + 2 * ms * MS);
        }
        let rtcp = is_rtcp(datagram);
        if rtcp {
            assert!(datagram.len() >= 2 && datagram[0] >> 6 == 2);
        }
        match Packet::parse(datagram) {
            Ok(p) if !rtcp && (all_ours || duplex && p.ssrc() == OUR_SSRC) => {
                session.handle_sent_rtp(&p, now)
            }
            Ok(p) if !rtcp => {
                session.handle_rtp(&p, now);
            }
            _ if datagram.len() < 2 => {}
            _ => {
                if session.handle_rtcp(datagram, now).is_ok() {
                    accepted += 1;
                    walk(datagram);
                }
            }
        }
        if rtcp_off {
            let due = now >= session.next_deadline();
            assert_eq!(session.close_interval(now), due);
            assert_eq!(session.stats().rtcp_sent, 0);
        } else if let Some(n) = session.poll_rtcp(now, &mut out) {
            let block = read_ours(&out[..n], session.local_ssrc(), false);
            check_block(block, &session.stats());
        }
        assert!(session.next_deadline() > now, "the next report is later");
        check_stats(&session.stats(), clock_rate.is_some());
    }
    let n = session.bye(now, &mut out);
    assert!(n > 0);
    let block = read_ours(&out[..n], session.local_ssrc(), true);
    let s = session.stats();
    check_block(block, &s);
    check_stats(&s, clock_rate.is_some());
    assert_eq!(s.rtcp_received, accepted + s.rtcp_dropped);
    assert_eq!(session.next_deadline(), u64::MAX);
    let mut columns = [0u64; SessionStats::NCOLUMNS];
    s.write_columns(&mut columns);
});
