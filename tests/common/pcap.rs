//! Just enough of the pcap format for the tests: UDP datagrams over IPv4,
//! read from captures (Ethernet or raw IP link types) and written as raw-IP
//! captures that tshark decodes.

use std::time::Duration;

/// One UDP datagram of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture time, from the first datagram of the file.
    pub at: Duration,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The UDP datagrams of a little-endian, microsecond pcap file; other
/// frames are skipped, a truncated or foreign file is an error.
pub fn read(bytes: &[u8]) -> Result<Vec<Datagram>, String> {
    if u32_le(bytes, 0) != Some(0xa1b2_c3d4) {
        return Err("not a little-endian microsecond pcap file".into());
    }
    let link = u32_le(bytes, 20).ok_or("short pcap header")?;
    let mut out = Vec::new();
    let mut first = None;
    let mut at = 24;
    while at < bytes.len() {
        let (secs, usecs, len) = (
            u32_le(bytes, at).ok_or("short record header")?,
            u32_le(bytes, at + 4).ok_or("short record header")?,
            u32_le(bytes, at + 8).ok_or("short record header")? as usize,
        );
        let frame = bytes
            .get(at + 16..at + 16 + len)
            .ok_or("record past the end")?;
        at += 16 + len;
        let ip = match link {
            LINKTYPE_ETHERNET if u16_be(frame, 12) == Some(0x0800) => &frame[14..],
            LINKTYPE_RAW => frame,
            _ => continue,
        };
        if ip.first().map(|b| b >> 4) != Some(4) || ip.get(9) != Some(&17) {
            continue;
        }
        let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let udp_len = usize::from(u16_be(udp, 4).ok_or("short UDP header")?);
        let payload = udp.get(8..udp_len).ok_or("UDP length past the frame")?;
        let t = Duration::from_secs(secs.into()) + Duration::from_micros(usecs.into());
        let t0 = *first.get_or_insert(t);
        out.push(Datagram {
            at: t - t0,
            src_port: u16_be(udp, 0).ok_or("short UDP header")?,
            dst_port: u16_be(udp, 2).ok_or("short UDP header")?,
            payload: payload.to_vec(),
        });
    }
    Ok(out)
}

/// A raw-IP pcap file of `datagrams`, each from 127.0.0.1 to 127.0.0.1.
pub fn write(datagrams: &[Datagram]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for d in datagrams {
        let total = 20 + 8 + d.payload.len();
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
        let sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        let csum = !((sum & 0xffff) + (sum >> 16)) as u16;
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&(d.at.as_secs() as u32).to_le_bytes());
        f.extend_from_slice(&d.at.subsec_micros().to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&d.src_port.to_be_bytes());
        f.extend_from_slice(&d.dst_port.to_be_bytes());
        f.extend_from_slice(&((8 + d.payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum
        f.extend_from_slice(&d.payload);
    }
    f
}
