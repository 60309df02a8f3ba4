//! The extender's verbs as plain functions over wire types, one file each: no HTTP here.
//!
//! - [`filter`](Extender::filter): pods that have not opted in get every input node back
//!   untouched (fast path); invalid policy annotations give `Error` naming them; an unsynced
//!   cache gives `Error: "stowage cache has not synced yet"`; otherwise each node runs the filter
//!   plugins. For a pod under a cross-pod rule ([`PodContext::under_cross_pod_rule`]) filter then
//!   **decides**: it scores the feasible nodes as prioritize would, keeps only the best one (ties
//!   by node name), refuses the others with [`NOT_CHOSEN`] and reserves the node in the ledger at
//!   once, one decision at a time (see [`crate::ledger`] and `docs/architecture.md`, "Placement
//!   under concurrency"). Other pods get every feasible node.
//! - [`prioritize`](Extender::prioritize): zero scores for pods that have not opted in (or with
//!   invalid annotations), an empty list while the cache is unsynced, else the weighted plugin
//!   scores normalised over the candidates to 0..10 (best candidate 10,
//!   [`normalize_extender`](crate::framework::normalize_extender)).
//! - [`preempt`](Extender::preempt): drops every candidate node whose victims would leave a
//!   group below its majority; always answers with victims by UID.
//! - [`bind`](Extender::bind): records the placement in the ledger first (confirming the pod's
//!   reservation), then binds through a [`Binder`]; idempotent on retries.
//!
//! `wire` maps to and from the `extender::v1` types. Every call leaves a
//! [`Decision`](crate::decisions::Decision) in the decision log.
//!
//! [`PodContext::under_cross_pod_rule`]: crate::framework::PodContext::under_cross_pod_rule
//! [`NOT_CHOSEN`]: crate::framework::NOT_CHOSEN

mod bind;
mod filter;
mod preempt;
mod prioritize;
mod wire;

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use stowage_policy::Config;
use tokio::time::Instant;

use crate::{
    binder::Binder,
    cache::ClusterCache,
    decisions::{DEFAULT_CAPACITY, DETAIL_NODES, DecisionLog},
    decisions::{Decision, ZoneCount},
    events::EventSink,
    framework::{CycleState, Framework, PodContext},
    metrics::Metrics,
    plugins::{self, zone_spread},
};

/// Error text while the cache has not synced.
const NOT_SYNCED: &str = "stowage cache has not synced yet";

/// Tunables of the extender.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Decisions kept for `/debug/decisions` (default 256).
    pub decisions: usize,
    /// Nodes kept in detail per decision (default 20).
    pub detail_nodes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { decisions: DEFAULT_CAPACITY, detail_nodes: DETAIL_NODES }
    }
}

/// The extender: cache, config, binder, events and metrics.
#[derive(Debug)]
pub struct Extender {
    cache: Arc<ClusterCache>,
    config: Arc<ArcSwap<Config>>,
    binder: Arc<dyn Binder>,
    events: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    decisions: DecisionLog,
    framework: Framework,
    options: Options,
    /// Held while a filter decides and reserves a node: every decision sees every earlier
    /// reservation (read state, decide, commit as one step).
    decide: Mutex<()>,
}

fn pod_key(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_else(|| "default".to_owned()),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

fn elapsed_us(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Extender {
    /// An extender with default [`Options`]; registers its metrics on `registry`.
    pub fn new(
        cache: Arc<ClusterCache>,
        config: Arc<ArcSwap<Config>>,
        binder: Arc<dyn Binder>,
        events: Arc<dyn EventSink>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let dropped = events.dropped_counter().unwrap_or_default();
        registry.register(
            "stowage_ledger_reservations",
            "Nodes reserved by filter for pods under cross-pod rules, by what became of them",
            cache.ledger().reservation_events().clone(),
        );
        let metrics = Metrics::register(registry, cache.clone(), dropped);
        Self::with_metrics(cache, config, binder, events, metrics, Options::default())
    }

    /// An extender with explicit metrics and options.
    #[must_use]
    pub fn with_metrics(
        cache: Arc<ClusterCache>,
        config: Arc<ArcSwap<Config>>,
        binder: Arc<dyn Binder>,
        events: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Self {
        Self {
            cache,
            config,
            binder,
            events,
            metrics,
            decisions: DecisionLog::new(options.decisions),
            framework: plugins::registry(),
            options,
            decide: Mutex::new(()),
        }
    }

    /// The cluster cache the verbs read (readiness probes read it too).
    #[must_use]
    pub fn cache(&self) -> &Arc<ClusterCache> {
        &self.cache
    }

    /// The extender's Prometheus metrics (the HTTP edge records latencies here).
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The decision log behind `/debug/decisions`.
    #[must_use]
    pub fn decisions(&self) -> &DecisionLog {
        &self.decisions
    }

    /// The current config.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}

/// `zone=count` pairs as events and bind messages show them.
fn event_zones(z: &[ZoneCount]) -> String {
    z.iter().map(|z| format!("{}={}", z.zone, z.members)).collect::<Vec<_>>().join(" ")
}

/// Records the pod's group, its size and its members per zone on a decision.
fn record_group(decision: &mut Decision, cycle: &CycleState<'_>, ctx: &PodContext<'_>) {
    if let Some(g) = ctx.group() {
        decision.group = Some(g.to_string());
        decision.members = Some(ctx.members);
        decision.zone_counts = zone_spread::zone_summary(cycle, ctx)
            .unwrap_or_default()
            .into_iter()
            .map(|(zone, members)| ZoneCount { zone, members })
            .collect();
    }
}
