//! Shared by the integration tests.
#![allow(dead_code)]

use std::sync::Once;

use gst::prelude::*;

pub mod pcap;

/// Initializes GStreamer and registers this crate's plugin, once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstrtpsynth::plugin_register_static().expect("rtpsynth plugin registers");
    });
}

/// A pipeline set to NULL when dropped, even by a failing test, so it leaves
/// no worker thread or socket behind for the next test.
pub struct Pipe(pub gst::Pipeline);

impl std::ops::Deref for Pipe {
    type Target = gst::Pipeline;
    fn deref(&self) -> &gst::Pipeline {
        &self.0
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// The pipeline `desc` describes, as gst-launch builds it.
pub fn pipeline(desc: &str) -> Pipe {
    init();
    Pipe(
        gst::parse::launch(desc)
            .unwrap_or_else(|e| panic!("{desc}: {e}"))
            .downcast::<gst::Pipeline>()
            .expect("a pipeline"),
    )
}

/// Element `name` of `p`, as a `T`.
pub fn by_name<T: IsA<gst::Element>>(p: &gst::Pipeline, name: &str) -> T {
    p.by_name(name)
        .unwrap_or_else(|| panic!("no element {name}"))
        .downcast::<T>()
        .unwrap_or_else(|_| panic!("{name} is not a {}", T::static_type()))
}
