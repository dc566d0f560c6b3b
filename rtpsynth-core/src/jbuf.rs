//! Jitter-buffer core, free of GStreamer.
//!
//! [`JitterBuffer`] takes one datagram at a time (its bytes, its arrival time
//! and a caller handle `T` such as a `gst::Buffer`), validates it with the
//! [`rtp`](crate::rtp) core and hands every outcome to a caller-provided sink:
//! packets released in sequence order (each carrying the [`Erasure`] of the
//! void just before it, if any) and dropped datagrams with their
//! [`DropReason`]. The handle is moved, never copied, and nothing is
//! allocated per packet: the reorder buffer is a fixed ring.
//!
//! Rules (see docs/rtpjbufdec.md for the user-facing version):
//! - RTCP multiplexed on the port (RFC 5761: [`rtp::is_rtcp`]) is dropped
//!   and counted apart, never taken for RTP;
//! - a stream's first packet is held until [`STARTUP_PACKETS`] packets in
//!   all have arrived or it has waited `latency_ns`, so that packets
//!   numbered before it that arrive just after it still go out first; the
//!   lowest of them starts the stream;
//! - in-order packets are released at once;
//! - a void is declared when the ring is full, when a packet lands beyond the
//!   ring's window, or when the packet waiting behind the void has waited
//!   longer than `latency_ns` (checked on each arrival, and whenever the
//!   caller calls [`JitterBuffer::release_expired`], at the time
//!   [`JitterBuffer::next_expiry`] tells; 0 = never);
//! - a packet more than `max_dropout` ahead or `max_misorder` behind the
//!   highest sequence number is an outlier: held, and dropped unless the next
//!   packet agrees with it, in which case the stream is taken as restarted;
//! - RFC 3550 receive statistics are kept on the way ([`ReceptionStats`]);
//! - a packet of another SSRC is on probation (RFC 3550 A.1): held, and
//!   dropped unless the next packet is of the same SSRC and agrees with it,
//!   in which case the old stream is released and a new one starts with
//!   both packets.

use crate::counters;
use crate::rtp::{self, Packet, ParseError, SeqExtender, seq_distance};

/// Tuning of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Packets the reorder ring holds (at least 2).
    pub capacity: usize,
    /// How long the first packet behind a void may wait, in ns (0 = only a
    /// full ring releases it).
    pub latency_ns: u64,
    /// Largest forward jump still taken as the same stream (RFC 3550 A.1).
    pub max_dropout: u16,
    /// Largest backward step still taken as the same stream.
    pub max_misorder: u16,
}

pub const DEFAULT_CAPACITY: usize = 20;
pub const DEFAULT_MAX_DROPOUT: u16 = 3000;
pub const DEFAULT_MAX_MISORDER: u16 = 100;
/// Smallest ring that can reorder anything.
pub const MIN_CAPACITY: usize = 2;
/// The ring's window must stay inside the 16-bit sequence space.
pub const MAX_CAPACITY: usize = 65535;
/// Largest useful `max_dropout`/`max_misorder`: half the sequence space.
pub const MAX_SEQ_LIMIT: u16 = 32767;
/// Packets a new stream holds before its first release, the first one
/// included (fewer with a capacity below it), unless `latency_ns` passes
/// first. Until then nothing is known to come before the first packet, so
/// one that arrives just after it with a lower number would be late; holding
/// the first few sorts them. Three costs an in-order stream two packet times
/// once, at its start, and sorts any order of its first three arrivals.
pub const STARTUP_PACKETS: usize = 3;

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: DEFAULT_CAPACITY,
            latency_ns: 0,
            max_dropout: DEFAULT_MAX_DROPOUT,
            max_misorder: DEFAULT_MAX_MISORDER,
        }
    }
}

/// Why a datagram was not released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid RTP packet.
    Parse(ParseError),
    /// Its sequence number is already buffered or was already released.
    Duplicate,
    /// Behind what was already released, and never released itself.
    Late,
    /// A jump beyond `max_dropout`/`max_misorder` that no following packet
    /// confirmed as a stream restart.
    Outlier,
    /// RTCP sharing the RTP port (RFC 5761), told apart by [`rtp::is_rtcp`].
    Rtcp,
    /// A packet of another SSRC that the next packet did not confirm as a
    /// new source (RFC 3550 A.1 probation).
    SsrcProbation,
    /// Thrown away by [`JitterBuffer::discard`] (downstream is flushing).
    Flushing,
}

/// What the core knows about a packet, copied out of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketMeta {
    /// Extended (64-bit) sequence number; the first packet of a stream is
    /// numbered 65536 + its seq.
    pub ext_seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub marker: bool,
    /// Payload bytes (after CSRCs, extension and padding).
    pub payload_len: u32,
    /// Arrival time the caller gave, in ns.
    pub arrival_ns: u64,
}

impl PacketMeta {
    #[inline]
    pub fn seq(&self) -> u16 {
        self.ext_seq as u16
    }

    fn of(p: &Packet<'_>, arrival_ns: u64) -> Self {
        PacketMeta {
            ext_seq: u64::from(p.seq()),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            payload_type: p.payload_type(),
            marker: p.marker(),
            payload_len: p.payload_range().len() as u32,
            arrival_ns,
        }
    }
}

/// A void: packets that were never received, declared lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// First missing extended sequence number.
    pub first: u64,
    /// Last missing extended sequence number.
    pub last: u64,
    /// Missing packets (`last - first + 1`).
    pub count: u64,
    /// RTP timestamp of the packet after the void minus that of the packet
    /// before it, by signed 32-bit distance (so a timestamp wrap does not
    /// overflow); 0 if the timestamps went backwards.
    pub ts_diff: u64,
    /// The packet released just before the void.
    pub before: PacketMeta,
}

/// One outcome, handed to the caller's sink.
#[derive(Debug)]
pub enum Output<T> {
    /// A packet released in order. `erasure` is the void just before it.
    Packet {
        item: T,
        meta: PacketMeta,
        erasure: Option<Erasure>,
    },
    /// A datagram that will never be released.
    Dropped { item: T, reason: DropReason },
}

/// Where a [`JitterBuffer`] sends its outcomes. Any `FnMut(Output<T>)` is
/// one.
pub trait Sink<T> {
    fn emit(&mut self, output: Output<T>);

    /// Called when `item` is kept past the current call (put in the reorder
    /// ring, or held as a possible restart), so a caller whose handles only
    /// borrow the current input can make them owned there, and only there.
    #[inline]
    fn hold(&mut self, _item: &mut T) {}
}

impl<T, F: FnMut(Output<T>)> Sink<T> for F {
    #[inline]
    fn emit(&mut self, output: Output<T>) {
        self(output)
    }
}

counters! {
    /// What happened to every datagram:
    /// `received` = `pushed` + every `dropped_*` + `buffered`.
    pub struct Counters {
        /// Datagrams presented.
        received = "received",
        /// Packets released in order.
        pushed = "pushed",
        /// Same sequence number already buffered or released.
        dropped_duplicate = "dropped-duplicate",
        /// Behind what was already released.
        dropped_late = "dropped-late",
        /// Not valid RTP (broken down in the per-fault parse counters).
        dropped_parse = "dropped-parse",
        /// Unconfirmed jumps beyond max-dropout / max-misorder.
        dropped_outlier = "dropped-outlier",
        /// RTCP multiplexed on the RTP port (RFC 5761).
        dropped_rtcp = "dropped-rtcp",
        /// Packets of another SSRC that no second packet confirmed.
        dropped_ssrc_probation = "dropped-ssrc-probation",
        /// Thrown away because downstream was flushing or stopping.
        dropped_flushing = "dropped-flushing",
        /// Voids declared.
        erasures = "erasures",
        /// Packets in those voids.
        erased_packets = "erased-packets",
        /// Sequence restarts confirmed by two agreeing packets.
        resyncs = "resyncs",
        /// Changes of SSRC, each confirmed by two packets of the new one.
        ssrc_changes = "ssrc-changes",
        /// Packets held now (in the ring, or a packet awaiting confirmation
        /// as a restart or a new SSRC).
        buffered = "buffered",
        /// Most packets the ring has held at once.
        max_buffered = "max-buffered",
    }
}

impl Counters {
    /// The counters other than `pushed` that a received datagram ends in:
    /// every drop reason and `buffered` (`received` = `pushed` + these),
    /// for readers that check the account.
    pub fn dropped_or_held() -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .copied()
            .filter(|n| n.starts_with("dropped-") || *n == "buffered")
    }
}

/// RFC 3550 receive statistics, over the streams seen since the buffer was
/// made (each SSRC change, restart or flush begins a new stream, as a
/// restart re-initialises a source in RFC 3550 A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceptionStats {
    /// Packets expected (A.3): per stream, its highest extended sequence
    /// number minus its first (in sequence order, after the start-up hold)
    /// plus one, summed over the streams.
    pub expected: u64,
    /// Packets of those streams received, duplicates and late ones included
    /// (as A.1 counts them); outliers, packets dropped on probation, RTCP and
    /// malformed datagrams are not.
    pub received: u64,
    /// `expected - received`: the cumulative number of packets lost (A.3),
    /// negative when duplicates outnumber the losses.
    pub lost: i64,
    /// Interarrival jitter (A.8) in RTP timestamp units, from arrival times
    /// and RTP timestamps, of the current (or last) source; `None` without
    /// a clock rate (see [`JitterBuffer::set_clock_rate`]).
    pub jitter: Option<u32>,
}

