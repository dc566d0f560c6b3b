//! `g711alawdec`: G.711 A-law to S16LE audio, bit-exact with ITU-T G.191.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct G711AlawDec(ObjectSubclass<imp::G711AlawDec>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Not `alawdec`: that is stock's name, and GStreamer keeps one factory
    // per name, so with gst-plugins-good installed ours would never be found.
    // Rank NONE: autopluggers keep choosing the stock alawdec unless asked.
    gst::Element::register(
        Some(plugin),
        "g711alawdec",
        gst::Rank::NONE,
        G711AlawDec::static_type(),
    )
}
