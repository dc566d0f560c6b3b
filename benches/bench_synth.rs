//! rtpsynthsrc: the element against the stock chain that makes the same
//! PCMU packets, measured side by side (the core alone is in rtpsynth-core's
//! `bench_cores`).

mod common;

use gst::prelude::*;

/// Packets per second of a pipeline that makes `packets` packets and ends.
fn pipeline_rate(desc: &str, packets: u64) -> f64 {
    let p = gst::parse::launch(desc).expect("pipeline parses");
    let rate = common::rate(packets, || common::play_to_eos(&p, desc));
    p.set_state(gst::State::Null).expect("stops");
    rate
}

fn main() {
    gst::init().expect("gst init");
    gstrtpsynth::plugin_register_static().expect("plugin registers");
    let runs = common::runs();

    let n = common::scale(1_000_000);
    let stock_n = common::scale(200_000);
    let ours = |ppb: u32| {
        let lists = n / u64::from(ppb);
        let desc = format!(
            "rtpsynthsrc is-live=false packets-per-buffer={ppb} num-buffers={lists} ! fakesink sync=false enable-last-sample=false"
        );
        common::median(runs, || pipeline_rate(&desc, lists * u64::from(ppb)))
    };
    let stock_desc = format!(
        "audiotestsrc wave=silence samplesperbuffer=160 num-buffers={stock_n} ! audio/x-raw,rate=8000,channels=1 \
         ! mulawenc ! rtppcmupay min-ptime=20000000 max-ptime=20000000 ! fakesink sync=false enable-last-sample=false"
    );
    let stock = common::median(runs, || pipeline_rate(&stock_desc, stock_n));
    let floor_desc = format!(
        "fakesrc num-buffers={stock_n} sizetype=fixed sizemax=172 ! fakesink sync=false enable-last-sample=false"
    );
    let floor = common::median(runs, || pipeline_rate(&floor_desc, stock_n));
    for ppb in [1u32, 8, 32, 128] {
        common::report(
            &format!("rtpsynthsrc ! fakesink, packets-per-buffer={ppb}"),
            ours(ppb),
            "pkt/s",
            Some(("audiotestsrc!mulawenc!rtppcmupay", stock)),
            true,
        );
    }
    common::report(
        "fakesrc ! fakesink (GStreamer per-buffer floor)",
        floor,
        "buf/s",
        None,
        true,
    );
}
