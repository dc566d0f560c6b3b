//! One-thread UDP server for many RTP channels, free of GStreamer.
//!
//! A [`Server`] owns one worker thread that waits on every channel's socket
//! at once (epoll: `mio`'s `Poll`, with the sockets registered
//! level-triggered), reads datagrams in batches with `recvmmsg`, checks that they are RTP, applies the latch and source-filter
//! rules and hands the accepted ones to a [`Handler`]. Packets to send go into
//! a channel's lossy, bounded [`SendQueue`] from any thread; the worker is
//! woken through a `mio::Waker` (or at the next tick) and sends each queue in
//! batches with `sendmmsg`.
//!
//! Counters are atomics written by one writer each (the worker, or the
//! sending thread for `dropped-queue-full`), so reading statistics never takes
//! a lock the worker needs.

use std::cell::UnsafeCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};

use crate::counters;
use crate::rtp;

/// Datagrams read or written per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 32;
/// Room per received datagram: the largest UDP payload fits, so no RTP packet
/// is ever truncated.
const SLOT: usize = 65_536;
/// Largest send queue, in packets.
pub const MAX_QUEUE_SIZE: u32 = 1 << 16;
/// Smallest send queue: the ring needs two slots to tell full from empty.
pub const MIN_QUEUE_SIZE: u32 = 2;
/// Version of the [`Server::packed_stats`] layout, written in its header row.
/// 2 added `dropped-kernel` after `dropped-not-rtp`.
pub const PACKED_STATS_VERSION: u64 = 2;

const WAKER: Token = Token(usize::MAX);
/// Readiness events taken per poll.
const EVENTS: usize = 4096;
/// Longest sleep of a paced worker between checks for commands.
const PAUSE_SLICE: Duration = Duration::from_millis(5);
/// `recvmmsg` calls per readiness report at most.
const READS_PER_EVENT: usize = 4;

counters! {
    /// What one channel did. `packets-received` counts every datagram read
    /// from the socket, so it equals the packets handed on plus
    /// `dropped-foreign-source` plus `dropped-not-rtp` (`dropped-kernel`
    /// counts those that never got that far); every packet given to
    /// [`Channel::send`] ends in `packets-sent`, `dropped-queue-full` or
    /// `send-errors`.
    pub struct ChannelStats {
        /// Datagrams read from the channel's socket.
        packets_received = "packets-received",
        /// Bytes of those datagrams (UDP payload).
        octets_received = "octets-received",
        /// Packets the kernel accepted for sending.
        packets_sent = "packets-sent",
        /// Bytes of those packets.
        octets_sent = "octets-sent",
        /// Packets to send dropped because the send queue was full.
        dropped_queue_full = "dropped-queue-full",
        /// Received packets dropped by the source filter (not from the target).
        dropped_foreign_source = "dropped-foreign-source",
        /// Received datagrams that are not valid RTP.
        dropped_not_rtp = "dropped-not-rtp",
        /// Datagrams the kernel dropped on the channel's socket before the
        /// worker read them (receive buffer full), as the socket counts them
        /// (`SO_RXQ_OVFL`); learnt with the next datagram the socket delivers.
        dropped_kernel = "dropped-kernel",
        /// Packets to send that failed: no target yet, or the socket refused them.
        send_errors = "send-errors",
        /// 1 while the target was learnt by latching, else 0.
        latched = "latched",
        /// The UDP port the socket is bound to.
        local_port = "local-port",
    }
}

