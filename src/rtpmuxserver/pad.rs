//! The channel pad: its properties are the channel's socket settings, shared
//! by the channel's `sink_%u` and `src_%u`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};

use glib::prelude::*;
use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::Family;
use super::imp::{Change, ChannelSlot, CoreChannel, MAX_RTCP_INTERVAL_MS, PadSettings, rtp_caps};
use rtpsynth_core::mux::{self, lock};

#[derive(Default)]
pub struct RtpMuxServerPad {
    slot: OnceLock<Arc<ChannelSlot>>,
    /// On `sink_N`: the slot's core channel, kept here by the slot (see
    /// `ChannelSlot::set_core`).
    core: Mutex<Option<Arc<CoreChannel>>>,
}

impl RtpMuxServerPad {
    pub(super) fn set_slot(&self, slot: Arc<ChannelSlot>) {
        // A pad belongs to one channel for its whole life.
        let _ = self.slot.set(slot);
    }

    pub(super) fn slot(&self) -> Option<&Arc<ChannelSlot>> {
        self.slot.get()
    }

    pub(super) fn core(&self) -> MutexGuard<'_, Option<Arc<CoreChannel>>> {
        lock(&self.core)
    }

    pub(super) fn set_core(&self, core: Option<Arc<CoreChannel>>) {
        *lock(&self.core) = core;
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RtpMuxServerPad {
    const NAME: &'static str = "GstRtpMuxServerPad";
    type Type = super::RtpMuxServerPad;
    type ParentType = gst::Pad;
}

impl ObjectImpl for RtpMuxServerPad {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = PadSettings::default();
            vec![
                glib::ParamSpecString::builder("bind-address")
                    .nick("Bind address")
                    .blurb(
                        "Local IPv4 or IPv6 address (a literal) the channel's socket binds to; \
                         0.0.0.0 is every IPv4 address, :: every address of both families. \
                         Changing it while running re-opens the socket.",
                    )
                    .default_value(Some(d.bind_address.as_str()))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("bind-port")
                    .nick("Bind port")
                    .blurb(
                        "Local UDP port the channel's socket binds to; 0 lets the system pick a \
                         free port (read it back from local-port). Changing it while running \
                         re-opens the socket.",
                    )
                    .maximum(u32::from(u16::MAX))
                    .default_value(d.bind_port)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("error")
                    .nick("Error")
                    .blurb(
                        "What went wrong when the channel was opened or changed while the \
                         element was running: its socket could not be opened (it then has none: \
                         local-port 0) or its target not resolved; also posted as a WARNING \
                         naming the channel, the other channels running on. Unset when it \
                         opened. At start-up such a failure fails the state change instead, \
                         with one ERROR.",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("local-port")
                    .nick("Local port")
                    .blurb(
                        "UDP port the channel's socket is bound to, once the element is PAUSED \
                         or PLAYING; 0 while it has no socket.",
                    )
                    .maximum(u32::from(u16::MAX))
                    .read_only()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("family", d.family)
                    .nick("Address family")
                    .blurb(
                        "Address family of the socket: auto follows bind-address; ipv6 with the \
                         default bind-address 0.0.0.0 binds :: instead.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("remote-address")
                    .nick("Remote address")
                    .blurb(
                        "Host (IP literal or name) packets from sink_N are sent to, with \
                         remote-port; none (the default) leaves the target to latching. With \
                         remote-port 0 it limits latching to a source of this IP address (its \
                         port learnt, for NAT): the address from the peer's SDP, so a host \
                         elsewhere cannot take the call. Settable at any time.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("remote-port")
                    .nick("Remote port")
                    .blurb(
                        "UDP port packets from sink_N are sent to, with remote-address; 0 (the \
                         default) means no target (latching then finds it). Settable at any \
                         time.",
                    )
                    .maximum(u32::from(u16::MAX))
                    .default_value(d.remote_port)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("latch")
                    .nick("Latch")
                    .blurb(
                        "While no remote target is set, take the source address of the first \
                         valid RTP packet received as the target (as SIP media relays do to \
                         cross NAT).",
                    )
                    .default_value(d.latch)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("latch-window")
                    .nick("Latch window")
                    .blurb(
                        "Milliseconds after the channel opens (or its target is cleared) during \
                         which latching may take a source; 0 (the default) = any time. After \
                         it a channel that has latched nobody ignores new sources, so a late \
                         sender cannot take it over.",
                    )
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("relatch-after")
                    .nick("Re-latch after")
                    .blurb(
                        "Milliseconds the latched source must have been silent before a new \
                         source sending the same SSRC may replace it (a peer whose NAT port \
                         changed); 0 (the default) = never latch again. Other sources are \
                         dropped and counted in dropped-foreign-source.",
                    )
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("source-filter")
                    .nick("Source filter")
                    .blurb(
                        "Drop, and count in dropped-foreign-source, every received packet that \
                         does not come from the target address and port (everything while \
                         there is no target).",
                    )
                    .default_value(d.source_filter)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("queue-size")
                    .nick("Send queue size")
                    .blurb(
                        "Capacity of the channel's send queue in packets, a power of two; when \
                         it is full a new packet is dropped and counted in dropped-queue-full. \
                         Changing it while running re-opens the socket.",
                    )
                    .minimum(mux::MIN_QUEUE_SIZE)
                    .maximum(mux::MAX_QUEUE_SIZE)
                    .default_value(d.queue_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Caps>("rtp-caps")
                    .nick("RTP caps")
                    .blurb(
                        "Caps announced on src_N, application/x-rtp with what downstream \
                         needs to know (media, clock-rate, encoding-name, payload), as udpsrc's \
                         caps property (named apart from the pad's own read-only caps); caps \
                         that are not application/x-rtp are refused. \
                         Default: application/x-rtp.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("rtcp", d.rtcp)
                    .nick("RTCP")
                    .blurb(
                        "Whether and where the channel sends RTCP: off (the default: nothing is \
                         sent unless the application negotiated RTCP, as RFC 5761 requires for \
                         mux), mux (on the RTP socket, to the RTP target) or port+1 (from a \
                         second socket on the RTP port + 1, to the remote port + 1 or, \
                         latching, to where the peer's RTCP comes from; with bind-port 0 an \
                         even port is chosen whose successor is free). In every mode RTCP \
                         received is recognised, counted and never pushed on src_N. Changing \
                         it while running re-opens the socket.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("clock-rate")
                    .nick("Clock rate")
                    .blurb(
                        "RTP clock rate of the channel's payload in Hz, for jitter and SR \
                         timestamps; 0 (the default) takes the clock-rate field of rtp-caps, \
                         else of the caps received on sink_N; with none, jitter is reported \
                         as unknown. Settable at any time.",
                    )
                    .default_value(d.clock_rate)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("relay-to")
                    .nick("Relay to")
                    .blurb(
                        "Index of another channel of this element that sends what this one \
                         receives (RTP, and RTCP when both channels carry it: rtcp not off), \
                         queued by the worker itself, with no GstBuffer and no push; set it on \
                         both channels for a two-way relay. Each packet still goes through \
                         this channel's latching and filtering and is counted in its relayed \
                         counter, then in the other's packets-sent. src_N still pushes the \
                         RTP when linked (but not what the element's relay-offload has the \
                         kernel forward). A channel added later is found when it comes; until \
                         then packets are counted in not-relayed. -1 (the default): none. \
                         Settable at any time. (A link from src_N to a sink_M of the same \
                         element is refused: use this.)",
                    )
                    .minimum(-1)
                    .maximum(i32::MAX)
                    .default_value(d.relay_to)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-socket")
                    .nick("Shared socket")
                    .blurb(
                        "Share one socket with the other channels that bind the same \
                         bind-address and bind-port with shared-socket set (one port to open \
                         in a firewall). A datagram goes to the channel whose target \
                         (configured or latched) sent it when that address is no other \
                         channel's target; else by SSRC: RTP and RTCP senders to the channel \
                         whose remote-ssrc it carries (which then latches it), RTCP reports \
                         to the channel whose own SSRC they are about; else it is dropped and \
                         counted in the element's dropped-unknown-source; never to another \
                         channel. Sends of all its channels go out together. RTCP: off \
                         or mux (port+1 is refused). The socket closes with its last channel. \
                         Changing it while running re-opens the channel.",
                    )
                    .default_value(d.shared_socket)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt64::builder("remote-ssrc")
                    .nick("Remote SSRC")
                    .blurb(
                        "SSRC the peer sends (from its signalling), 0 to 4294967295: on a \
                         shared socket, a datagram from a source no channel knows yet (RTP by \
                         its SSRC, RTCP by its sender's) goes to the channel expecting it. \
                         -1 (the default): none. Settable at any time.",
                    )
                    .minimum(-1)
                    .maximum(i64::from(u32::MAX))
                    .default_value(d.remote_ssrc)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("rtcp-interval")
                    .nick("RTCP interval")
                    .blurb(
                        "Milliseconds between RTCP reports; 0 (the default) is the RFC 3550 \
                         randomised interval with its 5 s minimum (half that before the first \
                         report). Settable at any time: a shorter interval applies at once.",
                    )
                    .maximum(MAX_RTCP_INTERVAL_MS)
                    .default_value(d.rtcp_interval)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let Some(slot) = self.slot.get() else {
            return;
        };
        if pspec.name() == "rtp-caps" {
            let caps = value
                .get::<Option<gst::Caps>>()
                .ok()
                .flatten()
                .unwrap_or_else(rtp_caps);
            let is_rtp = caps.size() > 0 && caps.iter().all(|s| s.name() == "application/x-rtp");
            if is_rtp {
                slot.set_caps(caps);
                // Its clock-rate may be the one the session uses.
                if let Some(element) = self.obj().parent().and_downcast::<super::RtpMuxServer>() {
                    element.imp().channel_changed(slot, Change::ClockRate);
                }
            } else {
                glib::g_warning!(
                    "rtpmuxserver",
                    "{}: caps {caps} are not application/x-rtp; keeping {}",
                    self.obj().name(),
                    slot.lock_settings().caps
                );
            }
            return;
        }
        let change = {
            let mut s = slot.lock_settings();
            match pspec.name() {
                "bind-address" => {
                    s.bind_address = value
                        .get::<Option<String>>()
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| PadSettings::default().bind_address);
                    Change::Socket
                }
                "bind-port" => {
                    s.bind_port = value.get().unwrap_or(0);
                    Change::Socket
                }
                "family" => {
                    s.family = value.get().unwrap_or(Family::Auto);
                    Change::Socket
                }
                "remote-address" => {
                    s.remote_address = value
                        .get::<Option<String>>()
                        .ok()
                        .flatten()
                        .filter(|a| !a.trim().is_empty());
                    Change::Remote
                }
                "remote-port" => {
                    s.remote_port = value.get().unwrap_or(0);
                    Change::Remote
                }
                "latch" => {
                    s.latch = value.get().unwrap_or(true);
                    Change::Socket
                }
                "source-filter" => {
                    s.source_filter = value.get().unwrap_or(false);
                    Change::Socket
                }
                "latch-window" => {
                    s.latch_window = value.get().unwrap_or(0);
                    Change::Socket
                }
                "relatch-after" => {
                    s.relatch_after = value.get().unwrap_or(0);
                    Change::Socket
                }
                "rtcp" => {
                    s.rtcp = value.get().unwrap_or_default();
                    Change::Socket
                }
                "clock-rate" => {
                    s.clock_rate = value.get().unwrap_or(0);
                    Change::ClockRate
                }
                "rtcp-interval" => {
                    s.rtcp_interval = value.get().unwrap_or(0);
                    Change::Interval
                }
                "relay-to" => {
                    s.relay_to = value.get().unwrap_or(-1);
                    Change::Relay
                }
                "remote-ssrc" => {
                    s.remote_ssrc = value.get().unwrap_or(-1);
                    Change::Relay
                }
                "shared-socket" => {
                    s.shared_socket = value.get().unwrap_or(false);
                    Change::Socket
                }
                "queue-size" => {
                    let size: u32 = value.get().unwrap_or(s.queue_size);
                    match mux::check_queue_size(size) {
                        Ok(()) => {
                            s.queue_size = size;
                            Change::Socket
                        }
                        Err(e) => {
                            glib::g_warning!(
                                "rtpmuxserver",
                                "{}: {e}; keeping {}",
                                self.obj().name(),
                                s.queue_size
                            );
                            Change::None
                        }
                    }
                }
                _ => Change::None,
            }
        };
        if change != Change::None
            && let Some(element) = self.obj().parent().and_downcast::<super::RtpMuxServer>()
        {
            element.imp().channel_changed(slot, change);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let Some(slot) = self.slot.get() else {
            return pspec.default_value().clone();
        };
        match pspec.name() {
            "local-port" => return slot.local_port.load(Ordering::Relaxed).to_value(),
            "error" => return slot.error().to_value(),
            _ => {}
        }
        let s = slot.lock_settings();
        match pspec.name() {
            "bind-address" => s.bind_address.to_value(),
            "bind-port" => s.bind_port.to_value(),
            "family" => s.family.to_value(),
            "remote-address" => s.remote_address.to_value(),
            "remote-port" => s.remote_port.to_value(),
            "latch" => s.latch.to_value(),
            "source-filter" => s.source_filter.to_value(),
            "latch-window" => s.latch_window.to_value(),
            "relatch-after" => s.relatch_after.to_value(),
            "queue-size" => s.queue_size.to_value(),
            "rtp-caps" => s.caps.to_value(),
            "rtcp" => s.rtcp.to_value(),
            "clock-rate" => s.clock_rate.to_value(),
            "rtcp-interval" => s.rtcp_interval.to_value(),
            "relay-to" => s.relay_to.to_value(),
            "shared-socket" => s.shared_socket.to_value(),
            "remote-ssrc" => s.remote_ssrc.to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for RtpMuxServerPad {}
impl PadImpl for RtpMuxServerPad {}
