//! A cheaper per-buffer path for the audio `BaseTransform` elements
//! (`ulawenc`, `ulawdec`, `linearresample`): in the steady state their sink
//! pad's chain function transforms and pushes each buffer itself, and hands
//! every other buffer to `BaseTransform`'s own chain function.
//!
//! # Why the bypass behaves as `BaseTransform` does
//!
//! Per buffer, `gst_base_transform_chain` (GStreamer 1.22) does: note the
//! input's end position; call `before_transform` (a no-op for these elements);
//! remember a DISCONT input; `submit_input_buffer` (renegotiate if the source
//! pad is marked for reconfiguration, refuse the buffer if not negotiated,
//! drop it if QoS says it is late, else queue it); then `generate_output`;
//! for an output: set `segment.position` and its private `position_out`, mark
//! the output DISCONT if one is pending, count it as processed (a number only
//! QoS messages report) and push it on the source pad.
//!
//! The bypass runs only when none of those steps can do anything but queue
//! and hand over: the element has produced a direct output (see
//! [`DirectTransform`]) through `BaseTransform` since its caps last changed,
//! so it is negotiated and not in passthrough; no reconfiguration is pending
//! (peeked, not cleared); no DISCONT is pending inside `BaseTransform`; and
//! QoS cannot drop (no QOS event since the last flush, or QoS disabled). It
//! then makes the same output with the same function `generate_output` uses,
//! sets `segment.position`, mirrors `position_out` (answering position
//! queries on the source pad from it), carries DISCONT over as
//! `BaseTransform` would, and pushes. Every other buffer takes
//! `BaseTransform`'s chain, and the bypass keeps mirrors of the private state
//! it cannot reach (pending DISCONT, `position_out`) exact across both paths.
//!
//! Two differences remain, both invisible unless QoS is enabled and an
//! application calls `gst_base_transform_update_qos` itself: bypassed buffers
//! are not in the processed count of QoS messages, and a QoS deadline set
//! without a QOS event is not applied to them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use glib::translate::*;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;

/// An element whose outputs the bypass can make.
pub trait DirectTransform: BaseTransformImpl
where
    <Self as ObjectSubclass>::Type: IsA<gst_base::BaseTransform>,
{
    fn bypass(&self) -> &ChainBypass;

    /// The element's whole work on one input buffer when outputs are plain
    /// system memory: the output of exactly the right size with
    /// `BaseTransform`'s metadata (see `audiocaps::output_buffer`), counted,
    /// errors posted. `None`: this input completes no output.
    fn direct_output(&self, inbuf: &gst::BufferRef) -> Result<Option<gst::Buffer>, gst::FlowError>;

    /// `generate_output` when outputs cannot be allocated directly.
    fn generate_output_by_parent(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        self.parent_generate_output()
    }
}

type ChainFunction = unsafe extern "C" fn(
    *mut gst::ffi::GstPad,
    *mut gst::ffi::GstObject,
    *mut gst::ffi::GstBuffer,
) -> gst::ffi::GstFlowReturn;

/// `position_out` and input positions: `u64::MAX` is none, as
/// `GST_CLOCK_TIME_NONE`.
const NONE: u64 = u64::MAX;

fn to_raw(t: Option<gst::ClockTime>) -> u64 {
    t.map_or(NONE, gst::ClockTime::nseconds)
}

fn from_raw(t: u64) -> Option<gst::ClockTime> {
    (t != NONE).then(|| gst::ClockTime::from_nseconds(t))
}

/// End of `buf`'s span the way `BaseTransform`'s chain computes it: PTS plus
/// duration, PTS alone without one.
fn end_position(buf: &gst::BufferRef) -> Option<gst::ClockTime> {
    let pts = buf.pts()?;
    Some(buf.duration().map_or(pts, |d| pts + d))
}

