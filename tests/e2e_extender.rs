//! The extender with a **real kube-scheduler**: `stowage serve --components extender` (the real
//! binary) registered in a real KubeSchedulerConfiguration (`nodeCacheCapable`, filter,
//! prioritize, preempt and bind, `percentageOfNodesToScore: 100`), the real controllers
//! (kube-controller-manager creates StatefulSet members and binds their claims; kwok's simulated
//! kubelets run nodes and pods). Placement is asserted on the bound pods read back from the API
//! server.
//!
//! Every test starts its own kube-scheduler (unique `schedulerName`) and its own stowage process,
//! and isolates itself with a unique namespace and a unique node label that its pods select
//! (other tests share the API server). Failure messages carry the stowage log tail, the
//! scheduler's log tail, the pod's description and the extender's `/debug/decisions`.
//!
//! `STOWAGE_UPDATE_FIXTURES=1` makes the capture test rewrite
//! `scheduler/tests/fixtures/captured-*.json` from the traffic it records.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{PersistentVolume, Pod, PodSchedulingGate, PodTemplateSpec},
    events::v1::Event as EventV1,
    scheduling::v1::PriorityClass,
    storage::v1::StorageClass,
};
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
};
use serde_json::{Value, json};
use stowage_fixtures::{PersistentVolumeBuilder, StatefulSetBuilder, StorageClassBuilder, pod};
use stowage_scheduler::extender::v1::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriorityList, MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY,
};
use stowage_testkit::{
    ControlPlane, Exchange, Extender, ProxyOptions, RecordingProxy, SchedulerConfig, SchedulerHandle, StowageProcess,
    Upstream, assert_pod_stays_unbound, create, create_nodes, delete_nodes, delete_statefulset, describe_pod,
    fake_node, force_delete_pod, metric_sum, namespace, node_name, pod_condition, pod_events, poll_until, scaled,
    start_extender, unique_name, wait_for_claim_bound, wait_for_pod_bound, wait_for_statefulset_ready,
};

/// Node label every test's pods select (its value is unique per test or per pool).
const POOL_LABEL: &str = "stowage-e2e/pool";
/// The profile the members use.
const PROFILE: &str = "quorum";
/// The extender's config: one profile with the quorum guard and both spreads required.
const CONFIG: &str = "\
apiVersion: stowage.io/v1alpha1
kind: StowageConfig
profiles:
  quorum:
    quorum: zone
    zoneSpread: required
    nodeSpread: required
    localData: prefer
  loose:
    zoneSpread: preferred
";
/// Longest wait for a pod to be bound (scaled by the harness).
const BIND_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the stowage log in failure messages.
const LOG_LINES: usize = 60;
/// The scheduler's `httpTimeout` for the extender.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Set to rewrite the captured fixtures.
const UPDATE_FIXTURES_ENV: &str = "STOWAGE_UPDATE_FIXTURES";

/// An operator's default scheduling rule, as the plain kube-scheduler runs it.
#[derive(Clone, Copy, Debug)]
enum Vanilla {
    /// CloudNativePG: preferred pod anti-affinity on the hostname, weight 100.
    CloudNativePg,
    /// Crunchy PGO v5: hostname and zone spread, maxSkew 1, ScheduleAnyway.
    CrunchyPgo,
}

impl Vanilla {
    const ALL: [Vanilla; 2] = [Vanilla::CloudNativePg, Vanilla::CrunchyPgo];

    fn as_str(self) -> &'static str {
        match self {
            Vanilla::CloudNativePg => "CloudNativePG rule",
            Vanilla::CrunchyPgo => "Crunchy PGO rule",
        }
    }
}

// === one test's environment ===

/// One test's stowage process, schedulers, namespace and the cluster-scoped objects it made.
struct Env {
    /// First, so it is killed before anything else is dropped.
    stowage: StowageProcess,
    schedulers: Vec<SchedulerHandle>,
    cp: ControlPlane,
    client: kube::Client,
    /// Unique per test: the base of node, pool and zone names.
    id: String,
    ns: String,
    /// Holds the config file and the stowage log.
    _dir: tempfile::TempDir,
    nodes: Vec<String>,
    /// Cluster-scoped objects to delete at the end: (kind, name).
    cluster_objects: Vec<(&'static str, String)>,
}

impl Env {
    async fn start(prefix: &str) -> Self {
        let cp = ControlPlane::shared().await.expect("control plane");
        let client = cp.client();
        let id = unique_name(prefix);
        let ns = namespace(&client, prefix).await.expect("namespace");
        let (stowage, dir) =
            start_extender(Path::new(env!("CARGO_BIN_EXE_stowage")), &cp, CONFIG, "stowage-extender-e2e-").await;
        Self {
            stowage,
            schedulers: Vec::new(),
            cp,
            client,
            id,
            ns,
            _dir: dir,
            nodes: Vec::new(),
            cluster_objects: Vec::new(),
        }
    }

    /// The recommended registration: every verb, names only, weight 5, 5 s timeout, not ignorable.
    fn extender(url: &str) -> Extender {
        Extender::new(url)
            .preempt_verb("preempt")
            .bind_verb("bind")
            .weight(5)
            .node_cache_capable(true)
            .ignorable(false)
            .http_timeout(HTTP_TIMEOUT)
    }

