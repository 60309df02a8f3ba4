//! `stowage mutate`: the webhook's decision for a pod file, without a cluster.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use serde_json::Value;
use stowage_webhook::{AdmissionRequest, AdmitContext, StaticMembers, admit};

use crate::cli::MutateArgs;

/// Reads a YAML or JSON document.
pub(crate) fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not valid YAML or JSON", path.display()))
}

/// The request to answer: a Pod file becomes a synthetic CREATE request (as the apiserver would
/// send it); an `AdmissionReview` file (e.g. one captured from a live apiserver) is used as is.
pub(crate) fn request_from_document(doc: Value, namespace: &str) -> anyhow::Result<AdmissionRequest> {
    match doc.get("kind").and_then(Value::as_str) {
        Some("AdmissionReview") => {
            let body = serde_json::to_vec(&doc)?;
            stowage_webhook::decode_request(&body).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Some("Pod") | None => Ok(AdmissionRequest::create_pod(doc, namespace)),
        Some(other) => anyhow::bail!("expected a Pod or an AdmissionReview, got kind {other:?}"),
    }
}

/// Replica counts of the snapshot's StatefulSets, for the webhook's member count.
pub(crate) fn snapshot_members(snapshot: &stowage_scheduler::snapshot::Snapshot) -> StaticMembers {
    snapshot.stateful_sets.iter().fold(StaticMembers::default(), |members, sts| {
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        members.with(
            sts.metadata.namespace.as_deref().unwrap_or("default"),
            sts.metadata.name.as_deref().unwrap_or_default(),
            u32::try_from(replicas).unwrap_or(0),
        )
    })
}

/// `stowage mutate --pod FILE`: prints the JSON Patch (stdout) and the warnings (stderr).
pub(crate) fn mutate(args: &MutateArgs) -> anyhow::Result<ExitCode> {
    let config = crate::commands::load_config(args.config.as_deref())?;
    let members = match &args.snapshot {
        Some(path) => snapshot_members(&stowage_scheduler::snapshot::Snapshot::load(path)?),
        None => StaticMembers::default(),
    };
    let request = request_from_document(read_document(&args.pod)?, &args.namespace)?;
    let response = admit(&request, &AdmitContext::new(&config).members(&members));
    for warning in &response.warnings {
        eprintln!("warning: {warning}");
    }
    if !response.allowed {
        let message = response.status.as_ref().map(|s| s.message.clone()).unwrap_or_default();
        eprintln!("denied: {message}");
        return Ok(ExitCode::FAILURE);
    }
    let patch = response.patch.unwrap_or_default();
    if patch.0.is_empty() {
        eprintln!("no changes");
    }
    println!("{}", serde_json::to_string_pretty(&patch)?);
    Ok(ExitCode::SUCCESS)
}
