use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::audiocaps::{self, StreamCounters, field};
use crate::audiofilter::{AudioFilter, AudioTransform};
use rtpsynth_core::arith::mul_div_floor;
use rtpsynth_core::resample::{MAX_RATE, Resampler};

const NAME: &str = "linearresample";

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        NAME,
        gst::DebugColorFlags::empty(),
        Some("Linear-interpolation resampler"),
    )
});

/// Index of `resets` (phase resets with data pending: DISCONT, flush or new
/// caps) after the shared audio counters.
const RESETS: usize = field::COUNT;

#[derive(Debug, Default)]
struct State {
    /// Present once caps are set.
    resampler: Option<Resampler>,
    /// Bytes per frame.
    bpf: usize,
    /// Timestamp of input frame 0 since the last reset; outputs are placed
    /// from it by their count, so they never drift from the input clock.
    t0: Option<gst::ClockTime>,
    /// Output offset (in output samples) of `t0`.
    offset0: u64,
    /// The next output buffer starts a new stream.
    discont: bool,
}

impl State {
    /// Forgets the phase and the previous frame; the next buffer restarts
    /// timestamps. Returns whether input was pending (a reset to count).
    fn reset(&mut self) -> bool {
        self.t0 = None;
        self.resampler.as_mut().is_some_and(|r| {
            let pending = r.frames_in() > 0;
            r.reset();
            pending
        })
    }

    /// Stamps `buf`, which holds the `frames` output frames that follow the
    /// `before` already produced since the reset.
    fn stamp(&mut self, buf: &mut gst::BufferRef, out_rate: u32, before: u64, frames: u64) {
        let at = |n: u64| {
            self.t0.map(|t0| {
                let ns = mul_div_floor(n, 1_000_000_000, u64::from(out_rate));
                t0 + gst::ClockTime::from_nseconds(ns as u64)
            })
        };
        let (start, end) = (at(before), at(before + frames));
        buf.set_pts(start);
        buf.set_dts(gst::ClockTime::NONE);
        buf.set_duration(match (start, end) {
            (Some(s), Some(e)) => Some(e - s),
            _ => None,
        });
        buf.set_offset(self.offset0 + before);
        buf.set_offset_end(self.offset0 + before + frames);
        if std::mem::take(&mut self.discont) {
            buf.set_flags(gst::BufferFlags::DISCONT);
        } else {
            buf.unset_flags(gst::BufferFlags::DISCONT);
        }
    }
}

/// The stream state is locked by the streaming thread for the whole of a
/// buffer (uncontended: only the latency query reads it from elsewhere); the
/// counters are lock-free ([`StreamCounters`]), so reading `stats` never
/// waits on processing.
pub struct LinearResample {
    filter: AudioFilter,
    state: Mutex<State>,
    stats: StreamCounters<{ field::COUNT + 1 }>,
}

impl LinearResample {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-written; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End of stream: the held last frame up to the whole-signal length,
    /// so the total output is exactly the formula's.
    fn drain_buffer(&self) -> Option<gst::Buffer> {
        let mut st = self.lock();
        let bpf = st.bpf;
        let r = st.resampler.as_mut()?;
        let n = r.drain_frames();
        if n == 0 {
            return None;
        }
        let (before, out_rate) = (r.frames_out(), r.out_rate());
        let Ok(mut buf) = gst::Buffer::with_size(n * bpf) else {
            gst::error!(CAT, imp = self, "cannot allocate {n} frames to drain");
            return None;
        };
        {
            let bufref = buf.get_mut()?;
            let drained = match bufref.map_writable() {
                Ok(mut map) => r.drain_s16le(&mut map).map_err(|e| e.to_string()),
                Err(_) => Err("cannot map drain buffer".to_string()),
            };
            if let Err(e) = drained {
                gst::error!(CAT, imp = self, "drain failed: {e}");
                return None;
            }
            r.reset();
            st.stamp(bufref, out_rate, before, n as u64);
            st.t0 = None;
        }
        drop(st);
        self.stats.add(field::BUFFERS_OUT, 1);
        self.stats
            .add(field::SAMPLES_OUT, (buf.size() / bpf) as u64);
        gst::debug!(CAT, imp = self, "draining {buf:?}");
        Some(buf)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for LinearResample {
    const NAME: &'static str = "GstLinearResample";
    type Type = super::LinearResample;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        LinearResample {
            filter: AudioFilter::new::<Self>(klass),
            state: Mutex::default(),
            stats: StreamCounters::default(),
        }
    }
}

impl ObjectImpl for LinearResample {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                audiocaps::qos_pspec(),
                audiocaps::stats_pspec(
                    NAME,
                    &format!(
                        "{} and resets (phase resets with data pending, on DISCONT, flush or new caps)",
                        audiocaps::STATS_FIELDS_DOC
                    ),
                ),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "qos" => self
                .filter
                .set_qos_enabled(value.get().expect("type checked upstream")),
            other => unreachable!("linearresample has no writable property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "qos" => self.filter.qos_enabled().to_value(),
            "stats" => {
                let audio = self.stats.audio(self.filter.qos_dropped());
                let resets = self.stats.values()[RESETS];
                let fields = audio.fields().chain([("resets", resets)]);
                audiocaps::stats_structure(NAME, fields).to_value()
            }
            other => unreachable!("linearresample has no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.filter.add_pads(&*self.obj());
    }
}

impl GstObjectImpl for LinearResample {}

impl ElementImpl for LinearResample {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Linear resampler",
                "Filter/Converter/Audio",
                "Resamples S16LE audio between any two rates by linear interpolation, \
                 stateful across buffers",
                "gst-rtpsynth developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = audiocaps::raw_caps(MAX_RATE as i32);
            [
                ("src", gst::PadDirection::Src),
                ("sink", gst::PadDirection::Sink),
            ]
            .into_iter()
            .map(|(name, dir)| {
                gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                    .expect("valid template")
            })
            .collect()
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        AudioFilter::change_state(self, transition)
    }
}

impl AudioTransform for LinearResample {
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;

