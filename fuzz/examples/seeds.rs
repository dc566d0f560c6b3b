//! Writes the seed corpus of every fuzz target into `DIR/<target>/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds`
//! (scripts/fuzz.sh runs it before fuzzing).
//!
//! The seeds are the traffic the core's tests build, in each target's input
//! layout: PCMU streams in order, lossy, reordered, duplicated, across the
//! sequence wrap, restarted and changing SSRC (the traces of jbuf's model
//! test and of the rtpjbufdec integration test); packets with padding,
//! header extensions and CSRCs; RTCP compounds written by the `rtcp` writers
//! and by `Session`s talking to each other; and a malformed datagram for
//! every `rtp::ParseError` and `rtcp::RtcpError`. Random parts come from
//! fixed `SplitMix64` seeds, so the output is the same on every run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rtpsynth_core::prng::SplitMix64;
use rtpsynth_core::rtcp::{
    self, Compound, PT_APP, PT_RR, PT_SDES, PT_SR, ReportBlock, SDES_CNAME, SenderInfo,
};
use rtpsynth_core::rtp::{Extension, Extras, Header, Packet, write_packet};
use rtpsynth_core::session::{Config, MAX_COMPOUND_LEN, ReportInterval, Session, UNKNOWN};

/// The rtcp target's session: the same settings, so a twin run here writes
/// the reports the target's session will write.
const OUR_SSRC: u32 = 0x1111;
const PEER_SSRC: u32 = 0x2222;
const NTP_AT_ZERO: u64 = 0xe000_0000_0000_0000;
const CNAME: &str = "fuzz@example.org";
const MS: u64 = 1_000_000;
const HOUR_MS: u64 = 3_600_000;

fn our_config(clock_rate: Option<u32>) -> Config {
    Config {
        ssrc: OUR_SSRC,
        clock_rate,
        interval: ReportInterval::Fixed { ms: 5 },
        seed: 1,
        ntp_at_zero: NTP_AT_ZERO,
    }
}

fn peer_config() -> Config {
    Config {
        ssrc: PEER_SSRC,
        clock_rate: Some(8000),
        interval: ReportInterval::Fixed { ms: 70 },
        seed: 2,
        // The peer's wall clock is its own: round trips must not depend on it.
        ntp_at_zero: 0xdead_0000_1234_0000,
    }
}

fn rtp(header: &Header, extras: &Extras<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; 2048];
    let len = write_packet(&mut out, header, extras, payload).expect("seed packets fit");
    out.truncate(len);
    out
}

/// Packet `seq` of a 20 ms PCMU stream: timestamp 160 per packet, silence.
fn pcmu(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let header = Header {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: 160u32.wrapping_mul(u32::from(seq)),
        ssrc,
    };
    rtp(&header, &Extras::default(), &vec![0xff; payload_len])
}

/// A datagram and when it arrives, in ms.
type Trace = Vec<(Vec<u8>, u64)>;

/// `n` packets from `start`, one every 20 ms.
fn in_order(ssrc: u32, start: u16, n: usize, payload_len: usize) -> Trace {
    (0..n)
        .map(|i| {
            let seq = start.wrapping_add(i as u16);
            (pcmu(ssrc, seq, payload_len), 20 * i as u64)
        })
        .collect()
}

/// jbuf's model-test trace: loss, duplicates, reordering up to `cap - 1`
/// places, a sequence wrap, sender restarts, SSRC changes and garbage, with
/// arrival jitter.
fn model_trace(seed: u64, cap: usize, len: usize, payload_len: usize) -> Trace {
    let mut rng = SplitMix64::new(seed);
    let mut seq = 65535u16.wrapping_sub(rng.below(len as u32) as u16);
    let mut ssrc = 1;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for _ in 0..len {
        if rng.chance(0.01) {
            seq = rng.next_u32() as u16;
        }
        if rng.chance(0.005) {
            ssrc += 1;
        }
        if rng.chance(0.01) {
            sent.push(vec![0x80, 0, 1]);
        }
        let p = pcmu(ssrc, seq, payload_len);
        if !rng.chance(0.05) {
            sent.push(p.clone());
        }
        if rng.chance(0.03) {
            sent.push(p);
        }
        seq = seq.wrapping_add(1);
    }
    for i in (0..sent.len()).rev() {
        if rng.chance(0.1) {
            let to = (i + 1 + rng.below(cap as u32 - 1) as usize).min(sent.len() - 1);
            let p = sent.remove(i);
            sent.insert(to, p);
        }
    }
    let mut t = 0;
    sent.into_iter()
        .map(|p| {
            t += u64::from(rng.below(40));
            (p, t)
        })
        .collect()
}

