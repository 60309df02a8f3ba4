//! The mutating webhook end to end, through a real kube-apiserver: no mocks anywhere.
//!
//! Each test runs the `stowage` binary as a process (`serve --components webhook`) with its own
//! serving certificate, laid out as a kubelet lays out a mounted Secret (`..<timestamp>/tls.crt`,
//! `..data -> ..<timestamp>`, `tls.crt -> ..data/tls.crt`), and registers it with a real
//! `MutatingWebhookConfiguration` built from `manifests/base/mutating-webhook.yaml` (same rules,
//! `matchConditions`, `failurePolicy`, `sideEffects` and `reinvocationPolicy`), with a
//! `clientConfig.url` on 127.0.0.1 and a `namespaceSelector` on a label unique to the test, so the
//! tests sharing the control plane never see each other's webhooks. Pods are created through the
//! API and read back as stored.
//!
//! The apiserver loads webhook configurations through an informer, so every test first waits
//! until a `dryRun=All` create of a probe pod comes back mutated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stowage_fixtures::pod;
use stowage_testkit::{
    CertPair, ControlPlane, Exchange, ProxyOptions, RecordingProxy, StowageArgs, StowageProcess, Upstream,
    metric_series, metric_sum, namespace_with_labels, pem_to_der, poll_until, scaled, served_certificate, unique_name,
};
use stowage_webhook::{AdmissionResponse, AdmissionReview, decode_request};

/// Namespace label whose value is unique per test; every webhook of a test selects on it.
const SUITE_LABEL: &str = "webhook-e2e.stowage.io/suite";
const PROFILE: &str = "stowage.io/profile";
const GROUP: &str = "stowage.io/group";
/// The example profile's priority class, and the value the test gives it.
const PRIORITY_CLASS: &str = "database-critical";
const PRIORITY: i64 = 1_000_000;
/// Name of the example pod (`examples/pod.yaml`).
const EXAMPLE_POD: &str = "pg-main-2";
/// The apiserver's timeout for calling a webhook. The manifest says 3 s; a loaded 2-core test
/// machine gets more room, because a timeout fails open silently and would look like a lost
/// admission.
const WEBHOOK_TIMEOUT_SECONDS: u32 = 10;
/// Lines of the stowage log in failure messages.
const LOG_LINES: usize = 60;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn example_config() -> PathBuf {
    repo_file("examples/config.yaml")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `examples/pod.yaml` as written (before any defaulting), moved into `namespace`.
/// `examples/pod.yaml` in `namespace`, without its ownerReference: the example's StatefulSet does
/// not exist here, and the real garbage collector deletes a pod whose controller is missing
/// (the group still comes out `pg-main`, from its `app.kubernetes.io/instance` label).
fn example_pod(namespace: &str) -> Value {
    let mut pod = read_yaml(&repo_file("examples/pod.yaml"));
    pod["metadata"]["namespace"] = json!(namespace);
    if let Some(meta) = pod["metadata"].as_object_mut() {
        meta.remove("ownerReferences");
    }
    pod
}

/// A small pod that opts in with the `default` profile (no priority class needed).
fn opted_in_pod(namespace: &str, name: &str, group: &str) -> Pod {
    pod(namespace, name).annotate(PROFILE, "default").annotate(GROUP, group).build()
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name:?} in {pod:#}"))
}

fn is_mutated_default_profile(pod: &Value, group: &str) -> bool {
    text(pod, "/spec/schedulerName") == Some("stowage")
        && text(pod, "/metadata/labels/stowage.io~1group") == Some(group)
        && text(pod, "/spec/containers/0/resources/requests/cpu") == Some("100m")
        && text(pod, "/spec/containers/0/resources/limits/memory") == Some("128Mi")
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("serializable object")
}

// === the certificate directory, as a kubelet writes a Secret volume ===

/// A directory laid out like a mounted Secret, updated the way kubelet's atomic writer does it.
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn create(dir: &Path, pair: &CertPair) -> Self {
        std::fs::create_dir_all(dir).expect("creating the certificate dir");
        let mut volume = Self { dir: dir.to_owned(), generation: 0 };
        volume.publish(pair);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).expect("user-visible symlink");
        }
        volume
    }

    /// Writes the new payload into a fresh timestamped directory, points `..data_tmp` at it,
    /// renames that over `..data` (the atomic step), then removes the old payload.
    fn publish(&mut self, pair: &CertPair) {
        self.generation += 1;
        let payload = format!("..2026_01_01_00_00_{:02}.{:09}", self.generation, self.generation);
        let payload_dir = self.dir.join(&payload);
        std::fs::create_dir(&payload_dir).expect("payload dir");
        std::fs::write(payload_dir.join("tls.crt"), &pair.cert_pem).expect("tls.crt");
        std::fs::write(payload_dir.join("tls.key"), &pair.key_pem).expect("tls.key");
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&payload, &tmp).expect("..data_tmp symlink");
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        std::fs::rename(&tmp, self.dir.join("..data")).expect("renaming ..data_tmp over ..data");
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).expect("removing the old payload");
        }
    }
}

// === the stowage process ===

/// `stowage serve --components webhook` with the example config and the test's certificate
/// directory (reloaded every 200 ms), as a supervised process.
async fn start_stowage(cp: &ControlPlane, tls_dir: &Path, log: &Path) -> anyhow::Result<StowageProcess> {
    let args = StowageArgs::new(Path::new(env!("CARGO_BIN_EXE_stowage")), "webhook")
        .env("RUST_LOG", "info,stowage_webhook=debug")
        .kubeconfig(cp.kubeconfig_path())
        .tls_dir(tls_dir)
        .config(&example_config())
        .arg("--reload-interval=200ms")
        .arg("--webhook-timeout=5s");
    StowageProcess::start(&args, log).await
}

// === a test's environment ===

/// One test's stowage process, certificate directory and webhook registrations.
struct Env {
    /// First, so it is killed before its directory is removed.
    stowage: StowageProcess,
    cp: ControlPlane,
    client: kube::Client,
    /// Unique per test: the namespace label value and the base of every name.
    id: String,
    dir: tempfile::TempDir,
    certs: SecretVolume,
    /// The MutatingWebhookConfigurations created (deleted at the end of a passing test).
    configurations: Mutex<Vec<String>>,
}

