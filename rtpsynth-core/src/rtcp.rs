//! RTCP packets (RFC 3550 section 6), free of GStreamer.
//!
//! [`Compound::parse`] validates a whole compound packet up front, every
//! sub-packet's header, length, padding and counted contents, so the views it
//! hands out later ([`Packet`], [`SenderReport`], [`Sdes`], …) never fail and
//! never index out of bounds. Nothing is copied or allocated: views borrow
//! the datagram. The `write_*` functions append one packet to a caller's
//! buffer; a compound is several of them in a row.
//!
//! Why not the `rtcp-types` crate that gst-plugins-rs uses (measured in
//! `bench_cores`, SR + 1 block + SDES CNAME, 92 bytes): its reader took
//! ~60 ns to our ~25 ns and its builders ~105 ns to our ~3.5 ns, which at a
//! report per channel every few seconds would not matter. What does:
//! - it allocates per packet (a `Vec` of chunks for every SDES read, a `Vec`
//!   of boxed builders for every compound written), and the UDP worker that
//!   runs the sessions must not;
//! - its errors do not tell the faults apart (a length past the end, a
//!   report count past the end and a short packet are all `Truncated`), and
//!   each is counted on its own here;
//! - 0.3.0 checks the version of a compound's first packet only, so a bad
//!   later packet surfaces mid-iteration after the earlier ones were
//!   handed out, and it reads padding as report blocks;
//! - it gives the 24-bit cumulative-lost count unsigned, leaving the sign
//!   extension to every caller.
//!
//! It remains a dev-dependency: the benchmark races it, and a test checks
//! that what we write, it reads.

use std::fmt;

/// Length of the common header of every RTCP packet.
pub const HEADER_LEN: usize = 4;
/// Length of one reception report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Length of an SR's sender info (NTP, RTP timestamp, packet and octet counts).
pub const SENDER_INFO_LEN: usize = 20;
/// Largest count in the 5-bit count field (report blocks, chunks, SSRCs).
pub const MAX_COUNT: usize = 31;
/// Largest SDES item or BYE reason: its length is one octet.
pub const MAX_TEXT_LEN: usize = 255;

/// Packet types (RFC 3550 section 12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

/// SDES item types (RFC 3550 section 6.5): the end of a chunk's item list,
/// and the canonical name.
pub const SDES_END: u8 = 0;
pub const SDES_CNAME: u8 = 1;

/// Why a datagram is not a valid compound RTCP packet. Each fault has its own
/// variant so a session can count them apart; the whole compound is refused
/// on any of them (RFC 3550 A.2), so nothing of a broken packet is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtcpError {
    /// Fewer bytes than a 4-byte header where a packet starts (an empty
    /// datagram, or 1 to 3 bytes left after the last packet), or an SR or RR
    /// shorter than its fixed part.
    TooShort,
    /// A packet's version field is not 2.
    BadVersion,
    /// A packet's length field runs past the end of the datagram.
    LengthOverrun,
    /// An SR's or RR's report count promises more report blocks than the
    /// packet holds.
    ReportOverrun,
    /// The P bit on a packet that is not the last of the compound (only the
    /// last may be padded, RFC 3550 6.4.1), or a pad count of 0 or larger
    /// than the packet's body.
    BadPadding,
    /// An SDES chunk or item runs past the end of its packet, or a chunk has
    /// no end-of-items octet.
    SdesOverrun,
    /// A BYE's source count or reason length runs past the end of its packet.
    ByeOverrun,
}

impl RtcpError {
    /// Every fault, in the order of [`RtcpError::index`].
    pub const ALL: [RtcpError; 7] = [
        RtcpError::TooShort,
        RtcpError::BadVersion,
        RtcpError::LengthOverrun,
        RtcpError::ReportOverrun,
        RtcpError::BadPadding,
        RtcpError::SdesOverrun,
        RtcpError::ByeOverrun,
    ];

    /// Position in [`RtcpError::ALL`], for per-fault counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RtcpError::TooShort => "RTCP packet shorter than its header or fixed part",
            RtcpError::BadVersion => "RTCP version is not 2",
            RtcpError::LengthOverrun => "RTCP length runs past the end of the datagram",
            RtcpError::ReportOverrun => "RTCP report count runs past the end of the packet",
            RtcpError::BadPadding => {
                "RTCP padding on a packet that is not last, or a bad pad count"
            }
            RtcpError::SdesOverrun => "SDES chunk or item runs past the end of the packet",
            RtcpError::ByeOverrun => "BYE source list or reason runs past the end of the packet",
        })
    }
}

impl std::error::Error for RtcpError {}

