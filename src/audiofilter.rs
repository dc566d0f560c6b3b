//! The pads of the audio elements (`ulawenc`, `ulawdec`, `linearresample`):
//! each is a plain `gst::Element` with one always sink pad and one always
//! source pad whose chain, event and query functions live here, and an
//! [`AudioTransform`] that says what the element does to caps and buffers.
//!
//! # Why not `BaseTransform`
//!
//! For a 20 ms buffer, `BaseTransform`'s per-buffer path (four virtual
//! method round trips, two caps look-ups, `transform_size`, its allocation
//! path) cost about as much as the whole µ-law kernel, and the only way
//! around it was to replace its chain function and mirror its private state,
//! which ties correctness to one GStreamer version's internals. A plain
//! element with its own pad functions does only what these elements need,
//! through GStreamer's public API, and keeps what users see the same:
//!
//! - **Negotiation both ways**, as `BaseTransform` does it: a CAPS query on
//!   either pad asks the peer of the other pad and maps the answer through
//!   [`AudioTransform::transform_caps`]; a CAPS event is mapped the same
//!   way, intersected with what downstream accepts, fixated and sent on. A
//!   RECONFIGURE from downstream renegotiates before the next buffer.
//!   Equal caps on both sides make a pass-through (when the element allows
//!   it): the input buffers go out untouched.
//! - **Timestamps and metadata**: outputs carry their input's flags (GAP
//!   cleared: an output holds real samples), timestamps and offsets, and its
//!   metas except pooled ones and ones tagged with what they describe (a
//!   tagged meta, such as an audio meta, may be wrong for the output), as
//!   `BaseTransform`'s default `copy_metadata` and `transform_meta` do.
//! - **DISCONT**: an input marked DISCONT marks the next output, even when
//!   that input made none (refused, or too short to complete a frame).
//! - **QoS**: QOS events go upstream. With the `qos` property set, a buffer
//!   whose running time is at or before the last QOS event's timestamp plus
//!   jitter is dropped before processing, counted in `qos-dropped`, reported
//!   in a QOS message, and the next output is DISCONT, as `BaseTransform`
//!   does it.
//! - **Position**: in a TIME segment, a position query on the source pad is
//!   answered from the end of the last output, on the sink pad from the end
//!   of the last input, both in stream time; otherwise it goes to the peer.
//! - **Drain and flush**: EOS drains what the element holds before it is
//!   forwarded; FLUSH_STOP forgets it, with the segment and QoS state.
//! - **Allocation**: outputs are plain system memory, recycled through
//!   [`crate::spare`], unless downstream's allocation query asks for an
//!   allocator or parameters of its own (alignment, padding), which are then
//!   used. A pool downstream offers is not used: these buffers are small and
//!   short-lived, and the spares serve the same end. In pass-through the
//!   allocation query goes upstream, as the buffers do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::audiocaps::field;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtpsynth-audio",
        gst::DebugColorFlags::empty(),
        Some("rtpsynth audio element pads"),
    )
});

/// What one audio element does; [`AudioFilter`] does the rest.
pub trait AudioTransform: ElementImpl
where
    <Self as ObjectSubclass>::Type: IsA<gst::Element>,
{
    /// May equal caps on both sides make the element a pass-through?
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;

    fn filter(&self) -> &AudioFilter;

    /// The caps possible on the other pad for `caps` on a `direction` pad,
    /// in order of preference (not yet intersected with that pad's
    /// template).
    fn transform_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> gst::Caps;

    /// Fixed output caps for the fixed input caps `incaps`, out of
    /// `othercaps` (non-empty, what downstream accepts).
    fn fixate_caps(&self, _incaps: &gst::Caps, mut othercaps: gst::Caps) -> gst::Caps {
        othercaps.fixate();
        othercaps
    }

    /// Takes negotiated caps: the element's stream state follows them.
    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError>;

    /// The element's work on one input buffer, counted (in pass-through,
    /// `inbuf` itself goes out): its output, if it completes one, made with
    /// [`AudioFilter::output_buffer`]. An error is posted and counted by the
    /// element.
    fn process(&self, inbuf: gst::Buffer) -> Result<Option<gst::Buffer>, gst::FlowError>;

    /// At EOS: what the element still holds, as one output.
    fn drain(&self) -> Option<gst::Buffer> {
        None
    }

    /// At FLUSH_STOP: forget what the element holds.
    fn flush(&self) {}

    /// From READY to PAUSED: a new stream, counters from zero.
    fn reset(&self);

    /// Adds `n` to the element's counter `field` (an index from
    /// `audiocaps::field`): GAP events forwarded, buffers refused here.
    fn count(&self, field: usize, n: u64);

    /// Latency the element adds to what upstream reports (not called in
    /// pass-through).
    fn latency(&self) -> Option<gst::ClockTime> {
        None
    }
}