/// The rtpjbufdec integration test's trace: 1 % garbage, 5 % loss, 3 %
/// duplicates, 5 % arriving up to 12 places late.
fn element_trace(seed: u64, n: u16, payload_len: usize) -> Trace {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for seq in 0..n {
        let at = 20 * u64::from(seq);
        if rng.chance(0.01) {
            out.push((vec![0; 4], at));
        }
        if rng.chance(0.05) {
            continue;
        }
        let copies = if rng.chance(0.03) { 2 } else { 1 };
        let s = if rng.chance(0.05) {
            seq.saturating_sub(rng.below(12) as u16)
        } else {
            seq
        };
        for _ in 0..copies {
            out.push((pcmu(7, s, payload_len), at));
        }
    }
    out
}

/// Moves each packet later by up to `depth` places with probability `p`.
fn reorder(mut trace: Trace, seed: u64, p: f64, depth: u32) -> Trace {
    let mut rng = SplitMix64::new(seed);
    let times: Vec<u64> = trace.iter().map(|(_, t)| *t).collect();
    for i in (0..trace.len()).rev() {
        if rng.chance(p) {
            let to = (i + 1 + rng.below(depth) as usize).min(trace.len() - 1);
            let d = trace.remove(i);
            trace.insert(to, d);
        }
    }
    // Arrival order is the new order: keep the times rising.
    for (d, t) in trace.iter_mut().zip(times) {
        d.1 = t;
    }
    trace
}

fn lose(trace: Trace, seed: u64, p: f64) -> Trace {
    let mut rng = SplitMix64::new(seed);
    trace.into_iter().filter(|_| !rng.chance(p)).collect()
}

/// Records of `[length, step, bytes...]`, the layout of the jbuf and rtcp
/// targets, with each time step (in the trace's unit) as `step` encodes it.
fn records(trace: &Trace, step: impl Fn(u64) -> u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = trace.first().map_or(0, |(_, t)| *t);
    for (data, t) in trace {
        let len = data.len().min(255);
        out.push(len as u8);
        out.push(step(t.saturating_sub(last)));
        out.extend_from_slice(&data[..len]);
        last = *t;
    }
    out
}

/// The jbuf target's step: 253 to 255 are its expiry, discard and release
/// events.
fn jbuf_step(diff: u64) -> u8 {
    diff.min(252) as u8
}

/// The rtcp target's step: ms below 240, whole hours (1 to 16) from 240.
fn rtcp_step(diff_ms: u64) -> u8 {
    match diff_ms {
        0..240 => diff_ms as u8,
        _ if diff_ms >= HOUR_MS => 239 + (diff_ms / HOUR_MS).min(16) as u8,
        _ => 239,
    }
}

/// The jbuf target's input: capacity, latency (in the trace's time unit),
/// max-dropout 3071 and max-misorder 127 (the element's 3000 and 100,
/// rounded up to what the target's bytes give), clock rate 8 kHz, then the
/// records.
fn jbuf_input(cap: u8, latency: u8, trace: &Trace) -> Vec<u8> {
    let mut out = vec![cap, latency, 23, 0, 8];
    out.extend(records(trace, jbuf_step));
    out
}

/// Like [`jbuf_input`], with `event` (255: release, 254: discard, 253:
/// expiry) before every `every`-th datagram.
fn jbuf_input_with_events(cap: u8, latency: u8, trace: &Trace, event: u8, every: usize) -> Vec<u8> {
    let mut out = jbuf_input(cap, latency, trace);
    let mut at = 5;
    let mut i = 0;
    while at < out.len() {
        if i % every == every - 1 {
            out[at + 1] = event;
        }
        at += 2 + usize::from(out[at]);
        i += 1;
    }
    out
}

