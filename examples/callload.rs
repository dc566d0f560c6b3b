//! The call-load job behind `make demo`: N full-duplex G.711 calls (PCMU, or
//! PCMA with `--codec pcma`) on loopback
//! in one process and one pipeline, with the CPU, threads and memory they cost
//! and an account of every packet.
//!
//! Each call is two channels of one `rtpmuxserver` (leg A on channel 2i, leg
//! B on 2i+1, each bound to port 0 and sending to the other's port on
//! 127.0.0.1). Each leg sends `rtpsynthsrc shared-thread=calls` into its
//! channel's `sink_N` and receives on `src_N` (`rtp-caps` PCMU) `!
//! rtpjbufdec ! rtppcmudepay ! ulawdec ! fakesink` (PCMA: `rtppcmadepay !
//! g711alawdec`), whose pad probe counts
//! samples and checks that the sample timeline keeps up with arrival time. `--stock` builds the same calls from
//! stock elements, one `audiotestsrc … ! udpsink` and one `udpsrc ! … !
//! fakesink` per direction, for the benchmark.
//!
//! `--churn R` is the soak mode: once every call is up, R calls end and R
//! new ones start each second (the oldest end first, new ones on new channel
//! indexes), each ended call's counters kept in running totals, and the
//! process's file descriptors, threads and memory read at the start of the
//! measured window, after its first minute and at its end.
//!
//! cargo run --release --example callload -- --calls N --seconds S [--ptime MS]
//!     [--loss P] [--reorder P] [--duplicate P] [--seed N] [--ramp CALLS_PER_S]
//!     [--churn CALLS_PER_S] [--csv FILE] [--json] [--stock] [--quiet]
//!     [--codec pcmu|pcma] [--workers N] [--shared-ports]
//!
//! Exit status 1 when a packet went missing without any counter explaining
//! it, or a leg's decoded samples do not add up to what was sent, or (with
//! `--churn`) the process ended holding more file descriptors or threads than
//! after the first minute, or more memory than `RSS_TOLERANCE` allows.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use rtpsynth_core::jbuf::Counters;
use rtpsynth_core::prng::SplitMix64;

const USAGE: &str = "usage: callload [--calls N] [--seconds S] [--ptime MS] [--loss P] \
[--reorder P] [--duplicate P] [--seed N] [--ramp CALLS_PER_SECOND] [--churn CALLS_PER_SECOND] \
[--tick MS] [--servers K] [--workers N] [--shared-ports] [--no-gso] [--csv FILE] [--json] [--codec pcmu|pcma] \
[--stock] [--quiet]

  --calls N        full-duplex calls (default 200)
  --seconds S      measured seconds once every call is up (default 20)
  --ptime MS       packet duration in milliseconds (default 20)
  --loss P         probability a packet is dropped before the server (0..1)
  --reorder P      probability a packet is held back behind the next one (0..1)
  --duplicate P    probability a packet is sent twice (0..1)
  --seed N         seed of the impairment (default 1)
  --ramp R         calls added per second while playing; 0 = all at once (default 100)
  --churn R        soak: once all calls are up, R calls end and R new calls start
                   each second (a fraction is fine; at most --calls); 0 = off
                   (default 0). Fails the run when file descriptors or threads
                   at the end exceed the after-one-minute figure, or memory grew
                   more than the tolerance. Not with --stock
  --tick MS        rtpmuxserver send tick: sends wait up to MS ms to go out in
                   batches; 0 = a wake per packet (default 0)
  --servers K      rtpmuxserver elements sharing the calls (default 1)
  --workers N      worker threads of each rtpmuxserver (default 1)
  --shared-ports   all A legs of a server on one UDP port and all B legs on
                   another (shared-socket), told apart by SSRC (remote-ssrc);
                   not with --rtcp port+1
  --no-gso         rtpmuxserver gso=false: each packet its own message to the
                   kernel (by default, a round's packets for one port go out
                   as UDP GSO messages, as with --shared-ports)
  --csv FILE       write the per-second rows to FILE
  --json           print the summary as one JSON object on the last line
  --stock          build the calls from stock GStreamer elements instead
  --quiet          no live lines nor table (with --json: only the JSON line)
  --codec C        pcmu (G.711 µ-law, payload type 0) or pcma (A-law, 8) (default pcmu)
  --rtcp MODE      RTCP of our channels: off, mux (RFC 5761, on the RTP port) or
                   port+1 (default mux; the stock calls send none)";

const CLOCK_RATE: u64 = 8000;

/// The G.711 law the calls speak, with the elements each side uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// RTP caps of the stream.
    fn rtp_caps(self) -> &'static str {
        match self {
            Codec::Pcmu => {
                "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0"
            }
            Codec::Pcma => {
                "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMA,payload=8"
            }
        }
    }

    /// Static RTP payload type (RFC 3551).
    fn payload_type(self) -> &'static str {
        match self {
            Codec::Pcmu => "0",
            Codec::Pcma => "8",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Our decoder, and stock's encoder and decoder.
    fn decoder(self) -> &'static str {
        match self {
            Codec::Pcmu => "ulawdec",
            Codec::Pcma => "g711alawdec",
        }
    }

    fn stock_encoder(self) -> &'static str {
        match self {
            Codec::Pcmu => "mulawenc",
            Codec::Pcma => "alawenc",
        }
    }

    fn stock_decoder(self) -> &'static str {
        match self {
            Codec::Pcmu => "mulawdec",
            Codec::Pcma => "alawdec",
        }
    }

    /// Stock RTP payloader and depayloader.
    fn payloader(self) -> &'static str {
        match self {
            Codec::Pcmu => "rtppcmupay",
            Codec::Pcma => "rtppcmapay",
        }
    }

    fn depayloader(self) -> &'static str {
        match self {
            Codec::Pcmu => "rtppcmudepay",
            Codec::Pcma => "rtppcmadepay",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pcmu" => Ok(Codec::Pcmu),
            "pcma" => Ok(Codec::Pcma),
            _ => Err(format!("unknown codec {s:?}: pcmu or pcma")),
        }
    }
}
/// Impairment stops this long before the sources do, so every void it made
/// is closed by later packets and concealed before the books are read.
const CLEAN_TAIL: Duration = Duration::from_millis(300);
/// Time for the last packets to pass the receivers' own threads (stock
/// jitter buffers) once the servers and sockets are quiet.
const DRAIN: Duration = Duration::from_millis(300);
/// Longest wait for packets in flight after the sources stop.
const QUIET_LIMIT: Duration = Duration::from_secs(15);
/// rtpjbufdec's wait behind a void, in milliseconds.
const JBUF_LATENCY: &str = "60";
/// Longest wait for an ending call's packets. Each leg's packets are
/// followed to the end (`OurCall::settled`), so the wait ends as soon as
/// they are all in or counted, however far behind a loaded worker is; only
/// packets the kernel dropped on a full socket after the last datagram it
/// delivered (which no counter learns) keep it waiting this long, and they
/// then show as uncounted loss.
const CALL_SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Longest wait for an RTCP compound on its way between a call's two
/// channels before their counts are read (`OurCall::rtcp_arrived`): on
/// different workers, the one sending may have counted it a moment before
/// the other reads it. Only a compound the kernel dropped keeps it this
/// long.
const RTCP_SETTLE_LIMIT: Duration = Duration::from_millis(200);
/// How often the main loop wakes while calls are ending, so each step of an
/// ending comes on time and calls keep ending at the asked rate.
const CHURN_WAKE: Duration = Duration::from_millis(25);
/// Highest `--churn`: each ended call closes two sockets and each new one
/// opens two, and the main thread does both.
const MAX_CHURN: f64 = 1000.0;
/// When the middle reading of descriptors, threads and memory is taken:
/// this long into the measured window, or half-way through a shorter one.
const STEADY_AFTER: Duration = Duration::from_secs(60);
/// Memory growth allowed between the middle and the end reading under
/// `--churn`: the larger of this share of the middle figure and
/// `RSS_TOLERANCE_KB`. The allocator keeps freed memory in its arenas and
/// the heap fragments, so RSS moves by a few MB with nothing leaking (see
/// docs/callload.md for the figures measured).
const RSS_TOLERANCE: f64 = 0.10;
const RSS_TOLERANCE_KB: u64 = 4096;

#[derive(Debug, Clone)]
pub struct Options {
    pub calls: usize,
    pub seconds: f64,
    pub ptime: u32,
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub seed: u64,
    pub ramp: f64,
    /// Calls ended and started per second once all are up; 0 = off.
    pub churn: f64,
    pub tick: u32,
    pub servers: usize,
    /// Worker threads of each rtpmuxserver.
    pub workers: u32,
    /// Each server's A legs on one shared port, its B legs on another.
    pub shared_ports: bool,
    /// The servers' `gso` property.
    pub gso: bool,
    pub csv: Option<String>,
    pub json: bool,
    pub stock: bool,
    pub quiet: bool,
    pub codec: Codec,
    /// The channels' `rtcp` property: off, mux or port+1.
    pub rtcp: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calls: 200,
            seconds: 20.0,
            ptime: 20,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            seed: 1,
            ramp: 100.0,
            churn: 0.0,
            tick: 0,
            servers: 1,
            workers: 1,
            shared_ports: false,
            gso: true,
            csv: None,
            json: false,
            stock: false,
            quiet: false,
            codec: Codec::Pcmu,
            rtcp: "mux".into(),
        }
    }
}

