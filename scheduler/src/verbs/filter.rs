//! The filter verb: every candidate through the filter plugins; for a pod under a cross-pod rule,
//! the best feasible node is decided and reserved at once.

use std::sync::Arc;

use stowage_policy::resolve;
use tokio::time::Instant;

use super::{
    Extender, NOT_SYNCED, elapsed_us, event_zones, pod_key, record_group,
    wire::{Input, build_filter_result, pass_all},
};
use crate::{
    decisions::{Decision, NodeLine, RefusalCount, ZoneCount},
    evaluation,
    events::{self, EventType, PodEvent},
    extender::v1::{Candidates, ExtenderArgs, ExtenderFilterResult},
    framework::{Code, CycleState, FilterOutcome, NOT_CHOSEN, NodeView, PodContext, Reason, Status, cross_pod_rule},
    ledger::Placement,
    plugins::{local_data, zone_spread},
};

/// What one filter pass found, besides the per-node outcomes.
#[derive(Default)]
struct FilterPass {
    passing: usize,
    refusals: Vec<(Option<&'static str>, &'static Reason, Code, usize)>,
    event: Option<(&'static str, String)>,
    /// The node reserved for a pod under a cross-pod rule, with its combined score.
    reserved: Option<(String, i64)>,
}

impl Extender {
    /// Filters candidate nodes for a pod. A node named twice is answered once; a nameless
    /// candidate is an `Error`.
    pub async fn filter(&self, args: ExtenderArgs) -> ExtenderFilterResult {
        match args.into_candidates() {
            Ok(candidates) => self.filter_candidates(candidates).await,
            Err(e) => {
                self.metrics.error("filter", "bad_request");
                ExtenderFilterResult::error(format!("invalid candidate nodes: {e}"))
            }
        }
    }

    /// [`Self::filter`] for arguments whose candidates are already a set.
    pub(crate) async fn filter_candidates(&self, candidates: Candidates) -> ExtenderFilterResult {
        let start = Instant::now();
        let ExtenderArgs { pod, nodes, node_names } = candidates.into_args();
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
        let reserve = !uid.is_empty() && cross_pod_rule(&policy, &config);
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
            let cycle = self.framework.prepare(&model, self.cache.ledger(), &ctx, now);
            let views = Self::views(&cycle, &model, &candidates.names, &candidates.fallback);
            let mut outcomes = evaluation::filter(&self.framework, &cycle, &ctx, &views);
            record_group(&mut decision, &cycle, &ctx);
            let mut pass = FilterPass {
                event: refusal_event(&ctx, &cycle, &outcomes, &decision.zone_counts),
                ..FilterPass::default()
            };
            // One pass over the results: refusal counts, a sample of refusals.
            for (i, o) in outcomes.iter().enumerate() {
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
                    decision.nodes.push(NodeLine::new(candidates.names[i], views[i].as_ref(), o, None));
                }
            }
            if reserve && pass.passing > 0 {
                let placement = self.decide_node(&cycle, &ctx, &candidates.names, &views, &mut outcomes, &mut decision);
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
            let plugin = plugin.unwrap_or("framework");
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
        cycle: &CycleState<'_>,
        ctx: &PodContext<'_>,
        names: &[&str],
        views: &[Option<NodeView<'_>>],
        outcomes: &mut [FilterOutcome],
        decision: &mut Decision,
    ) -> Placement {
        let feasible: Vec<usize> = (0..outcomes.len()).filter(|i| outcomes[*i].status.is_success()).collect();
        let fviews: Vec<NodeView<'_>> = feasible.iter().filter_map(|i| views[*i]).collect();
        debug_assert_eq!(fviews.len(), feasible.len(), "a feasible node always has a view");
        let scored = evaluation::score(&self.framework, cycle, ctx, &fviews);
        let combined = &scored.combined;
        // Best first: combined score descending, then node name ascending.
        let mut order: Vec<usize> = (0..feasible.len()).collect();
        order
            .sort_by(|a, b| combined[*b].cmp(&combined[*a]).then_with(|| names[feasible[*a]].cmp(names[feasible[*b]])));
        let best = order[0];
        for (k, i) in feasible.iter().enumerate() {
            if k != best {
                outcomes[*i] = FilterOutcome::framework(Status::unschedulable(&NOT_CHOSEN));
            }
        }
        let lines: Vec<NodeLine> = order
            .iter()
            .take(self.options.detail_nodes.max(1))
            .map(|k| {
                NodeLine::new(names[feasible[*k]], Some(&fviews[*k]), &outcomes[feasible[*k]], Some(scored.node(*k)))
            })
            .collect();
        decision.nodes.splice(0..0, lines);
        decision.nodes.truncate(self.options.detail_nodes.max(1) * 2);

        let view = fviews[best];
        let node = names[feasible[best]];
        let interner = self.cache.interner();
        let claims: Vec<Arc<str>> = ctx.claims.iter().map(|c| interner.intern(c)).collect();
        let claimed =
            local_data::likely_static_pvs(cycle.model(), &ctx.namespace, &claims, node, &cycle.ledger().reserved_pvs);
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
}

/// The event to post when zone rules left the pod without any feasible node.
fn refusal_event(
    ctx: &PodContext<'_>,
    cycle: &CycleState<'_>,
    outcomes: &[FilterOutcome],
    zones: &[ZoneCount],
) -> Option<(&'static str, String)> {
    let refusal = zone_spread::refusal(cycle, outcomes)?;
    let group = ctx.group().map_or_else(|| "(none)".to_owned(), ToString::to_string);
    if refusal.quorum {
        Some((
            events::QUORUM_GUARD,
            format!(
                "quorum guard: group {group} has n={} voting members; zones {} (max {} per zone); no feasible zone left",
                ctx.members,
                event_zones(zones),
                refusal.max_per_zone
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
                event_zones(zones),
                refusal.reasons.join("; ")
            ),
        ))
    }
}
