//! The harness against the real control plane: identities, object builders, scheduler configs.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta};
use stowage_fixtures::{PersistentVolumeBuilder, StatefulSetBuilder, StorageClassBuilder, pod};
use stowage_testkit::{
    ControlPlane, Extender, Identity, NODE_MONITOR_GRACE, SchedulerConfig, assert_pod_stays_unbound, create,
    create_nodes, delete_nodes, delete_statefulset, fake_node, force_delete_pod, kill_node, namespace, node_name,
    pod_events, poll_until, revive_node, statefulset_pods, unique_name, wait_for_claim_bound,
    wait_for_node_ready_status, wait_for_pod_bound, wait_for_pod_event, wait_for_pod_ready, wait_for_pods_bound,
    wait_for_statefulset_ready,
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

/// The bed is real: the StatefulSet controller creates the members (OrderedReady, one after the
/// other), the real PV controller binds their WaitForFirstConsumer claims to local volumes the
/// way sig-storage-local-static-provisioner publishes them (one too small for the claim), and
/// kwok runs the pods until they are Ready. Fails when kube-controller-manager is not running
/// (no pods, no binding) or kwok is not (never Ready).
#[tokio::test]
async fn a_statefulset_is_run_by_the_real_controllers_on_local_volumes() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "bed").await.unwrap();
    let scheduler = unique_name("bed");
    let _scheduler = cp.start_scheduler(&SchedulerConfig::new(&scheduler)).await.unwrap();
    let pool = unique_name("bed");
    let nodes: Vec<String> = (0..2).map(|i| format!("{pool}-{i}")).collect();
    create_nodes(&client, nodes.iter().map(|n| fake_node(n).label("pool", &pool).build())).await.unwrap();
    let class = unique_name("local");
    create(&client, &StorageClassBuilder::new(&class).wait_for_first_consumer().build()).await.unwrap();
    // Two volumes that fit on node 0 and 1, and a 1Gi one on node 0 that no 10Gi claim may take.
    for (pv, node, size) in [("fit-0", &nodes[0], "10Gi"), ("fit-1", &nodes[1], "20Gi"), ("small", &nodes[0], "1Gi")] {
        create(&client, &PersistentVolumeBuilder::local(&format!("{class}-{pv}"), node, &class, size).build())
            .await
            .unwrap();
    }
    let template = pod(&ns, "db").scheduler_name(&scheduler).node_selector("pool", &pool).cpu("100m").template();
    let sts = StatefulSetBuilder::new(&ns, "db", 2, template).volume_claim_template("data", &class, "10Gi").build();
    create(&client, &sts).await.unwrap();

    let pods = wait_for_statefulset_ready(&client, &ns, "db", 2, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));
    let mut volumes = Vec::new();
    for (name, pod) in &pods {
        let claim = wait_for_claim_bound(&client, &ns, &format!("data-{name}"), Duration::from_secs(30)).await.unwrap();
        let pv = claim.spec.and_then(|s| s.volume_name).expect("bound claim names its volume");
        assert_ne!(pv, format!("{class}-small"), "a 1Gi volume cannot hold a 10Gi claim");
        let pv_obj = Api::<PersistentVolume>::all(client.clone()).get(&pv).await.unwrap();
        let pinned = pv_obj.spec.and_then(|s| s.node_affinity).and_then(|a| a.required).map(|r| {
            r.node_selector_terms[0].match_expressions.clone().unwrap_or_default()[0].values.clone().unwrap_or_default()
        });
        assert_eq!(pinned, Some(vec![node_name(pod).unwrap().to_owned()]), "{name} runs where its volume is");
        volumes.push(pv);
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", Some(true)));
    }
    assert_eq!(volumes.len(), 2);
    delete_statefulset(&client, &ns, "db", Duration::from_secs(60)).await.unwrap();
    delete_nodes(&client, nodes).await.unwrap();
}

