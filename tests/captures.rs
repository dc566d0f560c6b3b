//! Traffic from tools we did not write: SIPp's real RTP captures (G.711
//! A-law speech and RFC 4733 DTMF events, from Debian's `sip-tester`)
//! replayed with their original timing into an `rtpmuxserver` channel and
//! through `rtpjbufdec` and the stock depayloaders and decoders; `ffmpeg`
//! receiving what our elements send, and sending to a channel; `tshark`'s
//! RTP stream analysis of a live `rtpsynthsrc` stream sent through
//! `rtpmuxserver`. Every datagram is accounted for.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pcap::{self, Datagram};
use common::{Pipe, pipeline};
use gst::prelude::*;
use rtpsynth_core::jbuf::Counters;

const SIPP: &str = "/usr/share/sip-tester";

fn capture(name: &str) -> Vec<Datagram> {
    let path = format!("{SIPP}/{name}");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (scripts/setup.sh installs sip-tester)"));
    pcap::read(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `rtpmuxserver name=m` with one channel on 127.0.0.1 whose `src_0`, with
/// `rtp_caps`, feeds `chain` into `appsink name=out`; PLAYING, with the
/// channel's port.
fn receiving_channel(rtp_caps: &str, chain: &str) -> (Pipe, u16) {
    common::init();
    let desc = format!(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 src_0::rtp-caps=\"{rtp_caps}\" \
         m.src_0 ! rtpjbufdec name=jb ! {chain} ! appsink name=out sync=false"
    );
    let p = pipeline(&desc);
    p.set_state(gst::State::Playing).expect("plays");
    let m = p.by_name("m").expect("rtpmuxserver");
    let port = m
        .static_pad("src_0")
        .expect("src_0")
        .property::<u32>("local-port") as u16;
    assert_ne!(port, 0, "the channel has a socket");
    (p, port)
}

/// Sends `datagrams` to 127.0.0.1:`port` at their capture times.
fn replay(datagrams: &[Datagram], port: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a sending socket");
    let start = Instant::now();
    for d in datagrams {
        if let Some(wait) = d.at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        socket
            .send_to(&d.payload, ("127.0.0.1", port))
            .expect("loopback send");
    }
}

fn u64_field(s: &gst::StructureRef, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("{name} in {s}: {e}"))
}

fn stats(p: &gst::Pipeline, element: &str) -> gst::Structure {
    p.by_name(element)
        .expect(element)
        .property::<gst::Structure>("stats")
}

/// Pulls from `out` until `bytes` have come or 5 s pass; all it got.
fn pull_bytes(p: &gst::Pipeline, bytes: usize) -> Vec<u8> {
    let out = p
        .by_name("out")
        .and_downcast::<gst_app::AppSink>()
        .expect("appsink out");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < bytes && Instant::now() < deadline {
        if let Some(s) = out.try_pull_sample(gst::ClockTime::from_mseconds(100))
            && let Some(b) = s.buffer()
        {
            got.extend_from_slice(&b.map_readable().expect("readable"));
        }
    }
    got
}

/// Waits (at most 3 s) until channel 0 of `m` has received `packets`
/// datagrams: the last of a capture may still be on its way when the audio
/// is complete.
fn wait_received(p: &gst::Pipeline, packets: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while u64_field(&stats(p, "m"), "packets-received") < packets && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// rtpjbufdec's books: everything received is pushed or dropped under a
/// reason, nothing held back once the stream is over.
fn assert_jbuf_accounts(jb: &gst::Structure) {
    let received = u64_field(jb, "received");
    let accounted: u64 = std::iter::once("pushed")
        .chain(Counters::dropped_or_held())
        .map(|f| u64_field(jb, f))
        .sum();
    assert_eq!(received, accounted, "{jb}");
}

/// SIPp's G.711 A-law speech capture (236 packets of 30 ms, 7.05 s): every
/// datagram reaches the channel, rtpjbufdec pushes every one, and the stock
/// depayloader and decoder give exactly the capture's duration of audio.
#[test]
fn sipp_alaw_speech_capture_decodes_in_full() {
    let datagrams = capture("g711a.pcap");
    assert_eq!(datagrams.len(), 236);
    let (p, port) = receiving_channel(
        "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMA,payload=8",
        "rtppcmadepay ! alawdec",
    );
    replay(&datagrams, port);
    // Each packet carries 240 samples (30 ms); the capture spans the first
    // packet's start to the last one's, so its audio is that plus 30 ms.
    let samples_per_packet = datagrams[0].payload.len() - 12;
    let span = datagrams.last().unwrap().at;
    let expected = datagrams.len() * samples_per_packet;
    let audio = pull_bytes(&p, 2 * expected);
    assert_eq!(audio.len() / 2, expected);
    wait_received(&p, 236);
    let duration = Duration::from_secs_f64(expected as f64 / 8000.0);
    let capture_duration = span + Duration::from_millis(30);
    assert!(
        duration.abs_diff(capture_duration) < Duration::from_millis(2),
        "decoded {duration:?}, capture {capture_duration:?}"
    );
    let m = stats(&p, "m");
    assert_eq!(u64_field(&m, "packets-received"), 236, "{m}");
    let jb = stats(&p, "jb");
    assert_eq!(
        (u64_field(&jb, "received"), u64_field(&jb, "pushed")),
        (236, 236),
        "{jb}"
    );
    assert_jbuf_accounts(&jb);
}

/// SIPp's RFC 4733 DTMF captures: each event is 10 datagrams, the last
/// three the same end packet sent three times (RFC 4733 2.5.1.4). The
/// repeats are counted as duplicates, and the stock `rtpdtmfdepay` plays
/// exactly the event's final duration.
#[test]
fn sipp_dtmf_captures_account_for_every_datagram() {
    for key in [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "pound", "star",
    ] {
        let datagrams = capture(&format!("dtmf_2833_{key}.pcap"));
        let last = &datagrams.last().expect("datagrams").payload;
        let duration = u16::from_be_bytes([last[14], last[15]]) as usize;
        assert!(last[13] & 0x80 != 0, "{key}: ends with the end bit");
        let (p, port) = receiving_channel(
            "application/x-rtp,media=audio,clock-rate=8000,encoding-name=TELEPHONE-EVENT,payload=101",
            "rtpdtmfdepay",
        );
        replay(&datagrams, port);
        let audio = pull_bytes(&p, 2 * duration);
        assert_eq!(audio.len() / 2, duration, "{key}: tone samples");
        wait_received(&p, datagrams.len() as u64);
        let m = stats(&p, "m");
        assert_eq!(
            u64_field(&m, "packets-received"),
            datagrams.len() as u64,
            "{key}: {m}"
        );
        let jb = stats(&p, "jb");
        let repeats = datagrams
            .windows(2)
            .filter(|w| w[0].payload[2..4] == w[1].payload[2..4])
            .count() as u64;
        assert_eq!(repeats, 2, "{key}");
        assert_eq!(
            (
                u64_field(&jb, "received"),
                u64_field(&jb, "pushed"),
                u64_field(&jb, "dropped-duplicate")
            ),
            (
                datagrams.len() as u64,
                datagrams.len() as u64 - repeats,
                repeats
            ),
            "{key}: {jb}"
        );
        assert_jbuf_accounts(&jb);
    }
}

/// A free UDP port on 127.0.0.1 whose successor is free too (RTP and RTCP,
/// for ffmpeg), found by binding both and letting them go.
fn free_even_port() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port() & !1;
        drop(a);
        if let (Ok(_), Ok(_)) = (
            UdpSocket::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port + 1)),
        ) {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// ffmpeg, given an SDP file, receives the PCMU our elements send
/// (`ulawenc ! rtppcmupay` into an `rtpmuxserver` channel) and decodes it
/// without an error, into exactly the samples we encoded.
#[test]
fn ffmpeg_decodes_what_rtpmuxserver_sends() {
    common::init();
    let port = free_even_port();
    let dir = std::env::temp_dir().join(format!("rtpsynth-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sdp = dir.join("stream.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=rtpsynth\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        ),
    )
    .expect("sdp written");
    let raw = dir.join("out.raw");
    // ffmpeg stops on its own after 1.5 s of audio (a watchdog below ends
    // it if nothing arrives).
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-protocol_whitelist", "file,udp,rtp"])
        .arg("-i")
        .arg(&sdp)
        .args(["-t", "1.5", "-f", "s16le", "-acodec", "pcm_s16le", "-y"])
        .arg(&raw)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    // Give ffmpeg time to bind its port before anything is sent.
    std::thread::sleep(Duration::from_millis(1500));
    let desc = format!(
        "audiotestsrc is-live=true samplesperbuffer=160 num-buffers=150 wave=sine freq=700 \
         ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! tee name=t \
         t. ! queue ! ulawenc ! rtppcmupay ! m.sink_0 \
         t. ! queue ! appsink name=sent sync=false \
         rtpmuxserver name=m sink_0::bind-address=127.0.0.1 sink_0::remote-address=127.0.0.1 \
         sink_0::remote-port={port}"
    );
    let p = pipeline(&desc);
    p.set_state(gst::State::Playing).expect("plays");
    let sent_sink = p
        .by_name("sent")
        .and_downcast::<gst_app::AppSink>()
        .expect("appsink");
    let mut sent = Vec::new();
    while let Some(s) = sent_sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        sent.extend_from_slice(&s.buffer().expect("buffer").map_readable().expect("map"));
        if sent.len() >= 150 * 320 {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while ffmpeg.try_wait().expect("ffmpeg status").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = ffmpeg.kill();
    let out = ffmpeg.wait_with_output().expect("ffmpeg ends");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let decoded = std::fs::read(&raw).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("error"),
        "ffmpeg reported: {stderr}"
    );
    assert_eq!(decoded.len(), 2 * 12_000, "1.5 s decoded");
    // ffmpeg's µ-law decoding is the standard one: its samples are ours,
    // encoded and decoded, from the first packet it caught on.
    let ours: Vec<u8> = sent
        .chunks_exact(2)
        .flat_map(|b| {
            let x = i16::from_le_bytes([b[0], b[1]]);
            let back = rtpsynth_core::g711::decode_sample(rtpsynth_core::g711::encode_sample(x));
            back.to_le_bytes()
        })
        .collect();
    let packets = ours.len().saturating_sub(decoded.len()) / 320 + 1;
    assert!(
        (0..packets).any(|k| ours[k * 320..].starts_with(&decoded)),
        "ffmpeg's samples are not a packet-aligned run of ours"
    );
}

/// `ffmpeg -re … -f rtp` sends PCMU to a channel: every datagram it sends is
/// received, pushed by rtpjbufdec and decoded, and the decoded samples are
/// exactly the payload bytes that arrived.
#[test]
fn ffmpeg_rtp_into_a_channel_is_accounted_for() {
    let (p, port) = receiving_channel(
        "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0",
        "rtppcmudepay ! ulawdec",
    );
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000:duration=2",
        ])
        .args(["-ac", "1", "-acodec", "pcm_mulaw", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}"))
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audio = pull_bytes(&p, 2 * 16_000);
    std::thread::sleep(Duration::from_millis(200));
    let m = stats(&p, "m");
    let packets = u64_field(&m, "packets-received");
    let octets = u64_field(&m, "octets-received");
    assert!(packets > 0, "{m}");
    // One byte per sample after each 12-byte header.
    assert_eq!(audio.len() as u64 / 2, octets - 12 * packets, "{m}");
    assert_eq!(audio.len() / 2, 16_000, "2 s of 8 kHz audio");
    let jb = stats(&p, "jb");
    assert_eq!(
        (u64_field(&jb, "received"), u64_field(&jb, "pushed")),
        (packets, packets),
        "{jb}"
    );
    assert_jbuf_accounts(&jb);
}

