//! **ZoneSpread** with the **quorum guard**: spread a group's members over zones and nodes, and
//! never let one zone hold enough voting members to take the majority down with it.
//!
//! Counting (PreFilter): members of the pod's group per zone and per node, from
//! - pods in the cache that are bound (`nodeName`) or nominated (`nominatedNodeName`),
//! - the ledger's reservations (made by filter, awaiting bind) and placements (bound by us,
//!   not yet seen by the watcher), see [`crate::ledger`],
//!
//! **excluding the pod itself and any older incarnation with the same namespace/name** (a
//! StatefulSet member deleted and recreated has a new uid but must not count against itself),
//! and skipping terminating pods (terminal pods are not cached at all).
//!
//! `n` (voting members) is `stowage.io/members`, else the owning StatefulSet's `spec.replicas`,
//! else the members observed plus one.
//!
//! Filter:
//! - `quorum: zone` with `n ≥ 3`: a node in zone Z is feasible only if
//!   `count[Z] + 1 ≤ floor((n−1)/2)`; else `UnschedulableAndUnresolvable` ([`QUORUM`]):
//!   preemption cannot change member counts. Nodes without the zone label are refused too
//!   ([`QUORUM_NO_ZONE`]). With `n ≤ 2` the guard is off: floor((n−1)/2) = 0 would refuse every
//!   node, and no placement of one or two members survives losing a zone anyway.
//! - `zone-spread: required`: `maxSkew = 1` over the eligible zones — zones of cached nodes the
//!   pod could use (schedulable, matching its `nodeSelector` and required node affinity) plus
//!   zones holding members; `count[Z] + 1 − min > 1` is `Unschedulable` ([`SPREAD_SKEW`]). With
//!   fewer eligible zones than `minDomains = min(n, profile.minDomains)` the minimum is 0 (as
//!   PodTopologySpread's `minDomains`).
//! - `node-spread: required`: a node already running a member is `Unschedulable`
//!   ([`NODE_SPREAD`]).
//! - `separatePrimaries` (profile) and the pod is a primary: a node already running a primary
//!   of any opted-in group is `Unschedulable` ([`PRIMARIES`]).
//!
//! Score (active when the pod has a group and zone or node spread is not `off`): crowding
//! `r = 2·count[zone] + 3·count[node]` (each term only when its spread is on; a node without a
//! zone counts as `n` members), normalised over the scored nodes to
//! `100·(r_max − r)/(r_max − r_min)` (100 everywhere when all are equal).

use std::sync::Arc;

use stowage_policy::{GroupKey, Spread, group};

use crate::{
    cache::{Model, NodeId, ZoneId},
    framework::{Code, CycleState, FilterOutcome, LedgerFacts, NodeView, Plugin, PodContext, Reason, Status},
};

/// The quorum guard refuses the zone.
pub static QUORUM: Reason = Reason {
    code: "quorum_guard",
    message: "node(s) would give a zone more than floor((n-1)/2) members of the group (quorum guard)",
};
/// The quorum guard needs a zone label.
pub static QUORUM_NO_ZONE: Reason =
    Reason { code: "quorum_no_zone_label", message: "node(s) had no zone label (quorum guard)" };
/// Required zone spread would exceed maxSkew 1.
pub static SPREAD_SKEW: Reason = Reason {
    code: "zone_spread_skew",
    message: "node(s) didn't match the group's zone spread (maxSkew 1 over eligible zones)",
};
/// Required zone spread needs a zone label.
pub static SPREAD_NO_ZONE: Reason =
    Reason { code: "zone_spread_no_zone_label", message: "node(s) had no zone label (zone spread)" };
/// Required node spread.
pub static NODE_SPREAD: Reason =
    Reason { code: "node_spread", message: "node(s) already ran a member of the group (node spread)" };
/// The profile separates primaries and the node already runs one.
pub static PRIMARIES: Reason =
    Reason { code: "separate_primaries", message: "node(s) already ran a primary (separate primaries)" };

