//! `rtpmuxserver`: one worker thread serving many RTP channels over UDP.
//!
//! Each channel is a pair of request pads, `sink_%u` (what to send) and
//! `src_%u` (what was received), with its own socket; the I/O loop is the
//! GStreamer-free [`rtpsynth_core::mux`] core.

use gst::prelude::*;

mod imp;
mod pad;

glib::wrapper! {
    /// The element: one `mux::Server` and its channels' pads.
    pub struct RtpMuxServer(ObjectSubclass<imp::RtpMuxServer>)
        @extends gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

glib::wrapper! {
    /// A channel's pad; both pads of a channel show the channel's settings.
    pub struct RtpMuxServerPad(ObjectSubclass<pad::RtpMuxServerPad>)
        @extends gst::Pad, gst::Object;
}

/// Address family of a channel's socket.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtpMuxServerFamily")]
pub enum Family {
    #[default]
    #[enum_value(name = "Auto: the family of bind-address", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "IPv4", nick = "ipv4")]
    Ipv4 = 1,
    #[enum_value(name = "IPv6 (bind-address 0.0.0.0 becomes ::)", nick = "ipv6")]
    Ipv6 = 2,
}

impl From<Family> for rtpsynth_core::mux::Family {
    fn from(f: Family) -> Self {
        match f {
            Family::Auto => rtpsynth_core::mux::Family::Auto,
            Family::Ipv4 => rtpsynth_core::mux::Family::Ipv4,
            Family::Ipv6 => rtpsynth_core::mux::Family::Ipv6,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Family::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    RtpMuxServerPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "rtpmuxserver",
        gst::Rank::NONE,
        RtpMuxServer::static_type(),
    )
}
