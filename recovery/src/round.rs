//! One leader round as a pure function: facts from the caches' objects, the rebuilds in flight
//! brought up to date, a decision for every member and the zone audit. [`crate::controller`]
//! carries out what a [`RoundPlan`] says (API writes, Events, metrics, the debug view); the
//! `round` bench times exactly this.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use stowage_policy::{Config, config::Recovery};

use crate::{
    audit::{GroupAudit, audit},
    decide::{Decision, Situation, decide, lost_at},
    facts::{GroupFacts, Nodes, Objects, group_facts, node_facts},
};

/// What one round found and decided.
#[derive(Debug, Clone)]
pub struct RoundPlan {
    /// Every group, members sorted by name.
    pub groups: Vec<GroupFacts>,
    /// Nodes that exist.
    pub nodes: Nodes,
    /// Rebuilds that ended: their member is Ready again.
    pub finished: Vec<InFlight>,
    /// Stuck rebuilds whose group is gone, forgotten.
    pub forgotten: Vec<InFlight>,
    /// The rebuilds still in flight before this round's own, in order.
    pub in_flight: Vec<InFlight>,
    /// Rebuilds of [`RoundPlan::in_flight`] (by index) that passed their `stuckAfter` in this
    /// round, with that `stuckAfter`.
    pub newly_stuck: Vec<(usize, Duration)>,
    /// A decision for every member, group by group.
    pub decisions: Vec<MemberDecision>,
    /// The zone-failure audit of every group, in the order of [`RoundPlan::groups`].
    pub audits: Vec<GroupAudit>,
}

/// The decision for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDecision {
    /// Index into [`RoundPlan::groups`].
    pub group: usize,
    /// Index into that group's members.
    pub member: usize,
    /// What to do.
    pub decision: Decision,
    /// For [`Decision::Act`] in a group without a rebuild in flight: the rebuild to record
    /// (its `since` is this round's time; the controller stamps the moment it acts).
    pub start: Option<InFlight>,
}

/// One round over `objects`: derives the facts, ends, forgets and times the rebuilds
/// `in_flight`, then decides every member in order, counting each rebuild it starts against
/// `max_in_flight` and its group for the members after it, and audits every group.
#[must_use]
pub fn round(
    objects: &Objects<'_>,
    cfg: &Config,
    in_flight: Vec<InFlight>,
    max_in_flight: usize,
    now: Timestamp,
) -> RoundPlan {
    let groups = group_facts(objects, cfg);
    let nodes = node_facts(objects.nodes, objects.leases, cfg);

    let (finished, open): (Vec<InFlight>, Vec<InFlight>) = in_flight.into_iter().partition(|f| rebuilt(f, &groups));
    let by_key: BTreeMap<String, &GroupFacts> = groups.iter().map(|g| (g.key.to_string(), g)).collect();
    let (mut in_flight, forgotten): (Vec<InFlight>, Vec<InFlight>) =
        open.into_iter().partition(|f| by_key.contains_key(&f.group) || !f.stuck);
    let mut newly_stuck = Vec::new();
    for (i, flight) in in_flight.iter_mut().enumerate() {
        let after = stuck_after(flight, &by_key);
        if !flight.stuck && flight.overdue(now, after) {
            flight.stuck = true;
            newly_stuck.push((i, after));
        }
    }
    let checked = in_flight.clone();

    let mut decisions = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let key = group.key.to_string();
        for (m, member) in group.members.iter().enumerate() {
            let flight = in_flight.iter().find(|f| f.group == key);
            let situation = Situation {
                group,
                nodes: &nodes,
                recovering: flight.map(|f| f.member.as_str()),
                stuck: flight.is_some_and(|f| f.stuck),
                in_flight: counted(&in_flight),
                max_in_flight,
                now,
            };
            let decision = decide(&situation, member);
            let start = match &decision {
                Decision::Act(action) if flight.is_none() => Some(InFlight {
                    group: key.clone(),
                    member: member.name.clone(),
                    old_uid: member.uid.clone(),
                    node: action.node.clone(),
                    since: now.to_string(),
                    lost_at: lost_at(action.trigger, nodes.get(&action.node)).map(|t| t.to_string()),
                    stuck: false,
                }),
                _ => None,
            };
            if let Some(started) = &start {
                in_flight.push(started.clone());
            }
            decisions.push(MemberDecision { group: g, member: m, decision, start });
        }
    }
    let audits = audit(&groups, &nodes);
    RoundPlan { groups, nodes, finished, forgotten, in_flight: checked, newly_stuck, decisions, audits }
}

