//! The prioritize verb: the weighted plugin scores of every candidate, normalised over them.

use stowage_policy::resolve;
use tokio::time::Instant;

use super::{
    Extender, elapsed_us, pod_key, record_group,
    wire::{Input, host_priorities, zero_scores},
};
use crate::{
    decisions::{Decision, NodeLine},
    evaluation,
    extender::v1::{Candidates, ExtenderArgs, HostPriorityList},
    framework::{FilterOutcome, NODE_NOT_CACHED, NodeView, PodContext, Status},
};

impl Extender {
    /// Scores candidate nodes 0..10, once per node name; nothing for a nameless candidate.
    pub fn prioritize(&self, args: ExtenderArgs) -> HostPriorityList {
        match args.into_candidates() {
            Ok(candidates) => self.prioritize_candidates(candidates),
            Err(_) => {
                self.metrics.error("prioritize", "bad_request");
                Vec::new()
            }
        }
    }

    /// [`Self::prioritize`] for arguments whose candidates are already a set.
    pub(crate) fn prioritize_candidates(&self, candidates: Candidates) -> HostPriorityList {
        let start = Instant::now();
        let ExtenderArgs { pod, nodes, node_names } = candidates.into_args();
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
            let cycle = self.framework.prepare(&model, self.cache.ledger(), &ctx, Instant::now());
            let views = Self::views(&cycle, &model, names, &candidates.fallback);
            let present: Vec<NodeView<'_>> = views.iter().flatten().copied().collect();
            let scored = evaluation::score(&self.framework, &cycle, &ctx, &present);
            // Per candidate: (combined, extender score, index among the scored nodes).
            let mut finals = vec![(0i64, 0i64, None); views.len()];
            let mut k = 0;
            for (i, v) in views.iter().enumerate() {
                if v.is_some() {
                    finals[i] = (scored.combined[k], scored.normalised[k], Some(k));
                    k += 1;
                }
            }
            record_group(&mut decision, &cycle, &ctx);
            // Detail for the top nodes only.
            let mut order: Vec<usize> = (0..views.len()).collect();
            let top = self.options.detail_nodes.min(order.len());
            if top > 0 && top < order.len() {
                order.select_nth_unstable_by(top - 1, |a, b| finals[*b].0.cmp(&finals[*a].0));
                order.truncate(top);
            }
            order.sort_by(|a, b| finals[*b].0.cmp(&finals[*a].0).then_with(|| names[*a].cmp(names[*b])));
            let missing = FilterOutcome::framework(Status::unschedulable(&NODE_NOT_CACHED));
            let passed = FilterOutcome::framework(Status::success());
            let lines: Vec<NodeLine> = order
                .iter()
                .map(|i| {
                    let outcome = if views[*i].is_some() { &passed } else { &missing };
                    NodeLine::new(names[*i], views[*i].as_ref(), outcome, finals[*i].2.map(|k| scored.node(k)))
                })
                .collect();
            (finals, lines)
        };
        decision.nodes = lines;
        decision.nodes_out = decision.nodes_in;
        decision.outcome = "scored";
        self.metrics.decision("prioritize", "scored");
        let scores: Vec<i64> = finals.iter().map(|f| f.1).collect();
        let result = host_priorities(input, &scores);
        decision.duration_us = elapsed_us(start);
        self.decisions.push(decision);
        result
    }
}