/// A node whose kubelet goes silent ([`kill_node`]) turns `Unknown` through the real node
/// lifecycle controller and is tainted `node.kubernetes.io/unreachable`; its pod stays (its
/// eviction waits for the default 300 s toleration). Revived, it is Ready and untainted again.
#[tokio::test]
async fn a_killed_node_turns_unknown_and_is_tainted_until_revived() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "death").await.unwrap();
    let node = unique_name("death");
    create(&client, &fake_node(&node).build()).await.unwrap();
    let mut p = pod(&ns, "resident").cpu("100m").build();
    p.spec.as_mut().unwrap().node_name = Some(node.clone());
    create(&client, &p).await.unwrap();
    wait_for_pod_ready(&client, &ns, "resident", Duration::from_secs(30)).await.unwrap();

    kill_node(&client, &node).await.unwrap();
    let grace = NODE_MONITOR_GRACE + Duration::from_secs(30);
    let dead = wait_for_node_ready_status(&client, &node, "Unknown", grace)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));
    let taints: Vec<String> = dead.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
    poll_until("the unreachable taint", Duration::from_secs(20), Duration::from_millis(250), || async {
        let n = Api::<Node>::all(client.clone()).get(&node).await?;
        let keys: Vec<String> = n.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
        Ok(keys.iter().any(|k| k == "node.kubernetes.io/unreachable").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#} (taints when Unknown: {taints:?})"));
    // The pod on the dead node is neither confirmed deleted nor touched by kwok any more.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let resident = pods.get("resident").await.expect("the pod is still there");
    assert!(resident.metadata.deletion_timestamp.is_none(), "nothing deleted it yet");

    revive_node(&client, &node).await.unwrap();
    let alive = wait_for_node_ready_status(&client, &node, "True", grace).await.unwrap();
    let taints: Vec<String> =
        alive.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
    poll_until("the unreachable taint to go", Duration::from_secs(20), Duration::from_millis(250), || async {
        let n = Api::<Node>::all(client.clone()).get(&node).await?;
        let keys: Vec<String> = n.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
        Ok((!keys.iter().any(|k| k.starts_with("node.kubernetes.io/"))).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#} (taints when Ready: {taints:?})"));
    force_delete_pod(&client, &ns, "resident").await.unwrap();
    delete_nodes(&client, [node]).await.unwrap();
}

/// The negative controls: on a cluster whose kwok is stopped, a StatefulSet's pod is created
/// (by kube-controller-manager) and bound but never Ready, and the node turns `Unknown`; once
/// kube-controller-manager is stopped too, a new StatefulSet gets no pod at all. So the positive
/// tests above pass only because both really run.
#[tokio::test]
async fn without_kwok_pods_never_turn_ready_and_without_the_controller_manager_none_are_created() {
    let cp = ControlPlane::start().await.expect("dedicated control plane");
    let client = cp.client();
    let ns = namespace(&client, "controls").await.unwrap();
    let scheduler = unique_name("controls");
    let _scheduler = cp.start_scheduler(&SchedulerConfig::new(&scheduler)).await.unwrap();
    let node = unique_name("controls");
    create(&client, &fake_node(&node).build()).await.unwrap();
    let template = |name: &str| pod(&ns, name).scheduler_name(&scheduler).cpu("100m").template();

    cp.stop_kwok();
    create(&client, &StatefulSetBuilder::new(&ns, "no-kubelet", 1, template("no-kubelet")).build()).await.unwrap();
    let bound = wait_for_pod_bound(&client, &ns, "no-kubelet-0", Duration::from_secs(60)).await.unwrap();
    assert_eq!(node_name(&bound), Some(node.as_str()));
    let not_ready = wait_for_pod_ready(&client, &ns, "no-kubelet-0", Duration::from_secs(5)).await;
    assert!(not_ready.is_err(), "no kwok, no Ready: {not_ready:?}");
    wait_for_node_ready_status(&client, &node, "Unknown", NODE_MONITOR_GRACE + Duration::from_secs(30)).await.unwrap();

    cp.stop_controller_manager();
    create(&client, &StatefulSetBuilder::new(&ns, "no-controller", 1, template("no-controller")).build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pods = statefulset_pods(&client, &ns, "no-controller").await.unwrap();
    assert!(pods.is_empty(), "no kube-controller-manager, no pods: {:?}", pods.keys());
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