fn block(ssrc: u32, lost: i32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 0x40,
        cumulative_lost: lost,
        extended_highest_seq: 0x0001_ffff,
        jitter: 123,
        last_sr: 0xdead_beef,
        delay_since_last_sr: 0x0001_8000,
    }
}

fn sender_info() -> SenderInfo {
    SenderInfo {
        ntp: 0xe000_0000_8000_0000,
        rtp_timestamp: 160_000,
        packet_count: 1000,
        octet_count: 160_000,
    }
}

/// Writes one packet into the front of a buffer; returns its length.
type WritePacket<'a> = &'a dyn Fn(&mut [u8]) -> usize;

/// A compound of the packets `parts` write, in order.
fn compound(parts: &[WritePacket<'_>]) -> Vec<u8> {
    let mut out = vec![0; 2048];
    let mut at = 0;
    for write in parts {
        at += write(&mut out[at..]);
    }
    out.truncate(at);
    out
}

/// SR + 1 block, SDES CNAME, BYE with a reason: the rtcp tests' "good"
/// compound, about `about`.
fn full_compound(about: u32) -> Vec<u8> {
    compound(&[
        &|o| rtcp::write_sr(o, PEER_SSRC, &sender_info(), &[block(about, -3)]).unwrap(),
        &|o| rtcp::write_sdes_cname(o, PEER_SSRC, b"user@host").unwrap(),
        &|o| rtcp::write_bye(o, &[PEER_SSRC, 0x3333], b"done").unwrap(),
    ])
}

/// Every compound shape the writers make, the shapes the reader skips or
/// tolerates, and a broken one for each fault.
fn rtcp_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let good = full_compound(OUR_SSRC);
    let sdes_at = rtcp::sr_len(1);
    let bye_at = sdes_at + rtcp::sdes_cname_len(9);
    let mut v = vec![
        ("sr-sdes-bye", good.clone()),
        ("sr-about-someone-else", full_compound(0x9999)),
        (
            "rr-empty",
            compound(&[&|o| rtcp::write_rr(o, PEER_SSRC, &[]).unwrap()]),
        ),
        (
            "rr-blocks-bye",
            compound(&[
                &|o| rtcp::write_rr(o, PEER_SSRC, &[block(OUR_SSRC, 5), block(2, -1)]).unwrap(),
                &|o| rtcp::write_bye(o, &[9], b"").unwrap(),
            ]),
        ),
        (
            "rr-9-blocks",
            compound(&[&|o| rtcp::write_rr(o, PEER_SSRC, &[block(OUR_SSRC, 1 << 23); 9]).unwrap()]),
        ),
        (
            "sr-lost-extremes",
            compound(&[&|o| {
                rtcp::write_sr(
                    o,
                    PEER_SSRC,
                    &sender_info(),
                    &[block(OUR_SSRC, i32::MIN), block(OUR_SSRC, -1)],
                )
                .unwrap()
            }]),
        ),
        (
            "sdes-longest-cname",
            compound(&[&|o| rtcp::write_sdes_cname(o, PEER_SSRC, &[b'a'; 240]).unwrap()]),
        ),
        (
            "bye-alone",
            compound(&[&|o| rtcp::write_bye(o, &[PEER_SSRC], b"").unwrap()]),
        ),
        (
            "bye-31-sources",
            compound(&[&|o| rtcp::write_bye(o, &[PEER_SSRC; 31], b"x").unwrap()]),
        ),
    ];
    // An APP packet and an unknown type between an RR and a BYE.
    let mut other = compound(&[&|o| rtcp::write_rr(o, PEER_SSRC, &[]).unwrap()]);
    for pt in [PT_APP, 210] {
        other.extend_from_slice(&[0x83, pt, 0, 2, 0, 0, 0x22, 0x22, b'n', b'a', b'm', b'e']);
    }
    other.extend(compound(&[&|o| {
        rtcp::write_bye(o, &[PEER_SSRC], b"").unwrap()
    }]));
    v.push(("rr-app-unknown-bye", other));
    // SDES with two chunks, several items and a PRIV-like item.
    let mut sdes = vec![0x82, PT_SDES, 0, 0];
    sdes.extend_from_slice(&PEER_SSRC.to_be_bytes());
    sdes.extend_from_slice(&[
        SDES_CNAME, 4, b'p', b'e', b'e', b'r', 2, 3, b'b', b'o', b'b', 0,
    ]);
    sdes.extend_from_slice(&0x3333u32.to_be_bytes());
    sdes.extend_from_slice(&[SDES_CNAME, 1, b'z', 0]);
    let words = sdes.len() / 4 - 1;
    sdes[3] = words as u8;
    v.push(("sdes-two-chunks", sdes));
    // The last packet padded.
    let rr = compound(&[&|o| rtcp::write_rr(o, PEER_SSRC, &[]).unwrap()]);
    let mut padded = rr.clone();
    let bye = compound(&[&|o| rtcp::write_bye(o, &[PEER_SSRC], b"").unwrap()]);
    let at = padded.len();
    padded.extend(bye);
    padded[at] |= 0x20;
    padded[at + 3] += 1;
    padded.extend_from_slice(&[0, 0, 0, 4]);
    v.push(("padded-last", padded.clone()));

    // One for each RtcpError, as in rtcp's each_fault_has_its_own_error.
    let mut broken: Vec<(&str, Vec<u8>)> = vec![
        ("bad-too-short", good[..3].to_vec()),
        ("bad-trailing-bytes", [&good[..], &[0x80, 0xc9]].concat()),
        ("bad-sr-no-sender-info", vec![0x80, PT_SR, 0, 1, 0, 0, 0, 1]),
        ("bad-rr-no-ssrc", vec![0x80, PT_RR, 0, 0]),
        ("bad-cut", good[..good.len() - 4].to_vec()),
    ];
    let mut v1 = good.clone();
    v1[bye_at] = (v1[bye_at] & 0x3f) | 0x40;
    broken.push(("bad-version-last", v1));
    let mut long = good.clone();
    long[bye_at + 3] += 1;
    broken.push(("bad-length-overrun", long));
    let mut blocks = good.clone();
    blocks[0] = 0x80 | 2;
    broken.push(("bad-report-overrun", blocks));
    let mut chunks = good.clone();
    chunks[sdes_at] = 0x80 | 2;
    broken.push(("bad-sdes-chunks", chunks));
    let mut item = good.clone();
    item[sdes_at + 9] = 200;
    broken.push(("bad-sdes-item", item));
    let mut no_end = good.clone();
    no_end[sdes_at + 4 + 15] = b'!';
    broken.push(("bad-sdes-no-end", no_end));
    let mut sources = good.clone();
    sources[bye_at] = 0x80 | 5;
    broken.push(("bad-bye-sources", sources));
    let mut reason = good.clone();
    reason[bye_at + 12] = 8;
    broken.push(("bad-bye-reason", reason));
    let mut first_padded = padded.clone();
    first_padded[0] |= 0x20;
    broken.push(("bad-padding-not-last", first_padded));
    let mut zero_pad = padded.clone();
    *zero_pad.last_mut().unwrap() = 0;
    broken.push(("bad-padding-zero", zero_pad));
    let mut big_pad = padded;
    *big_pad.last_mut().unwrap() = 9;
    broken.push(("bad-padding-too-big", big_pad));
    v.extend(broken);
    v
}

