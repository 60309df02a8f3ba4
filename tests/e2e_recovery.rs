//! The recovery controller end to end: the real `stowage serve --components recovery`, a real
//! kube-apiserver, kube-controller-manager (StatefulSet, PV binder, node lifecycle, taint
//! eviction), a plain kube-scheduler and kwok's simulated kubelets. A node holding a member's
//! local volume is "killed" (kwok stops renewing its Lease); the node lifecycle controller marks
//! it Unknown and taints it, taint eviction deletes the member (it stays Terminating: no kubelet
//! confirms), and then only stowage can bring the member back.
//!
//! Each test has its own namespace, nodes (selected through a unique pool label), storage class,
//! scheduler, stowage process, profile name (so one test's controller never resolves another
//! test's pods) and Lease namespace.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::json;
use stowage_fixtures::{PersistentVolumeBuilder, StatefulSetBuilder, StorageClassBuilder, pod};
use stowage_testkit::{
    ControlPlane, SchedulerConfig, SchedulerHandle, StowageArgs, StowageProcess, create, create_nodes, delete_nodes,
    describe_pod, fake_node, is_ready, kill_node, namespace, node_name, pod_events, poll_until, revive_node, scaled,
    statefulset_pods, unique_name, wait_for_node_ready_status, wait_for_statefulset_ready,
};

const POOL_LABEL: &str = "stowage-e2e/pool";
const LOG_LINES: usize = 80;
/// The profile's `after` in the tests.
const AFTER_SECS: u64 = 20;

/// One test's world: three zones, a spare node in zone a, a 3-member StatefulSet on local
/// volumes, and the stowage recovery controller.
struct Bed {
    client: Client,
    ns: String,
    sts: String,
    /// By key (`a1`, `a2`, ...; the letter is the zone).
    nodes: BTreeMap<&'static str, String>,
    class: String,
    _scheduler: SchedulerHandle,
    /// A client with the token of ServiceAccount `stowage-system/stowage-recovery`, when stowage
    /// runs as it under the shipped RBAC.
    service_account: Option<Client>,
    stowage: StowageProcess,
    /// The stowage config file.
    config: PathBuf,
    /// An admin kubeconfig.
    admin_kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn stowage_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// Tolerations that make taint eviction start 5 s after the node is tainted (the default is
/// 300 s), a required hostname anti-affinity among the members, and a real termination grace
/// period: an evicted member then stays Terminating on its dead node, as in a real cluster (with
/// 0 the apiserver would remove it at once).
fn member_template(profile: &str, scheduler: &str, pool: &str, sts: &str) -> PodTemplateSpec {
    let mut template = pod("", "")
        .annotate("stowage.io/profile", profile)
        .scheduler_name(scheduler)
        .node_selector(POOL_LABEL, pool)
        .template();
    let spec = template.spec.as_mut().expect("spec");
    spec.termination_grace_period_seconds = Some(30);
    spec.tolerations = Some(
        ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
            .iter()
            .map(|key| {
                serde_json::from_value(
                    json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}),
                )
                .expect("toleration")
            })
            .collect(),
    );
    spec.affinity = Some(
        serde_json::from_value(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": sts}}}
        ]}}))
        .expect("affinity"),
    );
    template
}

impl Bed {
    /// Three zones: a1, a2 (zone a), b1, c1; three members on a1, b1 and c1 (a2 gets a volume
    /// only when the test creates the spare one). `mode`/`after` go into a profile unique to
    /// this test.
    async fn start(prefix: &str, mode: &str, after_secs: u64) -> Self {
        Self::start_layout(prefix, mode, after_secs, &["a1", "a2", "b1", "c1"], &["a1", "b1", "c1"], false).await
    }

