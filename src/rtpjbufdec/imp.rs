//! GStreamer glue for the jitter-buffer core: caps, events, state changes,
//! erasure signalling and the `stats` property. The algorithm is in
//! [`crate::jbuf`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::jbuf::{self, Config, Counters, Erasure, JitterBuffer, Output, PacketMeta};
use crate::rtp::{self, ParseError};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtpjbufdec",
        gst::DebugColorFlags::empty(),
        Some("Validating RTP jitter buffer"),
    )
});

/// How a void is signalled downstream.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRtpJbufDecErasureMode")]
pub enum ErasureMode {
    #[enum_value(
        name = "Push a GstRTPPacketLost event before the first packet after a void",
        nick = "event"
    )]
    Event = 0,
    #[enum_value(
        name = "Insert silence packets for PCMU, PCMA and L16 (other payloads: event)",
        nick = "silence"
    )]
    Silence = 1,
    #[enum_value(
        name = "Only set DISCONT on the first packet after a void",
        nick = "none"
    )]
    None = 2,
}

const DEFAULT_LATENCY_MS: u32 = 0;
const DEFAULT_ERASURE_MODE: ErasureMode = ErasureMode::Event;
/// Longest void filled with silence; a longer one (a broken timestamp, or
/// minutes of loss) is signalled with the event instead of allocating it.
const MAX_SILENCE_SECONDS: u64 = 10;

#[derive(Debug, Clone, Copy)]
struct Settings {
    capacity: u32,
    latency_ms: u32,
    max_dropout: u32,
    max_misorder: u32,
    erasure_mode: ErasureMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            capacity: jbuf::DEFAULT_CAPACITY as u32,
            latency_ms: DEFAULT_LATENCY_MS,
            max_dropout: u32::from(jbuf::DEFAULT_MAX_DROPOUT),
            max_misorder: u32::from(jbuf::DEFAULT_MAX_MISORDER),
            erasure_mode: DEFAULT_ERASURE_MODE,
        }
    }
}

impl Settings {
    fn config(&self) -> Config {
        Config {
            capacity: self.capacity as usize,
            latency_ns: u64::from(self.latency_ms) * 1_000_000,
            max_dropout: self.max_dropout as u16,
            max_misorder: self.max_misorder as u16,
        }
    }
}

/// What silence looks like in the negotiated payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SilenceFormat {
    /// The byte a silent payload is made of.
    byte: u8,
    /// Payload bytes per RTP timestamp tick (all channels).
    bytes_per_tick: u32,
}

/// What the caps tell about the stream.
#[derive(Debug, Clone, Copy, Default)]
struct Format {
    clock_rate: Option<u32>,
    silence: Option<SilenceFormat>,
}

impl Format {
    fn from_caps(caps: &gst::CapsRef) -> Self {
        let Some(s) = caps.structure(0) else {
            return Format::default();
        };
        let clock_rate = s
            .get::<i32>("clock-rate")
            .ok()
            .and_then(|r| u32::try_from(r).ok())
            .filter(|&r| r > 0);
        let name = s.get::<&str>("encoding-name").ok();
        let payload = s.get::<i32>("payload").ok();
        let channels = s
            .get::<&str>("encoding-params")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .or_else(|| {
                s.get::<i32>("channels")
                    .ok()
                    .and_then(|c| u32::try_from(c).ok())
            })
            .filter(|&c| c > 0);
        let silence = match (name, payload) {
            (Some(n), _) if n.eq_ignore_ascii_case("PCMU") => Some((0xff, 1)),
            (None, Some(0)) => Some((0xff, 1)),
            (Some(n), _) if n.eq_ignore_ascii_case("PCMA") => Some((0xd5, 1)),
            (None, Some(8)) => Some((0xd5, 1)),
            // RFC 3551: static payload 10 is stereo L16, 11 mono.
            (Some(n), p) if n.eq_ignore_ascii_case("L16") => {
                let ch = channels.unwrap_or(if p == Some(10) { 2 } else { 1 });
                Some((0, 2 * ch))
            }
            (None, Some(10)) => Some((0, 4)),
            (None, Some(11)) => Some((0, 2)),
            _ => None,
        }
        .filter(|_| clock_rate.is_some())
        .map(|(byte, bytes_per_tick)| SilenceFormat {
            byte,
            bytes_per_tick,
        });
        Format {
            clock_rate,
            silence,
        }
    }
}

