//! The scheduling-framework vocabulary the plugins are written in.
//!
//! Mirrors `k8s.io/kube-scheduler/framework`: a [`Status`] with a [`Code`] and constant
//! `node(s) ...` reasons, [`FilterPlugin`] / [`ScorePlugin`] traits, and a per-cycle
//! [`CycleState`] computed **once per call** (PreFilter/PreScore) so that each node costs O(1).
//!
//! - Codes map onto the wire in one place, [`Code::failed_map`]: `Unschedulable` →
//!   `FailedNodes` (preemption may help), `UnschedulableAndUnresolvable` →
//!   `FailedAndUnresolvableNodes` (it cannot), `Error` → the reply's `Error`.
//! - Scores: each plugin scores 0..=[`MAX_NODE_SCORE`]; the combined score is
//!   `Σ weightᵢ·scoreᵢ / Σ weightᵢ` over the plugins active for the pod (0..100) ([`combine`]).
//!   prioritize sends it normalised over the candidates like the framework's default
//!   `NormalizeScore`: the best candidate gets 10, the others `round(10·combined/best)`
//!   ([`normalize_extender`]), so distinctions survive the extender's 0..10 scale.

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use serde::Serialize;
use stowage_policy::{
    Config, GroupKey, Policy,
    config::Weights,
    group::{self, MembersOrigin},
};
use tokio::time::Instant;

use crate::{
    cache::{
        Model, NodeId, ZoneId,
        model::NodeAgg,
        objects::{NodeObj, claim_names},
        resources::{PodResources, pod_resources},
        selector::{Labels, NodeSelector},
    },
    ledger::Ledger,
    plugins::{contention, local_data, zone_spread},
};
use k8s_openapi::api::core::v1::Pod;

/// Highest score a plugin gives (`MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Outcome class of a plugin call (`framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Code {
    /// The node passes.
    Success,
    /// An internal fault.
    Error,
    /// The node fails; preemption might help.
    Unschedulable,
    /// The node fails; preemption would not change anything.
    UnschedulableAndUnresolvable,
}

/// Which wire map a refused node goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedMap {
    /// `FailedNodes`.
    FailedNodes,
    /// `FailedAndUnresolvableNodes`.
    FailedAndUnresolvableNodes,
    /// The reply's `Error`.
    Error,
}

impl Code {
    /// The single mapping from codes to the extender wire format; `None` for success.
    #[must_use]
    pub const fn failed_map(self) -> Option<FailedMap> {
        match self {
            Code::Success => None,
            Code::Unschedulable => Some(FailedMap::FailedNodes),
            Code::UnschedulableAndUnresolvable => Some(FailedMap::FailedAndUnresolvableNodes),
            Code::Error => Some(FailedMap::Error),
        }
    }

    /// Name as in the Go framework.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
        }
    }
}

/// A constant refusal reason: a bounded metric label and the `node(s) ...` message.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    /// Short snake_case code, used as the `reason` metric label.
    pub code: &'static str,
    /// The message the scheduler shows (`0/6 nodes are available: 3 node(s) ...`).
    pub message: &'static str,
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.message)
    }
}

/// The node is not in the cache (it may have just joined).
pub static NODE_NOT_CACHED: Reason =
    Reason { code: "node_not_cached", message: "node(s) were not in the stowage cache yet" };

/// A feasible node other than the one filter reserved for a pod under a cross-pod rule.
/// kube-scheduler counts nodes per identical reason (`0/6 nodes are available: 5 node(s) ...`)
/// and joins reasons with `, `, so the text is constant and has no comma.
pub static NOT_CHOSEN: Reason =
    Reason { code: "not_chosen", message: "node(s) were not the node stowage reserved for the pod" };

const MAX_REASONS: usize = 4;

/// Result of a filter (`framework.Status`): a code and every reason that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: [Option<&'static Reason>; MAX_REASONS],
}

impl Default for Status {
    fn default() -> Self {
        Self::success()
    }
}

impl Status {
    /// Success.
    #[must_use]
    pub const fn success() -> Self {
        Self { code: Code::Success, reasons: [None; MAX_REASONS] }
    }

    /// A refusal with one reason.
    #[must_use]
    pub const fn new(code: Code, reason: &'static Reason) -> Self {
        Self { code, reasons: [Some(reason), None, None, None] }
    }

