//! Glue between `GstPushSrc` and the synthesis core in `rtpsynth_core::synth`.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use crate::stats;
use rtpsynth_core::counters;
use rtpsynth_core::prng::SplitMix64;
use rtpsynth_core::rtp::HEADER_LEN;
use rtpsynth_core::sched::{self, Job, JobId, Worker};
use rtpsynth_core::synth::{self, Config, Synth};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtpsynthsrc",
        gst::DebugColorFlags::empty(),
        Some("RTP stream synthesizer"),
    )
});

const DEFAULT_PAYLOAD_TYPE: u32 = 0;
const DEFAULT_CLOCK_RATE: u32 = 8000;
const DEFAULT_PTIME: u32 = 20;
/// -1: one byte per sample, clock-rate × ptime / 1000 (PCMU/PCMA).
const DEFAULT_PAYLOAD_SIZE: i32 = -1;
/// -1: the codec's silence byte.
const DEFAULT_PAYLOAD_FILL: i32 = -1;
/// As stock payloaders: the all-ones value means "random".
const DEFAULT_SSRC: u32 = u32::MAX;
const DEFAULT_SEQNUM_OFFSET: i32 = -1;
const DEFAULT_TIMESTAMP_OFFSET: i64 = -1;
const DEFAULT_SEED: u64 = 0;
const DEFAULT_IS_LIVE: bool = true;
/// Chosen by `make bench`: past 32 packets per list the per-packet cost of
/// `rtpsynthsrc ! fakesink` stops falling, and lists stay small in memory.
const DEFAULT_PACKETS_PER_BUFFER: u32 = 32;
/// A push on a shared thread that takes longer than this blocked the other
/// sources on that thread: it breaks the contract and is counted.
const SLOW_PUSH: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Debug, Clone)]
struct Settings {
    payload_type: u32,
    clock_rate: u32,
    ptime: u32,
    payload_size: i32,
    encoding_name: Option<String>,
    payload_fill: i32,
    ssrc: u32,
    seqnum_offset: i32,
    timestamp_offset: i64,
    seed: u64,
    is_live: bool,
    packets_per_buffer: u32,
    shared_thread: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            payload_type: DEFAULT_PAYLOAD_TYPE,
            clock_rate: DEFAULT_CLOCK_RATE,
            ptime: DEFAULT_PTIME,
            payload_size: DEFAULT_PAYLOAD_SIZE,
            encoding_name: None,
            payload_fill: DEFAULT_PAYLOAD_FILL,
            ssrc: DEFAULT_SSRC,
            seqnum_offset: DEFAULT_SEQNUM_OFFSET,
            timestamp_offset: DEFAULT_TIMESTAMP_OFFSET,
            seed: DEFAULT_SEED,
            is_live: DEFAULT_IS_LIVE,
            packets_per_buffer: DEFAULT_PACKETS_PER_BUFFER,
            shared_thread: None,
        }
    }
}

counters! {
    /// What the source has produced since it last started.
    struct SrcStats {
        /// RTP packets pushed downstream and taken there (the push returned
        /// OK).
        packets_sent = "packets-sent",
        /// Bytes of those packets, RTP header included (the UDP payload size).
        octets_sent = "octets-sent",
        /// RTP packets made and not taken downstream: their push failed
        /// (flushing, not linked, an error), or the source stopped before
        /// pushing them. With `packets-sent`, every packet made.
        dropped_downstream = "dropped-downstream",
        /// Talk spurts started: after `silent` was cleared or `resync` emitted.
        resyncs = "resyncs",
        /// Packet times that passed while `silent` was set (live only).
        silent_packets = "silent-packets",
        /// Packet times skipped because the shared thread ran a source more
        /// than one packet time late (it resumes with a resync, not a burst).
        late_skipped = "late-skipped",
        /// Pushes on a shared thread that blocked longer than 2 ms: downstream
        /// broke the non-blocking contract and delayed every other source.
        slow_pushes = "slow-pushes",
    }
}

/// Everything fixed at start().
struct Running {
    synth: Synth,
    fill: u8,
    caps: gst::Caps,
    ptime: gst::ClockTime,
    /// Packet buffers, reused once downstream has dropped them.
    ring: Vec<Option<gst::Buffer>>,
    ring_next: usize,
    live: bool,
    packets_per_buffer: u32,
    /// Packet times since the start; packet `slot` has PTS `origin + slot × ptime`.
    slot: u64,
    /// Running time of slot 0, taken from the clock at the first live packet.
    origin: Option<gst::ClockTime>,
    /// Packet times skipped while silent, not yet accounted for by a resync.
    gap: u64,
    /// Shared-thread mode: the worker, its handle on this source, and what
    /// the streaming thread of a GstBaseSrc would otherwise do.
    shared: Option<SharedRun>,
}

