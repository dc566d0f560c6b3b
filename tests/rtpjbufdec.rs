//! `rtpjbufdec` through `gst_check::Harness` (one case per behaviour of the
//! issue, each checking the exact output seqs, events and stats) and through
//! stock `rtppcmudepay ! mulawdec`.

mod common;

use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_check::Harness;
use rtpsynth_core::prng::SplitMix64;
use rtpsynth_core::rtp::{self, Extras, Header, Packet};

const SSRC: u32 = 0x1234_5678;
const PCMU_CAPS: &str =
    "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0";
/// 20 ms of PCMU.
const SAMPLES: u32 = 160;
const PTIME_NS: u64 = 20_000_000;

/// Datagram bytes of PCMU packet `n` of a stream whose first seq is
/// `seq0`: seq and timestamp advance together from there.
fn datagram(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let h = Header {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: ts,
        ssrc,
    };
    let mut out = vec![0; 12 + SAMPLES as usize];
    // A recognisable payload: the low byte of the seq.
    let payload = [seq as u8; SAMPLES as usize];
    let len = rtp::write_packet(&mut out, &h, &Extras::default(), &payload).expect("fits");
    out.truncate(len);
    out
}

/// Packet with seq `seq`, the matching PCMU timestamp and PTS.
fn packet(seq: u16) -> gst::Buffer {
    packet_of(seq, SSRC)
}

/// The PTS of packet `seq`: 20 ms per seq from 0.
fn pts_of(seq: u16) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(u64::from(seq) * PTIME_NS)
}

fn packet_of(seq: u16, ssrc: u32) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(datagram(seq, u32::from(seq) * SAMPLES, ssrc));
    b.get_mut().unwrap().set_pts(pts_of(seq));
    b
}

/// A harness around one `rtpjbufdec` configured by `props`
/// ("name=value name=value", as gst-launch takes them).
fn harness(props: &str) -> Harness {
    common::init();
    let mut builder = gst::ElementFactory::make("rtpjbufdec");
    for kv in props.split_whitespace() {
        let (k, v) = kv.split_once('=').expect("name=value");
        builder = builder.property_from_str(k, v);
    }
    let element = builder.build().expect("rtpjbufdec is registered");
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(PCMU_CAPS);
    h
}

/// One list of the packets `seqs`, pushed together by a payloader.
fn list_of(seqs: &[u16]) -> gst::BufferList {
    let mut list = gst::BufferList::new();
    for &s in seqs {
        list.get_mut().unwrap().add(packet(s));
    }
    list
}

fn time_segment() -> gst::Event {
    gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())
}

/// Flushes downstream of the element alone: its own pads still take data.
fn flush_downstream(h: &Harness) {
    assert!(
        h.sinkpad()
            .unwrap()
            .send_event(gst::event::FlushStart::new())
    );
}

/// The element's src pad, where probes see what it sends.
fn src_pad(h: &Harness) -> gst::Pad {
    h.element().unwrap().static_pad("src").unwrap()
}

fn push_seqs(h: &mut Harness, seqs: &[u16]) {
    for &s in seqs {
        h.push(packet(s)).expect("pushed");
    }
}

/// (seq, DISCONT) of every buffer out so far.
fn pulled(h: &mut Harness) -> Vec<(u16, bool)> {
    let mut v = Vec::new();
    while let Some(b) = h.try_pull() {
        let map = b.map_readable().unwrap();
        let p = Packet::parse(&map).expect("output is valid RTP");
        v.push((p.seq(), b.flags().contains(gst::BufferFlags::DISCONT)));
    }
    v
}

fn seqs_of(out: &[(u16, bool)]) -> Vec<u16> {
    out.iter().map(|&(s, _)| s).collect()
}

fn discont_of(out: &[(u16, bool)]) -> Vec<u16> {
    out.iter().filter(|&&(_, d)| d).map(|&(s, _)| s).collect()
}

/// The GstRTPPacketLost events out so far, as structures.
fn lost_events(h: &mut Harness) -> Vec<gst::Structure> {
    let mut v = Vec::new();
    while let Some(e) = h.try_pull_event() {
        if e.type_() == gst::EventType::CustomDownstream {
            let s = e.structure().expect("custom event has a structure");
            assert_eq!(s.name(), "GstRTPPacketLost");
            v.push(s.to_owned());
        }
    }
    v
}

fn stats(h: &Harness) -> gst::Structure {
    h.element().unwrap().property::<gst::Structure>("stats")
}

fn stat(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("stats field {name}: {e}"))
}

/// Checks the accounting identity and returns the counters named.
fn counters(h: &Harness, names: &[&str]) -> Vec<u64> {
    let s = stats(h);
    assert_eq!(s.name(), "application/x-rtpjbufdec-stats");
    let dropped: u64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("dropped-"))
        .map(|(k, _)| stat(&s, k))
        .sum();
    assert_eq!(
        stat(&s, "received"),
        stat(&s, "pushed") + dropped + stat(&s, "buffered"),
        "counters add up: {s}"
    );
    let parse: u64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("parse-error-"))
        .map(|(k, _)| stat(&s, k))
        .sum();
    assert_eq!(parse, stat(&s, "dropped-parse"));
    names.iter().map(|n| stat(&s, n)).collect()
}

/// Asserts the counters in `expected` ("name=value name=value", like the
/// harness properties) have those values, and the accounting identity.
fn assert_counters(h: &Harness, expected: &str) {
    let want: Vec<(&str, u64)> = expected
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k, v.parse().expect("a counter value"))
        })
        .collect();
    let names: Vec<&str> = want.iter().map(|&(n, _)| n).collect();
    let got: Vec<(&str, u64)> = names.iter().copied().zip(counters(h, &names)).collect();
    assert_eq!(got, want);
}