    /// Starts a kube-scheduler with `extender` registered; returns its scheduler name.
    async fn scheduler(&mut self, extender: Extender) -> String {
        let name = unique_name("stowage-e2e");
        let scheduler = self
            .cp
            .start_scheduler(&SchedulerConfig::new(&name).extender(extender))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.cp.diagnostics()));
        self.schedulers.push(scheduler);
        name
    }

    /// Creates `per_zone` nodes in each of `zones`, labelled `POOL_LABEL=<pool>`; node `<pool>-<z><i>`
    /// is in zone `<pool>-<z>` (see [`zone_of`]). Returns the node names.
    async fn nodes(&mut self, pool: &str, zones: &[&str], per_zone: usize) -> Vec<String> {
        let names: Vec<(String, String)> = zones
            .iter()
            .flat_map(|z| (1..=per_zone).map(move |i| (format!("{pool}-{z}{i}"), format!("{pool}-{z}"))))
            .collect();
        create_nodes(&self.client, names.iter().map(|(n, z)| fake_node(n).zone(z).label(POOL_LABEL, pool).build()))
            .await
            .expect("creating nodes");
        let names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
        self.nodes.extend(names.iter().cloned());
        names
    }

    /// A pod template of an opted-in database member for `scheduler`, on the nodes of `pool`.
    fn template(&self, scheduler: &str, pool: &str) -> stowage_fixtures::PodBuilder {
        pod(&self.ns, "template")
            .scheduler_name(scheduler)
            .annotate("stowage.io/profile", PROFILE)
            .node_selector(POOL_LABEL, pool)
            .cpu("500m")
            .memory("512Mi")
    }

    /// A member template for the plain `scheduler` (no extender, no stowage annotation) with
    /// `rule`, the operator's default, against the other members of group `group`.
    fn vanilla_template(&self, scheduler: &str, pool: &str, rule: Vanilla, group: &str) -> PodTemplateSpec {
        let builder = pod(&self.ns, "template")
            .scheduler_name(scheduler)
            .node_selector(POOL_LABEL, pool)
            .label("cnpg.io/cluster", group)
            .cpu("500m")
            .memory("512Mi");
        match rule {
            Vanilla::CloudNativePg => builder.cloudnativepg_default_rule("cnpg.io/cluster", group),
            Vanilla::CrunchyPgo => builder.crunchy_pgo_default_rule("cnpg.io/cluster", group),
        }
        .template()
    }

    /// Starts a plain kube-scheduler (no extender); returns its scheduler name.
    async fn plain_scheduler(&mut self) -> String {
        let name = unique_name("vanilla-e2e");
        let scheduler = self
            .cp
            .start_scheduler(&SchedulerConfig::new(&name))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.cp.diagnostics()));
        self.schedulers.push(scheduler);
        name
    }

    /// Members per zone of `pods` (bound ones), over `zones`: e.g. `"2/1/0"`.
    async fn zone_shape(&self, pods: &[String], zones: &[String]) -> String {
        let mut counts: BTreeMap<String, usize> = zones.iter().map(|z| (z.clone(), 0)).collect();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        for name in pods {
            let pod = api.get_opt(name).await.ok().flatten();
            if let Some(node) = pod.as_ref().and_then(node_name) {
                *counts.entry(zone_of(node).to_owned()).or_default() += 1;
            }
        }
        let mut shape: Vec<usize> = counts.into_values().collect();
        shape.sort_unstable_by(|a, b| b.cmp(a));
        shape.iter().map(ToString::to_string).collect::<Vec<_>>().join("/")
    }

    /// Records one row of docs/comparison.md (and prints it).
    fn record(&self, scenario: &str, vanilla: &str, stowage: &str) {
        stowage_testkit::record_comparison(scenario, &self.cp.kubernetes_version(), vanilla, stowage);
    }

    /// Creates a StatefulSet `name` with `replicas` and `template` (plus `claims` as
    /// volumeClaimTemplates of 10Gi in `storage_class`); the real controller creates its pods,
    /// one after the other (OrderedReady) unless `parallel`.
    async fn statefulset(
        &self,
        name: &str,
        replicas: i32,
        template: PodTemplateSpec,
        claims: Option<(&str, &str)>,
        parallel: bool,
    ) -> StatefulSet {
        let mut builder = StatefulSetBuilder::new(&self.ns, name, replicas, template);
        if let Some((claim, class)) = claims {
            builder = builder.volume_claim_template(claim, class, "10Gi");
        }
        if parallel {
            builder = builder.parallel();
        }
        create(&self.client, &builder.build()).await.expect("creating the StatefulSet")
    }

    /// Waits until StatefulSet `name` has `replicas` Ready members; returns their names in order.
    async fn wait_ready(&self, name: &str, replicas: usize) -> Vec<String> {
        match wait_for_statefulset_ready(&self.client, &self.ns, name, replicas, scaled(BIND_TIMEOUT)).await {
            Ok(pods) => pods.into_keys().collect(),
            Err(e) => {
                let names: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                panic!("{e:#}\n{}", self.diag(&names).await)
            }
        }
    }

    /// Waits until pod `name` exists (created by its controller) and is not yet bound.
    async fn wait_created(&self, name: &str) -> Pod {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        match poll_until(&format!("pod {name} to be created"), BIND_TIMEOUT, Duration::from_millis(100), || async {
            Ok(api.get_opt(name).await?)
        })
        .await
        {
            Ok(pod) => pod,
            Err(e) => panic!("{e:#}\n{}", self.diag(&[name]).await),
        }
    }

    async fn create_pod(&self, pod: &Pod) -> Pod {
        create(&self.client, pod).await.unwrap_or_else(|e| panic!("creating pod {}: {e:#}", pod.name_any()))
    }

    /// A pod that holds `cpu` on `node` without being scheduled (`spec.nodeName` set at creation).
    async fn filler(&self, name: &str, node: &str, cpu: &str, priority_class: Option<&str>) -> Pod {
        let mut builder = pod(&self.ns, name).cpu(cpu);
        if let Some(class) = priority_class {
            builder = builder.priority_class(class);
        }
        let mut filler = builder.build();
        if let Some(spec) = filler.spec.as_mut() {
            spec.node_name = Some(node.to_owned());
        }
        self.create_pod(&filler).await
    }

    async fn wait_bound(&self, name: &str) -> Pod {
        match wait_for_pod_bound(&self.client, &self.ns, name, BIND_TIMEOUT).await {
            Ok(pod) => pod,
            Err(e) => panic!("{e:#}\n{}", self.diag(&[name]).await),
        }
    }

    /// GET on stowage's admin port; panics unless it answers 200.
    async fn admin(&self, path: &str) -> String {
        match self.stowage.admin_get(path).await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {path}: {status}: {body}\n{}", self.stowage.log_tail(LOG_LINES)),
            Err(e) => panic!("GET {path}: {e:#}\n{}", self.stowage.log_tail(LOG_LINES)),
        }
    }

    async fn metrics(&self) -> String {
        self.admin("/metrics").await
    }

    /// Recent decisions (newest first), optionally only about pod `name` of the namespace.
    async fn decisions(&self, name: Option<&str>) -> Vec<Value> {
        let path = match name {
            Some(name) => format!("/debug/decisions?pod={}/{name}&limit=256", self.ns),
            None => "/debug/decisions?limit=256".to_owned(),
        };
        let body = self.admin(&path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/debug/decisions is not JSON ({e}): {body}"))
    }

    /// Everything useful after a failure: the pods, their decisions, the logs.
    async fn diag(&self, pods: &[&str]) -> String {
        let mut out = String::new();
        for name in pods {
            out.push_str(&describe_pod(&self.client, &self.ns, name).await);
            out.push('\n');
            let path = format!("/debug/decisions?pod={}/{name}&format=text&limit=12", self.ns);
            match self.stowage.admin_get(&path).await {
                Ok((200, text)) => out.push_str(&format!("decisions about {name}:\n{text}\n")),
                Ok((status, text)) => out.push_str(&format!("decisions unavailable: {status} {text}\n")),
                Err(e) => out.push_str(&format!("decisions unavailable: {e:#}\n")),
            }
        }
        out.push_str(&self.stowage.log_tail(LOG_LINES));
        for scheduler in &self.schedulers {
            out.push('\n');
            out.push_str(&scheduler.diagnostics());
        }
        out
    }

    async fn node_of(&self, name: &str) -> String {
        let pod = Api::<Pod>::namespaced(self.client.clone(), &self.ns).get(name).await.expect("getting a pod");
        node_name(&pod).unwrap_or_else(|| panic!("pod {name} is not bound")).to_owned()
    }

    /// Creates a cluster-scoped PriorityClass `<id>-<suffix>` with `value`; returns its name.
    async fn priority_class(&mut self, suffix: &str, value: i32) -> String {
        let name = format!("{}-{suffix}", self.id);
        let class = PriorityClass {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            value,
            description: Some("stowage extender e2e".to_owned()),
            ..PriorityClass::default()
        };
        create(&self.client, &class).await.expect("creating a PriorityClass");
        self.cluster_objects.push(("PriorityClass", name.clone()));
        name
    }

    /// Deletes what the test created (pods with grace 0, nodes, cluster-scoped objects). Only on
    /// success: after a failure the objects stay for inspection until the control plane stops.
    async fn finish(mut self) {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.ns);
        for sts in sets.list(&ListParams::default()).await.expect("listing StatefulSets").items {
            delete_statefulset(&self.client, &self.ns, &sts.name_any(), scaled(BIND_TIMEOUT))
                .await
                .expect("deleting a StatefulSet");
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let names: Vec<String> =
            pods.list(&ListParams::default()).await.expect("listing pods").items.iter().map(|p| p.name_any()).collect();
        futures::future::join_all(names.iter().map(|n| force_delete_pod(&self.client, &self.ns, n)))
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()
            .expect("deleting pods");
        delete_nodes(&self.client, std::mem::take(&mut self.nodes)).await.expect("deleting nodes");
        let params = DeleteParams::default();
        for (kind, name) in std::mem::take(&mut self.cluster_objects) {
            let result = match kind {
                "PriorityClass" => {
                    Api::<PriorityClass>::all(self.client.clone()).delete(&name, &params).await.map(drop)
                }
                "StorageClass" => Api::<StorageClass>::all(self.client.clone()).delete(&name, &params).await.map(drop),
                "PersistentVolume" => {
                    Api::<PersistentVolume>::all(self.client.clone()).delete(&name, &params).await.map(drop)
                }
                other => panic!("unexpected kind {other}"),
            };
            match result {
                Ok(()) | Err(kube::Error::Api(_)) => {}
                Err(e) => panic!("deleting {kind} {name}: {e}"),
            }
        }
    }
}

