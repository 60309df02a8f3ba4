//! Placement promises that need the **real** scheduler and controllers to be tested at all:
//! cross-group rules (density caps, separate primaries) under concurrent creation with
//! WaitForFirstConsumer local volumes — kube-scheduler's VolumeBinding PreBind delays the
//! extender's `bind` by the time the PV controller takes — and noisy-neighbour avoidance
//! against kube-scheduler's own scores (its LeastAllocated counts a BestEffort pod as nothing).
//!
//! Every test runs `stowage serve --components extender` registered exactly as
//! `manifests/base/scheduler.yaml` ships it (every verb, weight from the manifest), real
//! StatefulSets (or operator-style bare pods with their claims), the real PV controller and
//! kwok's kubelets. Racing cases repeat for [`ROUNDS`] rounds, each from scratch. Each scenario
//! also records what the plain kube-scheduler does with the operators' default rules (see
//! docs/comparison.md).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, ListParams},
};
use stowage_fixtures::{PersistentVolumeBuilder, PvcBuilder, StatefulSetBuilder, StorageClassBuilder, pod};
use stowage_testkit::{
    ControlPlane, Extender, SchedulerConfig, SchedulerHandle, StowageProcess, create, create_nodes, delete_nodes,
    delete_statefulset, describe_pod, fake_node, force_delete_pod, namespace, node_name, scaled, start_extender,
    unique_name, wait_for_pod_ready, wait_for_statefulset_ready,
};

/// Rounds of every racing scenario.
const ROUNDS: usize = 10;
/// Node label the pods of one test select.
const POOL_LABEL: &str = "stowage-e2e/pool";
/// Longest wait for pods to be placed and Ready (scaled by the harness).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of the stowage log in failure messages.
const LOG_LINES: usize = 80;

/// Profiles: `dense` caps database pods at one per node across groups; `primaries` keeps two
/// primaries of any group apart; `quiet` refuses nodes with BestEffort or limit-less pods;
/// `guarded` is the quorum guard with a required zone spread.
const CONFIG: &str = "\
apiVersion: stowage.io/v1alpha1
kind: StowageConfig
profiles:
  dense:
    density: {class: database, maxPerNode: 1}
    localData: prefer
  primaries:
    separatePrimaries: true
    localData: prefer
  quiet:
    zoneSpread: required
    quorum: zone
    neighbours: avoid-unlimited
  guarded:
    zoneSpread: required
    quorum: zone
";

/// The extender's weight as `manifests/base/scheduler.yaml` ships it.
fn shipped_weight() -> i64 {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/scheduler.yaml"))
        .expect("reading manifests/base/scheduler.yaml");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("weight:"))
        .find_map(|w| w.trim().parse().ok())
        .expect("a weight in the shipped KubeSchedulerConfiguration")
}

struct Env {
    stowage: StowageProcess,
    schedulers: Vec<SchedulerHandle>,
    cp: ControlPlane,
    client: kube::Client,
    id: String,
    ns: String,
    _dir: tempfile::TempDir,
    nodes: Vec<String>,
}

impl Env {
    async fn start(prefix: &str) -> Self {
        let cp = ControlPlane::shared().await.expect("control plane");
        let client = cp.client();
        let id = unique_name(prefix);
        let ns = namespace(&client, prefix).await.expect("namespace");
        let (stowage, dir) =
            start_extender(Path::new(env!("CARGO_BIN_EXE_stowage")), &cp, CONFIG, "stowage-placement-e2e-").await;
        Self { stowage, schedulers: Vec::new(), cp, client, id, ns, _dir: dir, nodes: Vec::new() }
    }

    /// A kube-scheduler with the extender registered as shipped (or none: the plain scheduler).
    async fn scheduler(&mut self, with_extender: bool) -> String {
        let name = unique_name(if with_extender { "stowage" } else { "vanilla" });
        let mut config = SchedulerConfig::new(&name);
        if with_extender {
            config = config.extender(
                Extender::new(&self.stowage.extender_url())
                    .preempt_verb("preempt")
                    .bind_verb("bind")
                    .weight(shipped_weight())
                    .node_cache_capable(true)
                    .ignorable(false)
                    .http_timeout(Duration::from_secs(5)),
            );
        }
        let handle =
            self.cp.start_scheduler(&config).await.unwrap_or_else(|e| panic!("{e:#}\n{}", self.cp.diagnostics()));
        self.schedulers.push(handle);
        name
    }

