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
//! Every channel also runs an RTP [`Session`] on the worker: receive
//! statistics from each datagram, send statistics from each packet sent,
//! and RTCP ([`RtcpMode`]): received RTCP is recognised (RFC 5761) and given
//! to the session, never handed on as RTP; reports go out when due, from a
//! min-heap of (deadline, channel) so that a wake costs nothing per idle
//! channel; a BYE goes out when the channel is removed or the server stops.
//!
//! Counters are atomics written by one writer each (the worker, or the
//! sending thread for `dropped-queue-full`), so reading statistics never takes
//! a lock the worker needs, and never waits for the worker. The worker
//! copies a session's statistics into the channel's atomics as they change
//! (see [`Channel::publish_packets`] for what that costs per packet).

use std::cell::UnsafeCell;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};

use crate::counters;
use crate::offload::{self, Offload};
use crate::prng::SplitMix64;
use crate::rtp;
use crate::session::{self, ReportInterval, Session, SessionStats, StatKind};
use crate::ssrc_table::SsrcTable;

/// Datagrams read or written per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 32;
/// Room per received datagram: the largest UDP payload fits, so no RTP packet
/// is ever truncated.
const SLOT: usize = 65_536;
/// Largest send queue, in packets.
pub const MAX_QUEUE_SIZE: u32 = 1 << 16;
/// Smallest send queue: the ring needs two slots to tell full from empty.
pub const MIN_QUEUE_SIZE: u32 = 2;
/// Version of the [`packed_stats`] layout, written in its header row.
/// 2 added `dropped-kernel` after `dropped-not-rtp`; 3 added the session's
/// columns ([`SessionStats::NAMES`]) after `local-port`; 4 added `relayed`
/// and `not-relayed` after `local-port`; 5 added `relayed-offloaded` after
/// `not-relayed`.
pub const PACKED_STATS_VERSION: u64 = 5;

const WAKER: Token = Token(usize::MAX);
/// Set in the epoll token of a channel's RTCP socket (`port+1` mode); the
/// channel id is in the low 32 bits of both of its tokens.
const RTCP_TOKEN: usize = 1 << 32;
/// Set in the epoll token of a shared socket, with the socket's number in
/// the low 32 bits.
const SHARED_TOKEN: usize = 1 << 33;
const _: () = assert!(
    usize::BITS >= 64,
    "epoll tokens hold a channel id and a flag"
);
/// Random even ports tried for an RTP/RTCP pair before giving up.
const PORT_PAIR_ATTEMPTS: usize = 64;
/// Readiness events taken per poll.
const EVENTS: usize = 4096;
/// Longest sleep of a paced worker between checks for commands.
const PAUSE_SLICE: Duration = Duration::from_millis(5);
/// How late a paced worker may send a report, at most: it waits for the
/// deadline plus its tick or this, whichever is less, so the reports that
/// fall due meanwhile go out in one wake (with a tick up to this, on the
/// tick's rounds). A report's interval is drawn at random from half to one
/// and a half times its length (RFC 3550 6.3.1), which dwarfs that. With
/// 1,000 channels reporting every 5 s, waking for each deadline on its own
/// doubled the wakes of a worker at a 5 ms tick.
const MAX_REPORT_DELAY: Duration = Duration::from_millis(20);

/// How often a worker folds what the relay offload counted into its
/// channels' statistics, installs the routes of pairs that became ready
/// for it (a peer latched), and follows interfaces that came or went.
const OFFLOAD_ROUND: Duration = Duration::from_millis(100);
/// `recvmmsg` calls per readiness report at most.
const READS_PER_EVENT: usize = 4;
/// Datagrams per `recvmmsg` and `sendmmsg` on a shared socket: many
/// channels' traffic meets there, so its batches are bigger.
pub const SHARED_BATCH: usize = 64;
/// `recvmmsg` calls on a shared socket per readiness report at most: a 5 ms
/// tick of 4,000 streams is 1,000 datagrams. What is left then makes the
/// next round start at once, without the tick's pause.
const SHARED_READS_PER_EVENT: usize = 16;
/// Packets a worker sends per round at most (give or take the last
/// channel's batch), half of what it may read from a shared socket: under
/// more traffic than the cores carry, the reads keep ahead of the sends
/// that feed them. Unbounded, a long round let the senders queue more for
/// the next one, which grew longer still, until each round sent tens of
/// thousands while reading a thousand, and a shared socket's receive queue
/// overflowed (91–96 % of 4,096 channels' packets lost on two cores; 35–47 %
/// with the bound). What is left goes out in the next round, at once; a
/// full queue drops what comes in meanwhile (`dropped-queue-full`) before
/// the kernel has spent anything on it.
const SENDS_PER_ROUND: usize = SHARED_READS_PER_EVENT * SHARED_BATCH / 2;

/// The distance, in pending channels, between the steps in which
/// [`Worker::send_pending`] asks for a channel's lines (see
/// [`Worker::prefetch_pending`]).
const SEND_STEP: usize = 2;

counters! {
    /// What one channel's sockets did. `packets-received` counts every
    /// datagram read (from the RTCP socket too) or forwarded by the relay
    /// offload, so it equals the RTP packets handed on plus
    /// `relayed-offloaded` plus the session's `rtcp-received` plus
    /// `dropped-foreign-source` plus `dropped-not-rtp` (`dropped-kernel`
    /// counts those that never got that far). Every packet given to
    /// [`Channel::send`], and every RTCP compound the session wrote
    /// (`rtcp-sent`), ends in `packets-sent`, `dropped-queue-full` or
    /// `send-errors`.
    pub struct ChannelStats {
        /// Datagrams read from the channel's sockets.
        packets_received = "packets-received",
        /// Bytes of those datagrams (UDP payload).
        octets_received = "octets-received",
        /// Datagrams (RTP and RTCP) the kernel accepted for sending.
        packets_sent = "packets-sent",
        /// Bytes of those datagrams.
        octets_sent = "octets-sent",
        /// Packets to send dropped because the send queue was full.
        dropped_queue_full = "dropped-queue-full",
        /// Received packets dropped by the source filter (not from the target).
        dropped_foreign_source = "dropped-foreign-source",
        /// Received datagrams that are neither valid RTP nor RTCP (RFC 5761's
        /// rule; malformed RTCP is the session's `rtcp-dropped`).
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
        /// Received packets queued for sending on the `relay-to` channel
        /// (RTP, and RTCP when both channels carry it); that channel counts
        /// them again when it sends them (`packets-sent`) or cannot
        /// (`dropped-queue-full`, `send-errors`).
        relayed = "relayed",
        /// Packets that would have been relayed while the `relay-to`
        /// channel did not exist.
        not_relayed = "not-relayed",
        /// Of `relayed`, those the kernel forwarded ([`Server::set_relay_offload`]):
        /// counted in `packets-received`, `octets-received` and the
        /// session's reception here and in the `relay-to` channel's
        /// `packets-sent` and `octets-sent`, but never read by the worker
        /// nor handed on.
        relayed_offloaded = "relayed-offloaded",
    }
}

/// Number of per-channel counters.
pub const NCOUNTERS: usize = ChannelStats::NAMES.len();
/// Columns of a channel's statistics: the counters, then the session's.
pub const NSTATS: usize = NCOUNTERS + SessionStats::NCOLUMNS;

/// One channel's statistics: [`ChannelStats::NAMES`] then
/// [`SessionStats::NAMES`], signed session columns as two's complement.
pub type StatsRow = [u64; NSTATS];

/// The name of statistics column `column` (see [`StatsRow`]).
pub fn stats_name(column: usize) -> &'static str {
    if column < NCOUNTERS {
        ChannelStats::NAMES[column]
    } else {
        SessionStats::NAMES[column - NCOUNTERS]
    }
}

/// The type of statistics column `column`: every counter is a `u64`, a
/// session column as the session declares it.
pub fn stats_kind(column: usize) -> StatKind {
    if column < NCOUNTERS {
        StatKind::U64
    } else {
        SessionStats::KINDS[column - NCOUNTERS]
    }
}

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

/// Column of session statistic `name` in a [`StatsRow`].
const fn session_col(name: &str) -> usize {
    let mut i = 0;
    while i < SessionStats::NCOLUMNS {
        if str_eq(SessionStats::NAMES[i], name) {
            return NCOUNTERS + i;
        }
        i += 1;
    }
    panic!("no such session statistic")
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
const RELAYED: usize = col("relayed");
const NOT_RELAYED: usize = col("not-relayed");
const RELAYED_OFFLOADED: usize = col("relayed-offloaded");
#[cfg(test)]
const RTCP_SENT: usize = session_col("rtcp-sent");
const _: () = assert!(session_col("local-ssrc") == NCOUNTERS);

/// [`is_summable`] of every column, worked out at compile time: totals are
/// summed on every `stats` read, over every channel.
const SUMMABLE: [bool; NSTATS] = {
    let mut table = [false; NSTATS];
    let mut column = 0;
    while column < NSTATS {
        table[column] = if column < NCOUNTERS {
            column != LATCHED && column != LOCAL_PORT
        } else {
            SessionStats::is_summable(column - NCOUNTERS)
        };
        column += 1;
    }
    table
};

/// Columns of a [`StatsRow`] that add over channels: not the states
/// (`latched`, `local-port`) nor what [`SessionStats::is_summable`] refuses.
pub fn is_summable(column: usize) -> bool {
    SUMMABLE.get(column).copied().unwrap_or(false)
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

    /// Starts loading the slot [`SendQueue::pop`] reads next (its position
    /// read here, so the line holding `head` should be in already).
    fn prefetch_head(&self) {
        let pos = self.head.load(Ordering::Relaxed);
        prefetch(&self.slots[pos & self.mask]);
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

/// Whether and where a channel sends RTCP. In every mode, RTCP received is
/// recognised (on the RTP socket by [`rtp::is_rtcp`], RFC 5761's rule),
/// counted and given to the session, never handed on as RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpMode {
    /// No RTCP sent. Reports that fall due only close their interval
    /// ([`Session::close_interval`]), so fraction lost and MOS still move.
    #[default]
    Off,
    /// RTCP on the RTP socket, to the RTP target (RFC 5761 rtcp-mux).
    Mux,
    /// RTCP on a second socket bound to the RTP port + 1, sent to the
    /// target's port + 1, or (latching, while no target is set) to where the
    /// peer's RTCP comes from. Everything that arrives there is RTCP.
    PortPlusOne,
}

/// One channel's socket and session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Where the RTP socket binds. Port 0 with [`RtcpMode::PortPlusOne`]:
    /// an even free port whose successor is free too.
    pub bind: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub latch: bool,
    pub source_filter: bool,
    pub queue_size: u32,
    pub rtcp: RtcpMode,
    /// RTP clock rate of the channel's payload; None: jitter unknown.
    pub clock_rate: Option<u32>,
    pub rtcp_interval: ReportInterval,
    /// Latching (with `latch`, while no target is configured) is limited
    /// to what these allow; see [`Latch`].
    pub latch_rules: Latch,
    /// Bind `bind` together with the other channels that ask for it: one
    /// socket, served by one worker, for all of them (see
    /// [`Server::add_channel`]). RTCP then goes on that socket too
    /// ([`RtcpMode::Mux`]); [`RtcpMode::PortPlusOne`] is refused.
    pub shared_socket: bool,
    /// The SSRC the peer sends: on a shared socket, what a datagram from a
    /// source no channel knows yet is matched against.
    pub remote_ssrc: Option<u32>,
    /// The channel what this one receives is relayed to (see
    /// [`Channel::set_relay_to`]).
    pub relay_to: Option<u32>,
}

/// Limits on latching, against hijacking ("RTP Bleed": whoever sends to a
/// latching port first, or later from a new address, would get the media).
/// Once latched, a channel takes RTP and RTCP from its peer only: other
/// sources are dropped and counted as foreign, never handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latch {
    /// Latch only a source with this IP address (the port is learnt, for
    /// NAT): the address the peer gave in its SDP. Stops an attacker on
    /// another host, before and during the call.
    pub ip: Option<IpAddr>,
    /// Latch only this long after the channel opened or its target was
    /// cleared; None: any time. Stops a late hijack of a channel whose peer
    /// never sent, and of one that is latched again after a clear.
    pub window: Option<Duration>,
    /// Latch again to a new source when the latched one has been silent
    /// this long and the new one sends the SSRC the latched one sent (a
    /// peer behind a NAT whose port changed); None: never latch again. An
    /// attacker must then wait out the silence and guess the SSRC.
    pub relatch_after: Option<Duration>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            remote: None,
            latch: true,
            source_filter: false,
            queue_size: 64,
            rtcp: RtcpMode::Off,
            clock_rate: None,
            rtcp_interval: ReportInterval::default(),
            latch_rules: Latch::default(),
            shared_socket: false,
            remote_ssrc: None,
            relay_to: None,
        }
    }
}

/// The report interval of an `rtcp-interval` setting in ms: 0 is RFC
/// 3550's randomised interval with its 5 s minimum, anything else that many
/// ms exactly.
pub fn report_interval(ms: u32) -> ReportInterval {
    match ms {
        0 => ReportInterval::default(),
        ms => ReportInterval::Fixed { ms: u64::from(ms) },
    }
}

/// A CNAME for a server's sessions: `rtpsynth-<16 hex digits>@<host name>`,
/// random, so two servers (or processes) on one host differ (RFC 3550 6.5.1
/// wants it unique among the session's participants).
pub fn default_cname() -> String {
    let id = SplitMix64::from_entropy().next_u64();
    let host = host_name().unwrap_or_else(|| "localhost".into());
    let mut cname = format!("rtpsynth-{id:016x}@{host}");
    // A host name can be up to 255 bytes and an SDES item cannot be longer.
    while cname.len() > session::MAX_CNAME_LEN {
        cname.pop();
    }
    cname
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..len]).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
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
    /// Channels with [`Updates`] to apply.
    updated: Mutex<Vec<u32>>,
    /// Set when `updated` may hold ids, so a wake without news takes no lock.
    has_updates: AtomicBool,
    wake_requested: AtomicBool,
    /// A command is queued (set after it is): the worker runs the commands
    /// when it is set, and a shared socket's reads stop for it (as for
    /// `has_updates`), so that a channel joining the socket is routed to
    /// before the datagrams that follow its join are read.
    commands_pending: AtomicBool,
    /// Worker pacing in microseconds: 0 wakes the worker for every send and
    /// every received packet; above, it runs one round per tick.
    tick_us: AtomicU64,
    waker: Waker,
}

impl Notify {
    fn new(waker: Waker, tick: Duration) -> Self {
        Notify {
            pending: Mutex::new(Vec::new()),
            updated: Mutex::new(Vec::new()),
            has_updates: AtomicBool::new(false),
            wake_requested: AtomicBool::new(false),
            commands_pending: AtomicBool::new(false),
            tick_us: AtomicU64::new(tick.as_micros() as u64),
            waker,
        }
    }

    fn wake(&self) {
        if !self.wake_requested.swap(true, Ordering::AcqRel) {
            // A failed eventfd write leaves the packets for the next wake.
            let _ = self.waker.wake();
        }
    }
}

/// Settings the element changes on a running channel, picked up by the
/// worker between batches.
#[derive(Debug, Default)]
struct Updates {
    remote: Option<Option<SocketAddr>>,
    latch_ip: Option<Option<IpAddr>>,
    clock_rate: Option<Option<u32>>,
    interval: Option<ReportInterval>,
    remote_ssrc: Option<Option<u32>>,
    relay_to: Option<Option<u32>>,
}

/// One channel as the element and the worker share it. Laid out as
/// written: what the worker reads for each received packet first, then
/// the statistics on their own cache lines ([`StatsCells`]), then what the
/// sending threads write.
#[repr(C)]
pub struct Channel<P, A> {
    /// What the user of the server keeps with the channel (its pads).
    pub attachment: A,
    id: u32,
    /// Index of the worker that serves the channel.
    worker: usize,
    /// The channel relays what it receives (`relay-to` set).
    relaying: AtomicBool,
    /// Set once the channel is removed: relays to it look again.
    closed: AtomicBool,
    rtcp_mode: RtcpMode,
    /// The socket is shared with other channels.
    shared_socket: bool,
    local: SocketAddr,
    stats: StatsCells,
    /// The RTCP socket's address in [`RtcpMode::PortPlusOne`].
    local_rtcp: Option<SocketAddr>,
    queue: SendQueue<P>,
    /// What other channels relay to this one.
    relay_queue: SendQueue<Box<[u8]>>,
    /// Relays from other workers between their check of `closed` and the
    /// end of their push: the worker closing the channel waits for them
    /// before it sends what is queued for the last time, so a packet
    /// counted `relayed` is never left in a queue nobody reads.
    relays_in_flight: AtomicUsize,
    /// Set while the channel is in the worker's pending list.
    scheduled: AtomicBool,
    /// Set when `updates` holds news: the worker's check is a plain load.
    dirty: AtomicBool,
    updates: Mutex<Updates>,
    /// The peer's CNAME; written by the worker when it changes.
    remote_cname: Mutex<String>,
    notify: Arc<Notify>,
}

impl<P, A> Channel<P, A> {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The address the socket is bound to, with the port actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the channel relays what it receives to another (then what
    /// it hands on has somewhere to go even with nobody taking it).
    pub fn relaying(&self) -> bool {
        self.relaying.load(Ordering::Relaxed)
    }

    /// The RTCP socket's address, in [`RtcpMode::PortPlusOne`] only.
    pub fn local_rtcp_addr(&self) -> Option<SocketAddr> {
        self.local_rtcp
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
                self.stats
                    .cell(DROPPED_QUEUE_FULL)
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn schedule(&self) {
        if self.mark_pending() && self.notify.tick_us.load(Ordering::Relaxed) == 0 {
            self.notify.wake();
        }
    }

    /// Puts the channel in its worker's pending list unless it is there;
    /// true when it was not.
    fn mark_pending(&self) -> bool {
        let newly = !self.scheduled.swap(true, Ordering::AcqRel);
        if newly {
            lock(&self.notify.pending).push(self.id);
        }
        newly
    }

    /// Records an update and has the worker apply it soon, even to a
    /// channel with no traffic.
    fn update(&self, apply: impl FnOnce(&mut Updates)) {
        apply(&mut lock(&self.updates));
        self.dirty.store(true, Ordering::Release);
        lock(&self.notify.updated).push(self.id);
        self.notify.has_updates.store(true, Ordering::Release);
        self.notify.wake();
    }

    /// Sets (or with `None` clears) the send target. Clearing it lets the
    /// channel latch again (RTP and RTCP).
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        self.update(|u| u.remote = Some(remote));
    }

    /// Sets the one IP address latching may take (see [`Latch::ip`]).
    pub fn set_latch_ip(&self, ip: Option<IpAddr>) {
        self.update(|u| u.latch_ip = Some(ip));
    }

    /// Sets the RTP clock rate of the session (None: unknown, no jitter).
    pub fn set_clock_rate(&self, clock_rate: Option<u32>) {
        self.update(|u| u.clock_rate = Some(clock_rate));
    }

    /// Sets the report interval of the session.
    pub fn set_rtcp_interval(&self, interval: ReportInterval) {
        self.update(|u| u.interval = Some(interval));
    }

    /// Sets (or with `None` clears) the SSRC a shared socket's datagrams
    /// from unknown sources are matched against (see
    /// [`ChannelConfig::remote_ssrc`]).
    pub fn set_remote_ssrc(&self, ssrc: Option<u32>) {
        self.update(|u| u.remote_ssrc = Some(ssrc));
    }

    /// Relays (or with `None` stops relaying) what this channel receives
    /// to channel `to`: RTP, and RTCP when both channels carry it, queued
    /// by the worker for `to` to send to its target, as its own packets
    /// are (no copy handed to anyone else; `src_N` still gets the RTP).
    /// `to` may be added later: until it exists, packets are counted in
    /// `not-relayed`.
    pub fn set_relay_to(&self, to: Option<u32>) {
        self.update(|u| u.relay_to = Some(to));
    }

    /// Queues a copy of `data`, received by another channel on worker
    /// `from_worker`, for sending; None when this channel is closed (the
    /// caller looks again).
    fn relay(&self, data: &[u8], from_worker: usize) -> Option<bool> {
        // Only a push from another worker can meet this channel's last
        // flush: its own worker flushes after whatever it pushed. Such a
        // push is in flight before it looks at `closed`, both sequentially
        // consistent, as [`Channel::close`] does them the other way round:
        // either it sees the channel closed, or its closer sees the push and
        // waits for it.
        let counted = from_worker != self.worker;
        if counted {
            self.relays_in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let closed = self.closed.load(Ordering::SeqCst);
        if closed && counted {
            self.relays_in_flight.fetch_sub(1, Ordering::Release);
        }
        if closed {
            return None;
        }
        let queued = match self.relay_queue.push(data.into()) {
            Ok(()) => true,
            Err(_dropped) => {
                self.stats
                    .cell(DROPPED_QUEUE_FULL)
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        if counted {
            self.relays_in_flight.fetch_sub(1, Ordering::Release);
            self.schedule();
        } else {
            // Its own worker, reading: it takes the pending ids after its
            // reads, so a wake would only cost an `eventfd` write and an
            // empty round.
            self.mark_pending();
        }
        Some(queued)
    }

    /// Marks the channel closed to relays, and waits until none is still
    /// pushing into its queue (a push takes nanoseconds).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut tries = 0;
        while self.relays_in_flight.load(Ordering::SeqCst) != 0 {
            wait_a_moment(&mut tries);
        }
    }

    /// The statistics now, in [`StatsRow`] order, as the worker left them
    /// between two changes (a datagram counted in `packets-received` shows
    /// in its session columns and drops too), without waiting for it: a
    /// change is a few stores, and a read that met one reads again.
    pub fn stats(&self) -> StatsRow {
        let mut row = [0; NSTATS];
        self.stats_into(&mut row);
        row
    }

    /// [`Channel::stats`] written into `row`, [`NSTATS`] long (a read of many channels then
    /// copies each row once, not four times as returning them did).
    fn stats_into(&self, row: &mut [u64]) {
        self.stats.read_into(row);
    }

    /// Starts a change of the statistics by the worker (their only writer
    /// but for `dropped-queue-full`, a counter of its own): reads see all of
    /// it or none of it. A sequence lock rather than a mutex, so the worker
    /// never waits for a reader.
    fn write_stats(&self) -> StatsWrite<'_> {
        self.stats.write()
    }

    /// The peer's CNAME, from its last SDES (empty before one).
    pub fn remote_cname(&self) -> String {
        lock(&self.remote_cname).clone()
    }

    /// Asks for the cache lines a read of the statistics touches.
    fn prefetch_stats(&self) {
        prefetch(&self.id);
        prefetch_lines(&self.stats, size_of::<StatsCells>().div_ceil(64));
    }
}

/// How many channels ahead a read of every channel's statistics asks for
/// the lines of the one it will read: the worker wrote them on another
/// core, so each is a miss, and read one channel after the other the
/// misses queued up instead of overlapping.
const STATS_AHEAD: usize = 4;

/// `each` of `channels` in turn, the statistics of the channel
/// [`STATS_AHEAD`] further on asked for before it.
fn with_stats_ahead<'a, P: 'a, A: 'a>(
    channels: impl Iterator<Item = &'a Arc<Channel<P, A>>> + Clone,
    mut each: impl FnMut(&Channel<P, A>),
) {
    channels
        .clone()
        .take(STATS_AHEAD)
        .for_each(|c| c.prefetch_stats());
    let mut ahead = channels.clone().skip(STATS_AHEAD);
    for c in channels {
        if let Some(next) = ahead.next() {
            next.prefetch_stats();
        }
        each(c);
    }
}

/// A change of a channel's statistics under way ([`Channel::write_stats`]);
/// it ends when dropped.
struct StatsWrite<'a> {
    stats: &'a StatsCells,
}

impl StatsWrite<'_> {
    /// Adds `n` to a counter only the worker writes: a plain load and store,
    /// no locked instruction.
    #[inline]
    fn bump(&self, column: usize, n: u64) {
        // Most of a batch's counters are 0: their cache lines stay untouched.
        if n == 0 {
            return;
        }
        let c = self.stats.cell(column);
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    fn set(&self, column: usize, value: u64) {
        self.stats.cell(column).store(value, Ordering::Relaxed);
    }

    /// Copies the session's statistics into the shared columns.
    fn session(&self, session: &Session) {
        let mut columns = [0u64; SessionStats::NCOLUMNS];
        session.stats().write_columns(&mut columns);
        for (column, value) in (NCOUNTERS..).zip(columns) {
            self.set(column, value);
        }
    }

    /// [`StatsWrite::session`] of what an RTP packet received or sent
    /// changes ([`SessionStats::PACKET_COLUMNS`]), once per batch. Copying
    /// every column after each batch cost about a quarter of the element's
    /// work per packet (the row is cold by the channel's next packet);
    /// these ten cost little, and a read then never waits for the worker
    /// (when it had to ask, the answer came at the end of the worker's
    /// wake: a tail of hundreds of µs per read under load).
    fn session_packets(&self, session: &Session) {
        let first = CELL[NCOUNTERS + SessionStats::PACKET_COLUMNS.start];
        for (shared, value) in self.stats.cells[first..]
            .iter()
            .zip(session.packet_columns())
        {
            shared.store(value, Ordering::Relaxed);
        }
    }
}

