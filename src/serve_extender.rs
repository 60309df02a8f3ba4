//! The extender half of `stowage serve`.

use std::{path::Path, sync::Arc};

use arc_swap::ArcSwap;
use axum::Router;
use prometheus_client::registry::Registry;
use stowage_policy::Config;
use tokio::{sync::watch, task::JoinSet};

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

pub(crate) async fn start(_inputs: Inputs<'_>) -> anyhow::Result<Started> {
    anyhow::bail!("the extender is not wired yet")
}
