//! A reason on every waiting member.
//!
//! kube-scheduler's in-tree filters often reject a database pod before the extender is asked
//! (a DoNotSchedule zone spread injected by the webhook, a node out of CPU), and then the pod only
//! shows the scheduler's generic "4 node(s) didn't match pod topology spread constraints". This
//! task watches unscheduled pods (`spec.nodeName` empty); for an opted-in pod whose `PodScheduled`
//! condition is `False`/`Unschedulable` it evaluates the pod against the live cache with the same
//! plugins the extender runs ([`stowage_scheduler::explain`]) and posts a `StowageWaiting` Event in
//! the database's terms: which rule holds it, members per zone, and what would unblock it,
//! whichever filter rejected it. One Event per pod and distinct message, at most one per pod per
//! [`REPEAT_AFTER`]; the event publisher deduplicates into events.k8s.io series and bounds the
//! queue.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use stowage_policy::{Config, text::clip};
use stowage_scheduler::{
    ClusterCache, EventSink, Explanation,
    events::{EventType, PodEvent},
    explain,
};
use tokio::sync::watch;
use tracing::debug;

use crate::serve::tasks::stopped;

/// Reason of the Event.
pub(crate) const WAITING: &str = "StowageWaiting";
/// The same message is not repeated for the same pod sooner than this.
const REPEAT_AFTER: Duration = Duration::from_secs(300);
/// Bytes of kube-scheduler's own message quoted in an Event.
const SCHEDULER_MESSAGE_BYTES: usize = 240;
/// Pods remembered at most (oldest forgotten first); bounds memory under a flood of pods.
const REMEMBERED: usize = 10_000;

/// Watches unscheduled pods until `stop` and posts a [`WAITING`] Event for each opted-in pod that
/// kube-scheduler reported unschedulable.
pub(crate) async fn run(
    client: kube::Client,
    cache: Arc<ClusterCache>,
    config: Arc<ArcSwap<Config>>,
    events: Arc<dyn EventSink>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(client);
    let stream = watcher(api, watcher::Config::default().fields("spec.nodeName=").any_semantic())
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut posted = Posted::default();
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        let pod = tokio::select! {
            () = &mut stopped => return Ok(()),
            next = stream.next() => match next {
                Some(Ok(pod)) => pod,
                Some(Err(e)) => { debug!(error = %e, "waiting-pod watch"); continue }
                None => return Ok(()),
            },
        };
        let Some(scheduler_message) = unschedulable_message(&pod) else { continue };
        if !opted_in(&pod) {
            continue;
        }
        let uid = pod.uid().unwrap_or_default();
        let now = Instant::now();
        if !posted.needs_explain(&uid, &scheduler_message, now) {
            continue;
        }
        let explanation = explain(&cache, &config.load(), &pod);
        if !explanation.opted_in {
            continue;
        }
        let message = waiting_message(&explanation, &scheduler_message);
        if !posted.record(&uid, &scheduler_message, &message, now) {
            continue;
        }
        events.publish(PodEvent {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            uid,
            type_: EventType::Warning,
            reason: WAITING,
            action: "Scheduling",
            message,
        });
    }
}

/// What was last posted per pod uid (bounded by [`REMEMBERED`]).
#[derive(Default)]
struct Posted(HashMap<String, Seen>);

/// Hashes of kube-scheduler's message and of the Event text last seen for a pod, and when the
/// Event was posted.
struct Seen {
    scheduler: u64,
    message: u64,
    at: Instant,
}

impl Seen {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.at) < REPEAT_AFTER
    }
}

impl Posted {
    /// False while kube-scheduler still says what it said when the Event was posted: every
    /// status write re-delivers the pod, and explaining it again would only find the same text.
    fn needs_explain(&self, uid: &str, scheduler_message: &str, now: Instant) -> bool {
        let scheduler = fnv(scheduler_message);
        !self.0.get(uid).is_some_and(|s| s.fresh(now) && s.scheduler == scheduler)
    }

