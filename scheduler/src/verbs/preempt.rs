//! The preempt verb: candidate nodes whose victims would break a group's majority are dropped.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use stowage_policy::{Config, group};
use tokio::time::Instant;

use super::{Extender, NOT_SYNCED, elapsed_us, pod_key};
use crate::{
    cache::{CacheConfig, Interner, Model, objects::PodObj},
    decisions::Decision,
    extender::v1::{ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod, MetaVictims},
};

impl Extender {
    /// Keeps only candidate nodes whose victims leave every group with its majority.
    ///
    /// A group is protected when it has opted in and `n ≥ 3`, **whatever its `quorum`
    /// setting**: `quorum: off` only turns off the zone placement guard (clusters with one zone
    /// must turn it off) and says nothing about losing the majority. For each candidate node and
    /// each protected group with members among the victims: `healthy` = members bound, Ready and
    /// not terminating; the node is dropped when evicting its healthy victims leaves
    /// `healthy − evicted < floor(n/2) + 1`. Victims that are not healthy cost nothing.
    /// `NumPDBViolations` is kept; the reply always uses victims by UID.
    pub fn preempt(&self, args: ExtenderPreemptionArgs) -> ExtenderPreemptionResult {
        let start = Instant::now();
        let (ns, name, uid) = args.pod.as_ref().map(pod_key).unwrap_or_default();
        let mut decision = Decision::new("preempt", format!("{ns}/{name}"), uid);
        let candidates: Vec<(String, MetaVictims, Vec<Option<Pod>>)> =
            match (args.node_name_to_meta_victims, args.node_name_to_victims) {
                (Some(meta), _) => meta.into_iter().map(|(n, v)| (n, v, Vec::new())).collect(),
                (None, Some(full)) => full
                    .into_iter()
                    .map(|(n, v)| {
                        let meta = MetaVictims {
                            pods: v
                                .pods
                                .iter()
                                .map(|p| MetaPod { uid: p.metadata.uid.clone().unwrap_or_default() })
                                .collect(),
                            num_pdb_violations: v.num_pdb_violations,
                        };
                        (n, meta, v.pods.into_iter().map(Some).collect())
                    })
                    .collect(),
                (None, None) => Vec::new(),
            };
        decision.nodes_in = candidates.len();
        if !self.cache.is_ready() {
            self.metrics.error("preempt", "cache_not_synced");
            decision.outcome = "error";
            decision.error = Some(NOT_SYNCED.to_owned());
            decision.duration_us = elapsed_us(start);
            self.decisions.push(decision);
            return ExtenderPreemptionResult::default();
        }
        let config = self.config.load_full();
        let mut result = ExtenderPreemptionResult::default();
        {
            let model = self.cache.read();
            for (node, meta, full) in candidates {
                match quorum_breach(&model, &config, &meta, &full) {
                    Some(why) => decision.detail.push(format!("dropped {node}: {why}")),
                    None => {
                        result.node_name_to_meta_victims.insert(node, meta);
                    }
                }
            }
        }
        decision.nodes_out = result.node_name_to_meta_victims.len();
        let outcome = if decision.nodes_out == decision.nodes_in { "kept_all" } else { "dropped_some" };
        decision.outcome = outcome;
        self.metrics.decision("preempt", outcome);
        decision.duration_us = elapsed_us(start);
        self.decisions.push(decision);
        result
    }
}

/// Why evicting `victims` would break a group's majority, if it would.
fn quorum_breach(model: &Model, config: &Config, victims: &MetaVictims, full: &[Option<Pod>]) -> Option<String> {
    struct VictimGroup {
        key: (Arc<str>, Arc<str>),
        evicted: u32,
        members: Option<u32>,
        statefulset: Option<Arc<str>>,
    }
    let mut groups: Vec<VictimGroup> = Vec::new();
    for (i, v) in victims.pods.iter().enumerate() {
        let cached = model.pod(&v.uid);
        let (ns, bits_group, members, sts, healthy) = match cached {
            Some(p) => {
                let Some(bits) = p.stowage.as_deref() else { continue };
                let Some(g) = bits.group.clone() else { continue };
                (p.namespace.clone(), g, bits.members, bits.statefulset.clone(), healthy(p))
            }
            None => {
                // Not cached (yet): read the victim object sent with nodeCacheCapable=false.
                let Some(Some(pod)) = full.get(i) else { continue };
                let cache_cfg = CacheConfig::from_config(config);
                let interner = Interner::default();
                let Some(p) = PodObj::from_k8s(pod, &interner, &cache_cfg) else { continue };
                let Some(bits) = p.stowage.as_deref() else { continue };
                let Some(g) = bits.group.clone() else { continue };
                (p.namespace.clone(), g, bits.members, bits.statefulset.clone(), healthy(&p))
            }
        };
        let key = (ns, bits_group);
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.evicted += u32::from(healthy),
            None => groups.push(VictimGroup { key, evicted: u32::from(healthy), members, statefulset: sts }),
        }
    }
    for VictimGroup { key: (ns, g), evicted, members, statefulset: sts } in groups {
        if evicted == 0 {
            continue;
        }
        let healthy_now =
            u32::try_from(model.group_members(&ns, &g).filter(|p| healthy(p)).count()).unwrap_or(u32::MAX);
        let observed = || u32::try_from(model.group_members(&ns, &g).filter(|p| !p.terminating).count()).unwrap_or(0);
        let replicas = sts.as_deref().and_then(|s| model.statefulset(&ns, s)).map(|s| s.replicas);
        let (n, _) = group::voting_members(members, replicas, observed);
        if n < group::QUORUM_MIN_MEMBERS {
            continue;
        }
        let majority = group::majority(n);
        let after = healthy_now.saturating_sub(evicted);
        if after < majority {
            return Some(format!(
                "evicting {evicted} healthy member(s) of group {ns}/{g} leaves {after} of n={n} (majority {majority})"
            ));
        }
    }
    None
}

fn healthy(p: &PodObj) -> bool {
    p.node.is_some() && p.ready && !p.terminating
}
