//! The bind verb: the placement goes into the ledger first (confirming the pod's reservation),
//! then through the [`Binder`]; a conflict is read back so that retries are idempotent.

use std::sync::Arc;

use stowage_policy::{Config, GroupKey};
use tokio::time::Instant;

use super::{Extender, elapsed_us, event_zones};
use crate::{
    binder::BindError,
    cache::Model,
    decisions::{Decision, ZoneCount},
    events::{self, EventType, PodEvent},
    extender::v1::{ExtenderBindingArgs, ExtenderBindingResult},
    framework::LedgerFacts,
    ledger::{Placement, PodSummary},
    plugins::{local_data, zone_spread},
};

impl Extender {
    /// Binds a pod: ledger entry first, then the API; idempotent when the scheduler retries.
    pub async fn bind(&self, args: ExtenderBindingArgs) -> ExtenderBindingResult {
        let start = Instant::now();
        let ExtenderBindingArgs { pod_name, pod_namespace, pod_uid, node } = args;
        let mut decision = Decision::new("bind", format!("{pod_namespace}/{pod_name}"), pod_uid.clone());
        decision.nodes_in = 1;
        if pod_name.is_empty() || pod_namespace.is_empty() || node.is_empty() {
            self.metrics.error("bind", "bad_request");
            return ExtenderBindingResult { error: "bind args need PodName, PodNamespace and Node".to_owned() };
        }
        let config = self.config.load_full();
        let (placement, zone) = self.placement_for(&pod_namespace, &pod_name, &pod_uid, &node, &config);
        let group = placement.group.clone();
        if !pod_uid.is_empty() {
            self.cache.ledger().record(placement);
        }
        decision.group = group.as_ref().map(|g| format!("{pod_namespace}/{g}"));
        let pod = format!("{pod_namespace}/{pod_name}");
        let outcome = match self.binder.bind(&pod_namespace, &pod_name, &pod_uid, &node).await {
            Ok(()) => Ok(false),
            Err(BindError::Conflict(conflict)) => match self.binder.current(&pod_namespace, &pod_name).await {
                Ok(Some(loc)) if !pod_uid.is_empty() && loc.uid != pod_uid => {
                    Err(BindFailure::Recreated { pod, found: loc.uid, expected: pod_uid.clone() })
                }
                Ok(Some(loc)) if loc.node.as_deref() == Some(node.as_str()) => Ok(true),
                Ok(Some(loc)) => Err(BindFailure::BoundElsewhere {
                    pod,
                    bound: loc.node.unwrap_or_else(|| "(none)".to_owned()),
                    node: node.clone(),
                }),
                Ok(None) => Err(BindFailure::Gone { pod }),
                Err(source) => Err(BindFailure::Unreadable { conflict, source }),
            },
            Err(source) => Err(BindFailure::Api { pod, node: node.clone(), source }),
        };
        let result = match outcome {
            Ok(already) => {
                let outcome = if already { "already_bound" } else { "bound" };
                self.metrics.decision("bind", outcome);
                decision.outcome = outcome;
                decision.nodes_out = 1;
                let scores = self
                    .decisions
                    .last_for(&pod_uid, "prioritize")
                    .and_then(|d| d.nodes.iter().find(|n| n.node == node).cloned());
                let filtered = self.decisions.last_for(&pod_uid, "filter");
                let zones = group.as_ref().map(|g| {
                    let model = self.cache.read();
                    let key = GroupKey { namespace: pod_namespace.clone(), name: g.to_string() };
                    let facts = LedgerFacts::collect(self.cache.ledger(), &model, Some(&key), "", Instant::now());
                    group_zone_counts(&model, &facts, &key, filtered.as_ref().map(|d| &d.zone_counts[..]))
                });
                let mut message = format!("placed on node {node}");
                if let Some(z) = &zone {
                    message.push_str(&format!(" in zone {z}"));
                }
                if let Some(s) = &scores {
                    let scores: Vec<String> = s.scores.iter().map(|(p, v)| format!("{p}={v}")).collect();
                    message.push_str(&format!("; scores {} (extender score {}/10)", scores.join(" "), s.score));
                }
                if let (Some(g), Some(z)) = (&group, &zones) {
                    message.push_str(&format!("; group {pod_namespace}/{g} zones {}", event_zones(z)));
                    decision.zone_counts = z.clone();
                }
                decision.detail.push(message.clone());
                if !already {
                    self.events.publish(PodEvent {
                        namespace: pod_namespace.clone(),
                        name: pod_name.clone(),
                        uid: pod_uid.clone(),
                        type_: EventType::Normal,
                        reason: events::PLACED,
                        action: "Binding",
                        message,
                    });
                }
                ExtenderBindingResult::default()
            }
            Err(failure) => {
                let message = failure.to_string();
                self.cache.ledger().remove(&pod_uid);
                self.metrics.error("bind", failure.reason());
                self.metrics.decision("bind", "error");
                decision.outcome = "error";
                decision.error = Some(message.clone());
                ExtenderBindingResult { error: message }
            }
        };
        decision.detail.insert(0, format!("target node {node}"));
        decision.duration_us = elapsed_us(start);
        self.decisions.push(decision);
        result
    }

