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
//!
//! Every label value is a `&'static str` from a closed set.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::decide::Gate;

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

/// The controller's metrics.
#[derive(Debug, Clone, Default)]
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
        assert!(text.contains("stowage_recovery_errors_total{op=\"delete_pod\"} 0"), "{text}");
    }
}