impl Options {
    /// Parses command-line arguments; `Ok(None)` when help was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        fn value<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
            let v = v.ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: cannot parse {v:?}"))
        }
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--calls" => o.calls = value(&a, args.next())?,
                "--seconds" => o.seconds = value(&a, args.next())?,
                "--ptime" => o.ptime = value(&a, args.next())?,
                "--loss" => o.loss = value(&a, args.next())?,
                "--reorder" => o.reorder = value(&a, args.next())?,
                "--duplicate" => o.duplicate = value(&a, args.next())?,
                "--seed" => o.seed = value(&a, args.next())?,
                "--ramp" => o.ramp = value(&a, args.next())?,
                "--churn" => o.churn = value(&a, args.next())?,
                "--tick" => o.tick = value(&a, args.next())?,
                "--servers" => o.servers = value(&a, args.next())?,
                "--workers" => o.workers = value(&a, args.next())?,
                "--shared-ports" => o.shared_ports = true,
                "--no-gso" => o.gso = false,
                "--csv" => o.csv = Some(value(&a, args.next())?),
                "--json" => o.json = true,
                "--stock" => o.stock = true,
                "--quiet" => o.quiet = true,
                "--codec" => o.codec = args.next().ok_or("--codec needs a value")?.parse()?,
                "--rtcp" => {
                    o.rtcp = args.next().ok_or("--rtcp needs a value")?;
                    if !matches!(o.rtcp.as_str(), "off" | "mux" | "port+1") {
                        return Err(format!("--rtcp {}: off, mux or port+1", o.rtcp));
                    }
                }
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        o.check()?;
        Ok(Some(o))
    }

    fn check(&self) -> Result<(), String> {
        if self.calls == 0 {
            return Err("--calls must be at least 1".into());
        }
        // Two sockets a call, one port each, out of the ephemeral range.
        if self.calls > 10_000 {
            return Err(format!("--calls {} is over the limit of 10000", self.calls));
        }
        if !(self.seconds > 0.0 && self.seconds <= 86_400.0) {
            return Err(format!("--seconds {} must be in (0, 86400]", self.seconds));
        }
        if !(10..=100).contains(&self.ptime) {
            return Err(format!("--ptime {} must be 10 to 100 ms", self.ptime));
        }
        for (name, p) in [
            ("--loss", self.loss),
            ("--reorder", self.reorder),
            ("--duplicate", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} {p} is not a probability in [0, 1]"));
            }
        }
        if self.loss >= 1.0 {
            return Err("--loss 1 would drop every packet".into());
        }
        if !(1..=64).contains(&self.servers) {
            return Err(format!("--servers {} must be 1 to 64", self.servers));
        }
        if self.tick > 1000 {
            return Err(format!("--tick {} must be 0 to 1000 ms", self.tick));
        }
        if !(1..=64).contains(&self.workers) {
            return Err(format!("--workers {} must be 1 to 64", self.workers));
        }
        if self.shared_ports && self.rtcp == "port+1" {
            return Err(
                "--shared-ports carries RTCP on the shared port: --rtcp mux or off, not port+1"
                    .into(),
            );
        }
        if self.stock && (self.shared_ports || self.workers != 1 || !self.gso) {
            return Err("--shared-ports, --workers and --no-gso are for our elements only".into());
        }
        if !(self.ramp >= 0.0 && self.ramp.is_finite()) {
            return Err(format!(
                "--ramp {} must be 0 or more calls per second",
                self.ramp
            ));
        }
        if !(self.churn >= 0.0 && self.churn <= MAX_CHURN) {
            return Err(format!(
                "--churn {} must be 0 to {MAX_CHURN} calls per second",
                self.churn
            ));
        }
        if self.churning() && self.stock {
            return Err(
                "--churn is for our elements only: stock calls are set up once and \
                        never ended (drop --stock or --churn)"
                    .into(),
            );
        }
        // The oldest call ends first, so a call lasts calls / churn seconds.
        if self.churn > self.calls as f64 {
            return Err(format!(
                "--churn {} is more than --calls {}: each call would last under a second",
                self.churn, self.calls
            ));
        }
        Ok(())
    }

    fn churning(&self) -> bool {
        self.churn > 0.0
    }

    fn impaired(&self) -> bool {
        self.loss > 0.0 || self.reorder > 0.0 || self.duplicate > 0.0
    }

    fn samples_per_packet(&self) -> u64 {
        CLOCK_RATE * u64::from(self.ptime) / 1000
    }
}

/// What streaming threads record for one leg (one direction of a call);
/// each counter has one writer, so relaxed atomics are enough.
struct Leg {
    /// Packets the sending side produced (stock: counted by the probe).
    probed: AtomicU64,
    /// Packets the impairment dropped (a held packet is always sent: the
    /// clean tail releases it).
    dropped: AtomicU64,
    /// Extra copies the impairment sent.
    duplicated: AtomicU64,
    /// Datagrams the stock receiver read (ours: the server counts them).
    received: AtomicU64,
    /// Decoded samples that reached the sink.
    samples: AtomicU64,
    /// PTS of the first decoded buffer; u64::MAX until then.
    first_pts: AtomicU64,
    /// Largest distance between a buffer's PTS and where the samples before
    /// it put it: grows when audio goes missing without concealment.
    max_drift_ns: AtomicU64,
}

impl Default for Leg {
    fn default() -> Self {
        Leg {
            probed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            received: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            first_pts: AtomicU64::new(u64::MAX),
            max_drift_ns: AtomicU64::new(0),
        }
    }
}

struct ImpairState {
    rng: SplitMix64,
    held: Option<gst::Buffer>,
}

/// Impairs what `pad` sends to `peer`: loss drops, duplicate chains a copy
/// first, reorder holds a packet and sends it after the next one. The first
/// packet passes untouched (a receiver cannot see a loss before its first
/// packet), and so does everything once `run_on` (the whole run's switch)
/// or `call_on` (the call's, cleared when it starts ending) clears, so every
/// void is closed before the end. Also counts every packet produced.
fn impair(
    pad: &gst::Pad,
    peer: gst::Pad,
    leg: Arc<Leg>,
    o: &Options,
    seed: u64,
    run_on: Arc<AtomicBool>,
    call_on: Arc<AtomicBool>,
) {
    let (loss, reorder, duplicate) = (o.loss, o.reorder, o.duplicate);
    let active = o.impaired();
    // Only this pad's streaming thread takes it: the lock is never contended.
    let state = Mutex::new(ImpairState {
        rng: SplitMix64::new(seed),
        held: None,
    });
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let n = leg.probed.fetch_add(1, Relaxed);
        if !active {
            return gst::PadProbeReturn::Ok;
        }
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 || !run_on.load(Relaxed) || !call_on.load(Relaxed) {
            // The held packet goes first: order is restored.
            if let Some(held) = st.held.take() {
                let _ = peer.chain(held);
            }
            return gst::PadProbeReturn::Ok;
        }
        if st.rng.chance(loss) {
            leg.dropped.fetch_add(1, Relaxed);
            return gst::PadProbeReturn::Drop;
        }
        if st.rng.chance(duplicate) {
            leg.duplicated.fetch_add(1, Relaxed);
            let _ = peer.chain(buffer.clone());
        }
        if let Some(held) = st.held.take() {
            // This packet overtakes the held one, which follows it.
            let _ = peer.chain(std::mem::replace(buffer, held));
            return gst::PadProbeReturn::Ok;
        }
        if st.rng.chance(reorder) {
            st.held = Some(buffer.clone());
            return gst::PadProbeReturn::Drop;
        }
        gst::PadProbeReturn::Ok
    });
}