    /// `per_zone` nodes in each of three zones of `pool`; node `<pool>-<z><i>`, zone `<pool>-<z>`.
    async fn nodes(&mut self, pool: &str, per_zone: usize) -> Vec<String> {
        let names: Vec<(String, String)> = ["a", "b", "c"]
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

    /// A WaitForFirstConsumer class and `per_node` 10Gi local volumes on each of `nodes`, as the
    /// static provisioner publishes them. Returns the class name.
    async fn local_storage(&self, tag: &str, nodes: &[String], per_node: usize) -> String {
        let class = format!("{}-{tag}", self.id);
        create(&self.client, &StorageClassBuilder::new(&class).wait_for_first_consumer().build())
            .await
            .expect("StorageClass");
        for node in nodes {
            for i in 0..per_node {
                let pv = format!("{class}-{node}-{i}");
                create(&self.client, &PersistentVolumeBuilder::local(&pv, node, &class, "10Gi").build())
                    .await
                    .expect("PersistentVolume");
            }
        }
        class
    }

    /// Deletes the class, its volumes and every claim of the namespace.
    async fn drop_storage(&self, class: &str) {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.ns);
        for claim in claims.list(&ListParams::default()).await.expect("claims").items {
            let _ = claims.delete(&claim.name_any(), &DeleteParams::default()).await;
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        for pv in pvs.list(&ListParams::default()).await.expect("volumes").items {
            if pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) == Some(class) {
                let _ = pvs.delete(&pv.name_any(), &DeleteParams::default()).await;
            }
        }
        let _ = Api::<StorageClass>::all(self.client.clone()).delete(class, &DeleteParams::default()).await;
    }

    async fn node_of(&self, name: &str) -> Option<String> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), &self.ns).get_opt(name).await.ok().flatten();
        pod.as_ref().and_then(node_name).map(str::to_owned)
    }

    async fn diag(&self, pods: &[&str]) -> String {
        let mut out = String::new();
        for name in pods {
            out.push_str(&describe_pod(&self.client, &self.ns, name).await);
            out.push('\n');
            let path = format!("/debug/decisions?pod={}/{name}&format=text&limit=8", self.ns);
            if let Ok((200, text)) = self.stowage.admin_get(&path).await {
                out.push_str(&format!("decisions about {name}:\n{text}\n"));
            }
        }
        out.push_str(&self.stowage.log_tail(LOG_LINES));
        for s in &self.schedulers {
            out.push('\n');
            out.push_str(&s.diagnostics());
        }
        out
    }

    fn record(&self, scenario: &str, vanilla: &str, stowage: &str) {
        stowage_testkit::record_comparison(scenario, &self.cp.kubernetes_version(), vanilla, stowage);
    }

    async fn finish(mut self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        for p in pods.list(&ListParams::default()).await.expect("pods").items {
            let _ = force_delete_pod(&self.client, &self.ns, &p.name_any()).await;
        }
        delete_nodes(&self.client, std::mem::take(&mut self.nodes)).await.expect("deleting nodes");
    }
}

/// Makes the first of `nodes` the one every scorer prefers: each other node runs a pod holding
/// 2 of its 4 CPUs (with limits, so it is no noisy neighbour). Pods racing for the same best node
/// is what a cross-pod rule must survive; with identical empty nodes kube-scheduler's own
/// LeastAllocated would spread them and hide a broken rule.
async fn one_attractive_node(env: &Env, tag: &str, nodes: &[String]) {
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let mut p = pod(&env.ns, &format!("{tag}-busy-{i}"))
            .cpu("2")
            .memory("1Gi")
            .limit("cpu", "2")
            .limit("memory", "1Gi")
            .build();
        p.spec.as_mut().expect("spec").node_name = Some(node.clone());
        create(&env.client, &p).await.expect("busy pod");
    }
}

/// Nodes holding more than one of `pods`, with their pods.
async fn shared_nodes(env: &Env, pods: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in pods {
        if let Some(node) = env.node_of(name).await {
            by_node.entry(node).or_default().push(name.clone());
        }
    }
    by_node.retain(|_, v| v.len() > 1);
    by_node
}