/// One of every RTP packet shape, and a broken one for each ParseError.
fn rtp_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let header = Header {
        marker: true,
        payload_type: 0,
        seq: 65535,
        timestamp: u32::MAX - 80,
        ssrc: 0xdead_beef,
    };
    let payload = [0xffu8; 160];
    let ext8 = [0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0];
    let with = |extras: Extras<'_>, payload: &[u8]| rtp(&header, &extras, payload);
    let good = pcmu(1, 5, 160);
    let mut v = vec![
        ("pcmu", good.clone()),
        ("pcmu-marker-wrap", with(Extras::default(), &payload)),
        ("empty-payload", with(Extras::default(), &[])),
        ("dynamic-pt", {
            let h = Header {
                payload_type: 96,
                ..header
            };
            rtp(&h, &Extras::default(), b"opus")
        }),
        ("rfc5761-pt-72-marker", {
            // Payload type 72 with the marker bit reads as RTCP type 200.
            let h = Header {
                payload_type: 72,
                ..header
            };
            rtp(&h, &Extras::default(), &payload[..20])
        }),
        (
            "csrc-1",
            with(
                Extras {
                    csrcs: &[7],
                    ..Default::default()
                },
                &payload,
            ),
        ),
        (
            "csrc-15",
            with(
                Extras {
                    csrcs: &[0x0102_0304; 15],
                    ..Default::default()
                },
                &payload[..40],
            ),
        ),
        (
            "ext-empty",
            with(
                Extras {
                    extension: Some(Extension {
                        profile: 0,
                        data: &[],
                    }),
                    ..Default::default()
                },
                &payload,
            ),
        ),
        (
            "ext-one-byte",
            with(
                Extras {
                    extension: Some(Extension {
                        profile: 0xbede,
                        data: &ext8,
                    }),
                    ..Default::default()
                },
                &payload,
            ),
        ),
        (
            "ext-two-byte",
            with(
                Extras {
                    extension: Some(Extension {
                        profile: 0x1000,
                        data: &ext8,
                    }),
                    ..Default::default()
                },
                &payload,
            ),
        ),
        (
            "padding-1",
            with(
                Extras {
                    padding: 1,
                    ..Default::default()
                },
                &payload,
            ),
        ),
        (
            "padding-4",
            with(
                Extras {
                    padding: 4,
                    ..Default::default()
                },
                &payload[..156],
            ),
        ),
        (
            "padding-only",
            with(
                Extras {
                    padding: 8,
                    ..Default::default()
                },
                &[],
            ),
        ),
        (
            "everything",
            with(
                Extras {
                    csrcs: &[7, 8],
                    extension: Some(Extension {
                        profile: 0xbede,
                        data: &ext8,
                    }),
                    padding: 3,
                },
                b"abc",
            ),
        ),
    ];
    // One for each ParseError, as in rtp's each_fault_has_its_own_error.
    v.push(("bad-too-short", good[..11].to_vec()));
    let mut v1 = good.clone();
    v1[0] = 0x40;
    v.push(("bad-version", v1));
    let mut csrc = good[..16].to_vec();
    csrc[0] |= 2;
    v.push(("bad-csrc-overrun", csrc));
    let mut ext_hdr = good[..14].to_vec();
    ext_hdr[0] |= 0x10;
    v.push(("bad-ext-header-overrun", ext_hdr));
    let mut ext = good[..20].to_vec();
    ext[0] |= 0x10;
    ext[14..16].copy_from_slice(&2u16.to_be_bytes());
    v.push(("bad-ext-overrun", ext));
    let mut zero_pad = good.clone();
    zero_pad[0] |= 0x20;
    *zero_pad.last_mut().unwrap() = 0;
    v.push(("bad-zero-padding", zero_pad));
    let mut big_pad = good[..14].to_vec();
    big_pad[0] |= 0x20;
    big_pad[13] = 3;
    v.push(("bad-padding-overrun", big_pad));
    v
}

