//! Explanations: [`Decision`] records of recent extender calls (kept in a bounded ring buffer,
//! served by `GET /debug/decisions`) and the offline [`explain`] of a pod against a cache.
//!
//! A decision keeps, for big node lists, the full per-reason refusal counts but node-level detail
//! only for the top scored nodes and a sample of refused ones, so recording stays cheap.
//!
//! The log is bounded in bytes as well as in entries: strings from the wire (pod and node names,
//! error texts) are cut when recorded, lists are capped, and the oldest decisions are evicted
//! once the total passes a byte budget (4 MiB). `/debug/decisions` serves what the log holds,
//! so its answers are bounded too.

use std::{collections::VecDeque, fmt::Write as _, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use serde::Serialize;
use stowage_policy::{Config, resolve};
use tokio::time::Instant;

use crate::{
    cache::ClusterCache,
    framework::{CycleState, Framework, NodeView, PluginName, PodContext, combine},
};

/// Default number of decisions kept.
pub const DEFAULT_CAPACITY: usize = 256;
/// Nodes kept in detail per decision (top scored, and refused samples).
pub const DETAIL_NODES: usize = 20;
/// Byte budget of the decision log (an estimate of the heap it holds).
const DEFAULT_BYTE_BUDGET: usize = 4 << 20;
/// Longest name kept in a decision: holds any valid `namespace/name` (63 + 1 + 253 bytes), node
/// name, zone or uid whole, so lookups by name still match.
const MAX_NAME: usize = 320;
/// Longest error text or detail line kept.
const MAX_TEXT: usize = 2048;
/// Most entries kept in each list of a decision (nodes, detail lines, zones, refusals).
const MAX_LIST: usize = 64;

/// Per-plugin scores (0..100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginScores {
    /// LocalData.
    pub local_data: i64,
    /// ZoneSpread.
    pub zone_spread: i64,
    /// Contention.
    pub contention: i64,
}

impl From<[i64; 3]> for PluginScores {
    fn from(s: [i64; 3]) -> Self {
        Self { local_data: s[0], zone_spread: s[1], contention: s[2] }
    }
}

/// Members of the group in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneCount {
    /// Zone.
    pub zone: String,
    /// Members counted there.
    pub members: u32,
}

/// One node in a decision or explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    /// Node name.
    pub node: String,
    /// Zone.
    pub zone: Option<String>,
    /// Passed every filter plugin.
    pub feasible: bool,
    /// Framework code (`Success`, `Unschedulable`, ...).
    pub code: &'static str,
    /// The refusing plugin.
    pub plugin: Option<&'static str>,
    /// Reasons (empty when feasible).
    pub reason: String,
    /// Per-plugin scores (feasible nodes).
    pub scores: PluginScores,
    /// Weighted combination, 0..100.
    pub combined: i64,
    /// Extender score, 0..10.
    pub score: i64,
}

/// How many nodes one plugin refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalCount {
    /// Plugin.
    pub plugin: &'static str,
    /// Framework code.
    pub code: &'static str,
    /// Reason message.
    pub reason: &'static str,
    /// Nodes.
    pub nodes: usize,
}

/// The record of one extender call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// RFC 3339 time.
    pub time: String,
    /// filter, prioritize, preempt or bind.
    pub verb: &'static str,
    /// `namespace/name`.
    pub pod: String,
    /// Pod uid.
    pub uid: String,
    /// Group, if any.
    pub group: Option<String>,
    /// Voting members.
    pub members: Option<u32>,
    /// Members per zone at decision time.
    pub zone_counts: Vec<ZoneCount>,
    /// Short outcome (the `outcome` metric label).
    pub outcome: &'static str,
    /// Error text, if any.
    pub error: Option<String>,
    /// Candidate nodes received.
    pub nodes_in: usize,
    /// Nodes left feasible / scored / kept.
    pub nodes_out: usize,
    /// Refusals by plugin and reason.
    pub refusals: Vec<RefusalCount>,
    /// Node detail: top scored nodes and a sample of refused ones.
    pub nodes: Vec<NodeLine>,
    /// Free-form detail (bind target, preemption drops, ...).
    pub detail: Vec<String>,
    /// Milliseconds spent waiting for siblings in cycle.
    pub waited_ms: u64,
    /// Microseconds spent in total.
    pub duration_us: u64,
}

