//! Loading a PEM certificate chain and private key, validated as a serving pair.
//!
//! The certificate file holds the leaf first, then any intermediates. The key file holds one
//! private key in PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1
//! (`BEGIN EC PRIVATE KEY`) form. A pair is accepted only when the key belongs to the leaf and
//! the leaf is inside its validity window now.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use crate::generate::{TLS_CERT_FILE, TLS_KEY_FILE, unix_seconds};

/// Why a certificate / key pair was rejected. Every variant names the file at fault.
///
/// All are worth retrying when the files may still change (a rotation in progress); at
/// startup they are fatal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, permissions, ...).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The file is empty or only whitespace.
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file is not well-formed PEM (e.g. truncated: a BEGIN line without its END line).
    #[error("{path} is not valid PEM: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file has no `CERTIFICATE` block.
    #[error("{path} contains no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file has no private key block.
    #[error("{path} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509 DER.
    #[error("{path}: the certificate does not parse: {reason}")]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key is of a type or curve the crypto provider cannot sign with.
    #[error("{path}: unusable private key: {source}")]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The private key is not the key of the leaf certificate.
    #[error("private key {key} does not match certificate {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate has expired.
    #[error("certificate {path} expired at {} (not after)", fmt_time(*not_after))]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// Its `notAfter`, unix seconds.
        not_after: i64,
    },
    /// The leaf certificate is not valid yet.
    #[error("certificate {path} is not yet valid until {} (not before)", fmt_time(*not_before))]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// Its `notBefore`, unix seconds.
        not_before: i64,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a certificate chain and its private key live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPaths {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl CertPaths {
    /// Explicit paths.
    #[must_use]
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { cert: cert.into(), key: key.into() }
    }

    /// `tls.crt` and `tls.key` in `dir`, as a mounted `kubernetes.io/tls` Secret has them.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self::new(dir.join(TLS_CERT_FILE), dir.join(TLS_KEY_FILE))
    }
}

/// Facts about a loaded leaf certificate, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// SHA-256 of the leaf DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// Number of certificates in the chain (leaf included).
    pub chain_len: usize,
}

/// A validated pair, ready for rustls.
#[derive(Clone)]
pub struct LoadedCert {
    /// Chain and signing key.
    pub certified_key: Arc<CertifiedKey>,
    /// Facts about the leaf.
    pub info: CertInfo,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert").field("info", &self.info).finish_non_exhaustive()
    }
}

/// Reads and validates the pair at `paths`.
///
/// # Errors
/// [`Error`], naming the file at fault.
pub fn load_pair(paths: &CertPaths) -> Result<LoadedCert> {
    let cert = read(&paths.cert)?;
    let key = read(&paths.key)?;
    parse_pair(paths, &cert, &key)
}

/// Validates a pair already read from `paths` (the paths only label errors).
///
/// # Errors
/// [`Error`], naming the file at fault.
pub fn parse_pair(paths: &CertPaths, cert_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert> {
    parse_pair_at(paths, cert_pem, key_pem, unix_seconds(SystemTime::now()))
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Unreadable { path: path.to_owned(), source })
}

fn parse_pair_at(paths: &CertPaths, cert_pem: &[u8], key_pem: &[u8], now: i64) -> Result<LoadedCert> {
    let chain = parse_chain(&paths.cert, cert_pem)?;
    let key = parse_key(&paths.key, key_pem)?;
    let Some(leaf) = chain.first() else {
        return Err(Error::NoCertificate { path: paths.cert.clone() });
    };
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| Error::InvalidCertificate { path: paths.cert.clone(), reason: e.to_string() })?;
    let validity = x509.validity();
    let info = CertInfo {
        subject: x509.subject().to_string(),
        sans: sans_of(&x509),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        fingerprint_sha256: hex(&Sha256::digest(leaf.as_ref())),
        chain_len: chain.len(),
    };

    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| Error::UnsupportedKey { path: paths.key.clone(), source })?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        // `Unknown`: the provider cannot expose the public key; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(Error::KeyMismatch { cert: paths.cert.clone(), key: paths.key.clone() });
        }
        Err(e) => return Err(Error::InvalidCertificate { path: paths.cert.clone(), reason: e.to_string() }),
    }

    if now < info.not_before {
        return Err(Error::NotYetValid { path: paths.cert.clone(), not_before: info.not_before });
    }
    if now > info.not_after {
        return Err(Error::Expired { path: paths.cert.clone(), not_after: info.not_after });
    }
    Ok(LoadedCert { certified_key: Arc::new(certified_key), info })
}

