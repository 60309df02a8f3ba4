//! `stowage explain`: what the webhook would inject into a pod, then where the extender would
//! place the result, from a cluster snapshot.

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
}

pub(crate) fn explain_cmd(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = crate::commands::load_config(args.config.as_deref())?;
    let snapshot = Snapshot::load(&args.snapshot)?;
    for warning in &snapshot.warnings {
        eprintln!("warning: {warning}");
    }
    let mut pod_json = read_document(&args.pod)?;
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
            serde_json::from_value(pod_json).with_context(|| format!("{} is not a valid Pod", args.pod.display()))?;
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("default".to_owned());
        }
        let cache = ClusterCache::from_snapshot(&snapshot, &config);
        Some(explain(&cache, &config, &pod))
    };
    let report = Report { admission, placement };
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
    out
}
