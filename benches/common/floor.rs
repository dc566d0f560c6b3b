//! The floors under any receiver or call: the kernel work of sending and
//! receiving the same datagrams from one thread, with nothing done to them,
//! in the two shapes a receiver can take: each stream its own UDP socket, or
//! all streams on one shared socket read in batches. Our figures are
//! compared with them to show what is ours and what the kernel takes
//! whatever the design.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Datagrams one `recvmmsg` takes from a shared socket, as the element's
/// shared sockets are read.
pub const SHARED_BATCH: usize = 64;

/// Receive buffer asked for on a shared socket, the element's: the
/// kernel's default (about 200 KB, some 270 small datagrams) overflows when
/// one socket queues every stream's packets for a 5 ms tick (4,000 streams
/// bring 1,000 a tick, and the sender's 20 ms rounds come in bursts of
/// 4,000). The kernel doubles the request.
const SHARED_RECEIVE_BUFFER: libc::c_int = 8 << 20;

/// Sockets registered level-triggered on one epoll instance, read with one
/// `recvmmsg` per ready socket (of one datagram, or of [`SHARED_BATCH`] on a
/// shared socket) and written with one `sendto` each.
pub struct Floor {
    epoll: i32,
    sockets: Vec<UdpSocket>,
    events: Vec<libc::epoll_event>,
    batch: Batch,
    /// Sends datagrams in a row to one target as one UDP GSO message.
    gso: bool,
}

