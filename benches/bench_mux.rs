//! rtpmuxserver against stock udpsrc, receiving N loopback RTP streams of
//! 172-byte PCMU packets at 50 packets/s each, and rtpmuxserver channels
//! sending to each other at 100 packets/s.
//!
//! The streams come from a child process (this binary again, with
//! `BENCH_MUX_ROLE=sender`) that paces them with `sendmmsg`, so the CPU this
//! process uses over the window is the receivers' alone. Streams to one
//! shared port come from a socket each, as from N phones (see
//! `Receiver::shared` for why).
//!
//! Each N is received by: channels of their own socket each (tick 0 and
//! `BENCH_MUX_TICK`), the element's core alone, the per-socket floor; then,
//! per tick of `BENCH_MUX_SHARED_TICKS`, channels all on one port
//! (`shared-socket`, demultiplexed by `remote-ssrc`), the same channels
//! with no `src_N` handing every packet to `src_all` (one buffer per worker
//! round), the element's core alone on one port (what a consumer inside the
//! worker would cost at least), the shared-socket floor (one socket read
//! with `recvmmsg` of 64), that floor keeping the least per-stream
//! statistics (the state floor), and that floor pushing a buffer per
//! packet; and
//! N `udpsrc`. The channel-to-channel runs come with a socket per channel
//! and with a shared port per worker, what the channels receive going to a
//! `src_N` each and, in rows of their own, to `src_all`, the generator's
//! CPU printed apart (one thread pushes each channel's two packets in turn,
//! see `peers_run`; the share of the nominal load it managed to offer is a
//! row of its own), each beside its floors on as many threads as the rows
//! have workers (the same datagrams: `sendto` per datagram and epoll, or a shared socket per
//! thread written and read 64 datagrams at a time, with and without GSO).
//! The goals
//! (issue 15): shared-port channels at most 1/10 of udpsrc's CPU per stream
//! at every N >= 500 and within 1.3x of the shared floor; channels sending
//! to each other lose nothing at 4,096 channels with 2 workers. Rows whose
//! properties this build of the element lacks print "not available".
//!
//! Environment: `BENCH_SECONDS` (window, default 5), `BENCH_MUX_N` (stream
//! counts, default 100,500,1000,2000,4000; 0 skips them), `BENCH_MUX_PEERS`
//! (channel counts of the channel-to-channel runs, default 1024,2048,4096;
//! 0 skips them), `BENCH_MUX_PEERS_SINK` (where those channels' received
//! packets go, a list, default `src_n,all`: `src_n`, a `src_N` each into a
//! `fakesink`; `all`, `src_all` into one `fakesink`, one buffer per worker
//! round; `none`, nowhere: they stop in the element), `BENCH_MUX_TICK`
//! (the `tick` of the paced per-socket and channel-to-channel rows, ms,
//! default 1), `BENCH_MUX_SHARED_TICKS` (the
//! ticks of the shared-port rows and shared floor, ms, default 0,5),
//! `BENCH_MUX_WORKERS` (the `workers` of the channel-to-channel runs,
//! default 1,2), `BENCH_MUX_PEER_SOCKETS` (their layouts: `own`, `shared`
//! or both, the default), `BENCH_MUX_RUNS` (runs of each receive row, back to back,
//! default 1; `make bench` asks for 3: the median run is printed with the
//! range), `BENCH_MUX_ONLY` (`shared`, `shared-all`, `shared-core`,
//! `shared-floor`, `state-floor` or `push-floor`: only that shared-port
//! row, per N and shared tick; or `udpsrc`, the stock row, once per tick
//! listed; under `valgrind --tool=callgrind --trace-children=no` it counts
//! the receiver's instructions per packet, repeatable where CPU time is
//! not), `BENCH_MUX_STATE_LINES` (cache lines of per-stream state
//! the state floor changes per packet beyond its two, default 0).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::floor::Carriers;
use gst::prelude::*;
use gst_net::gio;
use rtpsynth_core::rtp::{Extras, Header, write_packet};
use rtpsynth_core::{batch, mux};

const PACKET: usize = 172;
const WARMUP: Duration = Duration::from_secs(1);

fn packet(seq: u16, ssrc: u32) -> [u8; PACKET] {
    let mut out = [0u8; PACKET];
    let header = Header {
        marker: false,
        payload_type: 0,
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    };
    write_packet(&mut out, &header, &Extras::default(), &[0xd5; 160]).expect("fits");
    out
}

/// Writes packet `seq`'s sequence number and timestamp into the RTP header
/// of a [`packet`] (RFC 3550 5.1).
fn number(packet: &mut [u8], seq: u16) {
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
}

// ---------------------------------------------------------------------------
// Sender process

/// The SSRC of stream `i`, which a shared-port channel is given as its
/// `remote-ssrc`.
fn stream_ssrc(i: usize) -> u32 {
    i as u32
}

/// Gives the sender real-time priority (where allowed: as root), so that the
/// receivers it loads cannot starve it. A sender that falls behind sends its
/// missed rounds back to back, each waking every receiving thread at once;
/// with 4,000 `udpsrc` threads runnable it got a 2,000th of a core and one
/// run took half an hour instead of seconds. The sender sleeps between
/// rounds, so it takes no more CPU this way, only takes it on time.
fn run_ahead_of_receivers() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid policy and parameter for this process.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        eprintln!(
            "bench_mux sender: no real-time priority ({}); heavily loaded rows may run late",
            std::io::Error::last_os_error()
        );
    }
}

/// Reads `pps seconds sources` and then one port per line from stdin, sends
/// one packet per line (stream i with SSRC [`stream_ssrc`]`(i)`) every 1/pps
/// s for that long, prints how many it sent. `sources` is `one` (all
/// streams from one socket, in `sendmmsg` batches) or `each` (every stream
/// from a socket of its own, one `sendmmsg` of one packet each).
fn sender_main() {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines().map_while(Result::ok);
    let first = lines.next().expect("pps and seconds");
    let mut it = first.split_whitespace();
    let pps: f64 = it.next().and_then(|s| s.parse().ok()).expect("pps");
    let seconds: f64 = it.next().and_then(|s| s.parse().ok()).expect("seconds");
    let per_stream = it.next() == Some("each");
    let ports: Vec<u16> = lines.filter_map(|l| l.trim().parse().ok()).collect();
    run_ahead_of_receivers();
    raise_fd_limit();
    let n = ports.len();
    let sockets: Vec<UdpSocket> = (0..if per_stream { n } else { 1 })
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("sender socket"))
        .collect();
    let mut data: Vec<[u8; PACKET]> = (0..n).map(|i| packet(0, stream_ssrc(i))).collect();
    // SAFETY: all-zero bytes are valid C socket addresses and headers.
    let mut names: Vec<libc::sockaddr_in> = ports
        .iter()
        .map(|&p| {
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = p.to_be();
            sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            sin
        })
        .collect();
    let mut iov: Vec<libc::iovec> = data
        .iter_mut()
        .map(|d| libc::iovec {
            iov_base: d.as_mut_ptr().cast(),
            iov_len: PACKET,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..n)
        .map(|i| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut iov[i];
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / pps);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut next = start;
    let mut sent = 0u64;
    let mut seq = 0u16;
    while next < end {
        for d in data.iter_mut() {
            number(d, seq);
        }
        let mut at = 0;
        while at < n {
            let (socket, most) = if per_stream {
                (&sockets[at], 1)
            } else {
                (&sockets[0], 1024)
            };
            let chunk = (n - at).min(most);
            // SAFETY: the headers point into `names`, `iov` and `data`,
            // alive and unmoved for the whole loop.
            let r = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), msgs[at..].as_mut_ptr(), chunk as u32, 0)
            };
            if r <= 0 {
                // A refused packet is skipped; the receiver counts it lost.
                at += 1;
                continue;
            }
            sent += r as u64;
            at += r as usize;
        }
        seq = seq.wrapping_add(1);
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!("{sent}");
}

