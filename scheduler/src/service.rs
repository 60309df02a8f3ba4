//! The extender's verbs as plain functions over wire types: no HTTP here.
//!
//! - **filter**: pods that have not opted in get every input node back untouched (fast path);
//!   invalid policy annotations give `Error` naming them; an unsynced cache gives
//!   `Error: "stowage cache has not synced yet"`; otherwise each node runs the filter plugins.
//!   For a pod under a cross-pod rule ([`PodContext::under_cross_pod_rule`]) filter then
//!   **decides**: it scores the feasible nodes as prioritize would, keeps only the best one
//!   (ties by node name), refuses the others with [`NOT_CHOSEN`] and reserves the node in the
//!   ledger at once, one decision at a time (see [`crate::ledger`] and `docs/architecture.md`,
//!   "Placement under concurrency"). Other pods get every feasible node.
//! - **prioritize**: zero scores for pods that have not opted in (or with invalid annotations),
//!   an empty list while the cache is unsynced, else the weighted plugin scores normalised over
//!   the candidates to 0..10 (best candidate 10, [`crate::framework::normalize_extender`]).
//! - **preempt**: drops every candidate node whose victims would leave a group below its
//!   majority (see [`Extender::preempt`]); always answers with victims by UID.
//! - **bind**: records the placement in the ledger first (confirming the pod's reservation),
//!   then binds through a [`Binder`]; idempotent on retries.
//!
//! Every call leaves a [`Decision`] in the ring buffer.

use std::{borrow::Cow, sync::Arc};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Node, Pod};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use stowage_policy::{Config, group, resolve};
use tokio::time::Instant;

use crate::{
    binder::{BindError, Binder},
    cache::{
        ClusterCache, Model,
        model::NodeAgg,
        objects::{NodeObj, PodObj},
    },
    events::{self, EventSink, EventType, PodEvent},
    explain::{Decision, DecisionLog, NodeLine, PluginScores, RefusalCount, ZoneCount},
    extender::v1::{
        ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
        ExtenderPreemptionResult, HostPriority, HostPriorityList, MetaPod, MetaVictims, NodeList, raw_node_name,
    },
    framework::{
        CycleState, FailedMap, FilterOutcome, Framework, LedgerFacts, NODE_NOT_CACHED, NOT_CHOSEN, NodeView,
        PluginName, PodContext, Status, combine, normalize_extender,
    },
    ledger::{Placement, PodSummary},
    metrics::Metrics,
    plugins::{local_data, zone_spread},
};

/// Error text while the cache has not synced.
pub const NOT_SYNCED: &str = "stowage cache has not synced yet";

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
        Self { decisions: crate::explain::DEFAULT_CAPACITY, detail_nodes: crate::explain::DETAIL_NODES }
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

static EMPTY_AGG: NodeAgg = NodeAgg {
    cpu_m: 0,
    mem: 0,
    pods: 0,
    stateful: 0,
    no_limits: 0,
    best_effort: 0,
    burst: crate::cache::resources::Burst {
        cpu_m: 0,
        mem: 0,
        cpu_unlimited: 0,
        cpu_unlimited_req_m: 0,
        mem_unlimited: 0,
        mem_unlimited_req: 0,
    },
    primaries: 0,
    profiles: Vec::new(),
};

/// Candidate nodes as received.
enum Input {
    Names(Vec<String>),
    Nodes(NodeList),
}

impl Input {
    fn from_args(node_names: Option<Vec<String>>, nodes: Option<NodeList>) -> Self {
        match (node_names, nodes) {
            (Some(names), _) => Input::Names(names),
            (None, Some(nodes)) => Input::Nodes(nodes),
            (None, None) => Input::Names(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Input::Names(n) => n.len(),
            Input::Nodes(n) => n.items.len(),
        }
    }
}

/// Names and, for nodes the cache lacks, trimmed copies of the objects sent in `Nodes`.
struct Candidates<'i> {
    names: Vec<&'i str>,
    fallback: Vec<Option<NodeObj>>,
}

