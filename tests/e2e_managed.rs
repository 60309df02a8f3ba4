//! Zero cost for pods that don't opt in, with a **real kube-scheduler**: the extender
//! registered with `managedResources: [{name: stowage.io/managed, ignoredByScheduler: true}]`,
//! as `manifests/snippets/kube-scheduler-extender.yaml` ships it, is never called for a pod
//! without the resource, and filters, scores and binds a pod with it although no node
//! advertises `stowage.io/managed` (`ignoredByScheduler` keeps NodeResourcesFit from asking).
//! kwok's simulated kubelets do not enforce resources, so "the pod runs" here only shows that
//! nothing else in the path objects; the real kubelet drops extended-resource requests its node
//! does not advertise (docs/extender.md cites the source).
//!
//! The extender stanza is the snippet's own, with only `urlPrefix` pointed at this test's
//! extender, so the shipped stanza is what is tested.
//!
//! The test runs its own stowage process, so every request the extender counts in `/metrics`
//! comes from this test's kube-scheduler.

use std::{path::Path, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use stowage_fixtures::pod;
use stowage_policy::config::MANAGED_RESOURCE;
use stowage_testkit::{
    ControlPlane, SchedulerConfig, StowageArgs, StowageProcess, create, create_nodes, delete_nodes, describe_pod,
    fake_node, metric_sum, namespace, poll_until, scaled, unique_name, wait_for_pod_bound,
};

/// Node label the test's pods select.
const POOL_LABEL: &str = "stowage-e2e/pool";
/// Longest wait for a pod to be bound or running (scaled by the harness).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The extender's request-count series.
const REQUESTS: &str = "stowage_extender_request_duration_seconds_count";

/// The snippet's `extenders[0]`, as JSON (a YAML flow mapping), with `urlPrefix` set to `url`.
fn shipped_extender(url: &str) -> String {
    let snippet = include_str!("../manifests/snippets/kube-scheduler-extender.yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(snippet).expect("snippet YAML");
    let mut extender = docs[0]["extenders"][0].clone();
    assert_eq!(
        extender["managedResources"],
        serde_json::json!([{"name": MANAGED_RESOURCE, "ignoredByScheduler": true}]),
        "the snippet's managedResources"
    );
    extender["urlPrefix"] = serde_json::Value::String(url.to_owned());
    extender.to_string()
}

async fn requests(stowage: &StowageProcess, verb: &str) -> f64 {
    let text = stowage.metrics().await.expect("/metrics");
    metric_sum(&text, REQUESTS, &[&format!("verb=\"{verb}\"")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pods_with_the_managed_resource_reach_the_extender() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "managed").await.expect("namespace");
    let dir = tempfile::Builder::new().prefix("stowage-managed-e2e-").tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "managedResource: true\n").expect("writing the config");
    let args = StowageArgs::new(Path::new(env!("CARGO_BIN_EXE_stowage")), "extender")
        .kubeconfig(cp.kubeconfig_path())
        .config(&config);
    let stowage = StowageProcess::start(&args, &dir.path().join("stowage.log"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));

    let pool = unique_name("managed");
    let nodes: Vec<String> = ["a", "b"].iter().map(|z| format!("{pool}-{z}")).collect();
    create_nodes(&client, nodes.iter().map(|n| fake_node(n).zone(n).label(POOL_LABEL, &pool).build()))
        .await
        .expect("creating nodes");

    let scheduler_name = unique_name("stowage-managed");
    let _scheduler = cp
        .start_scheduler(
            &SchedulerConfig::new(&scheduler_name).extender_yaml(&shipped_extender(&stowage.extender_url())),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));

    // A pod that does not opt in: bound by kube-scheduler alone.
    let plain = pod(&ns, "plain").scheduler_name(&scheduler_name).node_selector(POOL_LABEL, &pool).cpu("100m").build();
    create(&client, &plain).await.expect("creating the plain pod");
    if let Err(e) = wait_for_pod_bound(&client, &ns, "plain", scaled(TIMEOUT)).await {
        panic!("{e:#}\n{}\n{}", describe_pod(&client, &ns, "plain").await, stowage.log_tail(40));
    }
    for verb in ["filter", "prioritize", "bind"] {
        assert_eq!(requests(&stowage, verb).await, 0.0, "the plain pod reached the extender's {verb}");
    }

    // An opted-in pod carrying the resource, as the webhook writes it.
    let managed = pod(&ns, "managed")
        .scheduler_name(&scheduler_name)
        .node_selector(POOL_LABEL, &pool)
        .annotate("stowage.io/profile", "default")
        .cpu("100m")
        .request(MANAGED_RESOURCE, "1")
        .limit(MANAGED_RESOURCE, "1")
        .build();
    create(&client, &managed).await.expect("creating the managed pod");
    let bound = match wait_for_pod_bound(&client, &ns, "managed", scaled(TIMEOUT)).await {
        Ok(p) => p,
        Err(e) => panic!("{e:#}\n{}\n{}", describe_pod(&client, &ns, "managed").await, stowage.log_tail(40)),
    };
    for verb in ["filter", "prioritize", "bind"] {
        assert!(requests(&stowage, verb).await >= 1.0, "the managed pod did not reach the extender's {verb}");
    }
    let node_name = bound.spec.as_ref().and_then(|s| s.node_name.clone()).expect("bound");
    let node = Api::<Node>::all(client.clone()).get(&node_name).await.expect("reading the node");
    let allocatable = node.status.and_then(|s| s.allocatable).unwrap_or_default();
    assert!(!allocatable.contains_key(MANAGED_RESOURCE), "{node_name} advertises {MANAGED_RESOURCE}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = poll_until("the managed pod running", scaled(TIMEOUT), Duration::from_millis(200), || async {
        let p = pods.get("managed").await?;
        Ok(p.status.and_then(|s| s.phase).filter(|phase| phase == "Running"))
    })
    .await;
    if let Err(e) = running {
        panic!("{e:#}\n{}", describe_pod(&client, &ns, "managed").await);
    }

    delete_nodes(&client, nodes).await.expect("deleting nodes");
}