    /// Nodes `keys` (zone = the key's first letter), a local volume on each of `volumes`, and a
    /// StatefulSet with one member per volume. With `shipped_rbac`, stowage runs with the token of
    /// ServiceAccount `stowage-system/stowage-recovery` bound by `manifests/base/rbac-recovery.yaml`
    /// (and leads through the shipped Lease name in `stowage-system`); else as admin, with a
    /// Lease namespace of its own.
    async fn start_layout(
        prefix: &str,
        mode: &str,
        after_secs: u64,
        keys: &[&'static str],
        volumes: &[&'static str],
        shipped_rbac: bool,
    ) -> Self {
        let cp = ControlPlane::shared().await.expect("control plane");
        let client = cp.client();
        let ns = namespace(&client, prefix).await.expect("namespace");
        let pool = unique_name(prefix);
        let mut nodes = BTreeMap::new();
        let mut objects = Vec::new();
        for &key in keys {
            let name = format!("{pool}-{key}");
            objects.push(fake_node(&name).zone(&key[..1]).label(POOL_LABEL, &pool).build());
            nodes.insert(key, name);
        }
        create_nodes(&client, objects).await.expect("nodes");
        let class = unique_name("rec-local");
        create(&client, &StorageClassBuilder::new(&class).wait_for_first_consumer().build())
            .await
            .expect("storage class");
        for key in volumes {
            let node = &nodes[key];
            create(&client, &PersistentVolumeBuilder::local(&format!("{node}-pv"), node, &class, "1Gi").build())
                .await
                .expect("pv");
        }

        let profile = unique_name("rec");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!("profiles:\n  {profile}:\n    recovery: {{mode: {mode}, after: {after_secs}s}}\n"),
        )
        .expect("config");
        let scheduler_name = unique_name("rec-sched");
        let scheduler = cp.start_scheduler(&SchedulerConfig::new(&scheduler_name)).await.expect("scheduler");
        let (kubeconfig, lease_ns, service_account) = if shipped_rbac {
            let (kubeconfig, client) = shipped_identity(&cp).await;
            (kubeconfig, SYSTEM_NS.to_owned(), Some(client))
        } else {
            let lease_ns = namespace(&client, "rec-lease").await.expect("lease namespace");
            (cp.kubeconfig_path().to_owned(), lease_ns, None)
        };
        let stowage = StowageProcess::start(
            &StowageArgs::new(&stowage_bin(), "recovery")
                .kubeconfig(&kubeconfig)
                .config(&config)
                .arg(format!("--recovery-namespace={lease_ns}"))
                .arg("--recovery-identity=e2e")
                .arg("--recovery-interval=1s")
                .arg("--recovery-lease-duration=5s")
                .env("RUST_LOG", "info,stowage_recovery=debug"),
            &dir.path().join("stowage.log"),
        )
        .await
        .expect("stowage starts");

        let sts = "pg".to_owned();
        let template = member_template(&profile, &scheduler_name, &pool, &sts);
        let replicas = i32::try_from(volumes.len()).expect("replicas");
        create(
            &client,
            &StatefulSetBuilder::new(&ns, &sts, replicas, template)
                .parallel()
                .volume_claim_template("data", &class, "1Gi")
                .build(),
        )
        .await
        .expect("statefulset");
        let bed = Self {
            client,
            ns,
            sts,
            nodes,
            class,
            _scheduler: scheduler,
            service_account,
            stowage,
            config,
            admin_kubeconfig: cp.kubeconfig_path().to_owned(),
            _dir: dir,
        };
        let ready = scaled(Duration::from_secs(90));
        let pods = wait_for_statefulset_ready(&bed.client, &bed.ns, &bed.sts, volumes.len(), ready)
            .await
            .unwrap_or_else(|e| panic!("members Ready: {e:#}\n{}", bed.stowage.log_tail(LOG_LINES)));
        let mut on: Vec<&str> = pods.values().filter_map(node_name).collect();
        on.sort_unstable();
        let mut want: Vec<&str> = volumes.iter().map(|k| bed.nodes[k].as_str()).collect();
        want.sort_unstable();
        assert_eq!(on, want, "one member per volume");
        bed
    }

    /// The member on node `key`, and its claim.
    async fn member_on(&self, key: &str) -> (Pod, PersistentVolumeClaim) {
        let pods = statefulset_pods(&self.client, &self.ns, &self.sts).await.expect("pods");
        let pod = pods.into_values().find(|p| node_name(p) == Some(self.nodes[key].as_str())).expect("a member");
        let claim = self.claim(&format!("data-{}", pod.name_any())).await.expect("its claim");
        (pod, claim)
    }

    async fn claim(&self, name: &str) -> Option<PersistentVolumeClaim> {
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.ns).get_opt(name).await.expect("get claim")
    }

