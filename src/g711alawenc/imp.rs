use crate::audiocaps::{self, CodecSpec};
use rtpsynth_core::g711;

static SPEC: CodecSpec = CodecSpec {
    element: "g711alawenc",
    debug_description: "G.711 A-law encoder",
    long_name: "G.711 A-law encoder (G.191 bit-exact)",
    classification: "Codec/Encoder/Audio",
    description: "Encodes S16LE audio to G.711 A-law exactly as the ITU-T G.191 reference does",
    sink_caps: || audiocaps::raw_caps(i32::MAX),
    src_caps: audiocaps::alaw_caps,
    // Two bytes of S16 in per one-byte code out.
    in_bytes_per_sample: 2,
    out_bytes_per_sample: 1,
    kernel: g711::encode_alaw_s16le,
};

audiocaps::codec_element!(G711AlawEnc, "GstG711AlawEnc", SPEC);
