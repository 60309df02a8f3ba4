//! The recovery decision: a pure function of the group's facts, the nodes' facts and the time.
//!
//! [`decide`] first asks whether the member is **stranded** (its home node deleted, tainted
//! out-of-service, or NotReady/Unknown for at least `after` with no Lease renewal within
//! `after`, and at least one of its claims pinned to that node), then checks every gate in a
//! fixed order. The first gate that holds wins; only when none holds is there an action, which
//! `report` mode (and groups without a StatefulSet) only describe.

use std::{fmt, time::Duration};

use k8s_openapi::jiff::Timestamp;
use stowage_policy::config::RecoveryMode;

use crate::facts::{GroupFacts, MemberFacts, NodeFacts, Nodes, Readiness};

/// Why the member's node counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The Node object is gone.
    NodeDeleted,
    /// The node is tainted `node.kubernetes.io/out-of-service`.
    OutOfService,
    /// NotReady/Unknown, with no Lease renewal, for at least `after`.
    Unreachable {
        /// How long the `Ready` condition has not been `True`.
        not_ready_for: Duration,
    },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeDeleted => f.write_str("the node was deleted"),
            Self::OutOfService => f.write_str("the node is tainted node.kubernetes.io/out-of-service"),
            Self::Unreachable { not_ready_for } => {
                write!(f, "the node has not been Ready for {}s and its Lease is not renewed", not_ready_for.as_secs())
            }
        }
    }
}

/// A gate that held a stranded member: nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The node is not Ready, but not for `after` yet.
    NotDeadYet {
        /// How long it has not been Ready.
        not_ready_for: Duration,
        /// The profile's `after`.
        after: Duration,
    },
    /// The node's Lease was renewed within `after`: the kubelet is alive (slow is not dead).
    LeaseRenewed {
        /// Time since the renewal.
        ago: Duration,
        /// The profile's `after`.
        after: Duration,
    },
    /// `stowage.io/recovery-paused: "true"` on the StatefulSet or a member.
    Paused,
    /// The member is the primary: failover is the database's job, never stowage's.
    Primary,
    /// The group's rebuild has not produced a Ready member within `stuckAfter`: nothing more is
    /// done in the group (not even for that member) until it is Ready or a human steps in.
    RebuildStuck {
        /// The member being rebuilt.
        member: String,
    },
    /// Another member of the group is being rebuilt and is not Ready yet.
    AnotherMemberRecovering {
        /// That member.
        member: String,
    },
    /// The other members do not hold a Ready majority of n.
    NoMajority {
        /// Other members that are Ready on healthy nodes.
        ready: u32,
        /// The majority of n.
        needed: u32,
        /// Voting members.
        n: u32,
    },
    /// No healthy, schedulable node of the member's zone is free of the group's members.
    NoSpareNodeInZone {
        /// The zone.
        zone: String,
    },
    /// The cluster-wide cap on rebuilds in flight is reached.
    ClusterCap {
        /// Rebuilds in flight.
        in_flight: usize,
        /// The cap.
        max: usize,
    },
}

