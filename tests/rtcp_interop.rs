//! rtpmuxserver's RTCP against other implementations, over loopback: stock
//! `rtpbin` (RTCP on port + 1 through `udpsink`/`udpsrc`) and Wireshark's
//! dissector (`tshark`, installed by scripts/setup.sh).

mod common;

use common::{by_name, pipeline};
mod udp_relay;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_net::gio;
use rtpsynth_core::rtp::{Extras, Header, write_packet};
use rtpsynth_core::session::UNKNOWN;
use udp_relay::{Relay, Route, bind_pair, loopback, write_pcap};

const GST_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);

fn play(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    let (res, _, _) = p.state(GST_TIMEOUT);
    res.unwrap();
}

fn channel_stats(m: &gst::Element, index: u32) -> gst::Structure {
    m.property::<gst::Structure>("stats")
        .get::<gst::Structure>(format!("channel-{index}").as_str())
        .unwrap()
}

fn field(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("{name}: {e} in {s}"))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The source-stats structures of `rtpbin`'s session 0.
fn rtpbin_sources(rtpbin: &gst::Element) -> Vec<gst::Structure> {
    let session = rtpbin.emit_by_name::<gst::Element>("get-session", &[&0u32]);
    let stats = session.property::<gst::Structure>("stats");
    let sources = stats.get::<glib::ValueArray>("source-stats").unwrap();
    sources
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .collect()
}