struct SharedRun {
    worker: Arc<Worker>,
    job: Option<JobId>,
    /// CLOCK_MONOTONIC time of running time 0, fixed when PLAYING starts.
    mono_base: u64,
    /// Stream-start, caps and segment still to be pushed.
    need_events: bool,
    /// From GstBaseSrc's num-buffers: packets left, -1 = unlimited.
    buffers_left: i64,
    warned_slow: bool,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Running>),
}

/// What unlock() needs to interrupt a wait in create().
#[derive(Default)]
struct Wait {
    clock_id: Option<gst::SingleShotClockId>,
    flushing: bool,
}

/// Packets of one buffer or buffer list, and their bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Unit {
    packets: u64,
    octets: u64,
}

/// The counters, and the packets on their way to being counted: a packet is
/// sent only once its push has returned OK. The shared thread pushes and
/// sees that; `GstBaseSrc` does not tell its subclass, so its pushes are
/// watched by probes on the source pad (see `watch_pushes`).
#[derive(Debug, Default)]
struct Tally {
    stats: SrcStats,
    /// Made, not yet handed to the peer.
    made: Unit,
    /// Handed to the peer, its push not yet returned.
    pushing: Unit,
}

impl Tally {
    /// Counts `unit`, taken out of `made` or `pushing`, as sent (its push
    /// returned OK) or dropped.
    fn settle(&mut self, unit: fn(&mut Tally) -> &mut Unit, ok: bool) {
        let unit = std::mem::take(unit(self));
        if ok {
            self.stats.packets_sent += unit.packets;
            self.stats.octets_sent += unit.octets;
        } else {
            self.stats.dropped_downstream += unit.packets;
        }
    }

    fn made(&mut self) -> &mut Unit {
        &mut self.made
    }

    fn pushing(&mut self) -> &mut Unit {
        &mut self.pushing
    }

    /// Ends the packets still on their way: a new buffer is being made, or
    /// the source stopped. Made and never pushed is dropped; pushed and not
    /// settled is sent when `pushed_ok` (`GstBaseSrc` asks for another
    /// buffer only after an OK push), else dropped.
    fn settle_pending(&mut self, pushed_ok: bool) {
        self.settle(Tally::made, false);
        self.settle(Tally::pushing, pushed_ok);
    }
}

