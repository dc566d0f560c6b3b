//! `rtpjbufdec`: validating jitter buffer over the [`jbuf`](rtpsynth_core::jbuf) core.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct RtpJbufDec(ObjectSubclass<imp::RtpJbufDec>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "rtpjbufdec",
        gst::Rank::NONE,
        RtpJbufDec::static_type(),
    )
}