/// The bypass state of one element. Except `qos_seen` and the position
/// query's reads, everything is read and written only by whoever holds the
/// sink pad's stream lock (the streaming thread, serialized events) or while
/// the element is stopped: relaxed atomics suffice.
#[derive(Debug)]
pub struct ChainBypass {
    /// `BaseTransform`'s chain function, saved from the sink pad.
    base_chain: OnceLock<ChainFunction>,
    /// Outputs can be allocated as plain system memory ([`plain_allocation`]
    /// after the last allocation decision).
    ///
    /// [`plain_allocation`]: crate::audiocaps::plain_allocation
    direct: AtomicBool,
    /// `BaseTransform` has called the direct path since the caps last
    /// changed: it is negotiated, not in passthrough.
    armed: AtomicBool,
    /// Mirror of `BaseTransform`'s private pending DISCONT.
    base_discont: AtomicBool,
    /// A DISCONT the bypass owes the next output (its input made none).
    own_discont: AtomicBool,
    /// `BaseTransform`'s chain is running for the fallback path.
    in_base_chain: AtomicBool,
    /// `generate_output` was called during that chain.
    generated: AtomicBool,
    /// End position of the input that chain is handling.
    input_position: AtomicU64,
    /// Mirror of `BaseTransform`'s private `position_out`.
    position_out: AtomicU64,
    /// The segment is in TIME (the last SEGMENT event's format).
    time_segment: AtomicBool,
    /// The last SEGMENT event's segment (undefined after a flush), for
    /// position queries.
    segment: Mutex<gst::Segment>,
    /// A QOS event came since the last flush: `BaseTransform` may drop late
    /// buffers if QoS is enabled.
    qos_seen: AtomicBool,
    /// Buffers that took the bypass, for the tests.
    #[cfg(test)]
    pub bypassed: AtomicU64,
}

impl Default for ChainBypass {
    fn default() -> Self {
        ChainBypass {
            base_chain: OnceLock::new(),
            direct: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            base_discont: AtomicBool::new(false),
            own_discont: AtomicBool::new(false),
            in_base_chain: AtomicBool::new(false),
            generated: AtomicBool::new(false),
            input_position: AtomicU64::new(NONE),
            position_out: AtomicU64::new(NONE),
            time_segment: AtomicBool::new(false),
            segment: Mutex::new(gst::Segment::new()),
            qos_seen: AtomicBool::new(false),
            #[cfg(test)]
            bypassed: AtomicU64::new(0),
        }
    }
}

const R: Ordering = Ordering::Relaxed;

impl ChainBypass {
    /// Puts the bypass in front of `BaseTransform`'s chain function on
    /// `imp`'s sink pad. Called once, from `constructed`.
    pub fn install<T>(&self, imp: &T)
    where
        T: DirectTransform,
        T::Type: IsA<gst_base::BaseTransform>,
    {
        let obj = imp.obj();
        let pad = obj.upcast_ref::<gst_base::BaseTransform>().sink_pad();
        // SAFETY: reads the function GstBaseTransform installed on its own
        // sink pad during instance init; nothing else runs on the pad yet.
        let Some(base) = (unsafe { (*pad.as_ptr()).chainfunc }) else {
            return;
        };
        if self.base_chain.set(base).is_err() {
            return;
        }
        // SAFETY: the pad is this element's own; the new function keeps
        // calling BaseTransform's whenever the bypass does not apply, and
        // only reaches the element through the parent GstPad passes it.
        unsafe {
            pad.set_chain_function(|pad, parent, buffer| {
                let Some(imp) = parent
                    .and_then(|p| p.downcast_ref::<T::Type>())
                    .map(|e| e.imp())
                else {
                    return Err(gst::FlowError::Error);
                };
                gst::panic_to_error!(imp, Err(gst::FlowError::Error), {
                    imp.bypass().chain(imp, pad, parent, buffer)
                })
            });
        }
    }

    /// Whether outputs can be allocated directly.
    pub fn direct(&self) -> bool {
        self.direct.load(R)
    }

    /// New caps or a restart: no direct allocation until the next decision,
    /// no bypass until `BaseTransform` has made a direct output again.
    pub fn clear(&self) {
        self.direct.store(false, R);
        self.armed.store(false, R);
    }

    /// The element's `start`: as `BaseTransform` resets its own stream state
    /// on activation.
    pub fn start(&self) {
        self.clear();
        self.reset_stream();
    }

