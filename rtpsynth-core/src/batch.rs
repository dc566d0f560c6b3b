//! Many channels' received datagrams in one byte buffer: the layout of
//! `rtpmuxserver`'s `src_all` pad, and its writer and reader.
//!
//! A consumer of thousands of channels (a recorder, a Python service, an
//! IoT collector) then takes one buffer per worker round instead of one per
//! packet, and reads the index with one call (`numpy.frombuffer`).
//!
//! Layout, all integers little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 0..4 | layout version ([`LAYOUT_VERSION`]) |
//! | 4..8 | record count N |
//! | 8..12 | record size ([`RECORD`] bytes) |
//! | 12..16 | 0 |
//! | 16.. | N records of [`RECORD`] bytes, in arrival order per channel |
//! | then | the datagrams, back to back |
//!
//! A record: channel index (u32), offset of the datagram from the start of
//! the buffer (u32), its length (u32), the source port (u16), the source
//! address family (u8: 4 or 6), 0 (u8), the source address (16 bytes, in
//! network order; an IPv4 address in the first 4, the rest 0).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const LAYOUT_VERSION: u32 = 1;
/// Bytes before the first record.
pub const HEADER: usize = 16;
/// Bytes of one record.
pub const RECORD: usize = 32;
/// A batch this big is handed on before the next `recvmmsg` batch (at most
/// 64 datagrams of 64 KiB) is added, so that offsets always fit their u32
/// fields and buffers stay moderate.
pub const FULL: usize = 4 << 20;

/// Collects datagrams into the bytes of a batch, copying each once: they
/// go straight after room left for the header and index, which
/// [`finish`](BatchWriter::finish) fills in.
#[derive(Debug)]
pub struct BatchWriter {
    /// Records with offsets relative to the first datagram.
    records: Vec<[u8; RECORD]>,
    /// Room for the header and `room` records, then the datagrams.
    bytes: Vec<u8>,
    room: usize,
    /// The bytes the last batch took: the next one starts with more than
    /// that much capacity, so that its datagrams are rarely moved while it
    /// grows.
    last_len: usize,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter {
            records: Vec::new(),
            bytes: Vec::new(),
            room: MIN_ROOM,
            last_len: 0,
        }
    }
}

/// Records the room before the datagrams holds at first.
const MIN_ROOM: usize = 16;

/// A finished batch: its bytes are `bytes[start..]`.
#[derive(Debug)]
pub struct Finished {
    bytes: Vec<u8>,
    start: usize,
}

impl AsRef<[u8]> for Finished {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl AsMut<[u8]> for Finished {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..]
    }
}

impl BatchWriter {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// At least [`FULL`] bytes: finish it before adding more.
    pub fn is_full(&self) -> bool {
        self.encoded_len() >= FULL
    }