/// `u64::MAX` stands for no time, as `GST_CLOCK_TIME_NONE`.
const NONE: u64 = u64::MAX;
const R: Ordering = Ordering::Relaxed;

fn to_raw(t: Option<gst::ClockTime>) -> u64 {
    t.map_or(NONE, gst::ClockTime::nseconds)
}

fn from_raw(t: u64) -> Option<gst::ClockTime> {
    (t != NONE).then(|| gst::ClockTime::from_nseconds(t))
}

/// End of `buf`'s span: PTS plus duration, PTS alone without one.
fn end_position(buf: &gst::BufferRef) -> Option<gst::ClockTime> {
    let pts = buf.pts()?;
    Some(buf.duration().map_or(pts, |d| pts + d))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // What these mutexes hold stays consistent if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How outputs are allocated, decided after each negotiation.
#[derive(Debug, Default)]
enum Allocation {
    /// Plain system memory: recycled spares.
    #[default]
    Plain,
    /// Downstream's allocator and parameters.
    Downstream(Option<gst::Allocator>, gst::AllocationParams),
}

/// The pads and per-stream state of one audio element. Except for the
/// segment (behind a mutex, touched per SEGMENT event and query) and the
/// allocation decision (read per buffer only when downstream asked for
/// one), the per-buffer state is in relaxed atomics: it is written only by
/// whoever holds the sink pad's stream lock (the streaming thread,
/// serialized events) and read by queries from any thread.
#[derive(Debug)]
pub struct AudioFilter {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    /// The input caps of the last negotiation, for renegotiation.
    incaps: Mutex<Option<gst::Caps>>,
    passthrough: AtomicBool,
    plain: AtomicBool,
    allocation: Mutex<Allocation>,
    /// The next output is DISCONT.
    discont: AtomicBool,
    /// The segment is in TIME (the last SEGMENT event's format).
    time_segment: AtomicBool,
    segment: Mutex<gst::Segment>,
    /// End of the last input, and of the last output, in the segment.
    position_in: AtomicU64,
    position_out: AtomicU64,
    qos: AtomicBool,
    /// Running time up to which buffers are late, from the last QOS event.
    earliest: AtomicU64,
    qos_dropped: AtomicU64,
}

impl AudioFilter {
    /// The element's pads from its "sink" and "src" templates, their
    /// functions calling `T`. Called from `with_class`.
    pub fn new<T>(_klass: &T::Class) -> Self
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let template = |name: &str| {
            T::pad_templates()
                .iter()
                .find(|t| t.name_template() == name)
                .unwrap_or_else(|| panic!("the element has a {name} pad template"))
                .clone()
        };
        let sinkpad = Self::pad_builder::<T>(&template("sink"), Self::sink_event)
            .chain_function(|_, parent, buffer| {
                T::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.filter().chain(imp, buffer),
                )
            })
            .build();
        let srcpad = Self::pad_builder::<T>(&template("src"), Self::src_event).build();
        AudioFilter {
            sinkpad,
            srcpad,
            incaps: Mutex::new(None),
            passthrough: AtomicBool::new(false),
            plain: AtomicBool::new(true),
            allocation: Mutex::new(Allocation::Plain),
            discont: AtomicBool::new(false),
            time_segment: AtomicBool::new(false),
            segment: Mutex::new(gst::Segment::new()),
            position_in: AtomicU64::new(NONE),
            position_out: AtomicU64::new(NONE),
            qos: AtomicBool::new(false),
            earliest: AtomicU64::new(NONE),
            qos_dropped: AtomicU64::new(0),
        }
    }

    /// A pad from `template` whose events go to `event` and whose queries
    /// go to [`query`](Self::query), both on the element's filter.
    fn pad_builder<T>(
        template: &gst::PadTemplate,
        event: fn(&Self, &T, &gst::Pad, gst::Event) -> bool,
    ) -> gst::PadBuilder<gst::Pad>
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        gst::Pad::builder_from_template(template)
            .event_function(move |pad, parent, e| {
                T::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| event(imp.filter(), imp, pad, e),
                )
            })
            .query_function(|pad, parent, query| {
                T::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.filter().query(imp, pad, query),
                )
            })
    }

    /// The element's `change_state`: a new stream from READY to PAUSED.
    pub fn change_state<T>(
        imp: &T,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError>
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        if transition == gst::StateChange::ReadyToPaused {
            imp.filter().start();
            imp.reset();
        }
        imp.parent_change_state(transition)
    }

    /// Adds the pads to `element`. Called from `constructed`.
    pub fn add_pads(&self, element: &impl IsA<gst::Element>) {
        for pad in [&self.sinkpad, &self.srcpad] {
            element
                .add_pad(pad)
                .expect("a new element has no pad of that name");
        }
    }

    /// Whether pass-through is on: the element's outputs are its inputs.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough.load(R)
    }

    /// The `qos` property.
    pub fn qos_enabled(&self) -> bool {
        self.qos.load(R)
    }

    pub fn set_qos_enabled(&self, enabled: bool) {
        self.qos.store(enabled, R);
    }

    /// Buffers dropped as late (QoS) since the element last started.
    pub fn qos_dropped(&self) -> u64 {
        self.qos_dropped.load(R)
    }

    /// A new stream (READY to PAUSED): nothing negotiated, no position.
    fn start(&self) {
        *lock(&self.incaps) = None;
        self.passthrough.store(false, R);
        self.flush_stream();
        self.qos_dropped.store(0, R);
    }

    /// FLUSH_STOP: what `BaseTransform` forgets then.
    fn flush_stream(&self) {
        self.discont.store(false, R);
        self.time_segment.store(false, R);
        *lock(&self.segment) = gst::Segment::new();
        self.position_in.store(NONE, R);
        self.position_out.store(NONE, R);
        self.earliest.store(NONE, R);
    }

    /// A new output buffer of `size` bytes carrying `inbuf`'s metadata:
    /// flags (GAP cleared: the output holds real samples), timestamps,
    /// offsets, and the metas `BaseTransform`'s defaults would copy.
    /// Recycled from this thread's spares when outputs are plain memory;
    /// the copy overwrites everything a spare kept.
    pub fn output_buffer(
        &self,
        inbuf: &gst::BufferRef,
        size: usize,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let mut out = if self.plain.load(R) {
            crate::spare::buffer(size)?
        } else {
            let (allocator, params) = match &*lock(&self.allocation) {
                Allocation::Plain => (None, gst::AllocationParams::default()),
                Allocation::Downstream(a, p) => (a.clone(), *p),
            };
            let memory = match allocator {
                Some(a) => a.alloc(size, Some(&params)),
                None => gst::Allocator::find(None)
                    .ok_or_else(|| glib::bool_error!("no default allocator"))
                    .and_then(|a| a.alloc(size, Some(&params))),
            }
            .map_err(|_| gst::FlowError::Error)?;
            let mut b = gst::Buffer::new();
            let r = b.get_mut().ok_or(gst::FlowError::Error)?;
            r.append_memory(memory);
            // A new buffer's memory is not a change to it.
            r.unset_flags(gst::BufferFlags::TAG_MEMORY);
            b
        };
        let o = out.get_mut().ok_or(gst::FlowError::Error)?;
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
        for meta in inbuf.iter_meta::<gst::Meta>() {
            if meta.flags().contains(gst::MetaFlags::POOLED) || !meta.tags().is_empty() {
                continue;
            }
            if meta
                .transform(o, &gst::meta::MetaTransformCopy::new(..))
                .is_err()
            {
                gst::debug!(CAT, obj = self.srcpad, "meta {:?} not copied", meta.api());
            }
        }
        Ok(out)
    }

    /// The sink pad's chain function.
    fn chain<T>(&self, imp: &T, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError>
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        if self.srcpad.check_reconfigure() && !self.renegotiate(imp) {
            self.srcpad.mark_reconfigure();
            // Refused, as a buffer before caps is: counted, not lost.
            imp.count(field::BUFFERS_IN, 1);
            imp.count(field::REJECTED_BUFFERS, 1);
            return Err(
                if self.srcpad.pad_flags().contains(gst::PadFlags::FLUSHING) {
                    gst::FlowError::Flushing
                } else {
                    gst::FlowError::NotNegotiated
                },
            );
        }
        if buffer.flags().contains(gst::BufferFlags::DISCONT) {
            self.discont.store(true, R);
        }
        let time = self.time_segment.load(R);
        let position = end_position(&buffer);
        if time && position.is_some() {
            self.position_in.store(to_raw(position), R);
        }
        if self.qos.load(R) && self.late(imp, &buffer) {
            return Ok(gst::FlowSuccess::Ok);
        }
        let out = imp.process(buffer)?;
        match out {
            Some(out) => self.push(out, position),
            None => Ok(gst::FlowSuccess::Ok),
        }
    }

    /// Pushes an output, DISCONT if one is owed, noting its end (or, when
    /// it has no timestamp, its input's) as the source pad's position.
    pub fn push(
        &self,
        mut out: gst::Buffer,
        input_position: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.time_segment.load(R)
            && let Some(p) = end_position(&out).or(input_position)
        {
            self.position_out.store(p.nseconds(), R);
        }
        if self.discont.swap(false, R) && !out.flags().contains(gst::BufferFlags::DISCONT) {
            out.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
        self.srcpad.push(out)
    }

    /// With QoS on: whether `buffer` is late by the last QOS event, and if
    /// so drops it as `BaseTransform` does (counted, reported, the next
    /// output DISCONT).
    fn late<T>(&self, imp: &T, buffer: &gst::BufferRef) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let earliest = self.earliest.load(R);
        if earliest == NONE {
            return false;
        }
        let Some(pts) = buffer.pts() else {
            return false;
        };
        let (running_time, stream_time) = {
            let segment = lock(&self.segment);
            let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
                return false;
            };
            (segment.to_running_time(pts), segment.to_stream_time(pts))
        };
        let Some(running_time) = running_time else {
            return false;
        };
        if running_time.nseconds() > earliest {
            return false;
        }
        let dropped = self.qos_dropped.fetch_add(1, R) + 1;
        self.discont.store(true, R);
        gst::debug!(
            CAT,
            imp = imp,
            "dropping late buffer at {running_time} (earliest {earliest} ns)"
        );
        let msg = gst::message::Qos::builder(true)
            .running_time(running_time)
            .stream_time(stream_time)
            .timestamp(pts)
            .duration(buffer.duration())
            .stats(
                gst::GenericFormattedValue::Buffers(Some(gst::format::Buffers::from_u64(0))),
                gst::GenericFormattedValue::Buffers(Some(gst::format::Buffers::from_u64(dropped))),
            )
            .src(&*imp.obj())
            .build();
        let _ = imp.obj().post_message(msg);
        true
    }

    /// Negotiates the output for `incaps` and sends it downstream; false
    /// when downstream accepts nothing the element can make of them.
    fn negotiate<T>(&self, imp: &T, incaps: &gst::Caps) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let src_template = self.srcpad.pad_template_caps();
        let othercaps = imp
            .transform_caps(gst::PadDirection::Sink, incaps)
            .intersect_with_mode(&src_template, gst::CapsIntersectMode::First);
        let peer = self.srcpad.peer_query_caps(Some(&othercaps));
        if peer.is_empty() {
            gst::warning!(CAT, imp = imp, "downstream accepts nothing for {incaps}");
            return false;
        }
        let outcaps = imp.fixate_caps(incaps, peer);
        if !outcaps.is_fixed() || outcaps.is_empty() {
            gst::warning!(CAT, imp = imp, "cannot fixate {outcaps} for {incaps}");
            return false;
        }
        gst::debug!(CAT, imp = imp, "{incaps} -> {outcaps}");
        if let Err(e) = imp.set_caps(incaps, &outcaps) {
            e.log_with_imp(imp);
            return false;
        }
        let passthrough = T::PASSTHROUGH_ON_SAME_CAPS && incaps.is_strictly_equal(&outcaps);
        self.passthrough.store(passthrough, R);
        *lock(&self.incaps) = Some(incaps.clone());
        if !self.srcpad.push_event(gst::event::Caps::new(&outcaps)) {
            gst::debug!(CAT, imp = imp, "downstream refused {outcaps}");
            return false;
        }
        if !passthrough {
            self.decide_allocation(&outcaps);
        }
        true
    }

    /// Negotiates again with the last input caps (RECONFIGURE).
    fn renegotiate<T>(&self, imp: &T) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let incaps = lock(&self.incaps).clone();
        match incaps {
            Some(caps) => self.negotiate(imp, &caps),
            // Not negotiated yet: the buffer is refused below.
            None => true,
        }
    }

    /// Asks downstream how outputs for `outcaps` should be allocated.
    fn decide_allocation(&self, outcaps: &gst::Caps) {
        let mut query = gst::query::Allocation::new(Some(outcaps), false);
        let answered = self.srcpad.peer_query(&mut query);
        let decision = match query.allocation_params().next() {
            Some((allocator, params)) if answered => {
                let default_allocator = allocator
                    .as_ref()
                    .is_none_or(|a| gst::Allocator::find(None).as_ref() == Some(a));
                if default_allocator
                    && params.align() == 0
                    && params.prefix() == 0
                    && params.padding() == 0
                    && params.flags().is_empty()
                {
                    Allocation::Plain
                } else {
                    Allocation::Downstream(allocator, params)
                }
            }
            _ => Allocation::Plain,
        };
        self.plain.store(matches!(decision, Allocation::Plain), R);
        *lock(&self.allocation) = decision;
    }

    fn sink_event<T>(&self, imp: &T, pad: &gst::Pad, event: gst::Event) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        match event.view() {
            gst::EventView::Caps(c) => {
                return self.negotiate(imp, &c.caps_owned());
            }
            gst::EventView::Segment(s) => {
                let segment = s.segment().clone();
                self.time_segment
                    .store(segment.format() == gst::Format::Time, R);
                *lock(&self.segment) = segment;
            }
            gst::EventView::Gap(_) => imp.count(field::GAP_EVENTS, 1),
            gst::EventView::Eos(_) => {
                if let Some(out) = imp.drain()
                    && let Err(e) = self.push(out, None)
                {
                    gst::debug!(CAT, imp = imp, "drain push: {e:?}");
                }
            }
            gst::EventView::FlushStop(_) => {
                imp.flush();
                self.flush_stream();
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*imp.obj()), event)
    }

    fn src_event<T>(&self, imp: &T, pad: &gst::Pad, event: gst::Event) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        if let gst::EventView::Qos(q) = event.view() {
            let (_, _, diff, timestamp) = q.get();
            // As BaseTransform: late up to the event's running time plus
            // how late it was.
            let earliest = timestamp.map_or(NONE, |t| t.nseconds().saturating_add_signed(diff));
            self.earliest.store(earliest, R);
        }
        gst::Pad::event_default(pad, Some(&*imp.obj()), event)
    }

    fn query<T>(&self, imp: &T, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let direction = pad.direction();
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let caps = self.query_caps(imp, direction, q.filter());
                q.set_result(&caps);
                return true;
            }
            gst::QueryViewMut::Allocation(_) => {
                // Only a pass-through hands upstream's buffers on.
                return self.is_passthrough() && self.srcpad.peer_query(query);
            }
            gst::QueryViewMut::Position(q) if q.format() == gst::Format::Time => {
                let segment = lock(&self.segment);
                if let Some(segment) = segment.downcast_ref::<gst::ClockTime>() {
                    let own = match direction {
                        gst::PadDirection::Src => self.position_out.load(R),
                        _ => NONE,
                    };
                    let position = from_raw(own)
                        .or(from_raw(self.position_in.load(R)))
                        .or(segment.position());
                    q.set(position.and_then(|p| segment.to_stream_time(p)));
                    return true;
                }
            }
            gst::QueryViewMut::Latency(_) if direction == gst::PadDirection::Src => {
                if !self.sinkpad.peer_query(query) {
                    return false;
                }
                if !self.is_passthrough()
                    && let Some(own) = imp.latency()
                    && let gst::QueryViewMut::Latency(q) = query.view_mut()
                {
                    let (live, min, max) = q.result();
                    q.set(live, min + own, max.map(|m| m + own));
                }
                return true;
            }
            _ => {}
        }
        gst::Pad::query_default(pad, Some(&*imp.obj()), query)
    }

    /// What the `direction` pad can take, given what the peer of the other
    /// pad takes, in its order of preference.
    fn query_caps<T>(
        &self,
        imp: &T,
        direction: gst::PadDirection,
        filter: Option<&gst::CapsRef>,
    ) -> gst::Caps
    where
        T: AudioTransform,
        T::Type: IsA<gst::Element>,
    {
        let (pad, other) = match direction {
            gst::PadDirection::Src => (&self.srcpad, &self.sinkpad),
            _ => (&self.sinkpad, &self.srcpad),
        };
        let template = pad.pad_template_caps();
        let other_template = other.pad_template_caps();
        let peer_filter = filter.map(|f| {
            let f = f.to_owned().intersect(&template);
            imp.transform_caps(direction, &f)
                .intersect_with_mode(&other_template, gst::CapsIntersectMode::First)
        });
        let peer = other
            .peer_query_caps(peer_filter.as_ref())
            .intersect_with_mode(&other_template, gst::CapsIntersectMode::First);
        let caps = imp
            .transform_caps(other.direction(), &peer)
            .intersect_with_mode(&template, gst::CapsIntersectMode::First);
        match filter {
            Some(f) => f
                .to_owned()
                .intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        }
    }
}