#[inline]
fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline]
fn be64(data: &[u8], at: usize) -> u64 {
    (u64::from(be32(data, at)) << 32) | u64::from(be32(data, at + 4))
}

/// The smallest and largest cumulative-lost count the signed 24-bit field
/// holds (RFC 3550 6.4.1).
pub const CUMULATIVE_LOST_MIN: i64 = -(1 << 23);
pub const CUMULATIVE_LOST_MAX: i64 = (1 << 23) - 1;

/// `lost` clamped to what the 24-bit field can carry: RFC 3550 A.3 says a
/// count past the field's range is clamped, not wrapped.
#[inline]
pub fn clamp_cumulative_lost(lost: i64) -> i32 {
    lost.clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX) as i32
}

/// One reception report block (RFC 3550 6.4.1), as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Packets lost over the last interval, as a fraction of 256.
    pub fraction_lost: u8,
    /// Expected minus received since the start, signed (duplicates can make
    /// it negative); 24 bits on the wire, so writing clamps it to
    /// [`CUMULATIVE_LOST_MIN`]..=[`CUMULATIVE_LOST_MAX`].
    pub cumulative_lost: i32,
    /// Highest sequence number received, with the count of cycles above it.
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the
    /// source (0: none yet).
    pub last_sr: u32,
    /// Time since that SR, in 1/65536 s (0 without one).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Reads a block from its 24 bytes. The cumulative count is sign-extended
    /// from 24 bits: 0xffffff is −1, not 16,777,215 and not −8,388,607.
    #[inline]
    fn read(b: &[u8]) -> Self {
        let word = be32(b, 4);
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: (word >> 24) as u8,
            cumulative_lost: ((word << 8) as i32) >> 8,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    #[inline]
    fn write(&self, out: &mut [u8]) {
        let lost = clamp_cumulative_lost(i64::from(self.cumulative_lost)) as u32 & 0x00ff_ffff;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// An SR's sender info (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wall-clock time of the report, NTP format (32.32 seconds since 1900).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_timestamp: u32,
    /// Packets sent since the sender started (wraps at 2^32).
    pub packet_count: u32,
    /// Payload octets sent since the sender started (wraps at 2^32).
    pub octet_count: u32,
}

/// A validated compound RTCP packet, borrowed from its datagram.
#[derive(Debug, Clone, Copy)]
pub struct Compound<'a> {
    data: &'a [u8],
}

/// One packet's parts, located by [`split`].
struct Parts<'a> {
    count: u8,
    packet_type: u8,
    /// Between the header and the padding.
    body: &'a [u8],
    /// Whatever follows this packet in the datagram.
    rest: &'a [u8],
}

/// Locates the first packet of `data` and checks its header, length and
/// padding (not its contents).
#[inline]
fn split(data: &[u8]) -> Result<Parts<'_>, RtcpError> {
    if data.len() < HEADER_LEN {
        return Err(RtcpError::TooShort);
    }
    let b0 = data[0];
    if b0 >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let len = 4 * (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1);
    if len > data.len() {
        return Err(RtcpError::LengthOverrun);
    }
    let (packet, rest) = data.split_at(len);
    let mut body_end = len;
    if b0 & 0x20 != 0 {
        let pad = usize::from(packet[len - 1]);
        if !rest.is_empty() || pad == 0 || pad > len - HEADER_LEN {
            return Err(RtcpError::BadPadding);
        }
        body_end -= pad;
    }
    Ok(Parts {
        count: b0 & 0x1f,
        packet_type: data[1],
        body: &packet[HEADER_LEN..body_end],
        rest,
    })
}

