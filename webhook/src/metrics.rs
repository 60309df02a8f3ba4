//! Prometheus metrics of the admission endpoint.
//!
//! - `stowage_admission_reviews_total{outcome, dry_run}`: answered reviews;
//! - `stowage_admission_duration_seconds{outcome}`: time from request to answer;
//! - `stowage_admission_errors_total{reason}`: requests refused before a decision, by a
//!   bounded reason (see [`ERROR_REASONS`]);
//! - `stowage_admission_patch_operations_total`: JSON Patch operations returned.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::admit::Outcome;

/// Every value of the `reason` label of `stowage_admission_errors_total`.
pub const ERROR_REASONS: &[&str] = &[
    "method",
    "content_type",
    "too_large",
    "empty_body",
    "body_read",
    "bad_json",
    "missing_request",
    "bad_version",
    "timeout",
    "overloaded",
    "internal",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReviewLabels {
    outcome: &'static str,
    dry_run: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    reason: &'static str,
}

type DurationFamily = Family<OutcomeLabels, Histogram, fn() -> Histogram>;

/// Admission metrics; cheap to clone (all clones update the same series).
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    reviews: Family<ReviewLabels, Counter>,
    duration: DurationFamily,
    errors: Family<ErrorLabels, Counter>,
    patch_operations: Counter,
}

fn duration_histogram() -> Histogram {
    // 50µs .. ~0.8s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

const OUTCOMES: [Outcome; 4] = [Outcome::Mutated, Outcome::Unchanged, Outcome::Denied, Outcome::Skipped];

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AdmissionMetrics {
    /// Metrics not registered anywhere (tests, or when metrics are off).
    #[must_use]
    pub fn new() -> Self {
        let m = Self {
            reviews: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            errors: Family::default(),
            patch_operations: Counter::default(),
        };
        // Create every series up front so dashboards and alerts see zeros, not gaps.
        for outcome in OUTCOMES {
            for dry_run in ["true", "false"] {
                drop(m.reviews.get_or_create(&ReviewLabels { outcome: outcome.as_str(), dry_run }));
            }
        }
        for reason in ERROR_REASONS {
            drop(m.errors.get_or_create(&ErrorLabels { reason }));
        }
        m
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::new();
        registry.register("stowage_admission_reviews", "Admission reviews answered", m.reviews.clone());
        registry.register_with_unit(
            "stowage_admission_duration",
            "Time to answer an admission review",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register("stowage_admission_errors", "Admission requests refused before a decision", m.errors.clone());
        registry.register(
            "stowage_admission_patch_operations",
            "JSON Patch operations returned",
            m.patch_operations.clone(),
        );
        m
    }

    /// Records an answered review.
    pub fn review(&self, outcome: Outcome, dry_run: bool, seconds: f64, operations: usize) {
        let dry_run = if dry_run { "true" } else { "false" };
        self.reviews.get_or_create(&ReviewLabels { outcome: outcome.as_str(), dry_run }).inc();
        self.duration.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).observe(seconds);
        self.patch_operations.inc_by(operations as u64);
    }

    /// Records a refused request; `reason` should be one of [`ERROR_REASONS`].
    pub fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn encodes_the_documented_names() {
        let mut registry = Registry::default();
        let m = AdmissionMetrics::register(&mut registry);
        m.review(Outcome::Mutated, false, 0.0002, 7);
        m.review(Outcome::Denied, true, 0.0001, 0);
        m.error("too_large");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE stowage_admission_reviews counter",
            "stowage_admission_reviews_total{outcome=\"mutated\",dry_run=\"false\"} 1",
            "stowage_admission_reviews_total{outcome=\"denied\",dry_run=\"true\"} 1",
            "stowage_admission_reviews_total{outcome=\"skipped\",dry_run=\"false\"} 0",
            "# TYPE stowage_admission_duration_seconds histogram",
            "# UNIT stowage_admission_duration_seconds seconds",
            "stowage_admission_duration_seconds_count{outcome=\"mutated\"} 1",
            "stowage_admission_errors_total{reason=\"too_large\"} 1",
            "stowage_admission_errors_total{reason=\"timeout\"} 0",
            "stowage_admission_patch_operations_total 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
