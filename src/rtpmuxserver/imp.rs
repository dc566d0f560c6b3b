//! `rtpmuxserver` glue: maps request pads, pad properties and state changes
//! onto a [`mux::Server`], and turns what its worker receives into buffers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use glib::prelude::*;
use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_net::gio;

use super::{Family, Rtcp, RtpMuxServerPad};
use crate::stats::{self, BytesPool};
use rtpsynth_core::batch;
use rtpsynth_core::mux::{self, ChannelStats, lock};
use rtpsynth_core::session::StatKind;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtpmuxserver",
        gst::DebugColorFlags::empty(),
        Some("One-thread UDP server for many RTP channels"),
    )
});

const STATS_NAME: &str = "application/x-rtpmuxserver-stats";
const CHANNEL_STATS_NAME: &str = "application/x-rtpmuxserver-channel-stats";
const DEFAULT_TICK_MS: u32 = 0;
const MAX_TICK_MS: u32 = 1000;
/// Most worker threads: far more than the cores of the machines served.
const MAX_WORKERS: u32 = 64;
/// How long releasing a channel waits for the worker to close its socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `rtcp-interval`: an hour.
pub(super) const MAX_RTCP_INTERVAL_MS: u32 = 3_600_000;
/// Name of the element message posted for each BYE received.
const BYE_MESSAGE: &str = "rtpmuxserver-bye";
/// The pad that carries, in batches, what channels without a `src_N`
/// received.
const SRC_ALL: &str = "src_all";
const BATCH_CAPS_NAME: &str = "application/x-rtpmuxserver-batch";

/// One channel's socket settings: the pad properties of `sink_N`/`src_N`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PadSettings {
    pub bind_address: String,
    pub bind_port: u32,
    pub family: Family,
    pub remote_address: Option<String>,
    pub remote_port: u32,
    pub latch: bool,
    /// Latching limits, in ms: 0 = none.
    pub latch_window: u32,
    pub relatch_after: u32,
    pub source_filter: bool,
    pub queue_size: u32,
    /// Caps announced on `src_N`.
    pub caps: gst::Caps,
    pub rtcp: Rtcp,
    /// Hz; 0: from the caps.
    pub clock_rate: u32,
    /// ms; 0: RFC 3550's randomised interval.
    pub rtcp_interval: u32,
    /// Channel index to relay to; -1: none.
    pub relay_to: i32,
    pub shared_socket: bool,
    /// The peer's SSRC; -1: unknown.
    pub remote_ssrc: i64,
}

impl Default for PadSettings {
    fn default() -> Self {
        let core = mux::ChannelConfig::default();
        PadSettings {
            bind_address: core.bind.ip().to_string(),
            bind_port: 0,
            family: Family::Auto,
            remote_address: None,
            remote_port: 0,
            latch: core.latch,
            latch_window: 0,
            relatch_after: 0,
            source_filter: core.source_filter,
            queue_size: core.queue_size,
            caps: rtp_caps(),
            rtcp: Rtcp::Off,
            clock_rate: 0,
            rtcp_interval: 0,
            relay_to: -1,
            shared_socket: core.shared_socket,
            remote_ssrc: -1,
        }
    }
}

/// The positive `clock-rate` field of the first structure of `caps`.
fn caps_clock_rate(caps: &gst::CapsRef) -> Option<u32> {
    let rate = caps.structure(0)?.get::<i32>("clock-rate").ok()?;
    u32::try_from(rate).ok().filter(|&r| r > 0)
}

/// The plain caps of `src_N` when the user gives none.
pub(super) fn rtp_caps() -> gst::Caps {
    gst::Caps::new_empty_simple("application/x-rtp")
}

/// The caps of `src_all`: the layout its buffers are written in.
fn batch_caps() -> gst::Caps {
    gst::Caps::builder(BATCH_CAPS_NAME)
        .field("layout", batch::LAYOUT_VERSION as i32)
        .build()
}

/// What a pad property change asks of a running channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    None,
    /// A new send target, applied in place.
    Remote,
    /// A socket setting: the socket is opened again.
    Socket,
    /// The clock rate (or the caps it may come from), applied in place.
    ClockRate,
    /// The report interval, applied in place.
    Interval,
    /// `relay-to` or `remote-ssrc`, applied in place.
    Relay,
}

/// A buffer queued to send: the worker maps it when it sends it, so the
/// pushing thread pays for neither the map nor a slot of the mapped size
/// (see [`mux::Outgoing`]). One the worker cannot map counts under
/// `send-errors`.
pub(super) struct Packet(gst::Buffer);

impl mux::Outgoing for Packet {
    type Bytes = gst::MappedBuffer<gst::buffer::Readable>;

    fn into_bytes(self) -> Option<Self::Bytes> {
        self.0.into_mapped_buffer_readable().ok()
    }
}

pub(super) type CoreChannel = mux::Channel<Packet, Arc<Attach>>;

/// What the worker needs of a channel: its `src_N` pad, if requested.
/// `src_all` has one of its own.
///
/// The flags first: what [`Deliver::received`] reads of an unlinked
/// channel, which the worker loads ahead ([`Deliver::receive_hint`]).
#[derive(Default)]
#[repr(C)]
pub(super) struct Attach {
    /// `out` is set: a channel without `src_N` delivers to `src_all`.
    requested: AtomicBool,
    /// The pad is linked (kept by its link and unlink functions), so that
    /// packets nobody takes cost no lock per batch.
    linked: AtomicBool,
    out: Mutex<Option<SrcOut>>,
}

impl Attach {
    fn set_out(&self, out: Option<SrcOut>) {
        let requested = out.is_some();
        *lock(&self.out) = out;
        self.requested.store(requested, Ordering::Release);
    }
}

struct SrcOut {
    pad: gst::Pad,
    caps: gst::Caps,
    /// Stream-start, caps and segment are due before the next buffer.
    need_events: bool,
    /// The last sender and its GSocketAddress: a stream has one sender, so
    /// the address object is made once, not per packet.
    sender: Option<(SocketAddr, gio::SocketAddress)>,
}

