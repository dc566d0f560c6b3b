//! Output buffers for the audio elements, recycled the way a buffer pool
//! recycles its buffers but without a pool's per-buffer locking and wake-up
//! bookkeeping: a buffer made here returns, when its last reference goes, to
//! a short list of spares of the thread that let go of it, and the next
//! output of the same size made on that thread reuses it. A buffer is taken
//! back only if downstream changed nothing in it but its flags, timestamps
//! and bytes, which every user of [`buffer`] overwrites; any other is freed
//! as usual. Allocating and freeing a buffer and its memory cost about as much
//! as everything else an element does per 20 ms buffer.
//!
//! Like a pool's buffers, a recycled buffer outlives its last reference:
//! weak references and qdata that downstream attached are released when the
//! buffer is finally freed, not when it is taken back. The spares of a thread are freed when
//! it exits; until then (at most two buffers per thread) a leak checker such
//! as `GST_TRACERS=leaks` counts them as alive. A spare made before an
//! application changed the default allocator is still reused once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use glib::translate::*;
use gst::glib;

/// Spares kept per thread: in the steady state an element finds the buffer
/// it pushed last back in the list; a resampler's outputs alternate between
/// two sizes.
const SPARES_PER_THREAD: usize = 2;

/// How many bytes the default allocator's memories hold beyond the size
/// asked for (alignment slack), learnt from the buffers [`buffer`] makes: a
/// memory whose slack differs was resized.
static SLACK: AtomicUsize = AtomicUsize::new(usize::MAX);

thread_local! {
    static SPARES: RefCell<Vec<gst::Buffer>> = const { RefCell::new(Vec::new()) };
}

/// A writable buffer of `size` bytes in one memory of the default allocator
/// with default parameters, exactly as `gst::Buffer::with_size` makes it;
/// its flags, timestamps, offsets and bytes are left from an earlier use
/// when it is a spare, so the caller sets them all.
pub fn buffer(size: usize) -> Result<gst::Buffer, gst::FlowError> {
    let spare = SPARES
        .try_with(|spares| {
            let mut spares = spares.try_borrow_mut().ok()?;
            let i = spares.iter().rposition(|b| b.size() == size)?;
            Some(spares.swap_remove(i))
        })
        .ok()
        .flatten();
    if let Some(b) = spare {
        return Ok(b);
    }
    let b = gst::Buffer::with_size(size).map_err(|_| gst::FlowError::Error)?;
    SLACK.store(b.maxsize() - b.size(), Ordering::Relaxed);
    // SAFETY: `b` is a new buffer this function holds the only reference
    // to; its dispose function (GstBuffer's own, which only returns pool
    // buffers to their pool, and `b` has no pool) is replaced before anyone
    // else can see it.
    unsafe {
        (*b.as_mut_ptr()).mini_object.dispose = Some(take_back);
    }
    Ok(b)
}

/// Whether `buf`, being disposed, is still as [`buffer`] made it apart from
/// what its users overwrite: no pool, its one memory neither replaced
/// (TAG_MEMORY), resized, shared with another buffer or memory nor read-only,
/// and no metas. Its size is then the size it was made with.
///
/// # Safety
///
/// `buf` is a buffer in its dispose function: no one else holds a reference.
unsafe fn reusable(buf: *mut gst::ffi::GstBuffer) -> bool {
    unsafe {
        if !(*buf).pool.is_null()
            || (*buf).mini_object.flags & gst::ffi::GST_BUFFER_FLAG_TAG_MEMORY != 0
            || gst::ffi::gst_buffer_n_memory(buf) != 1
        {
            return false;
        }
        let mut state = std::ptr::null_mut();
        if !gst::ffi::gst_buffer_iterate_meta(buf, &mut state).is_null() {
            return false;
        }
        let mem = gst::ffi::gst_buffer_peek_memory(buf, 0);
        // Other buffers, sub-memories and maps each hold a reference to
        // the memory; GStreamer changes it atomically.
        let refs = AtomicI32::from_ptr(&raw mut (*mem).mini_object.refcount);
        refs.load(Ordering::Acquire) == 1
            && (*mem).offset == 0
            && (*mem).maxsize.checked_sub((*mem).size) == Some(SLACK.load(Ordering::Relaxed))
            && (*mem).mini_object.flags & gst::ffi::GST_MEMORY_FLAG_READONLY == 0
    }
}

