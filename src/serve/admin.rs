//! The admin server (plain HTTP): the probes (open, aggregated over every component), and
//! `/metrics` plus the components' admin routes (e.g. `/debug/decisions`) behind the admin
//! authentication.

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::registry::Registry;
use stowage_edge::{Probe, ServeOptions, serve_plain};
use tokio::{sync::watch, task::JoinSet};

use super::{
    ReadyCheck,
    tasks::{bind, server, stopped},
};
use crate::{admin_auth::AdminAuth, cli::ServeArgs};

/// What the admin port serves.
pub(super) struct Admin {
    /// The metrics of every component.
    pub registry: Registry,
    /// One readiness check per component.
    pub checks: Vec<(&'static str, ReadyCheck)>,
    /// Routes contributed by the components, served behind authentication.
    pub routes: Router,
}

/// Starts the admin server on `--admin-addr`.
pub(super) async fn start(
    args: &ServeArgs,
    admin: Admin,
    auth: AdminAuth,
    serve_opts: ServeOptions,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Admin { registry, checks, routes } = admin;
    let probe: Arc<dyn Probe> = Arc::new(Readiness { checks, stopping: stop.clone() });
    // Probes stay open; everything else on the port needs the admin check.
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry))
        .merge(routes)
        .layer(axum::middleware::from_fn_with_state(auth, crate::admin_auth::require));
    let app = stowage_edge::probes(probe).merge(protected);
    let listener = bind(args.admin_addr, "admin").await?;
    tasks.spawn(server(serve_plain(listener, app, serve_opts, stopped(stop.clone()))));
    Ok(())
}

/// Ready when no stop was asked and every component's check passes.
struct Readiness {
    checks: Vec<(&'static str, ReadyCheck)>,
    stopping: watch::Receiver<bool>,
}

impl Probe for Readiness {
    fn ready(&self) -> Result<(), String> {
        if *self.stopping.borrow() {
            return Err("shutting down".to_owned());
        }
        let failing: Vec<String> =
            self.checks.iter().filter_map(|(name, check)| check().err().map(|why| format!("{name}: {why}"))).collect();
        if failing.is_empty() { Ok(()) } else { Err(failing.join("; ")) }
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}
