use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::audiocaps::{self, Codec};
use crate::g711;

const NAME: &str = "ulawdec";

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        NAME,
        gst::DebugColorFlags::empty(),
        Some("G.711 µ-law decoder"),
    )
});

pub struct UlawDec {
    codec: Codec,
}

impl Default for UlawDec {
    fn default() -> Self {
        // One code in per sample.
        UlawDec {
            codec: Codec::new(NAME, 1, 2, g711::decode_s16le),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for UlawDec {
    const NAME: &'static str = "GstUlawDec";
    type Type = super::UlawDec;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for UlawDec {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> =
            LazyLock::new(|| vec![audiocaps::stats_pspec(NAME, audiocaps::STATS_FIELDS_DOC)]);
        PROPS.as_ref()
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => self.codec.stats().to_value(),
            other => unreachable!("ulawdec has no property {other}"),
        }
    }
}

impl GstObjectImpl for UlawDec {}

impl ElementImpl for UlawDec {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "G.711 µ-law decoder (G.191 bit-exact)",
                "Codec/Decoder/Audio",
                "Decodes G.711 µ-law to S16LE audio exactly as the ITU-T G.191 reference does",
                "gst-rtpsynth developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let src = gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &audiocaps::raw_caps(i32::MAX),
            )
            .expect("valid src template");
            let sink = gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &audiocaps::mulaw_caps(),
            )
            .expect("valid sink template");
            vec![src, sink]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for UlawDec {
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
        let other = match direction {
            gst::PadDirection::Sink => audiocaps::raw_caps(i32::MAX),
            _ => audiocaps::mulaw_caps(),
        };
        let out = audiocaps::codec_transform_caps(caps, &other, filter);
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
        // One-byte code to two bytes of S16.
        Some(match direction {
            gst::PadDirection::Sink => size.checked_mul(2)?,
            _ => size / 2,
        })
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "{incaps} -> {outcaps}");
        self.codec.set_caps(incaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        self.codec.observe_event(&event);
        self.parent_sink_event(event)
    }

    fn decide_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.codec.decide_allocation(self, query)
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        self.codec.generate_output(self)
    }

    fn transform(
        &self,
        inbuf: &gst::Buffer,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.codec.transform(self, inbuf, outbuf)
    }
}
