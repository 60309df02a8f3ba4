//! Leader election through a `coordination.k8s.io/v1` Lease, written by hand (kube-rs has
//! none): acquire, renew and release with optimistic concurrency on `resourceVersion`.
//!
//! As client-go does, expiry is judged on **this process's clock**: a Lease held by another
//! identity is taken over only when its record (holder, renew time, resourceVersion) has not
//! changed for `leaseDurationSeconds` as observed here, so skew between the clocks of the
//! replicas does not matter. Every write is a `replace` carrying the `resourceVersion` that was
//! read; a 409 Conflict means someone else wrote first and this round is lost.
//!
//! The elector also carries a small string map in the Lease's annotations, so a new leader
//! learns what the previous one had in flight.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, api::PostParams};
use tokio::time::Instant;

/// Prefix of the annotations carrying the leader's state.
pub const STATE_PREFIX: &str = "recovery.stowage.io/";

/// The outcome of one [`LeaseElector::try_acquire_or_renew`] round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This process holds the Lease.
    Leader,
    /// Another identity holds it (named when known).
    Follower(Option<String>),
}

/// A leader elector on one Lease.
pub struct LeaseElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record seen (resourceVersion) and when it was first seen here.
    observed: Option<(String, Instant)>,
    leader: bool,
}

impl std::fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

fn conflict_or_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl LeaseElector {
    /// An elector on Lease `name` of `api`'s namespace, as `identity` (unique per replica, e.g.
    /// the pod name), with a lease duration of `duration` (renew well within it).
    #[must_use]
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self { api, name: name.to_owned(), identity: identity.to_owned(), duration, observed: None, leader: false }
    }

    /// This replica's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether the last round made this process the leader.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The leader state stored in the Lease (annotations under [`STATE_PREFIX`], prefix removed).
    ///
    /// # Errors
    /// API errors other than a missing Lease.
    pub async fn state(&self) -> kube::Result<BTreeMap<String, String>> {
        let lease = self.api.get_opt(&self.name).await?;
        Ok(lease
            .and_then(|l| l.metadata.annotations)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(STATE_PREFIX).map(|k| (k.to_owned(), v)))
            .collect())
    }

    /// One election round: creates the Lease if there is none, renews it when held, takes it
    /// over when its holder let it expire; `state` replaces the stored leader state on every
    /// write. A lost race (409) yields [`Role::Follower`].
    ///
    /// # Errors
    /// API errors other than conflicts; the caller must then stop acting as leader.
    pub async fn try_acquire_or_renew(&mut self, state: &BTreeMap<String, String>) -> kube::Result<Role> {
        let result = self.round(state).await;
        self.leader = matches!(result, Ok(Role::Leader));
        result
    }

    async fn round(&mut self, state: &BTreeMap<String, String>) -> kube::Result<Role> {
        let duration_secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let mut lease = lease;
            set_state(&mut lease.metadata, state);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Role::Leader),
                Err(e) if conflict_or_exists(&e) => Ok(Role::Follower(None)),
                Err(e) => Err(e),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let held_by_me = holder.as_deref() == Some(self.identity.as_str());
        if !held_by_me && holder.is_some() {
            // Someone else's: expired only once its record has stood still for its duration,
            // as seen on our own clock.
            let their_duration =
                Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_secs)).unwrap_or(1));
            let since = match &self.observed {
                Some((v, at)) if *v == version => *at,
                _ => {
                    let at = Instant::now();
                    self.observed = Some((version.clone(), at));
                    at
                }
            };
            if since.elapsed() < their_duration {
                return Ok(Role::Follower(holder));
            }
        }
        if !held_by_me {
            spec.acquire_time = Some(now_micro());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now_micro());
        spec.lease_duration_seconds = Some(duration_secs);
        set_state(&mut lease.metadata, state);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observed = written.metadata.resource_version.map(|v| (v, Instant::now()));
                Ok(Role::Leader)
            }
            Err(e) if conflict_or_exists(&e) => Ok(Role::Follower(None)),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (holder cleared, duration 1 s) when this process holds it, so another
    /// replica takes over at once instead of after the duration. Errors are ignored: the Lease
    /// then simply expires.
    pub async fn release(&mut self) {
        if !self.leader {
            return;
        }
        self.leader = false;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
    }
}

