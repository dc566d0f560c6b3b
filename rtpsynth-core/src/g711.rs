//! G.711 µ-law and A-law, bit-exact with the ITU-T G.191 software tools
//! library (`ulaw_compress` / `ulaw_expand`, `alaw_compress` /
//! `alaw_expand`).
//!
//! G.191 works on the top bits of a 16-bit sample, one's complement for
//! negative samples: µ-law on its 14-bit magnitude (`x >> 2`), A-law on its
//! 12-bit magnitude (`x >> 4`). So the code of a sample depends only on
//! those top bits: the encoder is one lookup in a table indexed by the
//! logical `(x as u16) >> 2` (16 Ki entries) or `>> 4` (4 Ki entries), the
//! decoder one lookup in a 256-entry table. The tables are computed at
//! compile time; the slice functions have no per-sample branch. Where the
//! CPU has AVX2 both compute instead, 16 samples a vector: the µ-law encoder
//! through an auto-vectorized arithmetic form, the A-law encoder and both
//! decoders through intrinsics kernels on 16-bit lanes. Where it also has
//! AVX-512 VBMI the decoders look the samples up again, 64 at a time, with
//! byte permutes. Both laws run the same loops, which take the per-sample
//! forms, the vector steps and the tables from [`Law`].

/// Entries in the µ-law encode table: one per 14-bit input value.
const ULAW_ENCODE_LEN: usize = 1 << 14;

/// Entries in the A-law encode table: one per 12-bit input value.
const ALAW_ENCODE_LEN: usize = 1 << 12;

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

/// A-law code of one sample, the G.191 way, without G.191's shift loop (the
/// tests hold it to a loop-based transcription of G.191). The 12-bit
/// magnitude `mag` (one's complement for negative samples, as in G.191) is
/// its own code below 32: segments 0 (0..=15) and 1 (16..=31) both step by
/// one. From 32 up, segment `s + 1` (`s` = 1..=6, the bit length of `mag >>
/// 5`) steps by `2^s`, and `mag >> s` is 16 plus the mantissa, so the code
/// `(s + 1) << 4 | mantissa` is `s << 4` plus `mag >> s`; with `s` = 0 that
/// also holds below 32. The AVX2 encode kernel computes the same.
#[inline(always)]
const fn alaw_compress(x: i16) -> u8 {
    let x = x as i32;
    let sign = x >> 31;
    let mag = (x ^ sign) >> 4;
    let s = 32 - ((mag >> 5) as u32).leading_zeros();
    let code = (s << 4) as i32 + (mag >> s);
    // G.711 transmits the even bits inverted (0x55); the sign bit is 1 for
    // x >= 0.
    (code ^ 0xD5 ^ (sign & 0x80)) as u8
}

/// Linear value of one A-law code (G.191 `alaw_expand`): the middle of the
/// code's quantization interval. Branch-free, so that it serves both the
/// table and the AVX2 kernel's loop for inputs shorter than one step.
#[inline(always)]
const fn alaw_expand(code: u8) -> i16 {
    let ix = (code ^ 0x55) as i32;
    let exponent = (ix >> 4) & 0x07;
    // Segments 1..=7 have a leading one (0x100 before the shift) and shift
    // by exponent - 1; segment 0 has neither.
    let above0 = (exponent != 0) as i32;
    let mag = (((ix & 0x0F) << 4) + 8 + (above0 << 8)) << (exponent - above0);
    // 0 for codes with the sign bit set (positive), -1 otherwise.
    let neg = ((code & 0x80) as i32 >> 7) - 1;
    ((mag ^ neg) - neg) as i16
}

/// The table of `$entry` for every index `$i` below `$len`, built at
/// compile time (a `const fn` cannot take the entry as a function pointer).
macro_rules! table {
    ($len:expr, $ty:ty, |$i:ident| $entry:expr) => {{
        let mut t: [$ty; $len] = [0; $len];
        let mut $i = 0;
        while $i < $len {
            t[$i] = $entry;
            $i += 1;
        }
        t
    }};
}

// Entry i holds the code of every 16-bit sample whose top 14 (µ-law) or 12
// (A-law) bits, read as two's complement, are i.
static ULAW_ENCODE: [u8; ULAW_ENCODE_LEN] =
    table!(ULAW_ENCODE_LEN, u8, |i| compress((i << 2) as u16 as i16));
static ALAW_ENCODE: [u8; ALAW_ENCODE_LEN] = table!(ALAW_ENCODE_LEN, u8, |i| alaw_compress(
    (i << 4) as u16 as i16
));

static ULAW_DECODE: [i16; 256] = table!(256, i16, |c| expand(c as u8));
static ALAW_DECODE: [i16; 256] = table!(256, i16, |c| alaw_expand(c as u8));

/// µ-law code of one sample.
#[inline(always)]
pub fn encode_sample(x: i16) -> u8 {
    // A u16 shifted right by 2 is < ULAW_ENCODE_LEN, so this never goes out
    // of bounds and the compiler drops the check.
    ULAW_ENCODE[usize::from((x as u16) >> 2)]
}