/// What the receive statistics need beyond the current stream.
#[derive(Default)]
struct Reception {
    /// Packets expected in the streams that ended.
    expected_ended: u64,
    /// Packets held for confirmation that a discard dropped: never counted
    /// as received (see [`JitterBuffer::reception`]).
    candidates_discarded: u64,
    /// RTP timestamp units per second; 0 = unknown, no jitter.
    clock_rate: u32,
    /// The source the jitter is of: a new one starts from 0.
    ssrc: Option<u32>,
    /// Relative transit time of the packet before (A.8); none at the first
    /// packet of a stream, whose timestamps need not follow the last one's.
    transit: Option<u32>,
    /// Interarrival jitter, times 16 (A.8's integer form keeps the
    /// fraction).
    jitter_x16: u64,
}

impl Reception {
    /// A.8: J += (|D| - J) / 16, with D the change in transit time.
    #[inline]
    fn update_jitter(&mut self, meta: &PacketMeta) {
        // Only differences of transit times matter, so the arrival time may
        // wrap like a timestamp.
        let arrival = ns_to_ticks(meta.arrival_ns, self.clock_rate) as u32;
        let transit = arrival.wrapping_sub(meta.timestamp);
        if let Some(before) = self.transit {
            let d = u64::from((transit.wrapping_sub(before) as i32).unsigned_abs());
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }
}

/// `ns` in units of `1 / rate` s, rounded down, in wrapping arithmetic (the
/// caller keeps 32 bits). Divides by constants only, which compile to
/// multiplications: this runs for every packet.
#[inline]
fn ns_to_ticks(ns: u64, rate: u32) -> u64 {
    const NS: u64 = 1_000_000_000;
    let rate = u64::from(rate);
    // (ns % NS) * rate < 10^9 * 2^32: no overflow.
    (ns / NS)
        .wrapping_mul(rate)
        .wrapping_add(ns % NS * rate / NS)
}

struct Slot<T> {
    item: T,
    meta: PacketMeta,
}

/// The current stream: everything that a flush forgets.
#[derive(Default)]
struct Stream {
    /// False until the first packet, and after a flush.
    active: bool,
    /// From the first packet until the first release: the ring holds the
    /// first packets, sorted, and nothing before them is known to be lost.
    starting: bool,
    /// Arrival of the first packet: its wait bounds the start-up hold.
    first_arrival_ns: u64,
    ssrc: u32,
    seqs: SeqExtender,
    /// Lowest extended seq not yet released (nor skipped).
    next: u64,
    /// The packet released last (valid while `active`).
    last: PacketMeta,
    /// First extended seq, in sequence order (RFC 3550 A.1 `base_seq`): the
    /// lowest of the start-up hold.
    base: u64,
}

/// Bits of the sequence space (indexed by the low 16 bits of an extended
/// seq) that were released: tells a duplicate from a late packet behind the
/// window without keeping the packets.
const HISTORY_WORDS: usize = (1 << 16) / 64;

pub struct JitterBuffer<T> {
    cfg: Config,
    /// Power-of-two ring; only `cfg.capacity` consecutive seqs
    /// (`next + 1 ..= next + capacity`) are in it at once.
    ring: Box<[Option<Slot<T>>]>,
    mask: u64,
    history: Box<[u64; HISTORY_WORDS]>,
    stream: Stream,
    /// Lowest extended seq in the ring (meaningful when `buffered > 0`).
    min: u64,
    buffered: usize,
    /// The packet waiting for a second one to confirm it: an outlier of the
    /// stream's SSRC (a restart?) or a packet of another SSRC (a new
    /// source?).
    candidate: Option<Slot<T>>,
    counters: Counters,
    parse_errors: [u64; ParseError::ALL.len()],
    reception: Reception,
}

impl<T> JitterBuffer<T> {
    /// A jitter buffer with `cfg`; the capacity is clamped to
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
    pub fn new(mut cfg: Config) -> Self {
        cfg.capacity = cfg.capacity.clamp(MIN_CAPACITY, MAX_CAPACITY);
        let slots = cfg.capacity.next_power_of_two();
        JitterBuffer {
            cfg,
            ring: (0..slots).map(|_| None).collect(),
            mask: slots as u64 - 1,
            history: Box::new([0; HISTORY_WORDS]),
            stream: Stream::default(),
            min: 0,
            buffered: 0,
            candidate: None,
            counters: Counters::default(),
            parse_errors: [0; ParseError::ALL.len()],
            reception: Reception::default(),
        }
    }

    /// Sets the RTP clock rate the jitter is computed in (`None` or 0:
    /// unknown, no jitter). A change starts the jitter afresh, as the old
    /// value is in other units.
    pub fn set_clock_rate(&mut self, rate: Option<u32>) {
        let rate = rate.unwrap_or(0);
        if rate != self.reception.clock_rate {
            self.reception.clock_rate = rate;
            self.reception.transit = None;
            self.reception.jitter_x16 = 0;
        }
    }

    /// RFC 3550 receive statistics so far.
    pub fn reception(&self) -> ReceptionStats {
        let r = &self.reception;
        let expected = r.expected_ended + self.stream_expected();
        // Every datagram that parsed as RTP joined a stream (and was
        // counted as received there, as RFC 3550 A.1 counts), except the
        // ones held for confirmation that never were confirmed. Derived
        // here, so the packet path counts nothing more.
        let c = &self.counters;
        let not_received = c.dropped_parse
            + c.dropped_rtcp
            + c.dropped_outlier
            + c.dropped_ssrc_probation
            + u64::from(self.candidate.is_some())
            + r.candidates_discarded;
        let received = c.received.saturating_sub(not_received);
        ReceptionStats {
            expected,
            received,
            lost: (i128::from(expected) - i128::from(received))
                .clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            jitter: (r.clock_rate != 0).then_some((r.jitter_x16 >> 4) as u32),
        }
    }

    /// Packets expected in the current stream.
    fn stream_expected(&self) -> u64 {
        match self.stream.seqs.highest() {
            Some(highest) if self.stream.active => highest + 1 - self.stream.base,
            _ => 0,
        }
    }

    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Changes latency and the restart limits; the capacity is fixed for the
    /// life of the buffer.
    pub fn set_limits(&mut self, latency_ns: u64, max_dropout: u16, max_misorder: u16) {
        self.cfg.latency_ns = latency_ns;
        self.cfg.max_dropout = max_dropout;
        self.cfg.max_misorder = max_misorder;
    }

    /// The counters; `buffered` includes a held outlier, so that
    /// `received = pushed + dropped_* + buffered` holds at every moment.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.buffered = self.buffered as u64 + u64::from(self.candidate.is_some());
        c
    }

    /// Parse failures by fault, indexed by [`ParseError::index`].
    pub fn parse_errors(&self) -> [u64; ParseError::ALL.len()] {
        self.parse_errors
    }

    /// Packets in the ring now (a held outlier is not counted).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Presents one datagram. `item` comes back through `out`, either
    /// released or dropped, now or on a later call.
    #[inline]
    pub fn push(&mut self, data: &[u8], arrival_ns: u64, item: T, out: &mut impl Sink<T>) {
        self.counters.received += 1;
        if rtp::is_rtcp(data) {
            // A sender report would parse as RTP (marker set, payload type
            // 72) and, with its own SSRC, look like a change of source.
            return self.drop_item(item, DropReason::Rtcp, out);
        }
        match Packet::parse(data) {
            Ok(p) => {
                let meta = PacketMeta::of(&p, arrival_ns);
                self.accept(Slot { item, meta }, out);
                self.release_expired(arrival_ns, out);
            }
            Err(e) => self.drop_item(item, DropReason::Parse(e), out),
        }
    }

    /// Releases everything buffered, in order (voids between runs become
    /// erasures), drops a packet held for confirmation, and forgets the
    /// stream.
    pub fn flush(&mut self, out: &mut impl Sink<T>) {
        self.release_buffered(out);
        self.end_stream(None, out);
    }

    /// Releases everything in the ring, in order (voids between runs become
    /// erasures), and keeps the stream: a packet that fills one of those
    /// voids later is late, and the next in order passes at once. A packet
    /// held for confirmation stays held, as it is not known yet to be part
    /// of any stream.
    pub fn release_buffered(&mut self, out: &mut impl Sink<T>) {
        while self.buffered > 0 {
            self.release_void(out);
        }
    }

    /// Drops everything buffered (counted as [`DropReason::Flushing`]) and
    /// forgets the stream: for a flushing or stopping pipeline.
    pub fn discard(&mut self, out: &mut impl Sink<T>) {
        for at in 0..self.ring.len() {
            if let Some(s) = self.ring[at].take() {
                self.drop_item(s.item, DropReason::Flushing, out);
            }
        }
        self.buffered = 0;
        self.end_stream(Some(DropReason::Flushing), out);
    }

    /// Forgets the stream; a packet held for confirmation is dropped as
    /// `reason`, or else as what it was held for.
    fn end_stream(&mut self, reason: Option<DropReason>, out: &mut impl Sink<T>) {
        if let Some(c) = self.candidate.take() {
            if reason == Some(DropReason::Flushing) {
                self.reception.candidates_discarded += 1;
            }
            self.drop_candidate(c, reason, out);
        }
        if self.stream.active {
            // The next stream is extended afresh; stale bits would turn its
            // late packets into duplicates.
            self.history.fill(0);
            self.reception.expected_ended += self.stream_expected();
        }
        self.stream = Stream::default();
    }

