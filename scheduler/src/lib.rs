//! Stowage scheduler extender.

pub mod cache;
pub mod extender;
pub mod framework;
pub mod ledger;
pub mod plugins;
pub mod snapshot;
#[doc(hidden)]
pub mod testing;