    async fn pod(&self, name: &str) -> Option<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), &self.ns).get_opt(name).await.expect("get pod")
    }

    /// Waits for a stowage Event with `reason` on pod `name` whose note contains `text`.
    async fn wait_for_event(&self, name: &str, reason: &str, text: &str, timeout: Duration) -> String {
        let found = poll_until(&format!("{reason} on {name}"), scaled(timeout), Duration::from_millis(500), || async {
            let events = pod_events(&self.client, &self.ns, name).await?;
            Ok(events
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.message)
                .find(|m| m.contains(text)))
        })
        .await;
        match found {
            Ok(message) => message,
            Err(e) => panic!(
                "{e:#}\n{}\n{}",
                describe_pod(&self.client, &self.ns, name).await,
                self.stowage.log_tail(LOG_LINES)
            ),
        }
    }

    /// Messages of the Events with `reason` on the group's StatefulSet.
    async fn statefulset_events(&self, reason: &str) -> anyhow::Result<Vec<String>> {
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(self.client.clone(), &self.ns)
            .list(
                &kube::api::ListParams::default()
                    .fields(&format!("involvedObject.kind=StatefulSet,involvedObject.name={}", self.sts)),
            )
            .await?;
        Ok(events.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.message).collect())
    }

    /// Waits for a `StowageZoneAudit` Event on the StatefulSet whose note contains `text`.
    async fn wait_for_audit_event(&self, text: &str, timeout: Duration) -> String {
        poll_until(&format!("audit Event {text:?}"), scaled(timeout), Duration::from_millis(500), || async {
            Ok(self.statefulset_events("StowageZoneAudit").await?.into_iter().find(|m| m.contains(text)))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.stowage.log_tail(LOG_LINES)))
    }

    /// `stowage audit --output json` on the live cluster: exit code and report. Only this test's
    /// group resolves (its profile is in no other test's config).
    fn audit(&self) -> (Option<i32>, serde_json::Value) {
        let out = std::process::Command::new(stowage_bin())
            .arg("audit")
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .arg(format!("--config={}", self.config.display()))
            .args(["--output", "json"])
            .output()
            .expect("stowage audit runs");
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("audit JSON: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    }

    /// Creates a free local volume on node `key`.
    async fn spare_volume(&self, key: &str) {
        let node = &self.nodes[key];
        create(&self.client, &PersistentVolumeBuilder::local(&format!("{node}-pv"), node, &self.class, "1Gi").build())
            .await
            .expect("spare pv");
    }

    /// Waits until pod `name` is a new incarnation (uid other than `old`), Ready, and returns it.
    async fn wait_rebuilt(&self, name: &str, old: &str, timeout: Duration) -> Pod {
        poll_until(&format!("{name} rebuilt and Ready"), scaled(timeout), Duration::from_millis(500), || async {
            let pod = self.pod(name).await;
            Ok(pod.filter(|p| uid(p) != old && is_ready(p) && p.metadata.deletion_timestamp.is_none()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.stowage.log_tail(LOG_LINES)))
    }

    async fn cleanup(self) {
        let names: Vec<String> = self.nodes.values().cloned().collect();
        let _ = delete_nodes(&self.client, names).await;
        let _ = self.class;
    }
}

const SYSTEM_NS: &str = "stowage-system";

/// Applies `manifests/base/rbac-recovery.yaml` and returns a kubeconfig and a client with a real
/// token of its ServiceAccount.
async fn shipped_identity(cp: &ControlPlane) -> (PathBuf, Client) {
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": SYSTEM_NS}})).expect("namespace");
    match Api::all(cp.client()).create(&kube::api::PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating {SYSTEM_NS}: {e}"),
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/base/rbac-recovery.yaml");
    let out = cp
        .kubectl()
        .expect("kubectl")
        .args(["apply", "--server-side", "-f"])
        .arg(&manifest)
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    let token = cp.service_account_token(SYSTEM_NS, "stowage-recovery").await.expect("token");
    let kubeconfig = cp
        .write_kubeconfig(&unique_name("stowage-recovery-sa"), &stowage_testkit::Identity::Token(token.clone()))
        .expect("kubeconfig");
    (kubeconfig, cp.client_with_token(&token).await.expect("client"))
}

fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn uid(obj: &impl kube::Resource) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

/// The node under a member's local volume dies: after `after` the member runs again on the
/// zone's spare node with a new claim; the other members are never touched; the old volume is
/// Released, not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_a_dead_nodes_local_volume_is_rebuilt_in_its_zone() {
    // Under the shipped ServiceAccount and RBAC: proves they are enough for a whole rebuild.
    let bed =
        Bed::start_layout("rec-rebuild", "rebuild", AFTER_SECS, &["a1", "a2", "b1", "c1"], &["a1", "b1", "c1"], true)
            .await;
    let (victim, claim) = bed.member_on("a1").await;
    let victim_name = victim.name_any();
    let others: BTreeMap<String, String> = statefulset_pods(&bed.client, &bed.ns, &bed.sts)
        .await
        .expect("pods")
        .into_iter()
        .filter(|(name, _)| *name != victim_name)
        .map(|(name, p)| (name, uid(&p)))
        .collect();
    let old_pv = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).expect("bound claim");
    let spare = &bed.nodes["a2"];
    bed.spare_volume("a2").await;

    kill_node(&bed.client, &bed.nodes["a1"]).await.expect("kill a1");
    // The audit sees the group lose its node safety as soon as the node is not Ready, long
    // before `after`, and says so once on the StatefulSet.
    let note = bed.wait_for_audit_event("zone_safe -> not_node_safe", Duration::from_secs(90)).await;
    assert!(note.contains(&format!("on NotReady or missing nodes: {victim_name}")), "{note}");
    let metrics = bed.stowage.metrics().await.expect("metrics");
    assert_eq!(
        stowage_testkit::metric_sum(
            &metrics,
            "stowage_audit_transitions_total",
            &["from=\"zone_safe\"", "to=\"not_node_safe\""]
        ),
        1.0,
        "{metrics}"
    );
    bed.wait_for_event(&victim_name, "StowageRecoveryRebuild", "delete claim(s)", Duration::from_secs(120)).await;

    let rebuilt = bed.wait_rebuilt(&victim_name, &uid(&victim), Duration::from_secs(120)).await;
    assert_eq!(node_name(&rebuilt), Some(spare.as_str()), "rebuilt in zone a, on the spare node");
    let sts_events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(bed.client.clone(), &bed.ns)
        .list(
            &kube::api::ListParams::default()
                .fields(&format!("involvedObject.kind=StatefulSet,involvedObject.name={}", bed.sts)),
        )
        .await
        .expect("StatefulSet events");
    assert!(
        sts_events.items.iter().any(|e| e.reason.as_deref() == Some("StowageRecoveryRebuild")
            && e.message.as_deref().is_some_and(|m| m.contains(&victim_name))),
        "the StatefulSet says which member was rebuilt"
    );
    let new_claim = bed.claim(&format!("data-{victim_name}")).await.expect("a new claim");
    assert_ne!(uid(&new_claim), uid(&claim), "a fresh claim");
    assert_eq!(new_claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()), Some(format!("{spare}-pv").as_str()));
    for (name, before) in &others {
        let now = bed.pod(name).await.expect("other member still there");
        assert_eq!(&uid(&now), before, "{name} was never deleted");
    }
    let pv = Api::<PersistentVolume>::all(bed.client.clone()).get(&old_pv).await.expect("the old volume is kept");
    assert_eq!(pv.status.and_then(|s| s.phase).as_deref(), Some("Released"), "Retain: released, never deleted");
    // Back to zone-safe: said on the StatefulSet, counted in the state gauge, and the time from
    // the node's loss to the member Ready again is in the histogram.
    bed.wait_for_audit_event("not_node_safe -> zone_safe", Duration::from_secs(30)).await;
    let metrics = poll_until(
        "the round after the rebuild",
        scaled(Duration::from_secs(30)),
        Duration::from_millis(500),
        || async {
            let m = bed.stowage.metrics().await?;
            let done = stowage_testkit::metric_sum(&m, "stowage_recovery_duration_seconds_count", &[]) >= 1.0
                && stowage_testkit::metric_sum(&m, "stowage_audit_groups", &["state=\"zone_safe\""]) >= 1.0;
            Ok(done.then_some(m))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", bed.stowage.log_tail(LOG_LINES)));
    assert!(
        stowage_testkit::metric_sum(&metrics, "stowage_recovery_actions_total", &["mode=\"rebuild\""]) >= 1.0,
        "{metrics}"
    );
    let took = stowage_testkit::metric_sum(&metrics, "stowage_recovery_duration_seconds_sum", &[]);
    assert!(took >= AFTER_SECS as f64, "counted from the node's loss, not from the rebuild: {took}s");
    assert_eq!(stowage_testkit::metric_sum(&metrics, "stowage_audit_groups", &["state=\"not_node_safe\""]), 0.0);
    // The debug view of the same round: this group, its state, nothing in flight.
    let (status, body) = bed.stowage.admin_get("/debug/recovery").await.expect("GET /debug/recovery");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view["leader"], true, "{view:#}");
    let group = format!("{}/{}", bed.ns, bed.sts);
    let listed = view["groups"].as_array().expect("groups").iter().find(|g| g["group"] == group.as_str());
    assert_eq!(listed.map(|g| &g["state"]), Some(&json!("zone_safe")), "{view:#}");
    assert_eq!(view["inFlight"], json!([]), "{view:#}");
    // ... and least privilege: nothing outside what the code needs.
    let sa = bed.service_account.clone().expect("ran as the ServiceAccount");
    assert_forbidden(
        "recovery: read secrets",
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(sa.clone(), SYSTEM_NS).list(&Default::default()).await,
    );
    assert_forbidden(
        "recovery: create pods",
        Api::<Pod>::namespaced(sa.clone(), &bed.ns).create(&Default::default(), &pod(&bed.ns, "nope").build()).await,
    );
    assert_forbidden(
        "recovery: delete volumes",
        Api::<PersistentVolume>::all(sa.clone()).delete(&old_pv, &Default::default()).await,
    );
    assert_forbidden(
        "recovery: patch nodes",
        Api::<k8s_openapi::api::core::v1::Node>::all(sa.clone())
            .patch(
                &bed.nodes["a2"],
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
    );
    assert_forbidden(
        "recovery: read another Lease",
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(sa, SYSTEM_NS).get("stowage-scheduler").await,
    );
    bed.cleanup().await;
}

/// The primary's node dies: nothing is deleted, and the Event says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_is_never_rebuilt() {
    let bed = Bed::start("rec-primary", "rebuild", AFTER_SECS).await;
    let (victim, claim) = bed.member_on("a1").await;
    let name = victim.name_any();
    Api::<Pod>::namespaced(bed.client.clone(), &bed.ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"role": "primary"}}})))
        .await
        .expect("label the primary");
    bed.spare_volume("a2").await;

    let (code, report) = bed.audit();
    assert_eq!(code, Some(0), "one member per zone is zone-safe: {report:#}");
    assert_eq!(report["groups"][0]["zoneSafe"], true, "{report:#}");

    kill_node(&bed.client, &bed.nodes["a1"]).await.expect("kill a1");
    let note = bed.wait_for_event(&name, "StowageRecoveryHeld", "primary", Duration::from_secs(120)).await;
    assert!(note.contains("failover belongs to the database"), "{note}");
    let (code, report) = bed.audit();
    assert_eq!(code, Some(3), "two Ready members in two zones are not zone-safe: {report:#}");
    assert_eq!(report["groups"][0]["onUnhealthyNodes"], json!([name]), "{report:#}");
    // A few more rounds: still nothing deleted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = bed.claim(&format!("data-{name}")).await.expect("the claim is kept");
    assert_eq!(uid(&still), uid(&claim));
    assert!(still.metadata.deletion_timestamp.is_none(), "the claim is not being deleted");
    let pod = bed.pod(&name).await.expect("the pod is not force-deleted");
    assert_eq!(uid(&pod), uid(&victim));
    bed.cleanup().await;
}