/// Per-cycle state.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// The pod has a group.
    grouped: bool,
    /// Voting members.
    n: u32,
    /// The quorum guard applies (`quorum: zone`, n ≥ 3).
    quorum: bool,
    /// floor((n−1)/2).
    max_per_zone: u32,
    /// Zone spread mode.
    zone_spread: Option<Spread>,
    /// Node spread mode.
    node_spread: Option<Spread>,
    /// Members per zone id.
    zone_counts: Vec<u32>,
    /// Members on nodes without a (known) zone.
    no_zone: u32,
    /// Members per node.
    node_counts: Vec<(NodeId, u32)>,
    /// Zones eligible for required spread.
    eligible: Vec<bool>,
    /// Global minimum for the skew rule.
    global_min: u32,
    /// `minDomains` in force.
    min_domains: u32,
    /// The pod is a primary that must not share a node with another primary.
    separate_primaries: bool,
}

impl State {
    /// Most members of the group one zone may hold with this pod added: the quorum guard's
    /// floor((n−1)/2) and, under a required zone spread, the global minimum + 1 (maxSkew 1),
    /// whichever is lower; `None` when neither rule applies.
    #[must_use]
    pub fn zone_limit(&self) -> Option<u32> {
        if !self.grouped {
            return None;
        }
        let quorum = self.quorum.then_some(self.max_per_zone);
        let spread = (self.zone_spread == Some(Spread::Required)).then_some(self.global_min + 1);
        match (quorum, spread) {
            (Some(q), Some(s)) => Some(q.min(s)),
            (q, s) => q.or(s),
        }
    }

    /// Members in a zone.
    #[must_use]
    pub fn zone_count(&self, zone: Option<ZoneId>) -> u32 {
        zone.and_then(|z| self.zone_counts.get(usize::from(z)).copied()).unwrap_or(0)
    }

    /// Members on a node.
    #[must_use]
    pub fn node_count(&self, id: Option<NodeId>) -> u32 {
        id.and_then(|id| self.node_counts.iter().find(|(n, _)| *n == id).map(|(_, c)| *c)).unwrap_or(0)
    }
}

/// True when zone `z` has a schedulable node that the pod's `nodeSelector` and required node
/// affinity admit.
fn usable_zone(model: &Model, z: ZoneId, pod: &PodContext<'_>) -> bool {
    model.zone_nodes(z).iter().any(|id| model.slot(*id).obj.as_ref().is_some_and(|o| !o.unschedulable && pod.admits(o)))
}

fn bump(counts: &mut Vec<(NodeId, u32)>, id: NodeId) {
    match counts.iter_mut().find(|(n, _)| *n == id) {
        Some((_, c)) => *c += 1,
        None => counts.push((id, 1)),
    }
}

/// Calls `place(node)` once per member of `group`: bound or nominated pods that are not
/// terminating, then the ledger's in-flight placements of members not seen that way. `skip`
/// leaves out pods by namespace and name (the pod being placed and any older incarnation).
fn for_each_member(
    model: &Model,
    facts: &LedgerFacts,
    group: &GroupKey,
    skip: impl Fn(&str, &str) -> bool,
    mut place: impl FnMut(&str),
) {
    let mut counted: Vec<&Arc<str>> = Vec::new();
    for m in model.group_members(&group.namespace, &group.name) {
        if m.terminating || skip(&m.namespace, &m.name) {
            continue;
        }
        if let Some(node) = m.node.as_ref().or(m.nominated.as_ref()) {
            place(node);
            counted.push(&m.uid);
        }
    }
    for (uid, name, node) in &facts.group_placements {
        if skip(&group.namespace, name) || counted.contains(&uid) {
            continue;
        }
        place(node);
        counted.push(uid);
    }
}