#[derive(Default)]
pub struct RtpSynthSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Shared with the source pad's probes.
    tally: Arc<Mutex<Tally>>,
    /// The probe of `watch_pushes`, while started on a streaming thread.
    probe: Mutex<Option<gst::PadProbeId>>,
    silent: AtomicBool,
    resync_requested: AtomicBool,
    wait: Mutex<Wait>,
    /// Wakes a non-live source paused by `silent`, or a flush.
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the element down with a poisoned lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RtpSynthSrc {
    /// Resolves the properties into a stream; the error names the property.
    fn prepare(&self, s: &Settings) -> Result<Running, gst::ErrorMessage> {
        let settings_error =
            |msg: String| gst::error_msg!(gst::LibraryError::Settings, ("{}", msg));
        let pt = s.payload_type as u8;
        let encoding_name = match (&s.encoding_name, synth::static_payload(pt)) {
            (Some(name), _) if !name.is_empty() => name.to_ascii_uppercase(),
            (_, Some(sp)) => sp.encoding_name.to_string(),
            _ => {
                return Err(settings_error(format!(
                    "encoding-name must be set: payload-type {pt} has no static assignment"
                )));
            }
        };
        let samples = u64::from(s.clock_rate) * u64::from(s.ptime) / 1000;
        let payload_size = if s.payload_size < 0 {
            samples as usize
        } else {
            s.payload_size as usize
        };
        let mut rng = if s.seed == 0 {
            SplitMix64::from_entropy()
        } else {
            SplitMix64::new(s.seed)
        };
        // Draw all three, so a seed gives the same values whichever are set.
        let (r_ssrc, r_seq, r_ts) = (rng.next_u32(), rng.next_u32() as u16, rng.next_u32());
        let config = Config {
            payload_type: pt,
            clock_rate: s.clock_rate,
            ptime_ms: s.ptime,
            payload_size,
            ssrc: if s.ssrc == DEFAULT_SSRC {
                r_ssrc
            } else {
                s.ssrc
            },
            first_seq: if s.seqnum_offset < 0 {
                r_seq
            } else {
                s.seqnum_offset as u16
            },
            first_timestamp: if s.timestamp_offset < 0 {
                r_ts
            } else {
                s.timestamp_offset as u32
            },
        };
        let synth = Synth::new(&config).map_err(|e| settings_error(e.to_string()))?;
        if s.shared_thread.is_some() && !s.is_live {
            return Err(settings_error(
                "shared-thread needs is-live=true: a shared thread paces sources by the clock"
                    .to_string(),
            ));
        }
        let fill = if s.payload_fill < 0 {
            synth::silence_byte(&encoding_name)
        } else {
            s.payload_fill as u8
        };

        let caps = gst::Caps::builder("application/x-rtp")
            .field("media", "audio")
            .field("clock-rate", s.clock_rate as i32)
            .field("encoding-name", encoding_name.as_str())
            .field("payload", i32::from(pt))
            .field("ssrc", config.ssrc)
            .field("seqnum-offset", u32::from(config.first_seq))
            .field("timestamp-offset", config.first_timestamp)
            .build();

        Ok(Running {
            synth,
            fill,
            caps,
            ptime: gst::ClockTime::from_mseconds(u64::from(s.ptime)),
            // Twice a list, so a list in flight downstream never holds every slot.
            ring: vec![None; 2 * s.packets_per_buffer.max(1) as usize + 2],
            ring_next: 0,
            live: s.is_live,
            packets_per_buffer: if s.is_live {
                1
            } else {
                s.packets_per_buffer.max(1)
            },
            slot: 0,
            origin: None,
            gap: 0,
            shared: None,
        })
    }

    /// The next packet, stamped for the current slot, in a buffer of the
    /// ring: one downstream has let go of is reused and only its 12 header
    /// bytes are rewritten (its payload still holds the fill, which never
    /// changes while running); one still in use is replaced by a new buffer.
    /// This costs less than a GstBufferPool's acquire and release
    /// bookkeeping, which was most of the per-packet cost.
    fn make_packet(
        &self,
        r: &mut Running,
        pts: gst::ClockTime,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let i = r.ring_next;
        r.ring_next = (i + 1) % r.ring.len();
        let slot = &mut r.ring[i];
        let reused = match slot.as_mut().and_then(|b| b.get_mut()) {
            Some(buf) => {
                let mut map = buf.map_writable().map_err(|_| gst::FlowError::Error)?;
                let header = map
                    .as_mut_slice()
                    .first_chunk_mut::<HEADER_LEN>()
                    .ok_or(gst::FlowError::Error)?;
                r.synth.write_next_header(header);
                true
            }
            None => false,
        };
        if !reused {
            let mut fresh =
                gst::Buffer::with_size(r.synth.packet_len()).map_err(|_| gst::FlowError::Error)?;
            {
                let buf = fresh.get_mut().ok_or(gst::FlowError::Error)?;
                let mut map = buf.map_writable().map_err(|_| gst::FlowError::Error)?;
                r.synth
                    .write_next(map.as_mut_slice(), r.fill)
                    .ok_or(gst::FlowError::Error)?;
            }
            *slot = Some(fresh);
        }
        let buf = slot
            .as_mut()
            .and_then(|b| b.get_mut())
            .ok_or(gst::FlowError::Error)?;
        buf.set_pts(pts);
        buf.set_duration(r.ptime);
        buf.set_offset(r.slot);
        r.slot += 1;
        slot.clone().ok_or(gst::FlowError::Error)
    }

    /// Starts a talk spurt if silence ended or `resync` was emitted.
    fn apply_resync(&self, r: &mut Running) -> bool {
        let requested = self.resync_requested.swap(false, Ordering::AcqRel);
        if r.gap > 0 || requested {
            r.synth.resync(r.gap);
            r.gap = 0;
            true
        } else {
            false
        }
    }

    /// The pipeline clock and base time a live source paces by; posts an
    /// error when there is none.
    fn pacing_clock(&self) -> Option<(gst::Clock, gst::ClockTime)> {
        let obj = self.obj();
        let pair = obj.clock().zip(obj.base_time());
        if pair.is_none() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Clock,
                ("Live rtpsynthsrc has no clock to pace packets")
            );
        }
        pair
    }

    /// Waits on the pipeline clock until `until` (running time). Ok(false):
    /// the wait was interrupted by a flush.
    fn wait_until(&self, until: gst::ClockTime) -> Result<bool, gst::FlowError> {
        let (clock, base) = self.pacing_clock().ok_or(gst::FlowError::Error)?;
        let id = {
            let mut wait = lock(&self.wait);
            if wait.flushing {
                return Ok(false);
            }
            let id = clock.new_single_shot_id(base + until);
            wait.clock_id = Some(id.clone());
            id
        };
        let (res, _jitter) = id.wait();
        lock(&self.wait).clock_id = None;
        match res {
            Ok(_) | Err(gst::ClockError::Early) => Ok(true),
            Err(gst::ClockError::Unscheduled) => Ok(false),
            Err(e) => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Clock,
                    ("Clock wait failed: {:?}", e)
                );
                Err(gst::FlowError::Error)
            }
        }
    }

    fn running_now(&self) -> Option<gst::ClockTime> {
        let obj = self.obj();
        Some(obj.clock()?.time().saturating_sub(obj.base_time()?))
    }

    /// One live packet: wait for its slot to end (as a capture source would),
    /// skipping the slots that pass while `silent` is set.
    fn create_live(&self) -> Result<CreateSuccess, gst::FlowError> {
        loop {
            let (pts, ptime) = {
                let mut state = lock(&self.state);
                let State::Started(r) = &mut *state else {
                    return Err(gst::FlowError::Flushing);
                };
                if r.origin.is_none() {
                    r.origin = Some(self.running_now().ok_or(gst::FlowError::Flushing)?);
                }
                let origin = r.origin.unwrap_or(gst::ClockTime::ZERO);
                (origin + r.ptime * r.slot, r.ptime)
            };
            if !self.wait_until(pts + ptime)? {
                return Err(gst::FlowError::Flushing);
            }
            let mut state = lock(&self.state);
            let State::Started(r) = &mut *state else {
                return Err(gst::FlowError::Flushing);
            };
            if self.silent.load(Ordering::Acquire) {
                r.slot += 1;
                r.gap += 1;
                lock(&self.tally).stats.silent_packets += 1;
                continue;
            }
            let resynced = self.apply_resync(r);
            let buffer = self.make_packet(r, pts)?;
            self.count(1, buffer.size() as u64, resynced);
            return Ok(CreateSuccess::NewBuffer(buffer));
        }
    }

    /// As many packets as downstream takes: a list of `packets-per-buffer`.
    /// While `silent`, waits for it to clear (no time passes without a clock).
    fn create_fast(&self) -> Result<CreateSuccess, gst::FlowError> {
        if self.silent.load(Ordering::Acquire) {
            let mut wait = lock(&self.wait);
            while self.silent.load(Ordering::Acquire) && !wait.flushing {
                wait = self.wake.wait(wait).unwrap_or_else(|e| e.into_inner());
            }
            if wait.flushing {
                return Err(gst::FlowError::Flushing);
            }
            drop(wait);
            self.resync_requested.store(true, Ordering::Release);
        }
        let mut state = lock(&self.state);
        let State::Started(r) = &mut *state else {
            return Err(gst::FlowError::Flushing);
        };
        let resynced = self.apply_resync(r);
        let n = r.packets_per_buffer;
        if n == 1 {
            let pts = r.ptime * r.slot;
            let buffer = self.make_packet(r, pts)?;
            self.count(1, buffer.size() as u64, resynced);
            return Ok(CreateSuccess::NewBuffer(buffer));
        }
        let mut list = gst::BufferList::new_sized(n as usize);
        let list_mut = list.get_mut().ok_or(gst::FlowError::Error)?;
        for _ in 0..n {
            let pts = r.ptime * r.slot;
            list_mut.add(self.make_packet(r, pts)?);
        }
        self.count(
            u64::from(n),
            u64::from(n) * r.synth.packet_len() as u64,
            resynced,
        );
        Ok(CreateSuccess::NewBufferList(list))
    }

    /// Packets made for one push; counted as sent or dropped once its
    /// result is known (see [`RtpSynthSrc::watch_pushes`]).
    fn count(&self, packets: u64, octets: u64, resynced: bool) {
        let mut tally = lock(&self.tally);
        tally.made = Unit { packets, octets };
        tally.stats.resyncs += u64::from(resynced);
    }

    /// Follows each push of a streaming thread, since `GstBaseSrc` does not
    /// tell its subclass a push's result:
    /// - a buffer or list that reaches the peer moves from made to pushing
    ///   (a push the pad refuses while flushing reaches no probe: its
    ///   packets stay made, and are dropped);
    /// - `GstBaseSrc` asks for the next buffer only after an OK push, and
    ///   pushes EOS only after one (or after a flow error): `create` and an
    ///   EOS settle what is pushing as sent;
    /// - a push downstream failed makes `GstBaseSrc` post a flow error
    ///   (`post_message`): dropped;
    /// - the push in flight when the source stops is settled by its result
    ///   ([`RtpSynthSrc::settle_last_push`]); one still pushing at stop was
    ///   refused (flushing: a sink stops before its source).
    ///
    /// No idle probe stays in place: it would keep the pad flagged blocked,
    /// and an application's blocking probe, once removed, would leave the
    /// stream stopped. (A probe costs every push; the shared thread, which
    /// sees its pushes' results, has none.)
    fn watch_pushes(&self) {
        let pad = self.obj().src_pad().clone();
        let tally = self.tally.clone();
        let probe = pad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let mut t = lock(&tally);
                match &info.data {
                    Some(gst::PadProbeData::Event(e)) => {
                        if e.type_() == gst::EventType::Eos {
                            t.settle(Tally::pushing, true);
                        }
                    }
                    _ => t.pushing = std::mem::take(&mut t.made),
                }
                gst::PadProbeReturn::Ok
            },
        );
        *lock(&self.probe) = probe;
    }

    /// Settles the push in flight when the source is told to stop, with its
    /// result, once its peer returns. An idle probe is called at once when
    /// no push is in flight: that says nothing of the last one, left to
    /// `stop`.
    fn settle_last_push(&self) {
        if lock(&self.probe).is_none() {
            return;
        }
        let tally = self.tally.clone();
        let here = std::thread::current().id();
        self.obj()
            .src_pad()
            .add_probe(gst::PadProbeType::IDLE, move |_, info| {
                if std::thread::current().id() != here {
                    lock(&tally).settle(Tally::pushing, info.flow_res.is_ok());
                }
                gst::PadProbeReturn::Remove
            });
    }

    fn request_resync(&self) {
        self.resync_requested.store(true, Ordering::Release);
    }

    fn shared_thread_name(&self) -> Option<String> {
        lock(&self.settings).shared_thread.clone()
    }

    /// On a shared thread: the worker this source will be paced by, from
    /// `start`. The source is then an asynchronous `GstBaseSrc` whose start
    /// is never completed, so `GstBaseSrc` never starts a streaming task
    /// for it (the task starts only from `start_complete`); the worker
    /// pushes instead, from PLAYING.
    fn join_shared(&self, name: &str) -> Result<SharedRun, gst::ErrorMessage> {
        let worker = Worker::named(name).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Failed,
                ["Cannot start shared thread {}: {}", name, e]
            )
        })?;
        Ok(SharedRun {
            worker,
            job: None,
            mono_base: 0,
            need_events: true,
            buffers_left: i64::from(self.obj().property::<i32>("num-buffers")),
            warned_slow: false,
        })
    }

    /// PAUSED→PLAYING on a shared thread: schedule the next packet.
    fn join_worker(&self) -> Result<(), gst::StateChangeError> {
        let obj = self.obj();
        let (clock, base) = self.pacing_clock().ok_or(gst::StateChangeError)?;
        // Deadlines are kept on CLOCK_MONOTONIC; map running time onto it.
        let mono_base = sched::monotonic_ns()
            .wrapping_sub(clock.time().nseconds())
            .wrapping_add(base.nseconds());
        let job: Arc<dyn Job> = Arc::new(SharedJob {
            src: obj.downgrade(),
        });
        let mut state = lock(&self.state);
        let State::Started(r) = &mut *state else {
            return Err(gst::StateChangeError);
        };
        if r.origin.is_none() {
            r.origin = Some(gst::ClockTime::from_nseconds(
                sched::monotonic_ns().saturating_sub(mono_base),
            ));
        }
        let origin = r.origin.unwrap_or(gst::ClockTime::ZERO);
        let first = mono_base + (origin + r.ptime * (r.slot + 1)).nseconds();
        let Some(shared) = &mut r.shared else {
            return Err(gst::StateChangeError);
        };
        shared.mono_base = mono_base;
        shared.job = Some(shared.worker.add(job, first));
        Ok(())
    }

    /// Leaves the worker; when this returns no packet of ours is being made.
    fn leave_worker(&self) {
        let taken = {
            let mut state = lock(&self.state);
            match &mut *state {
                State::Started(r) => r
                    .shared
                    .as_mut()
                    .and_then(|sh| Some((sh.worker.clone(), sh.job.take()?))),
                State::Stopped => None,
            }
        };
        // Not under the state lock: the job being waited for takes it.
        if let Some((worker, id)) = taken {
            worker.remove(id);
        }
    }

    /// One turn on the shared thread: the packet of the slot now due, pushed
    /// downstream. Returns the next deadline, or None when the stream ends.
    fn run_shared(&self, now: u64) -> Option<u64> {
        let pad = self.obj().src_pad().clone();
        let mut events = Vec::new();
        let (buffer, next) = {
            let mut state = lock(&self.state);
            let State::Started(r) = &mut *state else {
                return None;
            };
            let ptime = r.ptime.nseconds();
            let origin = r.origin?;
            let sh = r.shared.as_mut()?;
            let mono_base = sh.mono_base;
            if std::mem::take(&mut sh.need_events) {
                let stream_id = pad.create_stream_id(&*self.obj(), None::<&str>);
                events.push(
                    gst::event::StreamStart::builder(&stream_id)
                        .group_id(gst::GroupId::next())
                        .build(),
                );
                events.push(gst::event::Caps::new(&r.caps));
                events.push(gst::event::Segment::new(&gst::FormattedSegment::<
                    gst::ClockTime,
                >::new()));
            }
            // Whole packet times that passed beyond the one now due are
            // skipped, not burst out: the stream resumes with a resync.
            let due_end = mono_base + origin.nseconds() + ptime * (r.slot + 1);
            let behind = now.saturating_sub(due_end) / ptime;
            if behind > 0 {
                r.slot += behind;
                r.gap += behind;
                lock(&self.tally).stats.late_skipped += behind;
            }
            let pts = origin + r.ptime * r.slot;
            let buffer = if self.silent.load(Ordering::Acquire) {
                r.slot += 1;
                r.gap += 1;
                lock(&self.tally).stats.silent_packets += 1;
                None
            } else {
                let resynced = self.apply_resync(r);
                let buffer = self.make_packet(r, pts).ok()?;
                self.count(1, buffer.size() as u64, resynced);
                Some(buffer)
            };
            (buffer, mono_base + origin.nseconds() + ptime * (r.slot + 1))
        };
        for event in events {
            pad.push_event(event);
        }
        let Some(buffer) = buffer else {
            return Some(next);
        };
        let started = Instant::now();
        let result = pad.push(buffer);
        let took = started.elapsed();
        lock(&self.tally).settle(Tally::made, result.is_ok());
        let mut state = lock(&self.state);
        let State::Started(r) = &mut *state else {
            return None;
        };
        let sh = r.shared.as_mut()?;
        if took > SLOW_PUSH {
            lock(&self.tally).stats.slow_pushes += 1;
            if !std::mem::replace(&mut sh.warned_slow, true) {
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Thread,
                    (
                        "A push blocked shared thread {} for {:?}",
                        sh.worker.name(),
                        took
                    ),
                    [
                        "Sources on a shared thread need non-blocking downstream elements (an rtpmuxserver sink pad, or a leaky queue)"
                    ]
                );
            }
        }
        match result {
            Ok(_) => {}
            Err(gst::FlowError::Flushing) => return None,
            Err(e) => {
                drop(state);
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped, reason {:?}", e]
                );
                return None;
            }
        }
        if sh.buffers_left > 0 {
            sh.buffers_left -= 1;
            if sh.buffers_left == 0 {
                drop(state);
                pad.push_event(gst::event::Eos::new());
                return None;
            }
        }
        Some(next)
    }
}