/// Report mode: the Event says what would be done; nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_changes_nothing() {
    let bed = Bed::start("rec-report", "report", AFTER_SECS).await;
    let (victim, claim) = bed.member_on("a1").await;
    let name = victim.name_any();
    bed.spare_volume("a2").await;

    kill_node(&bed.client, &bed.nodes["a1"]).await.expect("kill a1");
    let note = bed.wait_for_event(&name, "StowageRecoveryReport", "would rebuild", Duration::from_secs(120)).await;
    assert!(note.contains(&format!("delete claim(s) data-{name}")) && note.contains("force-delete pod"), "{note}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = bed.claim(&format!("data-{name}")).await.expect("the claim is kept");
    assert_eq!(uid(&still), uid(&claim));
    assert!(still.metadata.deletion_timestamp.is_none());
    assert_eq!(bed.pod(&name).await.map(|p| uid(&p)), Some(uid(&victim)), "the pod is not force-deleted");
    bed.cleanup().await;
}

/// The node comes back before `after`: nothing is deleted (slow is not dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_revived_before_after_keeps_its_member() {
    let after = 40;
    let bed = Bed::start("rec-revive", "rebuild", after).await;
    let (victim, claim) = bed.member_on("a1").await;
    let name = victim.name_any();
    bed.spare_volume("a2").await;
    let a1 = &bed.nodes["a1"];

    let killed = std::time::Instant::now();
    kill_node(&bed.client, a1).await.expect("kill a1");
    wait_for_node_ready_status(&bed.client, a1, "Unknown", scaled(Duration::from_secs(60))).await.expect("a1 Unknown");
    let note = bed.wait_for_event(&name, "StowageRecoveryHeld", "counts as dead after", Duration::from_secs(30)).await;
    assert!(note.contains(&format!("{after}s")), "{note}");
    revive_node(&bed.client, a1).await.expect("revive a1");
    wait_for_node_ready_status(&bed.client, a1, "True", scaled(Duration::from_secs(60))).await.expect("a1 Ready");
    // Wait until well past `after` since the kill: still nothing deleted.
    let past = Duration::from_secs(after + 10).saturating_sub(killed.elapsed());
    tokio::time::sleep(past).await;
    let still = bed.claim(&format!("data-{name}")).await.expect("the claim is kept");
    assert_eq!(uid(&still), uid(&claim), "the claim was never deleted");
    assert!(still.metadata.deletion_timestamp.is_none());
    let events = pod_events(&bed.client, &bed.ns, &name).await.expect("events");
    assert!(
        !events.iter().any(|e| e.reason.as_deref() == Some("StowageRecoveryRebuild")),
        "no rebuild: {:?}\n{}",
        events.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>(),
        bed.stowage.log_tail(LOG_LINES)
    );
    bed.cleanup().await;
}