/// (seqnum, timestamp, duration, retry, lseq-start, lseq-end, count, ts-diff).
fn lost_fields(s: &gst::Structure) -> (u32, u64, u64, u32, u64, u64, u64, u64) {
    (
        s.get("seqnum").unwrap(),
        s.get("timestamp").unwrap(),
        s.get("duration").unwrap(),
        s.get("retry").unwrap(),
        s.get("lseq-start").unwrap(),
        s.get("lseq-end").unwrap(),
        s.get("count").unwrap(),
        s.get("ts-diff").unwrap(),
    )
}

#[test]
fn in_order_passes_at_once_after_the_start_up_hold() {
    let mut h = harness("");
    push_seqs(&mut h, &[0, 1]);
    assert_eq!(seqs_of(&pulled(&mut h)), Vec::<u16>::new());
    assert_counters(&h, "received=2 pushed=0 buffered=2");
    h.push(packet(2)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    for s in 3..10u16 {
        h.push(packet(s)).unwrap();
        assert_eq!(
            seqs_of(&pulled(&mut h)),
            vec![s],
            "no delay for in-order packets"
        );
    }
    assert!(lost_events(&mut h).is_empty());
    assert_counters(
        &h,
        "received=10 pushed=10 erasures=0 buffered=0 max-buffered=3",
    );
}

#[test]
fn early_reordering_is_put_in_order() {
    // The second packet to arrive is numbered before the first.
    let mut h = harness("");
    push_seqs(&mut h, &[1, 0, 2, 3]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![0, 1, 2, 3]);
    assert!(discont_of(&out).is_empty());
    assert!(lost_events(&mut h).is_empty());
    assert_counters(&h, "received=4 pushed=4 dropped-late=0 erasures=0");
}

#[test]
fn loss_of_one() {
    let mut h = harness("capacity=4");
    push_seqs(&mut h, &[0, 1, 3, 4, 5]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1], "3, 4, 5 wait for 2");
    push_seqs(&mut h, &[6]);
    let out = pulled(&mut h);
    assert_eq!(
        seqs_of(&out),
        vec![3, 4, 5, 6],
        "the full buffer declares 2 lost"
    );
    assert_eq!(discont_of(&out), vec![3]);
    let ev = lost_events(&mut h);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        lost_fields(&ev[0]),
        (
            2,
            2 * PTIME_NS,
            PTIME_NS,
            0,
            65538,
            65538,
            1,
            2 * u64::from(SAMPLES)
        )
    );
    assert_counters(
        &h,
        "received=6 pushed=6 erasures=1 erased-packets=1 max-buffered=4",
    );
}

#[test]
fn loss_of_many() {
    let mut h = harness("capacity=3");
    push_seqs(&mut h, &[0, 10, 11, 12]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![0, 10, 11, 12]);
    assert_eq!(discont_of(&out), vec![10]);
    let ev = lost_events(&mut h);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        lost_fields(&ev[0]),
        (
            1,
            PTIME_NS,
            9 * PTIME_NS,
            0,
            65537,
            65545,
            9,
            10 * u64::from(SAMPLES)
        )
    );
    assert_counters(&h, "erasures=1 erased-packets=9");
}

#[test]
fn reordering_within_capacity() {
    let mut h = harness("capacity=4");
    push_seqs(&mut h, &[0, 2, 1, 5, 3, 4, 6]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), (0..7).collect::<Vec<_>>());
    assert!(discont_of(&out).is_empty());
    assert!(lost_events(&mut h).is_empty());
    // 0, 2 and 1 in the start-up hold; then 5 alone.
    assert_counters(&h, "pushed=7 erasures=0 dropped-late=0 max-buffered=3");
}

#[test]
fn duplicates() {
    let mut h = harness("");
    push_seqs(&mut h, &[0, 1, 1, 3, 3, 2, 0]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2, 3]);
    // 1 again after it went out, 3 again while buffered, 0 long gone.
    assert_counters(&h, "received=7 pushed=4 dropped-duplicate=3 dropped-late=0");
}

#[test]
fn late() {
    let mut h = harness("capacity=2");
    push_seqs(&mut h, &[0, 2, 3, 1]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![0, 2, 3]);
    assert_eq!(lost_events(&mut h).len(), 1);
    assert_counters(&h, "dropped-late=1 dropped-duplicate=0 erased-packets=1");
}

#[test]
fn wrap_at_65535() {
    let mut h = harness("capacity=4");
    let seqs: Vec<u16> = (0..8u16).map(|i| 65532u16.wrapping_add(i)).collect();
    let mut shuffled = seqs.clone();
    shuffled.swap(3, 4); // 65535 and 0 arrive swapped
    push_seqs(&mut h, &shuffled);
    assert_eq!(seqs_of(&pulled(&mut h)), seqs);
    assert!(lost_events(&mut h).is_empty());
    assert_counters(&h, "pushed=8 erasures=0 dropped-late=0");
}

#[test]
fn sender_restart() {
    let mut h = harness("");
    push_seqs(&mut h, &[100, 101, 102, 30000, 30001, 30002]);
    assert_eq!(
        seqs_of(&pulled(&mut h)),
        vec![100, 101, 102, 30000, 30001, 30002]
    );
    assert!(
        lost_events(&mut h).is_empty(),
        "a restart is not a 30,000-packet void"
    );
    assert_counters(&h, "resyncs=1 erasures=0 dropped-outlier=0 dropped-late=0");
    // A single stray packet is dropped and the stream goes on.
    push_seqs(&mut h, &[5000, 30003]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![30003]);
    assert_counters(&h, "resyncs=1 dropped-outlier=1");
}