/// Everything the streaming thread owns; locked for a whole chain call, so
/// a buffer list costs one lock, not one per packet.
struct Stream {
    jb: JitterBuffer<gst::MappedBuffer<gst::buffer::Readable>>,
    format: Format,
    /// PTS of the packet pushed last, for the timing of the next void.
    last_pts: Option<gst::ClockTime>,
    silence_packets: u64,
    /// Arrival clock for buffers that carry neither DTS nor PTS.
    epoch: Instant,
}

impl Stream {
    fn new(cfg: Config) -> Self {
        Stream {
            jb: JitterBuffer::new(cfg),
            format: Format::default(),
            last_pts: None,
            silence_packets: 0,
            epoch: Instant::now(),
        }
    }
}

/// Stats field names: the core's counters, then the element's own, then one
/// per parse fault, in the order [`Published`] stores them.
static STAT_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names = Counters::NAMES.to_vec();
    names.push("silence-packets");
    names.extend(
        ParseError::ALL
            .iter()
            .map(|e| &*format!("parse-error-{}", e.name()).leak()),
    );
    names
});

/// The last published stats, written by the streaming thread at the end of
/// each call with plain stores, so reading `stats` never waits on it.
struct Published(Vec<AtomicU64>);

impl Published {
    fn new() -> Self {
        Published(STAT_NAMES.iter().map(|_| AtomicU64::new(0)).collect())
    }

    fn store(&self, stream: &Stream) {
        let core = stream.jb.counters();
        let values = core
            .fields()
            .map(|(_, v)| v)
            .chain([stream.silence_packets])
            .chain(stream.jb.parse_errors());
        for (slot, v) in self.0.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    fn structure(&self) -> gst::Structure {
        crate::stats::to_structure(
            "application/x-rtpjbufdec-stats",
            STAT_NAMES
                .iter()
                .copied()
                .zip(self.0.iter().map(|v| v.load(Ordering::Relaxed))),
        )
    }
}

pub struct RtpJbufDec {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    stream: Mutex<Stream>,
    stats: Published,
}

/// Where the core's outputs go during one call: straight to the src pad, or
/// gathered into a list when a list came in.
struct Emitter<'a> {
    imp: &'a RtpJbufDec,
    mode: ErasureMode,
    format: Format,
    last_pts: &'a mut Option<gst::ClockTime>,
    silence_packets: &'a mut u64,
    list: Option<gst::BufferList>,
    as_list: bool,
    flow: Result<gst::FlowSuccess, gst::FlowError>,
}

impl Emitter<'_> {
    fn output(&mut self, o: Output<gst::MappedBuffer<gst::buffer::Readable>>) {
        match o {
            Output::Packet {
                item,
                meta: _,
                erasure,
            } => {
                let mut buffer = item.into_buffer();
                if let Some(e) = erasure {
                    let filled = self.signal_void(&e, buffer.pts());
                    if !filled {
                        buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
                    }
                }
                if buffer.pts().is_some() {
                    *self.last_pts = buffer.pts();
                }
                self.send(buffer);
            }
            Output::Dropped { item, reason } => {
                gst::trace!(
                    CAT,
                    imp = self.imp,
                    "dropped {:?}: {} bytes",
                    reason,
                    item.len()
                );
            }
        }
    }

    fn send(&mut self, buffer: gst::Buffer) {
        if self.as_list {
            self.list
                .get_or_insert_with(gst::BufferList::new)
                .make_mut()
                .add(buffer);
        } else {
            let r = self.imp.srcpad.push(buffer);
            self.merge(r);
        }
    }

    fn flush_list(&mut self) {
        if let Some(list) = self.list.take() {
            let r = self.imp.srcpad.push_list(list);
            self.merge(r);
        }
    }

    /// Keeps the first error: later pushes of this call still go out (they
    /// fail fast when downstream is flushing) so nothing is held back.
    fn merge(&mut self, r: Result<gst::FlowSuccess, gst::FlowError>) {
        if self.flow.is_ok() {
            self.flow = r;
        }
    }

    /// Signals the void `e` before a packet with PTS `pts_after`. Returns
    /// true when it was filled with silence packets (the first of which then
    /// carries DISCONT).
    fn signal_void(&mut self, e: &Erasure, pts_after: Option<gst::ClockTime>) -> bool {
        gst::debug!(
            CAT,
            imp = self.imp,
            "void of {} packets, seq {}..={}",
            e.count,
            e.first,
            e.last
        );
        let mode = self.mode;
        match mode {
            ErasureMode::None => false,
            ErasureMode::Silence if self.fill_silence(e) => true,
            ErasureMode::Event | ErasureMode::Silence => {
                match void_timing(e, *self.last_pts, pts_after, self.format.clock_rate) {
                    Some((start, duration)) => {
                        self.flush_list();
                        let r = self.imp.srcpad.push_event(lost_event(e, start, duration));
                        if !r {
                            gst::debug!(CAT, imp = self.imp, "packet-lost event not handled");
                        }
                    }
                    None => gst::debug!(
                        CAT,
                        imp = self.imp,
                        "no PTS nor clock-rate to time the void: DISCONT only"
                    ),
                }
                false
            }
        }
    }

    /// Sends silence packets covering the void, timed from the packet before
    /// it. False when the format or the timestamps do not allow it.
    fn fill_silence(&mut self, e: &Erasure) -> bool {
        let (Some(fmt), Some(rate)) = (self.format.silence, self.format.clock_rate) else {
            return false;
        };
        let before = &e.before;
        let dur_before = u64::from(before.payload_len / fmt.bytes_per_tick);
        let Some(ticks) = e.ts_diff.checked_sub(dur_before) else {
            return false;
        };
        if ticks < e.count || ticks > u64::from(rate) * MAX_SILENCE_SECONDS {
            return false;
        }
        let ns = |t: u64| {
            gst::ClockTime::from_nseconds((u128::from(t) * 1_000_000_000 / u128::from(rate)) as u64)
        };
        for k in 0..e.count {
            // Spread the void evenly; the offsets add up to exactly `ticks`.
            let from = dur_before + ticks * k / e.count;
            let to = dur_before + ticks * (k + 1) / e.count;
            let Some(mut buffer) = silence_packet(before, e.first + k, from, to - from, fmt) else {
                return false;
            };
            {
                let b = buffer.get_mut().expect("a new buffer is writable");
                if let Some(pts) = *self.last_pts {
                    b.set_pts(pts + ns(from));
                    b.set_duration(ns(to) - ns(from));
                }
                if k == 0 {
                    b.set_flags(gst::BufferFlags::DISCONT);
                }
            }
            *self.silence_packets += 1;
            self.send(buffer);
        }
        true
    }
}