/// Number of per-channel counters.
pub const NCOUNTERS: usize = ChannelStats::NAMES.len();

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Column of counter `name`; a misspelt name fails the build.
const fn col(name: &str) -> usize {
    let mut i = 0;
    while i < NCOUNTERS {
        if str_eq(ChannelStats::NAMES[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("no such channel counter")
}

const PACKETS_RECEIVED: usize = col("packets-received");
const OCTETS_RECEIVED: usize = col("octets-received");
const PACKETS_SENT: usize = col("packets-sent");
const OCTETS_SENT: usize = col("octets-sent");
const DROPPED_QUEUE_FULL: usize = col("dropped-queue-full");
const DROPPED_FOREIGN_SOURCE: usize = col("dropped-foreign-source");
const DROPPED_NOT_RTP: usize = col("dropped-not-rtp");
const DROPPED_KERNEL: usize = col("dropped-kernel");
const SEND_ERRORS: usize = col("send-errors");
const LATCHED: usize = col("latched");
const LOCAL_PORT: usize = col("local-port");

/// Counters that add over channels (the others are states: `latched`,
/// `local-port`).
pub fn is_summable(column: usize) -> bool {
    column != LATCHED && column != LOCAL_PORT
}

// ---------------------------------------------------------------------------
// Send queue

struct Slot<P> {
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<P>>,
}

/// Bounded, lossy, lock-free queue (D. Vyukov's bounded MPMC ring): any
/// number of threads push, the worker pops. A push into a full queue fails at
/// once and hands the packet back, so a sender never waits for the network.
pub struct SendQueue<P> {
    slots: Box<[Slot<P>]>,
    mask: usize,
    head: AtomicUsize,
    tail: AtomicUsize,
}

// SAFETY: a slot's value is only touched by the one thread that won the
// slot's position with the compare-exchange on `head`/`tail`, and handed
// over through the slot's `seq` with release/acquire ordering.
unsafe impl<P: Send> Send for SendQueue<P> {}
unsafe impl<P: Send> Sync for SendQueue<P> {}

impl<P> SendQueue<P> {
    /// A queue of `capacity` packets; `capacity` must be a power of two in
    /// `MIN_QUEUE_SIZE..=MAX_QUEUE_SIZE`.
    pub fn new(capacity: u32) -> Result<Self, ConfigError> {
        check_queue_size(capacity)?;
        let slots = (0..capacity as usize)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ok(SendQueue {
            slots,
            mask: capacity as usize - 1,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Appends `value`, or gives it back when the queue is full.
    pub fn push(&self, value: P) -> Result<(), P> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as isize - pos as isize;
            if diff == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the exchange gives this thread the slot.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return Err(value);
            } else {
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the oldest packet, if any.
    pub fn pop(&self) -> Option<P> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as isize - pos.wrapping_add(1) as isize;
            if diff == 0 {
                match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the slot was written (seq == pos + 1) and
                        // winning the exchange gives this thread the slot.
                        let value = unsafe { (*slot.value.get()).assume_init_read() };
                        slot.seq
                            .store(pos.wrapping_add(self.mask + 1), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return None;
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }
}

impl<P> Drop for SendQueue<P> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// Address family of a channel's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// From the bind address.
    #[default]
    Auto,
    Ipv4,
    Ipv6,
}

/// A configuration the server refuses, with the setting it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Refuses a send-queue size that is not a power of two in range.
pub fn check_queue_size(size: u32) -> Result<(), ConfigError> {
    if !size.is_power_of_two() || !(MIN_QUEUE_SIZE..=MAX_QUEUE_SIZE).contains(&size) {
        return Err(ConfigError(format!(
            "queue-size {size} is not a power of two between {MIN_QUEUE_SIZE} and {MAX_QUEUE_SIZE}"
        )));
    }
    Ok(())
}

/// The local address to bind: `address` must be an IP literal; with
/// `Family::Ipv6` the IPv4 wildcard (the default) becomes `::`.
pub fn bind_addr(address: &str, port: u16, family: Family) -> Result<SocketAddr, ConfigError> {
    let ip: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("bind-address '{address}' is not an IP address")))?;
    let ip = match (family, ip) {
        (Family::Ipv6, IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (Family::Ipv6, IpAddr::V4(_)) | (Family::Ipv4, IpAddr::V6(_)) => {
            return Err(ConfigError(format!(
                "bind-address '{address}' does not belong to family {family:?}"
            )));
        }
        (_, ip) => ip,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Resolves the send target `host`:`port` (an IP literal or a host name) to
/// an address the socket bound to `local` can reach.
pub fn remote_addr(host: &str, port: u16, local: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let host = host.trim();
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError(format!("remote-address '{host}' cannot be resolved: {e}")))?;
    let mut first = None;
    for addr in found {
        // An IPv6 socket bound to `::` is dual-stack and reaches both.
        let usable = match local {
            SocketAddr::V4(_) => addr.is_ipv4(),
            SocketAddr::V6(v6) => addr.is_ipv6() || v6.ip().is_unspecified(),
        };
        if usable {
            return Ok(addr);
        }
        first.get_or_insert(addr);
    }
    Err(ConfigError(match first {
        Some(addr) => format!("remote-address '{host}' ({addr}) cannot be reached from {local}"),
        None => format!("remote-address '{host}' has no address"),
    }))
}

/// One channel's socket settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    pub bind: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub latch: bool,
    pub source_filter: bool,
    pub queue_size: u32,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            remote: None,
            latch: true,
            source_filter: false,
            queue_size: 64,
        }
    }
}

/// Why a channel could not be added.
#[derive(Debug)]
pub enum ChannelError {
    /// The channel index is already served.
    Exists(u32),
    Config(u32, ConfigError),
    /// Binding the socket failed (for example the port is in use).
    Bind(u32, SocketAddr, io::Error),
    /// The bound socket refused an option the worker needs.
    Socket(u32, SocketAddr, &'static str, io::Error),
    /// The server's worker has stopped.
    Stopped(u32),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Exists(id) => write!(f, "channel {id} already exists"),
            ChannelError::Config(id, e) => write!(f, "channel {id}: {e}"),
            ChannelError::Bind(id, addr, e) => {
                write!(f, "channel {id}: cannot bind UDP socket to {addr}: {e}")
            }
            ChannelError::Socket(id, addr, what, e) => {
                write!(f, "channel {id}: UDP socket on {addr}: cannot {what}: {e}")
            }
            ChannelError::Stopped(id) => write!(f, "channel {id}: the server is stopped"),
        }
    }
}

impl std::error::Error for ChannelError {}

// ---------------------------------------------------------------------------
// Channels

/// What the sending threads share with the worker: the list of channels with
/// packets waiting and the means to wake it.
struct Notify {
    pending: Mutex<Vec<u32>>,
    wake_requested: AtomicBool,
    /// Worker pacing in microseconds: 0 wakes the worker for every send and
    /// every received packet; above, it runs one round per tick.
    tick_us: AtomicU64,
    waker: Waker,
}

impl Notify {
    fn wake(&self) {
        if !self.wake_requested.swap(true, Ordering::AcqRel) {
            // A failed eventfd write leaves the packets for the next wake.
            let _ = self.waker.wake();
        }
    }
}

/// One channel as the element and the worker share it.
pub struct Channel<P, A> {
    id: u32,
    local: SocketAddr,
    queue: SendQueue<P>,
    /// Set while the channel is in the worker's pending list.
    scheduled: AtomicBool,
    counters: [AtomicU64; NCOUNTERS],
    /// A new target for the worker, picked up between batches.
    remote_update: Mutex<Option<Option<SocketAddr>>>,
    remote_dirty: AtomicBool,
    notify: Arc<Notify>,
    /// What the user of the server keeps with the channel (its pads).
    pub attachment: A,
}

impl<P, A> Channel<P, A> {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The address the socket is bound to, with the port actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues `packet` for sending; a full queue drops it and counts it.
    pub fn send(&self, packet: P) -> bool {
        let queued = self.enqueue(packet);
        self.schedule();
        queued
    }

    /// Queues every packet, then wakes the worker once.
    pub fn send_all(&self, packets: impl IntoIterator<Item = P>) -> usize {
        let queued = packets
            .into_iter()
            .map(|p| usize::from(self.enqueue(p)))
            .sum();
        self.schedule();
        queued
    }

    fn enqueue(&self, packet: P) -> bool {
        match self.queue.push(packet) {
            Ok(()) => true,
            Err(_dropped) => {
                self.counters[DROPPED_QUEUE_FULL].fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            lock(&self.notify.pending).push(self.id);
            if self.notify.tick_us.load(Ordering::Relaxed) == 0 {
                self.notify.wake();
            }
        }
    }

    /// Sets (or with `None` clears) the send target. Clearing it lets the
    /// channel latch again.
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        *lock(&self.remote_update) = Some(remote);
        self.remote_dirty.store(true, Ordering::Release);
    }

    /// The counters now, in [`ChannelStats::NAMES`] order.
    pub fn stats(&self) -> [u64; NCOUNTERS] {
        std::array::from_fn(|i| self.counters[i].load(Ordering::Acquire))
    }

    /// Adds `n` to a counter only the worker writes: a plain load and store,
    /// no locked instruction.
    #[inline]
    fn bump(&self, column: usize, n: u64) {
        let c = &self.counters[column];
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Release);
    }
}

/// Locks `m`, ignoring poisoning: what these mutexes guard (lists, settings)
/// stays consistent even if a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates the non-blocking socket a channel with `config` will own.
fn open_socket(id: u32, config: &ChannelConfig) -> Result<std::net::UdpSocket, ChannelError> {
    let socket = std::net::UdpSocket::bind(config.bind)
        .map_err(|e| ChannelError::Bind(id, config.bind, e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ChannelError::Socket(id, config.bind, "make it non-blocking", e))?;
    // The kernel then attaches the socket's drop count to each datagram it
    // delivers after a drop, so no datagram is lost without a count.
    let on: libc::c_int = 1;
    // SAFETY: an open socket and a c_int option the kernel copies.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(ChannelError::Socket(
            id,
            config.bind,
            "enable SO_RXQ_OVFL",
            io::Error::last_os_error(),
        ));
    }
    Ok(socket)
}

