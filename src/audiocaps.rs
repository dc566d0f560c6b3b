//! Glue shared by the audio elements (`ulawenc`, `ulawdec`,
//! `linearresample`): their caps, their stats counters, the checks that turn
//! a malformed buffer into a clear stream error, and [`codec_element!`], the
//! one implementation behind both G.711 elements. Their pads are
//! [`AudioFilter`]'s.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::audiofilter::AudioFilter;

/// The one raw format the elements take: S16LE, interleaved.
pub const RAW_FORMAT: &str = "S16LE";

rtpsynth_core::counters! {
    /// Counters behind an audio element's `stats` property. Samples are
    /// counted per channel (frames), as GStreamer audio offsets are.
    pub struct AudioStats {
        /// Buffers received from upstream.
        buffers_in = "buffers-in",
        /// Buffers pushed downstream (drain buffers included).
        buffers_out = "buffers-out",
        /// Samples per channel received.
        samples_in = "samples-in",
        /// Samples per channel pushed.
        samples_out = "samples-out",
        /// GAP events forwarded.
        gap_events = "gap-events",
        /// Buffers refused with an error: before caps, empty, or not a whole
        /// number of frames.
        rejected_buffers = "rejected-buffers",
        /// Buffers dropped as late, before processing, with `qos` on.
        qos_dropped = "qos-dropped",
    }
}

/// Indices of the [`AudioStats`] fields in [`StreamCounters`], in
/// [`AudioStats::NAMES`] order; `linearresample` adds `resets` after them.
pub mod field {
    pub const BUFFERS_IN: usize = 0;
    pub const BUFFERS_OUT: usize = 1;
    pub const SAMPLES_IN: usize = 2;
    pub const SAMPLES_OUT: usize = 3;
    pub const GAP_EVENTS: usize = 4;
    pub const REJECTED_BUFFERS: usize = 5;
    /// How many there are.
    pub const COUNT: usize = 6;
}

