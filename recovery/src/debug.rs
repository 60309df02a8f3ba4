//! `GET /debug/recovery`: the leader's last round as JSON — every group's audit state, the gate
//! holding each held member, and the rebuilds in flight. Bounded: at most [`MAX_GROUPS`] groups
//! (worst state first), [`MAX_HELD`] held members per group and [`MAX_FLIGHTS`] rebuilds, each
//! list followed by "… and N more" when cut; every string comes from the cluster's own names
//! (bounded by the apiserver) or from stowage.

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::ArcSwap;
use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;

use crate::audit::{GroupAudit, GroupState};

/// Groups listed at most.
pub const MAX_GROUPS: usize = 200;
/// Held members listed per group at most.
pub const MAX_HELD: usize = 20;
/// Rebuilds in flight listed at most.
pub const MAX_FLIGHTS: usize = 100;

/// A member held by a gate this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The member's pod name.
    pub member: String,
    /// The gate's label.
    pub gate: &'static str,
    /// What the gate says.
    pub reason: String,
}

/// A rebuild in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flight {
    /// `namespace/group`.
    pub group: String,
    /// The member being rebuilt.
    pub member: String,
    /// Its dead node.
    pub node: String,
    /// When the rebuild started.
    pub since: String,
    /// When the node was lost, as far as known.
    pub lost_at: Option<String>,
    /// Past `stuckAfter`: holds its group, not the cluster-wide cap.
    pub stuck: bool,
}

/// One group in the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// `namespace/name`.
    pub group: String,
    /// The audit's state.
    pub state: GroupState,
    /// Why (the audit's summary).
    pub summary: String,
    /// Members held by a gate.
    pub held: Vec<Held>,
    /// "… and N more" when `held` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_held: Option<String>,
}

/// The last round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    /// This replica leads (a follower decides nothing and shows nothing else).
    pub leader: bool,
    /// When the round ran (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Groups per state (every group, not only those listed).
    pub states: BTreeMap<&'static str, usize>,
    /// Groups, worst state first, then by name.
    pub groups: Vec<GroupView>,
    /// "… and N more" when `groups` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_groups: Option<String>,
    /// Rebuilds in flight (acted on, member not Ready again yet).
    pub in_flight: Vec<Flight>,
    /// "… and N more" when `in_flight` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_in_flight: Option<String>,
}

fn more(total: usize, shown: usize) -> Option<String> {
    (total > shown).then(|| format!("… and {} more", total - shown))
}

impl Round {
    /// The view of a leader's round: `held` maps `namespace/group` to its held members.
    #[must_use]
    pub fn new(
        at: String,
        duration_ms: u64,
        audits: &[GroupAudit],
        mut held: BTreeMap<String, Vec<Held>>,
        mut flights: Vec<Flight>,
    ) -> Self {
        let mut states: BTreeMap<&'static str, usize> = GroupState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for a in audits {
            *states.entry(a.state.as_str()).or_default() += 1;
        }
        let mut order: Vec<&GroupAudit> = audits.iter().collect();
        order.sort_by(|a, b| (a.state, &a.group).cmp(&(b.state, &b.group)));
        let groups = order
            .iter()
            .take(MAX_GROUPS)
            .map(|a| {
                let mut members = held.remove(&a.group).unwrap_or_default();
                let total = members.len();
                members.truncate(MAX_HELD);
                GroupView {
                    group: a.group.clone(),
                    state: a.state,
                    summary: a.summary(),
                    more_held: more(total, members.len()),
                    held: members,
                }
            })
            .collect::<Vec<_>>();
        let total_flights = flights.len();
        flights.truncate(MAX_FLIGHTS);
        Self {
            leader: true,
            at: Some(at),
            duration_ms,
            states,
            more_groups: more(audits.len(), groups.len()),
            groups,
            more_in_flight: more(total_flights, flights.len()),
            in_flight: flights,
        }
    }
}

/// The view the controller publishes and the admin route reads.
pub type DebugView = Arc<ArcSwap<Round>>;

/// The admin route `GET /debug/recovery`, for the router that serves `/metrics`.
pub fn routes(view: DebugView) -> Router<()> {
    Router::new().route("/debug/recovery", get(show)).with_state(view)
}

async fn show(State(view): State<DebugView>) -> Json<Round> {
    Json(Round::clone(&view.load()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Pending;
    use tower::ServiceExt as _;

    fn audit(group: &str, state: GroupState) -> GroupAudit {
        GroupAudit {
            group: group.to_owned(),
            n: 3,
            majority: 2,
            ready: 2,
            ready_per_zone: BTreeMap::new(),
            zone_safe: state == GroupState::ZoneSafe,
            worst_zone: None,
            node_safe: true,
            worst_node: None,
            on_unhealthy_nodes: vec![],
            pending: vec![Pending { member: "m".into(), reason: crate::audit::PendingReason::Scheduling }],
            recovery: vec![],
            state,
        }
    }

    #[test]
    fn worst_first_and_bounded() {
        let mut audits: Vec<GroupAudit> =
            (0..MAX_GROUPS + 5).map(|i| audit(&format!("ns/g{i:04}"), GroupState::ZoneSafe)).collect();
        audits.push(audit("ns/zz", GroupState::NoMajority));
        let held = BTreeMap::from([(
            "ns/zz".to_owned(),
            (0..MAX_HELD + 3)
                .map(|i| Held { member: format!("m{i}"), gate: "no_majority", reason: "r".into() })
                .collect(),
        )]);
        let flights = (0..MAX_FLIGHTS + 1)
            .map(|i| Flight {
                group: format!("ns/f{i}"),
                member: "m".into(),
                node: "n".into(),
                since: String::new(),
                lost_at: None,
                stuck: false,
            })
            .collect();
        let round = Round::new("t".into(), 7, &audits, held, flights);
        assert_eq!(round.groups.len(), MAX_GROUPS);
        assert_eq!(round.groups[0].group, "ns/zz", "the worst state comes first");
        assert_eq!(round.groups[0].held.len(), MAX_HELD);
        assert_eq!(round.groups[0].more_held.as_deref(), Some("… and 3 more"));
        assert_eq!(round.more_groups.as_deref(), Some("… and 6 more"));
        assert_eq!(round.in_flight.len(), MAX_FLIGHTS);
        assert_eq!(round.more_in_flight.as_deref(), Some("… and 1 more"));
        assert_eq!(round.states["zone_safe"], MAX_GROUPS + 5);
        assert_eq!(round.states["no_majority"], 1);
        assert_eq!(round.states["degraded"], 0);
    }

    #[tokio::test]
    async fn serves_the_last_round_as_json() {
        let view: DebugView = Arc::default();
        view.store(Arc::new(Round::new(
            "t".into(),
            1,
            &[audit("ns/a", GroupState::NotZoneSafe)],
            BTreeMap::new(),
            vec![],
        )));
        let response = routes(view)
            .oneshot(http::Request::get("/debug/recovery").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["leader"], true);
        assert_eq!(json["groups"][0]["state"], "not_zone_safe");
        assert_eq!(json["states"]["not_zone_safe"], 1);
        assert!(json.get("moreGroups").is_none());
    }
}
