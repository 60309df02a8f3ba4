//! The admin port against a real kube-apiserver: `/metrics` and `/debug/*` need a bearer token
//! the apiserver accepts (TokenReview) and RBAC access to the path (SubjectAccessReview), the
//! probes stay open. stowage runs as the shipped `stowage-scheduler` ServiceAccount with the
//! shipped RBAC, callers are ServiceAccounts with and without `stowage-metrics-reader`.

use std::{net::SocketAddr, path::Path, time::Duration};

use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    core::v1::ServiceAccount,
    rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use stowage_testkit::{ControlPlane, Identity, StowageArgs, StowageProcess, namespace, poll_until, unique_name};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NS: &str = "stowage-system";

fn stowage_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

/// GET `path` with an optional bearer token: status and body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), body.to_owned())
}

async fn service_account(client: &kube::Client, ns: &str, name: &str) {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
                ..ServiceAccount::default()
            },
        )
        .await
        .expect("ServiceAccount");
}

/// The apiserver's answer to "may `user` create `resource` in `group`".
async fn may_create(admin: &kube::Client, user: &str, group: &str, resource: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:serviceaccounts".into(), "system:authenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some("create".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin.clone()).create(&PostParams::default(), &review).await;
    answer.expect("SubjectAccessReview").status.is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn admin_endpoints_need_a_token_and_the_metrics_reader_role_probes_do_not() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut apply = cp.kubectl().expect("kubectl");
    apply.current_dir(repo).args(["apply", "--server-side", "--force-conflicts"]);
    for file in ["namespace.yaml", "rbac-scheduler.yaml", "rbac-webhook.yaml", "rbac-recovery.yaml", "rbac-admin.yaml"]
    {
        apply.args(["-f", &format!("manifests/base/{file}")]);
    }
    let out = apply.output().expect("kubectl");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));

    // Every stowage ServiceAccount may ask the apiserver about tokens and access.
    for sa in ["stowage-scheduler", "stowage-webhook", "stowage-recovery"] {
        let user = format!("system:serviceaccount:{NS}:{sa}");
        assert!(may_create(&admin, &user, "authentication.k8s.io", "tokenreviews").await, "{user}: tokenreviews");
        assert!(may_create(&admin, &user, "authorization.k8s.io", "subjectaccessreviews").await, "{user}: SARs");
    }

    // Callers: one bound to stowage-metrics-reader, one not.
    let ns = namespace(&admin, "admin-port").await.expect("namespace");
    service_account(&admin, &ns, "prometheus").await;
    service_account(&admin, &ns, "nosy").await;
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(unique_name("prometheus-stowage")), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "stowage-metrics-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "prometheus".into(),
            namespace: Some(ns.clone()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone()).create(&PostParams::default(), &binding).await.expect("binding");
    let prometheus = cp.service_account_token(&ns, "prometheus").await.expect("token");
    let nosy = cp.service_account_token(&ns, "nosy").await.expect("token");

    // stowage as the shipped scheduler ServiceAccount, admin port protected.
    let token = cp.service_account_token(NS, "stowage-scheduler").await.expect("token");
    let kubeconfig = cp.write_kubeconfig("admin-port.kubeconfig", &Identity::Token(token)).expect("kubeconfig");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "{}\n").expect("config");
    let stowage = StowageProcess::start(
        &StowageArgs::new(stowage_bin(), "extender")
            .kubeconfig(&kubeconfig)
            .config(&config)
            .arg("--admin-auth=kubernetes"),
        &dir.path().join("stowage.log"),
    )
    .await
    .expect("stowage starts (its /readyz answers without a token)");
    let addr = stowage.admin;

    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    assert_eq!(get(addr, "/readyz", None).await.0, 200);
    let (status, body) = get(addr, "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    assert_eq!(get(addr, "/debug/decisions", None).await.0, 401);
    let (status, body) = get(addr, "/metrics", Some("not-a-token")).await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = get(addr, "/metrics", Some(&nosy)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(&format!("system:serviceaccount:{ns}:nosy")) && body.contains("/metrics"), "{body}");
    assert_eq!(get(addr, "/debug/decisions", Some(&nosy)).await.0, 403);

    // RBAC is served from the apiserver's informers: wait until the binding is in effect there
    // before asking stowage, which would otherwise cache a refusal for 30 s.
    let user = format!("system:serviceaccount:{ns}:prometheus");
    poll_until("the metrics-reader binding takes effect", Duration::from_secs(30), Duration::from_millis(200), || {
        let admin = admin.clone();
        let user = user.clone();
        async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user),
                    non_resource_attributes: Some(k8s_openapi::api::authorization::v1::NonResourceAttributes {
                        path: Some("/metrics".into()),
                        verb: Some("get".into()),
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let answer = Api::<SubjectAccessReview>::all(admin).create(&PostParams::default(), &review).await?;
            Ok(answer.status.is_some_and(|s| s.allowed).then_some(()))
        }
    })
    .await
    .expect("binding");
    let (status, body) = get(addr, "/metrics", Some(&prometheus)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# EOF"), "Prometheus text: {body}");
    let (status, body) = get(addr, "/debug/decisions", Some(&prometheus)).await;
    assert_eq!(status, 200, "{body}");
}
