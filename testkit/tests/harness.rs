//! The harness against the real control plane: identities, object builders, scheduler configs.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta};
use stowage_testkit::{
    ControlPlane, Extender, Identity, SchedulerConfig, assert_pod_stays_unbound, create, create_nodes, delete_nodes,
    fake_node, force_delete_pod, local_pv, namespace, node_name, pod, pod_events, poll_until, pvc, statefulset,
    statefulset_pod, storage_class, unique_name, wait_for_pod_bound, wait_for_pod_event, wait_for_pods_bound,
};

async fn whoami(client: kube::Client) -> (String, Vec<String>) {
    let review = create(&client, &SelfSubjectReview::default()).await.expect("SelfSubjectReview");
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    (user.username.unwrap_or_default(), user.groups.unwrap_or_default())
}

#[tokio::test]
async fn identities_authenticate_as_expected() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let (admin, groups) = whoami(cp.client()).await;
    assert_eq!(admin, "admin");
    assert!(groups.iter().any(|g| g == "system:masters"), "{groups:?}");

    let ns = namespace(&cp.client(), "identity").await.unwrap();
    let (user, groups) = whoami(cp.client_as_service_account(&ns, "impersonated").await.unwrap()).await;
    assert_eq!(user, format!("system:serviceaccount:{ns}:impersonated"));
    assert!(groups.contains(&format!("system:serviceaccounts:{ns}")), "{groups:?}");

    let token = cp.service_account_token(&ns, "real").await.unwrap();
    let (user, _) = whoami(cp.client_with_token(&token).await.unwrap()).await;
    assert_eq!(user, format!("system:serviceaccount:{ns}:real"));

    let path = cp.write_kubeconfig("alice.kubeconfig", &Identity::user("alice", &["team-a"])).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("as: \"alice\"") && text.contains(cp.server_url()), "{text}");
}