    /// The placement `bind` records: the pod's reservation on that node when filter made one
    /// (its facts and PVs as decided), else the pod as the watcher knows it.
    fn placement_for(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        node: &str,
        config: &Config,
    ) -> (Placement, Option<Arc<str>>) {
        let now = Instant::now();
        let reservation = self.cache.ledger().reservation(uid);
        if let Some(mut r) = reservation.clone().filter(|r| r.node.as_ref() == node) {
            r.expires = now + config.ledger_ttl;
            let zone = r.zone.clone();
            return (r, zone);
        }
        let model = self.cache.read();
        let zone = model.node_id(node).and_then(|id| model.slot(id).obj.as_ref()).and_then(|o| o.zone.clone());
        // The pod as the watcher knows it, else as its filter saw it.
        let (group, summary) = match (model.pod(uid), reservation) {
            (Some(p), _) => {
                let bits = p.stowage.as_deref();
                (
                    bits.and_then(|b| b.group.clone()),
                    PodSummary {
                        profile: bits.map(|b| b.profile.clone()),
                        primary: bits.is_some_and(|b| b.is_primary()),
                        resources: p.resources,
                        claims: bits.map(|b| b.claims.to_vec()).unwrap_or_default(),
                    },
                )
            }
            (None, Some(r)) => (
                r.group,
                PodSummary { profile: r.profile, primary: r.primary, resources: r.resources, claims: r.claims },
            ),
            (None, None) => (None, PodSummary::default()),
        };
        let reserved = LedgerFacts::collect(self.cache.ledger(), &model, None, uid, now).reserved_pvs;
        let claimed = local_data::likely_static_pvs(&model, ns, &summary.claims, node, &reserved);
        let placement = Placement {
            uid: Arc::from(uid),
            namespace: self.cache.interner().intern(ns),
            name: Arc::from(name),
            group,
            node: self.cache.interner().intern(node),
            zone: zone.clone(),
            resources: summary.resources,
            profile: summary.profile,
            primary: summary.primary,
            claims: summary.claims,
            claimed_pvs: claimed,
            reserved: false,
            expires: now + config.ledger_ttl,
            nominated: false,
        };
        (placement, zone)
    }
}

/// Why `bind` did not bind; the text goes back to kube-scheduler as the reply's `Error`.
#[derive(Debug, thiserror::Error)]
enum BindFailure {
    /// The pod under that name has another uid now.
    #[error("pod {pod} was recreated (uid {found} is not {expected}); not binding")]
    Recreated { pod: String, found: String, expected: String },
    /// The pod is bound to another node.
    #[error("pod {pod} is already bound to node {bound}, not {node}")]
    BoundElsewhere { pod: String, bound: String, node: String },
    /// The pod was deleted.
    #[error("pod {pod} no longer exists")]
    Gone { pod: String },
    /// A conflict, and reading the pod back failed.
    #[error("binding conflict ({conflict}) and the pod could not be read: {source}")]
    Unreadable { conflict: String, source: BindError },
    /// The binding call failed.
    #[error("binding {pod} to {node} failed: {source}")]
    Api { pod: String, node: String, source: BindError },
}

impl BindFailure {
    /// The bounded `reason` label of the error metric.
    fn reason(&self) -> &'static str {
        match self {
            BindFailure::Recreated { .. } | BindFailure::BoundElsewhere { .. } => "conflict",
            BindFailure::Gone { .. } => "not_found",
            BindFailure::Unreadable { source, .. } | BindFailure::Api { source, .. } => source.reason(),
        }
    }
}

/// Members of a group per zone after a bind. Lists zones holding members and the zones in
/// `usable` (those the pod's last filter listed: zones it may use), or without that, zones that
/// have nodes.
fn group_zone_counts(
    model: &Model,
    facts: &LedgerFacts,
    group: &GroupKey,
    usable: Option<&[ZoneCount]>,
) -> Vec<ZoneCount> {
    let mut counts: Vec<ZoneCount> = model
        .zones()
        .iter()
        .zip(zone_spread::members_per_zone(model, facts, group))
        .map(|(z, members)| ZoneCount { zone: z.to_string(), members })
        .collect();
    counts.retain(|c| {
        c.members > 0
            || match usable {
                Some(usable) => usable.iter().any(|u| u.zone == c.zone),
                None => model.zone_id(&c.zone).is_some_and(|z| !model.zone_nodes(z).is_empty()),
            }
    });
    counts
}
