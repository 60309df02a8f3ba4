//! The rustls server configuration for stowage's listeners.
//!
//! - the `ring` provider, passed explicitly: no process-wide default provider is needed;
//! - TLS 1.2 and 1.3 only (rustls implements nothing older);
//! - ALPN `http/1.1` only. A client that offers ALPN without `http/1.1` (e.g. `h2` alone) is
//!   refused with a `no_application_protocol` alert, as RFC 7301 asks, rather than answered in
//!   a protocol it did not offer; a client that offers no ALPN at all is served HTTP/1.1;
//! - optionally, mutual TLS: client certificates are required and verified against a CA file
//!   (read once, at startup).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::reload::ReloadingCert;

/// The protocol versions offered: TLS 1.3 and TLS 1.2.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocols offered.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client CA file could not be read.
    #[error("cannot read client CA {path}: {source}")]
    ClientCaUnreadable {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The client CA file holds no usable certificate.
    #[error("client CA {path}: {reason}")]
    ClientCaInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds the server configuration around a reloading certificate. With `client_ca`, every
/// client must present a certificate issued by a CA in that PEM file.
///
/// # Errors
/// [`Error`] when the client CA file is unreadable or holds no valid certificate.
pub fn server_config(resolver: Arc<ReloadingCert>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ServerConfig::builder_with_provider(Arc::clone(&provider)).with_protocol_versions(PROTOCOL_VERSIONS)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = client_roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::ClientCaInvalid { path: path.to_owned(), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

fn client_roots(path: &Path) -> Result<RootCertStore> {
    let invalid = |reason: String| Error::ClientCaInvalid { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|source| Error::ClientCaUnreadable { path: path.to_owned(), source })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenerateOptions, generate_to_dir};
    use crate::load::CertPaths;
    use rustls::ProtocolVersion;

    fn resolver(dir: &Path) -> Arc<ReloadingCert> {
        generate_to_dir(&GenerateOptions::default(), dir).unwrap();
        Arc::new(ReloadingCert::load(CertPaths::in_dir(dir)).unwrap())
    }

    #[test]
    fn offers_tls12_and_13_and_http1_only() {
        let tmp = tempfile::tempdir().unwrap();
        let config = server_config(resolver(tmp.path()), None).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        let versions: Vec<ProtocolVersion> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(versions, [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]);
        for suite in &config.crypto_provider().cipher_suites {
            let v = suite.version().version;
            assert!(v == ProtocolVersion::TLSv1_2 || v == ProtocolVersion::TLSv1_3, "{suite:?}");
        }
    }

    #[test]
    fn client_ca_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let r = resolver(tmp.path());
        let missing = tmp.path().join("nope.crt");
        let err = server_config(Arc::clone(&r), Some(&missing)).unwrap_err();
        assert!(matches!(err, Error::ClientCaUnreadable { .. }), "{err}");
        let key_only = tmp.path().join("tls.key");
        let err = server_config(Arc::clone(&r), Some(&key_only)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let ca = tmp.path().join("ca.crt");
        server_config(r, Some(&ca)).unwrap();
    }
}