impl Decision {
    /// A decision for `verb` about `pod` with everything else empty.
    #[must_use]
    pub fn new(verb: &'static str, pod: String, uid: String) -> Self {
        Self {
            time: k8s_openapi::jiff::Timestamp::now().to_string(),
            verb,
            pod,
            uid,
            group: None,
            members: None,
            zone_counts: Vec::new(),
            outcome: "",
            error: None,
            nodes_in: 0,
            nodes_out: 0,
            refusals: Vec::new(),
            nodes: Vec::new(),
            detail: Vec::new(),
            waited_ms: 0,
            duration_us: 0,
        }
    }

    /// Plain-text rendering.
    #[must_use]
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {} {} -> {} ({} of {} nodes, {} µs{})",
            self.time,
            self.verb,
            self.pod,
            self.outcome,
            self.nodes_out,
            self.nodes_in,
            self.duration_us,
            if self.waited_ms > 0 { format!(", waited {} ms for siblings", self.waited_ms) } else { String::new() }
        );
        if let Some(g) = &self.group {
            let _ = writeln!(
                out,
                "  group {g}, n={}, zones {}",
                self.members.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                zones_text(&self.zone_counts)
            );
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  error: {e}");
        }
        for d in &self.detail {
            let _ = writeln!(out, "  {d}");
        }
        for r in &self.refusals {
            let _ = writeln!(out, "  {} x {} [{} {}]", r.nodes, r.reason, r.plugin, r.code);
        }
        if !self.nodes.is_empty() {
            out.push_str(&node_table(&self.nodes));
        }
        out
    }
}

fn zones_text(zones: &[ZoneCount]) -> String {
    if zones.is_empty() {
        return "(none)".to_owned();
    }
    zones.iter().map(|z| format!("{}={}", z.zone, z.members)).collect::<Vec<_>>().join(" ")
}

