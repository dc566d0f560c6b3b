//! The floor under any receiver or call that gives each stream its own UDP
//! socket: the kernel work of sending and receiving the same datagrams from
//! one thread, with nothing done to them. Our figures are compared with it
//! to show what is ours and what the kernel takes whatever the design.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

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

    /// Waits up to `timeout_ms` for readiness, then reads one batch from
    /// each ready socket; returns the datagrams read.
    pub fn receive(&mut self, timeout_ms: i32) -> u64 {
        let mut got = 0;
        // SAFETY: `events` and the message buffers are live locals for
        // the calls; the lengths passed are theirs.
        unsafe {
            let ready = libc::epoll_wait(
                self.epoll,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            );
            for e in &self.events[..ready.max(0) as usize] {
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
                let fd = self.sockets[e.u64 as usize].as_raw_fd();
                let n = libc::recvmmsg(fd, &mut msg, 1, libc::MSG_DONTWAIT, std::ptr::null_mut());
                got += n.max(0) as u64;
            }
        }
        got
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
