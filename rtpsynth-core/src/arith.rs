//! Exact integer scaling for positions and timestamps.

/// `⌊a × b / c⌋`, exactly. On 64 bits while the product fits (a sample
/// count times 10⁹ does for over a day of audio at 192 kHz), on 128 bits
/// after: a 128-bit division is a library call, several times slower than
/// the processor's own, and per-buffer timestamps make two of them.
///
/// # Panics
///
/// When `c` is zero.
#[inline]
pub fn mul_div_floor(a: u64, b: u64, c: u64) -> u128 {
    match a.checked_mul(b) {
        Some(p) => u128::from(p / c),
        None => u128::from(a) * u128::from(b) / u128::from(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_widths_give_the_exact_quotient() {
        let cases = [
            (0, 7, 3),
            (10, 1_000_000_000, 48_000),
            (u64::MAX / 1_000_000_000, 1_000_000_000, 8_000),
            // Past 64 bits: only the 128-bit path is exact here.
            (u64::MAX / 1_000_000_000 + 1, 1_000_000_000, 8_000),
            (u64::MAX, u64::MAX, 1),
            (u64::MAX, u64::MAX, u64::MAX),
        ];
        for (a, b, c) in cases {
            let exact = u128::from(a) * u128::from(b) / u128::from(c);
            assert_eq!(mul_div_floor(a, b, c), exact, "{a} * {b} / {c}");
        }
    }
}
