//! `stowage audit`: zone-failure readiness of every group, from the live cluster or a snapshot.
//! Exit code 3 when a group is not zone-safe, so a CI/CD step can gate on it.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::Context as _;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
};
use kube::{Api, api::ListParams};
use stowage_recovery::{
    audit::{GroupAudit, audit as audit_groups},
    facts::{Lists, NODE_LEASE_NAMESPACE, group_facts, node_facts},
};

use crate::cli::{AuditArgs, Output};

/// Exit code when at least one group would lose its majority with one zone.
pub(crate) const NOT_ZONE_SAFE: u8 = 3;

/// Everything the audit reads.
#[derive(Default)]
struct Cluster {
    nodes: Vec<Node>,
    leases: Vec<Lease>,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
    volumes: Vec<PersistentVolume>,
    statefulsets: Vec<StatefulSet>,
}

/// The objects as recovery's facts borrow them (shared, as its watch caches hold them).
fn shared<T>(objects: Vec<T>) -> Vec<std::sync::Arc<T>> {
    objects.into_iter().map(std::sync::Arc::new).collect()
}

async fn list<K>(api: Api<K>) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let what = K::kind(&K::DynamicType::default()).into_owned();
    Ok(api.list(&ListParams::default()).await.with_context(|| format!("listing {what}s"))?.items)
}

async fn live(args: &AuditArgs) -> anyhow::Result<Cluster> {
    let client = crate::kube_client::client(args.kubeconfig.as_deref()).await?;
    Ok(Cluster {
        nodes: list(Api::all(client.clone())).await?,
        // Node Leases are optional evidence; a cluster without access to them still audits.
        leases: list(Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE)).await.unwrap_or_default(),
        pods: list(Api::all(client.clone())).await?,
        claims: list(Api::all(client.clone())).await?,
        volumes: list(Api::all(client.clone())).await?,
        statefulsets: list(Api::all(client)).await?,
    })
}

/// Runs the audit and prints it.
pub(crate) async fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = crate::commands::load_config(args.config.as_deref())?;
    let cluster = match &args.snapshot {
        Some(path) => {
            let snap = stowage_scheduler::snapshot::Snapshot::load(path)?;
            for warning in &snap.warnings {
                eprintln!("warning: {warning}");
            }
            let mut pods = snap.pods;
            let assumed = assume_ready_without_status(&mut pods);
            if assumed > 0 {
                eprintln!("note: {assumed} bound pod(s) in the snapshot have no conditions; counted as Ready");
            }
            Cluster {
                nodes: snap.nodes,
                leases: Vec::new(),
                pods,
                claims: snap.persistent_volume_claims,
                volumes: snap.persistent_volumes,
                statefulsets: snap.stateful_sets,
            }
        }
        None => live(args).await?,
    };
    let lists = Lists {
        nodes: shared(cluster.nodes),
        leases: shared(cluster.leases),
        pods: shared(cluster.pods),
        claims: shared(cluster.claims),
        volumes: shared(cluster.volumes),
        statefulsets: shared(cluster.statefulsets),
    };
    let groups = group_facts(&lists.objects(), &config);
    let report = audit_groups(&groups, &node_facts(&lists.nodes, &lists.leases, &config));
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "groups": report }))?),
        Output::Text => print!("{}", text(&report)),
    }
    Ok(if report.iter().all(|g| g.zone_safe) { ExitCode::SUCCESS } else { ExitCode::from(NOT_ZONE_SAFE) })
}

