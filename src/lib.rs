//! gst-rtpsynth: the `rtpsynth` GStreamer plugin.
//!
//! The algorithms live in the `rtpsynth-core` crate, which knows nothing of
//! GStreamer; each element folder here is thin glue that maps properties,
//! caps and buffers onto a core, and the modules beside them are the glue
//! the elements share.

mod audiocaps;
mod audiofilter;
mod spare;
mod stats;

mod g711alawdec;
mod g711alawenc;
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
    g711alawenc::register(plugin)?;
    g711alawdec::register(plugin)?;
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
