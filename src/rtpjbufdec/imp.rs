//! GStreamer glue for the jitter-buffer core: caps, events, state changes,
//! erasure signalling and the `stats` property. The algorithm is in
//! [`rtpsynth_core::jbuf`].

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use rtpsynth_core::arith::mul_div_floor;
use rtpsynth_core::jbuf::{
    self, Config, Counters, Erasure, JitterBuffer, Output, PacketMeta, Sink,
};
use rtpsynth_core::rtp::{self, ParseError};

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
/// How long a stop waits for the streaming thread to leave the element
/// before giving up on pushing what is buffered. A chain call takes
/// microseconds; one that takes this long is blocked.
const STOP_LOCK_WAIT: Duration = Duration::from_millis(100);

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
        // encoding-params is a string in SDP-derived caps; accept an int too.
        let int = |field: &str| s.get::<i32>(field).ok().and_then(|c| u32::try_from(c).ok());
        let channels = s
            .get::<&str>("encoding-params")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .or_else(|| int("encoding-params"))
            .or_else(|| int("channels"))
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

/// A packet handle in the core: an index into the input of the current
/// call until the core keeps it past the call (see [`Emitter::hold`]).
enum Item {
    Input(u32),
    Held(gst::Buffer),
}

/// What one call sends downstream, in order.
enum Step {
    /// Input buffer `index`, with DISCONT added when `discont`.
    Input {
        index: u32,
        discont: bool,
    },
    /// A received buffer kept from an earlier call.
    Held(gst::Buffer),
    /// A synthesized silence packet.
    Silence(gst::Buffer),
    Event(gst::Event),
}

/// The buffers a call brought in, owned.
enum Owned {
    None,
    One(gst::Buffer),
    List(gst::BufferList),
}

impl Owned {
    fn as_input(&self) -> Input<'_> {
        match self {
            Owned::None => Input::None,
            Owned::One(b) => Input::One(b),
            Owned::List(l) => Input::List(l.as_ref()),
        }
    }
}

/// The buffers a call brought in, borrowed while the core runs.
#[derive(Clone, Copy)]
enum Input<'a> {
    None,
    One(&'a gst::Buffer),
    List(&'a gst::BufferListRef),
}

impl<'a> Input<'a> {
    fn len(self) -> usize {
        match self {
            Input::None => 0,
            Input::One(_) => 1,
            Input::List(l) => l.len(),
        }
    }

    fn get(self, index: u32) -> Option<&'a gst::BufferRef> {
        match self {
            Input::None => None,
            Input::One(b) => (index == 0).then_some(b.as_ref()),
            Input::List(l) => l.get(index as usize),
        }
    }

    /// A new reference to buffer `index` (`BufferRef::to_owned` would copy).
    fn get_owned(self, index: u32) -> Option<gst::Buffer> {
        match self {
            Input::None => None,
            Input::One(b) => (index == 0).then(|| b.clone()),
            Input::List(l) => l.get_owned(index as usize),
        }
    }
}

/// Everything the streaming thread owns; locked for a whole chain call, so
/// a buffer list costs one lock, not one per packet.
struct Stream {
    jb: JitterBuffer<Item>,
    format: Format,
    /// PTS of the packet pushed last, for the timing of the next void.
    last_pts: Option<gst::ClockTime>,
    silence_packets: u64,
    /// Received packets the core released but downstream refused because
    /// it was flushing: counted as dropped-flushing, not pushed.
    refused: u64,
    /// Arrival clock for buffers that carry neither DTS nor PTS.
    epoch: Instant,
    /// Reused by every call, so planning the output allocates nothing.
    steps: Vec<Step>,
    /// Reused: the input buffers taken out of their list when the output
    /// differs from the input.
    taken: Vec<Option<gst::Buffer>>,
    /// The input's segment, which turns buffer timestamps into running
    /// times in a live pipeline.
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// The clock wait for the packets waiting behind a void, while some do
    /// in a live pipeline.
    timer: Option<Timer>,
    /// Tells a timer that fires from one that was replaced since.
    timers_armed: u64,
}