#[test]
fn ssrc_change() {
    let mut h = harness("capacity=4");
    push_seqs(&mut h, &[0, 1, 2, 4]);
    h.push(packet_of(700, 99)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    assert_counters(&h, "ssrc-changes=0 buffered=2");
    // The second packet of SSRC 99 confirms the change.
    h.push(packet_of(701, 99)).unwrap();
    h.push(packet_of(702, 99)).unwrap();
    let out = pulled(&mut h);
    assert_eq!(
        seqs_of(&out),
        vec![4, 700, 701, 702],
        "the old stream is released first, the new one loses nothing"
    );
    assert_eq!(discont_of(&out), vec![4]);
    assert_eq!(
        lost_events(&mut h).len(),
        1,
        "only the void in the old stream"
    );
    assert_counters(
        &h,
        "ssrc-changes=1 erasures=1 pushed=7 dropped-ssrc-probation=0 buffered=0",
    );
}

/// An RTCP sender report from `ssrc` (no report blocks), as a sender
/// multiplexing RTP and RTCP on one port (RFC 5761) sends it: it parses as
/// an RTP packet of payload type 72.
fn sender_report(ssrc: u32) -> gst::Buffer {
    let mut d = vec![0x80, 200, 0, 6];
    d.extend_from_slice(&ssrc.to_be_bytes());
    d.extend_from_slice(&[0x11; 20]);
    assert!(Packet::parse(&d).is_ok(), "valid RTP as well");
    gst::Buffer::from_mut_slice(d)
}

#[test]
fn rtcp_on_the_rtp_port_is_counted_apart_and_not_pushed() {
    let mut h = harness("");
    for s in 0..100u16 {
        if s % 25 == 10 {
            h.push(sender_report(SSRC)).unwrap();
        }
        h.push(packet(s)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pulled(&mut h);
    assert_eq!(
        seqs_of(&out),
        (0..100).collect::<Vec<_>>(),
        "no RTCP downstream"
    );
    assert!(discont_of(&out).is_empty());
    assert_counters(
        &h,
        "received=104 pushed=100 dropped-rtcp=4 ssrc-changes=0 resyncs=0 dropped-parse=0 \
         erasures=0",
    );
}

#[test]
fn a_stray_packet_of_another_ssrc_does_not_reset_the_stream() {
    let mut h = harness("capacity=4");
    push_seqs(&mut h, &[0, 1, 2]);
    h.push(packet_of(40000, 99)).unwrap();
    push_seqs(&mut h, &[3, 4]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![0, 1, 2, 3, 4]);
    assert!(discont_of(&out).is_empty());
    assert!(lost_events(&mut h).is_empty());
    assert_counters(
        &h,
        "received=6 pushed=5 dropped-ssrc-probation=1 ssrc-changes=0 resyncs=0 buffered=0",
    );
    // Held until the next packet tells: counted as buffered meanwhile.
    h.push(packet_of(40001, 98)).unwrap();
    assert_counters(&h, "received=7 buffered=1");
    push_seqs(&mut h, &[5]);
    assert_counters(&h, "dropped-ssrc-probation=2 ssrc-changes=0 buffered=0");
}

/// Packet `seq` (PCMU timing) that arrived `arrival_ms` after the start: the
/// arrival time is its DTS, as `udpsrc` stamps it.
fn arrived(seq: u16, arrival_ms: u64) -> gst::Buffer {
    let mut b = packet(seq);
    b.get_mut()
        .unwrap()
        .set_dts(gst::ClockTime::from_mseconds(arrival_ms));
    b
}

#[test]
fn rfc3550_receive_statistics_by_hand() {
    // 8 kHz, 160 ticks a packet; 3 arrives after 4, 5 twice, 6 and 8 lost.
    // Transit = arrival (ms * 8) - timestamp, in ticks; RFC 3550 A.8 in its
    // integer form, J*16 += |D| - (J*16 + 8) / 16:
    //   seq  arrival  transit  |D|  J*16
    //   0      0 ms      0      -     0 (first packet: no D)
    //   1     20 ms      0      0     0
    //   2     45 ms     40     40    40
    //   4     80 ms      0     40    40 + 40 - 3 = 77
    //   3     85 ms    200    200    77 + 200 - 5 = 272
    //   5    100 ms      0    200    272 + 200 - 17 = 455
    //   5    101 ms      8      8    455 + 8 - 28 = 435
    //   7    140 ms      0      8    435 + 8 - 27 = 416
    //   9    180 ms      0      0    416 + 0 - 26 = 390 -> jitter 24
    // Expected (A.3): 9 - 0 + 1 = 10; received 9 (the duplicate counts);
    // lost 10 - 9 = 1 (two lost, one duplicate).
    let mut h = harness("");
    for (seq, at) in [
        (0, 0),
        (1, 20),
        (2, 45),
        (4, 80),
        (3, 85),
        (5, 100),
        (5, 101),
        (7, 140),
        (9, 180),
    ] {
        h.push(arrived(seq, at)).unwrap();
    }
    let s = stats(&h);
    assert_eq!(s.get::<u64>("packets-expected").unwrap(), 10);
    assert_eq!(s.get::<i64>("packets-lost").unwrap(), 1);
    assert_eq!(s.get::<u64>("jitter").unwrap(), 24);
    assert_counters(&h, "received=9 pushed=6 dropped-duplicate=1 buffered=2");
    // Negative when duplicates outnumber losses.
    for _ in 0..3 {
        h.push(arrived(9, 200)).unwrap();
    }
    assert_eq!(stats(&h).get::<i64>("packets-lost").unwrap(), -2);
}

#[test]
fn jitter_is_unknown_without_a_clock_rate() {
    let mut h = harness("");
    h.set_src_caps_str("application/x-rtp,media=audio,encoding-name=PCMU,payload=0");
    assert_eq!(stats(&h).get::<u64>("jitter").unwrap(), u64::MAX);
    for (seq, at) in [(0, 0), (1, 25), (2, 40)] {
        h.push(arrived(seq, at)).unwrap();
    }
    let s = stats(&h);
    assert_eq!(s.get::<u64>("jitter").unwrap(), u64::MAX, "{s}");
    assert_eq!(s.get::<u64>("packets-expected").unwrap(), 3);
    assert_eq!(s.get::<i64>("packets-lost").unwrap(), 0);
    // Caps with a clock rate make it known, from the next packets on.
    h.set_src_caps_str(PCMU_CAPS);
    assert_eq!(stats(&h).get::<u64>("jitter").unwrap(), 0);
}

#[test]
fn malformed_datagrams_mixed_in() {
    let mut h = harness("");
    let mut bad_version = datagram(2, 0, SSRC);
    bad_version[0] = 0x40;
    let mut pad_overrun = datagram(3, 0, SSRC);
    pad_overrun[0] |= 0x20;
    *pad_overrun.last_mut().unwrap() = 200;
    h.push(packet(0)).unwrap();
    h.push(gst::Buffer::from_slice([0x80u8, 0, 0])).unwrap();
    h.push(packet(1)).unwrap();
    h.push(gst::Buffer::from_mut_slice(bad_version)).unwrap();
    h.push(gst::Buffer::from_mut_slice(pad_overrun)).unwrap();
    h.push(packet(2)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    assert!(lost_events(&mut h).is_empty());
    assert_counters(
        &h,
        "received=6 pushed=3 dropped-parse=3 parse-error-too-short=1 \
         parse-error-bad-version=1 parse-error-padding-overrun=1",
    );
}

#[test]
fn eos_releases_voids_buffered() {
    let mut h = harness("capacity=10");
    push_seqs(&mut h, &[0, 2, 3, 6]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0]);
    assert_counters(&h, "buffered=3");
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![2, 3, 6]);
    assert_eq!(discont_of(&out), vec![2, 6]);
    let ev = lost_events(&mut h);
    let ranges: Vec<(u64, u64)> = ev
        .iter()
        .map(|s| (s.get("lseq-start").unwrap(), s.get("lseq-end").unwrap()))
        .collect();
    assert_eq!(ranges, vec![(65537, 65537), (65540, 65541)]);
    assert_counters(&h, "pushed=4 buffered=0 erasures=2 erased-packets=3");
}

#[test]
fn latency_releases_a_void_on_arrival() {
    let mut h = harness("latency=50");
    push_seqs(&mut h, &[0, 2, 3, 4]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0], "2 has waited 40 ms");
    push_seqs(&mut h, &[5]);
    assert_eq!(
        seqs_of(&pulled(&mut h)),
        vec![2, 3, 4, 5],
        "2 has waited 60 ms"
    );
    // 5 is in the buffer when 2's wait is checked.
    assert_counters(&h, "erasures=1 max-buffered=4");
}

/// A harness whose upstream answered the latency query as live (the
/// harness's source pad does), with the harness's test clock.
fn live_harness(props: &str) -> (Harness, gst_check::TestClock) {
    let h = harness(props);
    assert!(
        h.query_latency().is_some(),
        "the latency query went through"
    );
    let clock = h.testclock().expect("the harness sets a test clock");
    (h, clock)
}

#[test]
fn live_packets_behind_a_void_leave_at_their_latency_without_more_input() {
    let (mut h, clock) = live_harness("latency=60");
    for seq in 0..3u16 {
        h.push(arrived(seq, 20 * u64::from(seq))).unwrap();
    }
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    assert_eq!(clock.peek_id_count(), 0, "nothing waits: no clock wait");
    // 3 is lost; 4 arrives at 80 ms and the input stops.
    h.push(arrived(4, 80)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), Vec::<u16>::new());
    let id = next_wait(&clock);
    assert_eq!(
        id.time(),
        gst::ClockTime::from_nseconds(140_000_001),
        "one wait, until 4 has waited more than 60 ms"
    );
    assert_eq!(clock.peek_id_count(), 1);
    // The clock gets there: 4 leaves with no further input.
    h.crank_single_clock_wait().unwrap();
    let b = within_10s("buffer", || h.try_pull());
    assert_eq!(b.dts(), Some(gst::ClockTime::from_mseconds(80)));
    assert!(b.flags().contains(gst::BufferFlags::DISCONT));
    let ev = lost_events(&mut h);
    assert_eq!(ev.len(), 1);
    assert_eq!(lost_fields(&ev[0]).4, 65539, "3 declared lost");
    assert_counters(&h, "received=4 pushed=4 erasures=1 buffered=0");
    assert_eq!(clock.peek_id_count(), 0, "nothing waits any more");
    // The stream goes on in order.
    h.push(arrived(5, 100)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), vec![5]);
}

