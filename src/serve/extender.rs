//! The extender server: the cluster cache (watchers or a snapshot), the binder, the event
//! publisher, the waiting-pod reporter, the router and its listener (plain on loopback, or TLS
//! with `--extender-tls`).

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use prometheus_client::registry::Registry;
use stowage_edge::{ServeOptions, serve_plain, serve_tls};
use stowage_policy::Config;
use stowage_scheduler::{
    ClusterCache, Extender, KubeBinder, NoopEvents, RouterOptions,
    binder::{BindError, BindFuture, Binder, PodLocation},
    events::{EventPublisher, EventSink},
    router_with,
    snapshot::Snapshot,
    spawn_watchers,
};
use tokio::{sync::watch, task::JoinSet};
use tracing::{info, warn};

use super::tasks::{bind, server, stopped, until_stopped};
use crate::cli::ServeArgs;

/// What starting the extender needs.
pub(crate) struct Inputs<'a> {
    pub args: &'a ServeArgs,
    pub config: Arc<ArcSwap<Config>>,
    pub client: Option<kube::Client>,
    pub snapshot: Option<&'a Path>,
    pub registry: &'a mut Registry,
    pub tasks: &'a mut JoinSet<anyhow::Result<()>>,
    pub stop: watch::Receiver<bool>,
}

/// The running extender: its router, admin routes and readiness.
pub(crate) struct Started {
    pub router: Router,
    pub admin_routes: Router<()>,
    pub ready: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Binding needs a cluster; a snapshot-backed extender answers bind with an error.
#[derive(Debug)]
struct SnapshotBinder;

impl Binder for SnapshotBinder {
    fn bind<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str, _: &'a str) -> BindFuture<'a, ()> {
        Box::pin(async { Err(BindError::Transport("serving from a snapshot: binding needs a cluster".to_owned())) })
    }

    fn current<'a>(&'a self, _: &'a str, _: &'a str) -> BindFuture<'a, Option<PodLocation>> {
        Box::pin(async { Ok(None) })
    }
}

/// Serves the extender's router on `--extender-addr`, over TLS when `tls` is given.
pub(crate) async fn listen(
    args: &ServeArgs,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    serve_opts: ServeOptions,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = bind(args.extender_addr, "extender").await?;
    match tls {
        Some(tls) => tasks.spawn(server(serve_tls(listener, tls, router, serve_opts, stopped(stop.clone())))),
        None => tasks.spawn(server(serve_plain(listener, router, serve_opts, stopped(stop.clone())))),
    };
    Ok(())
}

/// Starts the extender's cache, binder, events and background tasks; returns its router.
pub(crate) async fn start(inputs: Inputs<'_>) -> anyhow::Result<Started> {
    let Inputs { args, config, client, snapshot, registry, tasks, stop } = inputs;
    let current = config.load_full();
    let (cache, binder, events): (Arc<ClusterCache>, Arc<dyn Binder>, Arc<dyn EventSink>) = match (client, snapshot) {
        (Some(client), _) => {
            let cache = Arc::new(ClusterCache::new(&current));
            let mut watchers = spawn_watchers(client.clone(), Arc::clone(&cache));
            // The watchers never end on their own: stop them when the server stops, or
            // `serve` would wait for them forever after SIGTERM.
            let stop_watchers = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    joined = &mut watchers => {
                        joined.context("cluster watchers")?;
                        anyhow::bail!("cluster watchers stopped")
                    }
                    () = stopped(stop_watchers) => {
                        watchers.abort();
                        Ok(())
                    }
                }
            });
            let instance = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "stowage".to_owned());
            let (events, publisher) = EventPublisher::spawn_kube(client.clone(), instance);
            tasks.spawn(async move {
                let _ = publisher.await;
                Ok(())
            });
            // A reason on every waiting member, whichever filter held it.
            tasks.spawn(crate::waiting::run(
                client.clone(),
                Arc::clone(&cache),
                Arc::clone(&config),
                Arc::clone(&events) as Arc<dyn EventSink>,
                stop.clone(),
            ));
            (cache, Arc::new(KubeBinder::new(client)) as Arc<dyn Binder>, events)
        }
        (None, Some(path)) => {
            let snap = Snapshot::load(path)?;
            for warning in &snap.warnings {
                warn!("{warning}");
            }
            let cache = Arc::new(ClusterCache::from_snapshot(&snap, &current));
            info!(objects = snap.len(), path = %path.display(), "extender serving from a snapshot");
            (cache, Arc::new(SnapshotBinder), Arc::new(NoopEvents))
        }
        (None, None) => anyhow::bail!("the extender needs a cluster (kubeconfig) or --snapshot"),
    };

    // Config changes also change label keys the cache indexes by.
    {
        let cache = Arc::clone(&cache);
        let config = Arc::clone(&config);
        let interval = args.reload_interval.max(Duration::from_millis(100));
        tasks.spawn(until_stopped(
            async move {
                let mut seen = config.load_full();
                let mut ticker = tokio::time::interval(interval);
                loop {
                    ticker.tick().await;
                    let now = config.load_full();
                    if !Arc::ptr_eq(&now, &seen) {
                        cache.reconfigure(&now);
                        seen = now;
                    }
                }
            },
            stop,
        ));
    }

    let extender = Arc::new(Extender::new(Arc::clone(&cache), config, binder, events, registry));
    let router = router_with(
        Arc::clone(&extender),
        RouterOptions {
            body_limit: args.extender_max_body_bytes,
            request_timeout: args.extender_timeout,
            max_in_flight: args.extender_max_in_flight,
        },
    );
    let admin_routes =
        Router::new().route_service("/debug/decisions", router.clone().into_service::<axum::body::Body>());
    let ready_cache = Arc::clone(&cache);
    let ready = Box::new(move || {
        if ready_cache.is_ready() {
            return Ok(());
        }
        let waiting: Vec<String> =
            ready_cache.status().into_iter().filter(|k| !k.synced).map(|k| format!("{:?}", k.kind)).collect();
        Err(format!("cluster cache has not synced yet (waiting for {})", waiting.join(", ")))
    });
    Ok(Started { router, admin_routes, ready })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    /// An API server that never answers: the watchers wait forever.
    fn silent_cluster() -> kube::Client {
        let service = tower::service_fn(|_: axum::http::Request<kube::client::Body>| async {
            std::future::pending::<Result<axum::http::Response<kube::client::Body>, std::convert::Infallible>>().await
        });
        kube::Client::new(service, "default")
    }

    /// After SIGTERM `serve` waits for every task; the cluster watchers must end on the stop
    /// (they never end on their own), or the process never exits.
    #[tokio::test]
    async fn every_extender_task_ends_once_stopped() {
        let Command::Serve(args) = Cli::try_parse_from(["stowage", "serve", "--components=extender"]).unwrap().command
        else {
            panic!("expected serve");
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut registry = Registry::default();
        let started = start(Inputs {
            args: &args,
            config: Arc::new(ArcSwap::from_pointee(Config::default())),
            client: Some(silent_cluster()),
            snapshot: None,
            registry: &mut registry,
            tasks: &mut tasks,
            stop: stop_rx,
        })
        .await
        .unwrap();
        tokio::task::yield_now().await;
        assert!(tasks.try_join_next().is_none(), "a task ended before the stop");

        stop_tx.send(true).unwrap();
        // The servers own the router (and through it the event publisher's sender); they end
        // on the stop and drop it.
        drop(started);
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
        })
        .await
        .expect("every task ends after the stop");
    }
}
