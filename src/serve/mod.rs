//! `stowage serve`: wires the cluster source, the extender, the webhook, the recovery
//! controller, TLS, the admin port and graceful shutdown together. All logic lives in the
//! workspace crates; this is plumbing, one concern per file:
//!
//! - this file: the shared startup (config, cluster client, TLS, connection limits) and the
//!   shutdown sequence;
//! - [`extender`]: the extender server (cluster cache, binder, events, router);
//! - [`webhook`]: the webhook server (admission state, StatefulSet member counts);
//! - [`admin`]: the admin server (probes, metrics, debug routes, authentication);
//! - [`recovery`]: the recovery controller;
//! - [`config_watch`]: hot reload of the config file;
//! - [`tasks`]: listeners, server tasks and the stop signal, shared by all of the above.
//!
//! Imports point one way: this file uses the others; they use only [`tasks`].

mod admin;
mod config_watch;
mod extender;
mod recovery;
pub(crate) mod tasks;
mod webhook;

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use prometheus_client::registry::Registry;
use stowage_certs::{CertMetrics, CertPaths, ReloadingCert, server_config};
use tokio::{sync::watch, task::JoinSet};
use tracing::{info, warn};

use crate::cli::{Component, ServeArgs};

/// Something that can say whether it is ready, for `/readyz`.
type ReadyCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs the servers until SIGTERM or Ctrl-C.
pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let extender_on = args.components.contains(&Component::Extender);
    let webhook_on = args.components.contains(&Component::Webhook);
    let recovery_on = args.components.contains(&Component::Recovery);
    anyhow::ensure!(extender_on || webhook_on || recovery_on, "--components names nothing to run");

    let config = Arc::new(ArcSwap::from_pointee(crate::commands::load_config(args.config.as_deref())?));
    let mut registry = Registry::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut checks: Vec<(&'static str, ReadyCheck)> = Vec::new();
    let mut admin_routes = Router::new();

    if let Some(path) = args.config.clone() {
        tasks.spawn(config_watch::watch_config(path, Arc::clone(&config), args.reload_interval, stop_rx.clone()));
    }

    let client = match &args.snapshot {
        Some(_) => None,
        None => Some(crate::kube_client::client(args.kubeconfig.as_deref()).await?),
    };

    let admin_auth = crate::admin_auth::AdminAuth::new(args.admin_auth, args.admin_addr, client.clone())?;

    let cert_metrics = CertMetrics::register(&mut registry);
    let tls_cert = match &args.tls_dir {
        Some(dir) => {
            let cert = ReloadingCert::load(CertPaths::in_dir(dir))
                .with_context(|| format!("loading the serving certificate from {}", dir.display()))?
                .with_metrics(&cert_metrics, "serving");
            let cert = Arc::new(cert);
            tasks.spawn(tasks::until_stopped(cert.watch(args.reload_interval), stop_rx.clone()));
            Some(cert)
        }
        None => None,
    };
    let tls_config = match &tls_cert {
        Some(cert) => Some(server_config(Arc::clone(cert), args.client_ca.as_deref()).context("TLS configuration")?),
        None => None,
    };
    let serve_opts = tasks::serve_options(&args);
    for (flag, timeout) in [("--webhook-timeout", args.webhook_timeout), ("--extender-timeout", args.extender_timeout)]
    {
        if args.header_read_timeout >= timeout {
            warn!(header_read_timeout = ?args.header_read_timeout, ?timeout, "--header-read-timeout is not below {flag}");
        }
    }

    if extender_on {
        let tls = match (&tls_config, args.extender_tls) {
            (Some(tls), true) => Some(Arc::clone(tls)),
            (None, true) => anyhow::bail!("--extender-tls needs --tls-dir"),
            _ => None,
        };
        let started = extender::start(extender::Inputs {
            args: &args,
            config: Arc::clone(&config),
            client: client.clone(),
            snapshot: args.snapshot.as_deref(),
            registry: &mut registry,
            tasks: &mut tasks,
            stop: stop_rx.clone(),
        })
        .await?;
        admin_routes = admin_routes.merge(started.admin_routes);
        checks.push(("extender", started.ready));
        extender::listen(&args, started.router, tls, serve_opts, &mut tasks, &stop_rx).await?;
    }

    if webhook_on {
        let tls = tls_config.clone().context("the webhook needs --tls-dir (a directory with tls.crt and tls.key)")?;
        let ready =
            webhook::start(&args, Arc::clone(&config), client.as_ref(), tls, &mut registry, &mut tasks, &stop_rx)
                .await?;
        checks.push(("webhook", ready));
    }

    if recovery_on {
        let client = client.clone().context("the recovery controller needs a live cluster, not --snapshot")?;
        let recovery = recovery::start_recovery(&args, client, Arc::clone(&config), &mut registry);
        admin_routes = admin_routes.merge(recovery.admin_routes());
        tasks.spawn(recovery.run(stop_rx.clone()));
    }

    let admin = admin::Admin { registry, checks, routes: admin_routes };
    admin::start(&args, admin, admin_auth, serve_opts, &mut tasks, &stop_rx).await?;

    info!(components = ?args.components, "stowage is serving");
    tokio::select! {
        () = tasks::shutdown_signal() => info!("shutdown requested"),
        Some(done) = tasks.join_next() => {
            // A server or watcher ended on its own: that is a failure of the process.
            let _ = stop_tx.send(true);
            match done {
                Ok(Ok(())) => anyhow::bail!("a server stopped unexpectedly"),
                Ok(Err(e)) => return Err(e),
                Err(e) => anyhow::bail!("a server task failed: {e}"),
            }
        }
    }
    // Report not-ready first so endpoints are withdrawn, keep serving for the grace delay,
    // then stop accepting and drain.
    let _ = stop_tx.send(true);
    tokio::time::sleep(args.shutdown_delay).await;
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            warn!("while stopping: {e:#}");
        }
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}
