//! Score arithmetic: weighted combination of plugin scores, normalisation onto the extender's
//! 0..10 scale, and the broken-linear shapes profiles score capacity with.
//!
//! Each plugin scores 0..=[`MAX_NODE_SCORE`]; the combined score is
//! `Σ weightᵢ·scoreᵢ / Σ weightᵢ` over the plugins active for the pod (0..100) ([`combine`]).
//! prioritize sends it normalised over the candidates like the framework's default
//! `NormalizeScore`: the best candidate gets 10, the others `round(10·combined/best)`
//! ([`normalize_extender`]), so distinctions survive the extender's 0..10 scale.

/// Highest score a plugin gives (`MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Combines per-plugin scores (0..100) with weights: returns `(combined 0..100, extender 0..10)`.
/// Inactive plugins (weight 0 or `active == false`) are left out of the weight sum; with no
/// active plugin every node scores 0.
#[must_use]
pub fn combine(scores: &[i64], weights: &[u32]) -> (i64, i64) {
    let mut sum = 0i64;
    let mut wsum = 0i64;
    for (s, w) in scores.iter().zip(weights) {
        let w = i64::from(*w);
        sum += s.clamp(&0, &MAX_NODE_SCORE) * w;
        wsum += w;
    }
    if wsum == 0 {
        return (0, 0);
    }
    let combined = (sum + wsum / 2) / wsum;
    let extender = ((sum + 5 * wsum) / (10 * wsum)).clamp(0, 10);
    (combined, extender)
}

/// Normalises combined scores (0..100) over the candidate set into extender scores (0..10),
/// as the framework's `DefaultNormalizeScore`: the best candidate gets 10, the others
/// `round(10·combined/best)`; with every candidate at 0, all get 0. Without it, two nodes
/// scoring 91 and 86 both became 9 and the scheduler's own scores decided alone.
#[must_use]
pub fn normalize_extender(combined: &[i64]) -> Vec<i64> {
    let best = combined.iter().copied().max().unwrap_or(0);
    combined
        .iter()
        .map(|c| if best <= 0 { 0 } else { ((20 * c.clamp(&0, &best) + best) / (2 * best)).clamp(0, 10) })
        .collect()
}

/// Linear interpolation over a broken-linear shape of `(utilization %, score 0..10)` points,
/// scaled to 0..100 (as KEP-4049's `brokenLinear`).
#[must_use]
pub fn broken_linear(shape: &[stowage_policy::config::ShapePoint], utilization: i64) -> i64 {
    let u = utilization.clamp(0, 100);
    let Some(first) = shape.first() else { return 0 };
    if u <= i64::from(first.utilization) {
        return i64::from(first.score) * 10;
    }
    for w in shape.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (ua, ub) = (i64::from(a.utilization), i64::from(b.utilization));
        if u <= ub {
            let (sa, sb) = (i64::from(a.score) * 10, i64::from(b.score) * 10);
            return sa + (sb - sa) * (u - ua) / (ub - ua).max(1);
        }
    }
    shape.last().map_or(0, |p| i64::from(p.score) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn combination_examples() {
        assert_eq!(combine(&[100, 100, 100], &[3, 2, 1]), (100, 10));
        assert_eq!(combine(&[0, 0, 0], &[3, 2, 1]), (0, 0));
        assert_eq!(combine(&[100, 0, 0], &[1, 1, 0]), (50, 5));
        assert_eq!(combine(&[44, 0, 0], &[1, 0, 0]), (44, 4));
        assert_eq!(combine(&[45, 0, 0], &[1, 0, 0]), (45, 5));
        assert_eq!(combine(&[90, 90, 90], &[0, 0, 0]), (0, 0));
    }

    #[test]
    fn extender_scores_are_normalised_over_the_candidates() {
        let cases: [(&[i64], &[i64]); 6] = [
            // The case: a quiet node at 91 and a noisy one at 86 both were 9.
            (&[91, 86], &[10, 9]),
            (&[100, 50, 0], &[10, 5, 0]),
            (&[40, 20, 10], &[10, 5, 3]),
            (&[0, 0], &[0, 0]),
            (&[7], &[10]),
            (&[], &[]),
        ];
        for (combined, want) in cases {
            assert_eq!(normalize_extender(combined), want, "{combined:?}");
        }
    }

    #[test]
    fn broken_linear_interpolates() {
        let shape = stowage_policy::config::default_shape();
        assert_eq!(broken_linear(&shape, 0), 100);
        assert_eq!(broken_linear(&shape, 50), 50);
        assert_eq!(broken_linear(&shape, 100), 0);
        assert_eq!(broken_linear(&shape, 150), 0);
    }

    proptest! {
        #[test]
        fn combined_scores_stay_in_range(scores in proptest::array::uniform3(-50i64..200), weights in proptest::array::uniform3(0u32..100)) {
            let (c, e) = combine(&scores, &weights);
            prop_assert!((0..=100).contains(&c));
            prop_assert!((0..=10).contains(&e));
            // Monotone: raising one plugin's score never lowers the result.
            let mut up = scores;
            up[0] = up[0].saturating_add(10);
            prop_assert!(combine(&up, &weights).1 >= e);
        }
    }
}