fn parse_chain(path: &Path, pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    if pem_bytes.trim_ascii().is_empty() {
        return Err(Error::Empty { path: path.to_owned() });
    }
    let chain =
        CertificateDer::pem_slice_iter(pem_bytes).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, &e))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn parse_key(path: &Path, pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>> {
    if pem_bytes.trim_ascii().is_empty() {
        return Err(Error::Empty { path: path.to_owned() });
    }
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(Error::NoKey { path: path.to_owned() }),
        Err(e) => Err(pem_error(path, &e)),
    }
}

fn pem_error(path: &Path, e: &pem::Error) -> Error {
    let reason = match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("truncated: missing {:?}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        other => other.to_string(),
    };
    Error::Pem { path: path.to_owned(), reason }
}

/// The DNS and IP subject alternative names of a DER certificate; `None` if it does not parse.
#[must_use]
pub fn subject_alt_names(cert_der: &[u8]) -> Option<Vec<String>> {
    x509_parser::parse_x509_certificate(cert_der).ok().map(|(_, x509)| sans_of(&x509))
}

fn sans_of(x509: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = x509.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes).ok().map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Unix seconds as a readable UTC date, falling back to the number.
pub(crate) fn fmt_time(unix: i64) -> String {
    ASN1Time::from_timestamp(unix).map_or_else(|_| format!("unix {unix}"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{CertificateAuthority, GenerateOptions, PemPair, generate};
    use std::time::{Duration, UNIX_EPOCH};

    fn paths() -> CertPaths {
        CertPaths::new("/secret/tls.crt", "/secret/tls.key")
    }

    fn pair() -> (CertificateAuthority, PemPair) {
        let b = generate(&GenerateOptions::default()).unwrap();
        (b.ca, b.server)
    }

    fn parse(cert: &str, key: &str) -> Result<LoadedCert> {
        parse_pair(&paths(), cert.as_bytes(), key.as_bytes())
    }

    #[test]
    fn generated_pair_loads_with_its_sans() {
        let (_, p) = pair();
        let loaded = parse(&p.cert_pem, &p.key_pem).unwrap();
        assert_eq!(loaded.info.sans, ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(loaded.info.chain_len, 1);
        assert!(loaded.info.subject.contains("CN=stowage"), "{}", loaded.info.subject);
        assert_eq!(loaded.info.fingerprint_sha256.len(), 64);
        assert!(loaded.info.not_after > unix_seconds(SystemTime::now()) + 364 * 86_400);
        assert_eq!(loaded.certified_key.cert.len(), 1);
    }

    #[test]
    fn generated_pair_loads_from_files() {
        let tmp = tempfile::tempdir().unwrap();
        let g = crate::generate::generate_to_dir(&GenerateOptions::default(), tmp.path()).unwrap();
        let loaded = load_pair(&CertPaths::in_dir(tmp.path())).unwrap();
        assert_eq!(loaded.info.sans.len(), 3);
        assert_eq!(CertPaths::in_dir(tmp.path()), CertPaths::new(g.tls_cert, g.tls_key));
    }

    #[test]
    fn chain_with_intermediate_is_accepted() {
        let (ca, p) = pair();
        let chain = format!("{}{}", p.cert_pem, ca.cert_pem());
        let loaded = parse(&chain, &p.key_pem).unwrap();
        assert_eq!(loaded.info.chain_len, 2);
        assert_eq!(loaded.info.sans[0], "localhost");
    }

    #[test]
    fn key_of_another_cert_is_rejected() {
        let (_, a) = pair();
        let (_, b) = pair();
        let err = parse(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
        assert_eq!(err.to_string(), "private key /secret/tls.key does not match certificate /secret/tls.crt");
    }

    #[test]
    fn expired_cert_is_rejected() {
        let start = SystemTime::now() - Duration::from_secs(3 * 86_400);
        let opts = GenerateOptions {
            not_before: Some(start),
            validity: Duration::from_secs(86_400),
            ..GenerateOptions::default()
        };
        let b = generate(&opts).unwrap();
        let err = parse(&b.server.cert_pem, &b.server.key_pem).unwrap_err();
        assert!(matches!(err, Error::Expired { .. }), "{err}");
        assert!(err.to_string().starts_with("certificate /secret/tls.crt expired at "), "{err}");
    }

    #[test]
    fn future_cert_is_rejected() {
        let opts = GenerateOptions {
            not_before: Some(SystemTime::now() + Duration::from_secs(86_400)),
            ..GenerateOptions::default()
        };
        let b = generate(&opts).unwrap();
        let err = parse(&b.server.cert_pem, &b.server.key_pem).unwrap_err();
        assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
        assert!(err.to_string().contains("is not yet valid until"), "{err}");
    }

    #[test]
    fn validity_edges_are_inclusive() {
        let opts = GenerateOptions {
            not_before: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
            validity: Duration::from_secs(100),
            ..GenerateOptions::default()
        };
        let b = generate(&opts).unwrap();
        let at = |now| parse_pair_at(&paths(), b.server.cert_pem.as_bytes(), b.server.key_pem.as_bytes(), now);
        assert!(matches!(at(999_999_999), Err(Error::NotYetValid { not_before: 1_000_000_000, .. })));
        assert!(at(1_000_000_000).is_ok());
        assert!(at(1_000_000_100).is_ok());
        assert!(matches!(at(1_000_000_101), Err(Error::Expired { not_after: 1_000_000_100, .. })));
    }

    #[test]
    fn empty_files_are_named() {
        let (_, p) = pair();
        let err = parse("", &p.key_pem).unwrap_err();
        assert_eq!(err.to_string(), "/secret/tls.crt is empty");
        let err = parse(&p.cert_pem, " \n").unwrap_err();
        assert_eq!(err.to_string(), "/secret/tls.key is empty");
    }

    #[test]
    fn half_written_cert_is_rejected() {
        let (_, p) = pair();
        let half = &p.cert_pem[..p.cert_pem.len() / 2];
        let err = parse(half, &p.key_pem).unwrap_err();
        assert!(matches!(err, Error::Pem { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        let half_key = &p.key_pem[..p.key_pem.len() / 2];
        assert!(matches!(parse(&p.cert_pem, half_key), Err(Error::Pem { .. })));
    }

    #[test]
    fn corrupted_base64_inside_a_complete_block_is_rejected() {
        let (_, p) = pair();
        // Flip characters in the middle of the body: still PEM, no longer a certificate.
        let mut bytes = p.cert_pem.into_bytes();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 8] {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        let cert = String::from_utf8(bytes).unwrap();
        let err = parse(&cert, &p.key_pem).unwrap_err();
        assert!(matches!(err, Error::InvalidCertificate { .. } | Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn garbage_and_swapped_files_are_rejected() {
        let (_, p) = pair();
        assert!(matches!(parse("hello world\n", &p.key_pem), Err(Error::NoCertificate { .. })));
        assert!(matches!(parse(&p.cert_pem, "hello world\n"), Err(Error::NoKey { .. })));
        // cert and key files swapped
        assert!(matches!(parse(&p.key_pem, &p.cert_pem), Err(Error::NoCertificate { .. })));
        let err = parse(&p.cert_pem, &p.cert_pem).unwrap_err();
        assert_eq!(err.to_string(), "/secret/tls.key contains no PEM private key (PKCS#8, PKCS#1 or SEC1)");
    }

    #[test]
    fn sec1_key_is_accepted() {
        let (_, p) = pair();
        // Re-wrap the PKCS#8 key as SEC1: PKCS#8 for P-256 embeds the SEC1 ECPrivateKey.
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(p.key_pem.as_bytes()).unwrap();
        let sec1 = sec1_from_p256_pkcs8(pkcs8.secret_pkcs8_der());
        let sec1_pem = pem_encode("EC PRIVATE KEY", &sec1);
        let loaded = parse(&p.cert_pem, &sec1_pem).unwrap();
        assert_eq!(loaded.info.sans[0], "localhost");
    }

    #[test]
    fn missing_file_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load_pair(&CertPaths::in_dir(tmp.path())).unwrap_err();
        assert!(matches!(err, Error::Unreadable { .. }));
        assert!(err.to_string().starts_with(&format!("cannot read {}", tmp.path().join("tls.crt").display())));
    }

    #[test]
    fn sans_helper_reads_der() {
        let (_, p) = pair();
        let der = CertificateDer::from_pem_slice(p.cert_pem.as_bytes()).unwrap();
        assert_eq!(subject_alt_names(&der).unwrap(), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(subject_alt_names(b"nope"), None);
    }

    /// The `privateKey` OCTET STRING of a P-256 PKCS#8 document is a SEC1 `ECPrivateKey`.
    fn sec1_from_p256_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        use x509_parser::der_parser::der::parse_der;
        let (_, doc) = parse_der(pkcs8).unwrap();
        let seq = doc.as_sequence().unwrap();
        seq[2].as_slice().unwrap().to_vec()
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", body.join("\n"))
    }
}