/// Counts decoded S16 mono samples at `pad` and tracks how far the PTS
/// strays from the timeline those samples make.
fn count_samples(pad: &gst::Pad, leg: Arc<Leg>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let before = leg.samples.fetch_add(buffer.size() as u64 / 2, Relaxed);
        if let Some(pts) = buffer.pts().map(|t| t.nseconds()) {
            let first = leg.first_pts.load(Relaxed);
            if first == u64::MAX {
                leg.first_pts.store(pts, Relaxed);
            } else {
                let expected = first + before * 1_000_000_000 / CLOCK_RATE;
                leg.max_drift_ns.fetch_max(pts.abs_diff(expected), Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// The end of a receiving chain: a fakesink counting `leg`'s samples.
fn counting_sink(leg: Arc<Leg>) -> Result<gst::Element, String> {
    let sink = make(
        "fakesink",
        &[
            ("sync", "false"),
            ("async", "false"),
            ("enable-last-sample", "false"),
        ],
    )?;
    count_samples(
        &sink.static_pad("sink").ok_or("fakesink has no sink pad")?,
        leg,
    );
    Ok(sink)
}

/// Stops `sources`, all `factory` elements.
fn stop_all(sources: &[gst::Element], factory: &str) -> Result<(), String> {
    for s in sources {
        s.set_state(gst::State::Null)
            .map_err(|e| format!("cannot stop {factory}: {e}"))?;
    }
    Ok(())
}

/// An element with properties given as strings, as gst-launch takes them.
fn make(factory: &str, props: &[(&str, &str)]) -> Result<gst::Element, String> {
    let mut b = gst::ElementFactory::make(factory);
    for (name, value) in props {
        b = b.property_from_str(name, value);
    }
    b.build()
        .map_err(|e| format!("cannot create {factory}: {e}"))
}

/// Adds `chain` to `bin` and links it in order.
fn add_chain(bin: &gst::Bin, chain: &[gst::Element]) -> Result<(), String> {
    bin.add_many(chain)
        .map_err(|e| format!("cannot add elements: {e}"))?;
    gst::Element::link_many(chain).map_err(|e| format!("cannot link a call: {e}"))
}

/// Exposes `pad` of an element inside `bin` on the bin as `name`.
fn ghost(bin: &gst::Bin, pad: Option<gst::Pad>, name: &str) -> Result<gst::GhostPad, String> {
    let pad = pad.ok_or("an element lacks its always pad")?;
    let ghost = gst::GhostPad::builder_with_target(&pad)
        .map_err(|e| format!("cannot ghost a pad: {e}"))?
        .name(name)
        .build();
    bin.add_pad(&ghost)
        .map_err(|e| format!("cannot add a ghost pad: {e}"))?;
    Ok(ghost)
}

/// Starts a call's bin in the running pipeline (the bin orders its
/// children's state changes sinks first, so nothing pushes into an element
/// not yet running). Bins per call keep every bin's children few:
/// adding an element checks its name against all its siblings, which made
/// one flat pipeline of thousands of calls quadratic to build.
fn start_call(bin: &gst::Bin) -> Result<(), String> {
    bin.sync_state_with_parent()
        .map_err(|e| format!("cannot start a call: {e}"))
}

fn u64_field(s: &gst::StructureRef, name: &str) -> u64 {
    s.get::<u64>(name).unwrap_or(0)
}

/// Sums of named counters over many elements' `stats`.
fn sum_stats(elements: &[gst::Element], names: &[&str]) -> Vec<u64> {
    let mut sums = vec![0u64; names.len()];
    for e in elements {
        let s = e.property::<gst::Structure>("stats");
        for (sum, name) in sums.iter_mut().zip(names) {
            *sum += u64_field(&s, name);
        }
    }
    sums
}

/// An rtpmuxserver's `stats-packed` in one property read, whatever the
/// number of channels: one row per open channel, channel index first. (Its
/// `stats` structure would give the same, but names a field after every
/// channel, and GStreamer 1.22 interns each field name for good: read
/// over and over while channels come and go, it grows the process.)
struct Packed {
    columns: Vec<String>,
    rows: Vec<Vec<u64>>,
}

impl Packed {
    fn read(mux: &gst::Element) -> Result<Packed, String> {
        let columns = mux.property::<Vec<String>>("stats-columns");
        let packed = mux.property::<glib::Bytes>("stats-packed");
        let words: Vec<u64> = packed
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let ncols = columns.len();
        if ncols == 0 || words.len() < ncols || words.get(1).copied() != Some(ncols as u64) {
            return Err("rtpmuxserver stats-packed does not match stats-columns".into());
        }
        let rows = words[ncols..]
            .chunks_exact(ncols)
            .map(<[u64]>::to_vec)
            .collect();
        Ok(Packed { columns, rows })
    }

    /// Channel `channel`'s row.
    fn row(&self, channel: u64) -> Option<&[u64]> {
        self.rows
            .iter()
            .find(|row| row.first() == Some(&channel))
            .map(Vec::as_slice)
    }

    /// Column `name` of `row`.
    fn value(&self, row: &[u64], name: &str) -> u64 {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|k| row.get(k))
            .copied()
            .unwrap_or(0)
    }

    /// The sum of column `name` over the rows `keep` selects.
    fn sum(&self, name: &str, keep: &dyn Fn(&[u64]) -> bool) -> u64 {
        let Some(k) = self.columns.iter().position(|c| c == name) else {
            return 0;
        };
        self.rows
            .iter()
            .filter(|row| keep(row))
            .filter_map(|row| row.get(k))
            .sum()
    }
}

/// What the channels' RTP sessions say of the calls (RFC 3550 statistics
/// and RTCP), added up over `stats-packed` rows: each channel reports on the
/// stream it receives, and on the peer's reports about the one it sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sessions {
    /// MOS × 100 of each channel that has one: sum, count and the lowest.
    mos_sum: u64,
    mos_n: u64,
    mos_worst: Option<u64>,
    /// Interarrival jitter in µs: sum, count and largest.
    jitter_us_sum: u64,
    jitter_n: u64,
    jitter_us_max: u64,
    /// RFC 3550 A.3 over the channels: expected and lost (signed).
    expected: u64,
    lost: i64,
    /// Round-trip times from the peers' reports: sum, count and largest.
    rtt_us_sum: u64,
    rtt_n: u64,
    rtt_us_max: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
}

/// What `stats-packed` holds for a figure a session cannot tell yet.
const UNKNOWN: u64 = u64::MAX;

impl Sessions {
    /// Adds the rows of `packed` that `keep` selects.
    fn add_rows(&mut self, packed: &Packed, keep: &dyn Fn(&[u64]) -> bool) {
        for row in packed.rows.iter().filter(|r| keep(r)) {
            let v = |name: &str| packed.value(row, name);
            let known = |x: u64| (x != UNKNOWN).then_some(x);
            if let Some(mos) = known(v("mos")) {
                self.mos_sum += mos;
                self.mos_n += 1;
                self.mos_worst = Some(self.mos_worst.map_or(mos, |w| w.min(mos)));
            }
            if let Some(j) = known(v("jitter-us")) {
                self.jitter_us_sum += j;
                self.jitter_n += 1;
                self.jitter_us_max = self.jitter_us_max.max(j);
            }
            let lost = v("packets-lost") as i64;
            if lost != i64::MIN {
                self.expected += v("packets-expected");
                self.lost += lost;
            }
            if let Some(rtt) = known(v("rtt-us")) {
                self.rtt_us_sum += rtt;
                self.rtt_n += 1;
                self.rtt_us_max = self.rtt_us_max.max(rtt);
            }
            self.rtcp_sent += v("rtcp-sent");
            self.rtcp_received += v("rtcp-received");
        }
    }

    /// Mean and lowest MOS over the channels that have one.
    pub fn mos_mean(&self) -> Option<f64> {
        (self.mos_n > 0).then(|| self.mos_sum as f64 / self.mos_n as f64 / 100.0)
    }

    pub fn mos_worst(&self) -> Option<f64> {
        self.mos_worst.map(|m| m as f64 / 100.0)
    }

    /// Mean and largest interarrival jitter, ms.
    pub fn jitter_ms_mean(&self) -> Option<f64> {
        (self.jitter_n > 0).then(|| self.jitter_us_sum as f64 / self.jitter_n as f64 / 1e3)
    }

    pub fn jitter_ms_max(&self) -> Option<f64> {
        (self.jitter_n > 0).then(|| self.jitter_us_max as f64 / 1e3)
    }

    /// Packets lost per packets expected, as the receiving sessions count
    /// them (RFC 3550 A.3), in percent.
    pub fn loss_percent(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.lost as f64 / self.expected as f64 * 100.0)
    }

    /// Mean and largest round-trip time from the peers' reports, ms.
    pub fn rtt_ms_mean(&self) -> Option<f64> {
        (self.rtt_n > 0).then(|| self.rtt_us_sum as f64 / self.rtt_n as f64 / 1e3)
    }

    pub fn rtt_ms_max(&self) -> Option<f64> {
        (self.rtt_n > 0).then(|| self.rtt_us_max as f64 / 1e3)
    }
}

/// Cumulative figures for the live line.
#[derive(Default, Clone, Copy)]
struct Live {
    out: u64,
    inp: u64,
    lost: u64,
    erased: u64,
    /// Mean MOS of the channels up now (ours only).
    mos: Option<f64>,
}

/// The RTP packets no counter accounts for, from `shortfall` (expected at
/// the jitter buffers minus what got there or was counted on the way) when
/// up to `maybe_rtcp` of the counted drops may have been RTCP. A positive
/// shortfall is RTP gone without a counter whatever the drops were; a
/// negative one (more counted than lost) is no loss as far as RTCP drops
/// explain it, and what they cannot explain is reported.
pub fn rtp_uncounted(shortfall: i64, maybe_rtcp: u64) -> i64 {
    if shortfall < 0 {
        (shortfall + maybe_rtcp as i64).min(0)
    } else {
        shortfall
    }
}

/// The final account of every packet, from the elements' own counters.
#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    received: u64,
    impairment_dropped: u64,
    duplicated: u64,
    /// Packets the kernel took but no receiving socket read (UDP loss).
    kernel_lost: u64,
    /// The servers' UDP GSO messages (ours only).
    gso_messages: u64,
    /// Packets some element counted under a drop reason or still holds.
    counted_drops: u64,
    /// What the count expected at the jitter buffers minus what got there
    /// or was counted on the way.
    lost_uncounted: i64,
    /// Counted drops that may have been RTCP rather than RTP (see
    /// [`rtp_uncounted`]).
    drops_maybe_rtcp: u64,
    erasures: u64,
    erased_packets: u64,
    /// Legs whose decoded samples are not (sent × samples per packet).
    discontinuous_legs: u64,
    /// Late skips of the shared thread (ours only).
    late_skipped: u64,
    slow_pushes: u64,
    /// Packets the sources made that their downstream refused (ours only).
    source_dropped: u64,
    /// Largest drift of a leg's sample timeline from its arrival times.
    max_drift_ns: u64,
    /// The RTP sessions' view (ours only).
    sessions: Option<Sessions>,
}

/// One way of building calls: ours, or stock elements.
trait Calls {
    /// Sets up and starts call `i` (its channels are 2i and 2i+1).
    fn add_call(&mut self, i: usize) -> Result<(), String>;
    /// Starts ending the call that has been up longest; the steps that
    /// follow are taken by `advance_endings`. Only our calls churn.
    fn end_oldest(&mut self) -> Result<(), String>;
    /// Takes each ending call through the steps now due; returns how many
    /// calls are still ending.
    fn advance_endings(&mut self) -> Result<usize, String>;
    /// Calls ended (and taken apart) so far.
    fn calls_ended(&self) -> u64;
    fn stop_sources(&mut self) -> Result<(), String>;
    fn live(&self) -> Result<Live, String>;
    fn tally(&self, o: &Options) -> Result<Tally, String>;
}

struct Common {
    pipeline: gst::Pipeline,
    /// Cleared for the clean tail at the end of the run.
    impair_on: Arc<AtomicBool>,
    options: Options,
}

impl Common {
    /// The impairment seed of leg `n` (legs numbered from 1 in the order
    /// they are made): one stream per leg, all from the one seed.
    fn leg_seed(&self, n: u64) -> u64 {
        self.options
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(n)
    }
}

fn max_drift_ns<'a>(legs: impl IntoIterator<Item = &'a Arc<Leg>>) -> u64 {
    legs.into_iter()
        .map(|l| l.max_drift_ns.load(Relaxed))
        .max()
        .unwrap_or(0)
}

/// The rtpjbufdec counters the account reads, in this order.
pub const JB: [&str; 13] = [
    "received",
    "pushed",
    "dropped-duplicate",
    "dropped-late",
    "dropped-parse",
    "dropped-outlier",
    "dropped-flushing",
    "dropped-rtcp",
    "dropped-ssrc-probation",
    "buffered",
    "erasures",
    "erased-packets",
    "silence-packets",
];
const JB_RECEIVED: usize = 0;
const JB_ERASURES: usize = 10;
const JB_ERASED_PACKETS: usize = 11;

/// What some of our calls did, from their elements' counters: read for a
/// call as it ends (and added to running totals), and for the calls still
/// up when the run ends.
#[derive(Default, Debug, Clone, Copy)]
struct Books {
    /// The sources' `packets-sent`, `late-skipped`, `slow-pushes` and
    /// `dropped-downstream`.
    sent: u64,
    late_skipped: u64,
    slow_pushes: u64,
    source_dropped: u64,
    /// Packets the impairment dropped, and copies it sent.
    dropped: u64,
    duplicated: u64,
    /// The jitter buffers' counters, in `JB` order.
    jb: [u64; JB.len()],
    /// Legs whose decoded samples do not add up to what was sent.
    discontinuous_legs: u64,
    max_drift_ns: u64,
}

impl Books {
    fn add(&mut self, other: &Books) {
        self.sent += other.sent;
        self.late_skipped += other.late_skipped;
        self.slow_pushes += other.slow_pushes;
        self.source_dropped += other.source_dropped;
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        for (sum, v) in self.jb.iter_mut().zip(other.jb) {
            *sum += v;
        }
        self.discontinuous_legs += other.discontinuous_legs;
        self.max_drift_ns = self.max_drift_ns.max(other.max_drift_ns);
    }
}

/// One of our calls: channels 2i (leg A) and 2i+1 (leg B) of `mux`, a bin
/// of receivers and a bin of senders.
struct OurCall {
    index: usize,
    /// Which of the servers, and the server.
    server: usize,
    mux: gst::Element,
    /// The server's pads the call holds: sink_2i, sink_2i+1, src_2i, src_2i+1.
    pads: [gst::Pad; 4],
    rx: gst::Bin,
    tx: gst::Bin,
    /// Per leg (A, B): its source, the jitter buffer that receives it, and
    /// what the probes count.
    sources: [gst::Element; 2],
    jbufs: [gst::Element; 2],
    legs: [Arc<Leg>; 2],
    /// Cleared when the call starts ending: its packets then pass
    /// unimpaired.
    impair_on: Arc<AtomicBool>,
}

