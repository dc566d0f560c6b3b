//! Shared by the element benchmarks: the core crate's helpers (medians,
//! report lines, test traffic), plus pipelines timed to EOS.
#![allow(dead_code)]

pub mod floor;

#[path = "../../rtpsynth-core/benches/common/mod.rs"]
mod base;
pub use base::*;

use std::time::Instant;

use gst::prelude::*;

/// (wall, CPU) seconds `appsrc ! downstream` (a launch line ending in a
/// sink) takes to play `lists` to EOS without a clock. All lists are queued
/// in the appsrc, given `caps` and no size limit, while the sink holds the
/// preroll, so the clock then times the streaming thread alone, not its
/// hand-offs with the thread that feeds appsrc. `setup` configures the other
/// elements before the pipeline starts.
pub fn appsrc_seconds(
    downstream: &str,
    caps: &gst::Caps,
    lists: impl IntoIterator<Item = gst::BufferList>,
    setup: impl FnOnce(&gst::Pipeline),
) -> (f64, f64) {
    let pipeline = gst::parse::launch(&format!("appsrc name=src format=time ! {downstream}"))
        .expect("pipeline builds")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    pipeline.use_clock(None::<&gst::Clock>);
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .expect("appsrc");
    src.set_caps(Some(caps));
    src.set_max_bytes(0);
    setup(&pipeline);
    pipeline.set_state(gst::State::Paused).expect("pauses");
    for list in lists {
        src.push_buffer_list(list).expect("appsrc takes the list");
    }
    src.end_of_stream().expect("eos");
    let (prerolled, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    prerolled.expect("prerolls");
    let cpu = cpu_seconds();
    let wall = Instant::now();
    play_to_eos(pipeline.upcast_ref(), downstream);
    let secs = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    pipeline.set_state(gst::State::Null).expect("stops");
    secs
}

/// Sets `pipeline` PLAYING and returns at its EOS; panics, naming `what`, on
/// an error message or when no EOS comes within 120 s.
pub fn play_to_eos(pipeline: &gst::Element, what: &str) {
    pipeline.set_state(gst::State::Playing).expect("plays");
    let msg = pipeline
        .bus()
        .expect("bus")
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline ends");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{what}: {} ({:?})", e.error(), e.debug());
    }
}
