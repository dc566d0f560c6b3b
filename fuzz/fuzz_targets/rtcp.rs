//! Arbitrary datagrams through a session's receive paths. Input layout:
//! byte 0 = flags (bit 0: clock rate known; bit 1: RTP records are packets
//! we send, else packets we receive), then records of [length, time step in
//! ms, bytes...]. A record that parses as RTP and is not RTCP by `is_rtcp`
//! goes to the RTP path; every other record goes to `handle_rtcp`, so the
//! RTCP reader sees every shape of input. After each record the session is
//! polled: what it writes must read back. Checks that the RTCP counters add
//! up: every datagram given is accepted or dropped under one fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::rtcp::Compound;
use rtpsynth_core::rtp::{Packet, is_rtcp};
use rtpsynth_core::session::{Config, MAX_COMPOUND_LEN, ReportInterval, Session, SessionStats};

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let config = Config {
        ssrc: 0x1111,
        clock_rate: (flags & 1 != 0).then_some(8000),
        interval: ReportInterval::Fixed { ms: 5 },
        seed: 1,
        ntp_at_zero: 0xe000_0000_0000_0000,
    };
    let Ok(mut session) = Session::new(&config, "fuzz@example.org", 0) else {
        return;
    };
    let ours = flags & 2 != 0;
    let mut out = [0u8; MAX_COMPOUND_LEN];
    let (mut now, mut rest, mut accepted) = (0u64, rest, 0u64);
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let datagram = &tail[..len];
        rest = &tail[len..];
        now += u64::from(*step) * 1_000_000;
        let rtcp = is_rtcp(datagram);
        if rtcp {
            assert!(datagram.len() >= 2 && datagram[0] >> 6 == 2);
        }
        match Packet::parse(datagram) {
            Ok(p) if !rtcp && ours => session.handle_sent_rtp(&p, now),
            Ok(p) if !rtcp => {
                session.handle_rtp(&p, now);
            }
            _ => {
                if session.handle_rtcp(datagram, now).is_ok() {
                    accepted += 1;
                }
            }
        }
        if let Some(n) = session.poll_rtcp(now, &mut out) {
            assert!(Compound::parse(&out[..n]).is_ok(), "we write valid RTCP");
        }
    }
    let n = session.bye(now, &mut out);
    assert!(n > 0 && Compound::parse(&out[..n]).is_ok());
    let s = session.stats();
    assert_eq!(s.rtcp_received, accepted + s.rtcp_dropped);
    let faults = s.rtcp_dropped_too_short
        + s.rtcp_dropped_bad_version
        + s.rtcp_dropped_length_overrun
        + s.rtcp_dropped_report_overrun
        + s.rtcp_dropped_bad_padding
        + s.rtcp_dropped_sdes_overrun
        + s.rtcp_dropped_bye_overrun;
    assert_eq!(s.rtcp_dropped, faults);
    assert_eq!(
        s.packets_lost,
        s.packets_expected as i64 - s.packets_received as i64
    );
    let mut columns = [0u64; SessionStats::NCOLUMNS];
    s.write_columns(&mut columns);
});