impl Env {
    async fn start(prefix: &str) -> Self {
        let cp = ControlPlane::shared().await.expect("control plane");
        let client = cp.client();
        ensure_priority_class(&client).await;
        let id = unique_name(prefix);
        let dir = tempfile::Builder::new().prefix("stowage-webhook-e2e-").tempdir().expect("temp dir");
        let cert = cp.issue_serving_cert(&["127.0.0.1"]).expect("serving certificate");
        let certs = SecretVolume::create(&dir.path().join("tls"), &cert);
        let stowage = start_stowage(&cp, &certs.dir, &dir.path().join("stowage.log"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));
        Self { stowage, cp, client, id, dir, certs, configurations: Mutex::new(Vec::new()) }
    }

    /// The stowage log tail and the control plane's state, for failure messages.
    fn diag(&self) -> String {
        format!("{}\n{}", self.stowage.log_tail(LOG_LINES), self.cp.diagnostics())
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{what}\n{}", self.diag())
    }

    /// The stowage webhook's own URL.
    fn url(&self) -> String {
        format!("https://{}/mutate", self.stowage.webhook)
    }

    /// The name of the stowage webhook in the standard registration (also its apiserver metric label).
    fn webhook_name(&self) -> String {
        format!("{}.pods.stowage.io", self.id)
    }

    /// Registers stowage at `url` for this test's namespaces, as the manifest does.
    async fn register(&self, url: &str) {
        let selector = json!({"matchLabels": {SUITE_LABEL: self.id}});
        self.register_webhook(&format!("stowage-e2e-{}", self.id), &self.webhook_name(), url, selector, None).await;
    }

    /// Creates a MutatingWebhookConfiguration from the manifest's webhook, with this name, URL,
    /// namespace selector and (optionally) another reinvocation policy.
    async fn register_webhook(
        &self,
        configuration: &str,
        webhook: &str,
        url: &str,
        namespace_selector: Value,
        reinvocation: Option<&str>,
    ) {
        let object =
            webhook_configuration(configuration, webhook, url, self.cp.ca_pem(), namespace_selector, reinvocation);
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| self.fail(format!("creating MutatingWebhookConfiguration {configuration}: {e}")));
        self.configurations.lock().expect("lock").push(configuration.to_owned());
    }

    /// A namespace labelled for this test's webhooks, plus `labels`.
    async fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        let mut all = vec![(SUITE_LABEL, self.id.as_str())];
        all.extend_from_slice(labels);
        namespace_with_labels(&self.client, prefix, &all).await.unwrap_or_else(|e| self.fail(format!("{e:#}")))
    }

    /// Waits until the apiserver calls the webhook for `namespace`: a dry-run create of an opted-in
    /// probe pod comes back mutated.
    async fn wait_active(&self, namespace: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let probe = opted_in_pod(namespace, "probe", "probe");
        let dry_run = PostParams { dry_run: true, ..PostParams::default() };
        let started = Instant::now();
        poll_until(
            &format!("the webhook to mutate a dry-run probe pod in {namespace}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let created = api.create(&dry_run, &probe).await?;
                Ok(is_mutated_default_profile(&to_value(&created), "probe").then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| self.fail(format!("{e:#}")));
        eprintln!("[e2e_webhook] {}: webhook active for {namespace} after {:.1?}", self.id, started.elapsed());
    }

    async fn create_value(&self, pod: &Value) -> Result<Value, kube::Error> {
        let ns = text(pod, "/metadata/namespace").expect("pod namespace");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let typed: Pod = serde_json::from_value(pod.clone()).expect("a valid pod");
        api.create(&PostParams::default(), &typed).await.map(|p| to_value(&p))
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Value {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = api.get(name).await.unwrap_or_else(|e| self.fail(format!("getting pod {namespace}/{name}: {e}")));
        to_value(&pod)
    }

    /// Sum of the apiserver's metric `name` for `webhook`.
    async fn apiserver_metric(&self, name: &str, webhook: &str) -> f64 {
        let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
        let text = self
            .client
            .request_text(request)
            .await
            .unwrap_or_else(|e| self.fail(format!("reading the apiserver's /metrics: {e}")));
        metric_sum(&text, name, &[&format!("name=\"{webhook}\"")])
    }

    async fn stowage_metrics(&self) -> String {
        self.stowage.metrics().await.unwrap_or_else(|e| self.fail(format!("{e:#}")))
    }

    /// Runs `stowage` with `args`: exit code, stdout, stderr.
    async fn stowage_cli(&self, args: Vec<String>) -> (i32, String, String) {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_stowage")).args(&args).output()
        })
        .await
        .expect("join")
        .expect("running stowage");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Deletes the webhook configurations (pods and namespaces stay: no controllers run).
    async fn finish(self) {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let names = std::mem::take(&mut *self.configurations.lock().expect("lock"));
        for name in names {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }
}

async fn ensure_priority_class(client: &kube::Client) {
    let class: PriorityClass = serde_json::from_value(json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS},
        "value": PRIORITY,
        "description": "Replicated databases (stowage e2e)",
    }))
    .expect("PriorityClass");
    match Api::<PriorityClass>::all(client.clone()).create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating PriorityClass {PRIORITY_CLASS}: {e}"),
    }
}

/// The manifest's webhook, pointed at `url` with a CA bundle, renamed and scoped to
/// `namespace_selector`.
fn webhook_configuration(
    configuration: &str,
    webhook: &str,
    url: &str,
    ca_pem: &str,
    namespace_selector: Value,
    reinvocation: Option<&str>,
) -> MutatingWebhookConfiguration {
    let manifest = read_yaml(&repo_file("manifests/base/mutating-webhook.yaml"));
    let mut hook = manifest["webhooks"][0].clone();
    assert!(hook["matchConditions"].is_array(), "the manifest's webhook has matchConditions: {hook:#}");
    hook["name"] = json!(webhook);
    hook["clientConfig"] = json!({"url": url, "caBundle": STANDARD.encode(ca_pem)});
    hook["namespaceSelector"] = namespace_selector;
    hook["timeoutSeconds"] = json!(WEBHOOK_TIMEOUT_SECONDS);
    if let Some(policy) = reinvocation {
        hook["reinvocationPolicy"] = json!(policy);
    }
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": configuration},
        "webhooks": [hook],
    }))
    .expect("a valid MutatingWebhookConfiguration")
}