/// The rtcp target's input: flags, then records (steps in ms).
fn rtcp_input(flags: u8, trace: &Trace) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend(records(trace, rtcp_step));
    out
}

/// A call as the rtcp target sees it when we receive: the peer's PCMU
/// (lossy and jittered when `impair`) and the reports the peer's own
/// `Session` writes, SRs about what it sends and blocks about us.
fn receiving_call(n: u16, impair: bool, payload_len: usize) -> Trace {
    let mut peer = Session::new(&peer_config(), "peer@example.org", 0).unwrap();
    let mut rng = SplitMix64::new(u64::from(n));
    let mut out = [0u8; MAX_COMPOUND_LEN];
    let mut trace = Vec::new();
    for seq in 0..n {
        let sent = 20 * u64::from(seq);
        let p = pcmu(PEER_SSRC, seq, payload_len);
        peer.handle_sent_rtp(&Packet::parse(&p).unwrap(), sent * MS);
        // We send too, so the peer's reports carry a block about us.
        let ours = pcmu(OUR_SSRC, seq, payload_len);
        peer.handle_rtp(&Packet::parse(&ours).unwrap(), sent * MS);
        let lost = impair && rng.chance(0.05);
        let jitter = if impair { u64::from(rng.below(15)) } else { 0 };
        if !lost {
            trace.push((p, sent + jitter));
        }
        if let Some(len) = peer.poll_rtcp(sent * MS, &mut out) {
            trace.push((out[..len].to_vec(), sent + 3));
        }
    }
    let len = peer.bye(20 * u64::from(n) * MS, &mut out);
    trace.push((out[..len].to_vec(), 20 * u64::from(n) + 3));
    trace.sort_by_key(|(_, t)| *t);
    trace
}