// ---------------------------------------------------------------------------
// Handler

/// The accepted packets of one `recvmmsg` batch on one channel.
pub struct Batch<'a> {
    recv: &'a RecvBuffers,
    accepted: &'a [(usize, SocketAddr)],
}

impl<'a> Batch<'a> {
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// Each datagram with its sender.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], SocketAddr)> + 'a {
        let recv = self.recv;
        self.accepted
            .iter()
            .map(move |&(i, from)| (recv.datagram(i), from))
    }
}

/// Receives what the worker reads. Called on the worker thread only.
pub trait Handler: Send + 'static {
    /// The packet type the sending side queues.
    type Packet: AsRef<[u8]> + Send + 'static;
    /// Kept with each channel (for example its output pad).
    type Attachment: Send + Sync + 'static;

    /// Called once each time the worker wakes, before any
    /// [`received`](Handler::received) of that wake.
    fn woke(&mut self) {}

    /// Valid RTP packets that passed the source filter on `channel`.
    fn received(&mut self, channel: &Channel<Self::Packet, Self::Attachment>, batch: Batch<'_>);

    /// A socket failed on `channel`; the other channels keep running.
    fn socket_error(&mut self, channel: &Channel<Self::Packet, Self::Attachment>, error: io::Error);
}

// ---------------------------------------------------------------------------
// Server

type ChannelRef<H> = Arc<Channel<<H as Handler>::Packet, <H as Handler>::Attachment>>;

enum Command<H: Handler> {
    Add(ChannelRef<H>, std::net::UdpSocket, ChannelConfig),
    Remove(u32, mpsc::Sender<()>),
    Stop,
}

struct Shared<H: Handler> {
    channels: Mutex<BTreeMap<u32, ChannelRef<H>>>,
    commands: Mutex<Vec<Command<H>>>,
    /// Counters of channels already removed, so totals never go down.
    released: Mutex<[u64; NCOUNTERS]>,
}

/// The worker thread and its channels. Dropping it stops the thread and
/// closes every socket.
pub struct Server<H: Handler> {
    shared: Arc<Shared<H>>,
    notify: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl<H: Handler> Server<H> {
    /// Starts the worker thread. A non-zero `tick` makes it run one round
    /// (receive everything ready, send everything queued) per tick, trading
    /// up to one tick of latency for bigger batches; zero serves each packet
    /// as soon as it arrives or is queued.
    pub fn start(handler: H, tick: Duration) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let notify = Arc::new(Notify {
            pending: Mutex::new(Vec::new()),
            wake_requested: AtomicBool::new(false),
            tick_us: AtomicU64::new(tick.as_micros() as u64),
            waker,
        });
        let shared = Arc::new(Shared {
            channels: Mutex::new(BTreeMap::new()),
            commands: Mutex::new(Vec::new()),
            released: Mutex::new([0; NCOUNTERS]),
        });
        let (worker_shared, worker_notify) = (shared.clone(), notify.clone());
        // The batch buffers hold raw pointers, so they are made on the
        // worker thread that uses them.
        let thread = std::thread::Builder::new()
            .name("rtpmuxserver".into())
            .spawn(move || {
                Worker {
                    poll,
                    handler,
                    shared: worker_shared,
                    notify: worker_notify,
                    table: HashMap::new(),
                    recv: RecvBuffers::new(),
                    send: SendBuffers::new(),
                    accepted: Vec::with_capacity(BATCH),
                    pending: Vec::new(),
                    commands: Vec::new(),
                }
                .run()
            })?;
        Ok(Server {
            shared,
            notify,
            thread: Some(thread),
        })
    }

    fn command(&self, command: Command<H>) {
        lock(&self.shared.commands).push(command);
        self.notify.wake();
    }

    /// Changes the pacing (see [`Server::start`]).
    pub fn set_tick(&self, tick: Duration) {
        self.notify
            .tick_us
            .store(tick.as_micros() as u64, Ordering::Relaxed);
        self.notify.wake();
    }