    fn drop_item(&mut self, item: T, reason: DropReason, out: &mut impl Sink<T>) {
        let c = &mut self.counters;
        match reason {
            DropReason::Parse(e) => {
                c.dropped_parse += 1;
                self.parse_errors[e.index()] += 1;
            }
            DropReason::Duplicate => c.dropped_duplicate += 1,
            DropReason::Late => c.dropped_late += 1,
            DropReason::Outlier => c.dropped_outlier += 1,
            DropReason::Rtcp => c.dropped_rtcp += 1,
            DropReason::SsrcProbation => c.dropped_ssrc_probation += 1,
            DropReason::Flushing => c.dropped_flushing += 1,
        }
        out.emit(Output::Dropped { item, reason });
    }

    #[inline]
    fn accept(&mut self, slot: Slot<T>, out: &mut impl Sink<T>) {
        if !self.stream.active {
            return self.start(slot, out);
        }
        if self.stream.ssrc != slot.meta.ssrc {
            return self.foreign(slot, out);
        }
        let highest = self.stream.seqs.highest().unwrap_or(self.stream.next) as u16;
        let d = i32::from(seq_distance(highest, slot.meta.seq()));
        if d > i32::from(self.cfg.max_dropout) || d < -i32::from(self.cfg.max_misorder) {
            return self.outlier(slot, out);
        }
        if let Some(c) = self.candidate.take() {
            // The stream went on: the held packet was a stray one.
            self.drop_candidate(c, None, out);
        }
        self.count_received(&slot.meta);
        if self.stream.starting {
            return self.insert_starting(slot, out);
        }
        self.insert(slot, out);
    }

    /// Drops the packet held for confirmation as `reason`, or else as an
    /// unconfirmed restart or source.
    fn drop_candidate(&mut self, c: Slot<T>, reason: Option<DropReason>, out: &mut impl Sink<T>) {
        let reason = reason.unwrap_or(if c.meta.ssrc == self.stream.ssrc {
            DropReason::Outlier
        } else {
            DropReason::SsrcProbation
        });
        self.drop_item(c.item, reason, out);
    }

    /// Whether `second` confirms the held `first`: the same SSRC, and close
    /// enough in sequence for both to be put in order.
    fn confirms(&self, first: &PacketMeta, second: &PacketMeta) -> bool {
        let d = seq_distance(first.seq(), second.seq());
        first.ssrc == second.ssrc && d != 0 && (d.unsigned_abs() as usize) < self.cfg.capacity
    }

    /// A packet of another SSRC than the stream's. One stray packet (a
    /// misdirected datagram, another sender's packet) must not reset the
    /// stream, so, as a new source in RFC 3550 A.1, it is on probation
    /// until the next packet confirms it.
    #[cold]
    fn foreign(&mut self, slot: Slot<T>, out: &mut impl Sink<T>) {
        match self.candidate.take() {
            Some(c) if self.confirms(&c.meta, &slot.meta) => {
                self.counters.ssrc_changes += 1;
                self.restart(c, slot, out);
            }
            Some(c) => {
                self.drop_candidate(c, None, out);
                self.hold_candidate(slot, out);
            }
            None => self.hold_candidate(slot, out),
        }
    }

    /// First packet of a stream: held, as the start of the stream is not
    /// known yet (see [`STARTUP_PACKETS`]).
    fn start(&mut self, mut slot: Slot<T>, out: &mut impl Sink<T>) {
        let mut seqs = SeqExtender::new();
        slot.meta.ext_seq = seqs.extend(slot.meta.seq());
        self.stream = Stream {
            active: true,
            starting: true,
            first_arrival_ns: slot.meta.arrival_ns,
            ssrc: slot.meta.ssrc,
            seqs,
            next: slot.meta.ext_seq,
            last: slot.meta,
            base: slot.meta.ext_seq,
        };
        let r = &mut self.reception;
        r.transit = None;
        if r.ssrc != Some(slot.meta.ssrc) {
            r.ssrc = Some(slot.meta.ssrc);
            r.jitter_x16 = 0;
        }
        self.count_received(&slot.meta);
        self.hold_in_ring(slot, out);
        self.begin_when_enough(out);
    }

    /// A packet of a stream still in its start-up hold (counted already):
    /// sorted in with the others when all fit in the ring's window.
    #[inline(never)]
    fn insert_starting(&mut self, mut slot: Slot<T>, out: &mut impl Sink<T>) {
        let ext = self.stream.seqs.peek(slot.meta.seq());
        // Everything held so far is extended, so the highest is among them.
        let highest = self.stream.seqs.highest().unwrap_or(ext);
        if highest.max(ext) - self.min.min(ext) >= self.cfg.capacity as u64 {
            // Too far from the others to be held with them: the stream
            // starts with what is held, and this one is taken as in any
            // started stream (late, or beyond the window).
            self.begin(out);
            return self.insert(slot, out);
        }
        slot.meta.ext_seq = ext;
        self.stream.seqs.extend(slot.meta.seq());
        self.stream.base = self.stream.base.min(ext);
        if self.ring[(ext & self.mask) as usize].is_some() {
            return self.drop_item(slot.item, DropReason::Duplicate, out);
        }
        self.hold_in_ring(slot, out);
        self.begin_when_enough(out);
    }

    fn begin_when_enough(&mut self, out: &mut impl Sink<T>) {
        if self.buffered >= STARTUP_PACKETS.min(self.cfg.capacity) {
            self.begin(out);
        }
    }

    /// Ends the start-up hold: the lowest packet held starts the stream,
    /// with no void before it.
    fn begin(&mut self, out: &mut impl Sink<T>) {
        self.stream.starting = false;
        let first = self.min;
        if let Some(s) = &self.ring[(first & self.mask) as usize] {
            self.stream.last = PacketMeta {
                ext_seq: first - 1,
                ..s.meta
            };
            self.stream.next = first;
            self.release_run(out);
        }
    }

    fn outlier(&mut self, slot: Slot<T>, out: &mut impl Sink<T>) {
        match self.candidate.take() {
            Some(c) if self.confirms(&c.meta, &slot.meta) => {
                // Two agreeing packets: the sender restarted.
                self.counters.resyncs += 1;
                self.restart(c, slot, out);
            }
            Some(c) => {
                self.drop_candidate(c, None, out);
                self.hold_candidate(slot, out);
            }
            None => self.hold_candidate(slot, out),
        }
    }

    /// Releases what the old stream had, then starts a new one with the
    /// held packet `c` and the packet `slot` that confirmed it, both in its
    /// start-up hold (which sorts them).
    fn restart(&mut self, c: Slot<T>, slot: Slot<T>, out: &mut impl Sink<T>) {
        self.flush(out);
        self.start(c, out);
        self.count_received(&slot.meta);
        if self.stream.starting {
            self.insert_starting(slot, out);
        } else {
            self.insert(slot, out);
        }
    }

    fn hold_candidate(&mut self, mut slot: Slot<T>, out: &mut impl Sink<T>) {
        out.hold(&mut slot.item);
        self.candidate = Some(slot);
    }

    /// A packet of the current stream within the dropout/misorder limits
    /// (counted already).
    #[inline]
    fn insert(&mut self, mut slot: Slot<T>, out: &mut impl Sink<T>) {
        let ext = self.stream.seqs.peek(slot.meta.seq());
        slot.meta.ext_seq = ext;
        if ext < self.stream.next {
            let reason = if ext <= self.stream.last.ext_seq && self.released(ext) {
                DropReason::Duplicate
            } else {
                DropReason::Late
            };
            return self.drop_item(slot.item, reason, out);
        }
        self.stream.seqs.extend(slot.meta.seq());
        let cap = self.cfg.capacity as u64;
        if ext > self.stream.next + cap {
            // Beyond the window: slide it so `ext` is its last seq, releasing
            // whatever falls out of it.
            let base = ext - cap;
            while self.buffered > 0 && self.min <= base {
                self.release_void(out);
            }
            self.stream.next = self.stream.next.max(base);
        }
        if ext == self.stream.next {
            self.release(slot, out);
            return self.release_run(out);
        }
        if self.ring[(ext & self.mask) as usize].is_some() {
            return self.drop_item(slot.item, DropReason::Duplicate, out);
        }
        self.hold_in_ring(slot, out);
        if self.buffered >= self.cfg.capacity {
            self.release_void(out);
        }
    }

    /// Counts a packet of the stream for the receive statistics: its
    /// arrival in the jitter (the count itself is derived from the drops,
    /// see [`reception`](Self::reception)).
    #[inline]
    fn count_received(&mut self, meta: &PacketMeta) {
        if self.reception.clock_rate != 0 {
            self.reception.update_jitter(meta);
        }
    }

    /// Keeps `slot` in its (free) ring slot until its turn.
    #[inline]
    fn hold_in_ring(&mut self, mut slot: Slot<T>, out: &mut impl Sink<T>) {
        let ext = slot.meta.ext_seq;
        out.hold(&mut slot.item);
        self.ring[(ext & self.mask) as usize] = Some(slot);
        if self.buffered == 0 || ext < self.min {
            self.min = ext;
        }
        self.buffered += 1;
        self.counters.max_buffered = self.counters.max_buffered.max(self.buffered as u64);
    }

    /// Declares the void before the lowest buffered packet and releases the
    /// run that starts there.
    fn release_void(&mut self, out: &mut impl Sink<T>) {
        if self.stream.starting {
            return self.begin(out);
        }
        if self.buffered > 0 {
            self.stream.next = self.min;
            self.release_run(out);
        }
    }

    /// Releases the buffered packets from `next` on while they are
    /// consecutive, then makes sure `min` is still the lowest one left.
    fn release_run(&mut self, out: &mut impl Sink<T>) {
        while self.buffered > 0 {
            let at = (self.stream.next & self.mask) as usize;
            let Some(slot) = self.ring[at].take() else {
                if self.min < self.stream.next {
                    // The minimum went out with the run. Every seq scanned
                    // here lies above the old minimum and below the new one,
                    // so each is scanned once: amortized O(1) per packet.
                    let mut e = self.stream.next + 1;
                    while self.ring[(e & self.mask) as usize].is_none() {
                        e += 1;
                    }
                    self.min = e;
                }
                return;
            };
            self.buffered -= 1;
            self.release(slot, out);
        }
    }