/// Checks what `parts` counts: report blocks, SDES chunks and items, BYE
/// sources and reason. Other packet types are not looked into.
fn check_contents(parts: &Parts<'_>) -> Result<(), RtcpError> {
    let body = parts.body;
    let count = usize::from(parts.count);
    match parts.packet_type {
        PT_SR | PT_RR => {
            let fixed = if parts.packet_type == PT_SR {
                4 + SENDER_INFO_LEN
            } else {
                4
            };
            if body.len() < fixed {
                return Err(RtcpError::TooShort);
            }
            // Bytes after the blocks are a profile-specific extension, allowed.
            if body.len() < fixed + count * REPORT_BLOCK_LEN {
                return Err(RtcpError::ReportOverrun);
            }
        }
        PT_SDES => {
            let mut at = 0;
            for _ in 0..count {
                at = sdes_chunk_end(body, at).ok_or(RtcpError::SdesOverrun)?;
            }
        }
        PT_BYE => {
            let sources = count * 4;
            if body.len() < sources {
                return Err(RtcpError::ByeOverrun);
            }
            if body.len() > sources && sources + 1 + usize::from(body[sources]) > body.len() {
                return Err(RtcpError::ByeOverrun);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Where the SDES chunk starting at `at` ends (the next chunk's start), or
/// None when it runs past `body`. A chunk is an SSRC, items, one null octet
/// and null octets up to the next 32-bit boundary.
fn sdes_chunk_end(body: &[u8], at: usize) -> Option<usize> {
    let mut i = at.checked_add(4)?;
    if i > body.len() {
        return None;
    }
    loop {
        let item_type = *body.get(i)?;
        if item_type == SDES_END {
            // The body starts 32-bit aligned, so aligning `i` aligns the
            // position in the packet.
            let end = (i + 1).next_multiple_of(4);
            return (end <= body.len()).then_some(end);
        }
        let len = usize::from(*body.get(i + 1)?);
        i += 2 + len;
        if i > body.len() {
            return None;
        }
    }
}

impl<'a> Compound<'a> {
    /// Validates `data` as a compound RTCP packet: every packet in it, back
    /// to back to the last byte. A lone packet is a compound of one.
    ///
    /// The first packet should be an SR or RR (RFC 3550 6.1); a compound that
    /// starts otherwise is still accepted, since reduced-size RTCP (RFC 5506)
    /// sends such packets on purpose. [`Compound::starts_with_report`] tells.
    pub fn parse(data: &'a [u8]) -> Result<Self, RtcpError> {
        let mut rest = data;
        // An empty datagram is not a compound of zero packets.
        loop {
            let parts = split(rest)?;
            check_contents(&parts)?;
            rest = parts.rest;
            if rest.is_empty() {
                return Ok(Compound { data });
            }
        }
    }

    /// Whether the first packet is an SR or RR, as RFC 3550 6.1 requires.
    pub fn starts_with_report(&self) -> bool {
        matches!(self.data[1], PT_SR | PT_RR)
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The packets, in order.
    pub fn packets(&self) -> Packets<'a> {
        Packets { rest: self.data }
    }
}

/// Iterator over the packets of a [`Compound`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        // Validated by `Compound::parse`: `split` cannot fail here, and if it
        // somehow did the iteration would just end.
        let parts = split(self.rest).ok()?;
        self.rest = parts.rest;
        let (count, body) = (parts.count, parts.body);
        Some(match parts.packet_type {
            PT_SR => Packet::SenderReport(SenderReport { count, body }),
            PT_RR => Packet::ReceiverReport(ReceiverReport { count, body }),
            PT_SDES => Packet::Sdes(Sdes { count, body }),
            PT_BYE => Packet::Bye(Bye { count, body }),
            packet_type => Packet::Other {
                packet_type,
                count,
                body,
            },
        })
    }
}

/// One packet of a compound.
#[derive(Debug, Clone, Copy)]
pub enum Packet<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    /// APP, feedback (RFC 4585), XR (RFC 3611) or anything else: not looked
    /// into, so a receiver can skip it.
    Other {
        packet_type: u8,
        /// The header's 5-bit count / subtype field.
        count: u8,
        /// Between the header and the padding.
        body: &'a [u8],
    },
}

fn report_blocks(body: &[u8], count: u8) -> impl ExactSizeIterator<Item = ReportBlock> + '_ {
    body.chunks_exact(REPORT_BLOCK_LEN)
        .take(usize::from(count))
        .map(ReportBlock::read)
}

/// A validated sender report.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// The sender's SSRC.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }

    pub fn sender_info(&self) -> SenderInfo {
        SenderInfo {
            ntp: be64(self.body, 4),
            rtp_timestamp: be32(self.body, 12),
            packet_count: be32(self.body, 16),
            octet_count: be32(self.body, 20),
        }
    }

    /// The report blocks, in packet order.
    pub fn report_blocks(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        report_blocks(&self.body[4 + SENDER_INFO_LEN..], self.count)
    }
}

/// A validated receiver report.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// The reporter's SSRC.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }

    /// The report blocks, in packet order.
    pub fn report_blocks(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        report_blocks(&self.body[4..], self.count)
    }
}

/// A validated SDES packet.
#[derive(Debug, Clone, Copy)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> Sdes<'a> {
    /// The chunks, in packet order.
    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let body = self.body;
        let mut at = 0;
        (0..self.count).map_while(move |_| {
            let end = sdes_chunk_end(body, at)?;
            let chunk = SdesChunk {
                ssrc: be32(body, at),
                items: &body[at + 4..end],
            };
            at = end;
            Some(chunk)
        })
    }
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    /// The items, the end octet and the padding after them.
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// `(item type, value)` for each item up to the end octet.
    pub fn items(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let items = self.items;
        let mut at = 0;
        std::iter::from_fn(move || {
            let item_type = *items.get(at)?;
            if item_type == SDES_END {
                return None;
            }
            let len = usize::from(*items.get(at + 1)?);
            let value = items.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            Some((item_type, value))
        })
    }
}

