//! Benchmark support for stowage (not part of the product).
//!
//! - [`cluster`]: the synthetic cluster of `stowage_fixtures::realistic` fed into the scheduler's
//!   cache, and the extender over it;
//! - [`client`]: a keep-alive HTTP/1.1 load generator (plain or TLS): N connections for a fixed
//!   time, every response verified, latencies in an HdrHistogram;
//! - [`empty`]: baseline servers on the same stack as stowage (`stowage_edge::serve_tls` /
//!   `serve_plain` + axum) whose handlers return a fixed minimal answer;
//! - [`fixtures`]: admission reviews (a StatefulSet pod and a large pod) and extender arguments;
//! - [`report`]: result files, tables, process CPU time and memory, and the machine description;
//! - [`slow`]: slow clients that send headers and one body byte, then stall (a bounded flood).
//!
//! The benches in the workspace's `benches/` folder drive these; see `scripts/bench.sh`.

pub mod client;
pub mod cluster;
pub mod empty;
pub mod fixtures;
pub mod report;
pub mod slow;
