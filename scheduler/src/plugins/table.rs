//! What the plugins' table tests share: one plugin run alone over a snapshot, as the runner
//! runs it, so each case reads as input → code, reason, score.

use k8s_openapi::api::core::v1::Pod;
use stowage_policy::{Config, resolve};
use tokio::time::Instant;

use crate::{
    cache::ClusterCache,
    framework::{Code, Framework, NODE_NOT_CACHED, NodeView, Plugin, PodContext, Status},
    snapshot::Snapshot,
};

/// One node's result: the filter code, the first (most severe) reason, and the plugin's score
/// after its normalisation over the nodes asked for (`None` when the plugin does not score
/// the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Got {
    pub code: Code,
    pub reason: &'static str,
    pub score: Option<i64>,
}

/// Runs `plugin` alone for `pod` over `nodes` of `snap` under the config `yaml`.
pub(super) fn run<P: Plugin>(plugin: P, yaml: &str, snap: &Snapshot, pod: &Pod, nodes: &[&str]) -> Vec<Got> {
    let config = Config::from_yaml(yaml).expect("valid config");
    let cache = ClusterCache::from_snapshot(snap, &config);
    let policy = resolve(&pod.metadata, &config).expect("valid annotations").expect("opted in");
    let model = cache.read();
    let ctx = PodContext::new(pod, policy, &config, &model, cache.interner());
    let fw = Framework::empty().with(plugin, |_| 1);
    let cycle = fw.prepare(&model, cache.ledger(), &ctx, Instant::now());
    let views: Vec<Option<NodeView<'_>>> =
        nodes.iter().map(|n| cycle.view(model.node_id(n).expect("a node of the snapshot"))).collect();
    let outcomes = fw.filter(&cycle, &ctx, &views, Status::unschedulable(&NODE_NOT_CACHED));
    let weights = fw.active_weights(&cycle, &ctx);
    let present: Vec<NodeView<'_>> = views.iter().flatten().copied().collect();
    let scores = fw.score(&cycle, &ctx, &present, &weights);
    let scoring = weights.iter().any(|w| *w > 0);
    outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| Got {
            code: o.status.code(),
            reason: o.status.wire_message(),
            score: scoring.then(|| scores.row(i)[0]),
        })
        .collect()
}

/// A passing node with `score`.
pub(super) fn pass(score: Option<i64>) -> Got {
    Got { code: Code::Success, reason: "", score }
}
