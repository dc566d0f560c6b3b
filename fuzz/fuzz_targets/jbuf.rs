//! Arbitrary datagram sequences through the jitter-buffer core. Input layout:
//! byte 0 = capacity (up to 247 as is, 248 and up 512 × 2^(byte − 248), so
//! the largest ring, 65535, is reachable), byte 1 = latency in steps,
//! bytes 2 and 3 = max-dropout and max-misorder as 128 × byte + 127 (127 to
//! 32767), byte 4 = clock rate in kHz (0: unknown), then records of
//! [length, arrival step, bytes...]. An arrival step below 253 is a time
//! step; 253 first moves the clock to `next_expiry` (if later) and releases
//! what expired there, as the element's timer does; 254 first discards what
//! is buffered, as a flush does; 255 first releases it, as a serialized
//! event does.
//!
//! Checks after every datagram: every outcome is counted once, the ring
//! never holds `capacity` packets, an RTP arrival leaves nothing waiting
//! past its expiry, each erasure is exactly the void between the packets
//! around it, released numbers go back only where the core counted a new
//! stream (SSRC change or confirmed restart), and the RFC 3550 receive
//! statistics agree with what was released: every number expected was
//! released or erased, once all is flushed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::jbuf::{Config, Counters, JitterBuffer, Output, ReceptionStats};
use rtpsynth_core::rtp::{Packet, is_rtcp};

/// What the outcomes so far add up to.
#[derive(Default)]
struct Seen {
    outcomes: u64,
    erasures: u64,
    erased: u64,
    /// Released packets that do not follow the one before (the first included).
    starts: u64,
    /// Calls of `discard`, after which a stream starts anew.
    discards: u64,
    last: Option<u64>,
    ids: Vec<usize>,
}

impl Seen {
    fn take(&mut self, o: Output<usize>) {
        self.outcomes += 1;
        let id = match o {
            Output::Packet {
                item,
                meta,
                erasure,
            } => {
                match erasure {
                    Some(e) => {
                        assert!(e.first <= e.last, "an erasure holds a packet");
                        assert_eq!(e.count, e.last - e.first + 1);
                        assert_eq!(e.last + 1, meta.ext_seq, "the void ends at the packet");
                        assert_eq!(Some(e.first - 1), self.last, "and starts after the last");
                        self.erasures += 1;
                        self.erased += e.count;
                    }
                    None if self.last.is_some_and(|l| l + 1 == meta.ext_seq) => {}
                    None => self.starts += 1,
                }
                self.last = Some(meta.ext_seq);
                item
            }
            Output::Dropped { item, .. } => item,
        };
        self.ids.push(id);
    }

    fn check(&self, c: &Counters, r: &ReceptionStats, ring: usize, capacity: usize) {
        let dropped = c.dropped_duplicate
            + c.dropped_late
            + c.dropped_parse
            + c.dropped_outlier
            + c.dropped_rtcp
            + c.dropped_ssrc_probation
            + c.dropped_flushing;
        assert_eq!(c.received, c.pushed + dropped + c.buffered);
        assert_eq!(self.outcomes, c.pushed + dropped, "one outcome each");
        assert!(ring < capacity, "a full ring releases");
        assert!(c.buffered == ring as u64 || c.buffered == ring as u64 + 1);
        assert!(c.max_buffered <= capacity as u64);
        assert_eq!((self.erasures, self.erased), (c.erasures, c.erased_packets));
        assert!(
            self.starts <= 1 + self.discards + c.resyncs + c.ssrc_changes,
            "released numbers go back only for a new stream"
        );
        // Received counts every packet that joined a stream: released,
        // duplicate, late, in the ring, or flushed from it.
        let joined = c.pushed + c.dropped_duplicate + c.dropped_late + ring as u64;
        assert!(
            joined <= r.received && r.received <= joined + c.dropped_flushing,
            "received {} for {joined} joined and {} flushed",
            r.received,
            c.dropped_flushing
        );
        // What was released or erased lies between a stream's first and
        // highest numbers.
        assert!(c.pushed + c.erased_packets <= r.expected);
        assert_eq!(
            i128::from(r.lost),
            (i128::from(r.expected) - i128::from(r.received))
                .clamp(i64::MIN.into(), i64::MAX.into())
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [cap, latency, dropout, misorder, khz, rest @ ..] = data else {
        return;
    };
    let limit = |b: u8| u16::from(b) * 128 + 127;
    let mut jb = JitterBuffer::new(Config {
        capacity: match *cap {
            c @ 0..248 => usize::from(c),
            c => 512 << (c - 248),
        },
        latency_ns: u64::from(*latency) * 1000,
        max_dropout: limit(*dropout),
        max_misorder: limit(*misorder),
    });
    let clock_rate = (*khz != 0).then(|| u32::from(*khz) * 1000);
    jb.set_clock_rate(clock_rate);
    let capacity = jb.config().capacity;
    let mut seen = Seen::default();
    let (mut at, mut rest, mut n) = (0u64, rest, 0usize);
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        match *step {
            255 => jb.release_buffered(&mut |o| seen.take(o)),
            254 => {
                jb.discard(&mut |o| seen.take(o));
                seen.discards += 1;
            }
            253 => {
                if let Some(t) = jb.next_expiry() {
                    at = at.max(t);
                    let before = jb.counters().buffered;
                    jb.release_expired(at, &mut |o| seen.take(o));
                    assert!(jb.counters().buffered < before, "the expiry releases");
                }
            }
            step => at += u64::from(step) * 1000,
        }
        let datagram = &tail[..len];
        jb.push(datagram, at, n, &mut |o| seen.take(o));
        n += 1;
        rest = &tail[len..];
        let r = jb.reception();
        assert_eq!(r.jitter.is_some(), clock_rate.is_some());
        seen.check(&jb.counters(), &r, jb.buffered(), capacity);
        // Only an RTP packet's arrival releases what expired.
        if !is_rtcp(datagram) && Packet::parse(datagram).is_ok() {
            assert!(
                jb.next_expiry().is_none_or(|t| t > at),
                "nothing waits past its expiry"
            );
        }
    }
    jb.flush(&mut |o| seen.take(o));
    let c = jb.counters();
    let r = jb.reception();
    seen.check(&c, &r, jb.buffered(), capacity);
    assert_eq!(c.buffered, 0);
    if seen.discards == 0 {
        assert_eq!(
            c.pushed + c.erased_packets,
            r.expected,
            "every number expected was released or erased"
        );
    }
    seen.ids.sort_unstable();
    assert_eq!(
        seen.ids,
        (0..n).collect::<Vec<_>>(),
        "every datagram out exactly once"
    );
});
