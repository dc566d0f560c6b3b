//! RTP session core (RFC 3550), free of GStreamer: one channel's reception
//! statistics, sender state and RTCP, sans-IO.
//!
//! A [`Session`] owns no socket and reads no clock. The caller hands it
//! packets with the time they arrived or left, and asks it for RTCP:
//!
//! - [`Session::handle_rtp`] for every RTP packet received,
//!   [`Session::handle_sent_rtp`] for every RTP packet sent,
//!   [`Session::handle_rtcp`] for every RTCP datagram received;
//! - [`Session::poll_rtcp`] writes a compound report when one is due, and
//!   [`Session::next_deadline`] says when the next one is;
//! - [`Session::bye`] writes the compound that says goodbye;
//! - [`Session::stats`] takes a [`SessionStats`] snapshot.
//!
//! Time: `now` is the caller's monotonic clock in nanoseconds (any origin,
//! never going back). Sender reports also need wall-clock time in NTP format;
//! the session derives it as `ntp_at_zero + now`, where
//! [`Config::ntp_at_zero`] is the NTP time at `now` = 0 (see
//! [`ntp_at_zero`] to compute it from the system clock once). Round-trip
//! times only compare our own NTP times with each other, so they do not
//! depend on the wall clock being right.
//!
//! Scope: one local SSRC and one remote source at a time (the channel's
//! peer); a new remote SSRC replaces the old one once it passes probation.
//! Nothing is allocated after construction: the per-packet paths only update
//! fixed fields.

use std::fmt;
use std::time::Duration;

use crate::arith::mul_div_floor;
use crate::prng::SplitMix64;
use crate::rtcp::{self, Compound, ReportBlock, RtcpError, SenderInfo};
use crate::rtp::{Packet, SeqExtender};

/// Sequential packets a new SSRC must send before it is taken as the remote
/// source (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u8 = 2;
const _: () = assert!(
    MIN_SEQUENTIAL >= 2,
    "probation takes a first packet and more"
);
/// Largest forward jump still taken as the same sequence (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward step still taken as a late or duplicate packet.
pub const MAX_MISORDER: u16 = 100;
/// Default smallest interval between reports (RFC 3550 6.2), in ms.
pub const DEFAULT_MIN_INTERVAL_MS: u64 = 5000;
/// Longest CNAME, ours or the peer's: an SDES item's length is one octet.
pub const MAX_CNAME_LEN: usize = rtcp::MAX_TEXT_LEN;
/// Room [`Session::poll_rtcp`] and [`Session::bye`] need in their output
/// buffer: SR with one block, SDES with the longest CNAME, BYE.
pub const MAX_COMPOUND_LEN: usize =
    rtcp::sr_len(1) + rtcp::sdes_cname_len(MAX_CNAME_LEN) + rtcp::bye_len(1, 0);

/// The value of a `u64` statistic that is not known (yet).
pub const UNKNOWN: u64 = u64::MAX;
/// The value of an `i64` statistic that is not known (yet).
pub const UNKNOWN_SIGNED: i64 = i64::MIN;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

const NS_PER_S: u64 = 1_000_000_000;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// e − 3/2: RFC 3550 6.3.1 divides the randomised interval by it because
/// timer reconsideration otherwise settles below the intended RTCP bandwidth.
const COMPENSATION: f64 = std::f64::consts::E - 1.5;

/// `ns` nanoseconds as NTP 32.32 fixed-point seconds (truncated).
#[inline]
pub fn ntp_from_ns(ns: u64) -> u64 {
    let (secs, rem) = (ns / NS_PER_S, ns % NS_PER_S);
    // rem < 10^9 < 2^30, so rem << 32 fits in 64 bits.
    (secs << 32) | ((rem << 32) / NS_PER_S)
}

/// A wall-clock time, given as the time since the Unix epoch, in NTP format.
/// NTP era 0 ends in 2036; the value wraps there, as NTP timestamps do.
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    ntp_from_ns(since_epoch.as_nanos() as u64).wrapping_add(NTP_UNIX_OFFSET_S << 32)
}

/// The [`Config::ntp_at_zero`] that makes the session's NTP time match the
/// wall clock: `now_ns` is the caller's monotonic time and `since_epoch` the
/// system time (since the Unix epoch), read at the same moment.
pub fn ntp_at_zero(now_ns: u64, since_epoch: Duration) -> u64 {
    ntp_from_unix(since_epoch).wrapping_sub(ntp_from_ns(now_ns))
}

/// The middle 32 bits of an NTP timestamp: the "NTP short" format (16.16
/// seconds) of LSR and of round-trip arithmetic.
#[inline]
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (DLSR's unit), truncated; saturates at 2^32 − 1
/// (18 hours).
#[inline]
pub fn ntp_short_from_ns(ns: u64) -> u32 {
    let (secs, rem) = (ns / NS_PER_S, ns % NS_PER_S);
    let units = (secs << 16) | ((rem << 16) / NS_PER_S);
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// How much NTP-short rounding may push a near-zero round trip below zero:
/// A, LSR and DLSR are each truncated to 1/65536 s, so a true round trip of
/// 0 can come out up to two units under; four leave a margin.
const RTT_ROUNDING_UNITS: u32 = 4;

/// Round-trip time in microseconds from a report block about us (RFC 3550
/// 6.4.1): `arrival` − LSR − DLSR, all in 1/65536 s, with `arrival` the NTP
/// short time the block arrived at. The subtraction wraps in 32 bits, so it
/// stays right across the wrap of the NTP short clock (every 18 hours).
///
/// None when LSR is 0 (the peer had no SR from us) or when the result is
/// negative beyond rounding (the peer's delay exceeds the time that passed:
/// a bogus block, or an LSR from a clock we no longer use). Rounded to the
/// nearest microsecond.
pub fn round_trip_us(arrival: u32, lsr: u32, dlsr: u32) -> Option<u64> {
    if lsr == 0 {
        return None;
    }
    let units = arrival.wrapping_sub(lsr).wrapping_sub(dlsr);
    if units > u32::MAX - RTT_ROUNDING_UNITS {
        return Some(0);
    }
    // Read as signed: the top half is a negative round trip.
    if units >= 1 << 31 {
        return None;
    }
    Some((u64::from(units) * 1_000_000 + (1 << 15)) >> 16)
}

/// Equipment impairment of G.711 (ITU-T G.113 Appendix I).
const IE_G711: f64 = 0.0;
/// Packet-loss robustness of G.711 without packet-loss concealment under
/// random loss (ITU-T G.113 Appendix I).
const BPL_G711: f64 = 4.3;

/// Mean opinion score × 100 (100 to 450) estimated from the packet loss
/// ratio (0.0 to 1.0), the interarrival jitter and the round-trip time, by
/// the simplified ITU-T G.107 E-model: the delay part as media relays
/// (rtpengine) compute it, the loss part from G.107 itself (rtpengine
/// subtracts 2.5 per percent lost instead, which understates loss for
/// G.711):
///
/// - effective latency, ms: `L = RTT/2 + 2 × jitter + 10` (one-way delay,
///   a jitter buffer of twice the jitter, 10 ms of codec delay);
/// - delay impairment: `Id = L / 40` when `L < 160`, else `(L − 120) / 10`;
/// - loss impairment, ITU-T G.107's equation for `Ie,eff` with the
///   loss in percent `Ppl`, random loss (`BurstR = 1`) and the values of
///   G.711 without concealment from G.113 Appendix I (`Ie = 0`,
///   `Bpl = 4.3`):
///   `Ie,eff = Ie + (95 − Ie) × Ppl / (Ppl / BurstR + Bpl)`;
/// - `R = 93.2 − Id − Ie,eff`;
/// - `MOS = 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R)`, 1 for `R ≤ 0`, 4.5
///   for `R ≥ 100`, clamped to [1, 4.5].
///
/// A session passes 0 for a round-trip time or jitter it does not know.
pub fn mos_x100(loss: f64, jitter_us: u64, rtt_us: u64) -> u32 {
    let latency_ms = rtt_us as f64 / 2000.0 + 2.0 * jitter_us as f64 / 1000.0 + 10.0;
    let id = if latency_ms < 160.0 {
        latency_ms / 40.0
    } else {
        (latency_ms - 120.0) / 10.0
    };
    // NaN (a caller's 0/0) counts as no loss rather than poisoning R.
    let ppl = 100.0
        * if loss.is_nan() {
            0.0
        } else {
            loss.clamp(0.0, 1.0)
        };
    let ie_eff = IE_G711 + (95.0 - IE_G711) * ppl / (ppl + BPL_G711);
    let r = 93.2 - id - ie_eff;
    let mos = if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    };
    (mos.clamp(1.0, 4.5) * 100.0).round() as u32
}

/// When reports are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportInterval {
    /// RFC 3550 6.3 / A.7 for a two-member session: `min_ms` between
    /// reports, halved before the first, each interval randomised by a
    /// factor in [0.5, 1.5) and divided by e − 3/2. The bandwidth term is
    /// left out: a channel does not know its session bandwidth, and for a
    /// G.711 call between two members it comes to about 0.5 s, far below
    /// the 5 s minimum.
    Randomized { min_ms: u64 },
    /// Exactly `ms` between reports, the first included.
    Fixed { ms: u64 },
}

impl Default for ReportInterval {
    fn default() -> Self {
        ReportInterval::Randomized {
            min_ms: DEFAULT_MIN_INTERVAL_MS,
        }
    }
}

/// A session's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// Our SSRC until we send: reports carry it, and it follows the SSRC of
    /// the packets given to [`Session::handle_sent_rtp`], since SRs and the
    /// peer's report blocks are about the stream actually sent.
    pub ssrc: u32,
    /// RTP clock rate of the channel's payload, both directions (one channel
    /// carries one codec). None (or Some(0)): jitter is unknown and SR RTP
    /// timestamps are not extrapolated.
    pub clock_rate: Option<u32>,
    pub interval: ReportInterval,
    /// Seeds the interval randomisation: give each session its own.
    pub seed: u64,
    /// NTP time (32.32) at `now` = 0; see [`ntp_at_zero`].
    pub ntp_at_zero: u64,
}

/// A configuration a session refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The CNAME is longer than [`MAX_CNAME_LEN`] bytes.
    CnameTooLong(usize),
    /// A report interval of 0 ms.
    ZeroInterval,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::CnameTooLong(len) => {
                write!(f, "CNAME of {len} bytes is longer than {MAX_CNAME_LEN}")
            }
            ConfigError::ZeroInterval => f.write_str("RTCP report interval of 0 ms"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What [`Session::handle_rtp`] made of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Counted for the remote source.
    Counted,
    /// From an SSRC that is not the remote source and has not yet sent
    /// [`MIN_SEQUENTIAL`] packets in sequence: not counted.
    Probation,
    /// This packet ended the probation of `ssrc`, the remote source from now
    /// on, in place of `previous`. Its statistics start here, with this
    /// packet counted.
    NewSource { ssrc: u32, previous: Option<u32> },
    /// A jump beyond [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind: not
    /// counted, unless the next packet follows it (then [`Received::Restarted`]).
    BadSequence,
    /// This packet followed a bad jump, so the source restarted its sequence:
    /// statistics start over from it (RFC 3550 A.1), this packet counted.
    Restarted,
}

/// What a received RTCP compound said, for the caller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcpSummary {
    /// SSRC of the last SR in the compound, whose times were kept for LSR
    /// and DLSR.
    pub sender_report: Option<u32>,
    /// Report blocks about our SSRC.
    pub reports_about_us: u32,
    /// A round-trip time measured from one of them, µs.
    pub rtt_us: Option<u64>,
    /// The first SSRC a BYE listed: the element posts a message with it.
    pub bye: Option<u32>,
    /// SSRCs the compound's BYEs listed in all.
    pub bye_sources: u32,
    /// The peer's CNAME changed: read it with [`Session::remote_cname`].
    pub cname_changed: bool,
    /// The compound did not start with an SR or RR (RFC 3550 6.1), accepted
    /// anyway and counted under `rtcp-not-report-first`.
    pub not_report_first: bool,
}

/// How a statistic is typed in the stats structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    U64,
    I64,
}

/// A statistic's value with its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatValue {
    U64(u64),
    I64(i64),
}