    /// Hands `slot` out as the next packet in order.
    #[inline]
    fn release(&mut self, slot: Slot<T>, out: &mut impl Sink<T>) {
        let ext = slot.meta.ext_seq;
        let last = self.stream.last;
        let erasure = (ext > last.ext_seq + 1).then(|| {
            let ts_diff = i64::from(slot.meta.timestamp.wrapping_sub(last.timestamp) as i32);
            Erasure {
                first: last.ext_seq + 1,
                last: ext - 1,
                count: ext - 1 - last.ext_seq,
                ts_diff: ts_diff.max(0) as u64,
                before: last,
            }
        });
        self.stream.last = slot.meta;
        self.stream.next = ext + 1;
        if let Some(e) = &erasure {
            self.counters.erasures += 1;
            self.counters.erased_packets += e.count;
            self.mark_range(e.first, e.count, false);
        }
        self.mark_range(ext, 1, true);
        self.counters.pushed += 1;
        out.emit(Output::Packet {
            item: slot.item,
            meta: slot.meta,
            erasure,
        });
    }

    /// The earliest time (in the clock of the arrival times) at which
    /// [`release_expired`](Self::release_expired) releases something: when
    /// the packet waiting behind the first void, or a stream's first packet
    /// in its start-up hold, will have waited more than `latency_ns`. `None`
    /// when nothing waits, or without latency. A caller whose input may stop
    /// (a live stream that pauses) waits until then, so that what waits does
    /// not wait for the next arrival.
    pub fn next_expiry(&self) -> Option<u64> {
        if self.cfg.latency_ns == 0 || self.buffered == 0 {
            return None;
        }
        let waiting_since = if self.stream.starting {
            self.stream.first_arrival_ns
        } else {
            self.ring[(self.min & self.mask) as usize]
                .as_ref()?
                .meta
                .arrival_ns
        };
        Some(
            waiting_since
                .saturating_add(self.cfg.latency_ns)
                .saturating_add(1),
        )
    }

    /// Releases voids whose first waiting packet arrived more than
    /// `latency_ns` before `now_ns`, and ends a start-up hold whose first
    /// packet did. Every arrival does this; a caller calls it when no packet
    /// comes (see [`next_expiry`](Self::next_expiry)).
    #[inline]
    pub fn release_expired(&mut self, now_ns: u64, out: &mut impl Sink<T>) {
        if self.cfg.latency_ns == 0 || self.buffered == 0 {
            return;
        }
        if self.stream.starting {
            if now_ns.saturating_sub(self.stream.first_arrival_ns) <= self.cfg.latency_ns {
                return;
            }
            self.begin(out);
        }
        while self.buffered > 0 {
            let waiting_since = match &self.ring[(self.min & self.mask) as usize] {
                Some(s) => s.meta.arrival_ns,
                None => return,
            };
            if now_ns.saturating_sub(waiting_since) <= self.cfg.latency_ns {
                return;
            }
            self.release_void(out);
        }
    }

    #[inline]
    fn released(&self, ext: u64) -> bool {
        let bit = (ext & 0xffff) as usize;
        self.history[bit / 64] & (1 << (bit % 64)) != 0
    }

    #[inline]
    fn mark_range(&mut self, first: u64, count: u64, value: bool) {
        if count >= 1 << 16 {
            self.history.fill(if value { u64::MAX } else { 0 });
            return;
        }
        for ext in first..first + count {
            let bit = (ext & 0xffff) as usize;
            let word = &mut self.history[bit / 64];
            if value {
                *word |= 1 << (bit % 64);
            } else {
                *word &= !(1 << (bit % 64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::SplitMix64;
    use crate::rtp::{Extras, Header, write_packet};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    fn pkt(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let header = Header {
            marker: false,
            payload_type: 0,
            seq,
            timestamp: ts,
            ssrc,
        };
        let mut out = vec![0; 12 + 4];
        let len = write_packet(&mut out, &header, &Extras::default(), &[0xff; 4]).unwrap();
        out.truncate(len);
        out
    }

    /// An RTCP receiver report from `ssrc` with no report block: 8 bytes,
    /// too short for RTP.
    fn rr(ssrc: u32) -> Vec<u8> {
        let mut d = vec![0x80, 201, 0, 1];
        d.extend_from_slice(&ssrc.to_be_bytes());
        d
    }

    /// An RTCP sender report from `ssrc` (no report block): it parses as an
    /// RTP packet of payload type 72 with the marker bit.
    fn rtcp(ssrc: u32) -> Vec<u8> {
        let mut d = vec![0x80, 200, 0, 6];
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&[0x11; 20]);
        assert!(Packet::parse(&d).is_ok(), "valid RTP as well");
        d
    }

    /// What the tests compare: released (id, ext seq, erasure range) or
    /// dropped (id, reason).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Pushed(usize, u64, Option<(u64, u64, u64)>),
        Dropped(usize, DropReason),
    }

    fn record(evs: &mut Vec<Ev>) -> impl FnMut(Output<usize>) + '_ {
        |o| {
            evs.push(match o {
                Output::Packet {
                    item,
                    meta,
                    erasure,
                } => Ev::Pushed(
                    item,
                    meta.ext_seq,
                    erasure.map(|e| (e.first, e.last, e.ts_diff)),
                ),
                Output::Dropped { item, reason } => Ev::Dropped(item, reason),
            })
        }
    }

    /// Runs `seqs` (seq, ts) through a buffer with capacity `cap`, then
    /// flushes; returns the events.
    fn run(cap: usize, seqs: &[(u16, u32)]) -> (Vec<Ev>, Counters) {
        let mut jb = JitterBuffer::new(Config {
            capacity: cap,
            ..Config::default()
        });
        let mut evs = Vec::new();
        for (id, &(seq, ts)) in seqs.iter().enumerate() {
            jb.push(&pkt(seq, ts, 7), id as u64, id, &mut record(&mut evs));
        }
        jb.flush(&mut record(&mut evs));
        (evs, jb.counters())
    }

    /// Pushes packet `seq` of SSRC 1 (160 timestamp units per seq, all
    /// arriving at 0) as `id`.
    fn push_seq(jb: &mut JitterBuffer<usize>, seq: u16, id: usize, evs: &mut Vec<Ev>) {
        jb.push(&pkt(seq, 160 * u32::from(seq), 1), 0, id, &mut record(evs));
    }

    fn pushed_seqs(evs: &[Ev]) -> Vec<u16> {
        evs.iter()
            .filter_map(|e| match e {
                Ev::Pushed(_, ext, _) => Some(*ext as u16),
                _ => None,
            })
            .collect()
    }

    /// A buffer with capacity `cap` whose stream (SSRC 1) has started with
    /// seqs 0, 1, 2 (ids 0, 1, 2), all released.
    fn started(cap: usize) -> (JitterBuffer<usize>, Vec<Ev>) {
        let mut jb = JitterBuffer::new(Config {
            capacity: cap,
            ..Config::default()
        });
        let mut evs = Vec::new();
        for seq in 0..3u16 {
            push_seq(&mut jb, seq, seq as usize, &mut evs);
        }
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2]);
        (jb, evs)
    }