impl Drop for StatsWrite<'_> {
    fn drop(&mut self) {
        let version = &self.stats.version;
        version.store(version.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

/// A channel's statistics as the worker publishes them: column `c` of a
/// [`StatsRow`] lives in `cells[CELL[c]]`. The sequence lock and the
/// columns a received packet changes come first and fill two cache lines;
/// in row order, with the lock apart, a packet wrote to four or five, every
/// one cold by the channel's next packet.
#[repr(C, align(64))]
struct StatsCells {
    /// Odd while the worker changes the cells ([`Channel::write_stats`]).
    version: AtomicU64,
    cells: [AtomicU64; NSTATS],
}

impl StatsCells {
    fn new() -> Self {
        StatsCells {
            version: AtomicU64::new(0),
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn cell(&self, column: usize) -> &AtomicU64 {
        &self.cells[CELL[column]]
    }

    /// See [`Channel::write_stats`].
    fn write(&self) -> StatsWrite<'_> {
        let version = self.version.load(Ordering::Relaxed);
        self.version.store(version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        StatsWrite { stats: self }
    }

    /// Every column into `row` ([`NSTATS`] long), as of one moment.
    fn read_into(&self, row: &mut [u64]) {
        let mut tries = 0u32;
        loop {
            let before = self.version.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                for (r, &cell) in row.iter_mut().zip(&CELL) {
                    *r = self.cells[cell].load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if self.version.load(Ordering::Relaxed) == before {
                    return;
                }
            }
            wait_a_moment(&mut tries);
        }
    }
}

/// The cell of each column ([`StatsCells`]): `packets-received`,
/// `octets-received` and [`SessionStats::PACKET_COLUMNS`] first, in that
/// order ([`StatsWrite::session_packets`] writes those as one run), then the
/// rest in row order, with `dropped-queue-full`, which the threads that
/// send bump, last, away from what the worker writes.
const CELL: [usize; NSTATS] = {
    const UNSET: usize = usize::MAX;
    let mut cell = [UNSET; NSTATS];
    cell[PACKETS_RECEIVED] = 0;
    cell[OCTETS_RECEIVED] = 1;
    let mut next = 2;
    let mut column = NCOUNTERS + SessionStats::PACKET_COLUMNS.start;
    while column < NCOUNTERS + SessionStats::PACKET_COLUMNS.end {
        cell[column] = next;
        next += 1;
        column += 1;
    }
    cell[DROPPED_QUEUE_FULL] = NSTATS - 1;
    column = 0;
    while column < NSTATS {
        if cell[column] == UNSET {
            cell[column] = next;
            next += 1;
        }
        column += 1;
    }
    assert!(next == NSTATS - 1, "every column has a cell of its own");
    cell
};

/// One turn of waiting for another thread to finish a few stores (a change
/// of statistics, a relay's push): a spin, and every 64th turn a yield, for
/// a thread preempted halfway may need this CPU to finish.
fn wait_a_moment(tries: &mut u32) {
    *tries += 1;
    if tries.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Locks `m`, ignoring poisoning: what these mutexes guard (lists, settings)
/// stays consistent even if a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates a non-blocking socket bound to `bind` for channel `id`.
fn open_socket(id: u32, bind: SocketAddr) -> Result<std::net::UdpSocket, ChannelError> {
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| ChannelError::Bind(id, bind, e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ChannelError::Socket(id, bind, "make it non-blocking", e))?;
    // The kernel then attaches the socket's drop count to each datagram it
    // delivers after a drop, so no datagram is lost without a count.
    set_socket_option(&socket, libc::SO_RXQ_OVFL, 1)
        .map_err(|e| ChannelError::Socket(id, bind, "enable SO_RXQ_OVFL", e))?;
    Ok(socket)
}

/// Sets the `SOL_SOCKET` option `option` of `socket` to `value`.
fn set_socket_option(
    socket: &std::net::UdpSocket,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: an open socket and a c_int option the kernel copies.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive buffer of a shared socket: the traffic of many channels waits
/// there between two wakes of the worker (a 5 ms tick of 4,000 streams at
/// 50 packets/s is 1,000 datagrams), where a channel's own socket holds one
/// stream's.
const SHARED_RCVBUF: libc::c_int = 8 << 20;

/// Gives a shared socket its larger receive buffer: past the system's
/// `rmem_max` when the process may (`SO_RCVBUFFORCE`), else as large as
/// that allows. A smaller buffer only means drops sooner, each counted.
///
/// And chooses how its drops are counted: with `SO_MEMINFO` after a read
/// that may follow them ([`SharedSocket::may_have_dropped`]) where the
/// kernel answers it, rather than from `SO_RXQ_OVFL` on each datagram: the
/// kernel's work for that control message was 4 % of the worker's time on
/// a busy shared socket.
fn prepare_shared_socket(id: u32, socket: &std::net::UdpSocket) -> Result<DropCount, ChannelError> {
    if set_socket_option(socket, libc::SO_RCVBUFFORCE, SHARED_RCVBUF).is_err() {
        let _ = set_socket_option(socket, libc::SO_RCVBUF, SHARED_RCVBUF);
    }
    #[cfg(test)]
    if tests::NO_MEMINFO.get() {
        return Ok(DropCount::PerDatagram);
    }
    let Ok((rcvbuf, _)) = receive_memory(socket) else {
        return Ok(DropCount::PerDatagram);
    };
    set_socket_option(socket, libc::SO_RXQ_OVFL, 0).map_err(|e| {
        let local = socket
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        ChannelError::Socket(id, local, "disable SO_RXQ_OVFL", e)
    })?;
    Ok(DropCount::MemInfo { rcvbuf })
}

/// How a shared socket learns the datagrams the kernel dropped on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropCount {
    /// `SO_MEMINFO`, read after a round that may follow a drop. `rcvbuf`:
    /// the receive buffer size the kernel holds the queue to.
    MemInfo { rcvbuf: usize },
    /// Where the kernel does not answer `SO_MEMINFO`: the `SO_RXQ_OVFL`
    /// count it hands over with each datagram after a drop.
    PerDatagram,
}

/// `SO_MEMINFO` of asm-generic/socket.h, which the libc crate lacks.
const SO_MEMINFO: libc::c_int = 55;

/// The socket's receive buffer size, as the kernel compares its queue with
/// it, and the datagrams it dropped since it was created.
fn receive_memory(socket: &std::net::UdpSocket) -> io::Result<(usize, u32)> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: an open socket, and a buffer of `len` bytes the kernel
    // writes at most `len` of.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < size_of_val(&info) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without a drop count",
        ));
    }
    Ok((
        info[libc::SK_MEMINFO_RCVBUF as usize] as usize,
        info[libc::SK_MEMINFO_DROPS as usize],
    ))
}

/// The RTP socket and, in [`RtcpMode::PortPlusOne`], the RTCP socket on the
/// next port. With port 0 the system picks the RTP port; it is kept when it
/// is even (RFC 3550 11 wants RTP on an even port) and the next one is free,
/// otherwise both are closed and another is tried.
fn open_sockets(
    id: u32,
    config: &ChannelConfig,
) -> Result<(std::net::UdpSocket, Option<std::net::UdpSocket>), ChannelError> {
    if config.rtcp != RtcpMode::PortPlusOne {
        return Ok((open_socket(id, config.bind)?, None));
    }
    let next = |addr: SocketAddr| {
        addr.port().checked_add(1).map(|port| {
            let mut rtcp = addr;
            rtcp.set_port(port);
            rtcp
        })
    };
    if config.bind.port() != 0 {
        let rtcp_bind = next(config.bind).ok_or_else(|| {
            ChannelError::Config(
                id,
                ConfigError(format!(
                    "bind-port {} leaves no port + 1 for RTCP",
                    config.bind.port()
                )),
            )
        })?;
        let rtp = open_socket(id, config.bind)?;
        return Ok((rtp, Some(open_socket(id, rtcp_bind)?)));
    }
    for _ in 0..PORT_PAIR_ATTEMPTS {
        let rtp = open_socket(id, config.bind)?;
        let local = rtp
            .local_addr()
            .map_err(|e| ChannelError::Bind(id, config.bind, e))?;
        if !local.port().is_multiple_of(2) {
            continue;
        }
        let Some(rtcp_bind) = next(local) else {
            continue;
        };
        match open_socket(id, rtcp_bind) {
            Ok(rtcp) => return Ok((rtp, Some(rtcp))),
            Err(ChannelError::Bind(..)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ChannelError::Bind(
        id,
        config.bind,
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no even port with the next one free for RTCP in {PORT_PAIR_ATTEMPTS} tries"),
        ),
    ))
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

/// What a sender queues on a channel: the bytes themselves, or something the
/// worker turns into bytes when it sends them. The second lets a sender hand
/// over a small handle and leave the rest to the worker, which touches the
/// packet's memory anyway when it frees it: a GStreamer buffer queued as the
/// 8-byte buffer and mapped by the worker costs the pushing thread a queue
/// slot of one cache line and no map (the mapped form is 112 bytes).
pub trait Outgoing: Send + 'static {
    type Bytes: AsRef<[u8]>;

    /// The bytes to send, or `None` when they cannot be had (the packet is
    /// then counted under `send-errors`).
    fn into_bytes(self) -> Option<Self::Bytes>;
}

impl Outgoing for Vec<u8> {
    type Bytes = Self;

    fn into_bytes(self) -> Option<Self> {
        Some(self)
    }
}

/// The bytes of a packet the worker is sending.
type Bytes<H> = <<H as Handler>::Packet as Outgoing>::Bytes;

/// Receives what the worker reads. Called on the worker thread only.
pub trait Handler: Send + 'static {
    /// The packet type the sending side queues.
    type Packet: Outgoing;
    /// Kept with each channel (for example its output pad).
    type Attachment: Send + Sync + 'static;

    /// Called once each time the worker wakes, before any
    /// [`received`](Handler::received) of that wake.
    fn woke(&mut self) {}

    /// Valid RTP packets that passed the source filter on `channel`.
    fn received(&mut self, channel: &Channel<Self::Packet, Self::Attachment>, batch: Batch<'_>);

    /// Where [`received`](Handler::received) first reads outside the
    /// channel, from its `attachment` (for example a flag behind a
    /// pointer), or None. Asked once, when the channel joins its worker:
    /// the address must stay valid while the attachment lives. A shared
    /// socket's read loads it with the channel's own state, before the
    /// first of its datagrams is handed on.
    fn receive_hint(_attachment: &Self::Attachment) -> Option<*const u8> {
        None
    }

    /// Called once each time the worker wakes, after the last
    /// [`received`](Handler::received) of that wake: what was gathered
    /// over the round can go on in one piece.
    fn round_end(&mut self) {}

    /// A socket failed on `channel`; the other channels keep running.
    fn socket_error(&mut self, channel: &Channel<Self::Packet, Self::Attachment>, error: io::Error);

    /// An RTCP compound with a BYE arrived on `channel`; `ssrc` is the first
    /// source it names (the session counts every BYE packet in
    /// `bye-received`).
    fn bye_received(&mut self, _channel: &Channel<Self::Packet, Self::Attachment>, _ssrc: u32) {}
}

// ---------------------------------------------------------------------------
// Server

type ChannelRef<H> = Arc<Channel<<H as Handler>::Packet, <H as Handler>::Attachment>>;

/// What a new channel brings to the worker.
struct NewChannel<H: Handler> {
    channel: ChannelRef<H>,
    sockets: Sockets,
    config: ChannelConfig,
    session: Session,
}

/// A new channel's sockets.
enum Sockets {
    /// Its own RTP socket, and RTCP socket in [`RtcpMode::PortPlusOne`].
    Own(std::net::UdpSocket, Option<std::net::UdpSocket>),
    /// The first member of a shared socket brings it.
    SharedNew(std::net::UdpSocket, DropCount),
    /// A later member joins the shared socket bound to this address.
    SharedJoin(SocketAddr),
}

enum Command<H: Handler> {
    /// Boxed: a new channel carries its session, which the worker keeps in
    /// the channel's slot.
    Add(Box<NewChannel<H>>),
    Remove(u32, mpsc::Sender<()>),
    Stop,
}

struct Shared<H: Handler> {
    channels: Mutex<BTreeMap<u32, ChannelRef<H>>>,
    /// Ids an open channel was added relaying to, and the first such
    /// channel: where the target goes when it is added, or added again (a
    /// one-way relay keeps to one worker too). Locked with `channels`
    /// held.
    relay_targets: Mutex<HashMap<u32, u32>>,
    /// The shared sockets by local address: their worker and members.
    shared_sockets: Mutex<HashMap<SocketAddr, SharedPlace>>,
    /// Datagrams on a shared socket that no channel's remote or
    /// `remote-ssrc` matched.
    unknown_source: AtomicU64,
    /// Datagrams the kernel dropped on full shared sockets (no one channel
    /// can be named for them).
    shared_kernel_drops: AtomicU64,
    /// Statistics of channels already removed, so totals never go down.
    released: Mutex<StatsRow>,
    /// The sessions' clock: `now` is the time since this instant, in ns.
    origin: Instant,
    /// `CLOCK_MONOTONIC` (what [`Instant`] reads on Linux) at `origin`, in
    /// ns: the relay offload's times are on it.
    monotonic_zero: u64,
    /// NTP time at `origin`, read once so every session agrees.
    ntp_at_zero: u64,
    /// CNAME of the sessions of channels added from now on.
    cname: Mutex<String>,
    /// Seeds each session's SSRC and interval randomisation.
    rng: Mutex<SplitMix64>,
    /// See [`Server::set_gso`].
    gso: AtomicBool,
    /// See [`Server::gso_messages`].
    gso_messages: AtomicU64,
    /// See [`Server::set_relay_offload`]: the program once loaded, and
    /// whether the workers use it.
    offload: Mutex<Option<Arc<Offload>>>,
    offload_on: AtomicBool,
}

impl<H: Handler> Shared<H> {
    fn now(&self) -> u64 {
        nanos_since(self.origin)
    }
}

/// `CLOCK_MONOTONIC` now, in ns.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Cannot fail with a valid clock and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Where a shared socket is served and by how many channels.
struct SharedPlace {
    worker: usize,
    members: usize,
    local: SocketAddr,
}

/// Commands to one worker, taken between its rounds.
type Commands<H> = Arc<Mutex<Vec<Command<H>>>>;

/// One worker thread as the server reaches it.
struct WorkerLink<H: Handler> {
    notify: Arc<Notify>,
    commands: Commands<H>,
    thread: Option<JoinHandle<()>>,
    /// Channels placed on this worker (see [`Server::add_channel`] for where
    /// a new one goes).
    channels: AtomicUsize,
}

impl<H: Handler> WorkerLink<H> {
    fn command(&self, command: Command<H>) {
        lock(&self.commands).push(command);
        self.notify.commands_pending.store(true, Ordering::Release);
        self.notify.wake();
    }

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Asks the worker to stop and waits for it (it says BYE on every
    /// channel that sends RTCP first).
    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.command(Command::Stop);
            // A panicking worker has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// The worker threads and their channels. Dropping it stops the threads
/// and closes every socket.
pub struct Server<H: Handler> {
    shared: Arc<Shared<H>>,
    workers: Vec<WorkerLink<H>>,
}

impl<H: Handler> Server<H> {
    /// Starts one worker thread. A non-zero `tick` makes it run one round
    /// (receive everything ready, send everything queued) per tick, trading
    /// up to one tick of latency for bigger batches; zero serves each packet
    /// as soon as it arrives or is queued. The sessions' CNAME is
    /// [`default_cname`] until [`Server::set_cname`].
    pub fn start(handler: H, tick: Duration) -> io::Result<Self> {
        Self::start_workers(vec![handler], tick)
    }

    /// Starts one worker thread per handler (at least one), each with its
    /// own epoll set; channels are spread over them (see
    /// [`Server::add_channel`]). `tick` as for [`Server::start`], per
    /// worker.
    pub fn start_workers(handlers: Vec<H>, tick: Duration) -> io::Result<Self> {
        if handlers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs at least one worker",
            ));
        }
        let origin = Instant::now();
        let monotonic_zero = monotonic_ns();
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            channels: Mutex::new(BTreeMap::new()),
            relay_targets: Mutex::new(HashMap::new()),
            shared_sockets: Mutex::new(HashMap::new()),
            unknown_source: AtomicU64::new(0),
            shared_kernel_drops: AtomicU64::new(0),
            released: Mutex::new([0; NSTATS]),
            origin,
            monotonic_zero,
            ntp_at_zero: session::ntp_at_zero(0, since_epoch),
            cname: Mutex::new(default_cname()),
            rng: Mutex::new(SplitMix64::from_entropy()),
            gso: AtomicBool::new(true),
            gso_messages: AtomicU64::new(0),
            offload: Mutex::new(None),
            offload_on: AtomicBool::new(false),
        });
        let mut server = Server {
            shared,
            workers: Vec::with_capacity(handlers.len()),
        };
        // A failure part-way stops the workers already started (drop).
        for handler in handlers {
            let link = Self::spawn_worker(&server.shared, handler, tick)?;
            server.workers.push(link);
        }
        Ok(server)
    }

    fn spawn_worker(
        shared: &Arc<Shared<H>>,
        handler: H,
        tick: Duration,
    ) -> io::Result<WorkerLink<H>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let notify = Arc::new(Notify::new(waker, tick));
        let commands: Commands<H> = Arc::default();
        let (worker_shared, worker_notify, worker_commands) =
            (shared.clone(), notify.clone(), commands.clone());
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
                    commands_in: worker_commands,
                    table: Table::default(),
                    sockets: IntMap::default(),
                    socket_numbers: HashMap::new(),
                    next_socket: 0,
                    routed: Vec::with_capacity(SHARED_BATCH),
                    shared_out: Vec::new(),
                    backlog: false,
                    deadlines: BinaryHeap::new(),
                    recv: RecvBuffers::new(),
                    send: SendBuffers::new(),
                    rtcp_out: vec![0; session::MAX_COMPOUND_LEN],
                    accepted: Vec::with_capacity(BATCH),
                    pending: Vec::new(),
                    newly_scheduled: Vec::new(),
                    updated: Vec::new(),
                    commands: Vec::new(),
                    now: 0,
                    offload: None,
                    offload_dirty: Vec::new(),
                    next_offload_round: 0,
                    offload_keys: HashMap::new(),
                    offload_relayers: HashMap::new(),
                    offload_read: (Vec::new(), Vec::new()),
                    offload_ids: Vec::new(),
                }
                .run();
            })?;
        Ok(WorkerLink {
            notify,
            commands,
            thread: Some(thread),
            channels: AtomicUsize::new(0),
        })
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Changes the pacing (see [`Server::start`]) of every worker.
    pub fn set_tick(&self, tick: Duration) {
        for w in &self.workers {
            w.notify
                .tick_us
                .store(tick.as_micros() as u64, Ordering::Relaxed);
            w.notify.wake();
        }
    }

    /// Whether the workers send datagrams in a row to one target, of one
    /// size, as one UDP GSO message each (see [`SendBuffers`]); on by
    /// default, where the kernel supports it. Peers receive the same
    /// datagrams either way; a packet capture on loopback (or on a network
    /// card that splits UDP itself) shows the joined message. Applies from
    /// the workers' next round.
    pub fn set_gso(&self, gso: bool) {
        self.shared.gso.store(gso, Ordering::Relaxed);
    }

    /// Whether the kernel forwards the RTP of relayed channels
    /// ([`crate::offload`]): a channel relaying to one on the same worker,
    /// both with a target of one family (configured, or latched: the first
    /// packets always pass through the worker), has what it receives from
    /// its target's SSRC, in sequence or late, forwarded by a tc program
    /// without reaching its socket. Everything else (RTCP, another source,
    /// a sequence jump, a malformed packet, the first packets of each
    /// direction) still reaches the worker, which handles it as ever and
    /// then re-seeds the route. The kernel's counts are folded into the
    /// channels' statistics and sessions every 100 ms and before each
    /// report (`relayed-offloaded` tells them apart). Offloaded packets are
    /// not handed on to the [`Handler`]. Loading the program needs root
    /// (`CAP_BPF` and `CAP_NET_ADMIN`) and Linux 6.6: the error says what
    /// is missing, and relaying goes on in the workers.
    pub fn set_relay_offload(&self, on: bool) -> Result<(), String> {
        if on {
            let mut loaded = lock(&self.shared.offload);
            if loaded.is_none() {
                *loaded = Some(Arc::new(Offload::load()?));
            }
        }
        self.shared.offload_on.store(on, Ordering::Release);
        for w in &self.workers {
            w.notify.wake();
        }
        Ok(())
    }

    /// Sets the CNAME of the sessions of channels added from now on; one
    /// longer than an SDES item holds ([`session::MAX_CNAME_LEN`] bytes) is
    /// refused.
    pub fn set_cname(&self, cname: &str) -> Result<(), ConfigError> {
        if cname.len() > session::MAX_CNAME_LEN {
            return Err(ConfigError(format!(
                "cname of {} bytes is longer than {}",
                cname.len(),
                session::MAX_CNAME_LEN
            )));
        }
        *lock(&self.shared.cname) = cname.to_owned();
        Ok(())
    }

    /// The CNAME of channels added from now on.
    pub fn cname(&self) -> String {
        lock(&self.shared.cname).clone()
    }

    /// Binds channel `id`'s sockets now (so a bind error is known at once)
    /// and hands them to a worker with a new session: a shared socket's
    /// own worker when it joins one, else its `relay_to` channel's when
    /// that is open, or else the worker of an open channel added relaying
    /// to `id`, when that worker has at most one channel more than the
    /// least loaded, else the one with the fewest channels.
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
        let Some(least_loaded) = self.least_loaded_worker() else {
            return Err(ChannelError::Stopped(id));
        };
        // A relay's two channels on one worker: what one receives the
        // other sends in the same round, not a tick later on another
        // thread. Unless that worker already has more than one channel over
        // the least loaded, so that many channels relaying to one still
        // spread. (A channel joining a shared socket goes to the socket's.)
        let load = |w: usize| self.workers[w].channels.load(Ordering::Relaxed);
        let mut relay_targets = lock(&self.shared.relay_targets);
        // Kept for after `config` has gone to the worker.
        let relay_to = config.relay_to;
        // The other end of a relay: the channel this one relays to, or one
        // added relaying to this one before it was open.
        let other_end = relay_to
            .and_then(|to| channels.get(&to))
            .or_else(|| channels.get(relay_targets.get(&id)?));
        let new_socket_worker = other_end
            .map(|to| to.worker)
            .filter(|&w| self.workers[w].running() && load(w) <= load(least_loaded) + 1)
            .unwrap_or(least_loaded);
        if config.shared_socket && config.rtcp == RtcpMode::PortPlusOne {
            return Err(ChannelError::Config(
                id,
                ConfigError(
                    "a shared socket carries RTCP on its own port (rtcp mux or off), not port+1"
                        .into(),
                ),
            ));
        }
        let (ssrc, seed) = {
            let mut rng = lock(&self.shared.rng);
            (rng.next_u32(), rng.next_u64())
        };
        let session_config = session::Config {
            ssrc,
            clock_rate: config.clock_rate,
            interval: config.rtcp_interval,
            seed,
            ntp_at_zero: self.shared.ntp_at_zero,
        };
        let session = Session::new(
            &session_config,
            &lock(&self.shared.cname),
            self.shared.now(),
        )
        .map_err(|e| ChannelError::Config(id, ConfigError(e.to_string())))?;
        // Held until the Add is queued, so that a channel joining this
        // socket is queued after the one that brings it.
        let mut places = lock(&self.shared.shared_sockets);
        let (worker, sockets, local, local_rtcp) = match places.get_mut(&canonical(config.bind)) {
            Some(place) if config.shared_socket && self.workers[place.worker].running() => {
                place.members += 1;
                (
                    place.worker,
                    Sockets::SharedJoin(place.local),
                    place.local,
                    None,
                )
            }
            _ => {
                let (socket, rtcp_socket) = open_sockets(id, &config)?;
                let local = socket
                    .local_addr()
                    .map_err(|e| ChannelError::Bind(id, config.bind, e))?;
                let local_rtcp = match &rtcp_socket {
                    Some(s) => Some(
                        s.local_addr()
                            .map_err(|e| ChannelError::Bind(id, config.bind, e))?,
                    ),
                    None => None,
                };
                if config.shared_socket {
                    let drops = prepare_shared_socket(id, &socket)?;
                    // Found again by the port bound, when the system chose it.
                    let local = canonical(local);
                    places.insert(
                        local,
                        SharedPlace {
                            worker: new_socket_worker,
                            members: 1,
                            local,
                        },
                    );
                    (
                        new_socket_worker,
                        Sockets::SharedNew(socket, drops),
                        local,
                        None,
                    )
                } else {
                    (
                        new_socket_worker,
                        Sockets::Own(socket, rtcp_socket),
                        local,
                        local_rtcp,
                    )
                }
            }
        };
        let channel = Arc::new(Channel {
            id,
            local,
            local_rtcp,
            queue: SendQueue::new(config.queue_size).map_err(|e| ChannelError::Config(id, e))?,
            relay_queue: SendQueue::new(config.queue_size)
                .map_err(|e| ChannelError::Config(id, e))?,
            closed: AtomicBool::new(false),
            relays_in_flight: AtomicUsize::new(0),
            relaying: AtomicBool::new(config.relay_to.is_some()),
            rtcp_mode: config.rtcp,
            scheduled: AtomicBool::new(false),
            stats: StatsCells::new(),
            updates: Mutex::new(Updates::default()),
            dirty: AtomicBool::new(false),
            remote_cname: Mutex::new(String::new()),
            notify: self.workers[worker].notify.clone(),
            worker,
            shared_socket: config.shared_socket,
            attachment,
        });
        {
            let write = channel.write_stats();
            write.set(LOCAL_PORT, u64::from(local.port()));
            // Readers see the session's sentinels (unknown), not zeros, at once.
            write.session(&session);
        }
        self.workers[worker]
            .channels
            .fetch_add(1, Ordering::Relaxed);
        self.workers[worker].command(Command::Add(Box::new(NewChannel {
            channel: channel.clone(),
            sockets,
            config,
            session,
        })));
        // Found by relays only once its Add is queued: a relay schedules
        // it, and the worker runs the commands queued before it takes the
        // scheduled ids. A channel scheduled before its Add was queued was
        // skipped with its `scheduled` flag left set, and never sent.
        channels.insert(id, channel.clone());
        if let Some(to) = relay_to {
            relay_targets.entry(to).or_insert(id);
        }
        drop(relay_targets);
        drop(channels);
        drop(places);
        Ok(channel)
    }

    /// The running worker with the fewest channels.
    fn least_loaded_worker(&self) -> Option<usize> {
        (0..self.workers.len())
            .filter(|&w| self.workers[w].running())
            .min_by_key(|&w| self.workers[w].channels.load(Ordering::Relaxed))
    }

    /// Datagrams dropped at a shared socket because no channel's remote or
    /// `remote-ssrc` matched their source.
    pub fn dropped_unknown_source(&self) -> u64 {
        self.shared.unknown_source.load(Ordering::Relaxed)
    }

    /// UDP GSO messages the workers sent (see [`Server::set_gso`]), each of
    /// 2 to 64 datagrams (counted one by one in `packets-sent`).
    pub fn gso_messages(&self) -> u64 {
        self.shared.gso_messages.load(Ordering::Relaxed)
    }

    /// Removes channel `id` and waits (at most `timeout`) until the worker
    /// has said BYE (when it sends RTCP) and closed its sockets, so its ports
    /// can be bound again at once.
    pub fn remove_channel(&self, id: u32, timeout: Duration) -> bool {
        let Some(channel) = ({
            let mut channels = lock(&self.shared.channels);
            lock(&self.shared.relay_targets).retain(|_, from| *from != id);
            channels.remove(&id)
        }) else {
            return false;
        };
        // Relays to it stop here; the worker sends what they queued.
        channel.close();
        let (done, wait) = mpsc::channel();
        if channel.shared_socket
            && let Entry::Occupied(mut place) =
                lock(&self.shared.shared_sockets).entry(canonical(channel.local))
        {
            // The worker closes the socket with its last member.
            place.get_mut().members -= 1;
            if place.get().members == 0 {
                place.remove();
            }
        }
        let worker = &self.workers[channel.worker];
        worker.channels.fetch_sub(1, Ordering::Relaxed);
        worker.command(Command::Remove(id, done));
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

    /// `(channel id, statistics)` of every channel, in id order.
    pub fn channel_stats(&self) -> Vec<(u32, StatsRow)> {
        let channels: Vec<_> = lock(&self.shared.channels).values().cloned().collect();
        let mut rows = Vec::with_capacity(channels.len());
        with_stats_ahead(channels.iter(), |c| rows.push((c.id, c.stats())));
        rows
    }

    /// [`Server::channel_stats`] in the [`packed_stats`] layout, written
    /// into `out` straight from the channels (no row list in between).
    pub fn packed_stats_into(&self, out: &mut Vec<u8>) {
        let channels = lock(&self.shared.channels);
        let mut packer = Packer::new(out, channels.len());
        with_stats_ahead(channels.values(), |c| {
            packer.row(c.id, |row| c.stats_into(row));
        });
    }

    /// Sums of the summable columns ([`is_summable`]) over every channel
    /// ever served by this server (released ones included); `latched` counts
    /// channels latched now; the other columns are 0.
    pub fn totals(&self, per_channel: &[(u32, StatsRow)]) -> StatsRow {
        let mut sum = *lock(&self.shared.released);
        // Shared sockets' drops are no one channel's; the total has them.
        sum[DROPPED_KERNEL] += self.shared.shared_kernel_drops.load(Ordering::Relaxed);
        for (_, row) in per_channel {
            add_into(&mut sum, row);
            sum[LATCHED] += row[LATCHED];
        }
        sum
    }

    /// Stops the workers (which say BYE on every channel that sends RTCP)
    /// and closes every socket.
    pub fn stop(&mut self) {
        self.stop_workers();
        lock(&self.shared.channels).clear();
    }

    /// Closes every channel to relays (one worker may stop while another
    /// still relays to its channels: those then count `not-relayed`), then
    /// stops the workers.
    fn stop_workers(&mut self) {
        lock(&self.shared.channels).values().for_each(|c| c.close());
        self.workers.iter_mut().for_each(WorkerLink::stop);
    }

    /// [`Server::stop`], returning the statistics as they were after the
    /// last BYE went out: [`Server::channel_stats`] and [`Server::totals`].
    pub fn stop_with_stats(&mut self) -> (Vec<(u32, StatsRow)>, StatsRow) {
        self.stop_workers();
        let rows = self.channel_stats();
        let totals = self.totals(&rows);
        lock(&self.shared.channels).clear();
        (rows, totals)
    }
}

impl<H: Handler> Drop for Server<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Adds the summable columns of `row` into `sum`; signed columns wrap as
/// two's complement, which is their sum.
fn add_into(sum: &mut StatsRow, row: &StatsRow) {
    for (i, (s, v)) in sum.iter_mut().zip(row).enumerate() {
        if is_summable(i) {
            *s = s.wrapping_add(*v);
        }
    }
}

/// Column names of [`packed_stats`] rows: `channel`, then the statistics
/// ([`stats_name`]).
pub fn packed_columns() -> Vec<&'static str> {
    std::iter::once("channel")
        .chain((0..NSTATS).map(stats_name))
        .collect()
}

/// All channels' statistics as little-endian `u64`s, one row of
/// `1 + NSTATS` columns per channel (channel id first; signed columns as
/// two's complement), after one header row of the same width:
/// `[PACKED_STATS_VERSION, columns, rows, 0, …]`.
pub fn packed_stats(rows: &[(u32, StatsRow)]) -> Vec<u8> {
    let mut out = Vec::new();
    pack_stats_into(&mut out, rows.iter().copied());
    out
}

/// [`packed_stats`] of `rows`, written into `out` (its room reused: a fresh
/// buffer of a thousand channels' rows is 344 KB of new pages, and faulting
/// them in cost more than reading the counters).
pub fn pack_stats_into(out: &mut Vec<u8>, rows: impl ExactSizeIterator<Item = (u32, StatsRow)>) {
    let mut packer = Packer::new(out, rows.len());
    for (id, stats) in rows {
        packer.row(id, |row| row.copy_from_slice(&stats));
    }
}

/// Writes [`packed_stats`] rows into a buffer, each put together on the
/// stack and appended whole: appending a word at a time, or zeroing the
/// buffer first, cost more than reading the counters.
struct Packer<'a> {
    out: &'a mut Vec<u8>,
}

/// Columns of a [`packed_stats`] row: the channel, then its statistics.
const PACKED_COLUMNS: usize = 1 + NSTATS;

impl<'a> Packer<'a> {
    /// Empties `out` and writes the header of `rows` rows.
    fn new(out: &'a mut Vec<u8>, rows: usize) -> Self {
        out.clear();
        out.reserve((rows + 1) * PACKED_COLUMNS * 8);
        let mut header = [0u64; PACKED_COLUMNS];
        header[..3].copy_from_slice(&[PACKED_STATS_VERSION, PACKED_COLUMNS as u64, rows as u64]);
        let mut packer = Packer { out };
        packer.append(&header);
        packer
    }

    /// Appends the row of channel `id`, whose [`NSTATS`] statistics `fill`
    /// writes.
    fn row(&mut self, id: u32, fill: impl FnOnce(&mut [u64])) {
        let mut words = [0u64; PACKED_COLUMNS];
        words[0] = u64::from(id);
        fill(&mut words[1..]);
        self.append(&words);
    }

    fn append(&mut self, words: &[u64; PACKED_COLUMNS]) {
        self.out
            .extend_from_slice(words.map(u64::to_le_bytes).as_flattened());
    }
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
    /// Headers the kernel may have changed since they were last set: those
    /// of the datagrams the last read returned, as it writes no other.
    /// Setting all 64 again before each read was some 300 instructions
    /// spent for the two or three datagrams a read returns at tick 0.
    dirty: usize,
}

/// `CMSG_SPACE(4)` on 64-bit Linux is 24 bytes.
const CONTROL_WORDS: usize = 4;