/// The dispose function of the buffers [`buffer`] makes: keeps a reusable
/// buffer as a spare of this thread (a new reference keeps it alive, as
/// `GstBufferPool` does; the oldest spare makes room) and returns FALSE;
/// returns TRUE, to free it, when it is not reusable or the thread is
/// exiting.
unsafe extern "C" fn take_back(obj: *mut gst::ffi::GstMiniObject) -> glib::ffi::gboolean {
    let buf = obj as *mut gst::ffi::GstBuffer;
    // SAFETY: GStreamer calls this only as `buf`'s dispose function, when
    // its last reference was dropped.
    if !unsafe { reusable(buf) } {
        return glib::ffi::GTRUE;
    }
    let taken = SPARES.try_with(|spares| {
        let Ok(mut spares) = spares.try_borrow_mut() else {
            return None;
        };
        // A thread whose outputs changed size would otherwise keep spares
        // of the old size forever.
        let evicted = (spares.len() >= SPARES_PER_THREAD).then(|| spares.remove(0));
        // SAFETY: revives the buffer with one new reference, which the
        // spare list owns from here; GstMiniObject then skips freeing it
        // because this returns FALSE.
        spares.push(unsafe {
            from_glib_full(gst::ffi::gst_mini_object_ref(obj) as *mut gst::ffi::GstBuffer)
        });
        Some(evicted)
    });
    match taken {
        Ok(Some(evicted)) => {
            // Freed with the list no longer borrowed.
            if let Some(evicted) = evicted {
                discard(evicted);
            }
            glib::ffi::GFALSE
        }
        _ => glib::ffi::GTRUE,
    }
}

/// Frees `spare` for good rather than taking it back again.
fn discard(spare: gst::Buffer) {
    // SAFETY: a spare's only reference is the one the list held, moved
    // here, so no one else can see the buffer. Without a dispose function
    // GstMiniObject frees it, as GstBuffer's own dispose lets it do for a
    // buffer without a pool.
    unsafe {
        (*spare.as_mut_ptr()).mini_object.dispose = None;
    }
    drop(spare);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Releases `b` marked, and whether the next buffer of `size` is it.
    fn reused_after_release(mut b: gst::Buffer, size: usize) -> bool {
        // A fresh buffer has no PTS; a spare keeps the one it had.
        let mark = gst::ClockTime::from_nseconds(4242);
        b.make_mut().set_pts(mark);
        drop(b);
        buffer(size).unwrap().pts() == Some(mark)
    }

    #[test]
    fn a_released_buffer_is_reused_unless_changed_or_shared() {
        gst::init().unwrap();
        assert!(reused_after_release(buffer(320).unwrap(), 320));
        let again = buffer(320).unwrap();
        assert!(again.is_writable());
        assert_eq!((again.size(), again.n_memory()), (320, 1));
        assert!(!reused_after_release(again, 160), "other size");

        // Shared memory (a copy downstream kept) is never reused.
        let b = buffer(320).unwrap();
        let copy = b.copy();
        assert!(!reused_after_release(b, 320), "memory still shared");
        drop(copy);

        // Nor a buffer downstream resized or gave a meta.
        let mut b = buffer(320).unwrap();
        b.get_mut().unwrap().set_size(100);
        assert!(!reused_after_release(b, 320), "resized");
        let mut b = buffer(320).unwrap();
        gst::ReferenceTimestampMeta::add(
            b.get_mut().unwrap(),
            &gst::Caps::new_empty_simple("timestamp/x-test"),
            gst::ClockTime::ZERO,
            None,
        );
        assert!(!reused_after_release(b, 320), "meta");

        // Spares of sizes no longer made give way to new ones.
        for size in [100, 200, 300] {
            drop(buffer(size).unwrap());
        }
        assert!(reused_after_release(buffer(16_000).unwrap(), 16_000));
    }
}
