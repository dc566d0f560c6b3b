//! `rtpsynthsrc`: a source of one continuous RTP stream.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct RtpSynthSrc(ObjectSubclass<imp::RtpSynthSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "rtpsynthsrc",
        gst::Rank::NONE,
        RtpSynthSrc::static_type(),
    )
}