/// Linear sample of one µ-law code.
#[inline(always)]
pub fn decode_sample(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// A-law code of one sample.
#[inline(always)]
pub fn encode_alaw_sample(x: i16) -> u8 {
    // A u16 shifted right by 4 is < ALAW_ENCODE_LEN: no bounds check.
    ALAW_ENCODE[usize::from((x as u16) >> 4)]
}

/// Linear sample of one A-law code.
#[inline(always)]
pub fn decode_alaw_sample(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
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

/// One companding law: the per-sample forms that the shared slice loops
/// run, and (through [`LawKernels`]) its SIMD steps.
trait Law: LawKernels {
    /// Code of one sample by table lookup.
    fn encode_table(x: i16) -> u8;
    /// The same code by arithmetic only.
    fn encode_arith(x: i16) -> u8;
    /// Linear value of one code by table lookup.
    fn decode_table(code: u8) -> i16;
    /// The same value by arithmetic only.
    fn decode_arith(code: u8) -> i16;
}

/// G.711 µ-law.
#[derive(Clone, Copy, Debug)]
struct Ulaw;

/// G.711 A-law.
#[derive(Clone, Copy, Debug)]
struct Alaw;

impl Law for Ulaw {
    #[inline(always)]
    fn encode_table(x: i16) -> u8 {
        encode_sample(x)
    }
    #[inline(always)]
    fn encode_arith(x: i16) -> u8 {
        compress_arith(x)
    }
    #[inline(always)]
    fn decode_table(code: u8) -> i16 {
        decode_sample(code)
    }
    #[inline(always)]
    fn decode_arith(code: u8) -> i16 {
        expand_arith(code)
    }
}

impl Law for Alaw {
    #[inline(always)]
    fn encode_table(x: i16) -> u8 {
        encode_alaw_sample(x)
    }
    #[inline(always)]
    fn encode_arith(x: i16) -> u8 {
        alaw_compress(x)
    }
    #[inline(always)]
    fn decode_table(code: u8) -> i16 {
        decode_alaw_sample(code)
    }
    #[inline(always)]
    fn decode_arith(code: u8) -> i16 {
        alaw_expand(code)
    }
}

/// What a law brings to this architecture's SIMD paths: on x86_64 its AVX2
/// encoder and decode step and its AVX-512 decode tables, nothing
/// elsewhere.
#[cfg(target_arch = "x86_64")]
trait LawKernels: avx2::Kernels + avx512::Kernels {}
#[cfg(target_arch = "x86_64")]
impl<L: avx2::Kernels + avx512::Kernels> LawKernels for L {}
#[cfg(not(target_arch = "x86_64"))]
trait LawKernels {}
#[cfg(not(target_arch = "x86_64"))]
impl<L> LawKernels for L {}

/// µ-law-encodes `min(input.len(), output.len())` samples; returns that
/// count.
pub fn encode(input: &[i16], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len());
    encode_with::<Ulaw, _>(Path::detect(), &input[..n], &mut output[..n]);
    n
}

/// Decodes `min(input.len(), output.len())` µ-law codes; returns that
/// count.
pub fn decode(input: &[u8], output: &mut [i16]) -> usize {
    let n = input.len().min(output.len());
    decode_with::<Ulaw, _>(Path::detect(), &input[..n], &mut output[..n]);
    n
}

/// µ-law-encodes S16LE bytes (as a GstBuffer holds them, with no alignment
/// guarantee) into one code per sample: `min(input.len() / 2,
/// output.len())` samples, returned. A trailing odd byte is ignored;
/// callers reject it.
pub fn encode_s16le(input: &[u8], output: &mut [u8]) -> usize {
    encode_s16le_with::<Ulaw>(input, output)
}

/// Decodes µ-law codes into S16LE bytes: `min(input.len(), output.len() /
/// 2)` samples, returned.
pub fn decode_s16le(input: &[u8], output: &mut [u8]) -> usize {
    decode_s16le_with::<Ulaw>(input, output)
}

/// A-law-encodes `min(input.len(), output.len())` samples; returns that
/// count.
pub fn encode_alaw(input: &[i16], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len());
    encode_with::<Alaw, _>(Path::detect(), &input[..n], &mut output[..n]);
    n
}

/// Decodes `min(input.len(), output.len())` A-law codes; returns that
/// count.
pub fn decode_alaw(input: &[u8], output: &mut [i16]) -> usize {
    let n = input.len().min(output.len());
    decode_with::<Alaw, _>(Path::detect(), &input[..n], &mut output[..n]);
    n
}

/// A-law-encodes S16LE bytes (no alignment guarantee) into one code per
/// sample: `min(input.len() / 2, output.len())` samples, returned. A
/// trailing odd byte is ignored; callers reject it.
pub fn encode_alaw_s16le(input: &[u8], output: &mut [u8]) -> usize {
    encode_s16le_with::<Alaw>(input, output)
}

/// Decodes A-law codes into S16LE bytes: `min(input.len(), output.len() /
/// 2)` samples, returned.
pub fn decode_alaw_s16le(input: &[u8], output: &mut [u8]) -> usize {
    decode_s16le_with::<Alaw>(input, output)
}

/// [`encode_s16le`] and [`encode_alaw_s16le`] under law `L`.
#[inline(always)]
fn encode_s16le_with<L: Law>(input: &[u8], output: &mut [u8]) -> usize {
    let n = (input.len() / 2).min(output.len());
    let (pairs, _) = input[..2 * n].as_chunks::<2>();
    encode_with::<L, _>(Path::detect(), pairs, &mut output[..n]);
    n
}

/// [`decode_s16le`] and [`decode_alaw_s16le`] under law `L`.
#[inline(always)]
fn decode_s16le_with<L: Law>(input: &[u8], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len() / 2);
    let (pairs, _) = output[..2 * n].as_chunks_mut::<2>();
    decode_with::<L, _>(Path::detect(), &input[..n], pairs);
    n
}

/// How the loops hold one sample: an `i16` for [`encode`] and [`decode`],
/// its S16LE bytes for the `_s16le` functions.
///
/// # Safety
///
/// Implementors are two bytes with no padding, any two bytes are a valid
/// value, and on x86_64 those bytes are the sample in S16LE: the AVX2
/// kernels read and write a slice of either as bytes.
unsafe trait Sample16: Copy {
    fn from_i16(x: i16) -> Self;
    fn to_i16(self) -> i16;
}

// SAFETY: an i16 is two bytes, all bit patterns valid, stored little-endian
// on x86_64.
unsafe impl Sample16 for i16 {
    #[inline(always)]
    fn from_i16(x: i16) -> Self {
        x
    }
    #[inline(always)]
    fn to_i16(self) -> i16 {
        self
    }
}

// SAFETY: two bytes, all bit patterns valid, S16LE by construction.
unsafe impl Sample16 for [u8; 2] {
    #[inline(always)]
    fn from_i16(x: i16) -> Self {
        x.to_le_bytes()
    }
    #[inline(always)]
    fn to_i16(self) -> i16 {
        i16::from_le_bytes(self)
    }
}

/// The loops the encoders and decoders run.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// The AVX-512 VBMI decoder ([`avx512`]), 64 samples a step; encoding
    /// takes the AVX2 path.
    #[cfg(target_arch = "x86_64")]
    Vbmi(avx512::Vbmi),
    /// The law's AVX2 kernels ([`avx2::Kernels`]), 16 samples a step.
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    /// One table lookup per sample: CPUs without AVX2 (where it beats the
    /// arithmetic forms compiled for SSE2) and other architectures.
    Table,
}

impl Path {
    /// The fastest path this CPU runs.
    #[inline]
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(cpu) = avx512::Vbmi::detect() {
                return Self::Vbmi(cpu);
            }
            if let Some(cpu) = avx2::Avx2::detect() {
                return Self::Avx2(cpu);
            }
        }
        Self::Table
    }
}

/// `samples` as the bytes they are made of: on x86_64, by `Sample16`'s
/// contract, exactly `2 * samples.len()` S16LE bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn s16le_bytes<S: Sample16>(samples: &[S]) -> &[u8] {
    // SAFETY: by `Sample16`'s contract the elements are exactly two
    // initialized bytes each (u8 needs no alignment); the byte slice
    // borrows `samples` for its whole life.
    unsafe { std::slice::from_raw_parts(samples.as_ptr().cast::<u8>(), 2 * samples.len()) }
}

