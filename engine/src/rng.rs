//! The engine's one seeded generator, SplitMix64 (Steele, Lea & Flood 2014): a fast,
//! well-mixed 64-bit generator, also used as a hash to derive seeds. Everything seeded
//! outside libtorch draws here (toy data, per-sample noise, the metrics' random subsets),
//! so results never depend on libtorch's global generator, which tests running in parallel
//! threads share.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

/// SplitMix64's finaliser: a well-mixed hash of one word.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from several words (order matters).
pub fn derive_seed(words: &[u64]) -> u64 {
    words.iter().fold(0x5EED_D1FF_F10A_u64, |acc, &w| mix64(acc ^ mix64(w)))
}

impl SplitMix {
    /// A stream from `seed` hashed first, so that nearby seeds start far apart.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix { state: mix64(seed) }
    }

    /// A stream whose state starts at `state` itself, unhashed: the metrics' random subsets
    /// draw this way, and hashing would change every KID they report.
    pub fn from_state(state: u64) -> SplitMix {
        SplitMix { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Standard normal values into `out` (Box–Muller, both values of each pair used).
    pub(crate) fn fill_normal(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let u1 = self.uniform();
            let u2 = self.uniform();
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            pair[0] = (r * c) as f32;
            if pair.len() > 1 {
                pair[1] = (r * s) as f32;
            }
        }
    }

    /// Uniform in 0..n (n > 0); the modulo bias is below 2⁻³² for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `k` distinct indices of 0..n, uniformly (a partial Fisher–Yates shuffle).
    pub fn choose(&mut self, n: usize, k: usize) -> Vec<i64> {
        let mut all: Vec<i64> = (0..n as i64).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    /// `rows` × `cols` standard normal draws (f64): the metrics' tests draw their data here.
    #[cfg(test)]
    pub fn normals(&mut self, rows: i64, cols: i64) -> tch::Tensor {
        let v: Vec<f64> = (0..rows * cols).map(|_| self.normal()).collect();
        tch::Tensor::from_slice(&v).reshape([rows, cols])
    }
}