impl OurCall {
    fn channels(&self) -> [u64; 2] {
        let a = 2 * self.index as u64;
        [a, a + 1]
    }

    fn stop_sources(&self) -> Result<(), String> {
        stop_all(&self.sources, "rtpsynthsrc")
    }

    /// Packets of each leg that reached its jitter buffer.
    fn arrived(&self) -> [u64; 2] {
        self.jbufs
            .each_ref()
            .map(|j| u64_field(&j.property::<gst::Structure>("stats"), JB[JB_RECEIVED]))
    }

    /// Packets of each leg handed to the server: what its source made, less
    /// what the impairment dropped, plus the copies it sent.
    fn handed_over(&self) -> [u64; 2] {
        [0, 1].map(|k| {
            let sent = u64_field(
                &self.sources[k].property::<gst::Structure>("stats"),
                "packets-sent",
            );
            let leg = &self.legs[k];
            (sent + leg.duplicated.load(Relaxed)).saturating_sub(leg.dropped.load(Relaxed))
        })
    }

    /// Whether every packet each leg handed to the server has reached its
    /// jitter buffer or been counted as dropped on the way: by the sending
    /// channel (queue full, send error) or the receiving one (dropped by the
    /// kernel on a full socket, not from the peer, not RTP). `packed` is
    /// the call's server's `stats-packed`.
    fn settled(&self, packed: &Packed) -> bool {
        let [a, b] = self.channels();
        let (handed, arrived) = (self.handed_over(), self.arrived());
        // Leg A is sent on channel a and received on b; leg B the other way.
        [(a, b), (b, a)]
            .into_iter()
            .enumerate()
            .all(|(k, (send, recv))| {
                let (Some(s), Some(r)) = (packed.row(send), packed.row(recv)) else {
                    return false;
                };
                let counted = packed.value(s, "dropped-queue-full")
                    + packed.value(s, "send-errors")
                    + packed.value(r, "dropped-kernel")
                    + packed.value(r, "dropped-foreign-source")
                    + packed.value(r, "dropped-not-rtp");
                arrived[k] + counted >= handed[k]
            })
    }

    /// Whether each of the call's channels has taken in every RTCP
    /// compound the other sent. `packed` is the call's server's
    /// `stats-packed`.
    fn rtcp_arrived(&self, packed: &Packed) -> bool {
        let [a, b] = self.channels();
        [(a, b), (b, a)].into_iter().all(|(send, recv)| {
            match (packed.row(send), packed.row(recv)) {
                (Some(s), Some(r)) => {
                    packed.value(r, "rtcp-received") >= packed.value(s, "rtcp-sent")
                }
                _ => true,
            }
        })
    }

    /// The call's server's `stats-packed`, read once no RTCP compound is on
    /// its way between the call's channels (see [`read_rtcp_settled`]).
    fn read_rtcp_settled(&self) -> Result<Packed, String> {
        read_rtcp_settled(&self.mux, |packed| self.rtcp_arrived(packed))
    }

    /// The call's counters, and whether each leg decoded one packet's
    /// samples for each packet sent: the packet itself, or the silence that
    /// conceals it. A source that skipped packet times resumed with a
    /// timestamp jump, and silence for a void across that jump covers the
    /// skipped time too: then only missing samples count.
    fn books(&self, samples_per_packet: u64) -> Books {
        let mut b = Books::default();
        for k in 0..2 {
            let st = self.sources[k].property::<gst::Structure>("stats");
            let sent = u64_field(&st, "packets-sent");
            let skipped = u64_field(&st, "late-skipped");
            b.sent += sent;
            b.late_skipped += skipped;
            b.slow_pushes += u64_field(&st, "slow-pushes");
            b.source_dropped += u64_field(&st, "dropped-downstream");
            let leg = &self.legs[k];
            b.dropped += leg.dropped.load(Relaxed);
            b.duplicated += leg.duplicated.load(Relaxed);
            b.max_drift_ns = b.max_drift_ns.max(leg.max_drift_ns.load(Relaxed));
            let samples = leg.samples.load(Relaxed);
            let expected = sent * samples_per_packet;
            if samples < expected || (skipped == 0 && samples != expected) {
                b.discontinuous_legs += 1;
            }
            let js = self.jbufs[k].property::<gst::Structure>("stats");
            for (sum, name) in b.jb.iter_mut().zip(JB) {
                *sum += u64_field(&js, name);
            }
        }
        b
    }

    /// Ends both receive streams, so each rtpjbufdec pushes what it still
    /// holds (a packet waiting behind a void) and the samples are all
    /// counted; EOS runs through the chain in this thread.
    fn end_streams(&self) -> Result<(), String> {
        for jbuf in &self.jbufs {
            let pad = jbuf
                .static_pad("sink")
                .ok_or("rtpjbufdec has no sink pad")?;
            // A chain that never received a packet has no stream to end,
            // and EOS before stream-start would be out of order.
            if pad.sticky_event::<gst::event::StreamStart>(0).is_some() {
                pad.send_event(gst::event::Eos::new());
            }
        }
        Ok(())
    }

    /// Gives the channels back to the server (closing their sockets) and
    /// takes the bins out of the pipeline; dropping the call then drops the
    /// last references.
    fn dismantle(self, pipeline: &gst::Pipeline) -> Result<(), String> {
        for pad in &self.pads {
            self.mux.release_request_pad(pad);
        }
        for bin in [&self.rx, &self.tx] {
            bin.set_state(gst::State::Null)
                .map_err(|e| format!("cannot stop call {}: {e}", self.index))?;
        }
        pipeline
            .remove_many([&self.rx, &self.tx])
            .map_err(|e| format!("cannot remove call {}: {e}", self.index))
    }
}

/// Where an ending call stands.
enum Stage {
    /// Its packets pass unimpaired until `until`, so every void made so far
    /// is closed by later packets (a reordered packet is only let go by the
    /// next one, and a lost last packet would never be concealed); the
    /// sources still run.
    CleanTail { until: Instant },
    /// Sources stopped; waiting until what they sent has reached the
    /// jitter buffers or been counted as dropped, until `deadline` at most.
    InFlight { deadline: Instant },
}

struct Ending {
    call: OurCall,
    stage: Stage,
}

/// The SSRC the leg sending into channel `ch` uses: distinct per channel,
/// so that shared ports can tell the legs apart.
fn leg_ssrc(ch: usize) -> u32 {
    0x5000_0000 + ch as u32
}

/// Our calls: `--servers` rtpmuxservers (call i on server i mod servers),
/// synthesized sources on one shared thread.
struct Ours {
    c: Common,
    muxes: Vec<gst::Element>,
    /// `--shared-ports`: each server's A and B ports, 0 until its first
    /// channel of each bound one.
    shared_ports: Vec<[u32; 2]>,
    /// Calls up, oldest first.
    up: VecDeque<OurCall>,
    ending: Vec<Ending>,
    /// Counters of the calls that ended, read as each ended.
    ended: Books,
    /// Packets the ended calls' channels sent and received, for the live
    /// line: `stats-packed` lists open channels only.
    ended_mux_sent: u64,
    ended_mux_received: u64,
    /// The sessions of the calls ended so far.
    ended_sessions: Sessions,
    calls_ended: u64,
}