#[test]
fn live_start_up_hold_ends_at_latency_without_more_input() {
    let (mut h, clock) = live_harness("latency=60");
    h.push(arrived(7, 10)).unwrap();
    assert_eq!(
        next_wait(&clock).time(),
        gst::ClockTime::from_nseconds(70_000_001)
    );
    h.crank_single_clock_wait().unwrap();
    let b = within_10s("buffer", || h.try_pull());
    assert_eq!(b.dts(), Some(gst::ClockTime::from_mseconds(10)));
    assert_counters(&h, "received=1 pushed=1 buffered=0");
}

#[test]
fn live_wait_follows_the_first_packet_waiting() {
    let (mut h, clock) = live_harness("latency=60 capacity=10");
    for seq in 0..3u16 {
        h.push(arrived(seq, 20 * u64::from(seq))).unwrap();
    }
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    // 3 lost, 4 waits; 6 waits behind 5 from 120 ms.
    h.push(arrived(4, 80)).unwrap();
    h.push(arrived(6, 120)).unwrap();
    assert_eq!(
        next_wait(&clock).time(),
        gst::ClockTime::from_nseconds(140_000_001)
    );
    h.crank_single_clock_wait().unwrap();
    assert_eq!(pull_one(&mut h), (4, true));
    // Once 4 is out, the next wait is for 6.
    assert_eq!(
        next_wait(&clock).time(),
        gst::ClockTime::from_nseconds(180_000_001)
    );
    // 7 waits with 6, consecutive: still the one wait, for 6.
    h.push(arrived(7, 160)).unwrap();
    assert_eq!(clock.peek_id_count(), 1);
    assert_eq!(
        clock.peek_next_pending_id().map(|id| id.time()),
        Some(gst::ClockTime::from_nseconds(180_000_001))
    );
    h.crank_single_clock_wait().unwrap();
    assert_eq!(pull_one(&mut h), (6, true));
    assert_eq!(pull_one(&mut h), (7, false));
    // 5 comes after all: too late.
    h.push(arrived(5, 200)).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), Vec::<u16>::new());
    assert_counters(&h, "pushed=6 dropped-late=1 buffered=0 erasures=2");
    assert_eq!(clock.peek_id_count(), 0);
}

