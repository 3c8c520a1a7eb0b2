//! Fisher's inverse chi-square for an even number of degrees of freedom.

/// `Q(x2 | v)`: the probability that a chi-square variable with `v` (even)
/// degrees of freedom exceeds `x2`. Computed as the series
/// `e^{-m} · Σ_{i<v/2} m^i / i!` with `m = x2/2`, in log space so that large
/// arguments do not underflow before the sum is formed.
#[cfg(test)]
pub(crate) fn chi2q(x2: f64, v: usize) -> f64 {
    chi2q_ln(x2, v).exp().min(1.0)
}

/// `ln Q(x2 | v)`, finite even where `Q` underflows to 0.
pub(crate) fn chi2q_ln(x2: f64, v: usize) -> f64 {
    if !x2.is_finite() || x2 <= 0.0 {
        return 0.0;
    }
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    if term > 1e-200 {
        for i in 1..v / 2 {
            term *= m / i as f64;
            sum += term;
        }
        return sum.min(1.0).ln();
    }
    // exp(-m) underflowed: accumulate log-terms.
    let ln_m = m.ln();
    let mut ln_term = -m;
    let mut ln_max = ln_term;
    let mut terms = Vec::with_capacity(v / 2);
    terms.push(ln_term);
    for i in 1..v / 2 {
        ln_term += ln_m - (i as f64).ln();
        ln_max = ln_max.max(ln_term);
        terms.push(ln_term);
    }
    let s: f64 = terms.iter().map(|t| (t - ln_max).exp()).sum();
    (ln_max + s.ln()).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::{chi2q, chi2q_ln};

    #[test]
    fn known_values() {
        // Q(2 | 2) = e^-1
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        // Q(0 | v) = 1
        assert_eq!(chi2q(0.0, 10), 1.0);
        // Q(4 | 4) = e^-2 (1 + 2)
        assert!((chi2q(4.0, 4) - 3.0 * (-2.0f64).exp()).abs() < 1e-12);
        // Large arguments stay finite and monotone.
        let a = chi2q(2000.0, 300);
        let b = chi2q(3000.0, 300);
        assert!(a >= b && b >= 0.0 && a <= 1.0);
        // The log form stays finite and ordered far beyond underflow.
        let (la, lb) = (chi2q_ln(20_000.0, 100), chi2q_ln(30_000.0, 100));
        assert!(la.is_finite() && lb.is_finite() && la > lb, "{la} {lb}");
        assert!((chi2q_ln(4.0, 4) - (3.0 * (-2.0f64).exp()).ln()).abs() < 1e-12);
    }
}