impl Ours {
    fn new(c: Common) -> Result<Ours, String> {
        let tick = c.options.tick.to_string();
        let workers = c.options.workers.to_string();
        let gso = c.options.gso.to_string();
        let muxes = (0..c.options.servers)
            .map(|_| {
                make(
                    "rtpmuxserver",
                    &[("tick", &tick), ("workers", &workers), ("gso", &gso)],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        c.pipeline
            .add_many(&muxes)
            .map_err(|e| format!("cannot add rtpmuxserver: {e}"))?;
        Ok(Ours {
            shared_ports: vec![[0; 2]; muxes.len()],
            c,
            muxes,
            up: VecDeque::new(),
            ending: Vec::new(),
            ended: Books::default(),
            ended_mux_sent: 0,
            ended_mux_received: 0,
            ended_sessions: Sessions::default(),
            calls_ended: 0,
        })
    }

    /// Every call not yet taken apart: up or ending.
    fn calls(&self) -> impl Iterator<Item = &OurCall> {
        self.up.iter().chain(self.ending.iter().map(|e| &e.call))
    }

    fn pad(mux: &gst::Element, name: &str) -> Result<gst::Pad, String> {
        mux.request_pad_simple(name)
            .ok_or(format!("cannot request rtpmuxserver {name}"))
    }

    /// A channel's sink pad. Its socket opens at once, the server running,
    /// on the default wildcard address: setting bind-address now would
    /// re-open it, a round trip to the busy worker for every channel.
    ///
    /// With `shared`, the channel joins that shared port (0: it binds a
    /// free one, which it returns for the next channels), expecting the
    /// SSRC `remote_ssrc` from its peer.
    fn channel(
        mux: &gst::Element,
        ch: usize,
        rtcp: &str,
        shared: Option<(u32, u32)>,
    ) -> Result<(gst::Pad, u32), String> {
        let sink = Self::pad(mux, &format!("sink_{ch}"))?;
        if rtcp != "off" {
            // Re-opens the socket (port+1 needs an even port): read the
            // port after.
            sink.set_property_from_str("rtcp", rtcp);
        }
        if let Some((port, remote_ssrc)) = shared {
            sink.set_property("remote-ssrc", i64::from(remote_ssrc));
            // Each re-opens the channel: shared first, so the port is
            // joined, not taken.
            sink.set_property("shared-socket", true);
            sink.set_property("bind-port", port);
        }
        let port = sink.property::<u32>("local-port");
        if port == 0 {
            return Err(format!("rtpmuxserver channel {ch} has no socket"));
        }
        Ok((sink, port))
    }

    /// The receiving end of `leg` in `bin`: its input, `name`, and its
    /// jitter buffer.
    fn receiver(
        o: &Options,
        bin: &gst::Bin,
        leg: Arc<Leg>,
        name: &str,
    ) -> Result<(gst::GhostPad, gst::Element), String> {
        let jbuf = make(
            "rtpjbufdec",
            &[("latency", JBUF_LATENCY), ("erasure-mode", "silence")],
        )?;
        let chain = [
            jbuf.clone(),
            make(o.codec.depayloader(), &[])?,
            make(o.codec.decoder(), &[])?,
            counting_sink(leg)?,
        ];
        add_chain(bin, &chain)?;
        Ok((ghost(bin, jbuf.static_pad("sink"), name)?, jbuf))
    }

    /// The sending end of `leg` in `bin`, impaired on its way to the
    /// server's `sink`: its output, `name`, and its source.
    fn sender(
        c: &Common,
        bin: &gst::Bin,
        name: &str,
        sink: &gst::Pad,
        (leg, ssrc): (Arc<Leg>, u32),
        seed: u64,
        call_on: &Arc<AtomicBool>,
    ) -> Result<(gst::GhostPad, gst::Element), String> {
        let o = &c.options;
        let ptime = o.ptime.to_string();
        let ssrc = ssrc.to_string();
        let src = make(
            "rtpsynthsrc",
            &[
                ("shared-thread", "calls"),
                ("is-live", "true"),
                ("ptime", &ptime),
                ("payload-type", o.codec.payload_type()),
                ("ssrc", &ssrc),
            ],
        )?;
        bin.add(&src)
            .map_err(|e| format!("cannot add rtpsynthsrc: {e}"))?;
        let pad = src.static_pad("src").ok_or("rtpsynthsrc has no src pad")?;
        if o.impaired() {
            impair(
                &pad,
                sink.clone(),
                leg,
                o,
                seed,
                c.impair_on.clone(),
                call_on.clone(),
            );
        }
        Ok((ghost(bin, Some(pad), name)?, src))
    }

    /// The ending's last steps: end the receive streams, read the call's
    /// counters into the running totals, give its channels back and take it
    /// apart.
    fn retire(&mut self, call: OurCall) -> Result<(), String> {
        call.end_streams()?;
        self.ended
            .add(&call.books(self.c.options.samples_per_packet()));
        let packed = call.read_rtcp_settled()?;
        let channels = call.channels();
        let mine = |row: &[u64]| row.first().is_some_and(|ch| channels.contains(ch));
        self.ended_mux_sent += packed.sum("packets-sent", &mine) - packed.sum("rtcp-sent", &mine);
        self.ended_mux_received +=
            packed.sum("packets-received", &mine) - packed.sum("rtcp-received", &mine);
        self.ended_sessions.add_rows(&packed, &mine);
        call.dismantle(&self.c.pipeline)?;
        self.calls_ended += 1;
        Ok(())
    }
}

impl Calls for Ours {
    fn add_call(&mut self, i: usize) -> Result<(), String> {
        let (a, b) = (2 * i, 2 * i + 1);
        let server = i % self.muxes.len();
        let mux = self.muxes[server].clone();
        let rtcp = self.c.options.rtcp.clone();
        // Channel a receives leg B (sent from channel b), and b leg A.
        let shared = |leg: usize, peer: usize| {
            self.c
                .options
                .shared_ports
                .then(|| (self.shared_ports[server][leg], leg_ssrc(peer)))
        };
        let (sink_a, port_a) = Self::channel(&mux, a, &rtcp, shared(0, b))?;
        let (sink_b, port_b) = Self::channel(&mux, b, &rtcp, shared(1, a))?;
        if self.c.options.shared_ports {
            self.shared_ports[server] = [port_a, port_b];
        }
        let src_a = Self::pad(&mux, &format!("src_{a}"))?;
        let src_b = Self::pad(&mux, &format!("src_{b}"))?;
        let rtp_caps = self.c.options.codec.rtp_caps();
        let caps: gst::Caps = rtp_caps
            .parse()
            .map_err(|e| format!("bad caps {rtp_caps}: {e}"))?;
        for src in [&src_a, &src_b] {
            src.set_property("rtp-caps", &caps);
        }
        let (leg_a, leg_b) = (Arc::new(Leg::default()), Arc::new(Leg::default()));
        let (seed_a, seed_b) = (self.c.leg_seed(a as u64 + 1), self.c.leg_seed(b as u64 + 1));
        let impair_on = Arc::new(AtomicBool::new(true));
        // Receivers and senders in two bins: one bin feeding the server
        // and fed by it would be a loop in the pipeline's graph.
        let (rx, tx) = (gst::Bin::new(), gst::Bin::new());
        // Leg A is received on B's channel, leg B on A's.
        let o = &self.c.options;
        let (in_a, jbuf_a) = Self::receiver(o, &rx, leg_a.clone(), "in_a")?;
        let (in_b, jbuf_b) = Self::receiver(o, &rx, leg_b.clone(), "in_b")?;
        let (out_a, source_a) = Self::sender(
            &self.c,
            &tx,
            "out_a",
            &sink_a,
            (leg_a.clone(), leg_ssrc(a)),
            seed_a,
            &impair_on,
        )?;
        let (out_b, source_b) = Self::sender(
            &self.c,
            &tx,
            "out_b",
            &sink_b,
            (leg_b.clone(), leg_ssrc(b)),
            seed_b,
            &impair_on,
        )?;
        self.c
            .pipeline
            .add_many([&rx, &tx])
            .map_err(|e| format!("cannot add call {i}: {e}"))?;
        for (from, to) in [
            (&src_b, in_a.upcast_ref::<gst::Pad>()),
            (&src_a, in_b.upcast_ref()),
            (out_a.upcast_ref(), &sink_a),
            (out_b.upcast_ref(), &sink_b),
        ] {
            from.link(to)
                .map_err(|e| format!("call {i}: cannot link {}: {e:?}", from.name()))?;
        }
        for (sink, remote) in [(&sink_a, port_b), (&sink_b, port_a)] {
            sink.set_property("remote-address", "127.0.0.1");
            sink.set_property("remote-port", remote);
        }
        self.up.push_back(OurCall {
            index: i,
            server,
            mux,
            pads: [sink_a, sink_b, src_a, src_b],
            rx: rx.clone(),
            tx: tx.clone(),
            sources: [source_a, source_b],
            jbufs: [jbuf_a, jbuf_b],
            legs: [leg_a, leg_b],
            impair_on,
        });
        // Receivers run before the first packet is sent to them.
        start_call(&rx)?;
        start_call(&tx)
    }

    fn end_oldest(&mut self) -> Result<(), String> {
        let call = self.up.pop_front().ok_or("no call up to end")?;
        call.impair_on.store(false, Relaxed);
        // Unimpaired calls have no void to close.
        let tail = if self.c.options.impaired() {
            CLEAN_TAIL
        } else {
            Duration::ZERO
        };
        self.ending.push(Ending {
            call,
            stage: Stage::CleanTail {
                until: Instant::now() + tail,
            },
        });
        Ok(())
    }

    fn advance_endings(&mut self) -> Result<usize, String> {
        let now = Instant::now();
        // Each server's stats-packed, read once for all its ending calls.
        let mut packed: Vec<Option<Packed>> = self.muxes.iter().map(|_| None).collect();
        let mut k = 0;
        while k < self.ending.len() {
            let Ending { call, stage } = &mut self.ending[k];
            let done = match stage {
                Stage::CleanTail { until } => {
                    if now >= *until {
                        call.stop_sources()?;
                        *stage = Stage::InFlight {
                            deadline: now + CALL_SETTLE_LIMIT,
                        };
                    }
                    false
                }
                Stage::InFlight { deadline } => {
                    let snapshot = match &mut packed[call.server] {
                        Some(p) => p,
                        slot => slot.insert(Packed::read(&call.mux)?),
                    };
                    call.settled(snapshot) || now >= *deadline
                }
            };
            if done {
                let e = self.ending.swap_remove(k);
                self.retire(e.call)?;
            } else {
                k += 1;
            }
        }
        Ok(self.ending.len())
    }

    fn calls_ended(&self) -> u64 {
        self.calls_ended
    }

    fn stop_sources(&mut self) -> Result<(), String> {
        for call in self.calls() {
            call.stop_sources()?;
        }
        Ok(())
    }

    fn live(&self) -> Result<Live, String> {
        let (mut out, mut inp) = (self.ended_mux_sent, self.ended_mux_received);
        let mut sessions = Sessions::default();
        for mux in &self.muxes {
            let packed = Packed::read(mux)?;
            // RTP only: the channels' RTCP is counted apart.
            out += packed.sum("packets-sent", &|_| true) - packed.sum("rtcp-sent", &|_| true);
            inp +=
                packed.sum("packets-received", &|_| true) - packed.sum("rtcp-received", &|_| true);
            sessions.add_rows(&packed, &|_| true);
        }
        let mut lost = self.ended.dropped;
        let mut erased = self.ended.jb[JB_ERASED_PACKETS];
        for call in self.calls() {
            lost += call
                .legs
                .iter()
                .map(|l| l.dropped.load(Relaxed))
                .sum::<u64>();
            erased += sum_stats(&call.jbufs, &[JB[JB_ERASED_PACKETS]])[0];
        }
        Ok(Live {
            out,
            inp,
            lost,
            erased,
            mos: sessions.mos_mean(),
        })
    }

    fn tally(&self, o: &Options) -> Result<Tally, String> {
        // The reads below come right after: a report falls due seconds
        // apart, so none is sent in between but by a rare chance.
        for mux in &self.muxes {
            read_rtcp_settled(mux, |packed| {
                self.calls()
                    .filter(|c| c.mux == *mux)
                    .all(|c| c.rtcp_arrived(packed))
            })?;
        }
        let mut books = self.ended;
        for call in self.calls() {
            books.add(&call.books(o.samples_per_packet()));
        }
        const MUX: [&str; 12] = [
            "packets-sent",
            "packets-received",
            "rtcp-sent",
            "rtcp-received",
            "dropped-queue-full",
            "send-errors",
            "dropped-no-socket",
            "dropped-foreign-source",
            "dropped-not-rtp",
            "dropped-kernel",
            "dropped-downstream",
            "gso-messages",
        ];
        // The servers' own totals, which keep the counts of released
        // channels (read once, at the end: see `Packed`).
        let m = sum_stats(&self.muxes, &MUX);
        let mux = |n: &str| MUX.iter().position(|c| *c == n).map_or(0, |k| m[k]);
        // Every drop reason the jitter buffer has, and what it still holds
        // (`JB` lists them all: see `jb_reads_every_outcome`).
        let jb_counted: u64 = JB
            .iter()
            .zip(books.jb)
            .filter(|(name, _)| Counters::dropped_or_held().any(|c| c == **name))
            .map(|(_, v)| v)
            .sum();
        let mux_counted = mux("dropped-queue-full")
            + mux("send-errors")
            + mux("dropped-no-socket")
            + mux("dropped-foreign-source")
            + mux("dropped-not-rtp")
            + mux("dropped-kernel")
            + mux("dropped-downstream");
        let into_server = books.sent + books.duplicated - books.dropped;
        // A socket that carries RTCP too counts its datagrams, not its RTP:
        // its kernel drops, send errors and foreign datagrams may be RTCP,
        // at most as many as the compounds sent and never taken in.
        let drops_maybe_rtcp =
            (mux("dropped-kernel") + mux("send-errors") + mux("dropped-foreign-source"))
                .min(mux("rtcp-sent").saturating_sub(mux("rtcp-received")));
        let lost_uncounted = rtp_uncounted(
            into_server as i64 - (mux_counted + books.jb[JB_RECEIVED]) as i64,
            drops_maybe_rtcp,
        );
        let mut sessions = self.ended_sessions;
        for mux in &self.muxes {
            sessions.add_rows(&Packed::read(mux)?, &|_| true);
        }
        // The channels' datagrams less their RTCP: the RTP the calls sent.
        let rtp_sent = mux("packets-sent") - mux("rtcp-sent");
        let rtp_received = mux("packets-received") - mux("rtcp-received");
        Ok(Tally {
            sent: books.sent,
            received: rtp_received,
            impairment_dropped: books.dropped,
            duplicated: books.duplicated,
            kernel_lost: rtp_sent.saturating_sub(rtp_received),
            gso_messages: mux("gso-messages"),
            counted_drops: mux_counted + jb_counted,
            lost_uncounted,
            drops_maybe_rtcp,
            erasures: books.jb[JB_ERASURES],
            erased_packets: books.jb[JB_ERASED_PACKETS],
            discontinuous_legs: books.discontinuous_legs,
            late_skipped: books.late_skipped,
            slow_pushes: books.slow_pushes,
            source_dropped: books.source_dropped,
            max_drift_ns: books.max_drift_ns,
            sessions: Some(sessions),
        })
    }
}

/// The same calls from stock elements: per direction `audiotestsrc ! … !
/// udpsink` and `udpsrc ! rtpjitterbuffer ! rtppcmudepay ! mulawdec !
/// fakesink`, each with its own streaming threads. They are set up once
/// and never churn.
struct Stock {
    c: Common,
    legs: Vec<Arc<Leg>>,
    sources: Vec<gst::Element>,
    jitterbuffers: Vec<gst::Element>,
}

impl Stock {
    /// Packets the jitter buffers gave up on.
    fn lost(&self) -> u64 {
        sum_stats(&self.jitterbuffers, &["num-lost"])[0]
    }

    fn leg_sums(&self) -> (u64, u64, u64, u64) {
        self.legs.iter().fold((0, 0, 0, 0), |(p, d, u, r), l| {
            (
                p + l.probed.load(Relaxed),
                d + l.dropped.load(Relaxed),
                u + l.duplicated.load(Relaxed),
                r + l.received.load(Relaxed),
            )
        })
    }

    /// One direction of a call in `bin`; the receiver first, as the sender
    /// needs its port.
    fn direction(&mut self, bin: &gst::Bin, call_on: &Arc<AtomicBool>) -> Result<(), String> {
        let leg = Arc::new(Leg::default());
        self.legs.push(leg.clone());
        let seed = self.c.leg_seed(self.legs.len() as u64);
        let udpsrc = make(
            "udpsrc",
            &[
                ("address", "127.0.0.1"),
                ("port", "0"),
                ("caps", self.c.options.codec.rtp_caps()),
            ],
        )?;
        // READY opens the socket; udpsrc then reports the port it got.
        udpsrc
            .set_state(gst::State::Ready)
            .map_err(|e| format!("cannot open udpsrc: {e}"))?;
        let port = udpsrc.property::<i32>("port");
        if port <= 0 {
            return Err("udpsrc did not report its bound port".into());
        }
        let jb = make("rtpjitterbuffer", &[("latency", JBUF_LATENCY)])?;
        add_chain(
            bin,
            &[
                udpsrc.clone(),
                jb.clone(),
                make(self.c.options.codec.depayloader(), &[])?,
                make(self.c.options.codec.stock_decoder(), &[])?,
                counting_sink(leg.clone())?,
            ],
        )?;
        let received = leg.clone();
        udpsrc
            .static_pad("src")
            .ok_or("udpsrc has no src pad")?
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                received.received.fetch_add(1, Relaxed);
                gst::PadProbeReturn::Ok
            });
        let raw = format!("audio/x-raw,rate={CLOCK_RATE},channels=1");
        let samples = self.c.options.samples_per_packet().to_string();
        let port = port.to_string();
        let source = make(
            "audiotestsrc",
            &[
                ("is-live", "true"),
                ("samplesperbuffer", &samples),
                ("wave", "silence"),
            ],
        )?;
        let pay = make(self.c.options.codec.payloader(), &[])?;
        let udpsink = make(
            "udpsink",
            &[
                ("host", "127.0.0.1"),
                ("port", &port),
                ("sync", "false"),
                ("async", "false"),
            ],
        )?;
        add_chain(
            bin,
            &[
                source.clone(),
                make("capsfilter", &[("caps", &raw)])?,
                make(self.c.options.codec.stock_encoder(), &[])?,
                pay.clone(),
                udpsink.clone(),
            ],
        )?;
        impair(
            &pay.static_pad("src")
                .ok_or("the payloader has no src pad")?,
            udpsink
                .static_pad("sink")
                .ok_or("udpsink has no sink pad")?,
            leg,
            &self.c.options,
            seed,
            self.c.impair_on.clone(),
            call_on.clone(),
        );
        self.sources.push(source);
        self.jitterbuffers.push(jb);
        Ok(())
    }
}

impl Calls for Stock {
    fn add_call(&mut self, i: usize) -> Result<(), String> {
        let bin = gst::Bin::new();
        // Stock calls never end before the run does.
        let call_on = Arc::new(AtomicBool::new(true));
        self.direction(&bin, &call_on)?;
        self.direction(&bin, &call_on)?;
        self.c
            .pipeline
            .add(&bin)
            .map_err(|e| format!("cannot add call {i}: {e}"))?;
        start_call(&bin)
    }