/// The zone of a node made by [`Env::nodes`]: its name without the trailing ordinal.
fn zone_of(node: &str) -> &str {
    node.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// The `zone=count` pairs after the last "zones " of an event note (up to " (" or the end).
fn zone_counts_in(note: &str) -> BTreeMap<String, u32> {
    let rest = note.rsplit_once("zones ").map_or("", |(_, rest)| rest);
    let rest = rest.split(" (").next().unwrap_or_default();
    rest.split_whitespace()
        .filter_map(|pair| {
            let (zone, count) = pair.split_once('=')?;
            Some((zone.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// Events about the pod written through `events.k8s.io/v1` (field selector on `regarding`).
async fn events_v1(client: &kube::Client, ns: &str, pod: &str) -> Vec<EventV1> {
    let api: Api<EventV1> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().fields(&format!("regarding.kind=Pod,regarding.name={pod}"));
    api.list(&params).await.expect("listing events.k8s.io/v1 events").items
}

/// Waits for an `events.k8s.io/v1` event with `reason` about `pod` (and `uid`, when given).
async fn wait_event_v1(env: &Env, pod: &str, uid: Option<&str>, reason: &str) -> EventV1 {
    let found = poll_until(&format!("a {reason} event on {pod}"), BIND_TIMEOUT, Duration::from_millis(250), || async {
        let events = events_v1(&env.client, &env.ns, pod).await;
        Ok(events.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason)
                && uid.is_none_or(|u| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(u))
        }))
    })
    .await;
    match found {
        Ok(event) => event,
        Err(e) => panic!("{e:#}\n{}", env.diag(&[pod]).await),
    }
}

/// Checks that `pods` sit in distinct zones and on distinct nodes; returns pod → node.
async fn assert_spread(env: &Env, pods: &[String]) -> BTreeMap<String, String> {
    let mut placed = BTreeMap::new();
    for name in pods {
        placed.insert(name.clone(), env.node_of(name).await);
    }
    let zones: BTreeSet<&str> = placed.values().map(|n| zone_of(n)).collect();
    let nodes: BTreeSet<&String> = placed.values().collect();
    if zones.len() != pods.len() || nodes.len() != pods.len() {
        let names: Vec<&str> = pods.iter().map(String::as_str).collect();
        panic!("members are not one per zone on distinct nodes: {placed:?}\n{}", env.diag(&names).await);
    }
    placed
}

/// Runs `rounds` 3-member StatefulSets through the plain kube-scheduler with `rule` on a pool of
/// its own (`zones` × `per_zone` nodes; `prepare` may fill nodes first) and returns each round's
/// zone shape (e.g. `"2/1/0"`), deleting each StatefulSet before the next.
async fn vanilla_rounds(env: &mut Env, rule: Vanilla, per_zone: usize, rounds: usize, parallel: bool) -> Vec<String> {
    let scheduler = env.plain_scheduler().await;
    let pool = format!("{}-v{}", env.id, rule as u8);
    env.nodes(&pool, &["a", "b", "c"], per_zone).await;
    let zones: Vec<String> = ["a", "b", "c"].iter().map(|z| format!("{pool}-{z}")).collect();
    let mut shapes = Vec::new();
    for round in 0..rounds {
        let name = format!("vanilla-{}-{round}", rule as u8);
        env.statefulset(&name, 3, env.vanilla_template(&scheduler, &pool, rule, &name), None, parallel).await;
        let names = env.wait_ready(&name, 3).await;
        shapes.push(env.zone_shape(&names, &zones).await);
        delete_statefulset(&env.client, &env.ns, &name, scaled(BIND_TIMEOUT)).await.expect("deleting");
    }
    shapes
}

/// "k of n rounds put two or more members in one zone" for a list of zone shapes.
fn majority_rounds(shapes: &[String]) -> String {
    let bad = shapes.iter().filter(|s| !s.starts_with("1/")).count();
    format!("{bad} of {} rounds put 2+ members in one zone ({})", shapes.len(), shapes.join(", "))
}

// === 1. spread + quorum ===

#[tokio::test]
async fn three_members_land_one_per_zone_on_distinct_nodes_with_events_decisions_and_metrics() {
    let mut env = Env::start("ext-spread").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 2).await;
    // OrderedReady: the controller creates pg-1 once pg-0 is Ready (kwok), and so on.
    env.statefulset("pg", 3, env.template(&scheduler, &pool).template(), None, false).await;
    let names = env.wait_ready("pg", 3).await;
    let placed = assert_spread(&env, &names).await;

    // The extender bound each pod and said so with an events.k8s.io/v1 Event, which also shows
    // up where `kubectl describe pod` looks (core/v1 events by involvedObject).
    for (i, name) in names.iter().enumerate() {
        let node = &placed[name];
        let uid = Api::<Pod>::namespaced(env.client.clone(), &env.ns).get(name).await.expect("pod").uid();
        let event = wait_event_v1(&env, name, uid.as_deref(), "StowagePlaced").await;
        let note = event.note.clone().unwrap_or_default();
        assert_eq!(event.type_.as_deref(), Some("Normal"), "{event:?}");
        assert_eq!(event.action.as_deref(), Some("Binding"), "{event:?}");
        assert_eq!(event.reporting_controller.as_deref(), Some("stowage.io/scheduler-extender"), "{event:?}");
        assert!(note.contains(&format!("placed on node {node} in zone {}", zone_of(node))), "{note}");
        assert!(note.contains(&format!("group {}/pg", env.ns)), "{note}");
        // The group's spread after this placement, over the zones the pod may use (not those of
        // other tests' nodes).
        let zones = zone_counts_in(&note);
        let ours: BTreeSet<String> = ["a", "b", "c"].iter().map(|z| format!("{pool}-{z}")).collect();
        assert_eq!(zones.keys().cloned().collect::<BTreeSet<_>>(), ours, "{note}");
        assert_eq!(zones.values().sum::<u32>(), u32::try_from(i + 1).expect("small"), "{note}");
        let core = pod_events(&env.client, &env.ns, name).await.expect("core/v1 events");
        assert!(
            core.iter().any(|e| e.reason.as_deref() == Some("StowagePlaced")),
            "the StowagePlaced event is missing from core/v1 events of {name}: {core:?}"
        );
    }

    // /debug/decisions: for each member the extender's filter decided (the quorum group is under
    // a cross-pod rule): it reserved one node of the zones still allowed, returned only that
    // node (so kube-scheduler skipped prioritize), and bound the pod there.
    for (i, name) in names.iter().enumerate() {
        let decisions = env.decisions(Some(name)).await;
        let outcome = |verb: &str| -> Vec<&str> {
            decisions.iter().filter(|d| d["verb"] == verb).map(|d| d["outcome"].as_str().unwrap_or("")).collect()
        };
        assert!(outcome("filter").contains(&"reserved"), "{name}: filter decisions {decisions:#?}");
        assert_eq!(outcome("bind"), ["bound"], "{name}: bind decisions {decisions:#?}");
        let filter = decisions.iter().find(|d| d["verb"] == "filter" && d["outcome"] == "reserved").expect("filter");
        assert_eq!(filter["group"], format!("{}/pg", env.ns), "{filter:#}");
        assert_eq!(filter["members"], 3, "{filter:#}");
        assert_eq!(filter["nodes_in"], 6, "the in-tree filters pass every node: {filter:#}");
        assert_eq!(filter["nodes_out"], 1, "only the reserved node is returned: {filter:#}");
        let feasible = filter["nodes"].as_array().map_or(0, |l| l.iter().filter(|n| n["feasible"] == true).count());
        assert_eq!(feasible, 6 - 2 * i, "one zone less per member: {filter:#}");
        let reserved = format!("reserved node {}", placed[name]);
        assert!(
            filter["detail"]
                .as_array()
                .is_some_and(|d| d.iter().any(|l| l.as_str().is_some_and(|l| l.starts_with(&reserved)))),
            "{filter:#}"
        );
        let bind = decisions.iter().find(|d| d["verb"] == "bind").expect("bind");
        assert_eq!(bind["detail"][0], format!("target node {}", placed[name]), "{bind:#}");
    }

    // /metrics.
    let metrics = env.metrics().await;
    let sum = |name: &str, labels: &[&str]| metric_sum(&metrics, name, labels);
    assert!(sum("stowage_extender_decisions_total", &["verb=\"bind\"", "outcome=\"bound\""]) >= 3.0, "{metrics}");
    assert!(sum("stowage_extender_request_duration_seconds_count", &["verb=\"filter\""]) >= 3.0, "{metrics}");
    assert!(
        sum("stowage_ledger_reservations_total", &["event=\"confirmed\""]) >= 3.0,
        "every reservation was confirmed by its bind: {metrics}"
    );
    assert!(
        sum("stowage_extender_refusals_total", &["plugin=\"zone-spread\"", "reason=\"quorum_guard\""]) >= 6.0,
        "pg-1 saw 2 nodes refused by the quorum guard, pg-2 4: {metrics}"
    );
    assert_eq!(sum("stowage_events_dropped_total", &[]), 0.0, "{metrics}");
    for kind in ["nodes", "pods", "persistentvolumes", "persistentvolumeclaims", "statefulsets"] {
        assert_eq!(sum("stowage_cache_synced", &[&format!("kind=\"{kind}\"")]), 1.0, "{kind}: {metrics}");
    }

    // The same workload through the plain scheduler with each operator's default rule.
    let mut vanilla = Vec::new();
    for rule in Vanilla::ALL {
        let shapes = vanilla_rounds(&mut env, rule, 2, 1, false).await;
        vanilla.push(format!("{}: {}", rule.as_str(), shapes.join("")));
    }
    env.record(
        "3 zones x 2 nodes, one 3-member StatefulSet (OrderedReady): members per zone",
        &vanilla.join("; "),
        "1/1/1 on distinct nodes",
    );
    env.finish().await;
}

// === 2. zone C full ===

#[tokio::test]
async fn with_zone_c_full_the_third_member_waits_for_it_and_is_never_placed_two_plus_one() {
    let mut env = Env::start("ext-full").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    let nodes = env.nodes(&pool, &["a", "b", "c"], 2).await;
    let zone_c: Vec<&String> = nodes.iter().filter(|n| zone_of(n).ends_with("-c")).collect();
    // Zone C has no room: each node's 4 CPUs are taken by a pod that was never scheduled.
    for (i, node) in zone_c.iter().enumerate() {
        env.filler(&format!("filler-{i}"), node, "3800m", None).await;
    }
    env.statefulset("pg", 3, env.template(&scheduler, &pool).template(), None, false).await;
    for i in 0..2 {
        env.wait_bound(&format!("pg-{i}")).await;
    }
    let first_two = assert_spread(&env, &["pg-0".to_owned(), "pg-1".to_owned()]).await;
    assert!(first_two.values().all(|n| !zone_of(n).ends_with("-c")), "zone C is full: {first_two:?}");

    // The third member cannot go to zone C (no CPU) and must not go to A or B (quorum guard):
    // it stays Pending, and says why.
    env.wait_created("pg-2").await;
    let pending = match assert_pod_stays_unbound(&env.client, &env.ns, "pg-2", scaled(Duration::from_secs(10))).await {
        Ok(pod) => pod,
        Err(e) => panic!("{e:#}: placed 2+1\n{}", env.diag(&["pg-2"]).await),
    };
    let condition = pod_condition(&pending, "PodScheduled").cloned();
    let condition = match condition {
        Some(c) if c.status == "False" && c.reason.as_deref() == Some("Unschedulable") => c,
        other => panic!("expected PodScheduled=False/Unschedulable, got {other:?}\n{}", env.diag(&["pg-2"]).await),
    };
    let message = condition.message.unwrap_or_default();
    // kube-scheduler counts nodes per reason: zone C's two by its own fit filter, A's and B's
    // four by the extender's one reason per node.
    for expected in [
        "2 Insufficient cpu",
        "4 node(s) would give a zone more than floor((n-1)/2) members of the group (quorum guard)",
    ] {
        assert!(message.contains(expected), "the scheduler should say {expected:?}: {message}");
    }
    eprintln!("[zone-c-full] PodScheduled: {message}");
    let event = wait_event_v1(&env, "pg-2", pending.uid().as_deref(), "StowageQuorumGuard").await;
    let note = event.note.clone().unwrap_or_default();
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    eprintln!("[zone-c-full] {}: {note}", event.reason.as_deref().unwrap_or_default());
    let (za, zb, zc) = (format!("{pool}-a"), format!("{pool}-b"), format!("{pool}-c"));
    for expected in [
        "quorum guard:".to_owned(),
        format!("group {}/pg has n=3 voting members", env.ns),
        "(max 1 per zone)".to_owned(),
        "no feasible zone left".to_owned(),
    ] {
        assert!(note.contains(&expected), "the quorum event should say {expected:?}: {note}");
    }
    // Exactly the zones the member may use (other tests' zones are not its business).
    assert_eq!(zone_counts_in(&note), BTreeMap::from([(za, 1), (zb, 1), (zc, 0)]), "{note}");
    let refused = env.decisions(Some("pg-2")).await;
    assert!(refused.iter().any(|d| d["verb"] == "filter" && d["outcome"] == "no_feasible_node"), "{refused:#?}");

    // Free one node of zone C: the scheduler requeues the member and it lands there.
    force_delete_pod(&env.client, &env.ns, "filler-0").await.expect("deleting a filler");
    env.wait_bound("pg-2").await;
    let all = assert_spread(&env, &["pg-0".to_owned(), "pg-1".to_owned(), "pg-2".to_owned()]).await;
    assert_eq!(&all["pg-2"], zone_c[0], "{all:?}");

    // The plain scheduler with the operators' rules, zone C full the same way.
    let mut vanilla = Vec::new();
    for rule in Vanilla::ALL {
        let scheduler = env.plain_scheduler().await;
        let vpool = format!("{}-v{}", env.id, rule as u8);
        let vnodes = env.nodes(&vpool, &["a", "b", "c"], 2).await;
        for (i, node) in vnodes.iter().filter(|n| zone_of(n).ends_with("-c")).enumerate() {
            env.filler(&format!("vfiller-{}-{i}", rule as u8), node, "3800m", None).await;
        }
        let name = format!("vanilla-{}", rule as u8);
        // Annotated like the stowage group (a group that existed before stowage was installed):
        // the plain scheduler ignores the annotation, `stowage audit` does not.
        let mut template = env.vanilla_template(&scheduler, &vpool, rule, &name);
        if let Some(meta) = template.metadata.as_mut() {
            meta.annotations.get_or_insert_with(Default::default).insert("stowage.io/profile".into(), PROFILE.into());
        }
        env.statefulset(&name, 3, template, None, false).await;
        let names = env.wait_ready(&name, 3).await;
        let zones: Vec<String> = ["a", "b", "c"].iter().map(|z| format!("{vpool}-{z}")).collect();
        vanilla.push(format!("{}: all 3 placed, {}", rule.as_str(), env.zone_shape(&names, &zones).await));
    }
    env.record(
        "zone C full, one 3-member StatefulSet: the third member",
        &vanilla.join("; "),
        "waits Pending with a StowageQuorumGuard event (1/1/0); placed in zone C once it has room",
    );

    // `stowage audit` on the live cluster: the plain scheduler's 2+1 groups would lose their
    // majority with their double zone; stowage's 1/1/1 group would not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .arg("audit")
        .arg("--kubeconfig")
        .arg(env.cp.kubeconfig_path())
        .arg("--config")
        .arg(env._dir.path().join("config.yaml"))
        .args(["--output", "json"])
        .output()
        .expect("running stowage audit");
    assert_eq!(out.status.code(), Some(3), "some group is not zone-safe: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let groups: Vec<&Value> =
        report.as_array().or_else(|| report["groups"].as_array()).map(|g| g.iter().collect()).unwrap_or_default();
    let safe = |name: &str| {
        let group = format!("{}/{name}", env.ns);
        groups.iter().find(|g| g["group"] == group.as_str()).map(|g| g["zoneSafe"].clone())
    };
    assert_eq!(safe("pg"), Some(json!(true)), "stowage's group is zone-safe: {report:#}");
    for rule in Vanilla::ALL {
        let name = format!("vanilla-{}", rule as u8);
        assert_eq!(safe(&name), Some(json!(false)), "{name} was placed 2+1: {report:#}");
    }
    env.finish().await;
}

// === 3. back to the local volume ===

#[tokio::test]
async fn a_recreated_member_returns_to_the_node_holding_its_local_volume() {
    let mut env = Env::start("ext-local").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 2).await;
    let class = format!("{}-local", env.id);
    create(&env.client, &StorageClassBuilder::new(&class).wait_for_first_consumer().build())
        .await
        .expect("StorageClass");
    env.cluster_objects.push(("StorageClass", class.clone()));

    // Local volumes as sig-storage-local-static-provisioner publishes them (Available, no claim):
    // a 10Gi one on the first node of each zone and a 1Gi one, too small for the claims, on the
    // second. The real PV controller binds the WaitForFirstConsumer claims once kube-scheduler
    // has chosen a node with the extender.
    let sts_name = "pg";
    for zone in ["a", "b", "c"] {
        for (i, size) in [(1, "10Gi"), (2, "1Gi")] {
            let (pv_name, node) = (format!("{}-pv-{zone}{i}", env.id), format!("{pool}-{zone}{i}"));
            create(&env.client, &PersistentVolumeBuilder::local(&pv_name, &node, &class, size).build())
                .await
                .expect("PersistentVolume");
            env.cluster_objects.push(("PersistentVolume", pv_name));
        }
    }

    env.statefulset(sts_name, 3, env.template(&scheduler, &pool).template(), Some(("data", &class)), false).await;
    env.wait_ready(sts_name, 3).await;
    let placed = assert_spread(&env, &["pg-0".to_owned(), "pg-1".to_owned(), "pg-2".to_owned()]).await;
    let home = placed["pg-0"].clone();
    assert!(home.ends_with('1'), "only the first node of a zone has a volume that fits: {placed:?}");
    let claim = wait_for_claim_bound(&env.client, &env.ns, "data-pg-0", scaled(BIND_TIMEOUT)).await.expect("bound");
    let volume = claim.spec.and_then(|s| s.volume_name).unwrap_or_default();
    assert_eq!(volume, format!("{}-pv-{}1", env.id, zone_of(&home).rsplit('-').next().unwrap_or_default()));

    // Make the volume's node the busier one of its zone, then delete the member: the kubelet
    // (kwok) confirms, and the StatefulSet controller creates it again (same name, new uid).
    env.filler("busy", &home, "3", None).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let old_uid = pods.get("pg-0").await.expect("pg-0").uid();
    pods.delete("pg-0", &DeleteParams::default()).await.expect("deleting pg-0");
    let again = poll_until("pg-0 to be recreated", BIND_TIMEOUT, Duration::from_millis(100), || async {
        Ok(pods.get_opt("pg-0").await?.filter(|p| p.uid() != old_uid))
    })
    .await
    .expect("the StatefulSet controller recreates pg-0");
    env.wait_bound("pg-0").await;
    let node = env.node_of("pg-0").await;
    assert_eq!(node, home, "pg-0 must return to {home}, which holds its volume\n{}", env.diag(&["pg-0"]).await);
    let event = wait_event_v1(&env, "pg-0", again.uid().as_deref(), "StowagePlaced").await;
    assert!(event.note.as_deref().unwrap_or("").contains(&format!("placed on node {home}")), "{event:?}");
    // The extender bound the new incarnation (it did not count the old one against it).
    let decisions = env.decisions(Some("pg-0")).await;
    let new_uid = again.uid().unwrap_or_default();
    assert!(
        decisions.iter().any(|d| d["verb"] == "bind" && d["uid"] == new_uid && d["outcome"] == "bound"),
        "{decisions:#?}"
    );
    env.finish().await;
}

// === 4. Parallel bursts ===

#[tokio::test]
async fn parallel_bursts_of_three_members_land_in_three_zones_every_time() {
    const ROUNDS: usize = 10;
    let mut env = Env::start("ext-burst").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 2).await;
    let template = env.template(&scheduler, &pool);

    let mut timings = Vec::new();
    for round in 0..ROUNDS {
        // podManagementPolicy: Parallel: the controller creates every member at once.
        let sts_name = format!("burst-{round}");
        let started = Instant::now();
        env.statefulset(&sts_name, 3, template.clone().template(), None, true).await;
        let names = env.wait_ready(&sts_name, 3).await;
        timings.push(started.elapsed());
        assert_spread(&env, &names).await;
        delete_statefulset(&env.client, &env.ns, &sts_name, scaled(BIND_TIMEOUT)).await.expect("deleting a burst");
    }

    // Every member's node was decided and reserved in filter, and confirmed by its bind.
    let metrics = env.metrics().await;
    let reservations =
        |event: &str| metric_sum(&metrics, "stowage_ledger_reservations_total", &[&format!("event=\"{event}\"")]);
    eprintln!(
        "[burst] {ROUNDS} rounds of 3 parallel members: all in distinct zones; time to all Ready {timings:?}; \
         reservations created {}, replaced {}, confirmed {}, expired {}",
        reservations("created"),
        reservations("replaced"),
        reservations("confirmed"),
        reservations("expired"),
    );
    assert!(reservations("confirmed") >= (3 * ROUNDS) as f64, "{metrics}");

    let mut vanilla = Vec::new();
    for rule in Vanilla::ALL {
        let shapes = vanilla_rounds(&mut env, rule, 2, ROUNDS, true).await;
        vanilla.push(format!("{}: {}", rule.as_str(), majority_rounds(&shapes)));
    }
    env.record(
        "3 zones x 2 nodes, 3-member StatefulSets created Parallel, 10 rounds",
        &vanilla.join("; "),
        "0 of 10 rounds (every round 1/1/1)",
    );
    env.finish().await;
}

// === 5. extender down ===

#[tokio::test]
async fn with_the_extender_down_an_ignorable_registration_still_schedules_and_a_strict_one_waits() {
    let mut env = Env::start("ext-down").await;
    let url = env.stowage.extender_url();
    let open = env.scheduler(Env::extender(&url).ignorable(true)).await;
    let strict = env.scheduler(Env::extender(&url)).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 1).await;
    let plain = |name: &str, scheduler: &str| {
        pod(&env.ns, name).scheduler_name(scheduler).node_selector(POOL_LABEL, &pool).cpu("100m").build()
    };

    // Up: the extender binds (and says so).
    env.create_pod(&plain("before", &open)).await;
    env.wait_bound("before").await;
    wait_event_v1(&env, "before", None, "StowagePlaced").await;

    env.stowage.kill();

    // ignorable: true — filter and bind errors are skipped (DefaultBinder binds), for pods with
    // and without stowage annotations.
    env.statefulset("pg", 1, env.template(&open, &pool).template(), None, false).await;
    env.create_pod(&plain("open-plain", &open)).await;
    env.wait_bound("open-plain").await;
    env.wait_bound("pg-0").await;
    for name in ["open-plain", "pg-0"] {
        let events = events_v1(&env.client, &env.ns, name).await;
        assert!(
            events.iter().all(|e| e.reason.as_deref() != Some("StowagePlaced")),
            "{name} was bound without the extender: {events:?}"
        );
    }

    // ignorable: false — the filter error fails every attempt until the extender is back.
    env.create_pod(&plain("strict-plain", &strict)).await;
    let pending =
        match assert_pod_stays_unbound(&env.client, &env.ns, "strict-plain", scaled(Duration::from_secs(8))).await {
            Ok(pod) => pod,
            Err(e) => panic!("{e:#}\n{}", env.diag(&["strict-plain"]).await),
        };
    let message = pod_condition(&pending, "PodScheduled").and_then(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("/scheduler/filter"), "the failure should name the extender: {message:?}");

    if let Err(e) = env.stowage.restart().await {
        panic!("{e:#}\n{}", env.diag(&["strict-plain"]).await);
    }
    env.wait_bound("strict-plain").await;
    wait_event_v1(&env, "strict-plain", None, "StowagePlaced").await;
    env.finish().await;
}

