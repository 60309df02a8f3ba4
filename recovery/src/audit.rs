//! The zone-failure readiness audit: per group, whether losing any one zone or any one node
//! keeps a Ready majority, which members sit on NotReady nodes and which are Pending and why.
//! Pure. Each group's result is summed up as one [`GroupState`], the closed set the metrics,
//! the transition Events and the debug view speak of.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;

use crate::{
    decide::majority,
    facts::{GroupFacts, MemberFacts, Nodes},
};

/// Zone name used for nodes without the zone label.
pub const NO_ZONE: &str = "<none>";

/// A group's state, worst first: the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Fewer than a majority of n are Ready on healthy nodes: the group has lost its quorum now.
    NoMajority,
    /// Losing one node (the worst one) would leave less than a majority.
    NotNodeSafe,
    /// Losing one zone (the worst one) would leave less than a majority.
    NotZoneSafe,
    /// Zone-safe, but not every one of the n members is Ready on a healthy node.
    Degraded,
    /// Every member Ready, and losing any one zone keeps a majority.
    ZoneSafe,
}

impl GroupState {
    /// Every state, worst first.
    pub const ALL: [Self; 5] = [Self::NoMajority, Self::NotNodeSafe, Self::NotZoneSafe, Self::Degraded, Self::ZoneSafe];

    /// The metric label and the spelling in Events, JSON and text.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoMajority => "no_majority",
            Self::NotNodeSafe => "not_node_safe",
            Self::NotZoneSafe => "not_zone_safe",
            Self::Degraded => "degraded",
            Self::ZoneSafe => "zone_safe",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a member is not bound to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingReason {
    /// One of its claims is pinned to a node that is gone, out of service or not Ready: it
    /// cannot start anywhere until that node returns or the member is rebuilt.
    ClaimOnLostNode,
    /// The scheduler found no node (`PodScheduled=False`, reason `Unschedulable`).
    Unschedulable,
    /// Not scheduled yet, and no verdict from the scheduler.
    Scheduling,
}

impl PendingReason {
    /// Every reason.
    pub const ALL: [Self; 3] = [Self::ClaimOnLostNode, Self::Unschedulable, Self::Scheduling];

    /// The metric label and the spelling in JSON and text.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClaimOnLostNode => "claim_on_lost_node",
            Self::Unschedulable => "unschedulable",
            Self::Scheduling => "scheduling",
        }
    }
}

/// A member not bound to any node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The member's pod name.
    pub member: String,
    /// Why.
    pub reason: PendingReason,
}

/// The audit of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAudit {
    /// `namespace/name`.
    pub group: String,
    /// Voting members.
    pub n: u32,
    /// The majority of n.
    pub majority: u32,
    /// Members Ready on Ready nodes.
    pub ready: u32,
    /// Ready members per zone.
    pub ready_per_zone: BTreeMap<String, u32>,
    /// Losing any one zone leaves a Ready majority.
    pub zone_safe: bool,
    /// The zone whose loss leaves the fewest Ready members, and how many would be left.
    pub worst_zone: Option<(String, u32)>,
    /// Losing any one node leaves a Ready majority.
    pub node_safe: bool,
    /// The node whose loss leaves the fewest Ready members, and how many would be left.
    pub worst_node: Option<(String, u32)>,
    /// Members bound to a node that is NotReady, out of service or gone.
    pub on_unhealthy_nodes: Vec<String>,
    /// Members not bound to any node, and why.
    pub pending: Vec<Pending>,
    /// Recovery mode of the members (`off`, `report`, `rebuild`; several when they differ).
    pub recovery: Vec<String>,
    /// The summary of all of the above.
    pub state: GroupState,
}

impl GroupAudit {
    /// One line saying why the group is in its state (for Events and logs).
    #[must_use]
    pub fn summary(&self) -> String {
        let mut out = format!("{} of {} Ready (majority {})", self.ready, self.n, self.majority);
        if let Some((zone, left)) = self.worst_zone.as_ref().filter(|_| !self.zone_safe) {
            out.push_str(&format!("; losing zone {zone} leaves {left}"));
        }
        if let Some((node, left)) = self.worst_node.as_ref().filter(|_| !self.node_safe) {
            out.push_str(&format!("; losing node {node} leaves {left}"));
        }
        if !self.on_unhealthy_nodes.is_empty() {
            out.push_str(&format!("; on NotReady or missing nodes: {}", self.on_unhealthy_nodes.join(", ")));
        }
        if !self.pending.is_empty() {
            let pending: Vec<String> =
                self.pending.iter().map(|p| format!("{} ({})", p.member, p.reason.as_str())).collect();
            out.push_str(&format!("; Pending: {}", pending.join(", ")));
        }
        out
    }
}

