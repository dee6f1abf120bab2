//! A small seeded generator for the random subsets of KID, so that metrics are reproducible
//! without touching libtorch's global generator.

/// SplitMix64 (Steele, Lea & Flood 2014): a fast, well-mixed 64-bit generator.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0); the modulo bias is below 2⁻³² for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `rows` × `cols` standard normal draws (Box–Muller, f64): the metrics' tests draw
    /// their data here, since libtorch's global generator is shared with the tests running
    /// in parallel threads, which made their draws vary.
    #[cfg(test)]
    pub fn normals(&mut self, rows: i64, cols: i64) -> tch::Tensor {
        let mut unit = || ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v: Vec<f64> =
            (0..rows * cols).map(|_| (-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos()).collect();
        tch::Tensor::from_slice(&v).reshape([rows, cols])
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
}