#[tokio::test]
async fn rbac_is_enforced_for_impersonated_service_accounts() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    let ns = namespace(&admin, "rbac").await.unwrap();
    let sa_client = cp.client_as_service_account(&ns, "reader").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(sa_client, &ns);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403 before the RoleBinding, got {other:?}"),
    }

    let role = Role {
        metadata: ObjectMeta { name: Some("pod-reader".into()), namespace: Some(ns.clone()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    create(&admin, &role).await.unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("pod-reader".into()), namespace: Some(ns.clone()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "pod-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    create(&admin, &binding).await.unwrap();
    poll_until("the RoleBinding to take effect", Duration::from_secs(30), Duration::from_millis(200), || async {
        Ok(pods.list(&ListParams::default()).await.ok())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn storage_and_statefulset_objects_are_accepted() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "objects").await.unwrap();
    let class = unique_name("local");
    create(&client, &storage_class(&class).wait_for_first_consumer().build()).await.unwrap();
    let node = unique_name("objects-node");
    create(&client, &fake_node(&node).zone("zone-a").build()).await.unwrap();
    let pv = unique_name("pv");
    create(&client, &local_pv(&pv, &node, "10Gi", &class).claim_ref(&ns, "data-db-0").build()).await.unwrap();
    create(&client, &pvc(&ns, "data-db-0", &class, "10Gi").volume_name(&pv).build()).await.unwrap();

    let template = statefulset_pod(&ns, "db", 0).cpu("100m").template();
    let sts =
        create(&client, &statefulset(&ns, "db", 1, template).volume_claim_template("data", &class, "10Gi").build())
            .await
            .unwrap();
    let pod = statefulset_pod(&ns, "db", 0).owned_by(&sts).pvc_volume("data", "data-db-0").build();
    let pod = create(&client, &pod).await.unwrap();
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(Some(&owner.uid), sts.metadata.uid.as_ref());
    force_delete_pod(&client, &ns, "db-0").await.unwrap();
    force_delete_pod(&client, &ns, "db-0").await.unwrap();
}

#[tokio::test]
async fn many_nodes_are_created_concurrently() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let pool = unique_name("bulk");
    let names: Vec<String> = (0..60).map(|i| format!("{pool}-{i}")).collect();
    let created = create_nodes(&client, names.iter().map(|n| fake_node(n).label("pool", &pool).build())).await.unwrap();
    assert_eq!(created.len(), 60);
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = nodes.list(&ListParams::default().labels(&format!("pool={pool}"))).await.unwrap();
    assert_eq!(listed.items.len(), 60);
    delete_nodes(&client, names).await.unwrap();
    let listed = nodes.list(&ListParams::default().labels(&format!("pool={pool}"))).await.unwrap();
    assert!(listed.items.is_empty());
}

/// The rendered extender stanzas are accepted by a real kube-scheduler, and `ignorable` behaves.
#[tokio::test]
async fn scheduler_honours_extender_stanzas() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "extender").await.unwrap();
    let pool = unique_name("ext");
    create_nodes(&client, (0..2).map(|i| fake_node(&format!("{pool}-{i}")).label("pool", &pool).build()))
        .await
        .unwrap();

    // Nothing listens on port 9: an ignorable extender is skipped, a required one fails the pod.
    let lenient = unique_name("lenient");
    let strict = unique_name("strict");
    let config = SchedulerConfig::new(&lenient)
        .extender(
            Extender::new("https://127.0.0.1:9/lenient")
                .ca_pem(cp.ca_pem())
                .ignorable(true)
                .http_timeout(Duration::from_secs(1))
                .node_cache_capable(true),
        )
        .extender(Extender::new("http://127.0.0.1:9/strict").managed_resource("example.com/strict", true));
    let scheduler = cp.start_scheduler(&config.profile(&strict)).await.expect("scheduler");
    let pods: Vec<Pod> = (0..3)
        .map(|i| pod(&ns, &format!("lenient-{i}")).label("case", "lenient").scheduler_name(&lenient))
        .map(|p| p.node_selector("pool", &pool).build())
        .collect();
    for p in &pods {
        create(&client, p).await.unwrap();
    }
    let bound = wait_for_pods_bound(&client, &ns, "case=lenient", 3, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", scheduler.diagnostics()));
    assert!(bound.iter().all(|p| node_name(p).is_some_and(|n| n.starts_with(&pool))));

    // The strict extender manages `example.com/strict`: a pod requesting it needs the extender.
    let p = pod(&ns, "strict")
        .scheduler_name(&lenient)
        .node_selector("pool", &pool)
        .request("example.com/strict", "1")
        .limit("example.com/strict", "1");
    create(&client, &p.build()).await.unwrap();
    let event = wait_for_pod_event(&client, &ns, "strict", "FailedScheduling", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", scheduler.diagnostics()));
    assert!(event.message.unwrap_or_default().contains("127.0.0.1:9"));
    assert_pod_stays_unbound(&client, &ns, "strict", Duration::from_secs(2)).await.unwrap();

    // The second profile schedules too.
    create(&client, &pod(&ns, "second").scheduler_name(&strict).node_selector("pool", &pool).build()).await.unwrap();
    wait_for_pod_bound(&client, &ns, "second", Duration::from_secs(30)).await.unwrap();
    wait_for_pod_event(&client, &ns, "second", "Scheduled", Duration::from_secs(30)).await.unwrap();
    assert!(pod_events(&client, &ns, "second").await.unwrap().iter().any(|e| e.reason.as_deref() == Some("Scheduled")));

    let metrics = scheduler.get("/metrics").await.unwrap();
    assert!(metrics.contains("scheduler_schedule_attempts_total"));
}

#[tokio::test]
async fn dedicated_control_plane_is_torn_down_on_drop() {
    let cp = ControlPlane::start().await.expect("control plane");
    let ns = namespace(&cp.client(), "dedicated").await.unwrap();
    assert!(ns.starts_with("dedicated-"));
    let scheduler = cp.start_scheduler(&SchedulerConfig::new("dedicated")).await.expect("scheduler");
    let (dir, server) = (cp.dir().to_path_buf(), cp.server_url().to_owned());
    let port: u16 = server.rsplit(':').next().unwrap().parse().unwrap();
    drop(cp);
    // The scheduler handle keeps the control plane alive.
    assert!(dir.exists());
    assert!(scheduler.is_running());
    drop(scheduler);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "apiserver still listening");
}