/// One round of two 3-member databases of one density class (`maxPerNode: 1`), created at the
/// same moment as Parallel StatefulSets with WaitForFirstConsumer local claims, on 3 zones x 2
/// nodes (one of them the most attractive): six pods for six nodes. Returns the nodes that got
/// two.
async fn density_round(
    env: &mut Env,
    scheduler: &str,
    pool: &str,
    nodes: &[String],
    round: usize,
    stowage: bool,
) -> usize {
    let class = env.local_storage(&format!("d{round}{}", u8::from(stowage)), nodes, 2).await;
    let names = ["one", "two"].map(|db| format!("{db}-{round}"));
    let builds = names.iter().map(|name| {
        let mut template = pod(&env.ns, name).scheduler_name(scheduler).node_selector(POOL_LABEL, pool).cpu("100m");
        if stowage {
            template = template.annotate("stowage.io/profile", "dense");
        }
        StatefulSetBuilder::new(&env.ns, name, 3, template.template())
            .parallel()
            .volume_claim_template("data", &class, "10Gi")
            .build()
    });
    let sets: Vec<_> = builds.collect();
    futures::future::join_all(sets.iter().map(|s| create(&env.client, s))).await.into_iter().for_each(|r| {
        r.expect("StatefulSet");
    });
    let mut pods = Vec::new();
    for name in &names {
        match wait_for_statefulset_ready(&env.client, &env.ns, name, 3, scaled(READY_TIMEOUT)).await {
            Ok(ready) => pods.extend(ready.into_keys()),
            Err(e) => {
                let members: Vec<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
                let members: Vec<&str> = members.iter().map(String::as_str).collect();
                panic!("round {round}: {e:#}\n{}", env.diag(&members).await)
            }
        }
    }
    let shared = shared_nodes(env, &pods).await;
    if stowage && !shared.is_empty() {
        let all: Vec<&str> = pods.iter().map(String::as_str).collect();
        panic!(
            "round {round}: two database pods of one density class share a node: {shared:?}\n{}",
            env.diag(&all).await
        );
    }
    for name in &names {
        delete_statefulset(&env.client, &env.ns, name, scaled(READY_TIMEOUT)).await.expect("deleting");
    }
    env.drop_storage(&class).await;
    shared.len()
}

#[tokio::test]
async fn density_caps_hold_across_groups_created_together_on_local_volumes() {
    let mut env = Env::start("place-density").await;
    let scheduler = env.scheduler(true).await;
    let pool = env.id.clone();
    let nodes = env.nodes(&pool, 2).await;
    one_attractive_node(&env, "s", &nodes).await;
    for round in 0..ROUNDS {
        density_round(&mut env, &scheduler, &pool, &nodes, round, true).await;
    }
    // The plain scheduler, same workload, no rule that could express a cross-group cap.
    let vanilla = env.scheduler(false).await;
    let vpool = format!("{}-v", env.id);
    let vnodes = env.nodes(&vpool, 2).await;
    one_attractive_node(&env, "v", &vnodes).await;
    let mut crowded = 0;
    for round in 0..ROUNDS {
        crowded += usize::from(density_round(&mut env, &vanilla, &vpool, &vnodes, round, false).await > 0);
    }
    env.record(
        "two 3-member databases of one density class (max 1 per node), created together, WaitForFirstConsumer local volumes, one emptiest node, 10 rounds",
        &format!("no operator rule spans two clusters: two pods on one node in {crowded} of {ROUNDS} rounds"),
        &format!("never two on one node (0 of {ROUNDS} rounds)"),
    );
    env.finish().await;
}

/// Two CloudNativePG-style primaries of different clusters (bare pods, claims on local volumes,
/// `cnpg.io/instanceRole: primary`), created together on nodes of which one is the most
/// attractive; the test plays the operator. Returns whether they share a node.
async fn primaries_round(
    env: &Env,
    scheduler: &str,
    pool: &str,
    nodes: &[String],
    round: usize,
    stowage: bool,
) -> bool {
    let class = env.local_storage(&format!("p{round}{}", u8::from(stowage)), nodes, 2).await;
    let names = ["alpha", "beta"].map(|c| format!("{c}-{round}-1"));
    for name in &names {
        create(&env.client, &PvcBuilder::new(&env.ns, name, &class, "10Gi").build()).await.expect("PVC");
    }
    let pods: Vec<Pod> = names
        .iter()
        .map(|name| {
            let cluster = name.trim_end_matches("-1");
            let mut builder = pod(&env.ns, name)
                .scheduler_name(scheduler)
                .node_selector(POOL_LABEL, pool)
                .label("cnpg.io/cluster", cluster)
                .label("cnpg.io/instanceRole", "primary")
                .cpu("100m")
                .pvc_volume("pgdata", name);
            if stowage {
                builder = builder
                    .annotate("stowage.io/profile", "primaries")
                    .annotate("stowage.io/group", cluster)
                    .annotate("stowage.io/members", "3");
            } else {
                builder = builder.cloudnativepg_default_rule("cnpg.io/cluster", cluster);
            }
            builder.build()
        })
        .collect();
    futures::future::join_all(pods.iter().map(|p| create(&env.client, p))).await.into_iter().for_each(|r| {
        r.expect("pod");
    });
    for name in &names {
        if let Err(e) = wait_for_pod_ready(&env.client, &env.ns, name, scaled(READY_TIMEOUT)).await {
            panic!("round {round}: {e:#}\n{}", env.diag(&[&names[0], &names[1]]).await);
        }
    }
    let (a, b) = (env.node_of(&names[0]).await, env.node_of(&names[1]).await);
    if stowage && a == b {
        panic!("round {round}: both primaries on {a:?}\n{}", env.diag(&[&names[0], &names[1]]).await);
    }
    for name in &names {
        force_delete_pod(&env.client, &env.ns, name).await.expect("deleting a primary");
    }
    env.drop_storage(&class).await;
    a == b
}