    fn end_oldest(&mut self) -> Result<(), String> {
        Err("stock calls do not churn".into())
    }

    fn advance_endings(&mut self) -> Result<usize, String> {
        Ok(0)
    }

    fn calls_ended(&self) -> u64 {
        0
    }

    fn stop_sources(&mut self) -> Result<(), String> {
        stop_all(&self.sources, "audiotestsrc")
    }

    fn live(&self) -> Result<Live, String> {
        let (probed, dropped, _, received) = self.leg_sums();
        Ok(Live {
            out: probed,
            inp: received,
            lost: dropped,
            erased: self.lost(),
            mos: None,
        })
    }

    fn tally(&self, _o: &Options) -> Result<Tally, String> {
        let (sent, dropped, duplicated, received) = self.leg_sums();
        let lost = self.lost();
        let into_network = sent + duplicated - dropped;
        Ok(Tally {
            sent,
            received,
            impairment_dropped: dropped,
            duplicated,
            kernel_lost: into_network.saturating_sub(received),
            gso_messages: 0,
            counted_drops: 0,
            lost_uncounted: into_network as i64 - received as i64,
            drops_maybe_rtcp: 0,
            erasures: lost,
            erased_packets: lost,
            // rtpjitterbuffer signals loss with events, not samples: the
            // sample count is not checked for stock calls.
            discontinuous_legs: 0,
            late_skipped: 0,
            slow_pushes: 0,
            source_dropped: 0,
            max_drift_ns: max_drift_ns(&self.legs),
            sessions: None,
        })
    }
}

// --- Process figures --------------------------------------------------------

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User plus system CPU seconds of the whole process.
fn process_cpu() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// CPU seconds of the calling thread (the monitor).
fn thread_cpu() -> f64 {
    rusage_seconds(libc::RUSAGE_THREAD)
}

fn threads() -> u64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u64)
}

/// (thread id, name, user + system CPU in clock ticks) of every thread.
fn thread_ticks() -> Vec<(u64, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // The name is in parentheses and may hold spaces; fields follow it.
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15; `fields` starts at field 3.
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((tid, stat[open + 1..close].to_string(), ticks))
    })
    .collect()
}