/// A silent packet with sequence number `ext_seq` that starts `offset`
/// ticks after `before` and lasts `ticks`.
fn silence_packet(
    before: &PacketMeta,
    ext_seq: u64,
    offset: u64,
    ticks: u64,
    fmt: SilenceFormat,
) -> Option<gst::Buffer> {
    let header = rtp::Header {
        marker: false,
        payload_type: before.payload_type,
        seq: ext_seq as u16,
        timestamp: before.timestamp.wrapping_add(offset as u32),
        ssrc: before.ssrc,
    };
    let payload_len = usize::try_from(ticks * u64::from(fmt.bytes_per_tick)).ok()?;
    let mut data = vec![fmt.byte; rtp::HEADER_LEN + payload_len];
    data[..rtp::HEADER_LEN].copy_from_slice(&header.to_bytes());
    Some(gst::Buffer::from_mut_slice(data))
}

/// Start and duration of a void from the PTS around it, or, without a PTS
/// after it, from the RTP timestamp span and the clock rate.
fn void_timing(
    e: &Erasure,
    pts_before: Option<gst::ClockTime>,
    pts_after: Option<gst::ClockTime>,
    clock_rate: Option<u32>,
) -> Option<(gst::ClockTime, gst::ClockTime)> {
    let before = pts_before?;
    let span = match (pts_after, clock_rate) {
        (Some(after), _) if after > before => (after - before).nseconds(),
        (_, Some(rate)) => (u128::from(e.ts_diff) * 1_000_000_000 / u128::from(rate)) as u64,
        _ => return None,
    };
    // The packet before the void is taken to last as long as each missing one.
    let per_packet = span / (e.count + 1);
    Some((
        before + gst::ClockTime::from_nseconds(per_packet),
        gst::ClockTime::from_nseconds(span - per_packet),
    ))
}

/// The event stock `rtpjitterbuffer` sends for lost packets, which stock
/// depayloaders turn into GAP events, plus the full extent of the void.
fn lost_event(e: &Erasure, start: gst::ClockTime, duration: gst::ClockTime) -> gst::Event {
    let s = gst::Structure::builder("GstRTPPacketLost")
        .field("seqnum", u32::from(e.first as u16))
        .field("timestamp", start.nseconds())
        .field("duration", duration.nseconds())
        .field("retry", 0u32)
        .field("lseq-start", e.first)
        .field("lseq-end", e.last)
        .field("count", e.count)
        .field("ts-diff", e.ts_diff)
        .build();
    gst::event::CustomDownstream::new(s)
}

