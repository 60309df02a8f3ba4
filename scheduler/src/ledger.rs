//! In-flight placements and the race-closing "in cycle" records.
//!
//! ## Placements
//! `bind` records a [`Placement`] **before** it calls the API, so the next member's filter,
//! which may arrive before the pod watcher has seen the binding, already counts it. An entry
//! retires when the pod watcher shows the pod bound (same uid with a `nodeName`), when the pod is
//! deleted, when its bind fails, or after the ledger TTL (`ledgerTTL` in the config).
//!
//! ## Closing the filter/bind race
//! kube-scheduler schedules one pod at a time but binds asynchronously: after member A's
//! filter and prioritize it assumes A, starts A's binding cycle in a goroutine (PreBind, then our
//! `bind`) and moves on to member B, whose `filter` can reach us **before A's `bind`**. Counting
//! only bound pods and ledger entries would then miss A.
//!
//! So every filter of a group member that leaves at least one feasible node records the pod as
//! **in cycle** ([`InCycle`]: the zones of its feasible nodes, when, until when). When a
//! sibling's filter arrives and another member of the group is in cycle:
//! - if that member's feasible nodes all lie in one zone, its zone is already known: it is
//!   counted there (tentatively) and nobody waits;
//! - otherwise the filter waits — asynchronously, on a [`tokio::sync::Notify`], never blocking
//!   a thread — until that member's `bind` arrives (it is then a placement with a node) or its
//!   in-cycle record expires, bounded by a deadline (default 1.5 s, well below the scheduler's
//!   `httpTimeout`). On timeout the filter proceeds without that member.
//!
//! A pod is in cycle until its bind, its deletion, or the record's expiry (default 3 s).

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::{sync::Notify, time::Instant};

/// An in-flight placement recorded by `bind`.
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
    /// Requested cpu, millicores.
    pub cpu_m: i64,
    /// Requested memory, bytes.
    pub mem: i64,
    /// Profile name of an opted-in pod.
    pub profile: Option<Arc<str>>,
    /// The pod is a primary.
    pub primary: bool,
    /// The pod lacks limits.
    pub no_limits: bool,
    /// The pod is BestEffort.
    pub best_effort: bool,
    /// PVs reserved for the pod's unbound claims.
    pub claimed_pvs: Vec<Arc<str>>,
    /// When the entry stops counting without confirmation.
    pub expires: Instant,
}

/// What `bind` needs to know about a pod when the pod watcher has not delivered it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSummary {
    /// Profile name.
    pub profile: Option<Arc<str>>,
    /// The pod is a primary.
    pub primary: bool,
    /// Requested cpu, millicores.
    pub cpu_m: i64,
    /// Requested memory, bytes.
    pub mem: i64,
    /// The pod lacks limits.
    pub no_limits: bool,
    /// The pod is BestEffort.
    pub best_effort: bool,
    /// PVC names the pod mounts.
    pub claims: Vec<Arc<str>>,
}

/// An opted-in pod that passed filter and has not been bound yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InCycle {
    /// Pod uid.
    pub uid: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Pod name.
    pub name: Arc<str>,
    /// Group name, if the pod is a group member.
    pub group: Option<Arc<str>>,
    /// Facts for `bind`.
    pub summary: PodSummary,
    /// Distinct zones of the feasible nodes.
    pub zones: Vec<Arc<str>>,
    /// When the record was made.
    pub since: Instant,
    /// When the record lapses.
    pub expires: Instant,
}

impl InCycle {
    /// The zone the member will land in, when its feasible nodes share one.
    #[must_use]
    pub fn known_zone(&self) -> Option<&Arc<str>> {
        match self.zones.as_slice() {
            [z] => Some(z),
            _ => None,
        }
    }
}

/// How a wait for siblings ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiblingWait {
    /// Time spent waiting.
    pub waited: Duration,
    /// The deadline passed with a sibling still in cycle.
    pub timed_out: bool,
}

#[derive(Debug, Default)]
struct Inner {
    placements: HashMap<Arc<str>, Placement>,
    in_cycle: HashMap<Arc<str>, InCycle>,
}

impl Inner {
    fn prune(&mut self, now: Instant) -> bool {
        let before = self.placements.len() + self.in_cycle.len();
        self.placements.retain(|_, p| p.expires > now);
        self.in_cycle.retain(|_, c| c.expires > now);
        before != self.placements.len() + self.in_cycle.len()
    }

    fn unresolved_sibling_expiry(&self, namespace: &str, group: &str, name: &str) -> Option<Instant> {
        self.in_cycle
            .values()
            .filter(|c| {
                c.namespace.as_ref() == namespace && c.group.as_deref() == Some(group) && c.name.as_ref() != name
            })
            .filter(|c| c.zones.len() > 1)
            .map(|c| c.expires)
            .min()
    }
}