    /// [`push`](BatchWriter::push) of each of `datagrams`.
    pub fn extend<'a>(
        &mut self,
        channel: u32,
        datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) {
        for (datagram, from) in datagrams {
            self.push(channel, datagram, from);
        }
    }

    fn head(&self) -> usize {
        HEADER + self.room * RECORD
    }

    #[inline]
    pub fn push(&mut self, channel: u32, datagram: &[u8], from: SocketAddr) {
        if self.bytes.is_empty() {
            self.start(datagram.len());
        }
        let mut r = [0u8; RECORD];
        r[0..4].copy_from_slice(&channel.to_le_bytes());
        r[4..8].copy_from_slice(&((self.bytes.len() - self.head()) as u32).to_le_bytes());
        r[8..12].copy_from_slice(&(datagram.len() as u32).to_le_bytes());
        r[12..14].copy_from_slice(&from.port().to_le_bytes());
        match from.ip() {
            IpAddr::V4(ip) => {
                r[14] = 4;
                r[16..20].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                r[14] = 6;
                r[16..32].copy_from_slice(&ip.octets());
            }
        }
        self.records.push(r);
        self.bytes.extend_from_slice(datagram);
    }

    /// Gives a new batch, whose first datagram has `first` bytes, its
    /// vector and the room for its index.
    #[inline(never)]
    fn start(&mut self, first: usize) {
        // A quarter more than the last batch: a batch that outgrows its
        // vector copies all of it again.
        let capacity = (self.head() + first).max(self.last_len + self.last_len / 4);
        self.bytes = Vec::with_capacity(capacity);
        self.bytes.resize(self.head(), 0);
    }

    /// Bytes of the batch [`finish`](BatchWriter::finish) returns.
    pub fn encoded_len(&self) -> usize {
        let data = self.bytes.len().saturating_sub(self.head());
        HEADER + self.records.len() * RECORD + data
    }

    /// Lays the header and index out before the datagrams and hands the
    /// batch over; the writer starts the next one empty.
    pub fn finish(&mut self) -> Finished {
        if self.bytes.is_empty() {
            self.bytes.resize(self.head(), 0);
        }
        let head = self.head();
        let index = HEADER + self.records.len() * RECORD;
        if index > head {
            // More records than the room holds: the datagrams move once,
            // and the next batches leave more room.
            let data = self.bytes.len() - head;
            self.bytes.resize(index + data, 0);
            self.bytes.copy_within(head..head + data, index);
        }
        let start = head.saturating_sub(index);
        let (top, rest) = self.bytes[start..].split_at_mut(HEADER);
        for (field, value) in top.chunks_exact_mut(4).zip([
            LAYOUT_VERSION,
            self.records.len() as u32,
            RECORD as u32,
            0,
        ]) {
            field.copy_from_slice(&value.to_le_bytes());
        }
        for (slot, record) in rest.chunks_exact_mut(RECORD).zip(&self.records) {
            slot.copy_from_slice(record);
            let offset = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
            slot[4..8].copy_from_slice(&(offset + index as u32).to_le_bytes());
        }
        // Room for a quarter more (the room is zeroed each batch; a batch
        // that outgrows it moves its datagrams once), shrinking slowly when
        // batches do.
        let n = self.records.len();
        self.room = (n + n / 4).max(self.room / 2).max(MIN_ROOM);
        self.last_len = self.bytes.len();
        self.records.clear();
        Finished {
            bytes: std::mem::take(&mut self.bytes),
            start,
        }
    }
}