fn set_state(meta: &mut ObjectMeta, state: &BTreeMap<String, String>) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.retain(|k, _| !k.starts_with(STATE_PREFIX));
    for (k, v) in state {
        annotations.insert(format!("{STATE_PREFIX}{k}"), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use parking_lot::Mutex;

    /// The fake apiserver's one Lease, and a switch that makes the next write conflict (as if
    /// another replica had written between our read and our write).
    #[derive(Default)]
    struct Fake {
        lease: Option<serde_json::Value>,
        conflict_next_write: bool,
    }

    /// A tiny in-memory apiserver for one Lease: GET, POST and PUT with resourceVersion checks.
    fn fake_apiserver() -> (kube::Client, Arc<Mutex<Fake>>) {
        let store: Arc<Mutex<Fake>> = Arc::new(Mutex::new(Fake::default()));
        let shared = Arc::clone(&store);
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let store = Arc::clone(&shared);
            async move {
                let method = req.method().clone();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let mut fake = store.lock();
                let conflict = method != "GET" && std::mem::take(&mut fake.conflict_next_write);
                let stored = &mut fake.lease;
                let (status, body) = match method.as_str() {
                    _ if conflict => (409, status_body(409, "Conflict")),
                    "GET" => match stored.as_ref() {
                        Some(l) => (200, l.clone()),
                        None => (404, status_body(404, "NotFound")),
                    },
                    "POST" if stored.is_some() => (409, status_body(409, "AlreadyExists")),
                    "POST" | "PUT" => {
                        let mut lease: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        let current = stored.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                        if method == "PUT" && current.as_ref() != Some(&lease["metadata"]["resourceVersion"]) {
                            (409, status_body(409, "Conflict"))
                        } else {
                            let next = current.and_then(|v| v.as_str()?.parse::<u64>().ok()).unwrap_or(0) + 1;
                            lease["metadata"]["resourceVersion"] = serde_json::json!(next.to_string());
                            *stored = Some(lease.clone());
                            (if method == "POST" { 201 } else { 200 }, lease)
                        }
                    }
                    _ => (405, status_body(405, "MethodNotAllowed")),
                };
                let response = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (kube::Client::new(service, "stowage-system"), store)
    }

    fn status_body(code: u16, reason: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": reason, "reason": reason, "code": code})
    }

    fn elector(client: &kube::Client, who: &str, secs: u64) -> LeaseElector {
        LeaseElector::new(
            Api::namespaced(client.clone(), "stowage-system"),
            "stowage-recovery",
            who,
            Duration::from_secs(secs),
        )
    }

    #[tokio::test]
    async fn one_leader_renews_others_follow_and_take_over_after_release() {
        let (client, store) = fake_apiserver();
        let mut a = elector(&client, "a", 30);
        let mut b = elector(&client, "b", 30);
        let state = BTreeMap::from([("db.pg".to_owned(), "pg-0".to_owned())]);
        assert_eq!(a.try_acquire_or_renew(&state).await.unwrap(), Role::Leader);
        assert_eq!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(Some("a".into())));
        assert_eq!(a.try_acquire_or_renew(&state).await.unwrap(), Role::Leader, "renewal");
        assert_eq!(b.state().await.unwrap(), state, "the state travels in the Lease");
        let transitions = || store.lock().lease.as_ref().unwrap()["spec"]["leaseTransitions"].clone();
        assert_eq!(transitions(), 0);

        a.release().await;
        assert!(!a.is_leader());
        // Released: no holder, so b takes it at once.
        assert_eq!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Leader);
        assert_eq!(transitions(), 1);
        assert_eq!(a.try_acquire_or_renew(&state).await.unwrap(), Role::Follower(Some("b".into())));
        assert!(b.state().await.unwrap().is_empty(), "the new leader's state replaced the old");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_taken_over_only_after_its_duration_on_our_clock() {
        let (client, _store) = fake_apiserver();
        let mut a = elector(&client, "a", 10);
        let mut b = elector(&client, "b", 10);
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Leader);
        // a stops renewing (crashed).
        assert!(matches!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(_)));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(matches!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(_)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Leader);
        // a comes back: it sees b's record and must follow.
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(Some("b".into())));
    }

    #[tokio::test]
    async fn a_conflicting_write_loses_the_round() {
        let (client, store) = fake_apiserver();
        let mut a = elector(&client, "a", 10);
        let mut b = elector(&client, "b", 10);
        store.lock().conflict_next_write = true;
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(None), "create raced");
        assert!(!a.is_leader());
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Leader);
        store.lock().conflict_next_write = true;
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(None), "renewal raced");
        assert!(!a.is_leader(), "a leader that lost a renewal stops acting");
        assert_eq!(a.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Leader);
        assert!(matches!(b.try_acquire_or_renew(&BTreeMap::new()).await.unwrap(), Role::Follower(Some(_))));
    }
}
