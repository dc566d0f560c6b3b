//! `rtpmuxserver`: one worker thread serving many RTP channels over UDP.
//!
//! Each channel is a pair of request pads, `sink_%u` (what to send) and
//! `src_%u` (what was received), with its own socket and RTP session; the
//! I/O loop and the sessions run in the GStreamer-free
//! [`rtpsynth_core::mux`] core.

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

/// Whether and where a channel sends RTCP.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtpMuxServerRtcp")]
pub enum Rtcp {
    #[default]
    #[enum_value(
        name = "Off: no RTCP sent; RTCP received is still counted and never pushed",
        nick = "off"
    )]
    Off = 0,
    #[enum_value(name = "Mux: RTCP on the RTP socket and port (RFC 5761)", nick = "mux")]
    Mux = 1,
    #[enum_value(
        name = "Port + 1: RTCP on a second socket bound to the RTP port + 1, sent to the remote port + 1",
        nick = "port+1"
    )]
    PortPlusOne = 2,
}

impl From<Rtcp> for rtpsynth_core::mux::RtcpMode {
    fn from(r: Rtcp) -> Self {
        match r {
            Rtcp::Off => rtpsynth_core::mux::RtcpMode::Off,
            Rtcp::Mux => rtpsynth_core::mux::RtcpMode::Mux,
            Rtcp::PortPlusOne => rtpsynth_core::mux::RtcpMode::PortPlusOne,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Family::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    Rtcp::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    RtpMuxServerPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "rtpmuxserver",
        gst::Rank::NONE,
        RtpMuxServer::static_type(),
    )
}
