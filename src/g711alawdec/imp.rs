use crate::audiocaps::{self, CodecSpec};
use rtpsynth_core::g711;

static SPEC: CodecSpec = CodecSpec {
    element: "g711alawdec",
    debug_description: "G.711 A-law decoder",
    long_name: "G.711 A-law decoder (G.191 bit-exact)",
    classification: "Codec/Decoder/Audio",
    description: "Decodes G.711 A-law to S16LE audio exactly as the ITU-T G.191 reference does",
    sink_caps: audiocaps::alaw_caps,
    src_caps: || audiocaps::raw_caps(i32::MAX),
    // One-byte code in per two bytes of S16 out.
    in_bytes_per_sample: 1,
    out_bytes_per_sample: 2,
    kernel: g711::decode_alaw_s16le,
};

audiocaps::codec_element!(G711AlawDec, "GstG711AlawDec", SPEC);