/// [`s16le_bytes`] for writing: any bytes written are valid samples.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn s16le_bytes_mut<S: Sample16>(samples: &mut [S]) -> &mut [u8] {
    // SAFETY: as in `s16le_bytes`, and any values of the bytes are valid
    // samples; the byte slice borrows `samples` mutably for its whole life.
    unsafe { std::slice::from_raw_parts_mut(samples.as_mut_ptr().cast::<u8>(), 2 * samples.len()) }
}

/// Encodes `min(input.len(), output.len())` samples under law `L` along
/// `path`.
#[inline(always)]
fn encode_with<L: Law, I: Sample16>(path: Path, input: &[I], output: &mut [u8]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Vbmi(cpu) => L::encode(cpu.avx2(), s16le_bytes(input), output),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(cpu) => L::encode(cpu, s16le_bytes(input), output),
        Path::Table => {
            for (o, &x) in output.iter_mut().zip(input) {
                *o = L::encode_table(x.to_i16());
            }
        }
    }
}

/// Decodes `min(input.len(), output.len())` codes of law `L` along `path`.
#[inline(always)]
fn decode_with<L: Law, O: Sample16>(path: Path, input: &[u8], output: &mut [O]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Vbmi(cpu) => cpu.expand::<L>(input, s16le_bytes_mut(output)),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(cpu) => cpu.expand::<L>(input, s16le_bytes_mut(output)),
        Path::Table => {
            for (o, &c) in output.iter_mut().zip(input) {
                *o = O::from_i16(L::decode_table(c));
            }
        }
    }
}