// === 6. nodeCacheCapable: false ===

#[tokio::test]
async fn with_full_node_objects_a_small_group_is_placed() {
    let mut env = Env::start("ext-nodes").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url()).node_cache_capable(false)).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 2).await;
    env.statefulset("pg", 3, env.template(&scheduler, &pool).template(), None, false).await;
    let names = env.wait_ready("pg", 3).await;
    assert_spread(&env, &names).await;
    let decisions = env.decisions(Some("pg-1")).await;
    let filter = decisions.iter().find(|d| d["verb"] == "filter" && d["outcome"] == "reserved").expect("a filter");
    assert_eq!((filter["nodes_in"].as_u64(), filter["nodes_out"].as_u64()), (Some(6), Some(1)), "{filter:#}");
    let feasible = filter["nodes"].as_array().map_or(0, |l| l.iter().filter(|n| n["feasible"] == true).count());
    assert_eq!(feasible, 4, "{filter:#}");
    env.finish().await;
}

// === 6b. operator-managed groups (CloudNativePG's shape) ===

/// CloudNativePG's workload shape: no StatefulSet; the operator creates each instance's PVC and
/// then a bare pod mounting it, labelled `cnpg.io/cluster` and `cnpg.io/instanceRole`, with the
/// group and its size passed down as annotations (`inheritedMetadata`). The test plays the
/// operator (creating pods and claims is what the operator does); the real PV controller binds
/// the WaitForFirstConsumer claims to local volumes and kwok runs the pods. All three instances
/// are created at once: one per zone on distinct nodes, each on the node of its volume.
#[tokio::test]
async fn an_operator_managed_group_of_bare_pods_is_spread_with_its_volumes() {
    let mut env = Env::start("ext-cnpg").await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    let nodes = env.nodes(&pool, &["a", "b", "c"], 2).await;
    let class = format!("{}-local", env.id);
    create(&env.client, &StorageClassBuilder::new(&class).wait_for_first_consumer().build())
        .await
        .expect("StorageClass");
    env.cluster_objects.push(("StorageClass", class.clone()));
    for node in &nodes {
        let pv_name = format!("{}-pv-{}", env.id, node.rsplit('-').next().unwrap_or_default());
        create(&env.client, &PersistentVolumeBuilder::local(&pv_name, node, &class, "20Gi").build())
            .await
            .expect("PersistentVolume");
        env.cluster_objects.push(("PersistentVolume", pv_name));
    }
    let names: Vec<String> = (1..=3).map(|i| format!("pg-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        create(
            &env.client,
            &stowage_fixtures::PvcBuilder::new(&env.ns, name, &class, "10Gi").label("cnpg.io/cluster", "pg").build(),
        )
        .await
        .expect("PVC");
        let role = if i == 0 { "primary" } else { "replica" };
        let instance = env
            .template(&scheduler, &pool)
            .label("cnpg.io/cluster", "pg")
            .label("cnpg.io/instanceRole", role)
            .annotate("stowage.io/group", "pg")
            .annotate("stowage.io/members", "3")
            .pvc_volume("pgdata", name)
            .build();
        let mut instance = instance;
        instance.metadata.name = Some(name.clone());
        env.create_pod(&instance).await;
    }
    for name in &names {
        if let Err(e) = stowage_testkit::wait_for_pod_ready(&env.client, &env.ns, name, scaled(BIND_TIMEOUT)).await {
            panic!("{e:#}\n{}", env.diag(&[name]).await);
        }
    }
    let placed = assert_spread(&env, &names).await;
    for name in &names {
        let claim = wait_for_claim_bound(&env.client, &env.ns, name, scaled(BIND_TIMEOUT)).await.expect("bound");
        let volume = claim.spec.and_then(|s| s.volume_name).unwrap_or_default();
        let node = &placed[name];
        assert_eq!(volume, format!("{}-pv-{}", env.id, node.rsplit('-').next().unwrap_or_default()), "{name}");
    }
    let filter = env.decisions(Some("pg-3")).await.into_iter().find(|d| d["verb"] == "filter");
    let filter = filter.unwrap_or_else(|| panic!("no filter decision for pg-3"));
    assert_eq!((filter["group"].as_str(), filter["members"].as_u64()), (Some(&*format!("{}/pg", env.ns)), Some(3)));
    env.finish().await;
}

