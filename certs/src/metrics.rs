//! Prometheus metrics for served certificates.
//!
//! - `stowage_tls_cert_not_after_seconds{listener}`: unix time at which the certificate being
//!   served expires; alert on `stowage_tls_cert_not_after_seconds - time() < 30 * 86400`.
//! - `stowage_tls_cert_reloads_total{listener,result="success|failure"}`: certificate reloads
//!   published, and rejected updates (each distinct bad content counted once).
//!
//! Register on the root (unprefixed) registry: a prefixed sub-registry would prepend its
//! prefix to these names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Name of the expiry gauge.
pub const NOT_AFTER: &str = "stowage_tls_cert_not_after_seconds";
/// Name of the reload counter as registered; the encoder appends `_total`.
pub const RELOADS: &str = "stowage_tls_cert_reloads";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    listener: String,
    result: &'static str,
}

/// The certificate metric families; cheap to clone (clones share the series).
#[derive(Debug, Clone, Default)]
pub struct CertMetrics {
    not_after: Family<ListenerLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
}

impl CertMetrics {
    /// Creates the families and registers them on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            NOT_AFTER,
            "Unix time at which the served TLS certificate expires",
            metrics.not_after.clone(),
        );
        registry.register(
            RELOADS,
            "TLS certificate reloads, by result (failure: an update was rejected, the previous certificate is kept)",
            metrics.reloads.clone(),
        );
        metrics
    }

    /// The series of one listener (e.g. `webhook`), created at zero so they export at once.
    pub(crate) fn listener(&self, listener: &str) -> ListenerMetrics {
        let reloads =
            |result| self.reloads.get_or_create(&ReloadLabels { listener: listener.to_owned(), result }).clone();
        ListenerMetrics {
            not_after: self.not_after.get_or_create(&ListenerLabels { listener: listener.to_owned() }).clone(),
            success: reloads("success"),
            failure: reloads("failure"),
        }
    }
}

/// The series of one listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerMetrics {
    not_after: Gauge,
    success: Counter,
    failure: Counter,
}

impl ListenerMetrics {
    pub(crate) fn set_not_after(&self, unix_seconds: i64) {
        self.not_after.set(unix_seconds);
    }

    pub(crate) fn reload_succeeded(&self) {
        self.success.inc();
    }

    pub(crate) fn reload_failed(&self) {
        self.failure.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn encoded_names_are_exact() {
        let mut registry = Registry::default();
        let metrics = CertMetrics::register(&mut registry);
        let webhook = metrics.listener("webhook");
        webhook.set_not_after(1_900_000_000);
        webhook.reload_succeeded();
        webhook.reload_failed();
        webhook.reload_failed();
        metrics.listener("extender");

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE stowage_tls_cert_not_after_seconds gauge",
            "stowage_tls_cert_not_after_seconds{listener=\"webhook\"} 1900000000",
            "stowage_tls_cert_not_after_seconds{listener=\"extender\"} 0",
            "# TYPE stowage_tls_cert_reloads counter",
            "stowage_tls_cert_reloads_total{listener=\"webhook\",result=\"success\"} 1",
            "stowage_tls_cert_reloads_total{listener=\"webhook\",result=\"failure\"} 2",
            "stowage_tls_cert_reloads_total{listener=\"extender\",result=\"failure\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("_total_total"));
    }
}