/// Waits up to 10 s for `what` to give something.
fn within_10s<T>(what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(t) = poll() {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The clock wait the element has pending, waiting for it to be armed.
fn next_wait(clock: &gst_check::TestClock) -> gst::ClockId {
    within_10s("clock wait", || clock.peek_next_pending_id())
}

/// The next buffer out, waiting for it (it may come from the timer's
/// thread).
fn pull_one(h: &mut Harness) -> (u16, bool) {
    let b = within_10s("buffer", || h.try_pull());
    let map = b.map_readable().unwrap();
    let p = Packet::parse(&map).expect("output is valid RTP");
    (p.seq(), b.flags().contains(gst::BufferFlags::DISCONT))
}

#[test]
fn live_wait_survives_a_pause() {
    let (mut h, clock) = live_harness("latency=60");
    push_seqs(&mut h, &[0, 1, 2, 4]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    let due = next_wait(&clock).time();
    let element = h.element().unwrap();
    element.set_state(gst::State::Paused).unwrap();
    element.set_state(gst::State::Playing).unwrap();
    // Armed again from the (new) base time: one wait, as before.
    assert_eq!(clock.peek_id_count(), 1);
    assert_eq!(next_wait(&clock).time(), due);
    h.crank_single_clock_wait().unwrap();
    assert_eq!(pull_one(&mut h), (4, true));
}

#[test]
fn not_live_never_waits_on_the_clock() {
    // No latency query answered live: packets behind a void leave only on
    // arrival, as before.
    let mut h = harness("latency=60");
    let clock = h.testclock().unwrap();
    push_seqs(&mut h, &[0, 1, 2, 4]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(clock.peek_id_count(), 0);
    assert_counters(&h, "buffered=1");
}

#[test]
fn stop_and_flush_cancel_the_wait() {
    let (mut h, clock) = live_harness("latency=60");
    push_seqs(&mut h, &[0, 1, 2, 4]);
    next_wait(&clock);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert_eq!(clock.peek_id_count(), 0, "flush-start cancels it");
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert_eq!(
        seqs_of(&pulled(&mut h)),
        vec![0, 1, 2, 4],
        "flush-stop pushed 4"
    );
    assert!(h.push_event(time_segment()));
    push_seqs(&mut h, &[10, 11, 12, 14]);
    next_wait(&clock);
    let element = h.element().unwrap();
    element.set_state(gst::State::Ready).unwrap();
    assert_eq!(clock.peek_id_count(), 0, "the stop cancels it");
    assert_eq!(seqs_of(&pulled(&mut h)), vec![10, 11, 12, 14]);
    assert_counters(&h, "received=8 pushed=8 buffered=0");
}

#[test]
fn live_pipeline_releases_packets_behind_a_void_on_the_system_clock() {
    // A live source that stamps arrival (as udpsrc does), the system clock.
    common::init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true do-timestamp=true format=time caps=\"{PCMU_CAPS}\" \
         ! rtpjbufdec latency=100 ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let appsink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let unstamped =
        |seq: u16| gst::Buffer::from_mut_slice(datagram(seq, u32::from(seq) * SAMPLES, SSRC));
    let seq_of = |sample: gst::Sample| {
        let b = sample.buffer().unwrap();
        Packet::parse(&b.map_readable().unwrap()).unwrap().seq()
    };
    for seq in 0..3u16 {
        appsrc.push_buffer(unstamped(seq)).unwrap();
    }
    for want in 0..3u16 {
        let sample = appsink.try_pull_sample(gst::ClockTime::from_seconds(10));
        assert_eq!(sample.map(seq_of), Some(want));
    }
    // 3 is lost; 4 comes, then nothing.
    let sent = std::time::Instant::now();
    appsrc.push_buffer(unstamped(4)).unwrap();
    let sample = appsink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let waited = sent.elapsed();
    assert_eq!(sample.map(seq_of), Some(4), "4 leaves without more input");
    assert!(
        waited >= std::time::Duration::from_millis(95),
        "4 waited its latency: {waited:?}"
    );
    assert!(
        // Generous: a loaded machine delays threads.
        waited < std::time::Duration::from_secs(5),
        "4 left at about its latency: {waited:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn flush_stop_pushes_what_was_buffered() {
    let mut h = harness("");
    push_seqs(&mut h, &[0, 2, 3, 5]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0]);
    let log = log_output(&h);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    // Forwarded first, then the buffered packets, in the segment they were
    // received in (the flush-stop took it off the src pad).
    assert_eq!(
        take(&log),
        vec![
            ev("flush-start"),
            ev("flush-stop"),
            ev("segment"),
            ev("lost 65537..=65537"),
            buf(2, true),
            buf(3, false),
            ev("lost 65540..=65540"),
            buf(5, true),
        ]
    );
    assert_counters(
        &h,
        "received=4 pushed=4 dropped-flushing=0 buffered=0 erasures=2 erased-packets=2",
    );
    // The stream was forgotten: the next packets start a new one.
    assert!(h.push_event(time_segment()));
    push_seqs(&mut h, &[100, 101, 102]);
    assert_eq!(
        take(&log),
        vec![
            ev("segment"),
            buf(100, false),
            buf(101, false),
            buf(102, false)
        ]
    );
    assert_eq!(seqs_of(&pulled(&mut h)), vec![2, 3, 5, 100, 101, 102]);
}

#[test]
fn packets_downstream_refuses_while_flushing_count_as_dropped_flushing() {
    let mut h = harness("");
    push_seqs(&mut h, &[0, 1, 2]);
    flush_downstream(&h);
    push_seqs(&mut h, &[4, 5]);
    // 3 releases 3, 4, 5 (planned output), 6 goes out as it came.
    for s in [3u16, 6] {
        assert_eq!(h.push(packet(s)), Err(gst::FlowError::Flushing));
    }
    assert_counters(&h, "received=7 pushed=3 dropped-flushing=4 buffered=0");
}

#[test]
fn silence_downstream_refuses_is_not_counted_as_inserted() {
    let mut h = harness("capacity=2 erasure-mode=silence");
    push_seqs(&mut h, &[0, 1]);
    flush_downstream(&h);
    push_seqs(&mut h, &[4]);
    // The full buffer fills 2 and 3 with silence, all refused.
    assert_eq!(h.push(packet(5)), Err(gst::FlowError::Flushing));
    assert_counters(
        &h,
        "received=4 pushed=2 dropped-flushing=2 silence-packets=0 erased-packets=2",
    );
}

#[test]
fn erasure_mode_none_sets_only_discont() {
    let mut h = harness("capacity=2 erasure-mode=none");
    push_seqs(&mut h, &[0, 2, 3]);
    let out = pulled(&mut h);
    assert_eq!(seqs_of(&out), vec![0, 2, 3]);
    assert_eq!(discont_of(&out), vec![2]);
    assert!(lost_events(&mut h).is_empty());
}

#[test]
fn silence_mode_fills_pcmu_voids() {
    let mut h = harness("capacity=2 erasure-mode=silence");
    push_seqs(&mut h, &[0, 3, 4]);
    let mut got = Vec::new();
    while let Some(b) = h.try_pull() {
        let map = b.map_readable().unwrap();
        let p = Packet::parse(&map).unwrap();
        got.push((
            p.seq(),
            p.timestamp(),
            p.payload().to_vec(),
            b.pts(),
            b.flags().contains(gst::BufferFlags::DISCONT),
        ));
    }
    let seqs: Vec<u16> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    for (seq, ts, payload, pts, discont) in &got {
        assert_eq!(*ts, u32::from(*seq) * SAMPLES);
        assert_eq!(*pts, Some(pts_of(*seq)));
        let fill = if (1..=2).contains(seq) {
            0xff
        } else {
            *seq as u8
        };
        assert_eq!(payload, &vec![fill; SAMPLES as usize], "seq {seq}");
        assert_eq!(*discont, *seq == 1);
    }
    assert!(lost_events(&mut h).is_empty(), "silence replaces the event");
    assert_counters(&h, "received=3 pushed=3 silence-packets=2 erased-packets=2");
}

#[test]
fn lists_in_give_lists_out_with_events_between() {
    let mut h = harness("capacity=2");
    let lists = Arc::new(Mutex::new(Vec::new()));
    let seen = lists.clone();
    src_pad(&h).add_probe(
        gst::PadProbeType::BUFFER_LIST | gst::PadProbeType::BUFFER,
        move |_, info| {
            let seqs =
                |b: &gst::BufferRef| Packet::parse(&b.map_readable().unwrap()).unwrap().seq();
            match &info.data {
                Some(gst::PadProbeData::BufferList(l)) => seen
                    .lock()
                    .unwrap()
                    .push(l.iter().map(seqs).collect::<Vec<_>>()),
                Some(gst::PadProbeData::Buffer(b)) => seen.lock().unwrap().push(vec![seqs(b)]),
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    // The harness needs stream-start, caps and segment before data.
    h.push(packet(0)).unwrap();
    let list = list_of(&[1, 2, 4, 5, 6]);
    h.srcpad().unwrap().push_list(list).unwrap();
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2, 4, 5, 6]);
    // 0 waited in the start-up hold and goes out with the list that ended
    // it; the event for 3 splits the output list where the void is.
    assert_eq!(*lists.lock().unwrap(), vec![vec![0, 1, 2], vec![4, 5, 6]]);
    assert_eq!(lost_events(&mut h).len(), 1);
}

#[test]
fn counters_add_up_on_a_lossy_trace() {
    let mut h = harness("capacity=8");
    let mut rng = SplitMix64::new(7);
    let mut n = 0;
    for seq in 0..2000u16 {
        if rng.chance(0.01) {
            h.push(gst::Buffer::from_slice([0u8; 4])).unwrap();
            n += 1;
        }
        if rng.chance(0.05) {
            continue;
        }
        let copies = if rng.chance(0.03) { 2 } else { 1 };
        // Some packets come up to 12 places late: beyond capacity 8.
        let s = if rng.chance(0.05) {
            seq.saturating_sub(rng.below(12) as u16)
        } else {
            seq
        };
        for _ in 0..copies {
            h.push(packet(s)).unwrap();
            n += 1;
        }
    }
    h.push_event(gst::event::Eos::new());
    let out = pulled(&mut h);
    let c = counters(
        &h,
        &[
            "received",
            "pushed",
            "dropped-duplicate",
            "dropped-late",
            "dropped-parse",
            "buffered",
        ],
    );
    assert_eq!(c[0], n);
    assert_eq!(c[1], out.len() as u64);
    assert!(
        c[2] > 0 && c[3] > 0 && c[4] > 0,
        "the trace exercises every drop: {c:?}"
    );
    assert_eq!(c[5], 0);
    let seqs = seqs_of(&out);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
}

/// rtp::write_packet stream → seeded impairment → appsrc ! rtpjbufdec !
/// rtppcmudepay ! mulawdec ! fakesink: decoded samples plus concealed ones
/// (GAP durations in event mode, silence packets in silence mode) equal the
/// samples sent.
fn interop(mode: &str) -> (u64, u64, u64) {
    common::init();
    const PACKETS: u16 = 1000;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=\"{PCMU_CAPS}\" ! rtpjbufdec name=jb capacity=8 erasure-mode={mode} \
         ! rtppcmudepay ! mulawdec ! fakesink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let samples = Arc::new(Mutex::new((0u64, 0u64)));
    let counted = samples.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let mut c = counted.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => c.0 += b.size() as u64 / 2,
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Gap(g) = e.view() {
                        let (_, d) = g.get();
                        c.1 += d.unwrap().nseconds() * 8000 / 1_000_000_000;
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    // Impairment: 3% loss, 5% swapped with the next one, 2% duplicated; the
    // first and last packets always arrive, so the span is the whole stream.
    let mut rng = SplitMix64::new(2024);
    let mut sent: Vec<u16> = Vec::new();
    for s in 0..PACKETS {
        let edge = s == 0 || s == PACKETS - 1;
        if !edge && rng.chance(0.03) {
            continue;
        }
        sent.push(s);
        if rng.chance(0.02) {
            sent.push(s);
        }
    }
    for i in 1..sent.len() - 2 {
        if rng.chance(0.05) {
            sent.swap(i, i + 1);
        }
    }
    for s in &sent {
        appsrc.push_buffer(packet(*s)).unwrap();
    }
    appsrc.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline finishes");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    let jb = pipeline.by_name("jb").unwrap();
    let stats = jb.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let (decoded, concealed) = *samples.lock().unwrap();
    assert_eq!(stat(&stats, "received"), sent.len() as u64);
    assert!(
        stat(&stats, "erased-packets") > 0,
        "the impairment lost packets: {stats}"
    );
    (decoded, concealed, u64::from(PACKETS) * u64::from(SAMPLES))
}

#[test]
fn interop_event_mode_gaps_cover_the_loss() {
    let (decoded, concealed, sent) = interop("event");
    assert!(concealed > 0);
    assert_eq!(decoded + concealed, sent);
}

#[test]
fn interop_silence_mode_plays_continuously() {
    let (decoded, concealed, sent) = interop("silence");
    assert_eq!(concealed, 0, "no GAP when silence fills the voids");
    assert_eq!(decoded, sent);
}

#[test]
fn original_buffers_go_out_without_copies() {
    let mut h = harness("capacity=4");
    let sent: Vec<gst::Buffer> = [0u16, 2, 1, 3].into_iter().map(packet).collect();
    for b in &sent {
        h.push(b.clone()).unwrap();
    }
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.push(b);
    }
    // In order 0, 1, 2, 3: the very GstBuffers that came in, including the
    // one that waited in the reorder buffer.
    let want: Vec<*const gst::ffi::GstBuffer> =
        [0, 2, 1, 3].iter().map(|&i| sent[i].as_ptr()).collect();
    let got: Vec<*const gst::ffi::GstBuffer> = out.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(got, want);
}

#[test]
fn in_order_list_goes_out_as_the_same_list() {
    let mut h = harness("");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let lists = seen.clone();
    src_pad(&h).add_probe(gst::PadProbeType::BUFFER_LIST, move |_, info| {
        if let Some(gst::PadProbeData::BufferList(l)) = &info.data {
            lists.lock().unwrap().push(l.as_ptr() as usize);
        }
        gst::PadProbeReturn::Ok
    });
    // After the start-up hold.
    push_seqs(&mut h, &[0, 1, 2]);
    seen.lock().unwrap().clear();
    let list = list_of(&[3, 4, 5, 6, 7]);
    let ptr = list.as_ptr() as usize;
    h.srcpad().unwrap().push_list(list).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![ptr]);
    assert_eq!(seqs_of(&pulled(&mut h)), (0..=7).collect::<Vec<_>>());
}

#[test]
fn latency_query_adds_the_latency_property() {
    let mut h = harness("latency=40");
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(50)));
}

#[test]
fn multi_memory_buffers_are_parsed_whole() {
    // Payloaders often send the header and the payload as two memories.
    let mut h = harness("capacity=2");
    for seq in [0u16, 2, 1] {
        let bytes = datagram(seq, u32::from(seq) * SAMPLES, SSRC);
        let mut b = gst::Buffer::new();
        {
            let bm = b.get_mut().unwrap();
            bm.append_memory(gst::Memory::from_slice(bytes[..12].to_vec()));
            bm.append_memory(gst::Memory::from_slice(bytes[12..].to_vec()));
            bm.set_pts(pts_of(seq));
        }
        assert_eq!(b.n_memory(), 2);
        h.push(b).unwrap();
    }
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 1, 2]);
    assert_counters(&h, "pushed=3 dropped-parse=0");
}