/// Checks the example pod as stored after admission: what the `postgres` profile asks for.
fn assert_example_pod_mutated(stored: &Value, env: &Env) {
    let context = || format!("stored pod:\n{stored:#}\n{}", env.diag());
    let expect = [("postgres", "4", "4Gi"), ("exporter", "1", "128Mi")];
    for (name, cpu, memory) in expect {
        let resources = &container(stored, name)["resources"];
        let want = json!({"cpu": cpu, "memory": memory});
        assert_eq!(resources["requests"], want, "container {name} requests\n{}", context());
        assert_eq!(resources["limits"], want, "container {name} limits\n{}", context());
    }
    for c in stored["spec"]["containers"].as_array().into_iter().flatten() {
        let resources = &c["resources"];
        assert_eq!(resources["requests"], resources["limits"], "requests == limits for {}\n{}", c["name"], context());
        let cpu = resources["requests"]["cpu"].as_str().unwrap_or_default();
        assert!(cpu.parse::<u64>().is_ok(), "integer cpu for {}: {cpu:?}\n{}", c["name"], context());
    }
    assert_eq!(text(stored, "/status/qosClass"), Some("Guaranteed"), "qosClass\n{}", context());
    assert_eq!(text(stored, "/metadata/labels/stowage.io~1group"), Some("pg-main"), "group label\n{}", context());
    let anti = &stored["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(
        anti,
        &json!([{"labelSelector": {"matchLabels": {GROUP: "pg-main"}}, "topologyKey": "kubernetes.io/hostname"}]),
        "required pod anti-affinity\n{}",
        context()
    );
    assert_eq!(
        stored["spec"]["topologySpreadConstraints"],
        json!([{
            "labelSelector": {"matchLabels": {GROUP: "pg-main"}},
            "maxSkew": 1,
            "minDomains": 3,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
        }]),
        "zone spread\n{}",
        context()
    );
    assert_eq!(text(stored, "/spec/priorityClassName"), Some(PRIORITY_CLASS), "priorityClassName\n{}", context());
    // The Priority admission plugin resolved the class set by the webhook: the defaulted
    // `spec.priority: 0` was removed by the webhook, or the plugin would have refused the pod.
    assert_eq!(stored["spec"]["priority"], json!(PRIORITY), "spec.priority\n{}", context());
    assert_eq!(text(stored, "/spec/schedulerName"), Some("stowage"), "schedulerName\n{}", context());
}

/// A raw create, to see the response's `Warning` headers: status, warnings, body.
async fn create_with_warnings(client: &kube::Client, pod: &Value) -> (u16, Vec<String>, Value) {
    let ns = text(pod, "/metadata/namespace").expect("pod namespace");
    let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(pod).expect("json")))
        .expect("request");
    let response = client.send(request).await.expect("sending the create");
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let body = response.into_body().collect_bytes().await.expect("response body");
    (status, warnings, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

// === 1. stored pods are mutated as the policy says ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_pods_are_stored_mutated_as_the_policy_says() {
    let env = Env::start("mutated").await;
    env.register(&env.url()).await;
    let ns = env.namespace("mutated", &[]).await;
    env.wait_active(&ns).await;

    let (status, warnings, body) = create_with_warnings(&env.client, &example_pod(&ns)).await;
    assert_eq!(status, 201, "create: {body:#}\n{}", env.diag());
    // The webhook's warnings reach the client as `Warning: 299 - "..."` headers.
    for expected in [
        "container postgres: raised cpu request 1500m to 4 for Guaranteed QoS",
        "container postgres: raised memory request 2Gi to 4Gi for Guaranteed QoS",
        "container exporter: added requests cpu=1 memory=128Mi, limits cpu=1 memory=128Mi",
        "rounded cpu of container exporter from 100m to 1",
        "added required pod anti-affinity on kubernetes.io/hostname",
        "added zone spread on topology.kubernetes.io/zone (DoNotSchedule, minDomains 3)",
        "set priorityClassName database-critical (cleared the defaulted spec.priority)",
        "set schedulerName stowage",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with("299 - \"") && w.contains(expected)),
            "warning {expected:?} missing from {warnings:#?}\n{}",
            env.diag()
        );
    }

    let stored = env.get_pod(&ns, EXAMPLE_POD).await;
    assert_example_pod_mutated(&stored, &env);
    env.finish().await;
}

// === 2. `stowage mutate` prints the patch the live webhook applies ===

