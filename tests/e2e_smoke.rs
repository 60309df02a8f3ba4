//! Smoke test of the e2e harness: a real kube-scheduler binds pods to fake nodes, and nothing
//! binds them when no scheduler serves their `schedulerName`.

use std::time::Duration;

use stowage_fixtures::pod;
use stowage_testkit::{
    ControlPlane, SchedulerConfig, assert_pod_stays_unbound, create, create_nodes, fake_node, force_delete_pod,
    namespace, node_name, pod_condition, unique_name, wait_for_pod_bound, wait_for_pod_event,
};

const BIND_TIMEOUT: Duration = Duration::from_secs(30);
const STAYS_PENDING: Duration = Duration::from_secs(5);

#[tokio::test]
async fn scheduler_binds_pods_and_stops_binding_once_stopped() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "smoke").await.expect("namespace");
    let scheduler_name = unique_name("smoke");
    let mut scheduler = cp.start_scheduler(&SchedulerConfig::new(&scheduler_name)).await.expect("kube-scheduler");

    let pool = unique_name("smoke-pool");
    let nodes: Vec<String> = (0..2).map(|i| format!("{pool}-{i}")).collect();
    create_nodes(&client, nodes.iter().map(|n| fake_node(n).zone("zone-a").label("pool", &pool).build()))
        .await
        .expect("nodes");

    let first = pod(&ns, "first").scheduler_name(&scheduler_name).node_selector("pool", &pool).cpu("100m").build();
    create(&client, &first).await.expect("pod");
    let bound = wait_for_pod_bound(&client, &ns, "first", BIND_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", scheduler.diagnostics(), cp.diagnostics()));
    let node = node_name(&bound).expect("bound pod has a node");
    assert!(nodes.iter().any(|n| n == node), "bound to {node}, expected one of {nodes:?}");
    let scheduled = pod_condition(&bound, "PodScheduled").expect("PodScheduled condition");
    assert_eq!(scheduled.status, "True");
    let event = wait_for_pod_event(&client, &ns, "first", "Scheduled", BIND_TIMEOUT).await.expect("Scheduled event");
    assert!(event.message.unwrap_or_default().contains(node));

    // Without the scheduler the same kind of pod stays pending: binding above was its work.
    scheduler.stop();
    assert!(!scheduler.is_running());
    let second = pod(&ns, "second").scheduler_name(&scheduler_name).node_selector("pool", &pool).cpu("100m").build();
    create(&client, &second).await.expect("pod");
    let pending = assert_pod_stays_unbound(&client, &ns, "second", STAYS_PENDING).await.expect("pod stays pending");
    assert!(pod_condition(&pending, "PodScheduled").is_none_or(|c| c.status != "True"));

    force_delete_pod(&client, &ns, "first").await.expect("delete first");
    force_delete_pod(&client, &ns, "second").await.expect("delete second");
}

#[tokio::test]
async fn pod_for_an_unserved_scheduler_name_stays_pending() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = namespace(&client, "smoke-unserved").await.expect("namespace");
    let pool = unique_name("smoke-unserved");
    create_nodes(&client, [fake_node(&format!("{pool}-0")).label("pool", &pool).build()]).await.expect("node");

    let orphan = pod(&ns, "orphan").scheduler_name(&unique_name("nobody")).node_selector("pool", &pool).build();
    create(&client, &orphan).await.expect("pod");
    assert_pod_stays_unbound(&client, &ns, "orphan", STAYS_PENDING).await.expect("pod stays pending");
    force_delete_pod(&client, &ns, "orphan").await.expect("delete");
}
