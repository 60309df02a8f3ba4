//! The Helm chart (`charts/stowage`), checked with the real `helm` (helm.sh/helm/v4, built by
//! `scripts/tools.sh`):
//!
//! * `helm lint --strict` in every certificate mode, with monitoring on and off;
//! * **equivalence**: `helm template` with default values renders, object by object, what
//!   `kubectl kustomize` renders for the base and for each certificate overlay (after dropping the
//!   labels only Helm adds), so the chart and the manifests cannot drift apart; a difference
//!   names the object and the field;
//! * the schema refuses bad values, every value is documented in the chart's README, the
//!   rendered config passes `stowage config check`, and `appVersion` is the crate version;
//! * a real `helm install` and `helm upgrade` against the test apiserver.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::Deployment,
    batch::v1::{CronJob, Job},
    core::v1::ConfigMap,
    rbac::v1::ClusterRole,
};
use kube::{Api, api::ListParams};
use serde_json::Value;
use stowage_testkit::{Binaries, ControlPlane, Tools, expect_success};

const CHART: &str = "charts/stowage";
const NS: &str = "stowage-system";
/// Labels the chart adds to every object's metadata and kustomize does not (Helm's and the
/// recommended release labels).
const HELM_ONLY_LABELS: [&str; 4] =
    ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];
/// Differences reported per object at most.
const MAX_DIFFS: usize = 20;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tools() -> Tools {
    Tools::get().expect("helm and promtool (scripts/tools.sh builds them)")
}

/// `helm <args>` from the repository root, with Helm's state in the throw-away `home`.
fn helm(home: &Path, args: &[&str]) -> Output {
    tools().helm(home, args)
}

/// `helm template` of the chart into namespace stowage-system with `--set` values.
fn template(sets: &[&str]) -> String {
    let home = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["template", "stowage", CHART, "--namespace", NS];
    for set in sets {
        args.extend(["--set", set]);
    }
    expect_success(&format!("helm {}", args.join(" ")), &helm(home.path(), &args))
}

/// `kubectl kustomize <dir>` with the kubectl of the tested Kubernetes version.
fn kustomize(dir: &Path, extra: &[&str]) -> String {
    let kubectl = Binaries::get().expect("control-plane binaries").kubectl;
    let out = Command::new(kubectl).arg("kustomize").args(extra).arg(dir).output().expect("running kubectl kustomize");
    expect_success(&format!("kubectl kustomize {}", dir.display()), &out)
}

/// The documents of a multi-document YAML stream, empty ones dropped.
fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects).
fn object_key(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("?");
    let name = obj["metadata"]["name"].as_str().unwrap_or("?");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Drops what legitimately differs between the chart and kustomize, so everything else must be
/// equal: the Helm-only labels, null fields (absent to the apiserver), the hash suffix of the
/// certs Job's name (it lets `helm upgrade` replace the Job, whose pod template is immutable),
/// and the text of embedded YAML files (compared parsed: comments and layout differ).
fn normalise(mut obj: Value) -> Value {
    drop_nulls(&mut obj);
    if let Some(labels) = obj.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        for label in HELM_ONLY_LABELS {
            labels.remove(label);
        }
        if labels.is_empty() {
            obj["metadata"].as_object_mut().expect("metadata").remove("labels");
        }
    }
    if obj["kind"] == "Job"
        && let Some(name) = obj["metadata"]["name"].as_str()
        && let Some((base, hash)) = name.rsplit_once('-')
        && base == "stowage-certs"
        && hash.len() == 8
        && hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        obj["metadata"]["name"] = Value::String(base.to_owned());
    }
    if obj["kind"] == "ConfigMap"
        && let Some(data) = obj.get_mut("data").and_then(Value::as_object_mut)
    {
        for (key, value) in data.iter_mut() {
            if (key.ends_with(".yaml") || key.ends_with(".yml"))
                && let Some(text) = value.as_str()
            {
                *value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("data {key} is not YAML: {e}"));
            }
        }
    }
    obj
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn by_key(yaml: &str) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for obj in documents(yaml).into_iter().map(normalise) {
        let key = object_key(&obj);
        assert!(objects.insert(key.clone(), obj).is_none(), "{key} rendered twice");
    }
    objects
}

