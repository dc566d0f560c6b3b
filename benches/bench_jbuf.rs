//! Jitter buffer: the core on 2,000,000 pre-built 172-byte PCMU datagrams
//! (in order, and with 1% loss / 5% reordering within 4 / 1% duplicates,
//! capacity 20), then the element's own cost per packet against stock
//! `rtpjitterbuffer mode=none`, each measured as
//! `appsrc (buffer lists) ! X ! appsink` minus the same pipeline without X.

mod common;

use gst::prelude::*;
use gstrtpsynth::jbuf::{Config, JitterBuffer, Output};
use gstrtpsynth::prng::SplitMix64;
use gstrtpsynth::rtp::{Extras, Header, write_packet};

const LEN: usize = 172;
const CAPS: &str = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0";
/// The C library's figures on this machine, from the issue (packets/s).
const LIBRTPSYNTH_IN_ORDER: f64 = 37.7e6;
const LIBRTPSYNTH_MIXED: f64 = 32.5e6;

fn datagram(seq: u16, out: &mut [u8]) {
    let h = Header {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: u32::from(seq).wrapping_mul(160),
        ssrc: 0x5eed,
    };
    write_packet(out, &h, &Extras::default(), &[0xff; 160]).expect("172 bytes fit");
}

/// Arrival order of packet numbers: all of them, or impaired.
fn order(n: usize, mixed: bool) -> Vec<usize> {
    if !mixed {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(1);
    let mut v = Vec::with_capacity(n + n / 50);
    for i in 0..n {
        if rng.chance(0.01) {
            continue;
        }
        v.push(i);
        if rng.chance(0.01) {
            v.push(i);
        }
    }
    for i in 0..v.len().saturating_sub(4) {
        if rng.chance(0.05) {
            let j = i + 1 + rng.below(3) as usize;
            v.swap(i, j);
        }
    }
    v
}

fn bench_core(n: usize, mixed: bool) -> f64 {
    // One flat buffer in arrival order, like a receive ring, rather than
    // scattered heap blocks.
    let arrivals = order(n, mixed);
    let mut data = vec![0u8; arrivals.len() * LEN];
    for (slot, &i) in data.chunks_exact_mut(LEN).zip(&arrivals) {
        datagram(i as u16, slot);
    }
    let cfg = Config {
        capacity: 20,
        ..Config::default()
    };
    common::median(common::runs(), || {
        let mut jb = JitterBuffer::new(cfg);
        let mut out = 0u64;
        let mut sink = |o: Output<u32>| {
            if let Output::Packet { item, .. } = o {
                out = out.wrapping_add(u64::from(item));
            }
        };
        let r = common::rate(arrivals.len() as u64, || {
            for (i, d) in data.chunks_exact(LEN).enumerate() {
                jb.push(d, i as u64, i as u32, &mut sink);
            }
            jb.flush(&mut sink);
        });
        common::keep(out);
        r
    })
}

/// Fresh lists of `per_list` packets (in order, or impaired as in
/// [`order`]) with PTS and DTS, built before the clock starts.
fn lists(n: usize, per_list: usize, mixed: bool) -> Vec<gst::BufferList> {
    let arrivals = order(n, mixed);
    let mut bytes = [0u8; LEN];
    arrivals
        .chunks(per_list)
        .map(|chunk| {
            let mut list = gst::BufferList::new_sized(per_list);
            let l = list.get_mut().expect("new list");
            for &i in chunk {
                datagram(i as u16, &mut bytes);
                let mut b = gst::Buffer::from_slice(bytes);
                let t = gst::ClockTime::from_mseconds(20 * i as u64);
                let bm = b.get_mut().expect("new buffer");
                bm.set_pts(t);
                bm.set_dts(t);
                l.add(b);
            }
            list
        })
        .collect()
}

/// (wall, CPU) seconds `appsrc ! middle ! appsink` takes to move `n`
/// packets, without a clock, lists in and (where elements keep them) lists
/// out.
fn pipeline_seconds(middle: &str, n: usize, mixed: bool) -> (f64, f64) {
    let caps: gst::Caps = CAPS.parse().expect("valid caps");
    common::appsrc_seconds(
        &format!("{middle} appsink name=sink sync=false buffer-list=true"),
        &caps,
        lists(n, 100, mixed),
        |pipeline| {
            let sink = pipeline
                .by_name("sink")
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .expect("appsink");
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(|s| {
                        s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        },
    )
}

fn main() {
    gst::init().expect("GStreamer initializes");
    gstrtpsynth::plugin_register_static().expect("plugin registers");

    let n = common::scale(2_000_000) as usize;
    let in_order = bench_core(n, false);
    common::report(
        &format!("jbuf core, {n} x 172 B in order, capacity 20"),
        in_order,
        "pkt/s",
        Some(("librtpsynth (issue figure)", LIBRTPSYNTH_IN_ORDER)),
        true,
    );
    let mixed = bench_core(n, true);
    common::report(
        "jbuf core, 1% loss / 5% reorder<=4 / 1% dup",
        mixed,
        "pkt/s",
        Some(("librtpsynth (issue figure)", LIBRTPSYNTH_MIXED)),
        true,
    );
    // The three pipelines take turns within each run, so machine load hits
    // them alike; each element's own cost is its pipeline minus the floor.
    let m = common::scale(200_000) as usize;
    let per_packet = |secs: f64| secs / m as f64 * 1e9;
    let (mut ours, mut stock, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut mixed = Vec::new();
    for _ in 0..common::runs() {
        let f = pipeline_seconds("", m, false);
        let o = pipeline_seconds("rtpjbufdec !", m, false);
        let s = pipeline_seconds("rtpjitterbuffer mode=none !", m, false);
        floor.push(f);
        ours.push((per_packet(o.0 - f.0), per_packet(o.1 - f.1)));
        stock.push((per_packet(s.0 - f.0), per_packet(s.1 - f.1)));
        // Impaired input: lists get split around packet-lost events and
        // reordered packets wait in the ring (ours only; the comparison with
        // stock is the in-order case).
        let fm = pipeline_seconds("", m, true);
        let om = pipeline_seconds("rtpjbufdec !", m, true);
        mixed.push((per_packet(om.0 - fm.0), per_packet(om.1 - fm.1)));
    }
    let med = |v: &[(f64, f64)], cpu: bool| {
        common::middle(v.iter().map(|p| if cpu { p.1 } else { p.0 }).collect())
    };
    for (cpu, what) in [(true, "CPU"), (false, "wall")] {
        common::report(
            &format!("pipeline floor appsrc ! appsink, {what}/packet"),
            per_packet(med(&floor, cpu)),
            "ns",
            None,
            false,
        );
        common::report(
            &format!("rtpjbufdec own {what} cost/packet (lists, in order)"),
            med(&ours, cpu),
            "ns",
            Some(("rtpjitterbuffer mode=none", med(&stock, cpu))),
            false,
        );
    }
    common::report(
        "rtpjbufdec own CPU cost/packet (lists, 1%/5%/1% mixed)",
        med(&mixed, true),
        "ns",
        None,
        false,
    );
}