/// A channel as its two pads share it.
pub(super) struct ChannelSlot {
    pub index: u32,
    settings: Mutex<PadSettings>,
    pub local_port: AtomicU32,
    /// Clock rate of the caps received on `sink_N`; 0 before any.
    sent_clock_rate: AtomicU32,
    attach: Arc<Attach>,
    /// The core channel while the server runs and the socket is open.
    core: Mutex<Option<Arc<CoreChannel>>>,
    /// `sink_N`, which keeps a copy of `core` for its chain functions
    /// ([`ChannelSlot::set_core`]).
    sink: Mutex<glib::WeakRef<super::RtpMuxServerPad>>,
    /// Why the channel could not be set up while the element ran.
    error: Mutex<Option<String>>,
}

impl ChannelSlot {
    fn new(index: u32) -> Self {
        ChannelSlot {
            index,
            settings: Mutex::new(PadSettings::default()),
            local_port: AtomicU32::new(0),
            sent_clock_rate: AtomicU32::new(0),
            attach: Arc::default(),
            core: Mutex::new(None),
            sink: Mutex::default(),
            error: Mutex::new(None),
        }
    }

    /// Why the channel could not be set up, if it could not.
    pub fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    pub fn lock_settings(&self) -> MutexGuard<'_, PadSettings> {
        lock(&self.settings)
    }

    /// New caps for `src_N`: announced before its next buffer.
    pub fn set_caps(&self, caps: gst::Caps) {
        lock(&self.settings).caps = caps.clone();
        if let Some(out) = lock(&self.attach.out).as_mut() {
            out.caps = caps;
            out.need_events = true;
        }
    }

    fn core(&self) -> MutexGuard<'_, Option<Arc<CoreChannel>>> {
        lock(&self.core)
    }

    /// Sets the core channel, and `sink_N`'s copy of it: the chain
    /// functions read the copy in the pad's own data, a line that pushing
    /// brings in anyway, where the slot's would be one more cache miss per
    /// push with thousands of channels. Returns the one it replaces.
    fn set_core(&self, core: Option<Arc<CoreChannel>>) -> Option<Arc<CoreChannel>> {
        let mut current = self.core();
        if let Some(sink) = lock(&self.sink).upgrade() {
            sink.imp().set_core(core.clone());
        }
        std::mem::replace(&mut *current, core)
    }

    /// Makes `pad` the channel's `sink_N`, with a copy of the core channel.
    fn set_sink(&self, pad: &super::RtpMuxServerPad) {
        let current = self.core();
        pad.imp().set_core(current.clone());
        *lock(&self.sink) = pad.downgrade();
    }

    /// The session's clock rate: `clock-rate`, else that of `rtp-caps`,
    /// else that of the caps on `sink_N` (one channel carries one codec).
    fn clock_rate(&self) -> Option<u32> {
        let s = self.lock_settings();
        if s.clock_rate > 0 {
            return Some(s.clock_rate);
        }
        caps_clock_rate(&s.caps).or_else(|| {
            let sent = self.sent_clock_rate.load(Ordering::Relaxed);
            (sent > 0).then_some(sent)
        })
    }
}

struct Entry {
    slot: Arc<ChannelSlot>,
    sink: Option<gst::Pad>,
    src: Option<gst::Pad>,
}

/// Element-wide counters kept beside the per-channel ones.
#[derive(Default)]
struct Extra {
    /// Received packets pushed on a src pad.
    pushed: AtomicU64,
    /// Received packets not pushed: no src pad, or downstream refused them.
    dropped_downstream: AtomicU64,
    /// Packets from a sink pad whose channel has no socket (it failed to open).
    dropped_no_socket: AtomicU64,
    /// Datagrams on shared sockets that belonged to no channel, as the
    /// server last counted them (kept past a stop).
    dropped_unknown_source: AtomicU64,
    /// The server's UDP GSO messages, as last counted (kept past a stop).
    gso_messages: AtomicU64,
}

impl Extra {
    fn reset(&self) {
        for c in [
            &self.pushed,
            &self.dropped_downstream,
            &self.dropped_no_socket,
            &self.dropped_unknown_source,
            &self.gso_messages,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Takes the counts the server keeps for the whole element.
    fn copy_from(&self, server: &mux::Server<Deliver>) {
        self.dropped_unknown_source
            .store(server.dropped_unknown_source(), Ordering::Relaxed);
        self.gso_messages
            .store(server.gso_messages(), Ordering::Relaxed);
    }

    fn fields(&self) -> [(&'static str, u64); 5] {
        [
            ("packets-pushed", self.pushed.load(Ordering::Relaxed)),
            (
                "dropped-downstream",
                self.dropped_downstream.load(Ordering::Relaxed),
            ),
            (
                "dropped-no-socket",
                self.dropped_no_socket.load(Ordering::Relaxed),
            ),
            (
                "dropped-unknown-source",
                self.dropped_unknown_source.load(Ordering::Relaxed),
            ),
            ("gso-messages", self.gso_messages.load(Ordering::Relaxed)),
        ]
    }
}

/// The worker side: turns accepted datagrams into buffers on `src_N`, or
/// gathers them for `src_all`.
struct Deliver {
    element: glib::WeakRef<super::RtpMuxServer>,
    extra: Arc<Extra>,
    /// Running time of the current wake, read once per wake when needed.
    now: Option<Option<gst::ClockTime>>,
    all: Arc<Attach>,
    /// This worker's datagrams for `src_all`, pushed at the end of its round.
    gathered: batch::BatchWriter,
}

impl Deliver {
    fn arrival(&mut self) -> Option<gst::ClockTime> {
        *self.now.get_or_insert_with(|| {
            self.element
                .upgrade()
                .and_then(|e| e.current_running_time())
        })
    }

    fn buffer(
        out: &mut SrcOut,
        data: &[u8],
        from: SocketAddr,
        pts: Option<gst::ClockTime>,
    ) -> Option<gst::Buffer> {
        let mut buffer = gst::Buffer::with_size(data.len()).ok()?;
        if out.sender.as_ref().is_none_or(|(addr, _)| *addr != from) {
            let gaddr: gio::SocketAddress = gio::InetSocketAddress::from(from).upcast();
            out.sender = Some((from, gaddr));
        }
        let b = buffer.make_mut();
        b.copy_from_slice(0, data).ok()?;
        b.set_pts(pts);
        // Borrowed: the meta takes its own reference.
        if let Some((_, address)) = &out.sender {
            gst_net::NetAddressMeta::add(b, address);
        }
        Some(buffer)
    }

    /// Stream-start, caps and segment on `out`, when they are due before
    /// its next buffer. `stream`: the channel index, or `all`.
    fn announce(&self, stream: &dyn std::fmt::Display, out: &mut SrcOut) {
        if !out.need_events {
            return;
        }
        out.need_events = false;
        // Deterministic: the element and channel name the stream.
        let stream_id = match self.element.upgrade() {
            Some(e) => format!("rtpmuxserver/{}/{stream}", e.name()),
            None => format!("rtpmuxserver/{stream}"),
        };
        out.pad.push_event(gst::event::StreamStart::new(&stream_id));
        out.pad.push_event(gst::event::Caps::new(&out.caps));
        out.pad
            .push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()));
    }

    /// What was gathered for `src_all`, as a buffer that owns its bytes
    /// (not copied again).
    fn batch_buffer(gathered: &mut batch::BatchWriter, pts: Option<gst::ClockTime>) -> gst::Buffer {
        let mut buffer = gst::Buffer::from_mut_slice(gathered.finish());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(pts);
        }
        buffer
    }