/// A rebuild under way: acted on, the member not Ready again yet. Kept in the Lease so a new
/// leader honours it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// `namespace/group`.
    pub group: String,
    /// The member's pod name.
    pub member: String,
    /// The uid of the pod that was stranded.
    pub old_uid: String,
    /// The dead node.
    #[serde(default)]
    pub node: String,
    /// When the rebuild started (RFC 3339).
    pub since: String,
    /// When the node was lost (RFC 3339), as the facts knew it when acting; absent for a
    /// deleted node, whose loss is then counted from `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_at: Option<String>,
    /// Past `stuckAfter` (said once, then it holds only its group).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stuck: bool,
}

impl InFlight {
    /// Seconds from the node's loss (or the rebuild's start) to `now`.
    #[must_use]
    pub fn seconds_since_loss(&self, now: Timestamp) -> Option<f64> {
        let start: Timestamp = self.lost_at.as_deref().unwrap_or(&self.since).parse().ok()?;
        Some(now.duration_since(start).as_secs_f64().max(0.0))
    }

    /// The rebuild started more than `stuck_after` ago (an unreadable start counts as stuck: it
    /// cannot be timed, so it must not hold the cap forever).
    #[must_use]
    pub fn overdue(&self, now: Timestamp, stuck_after: Duration) -> bool {
        self.since
            .parse::<Timestamp>()
            .map_or(true, |since| Duration::try_from(now.duration_since(since)).is_ok_and(|d| d >= stuck_after))
    }
}

/// Rebuilds that count against the cluster-wide cap: stuck ones hold only their own group.
pub(crate) fn counted(in_flight: &[InFlight]) -> usize {
    in_flight.iter().filter(|f| !f.stuck).count()
}

/// The `stuckAfter` that applies to a rebuild: its member's profile, else the default.
pub(crate) fn stuck_after(flight: &InFlight, groups: &BTreeMap<String, &GroupFacts>) -> Duration {
    groups
        .get(&flight.group)
        .and_then(|g| g.member(&flight.member))
        .map_or(Recovery::default().stuck_after, |m| m.stuck_after)
}