/// Audits every group.
#[must_use]
pub fn audit(groups: &[GroupFacts], nodes: &Nodes) -> Vec<GroupAudit> {
    groups.iter().map(|g| audit_group(g, nodes)).collect()
}

fn audit_group(g: &GroupFacts, nodes: &Nodes) -> GroupAudit {
    let mut ready_per_zone: BTreeMap<String, u32> = BTreeMap::new();
    let mut ready_per_node: BTreeMap<String, u32> = BTreeMap::new();
    let mut on_unhealthy_nodes = Vec::new();
    let mut pending = Vec::new();
    let mut ready = 0;
    for m in &g.members {
        let Some(node_name) = m.node.as_deref() else {
            pending.push(Pending { member: m.name.clone(), reason: pending_reason(m, nodes) });
            continue;
        };
        let node = nodes.get(node_name);
        if !node.is_some_and(|n| n.healthy()) {
            on_unhealthy_nodes.push(m.name.clone());
            continue;
        }
        if m.ready && !m.terminating {
            ready += 1;
            let zone = node.and_then(|n| n.zone.clone()).unwrap_or_else(|| NO_ZONE.to_owned());
            *ready_per_zone.entry(zone).or_default() += 1;
            *ready_per_node.entry(node_name.to_owned()).or_default() += 1;
        }
    }
    let needed = majority(g.n);
    let worst =
        |per: &BTreeMap<String, u32>| per.iter().max_by_key(|(_, c)| **c).map(|(name, c)| (name.clone(), ready - c));
    let worst_zone = worst(&ready_per_zone);
    let worst_node = worst(&ready_per_node);
    let survives = |w: &Option<(String, u32)>| w.as_ref().map_or(ready, |(_, left)| *left) >= needed;
    let mut recovery: Vec<String> = g.members.iter().map(|m| m.mode.to_string()).collect();
    recovery.sort();
    recovery.dedup();
    let (zone_safe, node_safe) = (survives(&worst_zone), survives(&worst_node));
    let state = if ready < needed {
        GroupState::NoMajority
    } else if !node_safe {
        GroupState::NotNodeSafe
    } else if !zone_safe {
        GroupState::NotZoneSafe
    } else if ready < g.n {
        GroupState::Degraded
    } else {
        GroupState::ZoneSafe
    };
    GroupAudit {
        group: g.key.to_string(),
        n: g.n,
        majority: needed,
        ready,
        zone_safe,
        node_safe,
        state,
        ready_per_zone,
        worst_zone,
        worst_node,
        on_unhealthy_nodes,
        pending,
        recovery,
    }
}