impl RecvBuffers {
    fn new() -> Self {
        let mut data = vec![0u8; SHARED_BATCH * SLOT];
        // SAFETY: all-zero bytes are valid values of these C structs.
        let mut names: Vec<libc::sockaddr_storage> =
            (0..SHARED_BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut iov: Vec<libc::iovec> = data
            .chunks_exact_mut(SLOT)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: SLOT,
            })
            .collect();
        let mut controls = vec![[0u64; CONTROL_WORDS]; SHARED_BATCH];
        let msgs = (0..SHARED_BATCH)
            .map(|i| {
                // SAFETY: as above.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
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
            dirty: SHARED_BATCH,
        }
    }

    /// Reads up to `max` (at most [`SHARED_BATCH`]) datagrams without blocking.
    fn recv(&mut self, fd: i32, max: usize) -> io::Result<usize> {
        let max = max.clamp(1, SHARED_BATCH);
        // The kernel writes back the lengths and flags of the datagrams it
        // returns (and nothing on an error); the others stay as set.
        for m in &mut self.msgs[..self.dirty] {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            m.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        self.dirty = 0;
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
        self.dirty = n as usize;
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.msgs[i].msg_len as usize).min(SLOT);
        &self.data[i * SLOT..i * SLOT + len]
    }

    fn truncated(&self, i: usize) -> bool {
        self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    #[inline]
    fn sender(&self, i: usize) -> Option<SocketAddr> {
        from_sockaddr(&self.names[i])
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

/// Most datagrams one GSO message carries: the kernel's `UDP_MAX_SEGMENTS`
/// (64 in the kernels that first had GSO, Debian 12's among them; 128 in
/// later ones).
const GSO_SEGMENTS: usize = 64;
/// Largest datagram joined into a GSO message. The kernel refuses a message
/// whose segments and headers would not each fit the route's MTU (`EINVAL`),
/// where on its own a datagram that large would be fragmented: this is
/// IPv6's least MTU (1,280) less its IP and UDP headers, so every route
/// takes it. Voice and video RTP packets are smaller.
const GSO_MAX_DATAGRAM: usize = 1232;
/// Most payload bytes of one GSO message: an IP packet's 65,535 less
/// headers, with room to spare.
const GSO_MAX_BYTES: usize = 65_000;
/// `CMSG_SPACE(2)` on 64-bit Linux (24 bytes), in u64s so it is aligned for
/// `cmsghdr`: room for the one `UDP_SEGMENT` message.
const GSO_CONTROL_WORDS: usize = 3;

/// Whether this kernel splits UDP GSO messages (`UDP_SEGMENT`, Linux 4.18):
/// one that does not know the option would send a message whole, as one
/// datagram, so the worker only joins datagrams where it answers for it.
fn gso_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let Ok(socket) = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .or_else(|_| std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)))
        else {
            return false;
        };
        let mut size: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `size` and `len` are live and `len` is `size`'s size.
        unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&mut size as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
        }
    })
}

/// `sendmmsg` buffers: up to [`SHARED_BATCH`] datagrams, each with its own
/// target, sent as up to as many messages.
///
/// With [`SendBuffers::join`], datagrams in a row to the same target, of one
/// size (the last may be shorter), go out as one UDP GSO message
/// (`UDP_SEGMENT`): the kernel builds, routes and hands on one packet for
/// all of them and splits it into the very same datagrams only at the end,
/// in the network card or, on loopback, at the receiving socket. Channels
/// of a shared port sending to another shared port (a trunk between two
/// media servers, or the call-load job's two legs), or a channel with a
/// batch queued for its peer, send that way: on loopback, under half the
/// CPU per datagram sent and received (docs/rtpmuxserver.md, "UDP GSO").
/// The receiving sockets do not ask for UDP GRO, its converse: the kernel
/// would queue such a message whole, and count it as one drop when the
/// queue is full, where `dropped-kernel` counts datagrams.
struct SendBuffers {
    /// Per datagram.
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    namelens: Vec<libc::socklen_t>,
    targets: Vec<SocketAddr>,
    /// Per message.
    msgs: Vec<libc::mmsghdr>,
    controls: Vec<[u64; GSO_CONTROL_WORDS]>,
    /// Datagrams in each message.
    counts: Vec<usize>,
    /// Join datagrams into GSO messages (the `gso` setting).
    join: bool,
    /// The kernel splits GSO messages, and has not refused one yet.
    gso: bool,
    /// GSO messages the kernel took, since the worker last published them.
    joined: u64,
}

impl SendBuffers {
    fn new() -> Self {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        SendBuffers {
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                SHARED_BATCH
            ],
            // SAFETY: all-zero bytes are valid values of these C structs.
            names: (0..SHARED_BATCH).map(|_| unsafe { zeroed() }).collect(),
            namelens: vec![0; SHARED_BATCH],
            targets: vec![unspecified; SHARED_BATCH],
            // SAFETY: as above.
            msgs: (0..SHARED_BATCH).map(|_| unsafe { zeroed() }).collect(),
            controls: vec![[0; GSO_CONTROL_WORDS]; SHARED_BATCH],
            counts: vec![0; SHARED_BATCH],
            join: true,
            gso: gso_supported(),
            joined: 0,
        }
    }

    /// Sends each `(bytes, target)` (the first [`SHARED_BATCH`] of them)
    /// and returns how many the kernel took, or the error of the first one
    /// it refused.
    ///
    /// A GSO message the kernel refuses is sent again datagram by datagram.
    /// When its first datagram then goes out, the message was refused for
    /// being one (a route whose device cannot checksum it, or whose MTU is
    /// less than [`GSO_MAX_DATAGRAM`] and its headers), and this worker
    /// joins none from then on; when that datagram is refused too, its
    /// error is returned as without GSO (a target the socket cannot reach
    /// costs a second call per datagram, not the worker's GSO).
    fn send<'a>(
        &mut self,
        fd: i32,
        messages: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
    ) -> (usize, Option<io::Error>) {
        let mut len = 0;
        for (i, (bytes, to)) in messages.into_iter().take(SHARED_BATCH).enumerate() {
            self.namelens[i] = to_sockaddr(to, &mut self.names[i]);
            self.targets[i] = to;
            self.iov[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            len = i + 1;
        }
        let mut done = 0;
        let mut join = self.join && self.gso;
        // A GSO message was refused: whether for being one, its first
        // datagram sent alone tells.
        let mut suspect = false;
        while done < len {
            let planned = self.plan(done, len, join);
            // SAFETY: headers `..planned` point at the datagrams' bytes,
            // which outlive the call, at their targets and at their control
            // messages.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    planned as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if self.counts[0] > 1 && refuses_gso(&err) {
                    (join, suspect) = (false, true);
                    continue;
                }
                // Refused alone too: the datagram's own error (a target
                // the socket cannot reach), not GSO's.
                return (done, Some(err));
            }
            if std::mem::take(&mut suspect) && n > 0 {
                self.gso = false;
            }
            for &count in &self.counts[..n as usize] {
                done += count;
                self.joined += u64::from(count > 1);
            }
        }
        (done, None)
    }

    /// Sets the message headers for datagrams `from..to`: one each, or with
    /// `join` one per run that [`SendBuffers::joins`] allows. Returns the
    /// number of messages.
    fn plan(&mut self, from: usize, to: usize, join: bool) -> usize {
        let mut messages = 0;
        let mut first = from;
        while first < to {
            let mut count = 1;
            while join && first + count < to && self.joins(first, count) {
                count += 1;
            }
            let m = &mut self.msgs[messages];
            m.msg_hdr.msg_name = (&mut self.names[first] as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = self.namelens[first];
            m.msg_hdr.msg_iov = &mut self.iov[first];
            m.msg_hdr.msg_iovlen = count;
            m.msg_len = 0;
            if count > 1 {
                let control = &mut self.controls[messages];
                m.msg_hdr.msg_control = control.as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = size_of_val(control);
                // SAFETY: the control buffer holds CMSG_SPACE(2) bytes, so
                // CMSG_FIRSTHDR finds room for a header and its u16.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                    let size = self.iov[first].iov_len as u16;
                    libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(size);
                }
            } else {
                m.msg_hdr.msg_control = std::ptr::null_mut();
                m.msg_hdr.msg_controllen = 0;
            }
            self.counts[messages] = count;
            messages += 1;
            first += count;
        }
        messages
    }

    /// Whether the datagram after the `count` from `first` on joins their
    /// GSO message: the same target, no larger than the first (its size is
    /// the message's segment size) and only the last of the message
    /// smaller, within the kernel's limits.
    fn joins(&self, first: usize, count: usize) -> bool {
        let segment = self.iov[first].iov_len;
        let next = first + count;
        let size = self.iov[next].iov_len;
        count < GSO_SEGMENTS
            && (1..=GSO_MAX_DATAGRAM).contains(&segment)
            && self.iov[next - 1].iov_len == segment
            && (1..=segment).contains(&size)
            && segment * count + size <= GSO_MAX_BYTES
            && self.targets[next] == self.targets[first]
    }
}

/// Whether a GSO message's `err` may be the message's own, not its
/// datagrams': `EIO` (the route's device cannot checksum it), `EINVAL` (an
/// MTU below the segment size, or a limit this kernel has lower) or
/// `EMSGSIZE`.
fn refuses_gso(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE)
    )
}

/// The address in `ss` as the worker names a datagram's source: an
/// IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) as IPv4.
#[inline]
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
            Some(canonical(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ))))
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

/// `ip` as datagrams' sources show it (an IPv4-mapped IPv6 address as IPv4).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    canonical(SocketAddr::new(ip, 0)).ip()
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

/// One of a channel's sockets as the worker reads it.
struct Receiver {
    socket: std::net::UdpSocket,
    /// Datagrams to ask the next `recvmmsg` for: as many as the socket is
    /// expected to hold, so the call rarely makes a last, failing attempt.
    /// (A shared socket always asks for [`SHARED_BATCH`].)
    batch: usize,
    /// A receive error was reported and none succeeded since.
    failing: bool,
    /// The socket's drop count as last reported (it counts from the
    /// socket's creation, so it starts at 0).
    kernel_drops: u32,
}

impl Receiver {
    fn new(socket: std::net::UdpSocket) -> Self {
        Receiver {
            socket,
            batch: 1,
            failing: false,
            kernel_drops: 0,
        }
    }
}

/// A socket several channels share, as its worker serves it.
///
/// Its routes give a channel's slot in the worker's [`Table`], not its id:
/// a datagram's channel is then one look-up away instead of two in a row.
/// A channel keeps its slot while it is in the table, and is taken out of
/// the routes when it leaves it, before the slot can be another's.
struct SharedSocket {
    rx: Receiver,
    drops: DropCount,
    members: usize,
    /// Channels by their target (configured or latched), with their
    /// `remote-ssrc`. Several channels may have the same target: the
    /// streams of a peer's own shared port all come from one address.
    by_remote: HashMap<AddrKey, Vec<(usize, Option<u32>)>>,
    /// Channel by the SSRC it sends (its session's): what RTCP reports on.
    /// That SSRC is whatever `sink_N` was given, which in a relay through
    /// GStreamer elements is a remote peer's choice: SipHash, with its
    /// random key (the map is only consulted for RTCP the rules before it
    /// did not place).
    by_local: HashMap<u32, usize>,
    /// Channel by `remote-ssrc`, with its target: a datagram from a source
    /// no channel knows goes to the channel expecting its SSRC, and one from
    /// that channel's target is found without hashing the address.
    by_ssrc: SsrcTable<(usize, Option<SocketAddr>)>,
}

/// Hashes the worker's integer keys that the element chooses: channel ids
/// and socket numbers (each channel's `remote-ssrc` goes by the same rule in
/// [`SsrcTable`]). No datagram puts a key of its choosing into these maps,
/// so they need no defence against chosen collisions; SipHash cost a fifth
/// of the instructions the worker spent on a packet received on a shared
/// socket.
#[derive(Default, Clone, Copy)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    /// Fibonacci hashing: the low bits (the bucket) of consecutive keys
    /// differ, and the high bits (hashbrown's tag) mix all of the key.
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A remote address as the routes file it. A latched address is the
/// network's choice, so this map keeps SipHash with its random key, but
/// fed the address in one or two words instead of the four pieces of
/// `SocketAddr`'s own `Hash`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AddrKey(SocketAddr);

impl Hash for AddrKey {
    fn hash<S: Hasher>(&self, state: &mut S) {
        // Equal addresses hash the same; a V4 and a V6 address that hash
        // the same are told apart by equality.
        match self.0 {
            SocketAddr::V4(a) => {
                state.write_u64(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()))
            }
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u64(u64::from(a.scope_id()) << 16 | u64::from(a.port()));
            }
        }
    }
}

impl SharedSocket {
    fn new(socket: std::net::UdpSocket, drops: DropCount) -> Self {
        SharedSocket {
            rx: Receiver::new(socket),
            drops,
            members: 0,
            by_remote: HashMap::new(),
            by_local: HashMap::new(),
            by_ssrc: SsrcTable::default(),
        }
    }

    /// The channel a datagram from `from` belongs to, if any:
    /// 1. the one channel whose target is `from`, when it expects this SSRC
    ///    or none;
    /// 2. else the channel whose `remote-ssrc` is the SSRC (RTP), or the
    ///    sender's (RTCP);
    /// 3. else, RTCP, the channel sending the SSRC its first report block
    ///    is about (a peer that has sent no RTP yet reports under an SSRC
    ///    nobody expects);
    /// 4. else the one channel whose target is `from` (its peer changed
    ///    SSRC).
    ///
    /// An address that is several channels' target (a peer's shared port)
    /// tells nothing: those go by SSRC only.
    ///
    /// Inlined into the read loop with the usual datagram's case only; the
    /// others, in a function of their own, do not weigh on it.
    /// `ssrc` is `data`'s [`packet_ssrc`], which
    /// [`SharedSocket::prefetch_route`] read already.
    #[inline]
    fn route(&self, data: &[u8], from: SocketAddr, ssrc: Option<u32>) -> Option<usize> {
        let by_ssrc = ssrc.and_then(|s| self.by_ssrc.get(s));
        // The usual datagram: the SSRC a channel expects, from its target.
        // The rules give that channel: its target is either its alone (1.)
        // or several channels', whose datagrams go by SSRC (2.).
        match by_ssrc {
            Some(&(slot, target)) if target == Some(from) => Some(slot),
            _ => self.route_otherwise(data, from, ssrc, by_ssrc.map(|&(slot, _)| slot)),
        }
    }

    /// Starts loading the route [`SharedSocket::route`] will look `data`
    /// up in first, and returns the SSRC it goes by: a read asks for all of
    /// its datagrams' routes before it routes the first, so that they
    /// arrive together.
    #[inline]
    fn prefetch_route(&self, data: &[u8]) -> Option<u32> {
        let ssrc = packet_ssrc(data);
        if let Some(ssrc) = ssrc {
            self.by_ssrc.prefetch(ssrc);
        }
        ssrc
    }

    /// [`SharedSocket::route`] of a datagram not from the target of the
    /// channel expecting its SSRC `ssrc`, which is in slot `by_ssrc`.
    #[inline(never)]
    fn route_otherwise(
        &self,
        data: &[u8],
        from: SocketAddr,
        ssrc: Option<u32>,
        by_ssrc: Option<usize>,
    ) -> Option<usize> {
        let only = match self.by_remote.get(&AddrKey(from)).map(Vec::as_slice) {
            Some(&[one]) => Some(one),
            _ => None,
        };
        if let Some((slot, expected)) = only
            && (expected.is_none() || expected == ssrc)
        {
            return Some(slot);
        }
        by_ssrc
            .or_else(|| rtcp_reported_ssrc(data).and_then(|s| self.by_local.get(&s).copied()))
            .or(only.map(|(slot, _)| slot))
    }

    /// Whether the kernel may have dropped datagrams before reads that
    /// returned `datagrams` datagrams of `bytes` in all, and were `full`
    /// (one returned all it asked for) or emptied the socket.
    ///
    /// The kernel drops a datagram when the queue's memory is past
    /// `rcvbuf`, and only the worker empties the queue: the reads after a
    /// drop either fill up, or empty a queue that held more than `rcvbuf`.
    /// A datagram takes at most twice its bytes in the queue (allocations
    /// round up to a power of two) plus its buffer's bookkeeping.
    /// ([`DropCount::PerDatagram`] learns them with each datagram.)
    fn may_have_dropped(&self, full: bool, datagrams: usize, bytes: usize) -> bool {
        const BOOKKEEPING: usize = 1024;
        match self.drops {
            DropCount::MemInfo { rcvbuf } => full || 2 * bytes + BOOKKEEPING * datagrams >= rcvbuf,
            DropCount::PerDatagram => false,
        }
    }

    /// Reads the socket's drop count ([`DropCount::MemInfo`]).
    fn read_drops(&mut self) {
        if let Ok((rcvbuf, drops)) = receive_memory(&self.rx.socket) {
            self.rx.kernel_drops = drops;
            self.drops = DropCount::MemInfo { rcvbuf };
        }
    }

    /// Files the channel in `slot` under `key` (its target, `remote-ssrc`
    /// and own SSRC), after taking it out from under `old`. An SSRC another
    /// channel holds stays that channel's.
    fn reindex(&mut self, slot: usize, old: RouteKey, key: RouteKey) {
        if old == key {
            return;
        }
        if let Some(remote) = old.remote
            && let Entry::Occupied(mut sharers) = self.by_remote.entry(AddrKey(remote))
        {
            sharers.get_mut().retain(|(owner, _)| *owner != slot);
            if sharers.get().is_empty() {
                sharers.remove();
            }
        }
        if let Some(ssrc) = old.remote_ssrc
            && self
                .by_ssrc
                .get(ssrc)
                .is_some_and(|&(owner, _)| owner == slot)
        {
            self.by_ssrc.remove(ssrc);
        }
        if let Some(ssrc) = old.local_ssrc
            && self.by_local.get(&ssrc) == Some(&slot)
        {
            self.by_local.remove(&ssrc);
        }
        if let Some(remote) = key.remote {
            self.by_remote
                .entry(AddrKey(remote))
                .or_default()
                .push((slot, key.remote_ssrc));
        }
        if let Some(ssrc) = key.remote_ssrc {
            self.by_ssrc.insert_if_absent(ssrc, (slot, key.remote));
        }
        if let Some(ssrc) = key.local_ssrc {
            self.by_local.entry(ssrc).or_insert(slot);
        }
    }
}

/// The SSRC of an RTP packet, or of the sender of an RTCP compound; None
/// when `data` is neither (too short, not version 2).
fn packet_ssrc(data: &[u8]) -> Option<u32> {
    let at = if rtp::is_rtcp(data) { 4 } else { 8 };
    let ssrc = data.get(at..at + 4)?;
    (data[0] >> 6 == 2).then(|| u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]))
}

/// The SSRC the first report block of an SR or RR is about; None for
/// other RTCP, or without a block.
fn rtcp_reported_ssrc(data: &[u8]) -> Option<u32> {
    if !rtp::is_rtcp(data) || data[0] & 0x1f == 0 {
        return None;
    }
    let at = match data[1] {
        200 => 28,
        201 => 8,
        _ => return None,
    };
    let ssrc = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]))
}

/// What a shared socket routes a channel's datagrams by.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct RouteKey {
    remote: Option<SocketAddr>,
    remote_ssrc: Option<u32>,
    /// The SSRC the channel's session sends under.
    local_ssrc: Option<u32>,
}

/// What became of one received datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Took {
    /// RTP from the channel's peer: handed on.
    Accepted,
    /// RTCP the session took (or counted as malformed).
    Rtcp,
    NotRtp,
    Foreign,
}

/// A channel's share of one `recvmmsg` batch.
#[derive(Default)]
struct Tally {
    packets: u64,
    octets: u64,
    not_rtp: u64,
    foreign: u64,
    kernel: u64,
    relayed: u64,
    not_relayed: u64,
    session_changed: bool,
}

impl Tally {
    fn count(&mut self, data: &[u8], took: Took) {
        self.packets += 1;
        self.octets += data.len() as u64;
        match took {
            Took::Accepted | Took::Rtcp => self.session_changed = true,
            Took::NotRtp => self.not_rtp += 1,
            Took::Foreign => self.foreign += 1,
        }
    }
}

/// The fields a received RTP packet reads come first, in the first two
/// cache lines ([`Table::prefetch_slot`] loads those), and the struct is
/// laid out as written and starts on a cache line: with thousands of
/// channels, each packet otherwise touched a line per field, wherever the
/// compiler had put it.
#[repr(C, align(64))]
struct WorkerChannel<H: Handler> {
    channel: ChannelRef<H>,
    /// [`Handler::receive_hint`] of the channel's attachment (an address:
    /// a pointer would keep the worker from moving to its thread). Beside
    /// `channel`: [`Table::prefetch_state`] reads both for every datagram,
    /// and further on it missed the cache each time (a line of its own,
    /// none of those [`Table::prefetch_slot`] asks for).
    receive_hint: usize,
    /// When the latched source was last heard, and the SSRC it sent.
    heard_at: u64,
    /// The RTP target: configured, or latched.
    remote: Option<SocketAddr>,
    /// See [`Channel::set_relay_to`]; `relay` is that channel once found.
    relay_to: Option<u32>,
    /// `remote` was configured (not latched).
    configured: bool,
    latch: bool,
    source_filter: bool,
    /// The batch under way changed more of the session than
    /// [`SessionStats::PACKET_COLUMNS`]: it copies them all.
    publish_all: bool,
    /// RTP the channel relays reached the worker: a route it has in the
    /// relay offload must be seeded again, as the session moved on without
    /// the kernel, and one it lacks may be due ([`Worker::offload_sync`]).
    offload_stale: bool,
    mode: RtcpMode,
    latch_rules: Latch,
    /// The shared socket the channel is a member of (its number).
    shared: Option<usize>,
    /// The latching window's end (worker clock, ns), when there is one.
    latch_until: Option<u64>,
    /// On a shared socket, the target before latching moved it, until the
    /// socket's routes follow the move: set by the first move of a batch.
    moved_from: Option<Option<SocketAddr>>,
    latched_ssrc: Option<u32>,
    relay: Option<ChannelRef<H>>,
    session: Session,
    /// The channel's own RTP socket; None on a shared socket.
    rtp: Option<Receiver>,
    /// The RTCP socket of [`RtcpMode::PortPlusOne`].
    rtcp: Option<Receiver>,
    /// The RTP socket's descriptor, own or shared: what sends go out on.
    fd: i32,
    /// See [`ChannelConfig::remote_ssrc`].
    remote_ssrc: Option<u32>,
    /// [`RtcpMode::PortPlusOne`]: the source of the first datagram on the
    /// RTCP socket while no target is configured.
    rtcp_latched: Option<SocketAddr>,
    /// The route the relay offload has for what this channel receives.
    offloaded: Option<Box<Offloaded>>,
}

/// A channel's route in the relay offload ([`Worker::offload_sync`]), and
/// how much of what the kernel counted on it was folded in.
struct Offloaded {
    key: offload::Flow,
    route: offload::Route,
    /// The `relay-to` channel, which counts the packets as sent (the
    /// channel itself for a route that only holds its link).
    to: u32,
    /// Where the kernel counts what the channel's routes forward: the
    /// channel keeps it while it has a route, whichever.
    slot: u32,
    /// The slot's counts already folded in.
    folded: offload::Counts,
    offload: Arc<Offload>,
    /// `CLOCK_MONOTONIC` at the worker clock's zero, in ns: the kernel's
    /// times on the worker's clock.
    clock_zero: u64,
}

impl Offloaded {
    /// When the kernel last forwarded a packet from the target, on the
    /// worker's clock: a sound the worker does not hear.
    fn heard_at(&self) -> Option<u64> {
        self.kernel_time(&self.offload.counts(self.slot))
    }

    fn kernel_time(&self, counts: &offload::Counts) -> Option<u64> {
        (counts.packets > 0).then(|| counts.last_ns.saturating_sub(self.clock_zero))
    }
}

impl<H: Handler> WorkerChannel<H> {
    fn route_key(&self) -> RouteKey {
        RouteKey {
            remote: self.remote,
            remote_ssrc: self.remote_ssrc,
            local_ssrc: Some(self.session.local_ssrc()),
        }
    }

    /// [`WorkerChannel::admit`], then relays what it admitted when the
    /// channel relays.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn take(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        on_rtcp_socket: bool,
        now: u64,
        handler: &mut H,
        tally: &mut Tally,
        channels: &Mutex<BTreeMap<u32, ChannelRef<H>>>,
    ) -> Took {
        let took = self.admit(data, from, on_rtcp_socket, now, handler);
        let relays = match took {
            Took::Accepted => self.relay_to.is_some(),
            Took::Rtcp => self.relay_to.is_some() && self.mode != RtcpMode::Off,
            _ => false,
        };
        if relays {
            // RTP the worker relays itself: an offloaded route (if any) no
            // longer knows what the session does. Set whether or not the
            // offload is on, not to read `offloaded`, a line no packet
            // otherwise reads; the worker looks only when it is on.
            self.offload_stale |= took == Took::Accepted;
            let worker = self.channel.worker;
            match self.relay_target(channels) {
                Some(to) if took == Took::Accepted || to.rtcp_mode != RtcpMode::Off => {
                    match to.relay(data, worker) {
                        Some(true) => tally.relayed += 1,
                        // Counted by the target as dropped-queue-full.
                        Some(false) => {}
                        None => tally.not_relayed += 1,
                    }
                }
                Some(_) => {}
                None => tally.not_relayed += 1,
            }
        }
        tally.count(data, took);
        took
    }

    /// The `relay-to` channel, found again when it was removed (or not yet
    /// found): the element may add it after this one, or re-open it.
    fn relay_target(
        &mut self,
        channels: &Mutex<BTreeMap<u32, ChannelRef<H>>>,
    ) -> Option<&ChannelRef<H>> {
        if self
            .relay
            .as_ref()
            .is_none_or(|to| to.closed.load(Ordering::Acquire))
        {
            let id = self.relay_to?;
            self.relay = lock(channels).get(&id).cloned();
        }
        self.relay.as_ref()
    }

    /// Applies the latching rules, the source filter and the session to one
    /// datagram from `from` (on the RTCP socket when `on_rtcp_socket`).
    fn admit(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        on_rtcp_socket: bool,
        now: u64,
        handler: &mut H,
    ) -> Took {
        // RTCP is told from RTP before RTP is parsed: an SR or RR also
        // parses as RTP (payload type 72 to 76 with the marker).
        if on_rtcp_socket || rtp::is_rtcp(data) {
            if on_rtcp_socket && self.rtcp_latched.is_none() && self.may_latch(from, now) {
                self.rtcp_latched = Some(from);
            }
            let allowed = if on_rtcp_socket {
                self.rtcp_target()
            } else {
                self.remote
            };
            if self.wrong_host(from)
                || ((self.filters(now) || (on_rtcp_socket && self.rtcp_latched.is_some()))
                    && allowed != Some(from))
            {
                return Took::Foreign;
            }
            // A malformed compound is counted by the session under its
            // fault; nothing of it is applied.
            self.publish_all = true;
            if let Ok(summary) = self.session.handle_rtcp(data, now) {
                if summary.cname_changed {
                    *lock(&self.channel.remote_cname) =
                        String::from_utf8_lossy(self.session.remote_cname()).into_owned();
                }
                if let Some(ssrc) = summary.bye {
                    handler.bye_received(&self.channel, ssrc);
                }
            }
            return Took::Rtcp;
        }
        let Ok(packet) = rtp::Packet::parse(data) else {
            return Took::NotRtp;
        };
        // Compared once: the usual packet comes from the target.
        let mut from_target = self.remote == Some(from);
        if !from_target && self.may_latch_again(from, packet.ssrc(), now) {
            if self.shared.is_some() {
                self.moved_from.get_or_insert(self.remote);
            }
            self.remote = Some(from);
            from_target = true;
            self.latched_ssrc = Some(packet.ssrc());
            self.channel.write_stats().set(LATCHED, 1);
        }
        if self.wrong_host(from) || (!from_target && self.filters(now)) {
            return Took::Foreign;
        }
        if from_target {
            self.heard_at = now;
        }
        // A new source or a restart changes more than the packet columns.
        // A packet on probation or after a bad jump changes none: a stream
        // stuck there (a sender repeating its sequence number, a flood of
        // random ones) had every column published per packet for nothing.
        self.publish_all |= matches!(
            self.session.handle_rtp(&packet, now),
            session::Received::NewSource { .. } | session::Received::Restarted
        );
        Took::Accepted
    }

    /// Counts a batch's `tally` and hands what it `accepted` on. The
    /// session's statistics and the drops first: a reader that sees the new
    /// `packets-received` (it is read first, with acquire) sees them too.
    fn finish_batch(&mut self, tally: &Tally, handler: &mut H, batch: Batch<'_>) {
        {
            let write = self.channel.write_stats();
            if std::mem::take(&mut self.publish_all) {
                write.session(&self.session);
            } else if tally.session_changed {
                write.session_packets(&self.session);
            }
            write.bump(DROPPED_NOT_RTP, tally.not_rtp);
            write.bump(DROPPED_FOREIGN_SOURCE, tally.foreign);
            write.bump(DROPPED_KERNEL, tally.kernel);
            write.bump(RELAYED, tally.relayed);
            write.bump(NOT_RELAYED, tally.not_relayed);
            write.bump(OCTETS_RECEIVED, tally.octets);
            write.bump(PACKETS_RECEIVED, tally.packets);
        }
        let ch = &self.channel;
        if !batch.is_empty() {
            handler.received(ch, batch);
        }
    }
}