/// A validated BYE packet.
#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> Bye<'a> {
    /// The sources leaving, in packet order.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.body
            .chunks_exact(4)
            .take(usize::from(self.count))
            .map(|b| be32(b, 0))
    }

    /// The reason for leaving, if the packet gives one.
    pub fn reason(&self) -> Option<&'a [u8]> {
        let at = 4 * usize::from(self.count);
        let len = usize::from(*self.body.get(at)?);
        self.body.get(at + 1..at + 1 + len)
    }
}

/// Why a `write_*` function could not write its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpWriteError {
    /// The output buffer is smaller than the packet; `needed` bytes are required.
    BufferTooSmall { needed: usize },
    /// More than [`MAX_COUNT`] report blocks or sources.
    TooMany,
    /// A text (SDES item, BYE reason) longer than [`MAX_TEXT_LEN`] bytes.
    TooLong,
}

impl fmt::Display for RtcpWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpWriteError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            RtcpWriteError::TooMany => f.write_str("more than 31 report blocks or sources"),
            RtcpWriteError::TooLong => f.write_str("text longer than 255 bytes"),
        }
    }
}

impl std::error::Error for RtcpWriteError {}

/// Writes the common header for a packet of `len` bytes (a multiple of 4).
#[inline]
fn write_header(out: &mut [u8], count: usize, packet_type: u8, len: usize) {
    out[0] = (2 << 6) | count as u8;
    out[1] = packet_type;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
}

#[inline]
fn room(out: &[u8], needed: usize) -> Result<(), RtcpWriteError> {
    if out.len() < needed {
        return Err(RtcpWriteError::BufferTooSmall { needed });
    }
    Ok(())
}

/// Length of an SR with `blocks` report blocks.
pub const fn sr_len(blocks: usize) -> usize {
    HEADER_LEN + 4 + SENDER_INFO_LEN + blocks * REPORT_BLOCK_LEN
}

/// Length of an RR with `blocks` report blocks.
pub const fn rr_len(blocks: usize) -> usize {
    HEADER_LEN + 4 + blocks * REPORT_BLOCK_LEN
}

/// Length of an SDES packet of one chunk holding one CNAME of `cname_len`
/// bytes: header, SSRC, item header, the name, then at least one null octet
/// up to the next 32-bit boundary.
pub const fn sdes_cname_len(cname_len: usize) -> usize {
    HEADER_LEN + (4 + 2 + cname_len + 1).next_multiple_of(4)
}

/// Length of a BYE for `sources` sources with a reason of `reason_len`
/// bytes (0: no reason).
pub const fn bye_len(sources: usize, reason_len: usize) -> usize {
    let reason = if reason_len == 0 {
        0
    } else {
        (1 + reason_len).next_multiple_of(4)
    };
    HEADER_LEN + 4 * sources + reason
}

/// Writes a sender report into the front of `out`; returns its length.
pub fn write_sr(
    out: &mut [u8],
    ssrc: u32,
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpWriteError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpWriteError::TooMany);
    }
    let len = sr_len(blocks.len());
    room(out, len)?;
    write_header(out, blocks.len(), PT_SR, len);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&info.ntp.to_be_bytes());
    out[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    out[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    out[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    for (b, o) in blocks
        .iter()
        .zip(out[sr_len(0)..len].chunks_exact_mut(REPORT_BLOCK_LEN))
    {
        b.write(o);
    }
    Ok(len)
}

/// Writes a receiver report into the front of `out`; returns its length.
pub fn write_rr(
    out: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpWriteError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpWriteError::TooMany);
    }
    let len = rr_len(blocks.len());
    room(out, len)?;
    write_header(out, blocks.len(), PT_RR, len);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    for (b, o) in blocks
        .iter()
        .zip(out[rr_len(0)..len].chunks_exact_mut(REPORT_BLOCK_LEN))
    {
        b.write(o);
    }
    Ok(len)
}

/// Writes an SDES packet with one chunk: `ssrc` and its CNAME.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpWriteError> {
    if cname.len() > MAX_TEXT_LEN {
        return Err(RtcpWriteError::TooLong);
    }
    let len = sdes_cname_len(cname.len());
    room(out, len)?;
    write_header(out, 1, PT_SDES, len);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = SDES_CNAME;
    out[9] = cname.len() as u8;
    let end = 10 + cname.len();
    out[10..end].copy_from_slice(cname);
    // The end-of-items octet and the padding to the boundary are all zeros.
    out[end..len].fill(0);
    Ok(len)
}