impl RtpJbufDec {
    fn lock_stream(&self) -> MutexGuard<'_, Stream> {
        // A panic elsewhere while holding the lock leaves plain counters and
        // buffers behind, still consistent enough to keep streaming.
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> Settings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with an emitter over the locked stream, then publishes the
    /// stats and returns the first flow error.
    fn with_emitter(
        &self,
        as_list: bool,
        f: impl FnOnce(
            &mut JitterBuffer<gst::MappedBuffer<gst::buffer::Readable>>,
            &mut Emitter<'_>,
            Instant,
        ),
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let mut guard = self.lock_stream();
        let stream = &mut *guard;
        stream.jb.set_limits(
            settings.config().latency_ns,
            settings.config().max_dropout,
            settings.config().max_misorder,
        );
        let mut em = Emitter {
            imp: self,
            mode: settings.erasure_mode,
            format: stream.format,
            last_pts: &mut stream.last_pts,
            silence_packets: &mut stream.silence_packets,
            list: None,
            as_list,
            flow: Ok(gst::FlowSuccess::Ok),
        };
        f(&mut stream.jb, &mut em, stream.epoch);
        em.flush_list();
        let flow = em.flow;
        self.stats.store(stream);
        flow
    }

    fn push_one(
        &self,
        jb: &mut JitterBuffer<gst::MappedBuffer<gst::buffer::Readable>>,
        em: &mut Emitter<'_>,
        epoch: Instant,
        buffer: gst::Buffer,
    ) -> Result<(), gst::FlowError> {
        // Live sources stamp arrival in DTS/PTS; without either, the wall
        // clock stands in.
        let arrival = buffer
            .dts_or_pts()
            .map_or_else(|| epoch.elapsed().as_nanos() as u64, |t| t.nseconds());
        let mapped = buffer.into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["Failed to map an input buffer for reading"]
            );
            gst::FlowError::Error
        })?;
        jb.push_owned(mapped, arrival, &mut |o| em.output(o));
        Ok(())
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut mapped = Ok(());
        let flow = self.with_emitter(false, |jb, em, epoch| {
            mapped = self.push_one(jb, em, epoch, buffer);
        });
        mapped?;
        flow
    }

    fn sink_chain_list(
        &self,
        mut list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut mapped = Ok(());
        let flow = self.with_emitter(true, |jb, em, epoch| {
            for buffer in list.make_mut().drain(..) {
                mapped = self.push_one(jb, em, epoch, buffer);
                if mapped.is_err() {
                    break;
                }
            }
        });
        mapped?;
        flow
    }

    /// Releases everything buffered downstream (EOS).
    fn drain(&self) {
        let _ = self.with_emitter(false, |jb, em, _| jb.flush(&mut |o| em.output(o)));
    }

    /// Throws away everything buffered, counted as dropped-flushing, and
    /// starts afresh (flush-stop, stop).
    fn discard(&self) {
        let mut stream = self.lock_stream();
        stream.jb.discard(&mut |_| {});
        stream.last_pts = None;
        self.stats.store(&stream);
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                let format = Format::from_caps(c.caps());
                gst::debug!(CAT, imp = self, "caps give {:?}", format);
                self.lock_stream().format = format;
            }
            gst::EventView::Eos(_) => self.drain(),
            gst::EventView::FlushStop(_) => self.discard(),
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            // Packets behind a void may wait this long before going out.
            let ours = gst::ClockTime::from_mseconds(u64::from(self.settings().latency_ms));
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RtpJbufDec {
    const NAME: &'static str = "GstRtpJbufDec";
    type Type = super::RtpJbufDec;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad =
            gst::Pad::builder_from_template(&klass.pad_template("sink").expect("sink template"))
                .chain_function(|_, parent, buffer| {
                    RtpJbufDec::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |imp| imp.sink_chain(buffer),
                    )
                })
                .chain_list_function(|_, parent, list| {
                    RtpJbufDec::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |imp| imp.sink_chain_list(list),
                    )
                })
                .event_function(|pad, parent, event| {
                    RtpJbufDec::catch_panic_pad_function(
                        parent,
                        || false,
                        |imp| imp.sink_event(pad, event),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        let srcpad =
            gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                .query_function(|pad, parent, query| {
                    RtpJbufDec::catch_panic_pad_function(
                        parent,
                        || false,
                        |imp| imp.src_query(pad, query),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        let settings = Settings::default();
        RtpJbufDec {
            sinkpad,
            srcpad,
            settings: Mutex::new(settings),
            stream: Mutex::new(Stream::new(settings.config())),
            stats: Published::new(),
        }
    }
}

impl ObjectImpl for RtpJbufDec {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("capacity")
                    .nick("Capacity")
                    .blurb(
                        "Packets the reorder buffer holds, from 2 to 65535. A packet up to \
                         capacity-1 places out of order is put back in order; when the buffer \
                         is full the oldest void is declared lost. Applies from the next \
                         READY to PAUSED change.",
                    )
                    .minimum(jbuf::MIN_CAPACITY as u32)
                    .maximum(jbuf::MAX_CAPACITY as u32)
                    .default_value(jbuf::DEFAULT_CAPACITY as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Longest time in milliseconds a packet waits behind a void, measured \
                         between buffer timestamps (DTS, else PTS) and checked when a packet \
                         arrives. 0 = wait until the buffer is full. In-order packets never wait.",
                    )
                    .maximum(60_000)
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-dropout")
                    .nick("Max dropout")
                    .blurb(
                        "Largest forward jump in sequence numbers still taken as loss in the \
                         same stream (RFC 3550 A.1); a larger jump is held until a second \
                         packet agrees with it, then the stream restarts (counted in resyncs).",
                    )
                    .minimum(1)
                    .maximum(u32::from(jbuf::MAX_SEQ_LIMIT))
                    .default_value(u32::from(jbuf::DEFAULT_MAX_DROPOUT))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-misorder")
                    .nick("Max misorder")
                    .blurb(
                        "Largest backward step in sequence numbers still taken as a late or \
                         duplicate packet of the same stream; a larger one is treated like a \
                         jump beyond max-dropout. 0 = any step back is a jump.",
                    )
                    .maximum(u32::from(jbuf::MAX_SEQ_LIMIT))
                    .default_value(u32::from(jbuf::DEFAULT_MAX_MISORDER))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("erasure-mode", DEFAULT_ERASURE_MODE)
                    .nick("Erasure mode")
                    .blurb(
                        "How a void is signalled: event = a GstRTPPacketLost downstream event \
                         (as rtpjitterbuffer sends) before the next packet; silence = silence \
                         packets for PCMU, PCMA and L16, the event for other payloads; \
                         none = only the DISCONT flag. DISCONT is set in every mode.",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "application/x-rtpjbufdec-stats with u64 counters: received = pushed + \
                         dropped-duplicate + dropped-late + dropped-parse + dropped-outlier + \
                         dropped-flushing + buffered (packets held now), at every moment; \
                         parse-error-<fault> break dropped-parse down; erasures and \
                         erased-packets count voids and the packets in them; resyncs, \
                         ssrc-changes, silence-packets (inserted, not counted in pushed) and \
                         max-buffered.",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match pspec.name() {
            "capacity" => s.capacity = value.get().expect("type checked upstream"),
            "latency" => s.latency_ms = value.get().expect("type checked upstream"),
            "max-dropout" => s.max_dropout = value.get().expect("type checked upstream"),
            "max-misorder" => s.max_misorder = value.get().expect("type checked upstream"),
            "erasure-mode" => s.erasure_mode = value.get().expect("type checked upstream"),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "capacity" => s.capacity.to_value(),
            "latency" => s.latency_ms.to_value(),
            "max-dropout" => s.max_dropout.to_value(),
            "max-misorder" => s.max_misorder.to_value(),
            "erasure-mode" => s.erasure_mode.to_value(),
            "stats" => self.stats.structure().to_value(),
            other => unimplemented!("property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("new sink pad");
        obj.add_pad(&self.srcpad).expect("new src pad");
    }
}

impl GstObjectImpl for RtpJbufDec {}

impl ElementImpl for RtpJbufDec {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTP validating jitter buffer",
                "Filter/Network/RTP",
                "Validates RTP datagrams, puts them back in sequence order in a fixed-capacity \
                 buffer without waiting on a clock, drops and counts duplicates, late and \
                 malformed packets, and signals every void downstream",
                "gst-rtpsynth developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_empty_simple("application/x-rtp");
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            // The capacity sizes the ring, so it is read once per run.
            let cfg = self.settings().config();
            let mut stream = self.lock_stream();
            let format = stream.format;
            *stream = Stream::new(cfg);
            stream.format = format;
            self.stats.store(&stream);
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            // The pads are inactive now, so nothing buffered can go out.
            self.discard();
        }
        Ok(ret)
    }
}