/// Whether the rebuild is over: the member is Ready again, as a new pod or on another node (a
/// pod that Kubernetes had already replaced before the rebuild keeps its uid).
#[must_use]
pub fn rebuilt(flight: &InFlight, groups: &[GroupFacts]) -> bool {
    groups.iter().filter(|g| g.key.to_string() == flight.group).any(|g| {
        g.member(&flight.member).is_some_and(|m| {
            let moved = m.node.as_deref().is_some_and(|n| n != flight.node);
            m.ready && !m.terminating && (m.uid != flight.old_uid || moved)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flight(group: &str, member: &str, old_uid: &str, since: &str, stuck: bool) -> InFlight {
        InFlight {
            group: group.into(),
            member: member.into(),
            old_uid: old_uid.into(),
            node: "dead".into(),
            since: since.into(),
            lost_at: None,
            stuck,
        }
    }

    #[test]
    fn a_round_ends_forgets_and_times_the_rebuilds_in_flight() {
        use std::sync::Arc;

        use k8s_openapi::api::core::v1::Pod;
        let cfg = Config::from_yaml("profiles: {pg: {recovery: {mode: rebuild, stuckAfter: 10m}}}").unwrap();
        let pod = |name: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "db", "uid": format!("new-{name}"),
                        "annotations": {"stowage.io/profile": "pg", "stowage.io/group": "pg"}},
                    "spec": {"nodeName": "n1", "containers": []},
                    "status": {"conditions": [{"type": "Ready", "status": if name == "pg-0" { "True" } else { "False" }}]}
                }))
                .unwrap(),
            )
        };
        let pods = vec![pod("pg-0"), pod("pg-1")];
        let objects = Objects { nodes: &[], leases: &[], pods: &pods, claims: &[], volumes: &[], statefulsets: &[] };
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let in_flight = vec![
            flight("db/pg", "pg-0", "old", "2026-01-01T00:55:00Z", false),
            flight("db/gone", "x-0", "old", "2026-01-01T00:00:00Z", true),
            flight("db/pg", "pg-1", "old", "2026-01-01T00:45:00Z", false),
            flight("db/later", "y-0", "old", "2026-01-01T00:59:00Z", false),
        ];
        let plan = round(&objects, &cfg, in_flight, 1, now);
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.finished.iter().map(|f| f.member.as_str()).collect::<Vec<_>>(), ["pg-0"], "Ready as a new pod");
        assert_eq!(plan.forgotten.iter().map(|f| f.member.as_str()).collect::<Vec<_>>(), ["x-0"], "stuck, group gone");
        let left: Vec<(&str, bool)> = plan.in_flight.iter().map(|f| (f.member.as_str(), f.stuck)).collect();
        assert_eq!(left, [("pg-1", true), ("y-0", false)]);
        assert_eq!(plan.newly_stuck, [(0, Duration::from_secs(600))], "pg-1 started 15 min ago, stuckAfter 10 min");
        assert_eq!(plan.decisions.len(), 2, "every member decided");
        assert!(plan.decisions.iter().all(|d| d.start.is_none()), "no rebuild starts while one is stuck");
        assert_eq!(plan.audits.len(), 1);
    }

    #[test]
    fn a_rebuild_is_over_when_the_member_is_ready_as_a_new_pod_or_elsewhere() {
        use crate::facts::{GroupFacts, MemberFacts};
        use stowage_policy::{GroupKey, config::RecoveryMode};
        let flight = InFlight {
            group: "db/pg".into(),
            member: "pg-0".into(),
            old_uid: "old".into(),
            node: "dead".into(),
            since: String::new(),
            lost_at: None,
            stuck: false,
        };
        let group = |uid: &str, node: Option<&str>, ready: bool| {
            vec![GroupFacts {
                key: GroupKey { namespace: "db".into(), name: "pg".into() },
                n: 3,
                statefulset: Some("pg".into()),
                statefulset_paused: false,
                members: vec![MemberFacts {
                    name: "pg-0".into(),
                    uid: uid.into(),
                    node: node.map(str::to_owned),
                    ready,
                    terminating: false,
                    primary: false,
                    mode: RecoveryMode::Rebuild,
                    after: Duration::from_secs(60),
                    stuck_after: Duration::from_secs(900),
                    unschedulable: false,
                    paused: false,
                    claims: vec![],
                }],
            }]
        };
        assert!(rebuilt(&flight, &group("new", Some("n2"), true)));
        assert!(rebuilt(&flight, &group("old", Some("n2"), true)), "replaced before the rebuild, now elsewhere");
        assert!(rebuilt(&flight, &group("new", Some("dead"), true)), "a new pod on the revived node");
        assert!(!rebuilt(&flight, &group("new", None, false)), "Pending");
        assert!(!rebuilt(&flight, &group("old", Some("dead"), true)), "the old pod");
        assert!(!rebuilt(&flight, &group("new", Some("n2"), false)), "not Ready yet");
    }

    #[test]
    fn time_since_loss_and_stuck() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut flight = InFlight {
            group: "db/pg".into(),
            member: "pg-0".into(),
            old_uid: "old".into(),
            node: "dead".into(),
            since: "2026-01-01T00:50:00Z".into(),
            lost_at: Some("2026-01-01T00:40:00Z".into()),
            stuck: false,
        };
        assert_eq!(flight.seconds_since_loss(now), Some(1200.0), "from the node's loss");
        assert!(!flight.overdue(now, Duration::from_secs(900)), "stuck is timed from the rebuild, 10 min ago");
        assert!(flight.overdue(now, Duration::from_secs(600)));
        flight.lost_at = None;
        assert_eq!(flight.seconds_since_loss(now), Some(600.0), "a deleted node: from the rebuild");
        let stuck = InFlight { group: "other/kafka".into(), stuck: true, ..flight.clone() };
        assert_eq!(counted(&[flight.clone(), stuck]), 1, "a stuck rebuild frees its slot in the cap");
        flight.since = "garbage".into();
        assert_eq!(flight.seconds_since_loss(now), None);
        assert!(flight.overdue(now, Duration::from_secs(900)), "untimeable must not hold the cap forever");
    }
}