struct Sender {
    child: std::process::Child,
}

impl Sender {
    /// Streams to `ports` (one entry per stream, repeated when streams
    /// share a port), from a socket per stream when `per_stream`.
    fn start(pps: f64, seconds: f64, ports: &[u16], per_stream: bool) -> Sender {
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .env("BENCH_MUX_ROLE", "sender")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sender process starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let sources = if per_stream { "each" } else { "one" };
        writeln!(stdin, "{pps} {seconds} {sources}").expect("sender reads");
        for p in ports {
            writeln!(stdin, "{p}").expect("sender reads");
        }
        drop(stdin);
        Sender { child }
    }

    fn sent(mut self) -> u64 {
        let out = self.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("sender reports");
        let _ = self.child.wait();
        line.trim().parse().expect("a count")
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// After the warm-up, what the process used over a `window`-second wait:
/// (CPU seconds, wall seconds, threads at the end).
fn measure(window: f64) -> (f64, f64, usize) {
    std::thread::sleep(WARMUP);
    let cpu0 = common::cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(window));
    let cpu = common::cpu_seconds() - cpu0;
    (cpu, t0.elapsed().as_secs_f64(), threads())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn raise_fd_limit() {
    // SAFETY: plain rlimit calls on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

struct Figures {
    threads: usize,
    cpu_percent: f64,
    mhz_per_stream: f64,
    rss_mb: f64,
    sent: u64,
    lost: u64,
    /// The element's `dropped-kernel` and `dropped-unknown-source`, so that
    /// a loss shows as a full socket buffer or as the demultiplexer's.
    element_drops: Option<[u64; 2]>,
    /// Over several runs ([`receive_run`]): the lowest and highest CPU-MHz
    /// per stream, and how many runs.
    range: Option<(f64, f64, usize)>,
}

impl Figures {
    fn lost_percent(&self) -> f64 {
        100.0 * self.lost as f64 / self.sent.max(1) as f64
    }
}

fn rendered(sinks: &[gst::Element]) -> u64 {
    sinks
        .iter()
        .map(|s| {
            s.property::<gst::Structure>("stats")
                .get::<u64>("rendered")
                .unwrap_or(0)
        })
        .sum()
}

fn fakesink() -> gst::Element {
    gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .property("enable-last-sample", false)
        .build()
        .expect("fakesink")
}

/// The events that start an RTP stream named `id`, before its buffers.
fn stream_start(id: &str) -> [gst::Event; 3] {
    [
        gst::event::StreamStart::new(id),
        gst::event::Caps::new(&gst::Caps::new_empty_simple("application/x-rtp")),
        gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()),
    ]
}

/// A new [`fakesink`] in `pipeline`, fed by `pad`.
fn fakesink_for(pipeline: &gst::Pipeline, pad: &gst::Pad) -> gst::Element {
    let sink = fakesink();
    pipeline.add(&sink).expect("add");
    pad.link(&sink.static_pad("sink").expect("sink pad"))
        .expect("link");
    sink
}

/// Drops the pipeline's messages as they are posted, errors and warnings
/// aside (nobody reads this bus). A bus queues messages in a lock-free
/// queue whose writers each wait, spinning, for the writer before them:
/// when 4,000 `udpsrc` streaming threads start at once and each posts its
/// messages, a writer the scheduler preempts mid-post leaves thousands of
/// runnable threads spinning behind it. `perf` of one such stall (2026-12-07,
/// docs/bench/2026-12-07m.txt): 99.9 % of the process in
/// `gst_atomic_queue_push`, 1,456 distinct threads in 3 s; the row never
/// ended. Dropped in the sync handler, a message never reaches that queue.
fn keep_bus_quiet(pipeline: &gst::Pipeline) {
    if let Some(bus) = pipeline.bus() {
        bus.set_sync_handler(|_, msg| match msg.type_() {
            gst::MessageType::Error | gst::MessageType::Warning => gst::BusSyncReply::Pass,
            _ => gst::BusSyncReply::Drop,
        });
    }
}

/// What receives the N streams.
#[derive(Clone, Copy)]
enum Receiver {
    /// `rtpmuxserver` with this tick (ms), each `src_N` into a fakesink.
    Mux(u32),
    /// The same with every channel on one port: `shared-socket`, one
    /// `bind-port`, and its stream's SSRC as `remote-ssrc`.
    SharedMux(u32),
    /// [`Receiver::SharedMux`] with no `src_N`: every channel's packets
    /// go out on `src_all`, one buffer per worker round, into a fakesink
    /// that reads each buffer's packet count.
    SharedAll(u32),
    /// The element's core (`mux::Server`) alone, with a handler that only
    /// counts: what the sockets, epoll and the worker cost before any
    /// GStreamer buffer is made.
    Core,
    /// [`Receiver::Core`] with every channel on one port, as
    /// [`Receiver::SharedMux`] has them, with this tick (ms): what the
    /// element costs before it makes a buffer, which is all that a consumer
    /// inside the worker (as `relay-to` is) would add to the shared floor.
    SharedCore(u32),
    /// The floor under any receiver that gives each stream its own socket:
    /// one thread, epoll (level-triggered) and one `recvmmsg` per ready
    /// socket, packets counted and thrown away.
    Floor,
    /// The floor under any receiver of all streams on one socket: one
    /// thread reading it with `recvmmsg` of up to 64, with this tick (ms),
    /// packets counted and thrown away.
    SharedFloor(u32),
    /// [`Receiver::SharedFloor`] that also keeps the least per-stream state
    /// a receiver with RTP statistics keeps ([`StreamState`]): the floor
    /// under any receiver that, as ours, has a session per stream.
    SharedStateFloor(u32),
    /// [`Receiver::SharedFloor`] that also does what any GStreamer element
    /// giving each stream its own pad must do per datagram: a buffer with
    /// its bytes and a time, pushed on the stream's pad (found by its SSRC,
    /// an array index here) into a fakesink. The floor under shared-port
    /// channels that push every packet, as `udpsrc` does.
    SharedPushFloor(u32),
    /// N stock `udpsrc`, each into a fakesink.
    Udpsrc,
}

/// The shared-port rows of one N at one tick; `channels` and `all` when
/// this build of the element has them.
struct SharedRows {
    tick: u32,
    channels: Option<Figures>,
    all: Option<Figures>,
    core: Figures,
    floor: Figures,
    state_floor: Figures,
    push_floor: Figures,
}

/// The least a receiver keeping RTP statistics per stream updates per
/// packet, for [`Receiver::SharedStateFloor`]: RFC 3550's sequence state
/// (appendix A.1, without probation) and the counts, in one cache line,
/// published whole for other threads (a sequence lock, as the element's
/// statistics are) in another. The stream is found by its SSRC as an array
/// index, which no real demultiplexer can do: this is a floor.
#[derive(Default)]
#[repr(C, align(64))]
struct StreamState {
    packets: u64,
    octets: u64,
    /// Sequence number cycles, shifted: 65,536 per wrap.
    cycles: u64,
    base_seq: u16,
    max_seq: u16,
    published: Published,
}

#[derive(Default)]
#[repr(C, align(64))]
struct Published {
    version: std::sync::atomic::AtomicU64,
    packets: std::sync::atomic::AtomicU64,
    octets: std::sync::atomic::AtomicU64,
    extended_max: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
}

/// One more cache line of a stream's state that
/// [`Receiver::SharedStateFloor`] changes per packet
/// (`BENCH_MUX_STATE_LINES` of them): what each line a receiver touches
/// per packet costs, against the element's own.
#[derive(Default, Clone)]
#[repr(C, align(64))]
struct Line([u64; 8]);

impl StreamState {
    fn receive(&mut self, data: &[u8]) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        let Some(seq) = data.get(2..4).map(|s| u16::from_be_bytes([s[0], s[1]])) else {
            return;
        };
        if self.packets == 0 {
            (self.base_seq, self.max_seq) = (seq, seq);
        } else if seq.wrapping_sub(self.max_seq) < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
        self.packets += 1;
        self.octets += data.len() as u64;
        let extended_max = self.cycles + u64::from(self.max_seq);
        let expected = extended_max + 1 - u64::from(self.base_seq);
        let p = &self.published;
        let version = p.version.load(Relaxed);
        p.version.store(version + 1, Relaxed);
        std::sync::atomic::fence(Release);
        p.packets.store(self.packets, Relaxed);
        p.octets.store(self.octets, Relaxed);
        p.extended_max.store(extended_max, Relaxed);
        p.lost.store(expected.wrapping_sub(self.packets), Relaxed);
        p.version.store(version + 2, Release);
    }
}

impl Receiver {
    /// Whether the streams all go to one port. They then come from a
    /// socket each, as from N phones: the demultiplexer goes by source
    /// address first (a channel's configured or latched remote) and by
    /// SSRC only for an address no channel has, latching it. From one
    /// shared source address the first channel to latch it would be given
    /// every stream; from a socket each, the SSRC places each stream's
    /// first packet and the latched address the rest, which is the path a
    /// deployment runs.
    fn shared(self) -> bool {
        matches!(
            self,
            Receiver::SharedMux(_)
                | Receiver::SharedAll(_)
                | Receiver::SharedCore(_)
                | Receiver::SharedFloor(_)
                | Receiver::SharedStateFloor(_)
                | Receiver::SharedPushFloor(_)
        )
    }
}

/// The [`Receiver::Core`] handler.
struct Count(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl mux::Handler for Count {
    type Packet = Vec<u8>;
    type Attachment = ();

    fn received(&mut self, _: &mux::Channel<Vec<u8>, ()>, batch: mux::Batch<'_>) {
        self.0
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn socket_error(&mut self, _: &mux::Channel<Vec<u8>, ()>, _: std::io::Error) {}
}

/// [`receive_once`] `BENCH_MUX_RUNS` times in a row (default 1), as these
/// machines are noisy: the run with the median CPU per stream, with the
/// range of all, and the losses of the run that lost most (a row that lost
/// packets in any run did less work, and says so).
fn receive_run(n: usize, receiver: Receiver, window: f64, mhz: f64) -> Figures {
    let runs = common::env_or("BENCH_MUX_RUNS", 1usize).max(1);
    let mut all: Vec<Figures> = (0..runs)
        .map(|_| receive_once(n, receiver, window, mhz))
        .collect();
    all.sort_by(|a, b| a.mhz_per_stream.total_cmp(&b.mhz_per_stream));
    let range = (all[0].mhz_per_stream, all[runs - 1].mhz_per_stream, runs);
    let worst = all
        .iter()
        .max_by(|a, b| a.lost_percent().total_cmp(&b.lost_percent()))
        .map(|f| (f.sent, f.lost, f.element_drops));
    let mut median = all.swap_remove(runs / 2);
    if runs > 1 {
        median.range = Some(range);
        if let Some((sent, lost, drops)) = worst {
            (median.sent, median.lost, median.element_drops) = (sent, lost, drops);
        }
    }
    median
}

/// Builds N receivers, runs the sender for warm-up + window, measures the
/// window, then counts what arrived.
fn receive_once(n: usize, receiver: Receiver, window: f64, mhz: f64) -> Figures {
    let rss_before = rss_mb();
    let pipeline = gst::Pipeline::new();
    keep_bus_quiet(&pipeline);
    let mut sinks = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut core = None;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut floor = None;
    let mut element = None;
    if let Receiver::SharedPushFloor(tick) = receiver {
        let mut bare =
            common::floor::Floor::shared(vec![UdpSocket::bind("127.0.0.1:0").expect("bind")]);
        ports = bare.ports().into_iter().cycle().take(n).collect();
        let pads: Vec<gst::Pad> = (0..n)
            .map(|i| {
                let pad = gst::Pad::builder(gst::PadDirection::Src)
                    .name(format!("floor_{i}"))
                    .build();
                sinks.push(fakesink_for(&pipeline, &pad));
                pad
            })
            .collect();
        pipeline.set_state(gst::State::Playing).expect("PLAYING");
        for (i, pad) in pads.iter().enumerate() {
            pad.set_active(true).expect("pad activates");
            for event in stream_start(&format!("floor/{i}")) {
                pad.push_event(event);
            }
        }
        let stop = stop.clone();
        // The fakesinks count what arrives; the loop's own count is not used.
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tick = Duration::from_millis(tick.into());
        floor = Some(std::thread::spawn(move || {
            bare.serve_each(tick, &stop, &read, |data| {
                let Some(pad) = data
                    .get(8..12)
                    .and_then(|s| s.try_into().ok())
                    .and_then(|ssrc| pads.get(u32::from_be_bytes(ssrc) as usize))
                else {
                    return;
                };
                let Ok(mut buffer) = gst::Buffer::with_size(data.len()) else {
                    return;
                };
                let b = buffer.get_mut().expect("a new buffer is writable");
                if b.copy_from_slice(0, data).is_ok() {
                    b.set_pts(gst::ClockTime::ZERO);
                    let _ = pad.push(buffer);
                }
            })
        }));
    } else if let Receiver::SharedStateFloor(tick) = receiver {
        let mut bare =
            common::floor::Floor::shared(vec![UdpSocket::bind("127.0.0.1:0").expect("bind")]);
        ports = bare.ports().into_iter().cycle().take(n).collect();
        let mut streams: Vec<StreamState> = (0..n).map(|_| StreamState::default()).collect();
        let lines = common::env_or("BENCH_MUX_STATE_LINES", 0usize);
        let mut more = vec![Line::default(); n * lines];
        let (stop, counted) = (stop.clone(), counted.clone());
        let tick = Duration::from_millis(tick.into());
        floor = Some(std::thread::spawn(move || {
            bare.serve_each(tick, &stop, &counted, |data| {
                if let Some(i) = data
                    .get(8..12)
                    .and_then(|s| s.try_into().ok())
                    .map(|ssrc| u32::from_be_bytes(ssrc) as usize)
                    .filter(|&i| i < n)
                {
                    streams[i].receive(data);
                    // Each in a table of its own, as the element's are
                    // in different structures.
                    for line in more.iter_mut().skip(i).step_by(n) {
                        line.0[0] += 1;
                    }
                }
            })
        }));
    } else if let Receiver::Floor | Receiver::SharedFloor(_) = receiver {
        let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (mut bare, tick) = match receiver {
            Receiver::SharedFloor(tick) => (common::floor::Floor::shared(vec![bind()]), tick),
            _ => (
                common::floor::Floor::new((0..n).map(|_| bind()).collect()),
                0,
            ),
        };
        // One port per stream, or the shared one for every stream.
        ports = bare.ports().into_iter().cycle().take(n).collect();
        let (stop, counted) = (stop.clone(), counted.clone());
        let tick = Duration::from_millis(tick.into());
        floor = Some(std::thread::spawn(move || {
            bare.serve(tick, &stop, &counted)
        }));
    } else if let Receiver::Core | Receiver::SharedCore(_) = receiver {
        let (shared_port, tick) = match receiver {
            Receiver::SharedCore(tick) => (Some(free_port()), tick),
            _ => (None, 0),
        };
        let server = mux::Server::start(Count(counted.clone()), Duration::from_millis(tick.into()))
            .expect("mux server starts");
        for i in 0..n {
            let config = mux::ChannelConfig {
                bind: std::net::SocketAddr::from(([127, 0, 0, 1], shared_port.unwrap_or(0))),
                shared_socket: shared_port.is_some(),
                remote_ssrc: shared_port.map(|_| stream_ssrc(i)),
                ..Default::default()
            };
            let channel = server.add_channel(i as u32, config, ()).expect("channel");
            ports.push(channel.local_addr().port());
        }
        core = Some(server);
    } else if let Receiver::Mux(tick) | Receiver::SharedMux(tick) | Receiver::SharedAll(tick) =
        receiver
    {
        let m = gst::ElementFactory::make("rtpmuxserver")
            .property("tick", tick)
            .build()
            .expect("rtpmuxserver");
        pipeline.add(&m).expect("add");
        element = Some(m.clone());
        let shared_port = receiver.shared().then(free_port);
        let to_all = matches!(receiver, Receiver::SharedAll(_));
        if to_all {
            let all = m.request_pad_simple("src_all").expect("src_all");
            let sink = fakesink();
            sink.set_property("signal-handoffs", true);
            let counted = counted.clone();
            sink.connect("handoff", false, move |args| {
                // The header's count: the least a consumer reads.
                let count = args[1]
                    .get::<gst::Buffer>()
                    .ok()
                    .and_then(|b| b.into_mapped_buffer_readable().ok())
                    .and_then(|m| batch::count(&m).ok())
                    .unwrap_or(0);
                counted.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                None
            });
            pipeline.add(&sink).expect("add");
            all.link(&sink.static_pad("sink").expect("sink pad"))
                .expect("link");
        }
        for i in 0..n {
            let pad = if to_all {
                m.request_pad_simple(&format!("sink_{i}"))
                    .expect("sink pad")
            } else {
                m.request_pad_simple(&format!("src_{i}")).expect("src pad")
            };
            pad.set_property("bind-address", "127.0.0.1");
            if let Some(port) = shared_port {
                pad.set_property("bind-port", u32::from(port));
                pad.set_property("shared-socket", true);
                pad.set_property("remote-ssrc", i64::from(stream_ssrc(i)));
            }
            if !to_all {
                sinks.push(fakesink_for(&pipeline, &pad));
            }
        }
        pipeline.set_state(gst::State::Playing).expect("PLAYING");
        let prefix = if to_all { "sink" } else { "src" };
        for i in 0..n {
            let pad = m.static_pad(&format!("{prefix}_{i}")).expect("pad");
            ports.push(pad.property::<u32>("local-port") as u16);
        }
    } else {
        for _ in 0..n {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            ports.push(socket.local_addr().expect("addr").port());
            let gsocket = gio::Socket::from_fd(socket.into()).expect("GSocket");
            let src = gst::ElementFactory::make("udpsrc")
                .property("socket", &gsocket)
                .property("close-socket", true)
                .property("caps", gst::Caps::new_empty_simple("application/x-rtp"))
                .build()
                .expect("udpsrc");
            pipeline.add(&src).expect("add");
            sinks.push(fakesink_for(
                &pipeline,
                &src.static_pad("src").expect("src pad"),
            ));
        }
        pipeline.set_state(gst::State::Playing).expect("PLAYING");
    }
    let _ = pipeline.state(gst::ClockTime::from_seconds(30));
    let sender = Sender::start(
        50.0,
        WARMUP.as_secs_f64() + window,
        &ports,
        receiver.shared(),
    );
    let (cpu, elapsed, threads) = measure(window);
    let rss = rss_mb() - rss_before;
    let sent = sender.sent();
    // Let the last packets drain.
    std::thread::sleep(Duration::from_millis(300));
    let received = rendered(&sinks) + counted.load(std::sync::atomic::Ordering::Relaxed);
    let element_drops = element.map(|m| {
        let stats = m.property::<gst::Structure>("stats");
        ["dropped-kernel", "dropped-unknown-source"].map(|k| stats.get::<u64>(k).unwrap_or(0))
    });
    pipeline.set_state(gst::State::Null).expect("NULL");
    drop(core);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(thread) = floor {
        thread.join().expect("floor loop");
    }
    Figures {
        threads,
        cpu_percent: 100.0 * cpu / elapsed,
        mhz_per_stream: cpu / elapsed * mhz / n as f64,
        rss_mb: rss,
        sent,
        lost: sent.saturating_sub(received),
        element_drops,
        range: None,
    }
}

/// What makes a comparison of `rows` void: a row that lost packets did
/// less work, so its CPU proves nothing against rows that received them all.
fn not_comparable(rows: &[(&str, &Figures)]) -> String {
    let losses: Vec<String> = rows
        .iter()
        .filter(|(_, f)| f.lost > 0)
        .map(|(who, f)| format!("{who} lost {:.3}%", f.lost_percent()))
        .collect();
    if losses.is_empty() {
        String::new()
    } else {
        format!("; NOT COMPARABLE: {}", losses.join(", "))
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago: shared-port
/// channels must all be given their port before any of them opens it.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// The properties of `rtpmuxserver` that some rows need, which older
/// builds of it lack: those rows then print "not available".
struct Support {
    /// Element property `workers`.
    workers: bool,
    /// Pad properties `shared-socket` and `remote-ssrc`.
    shared_socket: bool,
    /// The `src_all` pad.
    src_all: bool,
    /// Element property `gso`.
    gso: bool,
}

impl Support {
    fn probe() -> Support {
        let m = gst::ElementFactory::make("rtpmuxserver")
            .build()
            .expect("rtpmuxserver");
        let pad = m.request_pad_simple("src_%u").expect("src pad");
        let support = Support {
            workers: m.find_property("workers").is_some(),
            shared_socket: ["shared-socket", "remote-ssrc"]
                .iter()
                .all(|p| pad.find_property(p).is_some()),
            src_all: m.pad_template("src_all").is_some(),
            gso: m.find_property("gso").is_some(),
        };
        m.release_request_pad(&pad);
        support
    }
}

fn print_row(n: usize, name: &str, f: &Figures) {
    let drops = match f.element_drops {
        Some([kernel, unknown]) if f.lost > 0 => {
            format!(", dropped-kernel {kernel}, dropped-unknown-source {unknown}")
        }
        _ => String::new(),
    };
    let range = match f.range {
        Some((low, high, runs)) => format!("; median of {runs} runs, {low:.3}-{high:.3}"),
        None => String::new(),
    };
    println!(
        "  {n:>5} {name:<15} {:>7} {:>8.1}% {:>10.3} {:>9.1} {:>10} {:>8} ({:.3}%){drops}{range}",
        f.threads,
        f.cpu_percent,
        f.mhz_per_stream,
        f.rss_mb,
        f.sent,
        f.lost,
        f.lost_percent()
    );
}

/// Where the channels of a [`peers_run`] hand what they receive.
#[derive(Clone, Copy, PartialEq)]
enum PeerOutputs {
    /// A `src_N` each, into a `fakesink` each.
    SrcN,
    /// `src_all` into one `fakesink`.
    All,
    /// No source pad: received packets stop in the element.
    None,
}

impl PeerOutputs {
    /// From a `BENCH_MUX_PEERS_SINK` entry.
    fn parse(entry: &str) -> PeerOutputs {
        match entry {
            "src_n" => PeerOutputs::SrcN,
            "all" => PeerOutputs::All,
            "none" => PeerOutputs::None,
            _ => panic!("BENCH_MUX_PEERS_SINK={entry}: a list of src_n, all, none"),
        }
    }
}

/// How the channels of a [`peers_run`] hold their sockets.
#[derive(Clone, Copy, PartialEq)]
enum PeerSockets {
    /// A socket each.
    Own,
    /// One shared port per worker (channel i on port i % workers, so each
    /// worker serves one), demultiplexed by `remote-ssrc`: every channel of
    /// a port sends from the same address.
    Shared,
}

impl PeerSockets {
    /// From a `BENCH_MUX_PEER_SOCKETS` entry.
    fn parse(layout: &str) -> PeerSockets {
        match layout {
            "own" => PeerSockets::Own,
            "shared" => PeerSockets::Shared,
            _ => panic!("BENCH_MUX_PEER_SOCKETS={layout}: a list of own, shared"),
        }
    }

    /// The prefix of its report lines, and its description.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            PeerSockets::Own => ("mux", "a socket each"),
            PeerSockets::Shared => ("mux shared", "a shared port per worker"),
        }
    }

    /// The floors of its traffic on `threads` threads
    /// ([`common::floor::exchange_on`]), each with what it does and the
    /// suffix of its report line: the shared layout's also with GSO.
    fn floors(self, threads: usize) -> Vec<(Carriers, String, &'static str)> {
        let socket = if threads == 1 {
            "one shared socket"
        } else {
            "a shared socket each"
        };
        match self {
            PeerSockets::Own => vec![(
                Carriers::PerStream,
                "sendto + epoll + recvmmsg".to_owned(),
                "",
            )],
            PeerSockets::Shared => vec![
                (
                    Carriers::Shared(threads),
                    format!("{socket}, sendmmsg + recvmmsg of 64"),
                    "",
                ),
                (
                    Carriers::SharedGso(threads),
                    format!("{socket}, sendmmsg of GSO messages + recvmmsg of 64"),
                    " gso",
                ),
            ],
        }
    }
}

/// N channels of one element with `workers` worker threads, channel i
/// sending to channel i+1 at `pps` packets/s; the packets enter through the
/// sink pads' chain function as an upstream element would push them.
#[allow(clippy::too_many_arguments)]
fn peers_run(
    n: usize,
    pps: f64,
    tick: u32,
    workers: u32,
    sockets: PeerSockets,
    gso: bool,
    outputs: PeerOutputs,
    window: f64,
    mhz: f64,
) {
    let pipeline = gst::Pipeline::new();
    let mut m = gst::ElementFactory::make("rtpmuxserver");
    // One worker and GSO are the defaults, so builds without the
    // properties run them.
    if workers != 1 {
        m = m.property("workers", workers);
    }
    if !gso {
        m = m.property("gso", false);
    }
    let m = m.build().expect("rtpmuxserver");
    pipeline.add(&m).expect("add");
    let mut sink_pads = Vec::with_capacity(n);
    let shared_ports: Vec<u16> = match sockets {
        PeerSockets::Own => Vec::new(),
        PeerSockets::Shared => (0..workers.max(1)).map(|_| free_port()).collect(),
    };
    for i in 0..n {
        let sink = m
            .request_pad_simple(&format!("sink_{i}"))
            .expect("sink pad");
        sink.set_property("bind-address", "127.0.0.1");
        sink.set_property("latch", false);
        if !shared_ports.is_empty() {
            // Channel i receives what channel i-1 sends, with its SSRC.
            sink.set_property("bind-port", u32::from(shared_ports[i % shared_ports.len()]));
            sink.set_property("shared-socket", true);
            sink.set_property("remote-ssrc", i64::from(stream_ssrc((i + n - 1) % n)));
        }
        if outputs == PeerOutputs::SrcN {
            let src = m.request_pad_simple(&format!("src_{i}")).expect("src pad");
            fakesink_for(&pipeline, &src);
        }
        sink_pads.push(sink);
    }
    if outputs == PeerOutputs::All {
        let all = m.request_pad_simple("src_all").expect("src_all");
        fakesink_for(&pipeline, &all);
    }
    pipeline.set_state(gst::State::Playing).expect("PLAYING");
    let ports: Vec<u32> = sink_pads.iter().map(|p| p.property("local-port")).collect();
    for (i, pad) in sink_pads.iter().enumerate() {
        pad.set_property("remote-address", "127.0.0.1");
        pad.set_property("remote-port", ports[(i + 1) % n]);
    }
    for (i, pad) in sink_pads.iter().enumerate() {
        for event in stream_start(&format!("peer-{i}")) {
            pad.send_event(event);
        }
    }
    // Two packets per channel, seq 0 and 1, pushed in turn: the receiver's
    // source passes probation at once and every packet after takes the path
    // of a counted one (RFC 3550 A.1: a late duplicate), while the generator
    // only takes a reference, whatever the element holds. The same packet
    // over and over kept every source in probation, a path no real stream
    // takes past its first packets. Writing each channel's next number into
    // a buffer cost the generator more, and most just when the element ran
    // behind, on the cores the element needed: 2-3x with a ring of buffers
    // that fell back to a new one while the element held the last, 1.6x
    // with a GstBufferPool (2,048 channels, one worker).
    let buffers: Vec<[gst::Buffer; 2]> = (0..n)
        .map(|i| [0, 1].map(|seq| gst::Buffer::from_slice(packet(seq, stream_ssrc(i)))))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = {
        let stop = stop.clone();
        let pads = sink_pads.clone();
        std::thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / pps);
            let (started, cpu0) = (Instant::now(), common::thread_cpu_seconds());
            let mut next = started;
            let mut chained = 0u64;
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round ^= 1;
                for (pad, b) in pads.iter().zip(&buffers) {
                    let _ = pad.chain(b[round].clone());
                    chained += 1;
                }
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let share = (common::thread_cpu_seconds() - cpu0) / seconds;
            (chained, share, seconds)
        })
    };
    let (cpu, elapsed, threads) = measure(window);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // The generator's own CPU (its chain calls run the sink pads' chain
    // function, the element's share of sending) is told apart from the
    // element's threads: on two cores the three compete.
    let (chained, generator_share, generator_seconds) = generator.join().expect("generator");
    // A generator that cannot keep up (its pushes, and the element's work
    // in them, share the cores with the workers) offers less than the
    // nominal load, and the share not delivered is then a share of less.
    let offered = 100.0 * chained as f64 / (n as f64 * pps * generator_seconds);
    // Let the element drain what it still holds (send queues, socket
    // buffers), so that what is missing at the end is really lost: the
    // counters must stand still for three polls in a row (at most 10 s).
    let totals = || {
        let s = m.property::<gst::Structure>("stats");
        let get = |k: &str| s.get::<u64>(k).unwrap_or(0);
        [
            "packets-sent",
            "packets-received",
            "dropped-queue-full",
            "dropped-kernel",
            "send-errors",
            "dropped-unknown-source",
        ]
        .map(get)
    };
    let (mut last, mut still) = (totals(), 0);
    let give_up = Instant::now() + Duration::from_secs(10);
    while still < 3 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(100));
        let now = totals();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let [sent, received, queue_full, kernel, send_errors, unknown] = last;
    let counted = queue_full + kernel + send_errors + unknown;
    let uncounted = chained.saturating_sub(received + counted);
    let (name, how) = sockets.names();
    let how = match outputs {
        PeerOutputs::SrcN => format!("{how}, a src_N each"),
        PeerOutputs::All => format!("{how}, all on src_all"),
        PeerOutputs::None => format!("{how}, no source pads"),
    };
    let mut name = name.to_owned();
    if outputs == PeerOutputs::All {
        name.push_str(" src_all");
    }
    if !gso {
        name.push_str(" gso=false");
    }
    let stats = m.property::<gst::Structure>("stats");
    let get = |k: &str| stats.get::<u64>(k).unwrap_or(0);
    // All but the first two packets of each channel's source are counted
    // by its session: they took the path of a real stream's.
    let (gso_messages, counted) = (get("gso-messages"), get("rtp-packets-received"));
    println!(
        "  {n} channels x {pps} pps, {how}, tick={tick}ms, workers={workers}, gso={gso} \
         ({gso_messages} GSO messages): {chained} packets, {counted} counted by the sessions, \
         sent {sent}, received {received}, dropped-queue-full {queue_full}, dropped-kernel \
         {kernel}, send-errors {send_errors}, dropped-unknown-source {unknown}, uncounted \
         {uncounted}; {offered:.1}% of the nominal load offered, {:.3}% not delivered, \
         {threads} threads, CPU {:.1}% (generator \
         {:.0}%, the rest {:.0}%; {:.3} MHz per channel, generator included)",
        100.0 * (chained - received.min(chained)) as f64 / chained.max(1) as f64,
        100.0 * cpu / elapsed,
        100.0 * generator_share,
        100.0 * (cpu / elapsed - generator_share),
        cpu / elapsed * mhz / n as f64,
    );
    common::report(
        &format!(
            "{name} tick={tick}ms workers={workers}: {n} channels to each other, not delivered"
        ),
        (chained - received.min(chained)) as f64,
        " packets",
        None,
        false,
    );
    common::report(
        &format!(
            "{name} tick={tick}ms workers={workers}: {n} channels to each other, load offered"
        ),
        offered,
        " %",
        None,
        true,
    );
    common::report(
        &format!("{name} tick={tick}ms workers={workers}: {n} channels to each other, uncounted"),
        uncounted as f64,
        " packets",
        None,
        false,
    );
    if tick == 0 && sockets == PeerSockets::Own {
        time_stats_reads(&m, n);
    }
    pipeline.set_state(gst::State::Null).expect("NULL");
}