// === 7. captured wire traffic ===

/// How the scheduler sends nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `nodeCacheCapable: true`: names.
    Cache,
    /// `nodeCacheCapable: false`: whole Node objects.
    NoCache,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Cache => "cache",
            Mode::NoCache => "nocache",
        }
    }
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

/// Candidate node names of a filter/prioritize request in either mode.
fn request_nodes(mode: Mode, request: &Value) -> Vec<String> {
    let names = match mode {
        Mode::Cache => request["NodeNames"].as_array(),
        Mode::NoCache => request["Nodes"]["items"].as_array(),
    };
    names
        .expect("candidate nodes")
        .iter()
        .filter_map(|n| n.as_str().or_else(|| n["metadata"]["name"].as_str()).map(str::to_owned))
        .collect()
}

/// Checks a filter or prioritize request as kube-scheduler sent it and decodes it.
fn check_args(mode: Mode, what: &str, request: &Value) -> ExtenderArgs {
    assert_eq!(keys(request), set(&["Pod", "Nodes", "NodeNames"]), "{what}: {request:#}");
    match mode {
        Mode::Cache => {
            assert!(request["Nodes"].is_null() && request["NodeNames"].is_array(), "{what}: {request:#}");
        }
        Mode::NoCache => {
            assert!(request["NodeNames"].is_null() && request["Nodes"]["items"].is_array(), "{what}: {request:#}");
        }
    }
    let args: ExtenderArgs = serde_json::from_value(request.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        args.pod.as_ref().and_then(|p| p.metadata.name.clone()),
        request["Pod"]["metadata"]["name"].as_str().map(str::to_owned)
    );
    args
}

