//! Arbitrary datagram sequences through the jitter-buffer core. Input layout:
//! byte 0 = capacity, byte 1 = latency step, then records of
//! [length, arrival step, bytes...]; an arrival step of 255 first releases
//! what is buffered, as a serialized event does in the element. Checks the
//! core's accounting invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::jbuf::{Config, JitterBuffer, Output};

fuzz_target!(|data: &[u8]| {
    let [cap, latency, rest @ ..] = data else {
        return;
    };
    let mut jb = JitterBuffer::new(Config {
        capacity: usize::from(*cap),
        latency_ns: u64::from(*latency) * 1000,
        max_dropout: 300,
        max_misorder: 50,
    });
    let mut seen = Vec::new();
    let mut last: Option<u64> = None;
    let mut sink = |o: Output<usize>| {
        let id = match o {
            Output::Packet {
                item,
                meta,
                erasure,
            } => {
                if let Some(e) = erasure {
                    assert_eq!(e.count, e.last - e.first + 1);
                    assert_eq!(e.last + 1, meta.ext_seq);
                    assert_eq!(Some(e.first - 1), last);
                }
                last = Some(meta.ext_seq);
                item
            }
            Output::Dropped { item, .. } => item,
        };
        seen.push(id);
    };
    let (mut at, mut rest, mut n) = (0u64, rest, 0usize);
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        at += u64::from(*step) * 1000;
        if *step == u8::MAX {
            jb.release_buffered(&mut sink);
        }
        jb.push(&tail[..len], at, n, &mut sink);
        n += 1;
        rest = &tail[len..];
    }
    jb.flush(&mut sink);
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every datagram out exactly once"
    );
    let c = jb.counters();
    let dropped = c.dropped_duplicate
        + c.dropped_late
        + c.dropped_parse
        + c.dropped_outlier
        + c.dropped_rtcp
        + c.dropped_ssrc_probation
        + c.dropped_flushing;
    assert_eq!(c.received, c.pushed + dropped);
    assert_eq!(c.buffered, 0);
});
