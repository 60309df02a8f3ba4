//! The install manifests end to end, against a real kube-apiserver.
//!
//! The README's install commands are run verbatim (`kubectl apply --server-side -k ...`, with
//! kubectl built at the tested Kubernetes version and cert-manager's real CRDs). Pods never run
//! (there is no kubelet), so the objects only have to be accepted; then each stowage component is
//! run as the ServiceAccount its manifests create, with a real token, to prove the RBAC is
//! **sufficient** (caches sync, pods get bound, events written, certificates installed) and
//! **least privilege** (requests outside what the code needs are refused).

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount},
    rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use stowage_fixtures::{StatefulSetBuilder, pod};
use stowage_testkit::{
    ControlPlane, Extender, Identity, SchedulerConfig, StowageArgs, StowageProcess, create, create_nodes, fake_node,
    namespace, poll_until, scaled, unique_name, wait_for_pod_bound, wait_for_pod_event,
};

const NS: &str = "stowage-system";
/// Lines of a stowage log in failure messages.
const LOG_LINES: usize = 60;
const OVERLAY_CERT_MANAGER: &str = "manifests/overlays/cert-manager";
const OVERLAY_STOWAGE_CERTS: &str = "manifests/overlays/stowage-certs";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn stowage_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

/// The `kubectl apply` commands of the README's "How it plugs into a cluster" section, as
/// argument lists (comments dropped).
fn readme_install_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let section = readme.split("## How it plugs into a cluster").nth(1).expect("the README has an install section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kubectl apply"))
        .map(|l| l.split('#').next().unwrap_or(l).split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The README command that applies `overlay`.
fn readme_command_for(overlay: &str) -> Vec<String> {
    readme_install_commands()
        .into_iter()
        .find(|c| c.iter().any(|a| a == overlay))
        .unwrap_or_else(|| panic!("the README's install section has no command for {overlay}"))
}

/// Runs `kubectl <args>` (admin kubeconfig) from the repository root.
fn kubectl(cp: &ControlPlane, args: &[String]) -> Output {
    let mut cmd = cp.kubectl().expect("kubectl");
    cmd.current_dir(repo(".")).args(args);
    cmd.output().expect("running kubectl")
}

fn expect_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stderr
}

/// Runs the README's install command for `overlay` and checks that the apiserver accepted every
/// object without a Pod Security warning (the namespace enforces `restricted`).
fn install(cp: &ControlPlane, overlay: &str) {
    let command = readme_command_for(overlay);
    assert_eq!(command[0], "kubectl");
    let stderr = expect_success(&command.join(" "), &kubectl(cp, &command[1..]));
    assert!(!stderr.contains("PodSecurity"), "the pod templates break the restricted Pod Security level:\n{stderr}");
}

async fn sa_kubeconfig(cp: &ControlPlane, name: &str) -> (PathBuf, kube::Client) {
    let token = cp.service_account_token(NS, name).await.expect("ServiceAccount token");
    let path = cp.write_kubeconfig(&format!("{name}.kubeconfig"), &Identity::Token(token.clone())).expect("kubeconfig");
    let client = cp.client_with_token(&token).await.expect("client");
    (path, client)
}

/// Asserts that `result` is a 403 from the apiserver.
fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a file");
    path
}

/// The `config.yaml` of the shipped `stowage-config` ConfigMap, as applied.
async fn shipped_config(client: &kube::Client, dir: &Path) -> PathBuf {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS).get("stowage-config").await.expect("stowage-config");
    let text = cm.data.as_ref().and_then(|d| d.get("config.yaml")).expect("config.yaml in stowage-config").clone();
    write_file(dir, "config.yaml", text.as_bytes())
}

#[test]
fn the_readme_installs_with_the_two_tested_overlays() {
    let commands: Vec<String> = readme_install_commands().iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        commands,
        vec![
            format!("kubectl apply --server-side -k {OVERLAY_CERT_MANAGER}"),
            format!("kubectl apply --server-side -k {OVERLAY_STOWAGE_CERTS}"),
        ],
        "the README's install commands changed: update this test (and what it applies) with them"
    );
}

