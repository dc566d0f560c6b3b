//! Counters as the `GstStructure` behind every element's `stats` property.
//! The counters themselves are declared with `rtpsynth_core::counters!`, so
//! a field's name is written in one place only.

use gst::glib;
use std::sync::{Arc, Mutex, MutexGuard};

/// Builds a stats structure named `name` with one `u64` field per counter.
pub fn to_structure(
    name: &str,
    fields: impl IntoIterator<Item = (&'static str, u64)>,
) -> gst::Structure {
    let mut s = gst::Structure::new_empty(name);
    for (key, value) in fields {
        s.set(key, value);
    }
    s
}

/// Buffers handed out as `glib::Bytes` and taken back when the last holder
/// drops them. A bulk statistics read of a thousand channels is 344 KB:
/// freshly allocated each time, its pages were faulted in anew on every
/// read, which cost more than the read itself.
#[derive(Clone, Default)]
pub struct BytesPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Buffers kept for reuse: one per read in flight at once, and readers
/// rarely overlap.
const POOL_KEEP: usize = 4;

impl BytesPool {
    /// A `glib::Bytes` of what `fill` writes into a buffer from the pool
    /// (emptied first).
    pub fn bytes(&self, fill: impl FnOnce(&mut Vec<u8>)) -> glib::Bytes {
        let mut data = self.free().pop().unwrap_or_default();
        data.clear();
        fill(&mut data);
        glib::Bytes::from_owned(Pooled {
            data,
            pool: self.clone(),
        })
    }

    fn free(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A list of spare buffers is whole even if a holder panicked.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Pooled {
    data: Vec<u8>,
    pool: BytesPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut free = self.pool.free();
        if free.len() < POOL_KEEP {
            free.push(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    rtpsynth_core::counters! {
        struct Sample {
            received = "received",
            dropped_late = "dropped-late",
        }
    }

    #[test]
    fn structure_has_u64_fields() {
        gst::init().unwrap();
        let s = super::to_structure(
            "application/x-test-stats",
            Sample {
                received: 7,
                dropped_late: 0,
            }
            .fields(),
        );
        assert_eq!(s.name(), "application/x-test-stats");
        assert_eq!(s.get::<u64>("received").unwrap(), 7);
        assert_eq!(s.get::<u64>("dropped-late").unwrap(), 0);
    }

    #[test]
    fn pooled_bytes_are_reused_after_their_holder_drops_them() {
        let pool = super::BytesPool::default();
        let first = pool.bytes(|v| v.extend_from_slice(&[1, 2, 3]));
        assert_eq!(&*first, &[1, 2, 3]);
        let at = <[u8]>::as_ptr(&first);
        drop(first);
        // The same buffer again, emptied before the second fill.
        let second = pool.bytes(|v| {
            assert!(v.is_empty());
            v.push(9)
        });
        assert_eq!(&*second, &[9]);
        assert_eq!(<[u8]>::as_ptr(&second), at);
        // While it is held, another read gets another buffer.
        let third = pool.bytes(|v| v.push(7));
        assert_ne!(<[u8]>::as_ptr(&third), at);
        assert_eq!(&*second, &[9]);
    }
}