/// Counters written only by whoever holds the sink pad's stream lock (the
/// streaming thread, serialized events such as FLUSH_STOP) or while the
/// element is stopped, and read from any thread. Writers are thus ordered by
/// that lock, so each counter is bumped with a plain relaxed load and store:
/// no lock and no locked instruction per buffer. A read while streaming may
/// see one buffer's counters partly updated.
#[derive(Debug)]
pub struct StreamCounters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for StreamCounters<N> {
    fn default() -> Self {
        StreamCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> StreamCounters<N> {
    /// Adds `n` to counter `i` (an index from [`field`]).
    pub fn add(&self, i: usize, n: u64) {
        let c = &self.0[i];
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub fn values(&self) -> [u64; N] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    /// The [`AudioStats`] part, with the QoS drops [`AudioFilter`] counts.
    pub fn audio(&self, qos_dropped: u64) -> AudioStats {
        let v = self.values();
        AudioStats {
            buffers_in: v[field::BUFFERS_IN],
            buffers_out: v[field::BUFFERS_OUT],
            samples_in: v[field::SAMPLES_IN],
            samples_out: v[field::SAMPLES_OUT],
            gap_events: v[field::GAP_EVENTS],
            rejected_buffers: v[field::REJECTED_BUFFERS],
            qos_dropped,
        }
    }

    pub fn clear(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Blurb text for the [`AudioStats`] fields, shared by every audio element.
pub const STATS_FIELDS_DOC: &str = "buffers-in, buffers-out, samples-in and samples-out \
    (samples per channel), gap-events (GAP events forwarded), rejected-buffers (buffers refused \
    with an error: before caps, empty, or not a whole number of frames), qos-dropped (buffers \
    dropped as late with qos on)";

/// The `qos` property, shared by every audio element.
pub fn qos_pspec() -> glib::ParamSpec {
    glib::ParamSpecBoolean::builder("qos")
        .nick("QoS")
        .blurb(
            "Drop buffers that downstream's QOS events say are already late (at or before the \
             last event's running time plus its jitter), counting them in qos-dropped; false = \
             process every buffer and pass QOS events upstream only.",
        )
        .default_value(false)
        .build()
}

/// `audio/x-raw, format=S16LE, layout=interleaved` with the given rate range
/// and any channel count.
pub fn raw_caps(max_rate: i32) -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", RAW_FORMAT)
        .field("layout", "interleaved")
        .field("rate", gst::IntRange::new(1, max_rate))
        .field("channels", gst::IntRange::new(1, i32::MAX))
        .build()
}

/// `audio/x-mulaw` with any rate and channel count.
pub fn mulaw_caps() -> gst::Caps {
    coded_caps("audio/x-mulaw")
}

/// `audio/x-alaw` with any rate and channel count.
pub fn alaw_caps() -> gst::Caps {
    coded_caps("audio/x-alaw")
}

fn coded_caps(media: &str) -> gst::Caps {
    gst::Caps::builder(media)
        .field("rate", gst::IntRange::new(1, i32::MAX))
        .field("channels", gst::IntRange::new(1, i32::MAX))
        .build()
}

/// The caps on the other side of a codec: each structure of `caps` with its
/// `rate` and `channels` (fixed, list or range) carried over into `template`,
/// then filtered. This is what lets a caps query through a codec reach the
/// elements before it.
pub fn codec_transform_caps(
    caps: &gst::Caps,
    template: &gst::Caps,
    filter: Option<&gst::Caps>,
) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut().expect("new caps are writable");
        for s in caps.iter() {
            for t in template.iter() {
                let mut t = t.to_owned();
                for field in ["rate", "channels"] {
                    if let Ok(v) = s.value(field) {
                        t.set_value(field, v.clone());
                    }
                }
                out.append_structure(t);
            }
        }
    }
    let out = out.intersect(template);
    match filter {
        Some(f) => f.intersect_with_mode(&out, gst::CapsIntersectMode::First),
        None => out,
    }
}

/// Rate and channels of fixed caps.
pub fn rate_channels(caps: &gst::Caps) -> Option<(u32, usize)> {
    let s = caps.structure(0)?;
    let rate = s.get::<i32>("rate").ok().filter(|&r| r > 0)?;
    let channels = s.get::<i32>("channels").ok().filter(|&c| c > 0)?;
    Some((rate as u32, channels as usize))
}

/// Frames in a buffer of `size` bytes with `bpf` bytes per frame, or the
/// reason it cannot be processed.
pub fn whole_frames(size: usize, bpf: usize) -> Result<usize, String> {
    if size == 0 {
        Err("zero-length buffer: no audio to process".into())
    } else if !size.is_multiple_of(bpf) {
        Err(format!(
            "buffer of {size} bytes is not a whole number of {bpf}-byte frames"
        ))
    } else {
        Ok(size / bpf)
    }
}

/// The read-only `stats` property: `fields_doc` lists its fields.
pub fn stats_pspec(element: &str, fields_doc: &str) -> glib::ParamSpec {
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(&format!(
            "Counters since the element last started, as an application/x-{element}-stats \
             structure of u64 fields: {fields_doc}."
        ))
        .read_only()
        .build()
}

/// The `stats` structure of `element` from its counters.
pub fn stats_structure(
    element: &str,
    fields: impl IntoIterator<Item = (&'static str, u64)>,
) -> gst::Structure {
    crate::stats::to_structure(&format!("application/x-{element}-stats"), fields)
}

/// Runs `f` on `buf`'s bytes, `None` if it cannot be mapped. A buffer of
/// one memory (all these elements allocate, and nearly all they receive) is
/// mapped through that memory: `gst_buffer_map` would also take and drop a
/// reference to it and check for merging, which for a 20 ms buffer costs
/// more than half as much as the µ-law kernel itself.
pub fn with_readable<R>(buf: &gst::BufferRef, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    if buf.n_memory() == 1 {
        let map = buf.peek_memory(0).map_readable().ok()?;
        Some(f(&map))
    } else {
        let map = buf.map_readable().ok()?;
        Some(f(&map))
    }
}

/// [`with_readable`] for writing: through the one memory when it is
/// writable, else through `gst_buffer_map`, which copies a shared memory.
pub fn with_writable<R>(buf: &mut gst::BufferRef, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
    if buf.n_memory() == 1
        && let Ok(mem) = buf.peek_memory_mut(0)
    {
        let mut map = mem.map_writable().ok()?;
        return Some(f(&mut map));
    }
    let mut map = buf.map_writable().ok()?;
    Some(f(&mut map))
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtpsynth-audio",
        gst::DebugColorFlags::empty(),
        Some("rtpsynth audio element glue"),
    )
});

/// What sets one G.711 codec element apart from the other: its names and
/// metadata, its caps on each side and its kernel. [`codec_element!`] builds
/// the whole element from one of these.
#[derive(Debug)]
pub struct CodecSpec {
    /// Element name; also names its debug category and stats structure.
    pub element: &'static str,
    /// Description of the debug category.
    pub debug_description: &'static str,
    /// Element metadata: long name, classification, description.
    pub long_name: &'static str,
    pub classification: &'static str,
    pub description: &'static str,
    /// Caps the sink and source pad templates accept.
    pub sink_caps: fn() -> gst::Caps,
    pub src_caps: fn() -> gst::Caps,
    /// Bytes one sample of one channel takes on the sink and source sides.
    pub in_bytes_per_sample: usize,
    pub out_bytes_per_sample: usize,
    /// One of the `g711` byte-slice functions.
    pub kernel: fn(&[u8], &mut [u8]) -> usize,
}

impl CodecSpec {
    /// The `src` and `sink` pad templates.
    pub fn pad_templates(&self) -> Vec<gst::PadTemplate> {
        let template = |name, direction, caps: &gst::Caps| {
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
                .expect("valid pad template")
        };
        vec![
            template("src", gst::PadDirection::Src, &(self.src_caps)()),
            template("sink", gst::PadDirection::Sink, &(self.sink_caps)()),
        ]
    }