/// The review the apiserver sent for `name` (not a dry run) through `proxy`, in order of arrival.
fn reviews_of(proxy: &RecordingProxy, name: &str) -> Vec<(Exchange, Value)> {
    proxy
        .exchanges()
        .into_iter()
        .filter_map(|e| {
            let review = e.request_json().ok()?;
            let request = &review["request"];
            (request["name"] == name && request["dryRun"] != true).then_some((e, review))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mutate_command_prints_the_patch_the_live_webhook_applies() {
    let env = Env::start("parity").await;
    let proxy_cert = env.cp.issue_serving_cert(&["127.0.0.1"]).expect("proxy certificate");
    let proxy =
        RecordingProxy::start(Upstream::https(env.stowage.webhook, env.cp.ca_pem()), ProxyOptions::tls(proxy_cert))
            .await
            .expect("recording proxy");
    env.register(&format!("{}/mutate", proxy.url())).await;
    let ns = env.namespace("parity", &[]).await;
    env.wait_active(&ns).await;

    let file_pod = example_pod(&ns);
    env.create_value(&file_pod).await.unwrap_or_else(|e| env.fail(format!("creating the example pod: {e}")));
    let stored = env.get_pod(&ns, EXAMPLE_POD).await;
    let calls = reviews_of(&proxy, EXAMPLE_POD);
    assert!(!calls.is_empty(), "no review of {EXAMPLE_POD} went through the proxy\n{}", env.diag());

    // The first call mutates; a later one is the apiserver's reinvocation (reinvocationPolicy
    // IfNeeded: the in-tree Priority plugin, re-run after the mutation, set `spec.priority` from
    // the new class), and must find nothing left to do.
    let mut first: Option<(Value, AdmissionResponse)> = None;
    for (i, (exchange, review)) in calls.iter().enumerate() {
        assert_eq!(exchange.status, 200, "review #{i}: {exchange:?}\n{}", env.diag());
        let answer = exchange.response_json().expect("JSON response");
        if answer["response"].get("patch").is_some() {
            // The documented wire format: a base64 string with its type, not a byte array.
            assert!(answer["response"]["patch"].is_string(), "base64 patch: {answer:#}");
            assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer:#}");
        }
        let response: AdmissionResponse =
            serde_json::from_value(answer["response"].clone()).expect("a valid AdmissionReview response");
        assert_eq!(response.uid, review["request"]["uid"].as_str().unwrap_or_default(), "uid echoed");
        assert!(response.allowed, "review #{i} allowed: {answer:#}");
        if i == 0 {
            assert!(response.operations() > 0, "the first review must carry the patch: {answer:#}");
            first = Some((review.clone(), response));
        } else {
            assert_eq!(response.operations(), 0, "re-admitting the mutated pod yields no patch: {answer:#}");
        }
    }
    let (review, live) = first.expect("a first review");
    let live_patch = to_value(live.patch.as_ref().expect("patch"));
    eprintln!("[e2e_webhook] {} reviews of {EXAMPLE_POD}; live patch: {live_patch}", calls.len());
    // What the apiserver did to the file before calling webhooks (defaulting and the in-tree
    // mutating admission plugins), for the record.
    let object = &review["request"]["object"];
    let defaults = json_patch::diff(&file_pod, object);
    eprintln!("[e2e_webhook] the apiserver changed the pod file before the webhook: {}", to_value(&defaults));
    assert_eq!(object["spec"]["priority"], json!(0), "the Priority plugin ran before the webhook: {object:#}");
    assert!(
        live_patch.as_array().is_some_and(|ops| ops.contains(&json!({"op": "remove", "path": "/spec/priority"}))),
        "the live patch removes the defaulted spec.priority: {live_patch}"
    );

    // The captured review, fed to the offline command, gives exactly the same patch: the same
    // operations in the same order.
    let review_file = env.dir.path().join("captured-review.json");
    std::fs::write(&review_file, &calls[0].0.request_body).expect("writing the captured review");
    let config = example_config().display().to_string();
    let (code, out, err) = env
        .stowage_cli(vec![
            "mutate".into(),
            "--pod".into(),
            review_file.display().to_string(),
            "--config".into(),
            config.clone(),
        ])
        .await;
    assert_eq!(code, 0, "stowage mutate on the captured review failed: {out}{err}");
    let printed: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("mutate output is not JSON ({e}): {out}"));
    assert_eq!(printed, live_patch, "stowage mutate vs the live webhook, on the same AdmissionReview");

    // The pod file as written (before apiserver defaulting) gets a different patch, because the
    // apiserver adds defaults before any webhook runs: e.g. the exporter arrives with
    // `resources: {}` (so the live patch adds into it while the file's patch adds it whole) and
    // with `spec.priority: 0` (which only the live patch removes). The resulting pod is the same.
    let (code, out, err) = env
        .stowage_cli(vec![
            "mutate".into(),
            "--pod".into(),
            repo_file("examples/pod.yaml").display().to_string(),
            "--config".into(),
            config,
        ])
        .await;
    assert_eq!(code, 0, "stowage mutate on examples/pod.yaml failed: {out}{err}");
    let file_patch: json_patch::Patch = serde_json::from_str(&out).expect("a JSON patch");
    assert_ne!(to_value(&file_patch), live_patch, "the paths differ for a hand-written file");
    let mut offline = file_pod.clone();
    json_patch::patch(&mut offline, &file_patch).expect("the file's patch applies to the file");
    for name in ["postgres", "exporter"] {
        assert_eq!(
            container(&offline, name)["resources"],
            container(&stored, name)["resources"],
            "container {name} resources: offline vs stored"
        );
    }
    for pointer in [
        "/metadata/labels",
        "/spec/affinity",
        "/spec/topologySpreadConstraints",
        "/spec/priorityClassName",
        "/spec/schedulerName",
    ] {
        assert_eq!(offline.pointer(pointer), stored.pointer(pointer), "{pointer}: offline vs stored\n{stored:#}");
    }
    assert_example_pod_mutated(&stored, &env);
    env.finish().await;
}

// === 3. label patches on an existing opted-in pod still work ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_annotation_patches_on_an_opted_in_pod_still_work() {
    let env = Env::start("patch").await;
    env.register(&env.url()).await;
    let ns = env.namespace("patch", &[]).await;
    env.wait_active(&ns).await;
    env.create_value(&example_pod(&ns)).await.unwrap_or_else(|e| env.fail(format!("creating the pod: {e}")));
    let before = env.get_pod(&ns, EXAMPLE_POD).await;
    let reviews_before = metric_sum(&env.stowage_metrics().await, "stowage_admission_reviews_total", &[]);

    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let merge = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}, "annotations": {"note": "edited"}}}));
    let patched = api
        .patch(EXAMPLE_POD, &PatchParams::default(), &merge)
        .await
        .unwrap_or_else(|e| env.fail(format!("merge-patching labels of an opted-in pod: {e}")));
    let patched = to_value(&patched);
    assert_eq!(text(&patched, "/metadata/labels/touched"), Some("yes"));
    assert_eq!(text(&patched, "/metadata/annotations/note"), Some("edited"));
    assert_eq!(patched["spec"]["containers"], before["spec"]["containers"], "containers unchanged");
    assert_eq!(patched["spec"]["affinity"], before["spec"]["affinity"], "affinity unchanged");
    // CREATE only: the update was never sent to the webhook.
    let reviews_after = metric_sum(&env.stowage_metrics().await, "stowage_admission_reviews_total", &[]);
    assert_eq!(reviews_after, reviews_before, "the webhook saw the UPDATE\n{}", env.diag());
    env.finish().await;
}

