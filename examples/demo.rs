//! `make demo`: rtpsynthsrc streams PCMU over loopback UDP into a stock
//! receiver (udpsrc ! rtpjitterbuffer ! rtppcmudepay ! mulawdec); once a
//! second both sides' figures are printed. Halfway through, the source goes
//! silent for a second (a VAD gap) and resumes with a marked, resynced packet.
//!
//! cargo run --release --example demo -- [--seconds N]

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "-h" | "--help" => {
                println!("usage: demo [--seconds N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    gst::init()?;
    gstrtpsynth::plugin_register_static()?;

    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let rx = gst::parse::launch(&format!(
        "udpsrc name=udp address=127.0.0.1 port={port} \
           caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0\" \
         ! rtpjitterbuffer name=jb latency=60 ! rtppcmudepay ! mulawdec ! fakesink name=out sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let tx = gst::parse::launch(&format!(
        "rtpsynthsrc name=src ptime=20 ! udpsink host=127.0.0.1 port={port}"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;

    let received = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let by_name = |p: &gst::Pipeline, n: &str| p.by_name(n).ok_or(format!("no element {n}"));
    let r = received.clone();
    by_name(&rx, "udp")?
        .static_pad("src")
        .ok_or("udpsrc has no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let s = samples.clone();
    by_name(&rx, "out")?
        .static_pad("sink")
        .ok_or("fakesink has no sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                s.fetch_add(b.size() as u64 / 2, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    let src = by_name(&tx, "src")?;
    let jb = by_name(&rx, "jb")?;

    rx.set_state(gst::State::Playing)?;
    tx.set_state(gst::State::Playing)?;
    println!(
        "rtpsynthsrc -> udp 127.0.0.1:{port} -> udpsrc ! rtpjitterbuffer ! rtppcmudepay ! mulawdec, {seconds} s"
    );
    println!(
        "{:>4} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}",
        "t/s", "sent", "recv", "lost", "samples", "resyncs", "silent"
    );
    let start = Instant::now();
    let silent_from = seconds / 2;
    for t in 1..=seconds {
        if t == silent_from {
            src.set_property("silent", true);
        } else if t == silent_from + 1 {
            src.set_property("silent", false);
        }
        std::thread::sleep(
            (start + Duration::from_secs(t)).saturating_duration_since(Instant::now()),
        );
        let st = src.property::<gst::Structure>("stats");
        let jst = jb.property::<gst::Structure>("stats");
        println!(
            "{t:>4} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}",
            st.get::<u64>("packets-sent")?,
            received.load(Ordering::Relaxed),
            jst.get::<u64>("num-lost")?,
            samples.load(Ordering::Relaxed),
            st.get::<u64>("resyncs")?,
            st.get::<u64>("silent-packets")?,
        );
    }
    tx.set_state(gst::State::Null)?;
    std::thread::sleep(Duration::from_millis(200));
    rx.set_state(gst::State::Null)?;

    let st = src.property::<gst::Structure>("stats");
    let sent = st.get::<u64>("packets-sent")?;
    let got = received.load(Ordering::Relaxed);
    println!("\nfinal stats: {st}");
    println!(
        "sent {sent} packets, received {got}, decoded {} samples",
        samples.load(Ordering::Relaxed)
    );
    if got != sent {
        return Err(format!("{} packets lost on loopback", sent.saturating_sub(got)).into());
    }
    Ok(())
}
