//! In-flight placements: **reservations** made by `filter` and **placements** made by `bind`.
//!
//! kube-scheduler schedules one pod at a time but binds asynchronously: after pod A's
//! scheduling cycle it assumes A and runs A's binding cycle in a goroutine (PreBind, then our
//! `bind`) while pod B's cycle starts. VolumeBinding's PreBind waits for the PV controller
//! (seconds with WaitForFirstConsumer volumes), so B's `filter` routinely arrives before A's
//! `bind`. Every entry of this ledger counts, for every later filter and prioritize of **any**
//! pod, exactly like a pod bound to its node (requests, limits, profile, primary, group, zone,
//! the local PVs its unbound claims will take).
//!
//! ## Reservations
//! For a pod under a cross-pod rule (quorum guard, required spread, sibling volumes, density
//! cap, separate primaries) `filter` decides the node itself and returns only that node; it
//! records a reservation ([`Placement`] with `reserved: true`) at once, under one lock, so the
//! next filter already counts it (see `docs/architecture.md`, "Placement under concurrency").
//! A reservation never outlives its pod's cycle:
//! - a new filter of the same pod uid (a scheduler retry) replaces it ([`Ledger::reserve`]);
//!   the pod's own entry never counts against it;
//! - `bind` turns it into a placement ([`Ledger::record`]);
//! - it is dropped when the pod watcher shows the pod bound (to any node) or deleted, when the
//!   pod's filter finds no node, and when its bind fails;
//! - it lapses after the ledger TTL (`ledgerTTL`, default 60 s), unless the pod's
//!   `status.nominatedNodeName` still names the reserved node ([`Ledger::nominated`]).
//!
//! ## Placements
//! `bind` records a placement **before** it calls the API, so the next filter, which may arrive
//! before the pod watcher has seen the binding, already counts it. It retires when the pod
//! watcher shows the pod bound, when the pod is deleted, when the bind fails, or after the TTL.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use prometheus_client::{encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family};
use tokio::time::Instant;

use crate::cache::resources::PodResources;

/// An in-flight pod: reserved by `filter` or placed by `bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Pod uid.
    pub uid: Arc<str>,
    /// Pod namespace.
    pub namespace: Arc<str>,
    /// Pod name.
    pub name: Arc<str>,
    /// Group name (same namespace), if the pod is a group member.
    pub group: Option<Arc<str>>,
    /// Node.
    pub node: Arc<str>,
    /// The node's zone, if known.
    pub zone: Option<Arc<str>>,
    /// Requests, limits and QoS facts.
    pub resources: PodResources,
    /// Profile name of an opted-in pod.
    pub profile: Option<Arc<str>>,
    /// The pod is a primary.
    pub primary: bool,
    /// PVC names the pod mounts.
    pub claims: Vec<Arc<str>>,
    /// PVs reserved for the pod's unbound claims.
    pub claimed_pvs: Vec<Arc<str>>,
    /// A reservation made by `filter` (true) or a placement made by `bind` (false).
    pub reserved: bool,
    /// When the entry stops counting without confirmation.
    pub expires: Instant,
    /// The pod's `status.nominatedNodeName` names this node (kube-scheduler writes it before
    /// PreBind): a reservation does not lapse at `expires` while this holds, since a slow
    /// PreBind (volume binding) can outlast the TTL.
    pub nominated: bool,
}

/// What `bind` needs to know about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSummary {
    /// Profile name.
    pub profile: Option<Arc<str>>,
    /// The pod is a primary.
    pub primary: bool,
    /// Requests, limits and QoS facts.
    pub resources: PodResources,
    /// PVC names the pod mounts.
    pub claims: Vec<Arc<str>>,
}

/// What happened to a reservation (the `event` label of
/// `stowage_ledger_reservations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationEvent {
    /// A filter reserved a node for a pod that had no reservation.
    Created,
    /// A new filter of the same pod (a scheduler retry) replaced its reservation.
    Replaced,
    /// `bind` arrived and turned the reservation into a placement.
    Confirmed,
    /// Dropped before any bind: the pod was seen bound (by someone else) or deleted, or its
    /// new filter found no node.
    Released,
    /// Lapsed after the TTL without a bind.
    Expired,
}

impl ReservationEvent {
    /// Label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replaced => "replaced",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }
}

/// `event` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReservationLabels {
    /// created, replaced, confirmed, released or expired.
    pub event: &'static str,
}

/// The ledger of reservations and placements.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<HashMap<Arc<str>, Placement>>,
    events: Family<ReservationLabels, Counter>,
}