impl Stream {
    fn new(cfg: Config) -> Self {
        Stream {
            jb: JitterBuffer::new(cfg),
            format: Format::default(),
            last_pts: None,
            silence_packets: 0,
            refused: 0,
            epoch: Instant::now(),
            steps: Vec::new(),
            taken: Vec::new(),
            segment: gst::FormattedSegment::new(),
            timer: None,
            timers_armed: 0,
        }
    }

    fn cancel_timer(&mut self) {
        if let Some(t) = self.timer.take() {
            t.id.unschedule();
        }
    }
}

/// A single-shot wait on the pipeline clock until packets waiting behind a
/// void are due.
struct Timer {
    id: gst::SingleShotClockId,
    /// The core's due time ([`JitterBuffer::next_expiry`]) it waits for.
    due: u64,
    /// Which arming this is (see [`Stream::timers_armed`]).
    number: u64,
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

/// `jitter` when it cannot be known: the caps give no clock-rate.
const JITTER_UNKNOWN: u64 = u64::MAX;

/// The last published stats, written by the streaming thread at the end of
/// each call with plain stores, so reading `stats` never waits on it.
struct Published {
    /// The counters, in [`STAT_NAMES`] order.
    counters: Vec<AtomicU64>,
    /// RFC 3550 receive statistics: packets expected, packets lost (an
    /// `i64` stored as its bits) and jitter.
    expected: AtomicU64,
    lost: AtomicU64,
    jitter: AtomicU64,
}

impl Published {
    fn new() -> Self {
        Published {
            counters: STAT_NAMES.iter().map(|_| AtomicU64::new(0)).collect(),
            expected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            jitter: AtomicU64::new(JITTER_UNKNOWN),
        }
    }

    fn store(&self, stream: &Stream) {
        let mut core = stream.jb.counters();
        core.pushed -= stream.refused;
        core.dropped_flushing += stream.refused;
        let values = core
            .fields()
            .map(|(_, v)| v)
            .chain([stream.silence_packets])
            .chain(stream.jb.parse_errors());
        for (slot, v) in self.counters.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
        let r = stream.jb.reception();
        self.expected.store(r.expected, Ordering::Relaxed);
        self.lost.store(r.lost as u64, Ordering::Relaxed);
        self.jitter.store(
            r.jitter.map_or(JITTER_UNKNOWN, u64::from),
            Ordering::Relaxed,
        );
    }

    fn structure(&self) -> gst::Structure {
        let mut s = crate::stats::to_structure(
            "application/x-rtpjbufdec-stats",
            STAT_NAMES
                .iter()
                .copied()
                .zip(self.counters.iter().map(|v| v.load(Ordering::Relaxed))),
        );
        // Not counters: packets-lost is signed (duplicates can outnumber
        // losses), jitter an estimate; each keeps its one type.
        s.set("packets-expected", self.expected.load(Ordering::Relaxed));
        s.set("packets-lost", self.lost.load(Ordering::Relaxed) as i64);
        s.set("jitter", self.jitter.load(Ordering::Relaxed));
        s
    }
}

pub struct RtpJbufDec {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    stream: Mutex<Stream>,
    stats: Published,
    /// Upstream is live, as its answer to the last latency query said: only
    /// then do packets behind a void leave by the clock, not only on arrival.
    live: AtomicBool,
    /// Upstream's minimum latency from that answer, in ns: live buffer
    /// timestamps are capture times, which reach us that much later.
    upstream_latency_ns: AtomicU64,
}

/// Turns the core's outputs of one call into [`Step`]s.
struct Emitter<'a> {
    imp: &'a RtpJbufDec,
    mode: ErasureMode,
    format: Format,
    input: Input<'a>,
    last_pts: &'a mut Option<gst::ClockTime>,
    silence_packets: &'a mut u64,
    steps: &'a mut Vec<Step>,
}

