//! `g711alawenc`: S16LE audio to G.711 A-law, bit-exact with ITU-T G.191.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct G711AlawEnc(ObjectSubclass<imp::G711AlawEnc>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Not `alawenc`: that is stock's name, and GStreamer keeps one factory
    // per name, so with gst-plugins-good installed ours would never be found.
    // Rank NONE: autopluggers keep choosing the stock alawenc unless asked.
    gst::Element::register(
        Some(plugin),
        "g711alawenc",
        gst::Rank::NONE,
        G711AlawEnc::static_type(),
    )
}