/// Checks the captured filter exchange.
fn check_filter(mode: Mode, ex: &Exchange) {
    let (request, response) = (ex.request_json().expect("filter request"), ex.response_json().expect("filter reply"));
    assert_eq!(ex.status, 200, "{response:#}");
    let args = check_args(mode, "filter request", &request);
    let input = request_nodes(mode, &request);
    assert_eq!(
        keys(&response),
        set(&["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"]),
        "{response:#}"
    );
    let result: ExtenderFilterResult = serde_json::from_value(response.clone()).expect("filter reply decodes");
    assert!(result.error.is_empty(), "{response:#}");
    match mode {
        Mode::Cache => assert!(response["Nodes"].is_null() && response["NodeNames"].is_array(), "{response:#}"),
        Mode::NoCache => {
            assert!(response["NodeNames"].is_null(), "{response:#}");
            // Passing nodes are echoed exactly as they were sent.
            let sent = request["Nodes"]["items"].as_array().expect("items");
            for item in response["Nodes"]["items"].as_array().expect("reply items") {
                assert!(sent.contains(item), "a node came back changed: {item:#}");
            }
        }
    }
    let mut answered: Vec<String> = result.passing_names();
    answered.extend(result.failed_nodes.0.iter().map(|(n, _)| n.clone()));
    answered.extend(result.failed_and_unresolvable_nodes.0.iter().map(|(n, _)| n.clone()));
    answered.sort();
    let mut want = input.clone();
    want.sort();
    assert_eq!(answered, want, "every input node is answered exactly once: {response:#}");
    assert!(args.pod.is_some());
}

