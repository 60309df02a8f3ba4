//! Stowage's HTTP edge, shared by the webhook, the extender and the admin port. One behaviour
//! per module, from the socket inwards:
//!
//! - [`accept`](mod@accept): the plain/TLS accept loop ([`serve_plain`], [`serve_tls`]) with
//!   the connection cap, handshake, idle and drain timeouts ([`ServeOptions`]);
//! - `head_timeout`: the header read timeout, from a head's first byte to its end, separate
//!   from (and much shorter than) the idle keep-alive timeout;
//! - [`protocol`]: the switch between HTTP/1.1 only and HTTP/1.1 + HTTP/2 ([`Protocol`]);
//! - [`trace`]: one tracing span per API request ([`traced`]);
//! - [`shed`]: load shedding with a fixed number of request slots ([`Slots`]);
//! - [`deadline`](mod@deadline): a per-request deadline answered with a JSON error;
//! - [`content_type`]: JSON bodies only ([`require_json`]);
//! - [`body_limit`]: `Content-Length` and streamed body limits ([`check_declared`], [`read`]);
//! - [`api`](mod@api): the layers above stacked for an API ([`api()`], [`ApiLimits`]);
//! - [`probes`](mod@probes): the one `/healthz` + `/readyz` implementation ([`Probe`]);
//! - [`error`]: the one JSON error body ([`ApiError`]).
//!
//! The TLS configuration (certificates, reloading, ALPN) is `stowage-certs`'; this crate only
//! takes a finished `rustls::ServerConfig`.

pub mod accept;
pub mod api;
pub mod body_limit;
pub mod content_type;
mod deadline;
pub mod error;
mod head_timeout;
pub mod probes;
pub mod protocol;
pub mod shed;
pub mod trace;

pub use accept::{ServeOptions, serve_plain, serve_tls};
pub use api::{ApiLimits, api};
pub use body_limit::{BodyError, check_declared, read};
pub use content_type::{NotJson, require_json};
pub use error::ApiError;
pub use probes::{Probe, probes};
pub use protocol::Protocol;
pub use shed::{Budget, Overloaded, Slots};
pub use trace::traced;