    /// [`mux::Handler::received`] for a channel whose `src_N` is linked:
    /// its packets as buffers on that pad, one push per batch.
    #[inline(never)]
    fn push_to_pad(&mut self, channel: &CoreChannel, batch: mux::Batch<'_>) {
        let n = batch.len() as u64;
        let mut out = lock(&channel.attachment.out);
        let pts = self.arrival();
        let Some(out) = out.as_mut() else {
            self.extra
                .dropped_downstream
                .fetch_add(n, Ordering::Relaxed);
            return;
        };
        self.announce(&channel.id(), out);
        let pushed = if n == 1 {
            let buffer = batch
                .iter()
                .next()
                .and_then(|(data, from)| Self::buffer(out, data, from, pts));
            match buffer.map(|b| out.pad.push(b)) {
                Some(Ok(_)) => 1,
                _ => 0,
            }
        } else {
            let mut list = gst::BufferList::new_sized(batch.len());
            let list_mut = list.make_mut();
            for (data, from) in batch.iter() {
                if let Some(b) = Self::buffer(out, data, from, pts) {
                    list_mut.add(b);
                }
            }
            let built = list.len() as u64;
            match out.pad.push_list(list) {
                Ok(_) => built,
                Err(_) => 0,
            }
        };
        self.extra.pushed.fetch_add(pushed, Ordering::Relaxed);
        self.extra
            .dropped_downstream
            .fetch_add(n - pushed, Ordering::Relaxed);
    }

    /// Pushes what was gathered for `src_all` as one buffer.
    fn push_gathered(&mut self) {
        if self.gathered.is_empty() {
            return;
        }
        let n = self.gathered.len() as u64;
        let pts = self.arrival();
        let buffer = Self::batch_buffer(&mut self.gathered, pts);
        let mut out = lock(&self.all.out);
        let pushed = match out.as_mut() {
            Some(out) => {
                self.announce(&"all", out);
                if out.pad.push(buffer).is_ok() { n } else { 0 }
            }
            // Released meanwhile: counted below.
            None => 0,
        };
        drop(out);
        self.extra.pushed.fetch_add(pushed, Ordering::Relaxed);
        self.extra
            .dropped_downstream
            .fetch_add(n - pushed, Ordering::Relaxed);
    }
}

impl mux::Handler for Deliver {
    type Packet = Packet;
    type Attachment = Arc<Attach>;

    fn woke(&mut self) {
        self.now = None;
    }

    fn round_end(&mut self) {
        self.push_gathered();
    }

    fn receive_hint(attachment: &Arc<Attach>) -> Option<*const u8> {
        Some(Arc::as_ptr(attachment).cast())
    }

    /// Inlined into the worker's loop for `src_all`'s case, the one that
    /// thousands of channels take; a channel's own pad is served apart.
    #[inline]
    fn received(&mut self, channel: &CoreChannel, batch: mux::Batch<'_>) {
        let attach = &channel.attachment;
        if !attach.linked.load(Ordering::Acquire) {
            if !attach.requested.load(Ordering::Acquire) && self.all.linked.load(Ordering::Acquire)
            {
                if self.gathered.is_full() {
                    self.push_gathered();
                }
                self.gathered.extend(channel.id(), batch.iter());
            } else if !channel.relaying() {
                // A relaying channel's packets went on already: with nobody
                // to take them here, nothing is dropped.
                self.extra
                    .dropped_downstream
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            return;
        }
        self.push_to_pad(channel, batch);
    }

    fn bye_received(&mut self, channel: &CoreChannel, ssrc: u32) {
        let Some(element) = self.element.upgrade() else {
            return;
        };
        gst::debug!(
            CAT,
            obj = element,
            "BYE from SSRC {ssrc:#010x} on channel {}",
            channel.id()
        );
        let s = gst::Structure::builder(BYE_MESSAGE)
            .field("channel", channel.id())
            .field("ssrc", ssrc)
            .build();
        // Fails only without a bus: nobody to tell.
        let _ = element.post_message(gst::message::Element::builder(s).src(&element).build());
    }

    fn socket_error(&mut self, channel: &CoreChannel, error: std::io::Error) {
        if let Some(element) = self.element.upgrade() {
            gst::element_error!(
                element,
                gst::ResourceError::Read,
                (
                    "channel {}: socket {} failed: {error}",
                    channel.id(),
                    channel.local_addr()
                )
            );
        }
    }
}

/// Sets statistics column `column` in `s` with the column's own type:
/// `u64`, or `i64` for the session's signed columns (two's complement in
/// the row).
fn set_typed(s: &mut gst::Structure, column: usize, value: u64) {
    let name = mux::stats_name(column);
    match mux::stats_kind(column) {
        StatKind::U64 => s.set(name, value),
        StatKind::I64 => s.set(name, value as i64),
    }
}

/// Statistics as of the last stop, so `stats` still reads in READY and NULL.
type Snapshot = (Vec<(u32, mux::StatsRow)>, mux::StatsRow);

#[derive(Default)]
pub struct RtpMuxServer {
    tick_ms: AtomicU32,
    /// The `gso` property (true once constructed).
    gso: AtomicBool,
    /// The `relay-offload` property.
    relay_offload: AtomicBool,
    /// Worker threads of the next start; 0 until set (1).
    workers: AtomicU32,
    /// The sessions' CNAME; random until set.
    cname: Mutex<String>,
    /// The peers' CNAMEs as of the last stop, by channel.
    last_cnames: Mutex<BTreeMap<u32, String>>,
    channels: Mutex<BTreeMap<u32, Entry>>,
    server: Mutex<Option<mux::Server<Deliver>>>,
    extra: Arc<Extra>,
    /// None before the first stop.
    last: Mutex<Option<Snapshot>>,
    /// `src_all`, when requested.
    all: Arc<Attach>,
    /// The buffers `stats-packed` is written into.
    packed: BytesPool,
}

impl RtpMuxServer {
    /// A channel that failed while the element runs: the others keep
    /// running, so this is a WARNING (an ERROR tells applications the
    /// pipeline is done), and the channel's pads say why (`error`).
    fn channel_failed(&self, slot: &ChannelSlot, message: &str) {
        gst::warning!(CAT, imp = self, "{message}");
        *lock(&slot.error) = Some(message.to_string());
        gst::element_imp_warning!(self, gst::ResourceError::OpenReadWrite, ("{}", message));
    }

