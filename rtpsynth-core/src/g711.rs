//! G.711 µ-law, bit-exact with the ITU-T G.191 software tools library
//! (`ulaw_compress` / `ulaw_expand`).
//!
//! G.191 works on the 14-bit magnitude of a 16-bit sample (`x >> 2`, one's
//! complement for negative samples), so the code of a sample depends only on
//! `x >> 2`: the encoder is one lookup in a 16 Ki-entry table indexed by the
//! logical `(x as u16) >> 2`, the decoder one lookup in a 256-entry table.
//! Both tables are computed at compile time; the slice functions have no
//! per-sample branch. Where the CPU has AVX2 both compute instead, 16 samples
//! a vector: the encoder through an auto-vectorized arithmetic form, the
//! decoder through an intrinsics kernel on 16-bit lanes.

/// Entries in the encode table: one per 14-bit input value.
const ENCODE_LEN: usize = 1 << 14;

/// µ-law code of one sample, the G.191 way, written with a leading-zeros
/// segment search instead of G.191's shift loop (the tests hold it to a
/// loop-based transcription of G.191).
const fn compress(x: i16) -> u8 {
    // One's complement, not negation: G.191 maps -1 to magnitude 0, the
    // mirror image of 0, so the code is symmetric around -0.5.
    let mag14 = (if x < 0 { !x >> 2 } else { x >> 2 }) as u32;
    // The +33 bias (on the 14-bit scale) makes every segment start at a power
    // of two; the magnitude is then limited to 13 bits.
    let biased = if mag14 + 33 > 0x1FFF {
        0x1FFF
    } else {
        mag14 + 33
    };
    // Segment 0..=7: position of the highest set bit above bit 5.
    let seg = 32 - (biased >> 6).leading_zeros();
    let mantissa = (biased >> (seg + 1)) & 0x0F;
    let code = ((seg << 4) | mantissa) as u8;
    // G.711 transmits the inverted value; the sign bit is 1 for x >= 0.
    if x < 0 { code ^ 0x7F } else { code ^ 0xFF }
}

/// Linear value of one µ-law code (G.191 `ulaw_expand`): the middle of the
/// code's quantization interval, bias removed.
const fn expand(code: u8) -> i16 {
    let inv = !code;
    let exponent = (inv >> 4) & 0x07;
    let mantissa = (inv & 0x0F) as i32;
    let mag = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if code & 0x80 == 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

static ENCODE: [u8; ENCODE_LEN] = {
    let mut t = [0u8; ENCODE_LEN];
    let mut i = 0;
    while i < ENCODE_LEN {
        // Entry i holds the code for the 14-bit value i (two's complement),
        // i.e. for every 16-bit sample whose top 14 bits are i.
        t[i] = compress(((i as u16) << 2) as i16);
        i += 1;
    }
    t
};

static DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = expand(c as u8);
        c += 1;
    }
    t
};

/// µ-law code of one sample.
#[inline(always)]
pub fn encode_sample(x: i16) -> u8 {
    // A u16 shifted right by 2 is < ENCODE_LEN, so this never goes out of
    // bounds and the compiler drops the check.
    ENCODE[usize::from((x as u16) >> 2)]
}

/// Linear sample of one µ-law code.
#[inline(always)]
pub fn decode_sample(code: u8) -> i16 {
    DECODE[usize::from(code)]
}

/// µ-law code of one sample by arithmetic only, so that a loop of it
/// vectorizes (a table lookup per sample cannot): the same code as the
/// table, as the tests check for all 65,536 inputs. After the +33 bias the
/// magnitude lies in [33, 8191], so its highest set bit `e` is 5..=12 and
/// the segment is `e - 5`; converted to `f32` (exact below 2^24), the
/// exponent field holds `127 + e` and the next mantissa bits are the four
/// bits after the leading one, i.e. `(biased >> (seg + 1)) & 15`. Bits 19
/// and up of the float are therefore `(127 + e) << 4 | mantissa`, and the
/// code is that minus `(127 + 5) << 4`.
#[inline(always)]
fn compress_arith(x: i16) -> u8 {
    let x = i32::from(x);
    let sign = x >> 31;
    // One's complement for negative samples, then the 14-bit magnitude.
    let mag14 = (x ^ sign) >> 2;
    let biased = (mag14 + 33).min(0x1FFF);
    let code = ((biased as f32).to_bits() >> 19) as i32 - ((127 + 5) << 4);
    // Inverted for transmission; the sign bit is 1 for x >= 0.
    (code ^ 0xFF ^ (sign & 0x80)) as u8
}

