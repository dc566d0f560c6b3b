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
//! cargo run --release --example callload -- --calls N --seconds S [--ptime MS]
//!     [--loss P] [--reorder P] [--duplicate P] [--seed N] [--ramp CALLS_PER_S]
//!     [--csv FILE] [--json] [--stock] [--quiet] [--codec pcmu|pcma]
//!
//! Exit status 1 when a packet went missing without any counter explaining
//! it, or a leg's decoded samples do not add up to what was sent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use rtpsynth_core::prng::SplitMix64;

const USAGE: &str = "usage: callload [--calls N] [--seconds S] [--ptime MS] [--loss P] \
[--reorder P] [--duplicate P] [--seed N] [--ramp CALLS_PER_SECOND] [--tick MS] [--servers K] [--csv FILE] [--json] [--codec pcmu|pcma] \
[--stock] [--quiet]

  --calls N        full-duplex calls (default 200)
  --seconds S      measured seconds once every call is up (default 20)
  --ptime MS       packet duration in milliseconds (default 20)
  --loss P         probability a packet is dropped before the server (0..1)
  --reorder P      probability a packet is held back behind the next one (0..1)
  --duplicate P    probability a packet is sent twice (0..1)
  --seed N         seed of the impairment (default 1)
  --ramp R         calls added per second while playing; 0 = all at once (default 100)
  --tick MS        rtpmuxserver send tick: sends wait up to MS ms to go out in
                   batches; 0 = a wake per packet (default 0)
  --servers K      rtpmuxserver elements (worker threads) sharing the calls (default 1)
  --csv FILE       write the per-second rows to FILE
  --json           print the summary as one JSON object on the last line
  --stock          build the calls from stock GStreamer elements instead
  --quiet          no live lines nor table (with --json: only the JSON line)
  --codec C        pcmu (G.711 µ-law, payload type 0) or pcma (A-law, 8) (default pcmu)";

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
    pub tick: u32,
    pub servers: usize,
    pub csv: Option<String>,
    pub json: bool,
    pub stock: bool,
    pub quiet: bool,
    pub codec: Codec,
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
            tick: 0,
            servers: 1,
            csv: None,
            json: false,
            stock: false,
            quiet: false,
            codec: Codec::Pcmu,
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
                "--tick" => o.tick = value(&a, args.next())?,
                "--servers" => o.servers = value(&a, args.next())?,
                "--csv" => o.csv = Some(value(&a, args.next())?),
                "--json" => o.json = true,
                "--stock" => o.stock = true,
                "--quiet" => o.quiet = true,
                "--codec" => o.codec = args.next().ok_or("--codec needs a value")?.parse()?,
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
        if !(self.ramp >= 0.0 && self.ramp.is_finite()) {
            return Err(format!(
                "--ramp {} must be 0 or more calls per second",
                self.ramp
            ));
        }
        Ok(())
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
/// packet), and so does everything once `enabled` clears, so every void is
/// closed before the end. Also counts every packet produced.
fn impair(
    pad: &gst::Pad,
    peer: gst::Pad,
    leg: Arc<Leg>,
    o: &Options,
    seed: u64,
    enabled: Arc<AtomicBool>,
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
        if n == 0 || !enabled.load(Relaxed) {
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

/// Per-column sums of an rtpmuxserver's `stats-packed` rows, by column
/// name: one property read whatever the number of channels.
fn mux_totals(mux: &gst::Element) -> Result<Vec<(String, u64)>, String> {
    let columns = mux.property::<Vec<String>>("stats-columns");
    let packed = mux.property::<glib::Bytes>("stats-packed");
    let words: Vec<u64> = packed
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let ncols = columns.len();
    if words.len() < ncols || words.get(1).copied() != Some(ncols as u64) {
        return Err("rtpmuxserver stats-packed does not match stats-columns".into());
    }
    let mut sums = vec![0u64; ncols];
    for row in words[ncols..].chunks_exact(ncols) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    Ok(columns.into_iter().zip(sums).collect())
}

/// The sum of every `name` column in `totals`.
fn column(totals: &[(String, u64)], name: &str) -> u64 {
    totals
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

/// Cumulative figures for the live line.
#[derive(Default, Clone, Copy)]
struct Live {
    out: u64,
    inp: u64,
    lost: u64,
    erased: u64,
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
    /// Packets some element counted under a drop reason or still holds.
    counted_drops: u64,
    /// What the count expected at the jitter buffers minus what got there
    /// or was counted on the way.
    lost_uncounted: i64,
    erasures: u64,
    erased_packets: u64,
    /// Legs whose decoded samples are not (sent × samples per packet).
    discontinuous_legs: u64,
    /// Late skips of the shared thread (ours only).
    late_skipped: u64,
    slow_pushes: u64,
    /// Largest drift of a leg's sample timeline from its arrival times.
    max_drift_ns: u64,
}

/// One way of building calls: ours, or stock elements.
trait Calls {
    fn add_call(&mut self, i: usize) -> Result<(), String>;
    fn stop_sources(&mut self) -> Result<(), String>;
    fn live(&self) -> Result<Live, String>;
    fn tally(&self, o: &Options) -> Result<Tally, String>;
}

struct Common {
    pipeline: gst::Pipeline,
    legs: Vec<Arc<Leg>>,
    impair_on: Arc<AtomicBool>,
    options: Options,
}

impl Common {
    fn new_leg(&mut self) -> (Arc<Leg>, u64) {
        let leg = Arc::new(Leg::default());
        self.legs.push(leg.clone());
        // One impairment stream per leg, all from the one seed.
        let seed = self
            .options
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(self.legs.len() as u64);
        (leg, seed)
    }

    fn max_drift_ns(&self) -> u64 {
        self.legs
            .iter()
            .map(|l| l.max_drift_ns.load(Relaxed))
            .max()
            .unwrap_or(0)
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
}

/// Our calls: `--servers` rtpmuxservers (call i on server i mod servers),
/// synthesized sources on one shared thread.
struct Ours {
    c: Common,
    muxes: Vec<gst::Element>,
    sources: Vec<gst::Element>,
    jbufs: Vec<gst::Element>,
}

impl Ours {
    fn new(c: Common) -> Result<Ours, String> {
        let tick = c.options.tick.to_string();
        let muxes = (0..c.options.servers)
            .map(|_| make("rtpmuxserver", &[("tick", &tick)]))
            .collect::<Result<Vec<_>, _>>()?;
        c.pipeline
            .add_many(&muxes)
            .map_err(|e| format!("cannot add rtpmuxserver: {e}"))?;
        Ok(Ours {
            c,
            muxes,
            sources: Vec::new(),
            jbufs: Vec::new(),
        })
    }

    fn pad(mux: &gst::Element, name: &str) -> Result<gst::Pad, String> {
        mux.request_pad_simple(name)
            .ok_or(format!("cannot request rtpmuxserver {name}"))
    }

    /// A channel's sink pad. Its socket opens at once, the server running,
    /// on the default wildcard address: setting bind-address now would
    /// re-open it, a round trip to the busy worker for every channel.
    fn channel(mux: &gst::Element, ch: usize) -> Result<(gst::Pad, u32), String> {
        let sink = Self::pad(mux, &format!("sink_{ch}"))?;
        let port = sink.property::<u32>("local-port");
        if port == 0 {
            return Err(format!("rtpmuxserver channel {ch} has no socket"));
        }
        Ok((sink, port))
    }

    /// The receiving end of `leg` in `bin`; returns its input, `name`.
    fn receiver(
        &mut self,
        bin: &gst::Bin,
        leg: Arc<Leg>,
        name: &str,
    ) -> Result<gst::GhostPad, String> {
        let jbuf = make(
            "rtpjbufdec",
            &[("latency", JBUF_LATENCY), ("erasure-mode", "silence")],
        )?;
        let chain = [
            jbuf.clone(),
            make(self.c.options.codec.depayloader(), &[])?,
            make(self.c.options.codec.decoder(), &[])?,
            counting_sink(leg)?,
        ];
        add_chain(bin, &chain)?;
        self.jbufs.push(jbuf);
        ghost(bin, chain[0].static_pad("sink"), name)
    }

    /// The sending end of `leg` in `bin`, impaired on its way to the
    /// server's `sink`; returns its output, `name`.
    fn sender(
        &mut self,
        bin: &gst::Bin,
        name: &str,
        sink: &gst::Pad,
        leg: Arc<Leg>,
        seed: u64,
    ) -> Result<gst::GhostPad, String> {
        let ptime = self.c.options.ptime.to_string();
        let src = make(
            "rtpsynthsrc",
            &[
                ("shared-thread", "calls"),
                ("is-live", "true"),
                ("ptime", &ptime),
                ("payload-type", self.c.options.codec.payload_type()),
            ],
        )?;
        bin.add(&src)
            .map_err(|e| format!("cannot add rtpsynthsrc: {e}"))?;
        let pad = src.static_pad("src").ok_or("rtpsynthsrc has no src pad")?;
        if self.c.options.impaired() {
            impair(
                &pad,
                sink.clone(),
                leg,
                &self.c.options,
                seed,
                self.c.impair_on.clone(),
            );
        }
        self.sources.push(src);
        ghost(bin, Some(pad), name)
    }
}

impl Calls for Ours {
    fn add_call(&mut self, i: usize) -> Result<(), String> {
        let (a, b) = (2 * i, 2 * i + 1);
        let mux = self.muxes[i % self.muxes.len()].clone();
        let (sink_a, port_a) = Self::channel(&mux, a)?;
        let (sink_b, port_b) = Self::channel(&mux, b)?;
        let src_a = Self::pad(&mux, &format!("src_{a}"))?;
        let src_b = Self::pad(&mux, &format!("src_{b}"))?;
        let rtp_caps = self.c.options.codec.rtp_caps();
        let caps: gst::Caps = rtp_caps
            .parse()
            .map_err(|e| format!("bad caps {rtp_caps}: {e}"))?;
        for src in [&src_a, &src_b] {
            src.set_property("rtp-caps", &caps);
        }
        let (leg_a, seed_a) = self.c.new_leg();
        let (leg_b, seed_b) = self.c.new_leg();
        // Receivers and senders in two bins: one bin feeding the server
        // and fed by it would be a loop in the pipeline's graph.
        let (rx, tx) = (gst::Bin::new(), gst::Bin::new());
        // Leg A is received on B's channel, leg B on A's.
        let in_a = self.receiver(&rx, leg_a.clone(), "in_a")?;
        let in_b = self.receiver(&rx, leg_b.clone(), "in_b")?;
        let out_a = self.sender(&tx, "out_a", &sink_a, leg_a, seed_a)?;
        let out_b = self.sender(&tx, "out_b", &sink_b, leg_b, seed_b)?;
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
        // Receivers run before the first packet is sent to them.
        start_call(&rx)?;
        start_call(&tx)
    }

    fn stop_sources(&mut self) -> Result<(), String> {
        stop_all(&self.sources, "rtpsynthsrc")
    }

    fn live(&self) -> Result<Live, String> {
        let mut m = Vec::new();
        for mux in &self.muxes {
            m.extend(mux_totals(mux)?);
        }
        let (_, dropped, _, _) = self.c.leg_sums();
        let jb = sum_stats(&self.jbufs, &["erased-packets"]);
        Ok(Live {
            out: column(&m, "packets-sent"),
            inp: column(&m, "packets-received"),
            lost: dropped,
            erased: jb[0],
        })
    }

    fn tally(&self, o: &Options) -> Result<Tally, String> {
        let src = sum_stats(
            &self.sources,
            &["packets-sent", "late-skipped", "slow-pushes"],
        );
        let (_, dropped, duplicated, _) = self.c.leg_sums();
        const MUX: [&str; 9] = [
            "packets-sent",
            "packets-received",
            "dropped-queue-full",
            "send-errors",
            "dropped-no-socket",
            "dropped-foreign-source",
            "dropped-not-rtp",
            "dropped-kernel",
            "dropped-downstream",
        ];
        let m = sum_stats(&self.muxes, &MUX);
        let mux = |n: &str| MUX.iter().position(|c| *c == n).map_or(0, |k| m[k]);
        const JB: [&str; 11] = [
            "received",
            "pushed",
            "dropped-duplicate",
            "dropped-late",
            "dropped-parse",
            "dropped-outlier",
            "dropped-flushing",
            "buffered",
            "erasures",
            "erased-packets",
            "silence-packets",
        ];
        let jb = sum_stats(&self.jbufs, &JB);
        let jb_received = jb[0];
        let jb_counted: u64 = jb[2..8].iter().sum();
        let mux_counted = mux("dropped-queue-full")
            + mux("send-errors")
            + mux("dropped-no-socket")
            + mux("dropped-foreign-source")
            + mux("dropped-not-rtp")
            + mux("dropped-kernel")
            + mux("dropped-downstream");
        let into_server = src[0] + duplicated - dropped;
        let lost_uncounted = into_server as i64 - (mux_counted + jb_received) as i64;
        // Every leg decodes one packet's samples for each packet sent: the
        // packet itself, or the silence that conceals it. A source that
        // skipped packet times resumed with a timestamp jump, and silence
        // for a void across that jump covers the skipped time too: then
        // only missing samples count.
        let spp = o.samples_per_packet();
        let mut discontinuous = 0;
        for (k, s) in self.sources.iter().enumerate() {
            let st = s.property::<gst::Structure>("stats");
            let expected = u64_field(&st, "packets-sent") * spp;
            // Sources and legs were created in the same order.
            let samples = self.c.legs[k].samples.load(Relaxed);
            let skipped = u64_field(&st, "late-skipped") > 0;
            if samples < expected || (!skipped && samples != expected) {
                discontinuous += 1;
            }
        }
        Ok(Tally {
            sent: src[0],
            received: mux("packets-received"),
            impairment_dropped: dropped,
            duplicated,
            kernel_lost: mux("packets-sent").saturating_sub(mux("packets-received")),
            counted_drops: mux_counted + jb_counted,
            lost_uncounted,
            erasures: jb[8],
            erased_packets: jb[9],
            discontinuous_legs: discontinuous,
            late_skipped: src[1],
            slow_pushes: src[2],
            max_drift_ns: self.c.max_drift_ns(),
        })
    }
}

/// The same calls from stock elements: per direction `audiotestsrc ! … !
/// udpsink` and `udpsrc ! rtpjitterbuffer ! rtppcmudepay ! mulawdec !
/// fakesink`, each with its own streaming threads.
struct Stock {
    c: Common,
    sources: Vec<gst::Element>,
    jitterbuffers: Vec<gst::Element>,
}

impl Stock {
    /// Packets the jitter buffers gave up on.
    fn lost(&self) -> u64 {
        sum_stats(&self.jitterbuffers, &["num-lost"])[0]
    }

    /// One direction of a call in `bin`; the receiver first, as the sender
    /// needs its port.
    fn direction(&mut self, bin: &gst::Bin) -> Result<(), String> {
        let (leg, seed) = self.c.new_leg();
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
        );
        self.sources.push(source);
        self.jitterbuffers.push(jb);
        Ok(())
    }
}

impl Calls for Stock {
    fn add_call(&mut self, i: usize) -> Result<(), String> {
        let bin = gst::Bin::new();
        self.direction(&bin)?;
        self.direction(&bin)?;
        self.c
            .pipeline
            .add(&bin)
            .map_err(|e| format!("cannot add call {i}: {e}"))?;
        start_call(&bin)
    }

    fn stop_sources(&mut self) -> Result<(), String> {
        stop_all(&self.sources, "audiotestsrc")
    }

    fn live(&self) -> Result<Live, String> {
        let (probed, dropped, _, received) = self.c.leg_sums();
        Ok(Live {
            out: probed,
            inp: received,
            lost: dropped,
            erased: self.lost(),
        })
    }

    fn tally(&self, _o: &Options) -> Result<Tally, String> {
        let (sent, dropped, duplicated, received) = self.c.leg_sums();
        let lost = self.lost();
        let into_network = sent + duplicated - dropped;
        Ok(Tally {
            sent,
            received,
            impairment_dropped: dropped,
            duplicated,
            kernel_lost: into_network.saturating_sub(received),
            counted_drops: 0,
            lost_uncounted: into_network as i64 - received as i64,
            erasures: lost,
            erased_packets: lost,
            // rtpjitterbuffer signals loss with events, not samples: the
            // sample count is not checked for stock calls.
            discontinuous_legs: 0,
            late_skipped: 0,
            slow_pushes: 0,
            max_drift_ns: self.c.max_drift_ns(),
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
}

impl Row {
    const HEADER: &'static str = "t/s,calls,out/s,in/s,lost/s,erased/s,cpu%,threads";

    /// Column widths of the printed table, in `HEADER`'s order.
    const WIDTHS: [usize; 8] = [6, 6, 9, 9, 7, 8, 6, 7];

    /// The row's figures, formatted, in `HEADER`'s order.
    fn cells(&self) -> [String; 8] {
        [
            format!("{:.1}", self.t),
            self.calls.to_string(),
            format!("{:.0}", self.out_per_s),
            format!("{:.0}", self.in_per_s),
            format!("{:.0}", self.lost_per_s),
            format!("{:.0}", self.erased_per_s),
            format!("{:.1}", self.cpu_percent),
            self.threads.to_string(),
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
}

impl Monitor {
    fn row(&mut self, calls: &dyn Calls, up: usize) -> Result<(), String> {
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
        };
        if !self.quiet {
            row.print();
        }
        self.rows.push(row);
        (self.last_at, self.last_cpu, self.last) = (now, cpu, live);
        Ok(())
    }
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
    pub counted_drops: u64,
    pub lost_uncounted: i64,
    pub erasures: u64,
    pub erased_packets: u64,
    pub discontinuous_legs: u64,
    pub late_skipped: u64,
    pub slow_pushes: u64,
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
}

impl Summary {
    /// Whether every packet is accounted for and every leg's audio adds up.
    pub fn ok(&self) -> bool {
        self.lost_uncounted == 0 && self.discontinuous_legs == 0
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
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
            ("counted_drops", self.counted_drops.to_string()),
            ("lost_uncounted", self.lost_uncounted.to_string()),
            ("erasures", self.erasures.to_string()),
            ("erased_packets", self.erased_packets.to_string()),
            ("discontinuous_legs", self.discontinuous_legs.to_string()),
            ("late_skipped", self.late_skipped.to_string()),
            ("slow_pushes", self.slow_pushes.to_string()),
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
        ]
    }

    /// One JSON object on one line (numbers bare, names quoted).
    pub fn json(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.fields().into_iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if matches!(k, "mode" | "codec" | "busiest_thread") {
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
        legs: Vec::with_capacity(2 * o.calls),
        impair_on: Arc::new(AtomicBool::new(true)),
        options: o.clone(),
    };
    let impair_on = common.impair_on.clone();
    let mut calls: Box<dyn Calls> = if o.stock {
        Box::new(Stock {
            c: common,
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
            "{} full-duplex {} calls ({}), ptime {} ms, ramp {} calls/s, then {} s measured",
            o.calls,
            o.codec.name(),
            if o.stock {
                "stock elements"
            } else {
                "rtpmuxserver + rtpsynthsrc shared-thread"
            },
            o.ptime,
            o.ramp,
            o.seconds
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
    let window_end = window_start + Duration::from_secs_f64(o.seconds);
    let cpu_start = process_cpu();
    let monitor_start = thread_cpu();
    let ticks_start = thread_ticks();
    let mut max_threads = threads();
    while Instant::now() < window_end {
        std::thread::sleep(
            next_tick
                .min(window_end)
                .saturating_duration_since(Instant::now()),
        );
        if Instant::now() >= next_tick {
            mon.row(calls, up)?;
            max_threads = max_threads.max(mon.rows.last().map_or(0, |r| r.threads));
            check_bus(pipeline, o.quiet)?;
            next_tick = later_tick(next_tick);
        }
    }
    let window = window_start.elapsed().as_secs_f64();
    let monitor_cpu = thread_cpu() - monitor_start;
    let (busiest, busiest_percent) = busiest_thread(&ticks_start, &thread_ticks(), window);
    let cpu = process_cpu() - cpu_start - monitor_cpu;
    max_threads = max_threads.max(threads());
    let rss = rss_kb();

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
        counted_drops: t.counted_drops,
        lost_uncounted: t.lost_uncounted,
        erasures: t.erasures,
        erased_packets: t.erased_packets,
        discontinuous_legs: t.discontinuous_legs,
        late_skipped: t.late_skipped,
        slow_pushes: t.slow_pushes,
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