/// Two members of one five-member group lose their nodes at once: one is rebuilt, the other
/// waits (one member per group at a time) until the first is Ready again, then follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_death_in_the_group_waits_for_the_first_rebuild() {
    let keys = ["a1", "a2", "b1", "b2", "c1", "d1", "e1"];
    let bed =
        Bed::start_layout("rec-twice", "rebuild", AFTER_SECS, &keys, &["a1", "b1", "c1", "d1", "e1"], false).await;
    let (on_a, _) = bed.member_on("a1").await;
    let (on_b, _) = bed.member_on("b1").await;
    bed.spare_volume("a2").await;
    bed.spare_volume("b2").await;
    kill_node(&bed.client, &bed.nodes["a1"]).await.expect("kill a1");
    kill_node(&bed.client, &bed.nodes["b1"]).await.expect("kill b1");

    // Whichever goes first, the other is held while the first is not Ready.
    let rebuilding = |pod: &Pod| {
        let (client, ns, name) = (bed.client.clone(), bed.ns.clone(), pod.name_any());
        async move {
            let events = pod_events(&client, &ns, &name).await?;
            anyhow::Ok(events.iter().any(|e| e.reason.as_deref() == Some("StowageRecoveryRebuild")))
        }
    };
    let a_first =
        poll_until("a first rebuild", scaled(Duration::from_secs(120)), Duration::from_millis(500), || async {
            let (a, b) = (rebuilding(&on_a).await?, rebuilding(&on_b).await?);
            Ok((a || b).then_some(a))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bed.stowage.log_tail(LOG_LINES)));
    let (first, second) = if a_first { (&on_a, &on_b) } else { (&on_b, &on_a) };
    let second_claim_before = bed.claim(&format!("data-{}", second.name_any())).await.expect("second claim");
    let held =
        bed.wait_for_event(&second.name_any(), "StowageRecoveryHeld", "one at a time", Duration::from_secs(30)).await;
    assert!(held.contains(&first.name_any()), "{held}");
    let first_rebuilt = bed.wait_rebuilt(&first.name_any(), &uid(first), Duration::from_secs(120)).await;
    let second_claim = bed.claim(&format!("data-{}", second.name_any())).await.expect("second claim");
    assert_eq!(uid(&second_claim), uid(&second_claim_before), "untouched while the first was rebuilt");
    bed.wait_for_event(&second.name_any(), "StowageRecoveryRebuild", "delete claim(s)", Duration::from_secs(60)).await;
    let second_rebuilt = bed.wait_rebuilt(&second.name_any(), &uid(second), Duration::from_secs(120)).await;
    // Recovery does not choose nodes: the scheduler does. With the spare volumes only on a2 and
    // b2, zones a and b each hold one member again (which member goes where is the
    // scheduler's choice: the plain kube-scheduler here knows nothing of zones).
    let mut landed: Vec<&str> = [&first_rebuilt, &second_rebuilt].into_iter().filter_map(node_name).collect();
    landed.sort_unstable();
    assert_eq!(landed, vec![bed.nodes["a2"].as_str(), bed.nodes["b2"].as_str()]);
    bed.cleanup().await;
}