    #[test]
    fn in_order_passes_at_once_after_the_start_up_hold() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        push_seq(&mut jb, 0, 0, &mut evs);
        push_seq(&mut jb, 1, 1, &mut evs);
        assert_eq!(evs, vec![], "the first packets wait for a third");
        assert_eq!(jb.buffered(), 2);
        push_seq(&mut jb, 2, 2, &mut evs);
        assert_eq!(
            evs,
            vec![
                Ev::Pushed(0, 65536, None),
                Ev::Pushed(1, 65537, None),
                Ev::Pushed(2, 65538, None),
            ]
        );
        for seq in 3..50u16 {
            let mut evs = Vec::new();
            push_seq(&mut jb, seq, seq as usize, &mut evs);
            assert_eq!(
                evs,
                vec![Ev::Pushed(seq as usize, 65536 + u64::from(seq), None)]
            );
        }
        assert_eq!(jb.buffered(), 0);
    }

    #[test]
    fn early_reordering_is_put_in_order() {
        // Before the start-up hold, the first arrival started the stream and
        // anything numbered before it was late.
        for first3 in [
            [0u16, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut seqs: Vec<(u16, u32)> =
                first3.iter().map(|&s| (s, 160 * u32::from(s))).collect();
            seqs.extend((3..6u16).map(|s| (s, 160 * u32::from(s))));
            let (evs, c) = run(20, &seqs);
            assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 3, 4, 5], "{first3:?}");
            assert_eq!((c.dropped_late, c.erasures), (0, 0), "{first3:?}");
        }
        // The case: the second arrival is numbered before the first.
        let (evs, c) = run(20, &[(5, 800), (4, 640), (6, 960), (7, 1120)]);
        assert_eq!(pushed_seqs(&evs), vec![4, 5, 6, 7]);
        assert_eq!(evs[0], Ev::Pushed(1, 65536 + 4, None), "no void before it");
        assert_eq!((c.dropped_late, c.erasures), (0, 0));
    }

    #[test]
    fn start_up_hold_keeps_voids_between_the_first_packets() {
        let (evs, c) = run(20, &[(12, 1920), (10, 1600), (13, 2080), (11, 1760)]);
        assert_eq!(
            pushed_seqs(&evs),
            vec![10, 11, 12, 13],
            "11 filled the void"
        );
        assert_eq!(c.erasures, 0);
        let (evs, c) = run(20, &[(12, 1920), (10, 1600), (13, 2080), (14, 2240)]);
        assert_eq!(pushed_seqs(&evs), vec![10, 12, 13, 14]);
        assert_eq!(evs[1], Ev::Pushed(0, 65548, Some((65547, 65547, 320))));
        assert_eq!(c.erasures, 1);
    }

    #[test]
    fn a_packet_before_the_start_after_the_hold_is_late() {
        let (evs, c) = run(20, &[(1, 0), (2, 0), (3, 0), (0, 0)]);
        assert_eq!(pushed_seqs(&evs), vec![1, 2, 3]);
        assert_eq!(c.dropped_late, 1);
    }

    #[test]
    fn start_up_hold_ends_when_latency_has_passed() {
        let mut jb = JitterBuffer::new(Config {
            capacity: 10,
            latency_ns: 100,
            ..Config::default()
        });
        let mut evs = Vec::new();
        jb.push(&pkt(5, 0, 1), 0, 0, &mut record(&mut evs));
        jb.push(&pkt(7, 0, 1), 100, 1, &mut record(&mut evs));
        assert_eq!(evs, vec![], "5 has waited exactly 100 ns");
        jb.push(&pkt(9, 0, 1), 101, 2, &mut record(&mut evs));
        // 5 started the stream; 7 and 9 wait behind their voids, from their
        // own arrival.
        assert_eq!(evs, vec![Ev::Pushed(0, 65541, None)]);
        assert_eq!(jb.buffered(), 2);
    }

    #[test]
    fn start_up_hold_ends_at_a_packet_beyond_the_window() {
        let (evs, c) = run(4, &[(10, 0), (20, 1600)]);
        assert_eq!(
            evs,
            vec![
                Ev::Pushed(0, 65546, None),
                Ev::Pushed(1, 65556, Some((65547, 65555, 1600))),
            ]
        );
        assert_eq!(c.erased_packets, 9);
    }

    #[test]
    fn start_up_hold_is_at_most_the_capacity() {
        let (evs, c) = run(2, &[(1, 0), (0, 0), (2, 0)]);
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2]);
        assert_eq!(c.max_buffered, 2);
        // Released at the second arrival already.
        let mut jb = JitterBuffer::new(Config {
            capacity: 2,
            ..Config::default()
        });
        let mut evs = Vec::new();
        push_seq(&mut jb, 1, 0, &mut evs);
        push_seq(&mut jb, 0, 1, &mut evs);
        assert_eq!(pushed_seqs(&evs), vec![0, 1]);
    }

    #[test]
    fn reorder_within_capacity_is_repaired() {
        let (mut jb, mut evs) = started(4);
        for (id, seq) in [(3, 4u16), (4, 5), (5, 3), (6, 6)] {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 3, 4, 5, 6]);
        let c = jb.counters();
        assert_eq!((c.erasures, c.buffered), (0, 0));
    }

    #[test]
    fn full_ring_declares_void_with_timestamp_span() {
        // Seq 1 is lost; the ring of 3 fills with 2, 3, 4.
        let (evs, c) = run(3, &[(0, 0), (2, 320), (3, 480), (4, 640), (5, 800)]);
        assert_eq!(
            evs,
            vec![
                Ev::Pushed(0, 65536, None),
                Ev::Pushed(1, 65538, Some((65537, 65537, 320))),
                Ev::Pushed(2, 65539, None),
                Ev::Pushed(3, 65540, None),
                Ev::Pushed(4, 65541, None),
            ]
        );
        assert_eq!((c.erasures, c.erased_packets, c.pushed), (1, 1, 5));
    }

    #[test]
    fn late_and_duplicate_are_told_apart() {
        let (evs, c) = run(2, &[(0, 0), (2, 1), (3, 2), (1, 3), (3, 4), (0, 5)]);
        assert_eq!(pushed_seqs(&evs), vec![0, 2, 3]);
        assert!(evs.contains(&Ev::Dropped(3, DropReason::Late)));
        assert!(evs.contains(&Ev::Dropped(4, DropReason::Duplicate)));
        assert!(evs.contains(&Ev::Dropped(5, DropReason::Duplicate)));
        assert_eq!((c.dropped_late, c.dropped_duplicate), (1, 2));
    }

    #[test]
    fn skipped_seq_is_late_not_a_duplicate_after_many_wraps() {
        // The release history is indexed by the low 16 bits; a seq the window
        // skipped must not be mistaken for the one released 65536 earlier.
        let n = 70_000u32;
        let mut seqs: Vec<(u16, u32)> = (0..n).map(|i| (i as u16, i)).collect();
        seqs.push(((n + 10) as u16, n + 10)); // slides the window past n..=n+5
        seqs.push(((n + 1) as u16, n + 1));
        let (evs, c) = run(4, &seqs);
        assert!(evs.contains(&Ev::Dropped(n as usize + 1, DropReason::Late)));
        assert_eq!((c.dropped_late, c.dropped_duplicate), (1, 0));
    }

    #[test]
    fn wrap_is_continuous() {
        let seqs: Vec<(u16, u32)> = (0..6u32)
            .map(|i| (65533u16.wrapping_add(i as u16), i))
            .collect();
        let (evs, c) = run(4, &seqs);
        assert_eq!(pushed_seqs(&evs), vec![65533, 65534, 65535, 0, 1, 2]);
        assert_eq!(c.erasures, 0);
    }

    #[test]
    fn timestamp_wrap_does_not_overflow_ts_diff() {
        let (evs, _) = run(2, &[(0, u32::MAX - 159), (2, 160), (3, 320)]);
        assert_eq!(evs[1], Ev::Pushed(1, 65538, Some((65537, 65537, 320))));
    }

    #[test]
    fn restart_needs_two_agreeing_packets() {
        let (evs, c) = run(
            4,
            &[
                (10, 0),
                (11, 1),
                (5000, 2),
                (12, 3),
                (9000, 4),
                (9001, 5),
                (9002, 6),
            ],
        );
        assert_eq!(pushed_seqs(&evs), vec![10, 11, 12, 9000, 9001, 9002]);
        assert!(evs.contains(&Ev::Dropped(2, DropReason::Outlier)));
        assert_eq!((c.resyncs, c.dropped_outlier, c.erasures), (1, 1, 0));
    }

    #[test]
    fn restart_confirmed_by_a_reordered_pair() {
        let (evs, c) = run(4, &[(10, 0), (10001, 1), (10000, 2), (10002, 3)]);
        assert_eq!(pushed_seqs(&evs), vec![10, 10000, 10001, 10002]);
        assert_eq!((c.resyncs, c.dropped_late), (1, 0));
    }

    #[test]
    fn ssrc_change_releases_old_stream() {
        let (mut jb, mut evs) = started(20);
        push_seq(&mut jb, 4, 3, &mut evs);
        jb.push(&pkt(700, 0, 2), 0, 4, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2], "700 is on probation");
        assert_eq!(jb.counters().buffered, 2);
        // The second packet of SSRC 2 confirms it: the old stream is
        // released, and the new one keeps its first packet, in its start-up
        // hold with the second.
        jb.push(&pkt(701, 0, 2), 0, 5, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 4]);
        jb.push(&pkt(702, 0, 2), 0, 6, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 4, 700, 701, 702]);
        assert_eq!(evs[4], Ev::Pushed(4, 65536 + 700, None));
        let c = jb.counters();
        assert_eq!((c.ssrc_changes, c.dropped_ssrc_probation), (1, 0));
    }

    #[test]
    fn ssrc_change_confirmed_by_a_reordered_pair() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        jb.push(&pkt(0, 0, 1), 0, 0, &mut record(&mut evs));
        jb.push(&pkt(701, 0, 2), 0, 1, &mut record(&mut evs));
        jb.push(&pkt(700, 0, 2), 0, 2, &mut record(&mut evs));
        jb.flush(&mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 700, 701]);
        assert_eq!(jb.counters().dropped_late, 0);
    }

    #[test]
    fn stray_packet_of_another_ssrc_does_not_reset_the_stream() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        for (id, seq) in [0u16, 1].into_iter().enumerate() {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        jb.push(&pkt(9000, 0, 77), 0, 2, &mut record(&mut evs));
        for (id, seq) in [(3, 2u16), (4, 3)] {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        assert!(evs.contains(&Ev::Dropped(2, DropReason::SsrcProbation)));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 3]);
        assert!(evs.iter().all(|e| !matches!(e, Ev::Pushed(_, _, Some(_)))));
        let c = jb.counters();
        assert_eq!(
            (c.ssrc_changes, c.dropped_ssrc_probation, c.buffered),
            (0, 1, 0)
        );
        // Two strays of different SSRCs in a row confirm nothing either.
        jb.push(&pkt(10, 0, 78), 0, 5, &mut record(&mut evs));
        jb.push(&pkt(11, 0, 79), 0, 6, &mut record(&mut evs));
        push_seq(&mut jb, 4, 7, &mut evs);
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 2, 3, 4]);
        let c = jb.counters();
        assert_eq!((c.ssrc_changes, c.dropped_ssrc_probation), (0, 3));
    }

    #[test]
    fn flush_drops_a_packet_on_probation() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        push_seq(&mut jb, 0, 0, &mut evs);
        jb.push(&pkt(50, 0, 2), 0, 1, &mut record(&mut evs));
        assert_eq!(jb.counters().buffered, 2, "0 in its start-up hold, 50");
        jb.flush(&mut record(&mut evs));
        assert_eq!(
            evs,
            vec![
                Ev::Pushed(0, 65536, None),
                Ev::Dropped(1, DropReason::SsrcProbation)
            ]
        );
        let c = jb.counters();
        assert_eq!(
            (c.received, c.pushed, c.dropped_ssrc_probation, c.buffered),
            (2, 1, 1, 0)
        );
    }

    #[test]
    fn rtcp_on_the_rtp_port_is_dropped_apart() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        push_seq(&mut jb, 0, 0, &mut evs);
        jb.push(&rtcp(99), 0, 1, &mut record(&mut evs));
        jb.push(&rr(99), 0, 2, &mut record(&mut evs));
        push_seq(&mut jb, 1, 3, &mut evs);
        assert_eq!(
            evs,
            vec![
                Ev::Dropped(1, DropReason::Rtcp),
                Ev::Dropped(2, DropReason::Rtcp)
            ]
        );
        jb.flush(&mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1]);
        let c = jb.counters();
        assert_eq!(
            (c.dropped_rtcp, c.dropped_parse, c.ssrc_changes, c.received),
            (2, 0, 0, 4)
        );
    }

    #[test]
    fn latency_releases_on_arrival() {
        let mut jb = JitterBuffer::new(Config {
            capacity: 10,
            latency_ns: 100,
            ..Config::default()
        });
        let mut evs = Vec::new();
        jb.push(&pkt(0, 0, 1), 0, 0, &mut record(&mut evs));
        jb.push(&pkt(2, 0, 1), 10, 1, &mut record(&mut evs));
        jb.push(&pkt(3, 0, 1), 110, 2, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0], "seq 2 waited exactly 100 ns");
        jb.push(&pkt(5, 0, 1), 111, 3, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 2, 3]);
        assert_eq!(jb.buffered(), 1);
    }

    #[test]
    fn reception_statistics_by_hand() {
        // PCMU at 8 kHz, 160 ticks a packet; 3 arrives after 4, 5 twice, 6
        // and 8 lost. Transit = arrival (ms * 8) - timestamp, in ticks:
        //   seq  arrival  transit  |D|  J*16 += |D| - (J*16 + 8) / 16
        //   0      0 ms      0      -     0 (first packet: no D)
        //   1     20 ms      0      0     0
        //   2     45 ms     40     40    40
        //   4     80 ms      0     40    40 + 40 - 3 = 77
        //   3     85 ms    200    200    77 + 200 - 5 = 272
        //   5    100 ms      0    200    272 + 200 - 17 = 455
        //   5    101 ms      8      8    455 + 8 - 28 = 435
        //   7    140 ms      0      8    435 + 8 - 27 = 416
        //   9    180 ms      0      0    416 + 0 - 26 = 390 -> J = 24
        let mut jb = JitterBuffer::new(Config::default());
        jb.set_clock_rate(Some(8000));
        let mut evs = Vec::new();
        let ms = 1_000_000;
        for (id, (seq, at)) in [
            (0u16, 0),
            (1, 20),
            (2, 45),
            (4, 80),
            (3, 85),
            (5, 100),
            (5, 101),
            (7, 140),
            (9, 180),
        ]
        .into_iter()
        .enumerate()
        {
            jb.push(
                &pkt(seq, 160 * u32::from(seq), 1),
                at * ms,
                id,
                &mut record(&mut evs),
            );
        }
        let want = ReceptionStats {
            expected: 10,
            received: 9,
            lost: 1,
            jitter: Some(24),
        };
        assert_eq!(jb.reception(), want);
        assert_eq!(jb.counters().dropped_duplicate, 1);
        // The stream ends: its counts stay, and a new stream of the same
        // source adds to them. Its first packet does not count in the jitter
        // (its timestamps need not follow), its second does.
        jb.flush(&mut record(&mut evs));
        assert_eq!(jb.reception(), want);
        jb.push(&pkt(100, 50_000, 1), 300 * ms, 10, &mut record(&mut evs));
        jb.push(
            &pkt(101, 50_160, 1),
            320 * ms + ms / 2,
            11,
            &mut record(&mut evs),
        );
        // |D| = 4 ticks: J*16 = 390 + 4 - 24 = 370.
        assert_eq!(
            jb.reception(),
            ReceptionStats {
                expected: 12,
                received: 11,
                lost: 1,
                jitter: Some(23),
            }
        );
    }

    #[test]
    fn reception_statistics_edge_cases() {
        // Without a clock rate there is no jitter; duplicates make the loss
        // negative (RFC 3550 A.3); a packet numbered before the stream's
        // first counts as received, not expected.
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        for (id, seq) in [5u16, 6, 7, 7, 7, 4].into_iter().enumerate() {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        let r = jb.reception();
        assert_eq!((r.expected, r.received, r.lost, r.jitter), (3, 6, -3, None));
        // Outliers, strays of other sources, RTCP and garbage do not count.
        push_seq(&mut jb, 9000, 6, &mut evs);
        jb.push(&pkt(8, 0, 77), 0, 7, &mut record(&mut evs));
        jb.push(&rtcp(1), 0, 8, &mut record(&mut evs));
        jb.push(&[0x80, 0], 0, 9, &mut record(&mut evs));
        push_seq(&mut jb, 8, 10, &mut evs);
        let r = jb.reception();
        assert_eq!((r.expected, r.received), (4, 7));
        // A change of clock rate restarts the jitter in the new units.
        jb.set_clock_rate(Some(8000));
        assert_eq!(jb.reception().jitter, Some(0));
        assert_eq!(ns_to_ticks(1_999_999_999, 8000), 15_999);
        assert_eq!(ns_to_ticks(u64::MAX, 48_000) as u32, {
            let exact = u128::from(u64::MAX) * 48_000 / 1_000_000_000;
            exact as u32
        });
    }

    #[test]
    fn next_expiry_tells_when_waiting_packets_are_due() {
        let mut jb = JitterBuffer::new(Config {
            capacity: 10,
            latency_ns: 100,
            ..Config::default()
        });
        let mut evs = Vec::new();
        assert_eq!(jb.next_expiry(), None, "nothing waits");
        jb.push(&pkt(0, 0, 1), 1000, 0, &mut record(&mut evs));
        assert_eq!(jb.next_expiry(), Some(1101), "the start-up hold");
        jb.release_expired(1100, &mut record(&mut evs));
        assert_eq!(evs, vec![]);
        jb.release_expired(1101, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0]);
        assert_eq!(jb.next_expiry(), None, "in order: nothing waits");
        jb.push(&pkt(1, 0, 1), 1110, 1, &mut record(&mut evs));
        assert_eq!(jb.next_expiry(), None);
        // 2 is lost: 3 and 4 wait behind it, due from 3's arrival.
        jb.push(&pkt(3, 0, 1), 1150, 2, &mut record(&mut evs));
        jb.push(&pkt(4, 0, 1), 1170, 3, &mut record(&mut evs));
        assert_eq!(jb.next_expiry(), Some(1251));
        // 6 waits behind 5 once 3 and 4 are out, due from its own arrival.
        jb.push(&pkt(6, 0, 1), 1200, 4, &mut record(&mut evs));
        jb.release_expired(1251, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 3, 4]);
        assert_eq!(jb.next_expiry(), Some(1301));
        jb.release_expired(u64::MAX, &mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1, 3, 4, 6]);
        assert_eq!((jb.next_expiry(), jb.counters().erasures), (None, 2));
        // Without latency nothing is ever due.
        jb.set_limits(0, DEFAULT_MAX_DROPOUT, DEFAULT_MAX_MISORDER);
        jb.push(&pkt(9, 0, 1), 1300, 5, &mut record(&mut evs));
        assert_eq!(jb.next_expiry(), None);
    }

    #[test]
    fn parse_errors_are_counted_by_fault() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        jb.push(&[0x80; 5], 0, 0, &mut record(&mut evs));
        jb.push(&pkt(0, 0, 1), 0, 1, &mut record(&mut evs));
        let mut v1 = pkt(1, 0, 1);
        v1[0] = 0x40;
        jb.push(&v1, 0, 2, &mut record(&mut evs));
        jb.push(&pkt(1, 0, 1), 0, 3, &mut record(&mut evs));
        jb.flush(&mut record(&mut evs));
        assert_eq!(pushed_seqs(&evs), vec![0, 1]);
        assert_eq!(jb.counters().dropped_parse, 2);
        let errs = jb.parse_errors();
        assert_eq!(errs[ParseError::TooShort.index()], 1);
        assert_eq!(errs[ParseError::BadVersion.index()], 1);
    }

    #[test]
    fn release_buffered_keeps_the_stream() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        for (id, seq) in [0u16, 2, 3, 6].into_iter().enumerate() {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        jb.release_buffered(&mut record(&mut evs));
        assert_eq!(
            evs,
            vec![
                Ev::Pushed(0, 65536, None),
                Ev::Pushed(1, 65538, Some((65537, 65537, 320))),
                Ev::Pushed(2, 65539, None),
                Ev::Pushed(3, 65542, Some((65540, 65541, 480))),
            ]
        );
        evs.clear();
        // The stream goes on: a packet from a released void is late, a
        // released one a duplicate, and the next in order passes at once.
        for (id, seq) in [(4, 5u16), (5, 3), (6, 7)] {
            push_seq(&mut jb, seq, id, &mut evs);
        }
        assert_eq!(
            evs,
            vec![
                Ev::Dropped(4, DropReason::Late),
                Ev::Dropped(5, DropReason::Duplicate),
                Ev::Pushed(6, 65543, None),
            ]
        );
        let c = jb.counters();
        assert_eq!((c.received, c.pushed, c.buffered), (7, 5, 0));
    }

    #[test]
    fn discard_drops_as_flushing() {
        let mut jb = JitterBuffer::new(Config::default());
        let mut evs = Vec::new();
        for (id, seq) in [0u16, 2, 3].into_iter().enumerate() {
            jb.push(&pkt(seq, 0, 1), 0, id, &mut record(&mut evs));
        }
        // Held on probation: dropped too, and never received (RFC 3550).
        jb.push(&pkt(50, 0, 9), 0, 3, &mut record(&mut evs));
        jb.discard(&mut record(&mut evs));
        assert_eq!(jb.counters().dropped_flushing, 3);
        assert_eq!(jb.buffered(), 0);
        let r = jb.reception();
        assert_eq!((r.expected, r.received), (4, 3));
        // A new stream starts afresh: 1 is not late.
        jb.push(&pkt(1, 0, 1), 0, 9, &mut record(&mut evs));
        jb.flush(&mut record(&mut evs));
        assert_eq!(evs.last(), Some(&Ev::Pushed(9, 65537, None)));
    }

    /// The same rules, written as plainly as possible over a sorted map.
    struct Model {
        cfg: Config,
        active: bool,
        starting: bool,
        first_at: u64,
        ssrc: u32,
        highest: u64,
        next: u64,
        last: (u64, u32),
        buf: BTreeMap<u64, (usize, u32, u64)>,
        released: HashSet<u64>,
        candidate: Option<Held>,
        resyncs: u64,
        ssrc_changes: u64,
        /// RFC 3550 A.1: the stream's first seq, its packets, and the
        /// expected and received counts of the streams before it.
        base: u64,
        received: u64,
        ended: (u64, u64),
        out: Vec<Ev>,
    }

    /// A packet the model holds outside its buffer.
    #[derive(Clone, Copy)]
    struct Held {
        id: usize,
        seq: u16,
        ts: u32,
        at: u64,
        ssrc: u32,
    }

    impl Model {
        fn new(cfg: Config) -> Self {
            Model {
                cfg,
                active: false,
                starting: false,
                first_at: 0,
                ssrc: 0,
                highest: 0,
                next: 0,
                last: (0, 0),
                buf: BTreeMap::new(),
                released: HashSet::new(),
                candidate: None,
                resyncs: 0,
                ssrc_changes: 0,
                base: 0,
                received: 0,
                ended: (0, 0),
                out: Vec::new(),
            }
        }

        fn confirms(&self, first: &Held, second: &Held) -> bool {
            let d = i64::from(seq_distance(first.seq, second.seq));
            first.ssrc == second.ssrc && d != 0 && d.unsigned_abs() < self.cfg.capacity as u64
        }

        fn drop_candidate(&mut self, c: Held) {
            let reason = if c.ssrc == self.ssrc {
                DropReason::Outlier
            } else {
                DropReason::SsrcProbation
            };
            self.out.push(Ev::Dropped(c.id, reason));
        }

        fn push(&mut self, id: usize, data: &[u8], at: u64) {
            if data.len() >= 2 && data[0] >> 6 == 2 && (192..=223).contains(&data[1]) {
                self.out.push(Ev::Dropped(id, DropReason::Rtcp));
                return;
            }
            let Ok(p) = Packet::parse(data) else {
                let e = Packet::parse(data).unwrap_err();
                self.out.push(Ev::Dropped(id, DropReason::Parse(e)));
                return;
            };
            let this = Held {
                id,
                seq: p.seq(),
                ts: p.timestamp(),
                at,
                ssrc: p.ssrc(),
            };
            if !self.active {
                self.start(this);
            } else {
                let d = i64::from(seq_distance(self.highest as u16, this.seq));
                let jump =
                    d > i64::from(self.cfg.max_dropout) || d < -i64::from(self.cfg.max_misorder);
                if this.ssrc != self.ssrc || jump {
                    // On probation, or a possible restart: wait for a second
                    // packet.
                    match self.candidate.take() {
                        Some(c) if self.confirms(&c, &this) => {
                            if c.ssrc == self.ssrc {
                                self.resyncs += 1;
                            } else {
                                self.ssrc_changes += 1;
                            }
                            self.flush();
                            self.start(c);
                            self.insert_any(this);
                        }
                        Some(c) => {
                            self.drop_candidate(c);
                            self.candidate = Some(this);
                        }
                        None => self.candidate = Some(this),
                    }
                } else {
                    if let Some(c) = self.candidate.take() {
                        self.drop_candidate(c);
                    }
                    self.insert_any(this);
                }
            }
            self.expire(at);
        }

        /// Releases what has waited more than the latency at `now`.
        fn expire(&mut self, now: u64) {
            let waited = |since: u64| now.saturating_sub(since) > self.cfg.latency_ns;
            if self.cfg.latency_ns > 0 && self.starting && waited(self.first_at) {
                self.begin();
            }
            while self.cfg.latency_ns > 0 && !self.starting {
                match self.buf.first_key_value() {
                    Some((_, &(_, _, arrived)))
                        if now.saturating_sub(arrived) > self.cfg.latency_ns =>
                    {
                        self.release_void()
                    }
                    _ => break,
                }
            }
        }

        fn start(&mut self, h: Held) {
            self.active = true;
            self.starting = true;
            self.first_at = h.at;
            self.ssrc = h.ssrc;
            let ext = 65536 + u64::from(h.seq);
            self.highest = ext;
            self.base = ext;
            self.received = 1;
            self.buf.insert(ext, (h.id, h.ts, h.at));
            if self.buf.len() >= STARTUP_PACKETS.min(self.cfg.capacity) {
                self.begin();
            }
        }

        fn insert_any(&mut self, h: Held) {
            if self.starting {
                self.insert_starting(h);
            } else {
                self.insert(h.id, h.seq, h.ts, h.at);
            }
        }

        /// Before the first release: held and sorted while all fit in
        /// `capacity` consecutive seqs.
        fn insert_starting(&mut self, h: Held) {
            let ext =
                (self.highest as i64 + i64::from(seq_distance(self.highest as u16, h.seq))) as u64;
            let lowest = *self.buf.first_key_value().unwrap().0;
            if self.highest.max(ext) - lowest.min(ext) >= self.cfg.capacity as u64 {
                self.begin();
                return self.insert(h.id, h.seq, h.ts, h.at);
            }
            self.highest = self.highest.max(ext);
            self.base = self.base.min(ext);
            self.received += 1;
            if self.buf.contains_key(&ext) {
                self.out.push(Ev::Dropped(h.id, DropReason::Duplicate));
                return;
            }
            self.buf.insert(ext, (h.id, h.ts, h.at));
            if self.buf.len() >= STARTUP_PACKETS.min(self.cfg.capacity) {
                self.begin();
            }
        }

        /// The lowest packet held starts the stream.
        fn begin(&mut self) {
            self.starting = false;
            let (&first, &(_, ts, _)) = self.buf.first_key_value().unwrap();
            self.last = (first - 1, ts);
            self.next = first;
            self.release_run();
        }

        fn insert(&mut self, id: usize, seq: u16, ts: u32, at: u64) {
            let ext =
                (self.highest as i64 + i64::from(seq_distance(self.highest as u16, seq))) as u64;
            self.received += 1;
            if ext < self.next {
                let r = if self.released.contains(&ext) {
                    DropReason::Duplicate
                } else {
                    DropReason::Late
                };
                self.out.push(Ev::Dropped(id, r));
                return;
            }
            self.highest = self.highest.max(ext);
            let cap = self.cfg.capacity as u64;
            if ext > self.next + cap {
                while self
                    .buf
                    .first_key_value()
                    .is_some_and(|(&k, _)| k <= ext - cap)
                {
                    self.release_void();
                }
                self.next = self.next.max(ext - cap);
            }
            if ext == self.next {
                self.release(ext, id, ts);
                self.release_run();
            } else if let std::collections::btree_map::Entry::Vacant(slot) = self.buf.entry(ext) {
                slot.insert((id, ts, at));
                if self.buf.len() >= self.cfg.capacity {
                    self.release_void();
                }
            } else {
                self.out.push(Ev::Dropped(id, DropReason::Duplicate));
            }
        }

        fn release_void(&mut self) {
            if self.starting {
                return self.begin();
            }
            if let Some((&k, _)) = self.buf.first_key_value() {
                self.next = k;
                self.release_run();
            }
        }

        fn release_run(&mut self) {
            while let Some((id, ts, _)) = self.buf.remove(&self.next) {
                self.release(self.next, id, ts);
            }
        }

        fn release(&mut self, ext: u64, id: usize, ts: u32) {
            let gap = (ext > self.last.0 + 1).then(|| {
                let diff = i64::from(ts.wrapping_sub(self.last.1) as i32).max(0) as u64;
                (self.last.0 + 1, ext - 1, diff)
            });
            self.out.push(Ev::Pushed(id, ext, gap));
            self.released.insert(ext);
            self.last = (ext, ts);
            self.next = ext + 1;
        }

        fn release_buffered(&mut self) {
            while !self.buf.is_empty() {
                self.release_void();
            }
        }

        fn flush(&mut self) {
            self.release_buffered();
            if let Some(c) = self.candidate.take() {
                self.drop_candidate(c);
            }
            if self.active {
                self.ended.0 += self.highest + 1 - self.base;
                self.ended.1 += self.received;
            }
            self.active = false;
            self.starting = false;
            self.released.clear();
        }
    }

    /// A random trace: PCMU-like stream with loss, reordering up to
    /// `cap - 1` places, duplicates, a seq wrap, sender restarts, SSRC
    /// changes and garbage, with arrival times in ns.
    fn trace(seed: u64, cap: usize, len: usize) -> Vec<(Vec<u8>, u64)> {
        let mut rng = SplitMix64::new(seed);
        let mut seq = 65535u16.wrapping_sub(rng.below(200) as u16);
        let mut ssrc = 1;
        let mut sent: Vec<Vec<u8>> = Vec::new();
        for i in 0..len as u32 {
            if rng.chance(0.01) {
                seq = rng.next_u32() as u16; // sender restart
            }
            if rng.chance(0.005) {
                ssrc += 1;
            }
            if rng.chance(0.01) {
                sent.push(vec![0x80, 0, 1]);
            }
            if rng.chance(0.01) {
                sent.push(rtcp(ssrc + 1000));
            }
            if rng.chance(0.01) {
                // A stray packet from elsewhere.
                sent.push(pkt(rng.next_u32() as u16, 0, 5000 + rng.below(3)));
            }
            let p = pkt(seq, i.wrapping_mul(160), ssrc);
            if !rng.chance(0.05) {
                sent.push(p.clone());
            }
            if rng.chance(0.03) {
                sent.push(p);
            }
            seq = seq.wrapping_add(1);
        }
        // Move some packets later by up to cap - 1 places.
        for i in (0..sent.len()).rev() {
            if rng.chance(0.1) {
                let to = (i + 1 + rng.below(cap as u32 - 1) as usize).min(sent.len() - 1);
                let p = sent.remove(i);
                sent.insert(to, p);
            }
        }
        let mut t = 0;
        sent.into_iter()
            .map(|p| {
                t += u64::from(rng.below(40_000_000));
                (p, t)
            })
            .collect()
    }

    fn check_invariants(n: usize, evs: &[Ev], c: &Counters) {
        let mut seen = vec![0u32; n];
        let mut prev: Option<u64> = None;
        let mut starts = 0;
        for e in evs {
            match *e {
                Ev::Dropped(id, _) => seen[id] += 1,
                Ev::Pushed(id, ext, gap) => {
                    seen[id] += 1;
                    match (prev, gap) {
                        (Some(p), Some((first, last, _))) => {
                            assert!(ext > p, "pushed seqs strictly increase");
                            assert_eq!(
                                (first, last),
                                (p + 1, ext - 1),
                                "a void is exactly the missing seqs"
                            );
                        }
                        (Some(p), None) if ext == p + 1 => {}
                        (_, None) => starts += 1,
                        (None, Some(_)) => panic!("erasure before the first packet"),
                    }
                    prev = Some(ext);
                }
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "every datagram is pushed xor dropped once"
        );
        // A new stream may happen to continue the old numbering, so only an
        // upper bound can be checked from the events alone.
        assert!(
            starts <= 1 + c.resyncs + c.ssrc_changes,
            "unexplained restarts"
        );
        let dropped = c.dropped_duplicate
            + c.dropped_late
            + c.dropped_parse
            + c.dropped_outlier
            + c.dropped_rtcp
            + c.dropped_ssrc_probation
            + c.dropped_flushing;
        assert_eq!(c.received, c.pushed + dropped);
        assert_eq!(c.received as usize, n);
    }

    #[test]
    fn random_traces_exercise_every_path() {
        // Guards the generator: a model check over traces that never restart
        // or reorder would prove little.
        let mut total = Counters::default();
        for seed in 0..20 {
            let mut jb = JitterBuffer::new(Config {
                capacity: 8,
                ..Config::default()
            });
            for (id, (data, at)) in trace(seed, 8, 400).iter().enumerate() {
                jb.push(data, *at, id, &mut |_| {});
            }
            let c = jb.counters();
            total.resyncs += c.resyncs;
            total.ssrc_changes += c.ssrc_changes;
            total.dropped_late += c.dropped_late;
            total.dropped_duplicate += c.dropped_duplicate;
            total.dropped_parse += c.dropped_parse;
            total.dropped_outlier += c.dropped_outlier;
            total.dropped_rtcp += c.dropped_rtcp;
            total.dropped_ssrc_probation += c.dropped_ssrc_probation;
            total.erasures += c.erasures;
        }
        let t = total;
        assert!(
            [
                t.resyncs,
                t.ssrc_changes,
                t.dropped_late,
                t.dropped_duplicate,
                t.dropped_parse,
                t.dropped_rtcp,
                t.dropped_ssrc_probation,
                t.dropped_outlier,
                t.erasures
            ]
            .iter()
            .all(|&n| n > 0),
            "{t:?}"
        );
    }

    proptest! {
        #[test]
        fn matches_model_and_keeps_invariants(
            seed: u64,
            cap in 2usize..40,
            len in 0usize..400,
            latency in prop::sample::select(vec![0u64, 30_000_000, 200_000_000]),
        ) {
            let cfg = Config { capacity: cap, latency_ns: latency, ..Config::default() };
            let t = trace(seed, cap, len);
            let mut jb = JitterBuffer::new(cfg);
            let mut model = Model::new(cfg);
            let mut evs = Vec::new();
            // Serialized events in the element release what is buffered
            // mid-stream.
            let mut events = SplitMix64::new(!seed);
            for (id, (data, at)) in t.iter().enumerate() {
                jb.push(data, *at, id, &mut record(&mut evs));
                model.push(id, data, *at);
                prop_assert_eq!(&evs, &model.out, "after datagram {}", id);
                if events.chance(0.02) {
                    jb.release_buffered(&mut record(&mut evs));
                    model.release_buffered();
                    prop_assert_eq!(&evs, &model.out, "after a release at {}", id);
                }
                // A timer firing while no packet comes: at the time the
                // core asks for, or at any time.
                if events.chance(0.05) {
                    let now = match jb.next_expiry() {
                        Some(due) if events.chance(0.5) => {
                            // Nothing is due just before.
                            jb.release_expired(due - 1, &mut record(&mut evs));
                            prop_assert_eq!(evs.len(), model.out.len(), "early at {}", id);
                            due
                        }
                        _ => *at + u64::from(events.below(300_000_000)),
                    };
                    jb.release_expired(now, &mut record(&mut evs));
                    model.expire(now);
                    prop_assert_eq!(&evs, &model.out, "after a timer at {}", id);
                }
            }
            jb.flush(&mut record(&mut evs));
            model.flush();
            prop_assert_eq!(&evs, &model.out);
            let c = jb.counters();
            prop_assert_eq!(c.buffered, 0);
            prop_assert_eq!((c.resyncs, c.ssrc_changes), (model.resyncs, model.ssrc_changes));
            let r = jb.reception();
            prop_assert_eq!((r.expected, r.received), model.ended);
            prop_assert_eq!(r.lost, r.expected as i64 - r.received as i64);
            check_invariants(t.len(), &evs, &c);
        }

        #[test]
        fn any_order_of_the_first_packets_is_repaired(
            seed: u64,
            cap in 2usize..30,
            restart in any::<bool>(),
        ) {
            // The first arrivals of a stream, in any order, up to as many as
            // the start-up hold keeps; the stream may be a restart.
            let mut rng = SplitMix64::new(seed);
            let start = rng.next_u32() as u16;
            let held = STARTUP_PACKETS.min(cap);
            let mut first: Vec<u16> = (0..held as u16).map(|i| start.wrapping_add(i)).collect();
            for i in (1..first.len()).rev() {
                first.swap(i, rng.below(i as u32 + 1) as usize);
            }
            let mut seqs: Vec<(u16, u32)> = Vec::new();
            if restart {
                seqs.extend((0..5u16).map(|i| (start.wrapping_add(20_000 + i), 0)));
            }
            seqs.extend(first.iter().map(|&s| (s, 0)));
            seqs.extend((held as u16..40).map(|i| (start.wrapping_add(i), 0)));
            let (evs, c) = run(cap, &seqs);
            let mut want: Vec<u16> = Vec::new();
            if restart {
                want.extend((0..5u16).map(|i| start.wrapping_add(20_000 + i)));
            }
            want.extend((0..40u16).map(|i| start.wrapping_add(i)));
            prop_assert_eq!(pushed_seqs(&evs), want);
            prop_assert_eq!((c.erasures, c.dropped_late, c.resyncs), (0, 0, u64::from(restart)));
        }

        #[test]
        fn bounded_reorder_without_loss_loses_nothing(seed: u64, cap in 2usize..30, blocks in 1usize..30) {
            // Shuffles inside blocks of `cap` keep every packet within
            // cap - 1 places of its slot: nothing is erased or late.
            let mut rng = SplitMix64::new(seed);
            let mut order: Vec<u16> = Vec::new();
            let start = rng.next_u32() as u16;
            for b in 0..blocks {
                let mut block: Vec<u16> = (0..cap).map(|i| start.wrapping_add((b * cap + i) as u16)).collect();
                for i in (1..block.len()).rev() {
                    block.swap(i, rng.below(i as u32 + 1) as usize);
                }
                order.extend(block);
            }
            // Nothing numbered before the first arrivals can start the
            // stream, so the first packet must come among them.
            let first = order.iter().position(|&s| s == start).unwrap();
            order.swap(rng.below(STARTUP_PACKETS.min(cap) as u32) as usize, first);
            let seqs: Vec<(u16, u32)> = order.iter().map(|&s| (s, 0)).collect();
            let (evs, c) = run(cap, &seqs);
            let want: Vec<u16> = (0..order.len()).map(|i| start.wrapping_add(i as u16)).collect();
            prop_assert_eq!(pushed_seqs(&evs), want);
            prop_assert_eq!((c.erasures, c.dropped_late), (0, 0));
        }
    }
}
