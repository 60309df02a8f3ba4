//! The recovery controller: watches nodes, node Leases, pods, claims, volumes and StatefulSets
//! (trimmed), and while it holds the `stowage-recovery` Lease, decides every member every
//! interval and carries out what [`crate::decide`] says.
//!
//! API writes, each from one place: [`Controller::execute`] deletes claims (`delete
//! persistentvolumeclaims`, with a uid precondition) and force-deletes pods (`delete pods`,
//! grace 0, uid precondition); [`EventWriter::write`] creates `events.k8s.io/v1` Events; the
//! [`LeaseElector`] gets, creates and updates its Lease.
//!
//! Each round also runs the zone-failure audit ([`crate::audit`]): its states become bounded
//! metrics, a group whose state changed gets an Event on its owner, and the round is published
//! for `/debug/recovery` ([`crate::debug`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        coordination::v1::Lease,
        core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod},
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams, Preconditions},
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use stowage_policy::Config;
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use crate::{
    audit::{GroupAudit, GroupState, PendingReason},
    debug::{self, DebugView, Flight, Held, Round},
    decide::{Action, Decision, Gate, ReportOnly},
    facts::{GroupFacts, Lists, MemberFacts, NODE_LEASE_NAMESPACE},
    lease::{LeaseElector, Role},
    metrics::{GateLabels, ModeLabels, ReasonLabels, RecoveryMetrics, StateLabels, TransitionLabels},
    round::{InFlight, RoundPlan, counted, round},
};

/// `reportingController` of every Event.
pub const REPORTING_CONTROLLER: &str = "stowage.io/recovery";
/// Event reason: a stranded member is held by a gate.
pub const HELD: &str = "StowageRecoveryHeld";
/// Event reason: report mode (or a group without a StatefulSet) says what a rebuild would do.
pub const REPORT: &str = "StowageRecoveryReport";
/// Event reason: a rebuild was started.
pub const REBUILD: &str = "StowageRecoveryRebuild";
/// Event reason: a rebuilt member is not Ready within `stuckAfter`.
pub const STUCK: &str = "StowageRecoveryStuck";
/// Event reason: a group's zone-failure audit state changed.
pub const AUDIT: &str = "StowageZoneAudit";
/// Groups whose last audit state is remembered (for transition Events) at most; groups beyond
/// it still count in the metrics, they only get no transition Events.
const MAX_TRACKED_GROUPS: usize = 100_000;
/// Lease state key of the rebuilds in flight.
const IN_FLIGHT_KEY: &str = "in-flight";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of the Lease (stowage's own).
    pub namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity in the Lease (unique; the pod name).
    pub identity: String,
    /// Lease duration; renewed every `interval`.
    pub lease_duration: Duration,
    /// How often the leader decides.
    pub interval: Duration,
    /// Cluster-wide cap on rebuilds in flight.
    pub max_in_flight: usize,
    /// The same Event (member, reason, gate) is repeated at most this often.
    pub event_repeat: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "stowage-system".to_owned(),
            lease_name: "stowage-recovery".to_owned(),
            identity: "stowage".to_owned(),
            lease_duration: Duration::from_secs(15),
            interval: Duration::from_secs(5),
            max_in_flight: 1,
            event_repeat: Duration::from_secs(600),
        }
    }
}

/// The trimmed caches the controller reads.
#[derive(Clone)]
struct Stores {
    nodes: reflector::Store<Node>,
    leases: reflector::Store<Lease>,
    pods: reflector::Store<Pod>,
    claims: reflector::Store<PersistentVolumeClaim>,
    volumes: reflector::Store<PersistentVolume>,
    statefulsets: reflector::Store<StatefulSet>,
}

/// Runs a watcher into a store until the stream ends.
async fn reflect<K>(api: Api<K>, writer: reflector::store::Writer<K>, trim: fn(&mut K))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff().modify(trim).reflect(writer);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            warn!("recovery watch: {e}");
        }
    }
}

fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
}

fn trim_node(n: &mut Node) {
    trim_meta(&mut n.metadata);
    if let Some(status) = n.status.as_mut() {
        status.images = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
        status.node_info = None;
        status.addresses = None;
        status.capacity = None;
        status.allocatable = None;
    }
}

fn trim_pod(p: &mut Pod) {
    trim_meta(&mut p.metadata);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers = Vec::new();
        spec.init_containers = None;
        spec.affinity = None;
        spec.tolerations = None;
        spec.topology_spread_constraints = None;
    }
    if let Some(status) = p.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

fn trim_claim(c: &mut PersistentVolumeClaim) {
    trim_meta(&mut c.metadata);
}

fn trim_volume(v: &mut PersistentVolume) {
    trim_meta(&mut v.metadata);
}

fn trim_statefulset(s: &mut StatefulSet) {
    trim_meta(&mut s.metadata);
    s.status = None;
    if let Some(spec) = s.spec.as_mut() {
        spec.template = Default::default();
        spec.volume_claim_templates = None;
    }
}

fn trim_lease(l: &mut Lease) {
    trim_meta(&mut l.metadata);
}

/// Writes `events.k8s.io/v1` Events, once per (object, reason, key) within the repeat window.
struct EventWriter {
    client: Client,
    identity: String,
    repeat: Duration,
    seen: HashMap<(String, &'static str, String), Instant>,
}

impl EventWriter {
    /// True when the Event was new (written or attempted).
    async fn write(
        &mut self,
        regarding: ObjectReference,
        type_: &str,
        reason: &'static str,
        key: &str,
        note: &str,
        metrics: &RecoveryMetrics,
    ) -> bool {
        let id = (object_id(&regarding), reason, key.to_owned());
        if self.seen.get(&id).is_some_and(|at| at.elapsed() < self.repeat) {
            return false;
        }
        self.seen.insert(id, Instant::now());
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let now = Timestamp::now();
        let mut note = note.to_owned();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("object"),
                    now.as_nanosecond().unsigned_abs()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some("Recover".to_owned()),
            event_time: Some(MicroTime(now)),
            note: Some(note),
            reason: Some(reason.to_owned()),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.identity.clone()),
            type_: Some(type_.to_owned()),
            ..Event::default()
        };
        if let Err(e) =
            Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await
        {
            metrics.error("event");
            warn!("recovery event: {e}");
        }
        true
    }

    /// Forgets what is no longer going on, so it is reported at once when it comes back.
    fn retain(&mut self, live: &HashSet<(String, String)>) {
        self.seen.retain(|(id, _, key), _| live.contains(&(id.clone(), key.clone())));
    }
}

/// Identity of an object incarnation for de-duplication: kind, namespace, name and uid.
fn object_id(r: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}",
        r.kind.as_deref().unwrap_or_default(),
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
        r.uid.as_deref().unwrap_or_default()
    )
}

fn pod_ref(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(uid.to_owned()),
        ..ObjectReference::default()
    }
}

