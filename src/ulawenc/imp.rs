use crate::audiocaps::{self, CodecSpec};
use rtpsynth_core::g711;

static SPEC: CodecSpec = CodecSpec {
    element: "ulawenc",
    debug_description: "G.711 µ-law encoder",
    long_name: "G.711 µ-law encoder (G.191 bit-exact)",
    classification: "Codec/Encoder/Audio",
    description: "Encodes S16LE audio to G.711 µ-law exactly as the ITU-T G.191 reference does",
    sink_caps: || audiocaps::raw_caps(i32::MAX),
    src_caps: audiocaps::mulaw_caps,
    // Two bytes of S16 in per one-byte code out.
    in_bytes_per_sample: 2,
    out_bytes_per_sample: 1,
    kernel: g711::encode_s16le,
};

audiocaps::codec_element!(UlawEnc, "GstUlawEnc", SPEC);
