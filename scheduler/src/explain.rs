//! The offline explanation of a pod against a cache (`stowage explain`): every node through the
//! same evaluation the verbs use ([`crate::evaluation`]), ranked, with the node the extender
//! prefers.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use stowage_policy::{Config, resolve};
use tokio::time::Instant;

pub use crate::decisions::{NodeLine, PluginScores, ZoneCount};
use crate::{
    cache::ClusterCache,
    decisions::{node_table, zones_text},
    evaluation,
    framework::{FilterOutcome, NodeView, PodContext, Reason, Status},
    plugins,
};

/// The offline explanation of a pod against a cache.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// `namespace/name`.
    pub pod: String,
    /// The pod carries stowage annotations.
    pub opted_in: bool,
    /// Invalid policy annotations, if any.
    pub policy_error: Option<String>,
    /// The profile the policy resolved to.
    pub profile: Option<String>,
    /// `namespace/name` of the group, if any.
    pub group: Option<String>,
    /// Voting members and where the count came from.
    pub members: Option<u32>,
    /// `annotation`, `statefulset` or `observed`.
    pub members_source: Option<&'static str>,
    /// Effective rules.
    pub rules: Vec<(String, String)>,
    /// Members per zone.
    pub zone_counts: Vec<ZoneCount>,
    /// Most members a zone may hold with the pod added (quorum guard, required zone spread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_limit: Option<u32>,
    /// Weights of the active plugins.
    pub weights: PluginScores,
    /// Every node: feasible ones by score, then refused ones by name.
    pub nodes: Vec<NodeLine>,
    /// The node the extender prefers.
    pub preferred: Option<String>,
    /// Caveat about the real scheduler.
    pub note: String,
}

/// kube-scheduler's own NodeAffinity refusal (`ErrReasonPod`): nodes the pod's nodeSelector or
/// required node affinity exclude are never sent to the extender.
static NODE_AFFINITY: Reason =
    Reason { code: "node_affinity", message: "node(s) didn't match Pod's node affinity/selector" };

const NOTE: &str = "kube-scheduler adds its in-tree plugin scores (resource fit, affinity, topology spread, ...) \
to the extender's score (score x weight x 10) and only sends nodes that passed its own filters, so the \
final choice may differ from the extender's preference.";

impl Explanation {
    /// Plain-text rendering with a node table.
    #[must_use]
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pod {}", self.pod);
        if !self.opted_in {
            let _ =
                writeln!(out, "  not opted in (no stowage.io/ annotation): the extender passes every node untouched");
            return out;
        }
        if let Some(e) = &self.policy_error {
            let _ = writeln!(out, "  invalid policy: {e}");
            return out;
        }
        let _ = writeln!(
            out,
            "  profile {}, group {}, n={} ({})",
            self.profile.as_deref().unwrap_or("-"),
            self.group.as_deref().unwrap_or("(none)"),
            self.members.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            self.members_source.unwrap_or("-"),
        );
        let rules = self.rules.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "  rules: {rules}");
        let _ = writeln!(out, "  members per zone: {}", zones_text(&self.zone_counts));
        let _ = writeln!(
            out,
            "  weights: local-data={} zone-spread={} contention={}",
            self.weights.local_data, self.weights.zone_spread, self.weights.contention
        );
        out.push_str(&node_table(&self.nodes));
        match &self.preferred {
            Some(n) => {
                let _ = writeln!(out, "extender prefers: {n}");
            }
            None => {
                let _ = writeln!(out, "no feasible node: the pod would stay Pending");
            }
        }
        let _ = writeln!(out, "note: {}", self.note);
        out
    }
}