#[test]
fn stopping_pushes_what_was_buffered() {
    let mut h = harness("");
    push_seqs(&mut h, &[0, 2, 3]);
    let log = log_output(&h);
    let element = h.element().unwrap();
    element.set_state(gst::State::Ready).unwrap();
    assert_eq!(
        take(&log),
        vec![ev("lost 65537..=65537"), buf(2, true), buf(3, false)]
    );
    assert_counters(&h, "received=3 pushed=3 dropped-flushing=0 buffered=0");
    // A fresh start: the next packet begins a new stream (1 is not late).
    element.set_state(gst::State::Playing).unwrap();
    h.push(packet(1)).unwrap();
    assert_counters(&h, "received=1 pushed=0 buffered=1");
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0, 2, 3, 1]);
    assert_counters(&h, "received=1 pushed=1 buffered=0");
}

#[test]
fn stopping_with_the_streaming_thread_blocked_drops_as_flushing() {
    let mut h = harness("");
    push_seqs(&mut h, &[10, 12, 13]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![10]);
    let element = h.element().unwrap();
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
    let probe = element
        .static_pad("src")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER_LIST,
            move |_, _| {
                let _ = blocked_tx.send(());
                gst::PadProbeReturn::Ok
            },
        )
        .unwrap();
    // 11 releases 11, 12, 13 as one list, which blocks downstream with the
    // chain call holding the stream lock; 15 and 16 stay buffered.
    let list = list_of(&[11, 15, 16]);
    let upstream = h.srcpad().unwrap();
    let streaming = std::thread::spawn(move || upstream.push_list(list));
    blocked_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the list reaches the blocking probe");
    let started = std::time::Instant::now();
    element.set_state(gst::State::Ready).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the stop does not wait for the blocked thread"
    );
    // Deactivating the src pad unblocked the push, which downstream refused.
    assert_eq!(streaming.join().unwrap(), Err(gst::FlowError::Flushing));
    element.static_pad("src").unwrap().remove_probe(probe);
    assert_eq!(seqs_of(&pulled(&mut h)), Vec::<u16>::new());
    assert_counters(&h, "received=6 pushed=1 dropped-flushing=5 buffered=0");
}

