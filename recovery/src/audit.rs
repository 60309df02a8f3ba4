//! The zone-failure readiness audit: per group, whether losing any one zone or any one node
//! keeps a Ready majority, which members sit on NotReady nodes and which are Pending. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    decide::majority,
    facts::{GroupFacts, Nodes},
};

/// Zone name used for nodes without the zone label.
pub const NO_ZONE: &str = "<none>";

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
    /// Members not bound to any node.
    pub pending: Vec<String>,
    /// Recovery mode of the members (`off`, `report`, `rebuild`; several when they differ).
    pub recovery: Vec<String>,
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
            pending.push(m.name.clone());
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
    GroupAudit {
        group: g.key.to_string(),
        n: g.n,
        majority: needed,
        ready,
        zone_safe: survives(&worst_zone),
        node_safe: survives(&worst_node),
        ready_per_zone,
        worst_zone,
        worst_node,
        on_unhealthy_nodes,
        pending,
        recovery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{MemberFacts, NodeFacts, Readiness};
    use stowage_policy::{GroupKey, config::RecoveryMode};

    fn node(name: &str, zone: &str, ready: bool) -> (String, NodeFacts) {
        let facts = NodeFacts {
            name: name.to_owned(),
            zone: Some(zone.to_owned()),
            readiness: if ready { Readiness::Ready } else { Readiness::Unknown },
            ready_since: None,
            lease_renewed: None,
            out_of_service: false,
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
        assert_eq!((a.ready, a.majority), (3, 2));
        assert_eq!(a.recovery, vec!["report".to_owned()]);
    }

    #[test]
    fn two_members_in_one_zone_are_not_zone_safe_but_node_safe() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("a2")), ("m2", Some("b1"))])], &nodes())[0];
        assert!(!a.zone_safe && a.node_safe, "{a:#?}");
        assert_eq!(a.worst_zone, Some(("a".to_owned(), 1)));
    }

    #[test]
    fn two_members_on_one_node_are_not_node_safe() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("a1")), ("m2", Some("b1"))])], &nodes())[0];
        assert!(!a.node_safe && !a.zone_safe, "{a:#?}");
        assert_eq!(a.worst_node, Some(("a1".to_owned(), 1)));
    }

    #[test]
    fn members_down_or_pending_count_against_the_majority() {
        let a = &audit(&[group(3, &[("m0", Some("a1")), ("m1", Some("c2")), ("m2", None)])], &nodes())[0];
        assert_eq!(a.on_unhealthy_nodes, vec!["m1".to_owned()]);
        assert_eq!(a.pending, vec!["m2".to_owned()]);
        assert_eq!(a.ready, 1);
        assert!(!a.zone_safe && !a.node_safe);
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
    }
}