/// Every field where `left` and `right` differ, as `path: left ≠ right`.
fn diff(path: &str, left: &Value, right: &Value, out: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            for key in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                let sub = format!("{path}.{key}");
                match (l.get(key), r.get(key)) {
                    (Some(a), Some(b)) => diff(&sub, a, b, out),
                    (Some(a), None) => out.push(format!("{sub}: chart has {a}, kustomize has nothing")),
                    (None, Some(b)) => out.push(format!("{sub}: chart has nothing, kustomize has {b}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            if l.len() != r.len() {
                out.push(format!("{path}: chart has {} items, kustomize {}", l.len(), r.len()));
            }
            for (i, (a, b)) in l.iter().zip(r).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: chart has {a}, kustomize has {b}")),
        _ => {}
    }
}

/// Asserts the two renderings hold the same objects with the same fields; the message lists
/// missing objects and, per differing object, the differing fields.
fn assert_equivalent(what: &str, chart: &str, kustomize: &str) {
    let (chart, kustomize) = (by_key(chart), by_key(kustomize));
    let mut problems = Vec::new();
    for key in kustomize.keys().filter(|k| !chart.contains_key(*k)) {
        problems.push(format!("{key}: rendered by kustomize, missing from the chart"));
    }
    for key in chart.keys().filter(|k| !kustomize.contains_key(*k)) {
        problems.push(format!("{key}: rendered by the chart, missing from kustomize"));
    }
    for (key, obj) in &chart {
        if let Some(other) = kustomize.get(key) {
            let mut fields = Vec::new();
            diff("", obj, other, &mut fields);
            fields.truncate(MAX_DIFFS);
            problems.extend(fields.into_iter().map(|f| format!("{key}: {f}")));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: the chart and the kustomize manifests differ (port the change to the other side):\n{}",
        problems.join("\n")
    );
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("charts/stowage/Chart.yaml")).expect("Chart.yaml"))
            .expect("Chart.yaml parses");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the workspace version (Cargo.toml [workspace.package])"
    );
    let base = std::fs::read_to_string(repo("manifests/base/kustomization.yaml")).expect("kustomization");
    assert!(
        base.contains(&format!("newTag: \"{}\"", env!("CARGO_PKG_VERSION"))),
        "manifests/base pins the stowage image at the crate version, like the chart's default tag"
    );
}

#[test]
fn helm_lint_strict_passes_in_every_mode() {
    let home = tempfile::tempdir().expect("temp dir");
    for sets in [
        vec![],
        vec!["certificates.mode=cert-manager"],
        vec!["certificates.mode=none", "namespace.create=true"],
        vec![
            "monitoring.podMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboard.enabled=true",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART, "--namespace", NS];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = expect_success(&format!("helm {}", args.join(" ")), &helm(home.path(), &args));
        assert!(out.contains("0 chart(s) failed"), "helm lint output:\n{out}");
    }
}

#[test]
fn chart_renders_the_kustomize_base() {
    assert_equivalent(
        "certificates.mode=none vs manifests/base",
        &template(&["certificates.mode=none", "namespace.create=true"]),
        &kustomize(&repo("manifests/base"), &[]),
    );
}

#[test]
fn chart_default_renders_the_stowage_certs_overlay() {
    assert_equivalent(
        "default values vs manifests/overlays/stowage-certs",
        &template(&["namespace.create=true"]),
        &kustomize(&repo("manifests/overlays/stowage-certs"), &[]),
    );
}

#[test]
fn chart_cert_manager_mode_renders_the_cert_manager_overlay() {
    assert_equivalent(
        "certificates.mode=cert-manager vs manifests/overlays/cert-manager",
        &template(&["certificates.mode=cert-manager", "namespace.create=true"]),
        &kustomize(&repo("manifests/overlays/cert-manager"), &[]),
    );
}

#[test]
fn chart_monitoring_renders_the_kustomize_monitoring_component() {
    // The component added to the stowage-certs overlay, as the docs tell users to do. Kustomize
    // only takes relative paths: the kustomization lives under the target directory.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let depth = dir.path().strip_prefix(repo(".")).map_or(0, |p| p.components().count());
    assert!(depth > 0, "the target directory must be inside the repository for this test");
    let up = "../".repeat(depth);
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {up}manifests/overlays/stowage-certs\ncomponents:\n- {up}manifests/components/monitoring\n"
        ),
    )
    .expect("kustomization");
    assert_equivalent(
        "monitoring.podMonitor and monitoring.prometheusRule vs manifests/components/monitoring",
        &template(&[
            "namespace.create=true",
            "monitoring.podMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
        ]),
        &kustomize(dir.path(), &["--load-restrictor=LoadRestrictionsNone"]),
    );
}