    /// The channel's target (`remote-address` and `remote-port`), or,
    /// with `remote-address` alone, the one IP address it may latch.
    fn remote_of(
        index: u32,
        s: &PadSettings,
        local: SocketAddr,
    ) -> Result<(Option<SocketAddr>, Option<IpAddr>), String> {
        let Some(host) = &s.remote_address else {
            return Ok((None, None));
        };
        // Port 9 (discard) only to resolve the address alone.
        let port = if s.remote_port > 0 {
            s.remote_port as u16
        } else {
            9
        };
        let addr =
            mux::remote_addr(host, port, local).map_err(|e| format!("channel {index}: {e}"))?;
        Ok(if s.remote_port > 0 {
            (Some(addr), None)
        } else {
            (None, Some(addr.ip()))
        })
    }

    /// Opens the channel's socket on `server`. An unresolvable target still
    /// opens the socket (it can latch or be given a target later) but is
    /// reported.
    fn open_channel(
        &self,
        server: &mux::Server<Deliver>,
        slot: &ChannelSlot,
    ) -> Result<(), String> {
        let s = slot.lock_settings().clone();
        let index = slot.index;
        let bind = mux::bind_addr(&s.bind_address, s.bind_port as u16, s.family.into())
            .map_err(|e| format!("channel {index}: {e}"))?;
        let ((remote, latch_ip), remote_error) = match Self::remote_of(index, &s, bind) {
            Ok(r) => (r, None),
            Err(e) => ((None, None), Some(e)),
        };
        let ms = |v: u32| (v > 0).then(|| Duration::from_millis(u64::from(v)));
        let config = mux::ChannelConfig {
            bind,
            remote,
            latch: s.latch,
            latch_rules: mux::Latch {
                ip: latch_ip,
                window: ms(s.latch_window),
                relatch_after: ms(s.relatch_after),
            },
            source_filter: s.source_filter,
            queue_size: s.queue_size,
            rtcp: s.rtcp.into(),
            clock_rate: slot.clock_rate(),
            rtcp_interval: mux::report_interval(s.rtcp_interval),
            shared_socket: s.shared_socket,
            remote_ssrc: u32::try_from(s.remote_ssrc).ok(),
            relay_to: u32::try_from(s.relay_to).ok(),
        };
        let core = server
            .add_channel(index, config, slot.attach.clone())
            .map_err(|e| e.to_string())?;
        let local = core.local_addr();
        slot.local_port
            .store(u32::from(local.port()), Ordering::Relaxed);
        slot.set_core(Some(core));
        *lock(&slot.error) = None;
        gst::debug!(
            CAT,
            imp = self,
            "channel {index} bound to {local}, target {remote:?}"
        );
        remote_error.map_or(Ok(()), Err)
    }

    fn close_channel(server: &mux::Server<Deliver>, slot: &ChannelSlot) {
        if slot.set_core(None).is_some() {
            server.remove_channel(slot.index, CLOSE_TIMEOUT);
        }
        slot.local_port.store(0, Ordering::Relaxed);
    }

    /// A pad property of `slot`'s channel changed.
    pub(super) fn channel_changed(&self, slot: &Arc<ChannelSlot>, change: Change) {
        let current = lock(&self.channels)
            .get(&slot.index)
            .is_some_and(|e| Arc::ptr_eq(&e.slot, slot));
        if !current {
            return;
        }
        let server = lock(&self.server);
        let Some(server) = server.as_ref() else {
            return;
        };
        match change {
            Change::None => {}
            Change::Remote => {
                let Some(core) = slot.core().clone() else {
                    return;
                };
                let s = slot.lock_settings().clone();
                match Self::remote_of(slot.index, &s, core.local_addr()) {
                    Ok((remote, latch_ip)) => {
                        core.set_latch_ip(latch_ip);
                        core.set_remote(remote);
                    }
                    Err(e) => {
                        core.set_remote(None);
                        self.channel_failed(slot, &e);
                    }
                }
            }
            Change::Socket => {
                Self::close_channel(server, slot);
                if let Err(e) = self.open_channel(server, slot) {
                    self.channel_failed(slot, &e);
                }
            }
            Change::ClockRate => {
                if let Some(core) = slot.core().as_ref() {
                    core.set_clock_rate(slot.clock_rate());
                }
            }
            Change::Interval => {
                let ms = slot.lock_settings().rtcp_interval;
                if let Some(core) = slot.core().as_ref() {
                    core.set_rtcp_interval(mux::report_interval(ms));
                }
            }
            Change::Relay => {
                let (relay_to, ssrc) = {
                    let s = slot.lock_settings();
                    (s.relay_to, s.remote_ssrc)
                };
                if let Some(core) = slot.core().as_ref() {
                    core.set_relay_to(u32::try_from(relay_to).ok());
                    core.set_remote_ssrc(u32::try_from(ssrc).ok());
                }
            }
        }
    }