/// The AVX2 kernels: per law an encoder and a 16-lane decode step
/// ([`Kernels`]), and the loops around the steps.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Samples per step.
    const LANES: usize = 16;

    /// How far ahead of the step being decoded the kernel prefetches its
    /// input, in codes. An element's input is often not in cache (another
    /// element or the network wrote it a while ago), and prefetching it
    /// this far ahead beats leaving it to the hardware prefetcher: in the
    /// `ulawdec` 1 s bench line (every buffer a fresh 8,000 bytes) it cut
    /// the element's own cost from 1.4 µs to 1.0 µs per buffer; 1,024 gave
    /// 1.1 µs, 4,096 no better than 2,048.
    pub(super) const PREFETCH: usize = 2048;

    /// Proof that the CPU has AVX2: only [`Avx2::detect`] makes one.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2(());

    impl Avx2 {
        #[inline]
        pub(super) fn detect() -> Option<Self> {
            is_x86_feature_detected!("avx2").then_some(Avx2(()))
        }

        /// Decodes `min(input.len(), output.len() / 2)` codes of law `L`
        /// into S16LE bytes (`output` needs no alignment).
        #[inline]
        pub(super) fn expand<L: super::Law>(self, input: &[u8], output: &mut [u8]) {
            // SAFETY: `self` exists, so the CPU has AVX2.
            unsafe { expand::<L>(input, output) }
        }
    }

    /// One law's AVX2 kernels.
    pub(super) trait Kernels {
        /// Encodes `min(input.len() / 2, output.len())` S16LE samples
        /// (`input` needs no alignment).
        fn encode(cpu: Avx2, input: &[u8], output: &mut [u8]);

        /// The samples of the sixteen codes in `codes`, each zero-extended
        /// to a 16-bit lane, in the same lanes.
        ///
        /// # Safety
        ///
        /// The CPU has AVX2.
        unsafe fn expand16(codes: __m256i) -> __m256i;
    }

    impl Kernels for super::Ulaw {
        /// [`super::Law::encode_arith`] per sample, compiled for AVX2: the
        /// compiler vectorizes it 16 wide, and it beats the table.
        #[inline]
        fn encode(_: Avx2, input: &[u8], output: &mut [u8]) {
            // SAFETY: an `Avx2` was passed in, so the CPU has AVX2.
            unsafe { compress_vectorized::<Self>(input, output) }
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn expand16(c: __m256i) -> __m256i {
            // With inv = !c, exponent e = (inv >> 4) & 7 = 7 - ((c >> 4) & 7):
            // 2^e by a byte lookup of c >> 4 (<= 15). The lookup also fills
            // each lane's high byte, with entry 0 (0x80); that adds base *
            // 2^15 to the product below, which vanishes modulo 2^16 as base
            // is even.
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
            positive_if_sign_bit(neg_mag, c)
        }
    }

    impl Kernels for super::Alaw {
        /// [`compress_alaw`], on 16-bit lanes. In the `alaw encode core`
        /// bench line it ran at 5.4-6.1 G samples/s; the compiler's
        /// vectorization of an arithmetic form (32-bit lanes, as µ-law's)
        /// at 3.8-4.2 G, the table at 2.6 G.
        #[inline]
        fn encode(_: Avx2, input: &[u8], output: &mut [u8]) {
            // SAFETY: an `Avx2` was passed in, so the CPU has AVX2.
            unsafe { compress_alaw(input, output) }
        }

        /// Ten operations where the previous form (the shift as a factor,
        /// the leading one as a second lookup) took fourteen. On the bench
        /// machine, which takes the AVX-512 path, a standalone loop over
        /// 8,000 codes in L1 decoded 15-17 G samples/s this way, 11-13 G
        /// the previous way.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn expand16(c: __m256i) -> __m256i {
            // c << 4 keeps all eight code bits, bit 7 at bit 11.
            let c4 = _mm256_slli_epi16::<4>(c);
            // Segment s (bits 4..=6 of c ^ 0x55) in the high byte; mantissa
            // << 4 | 8 (the middle of the step) in the low byte.
            let t = _mm256_xor_si256(
                _mm256_and_si256(c4, _mm256_set1_epi16(0x7F0)),
                _mm256_set1_epi16(0x558),
            );
            // The shift by s - 1 (none in segment 0) as a factor, 2^(s - 1)
            // << 9, by a lookup of the high byte (s <= 7). The low byte's
            // index is 8 (entry 0) or has bit 7 set (0): the low byte is 0.
            let factor = _mm256_shuffle_epi8(
                _mm256_setr_epi8(
                    2, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0, //
                    2, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0,
                ),
                t,
            );
            // The leading one of segments 1..=7: the high byte limited to 1.
            let base = _mm256_min_epu8(t, _mm256_set1_epi16(0x01FF));
            // base << (s - 1) as the high half of (base << 7) * (2^(s - 1)
            // << 9); base <= 0x1F8, so base << 7 fits in 16 bits.
            let mag = _mm256_mulhi_epu16(_mm256_slli_epi16::<7>(base), factor);
            // c4 - 0x7FF is never 0, negative exactly when bit 7 is clear.
            _mm256_sign_epi16(mag, _mm256_sub_epi16(c4, _mm256_set1_epi16(0x7FF)))
        }
    }

    /// `neg_mag` negated in the lanes whose code `c` has the sign bit set
    /// (positive samples in both laws), kept elsewhere.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn positive_if_sign_bit(neg_mag: __m256i, c: __m256i) -> __m256i {
        // c + 0x7F80 is never 0, negative exactly when c >= 0x80.
        _mm256_sign_epi16(neg_mag, _mm256_add_epi16(c, _mm256_set1_epi16(0x7F80)))
    }

    /// [`super::Law::encode_arith`] per S16LE sample, in a loop the
    /// compiler vectorizes.
    #[target_feature(enable = "avx2")]
    fn compress_vectorized<L: super::Law>(input: &[u8], output: &mut [u8]) {
        for (o, &x) in output.iter_mut().zip(input.as_chunks::<2>().0) {
            *o = L::encode_arith(i16::from_le_bytes(x));
        }
    }

    /// A-law's encoder: [`super::alaw_compress`] on sixteen 16-bit lanes.
    #[target_feature(enable = "avx2")]
    fn compress_alaw(input: &[u8], output: &mut [u8]) {
        let n = (input.len() / 2).min(output.len());
        let (input, output) = (&input[..2 * n], &mut output[..n]);
        if n < LANES {
            for (o, &x) in output.iter_mut().zip(input.as_chunks::<2>().0) {
                *o = super::alaw_compress(i16::from_le_bytes(x));
            }
            return;
        }
        let (samples, _) = input.as_chunks::<{ 2 * LANES }>();
        let (codes, _) = output.as_chunks_mut::<LANES>();
        for (x, c) in samples.iter().zip(codes) {
            compress_alaw_step(x, c);
        }
        // The last partial step, as a whole step ending at the end: it
        // rewrites some codes with the same values.
        if !n.is_multiple_of(LANES)
            && let (Some(x), Some(c)) = (input.last_chunk(), output.last_chunk_mut())
        {
            compress_alaw_step(x, c);
        }
    }

    /// A-law-encodes 16 S16LE samples.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn compress_alaw_step(samples: &[u8; 2 * LANES], out: &mut [u8; LANES]) {
        // SAFETY: `samples` is 32 readable bytes; `loadu` needs no
        // alignment. x86 is little-endian: S16LE bytes load as i16 lanes.
        let x = unsafe { _mm256_loadu_si256(samples.as_ptr().cast()) };
        let sign = _mm256_srai_epi16::<15>(x);
        // One's complement for negative samples, then the 12-bit magnitude.
        let mag = _mm256_srai_epi16::<4>(_mm256_xor_si256(x, sign));
        // s = bit length of mag >> 5 (<= 63): the larger of the bit lengths
        // looked up for its low nibble and (as 4 + length) its high one.
        let w = _mm256_srli_epi16::<5>(mag);
        let s = _mm256_max_epu8(
            _mm256_shuffle_epi8(
                _mm256_setr_epi8(
                    0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, //
                    0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4,
                ),
                _mm256_and_si256(w, _mm256_set1_epi16(0x0F)),
            ),
            _mm256_shuffle_epi8(
                _mm256_setr_epi8(
                    0, 5, 6, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
                    0, 5, 6, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ),
                _mm256_srli_epi16::<4>(w),
            ),
        );
        // mag >> s as the high half of (mag << 1) * 2^(15 - s): 2^(15 - s)
        // by a byte lookup of s moved to the high byte (its low byte is 0
        // for every s <= 6). The lookups above left each lane's high byte 0
        // (entry 0), so s is the whole lane and indexes the same way.
        let factor = _mm256_slli_epi16::<8>(_mm256_shuffle_epi8(
            _mm256_setr_epi8(
                -128, 64, 32, 16, 8, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
                -128, 64, 32, 16, 8, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ),
            s,
        ));
        let shifted = _mm256_mulhi_epu16(_mm256_add_epi16(mag, mag), factor);
        let code = _mm256_add_epi16(_mm256_slli_epi16::<4>(s), shifted);
        // Even bits inverted for transmission; the sign bit is 1 for x >= 0.
        let code = _mm256_xor_si256(
            code,
            _mm256_xor_si256(
                _mm256_set1_epi16(0xD5),
                _mm256_and_si256(sign, _mm256_set1_epi16(0x80)),
            ),
        );
        // Codes are <= 0xFF: packing saturates nothing. It packs within each
        // 128-bit half; the permute brings both halves' eight codes to the
        // low 16 bytes.
        let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(code, code));
        // SAFETY: `out` is 16 writable bytes; `storeu` needs no alignment.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm256_castsi256_si128(packed)) }
    }

    /// [`Avx2::expand`], compiled for AVX2.
    #[target_feature(enable = "avx2")]
    fn expand<L: super::Law>(input: &[u8], output: &mut [u8]) {
        let n = input.len().min(output.len() / 2);
        let (input, output) = (&input[..n], &mut output[..2 * n]);
        if n < LANES {
            for (o, &c) in output.as_chunks_mut::<2>().0.iter_mut().zip(input) {
                *o = L::decode_arith(c).to_le_bytes();
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
            expand_step::<L>(c, o);
        }
        // The last partial step, as a whole step ending at the end: it
        // rewrites some samples with the same values.
        if !n.is_multiple_of(LANES)
            && let (Some(c), Some(o)) = (input.last_chunk(), output.last_chunk_mut())
        {
            expand_step::<L>(c, o);
        }
    }

    /// Decodes 16 codes into 16 S16LE samples.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn expand_step<L: Kernels>(codes: &[u8; LANES], out: &mut [u8; 2 * LANES]) {
        // SAFETY: `codes` is 16 readable bytes; `loadu` needs no alignment.
        let c = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(codes.as_ptr().cast()) });
        // SAFETY: this function runs only on CPUs with AVX2.
        let x = unsafe { L::expand16(c) };
        // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
        // x86 is little-endian, so the i16 lanes land as S16LE.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), x) }
    }
}

