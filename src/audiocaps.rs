//! Glue shared by the audio elements (`ulawenc`, `ulawdec`,
//! `linearresample`): their caps, their stats counters, the checks that turn
//! a malformed buffer into a clear stream error, and [`codec_element!`], the
//! one implementation behind both G.711 elements.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::chainbypass::ChainBypass;

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

    /// The [`AudioStats`] part.
    pub fn audio(&self) -> AudioStats {
        let v = self.values();
        AudioStats {
            buffers_in: v[field::BUFFERS_IN],
            buffers_out: v[field::BUFFERS_OUT],
            samples_in: v[field::SAMPLES_IN],
            samples_out: v[field::SAMPLES_OUT],
            gap_events: v[field::GAP_EVENTS],
            rejected_buffers: v[field::REJECTED_BUFFERS],
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
    (samples per channel), gap-events (GAP events forwarded) and rejected-buffers (buffers refused \
    with an error: before caps, empty, or not a whole number of frames)";

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
    gst::Caps::builder("audio/x-mulaw")
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

/// Whether `BaseTransform`, with the allocation query as its (default)
/// `decide_allocation` left it, will allocate each output as plain system
/// memory (no buffer pool, default allocator and parameters), i.e. exactly
/// what [`output_buffer`] makes. Read from the query because BaseTransform
/// stores its decision only after `decide_allocation` returns.
pub fn plain_allocation(query: &gst::query::Allocation) -> bool {
    if query
        .allocation_pools()
        .next()
        .is_some_and(|(pool, ..)| pool.is_some())
    {
        return false;
    }
    let Some((allocator, params)) = query.allocation_params().next() else {
        return true;
    };
    let default_allocator = allocator.is_none_or(|a| gst::Allocator::find(None) == Some(a));
    default_allocator
        && params.align() == 0
        && params.prefix() == 0
        && params.padding() == 0
        && params.flags().is_empty()
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

/// A new output buffer of `size` bytes carrying `inbuf`'s metadata, the way
/// `BaseTransform`'s default `prepare_output_buffer` and `copy_metadata`
/// make it without a pool, minus their per-buffer vfunc round trips and
/// caps look-ups: flags and timestamps copied (GAP cleared: the elements are
/// not gap-aware), metas through the parent's `copy_metadata` when there are
/// any. The buffer is a recycled spare when this thread has one of that
/// size ([`crate::spare`]); the copy overwrites everything it kept.
pub fn output_buffer<T: BaseTransformImpl>(
    imp: &T,
    inbuf: &gst::BufferRef,
    size: usize,
) -> Result<gst::Buffer, gst::FlowError> {
    let mut out = crate::spare::buffer(size)?;
    let o = out.get_mut().ok_or(gst::FlowError::Error)?;
    if inbuf.iter_meta::<gst::Meta>().next().is_some() {
        imp.parent_copy_metadata(inbuf, o)
            .map_err(|_| gst::FlowError::Error)?;
    } else {
        // What `gst_buffer_copy_into` does with FLAGS | TIMESTAMPS for a
        // whole buffer (the destination keeps only its own TAG_MEMORY), as
        // plain field writes: the call costs about 110 instructions more
        // per buffer.
        let tag_memory = o.flags() & gst::BufferFlags::TAG_MEMORY;
        o.unset_flags(gst::BufferFlags::all());
        o.set_flags(
            (inbuf.flags() - gst::BufferFlags::TAG_MEMORY - gst::BufferFlags::GAP) | tag_memory,
        );
        o.set_pts(inbuf.pts());
        o.set_dts(inbuf.dts());
        o.set_duration(inbuf.duration());
        o.set_offset(inbuf.offset());
        o.set_offset_end(inbuf.offset_end());
    }
    Ok(out)
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

    /// The element's `transform_size`: `size` bytes on the `direction` pad
    /// as bytes on the other pad, one code per sample.
    pub fn transform_size(&self, direction: gst::PadDirection, size: usize) -> Option<usize> {
        let (from, to) = match direction {
            gst::PadDirection::Sink => (self.in_bytes_per_sample, self.out_bytes_per_sample),
            _ => (self.out_bytes_per_sample, self.in_bytes_per_sample),
        };
        (size / from).checked_mul(to)
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
    bypass: ChainBypass,
    stats: StreamCounters<{ field::COUNT }>,
}

impl Codec {
    pub fn new(spec: &'static CodecSpec) -> Self {
        Codec {
            spec,
            channels: AtomicUsize::new(0),
            bypass: ChainBypass::default(),
            stats: StreamCounters::default(),
        }
    }

    pub fn stats(&self) -> gst::Structure {
        stats_structure(self.spec.element, self.stats.audio().fields())
    }

    pub fn reset(&self) {
        self.channels.store(0, Ordering::Relaxed);
        self.bypass.start();
        self.stats.clear();
    }

    pub fn set_caps(&self, incaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let (_, channels) = rate_channels(incaps)
            .ok_or_else(|| gst::loggable_error!(CAT, "caps without rate and channels: {incaps}"))?;
        self.bypass.clear();
        self.channels.store(channels, Ordering::Relaxed);
        Ok(())
    }

    pub fn bypass(&self) -> &ChainBypass {
        &self.bypass
    }

    /// The element's [`DirectTransform::direct_output`]: the output
    /// allocated at exactly the right size and run through
    /// [`transform`](Self::transform), the same result as BaseTransform's
    /// path without its four vfunc round trips, two caps look-ups and
    /// `transform_size` per buffer.
    ///
    /// [`DirectTransform::direct_output`]: crate::chainbypass::DirectTransform::direct_output
    pub fn direct_output<T: BaseTransformImpl>(
        &self,
        imp: &T,
        inbuf: &gst::BufferRef,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let size = inbuf.size() / self.spec.in_bytes_per_sample * self.spec.out_bytes_per_sample;
        let mut out = output_buffer(imp, inbuf, size)?;
        let o = out.get_mut().ok_or(gst::FlowError::Error)?;
        self.transform(imp, inbuf, o)?;
        Ok(Some(out))
    }

    /// Counts GAP events and lets the bypass see the event; the caller
    /// forwards every event in order.
    pub fn observe_event(&self, event: &gst::Event) {
        if let gst::EventView::Gap(_) = event.view() {
            self.stats.add(field::GAP_EVENTS, 1);
        }
        self.bypass.observe_sink_event(event);
    }

    /// The whole `transform`: checks that the input is a whole, non-empty
    /// number of frames, runs the kernel and counts. Timestamps, durations
    /// and offsets were already copied from the input by BaseTransform, and
    /// are right as they are: one code per sample keeps the sample count.
    pub fn transform<T: ElementImpl>(
        &self,
        imp: &T,
        inbuf: &gst::BufferRef,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let channels = self.channels.load(Ordering::Relaxed);
        if channels == 0 {
            // BaseTransform refuses buffers before caps; this is a second net.
            self.stats.add(field::BUFFERS_IN, 1);
            self.stats.add(field::REJECTED_BUFFERS, 1);
            gst::element_imp_error!(imp, gst::CoreError::Negotiation, ("buffer before caps"));
            return Err(gst::FlowError::NotNegotiated);
        }
        let done = whole_frames(inbuf.size(), self.spec.in_bytes_per_sample * channels).and_then(
            |frames| {
                let samples = frames * channels;
                let coded = with_readable(inbuf, |input| {
                    with_writable(outbuf, |output| {
                        ((self.spec.kernel)(input, output), output.len())
                    })
                })
                .flatten();
                match coded {
                    None => Err("cannot map buffers".to_string()),
                    Some((n, _)) if n == samples => Ok(frames as u64),
                    Some((_, len)) => Err(format!(
                        "output buffer of {len} bytes too small for {samples} samples"
                    )),
                }
            },
        );
        self.stats.add(field::BUFFERS_IN, 1);
        match done {
            Ok(frames) => {
                self.stats.add(field::SAMPLES_IN, frames);
                self.stats.add(field::SAMPLES_OUT, frames);
                self.stats.add(field::BUFFERS_OUT, 1);
            }
            Err(why) => {
                self.stats.add(field::REJECTED_BUFFERS, 1);
                gst::element_imp_error!(imp, gst::StreamError::Format, ("{why}"));
                return Err(gst::FlowError::Error);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// Defines the implementation struct `$name` of a G.711 codec element, with
/// GObject type name `$type_name`, from the [`CodecSpec`] `$spec`: a
/// never-in-place `BaseTransform` whose every virtual method is [`Codec`]'s
/// or `$spec`'s. The element's `mod.rs` wraps and registers it.
macro_rules! codec_element {
    ($name:ident, $type_name:literal, $spec:path) => {
        use gst::glib;
        use gst::prelude::*;
        use gst::subclass::prelude::*;
        use gst_base::subclass::prelude::*;

        static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
            gst::DebugCategory::new(
                $spec.element,
                gst::DebugColorFlags::empty(),
                Some($spec.debug_description),
            )
        });

        pub struct $name {
            codec: $crate::audiocaps::Codec,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    codec: $crate::audiocaps::Codec::new(&$spec),
                }
            }
        }

        #[glib::object_subclass]
        impl ObjectSubclass for $name {
            const NAME: &'static str = $type_name;
            type Type = super::$name;
            type ParentType = gst_base::BaseTransform;
        }

        impl ObjectImpl for $name {
            fn properties() -> &'static [glib::ParamSpec] {
                static PROPS: std::sync::LazyLock<Vec<glib::ParamSpec>> =
                    std::sync::LazyLock::new(|| {
                        vec![$crate::audiocaps::stats_pspec(
                            $spec.element,
                            $crate::audiocaps::STATS_FIELDS_DOC,
                        )]
                    });
                PROPS.as_ref()
            }

            fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
                match pspec.name() {
                    "stats" => self.codec.stats().to_value(),
                    other => unreachable!("{} has no property {other}", $spec.element),
                }
            }

            fn constructed(&self) {
                self.parent_constructed();
                self.codec.bypass().install(self);
            }
        }

        impl $crate::chainbypass::DirectTransform for $name {
            fn bypass(&self) -> &$crate::chainbypass::ChainBypass {
                self.codec.bypass()
            }

            fn direct_output(
                &self,
                inbuf: &gst::BufferRef,
            ) -> Result<Option<gst::Buffer>, gst::FlowError> {
                self.codec.direct_output(self, inbuf)
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
        }

        impl BaseTransformImpl for $name {
            const MODE: gst_base::subclass::BaseTransformMode =
                gst_base::subclass::BaseTransformMode::NeverInPlace;
            const PASSTHROUGH_ON_SAME_CAPS: bool = false;
            const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

            fn start(&self) -> Result<(), gst::ErrorMessage> {
                self.codec.reset();
                Ok(())
            }

            fn transform_caps(
                &self,
                direction: gst::PadDirection,
                caps: &gst::Caps,
                filter: Option<&gst::Caps>,
            ) -> Option<gst::Caps> {
                let out = $spec.transform_caps(direction, caps, filter);
                gst::debug!(CAT, imp = self, "{direction:?} {caps} -> {out}");
                Some(out)
            }

            fn transform_size(
                &self,
                direction: gst::PadDirection,
                _caps: &gst::Caps,
                size: usize,
                _othercaps: &gst::Caps,
            ) -> Option<usize> {
                $spec.transform_size(direction, size)
            }

            fn set_caps(
                &self,
                incaps: &gst::Caps,
                outcaps: &gst::Caps,
            ) -> Result<(), gst::LoggableError> {
                gst::debug!(CAT, imp = self, "{incaps} -> {outcaps}");
                self.codec.set_caps(incaps)
            }

            fn sink_event(&self, event: gst::Event) -> bool {
                self.codec.observe_event(&event);
                self.parent_sink_event(event)
            }

            fn src_event(&self, event: gst::Event) -> bool {
                self.codec.bypass().src_event(self, event)
            }

            fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
                match self.codec.bypass().query_position(direction, query) {
                    Some(answered) => answered,
                    None => BaseTransformImplExt::parent_query(self, direction, query),
                }
            }

            fn decide_allocation(
                &self,
                query: &mut gst::query::Allocation,
            ) -> Result<(), gst::LoggableError> {
                self.codec.bypass().decide_allocation(self, query)
            }

            fn generate_output(
                &self,
            ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError>
            {
                self.codec.bypass().generate_output(self)
            }

            fn transform(
                &self,
                inbuf: &gst::Buffer,
                outbuf: &mut gst::BufferRef,
            ) -> Result<gst::FlowSuccess, gst::FlowError> {
                self.codec.transform(self, inbuf, outbuf)
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
        for (i, name) in AudioStats::NAMES.iter().enumerate() {
            c.add(i, 10 + i as u64);
            let got: Vec<_> = c.audio().fields().collect();
            assert_eq!(got[i], (*name, 10 + i as u64));
        }
        assert_eq!(AudioStats::NAMES.len(), field::COUNT);
        c.clear();
        assert_eq!(c.values(), [0; field::COUNT]);
    }
}