/// Linear value of one code by arithmetic only, without [`expand`]'s
/// branch: the AVX2 decode kernel's loop for inputs shorter than one of its
/// vector steps.
#[inline(always)]
fn expand_arith(code: u8) -> i16 {
    let inv = i32::from(!code);
    let mag = (((inv & 0x0F) << 3) + 0x84) << ((inv >> 4) & 0x07);
    // 0 for codes with the sign bit set (positive), -1 otherwise.
    let neg = (i32::from(code & 0x80) >> 7) - 1;
    (((mag - 0x84) ^ neg) - neg) as i16
}

/// The loops behind the encoders: `$arith` per sample compiled for AVX2
/// where the CPU has it (where the arithmetic form vectorizes 16 wide and
/// beats the table), else `$table` per sample (faster than the arithmetic
/// form with SSE2 alone).
macro_rules! dispatch {
    ($input:expr, $output:expr, |$x:ident| $arith:expr, $table:expr) => {{
        #[inline(always)]
        fn run<I: Copy, O>(input: &[I], output: &mut [O], f: impl Fn(I) -> O) {
            for (o, &$x) in output.iter_mut().zip(input) {
                *o = f($x);
            }
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn avx2<I: Copy, O>(input: &[I], output: &mut [O], f: impl Fn(I) -> O) {
            run(input, output, f)
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { avx2($input, $output, |$x| $arith) };
        } else {
            run($input, $output, |$x| $table);
        }
        #[cfg(not(target_arch = "x86_64"))]
        run($input, $output, |$x| $table);
    }};
}

/// Encodes `min(input.len(), output.len())` samples; returns that count.
pub fn encode(input: &[i16], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len());
    dispatch!(
        &input[..n],
        &mut output[..n],
        |x| compress_arith(x),
        encode_sample(x)
    );
    n
}

/// Decodes `min(input.len(), output.len())` codes; returns that count.
pub fn decode(input: &[u8], output: &mut [i16]) -> usize {
    let n = input.len().min(output.len());
    decode_with(DecodePath::detect(), &input[..n], &mut output[..n]);
    n
}

/// Encodes S16LE bytes (as a GstBuffer holds them, with no alignment
/// guarantee) into one code per sample: `min(input.len() / 2, output.len())`
/// samples, returned. A trailing odd byte is ignored; callers reject it.
pub fn encode_s16le(input: &[u8], output: &mut [u8]) -> usize {
    let n = (input.len() / 2).min(output.len());
    let (pairs, _) = input[..2 * n].as_chunks::<2>();
    dispatch!(
        pairs,
        &mut output[..n],
        |b| compress_arith(i16::from_le_bytes(b)),
        encode_sample(i16::from_le_bytes(b))
    );
    n
}

/// Decodes codes into S16LE bytes: `min(input.len(), output.len() / 2)`
/// samples, returned.
pub fn decode_s16le(input: &[u8], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len() / 2);
    let (pairs, _) = output[..2 * n].as_chunks_mut::<2>();
    decode_with(DecodePath::detect(), &input[..n], pairs);
    n
}

/// What the decode loops store per sample: an `i16` for [`decode`], its
/// S16LE bytes for [`decode_s16le`].
///
/// # Safety
///
/// Implementors are two bytes with no padding, any two bytes are a valid
/// value, and on x86_64 those bytes are the sample in S16LE: the AVX2
/// kernel writes a slice of either as bytes.
unsafe trait Sample16: Copy {
    fn from_i16(x: i16) -> Self;
}

// SAFETY: an i16 is two bytes, all bit patterns valid, stored little-endian
// on x86_64.
unsafe impl Sample16 for i16 {
    #[inline(always)]
    fn from_i16(x: i16) -> Self {
        x
    }
}

// SAFETY: two bytes, all bit patterns valid, S16LE by construction.
unsafe impl Sample16 for [u8; 2] {
    #[inline(always)]
    fn from_i16(x: i16) -> Self {
        x.to_le_bytes()
    }
}

/// The loop [`decode`] and [`decode_s16le`] run.
#[derive(Clone, Copy, Debug)]
enum DecodePath {
    /// [`avx2::Avx2::expand`], 16 codes a step.
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    /// One [`decode_sample`] per code: CPUs without AVX2 (where it beats
    /// the arithmetic form compiled for SSE2) and other architectures.
    Table,
}