// === 4. server-side dry run ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_dry_run_returns_the_mutated_pod_and_stores_nothing() {
    let env = Env::start("dryrun").await;
    env.register(&env.url()).await;
    let ns = env.namespace("dryrun", &[]).await;
    env.wait_active(&ns).await;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);

    let typed: Pod = serde_json::from_value(example_pod(&ns)).expect("pod");
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let answered = api.create(&dry_run, &typed).await.unwrap_or_else(|e| env.fail(format!("dry-run create: {e}")));
    assert_example_pod_mutated(&to_value(&answered), &env);
    assert!(api.get_opt(EXAMPLE_POD).await.expect("get").is_none(), "a dry run stored the pod");

    // The same through kubectl.
    let file = env.dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_string(&example_pod(&ns)).expect("json")).expect("writing the pod file");
    let mut kubectl = env.cp.kubectl().expect("kubectl");
    kubectl.args(["create", "--dry-run=server", "-o", "yaml", "-f"]).arg(&file);
    let out = tokio::task::spawn_blocking(move || kubectl.output()).await.expect("join").expect("running kubectl");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubectl create --dry-run=server failed: {stdout}{stderr}\n{}", env.diag());
    let printed: Value = serde_saphyr::from_str(&stdout).expect("kubectl printed YAML");
    assert_example_pod_mutated(&printed, &env);
    assert!(stderr.contains("Warning: set schedulerName stowage"), "kubectl shows the webhook's warnings: {stderr}");
    assert!(api.get_opt(EXAMPLE_POD).await.expect("get").is_none(), "kubectl's dry run stored the pod");

    let metrics = env.stowage_metrics().await;
    let dry = metric_series(&metrics, "stowage_admission_reviews_total{outcome=\"mutated\",dry_run=\"true\"}");
    assert!(dry.is_some_and(|n| n >= 2.0), "dry runs are labelled as such: {dry:?}\n{metrics}");
    let wet = metric_series(&metrics, "stowage_admission_reviews_total{outcome=\"mutated\",dry_run=\"false\"}");
    assert_eq!(wet, Some(0.0), "no real create happened\n{metrics}");
    env.finish().await;
}

// === 5. an invalid policy annotation is denied precisely ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_annotation_is_denied_with_a_precise_message() {
    let env = Env::start("denied").await;
    env.register(&env.url()).await;
    let ns = env.namespace("denied", &[]).await;
    env.wait_active(&ns).await;

    let mut bad = example_pod(&ns);
    bad["metadata"]["annotations"]["stowage.io/quorum"] = json!("rack");
    match env.create_value(&bad).await {
        Err(kube::Error::Api(status)) => {
            let message = &status.message;
            eprintln!("[e2e_webhook] {}: the apiserver answered {}: {message}", env.id, status.code);
            assert_eq!(status.code, 400, "{status:?}");
            for part in [
                format!("admission webhook \"{}\" denied the request", env.webhook_name()),
                "stowage.io/quorum".to_owned(),
                "\"rack\"".to_owned(),
                "allowed values: zone, off".to_owned(),
            ] {
                assert!(message.contains(&part), "{part:?} missing from the apiserver's message: {message}");
            }
        }
        other => env.fail(format!("expected a denial, got {other:?}")),
    }
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    assert!(api.get_opt(EXAMPLE_POD).await.expect("get").is_none(), "a denied pod was stored");
    env.finish().await;
}

// === 6. certificate rotation under load loses no admission ===

/// Creates opted-in pods until told to stop; records names created and errors.
fn spawn_creator(
    client: kube::Client,
    ns: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    created: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, &ns);
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let name = format!("rot-{worker}-{i}");
            i += 1;
            match api.create(&PostParams::default(), &opted_in_pod(&ns, &name, "rotation")).await {
                Ok(_) => created.lock().expect("lock").push(name),
                Err(e) => errors.lock().expect("lock").push(format!("{name}: {e}")),
            }
        }
    })
}

/// Client ports of the established TCP connections to 127.0.0.1:`port`, seen from the server
/// side in `/proc/net/tcp`; `None` where that file cannot be read.
fn connections_to(port: u16) -> Option<std::collections::HashSet<u16>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let hex_port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    Some(
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
                (hex_port(local)? == port && *state == "01").then(|| hex_port(remote)).flatten()
            })
            .collect(),
    )
}

/// Samples the connections to `port` until `stop`, into `before` until `switched` is set, then
/// into `after`.
#[derive(Default)]
struct ConnectionLog {
    before: Mutex<std::collections::HashSet<u16>>,
    after: Mutex<std::collections::HashSet<u16>>,
    switched: AtomicBool,
}

impl ConnectionLog {
    fn sample(&self, port: u16) {
        let Some(now) = connections_to(port) else { return };
        let into = if self.switched.load(Ordering::Acquire) { &self.after } else { &self.before };
        into.lock().expect("lock").extend(now);
    }

    /// Takes a last sample into `before`, then sends later samples to `after`.
    fn switch(&self, port: u16) {
        self.sample(port);
        self.switched.store(true, Ordering::Release);
    }

    /// Connections first seen after the switch: they were opened (and so handshaken) after it.
    fn opened_after_switch(&self) -> usize {
        let before = self.before.lock().expect("lock");
        self.after.lock().expect("lock").difference(&before).count()
    }
}