/// `rtpbin` sends 20 ms PCMU (SSRC 0x1234, sequence numbers from 0)
/// through a relay that drops three packets to one of our channels in
/// `rtcp=port+1`; its RTCP comes straight to our port + 1 and ours goes
/// to its `udpsrc`. Each side must read the other's reports.
#[test]
fn rtpbin_and_our_channel_read_each_others_reports() {
    common::init();
    let ours = pipeline(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 src_0::rtcp=port+1 \
           src_0::rtcp-interval=250 \
           src_0::rtp-caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0\" \
         m.src_0 ! fakesink sync=false async=false",
    );
    let m: gst::Element = by_name(&ours, "m");
    play(&ours);
    let port: u32 = m.static_pad("src_0").unwrap().property("local-port");
    let port = port as u16;
    assert_eq!(port % 2, 0, "RTP on an even port, RTCP on the next");

    let dropped: Vec<u16> = vec![5, 17, 29];
    let relay = Relay::start(
        vec![
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        ],
        vec![Route {
            input: 0,
            output: 1,
            target: loopback(port),
            rtcp_delay: Duration::ZERO,
            drop_seqs: dropped.clone(),
        }],
    );
    // rtpbin's RTCP receiver: a socket of our own, so its port is known.
    let rtcp_in = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtcp_in_port = rtcp_in.local_addr().unwrap().port();
    let theirs = pipeline(&format!(
        "rtpbin name=r \
         audiotestsrc is-live=true samplesperbuffer=160 ! mulawenc ! \
           rtppcmupay ssrc=4660 seqnum-offset=0 ! r.send_rtp_sink_0 \
         r.send_rtp_src_0 ! udpsink host=127.0.0.1 port={} sync=false async=false \
         r.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={} sync=false async=false \
         udpsrc name=rtcp_in caps=application/x-rtcp ! r.recv_rtcp_sink_0",
        relay.addr(0).port(),
        port + 1
    ));
    let gsocket = gio::Socket::from_fd(rtcp_in.into()).unwrap();
    let udpsrc: gst::Element = by_name(&theirs, "rtcp_in");
    udpsrc.set_property("socket", &gsocket);
    udpsrc.set_property("close-socket", true);
    let rtpbin: gst::Element = by_name(&theirs, "r");
    rtpbin.set_property(
        "sdes",
        gst::Structure::builder("application/x-rtp-source-sdes")
            .field("cname", "interop@test")
            .build(),
    );
    let session = rtpbin.emit_by_name::<gst::Element>("get-session", &[&0u32]);
    session.set_property("rtcp-min-interval", 500_000_000u64);
    let byes = Arc::new(Mutex::new(Vec::<u32>::new()));
    {
        let byes = byes.clone();
        rtpbin.connect("on-bye-ssrc", false, move |args| {
            if let Ok(ssrc) = args[2].get::<u32>() {
                byes.lock().unwrap().push(ssrc);
            }
            None
        });
    }
    // Our reports go to the remote port + 1: rtpbin's RTCP receiver.
    let pad = m.static_pad("src_0").unwrap();
    pad.set_property("remote-address", "127.0.0.1");
    pad.set_property("remote-port", u32::from(rtcp_in_port - 1));
    play(&theirs);

    let our_report_at_rtpbin = || {
        rtpbin_sources(&rtpbin).into_iter().find(|s| {
            s.get::<bool>("internal") == Ok(false)
                && s.get::<bool>("have-rb") == Ok(true)
                && s.get::<u32>("rb-ssrc") == Ok(4660)
        })
    };
    wait_until(
        "each side's reports with the loss at the other",
        Duration::from_secs(15),
        || {
            let c = channel_stats(&m, 0);
            let theirs_ok = our_report_at_rtpbin()
                .is_some_and(|s| s.get::<i32>("rb-packetslost") == Ok(dropped.len() as i32));
            theirs_ok
                && field(&c, "sr-received") > 0
                && c.get::<i64>("packets-lost") == Ok(dropped.len() as i64)
        },
    );
    assert_eq!(relay.dropped(), dropped.len() as u64);
    let c = channel_stats(&m, 0);
    assert_eq!(field(&c, "remote-ssrc"), 4660, "{c}");
    assert_eq!(c.get::<String>("remote-cname").unwrap(), "interop@test");
    assert!(field(&c, "rr-received") == 0, "rtpbin sends SRs: {c}");
    assert_ne!(
        field(&c, "jitter-us"),
        UNKNOWN,
        "the clock rate from rtp-caps"
    );
    assert!(field(&c, "jitter-us") < 20_000, "{c}");
    assert_eq!(
        field(&c, "rtcp-dropped"),
        0,
        "rtpbin's RTCP is all valid: {c}"
    );
    let report = our_report_at_rtpbin().unwrap();
    assert_eq!(
        u64::from(report.get::<u32>("ssrc").unwrap()),
        field(&c, "local-ssrc"),
        "rtpbin knows us by our SSRC: {report}"
    );
    assert_ne!(
        report.get::<u32>("rb-lsr").unwrap(),
        0,
        "our block echoes its last SR: {report}"
    );
    assert!(report.get::<u32>("rb-exthighestseq").unwrap() > 29);
    let our_ssrc = field(&c, "local-ssrc") as u32;

    // Stopping says BYE, which rtpbin takes.
    ours.set_state(gst::State::Null).unwrap();
    wait_until("rtpbin's on-bye-ssrc", Duration::from_secs(5), || {
        byes.lock().unwrap().contains(&our_ssrc)
    });
    theirs.set_state(gst::State::Null).unwrap();
}

/// A 20 ms PCMU packet.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut out = vec![0; 172];
    let header = Header {
        payload_type: 0,
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
        ..Default::default()
    };
    let n = write_packet(&mut out, &header, &Extras::default(), &[0xff; 160]).unwrap();
    out.truncate(n);
    out
}

/// `tshark` capturing UDP port `port` on loopback into `file` for
/// `seconds`, once it says it is capturing; None when it cannot capture
/// here (not allowed to, for one).
fn start_capture(port: u16, seconds: u32, file: &Path) -> Option<Child> {
    let mut child = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("udp port {port}")])
        .args(["-a", &format!("duration:{seconds}"), "-q", "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark runs (scripts/setup.sh installs it)");
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
    }
    if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// tshark's full decode of `file`, with UDP port `port` taken as RTCP.