#[tokio::test]
async fn cert_manager_overlay_is_accepted_with_cert_managers_real_crds() {
    let cp = ControlPlane::start().await.expect("control plane");
    let client = cp.client();
    // cert-manager's own CRDs, from its Go module (see scripts/control-plane.sh).
    let crds = String::from_utf8(
        std::process::Command::new(repo("scripts/control-plane.sh")).arg("print-crds").output().expect("script").stdout,
    )
    .expect("path");
    let crds = crds.trim();
    assert!(Path::new(crds).is_dir(), "cert-manager CRDs missing at {crds}: run scripts/control-plane.sh");
    expect_success(
        "applying cert-manager CRDs",
        &kubectl(&cp, &["apply".into(), "--server-side".into(), "-f".into(), crds.into()]),
    );
    expect_success(
        "waiting for the CRDs",
        &kubectl(
            &cp,
            &[
                "wait".into(),
                "--for=condition=established".into(),
                "--timeout=60s".into(),
                "crd/certificates.cert-manager.io".into(),
                "crd/issuers.cert-manager.io".into(),
            ],
        ),
    );

    install(&cp, OVERLAY_CERT_MANAGER);

    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone()).get("stowage").await.expect("webhook config");
    assert_eq!(
        mwc.metadata.annotations.as_ref().and_then(|a| a.get("cert-manager.io/inject-ca-from")).map(String::as_str),
        Some("stowage-system/stowage-webhook"),
        "cert-manager must be told to inject the CA"
    );
    let webhook = &mwc.webhooks.as_ref().expect("webhooks")[0];
    assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(webhook.side_effects, "None");
    assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(webhook.rules.as_ref().expect("rules")[0].operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    let certs = kubectl(
        &cp,
        &["get".into(), "certificates,issuers".into(), "-n".into(), NS.into(), "-o".into(), "name".into()],
    );
    let listed = expect_success("listing cert-manager objects", &certs);
    let names = String::from_utf8_lossy(&certs.stdout);
    for want in [
        "certificate.cert-manager.io/stowage-webhook",
        "certificate.cert-manager.io/stowage-ca",
        "issuer.cert-manager.io/stowage-ca",
    ] {
        assert!(names.contains(want), "{want} missing from:\n{names}{listed}");
    }
}

