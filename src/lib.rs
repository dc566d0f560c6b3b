//! gst-rtpsynth: the `rtpsynth` GStreamer plugin.
//!
//! Algorithm cores (`rtp`, `synth`, …) know nothing of GStreamer; each element
//! folder is thin glue that maps properties, caps and buffers onto a core.

mod arith;
mod audiocaps;
mod chainbypass;
pub mod g711;
pub mod jbuf;
pub mod mux;
pub mod prng;
pub mod resample;
pub mod rtp;
pub mod sched;
mod spare;
pub mod stats;
pub mod synth;

mod linearresample;
mod rtpjbufdec;
mod rtpmuxserver;
mod rtpsynthsrc;
mod ulawdec;
mod ulawenc;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    rtpsynthsrc::register(plugin)?;
    rtpjbufdec::register(plugin)?;
    rtpmuxserver::register(plugin)?;
    ulawenc::register(plugin)?;
    ulawdec::register(plugin)?;
    linearresample::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    rtpsynth,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "gst-rtpsynth",
    env!("BUILD_REL_DATE")
);