    /// `Unschedulable` with one reason.
    #[must_use]
    pub const fn unschedulable(reason: &'static Reason) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    #[must_use]
    pub const fn unresolvable(reason: &'static Reason) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// Adds a reason; the code becomes the more severe of the two (unresolvable wins). A reason
    /// that raises the code goes first, so the first reason is always one of the most severe
    /// (the one [`Status::wire_message`] sends).
    pub fn add(&mut self, code: Code, reason: &'static Reason) {
        let raises = self.code != Code::Success && code > self.code;
        if self.code == Code::Success || code > self.code {
            self.code = code;
        }
        let slot = self.reasons.iter().position(|r| r.is_none_or(|r| std::ptr::eq(r, reason)));
        if raises {
            // Shift the others right (dropping the last one when full) and put it first.
            let end = slot.unwrap_or(MAX_REASONS - 1);
            self.reasons[..=end].rotate_right(1);
            self.reasons[0] = Some(reason);
        } else if let Some(slot) = slot {
            self.reasons[slot] = Some(reason);
        }
    }

    /// The code.
    #[must_use]
    pub const fn code(&self) -> Code {
        self.code
    }

    /// True on success.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// The reasons.
    pub fn reasons(&self) -> impl Iterator<Item = &'static Reason> + '_ {
        self.reasons.iter().flatten().copied()
    }

    /// Every reason, joined with `, ` when several apply (decisions and explain show this).
    #[must_use]
    pub fn message(&self) -> Cow<'static, str> {
        let mut it = self.reasons();
        match (it.next(), it.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(r), None) => Cow::Borrowed(r.message),
            (Some(_), Some(_)) => Cow::Owned(self.reasons().map(|r| r.message).collect::<Vec<_>>().join(", ")),
        }
    }
}

impl Status {
    /// The reason kube-scheduler gets for the node: the first, most severe one only.
    ///
    /// kube-scheduler's FailedScheduling message (the pod's `PodScheduled` condition, `kubectl
    /// describe pod`) counts nodes per identical reason string: `0/6 nodes are available: 2
    /// Insufficient cpu, 4 node(s) would give a zone more than ...`. Several reasons joined into
    /// one string would split that count by combination, and their `, ` would read as the
    /// scheduler's own list separator. Every reason stays in the decisions.
    #[must_use]
    pub fn wire_message(&self) -> &'static str {
        self.reasons().next().map_or("", |r| r.message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message())
    }
}

/// The three plugins, in filter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginName {
    /// [`crate::plugins::local_data`].
    LocalData,
    /// [`crate::plugins::zone_spread`].
    ZoneSpread,
    /// [`crate::plugins::contention`].
    Contention,
}

impl PluginName {
    /// Every plugin, in filter order.
    pub const ALL: [PluginName; 3] = [PluginName::LocalData, PluginName::ZoneSpread, PluginName::Contention];

    /// Kebab-case name (metric label, explain tables).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PluginName::LocalData => "local-data",
            PluginName::ZoneSpread => "zone-spread",
            PluginName::Contention => "contention",
        }
    }

    /// The plugin's weight.
    #[must_use]
    pub const fn weight(self, w: &Weights) -> u32 {
        match self {
            PluginName::LocalData => w.local_data,
            PluginName::ZoneSpread => w.zone_spread,
            PluginName::Contention => w.contention,
        }
    }
}

