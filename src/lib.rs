//! gst-rtpsynth: the `rtpsynth` GStreamer plugin.
//!
//! Algorithm cores (`rtp`, `synth`, …) know nothing of GStreamer; each element
//! folder is thin glue that maps properties, caps and buffers onto a core.

pub mod mux;
pub mod prng;
pub mod rtp;
mod rtpmuxserver;
pub mod stats;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    rtpmuxserver::register(plugin)?;
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