trait Stat: Copy {
    const KIND: StatKind;
    fn value(self) -> StatValue;
    /// The packed-column encoding: signed values as two's complement.
    fn column(self) -> u64;
}

impl Stat for u64 {
    const KIND: StatKind = StatKind::U64;
    fn value(self) -> StatValue {
        StatValue::U64(self)
    }
    fn column(self) -> u64 {
        self
    }
}

impl Stat for i64 {
    const KIND: StatKind = StatKind::I64;
    fn value(self) -> StatValue {
        StatValue::I64(self)
    }
    fn column(self) -> u64 {
        self as u64
    }
}

/// Declares the stats snapshot: each field once, with its type and stats
/// name, plus the names, kinds and packed columns in declaration order.
macro_rules! session_stats {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ident = $key:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl $name {
            /// Stats field names, in column order.
            pub const NAMES: &'static [&'static str] = &[$($key),+];
            /// Each field's type, in column order.
            pub const KINDS: &'static [StatKind] = &[$(<$ty as Stat>::KIND),+];
            /// Number of columns [`Self::write_columns`] writes.
            pub const NCOLUMNS: usize = Self::NAMES.len();

            /// `(stats name, value)` for every field, in column order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, StatValue)> {
                Self::NAMES.iter().copied().zip([$(self.$field.value()),+])
            }

            /// Writes the fields into `out` in column order, `i64` fields as
            /// two's complement; `out` should hold [`Self::NCOLUMNS`] values
            /// (a shorter one gets the first columns).
            pub fn write_columns(&self, out: &mut [u64]) {
                for (o, v) in out.iter_mut().zip([$(self.$field.column()),+]) {
                    *o = v;
                }
            }
        }
    };
}

session_stats! {
    /// One session's statistics. Receive-side fields describe the remote
    /// source as RFC 3550 A.1 counts it: they start over when a new SSRC
    /// replaces it and when it restarts its sequence. Send-side fields start
    /// over when our SSRC changes. [`UNKNOWN`] (`u64::MAX`) and
    /// [`UNKNOWN_SIGNED`] (`i64::MIN`) mark values not known yet.
    pub struct SessionStats {
        /// Our SSRC.
        local_ssrc: u64 = "local-ssrc",
        /// SSRC of the remote source; UNKNOWN before one passed probation.
        remote_ssrc: u64 = "remote-ssrc",
        /// RTP packets counted for the remote source (duplicates included,
        /// as RFC 3550 A.3 counts them). Named apart from a transport's
        /// datagram count: RTCP and packets on probation are not in it.
        packets_received: u64 = "rtp-packets-received",
        /// Their payload octets (RTP header and padding excluded, as an SR's
        /// octet count is).
        octets_received: u64 = "rtp-payload-octets-received",
        /// Highest extended sequence number minus the first, plus one.
        packets_expected: u64 = "packets-expected",
        /// Expected minus received: negative when duplicates outnumber losses.
        packets_lost: i64 = "packets-lost",
        /// Fraction lost over the last report interval, of 256, as sent in
        /// our last report block.
        fraction_lost: u64 = "fraction-lost",
        /// Interarrival jitter (RFC 3550 A.8), timestamp units; UNKNOWN
        /// without a clock rate or a remote source.
        jitter: u64 = "jitter",
        /// The same in microseconds; UNKNOWN likewise.
        jitter_us: u64 = "jitter-us",
        /// The largest jitter seen from the remote source, µs; UNKNOWN likewise.
        max_jitter_us: u64 = "max-jitter-us",
        /// RTP packets we sent (the SR's packet count, not wrapped).
        packets_sent: u64 = "rtp-packets-sent",
        /// Their payload octets (the SR's octet count, not wrapped).
        octets_sent: u64 = "rtp-payload-octets-sent",
        /// RTCP compounds we wrote (reports and BYEs).
        rtcp_sent: u64 = "rtcp-sent",
        /// RTCP datagrams given to the session, valid or not.
        rtcp_received: u64 = "rtcp-received",
        /// Those refused as malformed: the sum of the rtcp-dropped-* faults.
        rtcp_dropped: u64 = "rtcp-dropped",
        /// Shorter than a header, or an SR/RR shorter than its fixed part.
        rtcp_dropped_too_short: u64 = "rtcp-dropped-too-short",
        /// A packet whose version is not 2.
        rtcp_dropped_bad_version: u64 = "rtcp-dropped-bad-version",
        /// A packet length past the end of the datagram.
        rtcp_dropped_length_overrun: u64 = "rtcp-dropped-length-overrun",
        /// A report count past the end of its packet.
        rtcp_dropped_report_overrun: u64 = "rtcp-dropped-report-overrun",
        /// Padding on a packet that is not last, or a bad pad count.
        rtcp_dropped_bad_padding: u64 = "rtcp-dropped-bad-padding",
        /// An SDES chunk or item past the end of its packet.
        rtcp_dropped_sdes_overrun: u64 = "rtcp-dropped-sdes-overrun",
        /// A BYE source list or reason past the end of its packet.
        rtcp_dropped_bye_overrun: u64 = "rtcp-dropped-bye-overrun",
        /// Compounds accepted although their first packet is not an SR or RR.
        rtcp_not_report_first: u64 = "rtcp-not-report-first",
        /// Sender reports received.
        sr_received: u64 = "sr-received",
        /// Receiver reports received.
        rr_received: u64 = "rr-received",
        /// BYE packets received.
        bye_received: u64 = "bye-received",
        /// Fraction of our packets the peer lost, of 256, from its last
        /// report block about us; UNKNOWN before one.
        remote_fraction_lost: u64 = "remote-fraction-lost",
        /// Cumulative count of our packets the peer lost (signed 24 bits on
        /// the wire); UNKNOWN_SIGNED before a report block about us.
        remote_packets_lost: i64 = "remote-packets-lost",
        /// Jitter of our packets as the peer measures it, µs; UNKNOWN before
        /// a report block about us or without a clock rate.
        remote_jitter_us: u64 = "remote-jitter-us",
        /// Last round-trip time, µs (RFC 3550 6.4.1); UNKNOWN before the
        /// peer reported on one of our SRs.
        rtt_us: u64 = "rtt-us",
        /// Mean opinion score × 100 of what we receive, from our last report
        /// block's interval (see [`mos_x100`]); UNKNOWN before one.
        mos: u64 = "mos",
    }
}

impl SessionStats {
    /// The columns an RTP packet received or sent may change (from
    /// `rtp-packets-received` to `rtp-payload-octets-sent`, with
    /// `fraction-lost` among them); the others change only with RTCP, a new
    /// remote source, our SSRC or a setting. A packet's cost is then to
    /// copy these ([`Session::packet_columns`]), not all of them.
    pub const PACKET_COLUMNS: std::ops::Range<usize> = 2..12;

    /// Columns that are not counts, so a sum over sessions means nothing:
    /// identifiers, ratios, times and scores of one session each, and what
    /// the peer reports (unknown, a sentinel, until it does).
    pub const NOT_SUMMABLE: &'static [&'static str] = &[
        "local-ssrc",
        "remote-ssrc",
        "fraction-lost",
        "jitter",
        "jitter-us",
        "max-jitter-us",
        "remote-fraction-lost",
        "remote-packets-lost",
        "remote-jitter-us",
        "rtt-us",
        "mos",
    ];

    /// Whether column `column` (an index into [`Self::NAMES`]) is a count
    /// that adds over sessions, as totals over many channels do. Signed
    /// columns add as two's complement (`wrapping_add` of the packed words).
    /// A `const fn`, so a caller can make a table of it at compile time.
    pub const fn is_summable(column: usize) -> bool {
        if column >= Self::NCOLUMNS {
            return false;
        }
        let name = Self::NAMES[column].as_bytes();
        let mut i = 0;
        while i < Self::NOT_SUMMABLE.len() {
            let other = Self::NOT_SUMMABLE[i].as_bytes();
            if name.len() == other.len() {
                let mut j = 0;
                while j < name.len() && name[j] == other[j] {
                    j += 1;
                }
                if j == name.len() {
                    return false;
                }
            }
            i += 1;
        }
        true
    }
}

/// See [`Session::reception`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    pub ssrc: u32,
    pub highest: u64,
    pub jitter16: u64,
    pub max_jitter16: u64,
}

/// What the session knows of the remote source: RFC 3550 A.1's `source`
/// with the 64-bit extended numbers of [`SeqExtender`] in place of
/// `cycles` + `max_seq`.
#[derive(Debug, Clone)]
struct RemoteSource {
    ssrc: u32,
    ext: SeqExtender,
    /// Extended number of the first packet counted.
    base: u64,
    /// The sequence number that would confirm a restart after a bad jump.
    bad_seq: Option<u16>,
    received: u64,
    octets: u64,
    expected_prior: u64,
    received_prior: u64,
    /// As sent in the last report block.
    fraction_lost: u8,
    /// Relative transit time of the last packet, timestamp units.
    transit: Option<u32>,
    /// Jitter × 16, the integer form of RFC 3550 A.8.
    jitter16: u64,
    max_jitter16: u64,
    /// A BYE named it: no report blocks about it until it sends again.
    byed: bool,
}

impl RemoteSource {
    /// A.1 `init_seq`, then the packet `seq` counted.
    fn new(ssrc: u32, seq: u16) -> Self {
        let mut ext = SeqExtender::new();
        let base = ext.extend(seq);
        RemoteSource {
            ssrc,
            ext,
            base,
            bad_seq: None,
            received: 0,
            octets: 0,
            expected_prior: 0,
            received_prior: 0,
            fraction_lost: 0,
            transit: None,
            jitter16: 0,
            max_jitter16: 0,
            byed: false,
        }
    }

    /// A.1 `update_seq` for a source past probation. Returns whether the
    /// packet counts.
    fn update_seq(&mut self, seq: u16) -> Received {
        let max = self.ext.highest().unwrap_or(self.base) as u16;
        let udelta = seq.wrapping_sub(max);
        if udelta < MAX_DROPOUT {
            // In order, possibly with a gap: the highest moves on.
            self.ext.extend(seq);
            Received::Counted
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if self.bad_seq == Some(seq) {
                // Two packets agree on the jump: the sender restarted.
                self.restart(seq);
                Received::Restarted
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                Received::BadSequence
            }
        } else {
            // Late or duplicate: counted, the highest stays.
            Received::Counted
        }
    }

    /// A.1 `init_seq` on a confirmed restart. The jitter carries on, but not
    /// its transit: timestamps after a restart need not follow the old ones.
    fn restart(&mut self, seq: u16) {
        self.ext.reset();
        self.base = self.ext.extend(seq);
        self.bad_seq = None;
        self.received = 0;
        self.octets = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// Counts a packet and updates the jitter (A.8) from its arrival.
    #[inline]
    fn count(&mut self, timestamp: u32, payload_len: usize, now: u64, clock_rate: Option<u32>) {
        self.received += 1;
        self.octets += payload_len as u64;
        let Some(rate) = clock_rate else {
            return;
        };
        // Arrival in timestamp units, modulo 2^32 like the timestamps.
        let arrival = mul_div_floor(now, u64::from(rate), NS_PER_S) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J += (|D| - J) / 16, kept as 16 J with rounding (A.8).
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
            self.max_jitter16 = self.max_jitter16.max(self.jitter16);
        }
        self.transit = Some(transit);
    }

    fn highest(&self) -> u64 {
        self.ext.highest().unwrap_or(self.base)
    }

    fn expected(&self) -> u64 {
        self.highest() - self.base + 1
    }

    fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// The interarrival jitter in timestamp units (kept as 16 J).
    fn jitter(&self) -> u64 {
        self.jitter16 >> 4
    }
}

/// An SSRC on probation to become the remote source.
#[derive(Debug, Clone, Copy)]
struct Probation {
    ssrc: u32,
    max_seq: u16,
    /// Sequential packets still needed.
    left: u8,
}

/// The last SR from the peer, for LSR and DLSR.
#[derive(Debug, Clone, Copy)]
struct ReceivedSr {
    ssrc: u32,
    info: SenderInfo,
    arrival: u64,
}

/// What the peer's last report block about us said.
#[derive(Debug, Clone, Copy)]
struct PeerReport {
    fraction_lost: u8,
    cumulative_lost: i32,
    jitter: u32,
}