impl DecodePath {
    /// The fastest path this CPU runs.
    #[inline]
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(cpu) = avx2::Avx2::detect() {
            return Self::Avx2(cpu);
        }
        Self::Table
    }
}

/// Decodes `min(input.len(), output.len())` codes along `path`.
#[inline(always)]
fn decode_with<O: Sample16>(path: DecodePath, input: &[u8], output: &mut [O]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        DecodePath::Avx2(cpu) => {
            // SAFETY: by `Sample16`'s contract the `output.len()` elements
            // are exactly `2 * output.len()` initialized bytes (u8 needs no
            // alignment), any values of them are valid, and the kernel's
            // S16LE bytes are the samples; the byte slice borrows `output`
            // mutably for its whole life.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(output.as_mut_ptr().cast::<u8>(), 2 * output.len())
            };
            cpu.expand(input, bytes);
        }
        DecodePath::Table => {
            for (o, &c) in output.iter_mut().zip(input) {
                *o = O::from_i16(decode_sample(c));
            }
        }
    }
}

/// The AVX2 decode kernel: [`expand_arith`] on sixteen 16-bit lanes, with
/// the shift as a multiply.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Codes per step.
    const LANES: usize = 16;

    /// How far ahead of the step being decoded the kernel prefetches its
    /// input, in codes. An element's input is often not in cache (another
    /// element or the network wrote it a while ago), and prefetching it
    /// this far ahead beats leaving it to the hardware prefetcher: in the
    /// `ulawdec` 1 s bench line (every buffer a fresh 8,000 bytes) it cut
    /// the element's own cost from 1.4 µs to 1.0 µs per buffer; 1,024 gave
    /// 1.1 µs, 4,096 no better than 2,048.
    const PREFETCH: usize = 2048;

    /// Proof that the CPU has AVX2: only [`Avx2::detect`] makes one.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2(());

    impl Avx2 {
        #[inline]
        pub(super) fn detect() -> Option<Self> {
            is_x86_feature_detected!("avx2").then_some(Avx2(()))
        }

        /// Decodes `min(input.len(), output.len() / 2)` codes into S16LE
        /// bytes (`output` needs no alignment).
        #[inline]
        pub(super) fn expand(self, input: &[u8], output: &mut [u8]) {
            // SAFETY: `self` exists, so the CPU has AVX2.
            unsafe { expand(input, output) }
        }
    }

    /// [`Avx2::expand`], compiled for AVX2.
    #[target_feature(enable = "avx2")]
    fn expand(input: &[u8], output: &mut [u8]) {
        let n = input.len().min(output.len() / 2);
        let (input, output) = (&input[..n], &mut output[..2 * n]);
        if n < LANES {
            for (o, &c) in output.as_chunks_mut::<2>().0.iter_mut().zip(input) {
                *o = super::expand_arith(c).to_le_bytes();
            }
            return;
        }
        let (codes, _) = input.as_chunks::<LANES>();
        let (outs, _) = output.as_chunks_mut::<{ 2 * LANES }>();
        for (i, (c, o)) in codes.iter().zip(outs).enumerate() {
            // Once per 64-byte line, and only within the input: past it
            // lies whatever the allocator put there.
            if (i * LANES).is_multiple_of(64)
                && let Some(ahead) = input.get(i * LANES + PREFETCH)
            {
                _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(ahead).cast());
            }
            step(c, o);
        }
        // The last partial step, as a whole step ending at the end: it
        // rewrites some samples with the same values.
        if !n.is_multiple_of(LANES)
            && let (Some(c), Some(o)) = (input.last_chunk(), output.last_chunk_mut())
        {
            step(c, o);
        }
    }

    /// Decodes 16 codes into 16 S16LE samples.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(codes: &[u8; LANES], out: &mut [u8; 2 * LANES]) {
        // SAFETY: `codes` is 16 readable bytes; `loadu` needs no alignment.
        let c = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(codes.as_ptr().cast()) });
        // With inv = !c, exponent e = (inv >> 4) & 7 = 7 - ((c >> 4) & 7):
        // 2^e by a byte lookup of c >> 4 (<= 15). The lookup also fills
        // each lane's high byte, with entry 0 (0x80); that adds base * 2^15
        // to the product below, which vanishes modulo 2^16 as base is even.
        let pow = _mm256_shuffle_epi8(
            _mm256_setr_epi8(
                -128, 64, 32, 16, 8, 4, 2, 1, -128, 64, 32, 16, 8, 4, 2, 1, //
                -128, 64, 32, 16, 8, 4, 2, 1, -128, 64, 32, 16, 8, 4, 2, 1,
            ),
            _mm256_srli_epi16::<4>(c),
        );
        // ((inv & 15) << 3) + 0x84 = 0xFC - ((c & 15) << 3), at most 0xFC.
        let base = _mm256_sub_epi16(
            _mm256_set1_epi16(0xFC),
            _mm256_and_si256(_mm256_slli_epi16::<3>(c), _mm256_set1_epi16(0x78)),
        );
        // base << e is at most 0x7E00: exact in the low 16 bits.
        let neg_mag = _mm256_sub_epi16(_mm256_set1_epi16(0x84), _mm256_mullo_epi16(base, pow));
        // c + 0x7F80 is never 0, negative exactly when c >= 0x80, the
        // positive codes: `sign` negates -mag there and keeps it elsewhere.
        let x = _mm256_sign_epi16(neg_mag, _mm256_add_epi16(c, _mm256_set1_epi16(0x7F80)));
        // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
        // x86 is little-endian, so the i16 lanes land as S16LE.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), x) }
    }
}

