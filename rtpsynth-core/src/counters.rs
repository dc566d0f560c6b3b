//! Counters behind every element's `stats` property.
//!
//! Cores declare their counters with [`counters!`](crate::counters), which
//! gives each field its one stats name; the plugin turns them into a
//! `GstStructure`, so a field's name is written in one place only.

/// Declares a `Copy` struct of `u64` counters, each with its kebab-case stats
/// name, plus `NAMES` and `fields()` listing them in declaration order.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident = $key:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: u64, )+
        }

        impl $name {
            /// Stats field names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($key),+];

            /// `(stats name, value)` for every counter, in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                Self::NAMES.iter().copied().zip([$(self.$field),+])
            }
        }
    };
}

#[cfg(test)]
mod tests {
    counters! {
        struct Sample {
            /// Packets in.
            received = "received",
            dropped_late = "dropped-late",
        }
    }

    #[test]
    fn names_follow_fields() {
        let c = Sample {
            received: 3,
            dropped_late: 1,
        };
        assert_eq!(Sample::NAMES, &["received", "dropped-late"]);
        assert_eq!(
            c.fields().collect::<Vec<_>>(),
            vec![("received", 3), ("dropped-late", 1)]
        );
    }
}