    fn reset_stream(&self) {
        self.base_discont.store(false, R);
        self.own_discont.store(false, R);
        self.position_out.store(NONE, R);
        self.time_segment.store(false, R);
        *self.segment.lock().unwrap_or_else(|e| e.into_inner()) = gst::Segment::new();
        self.qos_seen.store(false, R);
    }

    /// The element's `decide_allocation`: `BaseTransform`'s, then whether
    /// outputs can skip its per-buffer allocation path.
    pub fn decide_allocation<T: BaseTransformImpl>(
        &self,
        imp: &T,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        imp.parent_decide_allocation(query)?;
        self.direct
            .store(crate::audiocaps::plain_allocation(query), R);
        Ok(())
    }

    /// Sees each sink event before `BaseTransform` handles it.
    pub fn observe_sink_event(&self, event: &gst::Event) {
        match event.view() {
            gst::EventView::Caps(_) => self.armed.store(false, R),
            gst::EventView::Segment(s) => {
                let segment = s.segment().clone();
                self.time_segment
                    .store(segment.format() == gst::Format::Time, R);
                *self.segment.lock().unwrap_or_else(|e| e.into_inner()) = segment;
            }
            gst::EventView::FlushStop(_) => self.reset_stream(),
            _ => {}
        }
    }

    /// The element's `src_event`. A QOS event may give `BaseTransform` a
    /// deadline to drop late buffers by; noted before (for the buffers that
    /// race it) and after (so a concurrent flush cannot erase it).
    pub fn src_event<T: BaseTransformImpl>(&self, imp: &T, event: gst::Event) -> bool {
        let qos = matches!(event.view(), gst::EventView::Qos(_));
        if qos {
            self.qos_seen.store(true, R);
        }
        let handled = imp.parent_src_event(event);
        if qos {
            self.qos_seen.store(true, R);
        }
        handled
    }

    /// Answers a position query on the source pad as `BaseTransform` would
    /// from its `position_out`, which the bypass does not update; `None`:
    /// leave the query to `BaseTransform`.
    pub fn query_position(
        &self,
        direction: gst::PadDirection,
        query: &mut gst::QueryRef,
    ) -> Option<bool> {
        if direction != gst::PadDirection::Src {
            return None;
        }
        let gst::QueryViewMut::Position(q) = query.view_mut() else {
            return None;
        };
        if q.format() != gst::Format::Time {
            return None;
        }
        let segment = self.segment.lock().unwrap_or_else(|e| e.into_inner());
        let segment = segment.downcast_ref::<gst::ClockTime>()?;
        let position = from_raw(self.position_out.load(R)).or(segment.position());
        q.set(position.and_then(|p| segment.to_stream_time(p)));
        Some(true)
    }

    /// The element's `generate_output`, called by `BaseTransform`: the
    /// direct path when allocation allows, else `by_parent`.
    pub fn generate_output<T>(&self, imp: &T) -> Result<GenerateOutputSuccess, gst::FlowError>
    where
        T: DirectTransform,
        T::Type: IsA<gst_base::BaseTransform>,
        T::ParentType: IsA<gst_base::BaseTransform>,
    {
        self.generated.store(true, R);
        let mut out = if self.direct() {
            match imp.take_queued_buffer() {
                None => Ok(GenerateOutputSuccess::NoOutput),
                Some(inbuf) => {
                    self.armed.store(true, R);
                    imp.direct_output(&inbuf).map(|o| {
                        o.map_or(
                            GenerateOutputSuccess::NoOutput,
                            GenerateOutputSuccess::Buffer,
                        )
                    })
                }
            }
        } else {
            imp.generate_output_by_parent()
        };
        if self.in_base_chain.load(R)
            && let Ok(GenerateOutputSuccess::Buffer(buf)) = &mut out
        {
            // BaseTransform's chain pushes this output: it clears its
            // pending DISCONT and sets position_out, as mirrored here.
            self.note_output(buf, from_raw(self.input_position.load(R)));
            self.base_discont.store(false, R);
        }
        out
    }

