//! **Contention**: keep databases away from crowded and noisy nodes.
//!
//! Filter:
//! - the profile's density cap `{class, maxPerNode}` — opted-in pods on the node (bound and in
//!   flight) whose profile belongs to the same class — `count ≥ maxPerNode` is `Unschedulable`
//!   ([`DENSITY`]; preemption may free a slot);
//! - the profile's `neighbours: avoid-unlimited`: a node running a BestEffort pod or a pod
//!   without a cpu or memory limit (bound or in flight; node agents — DaemonSet and static
//!   pods — excepted) is `Unschedulable` ([`UNLIMITED_NEIGHBOUR`]; preemption may evict it).
//!
//! Score (always active for opted-in pods), 0..100:
//!
//! ```text
//! u        = max(cpu_req_after / cpu_alloc, mem_req_after / mem_alloc)   clamped to 0..1
//!            (req_after = requests of bound pods + in-flight pods + this pod;
//!             zero allocatable counts as full)
//! base     = 100 · (1 − u)                                   least-allocated style
//! stateful = min(30, 10 · other opted-in pods on the node)   shared local disk, no IO isolation
//! burst    = max over cpu, memory of Σ (limit − request) / allocatable over the other pods,
//!            where a missing limit is the node's allocatable; clamped to 0..1
//! noisy    = 30 · burst                                      what neighbours can take
//! pool     = +20 when the pod has a pool and the node matches its nodeSelector
//! score    = clamp(base − stateful − noisy + pool, 0, 100)
//! ```
//!
//! A pod without limits counts by what it can take (the whole node), not by its small
//! requests: one BestEffort pod costs a node the full 30, a Burstable pod with a limit twice
//! its request of 1 core on 8 cores about 4. Node agents are left out: they run on every
//! node, so they cannot tell nodes apart.

use std::sync::Arc;

use crate::{
    cache::{Model, selector::Labels},
    framework::{Code, CycleState, LedgerFacts, MAX_NODE_SCORE, NodeView, Plugin, PodContext, Reason, Status},
};

/// The node reached the pod's density cap.
pub static DENSITY: Reason =
    Reason { code: "density_cap", message: "node(s) reached the density cap of the pod's class" };

/// Penalty per other stateful pod.
pub const STATEFUL_PENALTY: i64 = 10;
/// Cap of the stateful penalty.
pub const STATEFUL_PENALTY_MAX: i64 = 30;
/// The noisy-neighbour penalty when the other pods can take the whole node beyond their
/// requests.
pub const NOISY_PENALTY_MAX: i64 = 30;

/// The node runs a pod without limits and the profile says `neighbours: avoid-unlimited`.
pub static UNLIMITED_NEIGHBOUR: Reason = Reason {
    code: "unlimited_neighbour",
    message: "node(s) ran a pod without cpu or memory limits (neighbours: avoid-unlimited)",
};
/// Bonus for a node of the pod's pool.
pub const POOL_BONUS: i64 = 20;

/// Per-cycle state.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// `maxPerNode` and the profiles sharing the pod's density class.
    density: Option<(u32, Vec<Arc<str>>)>,
    /// The pod's pool node selector.
    pool: Option<std::collections::BTreeMap<String, String>>,
    /// `neighbours: avoid-unlimited`.
    avoid_unlimited: bool,
}

impl State {
    /// Pods of the density class on a node (bound and in flight).
    #[must_use]
    pub fn class_count(&self, node: &NodeView<'_>) -> u32 {
        let Some((_, profiles)) = &self.density else { return 0 };
        profiles
            .iter()
            .map(|p| {
                node.agg.profile_count(p)
                    + node.add.map_or(0, |a| a.profiles.iter().find(|(n, _)| n == p).map_or(0, |(_, c)| *c))
            })
            .sum()
    }
}

/// The Contention plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Contention;

impl Plugin for Contention {
    type State = State;

    const NAME: &'static str = "contention";

    /// Resolves the density class and the pool.
    fn pre_filter(&self, _model: &Model, pod: &PodContext<'_>, _ledger: &LedgerFacts) -> State {
        let density = pod.policy.profile.density.as_ref().map(|d| {
            let profiles = pod
                .config
                .profiles
                .iter()
                .filter(|(_, p)| p.density.as_ref().is_some_and(|o| o.class == d.class))
                .map(|(name, _)| Arc::from(name.as_str()))
                .collect();
            (d.max_per_node, profiles)
        });
        State {
            density,
            pool: pod.policy.pool.as_ref().map(|(_, p)| p.node_selector.clone()),
            avoid_unlimited: pod.policy.profile.neighbours == stowage_policy::config::Neighbours::AvoidUnlimited,
        }
    }

    fn filter(&self, _cycle: &CycleState<'_>, st: &State, _pod: &PodContext<'_>, node: &NodeView<'_>) -> Status {
        let mut status = Status::success();
        if let Some((max, _)) = &st.density
            && st.class_count(node) >= *max
        {
            status.add(Code::Unschedulable, &DENSITY);
        }
        if st.avoid_unlimited
            && node.agg.no_limits + node.agg.best_effort + node.add.map_or(0, |a| a.no_limits + a.best_effort) > 0
        {
            status.add(Code::Unschedulable, &UNLIMITED_NEIGHBOUR);
        }
        status
    }

    fn scores(&self, _st: &State, _pod: &PodContext<'_>) -> bool {
        true
    }

