//! Prometheus metrics of the extender (prometheus-client).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `stowage_extender_request_duration_seconds` | histogram | `verb` |
//! | `stowage_extender_decisions_total` | counter | `verb`, `outcome` |
//! | `stowage_extender_refusals_total` | counter | `plugin`, `reason` (the constant reason codes) |
//! | `stowage_extender_errors_total` | counter | `verb`, `reason` |
//! | `stowage_cache_objects` | gauge | `kind` |
//! | `stowage_cache_synced` | gauge (0/1) | `kind` |
//! | `stowage_ledger_entries` | gauge | |
//! | `stowage_events_dropped_total` | counter | |
//!
//! Every label value is a `&'static str` from a closed set, so cardinality is bounded. Register
//! on the root registry (the names carry their own `stowage_` prefix).

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::Counter, family::Family, gauge::ConstGauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    cache::ClusterCache,
    ledger::{ReservationEvent, ReservationLabels},
};

/// Every verb, and the decision outcomes each can report: their series are created at zero on
/// registration, so dashboards and alerts see a rate of 0, not a missing series.
const VERB_OUTCOMES: [(&str, &[&str]); 4] = [
    ("filter", &["feasible", "reserved", "no_feasible_node", "not_opted_in", "error"]),
    ("prioritize", &["scored", "not_opted_in"]),
    ("preempt", &["kept_all", "dropped_some"]),
    ("bind", &["bound", "already_bound", "error"]),
];

/// Every reservation event (the `event` label of `stowage_ledger_reservations_total`).
const RESERVATION_EVENTS: [ReservationEvent; 5] = [
    ReservationEvent::Created,
    ReservationEvent::Replaced,
    ReservationEvent::Confirmed,
    ReservationEvent::Released,
    ReservationEvent::Expired,
];

/// Histogram buckets in seconds: fine-grained below 1 ms, up to 5 s (the scheduler's default
/// `httpTimeout`).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    3.0, 5.0,
];

/// `verb` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    /// filter, prioritize, preempt or bind.
    pub verb: &'static str,
}

/// `verb` and `outcome` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The verb.
    pub verb: &'static str,
    /// The outcome (e.g. `feasible`, `no_feasible_node`, `not_opted_in`, `bound`).
    pub outcome: &'static str,
}

/// `plugin` and `reason` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The refusing plugin.
    pub plugin: &'static str,
    /// The reason code.
    pub reason: &'static str,
}

/// `verb` and `reason` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The verb.
    pub verb: &'static str,
    /// A short error class.
    pub reason: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The extender's metric families.
#[derive(Debug)]
pub struct Metrics {
    /// Request duration per verb.
    pub request_duration: Family<VerbLabels, Histogram, fn() -> Histogram>,
    /// Decisions per verb and outcome.
    pub decisions: Family<OutcomeLabels, Counter>,
    /// Node refusals per plugin and reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Errors per verb and class.
    pub errors: Family<ErrorLabels, Counter>,
    /// Events dropped because the event channel was full.
    pub events_dropped: Counter,
}

