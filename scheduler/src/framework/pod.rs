//! The pod being scheduled as every plugin sees it: resolved policy, voting members, requests,
//! claims and node constraints, read once per cycle.

use k8s_openapi::api::core::v1::Pod;
use stowage_policy::{
    Config, GroupKey, Policy,
    group::{self, MembersOrigin},
};

use crate::cache::{
    Interner, Model,
    objects::{NodeObj, claim_names},
    resources::{PodResources, pod_resources},
    selector::NodeSelector,
};

/// The pod being scheduled, with its resolved policy and derived facts.
#[derive(Debug)]
pub struct PodContext<'c> {
    /// Namespace (`default` when the pod has none yet).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The policy resolved from the pod's annotations and the config.
    pub policy: Policy<'c>,
    /// The config the policy came from.
    pub config: &'c Config,
    /// Voting members `n`.
    pub members: u32,
    /// Where `members` came from.
    pub members_source: MembersOrigin,
    /// Requests and QoS facts.
    pub resources: PodResources,
    /// PVC names the pod mounts.
    pub claims: Vec<String>,
    /// `spec.nodeSelector`.
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity.
    pub affinity: Option<NodeSelector>,
    /// The pod is a primary.
    pub primary: bool,
}

impl<'c> PodContext<'c> {
    /// Builds the context. `n` is the `stowage.io/members` annotation, else the owning
    /// StatefulSet's replicas from the cache, else the members observed plus the pod itself.
    #[must_use]
    pub fn new(pod: &Pod, policy: Policy<'c>, config: &'c Config, model: &Model, interner: &Interner) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let name = meta.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let replicas = policy.statefulset.as_deref().and_then(|s| model.statefulset(&namespace, s)).map(|s| s.replicas);
        // Observed only when nothing declares `n`: the members seen, plus the pod itself.
        let observed = || {
            let others = policy.group.as_ref().map_or(0, |g| {
                model
                    .group_members(&g.namespace, &g.name)
                    .filter(|p| !(p.terminating || (p.namespace.as_ref() == namespace && p.name.as_ref() == name)))
                    .count()
            });
            u32::try_from(others + 1).unwrap_or(u32::MAX)
        };
        let (members, members_source) = group::voting_members(policy.members, replicas, observed);
        let primary = policy.role == Some(stowage_policy::Role::Primary);
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            resources: spec.map(pod_resources).unwrap_or_default(),
            claims: claim_names(pod),
            node_selector: spec
                .and_then(|s| s.node_selector.as_ref())
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            affinity: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|s| NodeSelector::from_k8s(interner, s)),
            namespace,
            name,
            policy,
            config,
            members,
            members_source,
            primary,
        }
    }

    /// The group, if the pod belongs to one.
    #[must_use]
    pub fn group(&self) -> Option<&GroupKey> {
        self.policy.group.as_ref()
    }

    /// True when `nodeSelector` and required node affinity admit the node.
    #[must_use]
    pub fn admits(&self, node: &NodeObj) -> bool {
        self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v.as_str()))
            && self.affinity.as_ref().is_none_or(|a| a.matches(&node.name, &node.labels))
    }

    /// True when the pod is under a rule that other pods' placements decide (see
    /// `docs/architecture.md`, "Placement under concurrency"): the quorum guard, required zone
    /// or node spread, or sibling volumes (`local-data: require`) of its group; a density cap;
    /// or, for a primary, `separatePrimaries` in any profile (a primary counts against every
    /// opted-in primary under that rule, whatever its own profile says). filter then decides
    /// the node and reserves it.
    #[must_use]
    pub fn under_cross_pod_rule(&self) -> bool {
        cross_pod_rule(&self.policy, self.config)
    }
}

/// [`PodContext::under_cross_pod_rule`] from the policy alone (before the cache is read).
#[must_use]
pub fn cross_pod_rule(p: &Policy<'_>, config: &Config) -> bool {
    let group_rule = p.group.is_some()
        && (p.quorum == stowage_policy::Quorum::Zone
            || p.zone_spread == stowage_policy::Spread::Required
            || p.node_spread == stowage_policy::Spread::Required
            || p.local_data == stowage_policy::LocalData::Require);
    let primary = p.role == Some(stowage_policy::Role::Primary);
    group_rule || p.profile.density.is_some() || (primary && config.profiles.values().any(|pr| pr.separate_primaries))
}