/// Members of `group` per zone id, bound, nominated or in flight (members on nodes without a
/// known zone are not counted): what a bind reports after placing one.
#[must_use]
pub fn members_per_zone(model: &Model, facts: &LedgerFacts, group: &GroupKey) -> Vec<u32> {
    let mut counts = vec![0; model.zones().len()];
    for_each_member(
        model,
        facts,
        group,
        |_, _| false,
        |node| {
            if let Some(z) = model.node_id(node).and_then(|id| model.slot(id).zone) {
                counts[usize::from(z)] += 1;
            }
        },
    );
    counts
}

/// The ZoneSpread plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct ZoneSpread;

impl Plugin for ZoneSpread {
    type State = State;

    const NAME: &'static str = "zone-spread";

    /// Counts the group's members per zone and node.
    fn pre_filter(&self, model: &Model, pod: &PodContext<'_>, facts: &LedgerFacts) -> State {
        let policy = &pod.policy;
        let mut st = State {
            n: pod.members,
            separate_primaries: pod.primary && policy.profile.separate_primaries,
            zone_counts: vec![0; model.zones().len()],
            ..State::default()
        };
        let Some(group) = pod.group() else { return st };
        st.grouped = true;
        st.quorum = group::quorum_guarded(policy.quorum, pod.members);
        st.max_per_zone = group::quorum_limit(pod.members);
        st.zone_spread = Some(policy.zone_spread);
        st.node_spread = Some(policy.node_spread);

        let same_pod = |ns: &str, name: &str| ns == pod.namespace && name == pod.name;
        for_each_member(model, facts, group, same_pod, |node| match model.node_id(node) {
            Some(id) => {
                bump(&mut st.node_counts, id);
                match model.slot(id).zone {
                    Some(z) => st.zone_counts[usize::from(z)] += 1,
                    None => st.no_zone += 1,
                }
            }
            None => st.no_zone += 1,
        });

        if policy.zone_spread == Spread::Required {
            st.min_domains = group::min_domains(Some(pod.members), policy.profile.min_domains);
            st.eligible = (0..model.zones().len())
                .map(|i| {
                    let Ok(z) = ZoneId::try_from(i) else { return false };
                    st.zone_counts[i] > 0 || usable_zone(model, z, pod)
                })
                .collect();
            let eligible = st.eligible.iter().filter(|e| **e).count();
            st.global_min = if eligible < st.min_domains as usize {
                0
            } else {
                st.eligible.iter().zip(&st.zone_counts).filter(|(e, _)| **e).map(|(_, c)| *c).min().unwrap_or(0)
            };
        }
        st
    }

    fn filter(&self, _cycle: &CycleState<'_>, st: &State, _pod: &PodContext<'_>, node: &NodeView<'_>) -> Status {
        let mut status = Status::success();
        if st.separate_primaries && node.agg.primaries + node.add.map_or(0, |a| a.primaries) > 0 {
            status.add(Code::Unschedulable, &PRIMARIES);
        }
        if !st.grouped {
            return status;
        }
        let zone_label = node.zone_name().is_some();
        let count = st.zone_count(node.zone);
        if st.quorum {
            if !zone_label {
                status.add(Code::UnschedulableAndUnresolvable, &QUORUM_NO_ZONE);
            } else if count + 1 > st.max_per_zone {
                status.add(Code::UnschedulableAndUnresolvable, &QUORUM);
            }
        }
        if st.zone_spread == Some(Spread::Required) {
            if !zone_label {
                status.add(Code::UnschedulableAndUnresolvable, &SPREAD_NO_ZONE);
            } else if (count + 1).saturating_sub(st.global_min) > 1 {
                status.add(Code::Unschedulable, &SPREAD_SKEW);
            }
        }
        if st.node_spread == Some(Spread::Required) && st.node_count(node.id) > 0 {
            status.add(Code::Unschedulable, &NODE_SPREAD);
        }
        status
    }

    fn scores(&self, st: &State, _pod: &PodContext<'_>) -> bool {
        st.grouped && (st.zone_spread != Some(Spread::Off) || st.node_spread != Some(Spread::Off))
    }

