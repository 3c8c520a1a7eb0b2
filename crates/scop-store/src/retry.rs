//! Retry schedule for the outbound queue (sans-IO).

/// Delay in seconds before the next delivery attempt after `attempts`
/// failed ones: `base * 2^attempts`, never more than `max` (and never less
/// than one second). `attempts = 0` gives `base`.
///
/// With `base = 300` and `max = 14_400` (5 minutes doubling up to 4 hours)
/// the attempts come after 5, 10, 20, 40, 80, 160 and then every 240 minutes.
pub fn next_retry(attempts: u32, base: i64, max: i64) -> i64 {
    let base = base.max(1);
    let max = max.max(1);
    let factor = 1i64.checked_shl(attempts.min(62)).unwrap_or(i64::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let delays: Vec<i64> = (0..8).map(|a| next_retry(a, 300, 14_400)).collect();
        assert_eq!(delays, [300, 600, 1200, 2400, 4800, 9600, 14_400, 14_400]);
        assert_eq!(next_retry(u32::MAX, 300, 14_400), 14_400);
        assert_eq!(next_retry(0, 0, 0), 1);
    }

    proptest! {
        #[test]
        fn monotone_and_bounded(a in 0u32..200, base in 0i64..100_000, max in 0i64..10_000_000) {
            let d = next_retry(a, base, max);
            prop_assert!(d >= 1);
            prop_assert!(d <= max.max(1));
            prop_assert!(next_retry(a.saturating_add(1), base, max) >= d);
        }
    }
}