impl Ledger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The reservation counters (register them once, on the extender's registry).
    #[must_use]
    pub fn reservation_events(&self) -> &Family<ReservationLabels, Counter> {
        &self.events
    }

    /// How often `event` happened.
    #[must_use]
    pub fn reservation_count(&self, event: ReservationEvent) -> u64 {
        self.events.get_or_create(&ReservationLabels { event: event.as_str() }).get()
    }

    fn count(&self, event: ReservationEvent) {
        self.events.get_or_create(&ReservationLabels { event: event.as_str() }).inc();
    }

    fn prune(&self, entries: &mut HashMap<Arc<str>, Placement>, now: Instant) {
        let mut expired = 0;
        entries.retain(|_, p| {
            let live = p.expires > now || (p.reserved && p.nominated);
            expired += u64::from(!live && p.reserved);
            live
        });
        if expired > 0 {
            self.events.get_or_create(&ReservationLabels { event: ReservationEvent::Expired.as_str() }).inc_by(expired);
        }
    }

    /// Records a reservation made by `filter`, replacing the pod's earlier entry.
    pub fn reserve(&self, mut reservation: Placement) {
        reservation.reserved = true;
        let mut entries = self.entries.lock();
        let nominated = entries.get(&reservation.uid).is_some_and(|o| o.nominated && o.node == reservation.node);
        reservation.nominated = nominated;
        let old = entries.insert(reservation.uid.clone(), reservation);
        drop(entries);
        self.count(if old.is_some() { ReservationEvent::Replaced } else { ReservationEvent::Created });
    }

    /// The pod watcher saw the pod's `status.nominatedNodeName` (`None` when unset): the pod's
    /// reservation stays live past its TTL while this names the reserved node.
    pub fn nominated(&self, uid: &str, node: Option<&str>) {
        if let Some(p) = self.entries.lock().get_mut(uid).filter(|p| p.reserved) {
            p.nominated = node == Some(&*p.node);
        }
    }

    /// The pod's new filter found no node: its reservation (if any) goes.
    pub fn release(&self, uid: &str) {
        let mut entries = self.entries.lock();
        if entries.get(uid).is_some_and(|p| p.reserved) {
            entries.remove(uid);
            drop(entries);
            self.count(ReservationEvent::Released);
        }
    }

    /// Records a placement made by `bind` (replacing the pod's reservation, which it confirms).
    pub fn record(&self, mut placement: Placement) {
        placement.reserved = false;
        let old = self.entries.lock().insert(placement.uid.clone(), placement);
        if old.is_some_and(|o| o.reserved) {
            self.count(ReservationEvent::Confirmed);
        }
    }

    /// Removes a placement whose bind failed.
    pub fn remove(&self, uid: &str) -> Option<Placement> {
        self.entries.lock().remove(uid)
    }

    /// The pod watcher saw the pod bound (to any node): its entry retires, the cache counts it.
    pub fn confirm(&self, uid: &str) {
        let old = self.entries.lock().remove(uid);
        if old.is_some_and(|o| o.reserved) {
            self.count(ReservationEvent::Released);
        }
    }

    /// The pod is gone: forget everything about it.
    pub fn forget(&self, uid: &str) {
        self.confirm(uid);
    }

    /// Calls `f` with every live entry (expired ones are dropped first). Keep `f` short: the
    /// ledger lock is held.
    pub fn with_live<R>(&self, now: Instant, f: impl FnOnce(&mut dyn Iterator<Item = &Placement>) -> R) -> R {
        let mut entries = self.entries.lock();
        self.prune(&mut entries, now);
        f(&mut entries.values())
    }

    /// A live entry (reservation or placement) by uid.
    #[must_use]
    pub fn placement(&self, uid: &str) -> Option<Placement> {
        let mut entries = self.entries.lock();
        self.prune(&mut entries, Instant::now());
        entries.get(uid).cloned()
    }

    /// A live reservation by uid (`None` once bind turned it into a placement).
    #[must_use]
    pub fn reservation(&self, uid: &str) -> Option<Placement> {
        self.placement(uid).filter(|p| p.reserved)
    }

    /// Live entries, reservations included (after dropping expired ones).
    #[must_use]
    pub fn len(&self) -> usize {
        let mut entries = self.entries.lock();
        self.prune(&mut entries, Instant::now());
        entries.len()
    }

    /// True when no entry is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live reservations.
    #[must_use]
    pub fn reservations(&self) -> usize {
        let mut entries = self.entries.lock();
        self.prune(&mut entries, Instant::now());
        entries.values().filter(|p| p.reserved).count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn placement(uid: &str, node: &str, ttl: Duration) -> Placement {
        Placement {
            uid: uid.into(),
            namespace: "db".into(),
            name: uid.into(),
            group: Some("pg".into()),
            node: node.into(),
            zone: Some("a".into()),
            resources: PodResources { cpu_m: 1000, mem: 1 << 30, ..PodResources::default() },
            profile: None,
            primary: false,
            claims: vec![],
            claimed_pvs: vec![],
            reserved: false,
            expires: Instant::now() + ttl,
            nominated: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn placements_expire_after_the_ttl() {
        let l = Ledger::new();
        l.record(placement("a", "n1", Duration::from_secs(60)));
        assert_eq!(l.len(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(l.len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.len(), 0);
        assert_eq!(l.reservation_count(ReservationEvent::Expired), 0, "a placement is not a reservation");
    }

    #[tokio::test(start_paused = true)]
    async fn confirmation_retires_and_failed_bind_removes() {
        let l = Ledger::new();
        l.record(placement("a", "n1", Duration::from_secs(60)));
        l.record(placement("b", "n1", Duration::from_secs(60)));
        l.confirm("a");
        assert!(l.placement("a").is_none());
        assert!(l.remove("b").is_some());
        assert!(l.is_empty());
    }

    /// Every way a reservation ends, and what each counts.
    #[tokio::test(start_paused = true)]
    async fn reservation_lifecycle() {
        type Step = fn(&Ledger);
        let cases: [(&str, Step, Option<&str>, ReservationEvent); 7] = [
            (
                "a retry replaces it",
                |l| l.reserve(placement("p", "n2", Duration::from_secs(60))),
                Some("n2"),
                ReservationEvent::Replaced,
            ),
            (
                "bind confirms it",
                |l| l.record(placement("p", "n1", Duration::from_secs(60))),
                Some("n1"),
                ReservationEvent::Confirmed,
            ),
            ("no node on retry", |l| l.release("p"), None, ReservationEvent::Released),
            ("seen bound (any node)", |l| l.confirm("p"), None, ReservationEvent::Released),
            ("deleted", |l| l.forget("p"), None, ReservationEvent::Released),
            (
                "bind failed",
                |l| {
                    l.record(placement("p", "n1", Duration::from_secs(60)));
                    l.remove("p");
                },
                None,
                ReservationEvent::Confirmed,
            ),
            ("expired", |_| {}, None, ReservationEvent::Expired),
        ];
        for (name, step, node_after, event) in cases {
            let l = Ledger::new();
            l.reserve(placement("p", "n1", Duration::from_secs(10)));
            assert_eq!(l.reservation_count(ReservationEvent::Created), 1, "{name}");
            assert!(l.reservation("p").is_some(), "{name}");
            step(&l);
            if event == ReservationEvent::Expired {
                tokio::time::advance(Duration::from_secs(11)).await;
            }
            assert_eq!(l.placement("p").map(|p| p.node.to_string()).as_deref(), node_after, "{name}");
            assert_eq!(l.reservation_count(event), 1, "{name}");
            if event == ReservationEvent::Confirmed && node_after.is_some() {
                assert!(l.reservation("p").is_none() && !l.placement("p").unwrap().reserved, "{name}: now a placement");
            }
        }
    }

    /// A reservation outlives its TTL exactly while the pod is nominated to the reserved node.
    #[tokio::test(start_paused = true)]
    async fn a_nominated_reservation_outlives_the_ttl() {
        let cases: [(&str, Option<&str>, bool); 3] = [
            ("nominated there", Some("n1"), true),
            ("nominated elsewhere", Some("n2"), false),
            ("not nominated", None, false),
        ];
        for (name, nominated, live) in cases {
            let l = Ledger::new();
            l.reserve(placement("p", "n1", Duration::from_secs(10)));
            l.nominated("p", nominated);
            tokio::time::advance(Duration::from_secs(11)).await;
            assert_eq!(l.reservation("p").is_some(), live, "{name}");
            if live {
                // A retry of the same decision keeps the hold; the nomination going away ends it.
                l.reserve(placement("p", "n1", Duration::from_secs(10)));
                tokio::time::advance(Duration::from_secs(11)).await;
                assert!(l.reservation("p").is_some(), "{name}: retry");
                l.nominated("p", None);
                assert!(l.reservation("p").is_none(), "{name}: nomination cleared");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn release_leaves_placements_alone() {
        let l = Ledger::new();
        l.record(placement("p", "n1", Duration::from_secs(60)));
        l.release("p");
        assert!(l.placement("p").is_some(), "only a reservation is released by a filter without nodes");
        assert_eq!(l.reservation_count(ReservationEvent::Released), 0);
    }
}