/// A call as the rtcp target sees it when we send (and, when `duplex`,
/// receive): our PCMU, the peer's, and the peer's reports about ours,
/// built from the SRs a twin of the target's session writes, so their LSR
/// and DLSR give round-trip times. `jumps` are (packet, hours): the gap
/// before that packet is that many hours, as a suspended call's.
fn call(n: u16, duplex: bool, jumps: &[(u16, u64)]) -> Trace {
    let mut us = Session::new(&our_config(Some(8000)), CNAME, 0).unwrap();
    let mut peer = Session::new(&peer_config(), "peer@example.org", 0).unwrap();
    let mut out = [0u8; MAX_COMPOUND_LEN];
    let mut trace: Trace = Vec::new();
    // Our report due at `t` (ms), handed to the peer 2 ms later.
    let poll_us = |us: &mut Session, peer: &mut Session, t: u64| {
        let mut ours = [0u8; MAX_COMPOUND_LEN];
        if let Some(len) = us.poll_rtcp(t * MS, &mut ours) {
            peer.handle_rtcp(&ours[..len], (t + 2) * MS).unwrap();
        }
    };
    let mut now = 0;
    for seq in 0..n {
        if let Some((_, hours)) = jumps.iter().find(|(at, _)| *at == seq) {
            now = trace.last().map_or(0, |(_, t)| *t) + hours * HOUR_MS;
        }
        let p = pcmu(OUR_SSRC, seq, 20);
        let parsed = Packet::parse(&p).unwrap();
        us.handle_sent_rtp(&parsed, now * MS);
        peer.handle_rtp(&parsed, (now + 2) * MS);
        trace.push((p, now));
        poll_us(&mut us, &mut peer, now);
        if duplex {
            let p = pcmu(PEER_SSRC, seq.wrapping_add(4000), 20);
            let parsed = Packet::parse(&p).unwrap();
            peer.handle_sent_rtp(&parsed, (now + 8) * MS);
            us.handle_rtp(&parsed, (now + 10) * MS);
            trace.push((p, now + 10));
            poll_us(&mut us, &mut peer, now + 10);
        }
        // The peer's report arrives 2 ms after it is written, as a record
        // of its own; the target polls our session after it, as here.
        if let Some(len) = peer.poll_rtcp((now + 12) * MS, &mut out) {
            trace.push((out[..len].to_vec(), now + 14));
            us.handle_rtcp(&out[..len], (now + 14) * MS).unwrap();
            poll_us(&mut us, &mut peer, now + 14);
        }
        now += 20;
    }
    assert_ne!(us.stats().rtt_us, UNKNOWN, "the seed measures round trips");
    trace
}