/// The ITU-T G.191 reference routines, transcribed: the oracle the tests
/// hold every input and code to, and the straightforward per-sample loop
/// (branches, a segment search loop) the benchmark times the cores against.
/// Same results as [`encode_sample`] and [`decode_sample`], only slower.
pub mod g191 {
    /// G.191 `ulaw_compress`, transcribed statement by statement (C `short`
    /// arithmetic, the segment search as a shift loop).
    #[inline]
    pub fn ulaw_compress(lin: i16) -> u8 {
        let mut absno: i16 = if lin < 0 {
            ((!lin) >> 2) + 33
        } else {
            (lin >> 2) + 33
        };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno: i16 = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x0008 - segno;
        let mut low_nibble = (absno >> segno) & 0x000F;
        low_nibble = 0x000F - low_nibble;
        let mut log = (high_nibble << 4) | low_nibble;
        if lin >= 0 {
            log |= 0x0080;
        }
        log as u8
    }

    /// G.191 `ulaw_expand`, transcribed statement by statement.
    #[inline]
    pub fn ulaw_expand(log: u8) -> i16 {
        let log = log as i16;
        let sign: i16 = if log < 0x0080 { -1 } else { 1 };
        let mut mantissa = !log;
        let exponent = (mantissa >> 4) & 0x0007;
        let segment = exponent + 1;
        mantissa &= 0x000F;
        let step: i16 = 4 << segment;
        sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_g191_for_all_65536_inputs() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut codes = vec![0u8; all.len()];
        assert_eq!(encode(&all, &mut codes), 65_536);
        for (&x, &c) in all.iter().zip(&codes) {
            assert_eq!(c, g191::ulaw_compress(x), "input {x}");
        }
    }