/// A Filter plugin (`framework.FilterPlugin`). Called once per node, after
/// [`CycleState::prepare`]; must be O(1)-ish and allocation-free per node.
pub trait FilterPlugin {
    /// Plugin name.
    const NAME: PluginName;
    /// Whether `node` can run the pod.
    fn filter(&self, state: &CycleState<'_>, pod: &PodContext<'_>, node: &NodeView<'_>) -> Status;
}

/// A Score plugin (`framework.ScorePlugin` with optional `ScoreExtensions`).
pub trait ScorePlugin {
    /// Plugin name.
    const NAME: PluginName;
    /// False when the plugin has nothing to say about this pod (PreScore `Skip`): it then
    /// scores 0 everywhere and its weight leaves the combination.
    fn active(&self, state: &CycleState<'_>, pod: &PodContext<'_>) -> bool;
    /// Score of one node, 0..=[`MAX_NODE_SCORE`] (before normalisation).
    fn score(&self, state: &CycleState<'_>, pod: &PodContext<'_>, node: &NodeView<'_>) -> i64;
    /// Rescales the scores of all scored nodes (`NormalizeScore`); default: none.
    fn normalize_score(&self, _state: &CycleState<'_>, _pod: &PodContext<'_>, _scores: &mut [i64]) {}
}

/// Combines per-plugin scores (0..100) with weights: returns `(combined 0..100, extender 0..10)`.
/// Inactive plugins (weight 0 or `active == false`) are left out of the weight sum; with no
/// active plugin every node scores 0.
#[must_use]
pub fn combine(scores: &[i64; 3], weights: &[u32; 3]) -> (i64, i64) {
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

/// A dense set of node ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSet(Vec<u64>);

impl NodeSet {
    /// Adds a node.
    pub fn insert(&mut self, id: NodeId) {
        let (w, b) = ((id / 64) as usize, id % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }

    /// True when the node is in the set.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.0.get((id / 64) as usize).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Keeps only nodes also in `other`.
    pub fn intersect(&mut self, other: &NodeSet) {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w &= other.0.get(i).copied().unwrap_or(0);
        }
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// What in-flight placements add to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerAdd {
    /// Requested cpu, millicores.
    pub cpu_m: i64,
    /// Requested memory, bytes.
    pub mem: i64,
    /// Opted-in pods.
    pub stateful: u32,
    /// Pods lacking limits.
    pub no_limits: u32,
    /// BestEffort pods.
    pub best_effort: u32,
    /// What the pods can take beyond their requests.
    pub burst: crate::cache::resources::Burst,
    /// Primaries.
    pub primaries: u32,
    /// Opted-in pods per profile.
    pub profiles: Vec<(Arc<str>, u32)>,
}

/// A node as plugins see it: the cached object, its totals and what the ledger adds.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Slot id, when the node is in the cache.
    pub id: Option<NodeId>,
    /// The trimmed node.
    pub obj: &'a NodeObj,
    /// Totals of pods bound to it.
    pub agg: &'a NodeAgg,
    /// Zone id, when the zone is known to the cache.
    pub zone: Option<ZoneId>,
    /// In-flight placements on it.
    pub add: Option<&'a LedgerAdd>,
}

impl NodeView<'_> {
    /// Node name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Zone label value.
    #[must_use]
    pub fn zone_name(&self) -> Option<&str> {
        self.obj.zone.as_deref()
    }
}

/// The pod being scheduled, with its resolved policy and derived facts.
#[derive(Debug)]
pub struct PodContext<'c> {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Effective policy.
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
    pub fn new(
        pod: &Pod,
        policy: Policy<'c>,
        config: &'c Config,
        model: &Model,
        interner: &crate::cache::Interner,
    ) -> Self {
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

    /// Plugin weights as an array in [`PluginName::ALL`] order.
    #[must_use]
    pub fn weights(&self) -> [u32; 3] {
        PluginName::ALL.map(|p| p.weight(&self.policy.weights))
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

/// What the ledger's reservations and placements add for one cycle.
#[derive(Debug, Clone, Default)]
pub struct LedgerFacts {
    /// Per node: what in-flight pods add.
    pub adds: HashMap<NodeId, LedgerAdd>,
    /// PVs reserved by in-flight pods.
    pub reserved_pvs: Vec<Arc<str>>,
    /// In-flight members of the pod's group: (uid, name, node).
    pub group_placements: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// PVs reserved by in-flight members of the pod's group.
    pub group_reserved_pvs: Vec<Arc<str>>,
}

impl LedgerFacts {
    /// Reads the ledger once for a cycle. Entries whose pod the cache already shows bound are
    /// skipped (the cache counts them), and so is the entry of `own_uid`: a pod's own
    /// reservation never counts against its next filter.
    #[must_use]
    pub fn collect(ledger: &Ledger, model: &Model, group: Option<&GroupKey>, own_uid: &str, now: Instant) -> Self {
        let mut facts = LedgerFacts::default();
        ledger.with_live(now, |entries| {
            for p in entries {
                if (!own_uid.is_empty() && p.uid.as_ref() == own_uid)
                    || model.pod(&p.uid).is_some_and(|c| c.node.is_some())
                {
                    continue;
                }
                facts.reserved_pvs.extend(p.claimed_pvs.iter().cloned());
                let in_group = group.is_some_and(|g| {
                    p.namespace.as_ref() == g.namespace && p.group.as_deref() == Some(g.name.as_str())
                });
                if in_group {
                    facts.group_placements.push((p.uid.clone(), p.name.clone(), p.node.clone()));
                    facts.group_reserved_pvs.extend(p.claimed_pvs.iter().cloned());
                }
                let Some(id) = model.node_id(&p.node) else { continue };
                let add = facts.adds.entry(id).or_default();
                let r = &p.resources;
                add.cpu_m += r.cpu_m;
                add.mem += r.mem;
                add.no_limits += u32::from(r.no_limits);
                add.best_effort += u32::from(r.best_effort);
                add.burst.apply(r, 1);
                if let Some(profile) = &p.profile {
                    add.stateful += 1;
                    add.primaries += u32::from(p.primary);
                    match add.profiles.iter_mut().find(|(n, _)| n == profile) {
                        Some((_, c)) => *c += 1,
                        None => add.profiles.push((profile.clone(), 1)),
                    }
                }
            }
        });
        facts
    }
}

/// Per-cycle precomputed state (`framework.CycleState`): what PreFilter/PreScore compute once
/// per call so that each node costs O(1).
#[derive(Debug)]
pub struct CycleState<'m> {
    /// The cache model the cycle reads (under the cache's read lock).
    pub model: &'m Model,
    /// Ledger facts.
    pub ledger: LedgerFacts,
    /// LocalData state.
    pub local_data: local_data::State,
    /// ZoneSpread state.
    pub zone_spread: zone_spread::State,
    /// Contention state.
    pub contention: contention::State,
}

impl<'m> CycleState<'m> {
    /// Runs every plugin's PreFilter/PreScore.
    #[must_use]
    pub fn prepare(model: &'m Model, ledger: &Ledger, pod: &PodContext<'_>, now: Instant) -> Self {
        let facts = LedgerFacts::collect(ledger, model, pod.group(), &pod.uid, now);
        Self {
            model,
            local_data: local_data::pre_filter(model, pod, &facts),
            zone_spread: zone_spread::pre_filter(model, pod, &facts),
            contention: contention::pre_filter(model, pod),
            ledger: facts,
        }
    }

    /// The model the cycle reads.
    #[must_use]
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// A view of a cached node.
    #[must_use]
    pub fn view(&self, id: NodeId) -> Option<NodeView<'_>> {
        let slot = self.model.slot(id);
        Some(NodeView {
            id: Some(id),
            obj: slot.obj.as_ref()?,
            agg: &slot.agg,
            zone: slot.zone,
            add: self.ledger.adds.get(&id),
        })
    }
}

/// The three plugins, run in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framework {
    /// Local data.
    pub local_data: local_data::LocalData,
    /// Zone spread and quorum guard.
    pub zone_spread: zone_spread::ZoneSpread,
    /// Contention.
    pub contention: contention::Contention,
}

/// One node's filter result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterOutcome {
    /// The status (success or the first failing plugin's).
    pub status: Status,
    /// The plugin that refused, if any.
    pub plugin: Option<PluginName>,
}