fn pending_reason(m: &MemberFacts, nodes: &Nodes) -> PendingReason {
    let lost = |node: &str| !nodes.get(node).is_some_and(|n| n.healthy());
    if m.claims.iter().filter_map(|c| c.pinned_node.as_deref()).any(lost) {
        PendingReason::ClaimOnLostNode
    } else if m.unschedulable {
        PendingReason::Unschedulable
    } else {
        PendingReason::Scheduling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ClaimFacts, NodeFacts, Readiness};
    use stowage_policy::{GroupKey, config::RecoveryMode};

    fn node(name: &str, zone: &str, ready: bool) -> (String, NodeFacts) {
        let facts = NodeFacts {
            name: name.to_owned(),
            zone: Some(zone.to_owned()),
            readiness: if ready { Readiness::Ready } else { Readiness::Unknown },
            ready_since: None,
            lease_renewed: None,
            out_of_service: false,
            out_of_service_since: None,
            unschedulable: false,
        };
        (name.to_owned(), facts)
    }

    fn group(n: u32, placed: &[(&str, Option<&str>)]) -> GroupFacts {
        GroupFacts {
            key: GroupKey { namespace: "db".into(), name: "pg".into() },
            n,
            statefulset: Some("pg".into()),
            statefulset_paused: false,
            members: placed
                .iter()
                .map(|(name, node)| MemberFacts {
                    name: (*name).to_owned(),
                    uid: String::new(),
                    node: node.map(str::to_owned),
                    ready: node.is_some(),
                    terminating: false,
                    primary: false,
                    mode: RecoveryMode::Report,
                    after: std::time::Duration::from_secs(60),
                    stuck_after: std::time::Duration::from_secs(900),
                    unschedulable: false,
                    paused: false,
                    claims: vec![],
                })
                .collect(),
        }
    }

    fn nodes() -> Nodes {
        [
            node("a1", "a", true),
            node("a2", "a", true),
            node("b1", "b", true),
            node("c1", "c", true),
            node("c2", "c", false),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn one_member_per_zone_is_zone_safe() {
        let a = audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("b1")), ("m2", Some("c1"))])], &nodes());
        let a = &a[0];
        assert!(a.zone_safe && a.node_safe, "{a:#?}");
        assert_eq!(a.state, GroupState::ZoneSafe);
        assert_eq!((a.ready, a.majority), (3, 2));
        assert_eq!(a.recovery, vec!["report".to_owned()]);
    }

    #[test]
    fn two_members_in_one_zone_are_not_zone_safe_but_node_safe() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("a2")), ("m2", Some("b1"))])], &nodes())[0];
        assert!(!a.zone_safe && a.node_safe, "{a:#?}");
        assert_eq!(a.state, GroupState::NotZoneSafe);
        assert_eq!(a.worst_zone, Some(("a".to_owned(), 1)));
        assert!(a.summary().contains("losing zone a leaves 1"), "{}", a.summary());
    }

    #[test]
    fn two_members_on_one_node_are_not_node_safe() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("a1")), ("m2", Some("b1"))])], &nodes())[0];
        assert!(!a.node_safe && !a.zone_safe, "{a:#?}");
        assert_eq!(a.state, GroupState::NotNodeSafe);
        assert_eq!(a.worst_node, Some(("a1".to_owned(), 1)));
    }

    #[test]
    fn members_down_or_pending_count_against_the_majority() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("c2")), ("m2", None)])], &nodes())[0];
        assert_eq!(a.on_unhealthy_nodes, vec!["m1".to_owned()]);
        assert_eq!(a.pending, vec![Pending { member: "m2".into(), reason: PendingReason::Scheduling }]);
        assert_eq!(a.ready, 1);
        assert!(!a.zone_safe && !a.node_safe);
        assert_eq!(a.state, GroupState::NoMajority);
        let gone = &audit(&[group(3, &[("m0", Some("deleted")), ("m1", Some("a1")), ("m2", Some("b1"))])], &nodes())[0];
        assert_eq!(gone.on_unhealthy_nodes, vec!["m0".to_owned()]);
        assert!(!gone.zone_safe, "2 Ready of 3: losing either zone leaves 1");
    }

    #[test]
    fn five_members_two_two_one() {
        let placed =
            [("m0", Some("a1")), ("m1", Some("a2")), ("m2", Some("b1")), ("m3", Some("c1")), ("m4", Some("b1"))];
        let a = &audit(&[group(5, &placed)], &nodes())[0];
        assert!(a.zone_safe, "{a:#?}");
        assert!(a.node_safe, "b1 holds two: 3 left of 5 is still a majority");
        assert_eq!(a.state, GroupState::ZoneSafe);
    }

    #[test]
    fn zone_safe_with_a_member_down_is_degraded() {
        let placed = [("m0", Some("a1")), ("m1", Some("b1")), ("m2", Some("c1")), ("m3", Some("d1")), ("m4", None)];
        let mut four_zones = nodes();
        four_zones.extend([node("d1", "d", true)]);
        let a = &audit(&[group(5, &placed)], &four_zones)[0];
        assert!(a.zone_safe, "{a:#?}");
        assert_eq!(a.state, GroupState::Degraded);
    }

    #[test]
    fn pending_members_say_why() {
        let mut g = group(3, &[("m0", Some("a1")), ("m1", None), ("m2", None), ("m3", None)]);
        let pin = |m: &mut MemberFacts, node: &str| {
            m.claims.push(ClaimFacts {
                name: format!("data-{}", m.name),
                uid: String::new(),
                pinned_node: Some(node.to_owned()),
                terminating: false,
            });
        };
        pin(&mut g.members[1], "c2"); // NotReady
        g.members[2].unschedulable = true;
        pin(&mut g.members[3], "a2"); // healthy: waiting for the scheduler
        let a = &audit(&[g], &nodes())[0];
        let reasons: Vec<_> = a.pending.iter().map(|p| (p.member.as_str(), p.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                ("m1", PendingReason::ClaimOnLostNode),
                ("m2", PendingReason::Unschedulable),
                ("m3", PendingReason::Scheduling)
            ]
        );
        assert!(a.summary().contains("m1 (claim_on_lost_node)"), "{}", a.summary());
    }
}
