//! `linearresample`: streaming linear-interpolation resampler for S16LE
//! audio, sample-identical to librtpsynth's `resample_linear`.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct LinearResample(ObjectSubclass<imp::LinearResample>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Rank NONE: autopluggers keep choosing audioresample unless asked.
    gst::Element::register(
        Some(plugin),
        "linearresample",
        gst::Rank::NONE,
        LinearResample::static_type(),
    )
}