#[test]
fn serialized_events_do_not_overtake_buffered_packets() {
    let mut h = harness("capacity=10");
    push_seqs(&mut h, &[0, 2, 3, 6]);
    assert_eq!(seqs_of(&pulled(&mut h)), vec![0]);
    let log = log_output(&h);
    let custom = |name: &str| gst::Structure::new_empty(name);
    assert!(h.push_event(gst::event::CustomDownstream::new(custom("test/serialized"))));
    assert_eq!(
        take(&log),
        vec![
            ev("lost 65537..=65537"),
            buf(2, true),
            buf(3, false),
            ev("lost 65540..=65541"),
            buf(6, true),
            ev("test/serialized"),
        ]
    );
    // The stream goes on: 4 was declared lost, so it is late now; 7 is
    // next in order.
    push_seqs(&mut h, &[4, 7]);
    assert_eq!(take(&log), vec![buf(7, false)]);

    push_seqs(&mut h, &[9]);
    assert!(h.push_event(time_segment()));
    push_seqs(&mut h, &[11]);
    let caps = PCMU_CAPS.replace("PCMU,payload=0", "PCMA,payload=8");
    assert!(h.push_event(gst::event::Caps::new(&caps.parse().unwrap())));
    assert_eq!(
        take(&log),
        vec![
            ev("lost 65544..=65544"),
            buf(9, true),
            ev("segment"),
            ev("lost 65546..=65546"),
            buf(11, true),
            ev("caps"),
        ]
    );

    // An out-of-band event does not wait for, nor release, anything.
    push_seqs(&mut h, &[13]);
    assert!(h.push_event(gst::event::CustomDownstreamOob::new(custom("test/oob"))));
    assert_eq!(take(&log), vec![ev("test/oob")]);
    assert_counters(&h, "buffered=1");
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(
        take(&log),
        vec![ev("lost 65548..=65548"), buf(13, true), ev("eos")]
    );
    assert_counters(
        &h,
        "received=9 pushed=8 dropped-late=1 buffered=0 erasures=5 erased-packets=6",
    );
}