#[test]
fn the_equivalence_check_names_the_object_and_field_that_differ() {
    let chart = template(&["namespace.create=true", "webhook.replicas=3"]);
    let kustomized = kustomize(&repo("manifests/overlays/stowage-certs"), &[]);
    let failure =
        std::panic::catch_unwind(|| assert_equivalent("drift", &chart, &kustomized)).expect_err("must differ");
    let message = failure.downcast_ref::<String>().expect("panic message");
    assert!(
        message.contains("Deployment stowage-system/stowage-webhook: .spec.replicas: chart has 3, kustomize has 2"),
        "{message}"
    );
}

#[test]
fn monitoring_files_in_the_chart_are_the_monitoring_directory() {
    for (copy, source) in [
        ("charts/stowage/files/rules.yaml", "monitoring/rules.yaml"),
        ("charts/stowage/files/dashboard.json", "monitoring/dashboard.json"),
    ] {
        assert_eq!(
            std::fs::read_to_string(repo(copy)).expect("chart copy"),
            std::fs::read_to_string(repo(source)).expect("source"),
            "{copy} must be a copy of {source} (Helm cannot read files outside the chart): run scripts/sync-monitoring.sh"
        );
    }
    let rule: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("manifests/components/monitoring/prometheusrule.yaml")).expect("PrometheusRule"),
    )
    .expect("parses");
    let rules: Value = serde_saphyr::from_str(&std::fs::read_to_string(repo("monitoring/rules.yaml")).expect("rules"))
        .expect("parses");
    assert_eq!(
        rule["spec"], rules,
        "manifests/components/monitoring/prometheusrule.yaml's spec must be monitoring/rules.yaml: run scripts/sync-monitoring.sh"
    );
}

#[test]
fn dashboard_configmap_carries_the_sidecar_label_and_the_dashboard() {
    let rendered = template(&["monitoring.dashboard.enabled=true"]);
    let cm = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "stowage-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(cm["data"]["stowage.json"].as_str().expect("stowage.json")).expect("JSON");
    let source: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("monitoring/dashboard.json")).expect("dashboard"))
            .expect("JSON");
    assert_eq!(json, source);
}

#[test]
fn values_schema_refuses_bad_values() {
    let home = tempfile::tempdir().expect("temp dir");
    for (set, why) in [
        ("certificates.mode=vault", "an unknown certificate mode"),
        ("webhook.replicas=-1", "negative replicas"),
        ("webhook.failurePolicy=Maybe", "an invalid failurePolicy"),
        ("webhook.timeoutSeconds=31", "a timeout above the apiserver's 30 s"),
        ("scheduler.extender.weight=0", "a zero extender weight"),
        ("sheduler.replicas=3", "a misspelt key"),
    ] {
        let out = helm(home.path(), &["template", "stowage", CHART, "--namespace", NS, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the schema must refuse {why} ({set})");
        assert!(stderr.contains("schema"), "{set}: expected a schema error, got:\n{stderr}");
    }
}

/// Dotted paths of every value of values.yaml; `config` (the config file), `resources`,
/// `labels` and `annotations` are one value each.
fn value_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    let whole = prefix == "config" || [".resources", ".labels", ".annotations"].iter().any(|s| prefix.ends_with(s));
    match value {
        Value::Object(map) if !map.is_empty() && !whole => {
            for (key, sub) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                value_paths(&path, sub, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn every_value_is_documented_in_the_chart_readme() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("charts/stowage/values.yaml")).expect("values"))
            .expect("parses");
    let readme = std::fs::read_to_string(repo("charts/stowage/README.md")).expect("chart README");
    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    let undocumented: Vec<&String> = paths.iter().filter(|p| !readme.contains(&format!("| `{p}` |"))).collect();
    assert!(undocumented.is_empty(), "values missing from the table in charts/stowage/README.md: {undocumented:?}");
}

#[test]
fn rendered_config_passes_config_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    for sets in [vec![], vec!["config.ledgerTTL=90s"]] {
        let cm = documents(&template(&sets))
            .into_iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "stowage-config")
            .expect("stowage-config");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, cm["data"]["config.yaml"].as_str().expect("config.yaml")).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .expect("stowage config check");
        expect_success(&format!("stowage config check of the chart's config with {sets:?}"), &out);
    }
}

