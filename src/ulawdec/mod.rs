//! `ulawdec`: G.711 µ-law to S16LE audio, bit-exact with ITU-T G.191.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct UlawDec(ObjectSubclass<imp::UlawDec>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Rank NONE: autopluggers keep choosing the stock mulawdec unless asked.
    gst::Element::register(
        Some(plugin),
        "ulawdec",
        gst::Rank::NONE,
        UlawDec::static_type(),
    )
}
