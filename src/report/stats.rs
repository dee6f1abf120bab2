//! Mean and 95 % confidence interval of a metric over replicates: Student's t with
//! N − 1 degrees of freedom, mean ± t₀.₉₇₅(N − 1) · s / √N (s the sample standard
//! deviation). The t quantile is computed (the t CDF through the regularised incomplete
//! beta function, inverted by bisection), so any N works.

/// One metric over N replicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Half the width of the 95 % interval; `None` for a single value.
    pub ci95: Option<f64>,
}

impl Summary {
    /// The interval's ends (the mean twice for a single value).
    pub fn bounds(&self) -> (f64, f64) {
        let h = self.ci95.unwrap_or(0.0);
        (self.mean - h, self.mean + h)
    }

    /// Whether two intervals share a point: a difference of means that these replicates
    /// do not resolve.
    pub fn overlaps(&self, other: &Summary) -> bool {
        let (a_lo, a_hi) = self.bounds();
        let (b_lo, b_hi) = other.bounds();
        a_lo <= b_hi && b_lo <= a_hi
    }
}

/// The summary of the finite values among `xs`; `None` when there are none.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let xs: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some(Summary { n, mean, ci95: None });
    }
    let variance = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_quantile_975(n - 1) * (variance / n as f64).sqrt();
    Some(Summary { n, mean, ci95: Some(half) })
}

/// The 0.975 quantile of Student's t with `df` ≥ 1 degrees of freedom.
pub fn t_quantile_975(df: usize) -> f64 {
    let df = df.max(1) as f64;
    // The CDF rises monotonically; t₀.₉₇₅(1) ≈ 12.7 is the largest quantile of all.
    let (mut lo, mut hi) = (0.0_f64, 20.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for t ≥ 0: 1 − ½ I_{ν/(ν+t²)}(ν/2, ½).
fn t_cdf(t: f64, df: f64) -> f64 {
    1.0 - 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction
/// (Lentz's method), on the side where it converges fast.
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for numerator in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + numerator * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + numerator / c;
            if c.abs() < TINY {
                c = TINY;
            }
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_published_values() {
        // scipy.stats.t.ppf(0.975, df) (and mpmath's inverse of the same CDF).
        for (df, want) in [
            (1, 12.706_204_736_174_7),
            (2, 4.302_652_729_749_46),
            (3, 3.182_446_305_283_71),
            (4, 2.776_445_105_197_79),
            (5, 2.570_581_835_636_32),
            (9, 2.262_157_162_798_21),
            (29, 2.045_229_642_132_7),
            (100, 1.983_971_518_523_55),
        ] {
            let got = t_quantile_975(df);
            assert!((got - want).abs() < 1e-9, "df {df}: {got} against {want}");
        }
        assert!((t_quantile_975(1_000_000) - 1.959_963_984_540_054).abs() < 1e-5, "tends to the normal's 1.96");
    }

    #[test]
    fn mean_and_interval_of_three_replicates() {
        // mean 0.71333…, s = 0.025166…, t₀.₉₇₅(2) · s / √3 = 0.0625160947937578.
        let s = summarize(&[0.71, 0.69, 0.74]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.713_333_333_333_333_3).abs() < 1e-12);
        assert!((s.ci95.unwrap() - 0.062_516_094_793_757_8).abs() < 1e-9, "{s:?}");
        let one = summarize(&[2.0, f64::NAN]).unwrap();
        assert_eq!((one.n, one.mean, one.ci95), (1, 2.0, None));
        assert_eq!(summarize(&[]), None);
        let same = summarize(&[5.0, 5.0]).unwrap();
        assert_eq!(same.ci95, Some(0.0));
    }

    #[test]
    fn intervals_overlap_when_they_share_a_point() {
        let a = Summary { n: 3, mean: 1.0, ci95: Some(0.5) };
        assert!(a.overlaps(&Summary { n: 3, mean: 1.9, ci95: Some(0.5) }));
        assert!(!a.overlaps(&Summary { n: 3, mean: 2.1, ci95: Some(0.5) }));
        assert!(!a.overlaps(&Summary { n: 1, mean: 1.6, ci95: None }));
    }
}
