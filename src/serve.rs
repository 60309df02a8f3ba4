//! `stowage serve`: wires the cluster source, the extender, the webhook, TLS, metrics and
//! graceful shutdown together. All logic lives in the workspace crates; this is plumbing.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use prometheus_client::registry::Registry;
use sha2::{Digest as _, Sha256};
use stowage_certs::{CertMetrics, CertPaths, ReloadingCert, ServeOptions, serve_plain, serve_tls, server_config};
use stowage_policy::Config;
use stowage_webhook::{AdmissionMetrics, Limits, MemberSource, StaticMembers, WebhookState};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
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

    if let Some(path) = args.config.clone() {
        tasks.spawn(watch_config(path, Arc::clone(&config), args.reload_interval, stop_rx.clone()));
    }

    let snapshot = match &args.snapshot {
        Some(path) => Some(stowage_scheduler::snapshot::Snapshot::load(path)?),
        None => None,
    };
    if let Some(snap) = &snapshot {
        for warning in &snap.warnings {
            warn!("{warning}");
        }
    }
    let client = match snapshot {
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
            tasks.spawn(until_stopped(cert.watch(args.reload_interval), stop_rx.clone()));
            Some(cert)
        }
        None => None,
    };
    let tls_config = match &tls_cert {
        Some(cert) => Some(server_config(Arc::clone(cert), args.client_ca.as_deref()).context("TLS configuration")?),
        None => None,
    };
    let serve_opts = ServeOptions {
        header_read_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        ..ServeOptions::default()
    };

    let mut admin = Router::new();

    if extender_on {
        let part = crate::serve_extender::start(crate::serve_extender::Inputs {
            args: &args,
            config: Arc::clone(&config),
            client: client.clone(),
            snapshot: args.snapshot.as_deref(),
            registry: &mut registry,
            tasks: &mut tasks,
            stop: stop_rx.clone(),
        })
        .await?;
        admin = admin.merge(part.admin_routes);
        checks.push(("extender", part.ready));
        let listener = bind(args.extender_addr, "extender").await?;
        let router = part.router;
        match (&tls_config, args.extender_tls) {
            (Some(tls), true) => {
                tasks.spawn(server(serve_tls(listener, Arc::clone(tls), router, serve_opts, stopped(stop_rx.clone()))));
            }
            (None, true) => anyhow::bail!("--extender-tls needs --tls-dir"),
            _ => {
                tasks.spawn(server(serve_plain(listener, router, serve_opts, stopped(stop_rx.clone()))));
            }
        }
    }

    if webhook_on {
        let tls = tls_config.clone().context("the webhook needs --tls-dir (a directory with tls.crt and tls.key)")?;
        let (members, members_ready): (Arc<dyn MemberSource>, ReadyCheck) = match (&client, &args.snapshot) {
            (Some(client), _) => {
                let (members, ready) = statefulset_members(client.clone(), &mut tasks, stop_rx.clone());
                (members, ready)
            }
            (None, Some(path)) => {
                let snap = stowage_scheduler::snapshot::Snapshot::load(path)?;
                (Arc::new(crate::mutate_cmd::snapshot_members(&snap)), Box::new(|| Ok(())))
            }
            (None, None) => (Arc::new(StaticMembers::default()), Box::new(|| Ok(()))),
        };
        let state = Arc::new(
            WebhookState::new(Arc::clone(&config), AdmissionMetrics::register(&mut registry))
                .with_members(members)
                .with_skip_namespaces(args.webhook_skip_namespaces.iter().filter(|n| !n.is_empty()).cloned().collect())
                .with_limits(Limits {
                    max_body_bytes: args.webhook_max_body_bytes,
                    timeout: args.webhook_timeout,
                    ..Limits::default()
                }),
        );
        let listener = bind(args.webhook_addr, "webhook").await?;
        tasks.spawn(server(serve_tls(
            listener,
            tls,
            stowage_webhook::router(Arc::clone(&state)),
            serve_opts,
            stopped(stop_rx.clone()),
        )));
        state.set_ready(true);
        let webhook_state = Arc::clone(&state);
        checks.push((
            "webhook",
            Box::new(move || {
                members_ready()?;
                if webhook_state.is_ready() { Ok(()) } else { Err("shutting down".to_owned()) }
            }),
        ));
    }

    if recovery_on {
        let client = client.clone().context("the recovery controller needs a live cluster, not --snapshot")?;
        let recovery = start_recovery(&args, client, Arc::clone(&config), &mut registry);
        admin = admin.merge(recovery.admin_routes());
        tasks.spawn(recovery.run(stop_rx.clone()));
    }

    let admin_state = Arc::new(AdminState { registry, checks, stopping: stop_rx.clone() });
    // Probes stay open; everything else on the port needs the admin check.
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&admin_state))
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(admin_auth, crate::admin_auth::require));
    let admin = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&admin_state))
        .merge(protected);
    let listener = bind(args.admin_addr, "admin").await?;
    let admin_opts = ServeOptions { max_connections: args.max_connections, ..ServeOptions::default() };
    tasks.spawn(server(serve_plain(listener, admin, admin_opts, stopped(stop_rx.clone()))));

    info!(components = ?args.components, "stowage is serving");
    tokio::select! {
        () = shutdown_signal() => info!("shutdown requested"),
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
    drop(admin_state);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            warn!("while stopping: {e:#}");
        }
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The recovery controller, leader-elected among the replicas running it (docs/recovery.md).
fn start_recovery(
    args: &ServeArgs,
    client: kube::Client,
    config: Arc<ArcSwap<Config>>,
    registry: &mut Registry,
) -> stowage_recovery::Controller {
    let identity = args
        .recovery_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("stowage-{}", std::process::id()));
    let options = stowage_recovery::Options {
        namespace: args.recovery_namespace.clone(),
        identity,
        interval: args.recovery_interval,
        lease_duration: args.recovery_lease_duration,
        max_in_flight: args.recovery_max_in_flight,
        ..stowage_recovery::Options::default()
    };
    info!(identity = %options.identity, lease = %format!("{}/{}", options.namespace, options.lease_name), "recovery controller");
    let metrics = stowage_recovery::RecoveryMetrics::register(registry);
    stowage_recovery::Controller::new(client, config, options, metrics)
}

