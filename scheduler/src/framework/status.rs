//! Outcome vocabulary: a [`Status`] with a [`Code`] and constant `node(s) ...` reasons, and the
//! one place codes map onto the wire ([`Code::failed_map`]).

use std::{borrow::Cow, fmt};

use serde::Serialize;

/// Outcome class of a plugin call (`framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Code {
    /// The node passes.
    Success,
    /// An internal fault.
    Error,
    /// The node fails; preemption might help.
    Unschedulable,
    /// The node fails; preemption would not change anything.
    UnschedulableAndUnresolvable,
}

/// Which wire map a refused node goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedMap {
    /// `FailedNodes`.
    FailedNodes,
    /// `FailedAndUnresolvableNodes`.
    FailedAndUnresolvableNodes,
    /// The reply's `Error`.
    Error,
}

impl Code {
    /// The single mapping from codes to the extender wire format; `None` for success.
    #[must_use]
    pub const fn failed_map(self) -> Option<FailedMap> {
        match self {
            Code::Success => None,
            Code::Unschedulable => Some(FailedMap::FailedNodes),
            Code::UnschedulableAndUnresolvable => Some(FailedMap::FailedAndUnresolvableNodes),
            Code::Error => Some(FailedMap::Error),
        }
    }

    /// Name as in the Go framework.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
        }
    }
}

/// A constant refusal reason: a bounded metric label and the `node(s) ...` message.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    /// Short snake_case code, used as the `reason` metric label.
    pub code: &'static str,
    /// The message the scheduler shows (`0/6 nodes are available: 3 node(s) ...`).
    pub message: &'static str,
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.message)
    }
}

/// The node is not in the cache (it may have just joined).
pub static NODE_NOT_CACHED: Reason =
    Reason { code: "node_not_cached", message: "node(s) were not in the stowage cache yet" };

/// A feasible node other than the one filter reserved for a pod under a cross-pod rule.
/// kube-scheduler counts nodes per identical reason (`0/6 nodes are available: 5 node(s) ...`)
/// and joins reasons with `, `, so the text is constant and has no comma.
pub static NOT_CHOSEN: Reason =
    Reason { code: "not_chosen", message: "node(s) were not the node stowage reserved for the pod" };

const MAX_REASONS: usize = 4;

/// Result of a filter (`framework.Status`): a code and every reason that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: [Option<&'static Reason>; MAX_REASONS],
}

impl Default for Status {
    fn default() -> Self {
        Self::success()
    }
}

impl Status {
    /// The node passes.
    #[must_use]
    pub const fn success() -> Self {
        Self { code: Code::Success, reasons: [None; MAX_REASONS] }
    }

    /// A refusal with one reason.
    #[must_use]
    pub const fn new(code: Code, reason: &'static Reason) -> Self {
        Self { code, reasons: [Some(reason), None, None, None] }
    }

    /// `Unschedulable` with one reason.
    #[must_use]
    pub const fn unschedulable(reason: &'static Reason) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    #[must_use]
    pub const fn unresolvable(reason: &'static Reason) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// Adds a reason; the code becomes the more severe of the two (unresolvable wins). A reason
    /// that raises the code goes first, so the first reason is always one of the most severe
    /// (the one [`Status::wire_message`] sends).
    pub fn add(&mut self, code: Code, reason: &'static Reason) {
        let raises = self.code != Code::Success && code > self.code;
        if self.code == Code::Success || code > self.code {
            self.code = code;
        }
        let slot = self.reasons.iter().position(|r| r.is_none_or(|r| std::ptr::eq(r, reason)));
        if raises {
            // Shift the others right (dropping the last one when full) and put it first.
            let end = slot.unwrap_or(MAX_REASONS - 1);
            self.reasons[..=end].rotate_right(1);
            self.reasons[0] = Some(reason);
        } else if let Some(slot) = slot {
            self.reasons[slot] = Some(reason);
        }
    }

    /// How severe the outcome is.
    #[must_use]
    pub const fn code(&self) -> Code {
        self.code
    }

    /// True on success.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Every reason, most severe first.
    pub fn reasons(&self) -> impl Iterator<Item = &'static Reason> + '_ {
        self.reasons.iter().flatten().copied()
    }

    /// Every reason, joined with `, ` when several apply (decisions and explain show this).
    #[must_use]
    pub fn message(&self) -> Cow<'static, str> {
        let mut it = self.reasons();
        match (it.next(), it.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(r), None) => Cow::Borrowed(r.message),
            (Some(_), Some(_)) => Cow::Owned(self.reasons().map(|r| r.message).collect::<Vec<_>>().join(", ")),
        }
    }
}

impl Status {
    /// The reason kube-scheduler gets for the node: the first, most severe one only.
    ///
    /// kube-scheduler's FailedScheduling message (the pod's `PodScheduled` condition, `kubectl
    /// describe pod`) counts nodes per identical reason string: `0/6 nodes are available: 2
    /// Insufficient cpu, 4 node(s) would give a zone more than ...`. Several reasons joined into
    /// one string would split that count by combination, and their `, ` would read as the
    /// scheduler's own list separator. Every reason stays in the decisions.
    #[must_use]
    pub fn wire_message(&self) -> &'static str {
        self.reasons().next().map_or("", |r| r.message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: Reason = Reason { code: "a", message: "node(s) a" };
    static B: Reason = Reason { code: "b", message: "node(s) b" };
    static C: Reason = Reason { code: "c", message: "node(s) c" };

    #[test]
    fn status_keeps_every_reason_and_the_most_severe_code() {
        let mut s = Status::unschedulable(&A);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        s.add(Code::Unschedulable, &A);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), "node(s) b, node(s) a", "the reason that made it unresolvable first");
        assert!(matches!(Status::unschedulable(&A).message(), Cow::Borrowed("node(s) a")));
    }

    #[test]
    fn the_wire_gets_one_reason_of_the_most_severe_code() {
        // Found order: an Unschedulable reason, then an unresolvable one, then another.
        let mut s = Status::unschedulable(&A);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        s.add(Code::Unschedulable, &C);
        assert_eq!(s.wire_message(), "node(s) b");
        assert_eq!(s.message(), "node(s) b, node(s) a, node(s) c");
        // Already present, then raising: moved to the front, not repeated.
        let mut s = Status::unschedulable(&A);
        s.add(Code::Unschedulable, &B);
        s.add(Code::UnschedulableAndUnresolvable, &B);
        assert_eq!(s.message(), "node(s) b, node(s) a");
        // Full: the new most severe reason goes first and the last one is dropped.
        static D: Reason = Reason { code: "d", message: "node(s) d" };
        static E: Reason = Reason { code: "e", message: "node(s) e" };
        let mut s = Status::unschedulable(&A);
        for r in [&B, &C, &D] {
            s.add(Code::Unschedulable, r);
        }
        s.add(Code::UnschedulableAndUnresolvable, &E);
        assert_eq!(s.message(), "node(s) e, node(s) a, node(s) b, node(s) c");
        assert_eq!(Status::success().wire_message(), "");
    }

    #[test]
    fn codes_map_to_the_wire_once() {
        assert_eq!(Code::Success.failed_map(), None);
        assert_eq!(Code::Unschedulable.failed_map(), Some(FailedMap::FailedNodes));
        assert_eq!(Code::UnschedulableAndUnresolvable.failed_map(), Some(FailedMap::FailedAndUnresolvableNodes));
        assert_eq!(Code::Error.failed_map(), Some(FailedMap::Error));
    }
}