/// The AVX-512 decoder: a table lookup per code, 64 codes a step. VBMI's
/// two-register byte permute (`vpermi2b`) looks up 64 bytes at once in a
/// 128-entry table, indexed by the low seven bits of each byte; both laws
/// are symmetric in the sign bit (bit 7), so the samples of codes 0..=127,
/// split into a table of low bytes and one of high bytes, are all the
/// kernel needs, and the lanes of codes with bit 7 set are negated.
///
/// On the bench machine (Sapphire Rapids, virtualized) a standalone loop
/// over 8,000 codes in L1 decoded 29-32 G samples/s this way, against 15-17
/// G for the AVX2 A-law kernel and 104 G for a bare u8 -> u16 copy of the
/// same bytes; a loop of 512-bit permutes left the core clock where scalar
/// code runs it.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::avx2::Avx2;

    /// Codes per step: one 64-byte vector, one cache line.
    const LANES: usize = 64;

    /// Proof that the CPU has AVX-512 F, BW, VL and VBMI, and AVX2: only
    /// [`Vbmi::detect`] makes one.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Vbmi(Avx2);

    impl Vbmi {
        #[inline]
        pub(super) fn detect() -> Option<Self> {
            let avx2 = Avx2::detect()?;
            (is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vbmi"))
            .then_some(Vbmi(avx2))
        }

        /// The CPU's AVX2, for the encoders.
        #[inline]
        pub(super) fn avx2(self) -> Avx2 {
            self.0
        }

        /// Decodes `min(input.len(), output.len() / 2)` codes of law `L`
        /// into S16LE bytes (`output` needs no alignment).
        #[inline]
        pub(super) fn expand<L: Kernels>(self, input: &[u8], output: &mut [u8]) {
            // SAFETY: `self` exists, so the CPU has AVX-512 F, BW, VL and
            // VBMI.
            unsafe { expand::<L>(input, output) }
        }
    }

    /// The samples of codes 0..=127 (bit 7 clear), split into their low and
    /// high bytes: four 64-byte vectors.
    #[repr(C, align(64))]
    pub(super) struct Halves {
        low: [u8; 128],
        high: [u8; 128],
    }

    /// [`Halves`] of the samples `expand(c)` of codes `c` = 0..=127.
    macro_rules! halves {
        ($expand:path) => {{
            let samples = table!(128, i16, |c| $expand(c as u8));
            let mut h = Halves {
                low: [0; 128],
                high: [0; 128],
            };
            let mut c = 0;
            while c < 128 {
                let [low, high] = samples[c].to_le_bytes();
                h.low[c] = low;
                h.high[c] = high;
                c += 1;
            }
            h
        }};
    }

    /// One law's decode tables.
    pub(super) trait Kernels {
        /// The samples of codes 0..=127; code `c + 128` decodes to the
        /// negation of code `c`'s sample.
        const HALVES: Halves;
    }

    impl Kernels for super::Ulaw {
        const HALVES: Halves = halves!(super::expand);
    }

    impl Kernels for super::Alaw {
        const HALVES: Halves = halves!(super::alaw_expand);
    }

    /// The tables, and the order the steps look the codes up in, loaded
    /// once per call.
    #[derive(Clone, Copy)]
    struct Consts {
        low: [__m512i; 2],
        high: [__m512i; 2],
        pairs: __m512i,
    }

    impl Consts {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
        fn load(h: &Halves) -> Self {
            let v = |bytes: &[u8; LANES]| {
                // SAFETY: `bytes` is 64 readable bytes; `loadu` needs no
                // alignment.
                unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
            };
            let (low, high) = (h.low.as_chunks::<LANES>().0, h.high.as_chunks::<LANES>().0);
            Consts {
                low: [v(&low[0]), v(&low[1])],
                high: [v(&high[0]), v(&high[1])],
                // Qword i of the first 32 codes (0..=3), then qword i of the
                // last 32 (8..=11 in a two-register permute), in each
                // 128-bit lane i: see `step`.
                pairs: _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11),
            }
        }
    }

    /// [`Vbmi::expand`], compiled for AVX-512.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    fn expand<L: Kernels>(input: &[u8], output: &mut [u8]) {
        let n = input.len().min(output.len() / 2);
        let (input, output) = (&input[..n], &mut output[..2 * n]);
        let k = Consts::load(&L::HALVES);
        let (codes, tail) = input.as_chunks::<LANES>();
        let (outs, tail_out) = output.as_chunks_mut::<{ 2 * LANES }>();
        for (i, (c, o)) in codes.iter().zip(outs).enumerate() {
            // One step is one line: see `avx2::PREFETCH`.
            if let Some(ahead) = input.get(i * LANES + super::avx2::PREFETCH) {
                _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(ahead).cast());
            }
            let (first, second) = c.split_at(LANES / 2);
            // SAFETY: `first` and `second` are 32 readable bytes each;
            // `loadu` needs no alignment.
            let halves = unsafe {
                [
                    _mm256_loadu_si256(first.as_ptr().cast()),
                    _mm256_loadu_si256(second.as_ptr().cast()),
                ]
            };
            let [first, second] = step(k, halves);
            // SAFETY: `o` is 128 writable bytes; `storeu` needs no
            // alignment. x86 is little-endian, so the i16 lanes land as
            // S16LE.
            unsafe {
                _mm512_storeu_si512(o.as_mut_ptr().cast(), first);
                _mm512_storeu_si512(o[LANES..].as_mut_ptr().cast(), second);
            }
        }
        // The last partial step with masked loads and stores, which touch
        // only the lanes whose mask bit is set: no scalar loop, and no
        // second path for inputs shorter than a step.
        if !tail.is_empty() {
            let mask = u64::MAX >> (LANES - tail.len());
            // SAFETY: the mask enables the first `tail.len()` bytes, all
            // readable; masked-off bytes are not accessed.
            let c = unsafe { _mm512_maskz_loadu_epi8(mask, tail.as_ptr().cast()) };
            let [first, second] = step(
                k,
                [_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64::<1>(c)],
            );
            // SAFETY: `tail_out` is `2 * tail.len()` writable bytes; the
            // masks enable the first `tail.len()` samples (at most 32 per
            // store), and the second store runs only when more than 32 are
            // left, so that its address lies within `tail_out`.
            unsafe {
                _mm512_mask_storeu_epi16(tail_out.as_mut_ptr().cast(), mask as u32, first);
                if tail.len() > LANES / 2 {
                    _mm512_mask_storeu_epi16(
                        tail_out[LANES..].as_mut_ptr().cast(),
                        (mask >> 32) as u32,
                        second,
                    );
                }
            }
        }
    }

    /// The samples of 64 codes, given and returned as the first 32 and the
    /// last 32.
    ///
    /// Every permute and unpack here runs on one port (port 5), the
    /// two-register byte permutes for two cycles each, the others for one:
    /// seven cycles per 64 codes. Interleaving the two lookups' bytes with
    /// two more byte permutes instead (nine cycles, with the shift that the
    /// second half's sign mask then needs) took 12-25% longer in the
    /// standalone loop. The sign masks come from the halves as loaded (each
    /// a `vpmovb2m`, on another port), which is why the halves are loaded
    /// apart and paired by a permute, not loaded as one vector.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    fn step(k: Consts, codes: [__m256i; 2]) -> [__m512i; 2] {
        // The unpacks interleave bytes within each 128-bit lane, the first
        // the lane's low qwords (8 samples), the second its high ones; so
        // lane i of the lookups' input holds qword i of each half.
        let c = _mm512_permutex2var_epi64(
            _mm512_castsi256_si512(codes[0]),
            k.pairs,
            _mm512_castsi256_si512(codes[1]),
        );
        // Each byte of `c` picks, by its low seven bits, a byte of the two
        // 64-byte tables.
        let low = _mm512_permutex2var_epi8(k.low[0], c, k.low[1]);
        let high = _mm512_permutex2var_epi8(k.high[0], c, k.high[1]);
        let samples = [
            _mm512_unpacklo_epi8(low, high),
            _mm512_unpackhi_epi8(low, high),
        ];
        // Codes with bit 7 set: the negated sample. Their masks come from
        // each half as loaded, one bit per sample in order.
        let zero = _mm512_setzero_si512();
        [0, 1].map(|h| {
            _mm512_mask_sub_epi16(samples[h], _mm256_movepi8_mask(codes[h]), zero, samples[h])
        })
    }
}