/// The worker's channels by id. Each stays in its slot until removed, so
/// a slot starts on a cache line ([`WorkerChannel`] is aligned to one):
/// filed in a map by id, each channel took a line more, for the key, and
/// its lines could not be fetched before the key was compared.
struct Table<T> {
    slot_of: IntMap<u32, usize>,
    slots: Vec<Option<T>>,
    /// Slots of removed channels, taken again first.
    free: Vec<usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slot_of: IntMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    /// Files `value` under `id`, which nothing in the table has, and
    /// returns its slot.
    fn insert(&mut self, id: u32, value: T) -> usize {
        debug_assert!(!self.slot_of.contains_key(&id), "channel {id} twice");
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(value);
                slot
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        };
        self.slot_of.insert(id, slot);
        slot
    }

    /// Takes `id` out, with the slot it had.
    fn remove(&mut self, id: &u32) -> Option<(usize, T)> {
        let slot = self.slot_of.remove(id)?;
        self.free.push(slot);
        Some((slot, self.slots[slot].take()?))
    }

    fn contains_key(&self, id: &u32) -> bool {
        self.slot_of.contains_key(id)
    }

    /// The slot of channel `id`: where [`Table::at`] finds it.
    fn slot(&self, id: u32) -> Option<usize> {
        self.slot_of.get(&id).copied()
    }

    fn at(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot)?.as_ref()
    }

    fn at_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.slots.get_mut(slot)?.as_mut()
    }

    fn get(&self, id: &u32) -> Option<&T> {
        self.at(self.slot(*id)?)
    }

    fn get_mut(&mut self, id: &u32) -> Option<&mut T> {
        Some(self.slot_mut(*id)?.1)
    }

    /// [`Table::get_mut`] with the slot, for what files the channel by it.
    fn slot_mut(&mut self, id: u32) -> Option<(usize, &mut T)> {
        let slot = self.slot(id)?;
        Some((slot, self.at_mut(slot)?))
    }

    fn keys(&self) -> impl Iterator<Item = &u32> {
        self.slot_of.keys()
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }
}

impl<H: Handler> Table<WorkerChannel<H>> {
    /// Starts loading what [`WorkerChannel::take`] reads of the channel in
    /// `slot` first: its own first three lines (the third holds the
    /// `Option`'s niche, read to find the slot taken) and its session's
    /// first two, which lie in the slot too, so neither waits for a
    /// pointer. (Its statistics' come with [`Table::prefetch_state`], once
    /// these are in.) The session's address assumes the `Option` holds its
    /// channel at offset 0, as a niche-filled one does; were it elsewhere,
    /// a prefetch would only miss, never fault.
    fn prefetch_slot(&self, slot: usize) {
        if let Some(wc) = self.slots.get(slot) {
            prefetch_lines(wc, 3);
            let session = (wc as *const Option<WorkerChannel<H>>)
                .cast::<u8>()
                .wrapping_add(std::mem::offset_of!(WorkerChannel<H>, session));
            prefetch_lines(session, 2);
        }
    }

    /// Starts loading the lines of the channel in `slot` that a received
    /// packet reads and changes outside the slot: its [`Channel`]'s first
    /// three (what the handler reads, and the statistics a packet changes)
    /// and the handler's [`Handler::receive_hint`].
    fn prefetch_state(&self, slot: usize) {
        if let Some(wc) = self.at(slot) {
            prefetch_lines(&*wc.channel, 3);
            if wc.receive_hint != 0 {
                prefetch(wc.receive_hint as *const u8);
            }
        }
    }

    /// What [`Worker::send_batch`] reads of the channel in `slot` outside
    /// the slot, once [`Table::prefetch_slot`]'s lines are in (the pointer
    /// to the [`Channel`] is read here): its flags, its queue's positions and
    /// its statistics.
    fn prefetch_channel(&self, slot: usize) {
        if let Some(wc) = self.at(slot) {
            let ch = &*wc.channel;
            prefetch(&ch.scheduled);
            prefetch(&ch.dirty);
            prefetch(&ch.queue.head);
            prefetch(&ch.stats);
        }
    }

    /// The slot of the queue the channel in `slot` sends from next, once
    /// [`Table::prefetch_channel`]'s lines are in (its position is read
    /// here).
    fn prefetch_queue(&self, slot: usize) {
        if let Some(wc) = self.at(slot) {
            wc.channel.queue.prefetch_head();
        }
    }
}

/// Asks the processor to start loading the cache line holding `at` and
/// goes on: a shared socket's read hands over up to 64 channels' packets,
/// each channel's state cold (touched once in 20 ms), and loaded one
/// channel after the other the misses queue up instead of overlapping.
#[inline(always)]
pub fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing into the program,
    // changes no memory and never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// [`prefetch`] of the `lines` cache lines from `at` on.
#[inline(always)]
fn prefetch_lines<T>(at: *const T, lines: usize) {
    for line in 0..lines {
        prefetch(at.cast::<u8>().wrapping_add(64 * line));
    }
}

/// Files `wc`, in `slot` of the table, anew in its shared socket's routes
/// when what they go by changed from `old`.
fn reindex<H: Handler>(
    sockets: &mut IntMap<usize, SharedSocket>,
    slot: usize,
    wc: &WorkerChannel<H>,
    old: RouteKey,
) {
    if let Some(ss) = wc.shared.and_then(|n| sockets.get_mut(&n)) {
        ss.reindex(slot, old, wc.route_key());
    }
}

/// `addr` with the port after its own, if there is one.
fn next_port(addr: SocketAddr) -> Option<SocketAddr> {
    let port = addr.port().checked_add(1)?;
    Some(SocketAddr::new(addr.ip(), port))
}

/// Registers `socket` for level-triggered readability under `token` on
/// mio's epoll instance. mio itself only registers edge-triggered, which
/// obliges a reader to drain the socket down to `EAGAIN`: one failing
/// `recvmsg` per wake, for a channel that mostly holds a single packet. Level
/// triggering lets the worker read what it expects and leave the rest for the
/// next round, which epoll then reports again.
fn register_level_triggered(
    poll: &Poll,
    socket: &std::net::UdpSocket,
    token: usize,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        // mio reads its tokens back from this field.
        u64: token as u64,
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

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<H: Handler> WorkerChannel<H> {
    /// Whether the latching rules let `from` be latched at `now`.
    fn may_latch(&self, from: SocketAddr, now: u64) -> bool {
        self.latch
            && !self.configured
            && !self.wrong_host(from)
            && self.latch_until.is_none_or(|end| now <= end)
    }

    /// Whether sources other than the target are dropped at `now`: when
    /// asked, always once latched, and once the latching window closed with
    /// nobody latched (the channel takes no new peer then).
    fn filters(&self, now: u64) -> bool {
        self.source_filter
            || (!self.configured
                && (self.remote.is_some()
                    || (self.latch && self.latch_until.is_some_and(|end| now > end))))
    }

    /// Whether `from` is a source the latch could never take: the peer's
    /// address is known (`latch_rules.ip`) and this is not it. Dropped even
    /// before anyone is latched, so nothing of an attacker's is handed on.
    fn wrong_host(&self, from: SocketAddr) -> bool {
        !self.configured && self.latch_rules.ip.is_some_and(|ip| ip != from.ip())
    }

    /// Whether `from`, sending `ssrc`, may become the target: a first
    /// latch, or a move once the latched source fell silent (same SSRC).
    fn may_latch_again(&self, from: SocketAddr, ssrc: u32, now: u64) -> bool {
        match self.remote {
            None => self.may_latch(from, now),
            Some(_) if self.configured => false,
            // The window limits the first latch only; the silence and the
            // SSRC guard a move.
            Some(_) => self.latch_rules.relatch_after.is_some_and(|after| {
                !self.wrong_host(from)
                    && self.latched_ssrc == Some(ssrc)
                    && now.saturating_sub(self.heard_at) >= ns(after)
                    && self
                        .offloaded
                        .as_ref()
                        .and_then(|o| o.heard_at())
                        .is_none_or(|heard| now.saturating_sub(heard) >= ns(after))
            }),
        }
    }

    /// Where RTCP goes: nowhere when off or without a target.
    fn rtcp_target(&self) -> Option<SocketAddr> {
        match self.mode {
            RtcpMode::Off => None,
            RtcpMode::Mux => self.remote,
            RtcpMode::PortPlusOne if self.configured => self.remote.and_then(next_port),
            RtcpMode::PortPlusOne => self
                .rtcp_latched
                .or_else(|| self.remote.and_then(next_port)),
        }
    }

    /// The socket RTCP goes out on, and its address.
    fn rtcp_socket(&self) -> (i32, SocketAddr) {
        match (&self.rtcp, self.channel.local_rtcp) {
            (Some(rtcp), Some(local)) => (rtcp.socket.as_raw_fd(), local),
            _ => (self.fd, self.channel.local),
        }
    }

    /// Applies what the element changed since the last call. Returns
    /// whether the report deadline moved (the caller then pushes it).
    fn refresh(&mut self, now: u64) -> bool {
        // A plain load first: the locked swap only when there is news.
        if !(self.channel.dirty.load(Ordering::Relaxed)
            && self.channel.dirty.swap(false, Ordering::Acquire))
        {
            return false;
        }
        let updates = std::mem::take(&mut *lock(&self.channel.updates));
        if let Some(remote) = updates.remote {
            self.remote = remote.map(canonical);
            self.configured = self.remote.is_some();
            self.rtcp_latched = None;
            self.latched_ssrc = None;
            self.channel.write_stats().set(LATCHED, 0);
            // A cleared target opens a new latching window.
            self.latch_until = self.latch_rules.window.map(|w| now.saturating_add(ns(w)));
        }
        if let Some(ip) = updates.latch_ip {
            // Stored as sources show it, so the check per packet compares.
            self.latch_rules.ip = ip.map(canonical_ip);
        }
        if let Some(clock_rate) = updates.clock_rate {
            self.session.set_clock_rate(clock_rate);
        }
        if let Some(ssrc) = updates.remote_ssrc {
            self.remote_ssrc = ssrc;
        }
        if let Some(to) = updates.relay_to {
            self.relay_to = to;
            self.relay = None;
            self.channel.relaying.store(to.is_some(), Ordering::Relaxed);
        }
        let before = self.session.next_deadline();
        if let Some(interval) = updates.interval {
            // The element only sends valid intervals; a zero one is refused
            // by the session and changes nothing.
            let _ = self.session.set_interval(interval, now);
        }
        self.channel.write_stats().session(&self.session);
        self.session.next_deadline() != before
    }
}

/// Sends one RTCP compound from `wc`'s RTCP socket and counts it, with
/// the session's statistics (the compound is one of its `rtcp-sent`).
fn send_rtcp<H: Handler>(
    send: &mut SendBuffers,
    wc: &WorkerChannel<H>,
    compound: &[u8],
    target: SocketAddr,
) {
    let (fd, local) = wc.rtcp_socket();
    let (sent, err) = send.send(fd, [(compound, target_for(local, target))]);
    let write = wc.channel.write_stats();
    write.session(&wc.session);
    if sent == 1 {
        write.bump(PACKETS_SENT, 1);
        write.bump(OCTETS_SENT, compound.len() as u64);
    } else if err.is_some() {
        write.bump(SEND_ERRORS, 1);
    }
}

/// Reports due, earliest first. Entries are never removed early: one whose
/// channel is gone, or whose session's deadline is no longer its time, is
/// skipped when it comes up (lazy invalidation), and every change of a
/// deadline pushes a new entry. A wake thus costs O(log n) per report due
/// and nothing per idle channel, and the heap holds about one entry per
/// channel.
type Deadlines = BinaryHeap<Reverse<(u64, u32)>>;

fn push_deadline(deadlines: &mut Deadlines, id: u32, session: &Session) {
    let at = session.next_deadline();
    if at != u64::MAX {
        deadlines.push(Reverse((at, id)));
    }
}

/// One `recvmmsg` of up to `asked` datagrams from `fd`: how many came, or
/// None when none did (an error is told through `report` once, until a read
/// succeeds again).
fn read_batch(
    recv: &mut RecvBuffers,
    fd: i32,
    asked: usize,
    failing: &mut bool,
    report: impl FnOnce(io::Error),
) -> Option<usize> {
    loop {
        match recv.recv(fd, asked) {
            Ok(n) => {
                *failing = false;
                return Some(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                // Reported once, not on every round it persists.
                if !*failing {
                    *failing = true;
                    report(e);
                }
                return None;
            }
        }
    }
}

struct Worker<H: Handler> {
    poll: Poll,
    handler: H,
    shared: Arc<Shared<H>>,
    notify: Arc<Notify>,
    commands_in: Commands<H>,
    table: Table<WorkerChannel<H>>,
    /// Shared sockets by number, and their numbers by local address.
    sockets: IntMap<usize, SharedSocket>,
    socket_numbers: HashMap<SocketAddr, usize>,
    next_socket: usize,
    /// (channel's slot, datagram, source) of a shared socket's batch,
    /// grouped by channel.
    routed: Vec<(usize, usize, SocketAddr)>,
    /// A shared socket still held datagrams after its reads of this round.
    backlog: bool,
    /// (socket number, channel, packet, target) queued this round for
    /// shared sockets.
    shared_out: Vec<(usize, u32, Out<Bytes<H>>, SocketAddr)>,
    deadlines: Deadlines,
    recv: RecvBuffers,
    send: SendBuffers,
    /// Where reports and BYEs are written: [`session::MAX_COMPOUND_LEN`].
    rtcp_out: Vec<u8>,
    accepted: Vec<(usize, SocketAddr)>,
    /// Channels with packets to send, in turn: those a round's budget did
    /// not reach first.
    pending: Vec<u32>,
    /// The channels the senders scheduled since the last round, on their
    /// way to `pending` (an empty vector between rounds).
    newly_scheduled: Vec<u32>,
    updated: Vec<u32>,
    commands: Vec<Command<H>>,
    /// The sessions' clock when the worker last woke: the time of what a
    /// wake sends, reports and changes (a clock read costs as much as a
    /// session's work on a packet, so it is read once per wake).
    now: u64,
    /// The relay offload while on ([`Server::set_relay_offload`]).
    offload: Option<Arc<Offload>>,
    /// Channels whose routes may have to change: a packet of an offloaded
    /// one reached the worker, or the element changed its settings.
    offload_dirty: Vec<u32>,
    /// When the next [`Worker::offload_round`] is due (worker clock).
    next_offload_round: u64,
    /// The channel of each route this worker installed, by key.
    offload_keys: HashMap<offload::Flow, u32>,
    /// The channels with a forwarding route, by the channel they forward
    /// to: that channel's route (forwarding too, or only holding its link)
    /// must be there, and follow its address.
    offload_relayers: HashMap<u32, Vec<u32>>,
    /// Room for [`Offload::read_all`], and for the channels a round routes.
    offload_read: (Vec<offload::Flow>, Vec<offload::Route>),
    offload_ids: Vec<u32>,
}

impl<H: Handler> Worker<H> {
    /// Time until the earliest report is `late` past due (zero when it is),
    /// if there is one.
    fn until_report(&self, late: Duration) -> Option<Duration> {
        let Reverse((at, _)) = self.deadlines.peek()?;
        let wake = at.saturating_add(ns(late));
        Some(Duration::from_nanos(wake.saturating_sub(self.shared.now())))
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now();
        let mut out: Vec<Out<Bytes<H>>> = Vec::with_capacity(BATCH);
        let mut more_to_send = false;
        loop {
            let tick_us = self.notify.tick_us.load(Ordering::Relaxed);
            let tick = Duration::from_micros(tick_us);
            let timeout = if more_to_send || self.backlog {
                // Sends or reads left over from the last round: only look
                // for what else is ready.
                Some(Duration::ZERO)
            } else if tick.is_zero() {
                // Sleep until something happens, a report is due or the
                // offload's counts are.
                let report = self.until_report(Duration::ZERO);
                match self.offload {
                    Some(_) => {
                        let round = Duration::from_nanos(
                            self.next_offload_round.saturating_sub(self.shared.now()),
                        );
                        Some(report.map_or(round, |r| r.min(round)))
                    }
                    None => report,
                }
            } else {
                // Paced rounds: epoll keeps what became ready meanwhile, so
                // one round handles a tick's worth of packets in one go.
                // Socket readiness does not end the pause; a command, a new
                // tick or a report due (give or take MAX_REPORT_DELAY) does,
                // within a slice, so changes never wait for a long tick.
                loop {
                    let now = Instant::now();
                    let retuned = self.notify.tick_us.load(Ordering::Relaxed) != tick_us;
                    let report = self.until_report(tick.min(MAX_REPORT_DELAY));
                    if now >= next_tick
                        || retuned
                        || report == Some(Duration::ZERO)
                        || self.notify.commands_pending.load(Ordering::Acquire)
                    {
                        break;
                    }
                    let mut pause = (next_tick - now).min(PAUSE_SLICE);
                    if let Some(report) = report {
                        pause = pause.min(report);
                    }
                    std::thread::sleep(pause);
                }
                let now = Instant::now();
                if now >= next_tick {
                    next_tick = (next_tick + tick).max(now);
                }
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // epoll itself failing leaves nothing to serve.
                return;
            }
            self.now = self.shared.now();
            self.handler.woke();
            // Level-triggered: a socket left with a backlog is reported
            // again by this poll, and says so again if it still has one.
            self.backlog = false;
            // Commands and updates before datagrams: a channel joining a
            // shared socket, or given its `remote-ssrc` or target, is routed
            // to only once the worker applied it, and the datagrams this
            // wake reads may be the first its peer sent after.
            if events.iter().any(|e| e.token() == WAKER) {
                self.notify.wake_requested.store(false, Ordering::Release);
            }
            if !self.run_queued_commands() {
                return;
            }
            self.apply_updates();
            let mut ready = 0;
            for event in events.iter() {
                ready += 1;
                match event.token() {
                    WAKER => {}
                    Token(token) if token & SHARED_TOKEN != 0 => {
                        self.receive_shared(token & !SHARED_TOKEN)
                    }
                    Token(token) => self.receive(token as u32, token & RTCP_TOKEN != 0),
                }
            }
            self.handler.round_end();
            self.offload_sync_dirty();
            if ready == EVENTS {
                // More sockets are ready than one poll reports: no pause.
                next_tick = Instant::now();
            }
            // The senders' lock is held for a swap only.
            std::mem::swap(&mut *lock(&self.notify.pending), &mut self.newly_scheduled);
            self.pending.append(&mut self.newly_scheduled);
            // A channel is scheduled only after its Add was queued, so
            // running the commands after taking the pending ids puts every
            // pending channel in the table. Without this, an id scheduled
            // before the worker saw its Add was skipped with its `scheduled`
            // flag left set, and that channel never sent again.
            if !self.run_queued_commands() {
                return;
            }
            self.apply_updates();
            self.send.join = self.shared.gso.load(Ordering::Relaxed);
            more_to_send = self.send_pending(&mut out);
            let joined = std::mem::take(&mut self.send.joined);
            if joined > 0 {
                self.shared
                    .gso_messages
                    .fetch_add(joined, Ordering::Relaxed);
            }
            if (more_to_send || self.backlog) && !tick.is_zero() {
                next_tick = Instant::now();
            }
            self.send_reports();
            if self.offload.is_some() || self.shared.offload_on.load(Ordering::Relaxed) {
                self.offload_round();
            }
        }
    }

    /// [`Worker::run_commands`] when a command is queued.
    fn run_queued_commands(&mut self) -> bool {
        !self.notify.commands_pending.load(Ordering::Acquire) || self.run_commands()
    }

    /// Returns false on `Stop`.
    fn run_commands(&mut self) -> bool {
        // Cleared first: a command queued after the swap sets it again.
        self.notify.commands_pending.store(false, Ordering::Release);
        std::mem::swap(&mut *lock(&self.commands_in), &mut self.commands);
        let mut keep_running = true;
        let mut commands = std::mem::take(&mut self.commands);
        for command in commands.drain(..) {
            match command {
                Command::Add(new) => self.add(new),
                Command::Remove(id, done) => {
                    if let Some(wc) = self.close(id) {
                        add_into(&mut lock(&self.shared.released), &wc.channel.stats());
                        // Dropping `wc` closes the sockets before the caller goes on.
                    }
                    let _ = done.send(());
                }
                Command::Stop => {
                    let ids: Vec<u32> = self.table.keys().copied().collect();
                    for id in ids {
                        // Its statistics stay with the channel, which the
                        // server reads after the stop.
                        self.close(id);
                    }
                    keep_running = false;
                }
            }
        }
        // The vector goes back, keeping its room for the next round.
        self.commands = commands;
        keep_running
    }

    fn add(&mut self, new: Box<NewChannel<H>>) {
        let NewChannel {
            channel,
            sockets,
            config,
            session,
        } = *new;
        let id = channel.id;
        let (rtp, rtcp, shared, fd) = match sockets {
            Sockets::Own(socket, rtcp_socket) => {
                let registered = register_level_triggered(&self.poll, &socket, id as usize)
                    .and_then(|()| match &rtcp_socket {
                        Some(s) => {
                            register_level_triggered(&self.poll, s, id as usize | RTCP_TOKEN)
                        }
                        None => Ok(()),
                    });
                if let Err(e) = registered {
                    self.handler.socket_error(&channel, e);
                    return;
                }
                let fd = socket.as_raw_fd();
                (
                    Some(Receiver::new(socket)),
                    rtcp_socket.map(Receiver::new),
                    None,
                    fd,
                )
            }
            Sockets::SharedNew(socket, drops) => {
                let number = self.next_socket;
                self.next_socket = (number + 1) & (SHARED_TOKEN - 1);
                if let Err(e) = register_level_triggered(&self.poll, &socket, SHARED_TOKEN | number)
                {
                    self.handler.socket_error(&channel, e);
                    return;
                }
                let fd = socket.as_raw_fd();
                self.socket_numbers.insert(canonical(channel.local), number);
                self.sockets
                    .insert(number, SharedSocket::new(socket, drops));
                (None, None, Some(number), fd)
            }
            Sockets::SharedJoin(local) => {
                let Some((number, ss)) = self
                    .socket_numbers
                    .get(&local)
                    .and_then(|&n| Some((n, self.sockets.get(&n)?)))
                else {
                    let gone = io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("the shared socket on {local} failed to open"),
                    );
                    self.handler.socket_error(&channel, gone);
                    return;
                };
                (None, None, Some(number), ss.rx.socket.as_raw_fd())
            }
        };
        push_deadline(&mut self.deadlines, id, &session);
        let remote = config.remote.map(canonical);
        let receive_hint = H::receive_hint(&channel.attachment).map_or(0, |at| at as usize);
        let wc = WorkerChannel {
            channel,
            rtp,
            rtcp,
            shared,
            fd,
            remote_ssrc: config.remote_ssrc,
            relay_to: config.relay_to,
            relay: None,
            mode: config.rtcp,
            remote,
            moved_from: None,
            configured: remote.is_some(),
            rtcp_latched: None,
            latch: config.latch,
            source_filter: config.source_filter,
            latch_rules: Latch {
                ip: config.latch_rules.ip.map(canonical_ip),
                ..config.latch_rules
            },
            latch_until: config
                .latch_rules
                .window
                .map(|w| self.now.saturating_add(ns(w))),
            heard_at: self.now,
            latched_ssrc: None,
            receive_hint,
            session,
            publish_all: false,
            offload_stale: false,
            offloaded: None,
        };
        let key = wc.route_key();
        let slot = self.table.insert(id, wc);
        if let Some(ss) = shared.and_then(|n| self.sockets.get_mut(&n)) {
            ss.members += 1;
            ss.reindex(slot, RouteKey::default(), key);
        }
        // An update made between the Add and this (the worker took the
        // update list first) found no channel then: it is applied now.
        self.refresh(id);
    }

    /// Takes channel `id` off the worker: its own sockets leave the epoll
    /// set, or it leaves its shared socket (closed with its last member).
    /// Dropping the returned channel closes its own sockets.
    fn detach(&mut self, id: u32) -> Option<WorkerChannel<H>> {
        let (slot, wc) = self.table.remove(&id)?;
        for rx in wc.rtp.iter().chain(&wc.rtcp) {
            let fd = rx.socket.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        if let Some(number) = wc.shared
            && let Some(ss) = self.sockets.get_mut(&number)
        {
            ss.reindex(slot, wc.route_key(), RouteKey::default());
            ss.members -= 1;
            if ss.members == 0 {
                let fd = ss.rx.socket.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                self.sockets.remove(&number);
                self.socket_numbers.retain(|_, n| *n != number);
            }
        }
        Some(wc)
    }

    /// Ends channel `id`: what it still has queued goes out (a relay to it
    /// stops now: it is marked closed), then the compound that ends its
    /// session when it sends RTCP and has a target, while its socket is
    /// still open; then it leaves the worker ([`Worker::detach`]).
    fn close(&mut self, id: u32) -> Option<WorkerChannel<H>> {
        // Its datagrams, and those the channels relaying to it forward,
        // reach the sockets again (and are counted there) before it goes.
        self.offload_unroute(id);
        for other in self.offload_relayers.remove(&id).unwrap_or_default() {
            self.offload_unroute(other);
        }
        let mut out = Vec::new();
        while self.table.contains_key(&id) && self.send_batch(id, &mut out) == BATCH {}
        self.flush_shared();
        let wc = self.table.get_mut(&id)?;
        let said_bye = match wc.rtcp_target() {
            Some(target) => {
                let len = wc.session.bye(self.now, &mut self.rtcp_out);
                if len > 0 {
                    send_rtcp(&mut self.send, wc, &self.rtcp_out[..len], target);
                }
                len > 0
            }
            None => false,
        };
        // A BYE sent copied the statistics with its counts already.
        if !said_bye {
            wc.channel.write_stats().session(&wc.session);
        }
        self.detach(id)
    }

    /// Applies the updates of the channels the element changed.
    fn apply_updates(&mut self) {
        // A plain load first: the lock only when there is news.
        if !(self.notify.has_updates.load(Ordering::Relaxed)
            && self.notify.has_updates.swap(false, Ordering::Acquire))
        {
            return;
        }
        std::mem::swap(&mut *lock(&self.notify.updated), &mut self.updated);
        let mut updated = std::mem::take(&mut self.updated);
        for id in updated.drain(..) {
            self.refresh(id);
        }
        // The vector goes back, keeping its room.
        self.updated = updated;
    }

    /// Writes and sends every report due (or closes its interval when the
    /// channel has nowhere to send it) and schedules the next.
    fn send_reports(&mut self) {
        let now = self.now;
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            // What the kernel forwarded is in the report.
            self.offload_fold(id);
            let Some(wc) = self.table.get_mut(&id) else {
                continue;
            };
            if wc.session.next_deadline() != at {
                continue;
            }
            let reported = match wc.rtcp_target() {
                Some(target) => match wc.session.poll_rtcp(now, &mut self.rtcp_out) {
                    Some(len) => {
                        send_rtcp(&mut self.send, wc, &self.rtcp_out[..len], target);
                        true
                    }
                    None => false,
                },
                None => {
                    wc.session.close_interval(now);
                    false
                }
            };
            // A report sent copied the statistics with its counts already;
            // without one the interval closed all the same.
            if !reported {
                wc.channel.write_stats().session(&wc.session);
            }
            push_deadline(&mut self.deadlines, id, &wc.session);
        }
    }

    /// Follows [`Server::set_relay_offload`], routes anew the channels
    /// that asked for it this round, and every [`OFFLOAD_ROUND`] folds the
    /// kernel's counts in and routes the pairs that became ready.
    fn offload_round(&mut self) {
        let on = self.shared.offload_on.load(Ordering::Acquire);
        if on != self.offload.is_some() {
            if !on {
                let ids: Vec<u32> = self.table.keys().copied().collect();
                for id in ids {
                    self.offload_unroute(id);
                }
                self.offload = None;
                self.offload_dirty.clear();
                return;
            }
            self.offload = lock(&self.shared.offload).clone();
            self.next_offload_round = self.now;
        }
        if self.offload.is_none() {
            return;
        }
        self.offload_sync_dirty();
        if self.now >= self.next_offload_round {
            self.next_offload_round = self.now.saturating_add(ns(OFFLOAD_ROUND));
            self.offload_fold_all();
            if let Some(offload) = &self.offload {
                offload.follow_interfaces();
            }
            // Routed channels follow their changes as they come
            // (`offload_dirty`); the others may have become ready.
            let mut ids = std::mem::take(&mut self.offload_ids);
            ids.extend(
                self.table
                    .values()
                    .filter(|wc| wc.offloaded.is_none() && wc.relay_to.is_some())
                    .map(|wc| wc.channel.id),
            );
            for id in ids.drain(..) {
                self.offload_sync(id);
            }
            self.offload_ids = ids;
        }
    }

    /// [`Worker::offload_fold`] for every route of this worker, read a few
    /// hundred per system call.
    fn offload_fold_all(&mut self) {
        let Some(offload) = self.offload.clone() else {
            return;
        };
        let (mut keys, mut routes) = std::mem::take(&mut self.offload_read);
        if offload.read_all(&mut keys, &mut routes).is_ok() {
            for (key, route) in keys.iter().zip(&routes) {
                // Other workers' routes are in the map too.
                if let Some(&id) = self.offload_keys.get(key) {
                    self.offload_fold_with(id, route);
                }
            }
        } else {
            // A kernel without batch reads (before 5.6): one at a time.
            let ids: Vec<u32> = self.offload_keys.values().copied().collect();
            for id in ids {
                self.offload_fold(id);
            }
        }
        self.offload_read = (keys, routes);
    }

    /// Routes anew the channels that asked for it ([`Worker::offload_dirty`]).
    /// Run before the round's sends: a packet relayed by the worker after a
    /// peer moved reaches the other peer only once the kernel's route in
    /// the other direction follows the move, so its answer goes to the new
    /// address.
    fn offload_sync_dirty(&mut self) {
        if self.offload_dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.offload_dirty);
        for id in dirty.drain(..) {
            self.offload_sync(id);
        }
        // The vector goes back, keeping its room.
        self.offload_dirty = dirty;
    }

    /// The route channel `id` should have in the relay offload, with the
    /// channel it forwards to (its `relay-to` one, which counts the
    /// packets as sent). A forwarding route, seeded from the session's
    /// reception: the channel relays to one on this worker, both have a
    /// target of one family (a packet cannot change it on the way), and
    /// its session knows its remote source. Else, when channels forward to
    /// it, a route that only holds its link (the way to its target, which
    /// the kernel learns from the target's frames or from those the
    /// worker sends it), to `id` itself.
    fn offload_wanted(&self, id: u32) -> Option<(offload::Flow, offload::Route, u32)> {
        let wc = self.table.get(&id)?;
        let key = offload::Flow::new(canonical(wc.remote?), canonical(wc.channel.local));
        let forwarding = wc.relay_to.and_then(|to| {
            let peer = self.table.get(&to)?;
            let (remote, local) = (canonical(peer.remote?), canonical(peer.channel.local));
            if remote.is_ipv4() != canonical(wc.remote?).is_ipv4() {
                return None;
            }
            let route = offload::Route::new(
                offload::Flow::new(local, remote),
                offload::Flow::new(remote, local),
                wc.session.clock_rate().unwrap_or(0),
                &wc.session.reception()?,
            );
            Some((key, route, to))
        });
        forwarding.or_else(|| {
            self.offload_relayers
                .get(&id)
                .is_some_and(|by| by.iter().any(|&other| other != id))
                .then(|| (key, offload::Route::link_only(), id))
        })
    }

    /// Gives channel `id` the route it should have now
    /// ([`Worker::offload_wanted`]), and the channels whose routes go by
    /// its own: the one it forwards to (or did), whose route holds the link
    /// its packets leave by, and those forwarding to it, whose routes send
    /// to its address.
    fn offload_sync(&mut self, id: u32) {
        let before = self
            .table
            .get(&id)
            .and_then(|wc| Some(wc.offloaded.as_ref()?.to));
        self.offload_sync_one(id);
        let after = self.table.get(&id).and_then(|wc| wc.relay_to);
        let mut others: Vec<u32> = before.into_iter().chain(after).collect();
        others.extend(self.offload_relayers.get(&id).into_iter().flatten());
        others.sort_unstable();
        others.dedup();
        for other in others {
            if other != id {
                self.offload_sync_one(other);
            }
        }
    }

    fn offload_sync_one(&mut self, id: u32) {
        let Some(offload) = self.offload.clone() else {
            return;
        };
        let wanted = self.offload_wanted(id);
        let Some(wc) = self.table.get_mut(&id) else {
            return;
        };
        let stale = std::mem::take(&mut wc.offload_stale);
        if let (Some(have), Some((key, route, to))) = (&wc.offloaded, &wanted)
            && !stale
            && have.key == *key
            && have.to == *to
            && have.route.same_as(route)
        {
            return;
        }
        if wc.offloaded.is_none() && wanted.is_none() {
            return;
        }
        // The old route's last counts go into the session before it seeds
        // the new one; the channel keeps its count slot, where a program
        // still holding the old route adds what it forwards.
        let old = self.offload_take_route(id);
        let wanted = self.offload_wanted(id);
        let (slot, folded) = match &old {
            Some((have, _)) => (have.slot, have.folded),
            None => match wanted.as_ref().and_then(|_| offload.take_slot()) {
                Some(slot) => (slot, offload::Counts::default()),
                None => return,
            },
        };
        let Some((key, mut route, to)) = wanted else {
            offload.give_back(slot);
            return;
        };
        if let Some((have, old)) = &old
            && have.key == key
        {
            route.keep_learnt(old);
        }
        route.slot = slot;
        let Some(wc) = self.table.get_mut(&id) else {
            offload.give_back(slot);
            return;
        };
        // A full map (65,536 routes) or a failing one leaves the relay to
        // the worker, as without the offload.
        if offload.install(&key, &route).is_err() {
            offload.give_back(slot);
            return;
        }
        self.offload_keys.insert(key, id);
        if !route.is_link_only() {
            self.offload_relayers.entry(to).or_default().push(id);
        }
        wc.offloaded = Some(Box::new(Offloaded {
            key,
            route,
            to,
            slot,
            folded,
            offload,
            clock_zero: self.shared.monotonic_zero,
        }));
    }

    /// Takes channel `id`'s route out of the kernel for good, folding in
    /// its last counts: its datagrams reach its socket again.
    fn offload_unroute(&mut self, id: u32) {
        if let Some((have, _)) = self.offload_take_route(id) {
            have.offload.give_back(have.slot);
        }
    }

    /// Takes channel `id`'s route out of the kernel, folding in its counts
    /// so far; returns it with its last state, and the channel's count
    /// slot with it.
    fn offload_take_route(&mut self, id: u32) -> Option<(Box<Offloaded>, offload::Route)> {
        let mut have = self.table.get_mut(&id)?.offloaded.take()?;
        self.offload_keys.remove(&have.key);
        if !have.route.is_link_only()
            && let Some(by) = self.offload_relayers.get_mut(&have.to)
        {
            by.retain(|&other| other != id);
            if by.is_empty() {
                // Its route may only have held the link for this one's:
                // looked at again after this change (a route taken out to
                // be seeded anew is back by then, and the link stays).
                self.offload_relayers.remove(&have.to);
                self.offload_dirty.push(have.to);
            }
        }
        // Gone already (it cannot be, but were it): the seed stands for
        // the session's state, and the counts are in the slot anyway.
        let route = have
            .offload
            .remove(&have.key)
            .ok()
            .flatten()
            .unwrap_or(have.route);
        self.offload_fold_route(id, &mut have, &route);
        Some((have, route))
    }

    /// Folds what the kernel counted on channel `id`'s route since the last
    /// fold into its statistics and session, and into its `relay-to`
    /// channel's sends.
    fn offload_fold(&mut self, id: u32) {
        let Some(key) = self
            .table
            .get(&id)
            .and_then(|wc| Some(wc.offloaded.as_ref()?.key))
        else {
            return;
        };
        if let Some(Ok(Some(route))) = self.offload.as_ref().map(|o| o.read(&key)) {
            self.offload_fold_with(id, &route);
        }
    }

    /// [`Worker::offload_fold`] with the route as read.
    fn offload_fold_with(&mut self, id: u32, route: &offload::Route) {
        let Some(mut have) = self.table.get_mut(&id).and_then(|wc| wc.offloaded.take()) else {
            return;
        };
        self.offload_fold_route(id, &mut have, route);
        if let Some(wc) = self.table.get_mut(&id) {
            wc.offloaded = Some(have);
        }
    }

    fn offload_fold_route(&mut self, id: u32, have: &mut Offloaded, route: &offload::Route) {
        let counts = have.offload.counts(have.slot);
        let packets = counts.packets.saturating_sub(have.folded.packets);
        if packets == 0 {
            return;
        }
        let octets = counts.octets.saturating_sub(have.folded.octets);
        let payload = counts
            .payload_octets
            .saturating_sub(have.folded.payload_octets);
        have.folded = counts;
        let to = self.table.get(&have.to).map(|p| p.channel.clone());
        let Some(wc) = self.table.get_mut(&id) else {
            return;
        };
        wc.session
            .fold_reception(packets, payload, &route.reception());
        // A move needs the target's silence from its last packet.
        if let Some(heard) = have.kernel_time(&counts) {
            wc.heard_at = wc.heard_at.max(heard);
        }
        {
            let write = wc.channel.write_stats();
            // What packets change, as after a batch the worker read.
            write.session_packets(&wc.session);
            write.bump(RELAYED, packets);
            write.bump(RELAYED_OFFLOADED, packets);
            write.bump(OCTETS_RECEIVED, octets);
            write.bump(PACKETS_RECEIVED, packets);
        }
        if let Some(to) = to {
            let write = to.write_stats();
            write.bump(OCTETS_SENT, octets);
            write.bump(PACKETS_SENT, packets);
        }
    }

    /// Applies what the element changed on channel `id` (see
    /// [`WorkerChannel::refresh`]) and files the channel anew where that
    /// moved its report deadline or its shared socket's routes.
    fn refresh(&mut self, id: u32) {
        let Some((slot, wc)) = self.table.slot_mut(id) else {
            return;
        };
        let before = wc.route_key();
        // The element changed something: the routes may follow.
        let rerouted = self.offload.is_some() && wc.channel.dirty.load(Ordering::Relaxed);
        if wc.refresh(self.now) {
            push_deadline(&mut self.deadlines, id, &wc.session);
        }
        reindex(&mut self.sockets, slot, wc, before);
        if rerouted {
            self.offload_dirty.push(id);
        }
    }

    /// Reads a channel's own socket (its RTCP one when `on_rtcp_socket`).
    fn receive(&mut self, id: u32, on_rtcp_socket: bool) {
        self.refresh(id);
        let Some(wc) = self.table.get_mut(&id) else {
            return;
        };
        let Some(rx) = (if on_rtcp_socket {
            wc.rtcp.as_ref()
        } else {
            wc.rtp.as_ref()
        }) else {
            return;
        };
        let fd = rx.socket.as_raw_fd();
        let (mut batch, mut failing, mut kernel_drops) = (rx.batch, rx.failing, rx.kernel_drops);
        // Epoll is level-triggered: what these reads leave is reported again
        // in the next round, so one busy socket cannot hold the others up.
        for _ in 0..READS_PER_EVENT {
            let asked = batch;
            let Some(n) = read_batch(&mut self.recv, fd, asked, &mut failing, |e| {
                self.handler.socket_error(&wc.channel, e)
            }) else {
                break;
            };
            // One arrival time per batch: the datagrams of one `recvmmsg`
            // were all waiting when it returned. Read per batch, not per
            // wake, as a wake serving thousands of sockets takes long enough
            // to show in the jitter.
            let now = self.shared.now();
            // A full read suggests more is waiting; a short one drained the
            // socket and tells how much to expect next time.
            batch = if n == batch {
                (n * 2).min(BATCH)
            } else {
                n.max(1)
            };
            self.accepted.clear();
            let mut tally = Tally::default();
            let drops_before = kernel_drops;
            for i in 0..n {
                if let Some(count) = self.recv.drops(i) {
                    kernel_drops = count;
                }
                let data = self.recv.datagram(i);
                match (self.recv.sender(i), self.recv.truncated(i)) {
                    (Some(from), false) => {
                        let took = wc.take(
                            data,
                            from,
                            on_rtcp_socket,
                            now,
                            &mut self.handler,
                            &mut tally,
                            &self.shared.channels,
                        );
                        if took == Took::Accepted {
                            self.accepted.push((i, from));
                        }
                    }
                    _ => tally.count(data, Took::NotRtp),
                }
            }
            // The count wraps at 2^32, so the difference does too.
            tally.kernel = u64::from(kernel_drops.wrapping_sub(drops_before));
            wc.finish_batch(
                &tally,
                &mut self.handler,
                Batch {
                    recv: &self.recv,
                    accepted: &self.accepted,
                },
            );
            if wc.offload_stale && self.offload.is_some() {
                self.offload_dirty.push(id);
            }
            // A short read emptied the socket.
            if n < asked {
                break;
            }
        }
        let rx = if on_rtcp_socket {
            wc.rtcp.as_mut()
        } else {
            wc.rtp.as_mut()
        };
        if let Some(rx) = rx {
            (rx.batch, rx.failing, rx.kernel_drops) = (batch, failing, kernel_drops);
        }
    }

    /// Reads shared socket `number` and hands each datagram to the channel
    /// it belongs to ([`SharedSocket::route`]); one that belongs to none is
    /// dropped and counted (`dropped-unknown-source`).
    fn receive_shared(&mut self, number: usize) {
        let Worker {
            sockets,
            table,
            recv,
            handler,
            accepted,
            routed,
            shared,
            backlog,
            notify,
            offload_dirty,
            offload,
            ..
        } = self;
        let Some(ss) = sockets.get_mut(&number) else {
            return;
        };
        let fd = ss.rx.socket.as_raw_fd();
        let mut failing = ss.rx.failing;
        let mut drained = false;
        let (mut full, mut datagrams, mut bytes) = (false, 0, 0);
        let drops_before = ss.rx.kernel_drops;
        let per_datagram = ss.drops == DropCount::PerDatagram;
        for _ in 0..SHARED_READS_PER_EVENT {
            // What is left is read again at once, after the command or
            // update (it may change this socket's routes).
            if notify.commands_pending.load(Ordering::Acquire)
                || notify.has_updates.load(Ordering::Acquire)
            {
                break;
            }
            // Always a full batch: with many streams behind it, a read that
            // came back short says little about the next one, and
            // `recvmmsg` returns what is there without waiting.
            let asked = SHARED_BATCH;
            // A shared socket's error concerns all its channels: it is
            // told as the first one's.
            let Some(n) = read_batch(recv, fd, asked, &mut failing, |e| {
                if let Some(wc) = table.values().find(|wc| wc.shared == Some(number)) {
                    handler.socket_error(&wc.channel, e);
                }
            }) else {
                break;
            };
            let now = shared.now();
            (full, datagrams) = (full || n == asked, datagrams + n);
            routed.clear();
            let mut ssrcs = [None; SHARED_BATCH];
            for (i, ssrc) in ssrcs.iter_mut().enumerate().take(n) {
                *ssrc = ss.prefetch_route(recv.datagram(i));
            }
            let mut unknown = 0;
            for (i, &ssrc) in ssrcs.iter().enumerate().take(n) {
                if per_datagram && let Some(count) = recv.drops(i) {
                    ss.rx.kernel_drops = count;
                }
                let data = recv.datagram(i);
                bytes += data.len();
                // The source is converted once: routing and the channel both
                // need it.
                let from = recv.sender(i);
                match from.and_then(|from| Some((ss.route(data, from, ssrc)?, from))) {
                    Some((slot, from)) => {
                        table.prefetch_slot(slot);
                        routed.push((slot, i, from));
                    }
                    None => unknown += 1,
                }
            }
            shared.unknown_source.fetch_add(unknown, Ordering::Relaxed);
            // Each channel's datagrams together, in the order they came.
            routed.sort_by_key(|&(slot, _, _)| slot);
            for &(slot, _, _) in routed.iter() {
                table.prefetch_state(slot);
            }
            for group in routed.chunk_by(|a, b| a.0 == b.0) {
                let slot = group[0].0;
                let Some(wc) = table.at_mut(slot) else {
                    continue;
                };
                accepted.clear();
                let mut tally = Tally::default();
                for &(_, i, from) in group {
                    let data = recv.datagram(i);
                    if recv.truncated(i) {
                        tally.count(data, Took::NotRtp);
                        continue;
                    }
                    let took = wc.take(
                        data,
                        from,
                        false,
                        now,
                        handler,
                        &mut tally,
                        &shared.channels,
                    );
                    if took == Took::Accepted {
                        accepted.push((i, from));
                    }
                }
                wc.finish_batch(&tally, handler, Batch { recv, accepted });
                if wc.offload_stale && offload.is_some() {
                    offload_dirty.push(wc.channel.id);
                }
                // Of what the routes go by, receiving changes only the
                // target, by latching (the SSRCs change on sends and
                // settings): it may have latched the source it matched by
                // SSRC.
                if let Some(target) = wc.moved_from.take()
                    && target != wc.remote
                {
                    let key = wc.route_key();
                    let before = RouteKey {
                        remote: target,
                        ..key
                    };
                    ss.reindex(slot, before, key);
                }
            }
            if n < asked {
                drained = true;
                break;
            }
        }
        if datagrams > 0 && ss.may_have_dropped(full, datagrams, bytes) {
            ss.read_drops();
        }
        let dropped = ss.rx.kernel_drops.wrapping_sub(drops_before);
        if dropped > 0 {
            shared
                .shared_kernel_drops
                .fetch_add(u64::from(dropped), Ordering::Relaxed);
        }
        ss.rx.failing = failing;
        // Errors and would-block end the reads too; only full reads leave
        // a backlog.
        *backlog |= !drained && !failing;
    }

    /// Sends at most one batch per pending channel, and about
    /// [`SENDS_PER_ROUND`] packets in all, so a flood of sends never keeps
    /// the worker from reading: channels with more queued go back on the
    /// list for the next round, and those not reached stay on it. Returns
    /// true when some did. The channels are those in `self.pending`.
    /// Packets of channels on a shared socket go out together, after the
    /// others ([`Worker::flush_shared`]).
    fn send_pending(&mut self, out: &mut Vec<Out<Bytes<H>>>) -> bool {
        let mut more = false;
        let mut budget = SENDS_PER_ROUND;
        let mut done = 0;
        for k in 0..3 * SEND_STEP {
            if let Some(slot) = self.pending_slot(k) {
                self.table.prefetch_slot(slot);
            }
        }
        while done < self.pending.len() && budget > 0 {
            let id = self.pending[done];
            self.prefetch_pending(done);
            done += 1;
            // Cleared before popping: a packet queued from now on schedules
            // the channel again.
            match self.table.get(&id) {
                Some(wc) => wc.channel.scheduled.store(false, Ordering::Release),
                None => continue,
            }
            let taken = self.send_batch(id, out);
            more |= taken == BATCH;
            budget = budget.saturating_sub(taken);
        }
        // The channels the budget left out stay scheduled, first in line
        // for the next round.
        self.pending.drain(..done);
        more |= !self.pending.is_empty();
        out.clear();
        self.flush_shared();
        more
    }

    /// Asks for the lines that sending the pending channels after the
    /// `next`th will read. Each channel's state is cold (touched once per
    /// packet interval, thousands of channels apart), and each step needs
    /// what the one before loaded: the table slot's own lines
    /// [`SEND_STEP`] × 3 channels ahead, the [`Channel`]'s × 2 (the slot
    /// holds its address), the queue's next slot × 1 (the channel holds its
    /// position). So the misses of several channels overlap instead of
    /// queueing up one after the other.
    fn prefetch_pending(&self, next: usize) {
        if let Some(slot) = self.pending_slot(next + 3 * SEND_STEP) {
            self.table.prefetch_slot(slot);
        }
        if let Some(slot) = self.pending_slot(next + 2 * SEND_STEP) {
            self.table.prefetch_channel(slot);
        }
        if let Some(slot) = self.pending_slot(next + SEND_STEP) {
            self.table.prefetch_queue(slot);
        }
    }

    /// The table slot of the `k`th pending channel, if any.
    fn pending_slot(&self, k: usize) -> Option<usize> {
        self.table.slot(*self.pending.get(k)?)
    }

    /// Sends one batch of channel `id`'s queued packets (its shared
    /// socket's go to [`Worker::shared_out`]); returns how many it took from
    /// the queues: a full [`BATCH`] means more may wait (the channel is then
    /// scheduled again, unless a sender already did).
    fn send_batch(&mut self, id: u32, out: &mut Vec<Out<Bytes<H>>>) -> usize {
        let now = self.now;
        let taken;
        // A target set just before these packets were queued applies to
        // them.
        self.refresh(id);
        {
            let Some(wc) = self.table.get_mut(&id) else {
                return 0;
            };
            let ch = &wc.channel;
            out.clear();
            let mut unreadable = 0;
            while out.len() + unreadable < BATCH {
                match ch.queue.pop() {
                    Some(p) => match p.into_bytes() {
                        Some(bytes) => out.push(Out::Sink(bytes)),
                        None => unreadable += 1,
                    },
                    None => break,
                }
            }
            while out.len() + unreadable < BATCH {
                match ch.relay_queue.pop() {
                    Some(p) => out.push(Out::Relayed(p)),
                    None => break,
                }
            }
            taken = out.len() + unreadable;
            if unreadable > 0 {
                ch.write_stats().bump(SEND_ERRORS, unreadable as u64);
            }
            if taken == BATCH && !ch.scheduled.swap(true, Ordering::AcqRel) {
                lock(&self.notify.pending).push(id);
            }
            // Relayed RTCP of a channel with an RTCP socket goes out there.
            if wc.mode == RtcpMode::PortPlusOne {
                let rtcp_target = wc.rtcp_target();
                out.retain(|p| match p {
                    Out::Relayed(data) if rtp::is_rtcp(data) => {
                        match rtcp_target {
                            Some(target) => send_rtcp(&mut self.send, wc, data, target),
                            None => wc.channel.write_stats().bump(SEND_ERRORS, 1),
                        }
                        false
                    }
                    _ => true,
                });
            }
            let Some(remote) = wc.remote else {
                wc.channel.write_stats().bump(SEND_ERRORS, out.len() as u64);
                return taken;
            };
            let target = target_for(wc.channel.local, remote);
            if let Some(number) = wc.shared {
                self.shared_out
                    .extend(out.drain(..).map(|p| (number, id, p, target)));
                return taken;
            }
            let mut at = 0;
            while at < out.len() {
                let (sent, err) = self
                    .send
                    .send(wc.fd, out[at..].iter().map(|p| (p.as_ref(), target)));
                wc.count_sent(&out[at..at + sent], now);
                at += sent;
                if err.is_some() {
                    // The packet the kernel refused is counted and skipped;
                    // the rest of the batch is tried again.
                    wc.channel.write_stats().bump(SEND_ERRORS, 1);
                    at += 1;
                }
            }
        }
        taken
    }

    /// Sends what channels on shared sockets queued this round: per socket,
    /// in `sendmmsg` calls of up to [`SHARED_BATCH`] messages, each to its
    /// channel's target.
    fn flush_shared(&mut self) {
        let Worker {
            shared_out,
            sockets,
            table,
            send,
            now,
            ..
        } = self;
        // Stable: each channel's packets stay in order.
        shared_out.sort_by_key(|m| m.0);
        for group in shared_out.chunk_by(|a, b| a.0 == b.0) {
            let fd = sockets.get(&group[0].0).map(|ss| ss.rx.socket.as_raw_fd());
            for chunk in group.chunks(SHARED_BATCH) {
                let Some(fd) = fd else {
                    for (_, id, _, _) in chunk {
                        if let Some(wc) = table.get(id) {
                            wc.channel.write_stats().bump(SEND_ERRORS, 1);
                        }
                    }
                    continue;
                };
                let mut at = 0;
                while at < chunk.len() {
                    let (sent, err) = send.send(
                        fd,
                        chunk[at..].iter().map(|(_, _, p, to)| (p.as_ref(), *to)),
                    );
                    for (number, id, p, _) in &chunk[at..at + sent] {
                        if let Some((slot, wc)) = table.slot_mut(*id) {
                            let before = wc.route_key();
                            wc.count_sent(std::slice::from_ref(p), *now);
                            // Sending under a new SSRC moves what RTCP
                            // reports on: rare, so the routes are looked at
                            // only then.
                            if before.local_ssrc != Some(wc.session.local_ssrc())
                                && let Some(ss) = sockets.get_mut(number)
                            {
                                ss.reindex(slot, before, wc.route_key());
                            }
                        }
                    }
                    at += sent;
                    if err.is_some() {
                        if let Some(wc) = table.get(&chunk[at].1) {
                            wc.channel.write_stats().bump(SEND_ERRORS, 1);
                        }
                        at += 1;
                    }
                }
            }
        }
        shared_out.clear();
    }
}

