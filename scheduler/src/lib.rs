//! Stowage scheduler extender.

pub mod snapshot;