fn check_prioritize(mode: Mode, ex: &Exchange) {
    let (request, response) = (ex.request_json().expect("prioritize request"), ex.response_json().expect("reply"));
    assert_eq!(ex.status, 200, "{response:#}");
    check_args(mode, "prioritize request", &request);
    let input = request_nodes(mode, &request);
    let entries =
        response.as_array().unwrap_or_else(|| panic!("prioritize must reply with a bare array: {response:#}"));
    for entry in entries {
        assert_eq!(keys(entry), set(&["Host", "Score"]), "{response:#}");
        let score = entry["Score"].as_i64().expect("an integer score");
        assert!((MIN_EXTENDER_PRIORITY..=MAX_EXTENDER_PRIORITY).contains(&score), "{response:#}");
        assert!(input.iter().any(|n| entry["Host"] == n.as_str()), "{response:#}");
    }
    let list: HostPriorityList = serde_json::from_value(response.clone()).expect("prioritize reply decodes");
    assert_eq!(list.len(), input.len(), "a score for every candidate: {response:#}");
}

fn check_bind(ex: &Exchange) {
    let (request, response) = (ex.request_json().expect("bind request"), ex.response_json().expect("bind reply"));
    assert_eq!(ex.status, 200, "{response:#}");
    assert_eq!(keys(&request), set(&["PodName", "PodNamespace", "PodUID", "Node"]), "{request:#}");
    let args: ExtenderBindingArgs = serde_json::from_value(request.clone()).expect("bind args decode");
    assert!(!args.pod_uid.is_empty() && !args.node.is_empty(), "{request:#}");
    assert_eq!(response, json!({"Error": ""}));
    let _: ExtenderBindingResult = serde_json::from_value(response.clone()).expect("bind reply decodes");
}

fn check_preempt(mode: Mode, ex: &Exchange) {
    let (request, response) = (ex.request_json().expect("preempt request"), ex.response_json().expect("reply"));
    assert_eq!(ex.status, 200, "{response:#}");
    assert_eq!(keys(&request), set(&["Pod", "NodeNameToVictims", "NodeNameToMetaVictims"]), "{request:#}");
    let (present, absent) = match mode {
        Mode::Cache => ("NodeNameToMetaVictims", "NodeNameToVictims"),
        Mode::NoCache => ("NodeNameToVictims", "NodeNameToMetaVictims"),
    };
    assert!(request[present].is_object() && request[absent].is_null(), "{request:#}");
    let args: ExtenderPreemptionArgs = serde_json::from_value(request.clone()).expect("preempt args decode");
    let victims: BTreeSet<String> = match mode {
        Mode::Cache => args
            .node_name_to_meta_victims
            .iter()
            .flatten()
            .flat_map(|(_, v)| v.pods.iter().map(|p| p.uid.clone()))
            .collect(),
        Mode::NoCache => args
            .node_name_to_victims
            .iter()
            .flatten()
            .flat_map(|(_, v)| v.pods.iter().filter_map(|p| p.metadata.uid.clone()))
            .collect(),
    };
    assert_eq!(keys(&response), set(&["NodeNameToMetaVictims"]), "{response:#}");
    let result: ExtenderPreemptionResult = serde_json::from_value(response.clone()).expect("preempt reply decodes");
    assert!(!result.node_name_to_meta_victims.is_empty(), "the victims were kept: {response:#}");
    for (node, meta) in &result.node_name_to_meta_victims {
        assert!(request[present].get(node).is_some(), "{node} was not a candidate: {response:#}");
        for p in &meta.pods {
            assert!(victims.contains(&p.uid), "{} was not a victim: {response:#}", p.uid);
        }
        assert_eq!(keys(&response["NodeNameToMetaVictims"][node]), set(&["Pods", "NumPDBViolations"]));
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scheduler/tests/fixtures")
}

/// Top-level keys and JSON types (objects one level deeper for the wire maps): what must not
/// drift between the committed fixtures and what the scheduler sends today.
fn shape(v: &Value) -> Value {
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    match v {
        Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), Value::from(kind(v)))).collect(),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        other => Value::from(kind(other)),
    }
}

/// Pretty-prints JSON text keeping its key order (2-space indent, as `to_string_pretty`), so a
/// fixture shows the fields in the order the scheduler (Go struct order) or the extender sent them.
fn pretty_in_order(text: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
    let mut out = String::with_capacity(text.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// Writes (with `STOWAGE_UPDATE_FIXTURES=1`) or compares the shape of one captured exchange.
fn fixture(verb: &str, mode: Mode, ex: &Exchange) {
    for (part, body) in [("request", &ex.request_body), ("response", &ex.response_body)] {
        let path = fixtures_dir().join(format!("captured-{verb}-{}-{part}.json", mode.as_str()));
        let live: Value = serde_json::from_slice(body).expect("captured JSON");
        if std::env::var_os(UPDATE_FIXTURES_ENV).is_some_and(|v| v == "1") {
            let text = pretty_in_order(&String::from_utf8_lossy(body));
            let reparsed: Value = serde_json::from_str(&text).expect("pretty-printed JSON");
            assert_eq!(reparsed, live, "pretty-printing changed {}", path.display());
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            eprintln!("[capture] wrote {}", path.display());
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with {UPDATE_FIXTURES_ENV}=1 to capture it)", path.display()));
        let committed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            shape(&committed),
            shape(&live),
            "{} no longer has the shape of what kube-scheduler sends; rerun with {UPDATE_FIXTURES_ENV}=1",
            path.display()
        );
    }
}

/// Records one scheduler's traffic for `mode`: a placement with more than one candidate
/// (filter, prioritize, bind) and a preemption (preempt).
async fn capture(env: &mut Env, mode: Mode, low: &str, high: &str) {
    let proxy = RecordingProxy::start(Upstream::http(env.stowage.extender), ProxyOptions::plain())
        .await
        .expect("recording proxy");
    let scheduler = env
        .scheduler(Env::extender(&format!("{}/scheduler", proxy.url())).node_cache_capable(mode == Mode::Cache))
        .await;
    let pool = format!("{}-{}", env.id, mode.as_str());
    env.nodes(&pool, &["a", "b", "c"], 1).await;

    // pg-1 of a 3-member group: three candidates, one refused by the quorum guard, two scored.
    let sts_name = format!("cap-{}", mode.as_str());
    env.statefulset(&sts_name, 2, env.template(&scheduler, &pool).template(), None, false).await;
    env.wait_ready(&sts_name, 2).await;
    let target = format!("{sts_name}-1");
    let pod_is = |v: &Value, name: &str| v["Pod"]["metadata"]["name"] == name;
    let wait = |what: String, verb: &'static str, name: String| {
        let proxy = &proxy;
        async move {
            proxy
                .wait_for(&what, BIND_TIMEOUT, |e| {
                    e.path == format!("/scheduler/{verb}")
                        && e.request_json().is_ok_and(|v| pod_is(&v, &name) || v["PodName"] == name.as_str())
                })
                .await
        }
    };
    let mut exchanges = Vec::new();
    for verb in ["filter", "bind"] {
        match wait(format!("{verb} of {target}"), verb, target.clone()).await {
            Ok(ex) => exchanges.push((verb, ex)),
            Err(e) => panic!("{e:#}\n{}", env.diag(&[&target]).await),
        }
    }
    // The member's filter decided its node (one feasible node: no prioritize). A pod under no
    // cross-pod rule gets every feasible node back, and kube-scheduler asks for scores.
    let loose = format!("loose-{}", mode.as_str());
    let loose_pod = pod(&env.ns, &loose)
        .scheduler_name(&scheduler)
        .annotate("stowage.io/profile", "loose")
        .node_selector(POOL_LABEL, &pool)
        .cpu("100m")
        .build();
    env.create_pod(&loose_pod).await;
    match wait(format!("prioritize of {loose}"), "prioritize", loose.clone()).await {
        Ok(ex) => exchanges.push(("prioritize", ex)),
        Err(e) => panic!("{e:#}\n{}", env.diag(&[&loose]).await),
    }

    // Preemption: the only node of its pool is full of a low-priority pod; a high-priority
    // member needs it.
    let p_pool = format!("{pool}-p");
    let p_node = format!("{p_pool}-a1");
    create_nodes(
        &env.client,
        [fake_node(&p_node).zone(&format!("{p_pool}-a")).cpu("1").label(POOL_LABEL, &p_pool).build()],
    )
    .await
    .expect("preemption node");
    env.nodes.push(p_node.clone());
    let victim = format!("victim-{}", mode.as_str());
    env.filler(&victim, &p_node, "800m", Some(low)).await;
    let pre_name = format!("pre-{}", mode.as_str());
    env.statefulset(&pre_name, 1, env.template(&scheduler, &p_pool).priority_class(high).template(), None, false).await;
    let preemptor = format!("{pre_name}-0");
    match wait(format!("preempt of {preemptor}"), "preempt", preemptor.clone()).await {
        Ok(ex) => exchanges.push(("preempt", ex)),
        Err(e) => panic!("{e:#}\n{}", env.diag(&[&preemptor, &victim]).await),
    }
    // The scheduler deleted the victim gracefully; the kubelet (kwok) confirms it.
    env.wait_bound(&preemptor).await;
    assert_eq!(env.node_of(&preemptor).await, p_node);

    for (verb, ex) in &exchanges {
        match *verb {
            "filter" => check_filter(mode, ex),
            "prioritize" => check_prioritize(mode, ex),
            "bind" => check_bind(ex),
            _ => check_preempt(mode, ex),
        };
        fixture(verb, mode, ex);
    }
    // Every exchange of this scheduler decoded and answered 200.
    for ex in proxy.exchanges() {
        assert_eq!(ex.status, 200, "#{} {} -> {}: {:?}", ex.seq, ex.path, ex.status, ex.error);
    }
}