impl Gate {
    /// Every gate's metric label, in the order they are checked.
    pub const LABELS: &'static [&'static str] = &[
        "not_dead_yet",
        "lease_renewed",
        "paused",
        "primary",
        "rebuild_stuck",
        "another_member_recovering",
        "no_majority",
        "no_spare_node_in_zone",
        "cluster_cap",
    ];

    /// The metric label (one of [`Gate::LABELS`]).
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::NotDeadYet { .. } => "not_dead_yet",
            Self::LeaseRenewed { .. } => "lease_renewed",
            Self::Paused => "paused",
            Self::Primary => "primary",
            Self::RebuildStuck { .. } => "rebuild_stuck",
            Self::AnotherMemberRecovering { .. } => "another_member_recovering",
            Self::NoMajority { .. } => "no_majority",
            Self::NoSpareNodeInZone { .. } => "no_spare_node_in_zone",
            Self::ClusterCap { .. } => "cluster_cap",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDeadYet { not_ready_for, after } => write!(
                f,
                "the node has not been Ready for {}s; it counts as dead after {}s",
                not_ready_for.as_secs(),
                after.as_secs()
            ),
            Self::LeaseRenewed { ago, after } => write!(
                f,
                "the node's Lease was renewed {}s ago (within {}s): the kubelet is alive, slow is not dead",
                ago.as_secs(),
                after.as_secs()
            ),
            Self::Paused => f.write_str("recovery is paused (stowage.io/recovery-paused)"),
            Self::Primary => f.write_str("the member is the primary; failover belongs to the database, not stowage"),
            Self::RebuildStuck { member } => write!(
                f,
                "the rebuild of member {member} is stuck (not Ready within stuckAfter); \
                 nothing more is done in this group until it is Ready"
            ),
            Self::AnotherMemberRecovering { member } => {
                write!(f, "member {member} of the group is being rebuilt and is not Ready yet (one at a time)")
            }
            Self::NoMajority { ready, needed, n } => {
                write!(f, "only {ready} other member(s) are Ready; a majority of {n} needs {needed}")
            }
            Self::NoSpareNodeInZone { zone } => {
                write!(f, "no Ready, schedulable node of zone {zone} is free of the group's members")
            }
            Self::ClusterCap { in_flight, max } => {
                write!(f, "{in_flight} rebuild(s) in flight in the cluster; the cap is {max}")
            }
        }
    }
}

/// What a rebuild does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The member.
    pub member: String,
    /// Its dead home node.
    pub node: String,
    /// Why the node counts as dead.
    pub trigger: Trigger,
    /// Claims pinned to the node, deleted first (their volumes become Released; data is never
    /// touched).
    pub delete_claims: Vec<String>,
    /// Force-delete the pod (grace 0): it is still bound to the dead node.
    pub force_delete_pod: bool,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (node {})", self.trigger, self.node)?;
        let mut steps = Vec::new();
        if !self.delete_claims.is_empty() {
            steps.push(format!(
                "delete claim(s) {} (their volumes on {} are released, not erased)",
                self.delete_claims.join(", "),
                self.node
            ));
        }
        if self.force_delete_pod {
            steps.push(format!("force-delete pod {}", self.member));
        }
        write!(f, ": {}; the StatefulSet then recreates the member and its claim", steps.join(", then "))
    }
}

/// Why an action is only described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOnly {
    /// The member's recovery mode is `report`.
    Mode,
    /// The group has no StatefulSet to recreate the member (operator-managed pods).
    NoStatefulSet,
}

/// The outcome for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do: recovery is off, the home node is healthy, no claim is pinned to it, or
    /// the rebuild is already under way.
    Nothing,
    /// Stranded (or about to be), held by a gate.
    Held(Gate),
    /// Would act; nothing is changed.
    Report(Action, ReportOnly),
    /// Act.
    Act(Action),
}

/// Everything [`decide`] looks at besides the member itself.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// The member's group.
    pub group: &'a GroupFacts,
    /// Nodes that exist.
    pub nodes: &'a Nodes,
    /// The member of this group being rebuilt and not Ready again yet, if any.
    pub recovering: Option<&'a str>,
    /// That rebuild has passed `stuckAfter`.
    pub stuck: bool,
    /// Rebuilds in flight in the whole cluster, not counting stuck ones (a stuck group keeps
    /// itself held, not every other namespace's).
    pub in_flight: usize,
    /// Cluster-wide cap on rebuilds in flight.
    pub max_in_flight: usize,
    /// The time.
    pub now: Timestamp,
}

/// The majority of `n`: floor(n/2) + 1.
#[must_use]
pub const fn majority(n: u32) -> u32 {
    n / 2 + 1
}

fn elapsed(since: Option<Timestamp>, now: Timestamp) -> Duration {
    since.and_then(|t| Duration::try_from(now.duration_since(t)).ok()).unwrap_or(Duration::ZERO)
}