/// One `stats-packed` read (all channels, decoded) against one `stats` read
/// walked channel by channel, as an application would.
fn time_stats_reads(m: &gst::Element, n: usize) {
    let runs = common::runs();
    let packed = common::median(runs, || {
        common::seconds(|| {
            let bytes = m.property::<gst::glib::Bytes>("stats-packed");
            let sum: u64 = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .sum();
            common::keep(sum);
        })
    });
    let structured = common::median(runs, || {
        common::seconds(|| {
            let s = m.property::<gst::Structure>("stats");
            let sum: u64 = (0..n)
                .filter_map(|i| {
                    s.get::<gst::Structure>(format!("channel-{i}").as_str())
                        .ok()
                })
                .filter_map(|c| c.get::<u64>("packets-received").ok())
                .sum();
            common::keep(sum);
        })
    });
    common::report(
        &format!("mux: read {n} channels' counters, stats-packed"),
        packed * 1e6,
        " us",
        Some(("stats structure", structured * 1e6)),
        false,
    );
}

/// CPU seconds the sessions' receive work takes per packet, as the worker
/// does it for `n` channels: N sessions, one packet each in turn (so each
/// session's state is as cold in the cache as in the worker, where a
/// thousand other channels' packets come between two of its own), the
/// datagram parsed and handed to `handle_rtp`, and the columns a packet
/// changes copied where readers find them. Nothing else: the floor of
/// the session layer's per-packet cost, which the element's CPU-MHz per
/// stream is then set against (the element cannot run without its
/// sessions, so this is measured apart).
fn session_seconds_per_packet(n: usize) -> f64 {
    let config = rtpsynth_core::session::Config {
        clock_rate: Some(8000),
        ..rtpsynth_core::session::Config::default()
    };
    let mut sessions: Vec<_> = (0..n)
        .map(|_| rtpsynth_core::session::Session::new(&config, "bench", 0).expect("session"))
        .collect();
    let datagrams: Vec<[u8; PACKET]> = (0..n).map(|i| packet(0, i as u32)).collect();
    // As the element does after each packet: the columns it changed copied
    // where readers find them (one row per session, apart in memory).
    let columns = rtpsynth_core::session::SessionStats::PACKET_COLUMNS.len();
    let published: Vec<Box<[std::sync::atomic::AtomicU64]>> = (0..n)
        .map(|_| (0..columns).map(|_| Default::default()).collect())
        .collect();
    let rounds = (2_000_000 / n.max(1)).max(10);
    let mut seq = 0u16;
    common::median(common::runs(), || {
        let t = common::seconds(|| {
            for round in 0..rounds {
                seq = seq.wrapping_add(1);
                let now = round as u64 * 20_000_000;
                for ((s, d), row) in sessions.iter_mut().zip(&datagrams).zip(&published) {
                    let mut d = *d;
                    number(&mut d, seq);
                    if let Ok(p) = rtpsynth_core::rtp::Packet::parse(common::keep(&d)) {
                        common::keep(s.handle_rtp(&p, now));
                        for (shared, value) in row.iter().zip(s.packet_columns()) {
                            shared.store(value, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        t / (rounds * n) as f64
    })
}

fn main() {
    if std::env::var("BENCH_MUX_ROLE").as_deref() == Ok("sender") {
        sender_main();
        return;
    }
    gst::init().expect("GStreamer initializes");
    gstrtpsynth::plugin_register_static().expect("plugin registers");
    raise_fd_limit();
    let window: f64 = common::env_or("BENCH_SECONDS", 5.0);
    let mut counts: Vec<usize> = common::env_list("BENCH_MUX_N", "100,500,1000,2000,4000");
    counts.retain(|&n| n > 0);
    let mut peers: Vec<usize> = common::env_list("BENCH_MUX_PEERS", "1024,2048,4096");
    peers.retain(|&n| n > 1);
    let tick = common::env_or("BENCH_MUX_TICK", 1.0) as u32;
    let shared_ticks: Vec<u32> = common::env_list("BENCH_MUX_SHARED_TICKS", "0,5");
    let workers: Vec<u32> = common::env_list("BENCH_MUX_WORKERS", "1,2");
    let support = Support::probe();
    let mhz = common::nominal_mhz();
    println!(
        "# bench_mux: N loopback streams x 50 pps of {PACKET}-byte PCMU, {window} s window \
         after {} s warm-up, CPU-MHz at {mhz:.0} MHz nominal",
        WARMUP.as_secs()
    );
    println!(
        "  {:>5} {:<15} {:>7} {:>9} {:>10} {:>9} {:>10} {:>8}",
        "N", "receiver", "threads", "CPU", "MHz/strm", "RSS+MB", "sent", "lost"
    );
    if let Ok(only) = std::env::var("BENCH_MUX_ONLY") {
        // One shared-port row alone, for a profiler (see the module
        // comment).
        let row: fn(u32) -> Receiver = match only.as_str() {
            "shared" => Receiver::SharedMux,
            "shared-all" => Receiver::SharedAll,
            "shared-core" => Receiver::SharedCore,
            "shared-floor" => Receiver::SharedFloor,
            "state-floor" => Receiver::SharedStateFloor,
            "push-floor" => Receiver::SharedPushFloor,
            // The stock row, which has no tick: once per tick listed.
            "udpsrc" => |_| Receiver::Udpsrc,
            _ => panic!(
                "BENCH_MUX_ONLY={only}: one of shared, shared-all, shared-core, shared-floor, \
                 state-floor, push-floor, udpsrc"
            ),
        };
        for &n in &counts {
            for &t in &shared_ticks {
                print_row(
                    n,
                    &format!("{only} t={t}ms"),
                    &receive_run(n, row(t), window, mhz),
                );
            }
        }
        return;
    }
    for &n in &counts {
        let ours = receive_run(n, Receiver::Mux(0), window, mhz);
        print_row(n, "rtpmuxserver", &ours);
        let paced = receive_run(n, Receiver::Mux(tick), window, mhz);
        print_row(n, &format!("  tick={tick}ms"), &paced);
        let core = receive_run(n, Receiver::Core, window, mhz);
        print_row(n, "  core only", &core);
        let bare = receive_run(n, Receiver::Floor, window, mhz);
        print_row(n, "  floor", &bare);
        // Per shared tick: the shared-port channels (when the element has
        // them) and the shared-socket floor at that tick.
        let shared: Vec<SharedRows> = shared_ticks
            .iter()
            .map(|&t| {
                let name = format!("shared t={t}ms");
                let channels = if support.shared_socket {
                    let f = receive_run(n, Receiver::SharedMux(t), window, mhz);
                    print_row(n, &name, &f);
                    Some(f)
                } else {
                    println!(
                        "  {n:>5} {name:<15} not available (rtpmuxserver pads have no \
                         shared-socket and remote-ssrc)"
                    );
                    None
                };
                let all = (support.shared_socket && support.src_all).then(|| {
                    let f = receive_run(n, Receiver::SharedAll(t), window, mhz);
                    print_row(n, "  src_all", &f);
                    f
                });
                let core = receive_run(n, Receiver::SharedCore(t), window, mhz);
                print_row(n, "  shared core", &core);
                let floor = receive_run(n, Receiver::SharedFloor(t), window, mhz);
                print_row(n, "  shared floor", &floor);
                let state_floor = receive_run(n, Receiver::SharedStateFloor(t), window, mhz);
                print_row(n, "  + state floor", &state_floor);
                let push_floor = receive_run(n, Receiver::SharedPushFloor(t), window, mhz);
                print_row(n, "  + push floor", &push_floor);
                SharedRows {
                    tick: t,
                    channels,
                    all,
                    core,
                    floor,
                    state_floor,
                    push_floor,
                }
            })
            .collect();
        let stock = receive_run(n, Receiver::Udpsrc, window, mhz);
        print_row(n, "udpsrc", &stock);
        common::report(
            &format!("mux: CPU-MHz per stream, {n} streams x 50 pps"),
            ours.mhz_per_stream,
            " MHz",
            Some(("udpsrc", stock.mhz_per_stream)),
            false,
        );
        // The session layer's share of the element's cost per stream: its
        // per-packet work at 50 packets/s, in CPU-MHz, over the element's.
        let session_mhz = session_seconds_per_packet(n) * 50.0 * mhz;
        println!(
            "  {n:>5} sessions alone (statistics copied per packet): {:.1} ns per packet = \
             {session_mhz:.4} MHz per stream, \
             {:.1} % of rtpmuxserver's",
            session_mhz / 50.0 / mhz * 1e9,
            100.0 * session_mhz / ours.mhz_per_stream
        );
        common::report(
            &format!("mux sessions' share of the element's cost, {n} streams"),
            100.0 * session_mhz / ours.mhz_per_stream,
            " %",
            None,
            false,
        );
        common::report(
            &format!("mux tick={tick}ms: CPU-MHz per stream, {n} streams"),
            paced.mhz_per_stream,
            " MHz",
            Some(("udpsrc", stock.mhz_per_stream)),
            false,
        );
        common::report(
            &format!("mux floor (epoll+recvmmsg only): CPU-MHz/stream, {n}"),
            bare.mhz_per_stream,
            " MHz",
            Some(("udpsrc", stock.mhz_per_stream)),
            false,
        );
        for SharedRows {
            tick: t,
            channels,
            all,
            core,
            floor,
            state_floor,
            push_floor,
        } in &shared
        {
            common::report(
                &format!("mux shared floor t={t}ms: CPU-MHz/stream, {n}"),
                floor.mhz_per_stream,
                " MHz",
                Some(("udpsrc", stock.mhz_per_stream)),
                false,
            );
            common::report(
                &format!("mux state floor t={t}ms: CPU-MHz/stream, {n}"),
                state_floor.mhz_per_stream,
                " MHz",
                Some(("shared floor", floor.mhz_per_stream)),
                false,
            );
            println!(
                "  {n:>5} shared t={t}ms: the state floor (statistics per stream, nothing else) \
                 takes {:.2}x the shared floor's CPU per stream; the core alone takes {:.2}x \
                 the state floor's{}",
                state_floor.mhz_per_stream / floor.mhz_per_stream,
                core.mhz_per_stream / state_floor.mhz_per_stream,
                not_comparable(&[
                    ("the state floor", state_floor),
                    ("the floor", floor),
                    ("the core alone", core)
                ]),
            );
            let Some(channels) = channels else {
                continue;
            };
            // A shared-port row against the two it is judged by.
            let report_shared = |what: &str, f: &Figures| {
                for (against, figure) in [("udpsrc", &stock), ("shared floor", floor)] {
                    common::report(
                        what,
                        f.mhz_per_stream,
                        " MHz",
                        Some((against, figure.mhz_per_stream)),
                        false,
                    );
                }
            };
            report_shared(
                &format!("mux shared t={t}ms: CPU-MHz per stream, {n} streams"),
                channels,
            );
            let lossy = not_comparable(&[
                ("it", channels),
                ("the floor", floor),
                ("the push floor", push_floor),
                ("the core alone", core),
                ("udpsrc", &stock),
            ]);
            println!(
                "  {n:>5} shared t={t}ms: udpsrc takes {:.1}x its CPU per stream (goal >= 10 \
                 at N >= 500); it takes {:.2}x the shared floor's (goal <= 1.3) and {:.2}x \
                 the push floor's; udpsrc takes {:.1}x the push floor's; the core alone \
                 (no buffers) takes {:.2}x the shared floor's{lossy}",
                stock.mhz_per_stream / channels.mhz_per_stream,
                channels.mhz_per_stream / floor.mhz_per_stream,
                channels.mhz_per_stream / push_floor.mhz_per_stream,
                stock.mhz_per_stream / push_floor.mhz_per_stream,
                core.mhz_per_stream / floor.mhz_per_stream,
            );
            let Some(all) = all else {
                continue;
            };
            report_shared(
                &format!("mux shared src_all t={t}ms: CPU-MHz/stream, {n}"),
                all,
            );
            println!(
                "  {n:>5} shared t={t}ms, src_all: udpsrc takes {:.1}x its CPU per stream (goal \
                 >= 10 at N >= 500); it takes {:.2}x the shared floor's (goal <= 1.3), \
                 {:.2}x the state floor's and {:.2}x the core alone's{}",
                stock.mhz_per_stream / all.mhz_per_stream,
                all.mhz_per_stream / floor.mhz_per_stream,
                all.mhz_per_stream / state_floor.mhz_per_stream,
                all.mhz_per_stream / core.mhz_per_stream,
                not_comparable(&[
                    ("it", all),
                    ("the floor", floor),
                    ("the core alone", core),
                    ("udpsrc", &stock)
                ]),
            );
        }
    }
    let outputs: Vec<PeerOutputs> = common::env_list::<String>("BENCH_MUX_PEERS_SINK", "src_n,all")
        .iter()
        .map(|entry| PeerOutputs::parse(entry))
        .collect();
    let layouts: Vec<String> = common::env_list("BENCH_MUX_PEER_SOCKETS", "own,shared");
    for &n in &peers {
        for layout in &layouts {
            let sockets = PeerSockets::parse(layout);
            if sockets == PeerSockets::Shared && !support.shared_socket {
                println!(
                    "  {n} channels x 100 pps on shared ports: not available (rtpmuxserver \
                     pads have no shared-socket and remote-ssrc)"
                );
                continue;
            }
            for &w in &workers {
                if w != 1 && !support.workers {
                    println!(
                        "  {n} channels x 100 pps, workers={w}: not available (rtpmuxserver \
                         has no workers property)"
                    );
                    continue;
                }
                // With and without GSO, side by side: on shared ports
                // each worker's channels send to one port, so GSO joins
                // them; a socket per channel has two packets for its peer
                // in a round only when the worker runs behind.
                let gsos: &[bool] = if support.gso { &[true, false] } else { &[true] };
                for &gso in gsos {
                    for &out in &outputs {
                        if out == PeerOutputs::All && !support.src_all {
                            println!(
                                "  {n} channels x 100 pps on src_all: not available \
                                 (rtpmuxserver has no src_all pad)"
                            );
                            continue;
                        }
                        peers_run(n, 100.0, 0, w, sockets, gso, out, window, mhz);
                        peers_run(n, 100.0, tick, w, sockets, gso, out, window, mhz);
                    }
                }
            }
            // A floor on as many threads as each row has workers: with
            // two, every datagram crosses to the other thread's core, as
            // it does between the element's workers.
            for &w in &workers {
                let threads = w.max(1) as usize;
                for (carriers, how, suffix) in sockets.floors(threads) {
                    exchange_floor(n, sockets, carriers, &how, suffix, threads, window);
                }
            }
        }
    }
}

/// [`common::floor::exchange_on`] of the channel-to-channel traffic: the
/// same datagrams with nothing but the socket calls, on `threads` threads,
/// what any server with that many threads must at least spend.
#[allow(clippy::too_many_arguments)]
fn exchange_floor(
    n: usize,
    sockets: PeerSockets,
    carriers: Carriers,
    how: &str,
    suffix: &str,
    threads: usize,
    window: f64,
) {
    let x = common::floor::exchange_on(n, 100.0, |i| (i + 1) % n, carriers, window, threads);
    // CPU time, not wall time, so other load on the machine does not
    // count: what one datagram sent and received costs, and how many such
    // channels one core could carry at all.
    let per_packet = x.cpu_seconds / x.sent.max(1) as f64;
    let max_channels = 1.0 / (per_packet * 100.0);
    let on = if threads == 1 {
        "one thread".to_owned()
    } else {
        format!("{threads} threads")
    };
    println!(
        "  {n} channels x 100 pps, floor ({on}, {how} only): {:.2} us CPU per \
         datagram sent and received ({} sent, {} received, {:.0}% CPU); one core carries \
         at most {max_channels:.0} such channels",
        per_packet * 1e6,
        x.sent,
        x.received,
        100.0 * x.cpu_share(),
    );
    let threads_key = if threads == 1 {
        String::new()
    } else {
        format!(" threads={threads}")
    };
    common::report(
        &format!(
            "{}{suffix}{threads_key} floor: channels at 100 pps one core can carry (n={n})",
            sockets.names().0
        ),
        max_channels,
        " channels",
        None,
        true,
    );
}
