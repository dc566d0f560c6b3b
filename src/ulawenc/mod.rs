//! `ulawenc`: S16LE audio to G.711 µ-law, bit-exact with ITU-T G.191.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct UlawEnc(ObjectSubclass<imp::UlawEnc>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Rank NONE: autopluggers keep choosing the stock mulawenc unless asked.
    gst::Element::register(
        Some(plugin),
        "ulawenc",
        gst::Rank::NONE,
        UlawEnc::static_type(),
    )
}
