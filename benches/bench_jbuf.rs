//! `rtpjbufdec`: the element's own cost per packet against stock
//! `rtpjitterbuffer mode=none`, each measured as
//! `appsrc (buffer lists) ! X ! appsink` minus the same pipeline without X,
//! on 172-byte PCMU datagrams in order and with 1% loss / 5% reordering
//! within 4 / 1% duplicates. The core alone is in rtpsynth-core's
//! `bench_cores`.

mod common;

use gst::prelude::*;

const CAPS: &str = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0";

/// Fresh lists of `per_list` packets (in order, or impaired as in
/// [`common::order`]) with PTS and DTS, built before the clock starts.
fn lists(n: usize, per_list: usize, mixed: bool) -> Vec<gst::BufferList> {
    let arrivals = common::order(n, mixed);
    let mut bytes = [0u8; common::DATAGRAM_LEN];
    arrivals
        .chunks(per_list)
        .map(|chunk| {
            let mut list = gst::BufferList::new_sized(per_list);
            let l = list.get_mut().expect("new list");
            for &i in chunk {
                common::datagram(i as u16, &mut bytes);
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
