//! Streaming linear-interpolation resampler for interleaved S16 audio.
//!
//! For a whole signal of `n_in` frames the output is exactly librtpsynth's
//! `resample_linear`: `round_half_even(n_in * out_rate / in_rate)` frames (at
//! least one); output `i` sits at input position `pos = i * in_rate /
//! out_rate`, `k = floor(pos)`, `f = pos - k`; past the second-to-last input
//! frame the last one is held, otherwise `in[k] + (in[k+1] - in[k]) * f`,
//! rounded half to even.
//!
//! Positions are exact rationals: `k` plus a remainder counted in units of
//! `1 / out'` (rates reduced by their gcd), stepped by integer additions, so
//! hours of streaming never drift and any split of the input into chunks
//! gives the same samples as the whole signal. Only the held tail depends on
//! knowing where the signal ends; [`Resampler::drain`] emits it.
//!
//! Speed: positions repeat every `den` outputs (rates reduced by their gcd
//! to `num / den`), so where `den` is small (2..=4096: 8 k <-> 48 k,
//! 16 k -> 48 k, 44.1 k <-> 48 k, 8 k -> 44.1 k, 11.025 k -> 48 k, ...) a
//! table per phase feeds an SSE2 kernel, mono or stereo, eight samples a
//! step: one multiply-add of the two neighbours by integer weights, then a
//! division (f32 up to `den` 511, f64 above) whose round-to-nearest-even
//! is provably the exact result (see `x86::round_div`). Everything else,
//! and the edges of each chunk, runs the scalar integer path; both give
//! the same samples bit for bit.

use std::fmt;

/// Highest sample rate accepted, in Hz.
pub const MAX_RATE: u32 = 384_000;