/// Why bytes are not a batch of this layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than its header or its index says.
    Truncated,
    /// A layout version or record size this reader does not know.
    Version(u32, u32),
    /// A record's datagram lies outside the buffer, or its family is
    /// neither 4 nor 6.
    BadRecord(usize),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::Truncated => write!(f, "batch shorter than its header and index"),
            LayoutError::Version(v, size) => write!(
                f,
                "batch layout {v} with {size}-byte records; this reader knows layout \
                 {LAYOUT_VERSION} with {RECORD}-byte records"
            ),
            LayoutError::BadRecord(i) => write!(f, "batch record {i} is malformed"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// One datagram of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub channel: u32,
    pub from: SocketAddr,
    pub datagram: &'a [u8],
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The number of datagrams the header of `batch` announces, once the
/// header is of this layout.
pub fn count(batch: &[u8]) -> Result<usize, LayoutError> {
    if batch.len() < HEADER {
        return Err(LayoutError::Truncated);
    }
    let (version, count, size) = (word(batch, 0), word(batch, 4), word(batch, 8));
    if version != LAYOUT_VERSION || size as usize != RECORD {
        return Err(LayoutError::Version(version, size));
    }
    Ok(count as usize)
}

/// Every datagram of `batch`, checked against its bounds first.
pub fn read(batch: &[u8]) -> Result<Vec<Received<'_>>, LayoutError> {
    let count = count(batch)?;
    let index = batch
        .get(HEADER..HEADER + count.saturating_mul(RECORD))
        .ok_or(LayoutError::Truncated)?;
    index
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, r)| {
            let (offset, len) = (word(r, 4) as usize, word(r, 8) as usize);
            let datagram = batch
                .get(offset..offset.saturating_add(len))
                .ok_or(LayoutError::BadRecord(i))?;
            let port = u16::from_le_bytes([r[12], r[13]]);
            let ip = match r[14] {
                4 => IpAddr::V4(Ipv4Addr::new(r[16], r[17], r[18], r[19])),
                6 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&r[16..32]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
                _ => return Err(LayoutError::BadRecord(i)),
            };
            Ok(Received {
                channel: word(r, 0),
                from: SocketAddr::new(ip, port),
                datagram,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(w: &mut BatchWriter) -> Vec<u8> {
        let len = w.encoded_len();
        let out = w.finish().as_ref().to_vec();
        assert_eq!(out.len(), len, "encoded_len told the size");
        out
    }

    #[test]
    fn layout_is_as_documented() {
        let mut w = BatchWriter::default();
        let v4: SocketAddr = "10.1.2.3:5004".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        w.push(7, &[1, 2, 3], v4);
        w.push(70_000, &[9; 5], v6);
        let out = write(&mut w);
        assert_eq!(out.len(), HEADER + 2 * RECORD + 8);
        assert_eq!(
            &out[..16],
            &[1, 0, 0, 0, 2, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0]
        );
        let r0 = &out[16..48];
        assert_eq!(
            &r0[..14],
            &[7, 0, 0, 0, 80, 0, 0, 0, 3, 0, 0, 0, 0x8c, 0x13]
        );
        assert_eq!(&r0[14..20], &[4, 0, 10, 1, 2, 3]);
        assert_eq!(&r0[20..], &[0; 12]);
        let r1 = &out[48..80];
        assert_eq!(word(r1, 0), 70_000);
        assert_eq!((word(r1, 4), word(r1, 8)), (83, 5));
        assert_eq!(&r1[12..16], &[0x40, 0x9c, 6, 0]);
        assert_eq!(
            &r1[16..],
            &"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&out[80..], &[1, 2, 3, 9, 9, 9, 9, 9]);
        assert!(w.is_empty(), "written out");
        assert_eq!(w.encoded_len(), HEADER);
    }

    #[test]
    fn read_returns_what_was_pushed_and_refuses_bad_bytes() {
        let mut w = BatchWriter::default();
        let sources: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "[::1]:65535".parse().unwrap(),
            "127.0.0.2:9".parse().unwrap(),
        ];
        let datagrams: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; 10 + i]).collect();
        for (i, (d, from)) in datagrams.iter().zip(&sources).enumerate() {
            w.push(i as u32 * 3, d, *from);
        }
        let out = write(&mut w);
        assert_eq!(count(&out), Ok(3));
        let got = read(&out).unwrap();
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.channel, i as u32 * 3);
            assert_eq!(r.from, sources[i]);
            assert_eq!(r.datagram, &datagrams[i][..]);
        }
        assert_eq!(read(&out[..10]), Err(LayoutError::Truncated));
        assert_eq!(read(&out[..HEADER + RECORD]), Err(LayoutError::Truncated));
        assert_eq!(read(&out[..out.len() - 1]), Err(LayoutError::BadRecord(2)));
        let mut other = out.clone();
        other[0] = 2;
        assert_eq!(read(&other), Err(LayoutError::Version(2, 32)));
        let mut family = out.clone();
        family[HEADER + 14] = 5;
        assert_eq!(read(&family), Err(LayoutError::BadRecord(0)));
        let empty = write(&mut BatchWriter::default());
        assert_eq!(read(&empty), Ok(vec![]));
    }

    #[test]
    fn batches_bigger_and_smaller_than_the_room_left_read_back_whole() {
        let mut w = BatchWriter::default();
        let from: SocketAddr = "127.0.0.1:7".parse().unwrap();
        // 40 records outgrow the first room (the datagrams move), the next
        // batches start with room to spare, and an empty one is a header.
        for n in [40usize, 10, 100, 0, 3] {
            let datagrams: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 1 + i % 7]).collect();
            for (i, d) in datagrams.iter().enumerate() {
                w.push(i as u32, d, from);
            }
            let out = write(&mut w);
            assert_eq!(count(&out), Ok(n));
            let got = read(&out).unwrap();
            let want: Vec<Received<'_>> = datagrams
                .iter()
                .enumerate()
                .map(|(i, d)| Received {
                    channel: i as u32,
                    from,
                    datagram: d,
                })
                .collect();
            assert_eq!(got, want, "batch of {n}");
            let data: usize = datagrams.iter().map(Vec::len).sum();
            assert_eq!(out.len(), HEADER + n * RECORD + data, "nothing between");
        }
    }

    #[test]
    fn a_batch_is_full_at_its_bound() {
        let mut w = BatchWriter::default();
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let big = vec![0u8; 60_000];
        let mut pushed = 0;
        while !w.is_full() {
            w.push(0, &big, from);
            pushed += 1;
        }
        assert_eq!(pushed, FULL.div_ceil(60_000 + RECORD));
        assert!(w.encoded_len() < FULL + 60_000 + RECORD + HEADER);
    }
}