/// A packet on its way out: given to `sink_N`, or relayed from another
/// channel.
enum Out<P> {
    Sink(P),
    Relayed(Box<[u8]>),
}

impl<P: AsRef<[u8]>> AsRef<[u8]> for Out<P> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Out::Sink(p) => p.as_ref(),
            Out::Relayed(data) => data,
        }
    }
}

impl<H: Handler> WorkerChannel<H> {
    /// Counts packets the kernel took from this channel. What the peer will
    /// report on is the session's: RTP given to `sink_N` (a user may pass
    /// RTCP through it too; relayed packets are another source's).
    fn count_sent(&mut self, sent: &[Out<Bytes<H>>], now: u64) {
        let ssrc = self.session.local_ssrc();
        let mut session_changed = false;
        let mut octets = 0;
        for p in sent {
            let bytes = p.as_ref();
            octets += bytes.len() as u64;
            if let Out::Sink(_) = p
                && !rtp::is_rtcp(bytes)
                && let Ok(packet) = rtp::Packet::parse(bytes)
            {
                self.session.handle_sent_rtp(&packet, now);
                session_changed = true;
            }
        }
        let write = self.channel.write_stats();
        if self.session.local_ssrc() != ssrc {
            // Our new SSRC restarts the send counts and what the peer said.
            write.session(&self.session);
        } else if session_changed {
            write.session_packets(&self.session);
        }
        write.bump(PACKETS_SENT, sent.len() as u64);
        write.bump(OCTETS_SENT, octets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::tests::Behind;
    use crate::rtp::{Extras, Header, write_packet};
    use std::net::UdpSocket;
    use std::sync::mpsc::{Receiver, Sender, channel};

    type Got = (u32, Vec<u8>, SocketAddr);

    #[derive(Default, Clone)]
    struct Collect {
        tx: Option<Sender<Got>>,
        /// (channel, SSRC) of each BYE.
        byes: Option<Sender<(u32, u32)>>,
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
        fn bye_received(&mut self, channel: &Channel<Vec<u8>, ()>, ssrc: u32) {
            if let Some(byes) = &self.byes {
                let _ = byes.send((channel.id(), ssrc));
            }
        }
    }

    fn server() -> (Server<Collect>, Receiver<Got>) {
        server_with_tick(Duration::ZERO)
    }

    fn server_with_tick(tick: Duration) -> (Server<Collect>, Receiver<Got>) {
        server_with_workers(1, tick)
    }

    /// A server of `workers` workers whose handlers send what they receive
    /// to the receiver returned.
    fn server_with_workers(workers: usize, tick: Duration) -> (Server<Collect>, Receiver<Got>) {
        let (tx, rx) = channel();
        let collect = Collect {
            tx: Some(tx),
            byes: None,
        };
        (
            Server::start_workers(vec![collect; workers], tick).unwrap(),
            rx,
        )
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

    /// The routes give what the rules of [`SharedSocket::route`] say,
    /// whether a datagram is found by its SSRC and source together (the
    /// usual case, no address hashed) or by the rules one after the other,
    /// also after a channel's target moves.
    #[test]
    fn shared_routes_follow_the_rules_with_and_without_the_ssrc_shortcut() {
        let rtp = |ssrc: u32| {
            let mut out = vec![0; 172];
            let h = Header {
                ssrc,
                ..Default::default()
            };
            let n = write_packet(&mut out, &h, &Extras::default(), &[0; 160]).unwrap();
            out.truncate(n);
            out
        };
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 2], port));
        let (a1, a2, peer, a5) = (addr(1000), addr(2000), addr(3000), addr(5000));
        let mut ss = SharedSocket::new(
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            DropCount::PerDatagram,
        );
        let key = |remote, remote_ssrc| RouteKey {
            remote: Some(remote),
            remote_ssrc,
            local_ssrc: None,
        };
        ss.reindex(1, RouteKey::default(), key(a1, Some(100)));
        ss.reindex(2, RouteKey::default(), key(a2, Some(200)));
        // Two channels with one peer's shared port as their target.
        ss.reindex(3, RouteKey::default(), key(peer, Some(300)));
        ss.reindex(4, RouteKey::default(), key(peer, Some(400)));
        assert_eq!(ss.route_of(&rtp(100), a1), Some(1));
        // From 1's target, but 2's SSRC, which 1 does not expect: 2's.
        assert_eq!(ss.route_of(&rtp(200), a1), Some(2));
        assert_eq!(ss.route_of(&rtp(300), peer), Some(3));
        assert_eq!(ss.route_of(&rtp(400), peer), Some(4));
        // An SSRC nobody expects from an address of one channel: its peer
        // changed SSRC. From an address of two, nobody's.
        assert_eq!(ss.route_of(&rtp(999), a2), Some(2));
        assert_eq!(ss.route_of(&rtp(999), peer), None);
        assert_eq!(ss.route_of(&rtp(999), a5), None);
        // Channel 1's peer moves to a5: found there, and by its SSRC still
        // from the old address, which is nobody's target now.
        ss.reindex(1, key(a1, Some(100)), key(a5, Some(100)));
        assert_eq!(ss.route_of(&rtp(100), a5), Some(1));
        assert_eq!(ss.route_of(&rtp(100), a1), Some(1));
        assert_eq!(ss.route_of(&rtp(999), a1), None);
        assert_eq!(ss.route_of(&rtp(999), a5), Some(1));
        // IPv6 sources are keys of their own.
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 1000));
        ss.reindex(5, RouteKey::default(), key(v6, None));
        assert_eq!(ss.route_of(&rtp(999), v6), Some(5));
        assert_eq!(ss.route_of(&rtp(999), a1), None);
        // A channel that expects no SSRC takes all from its target, even
        // an SSRC another channel expects.
        assert_eq!(ss.route_of(&rtp(200), v6), Some(5));
    }

    fn loopback() -> ChannelConfig {
        ChannelConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        }
    }

    /// A loopback channel that sends to `sink`, with a queue of `queue_size`.
    fn sending_to(sink: &UdpSocket, queue_size: u32) -> ChannelConfig {
        ChannelConfig {
            remote: Some(sink.local_addr().unwrap()),
            queue_size,
            ..loopback()
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
    /// so the socket's receive buffer fills up behind it; after that, sends
    /// each batch handed on to `batches`, when given: its channel and its
    /// packets' sequence numbers.
    struct Stall {
        go: Option<Receiver<()>>,
        batches: Option<Sender<(u32, Vec<u16>)>>,
    }

    impl Stall {
        fn new(go: Receiver<()>) -> Self {
            Stall {
                go: Some(go),
                batches: None,
            }
        }
    }

    impl Handler for Stall {
        type Packet = Vec<u8>;
        type Attachment = ();
        fn received(&mut self, channel: &Channel<Vec<u8>, ()>, batch: Batch<'_>) {
            if let Some(go) = self.go.take() {
                let _ = go.recv_timeout(Duration::from_secs(10));
            } else if let Some(batches) = &self.batches {
                let seqs = batch
                    .iter()
                    .map(|(data, _)| u16::from_be_bytes([data[2], data[3]]))
                    .collect();
                let _ = batches.send((channel.id(), seqs));
            }
        }
        fn socket_error(&mut self, _: &Channel<Vec<u8>, ()>, _: io::Error) {}
    }

    /// A packet whose bytes the worker may fail to get, as a buffer that
    /// cannot be mapped.
    struct Unreadable(Option<Vec<u8>>);

    impl Outgoing for Unreadable {
        type Bytes = Vec<u8>;

        fn into_bytes(self) -> Option<Vec<u8>> {
            self.0
        }
    }

    struct Ignore;

    impl Handler for Ignore {
        type Packet = Unreadable;
        type Attachment = ();
        fn received(&mut self, _: &Channel<Unreadable, ()>, _: Batch<'_>) {}
        fn socket_error(&mut self, _: &Channel<Unreadable, ()>, _: io::Error) {}
    }

    /// A queued packet whose bytes cannot be had is counted under
    /// `send-errors`, and the packets around it go out, in order, on a
    /// socket of its own and on a shared one.
    #[test]
    fn a_packet_without_bytes_is_a_send_error_and_the_rest_go_out() {
        let srv = Server::start(Ignore, Duration::ZERO).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let own = ChannelConfig {
            remote: Some(peer.local_addr().unwrap()),
            latch: false,
            ..loopback()
        };
        let shared = ChannelConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            shared_socket: true,
            ..own
        };
        for (id, cfg) in [own, shared].into_iter().enumerate() {
            let ch = srv.add_channel(id as u32, cfg, ()).unwrap();
            let queued =
                ch.send_all((0..6).map(|seq| Unreadable((seq % 3 != 1).then(|| packet(seq)))));
            assert_eq!(queued, 6);
            for seq in [0, 2, 3, 5] {
                assert_eq!(recv_from(&peer).0, packet(seq));
            }
            // The counts are published after the send returns.
            assert!(wait_for(|| {
                let s = ch.stats();
                s[SEND_ERRORS] == 2 && s[PACKETS_SENT] == 4
            }));
        }
    }

    /// A channel of the shared socket at `bind` that expects `ssrc`.
    fn shared_member(bind: SocketAddr, ssrc: u32) -> ChannelConfig {
        ChannelConfig {
            bind,
            shared_socket: true,
            remote_ssrc: Some(ssrc),
            ..loopback()
        }
    }

    /// A member that joins a shared socket gets the datagrams its peer
    /// sends right after the join, although a paced worker sees the join
    /// and those datagrams in one wake.
    #[test]
    fn a_channel_joining_a_shared_socket_gets_datagrams_sent_after_the_join() {
        // Long paced rounds: the worker finds the join (within a pause
        // slice) with the datagram already waiting.
        let (server, rx) = server_with_tick(Duration::from_millis(100));
        let port = server
            .add_channel(0, shared_member(loopback().bind, 0x1234), ())
            .unwrap()
            .local_addr();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let id = round + 1;
            let ssrc = 0x5000 + round;
            server
                .add_channel(id, shared_member(port, ssrc), ())
                .unwrap();
            peer.send_to(&packet_from(1, ssrc), port).unwrap();
            let (got, _, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(got, id, "round {round}");
            // A new source for the next channel: this one latched `peer`.
            server.remove_channel(id, Duration::from_secs(2));
        }
        assert_eq!(server.dropped_unknown_source(), 0);
    }

    /// The same when the worker is in the middle of reading the shared
    /// socket: it stops reading for the join.
    #[test]
    fn a_channel_joining_a_shared_socket_mid_read_gets_datagrams_sent_after_the_join() {
        let (go_tx, go_rx) = channel();
        let server = Server::start(Stall::new(go_rx), Duration::ZERO).unwrap();
        let first = server
            .add_channel(0, shared_member(loopback().bind, 0x1234), ())
            .unwrap();
        let port = first.local_addr();
        let (p0, p1) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        // More than one read: the worker stalls in the first full batch's
        // `received`, with more to read behind it.
        let sent = SHARED_BATCH as u64 + 6;
        for seq in 0..sent {
            p0.send_to(&packet_from(seq as u16, 0x1234), port).unwrap();
        }
        assert!(wait_for(|| first.stats()[PACKETS_RECEIVED] > 0));
        let second = server
            .add_channel(1, shared_member(port, 0x5678), ())
            .unwrap();
        p1.send_to(&packet_from(1, 0x5678), port).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        go_tx.send(()).unwrap();
        assert!(
            wait_for(|| second.stats()[PACKETS_RECEIVED] == 1),
            "unknown source: {}",
            server.dropped_unknown_source()
        );
        assert!(wait_for(|| first.stats()[PACKETS_RECEIVED] == sent));
        assert_eq!(server.dropped_unknown_source(), 0);
    }

    /// One read of a shared socket hands each channel its datagrams as one
    /// batch (one buffer list on its `src_N`), in the order they came,
    /// although they came interleaved with other channels'.
    #[test]
    fn a_shared_read_hands_each_channel_its_datagrams_as_one_batch_in_order() {
        let (go_tx, go_rx) = channel();
        let (tx, rx) = channel();
        let server = Server::start(
            Stall {
                go: Some(go_rx),
                batches: Some(tx),
            },
            Duration::ZERO,
        )
        .unwrap();
        let ssrcs = [0x1111, 0x2222, 0x3333];
        let first = server
            .add_channel(0, shared_member(loopback().bind, ssrcs[0]), ())
            .unwrap();
        let port = first.local_addr();
        for (id, &ssrc) in (1..).zip(&ssrcs[1..]) {
            server
                .add_channel(id, shared_member(port, ssrc), ())
                .unwrap();
        }
        let peers: Vec<_> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let send = |channel: usize, seq: u16| {
            peers[channel]
                .send_to(&packet_from(seq, ssrcs[channel]), port)
                .unwrap();
        };
        // The worker stalls in this one's `received` (its count is
        // published before); what follows waits in the socket and comes in
        // the next read, all of it.
        send(0, 99);
        assert!(wait_for(|| first.stats()[PACKETS_RECEIVED] == 1));
        for (channel, seq) in [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)] {
            send(channel, seq);
        }
        go_tx.send(()).unwrap();
        let mut got: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [(0, vec![0, 1, 2]), (1, vec![0, 1]), (2, vec![0])]);
        // One datagram each: one batch each.
        for (channel, seq) in [(2, 1), (0, 3), (1, 2)] {
            send(channel, seq);
        }
        let mut got: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [(0, vec![3]), (1, vec![2]), (2, vec![1])]);
        assert!(rx.try_recv().is_err());
        assert_eq!(server.dropped_unknown_source(), 0);
    }

    /// A member of a shared socket given its `remote-ssrc` while running
    /// gets the datagrams its peer sends right after, although a paced
    /// worker sees the change and those datagrams in one wake.
    #[test]
    fn a_shared_member_given_its_remote_ssrc_gets_datagrams_sent_after() {
        let (server, rx) = server_with_tick(Duration::from_millis(100));
        let first = server
            .add_channel(0, shared_member(loopback().bind, 0x1234), ())
            .unwrap();
        let port = first.local_addr();
        let member = server
            .add_channel(
                1,
                ChannelConfig {
                    remote_ssrc: None,
                    ..shared_member(port, 0)
                },
                (),
            )
            .unwrap();
        for round in 0..5 {
            let ssrc = 0x7000 + round;
            // A new peer each time: the member latched the last one.
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            member.set_remote(None);
            member.set_remote_ssrc(Some(ssrc));
            peer.send_to(&packet_from(1, ssrc), port).unwrap();
            let (got, _, from) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                (got, from),
                (1, peer.local_addr().unwrap()),
                "round {round}"
            );
        }
        assert_eq!(server.dropped_unknown_source(), 0);
    }

    #[test]
    fn datagrams_the_kernel_drops_are_counted() {
        let (_server, ch, sender, total) = overflow(loopback(), 0x1234, 2_000);
        // Drops are learnt with the next datagram delivered after them.
        sender.send_to(&packet(2), ch.local_addr()).unwrap();
        let total = total + 1;
        let accounted = || {
            let s = ch.stats();
            s[PACKETS_RECEIVED] + s[DROPPED_KERNEL] == total
        };
        assert!(wait_for(accounted), "{:?}", ch.stats());
        let s = ch.stats();
        assert!(s[DROPPED_KERNEL] > 0, "the buffer never overflowed: {s:?}");
        assert!(s[PACKETS_RECEIVED] > 2, "{s:?}");
    }

    thread_local! {
        /// Makes the shared sockets this thread opens count their drops
        /// as where the kernel does not answer `SO_MEMINFO`.
        pub(super) static NO_MEMINFO: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A shared socket's drops are read after the reads that follow them,
    /// and counted at server level: they belong to no channel.
    #[test]
    fn datagrams_the_kernel_drops_on_a_shared_socket_are_counted() {
        shared_socket_drops_are_counted(false);
    }

    /// The same without `SO_MEMINFO`: the count comes with the next
    /// datagram after the drops, as on a channel's own socket.
    #[test]
    fn without_so_meminfo_a_shared_socket_counts_its_drops_from_the_datagrams() {
        NO_MEMINFO.set(true);
        shared_socket_drops_are_counted(true);
    }

    /// Overflows a shared socket, then sends one more datagram when
    /// `trailer`, and checks that every datagram was received or counted.
    fn shared_socket_drops_are_counted(trailer: bool) {
        let ssrc = 0x4242;
        // Past the shared socket's enlarged buffer (16 MiB as the kernel
        // counts it when the process may force it).
        let config = shared_member(loopback().bind, ssrc);
        let (server, ch, sender, mut total) = overflow(config, ssrc, 30_000);
        let kernel = || server.totals(&server.channel_stats())[DROPPED_KERNEL];
        // A trailer sent while the worker still drains a full socket is
        // dropped too: another follows until one gets in and brings the count.
        for seq in 2..100 {
            if !trailer || ch.stats()[PACKETS_RECEIVED] + kernel() == total {
                break;
            }
            let next = packet_from(seq, ssrc);
            sender.send_to(&next, ch.local_addr()).unwrap();
            total += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            wait_for(|| ch.stats()[PACKETS_RECEIVED] + kernel() == total),
            "{} received, {} dropped of {total}",
            ch.stats()[PACKETS_RECEIVED],
            kernel()
        );
        assert!(kernel() > 0, "the buffer never overflowed");
        assert_eq!(ch.stats()[DROPPED_KERNEL], 0, "not the channel's");
        assert_eq!(server.dropped_unknown_source(), 0);
    }

    /// A channel of `config` whose worker stalls on the first datagram
    /// while `flood` more (of `ssrc`, 1,400 bytes) overflow the socket's
    /// receive buffer, so that the kernel drops some; then the worker goes
    /// on. Returns the server, the channel, the sender and the datagrams
    /// sent.
    fn overflow(
        config: ChannelConfig,
        ssrc: u32,
        flood: u64,
    ) -> (Server<Stall>, ChannelRef<Stall>, UdpSocket, u64) {
        let (go_tx, go_rx) = channel();
        let server = Server::start(Stall::new(go_rx), Duration::ZERO).unwrap();
        let ch = server.add_channel(0, config, ()).unwrap();
        let to = ch.local_addr();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut big = packet_from(1, ssrc);
        big.resize(1400, 0xff);
        sender.send_to(&big, to).unwrap();
        assert!(wait_for(|| ch.stats()[PACKETS_RECEIVED] == 1));
        for _ in 0..flood {
            sender.send_to(&big, to).unwrap();
        }
        go_tx.send(()).unwrap();
        (server, ch, sender, 1 + flood)
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
        // A datagram from an IPv4 peer to a dual-stack socket.
        let mut ss = unsafe { zeroed() };
        to_sockaddr("[::ffff:10.0.0.1]:5".parse().unwrap(), &mut ss);
        assert_eq!(from_sockaddr(&ss), Some("10.0.0.1:5".parse().unwrap()));
        assert_eq!(
            canonical("[::ffff:10.0.0.1]:5".parse().unwrap()),
            "10.0.0.1:5".parse().unwrap()
        );
    }

    #[test]
    fn a_table_keeps_each_entry_in_its_slot_and_reuses_the_freed_ones() {
        let mut t = Table::default();
        for id in [7, 3, 9] {
            t.insert(id, format!("ch{id}"));
        }
        let slots: Vec<_> = [7, 3, 9].iter().map(|&id| t.slot(id).unwrap()).collect();
        assert_eq!(slots, [0, 1, 2]);
        assert_eq!(t.remove(&3), Some((1, "ch3".to_string())));
        assert_eq!(t.remove(&3), None);
        assert!(!t.contains_key(&3) && t.get(&3).is_none() && t.slot(3).is_none());
        assert_eq!(t.at(1), None, "a freed slot holds nothing");
        t.insert(4, "ch4".into());
        assert_eq!(t.slot(4), Some(1), "the freed slot is taken again");
        t.get_mut(&9).unwrap().push('!');
        assert_eq!(t.at(2).map(String::as_str), Some("ch9!"));
        assert_eq!(t.at_mut(0).map(|s| s.as_str()), Some("ch7"));
        let mut ids: Vec<u32> = t.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, [4, 7, 9]);
        let mut values: Vec<&str> = t.values().map(String::as_str).collect();
        values.sort_unstable();
        assert_eq!(values, ["ch4", "ch7", "ch9!"]);
    }

    #[test]
    fn what_a_received_packet_reads_of_its_channel_fills_two_cache_lines() {
        use std::mem::offset_of;
        type Wc = WorkerChannel<Collect>;
        assert_eq!(align_of::<Wc>(), 64);
        // Table::prefetch_state reads these two in the line it loads first.
        assert!(offset_of!(Wc, channel) + 8 <= 64);
        assert!(offset_of!(Wc, receive_hint) + 8 <= 64);
        let ends = [
            offset_of!(Wc, remote) + size_of::<Option<SocketAddr>>(),
            offset_of!(Wc, heard_at) + 8,
            offset_of!(Wc, relay_to) + size_of::<Option<u32>>(),
            offset_of!(Wc, mode) + size_of::<RtcpMode>(),
            offset_of!(Wc, latch_rules) + size_of::<Latch>(),
        ];
        for end in ends {
            assert!(end <= 128, "{ends:?}");
        }
        // The session lies in the slot, from a cache line, where
        // Table::prefetch_slot finds it without reading the slot.
        assert_eq!(offset_of!(Wc, session) % 64, 0);
        assert_eq!(size_of::<Option<Wc>>(), size_of::<Wc>(), "a niche");
    }

    #[test]
    fn each_column_has_a_cell_and_what_a_packet_changes_fills_two_cache_lines() {
        let mut cells = CELL.to_vec();
        cells.sort_unstable();
        assert_eq!(cells, (0..NSTATS).collect::<Vec<_>>());
        let first = std::mem::offset_of!(StatsCells, cells);
        let packet = SessionStats::PACKET_COLUMNS;
        let hot = [PACKETS_RECEIVED, OCTETS_RECEIVED]
            .into_iter()
            .chain(NCOUNTERS + packet.start..NCOUNTERS + packet.end);
        for column in hot {
            assert!(first + 8 * CELL[column] < 128, "{}", stats_name(column));
        }
        assert_eq!(std::mem::offset_of!(StatsCells, version), 0);
        assert_eq!(std::mem::align_of::<StatsCells>(), 64);
        assert!(
            first + 8 * CELL[DROPPED_QUEUE_FULL] >= 128,
            "other threads bump it"
        );
        // What the worker and the handler read of a channel for each packet
        // comes before the statistics, in the line before them.
        type Ch = Channel<Vec<u8>, Arc<()>>;
        assert_eq!(std::mem::offset_of!(Ch, stats), 64);
        assert!(std::mem::offset_of!(Ch, local) + size_of::<SocketAddr>() <= 64);
        // Through the cells, every column reads back as written.
        let stats = StatsCells::new();
        let write = stats.write();
        for column in 0..NSTATS {
            write.set(column, 1000 + column as u64);
        }
        drop(write);
        let mut row = [0; NSTATS];
        stats.read_into(&mut row);
        for (column, value) in row.iter().enumerate() {
            assert_eq!(*value, 1000 + column as u64, "{}", stats_name(column));
        }
    }

    #[test]
    fn packed_layout_has_header_row() {
        let mut row = [0u64; NSTATS];
        row[PACKETS_RECEIVED] = 7;
        let lost = session_col("packets-lost");
        row[lost] = (-2i64) as u64;
        let bytes = packed_stats(&[(3, row)]);
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ncols = NSTATS + 1;
        assert_eq!(words.len(), 2 * ncols);
        assert_eq!(&words[..3], &[PACKED_STATS_VERSION, ncols as u64, 1]);
        assert_eq!(PACKED_STATS_VERSION, 5);
        assert_eq!(words[ncols], 3);
        assert_eq!(words[ncols + 1 + PACKETS_RECEIVED], 7);
        assert_eq!(words[ncols + 1 + lost] as i64, -2, "two's complement");
        let columns = packed_columns();
        assert_eq!(columns.len(), ncols);
        assert_eq!(columns[1 + LOCAL_PORT], "local-port");
        assert_eq!(columns[2 + LOCAL_PORT], "relayed");
        assert_eq!(columns[3 + LOCAL_PORT], "not-relayed");
        assert_eq!(columns[4 + LOCAL_PORT], "relayed-offloaded");
        assert_eq!(columns[5 + LOCAL_PORT], "local-ssrc", "the session's after");
        for (i, name) in columns[1..].iter().enumerate() {
            assert!(!columns[..i + 1].contains(name), "{name} twice");
            assert_eq!(stats_name(i), *name);
        }
        assert_eq!(stats_kind(lost), StatKind::I64);
        assert_eq!(stats_kind(PACKETS_RECEIVED), StatKind::U64);
    }

    #[test]
    fn totals_sum_counts_only_and_signed_ones_as_signed() {
        let mut a = [0u64; NSTATS];
        let mut b = [0u64; NSTATS];
        let lost = session_col("packets-lost");
        let (rtt, remote) = (session_col("rtt-us"), session_col("remote-ssrc"));
        a[lost] = 5;
        b[lost] = (-7i64) as u64;
        a[RTCP_SENT] = 2;
        b[RTCP_SENT] = 3;
        a[rtt] = 1000;
        b[rtt] = session::UNKNOWN;
        b[remote] = 0x1234;
        let mut sum = [0u64; NSTATS];
        add_into(&mut sum, &a);
        add_into(&mut sum, &b);
        assert_eq!(sum[lost] as i64, -2);
        assert_eq!(sum[RTCP_SENT], 5);
        assert_eq!((sum[rtt], sum[remote]), (0, 0), "not counts");
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

    #[test]
    fn two_workers_share_the_channels_and_count_as_one() {
        let (mut srv, rx) = server_with_workers(2, Duration::ZERO);
        assert_eq!(srv.workers(), 2);
        echo_between_two_channels_of(&srv, &rx);
        // Channel 0 and 1 went to different workers: a channel's sends and
        // receives are counted by its own worker.
        let ids: Vec<usize> = [0, 1]
            .iter()
            .map(|&id| srv.channel(id).unwrap().worker)
            .collect();
        assert_eq!(ids, [0, 1]);
        // A released channel's place goes to the next one.
        assert!(srv.remove_channel(0, Duration::from_secs(5)));
        let c = srv.add_channel(2, loopback(), ()).unwrap();
        assert_eq!(c.worker, 0);
        // Totals keep the released channel's counts.
        let totals = srv.totals(&srv.channel_stats());
        assert_eq!(totals[PACKETS_SENT], 101);
        assert_eq!(totals[PACKETS_RECEIVED], 101);
        let (rows, totals_after) = srv.stop_with_stats();
        assert_eq!(rows.len(), 2);
        assert_eq!(totals_after[PACKETS_SENT], 101);
    }

    fn packet_from(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = packet(seq);
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn recv_from(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 2048];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    }

    /// RTP packets of `sizes` bytes (sequence numbers from 0, payload
    /// bytes varying), as one peer sends them.
    fn packets_of(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .zip(0u16..)
            .map(|(&size, seq)| {
                let mut p = packet(seq);
                p.truncate(12);
                p.extend((0..size - 12).map(|b| (b % 251) as u8));
                p
            })
            .collect()
    }

    #[test]
    fn datagrams_of_every_udp_size_arrive_whole_beside_small_ones() {
        // Up to the largest IPv4 UDP payload, in one read, on a channel's
        // own socket and on a shared one.
        let sizes = [172, 2047, 2048, 2049, 9000, 172, 65_507, 1500];
        for shared_socket in [false, true] {
            let (srv, rx) = server();
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            let config = ChannelConfig {
                remote: Some(peer.local_addr().unwrap()),
                shared_socket,
                ..loopback()
            };
            let ch = srv.add_channel(0, config, ()).unwrap();
            let sent = packets_of(&sizes);
            for p in &sent {
                peer.send_to(p, ch.local_addr()).unwrap();
            }
            for p in &sent {
                let (id, got, from) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
                assert_eq!((id, from), (0, peer.local_addr().unwrap()));
                assert!(got == *p, "{} bytes arrived as {}", p.len(), got.len());
            }
            let stats = ch.stats();
            assert_eq!(stats[PACKETS_RECEIVED], sent.len() as u64);
            let octets: usize = sent.iter().map(Vec::len).sum();
            assert_eq!(stats[OCTETS_RECEIVED], octets as u64);
            assert_eq!(stats[DROPPED_NOT_RTP], 0);
        }
    }

    #[test]
    fn a_shared_socket_routes_by_source_then_ssrc_and_counts_the_unknown() {
        let (mut srv, rx) = server();
        let shared = ChannelConfig {
            shared_socket: true,
            ..loopback()
        };
        let known = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first = srv
            .add_channel(
                0,
                ChannelConfig {
                    remote: Some(known.local_addr().unwrap()),
                    ..shared
                },
                (),
            )
            .unwrap();
        let port = first.local_addr();
        let join = |id, ssrc| {
            let config = ChannelConfig {
                bind: port,
                remote_ssrc: Some(ssrc),
                ..shared
            };
            srv.add_channel(id, config, ()).unwrap()
        };
        let (one, two) = (join(1, 0x11), join(2, 0x22));
        assert_eq!((one.local_addr(), two.local_addr()), (port, port));
        let (p1, p2, stranger) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        // By source first: whatever SSRC the configured peer sends.
        known.send_to(&packet_from(0, 0x22), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 0);
        // By SSRC, which latches the source; then by source, whatever
        // SSRC nobody else expects.
        p1.send_to(&packet_from(0, 0x11), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 1);
        p1.send_to(&packet_from(1, 0x33), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 1);
        p2.send_to(&packet_from(0, 0x22), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 2);
        // A latched source sending the SSRC another channel expects is
        // that channel's (streams of a peer's shared port share its
        // address): here a foreign source there, dropped and counted.
        p1.send_to(&packet_from(2, 0x22), port).unwrap();
        assert!(wait_for(|| two.stats()[DROPPED_FOREIGN_SOURCE] == 1));
        // Nobody's: dropped, counted once at the server.
        stranger.send_to(&packet_from(0, 0x77), port).unwrap();
        stranger.send_to(&[1, 2, 3], port).unwrap();
        assert!(wait_for(|| srv.dropped_unknown_source() == 2));
        assert!(rx.try_recv().is_err(), "nothing handed on");
        // Sends go out of the shared port to each channel's own peer.
        one.send(packet_from(5, 0xa));
        two.send(packet_from(5, 0xb));
        first.send(packet_from(5, 0xc));
        assert_eq!(recv_from(&p1), (packet_from(5, 0xa), port));
        assert_eq!(recv_from(&p2), (packet_from(5, 0xb), port));
        assert_eq!(recv_from(&known), (packet_from(5, 0xc), port));
        // A member leaves; the others keep the socket.
        assert!(srv.remove_channel(1, Duration::from_secs(5)));
        p2.send_to(&packet_from(1, 0x22), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 2);
        // Its peer is nobody's now.
        p1.send_to(&packet_from(2, 0x11), port).unwrap();
        assert!(wait_for(|| srv.dropped_unknown_source() == 3));
        // A channel joining takes the slot the one that left had in the
        // worker's table (the routes go by slot): it gets its own SSRC's
        // datagrams, and the old SSRC stays nobody's.
        let three = join(3, 0x33);
        p2.send_to(&packet_from(2, 0x22), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 2);
        stranger.send_to(&packet_from(1, 0x33), port).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 3);
        p1.send_to(&packet_from(3, 0x11), port).unwrap();
        assert!(wait_for(|| srv.dropped_unknown_source() == 4));
        assert!(rx.try_recv().is_err(), "nothing handed on");
        let rows = srv.channel_stats();
        assert_eq!(rows[0].1[PACKETS_RECEIVED], 1);
        assert_eq!(rows[1].1[PACKETS_RECEIVED], 4);
        assert_eq!(rows[1].1[PACKETS_SENT], 1);
        assert_eq!(rows[2].1[PACKETS_RECEIVED], 1);
        assert!(srv.remove_channel(3, Duration::from_secs(5)));
        drop(three);
        // The socket closes with its last member: the port binds again.
        assert!(srv.remove_channel(0, Duration::from_secs(5)));
        assert!(UdpSocket::bind(port).is_err(), "channel 2 still holds it");
        assert!(srv.remove_channel(2, Duration::from_secs(5)));
        drop(UdpSocket::bind(port).expect("closed with its last channel"));
        srv.stop();
    }

    #[test]
    fn remote_ssrc_and_relay_to_apply_to_a_running_channel() {
        let (srv, _rx) = server();
        let shared = ChannelConfig {
            shared_socket: true,
            ..loopback()
        };
        let ch = srv.add_channel(0, shared, ()).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(&packet_from(0, 0x42), ch.local_addr())
            .unwrap();
        assert!(wait_for(|| srv.dropped_unknown_source() == 1));
        ch.set_remote_ssrc(Some(0x42));
        // An echo once it relays to itself.
        ch.set_relay_to(Some(0));
        std::thread::sleep(Duration::from_millis(50));
        peer.send_to(&packet_from(1, 0x42), ch.local_addr())
            .unwrap();
        assert_eq!(recv_from(&peer), (packet_from(1, 0x42), ch.local_addr()));
        assert_eq!(srv.dropped_unknown_source(), 1);
    }

    #[test]
    fn on_a_shared_socket_an_address_of_several_channels_routes_by_ssrc_and_rtcp_by_what_it_reports_on()
     {
        let (srv, _rx) = server();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = |ssrc, bind| ChannelConfig {
            bind,
            shared_socket: true,
            remote: Some(peer.local_addr().unwrap()),
            remote_ssrc: Some(ssrc),
            ..loopback()
        };
        let zero = srv
            .add_channel(0, config(0x10, loopback().bind), ())
            .unwrap();
        let port = zero.local_addr();
        let one = srv.add_channel(1, config(0x11, port), ()).unwrap();
        // Each sends under its own SSRC; the peer gets both.
        zero.send(packet_from(0, 0xbbbb));
        one.send(packet_from(0, 0xaaaa));
        let mut got: Vec<_> = (0..2).map(|_| recv_from(&peer).0[8..12].to_vec()).collect();
        got.sort();
        assert_eq!(got, [[0, 0, 0xaa, 0xaa], [0, 0, 0xbb, 0xbb]]);
        // An RR from an SSRC nobody expects, about channel 1's stream.
        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0x99, 0x99, 0, 0, 0xaa, 0xaa];
        rr.extend([0u8; 20]);
        peer.send_to(&rr, port).unwrap();
        let rr_received = session_col("rr-received");
        assert!(wait_for(|| one.stats()[rr_received] == 1));
        assert_eq!(zero.stats()[rr_received], 0);
        // RTP under an SSRC nobody expects, from an address two channels
        // send to: nobody's.
        peer.send_to(&packet_from(0, 0x77), port).unwrap();
        assert!(wait_for(|| srv.dropped_unknown_source() == 1));
        // Under an expected one: that channel's.
        peer.send_to(&packet_from(0, 0x10), port).unwrap();
        assert!(wait_for(|| zero.stats()[PACKETS_RECEIVED] == 1));
        assert_eq!(one.stats()[PACKETS_RECEIVED], 1, "the RR only");
    }

    #[test]
    fn a_shared_socket_refuses_rtcp_on_port_plus_one() {
        let (srv, _rx) = server();
        let config = ChannelConfig {
            shared_socket: true,
            rtcp: RtcpMode::PortPlusOne,
            ..loopback()
        };
        let err = srv.add_channel(0, config, ()).err().unwrap().to_string();
        assert!(err.contains("port+1"), "{err}");
    }

    /// Returns the workers that served a and b. With `late`, both channels
    /// are added relaying to nothing and told `relay_to` once running
    /// (placement goes by what a channel is added with, so each goes to
    /// the least loaded worker).
    fn relay_both_ways(workers: usize, shared_socket: bool, late: bool) -> (usize, usize) {
        let (srv, rx) = server_with_workers(workers, Duration::ZERO);
        let (peer_a, peer_b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let config = |relay_to, ssrc| ChannelConfig {
            relay_to,
            shared_socket,
            remote_ssrc: Some(ssrc),
            rtcp: RtcpMode::Mux,
            ..loopback()
        };
        let add =
            |id, to, ssrc| add_relaying(&srv, id, |relay_to| config(relay_to, ssrc), to, late);
        // a relays to b before b exists: counted, not lost silently.
        let a = add(0, 1, 0xa);
        peer_a
            .send_to(&packet_from(0, 0xa), a.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[NOT_RELAYED] == 1));
        let b = add(1, 0, 0xb);
        // b learns its peer; what it gets goes to a's (latched) peer.
        peer_b
            .send_to(&packet_from(0, 0xb), b.local_addr())
            .unwrap();
        assert_eq!(recv_from(&peer_a), (packet_from(0, 0xb), a.local_addr()));
        // Loss and reordering pass through as they are.
        for seq in [1, 2, 4, 3, 6] {
            peer_a
                .send_to(&packet_from(seq, 0xa), a.local_addr())
                .unwrap();
        }
        for seq in [1, 2, 4, 3, 6] {
            assert_eq!(recv_from(&peer_b), (packet_from(seq, 0xa), b.local_addr()));
        }
        // RTCP too, both channels carrying it.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 0xa];
        peer_a.send_to(&rr, a.local_addr()).unwrap();
        assert_eq!(recv_from(&peer_b), (rr.to_vec(), b.local_addr()));
        // src_N still got every RTP packet.
        let got: Vec<u32> = (0..7)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap().0)
            .collect();
        assert_eq!(got.iter().filter(|&&id| id == 0).count(), 6);
        // a counts a relayed batch when done with it: b, on another worker,
        // may have sent the packets first.
        assert!(wait_for(|| {
            b.stats()[PACKETS_SENT] >= 6 && a.stats()[RELAYED] >= 6 && b.stats()[RELAYED] >= 1
        }));
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa[RELAYED], sa[NOT_RELAYED]), (6, 1));
        assert_eq!(sb[RELAYED], 1);
        // b sent a's 5 RTP and 1 RTCP (its own reports may come on top).
        assert!(sb[PACKETS_SENT] >= 6);
        assert_eq!(sa[SEND_ERRORS] + sb[SEND_ERRORS], 0);
        (a.worker, b.worker)
    }

    /// Runs one traffic through a two-way relay, with the relay offload
    /// (`offload`) or without, and returns both channels' statistics and
    /// how many packets each peer sent. Every packet must reach the other
    /// peer as it was sent, from the relay's other side, whichever path
    /// it took.
    fn relay_traffic(offload: bool) -> Option<(StatsRow, StatsRow, u64, u64)> {
        let (srv, _rx) = server_with_workers(1, Duration::ZERO);
        if offload && !offload_or_skip(&srv) {
            return None;
        }
        let (peer_a, peer_b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let config = |relay_to| ChannelConfig {
            relay_to: Some(relay_to),
            rtcp: RtcpMode::Mux,
            clock_rate: Some(8000),
            ..loopback()
        };
        let a = srv.add_channel(0, config(1), ()).unwrap();
        let b = srv.add_channel(1, config(0), ()).unwrap();
        let (mut sent_a, mut sent_b) = (0, 0);
        // One packet at a time, each checked where it comes out.
        let mut a_to_b = |seq: u16| {
            let p = packet_from(seq, 0xa);
            peer_a.send_to(&p, a.local_addr()).unwrap();
            assert_eq!(recv_from(&peer_b), (p, b.local_addr()), "seq {seq}");
            sent_a += 1;
        };
        let mut b_to_a = |seq: u16| {
            let p = packet_from(seq, 0xb);
            peer_b.send_to(&p, b.local_addr()).unwrap();
            assert_eq!(recv_from(&peer_a), (p, a.local_addr()), "seq {seq}");
            sent_b += 1;
        };
        // Both sessions learn their source (through the worker); the
        // routes follow within a round. a's first packet finds b without
        // a target yet (b counts a send error); then both have one.
        peer_a
            .send_to(&packet_from(0, 0xa), a.local_addr())
            .unwrap();
        assert!(wait_for(|| b.stats()[SEND_ERRORS] == 1));
        for seq in 0..5 {
            b_to_a(seq);
            a_to_b(seq + 1);
        }
        std::thread::sleep(OFFLOAD_ROUND * 3);
        // Loss (50 to 52 both ways, and b's 5), reordering and a duplicate
        // (a's 150) pass through as they are.
        for seq in (6..200).filter(|s| !(50..53).contains(s)) {
            let seq = match seq {
                100 => 101,
                101 => 100,
                _ => seq,
            };
            a_to_b(seq);
            if seq == 150 {
                a_to_b(seq);
            }
            b_to_a(seq);
        }
        // The sender restarts: a jump, confirmed by the next packet.
        for seq in 10_000..10_100 {
            a_to_b(seq);
        }
        // RTCP keeps to the sockets, and is relayed.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 0xa];
        peer_a.send_to(&rr, a.local_addr()).unwrap();
        assert_eq!(recv_from(&peer_b), (rr.to_vec(), b.local_addr()));
        let (sent_a, sent_b) = (sent_a + 2, sent_b);
        assert!(
            wait_for(
                || a.stats()[PACKETS_RECEIVED] == sent_a && b.stats()[PACKETS_RECEIVED] == sent_b
            ),
            "{:?} {:?}",
            (a.stats()[PACKETS_RECEIVED], sent_a),
            (b.stats()[PACKETS_RECEIVED], sent_b)
        );
        Some((a.stats(), b.stats(), sent_a, sent_b))
    }

    #[test]
    fn relay_offload_forwards_in_the_kernel_and_counts_as_the_worker_does() {
        let Some((oa, ob, sent_a, sent_b)) = relay_traffic(true) else {
            return;
        };
        let (wa, wb, ..) = relay_traffic(false).unwrap();
        // Most went through the kernel: all but the first of each
        // direction, the RTCP and what reached the worker on the way
        // (the jump, the first packet after each route's install).
        assert_eq!(wa[RELAYED_OFFLOADED] + wb[RELAYED_OFFLOADED], 0);
        assert!(
            oa[RELAYED_OFFLOADED] >= sent_a - 20,
            "{}",
            oa[RELAYED_OFFLOADED]
        );
        assert!(
            ob[RELAYED_OFFLOADED] >= sent_b - 20,
            "{}",
            ob[RELAYED_OFFLOADED]
        );
        // Counted the same either way, in the channels and their sessions.
        let compare = [
            PACKETS_RECEIVED,
            OCTETS_RECEIVED,
            RELAYED,
            NOT_RELAYED,
            DROPPED_FOREIGN_SOURCE,
            DROPPED_NOT_RTP,
            session_col("remote-ssrc"),
            session_col("rtp-packets-received"),
            session_col("rtp-payload-octets-received"),
            session_col("packets-expected"),
            session_col("packets-lost"),
            session_col("rtcp-received"),
            session_col("rr-received"),
        ];
        for (offloaded, worker) in [(&oa, &wa), (&ob, &wb)] {
            for column in compare {
                assert_eq!(offloaded[column], worker[column], "{}", stats_name(column));
            }
            // The relay-to channel sent each (its own reports aside).
            assert_eq!(
                offloaded[RELAYED] + offloaded[NOT_RELAYED],
                offloaded[PACKETS_RECEIVED]
            );
        }
        // a's first went nowhere: b had no target yet.
        assert_eq!(oa[RELAYED], sent_a);
        assert_eq!(ob[SEND_ERRORS], 1);
        let own_reports = |row: &StatsRow| row[session_col("rtcp-sent")];
        assert_eq!(ob[PACKETS_SENT] - own_reports(&ob), sent_a - 1);
        assert_eq!(oa[PACKETS_SENT] - own_reports(&oa), sent_b);
        // 3 lost before the restart; counted anew from it.
        // a's sender restarted at 10,000 (confirmed by 10,001): counted
        // anew from there. b's lost 5 and 50 to 52; its first packet was
        // its source's probation.
        assert_eq!(
            (ss(&oa, "rtp-packets-received"), ss(&oa, "packets-lost")),
            (99, 0)
        );
        assert_eq!(ss(&ob, "rtp-packets-received"), sent_b - 1);
        assert_eq!(ss(&ob, "packets-lost"), 4);
        assert_ne!(
            ss(&oa, "jitter"),
            session::UNKNOWN,
            "the kernel's jitter is folded in"
        );
    }

    /// A fast stream through the kernel, its routes taken out and seeded
    /// anew over and over (every 50th packet is of another SSRC, which
    /// reaches the worker, whose relaying it marks the route stale): every
    /// packet the channel's socket address was sent is counted once,
    /// received (through the kernel or the worker) or dropped by the
    /// kernel on a full socket.
    #[test]
    fn relay_offload_counts_every_packet_while_routes_are_seeded_anew() {
        let Some((srv, _rx)) = offloading_server(1) else {
            return;
        };
        let config = |relay_to| ChannelConfig {
            relay_to: Some(relay_to),
            ..loopback()
        };
        let a = srv.add_channel(0, config(1), ()).unwrap();
        let b = srv.add_channel(1, config(0), ()).unwrap();
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (peer_a, peer_b) = (bind(), bind());
        peer_b
            .send_to(&packet_from(0, 0xb), b.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[SEND_ERRORS] == 1));
        for seq in 1..4 {
            peer_a
                .send_to(&packet_from(seq, 0xa), a.local_addr())
                .unwrap();
            recv_from(&peer_b);
            peer_b
                .send_to(&packet_from(seq, 0xb), b.local_addr())
                .unwrap();
            recv_from(&peer_a);
        }
        std::thread::sleep(OFFLOAD_ROUND * 3);
        let drain = std::thread::spawn(move || {
            peer_b
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut n = 0u64;
            while peer_b.recv_from(&mut [0; 256]).is_ok() {
                n += 1;
            }
            n
        });
        let total = 40_000u16;
        for seq in 4..total {
            let ssrc = if seq % 50 == 0 { 0xc } else { 0xa };
            peer_a
                .send_to(&packet_from(seq, ssrc), a.local_addr())
                .unwrap();
            if seq % 100 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let sent = u64::from(total) - 1;
        let counted = || a.stats()[PACKETS_RECEIVED] + a.stats()[DROPPED_KERNEL];
        let settled = wait_for(|| counted() == sent);
        let received = drain.join().unwrap();
        let sa = a.stats();
        assert!(
            settled,
            "sent {sent}, counted {} (received {}, dropped {}; offloaded {}), peer got {received}",
            counted(),
            sa[PACKETS_RECEIVED],
            sa[DROPPED_KERNEL],
            sa[RELAYED_OFFLOADED]
        );
        assert!(
            sa[RELAYED_OFFLOADED] > sent / 2,
            "most went through the kernel: {}",
            sa[RELAYED_OFFLOADED]
        );
    }

    /// Turns the relay offload on, or says why the test cannot go on
    /// ([`offload::tests::available`]).
    fn offload_or_skip(srv: &Server<Collect>) -> bool {
        offload::tests::available(srv.set_relay_offload(true)).is_some()
    }

    /// A server of `workers` workers (tick 0) with the relay offload on,
    /// or None when a test cannot have it ([`offload_or_skip`]).
    fn offloading_server(workers: usize) -> Option<(Server<Collect>, Receiver<Got>)> {
        let (srv, rx) = server_with_workers(workers, Duration::ZERO);
        offload_or_skip(&srv).then_some((srv, rx))
    }

    /// Adds channel `id` of `config(relay_to)` relaying to `to`, or (`late`)
    /// relaying to nothing and told once running: applied by the worker
    /// (which then says so) before the channel's peer sends, as a datagram
    /// read before would not be relayed.
    fn add_relaying(
        srv: &Server<Collect>,
        id: u32,
        config: impl Fn(Option<u32>) -> ChannelConfig,
        to: u32,
        late: bool,
    ) -> ChannelRef<Collect> {
        if !late {
            return srv.add_channel(id, config(Some(to)), ()).unwrap();
        }
        let ch = srv.add_channel(id, config(None), ()).unwrap();
        ch.set_relay_to(Some(to));
        assert!(wait_for(|| ch.relaying()));
        ch
    }

    /// Runs 40 packets each way through channels 0 and 1 of `srv`, bound
    /// to `bind` (added relaying to each other, or, when `late`, told so
    /// once running), from peers at `host`, each checked where it comes
    /// out, with time for routes after the first three; returns the
    /// channels' `relayed-offloaded`.
    fn relay_forty(
        srv: &Server<Collect>,
        bind: [&str; 2],
        host: [&str; 2],
        late: bool,
    ) -> [u64; 2] {
        let config = |bind: &str, relay_to| ChannelConfig {
            bind: format!("{bind}:0").parse().unwrap(),
            relay_to,
            ..Default::default()
        };
        let add = |id: u32, to| {
            add_relaying(
                srv,
                id,
                |relay_to| config(bind[id as usize], relay_to),
                to,
                late,
            )
        };
        let (a, b) = (add(0, 1), add(1, 0));
        assert_eq!(a.worker != b.worker, late);
        // Where a peer at `host` reaches a channel, and sees it send from.
        let at = |ch: &ChannelRef<Collect>, host: &str| -> SocketAddr {
            format!("{host}:{}", ch.local_addr().port())
                .parse()
                .unwrap()
        };
        let bind_peer = |host: &str| UdpSocket::bind(format!("{host}:0")).unwrap();
        let (peer_a, peer_b) = (bind_peer(host[0]), bind_peer(host[1]));
        let (a_at, b_at) = (at(&a, host[0]), at(&b, host[1]));
        peer_b.send_to(&packet_from(0, 0xb), b_at).unwrap();
        assert!(wait_for(|| a.stats()[SEND_ERRORS] == 1));
        for seq in 1..40 {
            let p = packet_from(seq, 0xa);
            peer_a.send_to(&p, a_at).unwrap();
            assert_eq!(recv_from(&peer_b), (p, b_at), "{host:?} seq {seq}");
            let p = packet_from(seq, 0xb);
            peer_b.send_to(&p, b_at).unwrap();
            assert_eq!(recv_from(&peer_a), (p, a_at), "{host:?} seq {seq}");
            if seq == 3 {
                std::thread::sleep(OFFLOAD_ROUND * 3);
            }
        }
        assert!(wait_for(|| a.stats()[PACKETS_RECEIVED] == 39
            && b.stats()[PACKETS_RECEIVED] == 40
            && a.stats()[RELAYED] == 39
            && b.stats()[RELAYED] == 40));
        [a.stats()[RELAYED_OFFLOADED], b.stats()[RELAYED_OFFLOADED]]
    }

    /// IPv4 and IPv6, channels bound to their address or to any (IPv6's
    /// any taking IPv4 peers too): the kernel forwards, each packet
    /// leaving from the address the other peer sends to, as the socket
    /// would send it.
    #[test]
    fn relay_offload_serves_ipv4_ipv6_and_channels_bound_to_any_address() {
        for (bind, host) in [
            ("127.0.0.1", "127.0.0.1"),
            ("0.0.0.0", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("[::]", "[::1]"),
            ("[::]", "127.0.0.1"),
        ] {
            let Some((srv, _rx)) = offloading_server(1) else {
                return;
            };
            let offloaded = relay_forty(&srv, [bind; 2], [host; 2], false);
            assert!(
                offloaded.iter().all(|&n| n >= 30),
                "{bind} {host}: {offloaded:?}"
            );
        }
    }

    /// What the offload does not take stays with the workers, relayed and
    /// counted as without it: a pair whose channels are on two workers
    /// (placed before they relayed), and one whose peers are of two
    /// families (a packet cannot change its family on the way).
    #[test]
    fn relay_offload_leaves_pairs_across_workers_or_families_to_the_workers() {
        for (late, host) in [(true, ["127.0.0.1"; 2]), (false, ["127.0.0.1", "[::1]"])] {
            let Some((srv, _rx)) = offloading_server(2) else {
                return;
            };
            assert_eq!(
                relay_forty(&srv, ["[::]"; 2], host, late),
                [0, 0],
                "{host:?}"
            );
        }
    }

    /// A one-way relay: channel 0 relays to channel 1, whose target (a
    /// recorder, `to`) never sends. The kernel learns the way to it from
    /// the packets the worker relayed before the route went in, and then
    /// forwards the rest, counted as the worker counts them; what the
    /// recorder does send reaches channel 1, which relays nothing.
    /// The channels are bound to `hosts`. Returns channel 0's
    /// `relayed-offloaded`.
    fn relay_one_way(
        srv: &Server<Collect>,
        hosts: [std::net::IpAddr; 2],
        peer: &UdpSocket,
        recorder: &UdpSocket,
    ) -> u64 {
        let bind = |host: std::net::IpAddr| SocketAddr::from((host, 0));
        let a = srv
            .add_channel(
                0,
                ChannelConfig {
                    bind: bind(hosts[0]),
                    relay_to: Some(1),
                    ..Default::default()
                },
                (),
            )
            .unwrap();
        let b = srv
            .add_channel(
                1,
                ChannelConfig {
                    bind: bind(hosts[1]),
                    remote: Some(recorder.local_addr().unwrap()),
                    ..Default::default()
                },
                (),
            )
            .unwrap();
        for seq in 0..40 {
            let p = packet_from(seq, 0xa);
            peer.send_to(&p, a.local_addr()).unwrap();
            assert_eq!(recv_from(recorder), (p, b.local_addr()), "seq {seq}");
            if seq == 3 {
                std::thread::sleep(OFFLOAD_ROUND * 3);
            }
        }
        assert!(wait_for(
            || a.stats()[RELAYED] == 40 && b.stats()[PACKETS_SENT] == 40
        ));
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(sa[PACKETS_RECEIVED], 40);
        assert_eq!(ss(&sa, "rtp-packets-received"), 39, "but the first");
        assert_eq!(ss(&sa, "packets-lost"), 0);
        assert_eq!((sb[PACKETS_SENT], sb[OCTETS_SENT]), (40, 40 * 172));
        recorder
            .send_to(&packet_from(0, 0xb), b.local_addr())
            .unwrap();
        assert!(wait_for(|| b.stats()[PACKETS_RECEIVED] == 1));
        assert_eq!(b.stats()[RELAYED] + b.stats()[NOT_RELAYED], 0);
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(peer.recv_from(&mut [0; 64]).is_err(), "nothing goes back");
        sa[RELAYED_OFFLOADED]
    }

    #[test]
    fn relay_offload_forwards_a_one_way_relay() {
        let Some((srv, _rx)) = offloading_server(1) else {
            return;
        };
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let host = std::net::IpAddr::from([127, 0, 0, 1]);
        let offloaded = relay_one_way(&srv, [host; 2], &bind(), &bind());
        assert!(offloaded >= 30, "{offloaded}");
    }

    /// [`relay_one_way`] between two real interfaces: the recorder's MAC
    /// and interface come from the frames the worker sent it.
    #[test]
    fn relay_offload_forwards_a_one_way_relay_across_interfaces() {
        offload::tests::isolated(|| {
            let Some((srv, _rx)) = offloading_server(1) else {
                return;
            };
            let (ea, eb) = (Behind::new("c", 3).unwrap(), Behind::new("d", 4).unwrap());
            let hosts = [ea.host().into(), eb.host().into()];
            let offloaded = relay_one_way(&srv, hosts, &ea.socket(), &eb.socket());
            assert!(offloaded >= 30, "{offloaded}");
        });
    }

    /// Across real interfaces (veth pairs to two network namespaces, made
    /// after the offload loaded, as a container's come): the kernel
    /// forwards between them, learning MACs and interfaces from the
    /// frames. When b's interface goes and comes back with its addresses
    /// (another index, other MACs), what a sends meanwhile is not sent
    /// into the interface that went: the worker relays it, through the
    /// new one; once b sends again the kernel takes over again. A packet
    /// bigger than b's MTU is left to the stack, which fragments it.
    /// Every packet arrives, and is counted once.
    #[test]
    fn relay_offload_takes_new_interfaces_and_steps_aside_for_one_gone_or_too_narrow() {
        offload::tests::isolated(relay_across_interfaces);
    }

    fn relay_across_interfaces() {
        let Some((srv, _rx)) = offloading_server(1) else {
            return;
        };
        let (ea, eb) = (Behind::new("a", 1).unwrap(), Behind::new("b", 2).unwrap());
        let config = |host: std::net::Ipv4Addr, relay_to| ChannelConfig {
            bind: SocketAddr::from((host, 0)),
            relay_to: Some(relay_to),
            ..Default::default()
        };
        let a = srv.add_channel(0, config(ea.host(), 1), ()).unwrap();
        let b = srv.add_channel(1, config(eb.host(), 0), ()).unwrap();
        let (peer_a, peer_b) = (ea.socket(), eb.socket());
        let sent_a = std::cell::Cell::new(0u64);
        let a_to_b = |p: Vec<u8>| {
            peer_a.send_to(&p, a.local_addr()).unwrap();
            assert_eq!(recv_from(&peer_b), (p, b.local_addr()));
            sent_a.set(sent_a.get() + 1);
        };
        let b_to_a = |p: Vec<u8>| {
            peer_b.send_to(&p, b.local_addr()).unwrap();
            assert_eq!(recv_from(&peer_a), (p, a.local_addr()));
        };
        let offloaded = || (a.stats()[RELAYED_OFFLOADED], b.stats()[RELAYED_OFFLOADED]);
        peer_b
            .send_to(&packet_from(0, 0xb), b.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[SEND_ERRORS] == 1));
        for seq in 1..40 {
            a_to_b(packet_from(seq, 0xa));
            b_to_a(packet_from(seq, 0xb));
            if seq == 3 {
                std::thread::sleep(OFFLOAD_ROUND * 3);
            }
        }
        assert!(
            wait_for(|| offloaded().0 >= 30 && offloaded().1 >= 30),
            "{:?}",
            offloaded()
        );
        eb.replug();
        let gone = offloaded();
        for seq in 40..50 {
            a_to_b(packet_from(seq, 0xa));
        }
        assert_eq!(offloaded(), gone, "the worker relayed them");
        // b is heard again from its new interface (attached meanwhile).
        std::thread::sleep(OFFLOAD_ROUND * 3);
        for seq in 40..60 {
            b_to_a(packet_from(seq, 0xb));
            a_to_b(packet_from(seq + 10, 0xa));
        }
        assert!(
            wait_for(|| offloaded().0 >= gone.0 + 15 && offloaded().1 >= gone.1 + 15),
            "{gone:?} {:?}",
            offloaded()
        );
        // b's interface down: what a sends is not redirected into it,
        // where it would be dropped unseen; the worker relays it, its send
        // fails, and that is counted. Up again, the kernel takes over.
        eb.set_up(false);
        std::thread::sleep(OFFLOAD_ROUND * 3);
        let (before, errors) = (offloaded(), b.stats()[SEND_ERRORS]);
        for seq in 60..65 {
            peer_a
                .send_to(&packet_from(seq + 10, 0xa), a.local_addr())
                .unwrap();
            sent_a.set(sent_a.get() + 1);
        }
        assert!(wait_for(|| b.stats()[SEND_ERRORS] == errors + 5));
        assert_eq!(offloaded(), before);
        eb.set_up(true);
        std::thread::sleep(OFFLOAD_ROUND * 3);
        for seq in 65..70 {
            a_to_b(packet_from(seq + 10, 0xa));
        }
        assert!(
            wait_for(|| offloaded().0 > before.0),
            "{before:?} {:?}",
            offloaded()
        );
        eb.set_mtu(576);
        let narrow = offloaded();
        let mut big = packet_from(80, 0xa);
        big.resize(1_000, 0x55);
        for seq in 80u16..85 {
            big[2..4].copy_from_slice(&seq.to_be_bytes());
            a_to_b(big.clone());
        }
        assert_eq!(offloaded().0, narrow.0, "fragmented by the stack");
        assert!(wait_for(|| a.stats()[RELAYED] == sent_a.get()));
        let sa = a.stats();
        assert_eq!(sa[PACKETS_RECEIVED], sent_a.get());
        assert_eq!(ss(&sa, "rtp-packets-received"), sent_a.get() - 1);
        assert_eq!(ss(&sa, "packets-lost"), 0);
    }

    /// The routes follow the channels: a peer that moves (latched again
    /// after its silence) is forwarded from and to at its new address, and
    /// the old address is foreign; turned off, the workers relay and count
    /// on; turned on again, the kernel takes over again; a channel removed
    /// takes its routes along, and its peer's packets are then counted
    /// `not-relayed`. Nothing is lost or left uncounted on the way.
    #[test]
    fn relay_offload_follows_a_move_being_turned_off_and_a_removal() {
        let Some((srv, _rx)) = offloading_server(1) else {
            return;
        };
        let config = |relay_to| ChannelConfig {
            relay_to: Some(relay_to),
            latch_rules: Latch {
                relatch_after: Some(Duration::from_millis(100)),
                ..Latch::default()
            },
            ..loopback()
        };
        let a = srv.add_channel(0, config(1), ()).unwrap();
        let b = srv.add_channel(1, config(0), ()).unwrap();
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (peer_a, peer_b, moved) = (bind(), bind(), bind());
        // Datagrams sent to a.
        let to_a = std::cell::Cell::new(0u64);
        // One packet each way, each checked where it comes out.
        let round = |seq: u16, peer_a: &UdpSocket| {
            let p = packet_from(seq, 0xa);
            peer_a.send_to(&p, a.local_addr()).unwrap();
            assert_eq!(recv_from(&peer_b), (p, b.local_addr()), "seq {seq}");
            let p = packet_from(seq, 0xb);
            peer_b.send_to(&p, b.local_addr()).unwrap();
            assert_eq!(recv_from(peer_a), (p, a.local_addr()), "seq {seq}");
            to_a.set(to_a.get() + 1);
        };
        let offloaded = || (a.stats()[RELAYED_OFFLOADED], b.stats()[RELAYED_OFFLOADED]);
        // b's first finds a without a target; then both learn theirs and
        // the routes go in.
        peer_b
            .send_to(&packet_from(0, 0xb), b.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[SEND_ERRORS] == 1));
        for seq in 1..4 {
            round(seq, &peer_a);
        }
        std::thread::sleep(OFFLOAD_ROUND * 3);
        // For longer than the silence that allows a move, all through
        // the kernel but the first packets.
        for seq in 4..24 {
            round(seq, &peer_a);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            wait_for(|| offloaded().0 >= 15 && offloaded().1 >= 15),
            "{:?}",
            offloaded()
        );
        // The peer streams through the kernel, unseen by the worker: that
        // is no silence, and another source with its SSRC is foreign.
        moved
            .send_to(&packet_from(24, 0xa), a.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[DROPPED_FOREIGN_SOURCE] == 1));
        to_a.set(to_a.get() + 1);
        round(24, &peer_a);
        // a's peer falls silent, then sends from another port: a latches
        // it, and both directions follow.
        std::thread::sleep(Duration::from_millis(150));
        let before = offloaded();
        for seq in 25..44 {
            round(seq, &moved);
        }
        assert!(
            wait_for(|| offloaded().0 >= before.0 + 15 && offloaded().1 >= before.1 + 15),
            "{before:?} {:?}",
            offloaded()
        );
        peer_a
            .send_to(&packet_from(44, 0xa), a.local_addr())
            .unwrap();
        assert!(wait_for(|| a.stats()[DROPPED_FOREIGN_SOURCE] == 2));
        to_a.set(to_a.get() + 1);
        // Off: the workers relay, and count on.
        srv.set_relay_offload(false).unwrap();
        std::thread::sleep(OFFLOAD_ROUND);
        let off = offloaded();
        for seq in 45..65 {
            round(seq, &moved);
        }
        assert_eq!(offloaded(), off);
        // On again.
        srv.set_relay_offload(true).unwrap();
        std::thread::sleep(OFFLOAD_ROUND * 3);
        for seq in 65..85 {
            round(seq, &moved);
        }
        assert!(
            wait_for(|| offloaded().0 >= off.0 + 15),
            "{off:?} {:?}",
            offloaded()
        );
        // b goes: a's packets reach the worker, counted as not relayed.
        assert!(srv.remove_channel(1, Duration::from_secs(5)));
        moved
            .send_to(&packet_from(85, 0xa), a.local_addr())
            .unwrap();
        to_a.set(to_a.get() + 1);
        assert!(wait_for(|| a.stats()[NOT_RELAYED] == 1));
        let sa = a.stats();
        let to_a = to_a.get();
        assert_eq!(sa[PACKETS_RECEIVED], to_a);
        assert_eq!(
            sa[RELAYED] + sa[NOT_RELAYED] + sa[DROPPED_FOREIGN_SOURCE],
            to_a
        );
        assert_eq!(
            ss(&sa, "rtp-packets-received"),
            to_a - 3,
            "but the 2 foreign and the first"
        );
    }

    #[test]
    fn relay_to_forwards_both_ways_with_loss_order_and_rtcp() {
        relay_both_ways(1, false, false);
    }

    #[test]
    fn relay_to_between_workers_and_on_shared_sockets() {
        // a and b, placed before they relay, went to the least loaded
        // workers: the relay crosses between them.
        assert_eq!(relay_both_ways(2, false, true), (0, 1));
        assert_eq!(relay_both_ways(2, true, true), (0, 1));
        relay_both_ways(1, true, false);
    }

    #[test]
    fn a_relay_stays_on_one_worker() {
        // b joins a's worker, though the other has fewer channels, on a
        // socket of its own or a new shared one.
        assert_eq!(relay_both_ways(2, false, false), (0, 0));
        assert_eq!(relay_both_ways(2, true, false), (0, 0));
        let (srv, _rx) = server_with_workers(2, Duration::ZERO);
        let relaying = |relay_to| ChannelConfig {
            relay_to,
            ..loopback()
        };
        // Pairs spread over the workers, each pair on one.
        let workers: Vec<usize> = [(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)]
            .into_iter()
            .map(|(id, to)| srv.add_channel(id, relaying(Some(to)), ()).unwrap().worker)
            .collect();
        assert_eq!(workers, [0, 0, 1, 1, 0, 0]);
        // A target that is gone places nothing: 6 goes to the least
        // loaded worker, not to 5's.
        assert!(srv.remove_channel(5, Duration::from_secs(5)));
        assert_eq!(srv.add_channel(6, relaying(Some(5)), ()).unwrap().worker, 1);
        assert_eq!(srv.add_channel(7, relaying(Some(4)), ()).unwrap().worker, 0);
        assert_eq!(srv.add_channel(8, relaying(None), ()).unwrap().worker, 1);
        // A one-way relay: 11 goes to 10's worker, which relays to it,
        // though the other has fewer channels; so does 11 added again
        // after its removal. (4 and 4 channels here: 0, 1, 4, 7 and 2, 3,
        // 6, 8.)
        let wait = Duration::from_secs(5);
        assert_eq!(
            srv.add_channel(10, relaying(Some(11)), ()).unwrap().worker,
            0
        );
        assert_eq!(srv.add_channel(11, relaying(None), ()).unwrap().worker, 0);
        assert!(srv.remove_channel(11, wait));
        assert_eq!(srv.add_channel(11, relaying(None), ()).unwrap().worker, 0);
        // Once removed, 10 draws 11 nowhere, not even to a channel that
        // takes its id again.
        assert!(srv.remove_channel(11, wait) && srv.remove_channel(10, wait));
        assert_eq!(srv.add_channel(10, relaying(None), ()).unwrap().worker, 0);
        assert_eq!(srv.add_channel(11, relaying(None), ()).unwrap().worker, 1);
        assert!(srv.remove_channel(10, wait) && srv.remove_channel(11, wait));
        // A channel joining a shared socket goes to the socket's worker,
        // whatever it relays to (8 is on worker 1).
        let shared = srv
            .add_channel(
                9,
                ChannelConfig {
                    shared_socket: true,
                    ..loopback()
                },
                (),
            )
            .unwrap();
        assert_eq!(shared.worker, 0);
        let joining = srv
            .add_channel(
                10,
                ChannelConfig {
                    shared_socket: true,
                    bind: shared.local_addr(),
                    relay_to: Some(8),
                    ..loopback()
                },
                (),
            )
            .unwrap();
        assert_eq!(joining.worker, 0);
        // Many channels relaying to one: the first joins it, the rest
        // spread as though they relayed to nothing (one over the least
        // loaded at most).
        let (srv, _rx) = server_with_workers(2, Duration::ZERO);
        srv.add_channel(0, relaying(None), ()).unwrap();
        let workers: Vec<usize> = (1..9)
            .map(|id| srv.add_channel(id, relaying(Some(0)), ()).unwrap().worker)
            .collect();
        assert_eq!(workers, [0, 1, 0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn a_relay_target_removed_mid_stream_on_another_worker_leaves_nothing_uncounted() {
        let (mut srv, _rx) = server_with_workers(2, Duration::ZERO);
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        // a (worker 0) relays to b, which each round comes back on worker 1
        // and is removed while a's peer floods a. (Told to relay once
        // running: added relaying to b, a would draw b to its worker.)
        let a = srv
            .add_channel(
                0,
                ChannelConfig {
                    queue_size: 64,
                    ..loopback()
                },
                (),
            )
            .unwrap();
        a.set_relay_to(Some(1));
        assert!(wait_for(|| a.relaying()));
        let to = a.local_addr();
        let flooding = Arc::new(AtomicBool::new(true));
        let flood = {
            let flooding = flooding.clone();
            std::thread::spawn(move || {
                let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut seq = 0u16;
                while flooding.load(Ordering::Relaxed) {
                    // Refused when a's buffer is full: the kernel counts it.
                    let _ = peer.send_to(&packet(seq), to);
                    seq = seq.wrapping_add(1);
                    if seq.is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                }
            })
        };
        for _ in 0..30 {
            let b = srv.add_channel(1, sending_to(&sink, 64), ()).unwrap();
            assert!(wait_for(|| b.stats()[PACKETS_SENT] > 0));
            assert!(srv.remove_channel(1, Duration::from_secs(5)));
        }
        // b gone for good: what a takes now has nowhere to go. (The gaps
        // between a removal and the next add are short: with the machine
        // busy, the flood may have sent nothing in any of them.)
        assert!(wait_for(|| a.stats()[NOT_RELAYED] > 0));
        flooding.store(false, Ordering::Relaxed);
        flood.join().unwrap();
        let (_, totals) = srv.stop_with_stats();
        let sa = a.stats();
        // Each datagram a took was relayed, refused by b's full queue, or
        // had no b to go to; each relayed one b sent or failed to send.
        assert_eq!(
            sa[PACKETS_RECEIVED],
            sa[NOT_RELAYED]
                + totals[DROPPED_QUEUE_FULL]
                + totals[PACKETS_SENT]
                + totals[SEND_ERRORS],
            "{:?}",
            named(&totals)
        );
        assert_eq!(sa[RELAYED], totals[PACKETS_SENT] + totals[SEND_ERRORS]);
        assert!(sa[RELAYED] > 0 && sa[NOT_RELAYED] > 0, "{:?}", named(&sa));
    }

    #[test]
    fn a_removed_channel_sends_all_it_has_queued() {
        // A long tick: the removal comes before any round sends the queue.
        let (srv, _rx) = server_with_tick(Duration::from_secs(1));
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ch = srv.add_channel(0, sending_to(&sink, 256), ()).unwrap();
        assert_eq!(ch.send_all((0..200).map(packet)), 200);
        assert!(srv.remove_channel(0, Duration::from_secs(5)));
        // Its counts went to the server's totals with its last sends.
        let totals = srv.totals(&srv.channel_stats());
        assert_eq!(totals[PACKETS_SENT], 200, "{:?}", named(&totals));
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        for seq in 0..200u16 {
            let n = sink.recv(&mut buf).unwrap();
            assert_eq!(buf[..n], packet(seq)[..]);
        }
    }

    #[test]
    fn what_a_round_cannot_send_goes_out_in_the_next_ones_in_order() {
        // Three rounds' worth of packets queued at once: a round sends
        // about SENDS_PER_ROUND, and the channels it did not reach must
        // stay scheduled (checked: forgetting them fails here).
        let (srv, _rx) = server_with_tick(Duration::from_millis(200));
        let per_channel = 64u16;
        let n = 3 * SENDS_PER_ROUND / usize::from(per_channel) + 1;
        let sinks: Vec<UdpSocket> = (0..n)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let channels: Vec<_> = sinks
            .iter()
            .enumerate()
            .map(|(id, sink)| {
                srv.add_channel(id as u32, sending_to(sink, 256), ())
                    .unwrap()
            })
            .collect();
        for ch in &channels {
            assert_eq!(
                ch.send_all((0..per_channel).map(packet)),
                per_channel as usize
            );
        }
        let mut buf = [0u8; 2048];
        for sink in &sinks {
            sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for seq in 0..per_channel {
                let got = sink.recv(&mut buf).unwrap();
                assert_eq!(buf[..got], packet(seq)[..]);
            }
        }
        // A worker counts a batch once `sendmmsg` returns, which may be
        // after the peer has it.
        let all = n as u64 * u64::from(per_channel);
        assert!(wait_for(
            || srv.totals(&srv.channel_stats())[PACKETS_SENT] == all
        ));
        assert_eq!(srv.totals(&srv.channel_stats())[DROPPED_QUEUE_FULL], 0);
    }

    #[test]
    fn a_server_needs_a_worker() {
        assert!(Server::<Collect>::start_workers(Vec::new(), Duration::ZERO).is_err());
    }

    fn echo_between_two_channels(tick: Duration) {
        let (srv, rx) = server_with_tick(tick);
        echo_between_two_channels_of(&srv, &rx);
    }

    fn echo_between_two_channels_of(srv: &Server<Collect>, rx: &Receiver<Got>) {
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
        // a's worker counts its last batch once `sendmmsg` returns, which
        // may be after b's worker has read it.
        assert!(wait_for(|| a.stats()[PACKETS_SENT] == 101));
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

    // ---------------------------------------------------------------------
    // Sessions and RTCP

    /// Session statistic `name` of `row`.
    fn ss(row: &StatsRow, name: &str) -> u64 {
        row[session_col(name)]
    }

    fn rtcp_config(mode: RtcpMode, interval_ms: u32) -> ChannelConfig {
        ChannelConfig {
            rtcp: mode,
            clock_rate: Some(8000),
            rtcp_interval: report_interval(interval_ms),
            queue_size: 128,
            ..loopback()
        }
    }

    /// `packets-received` is every datagram: the RTP handed on, RTCP (good
    /// or malformed) and each drop reason.
    fn assert_received_adds_up(row: &StatsRow, handed_on: u64) {
        assert_eq!(
            row[PACKETS_RECEIVED],
            handed_on
                + ss(row, "rtcp-received")
                + row[DROPPED_FOREIGN_SOURCE]
                + row[DROPPED_NOT_RTP],
            "{:?}",
            named(row)
        );
    }

    /// Every packet given to `send` and every compound written is sent,
    /// dropped for a full queue or a send error.
    fn assert_sent_adds_up(row: &StatsRow, queued: u64) {
        assert_eq!(
            row[PACKETS_SENT] + row[DROPPED_QUEUE_FULL] + row[SEND_ERRORS],
            queued + ss(row, "rtcp-sent"),
            "{:?}",
            named(row)
        );
    }

    fn named(row: &StatsRow) -> Vec<(&'static str, u64)> {
        (0..NSTATS).map(|i| (stats_name(i), row[i])).collect()
    }

    /// Channel 0 sends channel 1 one sequence number over and over (its
    /// source never leaves probation), then follows on in order, jumps once
    /// and restarts: 1's session columns are right after each stage, though
    /// only a new source and a restart have the worker publish them all.
    #[test]
    fn session_columns_follow_probation_a_bad_jump_and_a_restart() {
        let (srv, _rx) = server();
        let config = || rtcp_config(RtcpMode::Off, 60_000);
        let a = srv.add_channel(0, config(), ()).unwrap();
        let b = srv.add_channel(1, config(), ()).unwrap();
        a.set_remote(Some(b.local_addr()));
        let mut total = 0;
        let mut send = |seqs: &[u16]| {
            for &seq in seqs {
                assert!(a.send(packet(seq)));
            }
            total += seqs.len() as u64;
            assert!(
                wait_for(|| b.stats()[PACKETS_RECEIVED] == total),
                "{:?}",
                named(&b.stats())
            );
            let row = b.stats();
            assert_received_adds_up(&row, total);
            [
                "remote-ssrc",
                "rtp-packets-received",
                "packets-expected",
                "packets-lost",
            ]
            .map(|name| ss(&row, name))
        };
        let unknown = session::UNKNOWN;
        assert_eq!(send(&[7; 20]), [unknown, 0, 0, 0], "on probation");
        let in_order: Vec<u16> = (8..=30).collect();
        assert_eq!(send(&in_order), [0x1234, 23, 23, 0], "a source from seq 8");
        assert_eq!(
            send(&[30_000]),
            [0x1234, 23, 23, 0],
            "a bad jump: not counted"
        );
        let in_order: Vec<u16> = (31..=40).collect();
        assert_eq!(send(&in_order), [0x1234, 33, 33, 0], "on from seq 30");
        assert_eq!(
            send(&[50_000, 50_001, 50_002]),
            [0x1234, 2, 2, 0],
            "restarted at 50,001"
        );
        let row = b.stats();
        assert_ne!(ss(&row, "jitter"), unknown, "a clock rate is set");
        assert_eq!(row[DROPPED_FOREIGN_SOURCE] + row[DROPPED_NOT_RTP], 0);
    }

    /// Channel 0 sends 50 RTP packets, one per 20 ms, to channel 1 (seq 10
    /// and 11 left out), which sends none: 0 sends SRs, 1 answers with RRs.
    /// Then 0 is removed and says BYE.
    fn reports_between_two_channels(mode: RtcpMode) {
        let (tx, rx) = channel();
        let (bye_tx, byes) = channel();
        let collect = Collect {
            tx: Some(tx),
            byes: Some(bye_tx),
        };
        let srv = Server::start(collect, Duration::ZERO).unwrap();
        let a = srv.add_channel(0, rtcp_config(mode, 100), ()).unwrap();
        let b = srv.add_channel(1, rtcp_config(mode, 100), ()).unwrap();
        // a has a target; b learns its targets by latching.
        a.set_remote(Some(b.local_addr()));
        let sent: Vec<u16> = (0..50).filter(|s| !(10..12).contains(s)).collect();
        let sender = {
            let (a, sent) = (a.clone(), sent.clone());
            std::thread::spawn(move || {
                for seq in 0..50 {
                    if sent.contains(&seq) {
                        a.send(packet(seq));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        sender.join().unwrap();
        let at_a = || a.stats();
        let at_b = || b.stats();
        assert!(
            wait_for(
                || ss(&at_a(), "rtt-us") != session::UNKNOWN && ss(&at_b(), "sr-received") >= 2
            ),
            "a: {:?}\nb: {:?}",
            named(&at_a()),
            named(&at_b())
        );
        let (sa, sb) = (at_a(), at_b());
        // b counts from its second packet (the first is probation): seq 1
        // to 49, two missing.
        assert_eq!(ss(&sb, "packets-expected"), 49, "{:?}", named(&sb));
        assert_eq!(ss(&sb, "packets-lost") as i64, 2);
        assert_eq!(ss(&sb, "rtp-packets-received"), 47);
        assert_eq!(ss(&sb, "remote-ssrc"), 0x1234);
        assert_ne!(ss(&sb, "jitter"), session::UNKNOWN, "a clock rate is set");
        assert_eq!(ss(&sa, "rtp-packets-sent"), sent.len() as u64);
        assert_eq!(
            ss(&sa, "local-ssrc"),
            0x1234,
            "our SSRC follows what we send"
        );
        assert!(ss(&sa, "rr-received") >= 1);
        assert_eq!(
            ss(&sa, "remote-packets-lost") as i64,
            2,
            "b reports the loss to a"
        );
        assert!(
            ss(&sa, "rtt-us") < 100_000,
            "loopback: {}",
            ss(&sa, "rtt-us")
        );
        assert!(!a.remote_cname().is_empty() && a.remote_cname() == b.remote_cname());
        // Nothing but the RTP reached the handler: RTCP is never handed on.
        let mut handed = 0;
        while let Ok((id, data, _)) = rx.try_recv() {
            assert_eq!(id, 1);
            assert!(!rtp::is_rtcp(&data));
            assert_eq!(rtp::Packet::parse(&data).unwrap().payload_type(), 0);
            handed += 1;
        }
        assert_eq!(handed, sent.len() as u64);
        let (sa, sb) = (at_a(), at_b());
        assert_received_adds_up(&sb, handed);
        assert_received_adds_up(&sa, 0);
        assert_sent_adds_up(&sa, sent.len() as u64);
        assert_sent_adds_up(&sb, 0);
        assert_eq!(sa[SEND_ERRORS] + sb[SEND_ERRORS], 0);
        // Removing a says BYE before its sockets close.
        assert!(srv.remove_channel(0, Duration::from_secs(5)));
        let (id, ssrc) = byes.recv_timeout(Duration::from_secs(5)).expect("a BYE");
        assert_eq!((id, ssrc), (1, 0x1234));
        assert!(wait_for(|| ss(&at_b(), "bye-received") == 1));
        // Released, a's counts stay in the totals, its BYE among them. Read
        // with b's in one go: b keeps reporting meanwhile, and a may have
        // sent one more report between `sa` and its release.
        let stats = srv.channel_stats();
        let b_now = stats.iter().find(|(id, _)| *id == 1).expect("b").1;
        let a_final = ss(&srv.totals(&stats), "rtcp-sent") - ss(&b_now, "rtcp-sent");
        let a_before = ss(&sa, "rtcp-sent");
        assert!(
            (a_before + 1..=a_before + 2).contains(&a_final),
            "a sent {a_before} reports, then {a_final} in all with its BYE"
        );
    }

    #[test]
    fn rtcp_mux_reports_flow_both_ways_and_every_datagram_is_counted() {
        reports_between_two_channels(RtcpMode::Mux);
    }

    #[test]
    fn rtcp_on_port_plus_one_reports_flow_both_ways_and_latch() {
        reports_between_two_channels(RtcpMode::PortPlusOne);
    }

    #[test]
    fn port_plus_one_binds_an_even_pair_or_says_why_not() {
        let (srv, _rx) = server();
        for id in 0..20 {
            let ch = srv
                .add_channel(id, rtcp_config(RtcpMode::PortPlusOne, 0), ())
                .unwrap();
            let (rtp_port, rtcp) = (ch.local_addr().port(), ch.local_rtcp_addr().unwrap());
            assert_eq!(rtp_port % 2, 0, "RTP on an even port");
            assert_eq!(rtcp.port(), rtp_port + 1);
            assert_eq!(rtcp.ip(), ch.local_addr().ip());
        }
        // A given port whose successor is taken is refused, naming it.
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port() - 1;
        let cfg = ChannelConfig {
            bind: SocketAddr::new("127.0.0.1".parse().unwrap(), port),
            ..rtcp_config(RtcpMode::PortPlusOne, 0)
        };
        match srv.add_channel(100, cfg, ()) {
            // `port` itself may be in use by someone else; either way the
            // error names the address it could not bind.
            Err(e @ ChannelError::Bind(..)) => assert!(e.to_string().contains("127.0.0.1:"), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("bound next to a taken port"),
        }
        let cfg = ChannelConfig {
            bind: "127.0.0.1:65535".parse().unwrap(),
            ..rtcp_config(RtcpMode::PortPlusOne, 0)
        };
        let Err(e) = srv.add_channel(101, cfg, ()) else {
            panic!("65535 has no port + 1");
        };
        assert!(e.to_string().contains("65535"), "{e}");
    }

    fn rr(ssrc: u32) -> Vec<u8> {
        let mut out = vec![0; 64];
        let n = crate::rtcp::write_rr(&mut out, ssrc, &[]).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn with_rtcp_off_nothing_is_sent_and_what_arrives_is_counted_not_handed_on() {
        let (srv, rx) = server();
        let ch = srv
            .add_channel(0, rtcp_config(RtcpMode::Off, 50), ())
            .unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        for seq in [0u16, 1, 2, 4, 5] {
            peer.send_to(&packet(seq), ch.local_addr()).unwrap();
        }
        let good_rr = rr(0x99);
        peer.send_to(&good_rr, ch.local_addr()).unwrap();
        // Malformed RTCP, one of each fault the mux can see: RFC 5761's rule
        // needs version 2 in the first packet, so a bad version is in the
        // second.
        let short = vec![0x80, 201];
        let mut bad_version = good_rr.clone();
        bad_version.extend_from_slice(&[0x40, 202, 0, 0]);
        let mut length_overrun = good_rr.clone();
        length_overrun[3] = 9;
        let mut report_overrun = good_rr.clone();
        report_overrun[0] |= 1;
        for bad in [&short, &bad_version, &length_overrun, &report_overrun] {
            peer.send_to(bad, ch.local_addr()).unwrap();
        }
        peer.send_to(&[0x80], ch.local_addr()).unwrap(); // neither
        assert!(wait_for(|| ch.stats()[PACKETS_RECEIVED] == 11));
        let s = ch.stats();
        assert_eq!(ss(&s, "rtcp-received"), 5);
        assert_eq!(ss(&s, "rr-received"), 1);
        assert_eq!(ss(&s, "rtcp-dropped"), 4);
        for fault in [
            "too-short",
            "bad-version",
            "length-overrun",
            "report-overrun",
        ] {
            assert_eq!(ss(&s, &format!("rtcp-dropped-{fault}")), 1, "{fault}");
        }
        assert_eq!(s[DROPPED_NOT_RTP], 1);
        let mut handed = 0;
        while let Ok((_, data, _)) = rx.recv_timeout(Duration::from_millis(100)) {
            assert!(!rtp::is_rtcp(&data));
            handed += 1;
        }
        assert_eq!(handed, 5);
        assert_received_adds_up(&s, handed);
        // Intervals still close (every 50 ms): the loss of seq 3 shows.
        assert!(wait_for(|| ss(&ch.stats(), "mos") != session::UNKNOWN));
        let s = ch.stats();
        assert_eq!(
            ss(&s, "fraction-lost"),
            256 / 5,
            "seq 3 of 1 to 5 (0 is probation)"
        );
        assert_eq!(ss(&s, "rtcp-sent"), 0);
        let mut buf = [0u8; 2048];
        assert!(
            peer.recv_from(&mut buf).is_err(),
            "latched, but RTCP is off"
        );
        assert_eq!(s[PACKETS_SENT], 0);
    }

    #[test]
    fn session_statistics_are_current_at_every_read_without_asking_the_worker() {
        let (mut srv, _rx) = server();
        // An hour between reports: only packets change the session.
        let ch = srv
            .add_channel(0, rtcp_config(RtcpMode::Off, 3_600_000), ())
            .unwrap();
        // Unknown, not zero, from the start.
        assert_eq!(ss(&ch.stats(), "remote-ssrc"), session::UNKNOWN);
        assert_eq!(ss(&ch.stats(), "jitter"), session::UNKNOWN);
        let to = ch.local_addr();
        let sender = std::thread::spawn(move || {
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            for seq in 0..2000 {
                peer.send_to(&packet(seq), to).unwrap();
                if seq % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        // Every read that sees a datagram counted sees it in the session
        // too (the first one is the source's probation, RFC 3550 A.1).
        let mut reads = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        let last = loop {
            let s = ch.stats();
            let seen = s[PACKETS_RECEIVED];
            assert!(
                ss(&s, "rtp-packets-received") >= seen.saturating_sub(1),
                "{:?}",
                named(&s)
            );
            assert!(ss(&s, "packets-expected") >= ss(&s, "rtp-packets-received"));
            reads += 1;
            if seen + s[DROPPED_KERNEL] == 2000 || Instant::now() > deadline {
                break s;
            }
        };
        sender.join().unwrap();
        assert!(reads > 1);
        assert_eq!(last[PACKETS_RECEIVED], 2000, "{:?}", named(&last));
        assert_eq!(ss(&last, "rtp-packets-received"), 1999);
        assert_eq!(ss(&last, "remote-ssrc"), 0x1234);
        assert_eq!(srv.channel_stats(), vec![(0, last)]);
        // With the worker gone a read still answers, with what it left.
        srv.stop();
        assert_eq!(ch.stats(), last);
    }

    /// `n` channels of `srv` reporting every 50 ms to `sink`; after `wait`,
    /// the channels, each one's `rtcp-sent` and the milliseconds since they
    /// were added.
    fn reports_over(
        srv: &Server<Collect>,
        sink: &UdpSocket,
        n: u32,
        wait: Duration,
    ) -> (Vec<ChannelRef<Collect>>, Vec<(u32, u64)>, u64) {
        let config = ChannelConfig {
            remote: Some(sink.local_addr().unwrap()),
            ..rtcp_config(RtcpMode::Mux, 50)
        };
        let started = Instant::now();
        let channels: Vec<_> = (0..n)
            .map(|id| srv.add_channel(id, config, ()).unwrap())
            .collect();
        std::thread::sleep(wait);
        // One read of every channel: statistics are those of the time of
        // the read (the worker brings them up to date when asked), so the
        // time they cover is taken after it.
        let rows = srv.channel_stats();
        let ms = started.elapsed().as_millis() as u64;
        assert_eq!(rows.len(), channels.len());
        let sent = rows
            .iter()
            .map(|(id, row)| (*id, ss(row, "rtcp-sent")))
            .collect();
        (channels, sent, ms)
    }

    #[test]
    fn reports_follow_each_channel_deadline_at_scale_and_through_long_ticks() {
        // 300 channels, a report every 50 ms each, on a worker whose tick is
        // 200 ms: reports go out on their own deadlines (at most
        // MAX_REPORT_DELAY after), not the tick's.
        let (srv, _rx) = server_with_tick(Duration::from_millis(200));
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (channels, sent, ms) = reports_over(&srv, &sink, 300, Duration::from_millis(1000));
        for (id, sent) in sent {
            assert!(sent <= ms / 50, "channel {id}: {sent} reports in {ms} ms");
            assert!(sent >= 10, "channel {id}: {sent} reports in {ms} ms");
        }
        // An idle channel takes a new interval without traffic.
        channels[0].set_rtcp_interval(ReportInterval::Fixed { ms: 10_000 });
        channels[1].set_rtcp_interval(ReportInterval::Fixed { ms: 10 });
        std::thread::sleep(Duration::from_millis(100));
        let before = (
            ss(&channels[0].stats(), "rtcp-sent"),
            ss(&channels[1].stats(), "rtcp-sent"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let after = (
            ss(&channels[0].stats(), "rtcp-sent"),
            ss(&channels[1].stats(), "rtcp-sent"),
        );
        assert_eq!(after.0, before.0, "10 s apart now");
        assert!(after.1 - before.1 >= 10, "{before:?} {after:?}");
    }

    #[test]
    fn a_short_tick_serves_the_reports_due_on_its_rounds() {
        // A 20 ms tick, 50 ms between reports: each report goes out on the
        // first round after its deadline, at most a tick late, so one comes
        // every three rounds (60 ms) instead of every 50 ms.
        let (srv, _rx) = server_with_tick(MAX_REPORT_DELAY);
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_channels, sent, ms) = reports_over(&srv, &sink, 100, Duration::from_millis(2000));
        for (id, sent) in sent {
            // On their own deadlines they would be ms / 50.
            assert!(
                sent <= ms / 55 + 1,
                "channel {id}: {sent} reports in {ms} ms"
            );
            assert!(sent >= ms / 80, "channel {id}: {sent} reports in {ms} ms");
        }
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

    impl SharedSocket {
        /// [`SharedSocket::route`] with the SSRC read here.
        fn route_of(&self, data: &[u8], from: SocketAddr) -> Option<usize> {
            self.route(data, from, packet_ssrc(data))
        }
    }

    /// The messages [`SendBuffers::plan`] makes of datagrams of `sizes`,
    /// each to the target of its number in `targets`: their datagram
    /// counts.
    fn planned(sizes: &[usize], targets: &[u16], join: bool) -> Vec<usize> {
        let mut send = SendBuffers::new();
        for (i, (&size, &to)) in sizes.iter().zip(targets).enumerate() {
            send.iov[i].iov_len = size;
            send.targets[i] = SocketAddr::from(([127, 0, 0, 1], to));
        }
        let messages = send.plan(0, sizes.len(), join);
        send.counts[..messages].to_vec()
    }

    #[test]
    fn gso_joins_runs_of_one_size_to_one_target() {
        assert_eq!(planned(&[172; 64], &[1; 64], true), [64]);
        assert_eq!(planned(&[172; 64], &[1; 64], false), [1; 64]);
        // The target changes: a new message, even back to the first.
        assert_eq!(planned(&[172; 5], &[1, 1, 2, 2, 1], true), [2, 2, 1]);
        // Only the last may be smaller; a larger one starts anew.
        assert_eq!(
            planned(&[172, 172, 100, 172, 200, 200], &[1; 6], true),
            [3, 1, 2]
        );
        assert_eq!(planned(&[172, 100, 100], &[1; 3], true), [2, 1]);
        // Empty datagrams and those over GSO_MAX_DATAGRAM go alone.
        assert_eq!(
            planned(&[0, 0, 1232, 1232, 1233, 1233], &[1; 6], true),
            [1, 1, 2, 1, 1]
        );
        // At most GSO_MAX_BYTES: 52 datagrams of 1,232 bytes (64,064).
        assert_eq!(planned(&[1232; 64], &[1; 64], true), [52, 12]);
    }

    /// 40 datagrams, runs to two targets with one short datagram among
    /// them, sent with `fd_setup` applied to the sending socket: every one
    /// arrives alone, whole and in order, at its own target.
    fn send_joined(fd_setup: impl FnOnce(i32)) -> SendBuffers {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        fd_setup(tx.as_raw_fd());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut datagrams = Vec::new();
        for i in 0..40u8 {
            let size = if i == 29 { 90 } else { 172 };
            let to = if (20..25).contains(&i) { to_b } else { to_a };
            datagrams.push((vec![i; size], to));
        }
        let mut send = SendBuffers::new();
        let (sent, err) = send.send(
            tx.as_raw_fd(),
            datagrams.iter().map(|(d, to)| (&d[..], *to)),
        );
        assert_eq!((sent, err.map(|e| e.to_string())), (40, None));
        for (socket, to) in [(&a, to_a), (&b, to_b)] {
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for (data, _) in datagrams.iter().filter(|(_, t)| *t == to) {
                let mut buf = [0u8; 2048];
                let (n, from) = socket.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..n], from), (&data[..], tx.local_addr().unwrap()));
            }
            socket.set_nonblocking(true).unwrap();
            assert!(
                socket.recv_from(&mut [0u8; 2048]).is_err(),
                "one datagram too many"
            );
        }
        send
    }

    #[test]
    fn gso_messages_arrive_as_the_datagrams_they_join() {
        let send = send_joined(|_| {});
        // The kernel took joined messages: 20 to a, 5 to b, 5 to a (the
        // last the short one), 10 to a.
        assert_eq!(send.gso, gso_supported());
        if send.gso {
            assert_eq!(send.counts[..4], [20, 5, 5, 10]);
        }
    }

    #[test]
    fn a_refused_gso_message_goes_out_datagram_by_datagram() {
        // A socket sending without UDP checksums may not send GSO messages
        // (EINVAL): the worker sends those datagrams one by one, and joins
        // none from then on.
        let send = send_joined(|fd| {
            let one: libc::c_int = 1;
            // SAFETY: `one` is a live c_int and the length says so.
            let set = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&one as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(set, 0, "SO_NO_CHECK: {}", io::Error::last_os_error());
        });
        assert!(!send.gso);
    }

    #[test]
    fn a_datagram_refused_alone_too_leaves_gso_on() {
        // Port 0 is refused (EINVAL) as a GSO message and alone: the
        // datagram's error, returned, and the worker still joins.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
        let packet = [7u8; 172];
        let mut send = SendBuffers::new();
        let (sent, err) = send.send(tx.as_raw_fd(), [(&packet[..], nowhere); 5]);
        assert_eq!(sent, 0);
        assert_eq!(
            err.and_then(|e| e.raw_os_error()),
            Some(libc::EINVAL),
            "port 0 is refused"
        );
        assert_eq!(send.gso, gso_supported());
        let to = rx.local_addr().unwrap();
        let (sent, err) = send.send(tx.as_raw_fd(), [(&packet[..], to); 5]);
        assert_eq!((sent, err.is_none()), (5, true));
        if send.gso {
            assert_eq!(send.counts[..1], [5]);
        }
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..5 {
            let mut buf = [0u8; 2048];
            assert_eq!(rx.recv(&mut buf).unwrap(), 172);
        }
    }
}
