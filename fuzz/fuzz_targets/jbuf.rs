//! Arbitrary datagram sequences through the jitter-buffer core. Input layout:
//! byte 0 = capacity (up to 247 as is, 248 and up 512 × 2^(byte − 248), so
//! the largest ring, 65535, is reachable), byte 1 = latency in steps,
//! bytes 2 and 3 = max-dropout and max-misorder as 128 × byte + 127 (127 to
//! 32767), then records of
//! [length, arrival step, bytes...]; an arrival step of 255 first releases
//! what is buffered, as a serialized event does in the element, and 254
//! first discards it, as a flush does. Checks the core's accounting after
//! every datagram: every outcome is counted once, the ring never holds
//! `capacity` packets, each erasure is exactly the void between the packets
//! around it, and released numbers only go back where the core counted a
//! new stream (SSRC change or confirmed restart).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::jbuf::{Config, Counters, JitterBuffer, Output};

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

    fn check(&self, c: &Counters, ring: usize, capacity: usize) {
        let dropped = c.dropped_duplicate
            + c.dropped_late
            + c.dropped_parse
            + c.dropped_outlier
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
    }
}

fuzz_target!(|data: &[u8]| {
    let [cap, latency, dropout, misorder, rest @ ..] = data else {
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
            step => at += u64::from(step) * 1000,
        }
        jb.push(&tail[..len], at, n, &mut |o| seen.take(o));
        n += 1;
        rest = &tail[len..];
        seen.check(&jb.counters(), jb.buffered(), capacity);
    }
    jb.flush(&mut |o| seen.take(o));
    let c = jb.counters();
    seen.check(&c, jb.buffered(), capacity);
    assert_eq!(c.buffered, 0);
    seen.ids.sort_unstable();
    assert_eq!(
        seen.ids,
        (0..n).collect::<Vec<_>>(),
        "every datagram out exactly once"
    );
});
