//! Prometheus metrics of the recovery controller (prometheus-client).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `stowage_recovery_actions_total` | counter | `mode` (`report`, `rebuild`) |
//! | `stowage_recovery_held_total` | counter | `gate` (a member newly held by that gate) |
//! | `stowage_recovery_held_members` | gauge | `gate` (members held now) |
//! | `stowage_recovery_in_flight` | gauge | |
//! | `stowage_recovery_leader` | gauge (0/1) | |
//! | `stowage_recovery_errors_total` | counter | `op` (`delete_claim`, `delete_pod`, `event`, `lease`) |
//! | `stowage_recovery_duration_seconds` | histogram (node lost → rebuilt member Ready) | |
//! | `stowage_recovery_stuck_rebuilds` | gauge (rebuilds past `stuckAfter` now) | |
//! | `stowage_recovery_stuck_total` | counter | |
//! | `stowage_recovery_round_seconds` | histogram (one leader round) | |
//! | `stowage_audit_groups` | gauge | `state` ([`GroupState`]) |
//! | `stowage_audit_members_on_unhealthy_nodes` | gauge | |
//! | `stowage_audit_members_pending` | gauge | `reason` ([`PendingReason`]) |
//! | `stowage_audit_transitions_total` | counter | `from`, `to` ([`GroupState`]) |
//!
//! Every label value is a `&'static str` from a closed set: no group, namespace or pod name is
//! ever a label (the per-group view is `/debug/recovery` and `stowage audit`).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    audit::{GroupState, PendingReason},
    decide::Gate,
};

/// Node lost → member Ready again: from 15 s to about 4 h.
const DURATION_BUCKETS: [f64; 10] = [15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 14400.0];

/// `mode` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// `report` or `rebuild`.
    pub mode: &'static str,
}

/// `gate` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    /// One of [`Gate::LABELS`].
    pub gate: &'static str,
}

/// `op` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The failed operation.
    pub op: &'static str,
}

/// `state` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// One of [`GroupState::as_str`].
    pub state: &'static str,
}

/// `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// One of [`PendingReason::as_str`].
    pub reason: &'static str,
}

/// `from`/`to` labels of a state transition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The previous [`GroupState`].
    pub from: &'static str,
    /// The new one.
    pub to: &'static str,
}

/// The controller's metrics.
#[derive(Debug, Clone)]
pub struct RecoveryMetrics {
    /// Actions taken (`rebuild`) or described (`report`).
    pub actions: Family<ModeLabels, Counter>,
    /// Members newly held, by gate.
    pub held_total: Family<GateLabels, Counter>,
    /// Members held now, by gate.
    pub held: Family<GateLabels, Gauge>,
    /// Rebuilds in flight (acted on, member not Ready again yet).
    pub in_flight: Gauge,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Failed API calls.
    pub errors: Family<OpLabels, Counter>,
    /// Seconds from node loss to the rebuilt member Ready.
    pub duration: Histogram,
    /// Rebuilds past `stuckAfter` now.
    pub stuck: Gauge,
    /// Rebuilds that became stuck.
    pub stuck_total: Counter,
    /// Seconds one leader round takes.
    pub round: Histogram,
    /// Groups per audit state.
    pub audit_groups: Family<StateLabels, Gauge>,
    /// Members bound to NotReady, out-of-service or deleted nodes.
    pub audit_unhealthy: Gauge,
    /// Unbound members, by reason.
    pub audit_pending: Family<ReasonLabels, Gauge>,
    /// Group state changes.
    pub audit_transitions: Family<TransitionLabels, Counter>,
}

impl Default for RecoveryMetrics {
    fn default() -> Self {
        Self {
            actions: Family::default(),
            held_total: Family::default(),
            held: Family::default(),
            in_flight: Gauge::default(),
            leader: Gauge::default(),
            errors: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            stuck: Gauge::default(),
            stuck_total: Counter::default(),
            round: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            audit_groups: Family::default(),
            audit_unhealthy: Gauge::default(),
            audit_pending: Family::default(),
            audit_transitions: Family::default(),
        }
    }
}