fn statefulset_ref(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".to_owned()),
        kind: Some("StatefulSet".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

/// The object that speaks for a group: its StatefulSet, else its first member pod
/// (operator-managed groups).
fn owner_ref(group: &GroupFacts) -> Option<ObjectReference> {
    match &group.statefulset {
        Some(sts) => Some(statefulset_ref(&group.key.namespace, sts)),
        None => group.members.first().map(|m| pod_ref(&group.key.namespace, &m.name, &m.uid)),
    }
}

/// The state changes of this round, `(group, from, to)`, updating `last` (a group seen for the
/// first time is remembered, not reported; groups gone are forgotten; at most `cap` groups are
/// remembered).
fn transitions(
    last: &mut HashMap<String, GroupState>,
    audits: &[GroupAudit],
    cap: usize,
) -> Vec<(String, GroupState, GroupState)> {
    let live: HashSet<&str> = audits.iter().map(|a| a.group.as_str()).collect();
    last.retain(|g, _| live.contains(g.as_str()));
    let mut changed = Vec::new();
    for a in audits {
        let room = last.len() < cap;
        match last.get_mut(&a.group) {
            Some(prev) if *prev != a.state => {
                changed.push((a.group.clone(), *prev, a.state));
                *prev = a.state;
            }
            Some(_) => {}
            None if room => {
                last.insert(a.group.clone(), a.state);
            }
            None => {}
        }
    }
    changed
}

/// The recovery controller.
pub struct Controller {
    client: Client,
    config: Arc<ArcSwap<Config>>,
    options: Options,
    metrics: RecoveryMetrics,
    in_flight: Vec<InFlight>,
    /// Each group's last audit state, for transition Events.
    states: HashMap<String, GroupState>,
    view: DebugView,
}

impl Controller {
    /// A controller using `client` for every read and write.
    #[must_use]
    pub fn new(client: Client, config: Arc<ArcSwap<Config>>, options: Options, metrics: RecoveryMetrics) -> Self {
        Self {
            client,
            config,
            options,
            metrics,
            in_flight: Vec::new(),
            states: HashMap::new(),
            view: DebugView::default(),
        }
    }

    /// `GET /debug/recovery` for the admin router (the one that serves `/metrics`).
    pub fn admin_routes(&self) -> axum::Router<()> {
        debug::routes(Arc::clone(&self.view))
    }

    /// Runs until `stop` turns true; releases the Lease on the way out.
    ///
    /// # Errors
    /// Never on API errors (they are logged and retried); only when a watcher task ends.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let c = &self.client;
        let (nodes, w_nodes) = reflector::store();
        let (leases, w_leases) = reflector::store();
        let (pods, w_pods) = reflector::store();
        let (claims, w_claims) = reflector::store();
        let (volumes, w_volumes) = reflector::store();
        let (statefulsets, w_sts) = reflector::store();
        let stores = Stores { nodes, leases, pods, claims, volumes, statefulsets };
        let watchers = futures::future::join_all([
            Box::pin(reflect(Api::<Node>::all(c.clone()), w_nodes, trim_node))
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
            Box::pin(reflect(Api::<Lease>::namespaced(c.clone(), NODE_LEASE_NAMESPACE), w_leases, trim_lease)),
            Box::pin(reflect(Api::<Pod>::all(c.clone()), w_pods, trim_pod)),
            Box::pin(reflect(Api::<PersistentVolumeClaim>::all(c.clone()), w_claims, trim_claim)),
            Box::pin(reflect(Api::<PersistentVolume>::all(c.clone()), w_volumes, trim_volume)),
            Box::pin(reflect(Api::<StatefulSet>::all(c.clone()), w_sts, trim_statefulset)),
        ]);
        let mut watchers = std::pin::pin!(watchers);

        let mut elector = LeaseElector::new(
            Api::namespaced(c.clone(), &self.options.namespace),
            &self.options.lease_name,
            &self.options.identity,
            self.options.lease_duration,
        );
        let mut events = EventWriter {
            client: c.clone(),
            identity: self.options.identity.clone(),
            repeat: self.options.event_repeat,
            seen: HashMap::new(),
        };
        let all_ready = async {
            let s = &stores;
            let _ = futures::join!(
                s.nodes.wait_until_ready(),
                s.leases.wait_until_ready(),
                s.pods.wait_until_ready(),
                s.claims.wait_until_ready(),
                s.volumes.wait_until_ready(),
                s.statefulsets.wait_until_ready(),
            );
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = &mut watchers => anyhow::bail!("the recovery watchers ended"),
            () = all_ready => info!("recovery: caches synced"),
        }
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = &mut watchers => anyhow::bail!("the recovery watchers ended"),
                _ = ticker.tick() => {}
            }
            if !elector.is_leader() {
                // Take over what the previous leader had in flight before writing the Lease.
                match elector.state().await {
                    Ok(state) => self.in_flight = decode_in_flight(&state),
                    Err(e) => {
                        self.metrics.error("lease");
                        warn!("recovery lease: {e}");
                        continue;
                    }
                }
            }
            let was_leader = elector.is_leader();
            match elector.try_acquire_or_renew(&encode_in_flight(&self.in_flight)).await {
                Ok(Role::Leader) => {
                    if !was_leader {
                        info!(identity = elector.identity(), "recovery: leading");
                    }
                }
                Ok(Role::Follower(holder)) => {
                    if was_leader {
                        info!(?holder, "recovery: lost the lease");
                        self.states.clear();
                    }
                    self.metrics.leader.set(0);
                    self.view.store(Arc::default());
                    continue;
                }
                Err(e) => {
                    self.metrics.error("lease");
                    self.metrics.leader.set(0);
                    self.view.store(Arc::default());
                    warn!("recovery lease: {e}");
                    continue;
                }
            }
            self.metrics.leader.set(1);
            let started = Instant::now();
            self.reconcile(&stores, &mut elector, &mut events, started).await;
            self.metrics.round.observe(started.elapsed().as_secs_f64());
        }
        elector.release().await;
        self.metrics.leader.set(0);
        Ok(())
    }

    /// One pass over every group: [`round`] decides on the caches as they are; then the
    /// rebuilds in flight are finished, timed and checked, every decision is carried out and
    /// the audit reported, in that order, and the round is published.
    async fn reconcile(
        &mut self,
        stores: &Stores,
        elector: &mut LeaseElector,
        events: &mut EventWriter,
        started: Instant,
    ) {
        let cfg = self.config.load_full();
        // The stores' own Arcs: no object is copied.
        let lists = Lists::for_round(
            stores.nodes.state(),
            stores.leases.state(),
            stores.pods.state(),
            stores.claims.state(),
            stores.volumes.state(),
            stores.statefulsets.state(),
        );
        let now = Timestamp::now();
        let plan = round(&lists.objects(), &cfg, std::mem::take(&mut self.in_flight), self.options.max_in_flight, now);
        self.check_in_flight(&plan, now, events).await;

        let mut held: BTreeMap<&'static str, i64> = Gate::LABELS.iter().map(|g| (*g, 0)).collect();
        let mut held_view: BTreeMap<String, Vec<Held>> = BTreeMap::new();
        let mut live = HashSet::new();
        for d in &plan.decisions {
            let group = &plan.groups[d.group];
            let member = &group.members[d.member];
            let pod = pod_ref(&group.key.namespace, &member.name, &member.uid);
            let id = object_id(&pod);
            match &d.decision {
                Decision::Nothing => {}
                Decision::Held(gate) => {
                    *held.entry(gate.label()).or_default() += 1;
                    live.insert((id, gate.label().to_owned()));
                    let note = format!("recovery of {} held: {gate}", member.name);
                    held_view.entry(group.key.to_string()).or_default().push(Held {
                        member: member.name.clone(),
                        gate: gate.label(),
                        reason: gate.to_string(),
                    });
                    if events.write(pod, "Warning", HELD, gate.label(), &note, &self.metrics).await {
                        self.metrics.held_total.get_or_create(&GateLabels { gate: gate.label() }).inc();
                        info!(group = %group.key, member = %member.name, gate = gate.label(), "{note}");
                    }
                }
                Decision::Report(action, why) => {
                    live.insert((id, "report".to_owned()));
                    let note = match why {
                        ReportOnly::Mode => format!("report mode, nothing changed; would rebuild: {action}"),
                        ReportOnly::NoStatefulSet => format!(
                            "no StatefulSet recreates this member (operator-managed pods get reports only); \
                             a rebuild would: {action}"
                        ),
                    };
                    if events.write(pod, "Normal", REPORT, "report", &note, &self.metrics).await {
                        self.metrics.actions.get_or_create(&ModeLabels { mode: "report" }).inc();
                        info!(group = %group.key, member = %member.name, "{note}");
                    }
                }
                Decision::Act(action) => {
                    live.insert((id, "rebuild".to_owned()));
                    self.act(group, member, action, d.start.clone(), elector, events).await;
                }
            }
        }
        for (gate, count) in held {
            self.metrics.held.get_or_create(&GateLabels { gate }).set(count);
        }
        let active = counted(&self.in_flight);
        self.metrics.in_flight.set(i64::try_from(active).unwrap_or(i64::MAX));
        self.metrics.stuck.set(i64::try_from(self.in_flight.len() - active).unwrap_or(i64::MAX));

        self.report_audit(&plan.groups, &plan.audits, events, &mut live).await;
        events.retain(&live);

        let flights = self
            .in_flight
            .iter()
            .map(|f| Flight {
                group: f.group.clone(),
                member: f.member.clone(),
                node: f.node.clone(),
                since: f.since.clone(),
                lost_at: f.lost_at.clone(),
                stuck: f.stuck,
            })
            .collect();
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.view.store(Arc::new(Round::new(now.to_string(), took, &plan.audits, held_view, flights)));
    }

    /// Takes the round's rebuilds in flight: observes the time since the node was lost for
    /// those whose member is Ready again, and says — once, with an Event on the member and its
    /// StatefulSet — which passed `stuckAfter`.
    async fn check_in_flight(&mut self, plan: &RoundPlan, now: Timestamp, events: &mut EventWriter) {
        for flight in &plan.finished {
            if let Some(secs) = flight.seconds_since_loss(now) {
                self.metrics.duration.observe(secs);
            }
            info!(group = %flight.group, member = %flight.member, "recovery: the rebuilt member is Ready again");
        }
        for f in &plan.forgotten {
            info!(group = %f.group, member = %f.member, "recovery: the group of a stuck rebuild is gone");
        }
        self.in_flight.clone_from(&plan.in_flight);
        let by_key: BTreeMap<String, &GroupFacts> = plan.groups.iter().map(|g| (g.key.to_string(), g)).collect();
        for &(i, after) in &plan.newly_stuck {
            let flight = &plan.in_flight[i];
            self.metrics.stuck_total.inc();
            let note = format!(
                "the rebuild of {} (node {} lost) started at {} and the member is not Ready after {}s \
                 (stuckAfter): no further action in this group until it is Ready; it no longer counts \
                 against the cluster-wide cap",
                flight.member,
                flight.node,
                flight.since,
                after.as_secs()
            );
            warn!(group = %flight.group, member = %flight.member, "recovery: {note}");
            let Some(group) = by_key.get(&flight.group) else { continue };
            let key = format!("stuck/{}/{}", flight.member, flight.old_uid);
            if let Some(member) = group.member(&flight.member) {
                let pod = pod_ref(&group.key.namespace, &member.name, &member.uid);
                events.write(pod, "Warning", STUCK, &key, &note, &self.metrics).await;
            }
            if let Some(sts) = &group.statefulset {
                let sts = statefulset_ref(&group.key.namespace, sts);
                events.write(sts, "Warning", STUCK, &key, &note, &self.metrics).await;
            }
        }
    }

    /// Sets the audit gauges and says each state change on the group's owner.
    async fn report_audit(
        &mut self,
        groups: &[GroupFacts],
        audits: &[GroupAudit],
        events: &mut EventWriter,
        live: &mut HashSet<(String, String)>,
    ) {
        let mut states: BTreeMap<GroupState, i64> = GroupState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut pending: BTreeMap<PendingReason, i64> = PendingReason::ALL.iter().map(|r| (*r, 0)).collect();
        let mut unhealthy = 0_i64;
        for a in audits {
            *states.entry(a.state).or_default() += 1;
            unhealthy += i64::try_from(a.on_unhealthy_nodes.len()).unwrap_or(i64::MAX);
            for p in &a.pending {
                *pending.entry(p.reason).or_default() += 1;
            }
        }
        for (state, count) in states {
            self.metrics.audit_groups.get_or_create(&StateLabels { state: state.as_str() }).set(count);
        }
        for (reason, count) in pending {
            self.metrics.audit_pending.get_or_create(&ReasonLabels { reason: reason.as_str() }).set(count);
        }
        self.metrics.audit_unhealthy.set(unhealthy);

        let changed = transitions(&mut self.states, audits, MAX_TRACKED_GROUPS);
        if changed.is_empty() {
            return;
        }
        let by_key: HashMap<String, (&GroupFacts, &GroupAudit)> =
            groups.iter().zip(audits).map(|(g, a)| (a.group.clone(), (g, a))).collect();
        for (group, from, to) in changed {
            self.metrics
                .audit_transitions
                .get_or_create(&TransitionLabels { from: from.as_str(), to: to.as_str() })
                .inc();
            let Some((facts, audit)) = by_key.get(&group) else { continue };
            let Some(owner) = owner_ref(facts) else { continue };
            let note = format!("group {group}: {from} -> {to}: {}", audit.summary());
            info!(group = %group, from = from.as_str(), to = to.as_str(), "recovery audit: {note}");
            let type_ = if to == GroupState::ZoneSafe { "Normal" } else { "Warning" };
            // Unique per transition; kept live for this round only, so each change is said once.
            let key = format!("audit/{from}/{to}");
            live.insert((object_id(&owner), key.clone()));
            events.write(owner, type_, AUDIT, &key, &note, &self.metrics).await;
        }
    }

    /// Records the rebuild in the Lease first (so a successor honours it and leadership is
    /// confirmed), then executes it and says so on the pod and the StatefulSet. `start` is the
    /// rebuild the round records (none when its group has one in flight already); its `since`
    /// is the moment of acting.
    async fn act(
        &mut self,
        group: &GroupFacts,
        member: &MemberFacts,
        action: &Action,
        start: Option<InFlight>,
        elector: &mut LeaseElector,
        events: &mut EventWriter,
    ) {
        let key = group.key.to_string();
        if let Some(mut flight) = start {
            flight.since = Timestamp::now().to_string();
            self.in_flight.push(flight);
        }
        match elector.try_acquire_or_renew(&encode_in_flight(&self.in_flight)).await {
            Ok(Role::Leader) => {}
            other => {
                warn!(?other, "recovery: leadership not confirmed; not acting");
                return;
            }
        }
        let note = format!("rebuilding {}: {action}", member.name);
        info!(group = %key, member = %member.name, "{note}");
        let pod = pod_ref(&group.key.namespace, &member.name, &member.uid);
        if events.write(pod, "Warning", REBUILD, "rebuild", &note, &self.metrics).await {
            self.metrics.actions.get_or_create(&ModeLabels { mode: "rebuild" }).inc();
            if let Some(sts) = &group.statefulset {
                // Keyed by the member's pod, so each rebuild is said once on the StatefulSet.
                let sts_ref = statefulset_ref(&group.key.namespace, sts);
                let key = format!("rebuild/{}/{}", member.name, member.uid);
                events.write(sts_ref, "Warning", REBUILD, &key, &note, &self.metrics).await;
            }
        }
        if let Err(e) = self.execute(&group.key.namespace, member, action).await {
            warn!(group = %key, member = %member.name, "recovery: {e:#}");
        }
    }

    /// Deletes the stranded claims (uid precondition), then force-deletes the pod (grace 0, uid
    /// precondition). A claim or pod already gone counts as done.
    async fn execute(&self, namespace: &str, member: &MemberFacts, action: &Action) -> anyhow::Result<()> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        for name in &action.delete_claims {
            let uid = member.claims.iter().find(|c| &c.name == name).map(|c| c.uid.clone()).filter(|u| !u.is_empty());
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid, resource_version: None }),
                ..DeleteParams::default()
            };
            match claims.delete(name, &params).await {
                Ok(_) => info!(namespace, claim = %name, "recovery: claim deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    self.metrics.error("delete_claim");
                    return Err(e).with_context(|| format!("deleting claim {namespace}/{name}"));
                }
            }
        }
        if action.force_delete_pod {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(member.uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            match pods.delete(&member.name, &params).await {
                Ok(_) => info!(namespace, pod = %member.name, "recovery: pod force-deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    self.metrics.error("delete_pod");
                    return Err(e).with_context(|| format!("force-deleting pod {namespace}/{}", member.name));
                }
            }
        }
        Ok(())
    }
}