    /// The element's `transform_caps`: `caps` on the `direction` pad carried
    /// over to the template of the other pad.
    pub fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> gst::Caps {
        let other = match direction {
            gst::PadDirection::Sink => (self.src_caps)(),
            _ => (self.sink_caps)(),
        };
        codec_transform_caps(caps, &other, filter)
    }
}

/// Everything `ulawenc` and `ulawdec` share, one per element instance. The
/// streaming thread reads the channel count and updates the counters
/// without a lock.
#[derive(Debug)]
pub struct Codec {
    spec: &'static CodecSpec,
    /// Negotiated channel count; 0 until caps are set.
    channels: AtomicUsize,
    stats: StreamCounters<{ field::COUNT }>,
}

impl Codec {
    pub fn new(spec: &'static CodecSpec) -> Self {
        Codec {
            spec,
            channels: AtomicUsize::new(0),
            stats: StreamCounters::default(),
        }
    }

    pub fn stats(&self, filter: &AudioFilter) -> gst::Structure {
        stats_structure(
            self.spec.element,
            self.stats.audio(filter.qos_dropped()).fields(),
        )
    }

    pub fn reset(&self) {
        self.channels.store(0, Ordering::Relaxed);
        self.stats.clear();
    }

    pub fn set_caps(&self, incaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let (_, channels) = rate_channels(incaps)
            .ok_or_else(|| gst::loggable_error!(CAT, "caps without rate and channels: {incaps}"))?;
        self.channels.store(channels, Ordering::Relaxed);
        Ok(())
    }

    pub fn count(&self, field: usize, n: u64) {
        self.stats.add(field, n);
    }

    /// The element's whole work on one input: checks that it is a whole,
    /// non-empty number of frames, allocates the output at its exact size
    /// with the input's timestamps (one code per sample keeps the sample
    /// count, so they are right as they are), runs the kernel and counts.
    pub fn process<T: ElementImpl>(
        &self,
        imp: &T,
        filter: &AudioFilter,
        inbuf: &gst::BufferRef,
    ) -> Result<gst::Buffer, gst::FlowError> {
        self.stats.add(field::BUFFERS_IN, 1);
        let channels = self.channels.load(Ordering::Relaxed);
        if channels == 0 {
            // Upstream reports the not-negotiated flow as its error.
            self.stats.add(field::REJECTED_BUFFERS, 1);
            gst::warning!(CAT, imp = imp, "buffer before caps");
            return Err(gst::FlowError::NotNegotiated);
        }
        let coded = whole_frames(inbuf.size(), self.spec.in_bytes_per_sample * channels).and_then(
            |frames| {
                let mut out = filter
                    .output_buffer(inbuf, frames * channels * self.spec.out_bytes_per_sample)
                    .map_err(|_| "cannot allocate the output".to_string())?;
                let o = out
                    .get_mut()
                    .ok_or_else(|| "new output not writable".to_string())?;
                let done = with_readable(inbuf, |input| {
                    with_writable(o, |output| (self.spec.kernel)(input, output))
                })
                .flatten();
                match done {
                    Some(n) if n == frames * channels => Ok((out, frames as u64)),
                    Some(n) => Err(format!("coded {n} of {} samples", frames * channels)),
                    None => Err("cannot map buffers".to_string()),
                }
            },
        );
        match coded {
            Ok((out, frames)) => {
                self.stats.add(field::SAMPLES_IN, frames);
                self.stats.add(field::SAMPLES_OUT, frames);
                self.stats.add(field::BUFFERS_OUT, 1);
                Ok(out)
            }
            Err(why) => {
                self.stats.add(field::REJECTED_BUFFERS, 1);
                gst::element_imp_error!(imp, gst::StreamError::Format, ("{why}"));
                Err(gst::FlowError::Error)
            }
        }
    }
}

/// Defines the implementation struct `$name` of a G.711 codec element, with
/// GObject type name `$type_name`, from the [`CodecSpec`] `$spec`: a plain
/// element whose pads are an [`AudioFilter`]'s and whose work is
/// [`Codec`]'s and `$spec`'s. The element's `mod.rs` wraps and registers it.
macro_rules! codec_element {
    ($name:ident, $type_name:literal, $spec:path) => {
        use gst::glib;
        use gst::prelude::*;
        use gst::subclass::prelude::*;

        use $crate::audiofilter::{AudioFilter, AudioTransform};

        static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
            gst::DebugCategory::new(
                $spec.element,
                gst::DebugColorFlags::empty(),
                Some($spec.debug_description),
            )
        });