impl RecoveryMetrics {
    /// Registers every metric on `registry` (names carry the `stowage_` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("stowage_recovery_actions", "Recovery actions taken or reported", m.actions.clone());
        registry.register("stowage_recovery_held", "Members newly held by a recovery gate", m.held_total.clone());
        registry.register("stowage_recovery_held_members", "Members held by a recovery gate now", m.held.clone());
        registry.register("stowage_recovery_in_flight", "Rebuilds in flight", m.in_flight.clone());
        registry.register("stowage_recovery_leader", "1 while this replica leads recovery", m.leader.clone());
        registry.register("stowage_recovery_errors", "Failed recovery API calls", m.errors.clone());
        registry.register(
            "stowage_recovery_duration_seconds",
            "Seconds from a node's loss to its rebuilt member Ready",
            m.duration.clone(),
        );
        registry.register("stowage_recovery_stuck_rebuilds", "Rebuilds not Ready within stuckAfter", m.stuck.clone());
        registry.register("stowage_recovery_stuck", "Rebuilds that became stuck", m.stuck_total.clone());
        registry.register("stowage_recovery_round_seconds", "Seconds one recovery round takes", m.round.clone());
        registry.register("stowage_audit_groups", "Groups per zone-failure audit state", m.audit_groups.clone());
        registry.register(
            "stowage_audit_members_on_unhealthy_nodes",
            "Members bound to NotReady, out-of-service or deleted nodes",
            m.audit_unhealthy.clone(),
        );
        registry.register("stowage_audit_members_pending", "Unbound members by reason", m.audit_pending.clone());
        registry.register("stowage_audit_transitions", "Group audit state changes", m.audit_transitions.clone());
        for state in GroupState::ALL {
            m.audit_groups.get_or_create(&StateLabels { state: state.as_str() }).set(0);
        }
        for reason in PendingReason::ALL {
            m.audit_pending.get_or_create(&ReasonLabels { reason: reason.as_str() }).set(0);
        }
        for gate in Gate::LABELS {
            m.held.get_or_create(&GateLabels { gate }).set(0);
        }
        for mode in ["report", "rebuild"] {
            let _ = m.actions.get_or_create(&ModeLabels { mode });
        }
        for op in ["delete_claim", "delete_pod", "event", "lease"] {
            let _ = m.errors.get_or_create(&OpLabels { op });
        }
        m
    }

    /// Counts a failed operation.
    pub fn error(&self, op: &'static str) {
        self.errors.get_or_create(&OpLabels { op }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_gate() {
        let mut registry = Registry::default();
        let m = RecoveryMetrics::register(&mut registry);
        m.actions.get_or_create(&ModeLabels { mode: "rebuild" }).inc();
        m.held_total.get_or_create(&GateLabels { gate: "primary" }).inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("stowage_recovery_actions_total{mode=\"rebuild\"} 1"), "{text}");
        assert!(text.contains("stowage_recovery_held_total{gate=\"primary\"} 1"), "{text}");
        assert!(text.contains("stowage_recovery_held_members{gate=\"cluster_cap\"} 0"), "{text}");
        assert!(text.contains("stowage_recovery_in_flight 0"), "{text}");
        assert!(text.contains("stowage_audit_groups{state=\"not_zone_safe\"} 0"), "{text}");
        assert!(text.contains("stowage_audit_members_pending{reason=\"claim_on_lost_node\"} 0"), "{text}");
        assert!(text.contains("stowage_recovery_duration_seconds_count 0"), "{text}");
        assert!(text.contains("stowage_recovery_stuck_total 0"), "{text}");
        assert!(text.contains("stowage_recovery_errors_total{op=\"delete_pod\"} 0"), "{text}");
    }
}