    /// Remembers the texts; true when the Event should be posted (not the same text within
    /// [`REPEAT_AFTER`]).
    fn record(&mut self, uid: &str, scheduler_message: &str, message: &str, now: Instant) -> bool {
        let (scheduler, message) = (fnv(scheduler_message), fnv(message));
        let repeat_of = self.0.get(uid).filter(|s| s.fresh(now) && s.message == message).map(|s| s.at);
        if self.0.len() >= REMEMBERED {
            self.0.retain(|_, s| s.fresh(now));
            if self.0.len() >= REMEMBERED {
                self.0.clear();
            }
        }
        self.0.insert(uid.to_owned(), Seen { scheduler, message, at: repeat_of.unwrap_or(now) });
        repeat_of.is_none()
    }
}

fn opted_in(pod: &Pod) -> bool {
    pod.annotations().keys().any(|k| k.starts_with("stowage.io/"))
}

/// kube-scheduler's message when the pod's `PodScheduled` condition is `False`/`Unschedulable`.
fn unschedulable_message(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then(|| c.message.clone().unwrap_or_default())
}

/// The Event text: the rule that holds the pod, members per zone, what stowage and the scheduler
/// refused, and what would unblock it. Bounded: every list is capped and the scheduler's message
/// is quoted up to [`SCHEDULER_MESSAGE_BYTES`].
pub(crate) fn waiting_message(ex: &Explanation, scheduler_message: &str) -> String {
    let mut out = String::from("waiting: ");
    if let Some(e) = &ex.policy_error {
        let _ = write!(out, "its stowage annotations are invalid: {}", clip(e, SCHEDULER_MESSAGE_BYTES));
        return out;
    }
    let limit = ex.zone_limit;
    if let Some(group) = &ex.group {
        let n = ex.members.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let _ = write!(out, "group {group} (n={n})");
        if !ex.zone_counts.is_empty() {
            let zones = ex.zone_counts.iter().take(8).map(|z| format!("{}={}", z.zone, z.members));
            let _ = write!(out, ", members per zone {}", zones.collect::<Vec<_>>().join(" "));
            if let Some(max) = limit {
                let _ = write!(out, " (max {max} per zone)");
            }
        }
        out.push_str("; ");
    }
    // Stowage's own refusals, by reason.
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for line in ex.nodes.iter().filter(|l| !l.feasible) {
        match reasons.iter_mut().find(|(r, _)| *r == line.reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((&line.reason, 1)),
        }
    }
    let rule = held_by(&reasons, scheduler_message);
    // Most useful first: Events are cut at 1 kB.
    let _ = write!(out, "held by {rule}. To unblock: {}. ", unblock(ex, limit, &reasons));
    let _ = write!(out, "kube-scheduler: {}", clip(scheduler_message.trim(), SCHEDULER_MESSAGE_BYTES));
    if !reasons.is_empty() {
        let listed: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{n} {}", clip(r, 100))).collect();
        let _ = write!(out, " stowage refuses: {}", listed.join(", "));
        if reasons.len() > 3 {
            let _ = write!(out, " and {} more reason(s)", reasons.len() - 3);
        }
        out.push('.');
    }
    out
}

/// The most specific rule that explains the wait.
fn held_by(reasons: &[(&str, usize)], scheduler_message: &str) -> String {
    let has = |needle: &str| reasons.iter().any(|(r, _)| r.contains(needle));
    let rule = if has("quorum guard") {
        "the quorum guard (no zone may hold a majority)"
    } else if has("zone") {
        "zone spread"
    } else if has("volume") || scheduler_message.contains("volume node affinity") {
        "its local volume"
    } else if has("density") || has("database pods") {
        "the density cap"
    } else if has("primar") {
        "separate primaries"
    } else if has("pool") {
        "its node pool"
    } else if scheduler_message.contains("topology spread") {
        "zone spread (kube-scheduler's own topology spread filter)"
    } else {
        let short = insufficient(scheduler_message);
        if short.is_empty() {
            "kube-scheduler's filters"
        } else {
            return format!("resources (no node with enough free {})", short.join(" or "));
        }
    };
    rule.to_owned()
}

/// The resources kube-scheduler's resource fit found short, in the order it names them: each
/// `Insufficient <resource>` of its message (cpu, memory, ephemeral-storage, hugepages-*,
/// extended resources such as nvidia.com/gpu), once each, at most 4.
fn insufficient(scheduler_message: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    for (i, m) in scheduler_message.match_indices("Insufficient ") {
        let rest = &scheduler_message[i + m.len()..];
        let end = rest.find(|c: char| c == ',' || c == ';' || c.is_whitespace()).unwrap_or(rest.len());
        // A resource name ends in an alphanumeric; a trailing '.' ends the sentence.
        let name = rest[..end].trim_end_matches('.');
        if !name.is_empty() && !found.contains(&name) && found.len() < 4 {
            found.push(name);
        }
    }
    found
}

