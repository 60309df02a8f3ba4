//! `stowage explain`: what the webhook would inject into a pod, then where the extender would
//! place the result, from a cluster snapshot; or, for a pod of the live cluster, where the
//! extender would place it now and what kube-scheduler's own filters said.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use stowage_scheduler::{ClusterCache, Explanation, explain, snapshot::Snapshot};
use stowage_webhook::{AdmissionRequest, AdmitContext, admit};

use crate::{
    cli::{ExplainArgs, Output},
    mutate_cmd::{read_document, snapshot_members},
};

/// The admission part of the report.
#[derive(Debug, Serialize)]
struct Admission {
    allowed: bool,
    denied: Option<String>,
    warnings: Vec<String>,
    patch: json_patch::Patch,
}

#[derive(Debug, Serialize)]
struct Report {
    admission: Option<Admission>,
    placement: Option<Explanation>,
    /// For a live pod: its `PodScheduled` condition (`status`, `reason`, `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduler: Option<SchedulerView>,
}

/// What kube-scheduler last said about a live pod.
#[derive(Debug, Serialize)]
struct SchedulerView {
    node: Option<String>,
    pod_scheduled: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

/// How long the live cache may take to list the cluster.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `stowage explain pod/NAME -n NS`: loads the cluster into the same cache the extender uses
/// (its watchers, until every kind has synced), then explains the pod as it is.
pub(crate) async fn explain_live(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = crate::commands::load_config(args.config.as_deref())?;
    let target = args.target.as_deref().unwrap_or_default();
    let name = target.strip_prefix("pod/").or_else(|| target.strip_prefix("pods/")).unwrap_or(target);
    anyhow::ensure!(!name.is_empty() && !name.contains('/'), "expected pod/NAME or NAME, got {target:?}");
    let client = crate::kube_client::client(args.kubeconfig.as_deref()).await?;
    let pod: Pod = kube::Api::namespaced(client.clone(), &args.namespace)
        .get(name)
        .await
        .with_context(|| format!("getting pod {}/{name}", args.namespace))?;
    let cache = std::sync::Arc::new(ClusterCache::new(&config));
    let watchers = stowage_scheduler::spawn_watchers(client, std::sync::Arc::clone(&cache));
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    while !cache.is_ready() {
        if tokio::time::Instant::now() >= deadline {
            watchers.abort();
            anyhow::bail!(
                "the cluster did not list within {SYNC_TIMEOUT:?} (can this kubeconfig list nodes, pods, volumes and claims?)"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let placement = explain(&cache, &config, &pod);
    watchers.abort();
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let scheduler = SchedulerView {
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        pod_scheduled: condition.map(|c| c.status.clone()),
        reason: condition.and_then(|c| c.reason.clone()),
        message: condition.and_then(|c| c.message.clone()),
    };
    let report = Report { admission: None, placement: Some(placement), scheduler: Some(scheduler) };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn explain_cmd(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = crate::commands::load_config(args.config.as_deref())?;
    let (Some(snapshot), Some(pod_path)) = (&args.snapshot, &args.pod) else {
        anyhow::bail!("explain needs a live pod (pod/NAME) or both --snapshot and --pod");
    };
    let snapshot = Snapshot::load(snapshot)?;
    for warning in &snapshot.warnings {
        eprintln!("warning: {warning}");
    }
    let mut pod_json = read_document(pod_path)?;
    let admission = if args.no_mutate {
        None
    } else {
        let members = snapshot_members(&snapshot);
        let request = AdmissionRequest::create_pod(pod_json.clone(), "default");
        let response = admit(&request, &AdmitContext::new(&config).members(&members));
        if response.allowed {
            response.apply_to(&mut pod_json).context("applying the webhook's patch")?;
        }
        Some(Admission {
            allowed: response.allowed,
            denied: response.status.filter(|_| !response.allowed).map(|s| s.message),
            warnings: response.warnings,
            patch: response.patch.unwrap_or_default(),
        })
    };
    let denied = admission.as_ref().is_some_and(|a| !a.allowed);
    let placement = if denied {
        None
    } else {
        let mut pod: Pod =
            serde_json::from_value(pod_json).with_context(|| format!("{} is not a valid Pod", pod_path.display()))?;
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("default".to_owned());
        }
        let cache = ClusterCache::from_snapshot(&snapshot, &config);
        Some(explain(&cache, &config, &pod))
    };
    let report = Report { admission, placement, scheduler: None };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render_text(&report)),
    }
    Ok(if denied { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn render_text(report: &Report) -> String {
    let mut out = String::new();
    if let Some(a) = &report.admission {
        let _ = writeln!(out, "== admission (webhook) ==");
        match &a.denied {
            Some(message) => {
                let _ = writeln!(out, "denied: {message}");
            }
            None if a.patch.0.is_empty() => {
                let _ = writeln!(out, "allowed, no changes");
            }
            None => {
                let _ = writeln!(out, "allowed with {} patch operation(s):", a.patch.0.len());
            }
        }
        for w in &a.warnings {
            let _ = writeln!(out, "  - {w}");
        }
        let _ = writeln!(out);
    }
    if let Some(p) = &report.placement {
        let _ = writeln!(out, "== placement (extender) ==");
        out.push_str(&p.render_text());
    }
    if let Some(s) = &report.scheduler {
        let _ = writeln!(out, "\n== kube-scheduler ==");
        match (&s.node, &s.pod_scheduled) {
            (Some(node), _) => {
                let _ = writeln!(out, "bound to node {node}");
            }
            (None, Some(status)) => {
                let _ = writeln!(
                    out,
                    "PodScheduled={status} {}: {}",
                    s.reason.as_deref().unwrap_or("-"),
                    s.message.as_deref().unwrap_or("")
                );
            }
            (None, None) => {
                let _ = writeln!(out, "not scheduled yet (no PodScheduled condition)");
            }
        }
    }
    out
}
