//! The floor under any receiver or call that gives each stream its own UDP
//! socket: the kernel work of sending and receiving the same datagrams from
//! one thread, with nothing done to them. Our figures are compared with it
//! to show what is ours and what the kernel takes whatever the design.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Sockets registered level-triggered on one epoll instance, read with one
/// `recvmmsg` per ready socket and written with one `sendto` each.
pub struct Floor {
    epoll: i32,
    sockets: Vec<UdpSocket>,
    events: Vec<libc::epoll_event>,
    buf: Vec<u8>,
}

impl Floor {
    pub fn new(sockets: Vec<UdpSocket>) -> Floor {
        // SAFETY: plain epoll calls on open descriptors; the kernel copies
        // `ev`.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0, "epoll_create1");
        for (i, s) in sockets.iter().enumerate() {
            s.set_nonblocking(true).expect("non-blocking");
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            let r = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
            assert_eq!(r, 0, "epoll_ctl");
        }
        Floor {
            epoll,
            sockets,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
            buf: vec![0; 2048],
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.sockets
            .iter()
            .map(|s| s.local_addr().expect("bound").port())
            .collect()
    }

    /// Waits up to `timeout_ms` for readiness, then reads one datagram from
    /// each ready socket, polling again at once while a poll comes back
    /// full; returns the datagrams read.
    pub fn receive(&mut self, timeout_ms: i32) -> u64 {
        let mut got = 0;
        let mut timeout = timeout_ms;
        loop {
            // SAFETY: `events` and the message buffers are live for the
            // calls; the lengths passed are theirs.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    self.events.as_mut_ptr(),
                    self.events.len() as i32,
                    timeout,
                )
            };
            let ready = ready.max(0) as usize;
            for i in 0..ready {
                let fd = self.sockets[self.events[i].u64 as usize].as_raw_fd();
                got += self.read_one(fd);
            }
            if ready < self.events.len() {
                return got;
            }
            timeout = 0;
        }
    }

    fn read_one(&mut self, fd: i32) -> u64 {
        // SAFETY: the header points at `name`, `iov` and `buf`, all live
        // for the call.
        unsafe {
            let mut name: libc::sockaddr_storage = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast(),
                iov_len: self.buf.len(),
            };
            let mut msg: libc::mmsghdr = std::mem::zeroed();
            msg.msg_hdr.msg_iov = &mut iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            let n = libc::recvmmsg(fd, &mut msg, 1, libc::MSG_DONTWAIT, std::ptr::null_mut());
            n.max(0) as u64
        }
    }

    /// Sends `packet` from socket i to `targets[i]`, for every i; returns
    /// the datagrams the kernel took.
    pub fn send_each(&self, packet: &[u8], targets: &[SocketAddr]) -> u64 {
        self.sockets
            .iter()
            .zip(targets)
            .filter(|(s, t)| s.send_to(packet, t).is_ok())
            .count() as u64
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.epoll) };
    }
}

/// What [`exchange`] measured over its window.
pub struct Exchange {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub sent: u64,
    pub received: u64,
}

impl Exchange {
    /// CPU seconds per second: the share of one core.
    pub fn cpu_share(&self) -> f64 {
        self.cpu_seconds / self.wall_seconds
    }
}

/// `n` loopback sockets, socket i sending one 172-byte datagram to socket
/// `target(i)` `pps` times a second and reading what arrives, all from this
/// thread, for `seconds` after a 1 s warm-up. A machine too slow for the
/// traffic sends late and less: `sent` then falls short of `n * pps *
/// seconds`.
pub fn exchange(n: usize, pps: f64, target: impl Fn(usize) -> usize, seconds: f64) -> Exchange {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut floor = Floor::new(sockets);
    let ports = floor.ports();
    let targets: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], ports[target(i)])))
        .collect();
    let packet = [0x80u8; 172];
    let period = Duration::from_secs_f64(1.0 / pps);
    let start = Instant::now();
    let measured = start + Duration::from_secs(1);
    let end = measured + Duration::from_secs_f64(seconds);
    let (mut next, mut cpu0) = (start, None);
    let (mut sent, mut received) = (0, 0);
    while next < end {
        if cpu0.is_none() && next >= measured {
            cpu0 = Some((super::cpu_seconds(), Instant::now()));
            (sent, received) = (0, 0);
        }
        sent += floor.send_each(&packet, &targets);
        next += period;
        // At least one round each period, even one that overran, so a
        // machine too slow for the traffic still reads what it sends.
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            received += floor.receive(wait.as_micros().div_ceil(1000) as i32);
            if wait.is_zero() {
                break;
            }
        }
    }
    let (cpu_seconds, wall_seconds) = cpu0.map_or((0.0, 1.0), |(c, t)| {
        (super::cpu_seconds() - c, t.elapsed().as_secs_f64())
    });
    Exchange {
        cpu_seconds,
        wall_seconds,
        sent,
        received,
    }
}
