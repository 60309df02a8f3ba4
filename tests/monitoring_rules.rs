//! The Prometheus rules (`monitoring/rules.yaml`) and the Grafana dashboard
//! (`monitoring/dashboard.json`), checked with the real `promtool` (built by `scripts/tools.sh`)
//! and against the running binary:
//!
//! * `promtool check rules` (lint fatal) and `promtool test rules monitoring/tests/*.yaml`;
//! * every dashboard query is valid PromQL (`promtool check rules` of one recording rule per
//!   query);
//! * every `stowage_*` metric a rule, a panel or a rule test uses is exported by `stowage serve`
//!   (extender, webhook and recovery in one process, against the real test apiserver), read
//!   from its `/metrics`; every `stowage:*` series a panel uses is recorded by a rule.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Pod};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use stowage_fixtures::pod;
use stowage_testkit::{
    ControlPlane, StowageArgs, StowageProcess, Tools, expect_success, free_ports, namespace, poll_until, unique_name,
};

/// Metrics the rules and the dashboard use that the binary does not export yet, each with the
/// work that adds it. When one is exported, the check fails until it is removed from here.
const PENDING: &[(&str, &str)] = &[];

/// The apiserver's metrics the rules use (k8s.io/apiserver/pkg/admission/metrics), checked
/// against the test apiserver's `/metrics` once it has called a webhook and failed open on one.
const APISERVER_PREFIX: &str = "apiserver_";

/// Grafana's variables in panel queries, replaced by a typical value for promtool.
const GRAFANA_VARIABLES: &[(&str, &str)] =
    &[("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"), ("${__range}", "1h")];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool(args: &[&str]) -> Output {
    Tools::get().expect("helm and promtool (scripts/tools.sh builds them)").promtool(args)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn rules() -> Value {
    serde_saphyr::from_str(&read("monitoring/rules.yaml")).expect("monitoring/rules.yaml parses")
}

/// `(name, expr)` of every rule: the alert or recorded name.
fn rule_exprs(rules: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or_else(|| rule["record"].as_str()).expect("alert or record");
            out.push((name.to_owned(), rule["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// `(panel title, expr)` of every query of the dashboard, Grafana variables replaced.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(value: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                    let expr = GRAFANA_VARIABLES.iter().fold(expr.to_owned(), |e, (var, v)| e.replace(var, v));
                    out.push((title.to_owned(), expr));
                }
                map.values().for_each(|v| walk(v, title, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&read("monitoring/dashboard.json")).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(&dashboard["panels"], "", &mut out);
    assert!(out.len() >= 20, "the dashboard has only {} queries", out.len());
    out
}

/// Series names in `text` that start with `prefix` (`stowage_` metrics, `stowage:` rules).
fn names_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The rule test files.
fn rule_tests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("monitoring/tests"))
        .expect("monitoring/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in monitoring/tests");
    files
}

#[test]
fn promtool_check_rules_passes_with_lint_fatal() {
    let out = promtool(&["check", "rules", "--lint=all", "--lint-fatal", "monitoring/rules.yaml"]);
    let stdout = expect_success("promtool check rules monitoring/rules.yaml", &out);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let files = rule_tests();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_success("promtool test rules monitoring/tests/*.yaml", &promtool(&args));
}

#[test]
fn every_alert_has_a_unit_test() {
    let tested: BTreeSet<String> = rule_tests()
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("test file");
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("alertname:").map(|n| n.trim().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let rules = rules();
    let untested: Vec<String> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str())
        .filter(|a| !tested.contains(*a))
        .map(str::to_owned)
        .collect();
    // The rarest alerts are covered by promtool's syntax check only; list them so the gap is
    // visible and deliberate.
    let allowed: BTreeSet<&str> = [
        "StowageEventsDropped",
        "StowageRecoveryErrors",
        "StowageWebhookDown",
        "StowageWebhookRequestErrors",
        "StowageCertificateReloadFailed",
    ]
    .into_iter()
    .collect();
    let unexpected: Vec<&String> = untested.iter().filter(|a| !allowed.contains(a.as_str())).collect();
    assert!(unexpected.is_empty(), "alerts without a promtool unit test in monitoring/tests: {unexpected:?}");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules: Vec<Value> = dashboard_exprs()
        .into_iter()
        .enumerate()
        .map(|(i, (title, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr, "labels": {"panel": title}}))
        .collect();
    let file = dir.path().join("dashboard-queries.yaml");
    // JSON is YAML: promtool reads it as a rule file.
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string())
        .expect("rule file");
    let stdout = expect_success(
        "promtool check rules of the dashboard's queries",
        &promtool(&["check", "rules", &file.display().to_string()]),
    );
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

#[test]
fn dashboard_uses_only_recorded_rules_that_exist() {
    let recorded: BTreeSet<String> = rule_exprs(&rules()).into_iter().map(|(name, _)| name).collect();
    for (title, expr) in dashboard_exprs() {
        for name in names_with_prefix(&expr, "stowage:") {
            assert!(recorded.contains(&name), "panel {title:?} queries {name}, which no rule records");
        }
    }
}

/// Every series name the `/metrics` text exports: the samples, and for each `# TYPE` the names
/// its type implies (a family with no series yet still declares them).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty())
        {
            names.insert(name.to_owned());
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_use_is_exported() {
    let _ = Tools::get();
    let cp = ControlPlane::start().await.expect("control plane");
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = cp.issue_serving_cert(&["127.0.0.1"]).expect("serving certificate");
    std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).expect("tls.crt");
    std::fs::write(dir.path().join("tls.key"), &tls.key_pem).expect("tls.key");
    let stowage = StowageProcess::start(
        &StowageArgs::new(Path::new(env!("CARGO_BIN_EXE_stowage")), "extender,webhook,recovery")
            .kubeconfig(cp.kubeconfig_path())
            .config(&repo("examples/config.yaml"))
            .tls_dir(dir.path())
            .arg("--recovery-namespace=default")
            .arg("--recovery-identity=metrics-check"),
        &dir.path().join("stowage.log"),
    )
    .await
    .unwrap_or_else(|e| panic!("stowage serve does not start: {e:#}\n{}", cp.diagnostics()));
    // Series that only exist once something happened: a node refused (the pod's node is not in
    // the cache), a malformed request, and admission reviews sent by the apiserver.
    let pod = json!({"metadata": {"namespace": "default", "name": "pg-0", "uid": "u-1",
        "annotations": {"stowage.io/profile": "default"}}, "spec": {"containers": [{"name": "pg", "image": "pg"}]}});
    let refused = json!({"Pod": pod, "NodeNames": ["no-such-node"]}).to_string();
    let (status, body) = post(stowage.extender, "/scheduler/filter", &refused).await;
    assert_eq!(status, 200, "filter: {body}");
    let (status, _) = post(stowage.extender, "/scheduler/filter", "{not json").await;
    assert_eq!(status, 400, "a malformed filter request");
    let apiserver_exported = exported_names(&apiserver_metrics_after_webhook_calls(&cp, &stowage).await);

    let text = stowage.metrics().await.expect("GET /metrics");
    let exported = exported_names(&text);

    let mut used: Vec<(String, String)> = Vec::new();
    for (rule, expr) in rule_exprs(&rules()) {
        used.extend(names_with_prefix(&expr, "stowage_").into_iter().map(|n| (n, format!("rule {rule}"))));
    }
    for (title, expr) in dashboard_exprs() {
        used.extend(names_with_prefix(&expr, "stowage_").into_iter().map(|n| (n, format!("panel {title:?}"))));
    }
    for file in rule_tests() {
        let text = std::fs::read_to_string(&file).expect("test file");
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("- series:")) {
            used.extend(
                names_with_prefix(line, "stowage_").into_iter().map(|n| (n, format!("rule test {}", file.display()))),
            );
        }
    }
    let apiserver_used = apiserver_names_used();
    let apiserver_missing: Vec<&String> = apiserver_used.iter().filter(|n| !apiserver_exported.contains(*n)).collect();
    assert!(
        apiserver_missing.is_empty(),
        "apiserver metrics used but not exported by kube-apiserver {}: {apiserver_missing:?}",
        cp.kubernetes_version()
    );
    let pending: BTreeSet<&str> = PENDING.iter().map(|(name, _)| *name).collect();
    let missing: BTreeSet<String> = used
        .iter()
        .filter(|(name, _)| !exported.contains(name) && !pending.contains(name.as_str()))
        .map(|(name, user)| format!("{name} (used by {user})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used but not exported by stowage serve:\n{}\n\nexported:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n"),
        exported.iter().filter(|n| n.starts_with("stowage_")).cloned().collect::<Vec<_>>().join("\n")
    );
    for (name, work) in PENDING {
        assert!(
            !exported.contains(*name),
            "{name} ({work}) is exported now: remove it from PENDING so the check covers it"
        );
        assert!(used.iter().any(|(n, _)| n == name), "{name} is in PENDING but nothing uses it");
    }
}

/// `apiserver_*` names in the rules and the rule tests.
fn apiserver_names_used() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, expr) in rule_exprs(&rules()) {
        names.extend(names_with_prefix(&expr, APISERVER_PREFIX));
    }
    for file in rule_tests() {
        let text = std::fs::read_to_string(&file).expect("test file");
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("- series:")) {
            names.extend(names_with_prefix(line, APISERVER_PREFIX));
        }
    }
    assert!(!names.is_empty(), "the rules use no apiserver metric: drop this check");
    names
}