impl Framework {
    /// Runs the filter plugins in order and stops at the first refusal (as the framework does);
    /// the refusing plugin reports every reason it found.
    #[must_use]
    pub fn filter(&self, state: &CycleState<'_>, pod: &PodContext<'_>, node: &NodeView<'_>) -> FilterOutcome {
        let s = self.local_data.filter(state, pod, node);
        if !s.is_success() {
            return FilterOutcome { status: s, plugin: Some(PluginName::LocalData) };
        }
        let s = self.zone_spread.filter(state, pod, node);
        if !s.is_success() {
            return FilterOutcome { status: s, plugin: Some(PluginName::ZoneSpread) };
        }
        let s = self.contention.filter(state, pod, node);
        if !s.is_success() {
            return FilterOutcome { status: s, plugin: Some(PluginName::Contention) };
        }
        FilterOutcome { status: Status::success(), plugin: None }
    }

    /// Which plugins score this pod, as weights (0 for inactive ones).
    #[must_use]
    pub fn active_weights(&self, state: &CycleState<'_>, pod: &PodContext<'_>) -> [u32; 3] {
        let w = pod.weights();
        let active = [
            self.local_data.active(state, pod),
            self.zone_spread.active(state, pod),
            self.contention.active(state, pod),
        ];
        [0, 1, 2].map(|i| if active[i] { w[i] } else { 0 })
    }