/// The counts come first: [`Session::packet_columns`] reads them.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Sender {
    packets: u64,
    octets: u64,
    /// RTP timestamp of the last packet sent, and when.
    last: Option<(u32, u64)>,
    /// `packets` when the last and the second last reports were written.
    packets_at_reports: [u64; 2],
}

#[derive(Debug, Clone, Copy, Default)]
struct RtcpCounts {
    sent: u64,
    received: u64,
    dropped: [u64; RtcpError::ALL.len()],
    not_report_first: u64,
    sr: u64,
    rr: u64,
    bye: u64,
}

/// A fixed buffer for a CNAME, so keeping one never allocates.
#[derive(Clone)]
struct Cname {
    bytes: [u8; MAX_CNAME_LEN],
    len: u8,
}

impl Cname {
    const EMPTY: Cname = Cname {
        bytes: [0; MAX_CNAME_LEN],
        len: 0,
    };

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Keeps `name` (at most [`MAX_CNAME_LEN`] bytes, as an SDES item is);
    /// returns whether it changed.
    fn set(&mut self, name: &[u8]) -> bool {
        let name = &name[..name.len().min(MAX_CNAME_LEN)];
        if name == self.as_bytes() {
            return false;
        }
        self.bytes[..name.len()].copy_from_slice(name);
        self.len = name.len() as u8;
        true
    }
}

impl fmt::Debug for Cname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// One channel's RTP session. See the module documentation.
///
/// Laid out as written, from the start of a cache line: what an RTP packet
/// received reads and writes, and the send counts published with it, fill
/// the first two lines. With thousands of sessions, each one is cold by its
/// next packet, and every line touched is a miss.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Session {
    remote: Option<RemoteSource>,
    clock_rate: Option<u32>,
    sender: Sender,
    probation: Option<Probation>,

    local_ssrc: u32,
    interval: ReportInterval,
    ntp_at_zero: u64,
    cname: Cname,
    rng: SplitMix64,

    last_sr: Option<ReceivedSr>,
    remote_cname: Cname,
    mos_x100: Option<u32>,

    peer_report: Option<PeerReport>,
    rtt_us: Option<u64>,

    next_report: u64,
    /// No report written yet: the first interval is halved.
    initial: bool,
    byed: bool,
    counts: RtcpCounts,
}

impl Session {
    /// A session started at `now`, whose first report is due one (initial)
    /// interval later.
    pub fn new(config: &Config, cname: &str, now: u64) -> Result<Self, ConfigError> {
        if cname.len() > MAX_CNAME_LEN {
            return Err(ConfigError::CnameTooLong(cname.len()));
        }
        let (ReportInterval::Randomized { min_ms: ms } | ReportInterval::Fixed { ms }) =
            config.interval;
        if ms == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        let mut own = Cname::EMPTY;
        own.set(cname.as_bytes());
        let mut session = Session {
            local_ssrc: config.ssrc,
            clock_rate: config.clock_rate.filter(|&r| r > 0),
            interval: config.interval,
            ntp_at_zero: config.ntp_at_zero,
            cname: own,
            rng: SplitMix64::new(config.seed),
            remote: None,
            probation: None,
            last_sr: None,
            remote_cname: Cname::EMPTY,
            mos_x100: None,
            sender: Sender::default(),
            peer_report: None,
            rtt_us: None,
            next_report: 0,
            initial: true,
            byed: false,
            counts: RtcpCounts::default(),
        };
        session.next_report = now.saturating_add(session.interval_ns());
        Ok(session)
    }

    /// Our SSRC now.
    pub fn local_ssrc(&self) -> u32 {
        self.local_ssrc
    }