    /// Raw crowding (lower is better); [`Plugin::normalize_score`] turns it into 0..100.
    fn score(&self, _cycle: &CycleState<'_>, st: &State, _pod: &PodContext<'_>, node: &NodeView<'_>) -> i64 {
        let mut r = 0i64;
        if st.zone_spread != Some(Spread::Off) {
            let z = if node.zone_name().is_some() { st.zone_count(node.zone) } else { st.n };
            r += 2 * i64::from(z);
        }
        if st.node_spread != Some(Spread::Off) {
            r += 3 * i64::from(st.node_count(node.id));
        }
        r
    }

    fn normalize_score(&self, _st: &State, _pod: &PodContext<'_>, scores: &mut [i64]) {
        let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied()) else { return };
        for s in scores.iter_mut() {
            *s = if max == min { 100 } else { 100 * (max - *s) / (max - min) };
        }
    }
}

/// The group's members per zone as this cycle counted them (`zone=count` pairs for decisions,
/// events and explain): zones holding members and zones with a node the pod may use. Zones of
/// nodes the pod cannot use (other pools, other tenants) are left out, so `c=0` always means
/// "the pod could go to zone c". `None` when the pod has no group.
#[must_use]
pub fn zone_summary(cycle: &CycleState<'_>, pod: &PodContext<'_>) -> Option<Vec<(String, u32)>> {
    let st = cycle.read::<ZoneSpread>().filter(|st| st.grouped)?;
    let model = cycle.model();
    Some(
        (0..model.zones().len())
            .filter_map(|i| {
                let z = ZoneId::try_from(i).ok()?;
                let c = st.zone_counts.get(i).copied().unwrap_or(0);
                // Required spread already worked the usable zones out (members included).
                let usable = || st.eligible.get(i).copied().unwrap_or_else(|| usable_zone(model, z, pod));
                (c > 0 || usable()).then(|| (model.zone_name(z).to_owned(), c))
            })
            .collect(),
    )
}

/// Most members of the group one zone may hold with this pod added (see [`State::zone_limit`]).
#[must_use]
pub fn zone_limit(cycle: &CycleState<'_>) -> Option<u32> {
    cycle.read::<ZoneSpread>().and_then(State::zone_limit)
}

/// Why zone rules left the pod without a feasible node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The quorum guard refused some node.
    pub quorum: bool,
    /// floor((n−1)/2), the quorum guard's limit per zone.
    pub max_per_zone: u32,
    /// Every distinct reason this plugin gave, in the order found.
    pub reasons: Vec<&'static str>,
}

