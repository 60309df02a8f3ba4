//! The wire mapping: candidates as kube-scheduler sends them (names, or whole nodes when it does
//! not cache nodes), node views for them, and the filter and prioritize replies.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Node;
use serde_json::value::RawValue;

use super::Extender;
use crate::{
    cache::{CacheConfig, Interner, Model, model::NodeAgg, objects::NodeObj, resources::Burst},
    extender::v1::{ExtenderFilterResult, HostPriority, HostPriorityList, NodeList, clamp_score, raw_node_name},
    framework::{CycleState, FailedMap, FilterOutcome, NodeView},
};

static EMPTY_AGG: NodeAgg = NodeAgg {
    cpu_m: 0,
    mem: 0,
    pods: 0,
    stateful: 0,
    no_limits: 0,
    best_effort: 0,
    burst: Burst { cpu_m: 0, mem: 0, cpu_unlimited: 0, cpu_unlimited_req_m: 0, mem_unlimited: 0, mem_unlimited_req: 0 },
    primaries: 0,
    profiles: Vec::new(),
};

/// Candidate nodes as received.
pub(super) enum Input {
    Names(Vec<String>),
    Nodes(NodeList),
}

impl Input {
    pub(super) fn from_args(node_names: Option<Vec<String>>, nodes: Option<NodeList>) -> Self {
        match (node_names, nodes) {
            (Some(names), _) => Input::Names(names),
            (None, Some(nodes)) => Input::Nodes(nodes),
            (None, None) => Input::Names(Vec::new()),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Input::Names(n) => n.len(),
            Input::Nodes(n) => n.items.len(),
        }
    }
}

/// Names and, for nodes the cache lacks, trimmed copies of the objects sent in `Nodes`.
pub(super) struct Candidates<'i> {
    pub names: Vec<&'i str>,
    pub fallback: Vec<Option<NodeObj>>,
}

impl Extender {
    pub(super) fn candidates<'i>(&self, input: &'i Input) -> Candidates<'i> {
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
    pub(super) fn views<'a>(
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
}

fn trim_raw(raw: &RawValue, interner: &Interner, cfg: &CacheConfig) -> Option<NodeObj> {
    let node: Node = serde_json::from_str(raw.get()).ok()?;
    NodeObj::from_k8s(&node, interner, cfg)
}

pub(super) fn pass_all(input: Input) -> ExtenderFilterResult {
    match input {
        Input::Names(names) => ExtenderFilterResult { node_names: Some(names), ..Default::default() },
        Input::Nodes(nodes) => ExtenderFilterResult { nodes: Some(nodes), ..Default::default() },
    }
}

pub(super) fn zero_scores(input: Input) -> HostPriorityList {
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
pub(super) fn build_filter_result(input: Input, outcomes: &[FilterOutcome]) -> ExtenderFilterResult {
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

/// The prioritize reply: one score per candidate, in input order (`scores[i]` for the i-th).
pub(super) fn host_priorities(input: Input, scores: &[i64]) -> HostPriorityList {
    match input {
        Input::Names(names) => {
            names.into_iter().zip(scores).map(|(host, s)| HostPriority { host, score: clamp_score(*s) }).collect()
        }
        Input::Nodes(list) => list
            .items
            .iter()
            .zip(scores)
            .map(|(raw, s)| HostPriority {
                host: raw_node_name(raw).unwrap_or_default().to_owned(),
                score: clamp_score(*s),
            })
            .collect(),
    }
}