    /// Mirrors `position_out` for `out` (made from an input ending at
    /// `position`) and gives it a DISCONT the bypass owes.
    fn note_output(&self, out: &mut gst::Buffer, position: Option<gst::ClockTime>) {
        if self.time_segment.load(R) {
            let position_out = match out.pts() {
                Some(pts) => Some(out.duration().map_or(pts, |d| pts + d)),
                None => position,
            };
            if position_out.is_some() {
                self.position_out.store(to_raw(position_out), R);
            }
        }
        if self.own_discont.swap(false, R) && !out.flags().contains(gst::BufferFlags::DISCONT) {
            out.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
    }

    /// Whether `BaseTransform`'s chain would do no more than hand this
    /// buffer to `generate_output` and push the output (panics are checked
    /// by the caller).
    fn can_bypass(&self, trans: &gst_base::BaseTransform) -> bool {
        self.armed.load(R)
            && self.direct()
            && !self.base_discont.load(R)
            && !trans.src_pad().needs_reconfigure()
            && (!self.qos_seen.load(R)
                // SAFETY: a valid BaseTransform; the call takes its object lock.
                || unsafe {
                    gst_base::ffi::gst_base_transform_is_qos_enabled(trans.to_glib_none().0)
                } == glib::ffi::GFALSE)
    }

    /// The sink pad's chain function.
    fn chain<T>(
        &self,
        imp: &T,
        pad: &gst::Pad,
        parent: Option<&gst::Object>,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError>
    where
        T: DirectTransform,
        T::Type: IsA<gst_base::BaseTransform>,
    {
        let obj = imp.obj();
        let trans = obj.upcast_ref::<gst_base::BaseTransform>();
        if self.can_bypass(trans) {
            self.transform_and_push(imp, trans, buffer)
        } else {
            self.base_chain(pad, parent, buffer)
        }
    }

    /// `BaseTransform`'s chain, its private DISCONT state mirrored.
    fn base_chain(
        &self,
        pad: &gst::Pad,
        parent: Option<&gst::Object>,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(base) = self.base_chain.get() else {
            return Err(gst::FlowError::NotSupported);
        };
        if buffer.flags().contains(gst::BufferFlags::DISCONT) {
            self.base_discont.store(true, R);
        }
        self.input_position.store(to_raw(end_position(&buffer)), R);
        self.generated.store(false, R);
        self.in_base_chain.store(true, R);
        // SAFETY: BaseTransform's own chain function, saved from this pad,
        // called as GstPad calls it: this pad, its parent, and a buffer
        // reference it takes over.
        let ret: gst::FlowReturn = unsafe {
            from_glib(base(
                pad.as_ptr(),
                parent.map_or(std::ptr::null_mut(), |p| p.as_ptr()),
                buffer.into_glib_ptr(),
            ))
        };
        self.in_base_chain.store(false, R);
        let ret = ret.into_result();
        if ret.is_ok() && !self.generated.load(R) {
            // submit_input_buffer dropped the input (QoS): BaseTransform
            // marks the next output DISCONT.
            self.base_discont.store(true, R);
        }
        ret
    }

    /// The steady-state path: one direct output, pushed.
    fn transform_and_push<T>(
        &self,
        imp: &T,
        trans: &gst_base::BaseTransform,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError>
    where
        T: DirectTransform,
        T::Type: IsA<gst_base::BaseTransform>,
    {
        #[cfg(test)]
        self.bypassed.fetch_add(1, R);
        if buffer.flags().contains(gst::BufferFlags::DISCONT) {
            self.own_discont.store(true, R);
        }
        let position = end_position(&buffer);
        let out = imp.direct_output(&buffer);
        drop(buffer);
        // No output (or an error): the DISCONT waits for the next output,
        // as BaseTransform's does.
        let mut out = match out? {
            Some(out) => out,
            None => return Ok(gst::FlowSuccess::Ok),
        };
        if let Some(position) = position
            && self.time_segment.load(R)
        {
            // SAFETY: the chain function runs with the sink pad's stream
            // lock held, the lock under which BaseTransform itself writes
            // its segment (chain, SEGMENT and FLUSH_STOP events).
            unsafe {
                let t: *mut gst_base::ffi::GstBaseTransform = trans.to_glib_none().0;
                (*t).segment.position = position.nseconds();
            }
        }
        self.note_output(&mut out, position);
        trans.src_pad().push(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers that took the bypass in `element`, one of the audio elements.
    fn bypassed(element: &gst::Element) -> u64 {
        fn count<T: DirectTransform>(imp: &T) -> u64
        where
            T::Type: IsA<gst_base::BaseTransform>,
        {
            imp.bypass().bypassed.load(R)
        }
        if let Some(e) = element.downcast_ref::<crate::ulawenc::UlawEnc>() {
            count(e.imp())
        } else if let Some(e) = element.downcast_ref::<crate::ulawdec::UlawDec>() {
            count(e.imp())
        } else if let Some(e) = element.downcast_ref::<crate::linearresample::LinearResample>() {
            count(e.imp())
        } else {
            panic!("not an audio element: {element:?}")
        }
    }

    fn raw_caps(rate: i32) -> gst::Caps {
        format!("audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels=1")
            .parse()
            .expect("valid caps")
    }

    /// Which of ten buffers, with a reconfiguration requested before the
    /// sixth, a refused DISCONT buffer before the eighth and a QOS event
    /// before the ninth, took the bypass in `factory`; `aligned`: downstream
    /// asks for aligned memory.
    fn bypass_pattern(
        factory: &str,
        in_caps: gst::Caps,
        out_caps: Option<gst::Caps>,
        aligned: bool,
    ) -> Vec<bool> {
        let mut h = gst_check::Harness::new(factory);
        if aligned {
            let params = gst::AllocationParams::new(gst::MemoryFlags::empty(), 63, 0, 0);
            h.sinkpad()
                .unwrap()
                .add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, move |_, info| {
                    if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
                        && let gst::QueryViewMut::Allocation(a) = q.view_mut()
                    {
                        a.add_allocation_param(None::<&gst::Allocator>, params);
                        return gst::PadProbeReturn::Handled;
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        if let Some(out) = out_caps {
            h.set_sink_caps(out);
        }
        h.set_src_caps(in_caps);
        let element = h.element().unwrap();
        let src_pad = element.static_pad("src").unwrap();
        let mut pattern = Vec::new();
        for i in 0..10u64 {
            match i {
                5 => src_pad.mark_reconfigure(),
                7 => {
                    let mut bad = gst::Buffer::new();
                    bad.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
                    assert!(h.push(bad).is_err());
                }
                8 => {
                    let qos =
                        gst::event::Qos::new(gst::QOSType::Underflow, 1.0, 0, gst::ClockTime::ZERO);
                    assert!(h.push_upstream_event(qos));
                }
                _ => {}
            }
            let before = bypassed(&element);
            let mut b = gst::Buffer::from_mut_slice(vec![0u8; 1920]);
            b.get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(20 * i));
            h.push(b).unwrap();
            while h.try_pull().is_some() {}
            pattern.push(bypassed(&element) > before);
        }
        pattern
    }

    #[test]
    fn steady_state_bypasses_and_anything_pending_goes_through_basetransform() {
        // The first buffer negotiates through BaseTransform and a requested
        // reconfiguration sends one buffer through it. The DISCONT of a
        // refused buffer the bypass carries itself, and a QOS event with QoS
        // disabled changes nothing.
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
        let expected = [false, true, true, true, true, false, true, true, true, true];
        let mulaw = gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000)
            .field("channels", 1)
            .build();
        for (factory, in_caps, out_caps) in [
            ("ulawenc", raw_caps(8000), None),
            ("ulawdec", mulaw, None),
            ("linearresample", raw_caps(48_000), Some(raw_caps(8000))),
        ] {
            let got = bypass_pattern(factory, in_caps.clone(), out_caps.clone(), false);
            assert_eq!(got, expected, "{factory}");
            let got = bypass_pattern(factory, in_caps, out_caps, true);
            assert_eq!(got, [false; 10], "{factory} with aligned memory");
        }
    }
}