/// RTP from other sources mixed into the peer's stream: probation, a
/// takeover by a new SSRC, a restart, and a BYE for the prober.
fn takeover_call() -> Trace {
    let mut t: Trace = in_order(PEER_SSRC, 100, 10, 20);
    let at = |i: u64| 200 + 20 * i;
    t.push((pcmu(0x3333, 7, 20), at(0)));
    t.push((
        compound(&[&|o| rtcp::write_rr(o, PEER_SSRC, &[]).unwrap(), &|o| {
            rtcp::write_bye(o, &[0x3333], b"").unwrap()
        }]),
        at(1),
    ));
    for i in 0..4u16 {
        t.push((pcmu(0x4444, 50 + i, 20), at(2 + u64::from(i))));
    }
    // A jump beyond the dropout, confirmed by the next packet: a restart.
    t.push((pcmu(0x4444, 9000, 20), at(6)));
    t.push((pcmu(0x4444, 9001, 20), at(7)));
    t.push((pcmu(0x4444, 9002, 20), at(8)));
    // A stray jump, then the stream goes on.
    t.push((pcmu(0x4444, 30000, 20), at(9)));
    t.push((pcmu(0x4444, 9003, 20), at(10)));
    t
}

/// Writes seed files, one target directory at a time.
struct Writer {
    dir: PathBuf,
    files: usize,
    bytes: usize,
}