/// Renders nodes as an aligned table.
#[must_use]
pub fn node_table(nodes: &[NodeLine]) -> String {
    let headers = ["NODE", "ZONE", "FEASIBLE", "LOCAL-DATA", "ZONE-SPREAD", "CONTENTION", "TOTAL", "SCORE", "REASON"];
    let rows: Vec<[String; 9]> = nodes
        .iter()
        .map(|n| {
            let s = |v: i64| if n.feasible { v.to_string() } else { "-".to_owned() };
            [
                n.node.clone(),
                n.zone.clone().unwrap_or_else(|| "-".to_owned()),
                if n.feasible { "yes".to_owned() } else { "no".to_owned() },
                s(n.scores.local_data),
                s(n.scores.zone_spread),
                s(n.scores.contention),
                s(n.combined),
                s(n.score),
                n.reason.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str("  ");
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &headers);
    for r in &rows {
        line(&mut out, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

impl Decision {
    /// Cuts the decision to the log's limits: long strings end in an ellipsis, long lists keep
    /// their first [`MAX_LIST`] entries (detail lines say how many were left out). What is cut
    /// is also released (truncating alone keeps the capacity).
    fn bound(&mut self) {
        fn cut(s: &mut String, max: usize) {
            if s.len() > max {
                stowage_policy::text::truncate(s, max);
                s.shrink_to_fit();
            }
        }
        fn cap<T>(list: &mut Vec<T>) {
            if list.len() > MAX_LIST {
                list.truncate(MAX_LIST);
                list.shrink_to_fit();
            }
        }
        cut(&mut self.pod, MAX_NAME);
        cut(&mut self.uid, MAX_NAME);
        if let Some(g) = &mut self.group {
            cut(g, MAX_NAME);
        }
        if let Some(e) = &mut self.error {
            cut(e, MAX_TEXT);
        }
        cap(&mut self.zone_counts);
        for z in &mut self.zone_counts {
            cut(&mut z.zone, MAX_NAME);
        }
        cap(&mut self.refusals);
        cap(&mut self.nodes);
        for n in &mut self.nodes {
            cut(&mut n.node, MAX_NAME);
            if let Some(z) = &mut n.zone {
                cut(z, MAX_NAME);
            }
            cut(&mut n.reason, MAX_TEXT);
        }
        if self.detail.len() > MAX_LIST {
            let more = self.detail.len() - (MAX_LIST - 1);
            self.detail.truncate(MAX_LIST - 1);
            self.detail.push(format!("{} and {more} more", stowage_policy::text::ELLIPSIS));
            self.detail.shrink_to_fit();
        }
        for d in &mut self.detail {
            cut(d, MAX_TEXT);
        }
    }

    /// An estimate of the heap bytes the decision holds (capacities, not only lengths).
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        size_of::<Self>()
            + self.time.capacity()
            + self.pod.capacity()
            + self.uid.capacity()
            + opt(&self.group)
            + opt(&self.error)
            + self.zone_counts.capacity() * size_of::<ZoneCount>()
            + self.zone_counts.iter().map(|z| z.zone.capacity()).sum::<usize>()
            + self.refusals.capacity() * size_of::<RefusalCount>()
            + self.nodes.capacity() * size_of::<NodeLine>()
            + self.nodes.iter().map(|n| n.node.capacity() + opt(&n.zone) + n.reason.capacity()).sum::<usize>()
            + self.detail.capacity() * size_of::<String>()
            + self.detail.iter().map(String::capacity).sum::<usize>()
    }
}

/// A bounded ring buffer of recent decisions: at most `capacity` entries and about
/// `byte_budget` bytes (the newest decision is always kept).
#[derive(Debug)]
pub struct DecisionLog {
    capacity: usize,
    byte_budget: usize,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<(Arc<Decision>, usize)>,
    bytes: usize,
}

impl Default for DecisionLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl DecisionLog {
    /// A log keeping at most `capacity` decisions within [`DEFAULT_BYTE_BUDGET`].
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_budget(capacity, DEFAULT_BYTE_BUDGET)
    }

    /// A log keeping at most `capacity` decisions and about `byte_budget` bytes.
    fn with_budget(capacity: usize, byte_budget: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            byte_budget,
            ring: Mutex::new(Ring { entries: VecDeque::with_capacity(capacity.min(4096)), bytes: 0 }),
        }
    }

    /// Appends a decision (cut to the log's limits), evicting the oldest while the log holds
    /// more than its capacity or its byte budget.
    pub fn push(&self, mut d: Decision) {
        d.bound();
        let size = d.heap_bytes();
        let mut ring = self.ring.lock();
        ring.entries.push_back((Arc::new(d), size));
        ring.bytes += size;
        while ring.entries.len() > self.capacity || (ring.bytes > self.byte_budget && ring.entries.len() > 1) {
            let Some((_, evicted)) = ring.entries.pop_front() else { break };
            ring.bytes -= evicted;
        }
    }

    /// The newest decisions first, optionally only for `namespace/name`, at most `limit`.
    #[must_use]
    pub fn recent(&self, pod: Option<&str>, limit: usize) -> Vec<Arc<Decision>> {
        let ring = self.ring.lock();
        ring.entries
            .iter()
            .rev()
            .map(|(d, _)| d)
            .filter(|d| pod.is_none_or(|p| d.pod == p))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest decision of `verb` for a pod uid.
    #[must_use]
    pub fn last_for(&self, uid: &str, verb: &str) -> Option<Arc<Decision>> {
        self.ring.lock().entries.iter().rev().map(|(d, _)| d).find(|d| d.uid == uid && d.verb == verb).cloned()
    }
}

/// The offline explanation of a pod against a cache.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// `namespace/name`.
    pub pod: String,
    /// The pod carries stowage annotations.
    pub opted_in: bool,
    /// Invalid policy annotations, if any.
    pub policy_error: Option<String>,
    /// Profile.
    pub profile: Option<String>,
    /// Group.
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
    let state = CycleState::prepare(&model, cache.ledger(), &ctx, Instant::now());
    ex.zone_limit = state.zone_spread.zone_limit();
    if ctx.group().is_some() {
        ex.zone_counts = state
            .zone_spread
            .zone_summary(&model, &ctx)
            .into_iter()
            .map(|(zone, members)| ZoneCount { zone, members })
            .collect();
    }
    let fw = Framework::default();
    let weights = fw.active_weights(&state, &ctx);
    ex.weights = PluginScores::from(weights.map(i64::from));
    let mut feasible: Vec<NodeView<'_>> = Vec::new();
    let mut refused = Vec::new();
    for (id, _, _) in model.nodes() {
        let Some(view) = state.view(id) else { continue };
        let out = fw.filter(&state, &ctx, &view);
        if out.status.is_success() {
            feasible.push(view);
        } else {
            refused.push(NodeLine {
                node: view.name().to_owned(),
                zone: view.zone_name().map(str::to_owned),
                feasible: false,
                code: out.status.code().as_str(),
                plugin: out.plugin.map(PluginName::as_str),
                reason: out.status.message().into_owned(),
                scores: PluginScores::default(),
                combined: 0,
                score: 0,
            });
        }
    }
    let mut scores = Vec::new();
    fw.score(&state, &ctx, &feasible, &mut scores);
    let mut lines: Vec<NodeLine> = feasible
        .iter()
        .zip(&scores)
        .map(|(v, s)| {
            let (combined, score) = combine(s, &weights);
            NodeLine {
                node: v.name().to_owned(),
                zone: v.zone_name().map(str::to_owned),
                feasible: true,
                code: "Success",
                plugin: None,
                reason: String::new(),
                scores: PluginScores::from(*s),
                combined,
                score,
            }
        })
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
    fn pods_not_opted_in_are_explained_as_such() {
        let cfg = Config::default();
        let ex = explain(&cache(&cfg), &cfg, &PodBuilder::new("apps", "web").build());
        assert!(!ex.opted_in);
        assert!(ex.render_text().contains("not opted in"));
    }

    fn heavy(i: usize) -> Decision {
        let long = "x".repeat(10_000);
        let mut d = Decision::new("bind", format!("db/{i}{long}"), format!("u{i}"));
        d.error = Some(long.clone());
        d.detail = vec![long.clone(); 100];
        d.nodes = (0..100)
            .map(|j| NodeLine {
                node: format!("{j}{long}"),
                zone: Some(long.clone()),
                feasible: false,
                code: "Unschedulable",
                plugin: None,
                reason: long.clone(),
                scores: PluginScores::default(),
                combined: 0,
                score: 0,
            })
            .collect();
        d.zone_counts = vec![ZoneCount { zone: long, members: 1 }; 100];
        d
    }

    #[test]
    fn the_decision_log_is_bounded_in_bytes() {
        let log = DecisionLog::with_budget(256, 1 << 20);
        let usage = |log: &DecisionLog| {
            let ring = log.ring.lock();
            (ring.entries.len(), ring.bytes)
        };
        for i in 0..20 {
            log.push(heavy(i));
            let (entries, bytes) = usage(&log);
            assert!(bytes <= 1 << 20 || entries == 1, "{entries} entries, {bytes} bytes");
        }
        let (entries, _) = usage(&log);
        assert!((2..20).contains(&entries), "old decisions were evicted, several fit: {entries}");
        let newest = &log.recent(None, 1)[0];
        assert!(newest.pod.starts_with("db/19") && newest.pod.ends_with('…') && newest.pod.len() <= MAX_NAME);
        assert_eq!((newest.nodes.len(), newest.detail.len(), newest.zone_counts.len()), (MAX_LIST, MAX_LIST, MAX_LIST));
        assert!(newest.detail.last().unwrap().ends_with("and 37 more"));
        let all = log.recent(None, usize::MAX);
        let json = serde_json::to_string(&all.iter().map(|d| d.as_ref()).collect::<Vec<_>>()).unwrap();
        assert!(json.len() < 2 << 20, "{} bytes", json.len());
        let text: usize = log.recent(None, usize::MAX).iter().map(|d| d.render_text().len()).sum();
        assert!(text < 2 << 20, "{text} bytes");
    }

    #[test]
    fn the_decision_log_is_bounded_and_newest_first() {
        let log = DecisionLog::new(2);
        for i in 0..3 {
            log.push(Decision::new("filter", format!("db/p{i}"), format!("u{i}")));
        }
        let all = log.recent(None, 10);
        assert_eq!(all.iter().map(|d| d.pod.as_str()).collect::<Vec<_>>(), ["db/p2", "db/p1"]);
        assert_eq!(log.recent(Some("db/p1"), 10).len(), 1);
        assert!(log.last_for("u2", "filter").is_some());
    }
}