/// What left the element, in order.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    /// A buffer: seq and DISCONT.
    Buf(u16, bool),
    /// An event: `lost <lseq-start>..=<lseq-end>` for a packet-lost event,
    /// the structure name of other custom events, else the type name.
    Ev(String),
}

fn buf(seq: u16, discont: bool) -> Out {
    Out::Buf(seq, discont)
}

fn ev(name: &str) -> Out {
    Out::Ev(name.to_string())
}

/// Logs every buffer and downstream event (flushes included) that leaves
/// the element from now on, in order.
fn log_output(h: &Harness) -> Arc<Mutex<Vec<Out>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    src_pad(h).add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::BUFFER_LIST
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let buf = |b: &gst::BufferRef| {
                let seq = Packet::parse(&b.map_readable().unwrap()).unwrap().seq();
                Out::Buf(seq, b.flags().contains(gst::BufferFlags::DISCONT))
            };
            let mut log = sink.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => log.push(buf(b)),
                Some(gst::PadProbeData::BufferList(l)) => log.extend(l.iter().map(buf)),
                Some(gst::PadProbeData::Event(e)) => log.push(Out::Ev(event_name(e))),
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    log
}

fn event_name(e: &gst::Event) -> String {
    let custom = matches!(
        e.type_(),
        gst::EventType::CustomDownstream | gst::EventType::CustomDownstreamOob
    );
    match e.structure() {
        Some(s) if s.name() == "GstRTPPacketLost" => format!(
            "lost {}..={}",
            s.get::<u64>("lseq-start").unwrap(),
            s.get::<u64>("lseq-end").unwrap()
        ),
        Some(s) if custom => s.name().to_string(),
        _ => e.type_().name().to_string(),
    }
}

fn take(log: &Mutex<Vec<Out>>) -> Vec<Out> {
    std::mem::take(&mut *log.lock().unwrap())
}