impl Sink<Item> for Emitter<'_> {
    #[inline]
    fn emit(&mut self, o: Output<Item>) {
        match o {
            Output::Packet { item, erasure, .. } => {
                let pts = match &item {
                    Item::Input(i) => self.input.get(*i).and_then(|b| b.pts()),
                    Item::Held(b) => b.pts(),
                };
                let discont = match erasure {
                    Some(e) => !self.signal_void(&e, pts),
                    None => false,
                };
                // A packet without PTS leaves the next void untimed rather
                // than timed from an older packet.
                *self.last_pts = pts;
                self.steps.push(match item {
                    Item::Input(index) => Step::Input { index, discont },
                    Item::Held(mut b) => {
                        if discont {
                            b.make_mut().set_flags(gst::BufferFlags::DISCONT);
                        }
                        Step::Held(b)
                    }
                });
            }
            Output::Dropped { reason, .. } => {
                gst::trace!(CAT, imp = self.imp, "dropped: {:?}", reason);
            }
        }
    }

    /// The core keeps this packet past the call: take a reference to it
    /// (no copy), as the input goes downstream or away when the call ends.
    #[inline]
    fn hold(&mut self, item: &mut Item) {
        if let Item::Input(i) = *item
            && let Some(b) = self.input.get_owned(i)
        {
            *item = Item::Held(b);
        }
    }
}

impl Emitter<'_> {
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
                        self.steps.push(Step::Event(lost_event(e, start, duration)));
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

    /// Plans silence packets covering the void, timed from the packet
    /// before it. False when the format or the timestamps do not allow it.
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
            gst::ClockTime::from_nseconds(mul_div_floor(t, 1_000_000_000, u64::from(rate)) as u64)
        };
        // `count` is below 2^17 (seq distance plus capacity) and `ticks`
        // below 2^35, so `ticks * count` cannot overflow.
        for k in 0..e.count {
            // Spread the void evenly; the pieces add up to exactly `ticks`.
            let from = dur_before + ticks * k / e.count;
            let to = dur_before + ticks * (k + 1) / e.count;
            let mut buffer = silence_packet(before, e.first + k, from, to - from, fmt);
            let b = buffer.make_mut();
            // A PTS near the end of time (bad input) leaves the packet
            // without one rather than overflowing.
            if let Some(pts) = self.last_pts.and_then(|p| p.checked_add(ns(from))) {
                b.set_pts(pts);
                b.set_duration(ns(to) - ns(from));
            }
            if k == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            *self.silence_packets += 1;
            self.steps.push(Step::Silence(buffer));
        }
        true
    }
}

/// Packets of one push, by kind: the stats count them apart.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    received: u64,
    silence: u64,
}

impl Tally {
    fn of(silence: bool) -> Self {
        Tally {
            received: u64::from(!silence),
            silence: u64::from(silence),
        }
    }

    fn add(&mut self, other: Tally) {
        self.received += other.received;
        self.silence += other.silence;
    }
}

/// Pushes the planned buffers, gathered into lists when a list came in.
struct Sender<'a> {
    imp: &'a RtpJbufDec,
    list: Option<gst::BufferList>,
    /// What `list` holds.
    in_list: Tally,
    capacity: usize,
    as_list: bool,
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// Packets downstream refused because it was flushing.
    refused: Tally,
}