// === a real install and upgrade ===

#[tokio::test]
async fn helm_install_and_upgrade_on_the_test_apiserver() {
    let _ = tools();
    let cp = ControlPlane::start().await.expect("control plane");
    let client = cp.client();
    let home = tempfile::tempdir().expect("temp dir");
    let kubeconfig = cp.kubeconfig_path().display().to_string();
    let base = ["--namespace", NS, "--kubeconfig", kubeconfig.as_str()];

    let mut install = vec!["install", "stowage", CHART, "--create-namespace"];
    install.extend(base);
    expect_success("helm install", &helm(home.path(), &install));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for name in ["stowage-scheduler", "stowage-webhook", "stowage-recovery"] {
        let d = deployments.get(name).await.unwrap_or_else(|e| panic!("Deployment {name} after install: {e}"));
        assert_eq!(d.spec.and_then(|s| s.replicas), Some(2), "{name}");
        assert_eq!(
            d.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by")).map(String::as_str),
            Some("Helm")
        );
    }
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone()).get("stowage").await.expect("webhook config");
    assert_eq!(mwc.webhooks.expect("webhooks")[0].timeout_seconds, Some(3));
    Api::<ClusterRole>::all(client.clone()).get("stowage-extender").await.expect("ClusterRole stowage-extender");
    Api::<CronJob>::namespaced(client.clone(), NS).get("stowage-certs-renew").await.expect("renewal CronJob");
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let job_names = || async {
        let list = jobs.list(&ListParams::default()).await.expect("Jobs");
        list.items.into_iter().filter_map(|j| j.metadata.name).collect::<Vec<_>>()
    };
    let first_jobs = job_names().await;
    assert!(matches!(first_jobs.as_slice(), [n] if n.starts_with("stowage-certs-")), "{first_jobs:?}");

    // An upgrade that changes a value of each kind: a replica count, the config file, and the
    // image (which replaces the certs Job: its pod template is immutable).
    let mut upgrade = vec![
        "upgrade",
        "stowage",
        CHART,
        "--reuse-values",
        "--set",
        "webhook.replicas=3",
        "--set",
        "config.ledgerTTL=90s",
        "--set",
        "image.tag=0.1.0-upgraded",
    ];
    upgrade.extend(base);
    expect_success("helm upgrade", &helm(home.path(), &upgrade));

    let webhook = deployments.get("stowage-webhook").await.expect("webhook Deployment");
    assert_eq!(webhook.spec.as_ref().and_then(|s| s.replicas), Some(3), "the upgraded replica count");
    let image = webhook.spec.and_then(|s| s.template.spec).map(|s| s.containers[0].image.clone());
    assert_eq!(image.flatten().as_deref(), Some("ghcr.io/stowage-io/stowage:0.1.0-upgraded"));
    let config = Api::<ConfigMap>::namespaced(client.clone(), NS).get("stowage-config").await.expect("stowage-config");
    let text = config.data.and_then(|d| d.get("config.yaml").cloned()).expect("config.yaml");
    let parsed: Value = serde_saphyr::from_str(&text).expect("config YAML");
    assert_eq!(parsed["ledgerTTL"], "90s", "the upgraded config:\n{text}");
    assert_eq!(parsed["profiles"]["replicated"]["quorum"], "zone", "--reuse-values kept the rest:\n{text}");
    let second_jobs = job_names().await;
    assert!(
        matches!(second_jobs.as_slice(), [n] if n.starts_with("stowage-certs-") && !first_jobs.contains(n)),
        "the certs Job is replaced: before {first_jobs:?}, after {second_jobs:?}"
    );

    let mut history = vec!["history", "stowage", "--output", "json"];
    history.extend(base);
    let history: Value =
        serde_json::from_str(&expect_success("helm history", &helm(home.path(), &history))).expect("history JSON");
    let revisions: Vec<(i64, &str)> = history
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap_or(0), r["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(revisions, vec![(1, "superseded"), (2, "deployed")]);
}