/// What one filter pass found, besides the per-node outcomes.
#[derive(Default)]
struct FilterPass {
    passing: usize,
    refusals: Vec<(Option<PluginName>, &'static crate::framework::Reason, crate::framework::Code, usize)>,
    event: Option<(&'static str, String)>,
    /// The node reserved for a pod under a cross-pod rule, with its combined score.
    reserved: Option<(String, i64)>,
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

/// Members of a group per zone: bound or nominated non-terminating pods plus unconfirmed
/// ledger placements. Lists zones holding members and the zones in `usable` (those the pod's
/// last filter listed: zones it may use), or without that, zones that have nodes.
fn group_zone_counts(
    model: &Model,
    facts: &LedgerFacts,
    namespace: &str,
    group: &str,
    usable: Option<&[ZoneCount]>,
) -> Vec<ZoneCount> {
    let mut counts: Vec<ZoneCount> =
        model.zones().iter().map(|z| ZoneCount { zone: z.to_string(), members: 0 }).collect();
    let mut bump = |node: &str| {
        if let Some(z) = model.node_id(node).and_then(|id| model.slot(id).zone) {
            counts[usize::from(z)].members += 1;
        }
    };
    let mut seen = Vec::new();
    for m in model.group_members(namespace, group) {
        if m.terminating {
            continue;
        }
        if let Some(n) = m.node.as_ref().or(m.nominated.as_ref()) {
            bump(n);
            seen.push(m.uid.clone());
        }
    }
    for (uid, _, node) in &facts.group_placements {
        if !seen.contains(uid) {
            bump(node);
        }
    }
    counts.retain(|c| {
        c.members > 0
            || match usable {
                Some(usable) => usable.iter().any(|u| u.zone == c.zone),
                None => model.zone_id(&c.zone).is_some_and(|z| !model.zone_nodes(z).is_empty()),
            }
    });
    counts
}

fn zones_text(z: &[ZoneCount]) -> String {
    z.iter().map(|z| format!("{}={}", z.zone, z.members)).collect::<Vec<_>>().join(" ")
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
            framework: Framework::default(),
            options,
            decide: Mutex::new(()),
        }
    }

    /// The cache.
    #[must_use]
    pub fn cache(&self) -> &Arc<ClusterCache> {
        &self.cache
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Recent decisions.
    #[must_use]
    pub fn decisions(&self) -> &DecisionLog {
        &self.decisions
    }

    /// The current config.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    fn candidates<'i>(&self, input: &'i Input) -> Candidates<'i> {
        match input {
            Input::Names(names) => {
                Candidates { names: names.iter().map(String::as_str).collect(), fallback: Vec::new() }
            }
            Input::Nodes(list) => {
                let cfg = self.cache.cache_config();
                let model = self.cache.read();
                let mut names = Vec::with_capacity(list.items.len());
                let mut fallback = Vec::with_capacity(list.items.len());
                for raw in &list.items {
                    let name = raw_node_name(raw).unwrap_or_default();
                    let cached = model.node_id(name).is_some_and(|id| model.slot(id).obj.is_some());
                    fallback.push(if cached { None } else { trim_raw(raw, self.cache.interner(), &cfg) });
                    names.push(name);
                }
                Candidates { names, fallback }
            }
        }
    }

    /// Builds node views for the candidates: cached nodes, else the objects sent with the
    /// request, else `None`.
    fn views<'a>(
        state: &'a CycleState<'a>,
        model: &'a Model,
        names: &[&str],
        fallback: &'a [Option<NodeObj>],
    ) -> Vec<Option<NodeView<'a>>> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if let Some(v) = model.node_id(name).and_then(|id| state.view(id)) {
                    return Some(v);
                }
                fallback.get(i).and_then(Option::as_ref).map(|obj| NodeView {
                    id: None,
                    obj,
                    agg: &EMPTY_AGG,
                    zone: obj.zone.as_deref().and_then(|z| model.zone_id(z)),
                    add: None,
                })
            })
            .collect()
    }

    // === filter ===

    /// Filters candidate nodes for a pod. A node named twice is answered once; a nameless
    /// candidate is an `Error`.
    pub async fn filter(&self, mut args: ExtenderArgs) -> ExtenderFilterResult {
        let start = Instant::now();
        if let Err(e) = args.dedupe_candidates() {
            self.metrics.error("filter", "bad_request");
            return ExtenderFilterResult::error(format!("invalid candidate nodes: {e}"));
        }
        let ExtenderArgs { pod, nodes, node_names } = args;
        let input = Input::from_args(node_names, nodes);
        let Some(pod) = pod else {
            self.metrics.error("filter", "bad_request");
            return ExtenderFilterResult::error("extender args have no Pod");
        };
        let config = self.config.load_full();
        let policy = match resolve(&pod.metadata, &config) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.metrics.decision("filter", "not_opted_in");
                return pass_all(input);
            }
            Err(errors) => {
                let msg = format!("invalid stowage policy annotations: {errors}");
                self.metrics.error("filter", "invalid_policy");
                self.metrics.decision("filter", "error");
                let (ns, name, uid) = pod_key(&pod);
                let mut d = Decision::new("filter", format!("{ns}/{name}"), uid);
                d.outcome = "error";
                d.error = Some(msg.clone());
                d.nodes_in = input.len();
                d.duration_us = elapsed_us(start);
                self.decisions.push(d);
                return ExtenderFilterResult::error(msg);
            }
        };
        if !self.cache.is_ready() {
            self.metrics.error("filter", "cache_not_synced");
            self.metrics.decision("filter", "error");
            return ExtenderFilterResult::error(NOT_SYNCED);
        }
        let (ns, name, uid) = pod_key(&pod);
        let reserve = !uid.is_empty() && crate::framework::cross_pod_rule(&policy, &config);
        let mut decision = Decision::new("filter", format!("{ns}/{name}"), uid.clone());
        decision.nodes_in = input.len();
        let (outcomes, pass) = {
            let candidates = self.candidates(&input);
            // Decide and reserve as one step: taken before the cache and the ledger are read, so
            // this decision sees every earlier reservation and the next one sees this.
            let _decide = reserve.then(|| self.decide.lock());
            let model = self.cache.read();
            let now = Instant::now();
            let ctx = PodContext::new(&pod, policy, &config, &model, self.cache.interner());
            let state = CycleState::prepare(&model, self.cache.ledger(), &ctx, now);
            let views = Self::views(&state, &model, &candidates.names, &candidates.fallback);
            let mut outcomes: Vec<FilterOutcome> = views
                .iter()
                .map(|v| match v {
                    Some(v) => self.framework.filter(&state, &ctx, v),
                    None => FilterOutcome { status: Status::unschedulable(&NODE_NOT_CACHED), plugin: None },
                })
                .collect();
            record_group(&mut decision, &state, &model, &ctx);
            let mut pass = FilterPass {
                event: refusal_event(&ctx, &state.zone_spread, &outcomes, &decision.zone_counts),
                ..FilterPass::default()
            };
            // One pass over the results: refusal counts, a sample of refusals.
            for (i, o) in outcomes.iter().enumerate() {
                let zone = views[i].and_then(|v| v.obj.zone.as_ref());
                if o.status.is_success() {
                    pass.passing += 1;
                    continue;
                }
                for r in o.status.reasons() {
                    match pass.refusals.iter_mut().find(|c| c.0 == o.plugin && std::ptr::eq(c.1, r)) {
                        Some(c) => c.3 += 1,
                        None => pass.refusals.push((o.plugin, r, o.status.code(), 1)),
                    }
                }
                if decision.nodes.len() < self.options.detail_nodes {
                    decision.nodes.push(NodeLine {
                        node: candidates.names[i].to_owned(),
                        zone: zone.map(ToString::to_string),
                        feasible: false,
                        code: o.status.code().as_str(),
                        plugin: o.plugin.map(PluginName::as_str),
                        reason: o.status.message().into_owned(),
                        scores: PluginScores::default(),
                        combined: 0,
                        score: 0,
                    });
                }
            }
            if reserve && pass.passing > 0 {
                let placement = self.decide_node(&state, &ctx, &candidates.names, &views, &mut outcomes, &mut decision);
                pass.reserved = Some((placement.node.to_string(), decision.nodes.first().map_or(0, |l| l.combined)));
                self.cache.ledger().reserve(placement);
            } else {
                // A retry that is no longer under a rule, or that found no node: its earlier
                // reservation must not outlive this cycle.
                self.cache.ledger().release(&uid);
            }
            (outcomes, pass)
        };

        for (plugin, reason, code, n) in &pass.refusals {
            let plugin = plugin.map_or("framework", PluginName::as_str);
            self.metrics.refusal(plugin, reason.code, *n as u64);
            decision.refusals.push(RefusalCount { plugin, code: code.as_str(), reason: reason.message, nodes: *n });
        }
        decision.nodes_out = pass.passing;
        if let Some((node, combined)) = &pass.reserved {
            decision.nodes_out = 1;
            decision.detail.push(format!(
                "reserved node {node} (combined score {combined}, best of {} feasible); only this node is returned",
                pass.passing
            ));
        }
        if let Some((reason, message)) = pass.event {
            self.events.publish(PodEvent {
                namespace: ns.clone(),
                name: name.clone(),
                uid: uid.clone(),
                type_: EventType::Warning,
                reason,
                action: "Scheduling",
                message,
            });
        }
        let outcome = match (&pass.reserved, pass.passing) {
            (Some(_), _) => "reserved",
            (None, 0) => "no_feasible_node",
            (None, _) => "feasible",
        };
        self.metrics.decision("filter", outcome);
        decision.outcome = outcome;
        decision.duration_us = elapsed_us(start);
        self.decisions.push(decision);
        build_filter_result(input, &outcomes)
    }

    /// Scores the feasible nodes with the score plugins prioritize uses, keeps the best one
    /// (highest combined score, ties by node name), turns every other feasible outcome into
    /// [`NOT_CHOSEN`], puts the feasible nodes first in the decision's detail and returns the
    /// reservation to record.
    fn decide_node(
        &self,
        state: &CycleState<'_>,
        ctx: &PodContext<'_>,
        names: &[&str],
        views: &[Option<NodeView<'_>>],
        outcomes: &mut [FilterOutcome],
        decision: &mut Decision,
    ) -> Placement {
        let feasible: Vec<usize> = (0..outcomes.len()).filter(|i| outcomes[*i].status.is_success()).collect();
        let fviews: Vec<NodeView<'_>> = feasible.iter().filter_map(|i| views[*i]).collect();
        debug_assert_eq!(fviews.len(), feasible.len(), "a feasible node always has a view");
        let mut scores = Vec::new();
        self.framework.score(state, ctx, &fviews, &mut scores);
        let weights = self.framework.active_weights(state, ctx);
        let combined: Vec<i64> = scores.iter().map(|s| combine(s, &weights).0).collect();
        let normalised = normalize_extender(&combined);
        // Best first: combined score descending, then node name ascending.
        let mut order: Vec<usize> = (0..feasible.len()).collect();
        order
            .sort_by(|a, b| combined[*b].cmp(&combined[*a]).then_with(|| names[feasible[*a]].cmp(names[feasible[*b]])));
        let best = order[0];
        for (k, i) in feasible.iter().enumerate() {
            if k != best {
                outcomes[*i] = FilterOutcome { status: Status::unschedulable(&NOT_CHOSEN), plugin: None };
            }
        }
        let lines: Vec<NodeLine> = order
            .iter()
            .take(self.options.detail_nodes.max(1))
            .map(|k| {
                let v = fviews[*k];
                let chosen = *k == best;
                NodeLine {
                    node: names[feasible[*k]].to_owned(),
                    zone: v.zone_name().map(str::to_owned),
                    feasible: true,
                    code: if chosen { "Success" } else { "Unschedulable" },
                    plugin: None,
                    reason: if chosen { String::new() } else { NOT_CHOSEN.message.to_owned() },
                    scores: PluginScores::from(scores[*k]),
                    combined: combined[*k],
                    score: normalised[*k],
                }
            })
            .collect();
        decision.nodes.splice(0..0, lines);
        decision.nodes.truncate(self.options.detail_nodes.max(1) * 2);

        let view = fviews[best];
        let node = names[feasible[best]];
        let interner = self.cache.interner();
        let claims: Vec<Arc<str>> = ctx.claims.iter().map(|c| interner.intern(c)).collect();
        let claimed =
            local_data::likely_static_pvs(state.model(), &ctx.namespace, &claims, node, &state.ledger.reserved_pvs);
        Placement {
            uid: Arc::from(ctx.uid.as_str()),
            namespace: interner.intern(&ctx.namespace),
            name: Arc::from(ctx.name.as_str()),
            group: ctx.group().map(|g| interner.intern(&g.name)),
            node: interner.intern(node),
            zone: view.obj.zone.clone(),
            resources: ctx.resources,
            profile: Some(interner.intern(&ctx.policy.profile_name)),
            primary: ctx.primary,
            claims,
            claimed_pvs: claimed,
            reserved: true,
            expires: Instant::now() + ctx.config.ledger_ttl,
            nominated: false,
        }
    }

    // === prioritize ===

    /// Scores candidate nodes 0..10, once per node name; nothing for a nameless candidate.
    pub fn prioritize(&self, mut args: ExtenderArgs) -> HostPriorityList {
        let start = Instant::now();
        if args.dedupe_candidates().is_err() {
            self.metrics.error("prioritize", "bad_request");
            return Vec::new();
        }
        let ExtenderArgs { pod, nodes, node_names } = args;
        let input = Input::from_args(node_names, nodes);
        let Some(pod) = pod else {
            self.metrics.error("prioritize", "bad_request");
            return Vec::new();
        };
        let config = self.config.load_full();
        let policy = match resolve(&pod.metadata, &config) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.metrics.decision("prioritize", "not_opted_in");
                return zero_scores(input);
            }
            Err(_) => {
                self.metrics.error("prioritize", "invalid_policy");
                return zero_scores(input);
            }
        };
        if !self.cache.is_ready() {
            self.metrics.error("prioritize", "cache_not_synced");
            return Vec::new();
        }
        let (ns, name, uid) = pod_key(&pod);
        let mut decision = Decision::new("prioritize", format!("{ns}/{name}"), uid);
        decision.nodes_in = input.len();
        let (finals, lines) = {
            let candidates = self.candidates(&input);
            let names = &candidates.names;
            let model = self.cache.read();
            let ctx = PodContext::new(&pod, policy, &config, &model, self.cache.interner());
            let state = CycleState::prepare(&model, self.cache.ledger(), &ctx, Instant::now());
            let views = Self::views(&state, &model, names, &candidates.fallback);
            let present: Vec<NodeView<'_>> = views.iter().flatten().copied().collect();
            let mut scores = Vec::new();
            self.framework.score(&state, &ctx, &present, &mut scores);
            let weights = self.framework.active_weights(&state, &ctx);
            let combined: Vec<i64> = scores.iter().map(|s| combine(s, &weights).0).collect();
            let normalised = normalize_extender(&combined);
            let mut finals = vec![(0i64, 0i64, [0i64; 3]); views.len()];
            let mut k = 0;
            for (i, v) in views.iter().enumerate() {
                if v.is_some() {
                    finals[i] = (combined[k], normalised[k], scores[k]);
                    k += 1;
                }
            }
            record_group(&mut decision, &state, &model, &ctx);
            // Detail for the top nodes only.
            let mut order: Vec<usize> = (0..views.len()).collect();
            let top = self.options.detail_nodes.min(order.len());
            if top > 0 && top < order.len() {
                order.select_nth_unstable_by(top - 1, |a, b| finals[*b].0.cmp(&finals[*a].0));
                order.truncate(top);
            }
            order.sort_by(|a, b| finals[*b].0.cmp(&finals[*a].0).then_with(|| names[*a].cmp(names[*b])));
            let lines: Vec<NodeLine> = order
                .iter()
                .map(|i| NodeLine {
                    node: names[*i].to_owned(),
                    zone: views[*i].and_then(|v| v.zone_name().map(str::to_owned)),
                    feasible: views[*i].is_some(),
                    code: if views[*i].is_some() { "Success" } else { "Unschedulable" },
                    plugin: None,
                    reason: if views[*i].is_some() { String::new() } else { NODE_NOT_CACHED.message.to_owned() },
                    scores: PluginScores::from(finals[*i].2),
                    combined: finals[*i].0,
                    score: finals[*i].1,
                })
                .collect();
            (finals, lines)
        };
        decision.nodes = lines;
        decision.nodes_out = decision.nodes_in;
        decision.outcome = "scored";
        self.metrics.decision("prioritize", "scored");
        let result = match input {
            Input::Names(names) => names
                .into_iter()
                .zip(&finals)
                .map(|(host, f)| HostPriority { host, score: crate::extender::v1::clamp_score(f.1) })
                .collect(),
            Input::Nodes(list) => list
                .items
                .iter()
                .zip(&finals)
                .map(|(raw, f)| HostPriority {
                    host: raw_node_name(raw).unwrap_or_default().to_owned(),
                    score: crate::extender::v1::clamp_score(f.1),
                })
                .collect(),
        };
        decision.duration_us = elapsed_us(start);
        self.decisions.push(decision);
        result
    }

    // === preempt ===

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

    // === bind ===

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
                    let facts = LedgerFacts::collect(
                        self.cache.ledger(),
                        &model,
                        Some(&stowage_policy::GroupKey { namespace: pod_namespace.clone(), name: g.to_string() }),
                        "",
                        Instant::now(),
                    );
                    group_zone_counts(&model, &facts, &pod_namespace, g, filtered.as_ref().map(|d| &d.zone_counts[..]))
                });
                let mut message = format!("placed on node {node}");
                if let Some(z) = &zone {
                    message.push_str(&format!(" in zone {z}"));
                }
                if let Some(s) = &scores {
                    message.push_str(&format!(
                        "; scores local-data={} zone-spread={} contention={} (extender score {}/10)",
                        s.scores.local_data, s.scores.zone_spread, s.scores.contention, s.score
                    ));
                }
                if let (Some(g), Some(z)) = (&group, &zones) {
                    message.push_str(&format!("; group {pod_namespace}/{g} zones {}", zones_text(z)));
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

fn trim_raw(raw: &RawValue, interner: &crate::cache::Interner, cfg: &crate::cache::CacheConfig) -> Option<NodeObj> {
    let node: Node = serde_json::from_str(raw.get()).ok()?;
    NodeObj::from_k8s(&node, interner, cfg)
}

fn pass_all(input: Input) -> ExtenderFilterResult {
    match input {
        Input::Names(names) => ExtenderFilterResult { node_names: Some(names), ..Default::default() },
        Input::Nodes(nodes) => ExtenderFilterResult { nodes: Some(nodes), ..Default::default() },
    }
}

fn zero_scores(input: Input) -> HostPriorityList {
    match input {
        Input::Names(names) => names.into_iter().map(|host| HostPriority { host, score: 0 }).collect(),
        Input::Nodes(nodes) => nodes
            .items
            .iter()
            .filter_map(|raw| raw_node_name(raw))
            .map(|host| HostPriority { host: host.to_owned(), score: 0 })
            .collect(),
    }
}

/// Splits the candidates by outcome into the wire result (only input nodes, never both lists
/// null, one reason per refused node: [`Status::wire_message`]); names move from the input into
/// the reply.
fn build_filter_result(input: Input, outcomes: &[FilterOutcome]) -> ExtenderFilterResult {
    let mut result = ExtenderFilterResult::default();
    let refuse = |name: String, o: &FilterOutcome, result: &mut ExtenderFilterResult| match o.status.code().failed_map()
    {
        None => {}
        Some(FailedMap::FailedNodes) => result.failed_nodes.0.push((name, Cow::Borrowed(o.status.wire_message()))),
        Some(FailedMap::FailedAndUnresolvableNodes) => {
            result.failed_and_unresolvable_nodes.0.push((name, Cow::Borrowed(o.status.wire_message())));
        }
        Some(FailedMap::Error) => result.error = format!("{name}: {}", o.status.message()),
    };
    match input {
        Input::Names(names) => {
            let mut passing = Vec::with_capacity(names.len());
            for (name, o) in names.into_iter().zip(outcomes) {
                if o.status.is_success() {
                    passing.push(name);
                } else {
                    refuse(name, o, &mut result);
                }
            }
            result.node_names = Some(passing);
        }
        Input::Nodes(mut list) => {
            let items = std::mem::take(&mut list.items);
            for (raw, o) in items.into_iter().zip(outcomes) {
                if o.status.is_success() {
                    list.items.push(raw);
                } else {
                    refuse(raw_node_name(&raw).unwrap_or_default().to_owned(), o, &mut result);
                }
            }
            result.nodes = Some(list);
        }
    }
    result
}

/// Records the pod's group, its size and its members per zone on a decision.
fn record_group(decision: &mut Decision, state: &CycleState<'_>, model: &Model, ctx: &PodContext<'_>) {
    if let Some(g) = ctx.group() {
        decision.group = Some(g.to_string());
        decision.members = Some(ctx.members);
        decision.zone_counts = state
            .zone_spread
            .zone_summary(model, ctx)
            .into_iter()
            .map(|(zone, members)| ZoneCount { zone, members })
            .collect();
    }
}

/// The event to post when zone rules left the pod without any feasible node.
fn refusal_event(
    ctx: &PodContext<'_>,
    st: &zone_spread::State,
    outcomes: &[FilterOutcome],
    zones: &[ZoneCount],
) -> Option<(&'static str, String)> {
    if outcomes.is_empty() || outcomes.iter().any(|o| o.status.is_success()) {
        return None;
    }
    let zone_refusals = outcomes.iter().filter(|o| o.plugin == Some(PluginName::ZoneSpread));
    let mut quorum = false;
    let mut reasons: Vec<&'static str> = Vec::new();
    let mut any = false;
    for o in zone_refusals {
        any = true;
        for r in o.status.reasons() {
            if std::ptr::eq(r, &zone_spread::QUORUM) || std::ptr::eq(r, &zone_spread::QUORUM_NO_ZONE) {
                quorum = true;
            }
            if !reasons.contains(&r.message) {
                reasons.push(r.message);
            }
        }
    }
    if !any {
        return None;
    }
    let group = ctx.group().map_or_else(|| "(none)".to_owned(), ToString::to_string);
    if quorum {
        Some((
            events::QUORUM_GUARD,
            format!(
                "quorum guard: group {group} has n={} voting members; zones {} (max {} per zone); no feasible zone left",
                ctx.members,
                zones_text(zones),
                st.max_per_zone
            ),
        ))
    } else {
        Some((
            events::SPREAD_REFUSED,
            format!(
                "spread rules (zone-spread={}, node-spread={}): group {group} has n={} members; zones {}; every candidate node refused: {}",
                ctx.policy.zone_spread,
                ctx.policy.node_spread,
                ctx.members,
                zones_text(zones),
                reasons.join("; ")
            ),
        ))
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
                let cache_cfg = crate::cache::CacheConfig::from_config(config);
                let interner = crate::cache::Interner::default();
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
