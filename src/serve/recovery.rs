//! The recovery controller, when `--components` names it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use stowage_policy::Config;
use tracing::info;

use crate::cli::ServeArgs;

/// The recovery controller, leader-elected among the replicas running it (docs/recovery.md).
pub(super) fn start_recovery(
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
