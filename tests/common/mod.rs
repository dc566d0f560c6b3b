//! Shared by the integration tests.
#![allow(dead_code)]

use std::sync::Once;

pub mod pcap;

/// Initializes GStreamer and registers this crate's plugin, once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstrtpsynth::plugin_register_static().expect("rtpsynth plugin registers");
    });
}