/// The ITU-T G.191 reference routines, transcribed: the oracle the tests
/// hold every input and code to, and the straightforward per-sample loop
/// (branches, a segment search loop) the benchmark times the cores against.
/// Same results as [`encode_sample`] and [`decode_sample`] (µ-law),
/// [`encode_alaw_sample`] and [`decode_alaw_sample`] (A-law), only slower.
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

    /// G.191 `alaw_compress`, transcribed statement by statement (C `short`
    /// arithmetic): the 12-bit magnitude, one's complement for negative
    /// samples, then the exponent by a shift loop.
    #[inline]
    pub fn alaw_compress(lin: i16) -> u8 {
        let mut ix: i16 = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
        if ix > 15 {
            let mut iexp: i16 = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if lin >= 0 {
            ix |= 0x0080;
        }
        (ix ^ 0x0055) as u8
    }

    /// G.191 `alaw_expand`, transcribed statement by statement.
    #[inline]
    pub fn alaw_expand(log: u8) -> i16 {
        let log = log as i16;
        let mut ix = log ^ 0x0055;
        ix &= 0x007F;
        let iexp = ix >> 4;
        let mut mant = ix & 0x000F;
        if iexp > 0 {
            mant += 16;
        }
        mant = (mant << 4) + 0x0008;
        if iexp > 1 {
            mant <<= iexp - 1;
        }
        if log > 127 { mant } else { -mant }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One law's public functions, its arithmetic forms and its G.191
    /// reference, so that the tests that hold for both laws run for each.
    struct Api {
        name: &'static str,
        encode: fn(&[i16], &mut [u8]) -> usize,
        decode: fn(&[u8], &mut [i16]) -> usize,
        encode_s16le: fn(&[u8], &mut [u8]) -> usize,
        decode_s16le: fn(&[u8], &mut [u8]) -> usize,
        encode_sample: fn(i16) -> u8,
        decode_sample: fn(u8) -> i16,
        encode_arith: fn(i16) -> u8,
        decode_arith: fn(u8) -> i16,
        g191_compress: fn(i16) -> u8,
        g191_expand: fn(u8) -> i16,
    }

    const LAWS: [Api; 2] = [
        Api {
            name: "µ-law",
            encode,
            decode,
            encode_s16le,
            decode_s16le,
            encode_sample,
            decode_sample,
            encode_arith: Ulaw::encode_arith,
            decode_arith: Ulaw::decode_arith,
            g191_compress: g191::ulaw_compress,
            g191_expand: g191::ulaw_expand,
        },
        Api {
            name: "A-law",
            encode: encode_alaw,
            decode: decode_alaw,
            encode_s16le: encode_alaw_s16le,
            decode_s16le: decode_alaw_s16le,
            encode_sample: encode_alaw_sample,
            decode_sample: decode_alaw_sample,
            encode_arith: Alaw::encode_arith,
            decode_arith: Alaw::decode_arith,
            g191_compress: g191::alaw_compress,
            g191_expand: g191::alaw_expand,
        },
    ];

    fn all_inputs() -> Vec<i16> {
        (i16::MIN..=i16::MAX).collect()
    }

    #[test]
    fn encode_matches_g191_for_all_65536_inputs() {
        let all = all_inputs();
        for law in &LAWS {
            let mut codes = vec![0u8; all.len()];
            assert_eq!((law.encode)(&all, &mut codes), 65_536);
            for (&x, &c) in all.iter().zip(&codes) {
                let want = (law.g191_compress)(x);
                assert_eq!(c, want, "{} slice, input {x}", law.name);
                assert_eq!(
                    (law.encode_sample)(x),
                    want,
                    "{} table, input {x}",
                    law.name
                );
                assert_eq!(
                    (law.encode_arith)(x),
                    want,
                    "{} arithmetic, input {x}",
                    law.name
                );
            }
        }
    }

    #[test]
    fn decode_matches_g191_for_all_256_codes() {
        let codes: Vec<u8> = (0..=255).collect();
        for law in &LAWS {
            let mut lin = vec![0i16; 256];
            assert_eq!((law.decode)(&codes, &mut lin), 256);
            for (&c, &x) in codes.iter().zip(&lin) {
                let want = (law.g191_expand)(c);
                assert_eq!(x, want, "{} slice, code {c:#04x}", law.name);
                assert_eq!(
                    (law.decode_sample)(c),
                    want,
                    "{} table, code {c:#04x}",
                    law.name
                );
                assert_eq!(
                    (law.decode_arith)(c),
                    want,
                    "{} arithmetic, code {c:#04x}",
                    law.name
                );
            }
        }
    }

    #[test]
    fn byte_variants_agree_with_sample_variants() {
        let all = all_inputs();
        let bytes: Vec<u8> = all.iter().flat_map(|x| x.to_le_bytes()).collect();
        // An odd trailing byte is not a sample.
        let mut odd = bytes.clone();
        odd.push(0x55);
        let codes: Vec<u8> = (0..=255).collect();
        for law in &LAWS {
            let mut a = vec![0u8; all.len()];
            let mut b = vec![0u8; all.len()];
            (law.encode)(&all, &mut a);
            assert_eq!((law.encode_s16le)(&odd, &mut b), 65_536, "{}", law.name);
            assert_eq!(a, b, "{}", law.name);

            let mut lin = vec![0i16; 256];
            let mut le = vec![0u8; 512];
            (law.decode)(&codes, &mut lin);
            assert_eq!((law.decode_s16le)(&codes, &mut le), 256, "{}", law.name);
            let from_le: Vec<i16> = le
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            assert_eq!(lin, from_le, "{}", law.name);
        }
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

    #[test]
    fn alaw_round_trip_is_idempotent_and_known_points_hold() {
        // A-law has no negative zero: every code decodes to a value of its
        // own (the smallest are +8 and -8), which encodes back to it.
        for c in 0..=255u8 {
            assert_eq!(
                encode_alaw_sample(decode_alaw_sample(c)),
                c,
                "code {c:#04x}"
            );
        }
        // Silence is 0xD5 (0x80 for the sign of 0, even bits inverted).
        assert_eq!(encode_alaw_sample(0), 0xD5);
        assert_eq!(encode_alaw_sample(-1), 0x55);
        assert_eq!(encode_alaw_sample(15), 0xD5);
        assert_eq!(encode_alaw_sample(16), 0xD4);
        assert_eq!(encode_alaw_sample(-16), 0x55);
        assert_eq!(encode_alaw_sample(-17), 0x54);
        assert_eq!(encode_alaw_sample(i16::MAX), 0xAA);
        assert_eq!(encode_alaw_sample(i16::MIN), 0x2A);
        assert_eq!(decode_alaw_sample(0xD5), 8);
        assert_eq!(decode_alaw_sample(0x55), -8);
        assert_eq!(decode_alaw_sample(0xAA), 32_256);
        assert_eq!(decode_alaw_sample(0x2A), -32_256);
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step() {
        // A code's step is 16 in segments 0 and 1 and doubles with each
        // segment after; the decoded value is the middle of the step, so a
        // sample comes back at most half a step away. The one's complement
        // makes the error interval the same on both sides: [-step/2,
        // step/2 - 1].
        let mut worst = [0i32; 8];
        for x in i16::MIN..=i16::MAX {
            let c = encode_alaw_sample(x);
            let segment = ((c ^ 0x55) >> 4) & 0x07;
            let step = 16 << segment.saturating_sub(1);
            let err = i32::from(x) - i32::from(decode_alaw_sample(c));
            assert!(
                (-step / 2..step / 2).contains(&err),
                "input {x}: code {c:#04x} decodes {err} away, step {step}"
            );
            let s = usize::from(segment);
            worst[s] = worst[s].max(err.abs());
        }
        // Every segment reaches its bound: the test would notice a coarser
        // quantizer as well as a finer one.
        assert_eq!(worst, [8, 8, 16, 32, 64, 128, 256, 512]);
    }

    /// Every path this CPU can run.
    fn paths() -> Vec<Path> {
        #[allow(unused_mut)]
        let mut paths = vec![Path::Table];
        #[cfg(target_arch = "x86_64")]
        paths.extend(avx2::Avx2::detect().map(Path::Avx2));
        #[cfg(target_arch = "x86_64")]
        paths.extend(avx512::Vbmi::detect().map(Path::Vbmi));
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

    /// Decodes `codes` of law `L` along every path, read from an even and
    /// from an odd address, into i16s and into S16LE bytes at an even and at
    /// an odd address, with room for more samples than `codes` and for
    /// fewer: the decoded samples must be `reference`'s (G.191's) and
    /// nothing past them may change.
    fn check_decode_paths<L: Law>(codes: &[u8], reference: fn(u8) -> i16) {
        let mut shifted = vec![0; codes.len() + 1];
        shifted[1..].copy_from_slice(codes);
        check_decode_paths_from::<L>(codes, reference, "");
        check_decode_paths_from::<L>(&shifted[1..], reference, ", codes shifted by 1");
    }

    /// [`check_decode_paths`] for `codes` where they are.
    fn check_decode_paths_from<L: Law>(codes: &[u8], reference: fn(u8) -> i16, whence: &str) {
        const UNTOUCHED: u8 = 0xA5;
        let want: Vec<i16> = codes.iter().map(|&c| reference(c)).collect();
        let what = |path: Path, room: usize, out: &str| {
            format!(
                "{}, {path:?}, {} codes{whence}, room {room}, {out}",
                std::any::type_name::<L>(),
                codes.len()
            )
        };
        for path in paths() {
            for room in [codes.len() + 3, codes.len() / 2] {
                let n = room.min(codes.len());
                let mut lin = vec![i16::from_le_bytes([UNTOUCHED; 2]); room + 2];
                decode_with::<L, _>(path, codes, &mut lin[1..=room]);
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
                    decode_with::<L, _>(path, codes, pairs);
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

    /// Encodes `samples` under law `L` along every path, from i16s and from
    /// S16LE bytes at an even and at an odd address, into room for more
    /// codes than `samples` and for fewer: the codes must be `reference`'s
    /// (G.191's) and nothing past them may change.
    fn check_encode_paths<L: Law>(samples: &[i16], reference: fn(i16) -> u8) {
        const UNTOUCHED: u8 = 0xA5;
        let want: Vec<u8> = samples.iter().map(|&x| reference(x)).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
        for path in paths() {
            for room in [samples.len() + 3, samples.len() / 2] {
                let n = room.min(samples.len());
                for skew in [None, Some(0), Some(1)] {
                    let what = format!(
                        "{}, {path:?}, {} samples, room {room}, {}",
                        std::any::type_name::<L>(),
                        samples.len(),
                        skew.map_or("from i16".into(), |s| format!("from bytes at offset {s}"))
                    );
                    let mut codes = vec![UNTOUCHED; room + 2];
                    let out = &mut codes[1..=room];
                    match skew {
                        None => encode_with::<L, _>(path, samples, out),
                        Some(skew) => {
                            let mut shifted = vec![UNTOUCHED; bytes.len() + 1];
                            shifted[skew..skew + bytes.len()].copy_from_slice(&bytes);
                            let (pairs, _) = shifted[skew..skew + bytes.len()].as_chunks::<2>();
                            encode_with::<L, _>(path, pairs, out);
                        }
                    }
                    if let Some(i) = (0..n).find(|&i| codes[1 + i] != want[i]) {
                        panic!(
                            "{what}: sample {i} ({}) is {:#04x}, not {:#04x}",
                            samples[i],
                            codes[1 + i],
                            want[i]
                        );
                    }
                    assert!(
                        codes
                            .iter()
                            .enumerate()
                            .all(|(i, &c)| (1..=n).contains(&i) || c == UNTOUCHED),
                        "{what}: past the end"
                    );
                }
            }
        }
    }

    #[test]
    fn every_encode_path_handles_every_length_and_a_long_buffer() {
        let mut rng = crate::prng::SplitMix64::new(711);
        let mut check = |len: usize| {
            let samples: Vec<i16> = (0..len).map(|_| rng.next_u32() as i16).collect();
            check_encode_paths::<Ulaw>(&samples, g191::ulaw_compress);
            check_encode_paths::<Alaw>(&samples, g191::alaw_compress);
        };
        for len in 0..=100 {
            check(len);
        }
        check(100_003);
    }

    #[test]
    fn every_encode_path_encodes_every_input_in_every_lane() {
        // Shifting all 65,536 inputs by 0..16 puts each in every lane of a
        // step, and ends in a partial last step for every remainder.
        let all = all_inputs();
        for shift in 0..16 {
            check_encode_paths::<Ulaw>(&all[shift..], g191::ulaw_compress);
            check_encode_paths::<Alaw>(&all[shift..], g191::alaw_compress);
        }
    }

    /// [`check_decode_paths`] for both laws.
    fn check_decode_paths_of_both_laws(codes: &[u8]) {
        check_decode_paths::<Ulaw>(codes, g191::ulaw_expand);
        check_decode_paths::<Alaw>(codes, g191::alaw_expand);
    }

    #[test]
    fn every_decode_path_decodes_every_code_in_every_lane() {
        // Code c sits at position c + shift: over the shifts, in every lane
        // of a step (16 codes for AVX2, 64 for AVX-512) and of a prefetched
        // line; the lengths not a multiple of 16 end in an overlapping last
        // AVX2 step, those not a multiple of 64 in a masked AVX-512 one.
        for shift in 0..64 {
            let codes: Vec<u8> = (0..256 + shift).map(|p| (p + 256 - shift) as u8).collect();
            check_decode_paths_of_both_laws(&codes);
        }
    }

    #[test]
    fn every_decode_path_handles_every_length_and_a_long_buffer() {
        let mut rng = crate::prng::SplitMix64::new(711);
        // Up to three 64-code steps: every length of the masked last step
        // alone and after one and after two whole steps.
        for len in 0..=200 {
            let codes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            check_decode_paths_of_both_laws(&codes);
        }
        let codes: Vec<u8> = (0..100_003).map(|_| rng.next_u32() as u8).collect();
        check_decode_paths_of_both_laws(&codes);
    }

    #[test]
    fn short_output_limits_the_count() {
        for law in &LAWS {
            let mut out = [0u8; 3];
            assert_eq!((law.encode)(&[0, 1, 2, 3, 4], &mut out), 3, "{}", law.name);
            assert_eq!((law.encode_s16le)(&[0; 10], &mut out), 3, "{}", law.name);
            let mut lin = [0i16; 2];
            assert_eq!((law.decode)(&[0xFF; 5], &mut lin), 2, "{}", law.name);
            let mut le = [0u8; 5];
            assert_eq!((law.decode_s16le)(&[0xFF; 5], &mut le), 2, "{}", law.name);
        }
    }

    /// Stock GStreamer's `alawenc` and `alawdec` (gst-plugins-good
    /// `gst/law/alaw-encode.c` and `alaw-decode.c`), transcribed. Both
    /// elements run 2049- and 256-entry tables that the files generate from
    /// these functions (kept there under `#else`); the encode table agrees
    /// with `s16_to_alaw` on every input (checked against the file's table
    /// when this was written).
    mod stock {
        /// `val_seg`: the segment of a magnitude of 256 or more.
        fn val_seg(mut val: i32) -> i32 {
            let mut r = 1;
            val >>= 8;
            if val & 0xF0 != 0 {
                val >>= 4;
                r += 4;
            }
            if val & 0x0C != 0 {
                val >>= 2;
                r += 2;
            }
            if val & 0x02 != 0 {
                r += 1;
            }
            r
        }

        /// `s16_to_alaw`: quantizes |x| (two's complement negation, -32768
        /// limited to 32767), where G.191 quantizes the one's complement.
        pub fn s16_to_alaw(pcm_val: i16) -> u8 {
            let mut pcm_val = i32::from(pcm_val);
            let mask: u8;
            if pcm_val >= 0 {
                mask = 0xD5;
            } else {
                mask = 0x55;
                pcm_val = -pcm_val;
                if pcm_val > 0x7FFF {
                    pcm_val = 0x7FFF;
                }
            }
            let aval = if pcm_val < 256 {
                (pcm_val >> 4) as u8
            } else {
                let seg = val_seg(pcm_val);
                ((seg << 4) | ((pcm_val >> (seg + 3)) & 0x0F)) as u8
            };
            aval ^ mask
        }

        /// `alaw_to_s16`.
        pub fn alaw_to_s16(a_val: u8) -> i16 {
            let a_val = a_val ^ 0x55;
            let mut t = i32::from(a_val & 0x7F);
            if t < 16 {
                t = (t << 4) + 8;
            } else {
                let seg = (t >> 4) & 0x07;
                t = ((t & 0x0F) << 4) + 0x108;
                t <<= seg - 1;
            }
            (if a_val & 0x80 != 0 { t } else { -t }) as i16
        }
    }

    #[test]
    fn stock_alawdec_agrees_with_g191_on_every_code() {
        for c in 0..=255u8 {
            assert_eq!(stock::alaw_to_s16(c), g191::alaw_expand(c), "code {c:#04x}");
        }
    }

    /// Stock alawenc quantizes |x| where G.191 quantizes the one's
    /// complement -x - 1, so the two part exactly on the negative inputs
    /// whose magnitude is a multiple of 16 and crosses into the next code:
    /// stock rounds those one code further from zero. This measures which
    /// inputs, and by how much the decoded values differ.
    #[test]
    fn alaw_differs_from_stock_alawenc_on_127_negative_inputs() {
        let differ: Vec<i16> = (i16::MIN..=i16::MAX)
            .filter(|&x| encode_alaw_sample(x) != stock::s16_to_alaw(x))
            .collect();
        // The inputs: -16 k for every 12-bit magnitude k whose code differs
        // from k - 1's, i.e. every step boundary: every k below 32, then
        // every 2^(e - 4)th k where k's highest set bit is e (every second
        // k in segment 2, every fourth in segment 3, ...).
        let boundaries: Vec<i16> = (1..2048)
            .filter(|&k: &i32| {
                let e = k.ilog2();
                k < 32 || k.trailing_zeros() >= e - 4
            })
            .map(|k| (-16 * k) as i16)
            .rev()
            .collect();
        assert_eq!(differ, boundaries);
        assert_eq!(differ.len(), 127);
        // The sizes: ours decodes one code nearer zero, by one step (16 <<
        // (segment - 1), 16 in segments 0 and 1) inside a segment and by a
        // step and a half where stock's code starts a new segment.
        let mut sizes = std::collections::BTreeMap::<i32, usize>::new();
        for &x in &differ {
            let ours = i32::from(decode_alaw_sample(encode_alaw_sample(x)));
            let theirs = i32::from(decode_alaw_sample(stock::s16_to_alaw(x)));
            assert!(ours > theirs, "{x}: ours {ours}, stock {theirs}");
            *sizes.entry(ours - theirs).or_default() += 1;
        }
        let sizes: Vec<(i32, usize)> = sizes.into_iter().collect();
        assert_eq!(
            sizes,
            [
                (16, 31),
                (24, 1),
                (32, 15),
                (48, 1),
                (64, 15),
                (96, 1),
                (128, 15),
                (192, 1),
                (256, 15),
                (384, 1),
                (512, 15),
                (768, 1),
                (1024, 15)
            ]
        );
    }
}