/// What would let the pod be placed.
fn unblock(ex: &Explanation, limit: Option<u32>, reasons: &[(&str, usize)]) -> String {
    // The explanation covers every cached node; a group's zone counts cover only the zones the
    // pod may use (its node selector and affinity), so a suggestion must lie in one of them.
    let usable = |l: &&stowage_scheduler::explain::NodeLine| {
        ex.zone_counts.is_empty() || l.zone.as_deref().is_some_and(|z| ex.zone_counts.iter().any(|c| c.zone == z))
    };
    if let Some(line) = ex.nodes.iter().filter(|l| l.feasible).find(usable) {
        let (node, zone) = (&line.node, line.zone.as_deref().unwrap_or("-"));
        return format!(
            "stowage's rules allow node {node} in zone {zone}: give it what kube-scheduler's own filters \
             miss there (see below), or add a node in zone {zone}"
        );
    }
    if let Some(max) = limit
        && reasons.iter().any(|(r, _)| r.contains("zone"))
    {
        let open: Vec<&str> =
            ex.zone_counts.iter().filter(|z| z.members < max).map(|z| z.zone.as_str()).take(8).collect();
        return if open.is_empty() {
            "every zone holds its maximum: add a zone, or lower the group's members".to_owned()
        } else {
            format!("room (cpu, memory, pods) on a schedulable node in zone {}", open.join(" or "))
        };
    }
    if reasons.iter().any(|(r, _)| r.contains("volume")) {
        return "the node holding its volume must be schedulable with room for it".to_owned();
    }
    "a node that passes the rules above".to_owned()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use stowage_scheduler::explain::{NodeLine, PluginScores, ZoneCount};

    use super::*;

    fn line(node: &str, zone: &str, reason: &str) -> NodeLine {
        NodeLine {
            node: node.to_owned(),
            zone: Some(zone.to_owned()),
            feasible: reason.is_empty(),
            code: if reason.is_empty() { "Success" } else { "Unschedulable" },
            plugin: None,
            reason: reason.to_owned(),
            scores: PluginScores::default(),
            combined: 0,
            score: 0,
        }
    }

    fn explanation(nodes: Vec<NodeLine>, zones: &[(&str, u32)], preferred: Option<&str>) -> Explanation {
        Explanation {
            pod: "db/pg-2".to_owned(),
            opted_in: true,
            policy_error: None,
            profile: Some("postgres".to_owned()),
            group: Some("db/pg".to_owned()),
            members: Some(3),
            members_source: Some("statefulset"),
            rules: vec![("quorum".to_owned(), "zone".to_owned()), ("zone-spread".to_owned(), "required".to_owned())],
            zone_counts: zones.iter().map(|(z, m)| ZoneCount { zone: (*z).to_owned(), members: *m }).collect(),
            zone_limit: Some(1),
            weights: PluginScores::default(),
            nodes,
            preferred: preferred.map(str::to_owned),
            note: String::new(),
        }
    }

    #[test]
    fn the_same_scheduler_message_is_not_explained_again() {
        let mut posted = Posted::default();
        let t0 = Instant::now();
        assert!(posted.needs_explain("u", "0/6 nodes", t0));
        assert!(posted.record("u", "0/6 nodes", "waiting: a", t0));
        assert!(!posted.needs_explain("u", "0/6 nodes", t0), "same scheduler text: no explain");
        assert!(posted.needs_explain("u", "0/5 nodes", t0));
        assert!(!posted.record("u", "0/5 nodes", "waiting: a", t0), "same Event text: not posted again");
        assert!(!posted.needs_explain("u", "0/5 nodes", t0));
        assert!(posted.needs_explain("u", "0/5 nodes", t0 + REPEAT_AFTER), "explained again after the window");
        assert!(posted.needs_explain("v", "0/6 nodes", t0));
    }

    const GUARD: &str = "node(s) would give a zone more than floor((n-1)/2) members of the group (quorum guard)";

    #[test]
    fn a_member_held_by_the_quorum_guard_is_told_which_zone_would_take_it() {
        let ex = explanation(
            vec![line("a1", "a", GUARD), line("a2", "a", GUARD), line("b1", "b", GUARD)],
            &[("a", 1), ("b", 1), ("c", 0)],
            None,
        );
        let scheduler =
            "0/6 nodes are available: 2 Insufficient cpu, 4 node(s) didn't match pod topology spread constraints.";
        let text = waiting_message(&ex, scheduler);
        for want in [
            "group db/pg (n=3)",
            "members per zone a=1 b=1 c=0 (max 1 per zone)",
            "held by the quorum guard",
            "3 node(s) would give a zone more",
            "kube-scheduler: 0/6 nodes are available: 2 Insufficient cpu",
            "To unblock: room (cpu, memory, pods) on a schedulable node in zone c",
        ] {
            assert!(text.contains(want), "{want:?} missing from {text:?}");
        }
    }

    #[test]
    fn a_node_stowage_accepts_is_named_when_only_the_scheduler_refuses() {
        let ex = explanation(vec![line("c1", "c", "")], &[("a", 1), ("b", 1), ("c", 0)], Some("c1"));
        let text = waiting_message(&ex, "0/1 nodes are available: 1 Insufficient memory.");
        assert!(text.contains("held by resources"), "{text}");
        assert!(text.contains("stowage's rules allow node c1 in zone c"), "{text}");
    }

    #[test]
    fn a_node_outside_the_pods_zones_is_never_suggested() {
        let ex = explanation(
            vec![line("other-x1", "other-x", ""), line("a1", "a", GUARD), line("c1", "c", "")],
            &[("a", 1), ("b", 1), ("c", 0)],
            Some("other-x1"),
        );
        let text = waiting_message(&ex, "0/3 nodes are available: 1 Insufficient cpu.");
        assert!(text.contains("allow node c1 in zone c"), "{text}");
        assert!(!text.contains("other-x1"), "{text}");
    }

    #[test]
    fn every_zone_full_says_so_and_the_scheduler_message_is_bounded() {
        let ex = explanation(vec![line("a1", "a", GUARD), line("b1", "b", GUARD)], &[("a", 1), ("b", 1)], None);
        let text = waiting_message(&ex, &"x".repeat(100_000));
        assert!(text.contains("every zone holds its maximum"), "{text}");
        assert!(text.len() < 1024, "{} bytes", text.len());
    }

    #[test]
    fn the_resources_kube_scheduler_found_short_are_named() {
        let table = [
            ("0/4 nodes are available: 4 Insufficient cpu.", "resources (no node with enough free cpu)"),
            (
                "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: \
                 3 No preemption victims found for incoming pod.",
                "resources (no node with enough free nvidia.com/gpu)",
            ),
            (
                "0/3 nodes are available: 1 Insufficient ephemeral-storage, 2 Insufficient memory.",
                "resources (no node with enough free ephemeral-storage or memory)",
            ),
            (
                "0/5 nodes are available: 2 Insufficient example.com/licence, 3 Insufficient hugepages-2Mi.",
                "resources (no node with enough free example.com/licence or hugepages-2Mi)",
            ),
            (
                "0/6 nodes are available: 3 Insufficient cpu, 3 Insufficient cpu, 1 Insufficient memory.",
                "resources (no node with enough free cpu or memory)",
            ),
            ("0/2 nodes are available: 2 node(s) had untolerated taint {a: b}.", "kube-scheduler's filters"),
        ];
        for (message, want) in table {
            assert_eq!(held_by(&[], message), want, "{message}");
        }
        let ex = explanation(vec![line("c1", "c", "")], &[("c", 0)], Some("c1"));
        let text = waiting_message(&ex, "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
        assert!(text.contains("held by resources (no node with enough free nvidia.com/gpu)."), "{text}");
        assert!(!text.contains("cpu or memory"), "{text}");
    }

    #[test]
    fn only_unschedulable_pods_are_reported() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}]}
        }))
        .expect("pod");
        assert_eq!(unschedulable_message(&pod).as_deref(), Some("m"));
        if let Some(c) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].reason = Some("SchedulingGated".to_owned());
        }
        assert_eq!(unschedulable_message(&pod), None);
    }
}
