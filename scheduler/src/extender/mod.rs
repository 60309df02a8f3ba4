//! The extender protocol.

pub mod v1;