    /// Binds channel `id`'s socket now (so a bind error is known at once) and
    /// hands it to the worker.
    pub fn add_channel(
        &self,
        id: u32,
        config: ChannelConfig,
        attachment: H::Attachment,
    ) -> Result<ChannelRef<H>, ChannelError> {
        check_queue_size(config.queue_size).map_err(|e| ChannelError::Config(id, e))?;
        let mut channels = lock(&self.shared.channels);
        if channels.contains_key(&id) {
            return Err(ChannelError::Exists(id));
        }
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(ChannelError::Stopped(id));
        }
        let socket = open_socket(id, &config)?;
        let local = socket
            .local_addr()
            .map_err(|e| ChannelError::Bind(id, config.bind, e))?;
        let channel = Arc::new(Channel {
            id,
            local,
            queue: SendQueue::new(config.queue_size).map_err(|e| ChannelError::Config(id, e))?,
            scheduled: AtomicBool::new(false),
            counters: Default::default(),
            remote_update: Mutex::new(None),
            remote_dirty: AtomicBool::new(false),
            notify: self.notify.clone(),
            attachment,
        });
        channel.counters[LOCAL_PORT].store(u64::from(local.port()), Ordering::Relaxed);
        channels.insert(id, channel.clone());
        drop(channels);
        self.command(Command::Add(channel.clone(), socket, config));
        Ok(channel)
    }

    /// Removes channel `id` and waits (at most `timeout`) until the worker
    /// has closed its socket, so its port can be bound again at once.
    pub fn remove_channel(&self, id: u32, timeout: Duration) -> bool {
        let Some(channel) = lock(&self.shared.channels).remove(&id) else {
            return false;
        };
        let (done, wait) = mpsc::channel();
        self.command(Command::Remove(id, done));
        let closed = wait.recv_timeout(timeout).is_ok();
        if !closed {
            // The worker is stuck or gone: keep the counts all the same.
            add_into(&mut lock(&self.shared.released), &channel.stats());
        }
        closed
    }

    pub fn channel(&self, id: u32) -> Option<ChannelRef<H>> {
        lock(&self.shared.channels).get(&id).cloned()
    }

    /// `(channel id, counters)` of every channel, in id order.
    pub fn channel_stats(&self) -> Vec<(u32, [u64; NCOUNTERS])> {
        let channels: Vec<_> = lock(&self.shared.channels).values().cloned().collect();
        channels.iter().map(|c| (c.id, c.stats())).collect()
    }

    /// Sums of the summable counters over every channel ever served by this
    /// server (released ones included); `latched` counts channels latched now
    /// and `local-port` is 0.
    pub fn totals(&self, per_channel: &[(u32, [u64; NCOUNTERS])]) -> [u64; NCOUNTERS] {
        let mut sum = *lock(&self.shared.released);
        for (_, row) in per_channel {
            add_into(&mut sum, row);
            sum[LATCHED] += row[LATCHED];
        }
        sum
    }

    /// Stops the worker and closes every socket.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.command(Command::Stop);
            // A panicking worker has nothing left to clean up.
            let _ = thread.join();
        }
        lock(&self.shared.channels).clear();
    }
}

impl<H: Handler> Drop for Server<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn add_into(sum: &mut [u64; NCOUNTERS], row: &[u64; NCOUNTERS]) {
    for (i, (s, v)) in sum.iter_mut().zip(row).enumerate() {
        if is_summable(i) {
            *s += v;
        }
    }
}

/// Column names of [`packed_stats`] rows: `channel`, then the counters.
pub fn packed_columns() -> Vec<&'static str> {
    std::iter::once("channel")
        .chain(ChannelStats::NAMES.iter().copied())
        .collect()
}