/// A source's turn on its shared thread. Holds the element weakly, so a
/// source dropped without a state change still frees its worker slot.
struct SharedJob {
    src: glib::WeakRef<super::RtpSynthSrc>,
}

impl Job for SharedJob {
    fn run(&self, now: u64) -> Option<u64> {
        self.src.upgrade()?.imp().run_shared(now)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RtpSynthSrc {
    const NAME: &'static str = "GstRtpSynthSrc";
    type Type = super::RtpSynthSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for RtpSynthSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("payload-type")
                    .nick("Payload type")
                    .blurb("RTP payload type (0-127). Static types (0 PCMU, 8 PCMA, ...) also give encoding-name.")
                    .maximum(127)
                    .default_value(DEFAULT_PAYLOAD_TYPE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("clock-rate")
                    .nick("Clock rate")
                    .blurb("RTP clock rate in Hz: timestamp units per second.")
                    .minimum(1)
                    .default_value(DEFAULT_CLOCK_RATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("ptime")
                    .nick("Packet time")
                    .blurb("Duration of each packet in milliseconds; clock-rate × ptime / 1000 must be a whole number of samples.")
                    .minimum(1)
                    .maximum(60_000)
                    .default_value(DEFAULT_PTIME)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("payload-size")
                    .nick("Payload size")
                    .blurb("Payload bytes per packet; -1 = clock-rate × ptime / 1000 (one byte per sample, as PCMU/PCMA). Header plus payload must fit 65507 bytes.")
                    .minimum(-1)
                    .default_value(DEFAULT_PAYLOAD_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("encoding-name")
                    .nick("Encoding name")
                    .blurb("Encoding name in the caps; unset = from the static payload type table (PCMU for 0, PCMA for 8, ...). Required for dynamic payload types.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("payload-fill")
                    .nick("Payload fill")
                    .blurb("Byte written into every payload; -1 = the codec's silence (0xFF for PCMU, 0xD5 for PCMA, 0 otherwise).")
                    .minimum(-1)
                    .maximum(255)
                    .default_value(DEFAULT_PAYLOAD_FILL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("ssrc")
                    .nick("SSRC")
                    .blurb("Synchronization source of the stream; 4294967295 = random (from seed), as stock payloaders.")
                    .default_value(DEFAULT_SSRC)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("seqnum-offset")
                    .nick("Sequence number offset")
                    .blurb("Sequence number of the first packet (0-65535); -1 = random (from seed).")
                    .minimum(-1)
                    .maximum(65535)
                    .default_value(DEFAULT_SEQNUM_OFFSET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("timestamp-offset")
                    .nick("Timestamp offset")
                    .blurb("RTP timestamp of the first packet (0-4294967295); -1 = random (from seed).")
                    .minimum(-1)
                    .maximum(i64::from(u32::MAX))
                    .default_value(DEFAULT_TIMESTAMP_OFFSET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("seed")
                    .nick("Seed")
                    .blurb("Seed for the random SSRC, sequence and timestamp offsets, so a run can be reproduced; 0 = a new random seed at each start.")
                    .default_value(DEFAULT_SEED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("True: one packet per ptime, paced by the pipeline clock. False: packets as fast as downstream takes them, in buffer lists.")
                    .default_value(DEFAULT_IS_LIVE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("packets-per-buffer")
                    .nick("Packets per buffer")
                    .blurb("When not live, packets in each pushed GstBufferList (1 = plain buffers); amortizes the per-buffer cost. Ignored when live.")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(DEFAULT_PACKETS_PER_BUFFER)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("shared-thread")
                    .nick("Shared thread")
                    .blurb("Name of a process-wide worker thread that paces and pushes this source's packets together with every other source of that name, instead of a streaming thread per source; empty = own streaming thread. Live only; downstream must never block (an rtpmuxserver sink pad or a leaky queue): pushes over 2 ms are counted as slow-pushes.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("silent")
                    .nick("Silent")
                    .blurb("While true no packets flow (a VAD gap). When cleared, the next packet carries the marker bit and a timestamp that accounts for the gap.")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("application/x-rtpsynthsrc-stats: packets-sent (taken downstream), octets-sent (header included), dropped-downstream (made, refused downstream or never pushed), resyncs, silent-packets (packet times skipped while silent), late-skipped, slow-pushes; all guint64, since the last start.")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("resync")
                    .action()
                    .class_handler(|args| {
                        if let Some(Ok(obj)) = args.first().map(|a| a.get::<super::RtpSynthSrc>()) {
                            obj.imp().request_resync();
                        }
                        None
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.name() == "silent" {
            let silent = value.get().unwrap_or(false);
            self.silent.store(silent, Ordering::Release);
            if !silent {
                let _wait = lock(&self.wait);
                self.wake.notify_all();
            }
            return;
        }
        let mut s = lock(&self.settings);
        match pspec.name() {
            "payload-type" => s.payload_type = value.get().unwrap_or(DEFAULT_PAYLOAD_TYPE),
            "clock-rate" => s.clock_rate = value.get().unwrap_or(DEFAULT_CLOCK_RATE),
            "ptime" => s.ptime = value.get().unwrap_or(DEFAULT_PTIME),
            "payload-size" => s.payload_size = value.get().unwrap_or(DEFAULT_PAYLOAD_SIZE),
            "encoding-name" => s.encoding_name = value.get().unwrap_or(None),
            "payload-fill" => s.payload_fill = value.get().unwrap_or(DEFAULT_PAYLOAD_FILL),
            "ssrc" => s.ssrc = value.get().unwrap_or(DEFAULT_SSRC),
            "seqnum-offset" => s.seqnum_offset = value.get().unwrap_or(DEFAULT_SEQNUM_OFFSET),
            "timestamp-offset" => {
                s.timestamp_offset = value.get().unwrap_or(DEFAULT_TIMESTAMP_OFFSET)
            }
            "seed" => s.seed = value.get().unwrap_or(DEFAULT_SEED),
            "is-live" => {
                s.is_live = value.get().unwrap_or(DEFAULT_IS_LIVE);
                let live = s.is_live;
                drop(s);
                self.obj().set_live(live);
            }
            "packets-per-buffer" => {
                s.packets_per_buffer = value.get().unwrap_or(DEFAULT_PACKETS_PER_BUFFER)
            }
            "shared-thread" => {
                s.shared_thread = value
                    .get::<Option<String>>()
                    .unwrap_or(None)
                    .filter(|n| !n.is_empty())
            }
            name => gst::warning!(CAT, imp = self, "Unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "payload-type" => s.payload_type.to_value(),
            "clock-rate" => s.clock_rate.to_value(),
            "ptime" => s.ptime.to_value(),
            "payload-size" => s.payload_size.to_value(),
            "encoding-name" => s.encoding_name.to_value(),
            "payload-fill" => s.payload_fill.to_value(),
            "ssrc" => s.ssrc.to_value(),
            "seqnum-offset" => s.seqnum_offset.to_value(),
            "timestamp-offset" => s.timestamp_offset.to_value(),
            "seed" => s.seed.to_value(),
            "is-live" => s.is_live.to_value(),
            "packets-per-buffer" => s.packets_per_buffer.to_value(),
            "shared-thread" => s.shared_thread.to_value(),
            "silent" => self.silent.load(Ordering::Acquire).to_value(),
            "stats" => {
                let counters = lock(&self.tally).stats;
                stats::to_structure("application/x-rtpsynthsrc-stats", counters.fields()).to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(DEFAULT_IS_LIVE);
        obj.set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for RtpSynthSrc {}

impl ElementImpl for RtpSynthSrc {
    /// `GstBaseSrc` posts a flow error when downstream failed a push (not
    /// linked, an error): that push, still pushing, was not taken. (`create`
    /// settles the push before it at its start, so an error of its own
    /// finds nothing pushing.)
    fn post_message(&self, msg: gst::Message) -> bool {
        if msg.type_() == gst::MessageType::Error {
            lock(&self.tally).settle(Tally::pushing, false);
        }
        self.parent_post_message(msg)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        use gst::StateChange::*;
        if transition == ReadyToPaused {
            // Bad settings fail here, with their one error: once GstBaseSrc
            // is asked to start, a failed start also posts its own generic
            // "Failed to start" error after ours.
            let settings = lock(&self.settings).clone();
            if let Err(e) = self.prepare(&settings) {
                self.post_error_message(e);
                return Err(gst::StateChangeError);
            }
        }
        let shared = self.shared_thread_name().is_some();
        if shared {
            match transition {
                // GstBaseSrc starts a streaming task for live sources when
                // PLAYING starts, and for any source when its start
                // completes; on a shared thread there must be none.
                ReadyToPaused => {
                    self.obj().set_live(false);
                    self.obj().set_async(true);
                }
                PlayingToPaused => self.leave_worker(),
                _ => {}
            }
        }
        let result = self.parent_change_state(transition);
        if shared {
            match transition {
                PausedToReady => {
                    self.obj().set_live(lock(&self.settings).is_live);
                    self.obj().set_async(false);
                }
                PausedToPlaying if result.is_ok() => self.join_worker()?,
                _ => {}
            }
            // Live: no preroll, as GstBaseSrc reports for live sources.
            if result.is_ok() && matches!(transition, ReadyToPaused | PlayingToPaused) {
                return Ok(gst::StateChangeSuccess::NoPreroll);
            }
        }
        result
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTP stream synthesizer",
                "Source/Network/RTP",
                "Produces a continuous RTP stream of one payload type with correct sequence numbers, timestamps and marker bits, live or as fast as possible",
                "gst-rtpsynth developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("application/x-rtp").build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("static pad template is valid"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for RtpSynthSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let mut running = self.prepare(&settings)?;
        if let Some(name) = &settings.shared_thread {
            running.shared = Some(self.join_shared(name)?);
        } else {
            self.watch_pushes();
        }
        gst::debug!(CAT, imp = self, "Starting with caps {}", running.caps);
        *lock(&self.tally) = Tally::default();
        self.resync_requested.store(false, Ordering::Release);
        *lock(&self.state) = State::Started(Box::new(running));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.leave_worker();
        *lock(&self.state) = State::Stopped;
        let pad = self.obj().src_pad().clone();
        if let Some(probe) = lock(&self.probe).take() {
            pad.remove_probe(probe);
        }
        // Streaming has stopped: a push still unsettled was refused (or, in
        // the instant the source was told to stop, taken: not told apart).
        lock(&self.tally).settle_pending(false);
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let caps = match &*lock(&self.state) {
            State::Started(r) => r.caps.clone(),
            State::Stopped => self.obj().src_pad().pad_template_caps(),
        };
        Some(match filter {
            Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        let caps = match &*lock(&self.state) {
            State::Started(r) => r.caps.clone(),
            State::Stopped => return Err(gst::loggable_error!(CAT, "Not started")),
        };
        self.obj()
            .set_caps(&caps)
            .map_err(|_| gst::loggable_error!(CAT, "Downstream refused caps {}", caps))
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let settings = lock(&self.settings);
            let latency = gst::ClockTime::from_mseconds(u64::from(settings.ptime));
            if settings.is_live {
                q.set(true, latency, Some(latency));
            } else {
                q.set(false, gst::ClockTime::ZERO, gst::ClockTime::NONE);
            }
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.settle_last_push();
        let mut wait = lock(&self.wait);
        wait.flushing = true;
        if let Some(id) = wait.clock_id.take() {
            id.unschedule();
        }
        self.wake.notify_all();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.wait).flushing = false;
        Ok(())
    }
}

impl PushSrcImpl for RtpSynthSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        // Asked again: the previous push returned OK.
        lock(&self.tally).settle_pending(true);
        let live = match &*lock(&self.state) {
            State::Started(r) => r.live,
            State::Stopped => return Err(gst::FlowError::Flushing),
        };
        if live {
            self.create_live()
        } else {
            self.create_fast()
        }
    }
}