impl Sender<'_> {
    fn send(&mut self, buffer: gst::Buffer, silence: bool) {
        if self.as_list {
            let capacity = self.capacity;
            self.list
                .get_or_insert_with(|| gst::BufferList::new_sized(capacity))
                .make_mut()
                .add(buffer);
            self.in_list.add(Tally::of(silence));
        } else {
            let r = self.imp.srcpad.push(buffer);
            self.merge(r, Tally::of(silence));
        }
    }

    fn flush_list(&mut self) {
        if let Some(list) = self.list.take() {
            let r = self.imp.srcpad.push_list(list);
            let tally = std::mem::take(&mut self.in_list);
            self.merge(r, tally);
        }
    }

    /// Keeps the first error: later pushes of this call still go out (they
    /// fail fast when downstream is flushing) so nothing is held back.
    fn merge(&mut self, r: Result<gst::FlowSuccess, gst::FlowError>, pushed: Tally) {
        if r == Err(gst::FlowError::Flushing) {
            // A flushing pad takes nothing: these packets went nowhere.
            self.refused.add(pushed);
        }
        if self.flow.is_ok() {
            self.flow = r;
        }
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
) -> gst::Buffer {
    let header = rtp::Header {
        marker: false,
        payload_type: before.payload_type,
        seq: ext_seq as u16,
        timestamp: before.timestamp.wrapping_add(offset as u32),
        ssrc: before.ssrc,
    };
    // The caller bounds `ticks` to MAX_SILENCE_SECONDS, so this is small.
    let payload_len = (ticks * u64::from(fmt.bytes_per_tick)) as usize;
    let mut data = vec![fmt.byte; rtp::HEADER_LEN + payload_len];
    data[..rtp::HEADER_LEN].copy_from_slice(&header.to_bytes());
    gst::Buffer::from_mut_slice(data)
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
        (_, Some(rate)) => mul_div_floor(e.ts_diff, 1_000_000_000, u64::from(rate)) as u64,
        _ => return None,
    };
    // The packet before the void is taken to last as long as each missing one.
    let per_packet = span / (e.count + 1);
    Some((
        before.checked_add(gst::ClockTime::from_nseconds(per_packet))?,
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

/// Whether a drain forgets the stream.
#[derive(Debug, Clone, Copy)]
enum End {
    Stream,
    KeepStream,
}

/// A pad's stream lock taken with a try-lock: GStreamer's public
/// `GST_PAD_STREAM_TRYLOCK` / `GST_PAD_STREAM_UNLOCK` macros, which
/// gstreamer-rs does not bind (`Pad::stream_lock` waits for ever). Like
/// those macros (and gstreamer-rs's `stream_lock`) it reaches the lock
/// through `GST_PAD_GET_STREAM_LOCK`'s field. Released on drop, on the
/// thread that took it (the raw-pointer marker keeps it from being sent).
struct PadStreamLock<'a>(&'a gst::Pad, PhantomData<*const ()>);

impl<'a> PadStreamLock<'a> {
    fn try_lock(pad: &'a gst::Pad) -> Option<Self> {
        // SAFETY: the GRecMutex lives as long as the pad, which the guard
        // borrows; it is reached by raw pointer, as gstreamer-rs's own
        // `stream_lock` does, and unlocked once, by `drop`, on this thread.
        let locked = unsafe {
            let lock = std::ptr::addr_of_mut!((*pad.as_ptr()).stream_rec_lock);
            glib::ffi::g_rec_mutex_trylock(lock) != glib::ffi::GFALSE
        };
        locked.then_some(PadStreamLock(pad, PhantomData))
    }
}

impl Drop for PadStreamLock<'_> {
    fn drop(&mut self) {
        // SAFETY: taken by `try_lock` on this thread (the guard is not Send)
        // and not released since.
        unsafe {
            let lock = std::ptr::addr_of_mut!((*self.0.as_ptr()).stream_rec_lock);
            glib::ffi::g_rec_mutex_unlock(lock);
        }
    }
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

    /// Now, in the clock of live arrival times: the running time of the
    /// pipeline clock, less upstream's latency (a buffer stamped now would
    /// carry that capture time). `None` without a clock.
    fn live_now(&self) -> Option<u64> {
        let obj = self.obj();
        let running = obj.current_running_time()?;
        Some(
            running
                .nseconds()
                .saturating_sub(self.upstream_latency_ns.load(Ordering::Relaxed)),
        )
    }

    /// Makes the clock wait match what waits behind a void: one single-shot
    /// wait, in a live pipeline with `latency`, until the first packet
    /// waiting is due; none otherwise (in order, nothing waits, and a
    /// non-live pipeline never waits on a clock).
    fn reschedule(&self, stream: &mut Stream, live: bool) {
        let due = if live { stream.jb.next_expiry() } else { None };
        match (&stream.timer, due) {
            (None, None) => return,
            (Some(t), Some(due)) if t.due == due => return,
            _ => stream.cancel_timer(),
        }
        let Some(due) = due else {
            return;
        };
        let obj = self.obj();
        let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
            gst::debug!(
                CAT,
                imp = self,
                "live but no clock: packets wait for the next one"
            );
            return;
        };
        let upstream = self.upstream_latency_ns.load(Ordering::Relaxed);
        let Some(at) =
            base.checked_add(gst::ClockTime::from_nseconds(due.saturating_add(upstream)))
        else {
            return;
        };
        stream.timers_armed += 1;
        let number = stream.timers_armed;
        let id = clock.new_single_shot_id(at);
        let element = obj.downgrade();
        // The clock calls back on its own thread, shared by every wait on
        // it: hand the work to GStreamer's thread pool, where pushing
        // downstream may block.
        let armed = id.wait_async(move |_, _, _| {
            if let Some(element) = element.upgrade() {
                element.call_async(move |element| element.imp().on_due(number));
            }
        });
        match armed {
            Ok(_) => stream.timer = Some(Timer { id, due, number }),
            Err(e) => gst::debug!(CAT, imp = self, "clock wait refused: {:?}", e),
        }
    }

    /// A timer fired: releases what is due, as an arrival would have.
    fn on_due(&self, number: u64) {
        // The chain function's locks, in its order, so what goes out keeps
        // its place among the packets and events of the streaming thread.
        let _stream_lock = self.sinkpad.stream_lock();
        {
            let mut stream = self.lock_stream();
            if stream.timer.as_ref().is_some_and(|t| t.number == number) {
                stream.timer = None;
            }
        }
        if self.srcpad.pad_flags().contains(gst::PadFlags::FLUSHING) {
            // Stopping or flushing: the stop or the flush-stop pushes what
            // is buffered.
            return;
        }
        if self.obj().current_state() != gst::State::Playing {
            // Paused: the running time stands still; back in PLAYING, the
            // wait is armed again from the new base time.
            return;
        }
        let Some(now) = self.live_now() else {
            return;
        };
        gst::log!(CAT, imp = self, "timer: releasing what is due at {}", now);
        if let Err(e) = self.process(Owned::None, |jb, em| jb.release_expired(now, em)) {
            gst::debug!(CAT, imp = self, "pushing what was due: {:?}", e);
        }
    }

    fn cancel_timer(&self) {
        self.lock_stream().cancel_timer();
    }

    /// Runs the buffers of `owned` (none for a drain) and then `finish`
    /// through the core under one lock, then sends what it planned: the input
    /// itself when it goes out unchanged (the common, in-order case), else
    /// buffers and events in order, as lists when a list came in.
    fn process(
        &self,
        owned: Owned,
        finish: impl FnOnce(&mut JitterBuffer<Item>, &mut Emitter<'_>),
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings();
        let cfg = settings.config();
        let mut guard = self.lock_stream();
        let stream = &mut *guard;
        stream
            .jb
            .set_limits(cfg.latency_ns, cfg.max_dropout, cfg.max_misorder);
        stream.jb.set_clock_rate(stream.format.clock_rate);
        let input = owned.as_input();
        let mut em = Emitter {
            imp: self,
            mode: settings.erasure_mode,
            format: stream.format,
            input,
            last_pts: &mut stream.last_pts,
            silence_packets: &mut stream.silence_packets,
            steps: &mut stream.steps,
        };
        let live = self.live.load(Ordering::Relaxed);
        // The clock's time, read at most once per call (it takes a lock).
        let mut live_now = None;
        for index in 0..input.len() as u32 {
            let Some(buffer) = input.get(index) else {
                break;
            };
            // Live sources stamp arrival in DTS/PTS; without either, the
            // wall clock stands in. In a live pipeline, arrival times are
            // running times, which the pipeline clock's timer can wait for.
            let stamped = buffer.dts_or_pts();
            let arrival = if live {
                stamped
                    .and_then(|t| stream.segment.to_running_time(t))
                    .map(gst::ClockTime::nseconds)
                    .or_else(|| *live_now.get_or_insert_with(|| self.live_now()))
                    .unwrap_or_else(|| stream.epoch.elapsed().as_nanos() as u64)
            } else {
                stamped.map_or_else(
                    || stream.epoch.elapsed().as_nanos() as u64,
                    gst::ClockTime::nseconds,
                )
            };
            let mapped = if buffer.n_memory() == 1 {
                // Cheaper than mapping the buffer: no merged-memory lookup.
                buffer.peek_memory(0).map_readable().map(|m| {
                    stream.jb.push(&m, arrival, Item::Input(index), &mut em);
                })
            } else {
                buffer.map_readable().map(|m| {
                    stream.jb.push(&m, arrival, Item::Input(index), &mut em);
                })
            };
            if mapped.is_err() {
                // Fatal: the flow error stops the stream, so nothing planned
                // for this call may leak into a later one.
                stream.steps.clear();
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["Failed to map input buffer {} for reading", index]
                );
                return Err(gst::FlowError::Error);
            }
        }
        finish(&mut stream.jb, &mut em);
        self.stats.store(stream);
        self.reschedule(stream, live);

        let n = input.len();
        let unchanged = stream.steps.len() == n
            && stream.steps.iter().enumerate().all(
                |(i, s)| matches!(s, Step::Input { index, discont: false } if *index as usize == i),
            );
        if unchanged {
            stream.steps.clear();
            drop(guard);
            let flow = match owned {
                Owned::None => Ok(gst::FlowSuccess::Ok),
                Owned::One(b) => self.srcpad.push(b),
                Owned::List(l) => self.srcpad.push_list(l),
            };
            if flow == Err(gst::FlowError::Flushing) {
                let mut stream = self.lock_stream();
                stream.refused += n as u64;
                self.stats.store(&stream);
            }
            return flow;
        }
        // Take the input buffers out of their list rather than adding
        // references: a buffer in two lists at once costs an allocation.
        let as_list = matches!(owned, Owned::List(_));
        let taken = &mut stream.taken;
        match owned {
            Owned::None => {}
            Owned::One(b) => taken.push(Some(b)),
            Owned::List(mut l) => {
                taken.resize_with(n, || None);
                // From the back: each removal from the front would move the
                // rest of the list.
                for (slot, b) in taken.iter_mut().rev().zip(l.make_mut().drain(..).rev()) {
                    *slot = Some(b);
                }
            }
        }
        let mut out = Sender {
            imp: self,
            list: None,
            in_list: Tally::default(),
            capacity: stream.steps.len(),
            as_list,
            flow: Ok(gst::FlowSuccess::Ok),
            refused: Tally::default(),
        };
        for step in stream.steps.drain(..) {
            match step {
                Step::Input { index, discont } => {
                    let Some(mut b) = taken.get_mut(index as usize).and_then(Option::take) else {
                        continue;
                    };
                    if discont {
                        b.make_mut().set_flags(gst::BufferFlags::DISCONT);
                    }
                    out.send(b, false);
                }
                Step::Held(b) => out.send(b, false),
                Step::Silence(b) => out.send(b, true),
                Step::Event(e) => {
                    out.flush_list();
                    if !self.srcpad.push_event(e) {
                        gst::debug!(CAT, imp = self, "packet-lost event not handled downstream");
                    }
                }
            }
        }
        // Buffers not sent (dropped, or now held by the core as references)
        // are released here.
        taken.clear();
        out.flush_list();
        if out.refused.received + out.refused.silence > 0 {
            stream.refused += out.refused.received;
            // Not inserted after all: the stream never had them.
            stream.silence_packets -= out.refused.silence;
            self.stats.store(stream);
        }
        out.flow
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.process(Owned::One(buffer), |_, _| {})
    }

    fn sink_chain_list(&self, list: gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.process(Owned::List(list), |_, _| {})
    }

    /// Pushes everything buffered, in order, with the voids between runs
    /// signalled as `erasure-mode` says. `end` also forgets the stream (EOS,
    /// stream-start, flush-stop, stop): the next packet starts a new one. A
    /// drain that keeps the stream (any other serialized event) leaves a
    /// packet that fills a void later to be counted late.
    fn drain(&self, end: End) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.process(Owned::None, |jb, em| match end {
            End::Stream => jb.flush(em),
            End::KeepStream => jb.release_buffered(em),
        })
    }

    /// Throws away everything buffered, counted as dropped-flushing, and
    /// starts afresh: for what a stop could not push.
    fn discard(&self) {
        let mut stream = self.lock_stream();
        stream.cancel_timer();
        stream.jb.discard(&mut |_: Output<Item>| {});
        stream.last_pts = None;
        self.stats.store(&stream);
    }

    /// Forwards the flush-stop, then pushes what was buffered: the src pad
    /// takes data again once the flush-stop has gone through it.
    fn sink_flush_stop(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        // The flush-stop takes the segment off the src pad, but the packets
        // still buffered were received in it: it goes out again before them
        // (upstream sends the new one after the flush-stop, as usual).
        let segment = self.srcpad.sticky_event::<gst::event::Segment>(0);
        let forwarded = gst::Pad::event_default(pad, Some(&*self.obj()), event);
        let buffered = self.lock_stream().jb.buffered() > 0;
        if buffered && let Some(segment) = segment {
            self.srcpad.push_event(segment);
        }
        if let Err(e) = self.drain(End::Stream) {
            gst::debug!(CAT, imp = self, "after flush-stop, downstream: {:?}", e);
        }
        forwarded
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        // A serialized event must not overtake packets received before it:
        // what is buffered goes out first. Draining is simpler than queueing
        // the event among the packets, and a serialized event in the middle
        // of a stream is rare enough that declaring its voids early costs
        // little.
        let end = match event.view() {
            gst::EventView::FlushStop(_) => return self.sink_flush_stop(pad, event),
            gst::EventView::FlushStart(_) => {
                // Forwarded first: a chain call blocked downstream holds the
                // stream, and returns once downstream flushes.
                let forwarded = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                self.cancel_timer();
                return forwarded;
            }
            gst::EventView::Eos(_) | gst::EventView::StreamStart(_) => Some(End::Stream),
            _ if event.is_serialized() => Some(End::KeepStream),
            _ => None,
        };
        if let Some(end) = end
            && let Err(e) = self.drain(end)
        {
            gst::debug!(
                CAT,
                imp = self,
                "draining before {:?}: {:?}",
                event.type_(),
                e
            );
        }
        if let gst::EventView::Segment(e) = event.view() {
            // After the drain, as caps: what was buffered came in the old one.
            if let Ok(segment) = e.segment().clone().downcast::<gst::ClockTime>() {
                self.lock_stream().segment = segment;
            }
        }
        if let gst::EventView::Caps(c) = event.view() {
            // After the drain: packets received before the caps went out
            // with the old format.
            let format = Format::from_caps(c.caps());
            gst::debug!(CAT, imp = self, "caps give {:?}", format);
            let mut stream = self.lock_stream();
            stream.format = format;
            stream.jb.set_clock_rate(format.clock_rate);
            self.stats.store(&stream);
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// The sink pad's stream lock, so a stop can push what is buffered
    /// without racing a chain call; `None` when the streaming thread keeps
    /// it for longer than `wait` (a chain call blocked in a push
    /// downstream), as waiting on it then would hang the state change.
    fn try_stream_lock(&self, wait: Duration) -> Option<PadStreamLock<'_>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = PadStreamLock::try_lock(&self.sinkpad) {
                return Some(lock);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            self.live.store(live, Ordering::Relaxed);
            self.upstream_latency_ns
                .store(min.nseconds(), Ordering::Relaxed);
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
            live: AtomicBool::new(false),
            upstream_latency_ns: AtomicU64::new(0),
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
                         capacity-1 places out of order is put back in order (before a \
                         stream's first packet: among its first three arrivals); when the buffer \
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
                        "Longest time in milliseconds a packet waits behind a void (or a \
                         stream's first packet in its start-up hold), measured between buffer \
                         timestamps (DTS, else PTS) and checked when a packet arrives, and, in a \
                         live pipeline, also when the pipeline clock reaches it (one wait, only \
                         while something waits). 0 = wait until the buffer is full. In-order \
                         packets never wait, once a stream has started (its first packet waits \
                         for two more, or for latency). \
                         A serialized event (EOS, segment, caps, ...), a flush-stop or a stop \
                         releases every waiting packet at once, before it.",
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
                         dropped-ssrc-probation + dropped-rtcp + dropped-flushing + buffered \
                         (packets held now), at every moment. dropped-ssrc-probation counts \
                         packets of another SSRC that the next packet did not confirm as a new \
                         source (RFC 3550 A.1 probation); dropped-rtcp counts RTCP sharing the \
                         port (RFC 5761: version 2, second byte 192-223), never pushed. \
                         dropped-flushing counts packets that could not be pushed: downstream \
                         returned FLUSHING, or the element stopped while its streaming thread \
                         was blocked (flush-stop and stop otherwise push what is buffered). \
                         parse-error-<fault> break dropped-parse down; erasures and \
                         erased-packets count voids and the packets in them; resyncs, \
                         ssrc-changes, silence-packets (inserted, not counted in pushed) and \
                         max-buffered. RFC 3550 receive statistics: packets-expected (u64, \
                         A.3, summed over streams), packets-lost (i64: expected minus \
                         received, duplicates included, so negative when they outnumber \
                         losses) and jitter (u64, A.8, in RTP timestamp units from the \
                         buffers' DTS/PTS as arrival times; 18446744073709551615 = unknown, \
                         when the caps give no clock-rate). All start from 0 when the element \
                         goes from READY to PAUSED.",
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
                 buffer (waiting on the clock only in a live pipeline, and only while a \
                 packet waits behind a void), drops and counts duplicates, late and \
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
            stream.jb.set_clock_rate(format.clock_rate);
            self.stats.store(&stream);
        }
        if transition == gst::StateChange::PausedToReady {
            // Push what is buffered while the pads are still active, between
            // two chain calls. In a pipeline downstream has stopped first,
            // so it mostly refuses them (counted as dropped-flushing).
            match self.try_stream_lock(STOP_LOCK_WAIT) {
                Some(_lock) => {
                    if let Err(e) = self.drain(End::Stream) {
                        gst::debug!(CAT, imp = self, "draining on stop: {:?}", e);
                    }
                }
                None => gst::warning!(
                    CAT,
                    imp = self,
                    "streaming thread blocked: packets still buffered are dropped"
                ),
            }
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            // The base time is new: wait for what is due from it. A chain
            // call holding the stream arms the wait itself when it ends (and
            // a wait that fires early releases nothing, and is armed again).
            if let Ok(mut stream) = self.stream.try_lock() {
                stream.cancel_timer();
                self.reschedule(&mut stream, self.live.load(Ordering::Relaxed));
            }
        }
        if transition == gst::StateChange::PausedToReady {
            // A new run asks upstream again.
            self.live.store(false, Ordering::Relaxed);
            // The pads are inactive now and the streaming thread is out:
            // whatever is still buffered (the lock was not had, or a packet
            // came in after the drain) cannot go out.
            self.discard();
        }
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(caps: &str) -> Format {
        gst::init().unwrap();
        Format::from_caps(&caps.parse::<gst::Caps>().unwrap())
    }

    #[test]
    fn silence_formats_from_caps() {
        let silence = |c: &str| format(c).silence.map(|f| (f.byte, f.bytes_per_tick));
        assert_eq!(
            silence("application/x-rtp,clock-rate=8000,encoding-name=PCMU"),
            Some((0xff, 1))
        );
        assert_eq!(
            silence("application/x-rtp,clock-rate=8000,payload=8"),
            Some((0xd5, 1))
        );
        assert_eq!(
            silence(
                "application/x-rtp,clock-rate=48000,encoding-name=L16,encoding-params=(string)2"
            ),
            Some((0, 4))
        );
        assert_eq!(
            silence("application/x-rtp,clock-rate=44100,payload=11"),
            Some((0, 2))
        );
        assert_eq!(
            silence("application/x-rtp,clock-rate=48000,encoding-name=OPUS,payload=96"),
            None
        );
        assert_eq!(
            silence("application/x-rtp,encoding-name=PCMU"),
            None,
            "no clock-rate"
        );
    }

    fn erasure(count: u64, ts_diff: u64) -> Erasure {
        Erasure {
            first: 10,
            last: 9 + count,
            count,
            ts_diff,
            before: PacketMeta::default(),
        }
    }

    #[test]
    fn void_timing_prefers_pts_then_clock_rate() {
        let ms = gst::ClockTime::from_mseconds;
        // Two lost 20 ms packets between PTS 100 ms and 160 ms.
        assert_eq!(
            void_timing(&erasure(2, 480), Some(ms(100)), Some(ms(160)), None),
            Some((ms(120), ms(40)))
        );
        // No PTS after: 480 ticks at 8 kHz = 60 ms.
        assert_eq!(
            void_timing(&erasure(2, 480), Some(ms(100)), None, Some(8000)),
            Some((ms(120), ms(40)))
        );
        assert_eq!(
            void_timing(&erasure(2, 480), None, Some(ms(160)), Some(8000)),
            None
        );
        assert_eq!(
            void_timing(
                &erasure(1, 320),
                Some(gst::ClockTime::MAX),
                None,
                Some(8000)
            ),
            None,
            "overflow is refused, not a panic"
        );
    }
}