    /// SSRC of the remote source, once one passed probation.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote.as_ref().map(|r| r.ssrc)
    }

    /// The peer's CNAME, from the first CNAME item of the last SDES that
    /// carried one (empty before).
    pub fn remote_cname(&self) -> &[u8] {
        self.remote_cname.as_bytes()
    }

    pub fn clock_rate(&self) -> Option<u32> {
        self.clock_rate
    }

    /// Changes the clock rate (None or Some(0): unknown). The jitter measured
    /// so far is in the old rate's units, so it starts over.
    pub fn set_clock_rate(&mut self, clock_rate: Option<u32>) {
        let clock_rate = clock_rate.filter(|&r| r > 0);
        if clock_rate == self.clock_rate {
            return;
        }
        self.clock_rate = clock_rate;
        if let Some(src) = &mut self.remote {
            src.transit = None;
            src.jitter16 = 0;
            src.max_jitter16 = 0;
        }
    }

    /// Re-anchors the NTP time of SRs (see [`Config::ntp_at_zero`]).
    pub fn set_ntp_at_zero(&mut self, ntp_at_zero: u64) {
        self.ntp_at_zero = ntp_at_zero;
    }

    /// The NTP time at `now`.
    pub fn ntp(&self, now: u64) -> u64 {
        self.ntp_at_zero.wrapping_add(ntp_from_ns(now))
    }

    /// Accounts for an RTP packet received at `now` (RFC 3550 A.1, A.3, A.8).
    #[inline]
    pub fn handle_rtp(&mut self, packet: &Packet<'_>, now: u64) -> Received {
        let clock_rate = self.clock_rate;
        if let Some(src) = &mut self.remote
            && src.ssrc == packet.ssrc()
        {
            let verdict = src.update_seq(packet.seq());
            if verdict != Received::BadSequence {
                src.byed = false;
                src.count(packet.timestamp(), packet.payload().len(), now, clock_rate);
            }
            return verdict;
        }
        self.handle_other_ssrc(packet, now)
    }

    /// [`Session::handle_rtp`] of a packet from another SSRC than the
    /// remote source's, apart: the usual packet's path is inlined.
    #[inline(never)]
    fn handle_other_ssrc(&mut self, packet: &Packet<'_>, now: u64) -> Received {
        let (ssrc, seq, clock_rate) = (packet.ssrc(), packet.seq(), self.clock_rate);
        // Another SSRC: it must send MIN_SEQUENTIAL packets in sequence before
        // it replaces the remote source (A.1's probation).
        let Some(p) = self.probation.as_mut().filter(|p| p.ssrc == ssrc) else {
            self.probation = Some(Probation {
                ssrc,
                max_seq: seq,
                left: MIN_SEQUENTIAL - 1,
            });
            return Received::Probation;
        };
        if seq == p.max_seq.wrapping_add(1) {
            p.left -= 1;
            p.max_seq = seq;
        } else {
            p.left = MIN_SEQUENTIAL - 1;
            p.max_seq = seq;
        }
        if p.left > 0 {
            return Received::Probation;
        }
        self.probation = None;
        let previous = self.remote.as_ref().map(|r| r.ssrc);
        let mut src = RemoteSource::new(ssrc, seq);
        src.count(packet.timestamp(), packet.payload().len(), now, clock_rate);
        self.remote = Some(src);
        self.mos_x100 = None;
        Received::NewSource { ssrc, previous }
    }

    /// Where reception stands, for counting to go on elsewhere (the relay
    /// offload, [`crate::offload`]): the remote source's SSRC, extended
    /// highest sequence number, and jitter × 16 with its highest. None
    /// before a source is confirmed (its packets must reach
    /// [`Session::handle_rtp`] to pass probation).
    pub fn reception(&self) -> Option<Reception> {
        let src = self.remote.as_ref()?;
        Some(Reception {
            ssrc: src.ssrc,
            highest: src.highest(),
            jitter16: src.jitter16,
            max_jitter16: src.max_jitter16,
        })
    }

    /// Takes in `packets` (with `payload_octets`) counted elsewhere since
    /// [`Session::reception`] or the last fold, which left the reception
    /// at `now`. Changes nothing when `now.ssrc` is no longer the remote
    /// source (a new one replaced it meanwhile, and counts afresh).
    pub fn fold_reception(&mut self, packets: u64, payload_octets: u64, now: &Reception) {
        let Some(src) = self.remote.as_mut().filter(|s| s.ssrc == now.ssrc) else {
            return;
        };
        src.received += packets;
        src.octets += payload_octets;
        src.ext.set_highest(now.highest);
        src.jitter16 = now.jitter16;
        src.max_jitter16 = src.max_jitter16.max(now.max_jitter16);
        // The transit was measured on another clock: the next packet here
        // starts the jitter's differences afresh.
        src.transit = None;
        src.byed = false;
    }

    /// Accounts for an RTP packet sent at `now`. A packet with another SSRC
    /// than ours makes it ours, with the send counts and the peer's reports
    /// about us starting over: they were about the previous SSRC.
    pub fn handle_sent_rtp(&mut self, packet: &Packet<'_>, now: u64) {
        if packet.ssrc() != self.local_ssrc {
            self.local_ssrc = packet.ssrc();
            self.sender = Sender::default();
            self.peer_report = None;
        }
        self.sender.packets += 1;
        self.sender.octets += packet.payload().len() as u64;
        self.sender.last = Some((packet.timestamp(), now));
    }

    /// Takes in an RTCP datagram received at `now`. A malformed one is
    /// refused whole, counted under its fault, and nothing of it applied.
    pub fn handle_rtcp(&mut self, data: &[u8], now: u64) -> Result<RtcpSummary, RtcpError> {
        self.counts.received += 1;
        let compound = match Compound::parse(data) {
            Ok(c) => c,
            Err(e) => {
                self.counts.dropped[e.index()] += 1;
                return Err(e);
            }
        };
        let mut summary = RtcpSummary {
            not_report_first: !compound.starts_with_report(),
            ..RtcpSummary::default()
        };
        if summary.not_report_first {
            self.counts.not_report_first += 1;
        }
        let mut cname_seen = false;
        for packet in compound.packets() {
            match packet {
                rtcp::Packet::SenderReport(sr) => {
                    self.counts.sr += 1;
                    self.last_sr = Some(ReceivedSr {
                        ssrc: sr.ssrc(),
                        info: sr.sender_info(),
                        arrival: now,
                    });
                    summary.sender_report = Some(sr.ssrc());
                    for block in sr.report_blocks() {
                        self.take_report_block(&block, now, &mut summary);
                    }
                }
                rtcp::Packet::ReceiverReport(rr) => {
                    self.counts.rr += 1;
                    for block in rr.report_blocks() {
                        self.take_report_block(&block, now, &mut summary);
                    }
                }
                rtcp::Packet::Sdes(sdes) => {
                    for chunk in sdes.chunks() {
                        for (item, value) in chunk.items() {
                            if item == rtcp::SDES_CNAME && !cname_seen {
                                cname_seen = true;
                                summary.cname_changed |= self.remote_cname.set(value);
                            }
                        }
                    }
                }
                rtcp::Packet::Bye(bye) => {
                    self.counts.bye += 1;
                    for ssrc in bye.ssrcs() {
                        summary.bye.get_or_insert(ssrc);
                        summary.bye_sources += 1;
                        if let Some(src) = &mut self.remote
                            && src.ssrc == ssrc
                        {
                            src.byed = true;
                        }
                        if self.probation.is_some_and(|p| p.ssrc == ssrc) {
                            self.probation = None;
                        }
                    }
                }
                rtcp::Packet::Other { .. } => {}
            }
        }
        Ok(summary)
    }

    /// Keeps what a report block says about us, and the round trip it gives.
    fn take_report_block(&mut self, block: &ReportBlock, now: u64, summary: &mut RtcpSummary) {
        if block.ssrc != self.local_ssrc {
            return;
        }
        summary.reports_about_us += 1;
        self.peer_report = Some(PeerReport {
            fraction_lost: block.fraction_lost,
            cumulative_lost: block.cumulative_lost,
            jitter: block.jitter,
        });
        let arrival = ntp_short(self.ntp(now));
        if let Some(rtt) = round_trip_us(arrival, block.last_sr, block.delay_since_last_sr) {
            self.rtt_us = Some(rtt);
            summary.rtt_us = Some(rtt);
        }
    }

    /// When the next report is due (ns, the caller's clock); `u64::MAX`
    /// after [`Session::bye`].
    pub fn next_deadline(&self) -> u64 {
        if self.byed {
            u64::MAX
        } else {
            self.next_report
        }
    }

    /// Writes a compound report into `out` when one is due at `now` and
    /// returns its length; schedules the next. `out` needs
    /// [`MAX_COMPOUND_LEN`] bytes: with less, the report is skipped (and the
    /// next one scheduled all the same, so a caller cannot spin on it).
    pub fn poll_rtcp(&mut self, now: u64, out: &mut [u8]) -> Option<usize> {
        if self.byed || now < self.next_report {
            return None;
        }
        let len = self.write_compound(now, out, false);
        self.next_report = now.saturating_add(self.interval_ns());
        len
    }

    /// Closes the report interval due at `now` as [`Session::poll_rtcp`]
    /// does, fraction lost and MOS included, but writes nothing: for a
    /// session whose reports have nowhere to go (RTCP off, no target yet).
    /// Returns whether an interval was due; schedules the next either way
    /// it was.
    pub fn close_interval(&mut self, now: u64) -> bool {
        if self.byed || now < self.next_report {
            return false;
        }
        let heard = self
            .remote
            .as_ref()
            .is_some_and(|r| !r.byed && r.received != r.received_prior);
        if heard {
            self.report_block(now);
        }
        self.sender.packets_at_reports = [self.sender.packets, self.sender.packets_at_reports[0]];
        self.initial = false;
        self.next_report = now.saturating_add(self.interval_ns());
        true
    }

    /// Changes when reports are sent from now on. The next report comes no
    /// later than one new interval after `now`: a shorter interval takes
    /// effect at once, a longer one after the report already scheduled.
    pub fn set_interval(&mut self, interval: ReportInterval, now: u64) -> Result<(), ConfigError> {
        let (ReportInterval::Randomized { min_ms: ms } | ReportInterval::Fixed { ms }) = interval;
        if ms == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        if interval != self.interval {
            self.interval = interval;
            self.next_report = self.next_report.min(now.saturating_add(self.interval_ns()));
        }
        Ok(())
    }

    /// Writes the compound that ends the session (report, SDES, BYE for our
    /// SSRC) into `out` and returns its length (0 when `out` is shorter than
    /// [`MAX_COMPOUND_LEN`] and the compound does not fit). No reports are
    /// due after it.
    pub fn bye(&mut self, now: u64, out: &mut [u8]) -> usize {
        self.byed = true;
        self.write_compound(now, out, true).unwrap_or(0)
    }

    /// Whether [`Session::bye`] was called.
    pub fn is_byed(&self) -> bool {
        self.byed
    }

    /// The next report interval (RFC 3550 6.3.1, A.7), ns.
    fn interval_ns(&mut self) -> u64 {
        match self.interval {
            ReportInterval::Fixed { ms } => ms.saturating_mul(1_000_000),
            ReportInterval::Randomized { min_ms } => {
                let mut td = min_ms.saturating_mul(1_000_000);
                if self.initial {
                    td /= 2;
                }
                // Uniform in [0.5, 1.5) from 53 random bits.
                let factor = 0.5 + (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                (td as f64 * factor / COMPENSATION) as u64
            }
        }
    }

    /// SR when we sent RTP since the second last report (RFC 3550 6.4 and
    /// A.7's `we_sent`), else RR; a block about the remote source when it
    /// sent since the last report; SDES CNAME; BYE when `bye`. Returns None,
    /// changing nothing, when `out` is too short.
    fn write_compound(&mut self, now: u64, out: &mut [u8], bye: bool) -> Option<usize> {
        let we_sent = self.sender.packets > self.sender.packets_at_reports[1];
        let with_block = self
            .remote
            .as_ref()
            .is_some_and(|r| !r.byed && r.received != r.received_prior);
        let nblocks = usize::from(with_block);
        let needed = if we_sent {
            rtcp::sr_len(nblocks)
        } else {
            rtcp::rr_len(nblocks)
        } + rtcp::sdes_cname_len(self.cname.as_bytes().len())
            + if bye { rtcp::bye_len(1, 0) } else { 0 };
        if out.len() < needed {
            return None;
        }
        let block = if with_block {
            self.report_block(now)
        } else {
            None
        };
        let blocks = block.as_slice();
        let ssrc = self.local_ssrc;
        // The lengths were checked above, so the writers cannot fail; a
        // failure would only end the compound early.
        let mut len = if we_sent {
            let info = self.sender_info(now);
            rtcp::write_sr(out, ssrc, &info, blocks).ok()?
        } else {
            rtcp::write_rr(out, ssrc, blocks).ok()?
        };
        len += rtcp::write_sdes_cname(&mut out[len..], ssrc, self.cname.as_bytes()).ok()?;
        if bye {
            len += rtcp::write_bye(&mut out[len..], &[ssrc], b"").ok()?;
        }
        self.sender.packets_at_reports = [self.sender.packets, self.sender.packets_at_reports[0]];
        self.counts.sent += 1;
        self.initial = false;
        Some(len)
    }

    /// The sender info of an SR at `now`: the RTP timestamp is the last one
    /// sent moved on by the time since, so it matches the NTP time.
    fn sender_info(&self, now: u64) -> SenderInfo {
        let rtp_timestamp = match (self.sender.last, self.clock_rate) {
            (Some((ts, at)), Some(rate)) => {
                ts.wrapping_add(
                    mul_div_floor(now.saturating_sub(at), u64::from(rate), NS_PER_S) as u32,
                )
            }
            (Some((ts, _)), None) => ts,
            (None, _) => 0,
        };
        SenderInfo {
            ntp: self.ntp(now),
            rtp_timestamp,
            // The SR fields are 32 bits and wrap (RFC 3550 6.4.1).
            packet_count: self.sender.packets as u32,
            octet_count: self.sender.octets as u32,
        }
    }

    /// The report block about the remote source at `now`, closing the
    /// report interval (A.3): fraction lost and MOS are of this interval.
    fn report_block(&mut self, now: u64) -> Option<ReportBlock> {
        let clock_rate = self.clock_rate;
        let rtt_us = self.rtt_us.unwrap_or(0);
        let (lsr, dlsr) = match (self.last_sr, &self.remote) {
            (Some(sr), Some(src)) if sr.ssrc == src.ssrc => (
                ntp_short(sr.info.ntp),
                ntp_short_from_ns(now.saturating_sub(sr.arrival)),
            ),
            _ => (0, 0),
        };
        let src = self.remote.as_mut()?;
        let expected = src.expected();
        let expected_interval = expected.saturating_sub(src.expected_prior);
        let received_interval = src.received - src.received_prior;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        src.expected_prior = expected;
        src.received_prior = src.received;
        src.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let loss = if lost_interval > 0 {
            lost_interval as f64 / expected_interval as f64
        } else {
            0.0
        };
        let jitter_ts = clock_rate.map(|_| src.jitter());
        let jitter_us = match (jitter_ts, clock_rate) {
            (Some(j), Some(rate)) => ts_to_us(j, rate),
            _ => 0,
        };
        self.mos_x100 = Some(mos_x100(loss, jitter_us, rtt_us));
        Some(ReportBlock {
            ssrc: src.ssrc,
            fraction_lost: src.fraction_lost,
            cumulative_lost: rtcp::clamp_cumulative_lost(src.lost()),
            // A.1 counts cycles from 0; the extender starts at cycle 1.
            extended_highest_seq: src.highest().wrapping_sub(u64::from(RTP_SEQ_MOD)) as u32,
            jitter: jitter_ts.map_or(0, |j| u32::try_from(j).unwrap_or(u32::MAX)),
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        })
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> SessionStats {
        let p = self.packet_counts();
        let c = &self.counts;
        let dropped = |e: RtcpError| c.dropped[e.index()];
        let peer = self.peer_report.as_ref();
        SessionStats {
            local_ssrc: u64::from(self.local_ssrc),
            remote_ssrc: self.remote.as_ref().map_or(UNKNOWN, |s| u64::from(s.ssrc)),
            packets_received: p.received,
            octets_received: p.octets_received,
            packets_expected: p.expected,
            packets_lost: p.lost,
            fraction_lost: p.fraction_lost,
            jitter: p.jitter,
            jitter_us: p.jitter_us,
            max_jitter_us: p.max_jitter_us,
            packets_sent: p.sent,
            octets_sent: p.octets_sent,
            rtcp_sent: c.sent,
            rtcp_received: c.received,
            rtcp_dropped: c.dropped.iter().sum(),
            rtcp_dropped_too_short: dropped(RtcpError::TooShort),
            rtcp_dropped_bad_version: dropped(RtcpError::BadVersion),
            rtcp_dropped_length_overrun: dropped(RtcpError::LengthOverrun),
            rtcp_dropped_report_overrun: dropped(RtcpError::ReportOverrun),
            rtcp_dropped_bad_padding: dropped(RtcpError::BadPadding),
            rtcp_dropped_sdes_overrun: dropped(RtcpError::SdesOverrun),
            rtcp_dropped_bye_overrun: dropped(RtcpError::ByeOverrun),
            rtcp_not_report_first: c.not_report_first,
            sr_received: c.sr,
            rr_received: c.rr,
            bye_received: c.bye,
            remote_fraction_lost: peer.map_or(UNKNOWN, |p| u64::from(p.fraction_lost)),
            remote_packets_lost: peer.map_or(UNKNOWN_SIGNED, |p| i64::from(p.cumulative_lost)),
            remote_jitter_us: self.ts_in_us(peer.map(|p| u64::from(p.jitter))),
            rtt_us: self.rtt_us.unwrap_or(UNKNOWN),
            mos: self.mos_x100.map_or(UNKNOWN, u64::from),
        }
    }

    /// [`SessionStats::PACKET_COLUMNS`] now: what a packet received or sent
    /// changes, without the rest of [`Session::stats`].
    pub fn packet_columns(
        &self,
    ) -> [u64; SessionStats::PACKET_COLUMNS.end - SessionStats::PACKET_COLUMNS.start] {
        let p = self.packet_counts();
        [
            p.received,
            p.octets_received,
            p.expected,
            p.lost.column(),
            p.fraction_lost,
            p.jitter,
            p.jitter_us,
            p.max_jitter_us,
            p.sent,
            p.octets_sent,
        ]
    }

    #[inline]
    fn packet_counts(&self) -> PacketCounts {
        let src = self.remote.as_ref();
        // Worked out after every batch a channel receives: the source and
        // the clock rate are looked at once, not per column.
        let (jitter, jitter_us, max_jitter_us) = match (src, self.clock_rate) {
            (Some(src), Some(rate)) => (
                src.jitter(),
                ts_to_us(src.jitter(), rate),
                ts_to_us(src.max_jitter16 >> 4, rate),
            ),
            _ => (UNKNOWN, UNKNOWN, UNKNOWN),
        };
        PacketCounts {
            received: src.map_or(0, |s| s.received),
            octets_received: src.map_or(0, |s| s.octets),
            expected: src.map_or(0, |s| s.expected()),
            lost: src.map_or(0, |s| s.lost()),
            fraction_lost: src.map_or(0, |s| u64::from(s.fraction_lost)),
            jitter,
            jitter_us,
            max_jitter_us,
            sent: self.sender.packets,
            octets_sent: self.sender.octets,
        }
    }

    /// `ts` timestamp units in µs at the clock rate; UNKNOWN when either is.
    fn ts_in_us(&self, ts: Option<u64>) -> u64 {
        match (ts, self.clock_rate) {
            (Some(ts), Some(rate)) => ts_to_us(ts, rate),
            _ => UNKNOWN,
        }
    }
}

/// The values of [`SessionStats::PACKET_COLUMNS`], worked out in one place
/// for [`Session::stats`] and [`Session::packet_columns`].
struct PacketCounts {
    received: u64,
    octets_received: u64,
    expected: u64,
    lost: i64,
    fraction_lost: u64,
    jitter: u64,
    jitter_us: u64,
    max_jitter_us: u64,
    sent: u64,
    octets_sent: u64,
}

/// `ts` timestamp units at `rate` Hz in microseconds, rounded down. Saturates
/// just below [`UNKNOWN`], so a known value never reads as unknown.
#[inline]
fn ts_to_us(ts: u64, rate: u32) -> u64 {
    u64::try_from(mul_div_floor(ts, 1_000_000, u64::from(rate)))
        .unwrap_or(UNKNOWN)
        .min(UNKNOWN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{Extras, Header, write_packet};
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    /// Counts heap allocations per thread, to show the packet paths make none.
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        }

        struct Counting;

        fn bump() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }

        // SAFETY: every call is passed on to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                bump();
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                bump();
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        /// Allocations this thread made so far.
        pub fn allocations() -> u64 {
            ALLOCATIONS.with(|a| a.get())
        }
    }

    fn rtp(ssrc: u32, seq: u16, timestamp: u32) -> Vec<u8> {
        let header = Header {
            marker: false,
            payload_type: 0,
            seq,
            timestamp,
            ssrc,
        };
        let mut out = vec![0; 12 + 160];
        let len = write_packet(&mut out, &header, &Extras::default(), &[0xff; 160]).unwrap();
        out.truncate(len);
        out
    }

    fn config(ssrc: u32) -> Config {
        Config {
            ssrc,
            clock_rate: Some(8000),
            interval: ReportInterval::Fixed { ms: 1000 },
            seed: 1,
            ntp_at_zero: 3_900_000_000 << 32,
        }
    }

    fn session(ssrc: u32) -> Session {
        Session::new(&config(ssrc), "me@example.org", 0).unwrap()
    }

    fn receive(s: &mut Session, ssrc: u32, seq: u16, timestamp: u32, now: u64) -> Received {
        let data = rtp(ssrc, seq, timestamp);
        s.handle_rtp(&Packet::parse(&data).unwrap(), now)
    }

    fn send(s: &mut Session, ssrc: u32, seq: u16, timestamp: u32, now: u64) {
        let data = rtp(ssrc, seq, timestamp);
        s.handle_sent_rtp(&Packet::parse(&data).unwrap(), now);
    }

    /// The report due at `now`, parsed: (SR info if an SR, reporter SSRC,
    /// blocks, CNAME chunk, BYE sources).
    #[derive(Debug)]
    struct Report {
        sender: Option<SenderInfo>,
        ssrc: u32,
        blocks: Vec<ReportBlock>,
        cname: (u32, Vec<u8>),
        bye: Vec<u32>,
    }

    fn read_report(data: &[u8]) -> Report {
        let c = Compound::parse(data).expect("we write valid RTCP");
        assert!(c.starts_with_report());
        let mut r = Report {
            sender: None,
            ssrc: 0,
            blocks: vec![],
            cname: (0, vec![]),
            bye: vec![],
        };
        for p in c.packets() {
            match p {
                rtcp::Packet::SenderReport(sr) => {
                    r.sender = Some(sr.sender_info());
                    r.ssrc = sr.ssrc();
                    r.blocks = sr.report_blocks().collect();
                }
                rtcp::Packet::ReceiverReport(rr) => {
                    r.ssrc = rr.ssrc();
                    r.blocks = rr.report_blocks().collect();
                }
                rtcp::Packet::Sdes(s) => {
                    let chunk = s.chunks().next().expect("one chunk");
                    let (item, value) = chunk.items().next().expect("one item");
                    assert_eq!(item, rtcp::SDES_CNAME);
                    r.cname = (chunk.ssrc, value.to_vec());
                }
                rtcp::Packet::Bye(b) => r.bye = b.ssrcs().collect(),
                rtcp::Packet::Other { .. } => panic!("we write no other packet"),
            }
        }
        r
    }

    fn poll(s: &mut Session, now: u64) -> Option<Report> {
        let mut out = [0u8; MAX_COMPOUND_LEN];
        s.poll_rtcp(now, &mut out)
            .map(|len| read_report(&out[..len]))
    }

    // ---------------------------------------------------------------------
    // Reference: RFC 3550 A.1, A.3 and A.8 transcribed, one source struct per
    // SSRC as in the RFC. The one liberty: `seq == max_seq + 1` is taken
    // modulo 2^16, as the text means it (in C the int promotion makes
    // 65535 + 1 never equal a 16-bit number).

    #[derive(Debug, Clone)]
    struct RefSource {
        ssrc: u32,
        max_seq: u16,
        cycles: u64,
        base_seq: u64,
        bad_seq: u32,
        probation: u32,
        received: u64,
        expected_prior: u64,
        received_prior: u64,
        fraction: u8,
        transit: Option<u32>,
        jitter: f64,
    }

    impl RefSource {
        fn init_seq(&mut self, seq: u16) {
            self.base_seq = u64::from(seq);
            self.max_seq = seq;
            self.bad_seq = RTP_SEQ_MOD + 1;
            self.cycles = 0;
            self.received = 0;
            self.received_prior = 0;
            self.expected_prior = 0;
        }

        fn new(ssrc: u32, seq: u16) -> Self {
            let mut s = RefSource {
                ssrc,
                max_seq: 0,
                cycles: 0,
                base_seq: 0,
                bad_seq: 0,
                probation: 0,
                received: 0,
                expected_prior: 0,
                received_prior: 0,
                fraction: 0,
                transit: None,
                jitter: 0.0,
            };
            s.init_seq(seq);
            s.max_seq = seq.wrapping_sub(1);
            s.probation = u32::from(MIN_SEQUENTIAL);
            s
        }

        /// A.1 `update_seq`: whether the packet counts.
        fn update_seq(&mut self, seq: u16) -> bool {
            let udelta = seq.wrapping_sub(self.max_seq);
            if self.probation > 0 {
                if seq == self.max_seq.wrapping_add(1) {
                    self.probation -= 1;
                    self.max_seq = seq;
                    if self.probation == 0 {
                        self.init_seq(seq);
                        self.received += 1;
                        return true;
                    }
                } else {
                    self.probation = u32::from(MIN_SEQUENTIAL) - 1;
                    self.max_seq = seq;
                }
                return false;
            } else if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += u64::from(RTP_SEQ_MOD);
                }
                self.max_seq = seq;
            } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
                if u32::from(seq) == self.bad_seq {
                    self.init_seq(seq);
                    // Our documented choice: a restart's timestamps start anew.
                    self.transit = None;
                } else {
                    self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                    return false;
                }
            }
            self.received += 1;
            true
        }

        fn extended_max(&self) -> u64 {
            self.cycles + u64::from(self.max_seq)
        }

        fn expected(&self) -> u64 {
            self.extended_max() - self.base_seq + 1
        }

        fn lost(&self) -> i64 {
            self.expected() as i64 - self.received as i64
        }

        /// A.3 at a report: the interval's fraction lost.
        fn close_interval(&mut self) -> u8 {
            let expected = self.expected();
            let expected_interval = expected - self.expected_prior;
            self.expected_prior = expected;
            let received_interval = self.received - self.received_prior;
            self.received_prior = self.received;
            let lost_interval = expected_interval as i64 - received_interval as i64;
            self.fraction = if expected_interval == 0 || lost_interval <= 0 {
                0
            } else {
                ((lost_interval << 8) / expected_interval as i64) as u8
            };
            self.fraction
        }

        /// A.8 with the floating-point formula, arrival in timestamp units.
        fn update_jitter(&mut self, arrival: u32, timestamp: u32) {
            let transit = arrival.wrapping_sub(timestamp);
            if let Some(last) = self.transit {
                let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
                self.jitter += (d - self.jitter) / 16.0;
            }
            self.transit = Some(transit);
        }
    }

    /// One remote source at a time, a new SSRC taking over once it passes
    /// A.1's probation.
    #[derive(Default)]
    struct RefSession {
        current: Option<RefSource>,
        candidate: Option<RefSource>,
    }

    impl RefSession {
        /// Returns whether the packet counted.
        fn packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, now: u64) -> bool {
            let arrival = (u128::from(now) * 8000 / u128::from(SEC)) as u32;
            if let Some(cur) = self.current.as_mut().filter(|c| c.ssrc == ssrc) {
                let counted = cur.update_seq(seq);
                if counted {
                    cur.update_jitter(arrival, timestamp);
                }
                return counted;
            }
            if self.candidate.as_ref().is_none_or(|c| c.ssrc != ssrc) {
                self.candidate = Some(RefSource::new(ssrc, seq));
            }
            let Some(cand) = self.candidate.as_mut() else {
                unreachable!()
            };
            if !cand.update_seq(seq) {
                return false;
            }
            cand.update_jitter(arrival, timestamp);
            self.current = self.candidate.take();
            true
        }
    }

    /// An RTP trace: two streams (the second a new SSRC from `change_at`),
    /// 20 ms apart, with random network delay (so reordering), loss,
    /// duplicates and an optional sequence jump, sorted by arrival.
    #[derive(Debug, Clone)]
    struct Trace {
        seed: u64,
        first_seq: u16,
        packets: usize,
        loss: f64,
        dup: f64,
        max_delay_ms: u32,
        jump_at: Option<usize>,
        jump: u16,
        change_at: Option<usize>,
    }

    fn arb_trace() -> impl Strategy<Value = Trace> {
        (
            any::<u64>(),
            prop_oneof![any::<u16>(), 65_400u16..=65_535],
            20usize..700,
            0.0..0.3f64,
            0.0..0.1f64,
            0u32..120,
            proptest::option::of(0usize..700),
            prop_oneof![Just(1u16), 3000u16..62_000],
            proptest::option::of(0usize..700),
        )
            .prop_map(
                |(seed, first_seq, packets, loss, dup, max_delay_ms, jump_at, jump, change_at)| {
                    Trace {
                        seed,
                        first_seq,
                        packets,
                        loss,
                        dup,
                        max_delay_ms,
                        jump_at,
                        jump,
                        change_at,
                    }
                },
            )
    }

    /// (arrival ns, SSRC, seq, timestamp) in arrival order.
    fn arrivals(t: &Trace) -> Vec<(u64, u32, u16, u32)> {
        let mut rng = SplitMix64::new(t.seed);
        let second_seq = rng.next_u32() as u16;
        let second_ts = rng.next_u32();
        let mut v = Vec::new();
        for i in 0..t.packets {
            let second = t.change_at.is_some_and(|c| i >= c);
            let (ssrc, seq0, ts0) = if second {
                (0xbbbb, second_seq, second_ts)
            } else {
                (0xaaaa, t.first_seq, 1000)
            };
            let mut seq = seq0.wrapping_add(i as u16);
            if t.jump_at.is_some_and(|j| i >= j) {
                seq = seq.wrapping_add(t.jump);
            }
            let ts = ts0.wrapping_add(160 * i as u32);
            if rng.chance(t.loss) {
                continue;
            }
            let sent = 1 + i as u64 * 20 * MS;
            let delay = u64::from(rng.below(t.max_delay_ms * 1000 + 1)) * 1000;
            v.push((sent + delay, ssrc, seq, ts));
            if rng.chance(t.dup) {
                let extra = u64::from(rng.below(40_000)) * 1000;
                v.push((sent + delay + extra, ssrc, seq, ts));
            }
        }
        v.sort_by_key(|a| a.0);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn statistics_match_rfc_3550_reference(t in arb_trace()) {
            let mut cfg = config(0x1111);
            cfg.interval = ReportInterval::Fixed { ms: 100 };
            let mut s = Session::new(&cfg, "me", 0).unwrap();
            let mut r = RefSession::default();
            for (now, ssrc, seq, ts) in arrivals(&t) {
                let before = columns(&s);
                let verdict = receive(&mut s, ssrc, seq, ts, now);
                let after = columns(&s);
                prop_assert_eq!(&after[SessionStats::PACKET_COLUMNS], &s.packet_columns()[..]);
                if verdict == Received::Counted {
                    // What the mux copies after such a packet is all that changed.
                    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                        prop_assert!(SessionStats::PACKET_COLUMNS.contains(&i) || b == a,
                            "{} changed", SessionStats::NAMES[i]);
                    }
                }
                let counted = r.packet(ssrc, seq, ts, now);
                prop_assert_eq!(
                    counted,
                    matches!(verdict, Received::Counted | Received::Restarted | Received::NewSource { .. }),
                    "{:?} for seq {}", verdict, seq
                );
                let st = s.stats();
                match &r.current {
                    None => {
                        prop_assert_eq!(st.remote_ssrc, UNKNOWN);
                        prop_assert_eq!(st.jitter, UNKNOWN);
                    }
                    Some(cur) => {
                        prop_assert_eq!(st.remote_ssrc, u64::from(cur.ssrc));
                        prop_assert_eq!(st.packets_received, cur.received);
                        prop_assert_eq!(st.packets_expected, cur.expected());
                        prop_assert_eq!(st.packets_lost, cur.lost());
                        // The integer A.8 (16 J, rounded) floored against
                        // the exact formula: within 1.5 timestamp units.
                        prop_assert!((st.jitter as f64 - cur.jitter).abs() <= 1.5,
                            "jitter {} vs {}", st.jitter, cur.jitter);
                        prop_assert_eq!(st.jitter_us, st.jitter * 1_000_000 / 8000);
                    }
                }
                if let Some(report) = poll(&mut s, now) {
                    let block = r.current.as_mut()
                        .filter(|c| c.received != c.received_prior)
                        .map(|c| (c.close_interval(), c.clone()));
                    match block {
                        None => prop_assert!(report.blocks.is_empty()),
                        Some((fraction, c)) => {
                            prop_assert_eq!(report.blocks.len(), 1);
                            let b = report.blocks[0];
                            prop_assert_eq!(b.ssrc, c.ssrc);
                            prop_assert_eq!(b.fraction_lost, fraction);
                            prop_assert_eq!(s.stats().fraction_lost, u64::from(fraction));
                            prop_assert_eq!(i64::from(b.cumulative_lost), c.lost().clamp(-(1 << 23), (1 << 23) - 1));
                            prop_assert_eq!(b.extended_highest_seq, c.extended_max() as u32);
                            prop_assert!((f64::from(b.jitter) - c.jitter).abs() <= 1.5);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn what_a_received_packet_touches_fills_two_cache_lines() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(align_of::<Session>(), 64);
        assert_eq!(offset_of!(Session, remote), 0);
        let end = |offset: usize, size: usize| offset + size;
        assert!(end(offset_of!(Session, clock_rate), size_of::<Option<u32>>()) <= 128);
        let sender = offset_of!(Session, sender);
        assert!(end(sender + offset_of!(Sender, octets), 8) <= 128);
        assert!(end(sender + offset_of!(Sender, packets), 8) <= 128);
    }

    #[test]
    fn probation_then_a_new_ssrc_takes_over() {
        let mut s = session(1);
        assert_eq!(receive(&mut s, 0xa, 100, 0, 0), Received::Probation);
        assert_eq!(s.stats().remote_ssrc, UNKNOWN);
        assert_eq!(
            receive(&mut s, 0xa, 102, 0, MS),
            Received::Probation,
            "not in sequence: probation starts over"
        );
        assert_eq!(
            receive(&mut s, 0xa, 103, 160, 2 * MS),
            Received::NewSource {
                ssrc: 0xa,
                previous: None
            }
        );
        for seq in 104..110 {
            assert_eq!(receive(&mut s, 0xa, seq, 0, 3 * MS), Received::Counted);
        }
        let st = s.stats();
        assert_eq!(
            (st.remote_ssrc, st.packets_received, st.packets_expected),
            (0xa, 7, 7)
        );
        assert_eq!(st.octets_received, 7 * 160);
        // A new SSRC is counted for nothing until it passes probation; the old
        // one keeps being counted meanwhile.
        assert_eq!(receive(&mut s, 0xb, 5000, 0, 4 * MS), Received::Probation);
        assert_eq!(receive(&mut s, 0xa, 110, 0, 4 * MS), Received::Counted);
        assert_eq!(
            receive(&mut s, 0xb, 5001, 0, 5 * MS),
            Received::NewSource {
                ssrc: 0xb,
                previous: Some(0xa)
            }
        );
        let st = s.stats();
        assert_eq!(
            (st.remote_ssrc, st.packets_received, st.packets_expected),
            (0xb, 1, 1)
        );
        assert_eq!(receive(&mut s, 0xa, 111, 0, 6 * MS), Received::Probation);
    }

    #[test]
    fn a_jump_counts_only_once_confirmed() {
        let mut s = session(1);
        for seq in 0..3 {
            receive(&mut s, 0xa, seq, 0, 0);
        }
        assert_eq!(receive(&mut s, 0xa, 20_000, 0, 0), Received::BadSequence);
        assert_eq!(receive(&mut s, 0xa, 3, 0, 0), Received::Counted);
        assert_eq!(receive(&mut s, 0xa, 30_000, 0, 0), Received::BadSequence);
        assert_eq!(receive(&mut s, 0xa, 30_001, 0, 0), Received::Restarted);
        let st = s.stats();
        assert_eq!((st.packets_received, st.packets_expected), (1, 1));
        // Late and duplicate packets count, so lost can go negative.
        assert_eq!(receive(&mut s, 0xa, 30_001, 0, 0), Received::Counted);
        assert_eq!(receive(&mut s, 0xa, 30_000, 0, 0), Received::Counted);
        let st = s.stats();
        assert_eq!(
            (st.packets_received, st.packets_expected, st.packets_lost),
            (3, 1, -2)
        );
    }

    #[test]
    fn jitter_of_a_steady_offset_stream() {
        // Every other packet arrives 2 ms (16 units) late: |D| = 16 each
        // time, so J converges on 16 units = 2000 µs.
        let mut s = session(1);
        for i in 0..400u32 {
            let late = if i % 2 == 1 { 2 * MS } else { 0 };
            receive(
                &mut s,
                0xa,
                i as u16,
                i * 160,
                u64::from(i) * 20 * MS + late,
            );
        }
        let st = s.stats();
        assert!((15..=16).contains(&st.jitter), "{}", st.jitter);
        assert_eq!(st.jitter_us, st.jitter * 125);
        assert_eq!(st.max_jitter_us, st.jitter_us, "rising all along");
    }

    #[test]
    fn unknown_values_are_sentinels_not_zero() {
        let mut cfg = config(1);
        cfg.clock_rate = None;
        let mut s = Session::new(&cfg, "me", 0).unwrap();
        let st = s.stats();
        assert_eq!(st.remote_ssrc, UNKNOWN);
        assert_eq!(st.jitter, UNKNOWN);
        assert_eq!(st.jitter_us, UNKNOWN);
        assert_eq!(st.max_jitter_us, UNKNOWN);
        assert_eq!(st.remote_fraction_lost, UNKNOWN);
        assert_eq!(st.remote_packets_lost, UNKNOWN_SIGNED);
        assert_eq!(st.remote_jitter_us, UNKNOWN);
        assert_eq!(st.rtt_us, UNKNOWN);
        assert_eq!(st.mos, UNKNOWN);
        for seq in 0..5 {
            receive(&mut s, 0xa, seq, 0, u64::from(seq) * 20 * MS);
        }
        let st = s.stats();
        assert_eq!((st.remote_ssrc, st.packets_received), (0xa, 4));
        assert_eq!(st.jitter, UNKNOWN, "no clock rate: jitter unknown, not 0");
        s.set_clock_rate(Some(8000));
        receive(&mut s, 0xa, 5, 0, 100 * MS);
        assert_eq!(s.stats().jitter, 0);
        let report = poll(&mut s, SEC).unwrap();
        assert_ne!(s.stats().mos, UNKNOWN, "a report block gives a MOS");
        assert_eq!(report.blocks.len(), 1);
    }

    #[test]
    fn randomized_interval_stays_within_rfc_bounds() {
        let (lo, hi) = (0.5 / COMPENSATION, 1.5 / COMPENSATION);
        let (mut min_ratio, mut max_ratio, mut sum, mut n) = (f64::MAX, 0.0f64, 0.0, 0);
        let start = 7 * SEC;
        for seed in 0..2000 {
            let cfg = Config {
                seed,
                interval: ReportInterval::default(),
                ..config(1)
            };
            let mut s = Session::new(&cfg, "me", start).unwrap();
            // Before the first report the 5 s minimum is halved.
            let first = (s.next_deadline() - start) as f64 / (2.5 * SEC as f64);
            assert!((lo..hi).contains(&first), "first interval ratio {first}");
            let mut now = s.next_deadline();
            assert!(
                poll(&mut s, now - 1).is_none(),
                "not due before its deadline"
            );
            for _ in 0..3 {
                assert!(poll(&mut s, now).is_some());
                let ratio = (s.next_deadline() - now) as f64 / (5.0 * SEC as f64);
                assert!((lo..hi).contains(&ratio), "interval ratio {ratio}");
                min_ratio = min_ratio.min(ratio);
                max_ratio = max_ratio.max(ratio);
                sum += ratio;
                n += 1;
                now = s.next_deadline();
            }
        }
        // Spread over the whole range, centred on 1 / (e - 3/2).
        assert!(
            min_ratio < lo * 1.01 && max_ratio > hi * 0.99,
            "{min_ratio} {max_ratio}"
        );
        let mean = sum / n as f64;
        assert!((mean - 1.0 / COMPENSATION).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn fixed_interval_is_exact() {
        let cfg = Config {
            interval: ReportInterval::Fixed { ms: 250 },
            ..config(1)
        };
        let mut s = Session::new(&cfg, "me", 3 * SEC).unwrap();
        assert_eq!(
            s.next_deadline(),
            3 * SEC + 250 * MS,
            "no halving, no randomness"
        );
        assert!(poll(&mut s, 3 * SEC + 250 * MS - 1).is_none());
        // A late poll reports at once and counts the next interval from then.
        assert!(poll(&mut s, 3 * SEC + 260 * MS).is_some());
        assert_eq!(s.next_deadline(), 3 * SEC + 510 * MS);
        assert_eq!(
            Session::new(
                &Config {
                    interval: ReportInterval::Fixed { ms: 0 },
                    ..config(1)
                },
                "me",
                0
            )
            .unwrap_err(),
            ConfigError::ZeroInterval
        );
    }

    #[test]
    fn sr_while_sending_rr_after_and_sr_timestamps_follow_the_clock() {
        let mut s = session(0x1111);
        let r = poll(&mut s, SEC).unwrap();
        assert!(r.sender.is_none(), "nothing sent: RR");
        assert_eq!(r.ssrc, 0x1111);
        assert_eq!(r.cname, (0x1111, b"me@example.org".to_vec()));
        assert!(r.blocks.is_empty(), "nothing received: no block");

        for i in 0..50u32 {
            send(
                &mut s,
                0x1111,
                i as u16,
                8000 + i * 160,
                SEC + u64::from(i) * 20 * MS,
            );
        }
        // Last packet: timestamp 8000 + 49 * 160 = 15840 at 1.98 s. At 2.5 s,
        // 0.52 s later, the SR's timestamp is 15840 + 4160.
        let r = poll(&mut s, 2500 * MS).unwrap();
        let info = r.sender.expect("sent since the last report: SR");
        assert_eq!(info.rtp_timestamp, 15_840 + 4160);
        assert_eq!(info.ntp, s.ntp(2500 * MS));
        assert_eq!(
            info.ntp >> 32,
            3_900_000_002,
            "NTP seconds from ntp_at_zero"
        );
        assert_eq!((info.packet_count, info.octet_count), (50, 50 * 160));
        // Nothing sent since: the next report is still an SR (sent since the
        // second last report, RFC 3550 A.7 we_sent), then RR.
        assert!(poll(&mut s, 3500 * MS).unwrap().sender.is_some());
        assert!(poll(&mut s, 4500 * MS).unwrap().sender.is_none());

        let st = s.stats();
        assert_eq!(
            (st.packets_sent, st.octets_sent, st.rtcp_sent),
            (50, 8000, 4)
        );
    }

    fn columns(s: &Session) -> [u64; SessionStats::NCOLUMNS] {
        let mut out = [0; SessionStats::NCOLUMNS];
        s.stats().write_columns(&mut out);
        out
    }

    #[test]
    fn a_packet_sent_changes_only_the_packet_columns_unless_our_ssrc_changes() {
        let mut s = session(7);
        let peer_about_us = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: 3,
            extended_highest_seq: 10,
            jitter: 80,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        s.handle_rtcp(&peer_sr(9, 1 << 32, Some(peer_about_us), b"peer"), 0)
            .unwrap();
        let before = columns(&s);
        send(&mut s, 7, 1, 160, MS);
        let after = columns(&s);
        assert_eq!(
            &after[SessionStats::PACKET_COLUMNS],
            &s.packet_columns()[..]
        );
        let changed: Vec<_> = (0..SessionStats::NCOLUMNS)
            .filter(|&i| before[i] != after[i])
            .map(|i| SessionStats::NAMES[i])
            .collect();
        assert_eq!(changed, ["rtp-packets-sent", "rtp-payload-octets-sent"]);
        // A new SSRC of ours is more than a count: the mux copies it all.
        send(&mut s, 8, 2, 320, 2 * MS);
        let st = s.stats();
        assert_eq!((st.local_ssrc, st.packets_sent), (8, 1));
        assert_eq!(st.remote_fraction_lost, UNKNOWN);
    }

    #[test]
    fn our_ssrc_follows_what_we_send() {
        let mut s = session(1);
        send(&mut s, 2, 0, 0, 0);
        let r = poll(&mut s, SEC).unwrap();
        assert_eq!((r.ssrc, r.cname.0), (2, 2));
        assert_eq!(
            (s.local_ssrc(), s.stats().local_ssrc, s.stats().packets_sent),
            (2, 2, 1)
        );
    }

    #[test]
    fn report_blocks_only_about_a_source_heard_since_the_last_report() {
        let mut s = session(1);
        for seq in 0..10 {
            if seq != 4 {
                receive(
                    &mut s,
                    0xa,
                    seq,
                    u32::from(seq) * 160,
                    u64::from(seq) * 20 * MS,
                );
            }
        }
        let r = poll(&mut s, SEC).unwrap();
        assert_eq!(r.blocks.len(), 1);
        let b = r.blocks[0];
        assert_eq!((b.ssrc, b.cumulative_lost), (0xa, 1));
        // The first packet only opened probation: from seq 1, 9 expected and
        // 8 received.
        assert_eq!(b.fraction_lost, (256 / 9) as u8);
        assert_eq!(b.extended_highest_seq, 9);
        assert_eq!(
            (b.last_sr, b.delay_since_last_sr),
            (0, 0),
            "no SR from it yet"
        );
        assert!(
            poll(&mut s, 2 * SEC).unwrap().blocks.is_empty(),
            "silent since"
        );
        receive(&mut s, 0xa, 10, 1600, 2500 * MS);
        let b = poll(&mut s, 3 * SEC).unwrap().blocks[0];
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 1));
    }

    /// An SR from `ssrc` whose NTP time is `ntp`, with a block about
    /// `about` if given, and SDES CNAME `cname`.
    fn peer_sr(ssrc: u32, ntp: u64, about: Option<ReportBlock>, cname: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 512];
        let info = SenderInfo {
            ntp,
            rtp_timestamp: 1,
            packet_count: 2,
            octet_count: 3,
        };
        let mut len = rtcp::write_sr(&mut out, ssrc, &info, about.as_slice()).unwrap();
        len += rtcp::write_sdes_cname(&mut out[len..], ssrc, cname).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn lsr_and_dlsr_come_from_the_last_sr_of_the_remote_source() {
        let mut s = session(1);
        receive(&mut s, 0xa, 0, 0, 0);
        receive(&mut s, 0xa, 1, 160, 20 * MS);
        let ntp = 0x1234_5678_9abc_def0;
        // An SR from another SSRC is kept, but is not the remote source's.
        s.handle_rtcp(&peer_sr(0xb, ntp, None, b"other"), 100 * MS)
            .unwrap();
        receive(&mut s, 0xa, 2, 320, 200 * MS);
        let b = poll(&mut s, SEC).unwrap().blocks[0];
        assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
        let summary = s
            .handle_rtcp(&peer_sr(0xa, ntp, None, b"peer"), 1250 * MS)
            .unwrap();
        assert_eq!(summary.sender_report, Some(0xa));
        assert!(summary.cname_changed);
        assert_eq!(s.remote_cname(), b"peer");
        receive(&mut s, 0xa, 3, 480, 1300 * MS);
        let b = poll(&mut s, 2 * SEC).unwrap().blocks[0];
        assert_eq!(b.last_sr, 0x5678_9abc);
        assert_eq!(b.delay_since_last_sr, 3 * 65536 / 4, "0.75 s in 1/65536 s");
        assert_eq!(s.stats().sr_received, 2);
    }

    /// A's SR reaches B `d1` after it is sent, B reports `hold` later, and
    /// its RR reaches A `d2` after that: A's round trip is d1 + d2.
    fn rtt_exchange(
        a_ntp_at_zero: u64,
        t0: u64,
        d1: u64,
        hold: u64,
        d2: u64,
    ) -> (Option<u64>, u64) {
        let mut cfg_a = config(0xa);
        cfg_a.ntp_at_zero = a_ntp_at_zero;
        cfg_a.interval = ReportInterval::Fixed { ms: t0 / MS };
        let mut a = Session::new(&cfg_a, "a", 0).unwrap();
        let mut cfg_b = config(0xb);
        // B's wall clock is far from A's: DLSR is a duration, so it does not
        // matter.
        cfg_b.ntp_at_zero = (3_000_000_123 << 32) | 0x1234_5678;
        cfg_b.interval = ReportInterval::Fixed {
            ms: (t0 + d1 + hold) / MS,
        };
        let mut b = Session::new(&cfg_b, "b", 0).unwrap();
        for i in 0..5u16 {
            let at = u64::from(i) * 20 * MS;
            send(&mut a, 0xa, i, u32::from(i) * 160, at);
            receive(&mut b, 0xa, i, u32::from(i) * 160, at + MS);
        }
        let mut out = [0u8; MAX_COMPOUND_LEN];
        let len = a.poll_rtcp(t0, &mut out).expect("A's report is due");
        assert!(read_report(&out[..len]).sender.is_some());
        b.handle_rtcp(&out[..len], t0 + d1).unwrap();
        let len = b
            .poll_rtcp(t0 + d1 + hold, &mut out)
            .expect("B's report is due");
        let summary = a.handle_rtcp(&out[..len], t0 + d1 + hold + d2).unwrap();
        assert_eq!(summary.reports_about_us, 1);
        assert_eq!(summary.rtt_us.unwrap_or(UNKNOWN), a.stats().rtt_us);
        (summary.rtt_us, a.stats().remote_fraction_lost)
    }

    #[test]
    fn round_trip_time_of_an_sr_rr_exchange() {
        // 1/512 s is a whole number of nanoseconds and of 1/65536 s, so with
        // these times no NTP value is rounded: the result is exact, 60/512 s
        // = 117187.5 µs.
        let tick = 1_953_125;
        let (rtt, fraction) = rtt_exchange(
            3_900_000_000 << 32,
            512 * tick,
            40 * tick,
            472 * tick,
            20 * tick,
        );
        let rtt = rtt.expect("a round trip");
        assert!((117_187..=117_188).contains(&rtt), "{rtt}");
        assert_eq!(fraction, 0);
    }

    #[test]
    fn round_trip_time_across_the_ntp_short_wrap() {
        // A's NTP short clock is at 0xffff_f000 at 0 and wraps 1/16 s later,
        // between its SR and B's answer. Delays in odd nanoseconds: three
        // values truncated to 1/65536 s put the result within 2 units.
        let a_ntp = (0xdead_u64 << 48) | (0xffff_f000_u64 << 16) | 0x1234;
        for (d1, hold, d2) in [
            (12_345_678, 500 * MS, 33_333_333),
            (1, 7 * MS, 1),
            (150 * MS + 17, 2 * SEC + 3, 149 * MS + 999),
        ] {
            let (rtt, _) = rtt_exchange(a_ntp, 20 * MS, d1, hold, d2);
            let expected = (d1 + d2) as f64 / 1000.0;
            let rtt = rtt.expect("a round trip") as f64;
            assert!((rtt - expected).abs() <= 31.0, "{rtt} vs {expected}");
        }
    }

    #[test]
    fn round_trip_arithmetic() {
        // 0.25 s after an SR, with 0.125 s held by the peer: 0.125 s.
        assert_eq!(
            round_trip_us(0x0001_4000, 0x0001_0000, 0x2000),
            Some(125_000)
        );
        // Wrapping: the SR at the top of the NTP short range, the answer
        // after the wrap.
        assert_eq!(
            round_trip_us(0x0000_1000, 0xffff_f000, 0x1000),
            Some(62_500)
        );
        assert_eq!(
            round_trip_us(0x0001_4000, 0, 0),
            None,
            "LSR 0: no SR was seen"
        );
        assert_eq!(
            round_trip_us(0x0001_0000, 0x0001_0000, 1),
            Some(0),
            "rounding"
        );
        assert_eq!(
            round_trip_us(0x0001_0000, 0x0001_0000, 0x100),
            None,
            "DLSR too long"
        );
        // One unit is 15.2587890625 µs: rounded to the nearest.
        assert_eq!(round_trip_us(0x11, 0x10, 0), Some(15));
        assert_eq!(round_trip_us(0x13, 0x10, 0), Some(46));
    }

    #[test]
    fn what_the_peer_reports_about_us() {
        let mut s = session(0x1111);
        let block = ReportBlock {
            ssrc: 0x1111,
            fraction_lost: 64,
            cumulative_lost: -5,
            extended_highest_seq: 70_000,
            jitter: 800,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        let other = ReportBlock {
            ssrc: 0x2222,
            ..block
        };
        let mut out = [0u8; 256];
        let len = rtcp::write_rr(&mut out, 0xa, &[other, block]).unwrap();
        let summary = s.handle_rtcp(&out[..len], SEC).unwrap();
        assert_eq!(summary.reports_about_us, 1);
        assert_eq!(summary.rtt_us, None, "LSR 0: no round trip");
        let st = s.stats();
        assert_eq!(st.remote_fraction_lost, 64);
        assert_eq!(st.remote_packets_lost, -5);
        assert_eq!(st.remote_jitter_us, 100_000, "800 units at 8 kHz");
        assert_eq!((st.rr_received, st.sr_received), (1, 0));
        assert_eq!(st.rtt_us, UNKNOWN);
    }

    #[test]
    fn bye_is_reported_and_ends_the_reports_about_the_source() {
        let mut s = session(1);
        for seq in 0..3 {
            receive(&mut s, 0xa, seq, 0, 0);
        }
        let mut out = [0u8; 256];
        let mut len = rtcp::write_rr(&mut out, 0xa, &[]).unwrap();
        len += rtcp::write_bye(&mut out[len..], &[0xa, 0xc], b"hung up").unwrap();
        let summary = s.handle_rtcp(&out[..len], 10 * MS).unwrap();
        assert_eq!((summary.bye, summary.bye_sources), (Some(0xa), 2));
        assert_eq!(s.stats().bye_received, 1);
        receive(&mut s, 0xa, 3, 0, 20 * MS);
        // Sending after its BYE brings it back.
        assert_eq!(poll(&mut s, SEC).unwrap().blocks.len(), 1);
        s.handle_rtcp(&out[..len], SEC + MS).unwrap();
        assert!(poll(&mut s, 2 * SEC).unwrap().blocks.is_empty());
    }

    #[test]
    fn our_bye_closes_the_session() {
        let mut s = session(0x1111);
        send(&mut s, 0x1111, 0, 0, 0);
        let mut out = [0u8; MAX_COMPOUND_LEN];
        let len = s.bye(500 * MS, &mut out);
        let r = read_report(&out[..len]);
        assert!(r.sender.is_some());
        assert_eq!(r.cname.0, 0x1111);
        assert_eq!(r.bye, vec![0x1111]);
        assert!(s.is_byed());
        assert_eq!(s.next_deadline(), u64::MAX);
        assert!(s.poll_rtcp(10 * SEC, &mut out).is_none());
        assert_eq!(s.stats().rtcp_sent, 1);
    }

    #[test]
    fn a_short_buffer_skips_the_report_without_stalling() {
        let mut s = session(1);
        let mut small = [0u8; 20];
        assert_eq!(s.poll_rtcp(SEC, &mut small), None);
        assert_eq!(s.next_deadline(), 2 * SEC, "rescheduled all the same");
        assert_eq!(s.stats().rtcp_sent, 0);
        assert_eq!(s.bye(2 * SEC, &mut small), 0);
    }

    #[test]
    fn malformed_rtcp_is_counted_by_fault_and_never_applied() {
        let mut s = session(1);
        let good = peer_sr(0xa, 0x1234_5678_0000_0000, None, b"peer");
        let sdes_at = rtcp::sr_len(0);
        let mut cases: Vec<(Vec<u8>, RtcpError)> = vec![
            (vec![], RtcpError::TooShort),
            (good[..3].to_vec(), RtcpError::TooShort),
            (good[..good.len() - 4].to_vec(), RtcpError::LengthOverrun),
        ];
        let mut v1 = good.clone();
        v1[sdes_at] = (v1[sdes_at] & 0x3f) | 0x40;
        cases.push((v1, RtcpError::BadVersion));
        let mut count = good.clone();
        count[0] |= 1;
        cases.push((count, RtcpError::ReportOverrun));
        let mut item = good.clone();
        item[sdes_at + 9] = 100;
        cases.push((item, RtcpError::SdesOverrun));
        let mut pad = good.clone();
        pad[0] |= 0x20;
        cases.push((pad, RtcpError::BadPadding));
        let mut bye = good.clone();
        bye.extend_from_slice(&[0x82, rtcp::PT_BYE, 0, 1, 0, 0, 0, 1]);
        cases.push((bye, RtcpError::ByeOverrun));

        for (data, fault) in &cases {
            assert_eq!(s.handle_rtcp(data, SEC), Err(*fault));
        }
        let st = s.stats();
        assert_eq!(st.rtcp_received, cases.len() as u64);
        assert_eq!(st.rtcp_dropped, cases.len() as u64);
        let faults = [
            st.rtcp_dropped_too_short,
            st.rtcp_dropped_bad_version,
            st.rtcp_dropped_length_overrun,
            st.rtcp_dropped_report_overrun,
            st.rtcp_dropped_bad_padding,
            st.rtcp_dropped_sdes_overrun,
            st.rtcp_dropped_bye_overrun,
        ];
        assert_eq!(faults, [2, 1, 1, 1, 1, 1, 1]);
        // Every broken compound held a good SR: none of it was applied.
        assert_eq!((st.sr_received, st.bye_received), (0, 0));
        assert_eq!(s.remote_cname(), b"");

        // First packet neither SR nor RR: counted, accepted all the same.
        let summary = s.handle_rtcp(&good[sdes_at..], 2 * SEC).unwrap();
        assert!(summary.not_report_first && summary.cname_changed);
        let st = s.stats();
        assert_eq!(
            (st.rtcp_not_report_first, st.rtcp_received, st.rtcp_dropped),
            (1, 9, 8)
        );
    }

    #[test]
    fn stats_columns_follow_the_names() {
        let names = SessionStats::NAMES;
        assert_eq!(names.len(), SessionStats::NCOLUMNS);
        assert_eq!(SessionStats::KINDS.len(), SessionStats::NCOLUMNS);
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} twice");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name} is not kebab-case"
            );
        }
        for required in [
            "remote-ssrc",
            "rtp-packets-received",
            "rtp-payload-octets-received",
            "packets-expected",
            "packets-lost",
            "fraction-lost",
            "jitter",
            "jitter-us",
            "max-jitter-us",
            "rtp-packets-sent",
            "rtp-payload-octets-sent",
            "rtcp-sent",
            "rtcp-received",
            "rtcp-dropped",
            "sr-received",
            "rr-received",
            "remote-fraction-lost",
            "remote-packets-lost",
            "remote-jitter-us",
            "rtt-us",
            "bye-received",
            "mos",
        ] {
            assert!(names.contains(&required), "{required} missing");
        }
        let mut s = session(1);
        for seq in [0, 1, 1, 1, 2] {
            receive(&mut s, 0xa, seq, 0, 0);
        }
        let st = s.stats();
        assert_eq!(st.packets_lost, -2);
        let mut cols = [0u64; SessionStats::NCOLUMNS];
        st.write_columns(&mut cols);
        for ((i, (name, value)), kind) in st.fields().enumerate().zip(SessionStats::KINDS) {
            assert_eq!(name, names[i]);
            match (value, kind) {
                (StatValue::U64(v), StatKind::U64) => assert_eq!(cols[i], v, "{name}"),
                (StatValue::I64(v), StatKind::I64) => assert_eq!(cols[i] as i64, v, "{name}"),
                _ => panic!("{name}: value and kind disagree"),
            }
        }
        let lost = names.iter().position(|n| *n == "packets-lost").unwrap();
        assert_eq!(cols[lost], (-2i64) as u64, "two's complement");
        assert_eq!(SessionStats::KINDS[lost], StatKind::I64);
    }

    #[test]
    fn mos_follows_the_documented_formula() {
        // Values worked out by hand from the formula in mos_x100's doc.
        assert_eq!(mos_x100(0.0, 0, 0), 440, "R = 93.2 - 10/40 = 92.95");
        assert_eq!(
            mos_x100(0.01, 0, 0),
            382,
            "Ie,eff = 95 * 1 / 5.3: R = 75.03"
        );
        assert_eq!(mos_x100(0.0, 20_000, 400_000), 403, "L = 250 ms: Id = 13");
        assert_eq!(mos_x100(0.0, 0, 300_000), 432, "L = 160 ms: Id = 4");
        assert_eq!(mos_x100(0.05, 5000, 60_000), 211);
        assert_eq!(
            mos_x100(1.0, 0, 0),
            100,
            "R = 1.87: formula below 1, clamped"
        );
        assert_eq!(mos_x100(0.0, 0, 1_000_000_000), 100, "R < 0");
        assert_eq!(mos_x100(f64::NAN, 0, 0), 440);
        assert_eq!(mos_x100(-0.5, 0, 0), 440, "no negative loss");
        // Worse inputs never give a better score.
        let mut last = u32::MAX;
        for loss in 0..=100 {
            let m = mos_x100(f64::from(loss) / 100.0, 10_000, 100_000);
            assert!(m <= last && (100..=450).contains(&m));
            last = m;
        }
    }

    #[test]
    fn mos_of_a_report_interval_uses_its_loss_jitter_and_rtt() {
        let mut s = session(1);
        for seq in 0..=100u16 {
            if seq % 10 != 5 {
                receive(
                    &mut s,
                    0xa,
                    seq,
                    u32::from(seq) * 160,
                    u64::from(seq) * 20 * MS,
                );
            }
        }
        poll(&mut s, 3 * SEC).unwrap();
        // 100 expected after the probation packet, 10 lost; jitter 0, RTT
        // unknown (0).
        assert_eq!(s.stats().mos, u64::from(mos_x100(0.1, 0, 0)));
    }

    #[test]
    fn a_closed_interval_gives_loss_and_mos_without_a_report() {
        // Two sessions fed alike: one reports, the other only closes its
        // intervals (RTCP off). Their statistics must agree but for
        // rtcp-sent.
        let (mut sent, mut silent) = (session(1), session(1));
        for seq in 0..=100u16 {
            if seq % 10 != 5 {
                let (ts, at) = (u32::from(seq) * 160, u64::from(seq) * 20 * MS);
                receive(&mut sent, 0xa, seq, ts, at);
                receive(&mut silent, 0xa, seq, ts, at);
            }
        }
        assert!(!silent.close_interval(SEC - 1), "not due yet");
        poll(&mut sent, 3 * SEC).unwrap();
        assert!(silent.close_interval(3 * SEC));
        assert!(!silent.close_interval(3 * SEC), "one close per interval");
        assert_eq!(silent.next_deadline(), sent.next_deadline());
        let (a, b) = (sent.stats(), silent.stats());
        assert_eq!(b.rtcp_sent, 0);
        assert_eq!(b.mos, u64::from(mos_x100(0.1, 0, 0)));
        assert_eq!(b.fraction_lost, 25, "10 of 100 is 25.6/256");
        assert_eq!(
            SessionStats { rtcp_sent: 0, ..a },
            b,
            "the same but for the report"
        );
    }

    #[test]
    fn a_new_interval_applies_from_now() {
        let mut s = session(1); // fixed 1 s, first report at 1 s
        s.set_interval(ReportInterval::Fixed { ms: 200 }, 100 * MS)
            .unwrap();
        assert_eq!(s.next_deadline(), 300 * MS, "shorter: at once");
        s.set_interval(ReportInterval::Fixed { ms: 5000 }, 200 * MS)
            .unwrap();
        assert_eq!(s.next_deadline(), 300 * MS, "longer: after the next report");
        poll(&mut s, 300 * MS).unwrap();
        assert_eq!(s.next_deadline(), 5300 * MS);
        assert_eq!(
            s.set_interval(ReportInterval::Randomized { min_ms: 0 }, 0),
            Err(ConfigError::ZeroInterval)
        );
        assert_eq!(
            s.next_deadline(),
            5300 * MS,
            "a refused interval changes nothing"
        );
    }

    #[test]
    fn only_counts_are_summable() {
        for name in SessionStats::NOT_SUMMABLE {
            assert!(SessionStats::NAMES.contains(name), "{name}");
        }
        let summable = |name: &str| {
            let column = SessionStats::NAMES.iter().position(|n| *n == name).unwrap();
            SessionStats::is_summable(column)
        };
        for name in [
            "rtp-packets-received",
            "packets-lost",
            "rtcp-sent",
            "bye-received",
        ] {
            assert!(summable(name), "{name}");
        }
        for name in [
            "remote-ssrc",
            "jitter-us",
            "rtt-us",
            "mos",
            "remote-packets-lost",
        ] {
            assert!(!summable(name), "{name}");
        }
        assert!(!SessionStats::is_summable(SessionStats::NCOLUMNS));
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(ntp_from_ns(1_500_000_000), (1 << 32) | (1 << 31));
        assert_eq!(ntp_short(ntp_from_ns(1_500_000_000)), 0x0001_8000);
        assert_eq!(ntp_short_from_ns(750 * MS), 0xc000);
        assert_eq!(ntp_short_from_ns(u64::MAX), u32::MAX, "saturates");
        let unix = Duration::new(1_700_000_000, 250_000_000);
        assert_eq!(
            ntp_from_unix(unix),
            ((1_700_000_000 + NTP_UNIX_OFFSET_S) << 32) | (1 << 30)
        );
        let zero = ntp_at_zero(5 * SEC, unix);
        let s = Session::new(
            &Config {
                ntp_at_zero: zero,
                ..config(1)
            },
            "me",
            0,
        )
        .unwrap();
        assert_eq!(s.ntp(5 * SEC), ntp_from_unix(unix));
    }

    #[test]
    fn config_errors() {
        let long = "x".repeat(MAX_CNAME_LEN + 1);
        assert_eq!(
            Session::new(&config(1), &long, 0).unwrap_err(),
            ConfigError::CnameTooLong(256)
        );
        let longest = "x".repeat(MAX_CNAME_LEN);
        let mut s = Session::new(&config(1), &longest, 0).unwrap();
        send(&mut s, 1, 0, 0, 0);
        receive(&mut s, 0xa, 0, 0, 0);
        receive(&mut s, 0xa, 1, 0, 0);
        let mut out = [0u8; MAX_COMPOUND_LEN];
        let len = s.bye(SEC, &mut out);
        assert_eq!(len, MAX_COMPOUND_LEN, "the largest compound fits exactly");
        assert_eq!(read_report(&out[..len]).cname.1.len(), MAX_CNAME_LEN);
    }

    #[test]
    fn packet_paths_do_not_allocate() {
        let mut a = session(0xa);
        let mut b = session(0xb);
        let packets: Vec<Vec<u8>> = (0..200u16)
            .map(|i| rtp(0xa, i, u32::from(i) * 160))
            .collect();
        let mut out = [0u8; MAX_COMPOUND_LEN];
        let mut cols = [0u64; SessionStats::NCOLUMNS];
        let malformed = [0x80u8, rtcp::PT_SR, 0, 9];
        let before = alloc_count::allocations();
        for (i, data) in packets.iter().enumerate() {
            let now = i as u64 * 20 * MS;
            let Ok(p) = Packet::parse(data) else { continue };
            a.handle_sent_rtp(&p, now);
            b.handle_rtp(&p, now + MS);
            if let Some(len) = a.poll_rtcp(now, &mut out) {
                let _ = b.handle_rtcp(&out[..len], now + MS);
            }
            if let Some(len) = b.poll_rtcp(now, &mut out) {
                let _ = a.handle_rtcp(&out[..len], now + MS);
            }
            let _ = b.handle_rtcp(&malformed, now);
            b.stats().write_columns(&mut cols);
        }
        let len = a.bye(5 * SEC, &mut out);
        let _ = b.handle_rtcp(&out[..len], 5 * SEC);
        assert_eq!(
            alloc_count::allocations(),
            before,
            "no allocation per packet"
        );
        // And the work was done.
        assert!(b.stats().rtcp_received > 3 && b.stats().bye_received == 1);
        assert!(a.stats().rtt_us != UNKNOWN);
    }
}
