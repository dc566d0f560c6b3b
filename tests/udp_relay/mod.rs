//! Loopback UDP helpers for the RTCP tests: a relay that sits between two
//! peers (delaying RTCP, dropping chosen RTP packets), a pair of adjacent
//! ports for RTP and RTCP, and a pcap writer for datagrams a test received.
#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rtpsynth_core::rtp;

/// One direction of the relay.
pub struct Route {
    /// Index of the socket datagrams arrive on.
    pub input: usize,
    /// Index of the socket they leave from.
    pub output: usize,
    pub target: SocketAddr,
    /// How long RTCP (RFC 5761's rule) is held before it goes on; RTP goes
    /// on at once.
    pub rtcp_delay: Duration,
    /// RTP sequence numbers not passed on.
    pub drop_seqs: Vec<u16>,
}

/// Forwards datagrams along its routes on a thread of its own until dropped.
pub struct Relay {
    addrs: Vec<SocketAddr>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(sockets: Vec<UdpSocket>, routes: Vec<Route>) -> Relay {
        let addrs = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            std::thread::spawn(move || relay(&sockets, &routes, &stop, &dropped))
        };
        Relay {
            addrs,
            dropped,
            stop,
            thread: Some(thread),
        }
    }

    /// The address of socket `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.addrs[index]
    }

    /// RTP packets dropped as the routes asked.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(sockets: &[UdpSocket], routes: &[Route], stop: &AtomicBool, dropped: &AtomicU64) {
    let mut held: Vec<(Instant, usize, SocketAddr, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        for r in routes {
            while let Ok(n) = sockets[r.input].recv(&mut buf) {
                let data = &buf[..n];
                let is_rtcp = rtp::is_rtcp(data);
                if !is_rtcp
                    && let Ok(p) = rtp::Packet::parse(data)
                    && r.drop_seqs.contains(&p.seq())
                {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let delay = if is_rtcp {
                    r.rtcp_delay
                } else {
                    Duration::ZERO
                };
                held.push((Instant::now() + delay, r.output, r.target, data.to_vec()));
            }
        }
        let now = Instant::now();
        held.retain(|(due, output, target, data)| {
            if *due > now {
                return true;
            }
            let _ = sockets[*output].send_to(data, *target);
            false
        });
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// Two sockets on 127.0.0.1 bound to an even port and the next one, as an
/// RTP peer with RTCP on port + 1 needs.
pub fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            return (rtp, rtcp);
        }
    }
    panic!("no free even port pair on 127.0.0.1");
}

/// Writes `datagrams` (payload, sender, receiver) as a classic pcap file of
/// raw IPv4 packets (LINKTYPE_RAW), so tshark can decode what a test
/// received when it cannot capture itself. IPv4 loopback only.
pub fn write_pcap(path: &std::path::Path, datagrams: &[(Vec<u8>, SocketAddr, SocketAddr)]) {
    const LINKTYPE_RAW: u32 = 101;
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    for (i, (payload, from, to)) in datagrams.iter().enumerate() {
        let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
            panic!("IPv4 only");
        };
        let packet = ipv4_udp(payload, *from, *to);
        let ts = start + Duration::from_millis(i as u64);
        out.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        out.extend_from_slice(&packet);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .unwrap();
}

fn ipv4_udp(payload: &[u8], from: SocketAddrV4, to: SocketAddrV4) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    // A zero UDP checksum means "none" over IPv4.
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// 127.0.0.1:`port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}