/// Waits until `created` holds `n` names; fails at once when a create failed.
async fn wait_for_count(
    created: &Mutex<Vec<String>>,
    errors: &Mutex<Vec<String>>,
    n: usize,
    what: &str,
) -> anyhow::Result<()> {
    let timeout = scaled(Duration::from_secs(120));
    let started = Instant::now();
    loop {
        if let Some(e) = errors.lock().expect("lock").first() {
            anyhow::bail!("a create failed while waiting for {what}: {e}");
        }
        let have = created.lock().expect("lock").len();
        if have >= n {
            return Ok(());
        }
        if started.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {have} of {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_symlink_swap_under_load_loses_no_admission() {
    const CREATORS: usize = 3;
    const BEFORE: usize = 15;
    const AFTER: usize = 30;
    let mut env = Env::start("rotation").await;
    env.register(&env.url()).await;
    let ns = env.namespace("rotation", &[]).await;
    env.wait_active(&ns).await;
    let webhook = env.webhook_name();
    let fail_open_before = env.apiserver_metric("apiserver_admission_webhook_fail_open_count", &webhook).await;
    let rejections_before = env.apiserver_metric("apiserver_admission_webhook_rejection_count", &webhook).await;

    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (client, creators_ns) = (env.client.clone(), ns.clone());
    let spawn = |worker| {
        spawn_creator(client.clone(), creators_ns.clone(), worker, stop.clone(), created.clone(), errors.clone())
    };
    let mut creators: Vec<_> = (0..CREATORS).map(spawn).collect();
    let webhook_port = env.stowage.webhook.port();
    let connections = Arc::new(ConnectionLog::default());
    let sampler = {
        let (connections, stop) = (connections.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                connections.sample(webhook_port);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let count = || created.lock().expect("lock").len();
    wait_for_count(&created, &errors, BEFORE, "pods created before the rotation")
        .await
        .unwrap_or_else(|e| env.fail(format!("{e:#}")));

    // Rotate: same CA, new key and serial, different SAN set, by the kubelet's `..data` swap.
    let rotated = env.cp.issue_serving_cert(&["127.0.0.1", "localhost", "stowage-webhook.rotated.test"]).expect("cert");
    let rotated_der = pem_to_der(&rotated.cert_pem).expect("DER");
    let original_der = served_certificate(env.stowage.webhook, env.cp.ca_pem(), "127.0.0.1").await.expect("served");
    assert_ne!(original_der, rotated_der);
    let swapped = Instant::now();
    env.certs.publish(&rotated);
    let (webhook_addr, ca) = (env.stowage.webhook, env.cp.ca_pem().to_owned());
    poll_until("stowage to serve the rotated certificate", Duration::from_secs(30), Duration::from_millis(50), || {
        let (ca, rotated_der) = (ca.clone(), rotated_der.clone());
        async move { Ok((served_certificate(webhook_addr, &ca, "127.0.0.1").await? == rotated_der).then_some(())) }
    })
    .await
    .unwrap_or_else(|e| env.fail(format!("{e:#}")));
    connections.switch(webhook_port);
    let switched_at = count();
    eprintln!(
        "[e2e_webhook] {}: new certificate served {:.1?} after the swap, {switched_at} pods created so far",
        env.id,
        swapped.elapsed()
    );
    let metrics = env.stowage_metrics().await;
    let reloads = |result| metric_sum(&metrics, "stowage_tls_cert_reloads_total", &[&format!("result=\"{result}\"")]);
    assert!(reloads("success") >= 1.0, "a successful reload is counted\n{metrics}");
    assert_eq!(reloads("failure"), 0.0, "an atomic swap never shows a half-written pair\n{metrics}");

    // More creators than before, so the apiserver has to open new connections (only new TLS
    // handshakes see the new certificate; kept-alive ones still use the old one, by design).
    creators.extend((CREATORS..2 * CREATORS).map(spawn));
    wait_for_count(&created, &errors, switched_at + AFTER, "pods created after the rotation")
        .await
        .unwrap_or_else(|e| env.fail(format!("{e:#}")));
    if connections_to(webhook_port).is_some() {
        // Keep creating until the apiserver has opened a connection since the switch: kept-alive
        // connections go on with the certificate they were opened with, so only a new one proves
        // the apiserver accepts the rotated certificate.
        poll_until(
            "the apiserver to open a connection after the rotation",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || async { Ok((connections.opened_after_switch() > 0).then_some(())) },
        )
        .await
        .unwrap_or_else(|e| env.fail(format!("{e:#}")));
    }
    stop.store(true, Ordering::Relaxed);
    for creator in creators {
        creator.await.expect("creator task");
    }
    sampler.await.expect("sampler task");
    let errors = errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "creates failed: {errors:#?}\n{}", env.diag());

    // failurePolicy is Ignore: a failed call would have created an unmutated pod. Check them all.
    let names = created.lock().expect("lock").clone();
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let stored = api.list(&ListParams::default()).await.expect("listing pods").items;
    assert_eq!(stored.len(), names.len(), "every created pod is stored");
    let unmutated: Vec<String> = stored
        .iter()
        .map(to_value)
        .filter(|p| !is_mutated_default_profile(p, "rotation"))
        .map(|p| text(&p, "/metadata/name").unwrap_or_default().to_owned())
        .collect();
    assert!(
        unmutated.is_empty(),
        "{} of {} pods unmutated: {unmutated:?}\n{}",
        unmutated.len(),
        names.len(),
        env.diag()
    );

    let fail_open = env.apiserver_metric("apiserver_admission_webhook_fail_open_count", &webhook).await;
    let rejections = env.apiserver_metric("apiserver_admission_webhook_rejection_count", &webhook).await;
    assert_eq!(fail_open, fail_open_before, "the apiserver failed open on {webhook}\n{}", env.diag());
    assert_eq!(rejections, rejections_before, "the apiserver rejected calls to {webhook}\n{}", env.diag());
    let fresh = connections.opened_after_switch();
    eprintln!(
        "[e2e_webhook] {}: {} pods created across the rotation, all mutated; {fresh} connection(s) from the \
         apiserver opened after the switch ({} before)",
        env.id,
        names.len(),
        connections.before.lock().expect("lock").len()
    );

    env.finish().await;
}

// === 7. the webhook stopped: fail open, never block unrelated pods, resume after restart ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_pods_are_created_unmutated_and_mutation_resumes() {
    let mut env = Env::start("down").await;
    env.register(&env.url()).await;
    let ns = env.namespace("down", &[]).await;
    env.wait_active(&ns).await;
    let webhook = env.webhook_name();
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    const FAIL_OPEN: &str = "apiserver_admission_webhook_fail_open_count";

    env.stowage.kill();
    let before = env.apiserver_metric(FAIL_OPEN, &webhook).await;

    // Not opted in: matchConditions keep it away from the webhook entirely.
    let started = Instant::now();
    let plain = api
        .create(&PostParams::default(), &pod(&ns, "plain").build())
        .await
        .unwrap_or_else(|e| env.fail(format!("creating a pod without the annotation: {e}")));
    let plain_took = started.elapsed();
    assert_eq!(to_value(&plain)["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(
        env.apiserver_metric(FAIL_OPEN, &webhook).await,
        before,
        "a pod without the opt-in annotation was sent to the webhook"
    );

    // Opted in: the call fails (connection refused) and the pod is created unmutated.
    let started = Instant::now();
    let opted = api
        .create(&PostParams::default(), &opted_in_pod(&ns, "opted-in-down", "down"))
        .await
        .unwrap_or_else(|e| env.fail(format!("creating an opted-in pod with the webhook down: {e}")));
    let opted_took = started.elapsed();
    let opted = to_value(&opted);
    assert_eq!(text(&opted, "/spec/schedulerName"), Some("default-scheduler"), "unmutated: {opted:#}");
    assert_eq!(text(&opted, "/metadata/labels/stowage.io~1group"), None, "unmutated: {opted:#}");
    assert!(opted["spec"]["containers"][0]["resources"].as_object().is_none_or(|r| r.is_empty()), "{opted:#}");
    assert_eq!(
        env.apiserver_metric(FAIL_OPEN, &webhook).await,
        before + 1.0,
        "the opted-in pod failed open exactly once"
    );
    eprintln!("[e2e_webhook] {}: with the webhook down: plain pod {plain_took:.1?}, opted-in {opted_took:.1?}", env.id);
    let prompt = scaled(Duration::from_secs(5));
    assert!(plain_took < prompt && opted_took < prompt, "creates took {plain_took:?} / {opted_took:?}");

    env.stowage.restart().await.unwrap_or_else(|e| env.fail(format!("{e:#}")));
    env.wait_active(&ns).await;
    let back = api
        .create(&PostParams::default(), &opted_in_pod(&ns, "opted-in-up", "up"))
        .await
        .unwrap_or_else(|e| env.fail(format!("creating an opted-in pod after the restart: {e}")));
    assert!(is_mutated_default_profile(&to_value(&back), "up"), "mutation resumed: {:#}", to_value(&back));
    env.finish().await;
}

// === 8. reinvocation: a later webhook's sidecar still gets resources ===

/// What the injector saw on each (non dry-run) call.
#[derive(Clone, Debug)]
struct Injection {
    namespace: String,
    /// The pod already carried stowage's mutation when the injector saw it.
    after_stowage: bool,
}

#[derive(Clone, Default)]
struct Injector {
    seen: Arc<Mutex<Vec<Injection>>>,
}

const SIDECAR: &str = "injected-agent";

/// A second mutating webhook: appends a sidecar without resources to opted-in pods, once.
async fn inject(
    axum::extract::State(injector): axum::extract::State<Injector>,
    body: axum::body::Bytes,
) -> impl axum::response::IntoResponse {
    let json = [(http::header::CONTENT_TYPE, "application/json")];
    let request = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return (http::StatusCode::BAD_REQUEST, json, e.to_string()),
    };
    let object = request.object.clone().unwrap_or_default();
    let has_sidecar = object["spec"]["containers"].as_array().is_some_and(|cs| cs.iter().any(|c| c["name"] == SIDECAR));
    if !request.is_dry_run() {
        injector.seen.lock().expect("lock").push(Injection {
            namespace: request.namespace.clone().unwrap_or_default(),
            after_stowage: object["spec"]["schedulerName"] == "stowage",
        });
    }
    let mut response = AdmissionResponse::allow(&request.uid);
    if !has_sidecar {
        let patch = json!([{"op": "add", "path": "/spec/containers/-",
                            "value": {"name": SIDECAR, "image": "registry.invalid/stowage-test/agent:1"}}]);
        response = response.with_patch(serde_json::from_value(patch).expect("patch"));
    }
    (http::StatusCode::OK, json, serde_json::to_string(&AdmissionReview::from_response(response)).expect("json"))
}

/// Serves the injector over TLS on 127.0.0.1 until dropped.
struct InjectorServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for InjectorServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_injector(env: &Env, injector: Injector) -> InjectorServer {
    let dir = env.dir.path().join("injector-tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = env.cp.issue_serving_cert(&["127.0.0.1"]).expect("injector certificate");
    std::fs::write(dir.join("tls.crt"), &cert.cert_pem).expect("tls.crt");
    std::fs::write(dir.join("tls.key"), &cert.key_pem).expect("tls.key");
    let resolver = stowage_certs::ReloadingCert::load(stowage_certs::CertPaths::in_dir(&dir)).expect("injector cert");
    let tls = stowage_certs::server_config(Arc::new(resolver), None).expect("TLS config");
    let app = axum::Router::new().route("/inject", axum::routing::post(inject)).with_state(injector);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(stowage_edge::serve_tls(
        listener,
        tls,
        app,
        stowage_edge::ServeOptions::default(),
        std::future::pending(),
    ));
    InjectorServer { addr, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_injected_by_a_later_webhook_gets_resources_through_reinvocation() {
    let env = Env::start("reinvoke").await;
    let injector = Injector::default();
    let server = start_injector(&env, injector.clone()).await;
    let injector_url = format!("https://{}/inject", server.addr);
    let id = env.id.clone();

    // Mutating webhooks are called in the order of their configurations' names: `0-...` before
    // `stowage-e2e-...` before `zz-...`. The injector records which order actually happened.
    let suite = |extra: Value| {
        let mut labels = json!({SUITE_LABEL: id});
        labels.as_object_mut().expect("map").extend(extra.as_object().expect("map").clone());
        json!({"matchLabels": labels})
    };
    env.register_webhook(
        &format!("stowage-e2e-{id}"),
        &env.webhook_name(),
        &env.url(),
        suite(json!({"stowage": "if-needed"})),
        None,
    )
    .await;
    env.register_webhook(
        &format!("stowage-e2e-{id}-never"),
        &format!("{id}.never.pods.stowage.io"),
        &env.url(),
        suite(json!({"stowage": "never"})),
        Some("Never"),
    )
    .await;
    env.register_webhook(
        &format!("0-inject-{id}"),
        &format!("{id}.first.inject.stowage.io"),
        &injector_url,
        suite(json!({"order": "first"})),
        Some("Never"),
    )
    .await;
    env.register_webhook(
        &format!("zz-inject-{id}"),
        &format!("{id}.last.inject.stowage.io"),
        &injector_url,
        suite(json!({"order": "last"})),
        Some("Never"),
    )
    .await;
    let first = env.namespace("reinvoke-first", &[("stowage", "if-needed"), ("order", "first")]).await;
    let last = env.namespace("reinvoke-last", &[("stowage", "if-needed"), ("order", "last")]).await;
    let never = env.namespace("reinvoke-never", &[("stowage", "never"), ("order", "last")]).await;

    // Active when a dry run shows both webhooks' work.
    for ns in [&first, &last, &never] {
        let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        let typed: Pod = serde_json::from_value(example_pod(ns)).expect("pod");
        let dry_run = PostParams { dry_run: true, ..PostParams::default() };
        poll_until(
            &format!("both webhooks to act in {ns}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let (api, typed, dry_run) = (api.clone(), typed.clone(), dry_run.clone());
                async move {
                    let pod = to_value(&api.create(&dry_run, &typed).await?);
                    let injected =
                        pod["spec"]["containers"].as_array().is_some_and(|cs| cs.iter().any(|c| c["name"] == SIDECAR));
                    Ok((injected && text(&pod, "/spec/schedulerName") == Some("stowage")).then_some(()))
                }
            },
        )
        .await
        .unwrap_or_else(|e| env.fail(format!("{e:#}")));
    }

    let mut stored = Vec::new();
    for ns in [&first, &last, &never] {
        env.create_value(&example_pod(ns)).await.unwrap_or_else(|e| env.fail(format!("creating in {ns}: {e}")));
        stored.push(env.get_pod(ns, EXAMPLE_POD).await);
    }
    let seen = injector.seen.lock().expect("lock").clone();
    let saw = |ns: &str| -> Vec<bool> { seen.iter().filter(|s| s.namespace == ns).map(|s| s.after_stowage).collect() };
    let sidecar = |pod: &Value| container(pod, SIDECAR)["resources"].clone();
    let guaranteed = json!({"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "128Mi"}});

    // Injector first: stowage sees the sidecar on its first call (no reinvocation needed).
    assert_eq!(saw(&first), vec![false], "the `0-` injector ran before stowage\n{}", env.diag());
    assert_eq!(sidecar(&stored[0]), guaranteed, "sidecar injected first:\n{:#}", stored[0]);
    assert_eq!(text(&stored[0], "/status/qosClass"), Some("Guaranteed"));

    // Injector last: it saw stowage's output, so only a reinvocation of stowage can have given
    // the sidecar its resources.
    assert_eq!(saw(&last), vec![true], "the `zz-` injector ran after stowage\n{}", env.diag());
    assert_eq!(sidecar(&stored[1]), guaranteed, "sidecar injected last, stowage reinvoked:\n{:#}", stored[1]);
    assert_eq!(text(&stored[1], "/status/qosClass"), Some("Guaranteed"));

    // Control: the same order with `reinvocationPolicy: Never` leaves the sidecar bare, so the
    // pod is Burstable. This is what IfNeeded prevents.
    assert_eq!(saw(&never), vec![true], "the `zz-` injector ran after stowage (Never)\n{}", env.diag());
    // (The apiserver defaults the bare sidecar's `resources` to `{}` after the webhooks.)
    assert_eq!(sidecar(&stored[2]), json!({}), "no reinvocation, no resources:\n{:#}", stored[2]);
    assert_eq!(text(&stored[2], "/status/qosClass"), Some("Burstable"));
    drop(server);
    env.finish().await;
}

// === 9. the webhook's own metrics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_metrics_reflect_the_admissions() {
    let env = Env::start("metrics").await;
    env.register(&env.url()).await;
    let ns = env.namespace("metrics", &[]).await;
    env.wait_active(&ns).await;

    env.create_value(&example_pod(&ns)).await.unwrap_or_else(|e| env.fail(format!("creating the pod: {e}")));
    let mut bad = example_pod(&ns);
    bad["metadata"]["name"] = json!("bad");
    bad["metadata"]["annotations"]["stowage.io/zone-spread"] = json!("sometimes");
    assert!(env.create_value(&bad).await.is_err(), "the invalid pod was admitted");

    let metrics = env.stowage_metrics().await;
    let reviews = |outcome: &str, dry_run: &str| {
        metric_series(
            &metrics,
            &format!("stowage_admission_reviews_total{{outcome=\"{outcome}\",dry_run=\"{dry_run}\"}}"),
        )
    };
    assert_eq!(reviews("mutated", "false"), Some(1.0), "one real pod mutated\n{metrics}");
    assert_eq!(reviews("denied", "false"), Some(1.0), "one real pod denied\n{metrics}");
    assert!(reviews("mutated", "true").is_some_and(|n| n >= 1.0), "the dry-run probes\n{metrics}");
    assert_eq!(reviews("skipped", "false"), Some(0.0), "nothing unrelated was sent\n{metrics}");
    assert_eq!(metric_sum(&metrics, "stowage_admission_errors_total", &[]), 0.0, "no malformed calls\n{metrics}");
    let mutated_count = metric_series(&metrics, "stowage_admission_duration_seconds_count{outcome=\"mutated\"}");
    assert!(mutated_count.is_some_and(|n| n >= 2.0), "durations observed\n{metrics}");
    assert!(metric_sum(&metrics, "stowage_admission_patch_operations_total", &[]) >= 8.0, "{metrics}");
    let not_after = metric_sum(&metrics, "stowage_tls_cert_not_after_seconds", &["listener=\"serving\""]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(not_after > now, "the served certificate's expiry is exported: {not_after}\n{metrics}");
    env.finish().await;
}

// === helpers' own checks ===

#[test]
fn the_secret_volume_swaps_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let pair = |n: &str| CertPair { cert_pem: format!("cert {n}"), key_pem: format!("key {n}") };
    let mut volume = SecretVolume::create(&dir.path().join("tls"), &pair("1"));
    let read = |f: &str| std::fs::read_to_string(dir.path().join("tls").join(f)).unwrap();
    assert_eq!((read("tls.crt"), read("tls.key")), ("cert 1".to_owned(), "key 1".to_owned()));
    volume.publish(&pair("2"));
    assert_eq!((read("tls.crt"), read("tls.key")), ("cert 2".to_owned(), "key 2".to_owned()));
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("tls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 4, "..data, one payload dir, tls.crt, tls.key: {entries:?}");
}
