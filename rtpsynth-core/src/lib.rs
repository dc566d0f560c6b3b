//! rtpsynth-core: the algorithms behind the `rtpsynth` GStreamer plugin,
//! with no GStreamer in them (this crate does not depend on it, so the
//! compiler keeps the split). Plain structs over byte and sample slices;
//! protocol logic is sans-IO. Each is unit- and property-tested, fuzzed and
//! benchmarked here, on its own.

pub mod arith;
pub mod batch;
pub mod counters;
pub mod g711;
pub mod jbuf;
pub mod mux;
pub mod offload;
pub mod prng;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sched;
pub mod session;
pub mod ssrc_table;
pub mod synth;