/// All channels' counters as little-endian `u64`s, one row of
/// `1 + NCOUNTERS` columns per channel (channel id first), after one header
/// row of the same width: `[PACKED_STATS_VERSION, columns, rows, 0, …]`.
pub fn packed_stats(rows: &[(u32, [u64; NCOUNTERS])]) -> Vec<u8> {
    let ncols = 1 + NCOUNTERS;
    let mut out = Vec::with_capacity((rows.len() + 1) * ncols * 8);
    let mut header = [0u64; 1 + NCOUNTERS];
    header[0] = PACKED_STATS_VERSION;
    header[1] = ncols as u64;
    header[2] = rows.len() as u64;
    for v in header {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (id, row) in rows {
        out.extend_from_slice(&u64::from(*id).to_le_bytes());
        for v in row {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Worker

/// `recvmmsg` buffers: the headers point into the vectors' heap storage,
/// which never moves, so the struct itself may.
pub struct RecvBuffers {
    data: Vec<u8>,
    /// Only read by the kernel, through `msgs`.
    _iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    /// Ancillary data of each datagram: room for the one `SO_RXQ_OVFL`
    /// message, u64s so that it is aligned for `cmsghdr`. Written by the
    /// kernel and read through `msgs`.
    _controls: Vec<[u64; CONTROL_WORDS]>,
    msgs: Vec<libc::mmsghdr>,
}

/// `CMSG_SPACE(4)` on 64-bit Linux is 24 bytes.
const CONTROL_WORDS: usize = 4;

impl RecvBuffers {
    fn new() -> Self {
        let mut data = vec![0u8; BATCH * SLOT];
        // SAFETY: all-zero bytes are valid values of these C structs.
        let mut names: Vec<libc::sockaddr_storage> =
            (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut iov: Vec<libc::iovec> = data
            .chunks_exact_mut(SLOT)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: SLOT,
            })
            .collect();
        let mut controls = vec![[0u64; CONTROL_WORDS]; BATCH];
        let msgs = (0..BATCH)
            .map(|i| {
                // SAFETY: as above.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                m.msg_hdr.msg_iov = &mut iov[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
                m
            })
            .collect();
        RecvBuffers {
            data,
            _iov: iov,
            names,
            _controls: controls,
            msgs,
        }
    }

    /// Reads up to `max` (at most [`BATCH`]) datagrams without blocking.
    fn recv(&mut self, fd: i32, max: usize) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        for m in &mut self.msgs[..max] {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            m.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the stated sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                max as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.msgs[i].msg_len as usize).min(SLOT);
        &self.data[i * SLOT..i * SLOT + len]
    }

    fn truncated(&self, i: usize) -> bool {
        self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    fn sender(&self, i: usize) -> Option<SocketAddr> {
        from_sockaddr(&self.names[i]).map(canonical)
    }

    /// The socket's drop count delivered with datagram `i`: present once
    /// the socket has dropped a datagram, and then with every one.
    fn drops(&self, i: usize) -> Option<u32> {
        let hdr = &self.msgs[i].msg_hdr;
        // SAFETY: the kernel wrote `msg_controllen` bytes of control
        // messages into `controls[i]`, which `msg_control` points at;
        // CMSG_FIRSTHDR checks that a whole header fits in that length, and
        // the length check below that the u32 payload does.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(hdr);
            if cmsg.is_null()
                || (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SO_RXQ_OVFL
                || ((*cmsg).cmsg_len as usize) < libc::CMSG_LEN(4) as usize
            {
                return None;
            }
            Some(libc::CMSG_DATA(cmsg).cast::<u32>().read_unaligned())
        }
    }
}

/// `sendmmsg` buffers; every message of a batch goes to the same target.
struct SendBuffers {
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    target: Box<libc::sockaddr_storage>,
}

impl SendBuffers {
    fn new() -> Self {
        SendBuffers {
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            // SAFETY: all-zero bytes are valid values of these C structs.
            msgs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            target: Box::new(unsafe { zeroed() }),
        }
    }

    /// Sends `packets` to `to` and returns how many the kernel took, or the
    /// error of the first one it refused.
    fn send<P: AsRef<[u8]>>(
        &mut self,
        fd: i32,
        packets: &[P],
        to: SocketAddr,
    ) -> (usize, Option<io::Error>) {
        let namelen = to_sockaddr(to, &mut self.target);
        let name: *mut libc::sockaddr_storage = &mut *self.target;
        for (i, p) in packets.iter().enumerate() {
            let bytes = p.as_ref();
            self.iov[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            let m = &mut self.msgs[i];
            m.msg_hdr.msg_name = name.cast();
            m.msg_hdr.msg_namelen = namelen;
            m.msg_hdr.msg_iov = &mut self.iov[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_len = 0;
        }
        let mut done = 0;
        while done < packets.len() {
            // SAFETY: headers `done..len` point at the packets, which outlive
            // the call, and at the target address.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs[done..].as_mut_ptr(),
                    (packets.len() - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return (done, Some(err));
            }
            done += n as usize;
        }
        (done, None)
    }
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` as a C socket address and returns its length.
fn to_sockaddr(addr: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    *ss = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// An IPv4 peer seen through a dual-stack IPv6 socket, as plain IPv4, so it
/// compares equal to the same peer configured as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// How the socket bound to `local` must name `to`.
fn target_for(local: SocketAddr, to: SocketAddr) -> SocketAddr {
    match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => to,
    }
}

struct WorkerChannel<H: Handler> {
    channel: ChannelRef<H>,
    socket: std::net::UdpSocket,
    remote: Option<SocketAddr>,
    latch: bool,
    source_filter: bool,
    /// Datagrams to ask the next `recvmmsg` for: as many as the socket is
    /// expected to hold, so the call rarely makes a last, failing attempt.
    batch: usize,
    /// A receive error was reported and none succeeded since.
    failing: bool,
    /// The socket's drop count as last reported (it counts from the
    /// socket's creation, so it starts at 0).
    kernel_drops: u32,
}

/// Registers `socket` for level-triggered readability under token `id` on
/// mio's epoll instance. mio itself only registers edge-triggered, which
/// obliges a reader to drain the socket down to `EAGAIN`: one failing
/// `recvmsg` per wake, for a channel that mostly holds a single packet. Level
/// triggering lets the worker read what it expects and leave the rest for the
/// next round, which epoll then reports again.
fn register_level_triggered(poll: &Poll, socket: &std::net::UdpSocket, id: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        // mio reads its tokens back from this field.
        u64: id as u64,
    };
    // SAFETY: both fds are open; the kernel copies `event`.
    let r = unsafe {
        libc::epoll_ctl(
            poll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            socket.as_raw_fd(),
            &mut event,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl<H: Handler> WorkerChannel<H> {
    fn refresh_remote(&mut self) {
        // A plain load first: the locked swap only when there is news.
        if self.channel.remote_dirty.load(Ordering::Relaxed)
            && self.channel.remote_dirty.swap(false, Ordering::Acquire)
            && let Some(update) = lock(&self.channel.remote_update).take()
        {
            self.remote = update.map(canonical);
            self.channel.counters[LATCHED].store(0, Ordering::Relaxed);
        }
    }
}

struct Worker<H: Handler> {
    poll: Poll,
    handler: H,
    shared: Arc<Shared<H>>,
    notify: Arc<Notify>,
    table: HashMap<u32, WorkerChannel<H>>,
    recv: RecvBuffers,
    send: SendBuffers,
    accepted: Vec<(usize, SocketAddr)>,
    pending: Vec<u32>,
    commands: Vec<Command<H>>,
}

impl<H: Handler> Worker<H> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now();
        let mut out: Vec<H::Packet> = Vec::with_capacity(BATCH);
        let mut more_to_send = false;
        loop {
            let tick_us = self.notify.tick_us.load(Ordering::Relaxed);
            let tick = Duration::from_micros(tick_us);
            let timeout = if tick.is_zero() {
                // Sends left over from the last round: only look for reads.
                more_to_send.then_some(Duration::ZERO)
            } else {
                // Paced rounds: epoll keeps what became ready meanwhile, so
                // one round handles a tick's worth of packets in one go.
                // Socket readiness does not end the pause; a command or a new
                // tick does, within a slice, so changes never wait for a long
                // tick.
                loop {
                    let now = Instant::now();
                    let retuned = self.notify.tick_us.load(Ordering::Relaxed) != tick_us;
                    if now >= next_tick || retuned || !lock(&self.shared.commands).is_empty() {
                        break;
                    }
                    std::thread::sleep((next_tick - now).min(PAUSE_SLICE));
                }
                next_tick = (next_tick + tick).max(Instant::now());
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // epoll itself failing leaves nothing to serve.
                return;
            }
            self.handler.woke();
            let mut woken = false;
            let mut ready = 0;
            for event in events.iter() {
                ready += 1;
                match event.token() {
                    WAKER => woken = true,
                    Token(id) => self.receive(id as u32),
                }
            }
            if ready == EVENTS {
                // More sockets are ready than one poll reports: no pause.
                next_tick = Instant::now();
            }
            if woken {
                self.notify.wake_requested.store(false, Ordering::Release);
                if !self.run_commands() {
                    return;
                }
            }
            std::mem::swap(&mut *lock(&self.notify.pending), &mut self.pending);
            // A channel is scheduled only after its Add was queued, so
            // running the commands after taking the pending ids puts every
            // pending channel in the table. Without this, an id scheduled
            // before the worker saw its Add was skipped with its `scheduled`
            // flag left set, and that channel never sent again.
            let commands_queued = !lock(&self.shared.commands).is_empty();
            if commands_queued && !self.run_commands() {
                return;
            }
            more_to_send = self.send_pending(&mut out);
            if more_to_send && !tick.is_zero() {
                next_tick = Instant::now();
            }
        }
    }

    /// Returns false on `Stop`.
    fn run_commands(&mut self) -> bool {
        std::mem::swap(&mut *lock(&self.shared.commands), &mut self.commands);
        let mut keep_running = true;
        for command in self.commands.drain(..) {
            match command {
                Command::Add(channel, socket, config) => {
                    if let Err(e) = register_level_triggered(&self.poll, &socket, channel.id) {
                        self.handler.socket_error(&channel, e);
                        continue;
                    }
                    self.table.insert(
                        channel.id,
                        WorkerChannel {
                            remote: config.remote.map(canonical),
                            latch: config.latch,
                            source_filter: config.source_filter,
                            channel,
                            socket,
                            batch: 1,
                            failing: false,
                            kernel_drops: 0,
                        },
                    );
                }
                Command::Remove(id, done) => {
                    if let Some(wc) = self.table.remove(&id) {
                        let fd = wc.socket.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                        add_into(&mut lock(&self.shared.released), &wc.channel.stats());
                        // Dropping `wc` closes the socket before the caller goes on.
                    }
                    let _ = done.send(());
                }
                Command::Stop => keep_running = false,
            }
        }
        keep_running
    }

    fn receive(&mut self, id: u32) {
        let Some(wc) = self.table.get_mut(&id) else {
            return;
        };
        wc.refresh_remote();
        let fd = wc.socket.as_raw_fd();
        // Epoll is level-triggered: what these reads leave is reported again
        // in the next round, so one busy socket cannot hold the others up.
        for _ in 0..READS_PER_EVENT {
            let asked = wc.batch;
            let n = loop {
                match self.recv.recv(fd, asked) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        // Reported once, not on every round it persists.
                        if !wc.failing {
                            wc.failing = true;
                            self.handler.socket_error(&wc.channel, e);
                        }
                        return;
                    }
                }
            };
            wc.failing = false;
            // A full read suggests more is waiting; a short one drained the
            // socket and tells how much to expect next time.
            wc.batch = if n == wc.batch {
                (n * 2).min(BATCH)
            } else {
                n.max(1)
            };
            let ch = &wc.channel;
            self.accepted.clear();
            let mut octets = 0;
            let (mut not_rtp, mut foreign) = (0, 0);
            let mut kernel_drops = wc.kernel_drops;
            for i in 0..n {
                if let Some(count) = self.recv.drops(i) {
                    kernel_drops = count;
                }
                let data = self.recv.datagram(i);
                octets += data.len() as u64;
                let from = self.recv.sender(i);
                let (Some(from), false, Ok(_)) =
                    (from, self.recv.truncated(i), rtp::Packet::parse(data))
                else {
                    not_rtp += 1;
                    continue;
                };
                if wc.remote.is_none() && wc.latch {
                    wc.remote = Some(from);
                    ch.counters[LATCHED].store(1, Ordering::Relaxed);
                }
                if wc.source_filter && wc.remote != Some(from) {
                    foreign += 1;
                    continue;
                }
                self.accepted.push((i, from));
            }
            // Drops first: a reader that sees the new `packets-received`
            // (it is read first, with acquire) sees them too.
            ch.bump(DROPPED_NOT_RTP, not_rtp);
            ch.bump(DROPPED_FOREIGN_SOURCE, foreign);
            // The count wraps at 2^32, so the difference does too.
            ch.bump(
                DROPPED_KERNEL,
                u64::from(kernel_drops.wrapping_sub(wc.kernel_drops)),
            );
            wc.kernel_drops = kernel_drops;
            ch.bump(OCTETS_RECEIVED, octets);
            ch.bump(PACKETS_RECEIVED, n as u64);
            if !self.accepted.is_empty() {
                self.handler.received(
                    ch,
                    Batch {
                        recv: &self.recv,
                        accepted: &self.accepted,
                    },
                );
            }
            // A short read emptied the socket.
            if n < asked {
                break;
            }
        }
    }

    /// Sends at most one batch per pending channel, so a flood of sends
    /// never keeps the worker from reading: channels with more queued go
    /// back on the list for the next round. Returns true when some did.
    /// The channels are those in `self.pending`.
    fn send_pending(&mut self, out: &mut Vec<H::Packet>) -> bool {
        let mut more = false;
        for i in 0..self.pending.len() {
            let id = self.pending[i];
            let Some(wc) = self.table.get_mut(&id) else {
                continue;
            };
            // Cleared before popping: a packet queued from now on schedules
            // the channel again.
            wc.channel.scheduled.store(false, Ordering::Release);
            wc.refresh_remote();
            out.clear();
            while out.len() < BATCH {
                match wc.channel.queue.pop() {
                    Some(p) => out.push(p),
                    None => break,
                }
            }
            if out.len() == BATCH && !wc.channel.scheduled.swap(true, Ordering::AcqRel) {
                lock(&self.notify.pending).push(id);
                more = true;
            }
            let ch = &wc.channel;
            let Some(remote) = wc.remote else {
                ch.bump(SEND_ERRORS, out.len() as u64);
                continue;
            };
            let fd = wc.socket.as_raw_fd();
            let mut at = 0;
            while at < out.len() {
                let (sent, err) = self.send.send(fd, &out[at..], target_for(ch.local, remote));
                ch.bump(PACKETS_SENT, sent as u64);
                ch.bump(
                    OCTETS_SENT,
                    out[at..at + sent]
                        .iter()
                        .map(|p| p.as_ref().len() as u64)
                        .sum(),
                );
                at += sent;
                if err.is_some() {
                    // The packet the kernel refused is counted and skipped;
                    // the rest of the batch is tried again.
                    ch.bump(SEND_ERRORS, 1);
                    at += 1;
                }
            }
        }
        self.pending.clear();
        out.clear();
        more
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{Extras, Header, write_packet};
    use std::net::UdpSocket;
    use std::sync::mpsc::{Receiver, Sender, channel};

    type Got = (u32, Vec<u8>, SocketAddr);

    #[derive(Default)]
    struct Collect {
        tx: Option<Sender<Got>>,
    }

    impl Handler for Collect {
        type Packet = Vec<u8>;
        type Attachment = ();
        fn received(&mut self, channel: &Channel<Vec<u8>, ()>, batch: Batch<'_>) {
            for (data, from) in batch.iter() {
                if let Some(tx) = &self.tx {
                    let _ = tx.send((channel.id(), data.to_vec(), from));
                }
            }
        }
        fn socket_error(&mut self, _: &Channel<Vec<u8>, ()>, _: io::Error) {}
    }

    fn server() -> (Server<Collect>, Receiver<Got>) {
        server_with_tick(Duration::ZERO)
    }

    fn server_with_tick(tick: Duration) -> (Server<Collect>, Receiver<Got>) {
        let (tx, rx) = channel();
        (Server::start(Collect { tx: Some(tx) }, tick).unwrap(), rx)
    }

    fn packet(seq: u16) -> Vec<u8> {
        let mut out = vec![0; 172];
        let h = Header {
            payload_type: 0,
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0x1234,
            ..Default::default()
        };
        let n = write_packet(&mut out, &h, &Extras::default(), &[0xff; 160]).unwrap();
        out.truncate(n);
        out
    }

    fn loopback() -> ChannelConfig {
        ChannelConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Holds the worker in its first `received` until `go` has a message,
    /// so the socket's receive buffer fills up behind it.
    struct Stall {
        go: Option<Receiver<()>>,
    }

    impl Handler for Stall {
        type Packet = Vec<u8>;
        type Attachment = ();
        fn received(&mut self, _: &Channel<Vec<u8>, ()>, _: Batch<'_>) {
            if let Some(go) = self.go.take() {
                let _ = go.recv_timeout(Duration::from_secs(10));
            }
        }
        fn socket_error(&mut self, _: &Channel<Vec<u8>, ()>, _: io::Error) {}
    }

    #[test]
    fn datagrams_the_kernel_drops_are_counted() {
        let (go_tx, go_rx) = channel();
        let server = Server::start(Stall { go: Some(go_rx) }, Duration::ZERO).unwrap();
        let ch = server.add_channel(0, loopback(), ()).unwrap();
        let to = ch.local_addr();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = {
            let mut p = packet(1);
            p.resize(1400, 0xff);
            p
        };
        // The first datagram stalls the worker; the next ones overflow the
        // socket's receive buffer (a few hundred kilobytes) and the kernel
        // drops the rest.
        sender.send_to(&big, to).unwrap();
        assert!(wait_for(|| ch.stats()[PACKETS_RECEIVED] == 1));
        let flood = 2_000u64;
        for _ in 0..flood {
            sender.send_to(&big, to).unwrap();
        }
        go_tx.send(()).unwrap();
        // Drops are learnt with the next datagram delivered after them.
        sender.send_to(&packet(2), to).unwrap();
        let total = 1 + flood + 1;
        let accounted = || {
            let s = ch.stats();
            s[PACKETS_RECEIVED] + s[DROPPED_KERNEL] == total
        };
        assert!(wait_for(accounted), "{:?}", ch.stats());
        let s = ch.stats();
        assert!(s[DROPPED_KERNEL] > 0, "the buffer never overflowed: {s:?}");
        assert!(s[PACKETS_RECEIVED] > 2, "{s:?}");
    }

    #[test]
    fn queue_is_fifo_and_lossy() {
        let q = SendQueue::new(4).unwrap();
        for i in 0..4 {
            assert!(q.push(i).is_ok());
        }
        assert_eq!(q.push(9), Err(9));
        assert_eq!(q.pop(), Some(0));
        assert!(q.push(4).is_ok());
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, vec![1, 2, 3, 4]);
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn queue_with_many_producers_loses_nothing_it_accepts() {
        let q = Arc::new(SendQueue::new(1024).unwrap());
        let producers: Vec<_> = (0..4u64)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    (0..200u64).filter(|i| q.push(t * 1000 + i).is_ok()).count()
                })
            })
            .collect();
        let accepted: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        let mut got: Vec<u64> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got.len(), accepted);
        assert_eq!(accepted, 800);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 800);
    }

    #[test]
    fn queue_size_must_be_power_of_two() {
        for bad in [0, 1, 3, 100, MAX_QUEUE_SIZE * 2] {
            let e = check_queue_size(bad).unwrap_err();
            assert!(e.0.contains("queue-size"), "{e}");
            assert!(e.0.contains(&bad.to_string()));
        }
        for good in [2, 64, MAX_QUEUE_SIZE] {
            check_queue_size(good).unwrap();
        }
    }

    #[test]
    fn bind_addresses_follow_the_family() {
        assert_eq!(
            bind_addr("0.0.0.0", 5, Family::Ipv6).unwrap(),
            "[::]:5".parse().unwrap()
        );
        assert_eq!(
            bind_addr("::1", 0, Family::Auto).unwrap(),
            "[::1]:0".parse().unwrap()
        );
        assert!(
            bind_addr("::1", 0, Family::Ipv4)
                .unwrap_err()
                .0
                .contains("::1")
        );
        assert!(
            bind_addr("nope", 0, Family::Auto)
                .unwrap_err()
                .0
                .contains("bind-address 'nope'")
        );
        assert_eq!(
            remote_addr("127.0.0.1", 9, "0.0.0.0:0".parse().unwrap()).unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(remote_addr("::1", 9, "0.0.0.0:0".parse().unwrap()).is_err());
        assert!(remote_addr("127.0.0.1", 9, "[::]:0".parse().unwrap()).is_ok());
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:5004", "[::1]:7", "[fe80::1%2]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut ss = unsafe { zeroed() };
            to_sockaddr(a, &mut ss);
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
        assert_eq!(
            canonical("[::ffff:10.0.0.1]:5".parse().unwrap()),
            "10.0.0.1:5".parse().unwrap()
        );
    }

    #[test]
    fn packed_layout_has_header_row() {
        let mut row = [0u64; NCOUNTERS];
        row[PACKETS_RECEIVED] = 7;
        let bytes = packed_stats(&[(3, row)]);
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ncols = NCOUNTERS + 1;
        assert_eq!(words.len(), 2 * ncols);
        assert_eq!(&words[..3], &[PACKED_STATS_VERSION, ncols as u64, 1]);
        assert_eq!(words[ncols], 3);
        assert_eq!(words[ncols + 1 + PACKETS_RECEIVED], 7);
        assert_eq!(packed_columns().len(), ncols);
    }

    #[test]
    fn a_channel_that_sends_right_after_it_is_added_is_never_stuck() {
        // Regression: a packet queued before the worker ran the channel's Add
        // command left the channel marked scheduled but never sent, so it went
        // silent for good. A busy channel keeps the worker waking while new
        // channels are added and send at once, to hit that window often.
        let (srv, _rx) = server();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = sink.local_addr().unwrap();
        let busy = srv.add_channel(0, loopback(), ()).unwrap();
        busy.set_remote(Some(target));
        let stop = Arc::new(AtomicBool::new(false));
        let keep_busy = {
            let (busy, stop) = (busy.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    busy.send(packet(0));
                    std::thread::yield_now();
                }
            })
        };
        let config = ChannelConfig {
            remote: Some(target),
            ..loopback()
        };
        let added: Vec<_> = (1..=300)
            .map(|id| {
                let ch = srv.add_channel(id, config, ()).unwrap();
                ch.send(packet(1));
                ch
            })
            .collect();
        let all_sent = wait_for(|| added.iter().all(|ch| ch.stats()[PACKETS_SENT] == 1));
        stop.store(true, Ordering::Relaxed);
        keep_busy.join().unwrap();
        let stuck: Vec<u32> = added
            .iter()
            .filter(|ch| ch.stats()[PACKETS_SENT] != 1)
            .map(|ch| ch.id())
            .collect();
        assert!(all_sent, "channels that never sent: {stuck:?}");
    }

    #[test]
    fn echo_between_two_channels_counts_everything() {
        echo_between_two_channels(Duration::ZERO);
    }

    #[test]
    fn paced_rounds_lose_nothing() {
        echo_between_two_channels(Duration::from_millis(5));
    }

    fn echo_between_two_channels(tick: Duration) {
        let (srv, rx) = server_with_tick(tick);
        let big = ChannelConfig {
            queue_size: 128,
            ..loopback()
        };
        let a = srv.add_channel(0, big, ()).unwrap();
        let b = srv.add_channel(1, loopback(), ()).unwrap();
        a.set_remote(Some(b.local_addr()));
        for seq in 0..100 {
            a.send(packet(seq));
        }
        a.send(vec![1, 2, 3]); // not RTP: sent, then dropped by b
        for seq in 0..100 {
            let (id, data, from) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!((id, data, from), (1, packet(seq), a.local_addr()));
        }
        assert!(wait_for(|| b.stats()[DROPPED_NOT_RTP] == 1));
        let sa = a.stats();
        let sb = b.stats();
        assert_eq!(sa[PACKETS_SENT], 101);
        assert_eq!(sa[OCTETS_SENT], 100 * 172 + 3);
        assert_eq!(sb[PACKETS_RECEIVED], 101);
        assert_eq!(sb[OCTETS_RECEIVED], 100 * 172 + 3);
        // b latched onto a.
        assert_eq!(sb[LATCHED], 1);
        assert_eq!(sb[LOCAL_PORT], u64::from(b.local_addr().port()));
        let totals = srv.totals(&srv.channel_stats());
        assert_eq!(totals[PACKETS_SENT], 101);
        assert_eq!(totals[LOCAL_PORT], 0);
    }

    #[test]
    fn source_filter_drops_foreign_and_latch_sends_back() {
        let (srv, rx) = server();
        let cfg = ChannelConfig {
            source_filter: true,
            ..loopback()
        };
        let ch = srv.add_channel(7, cfg, ()).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(&packet(1), ch.local_addr()).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        stranger.send_to(&packet(2), ch.local_addr()).unwrap();
        peer.send_to(&packet(3), ch.local_addr()).unwrap();
        let (_, data, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(data, packet(3));
        assert_eq!(ch.stats()[DROPPED_FOREIGN_SOURCE], 1);
        // Sends go to the latched peer.
        ch.send(packet(4));
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 2048];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&packet(4)[..], ch.local_addr()));
    }

    #[test]
    fn no_target_counts_send_errors_and_full_queue_drops() {
        let (srv, _rx) = server();
        let cfg = ChannelConfig {
            latch: false,
            queue_size: 2,
            ..loopback()
        };
        let ch = srv.add_channel(0, cfg, ()).unwrap();
        let accepted = ch.send_all((0..1000).map(packet));
        assert!(wait_for(|| {
            let s = ch.stats();
            s[SEND_ERRORS] + s[DROPPED_QUEUE_FULL] == 1000
        }));
        let s = ch.stats();
        assert_eq!(s[SEND_ERRORS], accepted as u64);
        assert_eq!(s[DROPPED_QUEUE_FULL], 1000 - accepted as u64);
        assert_eq!(s[PACKETS_SENT], 0);
    }

    #[test]
    fn paced_worker_serves_many_channels() {
        let (srv, rx) = server_with_tick(Duration::from_millis(1));
        let channels: Vec<_> = (0..100)
            .map(|id| srv.add_channel(id, loopback(), ()).unwrap())
            .collect();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for round in 0..3 {
            for ch in &channels {
                peer.send_to(&packet(round), ch.local_addr()).unwrap();
            }
            for _ in &channels {
                let (_, data, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
                assert_eq!(data, packet(round));
            }
        }
    }

    #[test]
    fn a_long_tick_does_not_delay_channel_changes() {
        let (mut srv, _rx) = server_with_tick(Duration::from_secs(1));
        let started = Instant::now();
        for id in 0..20 {
            srv.add_channel(id, loopback(), ()).unwrap();
            assert!(srv.remove_channel(id, Duration::from_secs(5)));
        }
        srv.stop();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn port_in_use_names_channel_and_address() {
        let (srv, _rx) = server();
        let a = srv.add_channel(0, loopback(), ()).unwrap();
        let cfg = ChannelConfig {
            bind: a.local_addr(),
            ..loopback()
        };
        let Err(err) = srv.add_channel(1, cfg, ()) else {
            panic!("binding a port in use succeeded");
        };
        let err = err.to_string();
        assert!(err.contains("channel 1"), "{err}");
        assert!(err.contains(&a.local_addr().to_string()), "{err}");
        assert!(matches!(
            srv.add_channel(0, loopback(), ()),
            Err(ChannelError::Exists(0))
        ));
        // Removing closes the socket at once: the port can be bound again.
        assert!(srv.remove_channel(0, Duration::from_secs(5)));
        srv.add_channel(1, cfg, ()).unwrap();
    }
}
