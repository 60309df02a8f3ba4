//! Stowage certificates: the PKI of the webhook and extender listeners. Serving HTTP over the
//! resulting configuration is `stowage-edge`'s.
//!
//! - [`generate`](mod@generate): a CA (ECDSA P-256) and serving / client certificates signed by it, written as
//!   Kubernetes Secret files (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`) plus the `caBundle`;
//! - [`load`]: a PEM cert chain + private key pair, parsed and validated (key matches, in date);
//! - [`reload`]: [`ReloadingCert`], a rustls cert resolver that polls the files by content hash
//!   (so a Secret volume's `..data` symlink swap is seen) and publishes only valid pairs;
//! - [`tls`]: the rustls [`ServerConfig`](rustls::ServerConfig) (TLS 1.2+, ring, HTTP/1.1 ALPN,
//!   optional client-certificate verification);
//! - [`metrics`]: cert expiry and reload counters for Prometheus.

pub mod generate;
pub mod load;
pub mod metrics;
pub mod reload;
pub mod tls;

pub use generate::{CertificateAuthority, GenerateOptions, Generated, PemPair, generate, generate_to_dir};
pub use load::{CertInfo, CertPaths, LoadedCert, load_pair};
pub use metrics::CertMetrics;
pub use reload::{Reload, ReloadingCert};
pub use tls::server_config;