/// The `recvmmsg` arguments for up to `msgs.len()` datagrams, set up once:
/// the headers point into the other three vectors' heap buffers, which stay
/// put when the `Batch` moves.
struct Batch {
    buf: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov` and `msgs` point only into this
// struct's own heap buffers, so the struct may go to another thread whole.
unsafe impl Send for Batch {}

const DATAGRAM_ROOM: usize = 2048;
const NAME_LEN: u32 = std::mem::size_of::<libc::sockaddr_storage>() as u32;

impl Batch {
    fn new(len: usize) -> Batch {
        let mut buf = vec![0u8; len * DATAGRAM_ROOM];
        // SAFETY: all-zero bytes are a valid C socket address and header.
        let mut names = vec![unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }; len];
        let mut iov: Vec<libc::iovec> = buf
            .chunks_exact_mut(DATAGRAM_ROOM)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: DATAGRAM_ROOM,
            })
            .collect();
        let msgs = names
            .iter_mut()
            .zip(iov.iter_mut())
            .map(|(name, iov)| {
                // SAFETY: as above.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = NAME_LEN;
                m
            })
            .collect();
        Batch {
            buf,
            names,
            iov,
            msgs,
        }
    }

    /// One non-blocking `recvmmsg` of up to a full batch from `fd`; returns
    /// the datagrams read.
    fn read(&mut self, fd: i32) -> usize {
        // SAFETY: the headers point into this batch's live buffers, and the
        // count passed is the headers'.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.msgs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = n.max(0) as usize;
        // The kernel shrank these to the senders' address lengths.
        for m in &mut self.msgs[..n] {
            m.msg_hdr.msg_namelen = NAME_LEN;
        }
        n
    }

    /// Hands each of the first `n` datagrams read to `each`.
    fn hand(&self, n: usize, each: &mut impl FnMut(&[u8])) {
        for (m, room) in self.msgs[..n]
            .iter()
            .zip(self.buf.chunks_exact(DATAGRAM_ROOM))
        {
            each(&room[..(m.msg_len as usize).min(DATAGRAM_ROOM)]);
        }
    }
}

impl Floor {
    /// The per-socket floor: each of `sockets` read one datagram at a time.
    pub fn new(sockets: Vec<UdpSocket>) -> Floor {
        Floor::with_batch(sockets, 1)
    }

    /// The shared-socket floor: `sockets`, each shared by many streams,
    /// read [`SHARED_BATCH`] datagrams at a time, with a receive buffer that
    /// holds a tick's worth of thousands of streams.
    pub fn shared(sockets: Vec<UdpSocket>) -> Floor {
        for socket in &sockets {
            // Past `net.core.rmem_max` where the process may, as the
            // element does, else as large as that allows.
            let set = |option| {
                let bytes = SHARED_RECEIVE_BUFFER;
                // SAFETY: a valid option and value length for an open socket.
                unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        (&bytes as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as u32,
                    ) == 0
                }
            };
            let _ = set(libc::SO_RCVBUFFORCE) || set(libc::SO_RCVBUF);
        }
        Floor::with_batch(sockets, SHARED_BATCH)
    }

    fn with_batch(sockets: Vec<UdpSocket>, batch: usize) -> Floor {
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
            batch: Batch::new(batch),
            gso: false,
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        ports_of(&self.sockets)
    }

    /// Waits up to `timeout_ms` for readiness, then reads each ready socket
    /// (a shared one until a read comes back short), polling again at once
    /// while a poll comes back full; returns the datagrams read. What a
    /// read leaves behind, level-triggered epoll reports again at the next
    /// call.
    pub fn receive(&mut self, timeout_ms: i32) -> u64 {
        self.receive_each(timeout_ms, &mut |_| {})
    }

    /// [`Floor::receive`], handing each datagram to `each`.
    fn receive_each(&mut self, timeout_ms: i32, each: &mut impl FnMut(&[u8])) -> u64 {
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
            let full = self.batch.msgs.len();
            for i in 0..ready {
                let fd = self.sockets[self.events[i].u64 as usize].as_raw_fd();
                // A shared socket is read until a read comes back short, as
                // a server of its many streams does; a socket of one stream
                // once (what is left, the next poll reports).
                loop {
                    let n = self.batch.read(fd);
                    self.batch.hand(n, each);
                    got += n as u64;
                    if n < full || full == 1 {
                        break;
                    }
                }
            }
            if ready < self.events.len() {
                return got;
            }
            timeout = 0;
        }
    }

    /// Reads every socket until a read comes back short of a full batch;
    /// returns the datagrams read.
    pub fn drain(&mut self) -> u64 {
        self.drain_each(&mut |_| {})
    }

    /// [`Floor::drain`], handing each datagram to `each`.
    fn drain_each(&mut self, each: &mut impl FnMut(&[u8])) -> u64 {
        let mut got = 0;
        for s in &self.sockets {
            let full = self.batch.msgs.len();
            loop {
                let n = self.batch.read(s.as_raw_fd());
                self.batch.hand(n, each);
                got += n as u64;
                if n < full {
                    break;
                }
            }
        }
        got
    }

    /// Receives until `stop`, adding the datagrams to `count`. With a zero
    /// `tick` each wake reads what is ready ([`Floor::receive`]); otherwise
    /// the thread sleeps to the next tick and then drains everything
    /// ([`Floor::drain`]), as a server paced by a tick does.
    pub fn serve(&mut self, tick: Duration, stop: &AtomicBool, count: &AtomicU64) {
        self.serve_each(tick, stop, count, |_| {});
    }

    /// [`Floor::serve`], handing each datagram to `each`: the floor of a
    /// receiver that does that much more per datagram.
    pub fn serve_each(
        &mut self,
        tick: Duration,
        stop: &AtomicBool,
        count: &AtomicU64,
        mut each: impl FnMut(&[u8]),
    ) {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let got = if tick.is_zero() {
                self.receive_each(50, &mut each)
            } else {
                next += tick;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                self.drain_each(&mut each)
            };
            count.fetch_add(got, Ordering::Relaxed);
        }
    }

    /// Sends `packet` from socket i to each of `targets[i]`, for every i:
    /// one `sendto` for a lone target, as a socket of its own sends a
    /// stream's packet, else `sendmmsg` of up to [`SHARED_BATCH`], as a
    /// shared socket sends its streams' (with `gso`, one GSO message per
    /// run of one target). Returns the datagrams the kernel took.
    fn send_all(&self, packet: &[u8], targets: &[Vec<libc::sockaddr_in>]) -> u64 {
        let mut sent = 0;
        for (s, to) in self.sockets.iter().zip(targets) {
            for chunk in to.chunks(SHARED_BATCH) {
                sent += if self.gso {
                    send_joined(s.as_raw_fd(), packet, chunk)
                } else {
                    send_batch(s.as_raw_fd(), packet, chunk)
                };
            }
        }
        sent
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

/// How the streams of an [`exchange`] are carried.
#[derive(Clone, Copy, Debug)]
pub enum Carriers {
    /// Each stream its own socket, read one datagram at a time.
    PerStream,
    /// `k` shared sockets, stream i on socket i % k, each read and written
    /// [`SHARED_BATCH`] datagrams at a time.
    Shared(usize),
    /// [`Carriers::Shared`], with the datagrams a socket sends in a row to
    /// one target joined into one UDP GSO message, as `rtpmuxserver`'s
    /// `gso` does.
    SharedGso(usize),
}

/// `n` loopback streams, stream i sending one 172-byte datagram to stream
/// `target(i)` `pps` times a second and reading what arrives, all from one
/// thread, for `seconds` after a 1 s warm-up, on sockets as `carriers`
/// says. A machine too slow for the traffic sends late and less: `sent`
/// then falls short of `n * pps * seconds`.
pub fn exchange(
    n: usize,
    pps: f64,
    target: impl Fn(usize) -> usize,
    carriers: Carriers,
    seconds: f64,
) -> Exchange {
    exchange_on(n, pps, target, carriers, seconds, 1)
}

/// [`exchange`] with the sockets spread over `threads` threads (socket j
/// on thread j % threads), each sending from and reading only its own, as
/// an element's workers do: a datagram to another thread's socket is
/// delivered across cores. The CPU is the whole process's.
pub fn exchange_on(
    n: usize,
    pps: f64,
    target: impl Fn(usize) -> usize,
    carriers: Carriers,
    seconds: f64,
    threads: usize,
) -> Exchange {
    let k = match carriers {
        Carriers::PerStream => n,
        Carriers::Shared(k) | Carriers::SharedGso(k) => k.clamp(1, n.max(1)),
    };
    let threads = threads.clamp(1, k.max(1));
    let sockets: Vec<UdpSocket> = (0..k)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports = ports_of(&sockets);
    let mut targets = vec![Vec::new(); k];
    for i in 0..n {
        targets[i % k].push(loopback(ports[target(i) % k]));
    }
    // Socket j, with what it sends, goes to thread j % threads.
    let mut shares: Vec<(Vec<UdpSocket>, Vec<Vec<libc::sockaddr_in>>)> =
        (0..threads).map(|_| (Vec::new(), Vec::new())).collect();
    for (j, (socket, to)) in sockets.into_iter().zip(targets).enumerate() {
        shares[j % threads].0.push(socket);
        shares[j % threads].1.push(to);
    }
    let start = Instant::now();
    let measured = start + Duration::from_secs(1);
    let end = measured + Duration::from_secs_f64(seconds);
    let (sent, received, cpu_seconds, wall_seconds) = std::thread::scope(|scope| {
        let runs: Vec<_> = shares
            .into_iter()
            .map(|(sockets, targets)| {
                let mut floor = match carriers {
                    Carriers::PerStream => Floor::new(sockets),
                    Carriers::Shared(_) | Carriers::SharedGso(_) => Floor::shared(sockets),
                };
                floor.gso = matches!(carriers, Carriers::SharedGso(_));
                scope
                    .spawn(move || exchange_rounds(&mut floor, &targets, pps, start, measured, end))
            })
            .collect();
        std::thread::sleep(measured.saturating_duration_since(Instant::now()));
        let (cpu0, t0) = (super::cpu_seconds(), Instant::now());
        let counts: Vec<(u64, u64)> = runs
            .into_iter()
            .map(|r| r.join().expect("floor thread"))
            .collect();
        let (sent, received) = counts
            .iter()
            .fold((0, 0), |(s, r), (s1, r1)| (s + s1, r + r1));
        (
            sent,
            received,
            super::cpu_seconds() - cpu0,
            t0.elapsed().as_secs_f64(),
        )
    });
    Exchange {
        cpu_seconds,
        wall_seconds,
        sent,
        received,
    }
}

/// One thread's share of an [`exchange_on`]: a round of sends each period
/// from `start` to `end`, reading between them. Returns the datagrams sent
/// and received from `measured` on.
fn exchange_rounds(
    floor: &mut Floor,
    targets: &[Vec<libc::sockaddr_in>],
    pps: f64,
    start: Instant,
    measured: Instant,
    end: Instant,
) -> (u64, u64) {
    let packet = [0x80u8; 172];
    let period = Duration::from_secs_f64(1.0 / pps);
    let mut next = start;
    let (mut sent, mut received, mut counting) = (0, 0, false);
    while next < end {
        if !counting && next >= measured {
            counting = true;
            (sent, received) = (0, 0);
        }
        sent += floor.send_all(&packet, targets);
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
    (sent, received)
}

/// The ports `sockets` are bound to.
fn ports_of(sockets: &[UdpSocket]) -> Vec<u16> {
    sockets
        .iter()
        .map(|s| s.local_addr().expect("bound").port())
        .collect()
}

/// 127.0.0.1:`port` as the C socket address `sendmmsg` takes.
fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `packet` from `fd` to each of `to` (at most [`SHARED_BATCH`]): one
/// `sendto` for one, else `sendmmsg`, again after a short count (the kernel
/// stops at a datagram it refuses, which is then skipped). Returns the
/// datagrams the kernel took.
fn send_batch(fd: i32, packet: &[u8], to: &[libc::sockaddr_in]) -> u64 {
    const NAME: u32 = std::mem::size_of::<libc::sockaddr_in>() as u32;
    if let [one] = to {
        // SAFETY: `packet` and `one` are live for the call; the kernel
        // only reads them.
        let r = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (one as *const libc::sockaddr_in).cast(),
                NAME,
            )
        };
        return u64::from(r >= 0);
    }
    let mut iov = libc::iovec {
        iov_base: packet.as_ptr().cast_mut().cast(),
        iov_len: packet.len(),
    };
    // SAFETY: all-zero bytes are a valid C message header.
    let mut msgs: [libc::mmsghdr; SHARED_BATCH] = unsafe { std::mem::zeroed() };
    for (m, addr) in msgs.iter_mut().zip(to) {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (addr as *const libc::sockaddr_in).cast_mut().cast();
        m.msg_hdr.msg_namelen = NAME;
    }
    let (mut at, mut sent) = (0, 0);
    let len = to.len().min(SHARED_BATCH);
    while at < len {
        // SAFETY: the headers point at `iov`, `packet` and `to`, all live
        // for the call; the kernel only reads the buffers and names.
        let r = unsafe { libc::sendmmsg(fd, msgs[at..].as_mut_ptr(), (len - at) as u32, 0) };
        if r > 0 {
            at += r as usize;
            sent += r as u64;
        } else {
            at += 1;
        }
    }
    sent
}

/// `packet` from `fd` to each of `to` (at most [`SHARED_BATCH`]), each run
/// of one target as one UDP GSO message (`UDP_SEGMENT`) of as many
/// datagrams, in one `sendmmsg`; a message the kernel refuses is skipped.
/// Returns the datagrams the kernel took. Nothing is allocated or copied:
/// every iovec points at `packet`, and the kernel joins them.
fn send_joined(fd: i32, packet: &[u8], to: &[libc::sockaddr_in]) -> u64 {
    const NAME: u32 = std::mem::size_of::<libc::sockaddr_in>() as u32;
    let to = &to[..to.len().min(SHARED_BATCH)];
    let iov = [libc::iovec {
        iov_base: packet.as_ptr().cast_mut().cast(),
        iov_len: packet.len(),
    }; SHARED_BATCH];
    // `CMSG_SPACE(2)` per message, in u64s so it is aligned for `cmsghdr`.
    let mut controls = [[0u64; 3]; SHARED_BATCH];
    // SAFETY: all-zero bytes are a valid C message header.
    let mut msgs: [libc::mmsghdr; SHARED_BATCH] = unsafe { std::mem::zeroed() };
    let mut runs = [0usize; SHARED_BATCH];
    let (mut messages, mut first) = (0, 0);
    while first < to.len() {
        let target = (to[first].sin_addr.s_addr, to[first].sin_port);
        let run = to[first..]
            .iter()
            .take_while(|a| (a.sin_addr.s_addr, a.sin_port) == target)
            .count();
        let m = &mut msgs[messages];
        // The kernel only reads the iovecs.
        m.msg_hdr.msg_iov = iov.as_ptr().cast_mut();
        m.msg_hdr.msg_iovlen = run;
        m.msg_hdr.msg_name = (&to[first] as *const libc::sockaddr_in).cast_mut().cast();
        m.msg_hdr.msg_namelen = NAME;
        if run > 1 {
            let c = &mut controls[messages];
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = std::mem::size_of_val(c);
            // SAFETY: the control buffer has room for one header and a u16.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                libc::CMSG_DATA(cmsg)
                    .cast::<u16>()
                    .write_unaligned(packet.len() as u16);
            }
        }
        runs[messages] = run;
        messages += 1;
        first += run;
    }
    let (mut at, mut sent) = (0, 0);
    while at < messages {
        // SAFETY: the headers point at `iov`, `packet`, `to` and
        // `controls`, all live for the call; the kernel only reads them.
        let r = unsafe { libc::sendmmsg(fd, msgs[at..].as_mut_ptr(), (messages - at) as u32, 0) };
        if r > 0 {
            sent += runs[at..at + r as usize].iter().sum::<usize>() as u64;
            at += r as usize;
        } else {
            at += 1;
        }
    }
    sent
}
