//! Stowage scheduler extender: a stateful-aware kube-scheduler extender for databases.
//!
//! Table of contents (pure core first, edges last; a module imports only modules listed
//! before it):
//! - [`extender::v1`]: the wire types kube-scheduler sends and reads;
//! - [`cache`]: the trimmed cluster cache fed by watchers, with incremental indexes;
//! - [`ledger`]: in-flight placements and the race-closing in-cycle records;
//! - [`framework`]: scheduling-framework vocabulary (codes, statuses, reasons, node views), the
//!   cycle state container, the `Plugin` trait and the runner; it never names a plugin;
//! - [`plugins`]: the registry, and LocalData, ZoneSpread (with the quorum guard) and
//!   Contention, each owning its state;
//! - [`decisions`]: the live decision log behind `/debug/decisions`;
//! - `evaluation`: the one path from candidates to per-node outcomes, scores and lines;
//! - [`explain`]: the offline explanation of one pod (`stowage explain`);
//! - `verbs`: filter, prioritize, preempt and bind, one file each, and the wire mapping;
//!   [`service`] is their public facade ([`Extender`], [`Options`]);
//! - [`binder`], [`events`], [`metrics`]: side effects and observability;
//! - [`handlers`]: the axum router (the only module that knows HTTP).
//!
//! Entry points for the binary:
//! ```no_run
//! # async fn run(client: kube::Client, config: stowage_policy::Config) {
//! use std::sync::Arc;
//! use stowage_scheduler::{cache::{ClusterCache, spawn_watchers}, binder::KubeBinder,
//!     events::EventPublisher, service::Extender, handlers::router};
//! let config = Arc::new(arc_swap::ArcSwap::from_pointee(config));
//! let cache = Arc::new(ClusterCache::new(&config.load()));
//! let _watchers = spawn_watchers(client.clone(), cache.clone());
//! let (events, _publisher) = EventPublisher::spawn_kube(client.clone(), "stowage-0");
//! let mut registry = prometheus_client::registry::Registry::default();
//! let extender = Arc::new(Extender::new(cache.clone(), config, Arc::new(KubeBinder::new(client)), events, &mut registry));
//! let app: axum::Router = router(extender);
//! cache.wait_until_ready().await;
//! # let _ = app;
//! # }
//! ```

pub mod binder;
pub mod cache;
pub mod decisions;
mod evaluation;
pub mod events;
pub mod explain;
pub mod extender;
pub mod framework;
pub mod handlers;
pub mod ledger;
pub mod metrics;
pub mod plugins;
pub mod service;
pub mod snapshot;
mod verbs;

pub use binder::{Binder, FakeBinder, KubeBinder};
pub use cache::{ClusterCache, spawn_watchers};
pub use events::{EventPublisher, EventSink, MemoryEvents, NoopEvents};
pub use explain::{Explanation, explain};
pub use handlers::{RouterOptions, router, router_with};
pub use service::{Extender, Options};