#[tokio::test]
async fn stowage_certs_overlay_rbac_is_sufficient_and_refuses_the_rest() {
    let cp = ControlPlane::start().await.expect("control plane");
    let admin = cp.client();
    let dir = tempfile::tempdir().expect("temp dir");
    install(&cp, OVERLAY_STOWAGE_CERTS);
    let config = shipped_config(&admin, dir.path()).await;

    // --- the certs Job's identity: install certificates, twice (idempotent) ---
    let (certs_kubeconfig, certs_client) = sa_kubeconfig(&cp, "stowage-certs").await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let certs_secrets: Api<Secret> = Api::namespaced(certs_client.clone(), NS);
    // The Job may create no Secret (RBAC cannot narrow `create` to a name).
    assert_forbidden(
        "certs: create a Secret",
        certs_secrets
            .create(&PostParams::default(), &Secret { metadata: meta("made-by-certs"), ..Secret::default() })
            .await,
    );
    // The overlay creates both Secrets, empty, for the Job to fill.
    for name in ["stowage-ca", "stowage-webhook-tls"] {
        let empty = secrets.get(name).await.unwrap_or_else(|e| panic!("the overlay creates Secret {name}: {e}"));
        assert!(empty.data.unwrap_or_default().is_empty(), "Secret {name} is created empty");
    }
    for round in 1..=2 {
        let out = std::process::Command::new(stowage_bin())
            .args(["certs", "install", &format!("--kubeconfig={}", certs_kubeconfig.display())])
            .output()
            .expect("stowage certs install");
        let stderr = expect_success(&format!("stowage certs install (round {round})"), &out);
        if round == 2 {
            assert_eq!(stderr.matches("is current").count(), 2, "the second run must change nothing:\n{stderr}");
        }
    }
    let tls = secrets.get("stowage-webhook-tls").await.expect("serving Secret");
    let data = tls.data.expect("Secret data");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(data.get(key).is_some_and(|v| !v.0.is_empty()), "the serving Secret holds {key}");
    }
    let ca = secrets.get("stowage-ca").await.expect("CA Secret").data.expect("CA data");
    assert_eq!(data.get("ca.crt"), ca.get("ca.crt"), "the serving Secret carries the CA that issued it");
    let mwc = Api::<MutatingWebhookConfiguration>::all(admin.clone()).get("stowage").await.expect("webhook config");
    assert_eq!(
        mwc.webhooks.expect("webhooks")[0].client_config.ca_bundle.as_ref(),
        ca.get("ca.crt"),
        "the caBundle is the CA"
    );
    // A Secret that is not there is named, not created (as the administrator, who could create it).
    let out = std::process::Command::new(stowage_bin())
        .args(["certs", "install", "--secret=absent-tls", &format!("--kubeconfig={}", cp.kubeconfig_path().display())])
        .output()
        .expect("stowage certs install");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "certs install with a missing Secret must fail:\n{stderr}");
    assert!(
        stderr.contains("Secret stowage-system/absent-tls does not exist"),
        "the error names the Secret:\n{stderr}"
    );
    assert!(secrets.get_opt("absent-tls").await.expect("get").is_none(), "certs install created no Secret");
    // What the certs identity must not do.
    assert_forbidden("certs: list secrets", certs_secrets.list(&ListParams::default()).await);
    secrets
        .create(&PostParams::default(), &Secret { metadata: meta("unrelated"), ..Secret::default() })
        .await
        .expect("admin creates an unrelated Secret");
    assert_forbidden("certs: read an unrelated Secret", certs_secrets.get("unrelated").await);
    let other = MutatingWebhookConfiguration { metadata: meta("someone-elses"), webhooks: None };
    Api::<MutatingWebhookConfiguration>::all(admin.clone()).create(&PostParams::default(), &other).await.expect("mwc");
    assert_forbidden(
        "certs: patch another webhook configuration",
        Api::<MutatingWebhookConfiguration>::all(certs_client.clone())
            .patch("someone-elses", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await,
    );
    // RBAC lets it patch its own configuration; the shipped ValidatingAdmissionPolicy keeps that
    // to the caBundle. Dry runs pass admission like real requests and change nothing.
    let certs_mwc = Api::<MutatingWebhookConfiguration>::all(certs_client.clone());
    let dry = PatchParams::default().dry_run();
    let json_patch = |ops: Value| Patch::Json::<()>(serde_json::from_value(ops).expect("JSON patch"));
    let rules = json!([{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE", "UPDATE"]}]);
    poll_until("the caBundle-only policy is in effect", Duration::from_secs(30), Duration::from_millis(250), || {
        let (certs_mwc, dry, patch) = (certs_mwc.clone(), dry.clone(), json_patch(rules.clone()));
        async move {
            Ok(match certs_mwc.patch("stowage", &dry, &patch).await {
                Err(kube::Error::Api(status)) if status.code == 403 => Some(()),
                _ => None,
            })
        }
    })
    .await
    .expect("the certs ServiceAccount may not change the webhook's rules");
    match certs_mwc.patch("stowage", &dry, &json_patch(rules.clone())).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("may change only webhooks[*].clientConfig.caBundle"), "{status:?}");
        }
        other => panic!("certs: patch rules: expected the policy's denial, got {other:?}"),
    }
    assert_forbidden(
        "certs: point the webhook elsewhere",
        certs_mwc
            .patch(
                "stowage",
                &dry,
                &json_patch(
                    json!([{"op": "replace", "path": "/webhooks/0/clientConfig/service/name", "value": "evil"}]),
                ),
            )
            .await,
    );
    assert_forbidden(
        "certs: change the failure policy",
        certs_mwc
            .patch(
                "stowage",
                &dry,
                &json_patch(json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"}])),
            )
            .await,
    );
    let bundle = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&ca.get("ca.crt").expect("ca.crt").0)
    };
    certs_mwc
        .patch(
            "stowage",
            &dry,
            &json_patch(json!([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}])),
        )
        .await
        .expect("certs: a caBundle patch passes the policy");
    // The administrator is not limited by it.
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .patch("stowage", &dry, &json_patch(rules.clone()))
        .await
        .expect("admin: patch rules");
    assert_forbidden(
        "certs: read ConfigMaps",
        Api::<ConfigMap>::namespaced(certs_client.clone(), NS).get("stowage-config").await,
    );

    // --- the webhook's identity: serve with the installed certificate, caches synced ---
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    write_file(&tls_dir, "tls.crt", &data["tls.crt"].0);
    write_file(&tls_dir, "tls.key", &data["tls.key"].0);
    let (webhook_kubeconfig, webhook_client) = sa_kubeconfig(&cp, "stowage-webhook").await;
    let webhook = StowageProcess::start(
        &StowageArgs::new(stowage_bin(), "webhook").kubeconfig(&webhook_kubeconfig).config(&config).tls_dir(&tls_dir),
        &dir.path().join("webhook.log"),
    )
    .await
    .unwrap_or_else(|e| panic!("the webhook does not get ready as its ServiceAccount: {e:#}\n{}", cp.diagnostics()));
    assert_forbidden("webhook: list pods", Api::<Pod>::all(webhook_client.clone()).list(&ListParams::default()).await);
    assert_forbidden(
        "webhook: read secrets",
        Api::<Secret>::namespaced(webhook_client.clone(), NS).get("stowage-ca").await,
    );
    assert_forbidden(
        "webhook: list nodes",
        Api::<Node>::all(webhook_client.clone()).list(&ListParams::default()).await,
    );
    drop(webhook);

    // --- the scheduler pod's identity: the shipped KubeSchedulerConfiguration and the extender ---
    let (sched_kubeconfig, sched_client) = sa_kubeconfig(&cp, "stowage-scheduler").await;
    let extender = StowageProcess::start(
        &StowageArgs::new(stowage_bin(), "extender").kubeconfig(&sched_kubeconfig).config(&config),
        &dir.path().join("extender.log"),
    )
    .await
    .unwrap_or_else(|e| panic!("the extender does not sync as its ServiceAccount: {e:#}\n{}", cp.diagnostics()));
    let shipped = Api::<ConfigMap>::namespaced(admin.clone(), NS)
        .get("stowage-scheduler-config")
        .await
        .expect("scheduler ConfigMap")
        .data
        .and_then(|d| d.get("scheduler-config.yaml").cloned())
        .expect("scheduler-config.yaml");
    let mut sched_config: Value = serde_saphyr::from_str(&shipped).expect("scheduler config YAML");
    sched_config["clientConnection"] = json!({"kubeconfig": sched_kubeconfig.display().to_string()});
    sched_config["extenders"][0]["urlPrefix"] = json!(extender.extender_url());
    let scheduler = cp
        .start_scheduler_yaml(&serde_json::to_string(&sched_config).expect("json"))
        .await
        .unwrap_or_else(|e| panic!("the shipped scheduler config does not run as its ServiceAccount: {e:#}"));
    place_one_member(&cp, &admin, "stowage", &extender, &scheduler.diagnostics()).await;
    let lease = Api::<Lease>::namespaced(admin.clone(), NS).get("stowage-scheduler").await;
    assert!(lease.is_ok(), "leader election under the shipped lease name must work: {lease:?}");
    // kube-scheduler itself may delete pods (preemption victims) through system:kube-scheduler,
    // so that is not checked here; the extender-only identity below must not.
    assert_forbidden(
        "scheduler: read secrets",
        Api::<Secret>::namespaced(sched_client.clone(), NS).get("stowage-ca").await,
    );
    assert_forbidden(
        "scheduler: patch nodes",
        Api::<Node>::all(sched_client.clone())
            .patch("any", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await,
    );
    assert_forbidden(
        "scheduler: delete nodes",
        Api::<Node>::all(sched_client.clone()).delete("any", &DeleteParams::default()).await,
    );
    assert_forbidden(
        "scheduler: create pods",
        Api::<Pod>::namespaced(sched_client.clone(), "default")
            .create(&PostParams::default(), &stowage_fixtures::pod("default", "nope").build())
            .await,
    );
    drop(scheduler);
    drop(extender);

    // --- the stowage-extender ClusterRole alone is enough for the extender's code ---
    let test_ns = namespace(&admin, "extender-only").await.expect("namespace");
    Api::<ServiceAccount>::namespaced(admin.clone(), &test_ns)
        .create(
            &PostParams::default(),
            &ServiceAccount { metadata: meta("extender-only"), ..ServiceAccount::default() },
        )
        .await
        .expect("ServiceAccount");
    let binding = ClusterRoleBinding {
        metadata: meta(&unique_name("extender-only")),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "stowage-extender".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "extender-only".into(),
            namespace: Some(test_ns.clone()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone()).create(&PostParams::default(), &binding).await.expect("binding");
    let token = cp.service_account_token(&test_ns, "extender-only").await.expect("token");
    let only_kubeconfig = cp.write_kubeconfig("extender-only.kubeconfig", &Identity::Token(token)).expect("kubeconfig");
    let extender = StowageProcess::start(
        &StowageArgs::new(stowage_bin(), "extender").kubeconfig(&only_kubeconfig).config(&config),
        &dir.path().join("extender-only.log"),
    )
    .await
    .unwrap_or_else(|e| panic!("the stowage-extender ClusterRole alone does not let the caches sync: {e:#}"));
    let name = unique_name("sched");
    let scheduler = cp
        .start_scheduler(
            &SchedulerConfig::new(&name).extender(
                Extender::new(&extender.extender_url())
                    .filter_verb(Some("filter"))
                    .prioritize_verb(Some("prioritize"))
                    .bind_verb("bind")
                    .weight(5)
                    .node_cache_capable(true)
                    .http_timeout(Duration::from_secs(5)),
            ),
        )
        .await
        .expect("scheduler");
    place_one_member(&cp, &admin, &name, &extender, &scheduler.diagnostics()).await;
    let only = cp.client_with_token(&cp.service_account_token(&test_ns, "extender-only").await.expect("token")).await;
    let only = only.expect("client");
    assert_forbidden(
        "extender: delete pods",
        Api::<Pod>::namespaced(only.clone(), &test_ns).delete("anything", &DeleteParams::default()).await,
    );
    assert_forbidden(
        "extender: create pods",
        Api::<Pod>::namespaced(only.clone(), &test_ns)
            .create(&PostParams::default(), &stowage_fixtures::pod(&test_ns, "nope").build())
            .await,
    );
    assert_forbidden("extender: read secrets", Api::<Secret>::namespaced(only.clone(), NS).get("stowage-ca").await);
    assert_forbidden(
        "extender: list ConfigMaps",
        Api::<ConfigMap>::all(only.clone()).list(&ListParams::default()).await,
    );
    assert_forbidden(
        "extender: patch nodes",
        Api::<Node>::all(only)
            .patch("any", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await,
    );
}

/// Creates three zones with one node each (unique label) and a member of a 3-member
/// StatefulSet with the shipped `replicated` profile, then waits until the extender has bound it
/// and written its placement event.
async fn place_one_member(
    cp: &ControlPlane,
    admin: &kube::Client,
    scheduler_name: &str,
    extender: &StowageProcess,
    scheduler_diagnostics: &str,
) {
    let pool = unique_name("pool");
    create_nodes(
        admin,
        ["a", "b", "c"]
            .iter()
            .map(|z| fake_node(&format!("{pool}-{z}")).zone(&format!("zone-{z}")).label("pool", &pool).build()),
    )
    .await
    .expect("nodes");
    let ns = namespace(admin, "placed").await.expect("namespace");
    let template = pod(&ns, "pg")
        .scheduler_name(scheduler_name)
        .annotate("stowage.io/profile", "replicated")
        .node_selector("pool", &pool)
        .cpu("100m")
        .memory("128Mi")
        .template();
    // The StatefulSet controller creates pg-0 (and the others once it is Ready).
    create(admin, &StatefulSetBuilder::new(&ns, "pg", 3, template).build()).await.expect("StatefulSet");
    let bound = wait_for_pod_bound(admin, &ns, "pg-0", scaled(Duration::from_secs(60))).await.unwrap_or_else(|e| {
        panic!("pod not bound: {e:#}\n{}\n{scheduler_diagnostics}\n{}", extender.log_tail(LOG_LINES), cp.diagnostics())
    });
    assert!(bound.spec.and_then(|s| s.node_name).is_some_and(|n| n.starts_with(&pool)));
    wait_for_pod_event(admin, &ns, "pg-0", "StowagePlaced", scaled(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("no placement event: {e:#}\n{}", extender.log_tail(LOG_LINES)));
    // The bind went through the extender (bindVerb), not kube-scheduler's own binder.
    poll_until(
        "the extender to count the bind",
        scaled(Duration::from_secs(10)),
        Duration::from_millis(200),
        || async {
            let text = extender.metrics().await?;
            Ok((stowage_testkit::metric_sum(&text, "stowage_extender_decisions_total", &["verb=\"bind\""]) >= 1.0)
                .then_some(()))
        },
    )
    .await
    .expect("a bind decision");
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}