impl Metrics {
    /// Creates the families and registers them, plus a collector for the cache and ledger
    /// gauges, on `registry`.
    pub fn register(registry: &mut Registry, cache: Arc<ClusterCache>, events_dropped: Counter) -> Arc<Self> {
        let m = Arc::new(Self {
            request_duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            decisions: Family::default(),
            refusals: Family::default(),
            errors: Family::default(),
            events_dropped,
        });
        registry.register_with_unit(
            "stowage_extender_request_duration",
            "Time to answer one extender request",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register("stowage_extender_decisions", "Extender decisions by verb and outcome", m.decisions.clone());
        registry.register("stowage_extender_refusals", "Nodes refused by a plugin, by reason code", m.refusals.clone());
        registry.register("stowage_extender_errors", "Extender errors by verb and class", m.errors.clone());
        registry.register(
            "stowage_events_dropped",
            "Kubernetes events dropped because the event queue was full",
            m.events_dropped.clone(),
        );
        for (verb, outcomes) in VERB_OUTCOMES {
            drop(m.request_duration.get_or_create(&VerbLabels { verb }));
            for outcome in outcomes {
                drop(m.decisions.get_or_create(&OutcomeLabels { verb, outcome }));
            }
        }
        for event in RESERVATION_EVENTS {
            drop(cache.ledger().reservation_events().get_or_create(&ReservationLabels { event: event.as_str() }));
        }
        registry.register_collector(Box::new(CacheCollector { cache }));
        m
    }

    /// Metrics that are not registered anywhere (tests, offline tools).
    #[must_use]
    pub fn unregistered() -> Arc<Self> {
        Arc::new(Self {
            request_duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            decisions: Family::default(),
            refusals: Family::default(),
            errors: Family::default(),
            events_dropped: Counter::default(),
        })
    }

    /// Records a request's duration.
    pub fn observe(&self, verb: &'static str, seconds: f64) {
        self.request_duration.get_or_create(&VerbLabels { verb }).observe(seconds);
    }

    /// Counts a decision.
    pub fn decision(&self, verb: &'static str, outcome: &'static str) {
        self.decisions.get_or_create(&OutcomeLabels { verb, outcome }).inc();
    }

    /// Counts `n` refusals.
    pub fn refusal(&self, plugin: &'static str, reason: &'static str, n: u64) {
        self.refusals.get_or_create(&RefusalLabels { plugin, reason }).inc_by(n);
    }

    /// Counts an error.
    pub fn error(&self, verb: &'static str, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { verb, reason }).inc();
    }
}

/// Reads cache and ledger gauges at scrape time.
#[derive(Debug)]
struct CacheCollector {
    cache: Arc<ClusterCache>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = self.cache.status();
        let mut objects =
            encoder.encode_descriptor("stowage_cache_objects", "Objects held in the cache", None, MetricType::Gauge)?;
        for s in &status {
            let g = ConstGauge::new(i64::try_from(s.objects).unwrap_or(i64::MAX));
            g.encode(objects.encode_family(&KindLabels { kind: s.kind.as_str() })?)?;
        }
        let mut synced = encoder.encode_descriptor(
            "stowage_cache_synced",
            "1 once the kind's watcher has completed a full list",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            ConstGauge::new(i64::from(s.synced))
                .encode(synced.encode_family(&KindLabels { kind: s.kind.as_str() })?)?;
        }
        let ledger = ConstGauge::new(i64::try_from(self.cache.ledger().len()).unwrap_or(i64::MAX));
        let e = encoder.encode_descriptor(
            "stowage_ledger_entries",
            "In-flight placements not yet confirmed by the pod watcher",
            None,
            ledger.metric_type(),
        )?;
        ledger.encode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_policy::Config;

    #[test]
    fn encoded_names_and_labels() {
        let mut registry = Registry::default();
        let cache = Arc::new(ClusterCache::new(&Config::default()));
        let m = Metrics::register(&mut registry, cache, Counter::default());
        m.observe("filter", 0.0004);
        m.decision("filter", "feasible");
        m.refusal("zone-spread", "quorum_guard", 2);
        m.error("bind", "conflict");
        m.events_dropped.inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for want in [
            "stowage_extender_request_duration_seconds_bucket{le=\"0.0005\",verb=\"filter\"} 1",
            "stowage_extender_request_duration_seconds_count{verb=\"filter\"} 1",
            "stowage_extender_decisions_total{verb=\"filter\",outcome=\"feasible\"} 1",
            "stowage_extender_refusals_total{plugin=\"zone-spread\",reason=\"quorum_guard\"} 2",
            "stowage_extender_errors_total{verb=\"bind\",reason=\"conflict\"} 1",
            "stowage_events_dropped_total 1",
            "stowage_cache_objects{kind=\"pods\"} 0",
            "stowage_cache_synced{kind=\"nodes\"} 0",
            "stowage_ledger_entries 0",
            "stowage_extender_decisions_total{verb=\"bind\",outcome=\"already_bound\"} 0",
            "stowage_extender_request_duration_seconds_count{verb=\"preempt\"} 0",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