/// Why a resampler cannot be built or cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A rate outside 1..=[`MAX_RATE`] Hz.
    Rate(u32),
    /// Zero channels.
    Channels,
    /// Input that is not a whole number of frames: `len` units (`unit` is
    /// "sample" or "byte") with frames of `frame` units.
    PartialFrame {
        len: usize,
        frame: usize,
        unit: &'static str,
    },
    /// Output slice too short: (samples needed, samples given).
    OutputTooShort(usize, usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Rate(r) => write!(f, "sample rate {r} Hz is outside 1..={MAX_RATE} Hz"),
            Error::Channels => write!(f, "channel count must be at least 1"),
            Error::PartialFrame { len, frame, unit } => {
                write!(
                    f,
                    "{len} {unit}s are not a whole number of {frame}-{unit} frames"
                )
            }
            Error::OutputTooShort(need, got) => {
                write!(f, "output holds {got} samples, {need} needed")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Write access to interleaved samples, so the drain serves `i16` slices and
/// unaligned S16LE bytes.
trait Output {
    fn set(&mut self, i: usize, v: i16);
}

impl Output for [i16] {
    #[inline(always)]
    fn set(&mut self, i: usize, v: i16) {
        self[i] = v;
    }
}

/// S16LE bytes as a GstBuffer maps them (no alignment guarantee).
struct Le<T>(T);

impl Output for Le<&mut [u8]> {
    #[inline(always)]
    fn set(&mut self, i: usize, v: i16) {
        self.0[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `round_half_even(num / den)` for `den > 0`.
fn div_round_half_even(num: u128, den: u128) -> u128 {
    let (q, r) = (num / den, num % den);
    if 2 * r > den || (2 * r == den && q % 2 == 1) {
        q + 1
    } else {
        q
    }
}

/// Copies every `STEP`th sample of `from` into `to` in groups of eight,
/// as far as whole groups of both go; returns the samples written.
fn decimate<const STEP: usize>(from: &[i16], to: &mut [i16]) -> usize {
    let mut done = 0;
    for (out, group) in to.chunks_exact_mut(8).zip(from.chunks_exact(8 * STEP)) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = group[j * STEP];
        }
        done += 8;
    }
    done
}

/// Samples the vector kernel writes per step (two SSE2 registers of four
/// 32-bit lanes).
const LANES: usize = 8;

/// Largest reduced output rate `den` for which the vector kernel divides in
/// f32, exactly (see [`x86::round_div`]); above it, it divides in f64.
const F32_MAX_DEN: u64 = 511;

/// Largest reduced output rate `den` the vector kernel serves (11.025 k ->
/// 48 k needs 640, 11.025 k -> 192 k 2560), so that its tables stay below
/// 57 KiB (stereo: 12 bytes per phase plus 2 per remainder).
const PHASED_MAX_DEN: u64 = 4096;

/// The outputs' positions repeat every `den` outputs (`num` input frames
/// further on): output `t` of a period sits at input frame
/// `floor(t * num / den)` of the period with remainder `t * num % den`.
/// These tables hold that per phase `t`, for the vector kernel.
#[derive(Debug, Clone)]
struct Phases {
    /// Input frame of phase `t` counted from its period's first frame, for
    /// `t < den + LANES` (a step of the kernel starts at any `t < den`).
    /// Never changed after [`Phases::new`]: the kernel's unchecked loads
    /// rely on these being the outputs' exact positions.
    frame: Vec<u32>,
    /// Interpolation weights of phase `t`, `(den - rem) | rem << 16` (the
    /// i16 pair that `pmaddwd` multiplies with `(in[k], in[k + 1])`), once
    /// per channel: the kernel loads a step's lanes in one go.
    weights: Vec<u32>,
    /// The phase whose remainder is `rem`, indexed by `rem` (`num` and
    /// `den` are coprime, so each remainder has exactly one phase).
    phase_of_rem: Vec<u16>,
}

impl Phases {
    /// Tables for rates reduced to `num / den` and `channels` channels, or
    /// `None` where the scalar path serves: no vector kernel on this
    /// architecture, more than two channels, `den == 1` (whole-frame steps,
    /// a strided copy) or `den` past [`PHASED_MAX_DEN`].
    fn new(num: u64, den: u64, channels: usize) -> Option<Phases> {
        if !cfg!(all(target_arch = "x86_64", target_feature = "sse2"))
            || !(1..=2).contains(&channels)
            || !(2..=PHASED_MAX_DEN).contains(&den)
        {
            return None;
        }
        let len = den as usize + LANES;
        let mut phases = Phases {
            frame: Vec::with_capacity(len),
            weights: Vec::with_capacity(len * channels),
            phase_of_rem: vec![0; den as usize],
        };
        for t in 0..len as u64 {
            let (frame, rem) = ((t * num / den) as u32, t * num % den);
            phases.frame.push(frame);
            let weight = (den - rem) as u32 | (rem as u32) << 16;
            phases.weights.extend(std::iter::repeat_n(weight, channels));
            if t < den {
                phases.phase_of_rem[rem as usize] = t as u16;
            }
        }
        Some(phases)
    }
}

/// Resampler state for one stream.
#[derive(Debug, Clone)]
pub struct Resampler {
    channels: usize,
    in_rate: u32,
    out_rate: u32,
    /// Rates divided by their gcd: a position is `k + rem / den`.
    num: u64,
    den: u64,
    step_int: u64,
    step_rem: u64,
    /// `ceil(2^64 / (2 * den))`: divides by `2 * den` with one multiply
    /// (exact for every numerator the interpolation produces, see `interp`).
    magic: u64,
    /// Tables of the vector kernel, when it can run for these rates.
    phases: Option<Phases>,
    /// Last frame of the previous chunk: `in[k]` when output `k` straddles
    /// a chunk boundary.
    prev: Vec<i16>,
    /// Integer part of the next output's position, counted in input frames
    /// since the last reset.
    k: u64,
    /// Fractional part of that position, in units of `1 / den`.
    rem: u64,
    /// Input frames taken and output frames produced since the last reset.
    frames_in: u64,
    frames_out: u64,
    /// Reused by `process_s16le`; they grow to the largest buffer seen.
    scratch_in: Vec<i16>,
    scratch_out: Vec<i16>,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz for `channels`
    /// interleaved channels.
    pub fn new(in_rate: u32, out_rate: u32, channels: usize) -> Result<Self, Error> {
        for r in [in_rate, out_rate] {
            if !(1..=MAX_RATE).contains(&r) {
                return Err(Error::Rate(r));
            }
        }
        if channels == 0 {
            return Err(Error::Channels);
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let (num, den) = (u64::from(in_rate) / g, u64::from(out_rate) / g);
        Ok(Resampler {
            channels,
            in_rate,
            out_rate,
            num,
            den,
            step_int: num / den,
            step_rem: num % den,
            magic: (1u128 << 64).div_ceil(u128::from(2 * den)) as u64,
            phases: Phases::new(num, den, channels),
            prev: vec![0; channels],
            k: 0,
            rem: 0,
            frames_in: 0,
            frames_out: 0,
            scratch_in: Vec::new(),
            scratch_out: Vec::new(),
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Input frames taken since the last reset.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames produced since the last reset (drain included).
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Forgets the stream: the next input frame is input frame 0 again.
    pub fn reset(&mut self) {
        self.k = 0;
        self.rem = 0;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    /// Exactly how many frames the next `process` of `n_frames` input frames
    /// produces: every output whose right neighbour `in[k + 1]` is known.
    pub fn output_frames(&self, n_frames: usize) -> usize {
        let known = self.frames_in.saturating_add(n_frames as u64);
        // Output j of this call needs k_j + 1 < known, i.e. (with k_j =
        // k + (rem + j * num) / den) rem + j * num < (known - 1 - k) * den.
        // The next output's k lies at most one frame before this chunk, so
        // that product is about the chunk's length times den: 64 bits
        // suffice (a 128-bit division would be a library call per buffer).
        let Some(ahead) = known.checked_sub(1).and_then(|l| l.checked_sub(self.k)) else {
            return 0;
        };
        match ahead.checked_mul(self.den) {
            Some(room) => room.saturating_sub(self.rem).div_ceil(self.num) as usize,
            None => (u128::from(ahead) * u128::from(self.den) - u128::from(self.rem))
                .div_ceil(u128::from(self.num)) as usize,
        }
    }

    /// Output frames the whole signal has so far: `round_half_even(frames_in
    /// * out / in)`, at least 1 once there is input.
    fn whole_len(&self) -> u64 {
        if self.frames_in == 0 {
            return 0;
        }
        let n = u128::from(self.frames_in) * u128::from(self.den);
        (div_round_half_even(n, u128::from(self.num)) as u64).max(1)
    }

    /// Frames [`drain`](Self::drain) would emit: the held last frame, up to
    /// the whole-signal length.
    pub fn drain_frames(&self) -> usize {
        self.whole_len().saturating_sub(self.frames_out) as usize
    }

    /// One interpolated sample, `a + (b - a) * rem / den` rounded half to
    /// even. Between two i16 values it cannot leave the i16 range, so the
    /// formula's clamp never bites.
    #[inline(always)]
    fn interp(&self, a: i16, b: i16, rem: u64) -> i16 {
        let den = self.den as i64;
        let d = i64::from(b) - i64::from(a);
        // Shifted by 32768 so everything is non-negative and parity (hence
        // half-to-even) is kept.
        let v = (i64::from(a) + 32768) * den + d * rem as i64;
        // round(v / den) = floor((2v + den) / 2den); the numerator is below
        // 2^17 * den and the divisor 2 * den, so the product of the two is
        // far below 2^64 and the multiply by `magic` is exact.
        let n = (2 * v + den) as u64;
        let q = ((u128::from(n) * u128::from(self.magic)) >> 64) as u64;
        let exact_tie = (n - q * 2 * self.den == 0) as u64;
        // A tie was rounded up; half to even steps back from an odd result.
        let q = q - (exact_tie & q & 1);
        (q as i64 - 32768) as i16
    }

    #[inline(always)]
    fn advance(&self, k: &mut u64, rem: &mut u64) {
        *rem += self.step_rem;
        let carry = (*rem >= self.den) as u64;
        *rem -= carry * self.den;
        *k += self.step_int + carry;
    }

    /// Resamples the `n_frames` frames of `input` into the first `count`
    /// (its [`output_frames`](Self::output_frames)) of `output`.
    fn run(
        &mut self,
        input: &[i16],
        n_frames: usize,
        count: usize,
        output: &mut [i16],
    ) -> Result<usize, Error> {
        let ch = self.channels;
        if count * ch > output.len() {
            return Err(Error::OutputTooShort(count * ch, output.len()));
        }
        let base = self.frames_in;
        let (mut k, mut rem) = (self.k, self.rem);
        let mut o = 0;
        // Outputs between the previous chunk's last frame and this chunk's
        // first (k == base - 1).
        while o < count && k < base {
            for c in 0..ch {
                output[o * ch + c] = self.interp(self.prev[c], input[c], rem);
            }
            self.advance(&mut k, &mut rem);
            o += 1;
        }
        // The bulk. The vector kernel takes whole steps of LANES samples;
        // the scalar loops below finish the last few outputs (or all of
        // them where the kernel does not serve).
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if let Some(phases) = &self.phases {
            x86::clear_upper_state();
            let (num, f64) = (self.num, self.den > F32_MAX_DEN);
            // SAFETY: the kernel only needs SSE2, which this cfg guarantees.
            unsafe {
                o = match (ch, f64) {
                    (1, false) => phases
                        .interior::<1, false>(num, input, output, o, count, base, &mut k, &mut rem),
                    (1, true) => phases
                        .interior::<1, true>(num, input, output, o, count, base, &mut k, &mut rem),
                    (2, false) => phases
                        .interior::<2, false>(num, input, output, o, count, base, &mut k, &mut rem),
                    (2, true) => phases
                        .interior::<2, true>(num, input, output, o, count, base, &mut k, &mut rem),
                    _ => o,
                }
            }
        }
        // The channel count is a constant where it is common so the
        // per-frame channel loop unrolls.
        match ch {
            1 => self.interior(1, input, output, o, count, base, &mut k, &mut rem),
            2 => self.interior(2, input, output, o, count, base, &mut k, &mut rem),
            _ => self.interior(ch, input, output, o, count, base, &mut k, &mut rem),
        }
        if n_frames > 0 {
            let last = (n_frames - 1) * ch;
            self.prev.copy_from_slice(&input[last..last + ch]);
        }
        self.k = k;
        self.rem = rem;
        self.frames_in += n_frames as u64;
        self.frames_out += count as u64;
        Ok(count)
    }

    /// Outputs `o..count`, all of whose neighbours lie in this chunk.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn interior(
        &self,
        ch: usize,
        input: &[i16],
        output: &mut [i16],
        mut o: usize,
        count: usize,
        base: u64,
        k: &mut u64,
        rem: &mut u64,
    ) {
        if self.den == 1 {
            // Integer downsampling (48 k -> 8 k, 16 k -> 8 k): every output
            // sits exactly on an input frame, f = 0, so it is that frame.
            // Iterators rather than indices: no bounds check per sample.
            if o < count {
                let step = self.step_int as usize * ch;
                let from = &input[(*k - base) as usize * ch..];
                let to = &mut output[o * ch..count * ch];
                if ch == 1 {
                    // The common steps as constants: an output is then one
                    // load and one store at a fixed offset.
                    let done = match step {
                        2 => decimate::<2>(from, to),
                        3 => decimate::<3>(from, to),
                        4 => decimate::<4>(from, to),
                        6 => decimate::<6>(from, to),
                        _ => 0,
                    };
                    let rest = from[done * step..].iter().step_by(step);
                    for (to, from) in to[done..].iter_mut().zip(rest) {
                        *to = *from;
                    }
                } else {
                    for (to, frame) in to.chunks_exact_mut(ch).zip(from.chunks(step)) {
                        to.copy_from_slice(&frame[..ch]);
                    }
                }
                *k += (count - o) as u64 * self.step_int;
            }
            return;
        }
        if self.num < self.den {
            // Upsampling: each input interval [k, k+1] yields one or more
            // outputs; walk the intervals so their frames load once and the
            // only carried state is the remainder.
            while o < count {
                let i = (*k - base) as usize * ch;
                while *rem < self.den && o < count {
                    for c in 0..ch {
                        let v = self.interp(input[i + c], input[i + ch + c], *rem);
                        output[o * ch + c] = v;
                    }
                    *rem += self.num;
                    o += 1;
                }
                if *rem >= self.den {
                    *rem -= self.den;
                    *k += 1;
                }
            }
            return;
        }
        while o < count {
            let i = (*k - base) as usize * ch;
            for c in 0..ch {
                let v = self.interp(input[i + c], input[i + ch + c], *rem);
                output[o * ch + c] = v;
            }
            self.advance(k, rem);
            o += 1;
        }
    }

    /// Frames in `len` units of `unit_bytes` bytes each (2: samples, 1:
    /// bytes).
    fn check_frames(&self, len: usize, unit_bytes: usize) -> Result<usize, Error> {
        let frame = self.channels * 2 / unit_bytes;
        if !len.is_multiple_of(frame) {
            let unit = if unit_bytes == 2 { "sample" } else { "byte" };
            return Err(Error::PartialFrame { len, frame, unit });
        }
        Ok(len / frame)
    }

    /// Resamples the next chunk of interleaved samples; returns the frames
    /// written to `output` ([`output_frames`](Self::output_frames) of them).
    /// On error nothing changes.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, Error> {
        let n = self.check_frames(input.len(), 2)?;
        self.run(input, n, self.output_frames(n), output)
    }

    /// [`process`](Self::process) over S16LE bytes.
    pub fn process_s16le(&mut self, input: &[u8], output: &mut [u8]) -> Result<usize, Error> {
        let n = self.check_frames(input.len(), 1)?;
        let count = self.output_frames(n);
        let samples = count * self.channels;
        if samples > output.len() / 2 {
            return Err(Error::OutputTooShort(samples, output.len() / 2));
        }
        #[cfg(target_endian = "little")]
        {
            // SAFETY: every bit pattern is a valid i16; align_to only hands
            // out the correctly aligned middle part.
            let (ip, iv, is) = unsafe { input.align_to::<i16>() };
            let (op, ov, _) = unsafe { output.align_to_mut::<i16>() };
            if ip.is_empty() && is.is_empty() && op.is_empty() {
                // Buffers are 2-aligned in practice (system memory is):
                // read and write them in place, no intermediate copies.
                return self.run(iv, n, count, ov);
            }
        }
        // Unaligned: converting to and from i16 in reused scratch buffers
        // costs less than unaligned byte access inside the loop (these
        // conversions compile to plain copies on little-endian machines).
        let mut si = std::mem::take(&mut self.scratch_in);
        let mut so = std::mem::take(&mut self.scratch_out);
        si.clear();
        si.extend(
            input
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        so.clear();
        so.resize(samples, 0);
        let done = self.run(&si, n, count, &mut so);
        for (o, v) in output.chunks_exact_mut(2).zip(&so) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        self.scratch_in = si;
        self.scratch_out = so;
        done
    }

    fn drain_into<O: Output + ?Sized>(
        &mut self,
        output: &mut O,
        cap: usize,
    ) -> Result<usize, Error> {
        let n = self.drain_frames();
        let ch = self.channels;
        if n * ch > cap {
            return Err(Error::OutputTooShort(n * ch, cap));
        }
        for o in 0..n {
            for c in 0..ch {
                output.set(o * ch + c, self.prev[c]);
            }
        }
        self.frames_out += n as u64;
        Ok(n)
    }

    /// End of signal: writes the held tail ([`drain_frames`](Self::drain_frames)
    /// frames of the last input frame) and returns its frame count. The
    /// stream can continue afterwards only after a [`reset`](Self::reset).
    pub fn drain(&mut self, output: &mut [i16]) -> Result<usize, Error> {
        let cap = output.len();
        self.drain_into(output, cap)
    }

    /// [`drain`](Self::drain) into S16LE bytes.
    pub fn drain_s16le(&mut self, output: &mut [u8]) -> Result<usize, Error> {
        let cap = output.len() / 2;
        self.drain_into(&mut Le(output), cap)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Phases {
    /// [`Resampler::interior`] for `CH` channels, `LANES / CH` output frames
    /// a step, dividing in f64 if `F64` (in f32 else, which needs `den <=`
    /// [`F32_MAX_DEN`]): outputs `o..` while a whole step fits before
    /// `count`; returns the next output and leaves `k`, `rem` at its
    /// position.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "sse2")]
    fn interior<const CH: usize, const F64: bool>(
        &self,
        num: u64,
        input: &[i16],
        output: &mut [i16],
        o: usize,
        count: usize,
        base: u64,
        k: &mut u64,
        rem: &mut u64,
    ) -> usize {
        let frames = LANES / CH;
        if o + frames > count {
            // Also where the chunk ends before output o's left neighbour:
            // k may lie before the chunk then.
            return o;
        }
        let den = self.phase_of_rem.len();
        let divisor = x86::divisor(den);
        let mut t = usize::from(self.phase_of_rem[*rem as usize]);
        // Chunk frame where the period of phase t starts; it can lie before
        // the chunk (below zero), the outputs' own frames never do.
        let mut start = (*k - base) as isize - self.frame[t] as isize;
        let steps = (count - o) / frames;
        let n = steps * frames;
        // Left neighbour of the last output the loop writes, exactly. Every
        // output before `count` has its right neighbour in this chunk, so
        // this holds; checked anyway, as the unchecked loads rely on it.
        // (k * den + rem + (n - 1) * num) / den, with rem < den.
        let Some(k_last) = (n as u64 - 1)
            .checked_mul(num)
            .and_then(|span| span.checked_add(*rem))
            .map(|to_last| *k + to_last / den as u64)
        else {
            return o;
        };
        if k_last + 1 >= base + (input.len() / CH) as u64 {
            return o;
        }
        for out in output[o * CH..(o + n) * CH].chunks_exact_mut(LANES) {
            let frame = &self.frame[t..t + LANES];
            // Frames k and k + 1 of output o + j.
            let neighbours = |j: usize| {
                let at = (start + frame[j] as isize) as usize * CH;
                // SAFETY: start + frame[t + j] is exactly k of this output
                // (`frame[t]` is floor(t * num / den) and `start` steps by
                // num each period), and outputs' k grow with the output: it
                // lies between the first output's k (>= base, the
                // chunk start) and k_last (< base + frames in the chunk - 1,
                // checked above), so frames k and k + 1 lie in `input`.
                unsafe { input.get_unchecked(at..at + 2 * CH) }
            };
            let pairs = if CH == 1 {
                x86::pairs_mono(std::array::from_fn(|j| {
                    let s = neighbours(j);
                    u32::from(s[0] as u16) | u32::from(s[1] as u16) << 16
                }))
            } else {
                x86::pairs_stereo(std::array::from_fn(|j| {
                    let s = neighbours(j);
                    s.iter()
                        .rev()
                        .fold(0, |q, &v| q << 16 | u64::from(v as u16))
                }))
            };
            let weights = (&self.weights[t * CH..t * CH + LANES])
                .try_into()
                .expect("LANES weights");
            let out = out.try_into().expect("LANES samples");
            x86::lerp8::<F64>(pairs, weights, divisor, out);
            t += frames;
            // A step can span more than one period when den < LANES.
            while t >= den {
                t -= den;
                start += num as isize;
            }
        }
        *k = base + (start + self.frame[t] as isize) as u64;
        *rem = u64::from(self.weights[t * CH] >> 16);
        o + n
    }
}

/// The vector kernel's arithmetic, SSE2 (in the x86_64 baseline, so every
/// such CPU has it).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod x86 {
    use std::arch::x86_64::*;

    /// Clears the upper halves of the AVX registers. This kernel is legacy
    /// SSE code, which runs several times slower while other code (an
    /// AVX-compiled `audioresample` on the same thread, say) has left them
    /// dirty: 41 µs instead of 10.6 µs per second of 8 k → 48 k audio,
    /// measured. One `vzeroupper` per call ends that for the whole call.
    #[inline]
    pub(super) fn clear_upper_state() {
        #[target_feature(enable = "avx")]
        fn vzeroupper() {
            _mm256_zeroupper();
        }
        if is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            unsafe { vzeroupper() }
        }
    }

    /// `den` as [`round_div`] wants it, in both widths.
    #[derive(Clone, Copy)]
    pub(super) struct Divisor {
        f32: __m128,
        f64: __m128d,
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn divisor(den: usize) -> Divisor {
        Divisor {
            f32: _mm_set1_ps(den as f32),
            f64: _mm_set1_pd(den as f64),
        }
    }

    /// Eight mono samples' neighbours `in[k] | in[k + 1] << 16` as two
    /// registers of four.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn pairs_mono(p: [u32; 8]) -> [__m128i; 2] {
        let v = |i: usize| {
            _mm_set_epi32(
                p[i + 3] as i32,
                p[i + 2] as i32,
                p[i + 1] as i32,
                p[i] as i32,
            )
        };
        [v(0), v(4)]
    }

    /// Four stereo frames' neighbours, from the 64 bits of frames `k` and
    /// `k + 1` (`L R L' R'`), as two registers of `L | L' << 16`,
    /// `R | R' << 16` per frame.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn pairs_stereo(q: [u64; 4]) -> [__m128i; 2] {
        let v = |i: usize| {
            let lrlr = _mm_set_epi64x(q[i + 1] as i64, q[i] as i64);
            // Words 0 2 1 3 of each half: L L' R R'.
            _mm_shufflehi_epi16::<0xD8>(_mm_shufflelo_epi16::<0xD8>(lrlr))
        };
        [v(0), v(2)]
    }

    /// `round_half_even(x / den)` per lane for `|x| <= 32768 * den`, exact
    /// in f64 for every `den` the weights allow (`<= 32767`), and in f32
    /// (`!F64`, twice the lanes per division) for `2 <= den <= 511`:
    ///
    /// - `x` and `den` are below 2^24 in magnitude, so they convert to f32
    ///   exactly, and `divps` rounds the true quotient `q` once, to nearest.
    /// - `|q| <= 32768`; below 2^15 an f32 ulp is at most 2^-9, so the
    ///   division errs by at most 2^-10 (and not at all at -32768).
    /// - `q = n / den` for an integer `n`, so it is either exactly half-way
    ///   between two integers (then representable, and divided exactly) or
    ///   at least `1 / (2 * den)` from every half-way point; `den < 512`
    ///   makes that more than 2^-10, so the rounded quotient stays on the
    ///   same side of it and rounds to the same integer.
    /// - `cvtps2dq` rounds to nearest, ties to even: the default rounding
    ///   mode, which Rust code never changes.
    ///
    /// In f64 the same argument holds with an error of at most 2^-39 (half
    /// an ulp below 2^15) against a distance of at least 2^-16, and `x`
    /// (below 2^30) converts exactly.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn round_div<const F64: bool>(x: __m128i, den: Divisor) -> __m128i {
        if F64 {
            let half = |x: __m128i| _mm_cvtpd_epi32(_mm_div_pd(_mm_cvtepi32_pd(x), den.f64));
            // Lanes 0 1, then 2 3, each back in the low half.
            let lo = half(x);
            let hi = half(_mm_unpackhi_epi64(x, x));
            _mm_unpacklo_epi64(lo, hi)
        } else {
            _mm_cvtps_epi32(_mm_div_ps(_mm_cvtepi32_ps(x), den.f32))
        }
    }

    /// `round_half_even((a * (den - rem) + b * rem) / den)` for eight lanes
    /// of `pairs` `a | b << 16` and `weights` `(den - rem) | rem << 16`.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn lerp8<const F64: bool>(
        pairs: [__m128i; 2],
        weights: &[u32; 8],
        den: Divisor,
        out: &mut [i16; 8],
    ) {
        // SAFETY: `weights` is 32 readable bytes; `loadu` needs no alignment.
        let (w0, w1) = unsafe {
            (
                _mm_loadu_si128(weights.as_ptr().cast()),
                _mm_loadu_si128(weights[4..].as_ptr().cast()),
            )
        };
        // a * (den - rem) + b * rem, exact in i32: |a|, |b| <= 2^15 and the
        // weights sum to den.
        let lo = _mm_madd_epi16(pairs[0], w0);
        let hi = _mm_madd_epi16(pairs[1], w1);
        // Interpolated values lie between two i16, so the saturating pack
        // never saturates.
        let r = _mm_packs_epi32(round_div::<F64>(lo, den), round_div::<F64>(hi, den));
        // SAFETY: `out` is 16 writable bytes and `storeu` needs no alignment.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), r) }
    }
}

/// Resamples a whole signal at once: the formula in the module docs.
pub fn resample(
    input: &[i16],
    channels: usize,
    in_rate: u32,
    out_rate: u32,
) -> Result<Vec<i16>, Error> {
    let mut r = Resampler::new(in_rate, out_rate, channels)?;
    let n = r.check_frames(input.len(), 2)?;
    let mut out = vec![0; r.output_frames(n) * channels];
    r.process(input, &mut out)?;
    let mut tail = vec![0; r.drain_frames() * channels];
    r.drain(&mut tail)?;
    out.extend_from_slice(&tail);
    // When downsampling, the interpolated outputs can run past the rounded
    // whole-signal length; the formula stops there.
    out.truncate(r.whole_len() as usize * channels);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::SplitMix64;

    /// The formula as librtpsynth writes it, in f64.
    fn reference(input: &[i16], ch: usize, in_rate: u32, out_rate: u32) -> Vec<i16> {
        let n_in = input.len() / ch;
        if n_in == 0 {
            return Vec::new();
        }
        let n_out =
            ((n_in as f64 * out_rate as f64 / in_rate as f64).round_ties_even() as usize).max(1);
        let r = in_rate as f64 / out_rate as f64;
        let mut out = Vec::with_capacity(n_out * ch);
        for i in 0..n_out {
            let pos = i as f64 * r;
            let k = pos.floor() as usize;
            let f = pos - k as f64;
            for c in 0..ch {
                let v = if k >= n_in - 1 {
                    input[(n_in - 1) * ch + c] as f64
                } else {
                    let a = input[k * ch + c] as f64;
                    let b = input[(k + 1) * ch + c] as f64;
                    a + (b - a) * f
                };
                out.push(v.round_ties_even().clamp(-32768.0, 32767.0) as i16);
            }
        }
        out
    }

    fn noise(rng: &mut SplitMix64, n: usize) -> Vec<i16> {
        (0..n).map(|_| rng.next_u32() as i16).collect()
    }

    /// Streams `input` in chunks of the given frame sizes, then drains.
    fn streamed(r: &mut Resampler, input: &[i16], chunks: &[usize]) -> Vec<i16> {
        let ch = r.channels();
        let mut out = Vec::new();
        let mut at = 0;
        for &c in chunks {
            let part = &input[at * ch..(at + c) * ch];
            let mut buf = vec![0; r.output_frames(c) * ch];
            assert_eq!(r.process(part, &mut buf).unwrap() * ch, buf.len());
            out.extend_from_slice(&buf);
            at += c;
        }
        let mut tail = vec![0; r.drain_frames() * ch];
        r.drain(&mut tail).unwrap();
        out.extend_from_slice(&tail);
        out
    }

    /// Streams `input` in `tries` random splits after a reset each, and
    /// requires `whole` from each.
    fn assert_splits_give(
        r: &mut Resampler,
        rng: &mut SplitMix64,
        input: &[i16],
        whole: &[i16],
        tries: usize,
    ) {
        let n = input.len() / r.channels();
        for _ in 0..tries {
            r.reset();
            let chunks = random_chunks(rng, n);
            let (a, b) = (r.in_rate(), r.out_rate());
            assert_eq!(streamed(r, input, &chunks), whole, "{a}->{b} {chunks:?}");
        }
    }

    fn random_chunks(rng: &mut SplitMix64, mut frames: usize) -> Vec<usize> {
        let mut v = Vec::new();
        while frames > 0 {
            // Zero-length chunks are allowed and must change nothing.
            let c = (rng.below(40) as usize).min(frames);
            v.push(c);
            frames -= c;
        }
        v
    }

    const RATES: [u32; 12] = [
        1, 7, 8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000, 383_999, 384_000,
    ];

    /// Whether output `i` of the exact formula sits exactly half-way between
    /// two integers (rational arithmetic, no floats).
    fn exact_tie(
        input: &[i16],
        ch: usize,
        c: usize,
        i: usize,
        in_rate: u32,
        out_rate: u32,
    ) -> bool {
        let n_in = input.len() / ch;
        let p = i as u128 * u128::from(in_rate);
        let (k, rem) = (
            (p / u128::from(out_rate)) as usize,
            p % u128::from(out_rate),
        );
        if k >= n_in - 1 {
            return false;
        }
        let a = i128::from(input[k * ch + c]);
        let d = i128::from(input[(k + 1) * ch + c]) - a;
        let num = a * i128::from(out_rate) + d * rem as i128;
        (2 * num).rem_euclid(2 * i128::from(out_rate)) == i128::from(out_rate)
    }

    #[test]
    fn matches_f64_reference_except_at_exact_ties() {
        let mut rng = SplitMix64::new(4);
        let mut ties_off = 0;
        for &a in &RATES {
            for &b in &RATES {
                for ch in [1, 2] {
                    // Short outputs: 1 Hz -> 384 kHz makes 384 000 per frame.
                    let max_n = (60 * u64::from(a) / u64::from(b)).clamp(1, 60) as u32;
                    let n = 1 + rng.below(max_n) as usize;
                    let input = noise(&mut rng, n * ch);
                    let ours = resample(&input, ch, a, b).unwrap();
                    let theirs = reference(&input, ch, a, b);
                    assert_eq!(ours.len(), theirs.len(), "{a}->{b} ch {ch} n {n}");
                    for (j, (x, y)) in ours.iter().zip(&theirs).enumerate() {
                        if x != y {
                            // f64's `i * r` can land a hair off an exact
                            // half-way point and round the other way; we
                            // round the exact value half to even.
                            assert_eq!((*x as i32 - *y as i32).abs(), 1, "{a}->{b}");
                            assert!(
                                exact_tie(&input, ch, j % ch, j / ch, a, b),
                                "{a}->{b} at {j}"
                            );
                            assert_eq!(x % 2, 0, "{a}->{b} at {j}: ties go to even");
                            ties_off += 1;
                        }
                    }
                }
            }
        }
        // The two agree almost everywhere.
        assert!(ties_off < 20, "{ties_off}");
    }

    #[test]
    fn exact_on_ties_where_f64_is_exact() {
        // 8 k -> 16 k: every other output sits half-way, f = 0.5 exactly in
        // f64 too, so ties must round to even exactly as rint() does.
        let input = [0i16, 1, 2, 3, -1, -4, 32767, -32768];
        let out = resample(&input, 1, 8_000, 16_000).unwrap();
        assert_eq!(out, reference(&input, 1, 8_000, 16_000));
        assert_eq!(
            out,
            [
                0, 0, 1, 2, 2, 2, 3, 1, -1, -2, -4, 16382, 32767, 0, -32768, -32768
            ]
        );
    }

    #[test]
    fn any_split_gives_the_whole_signal() {
        let mut rng = SplitMix64::new(7);
        for &(a, b) in &[
            (8_000, 48_000),
            (48_000, 8_000),
            (44_100, 48_000),
            (48_000, 44_100),
            (1, 384_000),
            (384_000, 1),
            (11_025, 7),
            (16_000, 16_000),
        ] {
            for ch in [1, 3] {
                let max_n = (400 * u64::from(a) / u64::from(b)).clamp(2, 400) as u32;
                let n = 1 + rng.below(max_n) as usize;
                let input = noise(&mut rng, n * ch);
                let mut r = Resampler::new(a, b, ch).unwrap();
                let whole = streamed(&mut r, &input, &[n]);
                assert_splits_give(&mut r, &mut rng, &input, &whole, 5);
                // The whole-signal function is the streamed output cut to the
                // rounded length (downsampling can interpolate one frame
                // past it before the end is known).
                let exact = resample(&input, ch, a, b).unwrap();
                assert!(whole.starts_with(&exact), "{a}->{b}");
                assert!(whole.len() - exact.len() <= ch, "{a}->{b}");
            }
        }
    }

    #[test]
    fn whole_frame_steps_copy_every_step_th_frame_in_any_split() {
        // Integer downsampling copies frames; steps 2, 3, 4 and 6 take a
        // path of their own, in groups of eight with the rest one by one.
        let mut rng = SplitMix64::new(11);
        for step in 1..=13u32 {
            for ch in [1, 2] {
                let n = 1 + rng.below(50 * step) as usize;
                let input = noise(&mut rng, n * ch);
                let mut r = Resampler::new(8_000 * step, 8_000, ch).unwrap();
                let whole = streamed(&mut r, &input, &[n]);
                // Frame j * step, the last frame held past the end, for
                // round-half-even(n / step) frames, or as many as had their
                // right neighbour (j * step + 1 < n) before the end was known.
                let (q, rest) = (n / step as usize, n % step as usize);
                let len = q + usize::from(
                    2 * rest > step as usize || (2 * rest == step as usize && q % 2 == 1),
                );
                let interior = if n >= 2 {
                    (n - 2) / step as usize + 1
                } else {
                    0
                };
                let expected: Vec<i16> = (0..len.max(interior).max(1))
                    .flat_map(|j| {
                        let k = (j * step as usize).min(n - 1);
                        input[k * ch..(k + 1) * ch].to_vec()
                    })
                    .collect();
                assert_eq!(whole, expected, "step {step} ch {ch} n {n}");
                assert_splits_give(&mut r, &mut rng, &input, &whole, 3);
            }
        }
    }

    #[test]
    fn output_frames_is_exact_on_64_bits_and_past_them() {
        // The count by its definition, all in 128 bits: outputs j with
        // k * den + rem + j * num < (known - 1) * den.
        fn by_definition(r: &Resampler, n: usize) -> usize {
            let known = u128::from(r.frames_in) + n as u128;
            let limit = known.saturating_sub(1) * u128::from(r.den);
            let start = u128::from(r.k) * u128::from(r.den) + u128::from(r.rem);
            limit.saturating_sub(start).div_ceil(u128::from(r.num)) as usize
        }
        let mut rng = SplitMix64::new(12);
        for &(a, b) in &[
            (48_000, 8_000),
            (8_000, 48_000),
            (44_100, 48_000),
            (1, 384_000),
        ] {
            let mut r = Resampler::new(a, b, 1).unwrap();
            // Ordinary states, then ones where the frames ahead times den
            // pass 2^64 (a stream position no real stream reaches, set by
            // hand) and the 128-bit path counts.
            for huge in [false, true] {
                for _ in 0..200 {
                    r.frames_in = if huge {
                        u64::MAX / 2
                    } else {
                        rng.below(100_000).into()
                    };
                    r.k = if huge {
                        0
                    } else {
                        r.frames_in.saturating_sub(1)
                    };
                    r.rem = rng.below(r.den as u32).into();
                    let n = rng.below(10_000) as usize;
                    assert_eq!(r.output_frames(n), by_definition(&r, n), "{a}->{b} {huge}");
                }
            }
        }
    }

    #[test]
    fn no_drift_over_a_long_stream() {
        // Ten minutes of 44.1 k -> 48 k in one-second chunks: the position
        // after n input frames stays exactly n * 48000 / 44100.
        let mut r = Resampler::new(44_100, 48_000, 1).unwrap();
        let chunk = vec![0i16; 44_100];
        let mut out = vec![0i16; 48_001];
        for _ in 0..600 {
            r.process(&chunk, &mut out).unwrap();
        }
        let n = 600 * 44_100u64;
        // Outputs produced: every i with floor(i * 44100 / 48000) < n - 1.
        assert_eq!(r.frames_out(), ((n - 1) * 48_000).div_ceil(44_100));
        assert_eq!(r.drain_frames() as u64 + r.frames_out(), 600 * 48_000);
    }

    #[test]
    fn equal_rates_copy_and_constant_signals_stay_constant() {
        let mut rng = SplitMix64::new(9);
        let input = noise(&mut rng, 100);
        assert_eq!(resample(&input, 2, 8_000, 8_000).unwrap(), input);
        let flat = vec![-1234i16; 90];
        for &(a, b) in &[(8_000, 48_000), (48_000, 8_000), (44_100, 8_000)] {
            let out = resample(&flat, 1, a, b).unwrap();
            assert!(out.iter().all(|&v| v == -1234));
        }
    }

    #[test]
    fn s16le_matches_i16_aligned_or_not() {
        let mut rng = SplitMix64::new(11);
        let input = noise(&mut rng, 2 * 301);
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        // In-place access when both byte slices are 2-aligned, scratch
        // copies otherwise: each of the four cases gives the same samples.
        for (in_shift, out_shift) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let mut a = Resampler::new(48_000, 8_000, 2).unwrap();
            let mut b = a.clone();
            let n = a.output_frames(301);
            let mut in_store = vec![0u8; bytes.len() + 1];
            in_store[in_shift..in_shift + bytes.len()].copy_from_slice(&bytes);
            let in_bytes = &in_store[in_shift..in_shift + bytes.len()];
            let mut out_store = vec![0u8; n * 4 + 1];
            let mut out_a = vec![0i16; n * 2];
            assert_eq!(a.process(&input, &mut out_a).unwrap(), n);
            let out_b = &mut out_store[out_shift..out_shift + n * 4];
            assert_eq!(b.process_s16le(in_bytes, out_b).unwrap(), n);
            let le: Vec<i16> = out_b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            assert_eq!(out_a, le, "shifts {in_shift} {out_shift}");
            let mut ta = vec![0i16; a.drain_frames() * 2];
            let mut tb = vec![0u8; b.drain_frames() * 4];
            a.drain(&mut ta).unwrap();
            b.drain_s16le(&mut tb).unwrap();
            assert_eq!(
                ta.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                tb
            );
        }
    }

    /// `round_half_even(x / den)` in exact integers.
    fn exact_round_div(x: i64, den: i64) -> i64 {
        let (q, r) = (x.div_euclid(den), x.rem_euclid(den));
        if 2 * r > den || (2 * r == den && q % 2 != 0) {
            q + 1
        } else {
            q
        }
    }

    /// The vector kernel's division against exact rounding, for every
    /// `den` it serves, on the numerators where floats could go wrong:
    /// every tie and its nearest neighbours, with quotients across the
    /// whole i16 range (largest rounding error near ±32768) and random ones.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn vector_division_rounds_exactly_for_every_den_it_serves() {
        let mut rng = SplitMix64::new(13);
        let mut quotients: Vec<i64> = (-32768..-32700)
            .chain(-16400..-16370)
            .chain(-8..8)
            .chain(16370..16400)
            .chain(32700..32767)
            .collect();
        quotients.extend((0..40).map(|_| i64::from(rng.next_u32() as i16)));
        for den in 2..=F32_MAX_DEN as i64 {
            check_round_div::<false>(den, &quotients);
        }
        // f64 has 29 bits to spare: fewer quotients, every den.
        quotients.retain(|q| q.abs() > 32700 || rng.below(8) == 0);
        for den in 2..=PHASED_MAX_DEN as i64 {
            check_round_div::<true>(den, &quotients);
        }
    }

    /// `x86::round_div` against exact rounding at the ties near each of
    /// `quotients` (times `den`), their neighbours and the exact multiples.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn check_round_div<const F64: bool>(den: i64, quotients: &[i64]) {
        use std::arch::x86_64::*;
        // Safe to call: this test only builds where SSE2 is enabled.
        let divisor = unsafe { x86::divisor(den as usize) };
        let mut xs = Vec::new();
        for &m in quotients {
            // Half-way above m is (2m + 1) * den / 2: an integer (a tie)
            // when den is even, between two numerators when odd.
            let half = ((2 * m + 1) * den).div_euclid(2);
            xs.extend((half - 2..=half + 2).chain(m * den - 1..=m * den + 1));
        }
        // Only numerators interpolation can produce: quotient in i16.
        xs.retain(|&x| (-32768 * den..=32767 * den).contains(&x));
        for four in xs.chunks(4) {
            let mut lanes = [0i32; 4];
            for (lane, &x) in lanes.iter_mut().zip(four) {
                *lane = x as i32;
            }
            let got: [i32; 4] = unsafe {
                std::mem::transmute(x86::round_div::<F64>(
                    _mm_loadu_si128(lanes.as_ptr().cast()),
                    divisor,
                ))
            };
            for (&x, &g) in lanes.iter().zip(&got) {
                let want = exact_round_div(i64::from(x), den);
                assert_eq!(i64::from(g), want, "{x} / {den}, f64: {F64}");
            }
        }
    }

    /// The whole vector step (neighbour pairs, weights, multiply-add,
    /// division) against `interp`, for every `den` it serves and every
    /// phase of it (a sample of them past the f32 range), on extreme
    /// neighbours where rounding errs most.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn vector_step_matches_interp_on_every_phase() {
        let mut rng = SplitMix64::new(17);
        for den in 2..=PHASED_MAX_DEN as u32 {
            // Any num coprime to den: the weights depend on den and rem only.
            let r = Resampler::new(1, den, 1).unwrap();
            let divisor = unsafe { x86::divisor(den as usize) };
            let rems: Vec<u32> = if u64::from(den) <= F32_MAX_DEN {
                (0..den).collect()
            } else {
                [0, 1, den / 2, den - 1]
                    .into_iter()
                    .chain((0..16).map(|_| rng.below(den)))
                    .collect()
            };
            for rem in rems {
                let weight = (den - rem) | rem << 16;
                let mut pairs = [(0i16, 0i16); 8];
                for (i, p) in pairs.iter_mut().enumerate() {
                    let d = i as i16 + 1;
                    *p = match i % 4 {
                        0 => (32767, 32767 - d),
                        1 => (-32768, -32768 + d),
                        2 => (32767, -32768),
                        _ => (rng.next_u32() as i16, rng.next_u32() as i16),
                    };
                }
                let packed = pairs.map(|(a, b)| u32::from(a as u16) | u32::from(b as u16) << 16);
                let mut out = [0i16; 8];
                unsafe {
                    if u64::from(den) <= F32_MAX_DEN {
                        x86::lerp8::<false>(
                            x86::pairs_mono(packed),
                            &[weight; 8],
                            divisor,
                            &mut out,
                        );
                    } else {
                        x86::lerp8::<true>(
                            x86::pairs_mono(packed),
                            &[weight; 8],
                            divisor,
                            &mut out,
                        );
                    }
                }
                for (&(a, b), &v) in pairs.iter().zip(&out) {
                    assert_eq!(v, r.interp(a, b, u64::from(rem)), "{a} {b} {rem}/{den}");
                }
            }
        }
    }

    /// `resampler` streamed whole and in random chunks, with and without
    /// the vector kernel: all four outputs must be equal.
    fn check_vector_against_scalar(
        resampler: Resampler,
        input: &[i16],
        cuts: &[usize],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let ch = resampler.channels();
        let n = input.len() / ch;
        let mut chunks = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let c = c.min(n - at);
            chunks.push(c);
            at += c;
        }
        chunks.push(n - at);
        let mut scalar = resampler.clone();
        scalar.phases = None;
        let mut vector = resampler;
        let want = streamed(&mut scalar, input, &[n]);
        proptest::prop_assert_eq!(&streamed(&mut vector, input, &[n]), &want);
        for r in [&mut scalar, &mut vector] {
            r.reset();
            proptest::prop_assert_eq!(&streamed(r, input, &chunks), &want);
        }
        Ok(())
    }

    proptest::proptest! {
        /// Rates with a small reduced output rate (the vector kernel's:
        /// f32 below 512, f64 above), 1 to 3 channels (3 runs scalar),
        /// random signals and splits.
        #[test]
        fn vector_kernel_gives_the_scalar_output(
            num in 1u32..2_000,
            den in proptest::prop_oneof![
                2u32..=F32_MAX_DEN as u32,
                F32_MAX_DEN as u32 + 1..=PHASED_MAX_DEN as u32,
            ],
            ch in 1usize..=3,
            frames in 0usize..400,
            seed in proptest::prelude::any::<u64>(),
            cuts in proptest::collection::vec(0usize..64, 0..12),
        ) {
            let r = Resampler::new(num, den, ch).unwrap();
            if ch <= 2 && r.den > 1 && cfg!(target_arch = "x86_64") {
                proptest::prop_assert!(r.phases.is_some());
            }
            let mut rng = SplitMix64::new(seed);
            // Full-range noise, with runs of extremes and of equal samples.
            let input: Vec<i16> = (0..frames * ch)
                .map(|i| match (i / 7) % 4 {
                    0 => [32767, -32768][rng.below(2) as usize],
                    1 => 1234,
                    _ => rng.next_u32() as i16,
                })
                .collect();
            check_vector_against_scalar(r, &input, &cuts)?;
        }
    }

    #[test]
    fn vector_kernel_gives_the_scalar_output_for_common_rates() {
        let mut rng = SplitMix64::new(19);
        for &(a, b) in &[
            (8_000, 48_000),
            (16_000, 48_000),
            (8_000, 16_000),
            (44_100, 48_000),
            (48_000, 44_100),
            (8_000, 44_100),
            (22_050, 48_000),
            (48_000, 32_000),
            (11_025, 48_000),
            (44_100, 192_000),
        ] {
            for ch in [1, 2] {
                let n = 3_000;
                let input = noise(&mut rng, n * ch);
                let cuts: Vec<usize> = (0..20).map(|_| rng.below(400) as usize).collect();
                let r = Resampler::new(a, b, ch).unwrap();
                assert!(r.phases.is_some(), "{a}->{b}");
                check_vector_against_scalar(r, &input, &cuts).unwrap();
            }
        }
    }

    #[test]
    fn bad_input_is_refused_without_state_change() {
        assert_eq!(Resampler::new(0, 8_000, 1).unwrap_err(), Error::Rate(0));
        assert_eq!(
            Resampler::new(8_000, 384_001, 1).unwrap_err(),
            Error::Rate(384_001)
        );
        assert_eq!(
            Resampler::new(8_000, 8_000, 0).unwrap_err(),
            Error::Channels
        );
        let mut r = Resampler::new(8_000, 48_000, 2).unwrap();
        assert_eq!(
            r.process(&[1, 2, 3], &mut [0; 64]).unwrap_err().to_string(),
            "3 samples are not a whole number of 2-sample frames"
        );
        assert_eq!(
            r.process_s16le(&[1, 2, 3, 4, 5, 6], &mut [0; 64])
                .unwrap_err()
                .to_string(),
            "6 bytes are not a whole number of 4-byte frames"
        );
        assert_eq!(
            r.process(&[1, 2, 3, 4], &mut [0; 4]),
            Err(Error::OutputTooShort(12, 4))
        );
        assert_eq!((r.frames_in(), r.frames_out()), (0, 0));
        assert!(Error::Rate(0).to_string().contains("0 Hz"));
        assert_eq!(resample(&[], 1, 8_000, 16_000).unwrap(), Vec::<i16>::new());
        // A single frame is held for the whole (at least one frame) length.
        assert_eq!(resample(&[5], 1, 48_000, 8_000).unwrap(), [5]);
        assert_eq!(resample(&[5], 1, 8_000, 48_000).unwrap(), [5; 6]);
    }
}