/// Two replicas of the controller: one holds the Lease; when it dies without releasing it, the
/// other takes over after the Lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let lease_ns = namespace(&client, "rec-elect").await.expect("namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "{}\n").expect("config");
    let start = |identity: &'static str| {
        let args = StowageArgs::new(&stowage_bin(), "recovery")
            .kubeconfig(cp.kubeconfig_path())
            .config(&config)
            .arg(format!("--recovery-namespace={lease_ns}"))
            .arg(format!("--recovery-identity={identity}"))
            .arg("--recovery-interval=1s")
            .arg("--recovery-lease-duration=4s");
        let log = dir.path().join(format!("{identity}.log"));
        async move { StowageProcess::start(&args, &log).await.expect("stowage starts") }
    };
    let mut replicas = BTreeMap::from([("r1", start("r1").await), ("r2", start("r2").await)]);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &lease_ns);
    let holder = |leases: Api<k8s_openapi::api::coordination::v1::Lease>| async move {
        leases.get_opt("stowage-recovery").await.ok().flatten().and_then(|l| l.spec?.holder_identity)
    };
    let first = poll_until("a leader", scaled(Duration::from_secs(30)), Duration::from_millis(200), || async {
        Ok(holder(leases.clone()).await)
    })
    .await
    .expect("one replica leads");
    // Exactly one says it leads.
    let leading = poll_until(
        "one leader in the metrics",
        scaled(Duration::from_secs(10)),
        Duration::from_millis(200),
        || async {
            let mut sum = 0.0;
            for r in replicas.values() {
                sum += stowage_testkit::metric_sum(&r.metrics().await?, "stowage_recovery_leader", &[]);
            }
            Ok((sum == 1.0).then_some(()))
        },
    )
    .await;
    assert!(leading.is_ok(), "{leading:?}");

    replicas.get_mut(first.as_str()).expect("the leader").kill();
    let other = if first == "r1" { "r2" } else { "r1" };
    let next = poll_until(
        "the other replica takes over",
        scaled(Duration::from_secs(30)),
        Duration::from_millis(200),
        || async { Ok(holder(leases.clone()).await.filter(|h| h == other)) },
    )
    .await;
    assert!(next.is_ok(), "{next:?}\n{}", replicas[other].log_tail(LOG_LINES));
    let lease = leases.get("stowage-recovery").await.expect("lease");
    assert!(lease.spec.and_then(|s| s.lease_transitions).unwrap_or(0) >= 1);
}