    #[test]
    fn arithmetic_encoder_matches_the_table_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(compress_arith(x), encode_sample(x), "input {x}");
        }
    }

    #[test]
    fn arithmetic_decoder_matches_the_table_for_all_256_codes() {
        for c in 0..=255u8 {
            assert_eq!(expand_arith(c), decode_sample(c), "code {c:#04x}");
        }
    }

    #[test]
    fn decode_matches_g191_for_all_256_codes() {
        let codes: Vec<u8> = (0..=255).collect();
        let mut lin = vec![0i16; 256];
        assert_eq!(decode(&codes, &mut lin), 256);
        for (&c, &x) in codes.iter().zip(&lin) {
            assert_eq!(x, g191::ulaw_expand(c), "code {c:#04x}");
        }
    }

    #[test]
    fn byte_variants_agree_with_sample_variants() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let bytes: Vec<u8> = all.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut a = vec![0u8; all.len()];
        let mut b = vec![0u8; all.len()];
        encode(&all, &mut a);
        // An odd trailing byte is not a sample.
        let mut odd = bytes.clone();
        odd.push(0x55);
        assert_eq!(encode_s16le(&odd, &mut b), 65_536);
        assert_eq!(a, b);

        let codes: Vec<u8> = (0..=255).collect();
        let mut lin = vec![0i16; 256];
        let mut le = vec![0u8; 512];
        decode(&codes, &mut lin);
        assert_eq!(decode_s16le(&codes, &mut le), 256);
        let from_le: Vec<i16> = le
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(lin, from_le);
    }

    #[test]
    fn round_trip_is_idempotent_and_known_points_hold() {
        // Decoding then re-encoding any code gives the same code, except the
        // two zeros: G.191 has +0 (0xFF) and -0 (0x7F), both decoding to 0.
        for c in 0..=255u8 {
            let again = encode_sample(decode_sample(c));
            if c == 0x7F {
                assert_eq!(again, 0xFF);
            } else {
                assert_eq!(again, c, "code {c:#04x}");
            }
        }
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(encode_sample(-1), 0x7F);
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
        assert_eq!(decode_sample(0x80), 32_124);
        assert_eq!(decode_sample(0x00), -32_124);
    }

    /// Every decode path this CPU can run.
    fn decode_paths() -> Vec<DecodePath> {
        #[allow(unused_mut)]
        let mut paths = vec![DecodePath::Table];
        #[cfg(target_arch = "x86_64")]
        paths.extend(avx2::Avx2::detect().map(DecodePath::Avx2));
        paths
    }

    /// Fails at the first sample of `got` that is not `want`'s, naming its
    /// position and code (the buffers are too long to print whole).
    fn same(got: &[i16], codes: &[u8], want: &[i16], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{what}: sample {i} (code {:#04x}) is {}, not {}",
                codes[i], got[i], want[i]
            );
        }
    }

    /// Decodes `codes` along every path, into i16s and into S16LE bytes at
    /// an even and at an odd address, with room for more samples than
    /// `codes` and for fewer: the decoded samples must be [`expand`]'s and
    /// nothing past them may change.
    fn check_decode_paths(codes: &[u8]) {
        const UNTOUCHED: u8 = 0xA5;
        let want: Vec<i16> = codes.iter().map(|&c| expand(c)).collect();
        let what = |path: DecodePath, room: usize, out: &str| {
            format!("{path:?}, {} codes, room {room}, {out}", codes.len())
        };
        for path in decode_paths() {
            for room in [codes.len() + 3, codes.len() / 2] {
                let n = room.min(codes.len());
                let mut lin = vec![i16::from_le_bytes([UNTOUCHED; 2]); room + 2];
                decode_with(path, codes, &mut lin[1..=room]);
                same(&lin[1..=n], codes, &want[..n], &what(path, room, "i16"));
                assert!(
                    lin.iter()
                        .enumerate()
                        .all(|(i, x)| (1..=n).contains(&i) || x.to_le_bytes() == [UNTOUCHED; 2]),
                    "{}",
                    what(path, room, "i16 past the end")
                );
                for skew in 0..2 {
                    let mut bytes = vec![UNTOUCHED; 2 * room + 4];
                    let (pairs, _) = bytes[skew..skew + 2 * room].as_chunks_mut::<2>();
                    decode_with(path, codes, pairs);
                    let out = format!("bytes at offset {skew}");
                    let got: Vec<i16> = bytes[skew..skew + 2 * n]
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    same(&got, codes, &want[..n], &what(path, room, &out));
                    assert!(
                        bytes
                            .iter()
                            .enumerate()
                            .all(|(i, &b)| (skew..skew + 2 * n).contains(&i) || b == UNTOUCHED),
                        "{}",
                        what(path, room, &format!("{out} past the end"))
                    );
                }
            }
        }
    }

    #[test]
    fn every_decode_path_decodes_every_code_in_every_lane() {
        // Code c sits at position c + shift: over the shifts, in every lane
        // of a step and of a prefetched line; the lengths not a multiple of 16
        // end in an overlapping last step.
        for shift in 0..64 {
            let codes: Vec<u8> = (0..256 + shift).map(|p| (p + 256 - shift) as u8).collect();
            check_decode_paths(&codes);
        }
    }

    #[test]
    fn every_decode_path_handles_every_length_and_a_long_buffer() {
        let mut rng = crate::prng::SplitMix64::new(711);
        for len in 0..=100 {
            let codes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            check_decode_paths(&codes);
        }
        let codes: Vec<u8> = (0..100_003).map(|_| rng.next_u32() as u8).collect();
        check_decode_paths(&codes);
    }

    #[test]
    fn short_output_limits_the_count() {
        let mut out = [0u8; 3];
        assert_eq!(encode(&[0, 1, 2, 3, 4], &mut out), 3);
        assert_eq!(encode_s16le(&[0; 10], &mut out), 3);
        let mut lin = [0i16; 2];
        assert_eq!(decode(&[0xFF; 5], &mut lin), 2);
        let mut le = [0u8; 5];
        assert_eq!(decode_s16le(&[0xFF; 5], &mut le), 2);
    }
}