/// The trigger, or the gate that says the node is not dead (yet); `None` when it is healthy.
fn trigger(s: &Situation<'_>, home: &str, after: Duration) -> Option<Result<Trigger, Gate>> {
    let Some(node) = s.nodes.get(home) else { return Some(Ok(Trigger::NodeDeleted)) };
    if node.out_of_service {
        return Some(Ok(Trigger::OutOfService));
    }
    if node.readiness == Readiness::Ready {
        return None;
    }
    let not_ready_for = elapsed(node.ready_since, s.now);
    if node.ready_since.is_none() || not_ready_for < after {
        return Some(Err(Gate::NotDeadYet { not_ready_for, after }));
    }
    if let Some(renewed) = node.lease_renewed {
        let ago = elapsed(Some(renewed), s.now);
        if ago < after {
            return Some(Err(Gate::LeaseRenewed { ago, after }));
        }
    }
    Some(Ok(Trigger::Unreachable { not_ready_for }))
}

/// Decides what to do about one member of `s.group`.
#[must_use]
pub fn decide(s: &Situation<'_>, member: &MemberFacts) -> Decision {
    if member.mode == RecoveryMode::Off {
        return Decision::Nothing;
    }
    let Some(home) = member.home() else { return Decision::Nothing };
    let on_home: Vec<&str> =
        member.claims.iter().filter(|c| c.pinned_node.as_deref() == Some(home)).map(|c| c.name.as_str()).collect();
    if on_home.is_empty() {
        return Decision::Nothing;
    }
    let trigger = match trigger(s, home, member.after) {
        None => return Decision::Nothing,
        Some(Err(gate)) => return Decision::Held(gate),
        Some(Ok(t)) => t,
    };
    let delete_claims: Vec<String> = member
        .claims
        .iter()
        .filter(|c| c.pinned_node.as_deref() == Some(home) && !c.terminating)
        .map(|c| c.name.clone())
        .collect();
    let force_delete_pod = member.node.as_deref() == Some(home);
    if delete_claims.is_empty() && !force_delete_pod {
        // Claims already going and the pod already off the node: the rebuild is under way.
        return Decision::Nothing;
    }

    if s.group.paused() {
        return Decision::Held(Gate::Paused);
    }
    if member.primary {
        return Decision::Held(Gate::Primary);
    }
    if let Some(recovering) = s.recovering.filter(|_| s.stuck) {
        return Decision::Held(Gate::RebuildStuck { member: recovering.to_owned() });
    }
    if let Some(other) = s.recovering.filter(|r| *r != member.name) {
        return Decision::Held(Gate::AnotherMemberRecovering { member: other.to_owned() });
    }
    let healthy = |node: Option<&str>| node.and_then(|n| s.nodes.get(n)).is_some_and(|n| n.healthy());
    let ready = s
        .group
        .members
        .iter()
        .filter(|m| m.name != member.name && m.ready && !m.terminating && healthy(m.node.as_deref()))
        .count();
    let ready = u32::try_from(ready).unwrap_or(u32::MAX);
    let needed = majority(s.group.n);
    if ready < needed {
        return Decision::Held(Gate::NoMajority { ready, needed, n: s.group.n });
    }
    if let Some(zone) = s.nodes.get(home).and_then(|n| n.zone.clone()) {
        let occupied = |node: &str| s.group.members.iter().any(|m| m.node.as_deref() == Some(node));
        let spare = s
            .nodes
            .values()
            .any(|n| n.name != home && n.zone.as_deref() == Some(zone.as_str()) && n.can_host() && !occupied(&n.name));
        if !spare {
            return Decision::Held(Gate::NoSpareNodeInZone { zone });
        }
    }
    let continuing = s.recovering == Some(member.name.as_str());
    if !continuing && s.in_flight >= s.max_in_flight {
        return Decision::Held(Gate::ClusterCap { in_flight: s.in_flight, max: s.max_in_flight });
    }

    let action =
        Action { member: member.name.clone(), node: home.to_owned(), trigger, delete_claims, force_delete_pod };
    match (member.mode, &s.group.statefulset) {
        (RecoveryMode::Report, _) => Decision::Report(action, ReportOnly::Mode),
        (_, None) => Decision::Report(action, ReportOnly::NoStatefulSet),
        _ => Decision::Act(action),
    }
}