/// Hand-written snapshots often leave out pod conditions: a bound pod with no conditions at all,
/// Running or with no phase, is taken as Ready (kubectl output always has the conditions).
/// Returns how many were.
fn assume_ready_without_status(pods: &mut [Pod]) -> usize {
    let mut assumed = 0;
    for pod in pods.iter_mut() {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let status = pod.status.get_or_insert_with(Default::default);
        let running = matches!(status.phase.as_deref(), None | Some("Running"));
        if bound && running && status.conditions.is_none() {
            status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                ..Default::default()
            }]);
            assumed += 1;
        }
    }
    assumed
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn text(report: &[GroupAudit]) -> String {
    let mut out = String::new();
    if report.is_empty() {
        out.push_str("no stowage groups found\n");
        return out;
    }
    for g in report {
        let zones: Vec<String> = g.ready_per_zone.iter().map(|(z, n)| format!("{z}={n}")).collect();
        let _ = writeln!(
            out,
            "{}: {} n={} majority={} ready={} per zone [{}] recovery={}",
            g.group,
            g.state,
            g.n,
            g.majority,
            g.ready,
            zones.join(" "),
            g.recovery.join(",")
        );
        let worst = |w: &Option<(String, u32)>| {
            w.as_ref().map_or_else(String::new, |(name, left)| format!(" (losing {name} leaves {left})"))
        };
        let _ = writeln!(out, "  zone-safe: {}{}", yes_no(g.zone_safe), worst(&g.worst_zone));
        let _ = writeln!(out, "  node-safe: {}{}", yes_no(g.node_safe), worst(&g.worst_node));
        if !g.on_unhealthy_nodes.is_empty() {
            let _ = writeln!(out, "  on NotReady or missing nodes: {}", g.on_unhealthy_nodes.join(", "));
        }
        if !g.pending.is_empty() {
            let pending: Vec<String> =
                g.pending.iter().map(|p| format!("{} ({})", p.member, p.reason.as_str())).collect();
            let _ = writeln!(out, "  Pending: {}", pending.join(", "));
        }
    }
    let unsafe_groups = report.iter().filter(|g| !g.zone_safe).count();
    let _ = writeln!(out, "{} group(s), {unsafe_groups} not zone-safe", report.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_recovery::audit::{GroupState, Pending, PendingReason};

    #[test]
    fn text_names_the_worst_loss_and_counts_unsafe_groups() {
        let g = GroupAudit {
            group: "db/pg".into(),
            n: 3,
            majority: 2,
            ready: 3,
            ready_per_zone: [("a".to_owned(), 2), ("b".to_owned(), 1)].into_iter().collect(),
            zone_safe: false,
            worst_zone: Some(("a".into(), 1)),
            node_safe: true,
            worst_node: Some(("n1".into(), 2)),
            on_unhealthy_nodes: vec![],
            pending: vec![Pending { member: "pg-3".into(), reason: PendingReason::Unschedulable }],
            recovery: vec!["report".into()],
            state: GroupState::NotZoneSafe,
        };
        let out = text(&[g]);
        assert!(
            out.contains("db/pg: not_zone_safe n=3 majority=2 ready=3 per zone [a=2 b=1] recovery=report"),
            "{out}"
        );
        assert!(out.contains("zone-safe: NO (losing a leaves 1)"), "{out}");
        assert!(out.contains("node-safe: yes"), "{out}");
        assert!(out.contains("Pending: pg-3 (unschedulable)"), "{out}");
        assert!(out.ends_with("1 group(s), 1 not zone-safe\n"), "{out}");
        assert_eq!(text(&[]), "no stowage groups found\n");
    }

    #[test]
    fn only_bound_pods_without_status_are_assumed_ready() {
        let mut pods: Vec<Pod> = vec![
            serde_json::from_value(serde_json::json!({"spec": {"nodeName": "n1", "containers": []}})).unwrap(),
            serde_json::from_value(serde_json::json!({"spec": {"containers": []}})).unwrap(),
            serde_json::from_value(
                serde_json::json!({"spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Pending"}}),
            )
            .unwrap(),
        ];
        assert_eq!(assume_ready_without_status(&mut pods), 1);
        assert!(pods[1].status.as_ref().unwrap().conditions.is_none(), "not bound");
        assert!(pods[2].status.as_ref().unwrap().conditions.is_none(), "Pending");
    }
}