        pub struct $name {
            filter: AudioFilter,
            codec: $crate::audiocaps::Codec,
        }

        #[glib::object_subclass]
        impl ObjectSubclass for $name {
            const NAME: &'static str = $type_name;
            type Type = super::$name;
            type ParentType = gst::Element;

            fn with_class(klass: &Self::Class) -> Self {
                $name {
                    filter: AudioFilter::new::<Self>(klass),
                    codec: $crate::audiocaps::Codec::new(&$spec),
                }
            }
        }

        impl ObjectImpl for $name {
            fn properties() -> &'static [glib::ParamSpec] {
                static PROPS: std::sync::LazyLock<Vec<glib::ParamSpec>> =
                    std::sync::LazyLock::new(|| {
                        vec![
                            $crate::audiocaps::qos_pspec(),
                            $crate::audiocaps::stats_pspec(
                                $spec.element,
                                $crate::audiocaps::STATS_FIELDS_DOC,
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
                    other => unreachable!("{} has no writable property {other}", $spec.element),
                }
            }

            fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
                match pspec.name() {
                    "qos" => self.filter.qos_enabled().to_value(),
                    "stats" => self.codec.stats(&self.filter).to_value(),
                    other => unreachable!("{} has no property {other}", $spec.element),
                }
            }

            fn constructed(&self) {
                self.parent_constructed();
                self.filter.add_pads(&*self.obj());
            }
        }

        impl GstObjectImpl for $name {}

        impl ElementImpl for $name {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static META: std::sync::LazyLock<gst::subclass::ElementMetadata> =
                    std::sync::LazyLock::new(|| {
                        gst::subclass::ElementMetadata::new(
                            $spec.long_name,
                            $spec.classification,
                            $spec.description,
                            "gst-rtpsynth developers",
                        )
                    });
                Some(&*META)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static TEMPLATES: std::sync::LazyLock<Vec<gst::PadTemplate>> =
                    std::sync::LazyLock::new(|| $spec.pad_templates());
                TEMPLATES.as_ref()
            }

            fn change_state(
                &self,
                transition: gst::StateChange,
            ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
                AudioFilter::change_state(self, transition)
            }
        }

        impl AudioTransform for $name {
            fn filter(&self) -> &AudioFilter {
                &self.filter
            }

            fn transform_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> gst::Caps {
                let out = $spec.transform_caps(direction, caps, None);
                gst::debug!(CAT, imp = self, "{direction:?} {caps} -> {out}");
                out
            }

            fn set_caps(
                &self,
                incaps: &gst::Caps,
                _outcaps: &gst::Caps,
            ) -> Result<(), gst::LoggableError> {
                self.codec.set_caps(incaps)
            }

            fn process(&self, inbuf: gst::Buffer) -> Result<Option<gst::Buffer>, gst::FlowError> {
                self.codec.process(self, &self.filter, &inbuf).map(Some)
            }

            fn reset(&self) {
                self.codec.reset();
            }

            fn count(&self, field: usize, n: u64) {
                self.codec.count(field, n);
            }
        }
    };
}
pub(crate) use codec_element;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_indices_follow_the_stats_names() {
        let c = StreamCounters::<{ field::COUNT }>::default();
        for (i, name) in AudioStats::NAMES[..field::COUNT].iter().enumerate() {
            c.add(i, 10 + i as u64);
            let got: Vec<_> = c.audio(99).fields().collect();
            assert_eq!(got[i], (*name, 10 + i as u64));
        }
        // The last, qos-dropped, is the filter's.
        assert_eq!(AudioStats::NAMES.len(), field::COUNT + 1);
        assert_eq!(c.audio(99).qos_dropped, 99);
        c.clear();
        assert_eq!(c.values(), [0; field::COUNT]);
    }
}
