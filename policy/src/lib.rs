//! Stowage policy: the `stowage.io/*` annotation vocabulary and the cluster config file,
//! parsed into typed, validated values. No IO: callers hand in text and objects.
//!
//! - [`config`]: the cluster config (profiles, pools, weights), every problem reported at once;
//! - [`annotations`]: a pod's annotations resolved against the config into a [`Policy`];
//! - [`group`]: group facts shared by every component (identity, role, `n`, quorum limit,
//!   `minDomains`);
//! - [`quantity`]: exact Kubernetes quantity parsing;
//! - [`tenancy`]: which namespaces may use a profile;
//! - [`text`]: bounded quoting of untrusted input in messages;
//! - [`vocab`]: the closed value sets (`required|preferred|off`, ...).

pub mod annotations;
pub mod config;
pub mod group;
pub mod quantity;
pub mod tenancy;
pub mod text;
pub mod vocab;

pub use annotations::{GroupKey, GroupSource, Policy, resolve};
pub use config::{Config, Profile};
pub use quantity::Quantity;
pub use vocab::{LocalData, QosMode, Quorum, Role, Spread};