/// The thread that used the most CPU between two `thread_ticks` readings,
/// with its share of one core over `seconds`, in percent.
fn busiest_thread(
    before: &[(u64, String, u64)],
    after: &[(u64, String, u64)],
    seconds: f64,
) -> (String, f64) {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    after
        .iter()
        .map(|(tid, name, t)| {
            let t0 = before.iter().find(|b| b.0 == *tid).map_or(0, |b| b.2);
            (
                name.clone(),
                t.saturating_sub(t0) as f64 / hz / seconds * 100.0,
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of the process (the listing's own is among them,
/// every time alike).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// What the process holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub fds: u64,
    pub threads: u64,
    pub rss_kb: u64,
}

impl Held {
    /// Reads what the process holds, after asking the allocator to give
    /// the kernel back the free pages of its heaps: what stays resident is
    /// then memory in use (and pages it shares with live blocks), not
    /// whatever the allocator kept from the last calls that ended.
    fn now() -> Held {
        // SAFETY: malloc_trim only walks and shrinks the allocator's heaps.
        unsafe { libc::malloc_trim(0) };
        Held {
            fds: open_fds(),
            threads: threads(),
            rss_kb: rss_kb(),
        }
    }

    fn print(&self, when: &str) {
        println!(
            "held {when}: {} file descriptors, {} threads, {:.1} MB resident",
            self.fds,
            self.threads,
            self.rss_kb as f64 / 1024.0
        );
    }
}

/// Clock of the first core, in MHz, as the kernel reports it.
fn cpu_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The system-wide count of UDP datagrams dropped because a socket's
/// receive buffer was full (the usual cause of loopback loss).
fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

// --- The run ----------------------------------------------------------------

/// One live line.
#[derive(Debug, Clone, Copy)]
struct Row {
    t: f64,
    calls: usize,
    out_per_s: f64,
    in_per_s: f64,
    lost_per_s: f64,
    erased_per_s: f64,
    cpu_percent: f64,
    threads: u64,
    /// Mean MOS of the channels up (empty when none has one yet).
    mos: Option<f64>,
}

impl Row {
    const HEADER: &'static str = "t/s,calls,out/s,in/s,lost/s,erased/s,cpu%,threads,mos";

    /// Column widths of the printed table, in `HEADER`'s order.
    const WIDTHS: [usize; 9] = [6, 6, 9, 9, 7, 8, 6, 7, 5];

    /// The row's figures, formatted, in `HEADER`'s order.
    fn cells(&self) -> [String; 9] {
        [
            format!("{:.1}", self.t),
            self.calls.to_string(),
            format!("{:.0}", self.out_per_s),
            format!("{:.0}", self.in_per_s),
            format!("{:.0}", self.lost_per_s),
            format!("{:.0}", self.erased_per_s),
            format!("{:.1}", self.cpu_percent),
            self.threads.to_string(),
            self.mos.map_or(String::new(), |m| format!("{m:.2}")),
        ]
    }

    fn csv(&self) -> String {
        self.cells().join(",")
    }

    fn print(&self) {
        Self::print_line(&self.cells());
    }

    /// Prints the table's column names, as `print` prints figures.
    fn print_header() {
        Self::print_line(&Self::HEADER.split(',').collect::<Vec<_>>());
    }

    fn print_line<S: AsRef<str>>(cells: &[S]) {
        let cells: Vec<String> = cells
            .iter()
            .zip(Self::WIDTHS)
            .map(|(c, w)| format!("{:>w$}", c.as_ref()))
            .collect();
        println!("{}", cells.join(" "));
    }
}

/// Takes a live row each time it is called.
struct Monitor {
    start: Instant,
    last_at: Instant,
    last_cpu: f64,
    last: Live,
    rows: Vec<Row>,
    quiet: bool,
    /// CPU seconds the main thread spent taking rows: the monitor's own
    /// cost, which the figures leave out. (The main thread's other work,
    /// setting up and ending calls, is the load's and stays in.)
    own_cpu: f64,
}

impl Monitor {
    fn row(&mut self, calls: &dyn Calls, up: usize) -> Result<(), String> {
        let own_start = thread_cpu();
        let now = Instant::now();
        let cpu = process_cpu();
        let live = calls.live()?;
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-6);
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let row = Row {
            t: now.duration_since(self.start).as_secs_f64(),
            calls: up,
            out_per_s: per_s(live.out, self.last.out),
            in_per_s: per_s(live.inp, self.last.inp),
            lost_per_s: per_s(live.lost, self.last.lost),
            erased_per_s: per_s(live.erased, self.last.erased),
            cpu_percent: (cpu - self.last_cpu) / dt * 100.0,
            threads: threads(),
            mos: live.mos,
        };
        if !self.quiet {
            row.print();
        }
        self.rows.push(row);
        (self.last_at, self.last_cpu, self.last) = (now, cpu, live);
        self.own_cpu += thread_cpu() - own_start;
        Ok(())
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Summary {
    pub stock: bool,
    pub codec: Codec,
    pub calls: usize,
    pub window_seconds: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub impairment_dropped: u64,
    pub duplicated: u64,
    pub kernel_lost: u64,
    pub rcvbuf_errors: u64,
    /// UDP GSO messages the servers sent (`gso-messages`).
    pub gso_messages: u64,
    pub counted_drops: u64,
    pub lost_uncounted: i64,
    /// Counted drops that may have been RTCP (see `rtp_uncounted`).
    pub drops_maybe_rtcp: u64,
    pub erasures: u64,
    pub erased_packets: u64,
    pub discontinuous_legs: u64,
    pub late_skipped: u64,
    pub slow_pushes: u64,
    pub source_dropped: u64,
    pub max_drift_ms: f64,
    pub cpu_seconds: f64,
    pub monitor_cpu_seconds: f64,
    pub cpu_mhz: f64,
    pub mhz_per_call: f64,
    pub threads: u64,
    /// The thread that used the most CPU in the window, and how much of one
    /// core: near 100, it is the bottleneck.
    pub busiest_thread: String,
    pub busiest_thread_percent: f64,
    pub rss_mb: f64,
    pub rss_kb_per_call: f64,
    /// Calls ended and started per second once all were up (`--churn`).
    pub churn: f64,
    /// Calls set up, the first `calls` and those that replaced ended ones.
    pub calls_started: u64,
    /// Calls ended by the churn and taken apart during the run (those up
    /// at the end are stopped with it and not counted).
    pub calls_ended: u64,
    /// What the process held at the start of the measured window, after its
    /// first minute (half-way through a window under two minutes) and at
    /// its end; each with exactly `calls` calls up and none ending.
    pub held_start: Held,
    pub held_after_1min: Held,
    pub held_end: Held,
    /// The `--rtcp` mode, and what the RTP sessions say of the calls (none
    /// for the stock calls, which run no session).
    pub rtcp: String,
    pub sessions: Option<Sessions>,
}

impl Summary {
    /// Whether every packet is accounted for, every leg's audio adds up,
    /// and, under `--churn`, the process holds no more at the end than it
    /// did after the first minute.
    pub fn ok(&self) -> bool {
        self.lost_uncounted == 0
            && self.discontinuous_legs == 0
            && (self.churn == 0.0 || self.resources_steady())
    }

    /// The end holds no more file descriptors or threads than after the
    /// first minute, and no more resident memory than that plus
    /// `RSS_TOLERANCE` (at least `RSS_TOLERANCE_KB`).
    pub fn resources_steady(&self) -> bool {
        let (mid, end) = (&self.held_after_1min, &self.held_end);
        let rss_allowed = ((mid.rss_kb as f64 * RSS_TOLERANCE) as u64).max(RSS_TOLERANCE_KB);
        end.fds <= mid.fds && end.threads <= mid.threads && end.rss_kb <= mid.rss_kb + rss_allowed
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (
                "mode",
                if self.stock { "stock" } else { "rtpsynth" }.to_string(),
            ),
            ("codec", self.codec.name().to_string()),
            ("calls", self.calls.to_string()),
            ("window_seconds", format!("{:.2}", self.window_seconds)),
            ("packets_sent", self.packets_sent.to_string()),
            ("packets_received", self.packets_received.to_string()),
            ("impairment_dropped", self.impairment_dropped.to_string()),
            ("duplicated", self.duplicated.to_string()),
            ("kernel_lost", self.kernel_lost.to_string()),
            ("rcvbuf_errors", self.rcvbuf_errors.to_string()),
            ("gso_messages", self.gso_messages.to_string()),
            ("counted_drops", self.counted_drops.to_string()),
            ("lost_uncounted", self.lost_uncounted.to_string()),
            ("drops_maybe_rtcp", self.drops_maybe_rtcp.to_string()),
            ("erasures", self.erasures.to_string()),
            ("erased_packets", self.erased_packets.to_string()),
            ("discontinuous_legs", self.discontinuous_legs.to_string()),
            ("late_skipped", self.late_skipped.to_string()),
            ("slow_pushes", self.slow_pushes.to_string()),
            ("source_dropped", self.source_dropped.to_string()),
            ("max_drift_ms", format!("{:.1}", self.max_drift_ms)),
            ("cpu_seconds", format!("{:.3}", self.cpu_seconds)),
            (
                "monitor_cpu_seconds",
                format!("{:.3}", self.monitor_cpu_seconds),
            ),
            ("cpu_mhz", format!("{:.0}", self.cpu_mhz)),
            ("mhz_per_call", format!("{:.4}", self.mhz_per_call)),
            ("threads", self.threads.to_string()),
            ("busiest_thread", self.busiest_thread.clone()),
            (
                "busiest_thread_percent",
                format!("{:.1}", self.busiest_thread_percent),
            ),
            ("rss_mb", format!("{:.1}", self.rss_mb)),
            ("rss_kb_per_call", format!("{:.1}", self.rss_kb_per_call)),
            ("churn", self.churn.to_string()),
            ("calls_started", self.calls_started.to_string()),
            ("calls_ended", self.calls_ended.to_string()),
            ("fds_start", self.held_start.fds.to_string()),
            ("fds_after_1min", self.held_after_1min.fds.to_string()),
            ("fds_end", self.held_end.fds.to_string()),
            ("threads_start", self.held_start.threads.to_string()),
            (
                "threads_after_1min",
                self.held_after_1min.threads.to_string(),
            ),
            ("threads_end", self.held_end.threads.to_string()),
            ("rss_mb_start", mb(self.held_start.rss_kb)),
            ("rss_mb_after_1min", mb(self.held_after_1min.rss_kb)),
            ("rss_mb_end", mb(self.held_end.rss_kb)),
            ("resources_steady", self.resources_steady().to_string()),
        ];
        // The sessions' figures; null when unknown (no session, or no
        // report interval closed yet).
        let s = self.sessions.unwrap_or_default();
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("null".to_string(), |v| format!("{v:.digits$}"))
        };
        let with_session = |v: u64| self.sessions.map_or("null".to_string(), |_| v.to_string());
        fields.extend([
            ("rtcp", self.rtcp.clone()),
            ("mos_mean", opt(s.mos_mean(), 2)),
            ("mos_worst", opt(s.mos_worst(), 2)),
            ("loss_percent", opt(s.loss_percent(), 2)),
            ("jitter_ms_mean", opt(s.jitter_ms_mean(), 3)),
            ("jitter_ms_max", opt(s.jitter_ms_max(), 3)),
            ("rtt_ms_mean", opt(s.rtt_ms_mean(), 3)),
            ("rtt_ms_max", opt(s.rtt_ms_max(), 3)),
            ("rtcp_sent", with_session(s.rtcp_sent)),
            ("rtcp_received", with_session(s.rtcp_received)),
        ]);
        fields
    }

    /// One JSON object on one line (numbers bare, names quoted).
    pub fn json(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.fields().into_iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if matches!(k, "mode" | "codec" | "busiest_thread" | "rtcp") {
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(s, "{sep}\"{k}\":\"{v}\"");
            } else {
                let _ = write!(s, "{sep}\"{k}\":{v}");
            }
        }
        s.push('}');
        s
    }

    fn print_table(&self) {
        println!();
        for (k, v) in self.fields() {
            println!("  {k:<22} {v:>14}");
        }
    }
}

fn init() -> Result<(), String> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = gst::init()
            .map_err(|e| e.to_string())
            .and_then(|()| gstrtpsynth::plugin_register_static().map_err(|e| e.to_string()));
    });
    result
}

/// Fails on the first error a pipeline element posted; prints warnings.
fn check_bus(pipeline: &gst::Pipeline, quiet: bool) -> Result<(), String> {
    let Some(bus) = pipeline.bus() else {
        return Ok(());
    };
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                return Err(format!(
                    "error from {}: {} ({:?})",
                    msg.src().map(|s| s.path_string()).unwrap_or_default(),
                    e.error(),
                    e.debug()
                ));
            }
            gst::MessageView::Warning(w) if !quiet => eprintln!(
                "warning from {}: {}",
                msg.src().map(|s| s.path_string()).unwrap_or_default(),
                w.error()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Waits until no packet moved for a while: a loaded worker may be seconds
/// behind the sources. Gives up after `QUIET_LIMIT`; what is still in
/// flight then shows as uncounted loss.
fn wait_quiet(calls: &dyn Calls) -> Result<(), String> {
    let until = Instant::now() + QUIET_LIMIT;
    let mut last = calls.live()?;
    let mut still = 0;
    while still < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        let now = calls.live()?;
        still = if (now.out, now.inp) == (last.out, last.inp) {
            still + 1
        } else {
            0
        };
        last = now;
    }
    Ok(())
}