    fn filter(&self) -> &AudioFilter {
        &self.filter
    }

    fn transform_caps(&self, _direction: gst::PadDirection, caps: &gst::Caps) -> gst::Caps {
        // The same caps first (so an unconstrained peer gives passthrough),
        // then the same caps at any rate.
        let mut any_rate = caps.clone();
        for s in any_rate.make_mut().iter_mut() {
            s.set("rate", gst::IntRange::new(1, MAX_RATE as i32));
        }
        let mut out = caps.clone();
        out.merge(any_rate);
        gst::debug!(CAT, imp = self, "{caps} -> {out}");
        out
    }

    fn fixate_caps(&self, incaps: &gst::Caps, mut othercaps: gst::Caps) -> gst::Caps {
        // Like audioresample: keep the rate when the other side allows it,
        // else take the allowed rate nearest to it.
        othercaps.truncate();
        if let (Some(rate), Some(s)) = (
            incaps.structure(0).and_then(|s| s.get::<i32>("rate").ok()),
            othercaps.make_mut().structure_mut(0),
        ) {
            s.fixate_field_nearest_int("rate", rate);
        }
        othercaps.fixate();
        othercaps
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let (in_rate, channels) = audiocaps::rate_channels(incaps)
            .ok_or_else(|| gst::loggable_error!(CAT, "caps without rate and channels: {incaps}"))?;
        let (out_rate, out_channels) = audiocaps::rate_channels(outcaps).ok_or_else(|| {
            gst::loggable_error!(CAT, "caps without rate and channels: {outcaps}")
        })?;
        if channels != out_channels {
            return Err(gst::loggable_error!(
                CAT,
                "{channels} input channels but {out_channels} output channels"
            ));
        }
        let r = Resampler::new(in_rate, out_rate, channels)
            .map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        gst::debug!(
            CAT,
            imp = self,
            "{in_rate} Hz -> {out_rate} Hz, {channels} channels"
        );
        let pending = {
            let mut st = self.lock();
            let pending = st.reset();
            st.resampler = Some(r);
            st.bpf = 2 * channels;
            pending
        };
        if pending {
            self.stats.add(RESETS, 1);
        }
        Ok(())
    }

    fn process(&self, inbuf: gst::Buffer) -> Result<Option<gst::Buffer>, gst::FlowError> {
        if self.filter.is_passthrough() {
            return self.pass(inbuf);
        }
        let mut out = None;
        let outcome = self.resample(&inbuf, &mut out);
        drop(inbuf);
        self.account(outcome).map(|()| out)
    }

    fn drain(&self) -> Option<gst::Buffer> {
        if self.filter.is_passthrough() {
            return None;
        }
        self.drain_buffer()
    }

    fn flush(&self) {
        if self.lock().reset() {
            self.stats.add(RESETS, 1);
        }
    }

    fn reset(&self) {
        *self.lock() = State::default();
        self.stats.clear();
    }

    fn count(&self, field: usize, n: u64) {
        self.stats.add(field, n);
    }

    fn latency(&self) -> Option<gst::ClockTime> {
        // An output needs the input frame after its position, which may
        // come with the next buffer: up to one input frame of delay.
        self.lock().resampler.as_ref().map(|r| {
            gst::ClockTime::from_nseconds(1_000_000_000u64.div_ceil(u64::from(r.in_rate())))
        })
    }
}

/// What one input buffer did.
struct Done {
    frames_in: u64,
    frames_out: u64,
    /// A DISCONT reset the phase with input pending.
    reset: bool,
}

/// Why an input buffer was refused (the error's domain).
enum Refusal {
    BeforeCaps,
    Format,
    Failed,
}

impl LinearResample {
    /// In pass-through: `inbuf` itself goes out, counted as in and out.
    fn pass(&self, inbuf: gst::Buffer) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let bpf = self.lock().bpf;
        let frames = match audiocaps::whole_frames(inbuf.size(), bpf) {
            Ok(frames) => frames as u64,
            Err(why) => return self.account(Err((Refusal::Format, why))).map(|()| None),
        };
        for (counter, n) in [
            (field::BUFFERS_IN, 1),
            (field::SAMPLES_IN, frames),
            (field::BUFFERS_OUT, 1),
            (field::SAMPLES_OUT, frames),
        ] {
            self.stats.add(counter, n);
        }
        Ok(Some(inbuf))
    }