/// Evaluates every cached node for `pod` as if the scheduler sent all node names, ranks them and
/// names the node the extender prefers.
#[must_use]
pub fn explain(cache: &ClusterCache, config: &Config, pod: &Pod) -> Explanation {
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    let mut ex = Explanation {
        pod: pod_name,
        opted_in: false,
        policy_error: None,
        profile: None,
        group: None,
        members: None,
        members_source: None,
        rules: Vec::new(),
        zone_counts: Vec::new(),
        zone_limit: None,
        weights: PluginScores::default(),
        nodes: Vec::new(),
        preferred: None,
        note: NOTE.to_owned(),
    };
    let policy = match resolve(&pod.metadata, config) {
        Ok(Some(p)) => p,
        Ok(None) => return ex,
        Err(e) => {
            ex.opted_in = true;
            ex.policy_error = Some(e.to_string());
            return ex;
        }
    };
    ex.opted_in = true;
    ex.profile = Some(policy.profile_name.clone());
    ex.group = policy.group.as_ref().map(ToString::to_string);
    ex.rules = vec![
        ("quorum".to_owned(), policy.quorum.to_string()),
        ("zone-spread".to_owned(), policy.zone_spread.to_string()),
        ("node-spread".to_owned(), policy.node_spread.to_string()),
        ("local-data".to_owned(), policy.local_data.to_string()),
        ("role".to_owned(), policy.role.map_or_else(|| "-".to_owned(), |r| r.to_string())),
        ("pool".to_owned(), policy.pool.as_ref().map_or_else(|| "-".to_owned(), |(n, _)| n.clone())),
    ];
    let model = cache.read();
    let ctx = PodContext::new(pod, policy, config, &model, cache.interner());
    ex.members = ctx.group().map(|_| ctx.members);
    ex.members_source = ctx.group().map(|_| ctx.members_source.as_str());
    let fw = plugins::registry();
    let cycle = fw.prepare(&model, cache.ledger(), &ctx, Instant::now());
    ex.zone_limit = plugins::zone_spread::zone_limit(&cycle);
    ex.zone_counts = plugins::zone_spread::zone_summary(&cycle, &ctx)
        .unwrap_or_default()
        .into_iter()
        .map(|(zone, members)| ZoneCount { zone, members })
        .collect();
    // kube-scheduler sends only nodes its own filters passed: those the pod's nodeSelector and
    // required node affinity refuse never reach the plugins.
    let (views, unmatched): (Vec<Option<NodeView<'_>>>, Vec<Option<NodeView<'_>>>) = model
        .nodes()
        .filter_map(|(id, _, _)| cycle.view(id))
        .map(Some)
        .partition(|v| v.is_some_and(|v| ctx.admits(v.obj)));
    let outcomes = evaluation::filter(&fw, &cycle, &ctx, &views);
    let feasible: Vec<NodeView<'_>> =
        views.iter().zip(&outcomes).filter(|(_, o)| o.status.is_success()).filter_map(|(v, _)| *v).collect();
    let scored = evaluation::score(&fw, &cycle, &ctx, &feasible);
    ex.weights = scored.weights();
    let mut lines: Vec<NodeLine> = feasible
        .iter()
        .enumerate()
        .map(|(k, v)| {
            NodeLine::new(v.name(), Some(v), &FilterOutcome::framework(Status::success()), Some(scored.node_alone(k)))
        })
        .collect();
    let not_sent = FilterOutcome::framework(Status::unresolvable(&NODE_AFFINITY));
    let mut refused: Vec<NodeLine> = views
        .iter()
        .flatten()
        .zip(&outcomes)
        .filter(|(_, o)| !o.status.is_success())
        .chain(unmatched.iter().flatten().map(|v| (v, &not_sent)))
        .map(|(v, o)| NodeLine::new(v.name(), Some(v), o, None))
        .collect();
    lines.sort_by(|a, b| b.combined.cmp(&a.combined).then_with(|| a.node.cmp(&b.node)));
    refused.sort_by(|a, b| a.node.cmp(&b.node));
    ex.preferred = lines.first().map(|l| l.node.clone());
    lines.extend(refused);
    ex.nodes = lines;
    ex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use stowage_fixtures::{PodBuilder, node, statefulset};

    fn cache(cfg: &Config) -> ClusterCache {
        let snap = Snapshot {
            nodes: vec![
                node("a1", Some("a"), "8", "32Gi"),
                node("b1", Some("b"), "8", "32Gi"),
                node("c1", Some("c"), "8", "32Gi"),
            ],
            pods: vec![
                PodBuilder::new("db", "pg-0").member("pg", "pg").owned_by_statefulset("pg").node("a1").build(),
                PodBuilder::new("apps", "busy").node("b1").requests("6", "24Gi").build(),
            ],
            stateful_sets: vec![statefulset("db", "pg", 3, &["data"])],
            ..Snapshot::default()
        };
        ClusterCache::from_snapshot(&snap, cfg)
    }

    #[test]
    fn explains_every_node_and_names_the_preferred_one() {
        let cfg = Config::from_yaml("profiles:\n  pg: {quorum: zone}\n").unwrap();
        let c = cache(&cfg);
        let pod = PodBuilder::new("db", "pg-1").member("pg", "pg").owned_by_statefulset("pg").build();
        let ex = explain(&c, &cfg, &pod);
        assert_eq!(ex.members, Some(3));
        assert_eq!(ex.members_source, Some("statefulset"));
        assert_eq!(ex.nodes.len(), 3);
        assert_eq!(ex.preferred.as_deref(), Some("c1"), "b1 is busy, a1 is refused");
        let a1 = ex.nodes.iter().find(|n| n.node == "a1").unwrap();
        assert!(!a1.feasible && a1.reason.contains("quorum guard"));
        let text = ex.render_text();
        assert!(text.contains("NODE") && text.contains("extender prefers: c1"), "{text}");
        assert!(text.contains("members per zone: a=1 b=0 c=0"), "{text}");
        let json = serde_json::to_value(&ex).unwrap();
        assert_eq!(json["preferred"], "c1");
    }

    #[test]
    fn nodes_the_pods_node_selector_excludes_are_refused_as_kube_scheduler_would() {
        let cfg = Config::from_yaml("profiles:\n  pg: {quorum: zone}\n").unwrap();
        let pod = PodBuilder::new("db", "pg-1")
            .member("pg", "pg")
            .owned_by_statefulset("pg")
            .node_selector(stowage_fixtures::ZONE, "b")
            .build();
        let ex = explain(&cache(&cfg), &cfg, &pod);
        assert_eq!(ex.preferred.as_deref(), Some("b1"), "only b1 matches the pod's nodeSelector");
        let c1 = ex.nodes.iter().find(|n| n.node == "c1").unwrap();
        assert!(!c1.feasible, "{c1:?}");
        assert_eq!((c1.code, c1.reason.as_str()), ("UnschedulableAndUnresolvable", NODE_AFFINITY.message));
        assert_eq!(ex.nodes.len(), 3);
    }

    #[test]
    fn pods_not_opted_in_are_explained_as_such() {
        let cfg = Config::default();
        let ex = explain(&cache(&cfg), &cfg, &PodBuilder::new("apps", "web").build());
        assert!(!ex.opted_in);
        assert!(ex.render_text().contains("not opted in"));
    }
}