/// Registers the running webhook and one on a closed port (failing open), creates opted-in pods
/// until the apiserver has observed both kinds of call, and returns its `/metrics`.
async fn apiserver_metrics_after_webhook_calls(cp: &ControlPlane, stowage: &StowageProcess) -> String {
    let admin = cp.client();
    let ns = namespace(&admin, "metrics-check").await.expect("namespace");
    let closed = free_ports(1).expect("a free port")[0];
    let hook = |name: &str, url: String| {
        json!({
            "name": name,
            "clientConfig": {"url": url, "caBundle": STANDARD.encode(cp.ca_pem())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
        })
    };
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": unique_name("metrics-check")},
        "webhooks": [
            hook("pods.stowage.io", stowage.webhook_url()),
            hook("closed.stowage.io", format!("https://127.0.0.1:{closed}/mutate")),
        ],
    }))
    .expect("webhook configuration");
    Api::<MutatingWebhookConfiguration>::all(admin.clone()).create(&PostParams::default(), &mwc).await.expect("create");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let wanted = [
        "apiserver_admission_webhook_admission_duration_seconds_bucket",
        "apiserver_admission_webhook_fail_open_count",
    ];
    poll_until("the apiserver to call both webhooks", Duration::from_secs(60), Duration::from_millis(500), || {
        let (admin, pods, ns) = (admin.clone(), pods.clone(), ns.clone());
        async move {
            let p = pod(&ns, &unique_name("opted")).annotate("stowage.io/profile", "default").build();
            pods.create(&PostParams::default(), &p).await?;
            let text = admin.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
            let seen = wanted.iter().all(|w| text.lines().any(|l| l.starts_with(w) && l.contains("stowage.io")));
            Ok(seen.then_some(text))
        }
    })
    .await
    .expect("apiserver webhook metrics")
}

/// POSTs a JSON body over plain HTTP/1.0: status and body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}