    /// Counts what one input buffer did and turns a refusal into a posted
    /// error (no lock held) and a flow error.
    fn account(&self, outcome: Result<Done, (Refusal, String)>) -> Result<(), gst::FlowError> {
        self.stats.add(field::BUFFERS_IN, 1);
        let (refusal, why) = match outcome {
            Ok(done) => {
                self.stats.add(field::SAMPLES_IN, done.frames_in);
                self.stats.add(RESETS, u64::from(done.reset));
                // Downsampling a short buffer can complete no output
                // frame; its frames stay in the phase and feed the next.
                if done.frames_out > 0 {
                    self.stats.add(field::BUFFERS_OUT, 1);
                    self.stats.add(field::SAMPLES_OUT, done.frames_out);
                }
                return Ok(());
            }
            Err(r) => r,
        };
        self.stats.add(field::REJECTED_BUFFERS, 1);
        Err(match refusal {
            Refusal::BeforeCaps => {
                // Upstream reports the not-negotiated flow as its error.
                gst::warning!(CAT, imp = self, "{why}");
                gst::FlowError::NotNegotiated
            }
            Refusal::Format => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{why}"));
                gst::FlowError::Error
            }
            Refusal::Failed => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{why}"));
                gst::FlowError::Error
            }
        })
    }

    /// Resamples `inbuf` into a new buffer of exactly the output size, left
    /// in `slot` (none when the input completes no output frame), stamped,
    /// under the state lock; posts nothing, so the caller can post errors
    /// with no lock held.
    fn resample(
        &self,
        inbuf: &gst::BufferRef,
        slot: &mut Option<gst::Buffer>,
    ) -> Result<Done, (Refusal, String)> {
        let mut st = self.lock();
        let Some(out_rate) = st.resampler.as_ref().map(|r| r.out_rate()) else {
            return Err((Refusal::BeforeCaps, "buffer before caps".into()));
        };
        let frames =
            audiocaps::whole_frames(inbuf.size(), st.bpf).map_err(|e| (Refusal::Format, e))?;
        let reset = inbuf.flags().contains(gst::BufferFlags::DISCONT) && st.reset();
        if st.t0.is_none() {
            // First buffer since a reset: it fixes the time line.
            st.t0 = inbuf.pts();
            st.offset0 = st.t0.map_or(0, |t| {
                mul_div_floor(t.nseconds(), u64::from(out_rate), 1_000_000_000) as u64
            });
            st.discont = true;
        }
        let bpf = st.bpf;
        let Some(r) = st.resampler.as_mut() else {
            return Err((Refusal::BeforeCaps, "buffer before caps".into()));
        };
        let before = r.frames_out();
        let exact = r.output_frames(frames);
        let n = if exact == 0 {
            // Nothing to write, but the frames feed the phase.
            process_mapped(r, inbuf, None)?
        } else {
            let mut out = self
                .filter
                .output_buffer(inbuf, exact * bpf)
                .map_err(|_| (Refusal::Failed, "cannot allocate output".into()))?;
            let Some(o) = out.get_mut() else {
                return Err((Refusal::Failed, "new buffer not writable".into()));
            };
            let n = process_mapped(r, inbuf, Some(&mut *o))?;
            st.stamp(o, out_rate, before, n as u64);
            *slot = Some(out);
            n
        };
        Ok(Done {
            frames_in: frames as u64,
            frames_out: n as u64,
            reset,
        })
    }
}

/// Runs `r` on `inbuf`'s samples into `outbuf`'s (none: the input completes
/// no output frame); the output frames written.
fn process_mapped(
    r: &mut Resampler,
    inbuf: &gst::BufferRef,
    outbuf: Option<&mut gst::BufferRef>,
) -> Result<usize, (Refusal, String)> {
    let written = audiocaps::with_readable(inbuf, |input| match outbuf {
        Some(outbuf) => audiocaps::with_writable(outbuf, |output| r.process_s16le(input, output))
            .ok_or_else(|| (Refusal::Failed, "cannot map output buffer".to_string())),
        None => Ok(r.process_s16le(input, &mut [])),
    })
    // Lazily: an eager message was a malloc and a free per buffer.
    .ok_or_else(|| (Refusal::Failed, "cannot map input buffer".to_string()))??;
    written.map_err(|e| (Refusal::Failed, e.to_string()))
}