#[tokio::test]
async fn two_primaries_started_together_never_share_a_node() {
    let mut env = Env::start("place-primaries").await;
    let scheduler = env.scheduler(true).await;
    let pool = env.id.clone();
    let nodes = env.nodes(&pool, 2).await;
    one_attractive_node(&env, "s", &nodes).await;
    for round in 0..ROUNDS {
        primaries_round(&env, &scheduler, &pool, &nodes, round, true).await;
    }
    let vanilla = env.scheduler(false).await;
    let vpool = format!("{}-v", env.id);
    let vnodes = env.nodes(&vpool, 2).await;
    one_attractive_node(&env, "v", &vnodes).await;
    let mut together = 0;
    for round in 0..ROUNDS {
        together += usize::from(primaries_round(&env, &vanilla, &vpool, &vnodes, round, false).await);
    }
    env.record(
        "two primaries of different clusters started together, claims on local volumes, one emptiest node, 10 rounds",
        &format!("CloudNativePG rule (per cluster only): same node in {together} of {ROUNDS} rounds"),
        &format!("never on one node (0 of {ROUNDS} rounds)"),
    );
    env.finish().await;
}

/// One node per zone is noisy (4 BestEffort pods and 3 pods without limits), the other quiet (one
/// Guaranteed pod). kube-scheduler's own LeastAllocated prefers the noisy ones (a BestEffort pod
/// requests nothing); with `neighbours: avoid-unlimited` every member lands on a quiet node.
#[tokio::test]
async fn members_land_on_quiet_nodes_against_the_schedulers_own_preference() {
    let mut env = Env::start("place-noisy").await;
    let mut outcomes = Vec::new();
    for stowage in [true, false] {
        let scheduler = env.scheduler(stowage).await;
        let pool = format!("{}-{}", env.id, if stowage { "s" } else { "v" });
        let nodes = env.nodes(&pool, 2).await;
        let (noisy, quiet): (Vec<&String>, Vec<&String>) = nodes.iter().partition(|n| n.ends_with('1'));
        for node in &noisy {
            for i in 0..4 {
                let mut p = pod(&env.ns, &format!("be-{node}-{i}")).build();
                p.spec.as_mut().expect("spec").containers[0].resources = None;
                p.spec.as_mut().expect("spec").node_name = Some((*node).clone());
                create(&env.client, &p).await.expect("BestEffort pod");
            }
            for i in 0..3 {
                let mut p = pod(&env.ns, &format!("nolimit-{node}-{i}")).cpu("100m").memory("64Mi").build();
                p.spec.as_mut().expect("spec").node_name = Some((*node).clone());
                create(&env.client, &p).await.expect("limit-less pod");
            }
        }
        for node in &quiet {
            let mut p = pod(&env.ns, &format!("guaranteed-{node}"))
                .cpu("1")
                .memory("2Gi")
                .limit("cpu", "1")
                .limit("memory", "2Gi")
                .build();
            p.spec.as_mut().expect("spec").node_name = Some((*node).clone());
            create(&env.client, &p).await.expect("Guaranteed pod");
        }
        let name = if stowage { "quiet" } else { "vanilla" };
        let mut template = pod(&env.ns, name).scheduler_name(&scheduler).node_selector(POOL_LABEL, &pool).cpu("500m");
        template = if stowage {
            template.annotate("stowage.io/profile", "quiet")
        } else {
            template.cloudnativepg_default_rule("cnpg.io/cluster", name).label("cnpg.io/cluster", name)
        };
        create(&env.client, &StatefulSetBuilder::new(&env.ns, name, 3, template.template()).parallel().build())
            .await
            .expect("sts");
        let pods = match wait_for_statefulset_ready(&env.client, &env.ns, name, 3, scaled(READY_TIMEOUT)).await {
            Ok(p) => p,
            Err(e) => panic!("{e:#}\n{}", env.diag(&[&format!("{name}-0"), &format!("{name}-1")]).await),
        };
        let on_noisy: BTreeSet<String> =
            pods.values().filter_map(|p| node_name(p).map(str::to_owned)).filter(|n| noisy.contains(&n)).collect();
        if stowage {
            let names: Vec<String> = pods.keys().cloned().collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            assert!(on_noisy.is_empty(), "members on noisy nodes: {on_noisy:?}\n{}", env.diag(&names).await);
        }
        outcomes.push(format!("{} of 3 members on a noisy node", on_noisy.len()));
    }
    env.record(
        "one noisy (BestEffort and limit-less pods) and one quiet node per zone, 3 members",
        &format!("CloudNativePG rule: {}", outcomes[1]),
        &format!("neighbours: avoid-unlimited: {}", outcomes[0]),
    );
    env.finish().await;
}