struct AdminState {
    registry: Registry,
    checks: Vec<(&'static str, ReadyCheck)>,
    stopping: watch::Receiver<bool>,
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if *state.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".to_owned());
    }
    let failing: Vec<String> =
        state.checks.iter().filter_map(|(name, check)| check().err().map(|why| format!("{name}: {why}"))).collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", failing.join("; ")))
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))?;
    info!(%addr, listener = what, "listening");
    Ok(listener)
}

async fn server(fut: impl Future<Output = std::io::Result<()>>) -> anyhow::Result<()> {
    fut.await.map_err(Into::into)
}

/// Resolves once a stop has been requested.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs a background future until a stop is requested; then it ends cleanly.
pub(crate) async fn until_stopped(fut: impl Future<Output = ()>, rx: watch::Receiver<bool>) -> anyhow::Result<()> {
    tokio::select! {
        () = fut => {}
        () = stopped(rx) => {}
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Polls the config file; a changed, valid file replaces the config; an invalid one is
/// logged and ignored (the last good config stays in force).
async fn watch_config(
    path: PathBuf,
    config: Arc<ArcSwap<Config>>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut last = file_hash(&path);
    let poll = async {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        loop {
            ticker.tick().await;
            let hash = file_hash(&path);
            if hash == last {
                continue;
            }
            match std::fs::read_to_string(&path)
                .map_err(anyhow::Error::from)
                .and_then(|text| Config::from_yaml(&text).map_err(anyhow::Error::from))
            {
                Ok(new) => {
                    config.store(Arc::new(new));
                    info!(path = %path.display(), "config reloaded");
                    last = hash;
                }
                Err(e) => warn!(path = %path.display(), "config change ignored, keeping the last good config: {e:#}"),
            }
        }
    };
    until_stopped(poll, stop).await
}

fn file_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|bytes| Sha256::digest(&bytes).into())
}

/// Replica counts of StatefulSets from a trimmed reflector (the webhook's member source).
fn statefulset_members(
    client: kube::Client,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: watch::Receiver<bool>,
) -> (Arc<dyn MemberSource>, ReadyCheck) {
    let (reader, writer) = reflector::store::<StatefulSet>();
    let api: Api<StatefulSet> = Api::all(client);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|sts| {
            // Keep only what the member count needs.
            sts.metadata.managed_fields = None;
            sts.metadata.annotations = None;
            sts.status = None;
            if let Some(spec) = sts.spec.as_mut() {
                spec.template = Default::default();
                spec.volume_claim_templates = None;
            }
        })
        .reflect(writer)
        .applied_objects();
    tasks.spawn(until_stopped(
        async move {
            use futures::StreamExt as _;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    warn!("StatefulSet watch: {e}");
                }
            }
        },
        stop.clone(),
    ));
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&synced);
    let waiter = reader.clone();
    // Flags readiness once the first list is in, then waits for the stop like every other task:
    // `serve` takes a task that ends on its own for a failure and exits.
    tasks.spawn(until_stopped(
        async move {
            if waiter.wait_until_ready().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
            std::future::pending::<()>().await;
        },
        stop,
    ));
    let members = move |namespace: &str, name: &str| {
        let key = reflector::ObjectRef::new(name).within(namespace);
        reader.get(&key).and_then(|sts| sts.spec.as_ref().and_then(|s| s.replicas)).and_then(|r| u32::try_from(r).ok())
    };
    let ready: ReadyCheck = Box::new(move || {
        if synced.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err("StatefulSet cache has not synced yet".to_owned())
        }
    });
    (Arc::new(members), ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An apiserver with no StatefulSets that holds every watch open.
    fn empty_cluster() -> kube::Client {
        let service = tower::service_fn(|request: axum::http::Request<kube::client::Body>| async move {
            if request.uri().query().unwrap_or_default().contains("watch=true") {
                std::future::pending::<()>().await;
            }
            let list = serde_json::json!({
                "apiVersion": "apps/v1", "kind": "StatefulSetList", "metadata": {"resourceVersion": "1"}, "items": []
            });
            let body = kube::client::Body::from(serde_json::to_vec(&list).unwrap());
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(body))
        });
        kube::Client::new(service, "default")
    }

    /// `serve` treats a task that ends before a stop as a failure of the process, so the
    /// StatefulSet cache's tasks must keep running once it has synced.
    #[tokio::test]
    async fn the_statefulset_cache_tasks_run_until_stopped() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (_members, ready) = statefulset_members(empty_cluster(), &mut tasks, stop_rx);
        tokio::time::timeout(Duration::from_secs(10), async {
            while ready().is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the StatefulSet cache syncs");
        tokio::task::yield_now().await;
        assert!(tasks.try_join_next().is_none(), "a task ended on its own after the sync");

        stop_tx.send(true).unwrap();
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    }
}
