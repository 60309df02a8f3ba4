//! The live decision log served by `GET /debug/decisions`: a [`Decision`] record per extender
//! call, kept in a ring buffer bounded in entries and in bytes.
//!
//! A decision keeps, for big node lists, the full per-reason refusal counts but node-level detail
//! only for the top scored nodes and a sample of refused ones, so recording stays cheap.
//!
//! The log is bounded in bytes as well as in entries: strings from the wire (pod and node names,
//! error texts) are cut when recorded, lists are capped, and the oldest decisions are evicted
//! once the total passes a byte budget (4 MiB). `/debug/decisions` serves what the log holds,
//! so its answers are bounded too.

use std::{collections::VecDeque, fmt::Write as _, sync::Arc};

use parking_lot::Mutex;
use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::framework::{FilterOutcome, NodeView};

/// Default number of decisions kept.
pub(crate) const DEFAULT_CAPACITY: usize = 256;
/// Nodes kept in detail per decision (top scored, and refused samples).
pub(crate) const DETAIL_NODES: usize = 20;
/// Byte budget of the decision log (an estimate of the heap it holds).
const DEFAULT_BYTE_BUDGET: usize = 4 << 20;
/// Longest name kept in a decision: holds any valid `namespace/name` (63 + 1 + 253 bytes), node
/// name, zone or uid whole, so lookups by name still match.
const MAX_NAME: usize = 320;
/// Longest error text or detail line kept.
const MAX_TEXT: usize = 2048;
/// Most entries kept in each list of a decision (nodes, detail lines, zones, refusals).
const MAX_LIST: usize = 64;

/// Per-plugin scores (0..100), or per-plugin weights in an explanation.
///
/// The three first plugins keep their own fields: they are the `/debug/decisions` schema
/// (`local_data`, `zone_spread`, `contention`). Plugins registered later go to `more`,
/// serialised beside them under their snake_case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginScores {
    /// `local-data`.
    pub local_data: i64,
    /// `zone-spread`.
    pub zone_spread: i64,
    /// `contention`.
    pub contention: i64,
    /// Any other plugin, by kebab-case name, in registration order.
    pub more: Vec<(&'static str, i64)>,
}

impl PluginScores {
    /// Scores named by plugin, in registration order.
    pub(crate) fn from_named(named: impl IntoIterator<Item = (&'static str, i64)>) -> Self {
        let mut s = Self::default();
        for (name, v) in named {
            match name {
                "local-data" => s.local_data = v,
                "zone-spread" => s.zone_spread = v,
                "contention" => s.contention = v,
                _ => s.more.push((name, v)),
            }
        }
        s
    }

    /// `(kebab-case plugin name, score)` pairs, the three first plugins first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        [("local-data", self.local_data), ("zone-spread", self.zone_spread), ("contention", self.contention)]
            .into_iter()
            .chain(self.more.iter().copied())
    }
}

impl Serialize for PluginScores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3 + self.more.len()))?;
        map.serialize_entry("local_data", &self.local_data)?;
        map.serialize_entry("zone_spread", &self.zone_spread)?;
        map.serialize_entry("contention", &self.contention)?;
        for (name, v) in &self.more {
            map.serialize_entry(&name.replace('-', "_"), v)?;
        }
        map.end()
    }
}

/// What scoring gave one node: per-plugin scores, their weighted combination (0..100) and the
/// extender score (0..10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeScore {
    pub(crate) scores: PluginScores,
    pub(crate) combined: i64,
    pub(crate) score: i64,
}

/// Members of the group in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneCount {
    /// Zone label value.
    pub zone: String,
    /// Members counted there.
    pub members: u32,
}

/// One node in a decision or explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    /// Node name.
    pub node: String,
    /// Zone label value, when the node has one.
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

impl NodeLine {
    /// The one way a node line is built: its filter outcome, and its scores when it was scored
    /// (a scored node passed every filter plugin).
    #[must_use]
    pub(crate) fn new(
        node: &str,
        view: Option<&NodeView<'_>>,
        outcome: &FilterOutcome,
        scored: Option<NodeScore>,
    ) -> Self {
        let feasible = scored.is_some();
        let NodeScore { scores, combined, score } = scored.unwrap_or_default();
        Self {
            node: node.to_owned(),
            zone: view.and_then(NodeView::zone_name).map(str::to_owned),
            feasible,
            code: outcome.status.code().as_str(),
            plugin: outcome.plugin,
            reason: outcome.status.message().into_owned(),
            scores,
            combined,
            score,
        }
    }
}

/// How many nodes one plugin refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalCount {
    /// The refusing plugin, or `framework` for refusals no plugin made.
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
    /// The pod's uid (`/debug/decisions` lookups and bind's reading of its filter).
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
    pub(crate) fn new(verb: &'static str, pod: String, uid: String) -> Self {
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

pub(crate) fn zones_text(zones: &[ZoneCount]) -> String {
    if zones.is_empty() {
        return "(none)".to_owned();
    }
    zones.iter().map(|z| format!("{}={}", z.zone, z.members)).collect::<Vec<_>>().join(" ")
}

/// Renders nodes as an aligned table.
#[must_use]
pub(crate) fn node_table(nodes: &[NodeLine]) -> String {
    let plugins: Vec<&str> = nodes.first().map(|n| n.scores.iter().map(|(p, _)| p).collect()).unwrap_or_default();
    let mut headers: Vec<String> = ["NODE", "ZONE", "FEASIBLE"].map(str::to_owned).to_vec();
    headers.extend(plugins.iter().map(|p| p.to_uppercase()));
    headers.extend(["TOTAL", "SCORE", "REASON"].map(str::to_owned));
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let s = |v: i64| if n.feasible { v.to_string() } else { "-".to_owned() };
            let mut row = vec![
                n.node.clone(),
                n.zone.clone().unwrap_or_else(|| "-".to_owned()),
                if n.feasible { "yes".to_owned() } else { "no".to_owned() },
            ];
            row.extend(n.scores.iter().map(|(_, v)| s(v)));
            row.extend([s(n.combined), s(n.score), n.reason.clone()]);
            row
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(String::len).collect();
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
    line(&mut out, &headers.iter().map(String::as_str).collect::<Vec<_>>());
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
            + self
                .nodes
                .iter()
                .map(|n| {
                    n.node.capacity()
                        + opt(&n.zone)
                        + n.reason.capacity()
                        + n.scores.more.capacity() * size_of::<(&str, i64)>()
                })
                .sum::<usize>()
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
    pub(crate) fn new(capacity: usize) -> Self {
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
    pub(crate) fn push(&self, mut d: Decision) {
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
    pub(crate) fn last_for(&self, uid: &str, verb: &str) -> Option<Arc<Decision>> {
        self.ring.lock().entries.iter().rev().map(|(d, _)| d).find(|d| d.uid == uid && d.verb == verb).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