/// The default setup of a required zone spread: the webhook injects a DoNotSchedule zone
/// topology spread, so kube-scheduler's own PodTopologySpread filter (with NodeResourcesFit for a
/// full zone C) rejects every node and the extender is never asked about the third member. It
/// still gets a `StowageWaiting` Event in the database's terms within seconds: the rule that
/// holds it, members per zone, and the zone that would take it.
#[tokio::test]
async fn a_member_rejected_by_the_schedulers_own_filters_still_gets_a_reason() {
    let mut env = Env::start("place-waiting").await;
    let scheduler = env.scheduler(true).await;
    let pool = env.id.clone();
    let nodes = env.nodes(&pool, 2).await;
    for (i, node) in nodes.iter().filter(|n| n.trim_end_matches(char::is_numeric).ends_with("-c")).enumerate() {
        let mut filler = pod(&env.ns, &format!("filler-{i}")).cpu("3800m").build();
        filler.spec.as_mut().expect("spec").node_name = Some(node.clone());
        create(&env.client, &filler).await.expect("filler");
    }
    let mut template = pod(&env.ns, "pg")
        .scheduler_name(&scheduler)
        .node_selector(POOL_LABEL, &pool)
        .cpu("500m")
        .annotate("stowage.io/profile", "guarded");
    template = template.label("app", "pg");
    let mut template = template.template();
    // What the webhook injects for `zoneSpread: required` (docs/policy.md).
    template.spec.as_mut().expect("spec").topology_spread_constraints =
        Some(vec![k8s_openapi::api::core::v1::TopologySpreadConstraint {
            max_skew: 1,
            min_domains: Some(3),
            topology_key: "topology.kubernetes.io/zone".to_owned(),
            when_unsatisfiable: "DoNotSchedule".to_owned(),
            label_selector: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("app".to_owned(), "pg".to_owned())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        }]);
    create(&env.client, &StatefulSetBuilder::new(&env.ns, "pg", 3, template).build()).await.expect("StatefulSet");
    for name in ["pg-0", "pg-1"] {
        if let Err(e) = wait_for_pod_ready(&env.client, &env.ns, name, scaled(READY_TIMEOUT)).await {
            panic!("{e:#}\n{}", env.diag(&[name]).await);
        }
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), &env.ns);
    let note = stowage_testkit::poll_until(
        "a StowageWaiting event on pg-2",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let list = events.list(&ListParams::default().fields("regarding.name=pg-2")).await?;
            Ok(list.items.into_iter().find(|e| e.reason.as_deref() == Some("StowageWaiting")).and_then(|e| e.note))
        },
    )
    .await;
    let note = match note {
        Ok(n) => n,
        Err(e) => panic!("{e:#}\n{}", env.diag(&["pg-2"]).await),
    };
    eprintln!("[waiting] StowageWaiting: {note}");
    for want in ["held by the quorum guard", &format!("zone {pool}-c"), "kube-scheduler: 0/", "(n=3)"] {
        assert!(note.contains(want), "{want:?} missing from {note:?}");
    }
    // kube-scheduler's own filters rejected every node: the extender never saw pg-2.
    let (status, body) = env.stowage.admin_get(&format!("/debug/decisions?pod={}/pg-2", env.ns)).await.expect("debug");
    assert_eq!(status, 200);
    assert!(!body.contains("\"verb\":\"filter\""), "the extender was asked after all: {body}");

    // `stowage explain pod/NAME -n NS` on the live cluster says the same, with the scheduler's view.
    let config = env._dir.path().join("config.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["explain", "pod/pg-2", "-n", &env.ns, "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(env.cp.kubeconfig_path())
        .output()
        .expect("running stowage explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in
        ["== placement (extender) ==", "quorum guard", "== kube-scheduler ==", "PodScheduled=False Unschedulable"]
    {
        assert!(text.contains(want), "{want:?} missing from explain:\n{text}");
    }
    env.finish().await;
}