    /// Scores every node: per-plugin scores after normalisation, written to `out`
    /// (`out[i]` for `nodes[i]`). Inactive plugins score 0.
    pub fn score(&self, state: &CycleState<'_>, pod: &PodContext<'_>, nodes: &[NodeView<'_>], out: &mut Vec<[i64; 3]>) {
        out.clear();
        out.resize(nodes.len(), [0; 3]);
        let weights = self.active_weights(state, pod);
        let mut column = Vec::with_capacity(nodes.len());
        for (p, w) in weights.iter().enumerate() {
            if *w == 0 {
                continue;
            }
            column.clear();
            for n in nodes {
                column.push(match p {
                    0 => self.local_data.score(state, pod, n),
                    1 => self.zone_spread.score(state, pod, n),
                    _ => self.contention.score(state, pod, n),
                });
            }
            match p {
                0 => self.local_data.normalize_score(state, pod, &mut column),
                1 => self.zone_spread.normalize_score(state, pod, &mut column),
                _ => self.contention.normalize_score(state, pod, &mut column),
            }
            for (o, s) in out.iter_mut().zip(&column) {
                o[p] = (*s).clamp(0, MAX_NODE_SCORE);
            }
        }
    }
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

/// Label lookups on plain pairs (for pool selectors).
#[must_use]
pub fn labels_match(selector: &std::collections::BTreeMap<String, String>, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static A: Reason = Reason { code: "a", message: "node(s) a" };
    static B: Reason = Reason { code: "b", message: "node(s) b" };

    static C: Reason = Reason { code: "c", message: "node(s) c" };

    #[test]
    fn status_keeps_every_reason_and_the_most_severe_code() {
        let mut s = Status::unschedulable(&A);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        s.add(Code::Unschedulable, &A);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), "node(s) b, node(s) a", "the reason that made it unresolvable first");
        assert!(matches!(Status::unschedulable(&A).message(), Cow::Borrowed("node(s) a")));
    }

    #[test]
    fn the_wire_gets_one_reason_of_the_most_severe_code() {
        // Found order: an Unschedulable reason, then an unresolvable one, then another.
        let mut s = Status::unschedulable(&A);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        s.add(Code::Unschedulable, &C);
        assert_eq!(s.wire_message(), "node(s) b");
        assert_eq!(s.message(), "node(s) b, node(s) a, node(s) c");
        // Already present, then raising: moved to the front, not repeated.
        let mut s = Status::unschedulable(&A);
        s.add(Code::Unschedulable, &B);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        assert_eq!(s.message(), "node(s) b, node(s) a");
        // Full: the new most severe reason goes first and the last one is dropped.
        static D: Reason = Reason { code: "d", message: "node(s) d" };
        static E: Reason = Reason { code: "e", message: "node(s) e" };
        let mut s = Status::unschedulable(&A);
        for r in [&B, &C, &D] {
            s.add(Code::Unschedulable, r);
        }
        s.add(Code::UnschedulableAndUnresolvable, &E);
        assert_eq!(s.message(), "node(s) e, node(s) a, node(s) b, node(s) c");
        assert_eq!(Status::success().wire_message(), "");
    }

    #[test]
    fn codes_map_to_the_wire_once() {
        assert_eq!(Code::Success.failed_map(), None);
        assert_eq!(Code::Unschedulable.failed_map(), Some(FailedMap::FailedNodes));
        assert_eq!(Code::UnschedulableAndUnresolvable.failed_map(), Some(FailedMap::FailedAndUnresolvableNodes));
        assert_eq!(Code::Error.failed_map(), Some(FailedMap::Error));
    }

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

    #[test]
    fn node_set() {
        let mut s = NodeSet::default();
        assert!(s.is_empty());
        s.insert(3);
        s.insert(200);
        assert!(s.contains(3) && s.contains(200) && !s.contains(4) && !s.contains(10_000));
        let mut t = NodeSet::default();
        t.insert(200);
        s.intersect(&t);
        assert!(!s.contains(3) && s.contains(200));
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