/// The ledger of in-flight placements and in-cycle members.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Ledger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a placement (replacing any for the same uid) and ends the pod's cycle.
    pub fn record(&self, placement: Placement) {
        {
            let mut inner = self.inner.lock();
            inner.in_cycle.remove(&placement.uid);
            inner.placements.insert(placement.uid.clone(), placement);
        }
        self.notify.notify_waiters();
    }

    /// Removes a placement whose bind failed.
    pub fn remove(&self, uid: &str) -> Option<Placement> {
        let p = self.inner.lock().placements.remove(uid);
        self.notify.notify_waiters();
        p
    }

    /// The pod watcher saw the pod bound: its placement retires.
    pub fn confirm(&self, uid: &str) {
        let changed = {
            let mut inner = self.inner.lock();
            inner.placements.remove(uid).is_some() | inner.in_cycle.remove(uid).is_some()
        };
        if changed {
            self.notify.notify_waiters();
        }
    }

    /// The pod is gone: forget everything about it.
    pub fn forget(&self, uid: &str) {
        self.confirm(uid);
    }

    /// Records that a group member passed filter.
    pub fn enter_cycle(&self, record: InCycle) {
        self.inner.lock().in_cycle.insert(record.uid.clone(), record);
    }

    /// A pod's in-cycle record.
    #[must_use]
    pub fn in_cycle(&self, uid: &str) -> Option<InCycle> {
        self.inner.lock().in_cycle.get(uid).cloned()
    }

    /// Drops a member's in-cycle record.
    pub fn leave_cycle(&self, uid: &str) {
        if self.inner.lock().in_cycle.remove(uid).is_some() {
            self.notify.notify_waiters();
        }
    }

    /// Calls `f` with every live placement and every live in-cycle record (expired ones are
    /// dropped first). Keep `f` short: the ledger lock is held.
    pub fn with_live<R>(
        &self,
        now: Instant,
        f: impl FnOnce(&mut dyn Iterator<Item = &Placement>, &mut dyn Iterator<Item = &InCycle>) -> R,
    ) -> R {
        let mut inner = self.inner.lock();
        if inner.prune(now) {
            self.notify.notify_waiters();
        }
        let Inner { placements, in_cycle } = &*inner;
        f(&mut placements.values(), &mut in_cycle.values())
    }

    /// A placement by uid.
    #[must_use]
    pub fn placement(&self, uid: &str) -> Option<Placement> {
        self.inner.lock().placements.get(uid).cloned()
    }

    /// Live placements (after dropping expired ones).
    #[must_use]
    pub fn len(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.prune(Instant::now());
        inner.placements.len()
    }

    /// True when no placement is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live in-cycle records.
    #[must_use]
    pub fn in_cycle_len(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.prune(Instant::now());
        inner.in_cycle.len()
    }

    /// Waits until no other member of `namespace/group` (other than `name`) is in cycle with
    /// feasible nodes in more than one zone, or until `deadline`.
    pub async fn wait_for_siblings(&self, namespace: &str, group: &str, name: &str, deadline: Instant) -> SiblingWait {
        let start = Instant::now();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let next = {
                let mut inner = self.inner.lock();
                inner.prune(now);
                inner.unresolved_sibling_expiry(namespace, group, name)
            };
            let Some(expiry) = next else {
                return SiblingWait { waited: now - start, timed_out: false };
            };
            if now >= deadline {
                return SiblingWait { waited: now - start, timed_out: true };
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(expiry.min(deadline)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(uid: &str, ttl: Duration) -> Placement {
        Placement {
            uid: uid.into(),
            namespace: "db".into(),
            name: uid.into(),
            group: Some("pg".into()),
            node: "n1".into(),
            zone: Some("a".into()),
            cpu_m: 1000,
            mem: 1 << 30,
            profile: None,
            primary: false,
            no_limits: false,
            best_effort: false,
            claimed_pvs: vec![],
            expires: Instant::now() + ttl,
        }
    }

    fn in_cycle(name: &str, zones: &[&str], ttl: Duration) -> InCycle {
        InCycle {
            uid: format!("uid-{name}").into(),
            namespace: "db".into(),
            name: name.into(),
            group: Some("pg".into()),
            summary: PodSummary::default(),
            zones: zones.iter().map(|z| Arc::from(*z)).collect(),
            since: Instant::now(),
            expires: Instant::now() + ttl,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn placements_expire_after_the_ttl() {
        let l = Ledger::new();
        l.record(placement("a", Duration::from_secs(60)));
        assert_eq!(l.len(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(l.len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn confirmation_retires_and_failed_bind_removes() {
        let l = Ledger::new();
        l.record(placement("a", Duration::from_secs(60)));
        l.record(placement("b", Duration::from_secs(60)));
        l.confirm("a");
        assert!(l.placement("a").is_none());
        assert!(l.remove("b").is_some());
        assert!(l.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_without_siblings_or_with_single_zone_siblings() {
        let l = Ledger::new();
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(w, SiblingWait::default());
        l.enter_cycle(in_cycle("pg-0", &["a"], Duration::from_secs(3)));
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(w.waited, Duration::ZERO);
        // The pod's own (older) record never makes it wait.
        l.enter_cycle(in_cycle("pg-1", &["a", "b"], Duration::from_secs(3)));
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(w.waited, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_sibling_bind() {
        let l = Arc::new(Ledger::new());
        l.enter_cycle(in_cycle("pg-0", &["a", "b"], Duration::from_secs(3)));
        let l2 = l.clone();
        let binder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            l2.record(placement("uid-pg-0", Duration::from_secs(60)));
        });
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_millis(1500)).await;
        binder.await.unwrap();
        assert!(!w.timed_out);
        assert_eq!(w.waited, Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_is_bounded_by_the_deadline_and_by_expiry() {
        let l = Ledger::new();
        l.enter_cycle(in_cycle("pg-0", &["a", "b"], Duration::from_secs(3)));
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_millis(1500)).await;
        assert!(w.timed_out);
        assert_eq!(w.waited, Duration::from_millis(1500));
        let w = l.wait_for_siblings("db", "pg", "pg-1", Instant::now() + Duration::from_secs(10)).await;
        assert!(!w.timed_out, "the record expired at 3 s");
        assert_eq!(w.waited, Duration::from_millis(1500));
    }
}