/// `mux`'s `stats-packed`, read once `arrived` says no RTCP compound is on
/// its way between the channels it looks at ([`RTCP_SETTLE_LIMIT`] at
/// most), so that what one counted as sent the other counted as received.
fn read_rtcp_settled(
    mux: &gst::Element,
    arrived: impl Fn(&Packed) -> bool,
) -> Result<Packed, String> {
    let until = Instant::now() + RTCP_SETTLE_LIMIT;
    loop {
        let packed = Packed::read(mux)?;
        if arrived(&packed) || Instant::now() >= until {
            return Ok(packed);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The tick after `tick`: a second later, or, when the loop fell behind
/// (setting up calls can take longer than a second), a second from now, so
/// missed ticks do not come out as a burst of rows over no time.
fn later_tick(tick: Instant) -> Instant {
    let next = tick + Duration::from_secs(1);
    let now = Instant::now();
    if next > now {
        next
    } else {
        now + Duration::from_secs(1)
    }
}

/// Sets up the calls (ramping up at `o.ramp` calls per second), measures
/// `o.seconds` with all of them up, then stops the sources, lets packets land
/// and reads every counter.
pub fn run(o: &Options) -> Result<Summary, String> {
    o.check()?;
    init()?;
    let pipeline = gst::Pipeline::new();
    let common = Common {
        pipeline: pipeline.clone(),
        impair_on: Arc::new(AtomicBool::new(true)),
        options: o.clone(),
    };
    let impair_on = common.impair_on.clone();
    let mut calls: Box<dyn Calls> = if o.stock {
        Box::new(Stock {
            c: common,
            legs: Vec::with_capacity(2 * o.calls),
            sources: Vec::new(),
            jitterbuffers: Vec::new(),
        })
    } else {
        Box::new(Ours::new(common)?)
    };
    let result = measure(o, &pipeline, calls.as_mut(), &impair_on);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn measure(
    o: &Options,
    pipeline: &gst::Pipeline,
    calls: &mut dyn Calls,
    impair_on: &AtomicBool,
) -> Result<Summary, String> {
    let rss_before = rss_kb();
    let rcvbuf_before = udp_rcvbuf_errors();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the pipeline: {e}"))?;
    if !o.quiet {
        println!(
            "{} full-duplex {} calls ({}), ptime {} ms, ramp {} calls/s, then {} s measured{}",
            o.calls,
            o.codec.name(),
            if o.stock {
                "stock elements"
            } else {
                "rtpmuxserver + rtpsynthsrc shared-thread"
            },
            o.ptime,
            o.ramp,
            o.seconds,
            if o.churning() {
                format!(
                    " while {} calls end and {} start each second",
                    o.churn, o.churn
                )
            } else {
                String::new()
            }
        );
        Row::print_header();
    }
    let start = Instant::now();
    let mut mon = Monitor {
        start,
        last_at: start,
        last_cpu: process_cpu(),
        last: Live::default(),
        rows: Vec::new(),
        quiet: o.quiet,
        own_cpu: 0.0,
    };
    let mut next_tick = start + Duration::from_secs(1);
    let mut up = 0;
    // Ramp: call k is due k/ramp seconds after the start.
    while up < o.calls {
        let due = |k: usize| {
            if o.ramp > 0.0 {
                start + Duration::from_secs_f64(k as f64 / o.ramp)
            } else {
                start
            }
        };
        while up < o.calls && due(up) <= Instant::now() {
            calls.add_call(up)?;
            up += 1;
        }
        if Instant::now() >= next_tick {
            mon.row(calls, up)?;
            check_bus(pipeline, o.quiet)?;
            next_tick = later_tick(next_tick);
        }
        if up < o.calls {
            std::thread::sleep(
                due(up)
                    .min(next_tick)
                    .saturating_duration_since(Instant::now()),
            );
        }
    }
    check_bus(pipeline, o.quiet)?;

    // The measured window: every call up.
    let window_start = Instant::now();
    let window = Duration::from_secs_f64(o.seconds);
    let window_end = window_start + window;
    let held_start = Held::now();
    if !o.quiet {
        held_start.print("at the start of the window");
    }
    let cpu_start = process_cpu();
    let monitor_start = mon.own_cpu;
    let ticks_start = thread_ticks();
    let mut max_threads = threads();
    // Churn: the k-th ending is due k/churn seconds into the window, and a
    // new call, on new channel indexes, starts with it.
    let churn_due = |k: u64| window_start + Duration::from_secs_f64(k as f64 / o.churn);
    let mut endings_begun = 0u64;
    let mut next_index = up;
    // The middle reading, like the others, is taken with no call ending
    // (ending calls hold sockets a new call already holds too): endings
    // due meanwhile wait until it is taken, then catch up.
    let steady_at = window_start + STEADY_AFTER.min(window / 2);
    let mut held_after_1min = None;
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        let holding = held_after_1min.is_none() && now >= steady_at;
        if o.churning() && !holding {
            while churn_due(endings_begun + 1) <= now {
                calls.end_oldest()?;
                calls.add_call(next_index)?;
                next_index += 1;
                endings_begun += 1;
            }
        }
        let ending = calls.advance_endings()?;
        if holding && ending == 0 {
            let held = Held::now();
            if !o.quiet {
                held.print("after the first minute");
            }
            held_after_1min = Some(held);
        }
        if now >= next_tick {
            mon.row(calls, o.calls)?;
            max_threads = max_threads.max(mon.rows.last().map_or(0, |r| r.threads));
            check_bus(pipeline, o.quiet)?;
            next_tick = later_tick(next_tick);
        }
        // While holding for the middle reading, the endings due (and the
        // reading's own time) are past: polling for the endings under way
        // to finish is then what wakes the loop.
        let holding = held_after_1min.is_none() && now >= steady_at;
        let mut wake = next_tick.min(window_end);
        if held_after_1min.is_none() && !holding {
            wake = wake.min(steady_at);
        }
        if o.churning() && !holding {
            wake = wake.min(churn_due(endings_begun + 1));
        }
        if ending > 0 || holding {
            wake = wake.min(Instant::now() + CHURN_WAKE);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    let window = window_start.elapsed().as_secs_f64();
    let monitor_cpu = mon.own_cpu - monitor_start;
    let (busiest, busiest_percent) = busiest_thread(&ticks_start, &thread_ticks(), window);
    let cpu = process_cpu() - cpu_start - monitor_cpu;
    max_threads = max_threads.max(threads());
    let rss = rss_kb();
    // The calls still ending finish (each ending's own wait is bounded), so
    // the end reading too is taken with `calls` calls up and none ending.
    while calls.advance_endings()? > 0 {
        std::thread::sleep(CHURN_WAKE);
    }
    check_bus(pipeline, o.quiet)?;
    let held_end = Held::now();
    if !o.quiet {
        held_end.print("at the end of the window");
    }
    // A window too short to take the middle reading in: the end stands in.
    let held_after_1min = held_after_1min.unwrap_or(held_end);
    let calls_ended = calls.calls_ended();

    impair_on.store(false, Relaxed);
    std::thread::sleep(CLEAN_TAIL);
    calls.stop_sources()?;
    wait_quiet(calls)?;
    std::thread::sleep(DRAIN);
    check_bus(pipeline, o.quiet)?;
    let t = calls.tally(o)?;
    let rcvbuf_errors = udp_rcvbuf_errors().saturating_sub(rcvbuf_before);

    if let Some(path) = &o.csv {
        let mut text = String::from(Row::HEADER);
        text.push('\n');
        for r in &mon.rows {
            text.push_str(&r.csv());
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let mhz = cpu_mhz();
    Ok(Summary {
        stock: o.stock,
        codec: o.codec,
        calls: o.calls,
        window_seconds: window,
        packets_sent: t.sent,
        packets_received: t.received,
        impairment_dropped: t.impairment_dropped,
        duplicated: t.duplicated,
        kernel_lost: t.kernel_lost,
        rcvbuf_errors,
        gso_messages: t.gso_messages,
        counted_drops: t.counted_drops,
        lost_uncounted: t.lost_uncounted,
        drops_maybe_rtcp: t.drops_maybe_rtcp,
        erasures: t.erasures,
        erased_packets: t.erased_packets,
        discontinuous_legs: t.discontinuous_legs,
        late_skipped: t.late_skipped,
        slow_pushes: t.slow_pushes,
        source_dropped: t.source_dropped,
        max_drift_ms: t.max_drift_ns as f64 / 1e6,
        cpu_seconds: cpu,
        monitor_cpu_seconds: monitor_cpu,
        cpu_mhz: mhz,
        mhz_per_call: cpu / window * mhz / o.calls as f64,
        threads: max_threads,
        busiest_thread: busiest,
        busiest_thread_percent: busiest_percent,
        rss_mb: rss as f64 / 1024.0,
        rss_kb_per_call: rss.saturating_sub(rss_before) as f64 / o.calls as f64,
        rtcp: if o.stock {
            "none".into()
        } else {
            o.rtcp.clone()
        },
        sessions: t.sessions,
        churn: o.churn,
        calls_started: next_index as u64,
        calls_ended,
        held_start,
        held_after_1min,
        held_end,
    })
}

#[allow(dead_code)] // The integration test includes this file and calls run().
fn main() -> std::process::ExitCode {
    let o = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("callload: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let summary = match run(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("callload: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if !o.quiet {
        summary.print_table();
        if summary.lost_uncounted != 0 {
            eprintln!(
                "callload: {} packets went missing without a counter (UDP receive-buffer \
                 errors during the run: {})",
                summary.lost_uncounted, summary.rcvbuf_errors
            );
        }
        if summary.discontinuous_legs != 0 {
            eprintln!(
                "callload: {} legs decoded a sample count other than packets sent × {}",
                summary.discontinuous_legs,
                o.samples_per_packet()
            );
        }
        if o.churning() && !summary.resources_steady() {
            let (mid, end) = (summary.held_after_1min, summary.held_end);
            eprintln!(
                "callload: the process grew under churn: after the first minute {} file \
                 descriptors, {} threads, {} MB resident; at the end {}, {}, {} MB",
                mid.fds,
                mid.threads,
                mb(mid.rss_kb),
                end.fds,
                end.threads,
                mb(end.rss_kb)
            );
        }
    }
    if o.json {
        println!("{}", summary.json());
    }
    let _ = std::io::stdout().flush();
    if summary.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