/// tshark's RTP stream analysis of a live `rtpsynthsrc` stream sent through
/// `rtpmuxserver`, captured as it arrived: no loss, no sequence error, and
/// packets paced at the 20 ms ptime.
#[test]
fn tshark_finds_a_clean_stream_through_rtpmuxserver() {
    common::init();
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let port = receiver.local_addr().expect("addr").port();
    let desc = format!(
        "rtpsynthsrc num-buffers=100 ! m.sink_0 rtpmuxserver name=m \
         sink_0::bind-address=127.0.0.1 sink_0::remote-address=127.0.0.1 \
         sink_0::remote-port={port}"
    );
    let p = pipeline(&desc);
    p.set_state(gst::State::Playing).expect("plays");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while got.len() < 100 {
        let Ok(n) = receiver.recv(&mut buf) else {
            break;
        };
        got.push(Datagram {
            at: start.elapsed(),
            src_port: 40000,
            dst_port: 5004,
            payload: buf[..n].to_vec(),
        });
    }
    assert_eq!(got.len(), 100, "every packet arrived");
    let path = std::env::temp_dir().join(format!("rtpsynth-live-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap::write(&got)).expect("pcap written");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-d", "udp.port==5004,rtp", "-q", "-z", "rtp,streams"])
        .output()
        .expect("tshark runs (scripts/setup.sh installs it)");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "tshark failed: {text}");
    // The one stream's row: ... SSRC Payload Pkts Lost (pct) MinDelta
    // MeanDelta MaxDelta MinJitter MeanJitter MaxJitter [Problems].
    let row = text
        .lines()
        .find(|l| l.contains("127.0.0.1") && l.contains("g711U"))
        .unwrap_or_else(|| panic!("no stream in {text}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    let payload = fields
        .iter()
        .position(|f| f.starts_with("g711U"))
        .expect("payload column");
    let packets: u64 = fields[payload + 1].parse().expect("packets");
    let lost: i64 = fields[payload + 2].parse().expect("lost");
    let mean_delta: f64 = fields[payload + 5].parse().expect("mean delta");
    let max_delta: f64 = fields[payload + 6].parse().expect("max delta");
    assert_eq!((packets, lost), (100, 0), "{row}");
    // Paced, not bunched: the mean is the ptime, and no packet came a
    // whole ptime late (a sender releasing packets in bursts would). One
    // packet a few ms late is the scheduler's, not ours: with two CPU hogs
    // on two cores, 1 run in 6 saw a gap of 29 ms, then 11.
    assert!(
        (mean_delta - 20.0).abs() < 1.0,
        "mean delta {mean_delta} ms: {row}"
    );
    assert!(max_delta < 40.0, "max delta {max_delta} ms: {row}");
    assert!(!row.contains("X"), "tshark flags a problem: {row}");
}