/// Writes a BYE for `ssrcs`, with `reason` unless it is empty.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32], reason: &[u8]) -> Result<usize, RtcpWriteError> {
    if ssrcs.len() > MAX_COUNT {
        return Err(RtcpWriteError::TooMany);
    }
    if reason.len() > MAX_TEXT_LEN {
        return Err(RtcpWriteError::TooLong);
    }
    let len = bye_len(ssrcs.len(), reason.len());
    room(out, len)?;
    write_header(out, ssrcs.len(), PT_BYE, len);
    let mut at = HEADER_LEN;
    for ssrc in ssrcs {
        out[at..at + 4].copy_from_slice(&ssrc.to_be_bytes());
        at += 4;
    }
    if !reason.is_empty() {
        out[at] = reason.len() as u8;
        out[at + 1..at + 1 + reason.len()].copy_from_slice(reason);
        out[at + 1 + reason.len()..len].fill(0);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(ssrc: u32, lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 0x40,
            cumulative_lost: lost,
            extended_highest_seq: 0x0001_ffff,
            jitter: 123,
            last_sr: 0xdead_beef,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    /// SR + 1 block, SDES CNAME, BYE with a reason: one of everything we write.
    fn full_compound(out: &mut [u8]) -> usize {
        let info = SenderInfo {
            ntp: 0xe000_0000_8000_0000,
            rtp_timestamp: 160_000,
            packet_count: 1000,
            octet_count: 160_000,
        };
        let mut at = write_sr(out, 0x1111, &info, &[block(0x2222, -3)]).unwrap();
        at += write_sdes_cname(&mut out[at..], 0x1111, b"user@host").unwrap();
        at += write_bye(&mut out[at..], &[0x1111, 0x3333], b"done").unwrap();
        at
    }

    #[test]
    fn written_compound_reads_back_exactly() {
        let mut buf = [0u8; 256];
        let len = full_compound(&mut buf);
        assert_eq!(len, sr_len(1) + sdes_cname_len(9) + bye_len(2, 4));
        let c = Compound::parse(&buf[..len]).unwrap();
        assert!(c.starts_with_report());
        let packets: Vec<Packet<'_>> = c.packets().collect();
        assert_eq!(packets.len(), 3);
        let Packet::SenderReport(sr) = packets[0] else {
            panic!("SR first")
        };
        assert_eq!(sr.ssrc(), 0x1111);
        assert_eq!(
            sr.sender_info(),
            SenderInfo {
                ntp: 0xe000_0000_8000_0000,
                rtp_timestamp: 160_000,
                packet_count: 1000,
                octet_count: 160_000
            }
        );
        assert_eq!(
            sr.report_blocks().collect::<Vec<_>>(),
            vec![block(0x2222, -3)]
        );
        let Packet::Sdes(sdes) = packets[1] else {
            panic!("SDES second")
        };
        let chunks: Vec<_> = sdes.chunks().collect();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].ssrc, 0x1111);
        assert_eq!(
            chunks[0].items().collect::<Vec<_>>(),
            vec![(SDES_CNAME, &b"user@host"[..])]
        );
        let Packet::Bye(bye) = packets[2] else {
            panic!("BYE third")
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![0x1111, 0x3333]);
        assert_eq!(bye.reason(), Some(&b"done"[..]));
    }

    #[test]
    fn rr_and_empty_packets_read_back() {
        let mut buf = [0u8; 128];
        let mut at = write_rr(&mut buf, 7, &[]).unwrap();
        assert_eq!(at, 8);
        at += write_rr(&mut buf[at..], 8, &[block(1, 5), block(2, 0)]).unwrap();
        at += write_bye(&mut buf[at..], &[9], b"").unwrap();
        let c = Compound::parse(&buf[..at]).unwrap();
        let p: Vec<_> = c.packets().collect();
        let (Packet::ReceiverReport(a), Packet::ReceiverReport(b), Packet::Bye(bye)) =
            (p[0], p[1], p[2])
        else {
            panic!("RR, RR, BYE")
        };
        assert_eq!((a.ssrc(), a.report_blocks().len()), (7, 0));
        assert_eq!(
            b.report_blocks().collect::<Vec<_>>(),
            vec![block(1, 5), block(2, 0)]
        );
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![9]);
        assert_eq!(bye.reason(), None);
    }

    #[test]
    fn cumulative_lost_is_signed_24_bits() {
        // The field is two's complement: 0xffffff is -1, 0x800000 the most
        // negative, and counts beyond the range clamp instead of wrapping.
        let mut buf = [0u8; 64];
        for (given, wire, back) in [
            (-1, 0x00ff_ffff, -1),
            (-(1 << 23), 0x0080_0000, -(1 << 23)),
            ((1 << 23) - 1, 0x007f_ffff, (1 << 23) - 1),
            (i32::MAX, 0x007f_ffff, (1 << 23) - 1),
            (i32::MIN, 0x0080_0000, -(1 << 23)),
            (0, 0, 0),
        ] {
            let len = write_rr(&mut buf, 1, &[block(2, given)]).unwrap();
            assert_eq!(be32(&buf, 12) & 0x00ff_ffff, wire, "{given}");
            assert_eq!(buf[12], 0x40, "fraction lost stays in the top byte");
            let c = Compound::parse(&buf[..len]).unwrap();
            let Some(Packet::ReceiverReport(rr)) = c.packets().next() else {
                panic!()
            };
            assert_eq!(rr.report_blocks().next().unwrap().cumulative_lost, back);
        }
    }

    #[test]
    fn unknown_packet_types_are_skipped() {
        let mut buf = [0u8; 64];
        let mut at = write_rr(&mut buf, 1, &[]).unwrap();
        // An APP packet and a made-up type, then a BYE.
        for pt in [PT_APP, 210] {
            buf[at..at + 12].copy_from_slice(&[
                0x80 | 3,
                pt,
                0,
                2,
                0,
                0,
                0,
                1,
                b'n',
                b'a',
                b'm',
                b'e',
            ]);
            at += 12;
        }
        at += write_bye(&mut buf[at..], &[1], b"").unwrap();
        let c = Compound::parse(&buf[..at]).unwrap();
        let types: Vec<_> = c
            .packets()
            .map(|p| match p {
                Packet::Other {
                    packet_type,
                    count,
                    body,
                } => {
                    assert_eq!((count, body.len()), (3, 8));
                    packet_type
                }
                Packet::ReceiverReport(_) => PT_RR,
                Packet::Bye(_) => PT_BYE,
                _ => 0,
            })
            .collect();
        assert_eq!(types, vec![PT_RR, PT_APP, 210, PT_BYE]);
    }

    #[test]
    fn compound_not_starting_with_a_report_is_accepted_and_told() {
        let mut buf = [0u8; 32];
        let len = write_bye(&mut buf, &[5], b"").unwrap();
        let c = Compound::parse(&buf[..len]).unwrap();
        assert!(!c.starts_with_report());
    }

    #[test]
    fn padding_only_on_the_last_packet() {
        let mut buf = [0u8; 64];
        let rr = write_rr(&mut buf, 1, &[]).unwrap();
        let bye = write_bye(&mut buf[rr..], &[2], b"").unwrap();
        // Pad the BYE by 4: P bit, length + 1 word, pad count last.
        let mut padded = buf[..rr + bye].to_vec();
        padded[rr] |= 0x20;
        padded[rr + 3] += 1;
        padded.extend_from_slice(&[0, 0, 0, 4]);
        let c = Compound::parse(&padded).unwrap();
        let Some(Packet::Bye(b)) = c.packets().nth(1) else {
            panic!()
        };
        assert_eq!(
            b.ssrcs().collect::<Vec<_>>(),
            vec![2],
            "padding is not a reason"
        );
        assert_eq!(b.reason(), None);

        let mut first_padded = padded.clone();
        first_padded[0] |= 0x20;
        assert_eq!(
            Compound::parse(&first_padded).unwrap_err(),
            RtcpError::BadPadding
        );
        let mut zero_pad = padded.clone();
        *zero_pad.last_mut().unwrap() = 0;
        assert_eq!(
            Compound::parse(&zero_pad).unwrap_err(),
            RtcpError::BadPadding
        );
        let mut big_pad = padded.clone();
        *big_pad.last_mut().unwrap() = 9; // more than the 8 bytes after the BYE's header
        assert_eq!(
            Compound::parse(&big_pad).unwrap_err(),
            RtcpError::BadPadding
        );
    }

    /// A valid SR + 1 block + SDES + BYE to break in each test below.
    fn good() -> Vec<u8> {
        let mut buf = [0u8; 256];
        let len = full_compound(&mut buf);
        buf[..len].to_vec()
    }

    #[test]
    fn each_fault_has_its_own_error() {
        let good = good();
        let sdes_at = sr_len(1);
        let bye_at = sdes_at + sdes_cname_len(9);

        for short in [&[][..], &good[..1], &good[..3]] {
            assert_eq!(Compound::parse(short).unwrap_err(), RtcpError::TooShort);
        }
        // 1 to 3 stray bytes after the last packet.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0x80, 0xc9]);
        assert_eq!(Compound::parse(&trailing).unwrap_err(), RtcpError::TooShort);
        // An SR whose length leaves no room for its sender info.
        assert_eq!(
            Compound::parse(&[0x80, PT_SR, 0, 1, 0, 0, 0, 1]).unwrap_err(),
            RtcpError::TooShort
        );
        assert_eq!(
            Compound::parse(&[0x80, PT_RR, 0, 0]).unwrap_err(),
            RtcpError::TooShort
        );

        for at in [0, sdes_at, bye_at] {
            let mut v1 = good.clone();
            v1[at] = (v1[at] & 0x3f) | 0x40;
            assert_eq!(
                Compound::parse(&v1).unwrap_err(),
                RtcpError::BadVersion,
                "{at}"
            );
        }

        let mut long = good.clone();
        long[bye_at + 3] += 1;
        assert_eq!(
            Compound::parse(&long).unwrap_err(),
            RtcpError::LengthOverrun
        );
        let cut = &good[..good.len() - 4];
        assert_eq!(Compound::parse(cut).unwrap_err(), RtcpError::LengthOverrun);

        let mut blocks = good.clone();
        blocks[0] = 0x80 | 2; // two blocks promised, one present
        assert_eq!(
            Compound::parse(&blocks).unwrap_err(),
            RtcpError::ReportOverrun
        );

        let mut chunks = good.clone();
        chunks[sdes_at] = 0x80 | 2; // two chunks promised, one present
        assert_eq!(
            Compound::parse(&chunks).unwrap_err(),
            RtcpError::SdesOverrun
        );
        let mut item = good.clone();
        item[sdes_at + 9] = 200; // CNAME longer than the packet
        assert_eq!(Compound::parse(&item).unwrap_err(), RtcpError::SdesOverrun);
        let mut no_end = good.clone();
        // "user@host" is 9 bytes: 4 + 2 + 9 = 15, one null ends the chunk at 16.
        no_end[sdes_at + 4 + 15] = b'!';
        assert_eq!(
            Compound::parse(&no_end).unwrap_err(),
            RtcpError::SdesOverrun
        );

        let mut sources = good.clone();
        sources[bye_at] = 0x80 | 5; // 20 bytes of sources promised, 16 in the body
        assert_eq!(
            Compound::parse(&sources).unwrap_err(),
            RtcpError::ByeOverrun
        );
        let mut reason = good.clone();
        reason[bye_at + 12] = 4 + 4; // reason longer than the packet
        assert_eq!(Compound::parse(&reason).unwrap_err(), RtcpError::ByeOverrun);
    }

    #[test]
    fn writers_refuse_what_they_cannot_write() {
        let mut small = [0u8; 8];
        assert_eq!(
            write_sr(&mut small, 1, &SenderInfo::default(), &[]),
            Err(RtcpWriteError::BufferTooSmall { needed: 28 })
        );
        let mut buf = [0u8; 1024];
        assert_eq!(
            write_rr(&mut buf, 1, &[ReportBlock::default(); 32]),
            Err(RtcpWriteError::TooMany)
        );
        assert_eq!(
            write_sdes_cname(&mut buf, 1, &[b'a'; 256]),
            Err(RtcpWriteError::TooLong)
        );
        assert_eq!(
            write_bye(&mut buf, &[0; 32], b""),
            Err(RtcpWriteError::TooMany)
        );
        // The longest CNAME fits and reads back.
        let len = write_sdes_cname(&mut buf, 1, &[b'a'; 255]).unwrap();
        assert_eq!(len, sdes_cname_len(255));
        let c = Compound::parse(&buf[..len]).unwrap();
        let Some(Packet::Sdes(s)) = c.packets().next() else {
            panic!()
        };
        let chunk = s.chunks().next().unwrap();
        assert_eq!(chunk.items().next().unwrap().1.len(), 255);
    }

    #[test]
    fn rtcp_types_reads_what_we_write() {
        use rtcp_types::{Compound as RtCompound, Packet as RtPacket};
        let good = good();
        let mut packets = RtCompound::parse(&good).unwrap();
        let Some(Ok(RtPacket::Sr(sr))) = packets.next() else {
            panic!("SR")
        };
        assert_eq!(sr.ssrc(), 0x1111);
        assert_eq!(sr.ntp_timestamp(), 0xe000_0000_8000_0000);
        let rb = sr.report_blocks().next().unwrap();
        assert_eq!(rb.ssrc(), 0x2222);
        // rtcp-types hands the 24 bits out unsigned: -3 is 0xfffffd there.
        assert_eq!(rb.cumulative_lost(), 0x00ff_fffd);
        assert_eq!(rb.last_sender_report_timestamp(), 0xdead_beef);
        let Some(Ok(RtPacket::Sdes(sdes))) = packets.next() else {
            panic!("SDES")
        };
        let item = sdes.chunks().next().unwrap().items().next().unwrap();
        assert_eq!(item.value(), b"user@host");
        let Some(Ok(RtPacket::Bye(bye))) = packets.next() else {
            panic!("BYE")
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![0x1111, 0x3333]);
        assert_eq!(bye.reason(), Some(&b"done"[..]));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = Compound::parse(&data) {
                walk(&c);
            }
        }

        #[test]
        fn parse_never_panics_on_plausible_headers(
            mut data in proptest::collection::vec(any::<u8>(), 4..200),
            types in proptest::collection::vec(200u8..=204, 1..8),
        ) {
            // Random bytes rarely chain valid headers: force version 2, known
            // types and lengths that stay near the data, so the deeper checks
            // run.
            let mut at = 0;
            for pt in types {
                if at + 4 > data.len() { break; }
                data[at] = (data[at] & 0x3f) | 0x80;
                data[at + 1] = pt;
                let words = (data[at + 3] % 8) as usize;
                data[at + 2] = 0;
                data[at + 3] = words as u8;
                at += 4 * (words + 1);
            }
            if let Ok(c) = Compound::parse(&data) {
                walk(&c);
            }
        }

        #[test]
        fn written_reports_read_back(
            ssrc: u32, ntp: u64, rtp_ts: u32, packets: u32, octets: u32,
            blocks in proptest::collection::vec(
                (any::<u32>(), any::<u8>(), -(1i32 << 23)..(1i32 << 23), any::<u32>(),
                 any::<u32>(), any::<u32>(), any::<u32>()), 0..=31),
            sr: bool,
            cname in proptest::collection::vec(any::<u8>(), 0..=255),
        ) {
            let blocks: Vec<ReportBlock> = blocks.into_iter().map(|(s, f, c, e, j, l, d)| ReportBlock {
                ssrc: s, fraction_lost: f, cumulative_lost: c, extended_highest_seq: e,
                jitter: j, last_sr: l, delay_since_last_sr: d,
            }).collect();
            let info = SenderInfo { ntp, rtp_timestamp: rtp_ts, packet_count: packets, octet_count: octets };
            let mut buf = vec![0u8; 2048];
            let mut len = if sr {
                write_sr(&mut buf, ssrc, &info, &blocks).unwrap()
            } else {
                write_rr(&mut buf, ssrc, &blocks).unwrap()
            };
            len += write_sdes_cname(&mut buf[len..], ssrc, &cname).unwrap();
            let c = Compound::parse(&buf[..len]).unwrap();
            let mut p = c.packets();
            let got: Vec<ReportBlock> = match (p.next(), sr) {
                (Some(Packet::SenderReport(r)), true) => {
                    prop_assert_eq!(r.ssrc(), ssrc);
                    prop_assert_eq!(r.sender_info(), info);
                    r.report_blocks().collect()
                }
                (Some(Packet::ReceiverReport(r)), false) => {
                    prop_assert_eq!(r.ssrc(), ssrc);
                    r.report_blocks().collect()
                }
                (other, _) => {
                    return Err(TestCaseError::fail(format!("wrong first packet {other:?}")));
                }
            };
            prop_assert_eq!(got, blocks);
            let Some(Packet::Sdes(s)) = p.next() else { panic!("SDES") };
            let chunk = s.chunks().next().unwrap();
            prop_assert_eq!(chunk.ssrc, ssrc);
            let items: Vec<_> = chunk.items().collect();
            prop_assert_eq!(items, vec![(SDES_CNAME, &cname[..])]);
            prop_assert!(p.next().is_none());
        }
    }

    /// Touches every accessor of every packet, as a receiver would.
    fn walk(c: &Compound<'_>) {
        for p in c.packets() {
            match p {
                Packet::SenderReport(sr) => {
                    let _ = (sr.ssrc(), sr.sender_info());
                    assert_eq!(sr.report_blocks().count(), sr.report_blocks().len());
                }
                Packet::ReceiverReport(rr) => {
                    let _ = rr.ssrc();
                    let _ = rr.report_blocks().count();
                }
                Packet::Sdes(s) => {
                    for chunk in s.chunks() {
                        let _ = chunk.items().count();
                    }
                }
                Packet::Bye(b) => {
                    let _ = (b.ssrcs().count(), b.reason());
                }
                Packet::Other { .. } => {}
            }
        }
    }
}