/// The zone rules' part in a filter that refused every node: `None` when some node passed, no
/// node was sent, or this plugin refused none of them.
#[must_use]
pub fn refusal(cycle: &CycleState<'_>, outcomes: &[FilterOutcome]) -> Option<Refusal> {
    if outcomes.is_empty() || outcomes.iter().any(|o| o.status.is_success()) {
        return None;
    }
    let mut found = None::<Refusal>;
    for o in outcomes.iter().filter(|o| o.plugin == Some(ZoneSpread::NAME)) {
        let r = found.get_or_insert_with(|| Refusal {
            quorum: false,
            max_per_zone: cycle.read::<ZoneSpread>().map_or(0, |st| st.max_per_zone),
            reasons: Vec::new(),
        });
        for reason in o.status.reasons() {
            if std::ptr::eq(reason, &QUORUM) || std::ptr::eq(reason, &QUORUM_NO_ZONE) {
                r.quorum = true;
            }
            if !r.reasons.contains(&reason.message) {
                r.reasons.push(reason.message);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use stowage_policy::annotations::{MEMBERS, ROLE};

    use super::*;
    use crate::{
        plugins::table::{Got, pass, run},
        snapshot::Snapshot,
    };
    use stowage_fixtures::{PodBuilder, node};

    /// Zones a (a1, a2), b (b1), c (c1), and nz without a zone label.
    fn snapshot(members: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            nodes: vec![
                node("a1", Some("a"), "8", "32Gi"),
                node("a2", Some("a"), "8", "32Gi"),
                node("b1", Some("b"), "8", "32Gi"),
                node("c1", Some("c"), "8", "32Gi"),
                node("nz", None, "8", "32Gi"),
            ],
            pods: members.iter().map(|(name, on)| member(name, "3").node(on).build()).collect(),
            ..Snapshot::default()
        }
    }

    fn member(name: &str, n: &str) -> PodBuilder {
        PodBuilder::new("db", name).member("pg", "pg").annotate(MEMBERS, n)
    }

    /// (case, config, members placed as (name, node), the pod, node, expected refusal or `None`
    /// for success)
    type FilterCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, PodBuilder, &'a str, Option<Got>);
    /// (case, config, nodes, expected scores)
    type ScoreCase<'a> = (&'a str, &'a str, &'a [&'a str], &'a [Option<i64>]);

    fn refused(code: Code, reason: &Reason) -> Got {
        Got { code, reason: reason.message, score: None }
    }

    const UNRESOLVABLE: Code = Code::UnschedulableAndUnresolvable;
    const UNSCHEDULABLE: Code = Code::Unschedulable;

    #[test]
    fn filter_cases() {
        let quorum = "profiles:\n  pg: {quorum: zone, zoneSpread: off, nodeSpread: off}\n";
        let spread = "profiles:\n  pg: {quorum: off, zoneSpread: required, nodeSpread: off}\n";
        let nodes = "profiles:\n  pg: {quorum: off, zoneSpread: off, nodeSpread: required}\n";
        let primaries = "profiles:\n  pg: {quorum: off, zoneSpread: off, nodeSpread: off, separatePrimaries: true}\n";
        let cases: Vec<FilterCase<'_>> = vec![
            (
                "quorum n=3: a zone holding one member is full",
                quorum,
                vec![("pg-0", "a1")],
                member("pg-1", "3"),
                "a2",
                Some(refused(UNRESOLVABLE, &QUORUM)),
            ),
            ("quorum n=3: an empty zone is fine", quorum, vec![("pg-0", "a1")], member("pg-1", "3"), "b1", None),
            (
                "quorum: a node without a zone label is refused",
                quorum,
                vec![],
                member("pg-1", "3"),
                "nz",
                Some(refused(UNRESOLVABLE, &QUORUM_NO_ZONE)),
            ),
            ("quorum n=2: the guard is off", quorum, vec![("pg-0", "a1")], member("pg-1", "2"), "a2", None),
            ("quorum n=5: two per zone", quorum, vec![("pg-0", "a1")], member("pg-1", "5"), "a2", None),
            (
                "quorum n=5: not three",
                quorum,
                vec![("pg-0", "a1"), ("pg-2", "a2")],
                member("pg-1", "5"),
                "a1",
                Some(refused(UNRESOLVABLE, &QUORUM)),
            ),
            (
                "quorum: an older incarnation of the pod does not count",
                quorum,
                vec![("pg-1", "a1")],
                member("pg-1", "3"),
                "a2",
                None,
            ),
            (
                "required spread: skew 2 is refused",
                spread,
                vec![("pg-0", "a1")],
                member("pg-1", "3"),
                "a2",
                Some(refused(UNSCHEDULABLE, &SPREAD_SKEW)),
            ),
            (
                "required spread: the emptiest zone is fine",
                spread,
                vec![("pg-0", "a1")],
                member("pg-1", "3"),
                "c1",
                None,
            ),
            (
                "required spread: a node without a zone label is refused",
                spread,
                vec![],
                member("pg-1", "3"),
                "nz",
                Some(refused(UNRESOLVABLE, &SPREAD_NO_ZONE)),
            ),
            (
                "required node spread: the member's node",
                nodes,
                vec![("pg-0", "a1")],
                member("pg-1", "3"),
                "a1",
                Some(refused(UNSCHEDULABLE, &NODE_SPREAD)),
            ),
            (
                "required node spread: another node of its zone",
                nodes,
                vec![("pg-0", "a1")],
                member("pg-1", "3"),
                "a2",
                None,
            ),
            (
                "separate primaries: a node running a primary",
                primaries,
                vec![],
                member("pg-1", "3").annotate(ROLE, "primary"),
                "a1",
                Some(refused(UNSCHEDULABLE, &PRIMARIES)),
            ),
            (
                "separate primaries: a replica may share it",
                primaries,
                vec![],
                member("pg-1", "3").annotate(ROLE, "replica"),
                "a1",
                None,
            ),
            (
                "no group: no zone rule",
                quorum,
                vec![("pg-0", "a1")],
                PodBuilder::new("db", "solo").annotate("stowage.io/profile", "pg"),
                "a2",
                None,
            ),
        ];
        for (case, config, placed, pod, at, want) in cases {
            let mut snap = snapshot(&placed);
            if config == primaries {
                snap.pods.push(
                    PodBuilder::new("db", "other-0").member("pg", "other").annotate(ROLE, "primary").node("a1").build(),
                );
            }
            let got = run(ZoneSpread, config, &snap, &pod.build(), &[at]).remove(0);
            match want {
                Some(want) => assert_eq!(Got { score: None, ..got }, want, "{case}"),
                None => assert_eq!(got.code, Code::Success, "{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn score_cases() {
        let preferred = "profiles:\n  pg: {quorum: off, zoneSpread: preferred, nodeSpread: preferred}\n";
        let zones_only = "profiles:\n  pg: {quorum: off, zoneSpread: preferred, nodeSpread: off}\n";
        let off = "profiles:\n  pg: {quorum: off, zoneSpread: off, nodeSpread: off}\n";
        // crowding r = 2·zone + 3·node, normalised to 100·(max − r)/(max − min) over the nodes.
        let cases: [ScoreCase<'_>; 4] = [
            ("zone and node crowding", preferred, &["a1", "a2", "b1"], &[Some(0), Some(60), Some(100)]),
            ("zone crowding only", zones_only, &["a1", "a2", "b1"], &[Some(0), Some(0), Some(100)]),
            ("all equal", preferred, &["b1", "c1"], &[Some(100), Some(100)]),
            ("both spreads off: not scored", off, &["a1", "b1"], &[None, None]),
        ];
        for (case, config, nodes, want) in cases {
            let snap = snapshot(&[("pg-0", "a1")]);
            let got: Vec<Option<i64>> = run(ZoneSpread, config, &snap, &member("pg-1", "3").build(), nodes)
                .into_iter()
                .map(|g| g.score)
                .collect();
            assert_eq!(got, want, "{case}");
        }
        // A node without a zone counts as holding all n members.
        let got = run(ZoneSpread, zones_only, &snapshot(&[]), &member("pg-1", "3").build(), &["nz", "b1"]);
        assert_eq!(got, [pass(Some(0)), pass(Some(100))]);
    }

    #[test]
    fn zone_limit_is_the_tighter_of_quorum_and_required_spread() {
        // (grouped, quorum, max_per_zone, zone spread, global_min) -> limit
        let cases = [
            (false, true, 1, Some(Spread::Required), 0, None),
            (true, false, 0, Some(Spread::Preferred), 0, None),
            (true, true, 1, Some(Spread::Off), 0, Some(1)),
            (true, false, 0, Some(Spread::Required), 0, Some(1)),
            (true, false, 0, Some(Spread::Required), 2, Some(3)),
            (true, true, 2, Some(Spread::Required), 0, Some(1)),
            (true, true, 2, Some(Spread::Required), 3, Some(2)),
        ];
        for (grouped, quorum, max_per_zone, zone_spread, global_min, want) in cases {
            let st = State { grouped, quorum, max_per_zone, zone_spread, global_min, ..State::default() };
            assert_eq!(st.zone_limit(), want, "{st:?}");
        }
    }
}