fn encode_in_flight(in_flight: &[InFlight]) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    if !in_flight.is_empty() {
        state.insert(IN_FLIGHT_KEY.to_owned(), serde_json::to_string(in_flight).unwrap_or_default());
    }
    state
}

fn decode_in_flight(state: &BTreeMap<String, String>) -> Vec<InFlight> {
    state.get(IN_FLIGHT_KEY).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_round_trips_through_the_lease_state() {
        let flights = vec![InFlight {
            group: "db/pg".into(),
            member: "pg-0".into(),
            old_uid: "u".into(),
            node: "n1".into(),
            since: "2026-01-01T00:00:00Z".into(),
            lost_at: Some("2025-12-31T23:59:00Z".into()),
            stuck: true,
        }];
        assert_eq!(decode_in_flight(&encode_in_flight(&flights)), flights);
        let older = r#"[{"group":"db/pg","member":"pg-0","old_uid":"u","since":"2026-01-01T00:00:00Z"}]"#;
        let read = decode_in_flight(&BTreeMap::from([(IN_FLIGHT_KEY.to_owned(), older.to_owned())]));
        assert_eq!((read[0].lost_at.as_ref(), read[0].stuck), (None, false), "state written before these fields");
        assert!(encode_in_flight(&[]).is_empty());
        assert!(decode_in_flight(&BTreeMap::from([(IN_FLIGHT_KEY.to_owned(), "garbage".to_owned())])).is_empty());
    }

    #[test]
    fn transitions_are_said_once_new_groups_are_learnt_and_gone_ones_forgotten() {
        let a = |group: &str, state| GroupAudit {
            group: group.into(),
            n: 3,
            majority: 2,
            ready: 3,
            ready_per_zone: BTreeMap::new(),
            zone_safe: true,
            worst_zone: None,
            node_safe: true,
            worst_node: None,
            on_unhealthy_nodes: vec![],
            pending: vec![],
            recovery: vec![],
            state,
        };
        let mut last = HashMap::new();
        let round1 = [a("db/a", GroupState::ZoneSafe), a("db/b", GroupState::NotZoneSafe)];
        assert!(transitions(&mut last, &round1, 10).is_empty(), "first sight is not a change");
        let round2 = [a("db/a", GroupState::NotNodeSafe), a("db/b", GroupState::NotZoneSafe)];
        assert_eq!(
            transitions(&mut last, &round2, 10),
            vec![("db/a".to_owned(), GroupState::ZoneSafe, GroupState::NotNodeSafe)]
        );
        assert!(transitions(&mut last, &round2, 10).is_empty(), "said once");
        assert!(transitions(&mut last, &round2[..1], 10).is_empty());
        assert!(!last.contains_key("db/b"), "a gone group is forgotten");
        let many: Vec<GroupAudit> = (0..5).map(|i| a(&format!("db/g{i}"), GroupState::ZoneSafe)).collect();
        transitions(&mut last, &many, 3);
        assert_eq!(last.len(), 3, "bounded");
    }
}