fn decode(file: &Path, port: u16) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={port},rtcp"), "-V"])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What tshark made of our RTCP: every frame decoded, nothing malformed,
/// each packet type we write present, our CNAME in the SDES.
fn assert_decoded(text: &str, frames: usize, cname: &str) {
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("Expert Info (Error"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Frame ")).count(),
        frames,
        "{text}"
    );
    for what in [
        "Packet type: Sender Report (200)",
        "Packet type: Receiver Report (201)",
        "Packet type: Source description (202)",
        "Packet type: Goodbye (203)",
    ] {
        assert!(text.contains(what), "no {what} in\n{text}");
    }
    assert!(text.contains(cname), "no CNAME {cname} in\n{text}");
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rtpsynth-{}-{name}", std::process::id()))
}

/// One channel in `rtcp=port+1` sends RTP for half a second and receives
/// RTP all along (so SRs, then RRs, with report blocks), then is released
/// (BYE). Its RTCP goes to a socket of the test, on loopback, which tshark
/// captures; the datagrams the socket received are also written to a pcap
/// file of our own, so tshark decodes them even where it cannot capture.
#[test]
fn tshark_decodes_our_compound_rtcp() {
    common::init();
    let p = pipeline(
        "appsrc name=in is-live=true format=time caps=application/x-rtp ! m.sink_0 \
         rtpmuxserver name=m sink_0::bind-address=127.0.0.1 sink_0::rtcp=port+1 \
           sink_0::rtcp-interval=100 sink_0::clock-rate=8000 \
         m.src_0 ! fakesink sync=false async=false",
    );
    let m: gst::Element = by_name(&p, "m");
    let (peer_rtp, peer_rtcp) = bind_pair();
    let rtcp_port = peer_rtcp.local_addr().unwrap().port();
    let capture = temp_file("capture.pcapng");
    let capturing = start_capture(rtcp_port, 4, &capture);
    let sink_0 = m.static_pad("sink_0").unwrap();
    sink_0.set_property("remote-address", "127.0.0.1");
    sink_0.set_property(
        "remote-port",
        u32::from(peer_rtp.local_addr().unwrap().port()),
    );
    play(&p);
    let port: u32 = sink_0.property("local-port");
    let (ours, ours_rtcp) = (loopback(port as u16), loopback(port as u16 + 1));
    let input: gst_app::AppSrc = by_name(&p, "in");
    for seq in 0..40u16 {
        if seq < 25 {
            input
                .push_buffer(gst::Buffer::from_slice(rtp(seq, 0xabcd)))
                .unwrap();
        }
        peer_rtp.send_to(&rtp(seq, 0x5eed), ours).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two reports after our last packet, reports are RRs.
    std::thread::sleep(Duration::from_millis(300));
    m.release_request_pad(&sink_0);
    m.release_request_pad(&m.static_pad("src_0").unwrap());

    peer_rtcp
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut received: Vec<(Vec<u8>, SocketAddr, SocketAddr)> = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = peer_rtcp.recv_from(&mut buf) {
        assert_eq!(from, ours_rtcp, "RTCP comes from port + 1");
        received.push((buf[..n].to_vec(), from, peer_rtcp.local_addr().unwrap()));
    }
    assert!(received.len() >= 8, "{} compounds", received.len());
    let cname = m.property::<String>("cname");

    let own = temp_file("received.pcap");
    write_pcap(&own, &received);
    assert_decoded(&decode(&own, rtcp_port), received.len(), &cname);
    let _ = std::fs::remove_file(&own);

    match capturing {
        Some(mut tshark) => {
            let status = tshark.wait().unwrap();
            assert!(status.success(), "tshark capture: {status}");
            assert_decoded(&decode(&capture, rtcp_port), received.len(), &cname);
            let _ = std::fs::remove_file(&capture);
        }
        None => eprintln!("tshark cannot capture on lo here: decoded our own pcap only"),
    }
    p.set_state(gst::State::Null).unwrap();
}