// === 7. preemption never breaks another group's majority ===

/// A 3-member group fills three nodes (one per zone) at low priority; only member 0 is unhealthy
/// (not Ready). A high-priority pod fits nowhere, so kube-scheduler's preemption offers all three
/// nodes, each with one member as its victim. Evicting member 1 or 2 would leave one healthy
/// member of three (below the majority of two), so the extender keeps only member 0's node: the
/// preemptor is nominated there and members 1 and 2 are untouched.
///
/// The members are the StatefulSet controller's and kwok runs them; member 0's `Ready=False` is
/// written by the test, because kwok's stages simulate no failing readiness probe (it is the
/// status update a kubelet would write, and kwok leaves a Running pod's conditions alone).
#[tokio::test]
async fn preemption_never_takes_victims_that_break_another_groups_majority() {
    let mut env = Env::start("ext-preempt").await;
    let low = env.priority_class("low", 10).await;
    let high = env.priority_class("high", 1000).await;
    let scheduler = env.scheduler(Env::extender(&env.stowage.extender_url())).await;
    let pool = env.id.clone();
    env.nodes(&pool, &["a", "b", "c"], 1).await;
    let template = env.template(&scheduler, &pool).cpu("3").priority_class(&low).template();
    env.statefulset("guard", 3, template, None, true).await;
    let names = env.wait_ready("guard", 3).await;
    let placed = assert_spread(&env, &names).await;
    let unhealthy_node = placed["guard-0"].clone();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ProbeFailed"}]}});
    let victim_uid = pods
        .patch_status("guard-0", &PatchParams::default(), &Patch::Strategic(&not_ready))
        .await
        .expect("member 0 not Ready")
        .uid();
    // The preemptor starts gated. Once kube-scheduler reports it SchedulingGated, its pod watch has
    // delivered the preemptor's creation, so stowage's pod watch on the same apiserver has
    // delivered the earlier readiness patch too; then the gate is lifted.
    let mut preemptor = pod(&env.ns, "urgent")
        .scheduler_name(&scheduler)
        .node_selector(POOL_LABEL, &pool)
        .priority_class(&high)
        .cpu("2")
        .build();
    preemptor.spec.as_mut().expect("spec").scheduling_gates =
        Some(vec![PodSchedulingGate { name: "stowage.io/e2e-hold".to_owned() }]);
    env.create_pod(&preemptor).await;
    poll_until("the scheduler to see the gated preemptor", BIND_TIMEOUT, Duration::from_millis(100), || async {
        let p = pods.get("urgent").await?;
        Ok(pod_condition(&p, "PodScheduled").filter(|c| c.reason.as_deref() == Some("SchedulingGated")).map(drop))
    })
    .await
    .expect("SchedulingGated");
    let ungate = json!({"spec": {"schedulingGates": null}});
    pods.patch("urgent", &PatchParams::default(), &Patch::Merge(&ungate)).await.expect("lifting the gate");
    // Nominated to the victim's node, or already bound there (the nomination is cleared then).
    let nominated = poll_until("the preemptor to be nominated", BIND_TIMEOUT, Duration::from_millis(100), || async {
        let p = pods.get("urgent").await?;
        let bound = node_name(&p).map(str::to_owned);
        Ok(bound.or_else(|| p.status.and_then(|s| s.nominated_node_name).filter(|n| !n.is_empty())))
    })
    .await;
    let nominated = match nominated {
        Ok(n) => n,
        Err(e) => panic!("{e:#}\n{}", env.diag(&["urgent", "guard-0", "guard-1", "guard-2"]).await),
    };
    assert_eq!(
        nominated,
        unhealthy_node,
        "only the unhealthy member's node may be preempted\n{}",
        env.diag(&["urgent"]).await
    );
    for healthy in ["guard-1", "guard-2"] {
        let p = pods.get(healthy).await.expect("member");
        assert!(p.metadata.deletion_timestamp.is_none(), "{healthy} was evicted: the group would lose its majority");
    }
    let decision = env
        .decisions(Some("urgent"))
        .await
        .into_iter()
        .find(|d| d["verb"] == "preempt")
        .unwrap_or_else(|| panic!("no preempt decision for the preemptor"));
    assert_eq!((decision["nodes_in"].as_u64(), decision["nodes_out"].as_u64()), (Some(3), Some(1)), "{decision:#}");
    assert_eq!(decision["outcome"], "dropped_some", "{decision:#}");

    // Member 0 is the victim: gone (the StatefulSet controller may already have made a new one,
    // with a new uid) or terminating.
    let victim = pods.get_opt("guard-0").await.expect("reading the victim");
    assert!(
        victim.is_none_or(|v| v.uid() != victim_uid || v.metadata.deletion_timestamp.is_some()),
        "member 0 is the victim"
    );
    env.wait_bound("urgent").await;
    assert_eq!(env.node_of("urgent").await, unhealthy_node);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_scheduler_traffic_decodes_with_the_wire_types_in_both_node_modes() {
    let mut env = Env::start("ext-capture").await;
    let low = env.priority_class("low", 10).await;
    let high = env.priority_class("high", 1000).await;
    capture(&mut env, Mode::Cache, &low, &high).await;
    capture(&mut env, Mode::NoCache, &low, &high).await;
    env.finish().await;
}