    /// Turns the relay offload on or off as the property says; when it
    /// cannot be on, says why on the bus (relaying goes on in the workers).
    fn apply_relay_offload(&self, server: &mux::Server<Deliver>) {
        let on = self.relay_offload.load(Ordering::Relaxed);
        if let Err(e) = server.set_relay_offload(on) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("relay-offload not available, relaying in the worker threads: {e}")
            );
        }
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let deliver = || Deliver {
            element: self.obj().downgrade(),
            extra: self.extra.clone(),
            now: None,
            all: self.all.clone(),
            gathered: batch::BatchWriter::default(),
        };
        let tick = Duration::from_millis(u64::from(self.tick_ms.load(Ordering::Relaxed)));
        let handlers = (0..self.worker_count()).map(|_| deliver()).collect();
        let server = mux::Server::start_workers(handlers, tick).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("cannot start the worker thread: {e}")
            )
        })?;
        server.set_gso(self.gso.load(Ordering::Relaxed));
        self.apply_relay_offload(&server);
        // The property refuses a CNAME too long, so this cannot fail.
        if let Err(e) = server.set_cname(&lock(&self.cname)) {
            gst::warning!(CAT, imp = self, "{e}");
        }
        self.extra.reset();
        if let Some(out) = lock(&self.all.out).as_mut() {
            out.need_events = true;
        }
        let channels = lock(&self.channels);
        let mut failures = Vec::new();
        for entry in channels.values() {
            if let Some(out) = lock(&entry.slot.attach.out).as_mut() {
                out.need_events = true;
            }
            *lock(&entry.slot.error) = None;
            if let Err(e) = self.open_channel(&server, &entry.slot) {
                failures.push(e);
            }
        }
        if !failures.is_empty() {
            // A channel set up before the start that cannot be opened fails
            // the start, with one error saying which and why (as udpsrc
            // fails on a port in use): a pipeline that went on PLAYING
            // after an ERROR would tell the application two things.
            for entry in channels.values() {
                Self::close_channel(&server, &entry.slot);
            }
            drop(channels);
            let mut server = server;
            server.stop();
            return Err(gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("{}", failures.join("; "))
            ));
        }
        *lock(&self.server) = Some(server);
        Ok(())
    }

    fn stop(&self) {
        let Some(mut server) = lock(&self.server).take() else {
            return;
        };
        *lock(&self.last_cnames) = Self::remote_cnames(&server, &server.channel_stats());
        *lock(&self.last) = Some(server.stop_with_stats());
        self.extra.copy_from(&server);
        for entry in lock(&self.channels).values() {
            entry.slot.set_core(None);
            entry.slot.local_port.store(0, Ordering::Relaxed);
        }
    }

    /// Worker threads of the next start.
    fn worker_count(&self) -> u32 {
        self.workers.load(Ordering::Relaxed).max(1)
    }

    /// `stats-packed`: every channel's statistics, without the totals.
    fn packed_stats(&self) -> glib::Bytes {
        self.packed.bytes(|out| match lock(&self.server).as_ref() {
            Some(server) => server.packed_stats_into(out),
            None => {
                let last = lock(&self.last);
                let rows = last.as_ref().map(|(rows, _)| &rows[..]).unwrap_or_default();
                mux::pack_stats_into(out, rows.iter().copied());
            }
        })
    }

    fn rows(&self) -> Snapshot {
        match lock(&self.server).as_ref() {
            Some(server) => {
                let rows = server.channel_stats();
                let totals = server.totals(&rows);
                (rows, totals)
            }
            None => lock(&self.last)
                .clone()
                .unwrap_or_else(|| (Vec::new(), [0; mux::NSTATS])),
        }
    }

    /// The peer CNAMEs of channels `rows`.
    fn remote_cnames(
        server: &mux::Server<Deliver>,
        rows: &[(u32, mux::StatsRow)],
    ) -> BTreeMap<u32, String> {
        rows.iter()
            .filter_map(|(id, _)| Some((*id, server.channel(*id)?.remote_cname())))
            .collect()
    }

    fn stats(&self) -> gst::Structure {
        if let Some(server) = lock(&self.server).as_ref() {
            self.extra.copy_from(server);
        }
        let (rows, totals) = self.rows();
        let cnames = match lock(&self.server).as_ref() {
            Some(server) => Self::remote_cnames(server, &rows),
            None => lock(&self.last_cnames).clone(),
        };
        let counter_totals = ChannelStats::NAMES
            .iter()
            .copied()
            .zip(totals)
            .filter(|(name, _)| *name != "local-port")
            .chain([("channels", rows.len() as u64)])
            .chain(self.extra.fields());
        let mut s = stats::to_structure(STATS_NAME, counter_totals);
        // Only the session columns that add over channels have a total.
        for (column, total) in totals.iter().enumerate().skip(mux::NCOUNTERS) {
            if mux::is_summable(column) {
                set_typed(&mut s, column, *total);
            }
        }
        for (id, row) in &rows {
            let mut channel = gst::Structure::new_empty(CHANNEL_STATS_NAME);
            for (column, value) in row.iter().enumerate() {
                set_typed(&mut channel, column, *value);
            }
            channel.set(
                "remote-cname",
                cnames.get(id).map(String::as_str).unwrap_or(""),
            );
            s.set(format!("channel-{id}"), channel);
        }
        s
    }

    fn sink_event(&self, pad: &RtpMuxServerPad, event: gst::Event) -> bool {
        // Nothing flows on from a sink pad: its events end here, but the
        // caps of what is sent may give the session its clock rate.
        if let gst::EventView::Caps(c) = event.view()
            && let Some(slot) = pad.imp().slot()
        {
            let rate = caps_clock_rate(c.caps()).unwrap_or(0);
            if slot.sent_clock_rate.swap(rate, Ordering::Relaxed) != rate {
                self.channel_changed(slot, Change::ClockRate);
            }
        }
        true
    }

    fn sink_chain(
        &self,
        pad: &RtpMuxServerPad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match pad.imp().core().as_ref() {
            Some(core) => {
                core.send(Packet(buffer));
            }
            None => {
                self.extra.dropped_no_socket.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_chain_list(
        &self,
        pad: &RtpMuxServerPad,
        list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let core = pad.imp().core();
        let Some(core) = core.as_ref() else {
            self.extra
                .dropped_no_socket
                .fetch_add(list.len() as u64, Ordering::Relaxed);
            return Ok(gst::FlowSuccess::Ok);
        };
        core.send_all(list.iter_owned().map(Packet));
        Ok(gst::FlowSuccess::Ok)
    }

    /// The link function of `src_N`: refuses a link to one of this
    /// element's own `sink_M` (the bin's state changes then lock the element
    /// twice and hang; the worker relays between channels itself,
    /// `relay-to`). GStreamer calls a source pad's link function when it has
    /// one and then not the sink pad's, so the check lives here alone.
    fn link(
        &self,
        pad: &gst::Pad,
        peer: &gst::Pad,
    ) -> Result<gst::PadLinkSuccess, gst::PadLinkError> {
        if peer.parent().as_ref() == Some(self.obj().upcast_ref::<gst::Object>()) {
            let (src, sink) = (pad.name(), peer.name());
            gst::element_imp_warning!(
                self,
                gst::CoreError::Pad,
                ("{src} cannot be linked to {sink} of the same element: set the relay-to \
                     property of the receiving channel's pad instead (the worker then relays \
                     the packets itself)")
            );
            return Err(gst::PadLinkError::WrongHierarchy);
        }
        Ok(gst::PadLinkSuccess)
    }

    fn new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: &str,
        slot: Arc<ChannelSlot>,
    ) -> RtpMuxServerPad {
        // No pad links to another: what one channel receives has nothing to do
        // with what another sends, and a src_N looped back into a sink_M must
        // not send events and queries round in circles.
        let builder = gst::PadBuilder::<RtpMuxServerPad>::from_template(templ)
            .name(name)
            .iterate_internal_links_function(|_pad, _parent| gst::Iterator::from_vec(vec![]));
        let pad = if templ.direction() == gst::PadDirection::Sink {
            builder
                .chain_function(|pad, parent, buffer| {
                    RtpMuxServer::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |imp| imp.sink_chain(pad, buffer),
                    )
                })
                .chain_list_function(|pad, parent, list| {
                    RtpMuxServer::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |imp| imp.sink_chain_list(pad, list),
                    )
                })
                .event_function(|pad, parent, event| {
                    RtpMuxServer::catch_panic_pad_function(
                        parent,
                        || false,
                        |imp| imp.sink_event(pad, event),
                    )
                })
                .build()
        } else {
            Self::src_functions(builder, slot.attach.clone()).build()
        };
        if templ.direction() == gst::PadDirection::Sink {
            slot.set_sink(&pad);
        }
        pad.imp().set_slot(slot);
        pad
    }

    /// What `src_N` and `src_all` share: a link refused to this element's
    /// own sink pads, `attach.linked` kept, and the latency of a live source.
    fn src_functions<T: IsA<gst::Pad> + IsA<glib::Object> + glib::object::IsClass>(
        builder: gst::PadBuilder<T>,
        attach: Arc<Attach>,
    ) -> gst::PadBuilder<T> {
        let on_unlink = attach.clone();
        builder
            .link_function(move |pad, parent, peer| {
                let linked = RtpMuxServer::catch_panic_pad_function(
                    parent,
                    || Err(gst::PadLinkError::Refused),
                    |imp| imp.link(pad.upcast_ref(), peer),
                );
                if linked.is_ok() {
                    attach.linked.store(true, Ordering::Release);
                }
                linked
            })
            .unlink_function(move |_pad, _parent| {
                on_unlink.linked.store(false, Ordering::Release);
            })
            .query_function(|pad, parent, query| match query.view_mut() {
                // Packets arrive live; the element adds no latency.
                gst::QueryViewMut::Latency(q) => {
                    q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                    true
                }
                _ => gst::Pad::query_default(pad, parent, query),
            })
    }

    /// `src_all`: what every channel without a `src_N` receives, one buffer
    /// per worker round.
    fn request_src_all(&self, templ: &gst::PadTemplate) -> Option<gst::Pad> {
        if lock(&self.all.out).is_some() {
            gst::warning!(CAT, imp = self, "pad {SRC_ALL} already exists");
            return None;
        }
        let pad = Self::src_functions(
            gst::PadBuilder::<gst::Pad>::from_template(templ).name(SRC_ALL),
            self.all.clone(),
        )
        .build();
        if let Err(e) = self.obj().add_pad(&pad) {
            gst::warning!(CAT, imp = self, "cannot add pad {SRC_ALL}: {e}");
            return None;
        }
        self.all.set_out(Some(SrcOut {
            pad: pad.clone(),
            caps: batch_caps(),
            need_events: true,
            sender: None,
        }));
        self.obj().child_added(&pad, SRC_ALL);
        Some(pad)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RtpMuxServer {
    const NAME: &'static str = "GstRtpMuxServer";
    type Type = super::RtpMuxServer;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for RtpMuxServer {
    fn constructed(&self) {
        self.parent_constructed();
        self.tick_ms.store(DEFAULT_TICK_MS, Ordering::Relaxed);
        self.gso.store(true, Ordering::Relaxed);
        *lock(&self.cname) = mux::default_cname();
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("tick")
                    .nick("Worker tick")
                    .blurb(
                        "Milliseconds between worker rounds: each round receives everything \
                         that arrived and sends everything queued since the last, in bigger \
                         recvmmsg/sendmmsg batches and with fewer wake-ups, at the cost of up to \
                         one tick of added latency. 0 (the default) handles every packet as \
                         soon as it arrives or is queued. RTCP reports go out up to a tick \
                         late, at most 20 ms (with a tick of up to 20 ms, on the next round), so \
                         that the reports falling due meanwhile share a wake-up.",
                    )
                    .maximum(MAX_TICK_MS)
                    .default_value(DEFAULT_TICK_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("workers")
                    .nick("Worker threads")
                    .blurb(
                        "Worker threads serving the channels, each with its own epoll set; a \
                         new channel goes to the one with the fewest channels (a channel joining \
                         a shared socket, to that socket's; one opening a socket while its \
                         relay-to channel is open, or after a channel added relaying to it, to \
                         that channel's unless it has two or more channels over the least loaded \
                         one, so a relay stays on one thread). \
                         Relays work across workers too. Every counter, statistic and setting \
                         behaves as with one. A channel's \
                         src_N pushes run on its worker's thread. More workers than cores \
                         only add switching: at most the cores this process may use. Applies \
                         at the next start (NULL or READY).",
                    )
                    .minimum(1)
                    .maximum(MAX_WORKERS)
                    .default_value(1)
                    .build(),
                glib::ParamSpecBoolean::builder("relay-offload")
                    .nick("Relay in the kernel")
                    .blurb(
                        "Have the kernel forward the RTP that channels relay (relay-to, one \
                         way or both, the two channels on one worker, both peers IPv4 or both \
                         IPv6), with no socket and no worker in the path: tc programs on every \
                         Ethernet and loopback interface (those that appear later too), a \
                         channel's route installed once its session has a confirmed source and \
                         its relay-to channel a target. Each direction's first packets, RTCP, another \
                         SSRC, a sequence jump and malformed packets still reach the worker, \
                         which handles them as ever. What the kernel forwarded is counted as \
                         the worker counts it (packets-received, relayed, the session's \
                         reception, the other channel's packets-sent), folded in every 100 ms \
                         and before each report, and shown apart in relayed-offloaded; it is \
                         not pushed on src_N or src_all. Needs root (CAP_BPF and \
                         CAP_NET_ADMIN) and Linux 6.6 or later: otherwise a WARNING message says \
                         why, and relaying stays in the workers. Off by default.",
                    )
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("gso")
                    .nick("UDP GSO")
                    .blurb(
                        "Send the packets a worker has for one address in a row, of one size \
                         (the last may be shorter) and of at most 1232 bytes, as one UDP GSO \
                         message (Linux UDP_SEGMENT) of up to 64: the kernel carries them as \
                         one and splits them into the same datagrams at the end (at the \
                         receiving socket on loopback, else in the network card or just \
                         before it). Channels of a shared socket sending to one peer's shared \
                         port, and channels with a batch queued, send that way. Peers receive \
                         the same datagrams either way; packet captures on loopback, and on \
                         cards that split UDP themselves, show the joined message. A message \
                         the kernel refuses is sent again datagram by datagram; when they go \
                         out so (a route that cannot take GSO), that worker joins none from \
                         then on. Ignored where the kernel lacks UDP_SEGMENT.",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("cname")
                    .nick("CNAME")
                    .blurb(
                        "RTCP canonical name (SDES CNAME) of every channel's session, at most \
                         255 bytes. Default: rtpsynth-<16 random hex digits>@<host name>, \
                         chosen once per element. A change applies to the channels opened \
                         after it (at the next start, or requested or re-opened while running).",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "application/x-rtpmuxserver-stats: totals over all channels served since \
                         the last start (u64: packets-received, octets-received, packets-sent, \
                         octets-sent = datagrams and UDP payload bytes, RTP and RTCP; \
                         dropped-queue-full, dropped-foreign-source, dropped-not-rtp, \
                         dropped-kernel = datagrams the kernel dropped on a full socket, \
                         send-errors, latched = channels latched now, channels, packets-pushed, \
                         dropped-downstream, dropped-no-socket, dropped-unknown-source = datagrams \
                         on shared sockets that belonged to no channel, relayed, not-relayed, \
                         relayed-offloaded = relayed by the kernel (see relay-offload), \
                         gso-messages = UDP GSO messages sent (see gso), each of 2 to 64 of \
                         the datagrams packets-sent counts; \
                         and the sums of the session \
                         counts: rtp-packets-received, rtp-payload-octets-received, \
                         packets-expected, packets-lost (i64), rtp-packets-sent, \
                         rtp-payload-octets-sent, rtcp-sent, rtcp-received, rtcp-dropped and \
                         its rtcp-dropped-<fault> parts, rtcp-not-report-first, sr-received, \
                         rr-received, bye-received) and one structure channel-N per open \
                         channel with the same counters (u64), local-port, then the RTP \
                         session's: local-ssrc, remote-ssrc, those counts, fraction-lost \
                         (of 256), jitter (timestamp units), jitter-us, max-jitter-us, \
                         remote-fraction-lost, remote-packets-lost (i64), remote-jitter-us, \
                         rtt-us, mos (x100), and remote-cname (string). Unknown values are \
                         G_MAXUINT64 (i64: G_MININT64).",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<glib::Bytes>("stats-packed")
                    .nick("Packed statistics")
                    .blurb(&format!(
                        "Every open channel's statistics in one read: little-endian 64-bit rows \
                         of as many columns as stats-columns names, signed columns \
                         (packets-lost, remote-packets-lost) as two's complement. Row 0 is a \
                         header [layout version ({}), columns, channel rows, 0...]; each \
                         following row is one channel, channel index first, then the columns \
                         of its channel-N structure but remote-cname.",
                        mux::PACKED_STATS_VERSION
                    ))
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<Vec<String>>("stats-columns")
                    .nick("Packed statistics columns")
                    .blurb("Names of the columns of stats-packed rows, in order.")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "tick" => {
                let ms: u32 = value.get().unwrap_or(DEFAULT_TICK_MS);
                self.tick_ms.store(ms, Ordering::Relaxed);
                if let Some(server) = lock(&self.server).as_ref() {
                    server.set_tick(Duration::from_millis(u64::from(ms)));
                }
            }
            "relay-offload" => {
                let on: bool = value.get().unwrap_or(false);
                self.relay_offload.store(on, Ordering::Relaxed);
                if let Some(server) = lock(&self.server).as_ref() {
                    self.apply_relay_offload(server);
                }
            }
            "gso" => {
                let gso: bool = value.get().unwrap_or(true);
                self.gso.store(gso, Ordering::Relaxed);
                if let Some(server) = lock(&self.server).as_ref() {
                    server.set_gso(gso);
                }
            }
            "workers" => {
                let n: u32 = value.get().unwrap_or(1);
                self.workers.store(n, Ordering::Relaxed);
            }
            "cname" => {
                let cname = value
                    .get::<Option<String>>()
                    .ok()
                    .flatten()
                    .unwrap_or_else(mux::default_cname);
                if cname.len() > rtpsynth_core::session::MAX_CNAME_LEN {
                    glib::g_warning!(
                        "rtpmuxserver",
                        "{}: cname of {} bytes is longer than {}; keeping {}",
                        self.obj().name(),
                        cname.len(),
                        rtpsynth_core::session::MAX_CNAME_LEN,
                        lock(&self.cname)
                    );
                    return;
                }
                if let Some(server) = lock(&self.server).as_ref()
                    && let Err(e) = server.set_cname(&cname)
                {
                    gst::warning!(CAT, imp = self, "{e}");
                }
                *lock(&self.cname) = cname;
            }
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "tick" => self.tick_ms.load(Ordering::Relaxed).to_value(),
            "workers" => self.worker_count().to_value(),
            "gso" => self.gso.load(Ordering::Relaxed).to_value(),
            "relay-offload" => self.relay_offload.load(Ordering::Relaxed).to_value(),
            "cname" => lock(&self.cname).to_value(),
            "stats" => self.stats().to_value(),
            "stats-packed" => self.packed_stats().to_value(),
            "stats-columns" => mux::packed_columns()
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
                .to_value(),
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for RtpMuxServer {}

impl ElementImpl for RtpMuxServer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTP mux server",
                "Source/Sink/Network/RTP",
                "Serves many RTP channels over UDP from its worker threads: sink_N sends, \
                 src_N receives (src_all: what every channel without a src_N receives, \
                 in batches), each channel on its own socket or a shared port",
                "gst-rtpsynth authors",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_empty_simple("application/x-rtp");
            let make = |name, direction| {
                gst::PadTemplate::builder(name, direction, gst::PadPresence::Request, &caps)
                    .gtype(RtpMuxServerPad::static_type())
                    .build()
                    .expect("static pad template is valid")
            };
            let all = gst::PadTemplate::new(
                SRC_ALL,
                gst::PadDirection::Src,
                gst::PadPresence::Request,
                &gst::Caps::new_empty_simple(BATCH_CAPS_NAME),
            )
            .expect("static pad template is valid");
            vec![
                make("sink_%u", gst::PadDirection::Sink),
                make("src_%u", gst::PadDirection::Src),
                all,
            ]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if templ.name_template() == SRC_ALL {
            return self.request_src_all(templ);
        }
        let is_sink = templ.direction() == gst::PadDirection::Sink;
        let prefix = if is_sink { "sink_" } else { "src_" };
        let mut channels = lock(&self.channels);
        let free = |e: Option<&Entry>| {
            e.is_none_or(|e| {
                if is_sink {
                    e.sink.is_none()
                } else {
                    e.src.is_none()
                }
            })
        };
        let index = match name {
            Some(name) => {
                let Some(index) = name
                    .strip_prefix(prefix)
                    .and_then(|i| i.parse::<u32>().ok())
                else {
                    gst::warning!(CAT, imp = self, "pad name {name} is not {prefix}<index>");
                    return None;
                };
                if !free(channels.get(&index)) {
                    gst::warning!(CAT, imp = self, "pad {name} already exists");
                    return None;
                }
                index
            }
            None => (0..=u32::MAX).find(|i| free(channels.get(i)))?,
        };
        let is_new = !channels.contains_key(&index);
        let slot = channels
            .entry(index)
            .or_insert_with(|| Entry {
                slot: Arc::new(ChannelSlot::new(index)),
                sink: None,
                src: None,
            })
            .slot
            .clone();
        let pad = self.new_pad(templ, &format!("{prefix}{index}"), slot.clone());
        let entry = channels.get_mut(&index)?;
        if is_sink {
            entry.sink = Some(pad.clone().upcast());
        } else {
            entry.src = Some(pad.clone().upcast());
        }
        drop(channels);
        if is_new
            && let Some(server) = lock(&self.server).as_ref()
            && let Err(e) = self.open_channel(server, &slot)
        {
            self.channel_failed(&slot, &e);
        }
        if let Err(e) = self.obj().add_pad(&pad) {
            gst::warning!(CAT, imp = self, "cannot add pad {}: {e}", pad.name());
            return None;
        }
        if !is_sink {
            // Set after add_pad, which activates the pad when running.
            slot.attach.set_out(Some(SrcOut {
                pad: pad.clone().upcast(),
                caps: slot.lock_settings().caps.clone(),
                need_events: true,
                sender: None,
            }));
        }
        self.obj().child_added(&pad, &pad.name());
        Some(pad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let is_all = lock(&self.all.out).as_ref().is_some_and(|o| &o.pad == pad);
        if is_all {
            self.all.set_out(None);
            let _ = pad.set_active(false);
            self.obj().child_removed(pad, SRC_ALL);
            let _ = self.obj().remove_pad(pad);
            return;
        }
        let Some(slot) = pad
            .downcast_ref::<RtpMuxServerPad>()
            .and_then(|p| p.imp().slot().cloned())
        else {
            return;
        };
        let mut channels = lock(&self.channels);
        let mut gone = false;
        if let Some(entry) = channels.get_mut(&slot.index) {
            if entry.sink.as_ref() == Some(pad) {
                entry.sink = None;
            }
            if entry.src.as_ref() == Some(pad) {
                entry.src = None;
                slot.attach.set_out(None);
            }
            gone = entry.sink.is_none() && entry.src.is_none();
            if gone {
                channels.remove(&slot.index);
            }
        }
        drop(channels);
        if gone && let Some(server) = lock(&self.server).as_ref() {
            Self::close_channel(server, &slot);
        }
        let _ = pad.set_active(false);
        self.obj().child_removed(pad, &pad.name());
        let _ = self.obj().remove_pad(pad);
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let mut result = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(e) = self.start() {
                    self.post_error_message(e);
                    return Err(gst::StateChangeError);
                }
                // A live source: nothing to preroll.
                result = gst::StateChangeSuccess::NoPreroll;
            }
            gst::StateChange::PlayingToPaused => result = gst::StateChangeSuccess::NoPreroll,
            gst::StateChange::PausedToReady => self.stop(),
            _ => {}
        }
        Ok(result)
    }
}

impl ChildProxyImpl for RtpMuxServer {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .pads()
            .into_iter()
            .nth(index as usize)
            .map(|p| p.upcast())
    }

    /// A channel pad by name; one not requested yet is requested, so that
    /// `gst-launch-1.0 rtpmuxserver sink_0::relay-to=1 sink_1::relay-to=0`
    /// makes a relay of channels nothing links to.
    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        if let Some(pad) = self.obj().static_pad(name) {
            return Some(pad.upcast());
        }
        let index = name
            .strip_prefix("sink_")
            .or_else(|| name.strip_prefix("src_"))?;
        index.parse::<u32>().ok()?;
        self.obj().request_pad_simple(name).map(|p| p.upcast())
    }

    fn children_count(&self) -> u32 {
        self.obj().num_pads() as u32
    }
}