/// When the member's node was lost, as far as the facts know: the `Ready` condition's last
/// transition for an unreachable node, the taint's `timeAdded` for an out-of-service one (else
/// the `Ready` transition, if the node is not Ready either). `None` for a deleted node: the
/// Node object, and with it the time, is gone.
#[must_use]
pub fn lost_at(trigger: Trigger, node: Option<&NodeFacts>) -> Option<Timestamp> {
    let node = node?;
    let not_ready_since = node.ready_since.filter(|_| node.readiness != Readiness::Ready);
    match trigger {
        Trigger::NodeDeleted => None,
        Trigger::OutOfService => node.out_of_service_since.or(not_ready_since),
        Trigger::Unreachable { .. } => not_ready_since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ClaimFacts;
    use stowage_policy::GroupKey;

    const AFTER: Duration = Duration::from_secs(60);

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> Option<Timestamp> {
        Some(now() - k8s_openapi::jiff::SignedDuration::from_secs(secs))
    }

    fn node(name: &str, zone: &str) -> NodeFacts {
        NodeFacts {
            name: name.to_owned(),
            zone: Some(zone.to_owned()),
            readiness: Readiness::Ready,
            ready_since: ago(3600),
            lease_renewed: ago(1),
            out_of_service: false,
            out_of_service_since: None,
            unschedulable: false,
        }
    }

    fn dead(mut n: NodeFacts, secs: i64) -> NodeFacts {
        n.readiness = Readiness::Unknown;
        n.ready_since = ago(secs);
        n.lease_renewed = ago(secs + 30);
        n
    }

    fn member(name: &str, node: &str) -> MemberFacts {
        MemberFacts {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            node: Some(node.to_owned()),
            ready: true,
            terminating: false,
            primary: false,
            mode: RecoveryMode::Rebuild,
            after: AFTER,
            stuck_after: Duration::from_secs(900),
            unschedulable: false,
            paused: false,
            claims: vec![ClaimFacts {
                name: format!("data-{name}"),
                uid: String::new(),
                pinned_node: Some(node.to_owned()),
                terminating: false,
            }],
        }
    }

    /// pg-0 on a1 (zone a), pg-1 on b1, pg-2 on c1; a2 is a spare node in zone a.
    struct World {
        group: GroupFacts,
        nodes: Nodes,
        recovering: Option<&'static str>,
        stuck: bool,
        in_flight: usize,
    }

    fn world() -> World {
        let nodes = [node("a1", "a"), node("a2", "a"), node("b1", "b"), node("c1", "c")]
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let group = GroupFacts {
            key: GroupKey { namespace: "db".into(), name: "pg".into() },
            n: 3,
            statefulset: Some("pg".into()),
            statefulset_paused: false,
            members: vec![member("pg-0", "a1"), member("pg-1", "b1"), member("pg-2", "c1")],
        };
        World { group, nodes, recovering: None, stuck: false, in_flight: 0 }
    }

    impl World {
        fn kill(mut self, node: &str, secs: i64) -> Self {
            let n = self.nodes.remove(node).unwrap();
            self.nodes.insert(node.to_owned(), dead(n, secs));
            self
        }
        fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
        fn decide(&self, name: &str) -> Decision {
            let s = Situation {
                group: &self.group,
                nodes: &self.nodes,
                recovering: self.recovering,
                stuck: self.stuck,
                in_flight: self.in_flight,
                max_in_flight: 2,
                now: now(),
            };
            decide(&s, self.group.member(name).unwrap())
        }
    }

    fn m<'a>(w: &'a mut World, name: &str) -> &'a mut MemberFacts {
        w.group.members.iter_mut().find(|m| m.name == name).unwrap()
    }

    fn rebuild(trigger: Trigger) -> Action {
        Action {
            member: "pg-0".into(),
            node: "a1".into(),
            trigger,
            delete_claims: vec!["data-pg-0".into()],
            force_delete_pod: true,
        }
    }

    const DEAD: Trigger = Trigger::Unreachable { not_ready_for: Duration::from_secs(120) };

    #[test]
    fn every_gate_and_trigger() {
        let cases: Vec<(&str, World, Decision)> = vec![
            ("healthy node", world(), Decision::Nothing),
            ("dead past after", world().kill("a1", 120), Decision::Act(rebuild(DEAD))),
            (
                "not dead for after yet",
                world().kill("a1", 30),
                Decision::Held(Gate::NotDeadYet { not_ready_for: Duration::from_secs(30), after: AFTER }),
            ),
            (
                "Ready condition old but the Lease renewed: slow is not dead",
                world().kill("a1", 120).with(|w| w.nodes.get_mut("a1").unwrap().lease_renewed = ago(10)),
                Decision::Held(Gate::LeaseRenewed { ago: Duration::from_secs(10), after: AFTER }),
            ),
            (
                "NotReady with no transition time",
                world().kill("a1", 120).with(|w| w.nodes.get_mut("a1").unwrap().ready_since = None),
                Decision::Held(Gate::NotDeadYet { not_ready_for: Duration::ZERO, after: AFTER }),
            ),
            (
                "node deleted acts at once",
                world().with(|w| {
                    w.nodes.remove("a1");
                }),
                Decision::Act(rebuild(Trigger::NodeDeleted)),
            ),
            (
                "out-of-service acts at once, Lease or not",
                world().with(|w| w.nodes.get_mut("a1").unwrap().out_of_service = true),
                Decision::Act(rebuild(Trigger::OutOfService)),
            ),
            ("mode off", world().kill("a1", 120).with(|w| m(w, "pg-0").mode = RecoveryMode::Off), Decision::Nothing),
            (
                "report mode describes only",
                world().kill("a1", 120).with(|w| m(w, "pg-0").mode = RecoveryMode::Report),
                Decision::Report(rebuild(DEAD), ReportOnly::Mode),
            ),
            (
                "no StatefulSet: report only",
                world().kill("a1", 120).with(|w| w.group.statefulset = None),
                Decision::Report(rebuild(DEAD), ReportOnly::NoStatefulSet),
            ),
            (
                "no claim pinned to the node",
                world().kill("a1", 120).with(|w| m(w, "pg-0").claims[0].pinned_node = Some("elsewhere".into())),
                Decision::Nothing,
            ),
            (
                "paused on the StatefulSet",
                world().kill("a1", 120).with(|w| w.group.statefulset_paused = true),
                Decision::Held(Gate::Paused),
            ),
            (
                "paused on another member",
                world().kill("a1", 120).with(|w| m(w, "pg-2").paused = true),
                Decision::Held(Gate::Paused),
            ),
            ("primary", world().kill("a1", 120).with(|w| m(w, "pg-0").primary = true), Decision::Held(Gate::Primary)),
            (
                "another member recovering",
                world().kill("a1", 120).with(|w| w.recovering = Some("pg-2")),
                Decision::Held(Gate::AnotherMemberRecovering { member: "pg-2".into() }),
            ),
            (
                "itself recovering continues past the cap",
                world().kill("a1", 120).with(|w| {
                    w.recovering = Some("pg-0");
                    w.in_flight = 5;
                }),
                Decision::Act(rebuild(DEAD)),
            ),
            (
                "another member's rebuild stuck: the group stays held",
                world().kill("a1", 120).with(|w| {
                    w.recovering = Some("pg-2");
                    w.stuck = true;
                }),
                Decision::Held(Gate::RebuildStuck { member: "pg-2".into() }),
            ),
            (
                "its own rebuild stuck: not retried",
                world().kill("a1", 120).with(|w| {
                    w.recovering = Some("pg-0");
                    w.stuck = true;
                }),
                Decision::Held(Gate::RebuildStuck { member: "pg-0".into() }),
            ),
            (
                "another member not Ready: no majority",
                world().kill("a1", 120).with(|w| m(w, "pg-1").ready = false),
                Decision::Held(Gate::NoMajority { ready: 1, needed: 2, n: 3 }),
            ),
            (
                "another member on a dead node: no majority",
                world().kill("a1", 120).kill("b1", 5),
                Decision::Held(Gate::NoMajority { ready: 1, needed: 2, n: 3 }),
            ),
            (
                "another member Terminating: no majority",
                world().kill("a1", 120).with(|w| m(w, "pg-2").terminating = true),
                Decision::Held(Gate::NoMajority { ready: 1, needed: 2, n: 3 }),
            ),
            (
                "n from members annotation larger than the pods seen",
                world().kill("a1", 120).with(|w| w.group.n = 5),
                Decision::Held(Gate::NoMajority { ready: 2, needed: 3, n: 5 }),
            ),
            (
                "no spare node in the zone",
                world().kill("a1", 120).with(|w| w.nodes.get_mut("a2").unwrap().unschedulable = true),
                Decision::Held(Gate::NoSpareNodeInZone { zone: "a".into() }),
            ),
            (
                "the zone's other node holds a member",
                world().kill("a1", 120).with(|w| m(w, "pg-1").node = Some("a2".into())),
                Decision::Held(Gate::NoSpareNodeInZone { zone: "a".into() }),
            ),
            (
                "cluster cap",
                world().kill("a1", 120).with(|w| w.in_flight = 2),
                Decision::Held(Gate::ClusterCap { in_flight: 2, max: 2 }),
            ),
            (
                "claim already going, pod still on the node: force-delete only",
                world().kill("a1", 120).with(|w| m(w, "pg-0").claims[0].terminating = true),
                Decision::Act(Action { delete_claims: vec![], ..rebuild(DEAD) }),
            ),
            (
                "recreated pod Pending, old claim still going: under way",
                world().kill("a1", 120).with(|w| {
                    let pg0 = m(w, "pg-0");
                    pg0.node = None;
                    pg0.ready = false;
                    pg0.claims[0].terminating = true;
                }),
                Decision::Nothing,
            ),
            (
                "recreated pod Pending on a claim still pinned: delete the claim only",
                world().kill("a1", 120).with(|w| {
                    let pg0 = m(w, "pg-0");
                    pg0.node = None;
                    pg0.ready = false;
                }),
                Decision::Act(Action { force_delete_pod: false, ..rebuild(DEAD) }),
            ),
        ];
        for (name, w, want) in cases {
            assert_eq!(w.decide("pg-0"), want, "case: {name}");
        }
    }

    #[test]
    fn gates_are_checked_in_order() {
        // Everything holds at once: the pause wins, then the primary, and so on.
        let mut w = world().kill("a1", 120).kill("b1", 120);
        w.group.statefulset_paused = true;
        m(&mut w, "pg-0").primary = true;
        w.recovering = Some("pg-1");
        w.stuck = true;
        w.in_flight = 9;
        assert_eq!(w.decide("pg-0"), Decision::Held(Gate::Paused));
        w.group.statefulset_paused = false;
        assert_eq!(w.decide("pg-0"), Decision::Held(Gate::Primary));
        m(&mut w, "pg-0").primary = false;
        assert!(matches!(w.decide("pg-0"), Decision::Held(Gate::RebuildStuck { .. })));
        w.stuck = false;
        assert!(matches!(w.decide("pg-0"), Decision::Held(Gate::AnotherMemberRecovering { .. })));
        w.recovering = None;
        assert!(matches!(w.decide("pg-0"), Decision::Held(Gate::NoMajority { .. })));
    }

    #[test]
    fn messages_say_what_and_why() {
        let text = rebuild(DEAD).to_string();
        assert!(text.contains("delete claim(s) data-pg-0") && text.contains("force-delete pod pg-0"), "{text}");
        for gate in [Gate::Paused, Gate::Primary, Gate::NoMajority { ready: 1, needed: 2, n: 3 }] {
            assert!(Gate::LABELS.contains(&gate.label()));
            assert!(!gate.to_string().is_empty());
        }
        assert_eq!(majority(3), 2);
        let since = ago(120);
        let mut n = dead(node("a1", "a"), 120);
        assert_eq!(lost_at(DEAD, Some(&n)), since, "unreachable: since the Ready transition");
        assert_eq!(lost_at(Trigger::NodeDeleted, None), None);
        n.out_of_service_since = ago(30);
        assert_eq!(lost_at(Trigger::OutOfService, Some(&n)), ago(30), "out of service: the taint's time");
        assert_eq!(lost_at(Trigger::OutOfService, Some(&node("a1", "a"))), None, "Ready, no taint time");
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }
}
