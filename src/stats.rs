//! Counters as the `GstStructure` behind every element's `stats` property.
//! The counters themselves are declared with `rtpsynth_core::counters!`, so
//! a field's name is written in one place only.

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
}