    fn score(&self, _cycle: &CycleState<'_>, st: &State, pod: &PodContext<'_>, node: &NodeView<'_>) -> i64 {
        let add = node.add;
        let cpu = node.agg.cpu_m + add.map_or(0, |a| a.cpu_m) + pod.resources.cpu_m;
        let mem = node.agg.mem + add.map_or(0, |a| a.mem) + pod.resources.mem;
        let u = ratio_permille(cpu, node.obj.alloc_cpu_m).max(ratio_permille(mem, node.obj.alloc_mem));
        let base = MAX_NODE_SCORE * (1000 - u) / 1000;
        let stateful = i64::from(node.agg.stateful + add.map_or(0, |a| a.stateful));
        let burst = match add {
            Some(a) => node.agg.burst.plus(&a.burst),
            None => node.agg.burst,
        };
        let stateful_penalty = (STATEFUL_PENALTY * stateful).min(STATEFUL_PENALTY_MAX);
        let noisy = NOISY_PENALTY_MAX * burst.permille(node.obj.alloc_cpu_m, node.obj.alloc_mem) / 1000;
        let pool = match &st.pool {
            Some(sel) if labels_match(sel, &node.obj.labels) => POOL_BONUS,
            _ => 0,
        };
        (base - stateful_penalty - noisy + pool).clamp(0, MAX_NODE_SCORE)
    }
}

fn ratio_permille(used: i64, total: i64) -> i64 {
    if total <= 0 { 1000 } else { (used.saturating_mul(1000) / total).clamp(0, 1000) }
}

/// True when every pair of the pool's node selector is among the node's labels.
fn labels_match(selector: &std::collections::BTreeMap<String, String>, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        plugins::table::{Got, pass, run},
        snapshot::Snapshot,
    };
    use stowage_fixtures::{PodBuilder, node};

    fn snapshot(pods: Vec<k8s_openapi::api::core::v1::Pod>) -> Snapshot {
        Snapshot {
            nodes: vec![node("n1", Some("a"), "8", "32Gi"), node("n2", Some("b"), "8", "32Gi")],
            pods,
            ..Snapshot::default()
        }
    }

    fn db(name: &str) -> PodBuilder {
        PodBuilder::new("db", name).member("pg", name)
    }

    #[test]
    fn filter_cases() {
        let density = "profiles:\n  pg: {density: {maxPerNode: 1}}\n";
        let avoid = "profiles:\n  pg: {neighbours: avoid-unlimited}\n";
        // (case, config, pods on n1, expected on n1)
        let cases: Vec<(&str, &str, Vec<PodBuilder>, Got)> = vec![
            (
                "density cap reached",
                density,
                vec![db("other").guaranteed("1", "1Gi")],
                Got { code: Code::Unschedulable, reason: DENSITY.message, score: None },
            ),
            ("density cap not reached", density, vec![], pass(None)),
            (
                "a pod of another profile is not of the class",
                density,
                vec![PodBuilder::new("apps", "web").guaranteed("1", "1Gi")],
                pass(None),
            ),
            (
                "a BestEffort neighbour under avoid-unlimited",
                avoid,
                vec![PodBuilder::new("apps", "web")],
                Got { code: Code::Unschedulable, reason: UNLIMITED_NEIGHBOUR.message, score: None },
            ),
            (
                "a neighbour with limits under avoid-unlimited",
                avoid,
                vec![PodBuilder::new("apps", "web").guaranteed("1", "1Gi")],
                pass(None),
            ),
            ("a BestEffort neighbour without the rule", density, vec![PodBuilder::new("apps", "web")], pass(None)),
        ];
        for (case, config, pods, want) in cases {
            let snap = snapshot(pods.into_iter().map(|p| p.node("n1").build()).collect());
            let got = run(Contention, config, &snap, &db("pg-0").build(), &["n1"]).remove(0);
            assert_eq!(Got { score: None, ..got }, want, "{case}");
        }
    }

    #[test]
    fn score_cases() {
        let config = "profiles:\n  pg: {}\n";
        // score = clamp(100·(1 − u) − stateful − noisy + pool, 0, 100), u the fuller of cpu and memory.
        let cases: Vec<(&str, Vec<PodBuilder>, i64)> = vec![
            ("an empty node", vec![], 100),
            ("half of the cpu requested", vec![PodBuilder::new("apps", "web").guaranteed("4", "1Gi")], 50),
            ("half of the memory requested", vec![PodBuilder::new("apps", "web").guaranteed("1", "16Gi")], 50),
            ("an opted-in neighbour costs 10", vec![db("other").guaranteed("1", "4Gi")], 87 - STATEFUL_PENALTY),
            (
                "four opted-in neighbours cost only the cap",
                (0..4).map(|i| db(&format!("o{i}")).guaranteed("100m", "128Mi")).collect(),
                95 - STATEFUL_PENALTY_MAX,
            ),
            (
                "a BestEffort neighbour can take the whole node",
                vec![PodBuilder::new("apps", "web")],
                100 - NOISY_PENALTY_MAX,
            ),
            ("a full node", vec![PodBuilder::new("apps", "web").guaranteed("8", "32Gi")], 0),
        ];
        for (case, pods, want) in cases {
            let snap = snapshot(pods.into_iter().map(|p| p.node("n1").build()).collect());
            let got = run(Contention, config, &snap, &db("pg-0").build(), &["n1"]).remove(0);
            assert_eq!(got, pass(Some(want)), "{case}");
        }
    }
}