impl Writer {
    fn target(&mut self, target: &str) -> io::Result<PathBuf> {
        let dir = self.dir.join(target);
        // The directory is the generator's: what it no longer writes goes.
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn put(&mut self, dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
        fs::write(dir.join(name), data)?;
        self.files += 1;
        self.bytes += data.len();
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: seeds DIR (writes DIR/rtp_parse, DIR/jbuf, DIR/rtcp)");
        std::process::exit(2);
    };
    let mut w = Writer {
        dir: PathBuf::from(dir),
        files: 0,
        bytes: 0,
    };

    // Each broken seed must break only where its name says.
    for (name, data) in rtp_datagrams() {
        assert_eq!(
            Packet::parse(&data).is_err(),
            name.starts_with("bad-"),
            "{name}"
        );
    }
    for (name, data) in rtcp_datagrams() {
        assert_eq!(
            Compound::parse(&data).is_err(),
            name.starts_with("bad-"),
            "{name}"
        );
    }

    let d = w.target("rtp_parse")?;
    for (name, data) in rtp_datagrams() {
        w.put(&d, name, &data)?;
    }
    for (name, data) in rtcp_datagrams().into_iter().take(6) {
        w.put(&d, &format!("rtcp-{name}"), &data)?;
    }

    let d = w.target("jbuf")?;
    // Capacity 20 (the element's default), no latency, small payloads keep
    // inputs short; two traces carry real 160-byte PCMU payloads.
    let stream = |n, len| in_order(1, 65500, n, len);
    w.put(&d, "in-order-pcmu", &jbuf_input(20, 0, &stream(40, 160)))?;
    w.put(&d, "in-order-wrap", &jbuf_input(20, 0, &stream(80, 4)))?;
    w.put(
        &d,
        "lossy",
        &jbuf_input(20, 0, &lose(stream(120, 4), 1, 0.1)),
    )?;
    w.put(
        &d,
        "reordered-within-capacity",
        &jbuf_input(8, 0, &reorder(stream(120, 4), 2, 0.2, 7)),
    )?;
    w.put(
        &d,
        "reordered-beyond-capacity-latency",
        &jbuf_input(4, 60, &reorder(stream(120, 4), 3, 0.2, 12)),
    )?;
    w.put(
        &d,
        "lossy-reordered-pcmu",
        &jbuf_input(20, 0, &reorder(lose(stream(45, 160), 4, 0.05), 5, 0.1, 5)),
    )?;
    w.put(
        &d,
        "release-events",
        &jbuf_input_with_events(20, 0, &reorder(stream(100, 4), 6, 0.2, 5), 255, 17),
    )?;
    w.put(
        &d,
        "discard-events",
        &jbuf_input_with_events(8, 0, &reorder(stream(100, 4), 7, 0.2, 5), 254, 23),
    )?;
    w.put(
        &d,
        "expiry-events",
        &jbuf_input_with_events(20, 60, &lose(stream(100, 4), 8, 0.1), 253, 5),
    )?;
    for seed in 0..4 {
        w.put(
            &d,
            &format!("model-trace-{seed}"),
            &jbuf_input(8, 30 * seed as u8, &model_trace(seed, 8, 200, 4)),
        )?;
    }
    w.put(
        &d,
        "element-trace",
        &jbuf_input(8, 0, &element_trace(7, 300, 4)),
    )?;
    let mut restart = in_order(1, 10, 3, 4);
    for (seq, ssrc) in [
        (5000, 1),
        (12, 1),
        (9000, 1),
        (9002, 1),
        (9001, 1),
        (700, 2),
    ] {
        restart.push((pcmu(ssrc, seq, 4), 0));
    }
    w.put(&d, "restart-and-ssrc-change", &jbuf_input(4, 0, &restart))?;
    // A 2048-slot ring with the widest limits: the same trace, no voids
    // declared by a full ring.
    let mut wide = jbuf_input(250, 0, &model_trace(9, 8, 200, 4));
    wide[2..5].copy_from_slice(&[255, 255, 48]);
    w.put(&d, "model-trace-big-ring-wide-limits", &wide)?;
    let mut odd: Trace = Vec::new();
    for (i, (_, data)) in rtp_datagrams().into_iter().enumerate() {
        odd.push((data, 20 * i as u64));
    }
    w.put(&d, "every-packet-shape", &jbuf_input(2, 0, &odd))?;

    let d = w.target("rtcp")?;
    w.put(
        &d,
        "receiving-call",
        &rtcp_input(1, &receiving_call(30, false, 160)),
    )?;
    w.put(
        &d,
        "receiving-call-lossy-jitter",
        &rtcp_input(1, &receiving_call(60, true, 20)),
    )?;
    w.put(
        &d,
        "receiving-call-randomized-interval",
        &rtcp_input(5, &receiving_call(30, false, 20)),
    )?;
    // Empty records change the clock rate: to 48000, to unknown, to 8000.
    let mut changes = receiving_call(30, false, 20);
    for at in [30, 20, 8] {
        let t = changes[at].1;
        changes.insert(at, (Vec::new(), t));
    }
    w.put(&d, "receiving-call-clock-changes", &rtcp_input(1, &changes))?;
    w.put(
        &d,
        "receiving-call-no-clock-rate",
        &rtcp_input(0, &receiving_call(30, false, 20)),
    )?;
    w.put(&d, "sending-call", &rtcp_input(3, &call(40, false, &[])))?;
    w.put(&d, "full-duplex-call", &rtcp_input(9, &call(40, true, &[])))?;
    w.put(
        &d,
        "full-duplex-call-randomized-interval",
        &rtcp_input(13, &call(30, true, &[])),
    )?;
    w.put(
        &d,
        "full-duplex-call-hours-apart",
        &rtcp_input(9, &call(30, true, &[(10, 16), (11, 3), (20, 16)])),
    )?;
    w.put(&d, "takeover-and-restart", &rtcp_input(1, &takeover_call()))?;
    w.put(
        &d,
        "receiving-call-rtcp-off",
        &rtcp_input(1 | 16, &receiving_call(30, true, 20)),
    )?;
    // One-byte records set the interval: fixed 50 ms, randomized 1 s, and
    // the refused 0.
    let mut intervals = call(30, true, &[]);
    for (at, b) in [(40, 0x80 | 100), (25, 0), (10, 5)] {
        let t = intervals[at].1;
        intervals.insert(at, (vec![b], t));
    }
    w.put(
        &d,
        "full-duplex-call-interval-changes",
        &rtcp_input(9, &intervals),
    )?;
    for (name, data) in rtcp_datagrams() {
        w.put(&d, &format!("one-{name}"), &rtcp_input(1, &vec![(data, 0)]))?;
    }
    let all: Trace = rtcp_datagrams()
        .into_iter()
        .enumerate()
        .map(|(i, (_, data))| (data, 10 * i as u64))
        .collect();
    w.put(&d, "every-compound-shape", &rtcp_input(1, &all))?;

    println!(
        "seeds: {} files, {} bytes in {}",
        w.files,
        w.bytes,
        w.dir.display()
    );
    Ok(())
}
