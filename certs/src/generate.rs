//! Certificate generation: a CA and the certificates it signs.
//!
//! All keys are ECDSA P-256. The CA is valid for ten years by default, a serving certificate
//! for one. [`generate_to_dir`] writes the files a Kubernetes TLS Secret holds (`ca.crt`,
//! `ca.key`, `tls.crt`, `tls.key`) and returns the base64 `caBundle` for a
//! MutatingWebhookConfiguration. To renew a serving certificate under an existing CA (so the
//! `caBundle` stays the same), load it with [`CertificateAuthority::from_pem`] and call
//! [`write_to_dir`] with a fresh [`CertificateAuthority::issue_server_cert`].

use std::fmt;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use x509_parser::time::ASN1Time;

/// File name of the CA certificate (the `caBundle` source).
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the serving certificate, as in a `kubernetes.io/tls` Secret.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the serving private key, as in a `kubernetes.io/tls` Secret.
pub const TLS_KEY_FILE: &str = "tls.key";

/// How far `not_before` is set in the past when no start is given, to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a certificate could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No DNS name and no IP address were asked for.
    #[error("a serving certificate needs at least one DNS name or IP address")]
    NoSubjectAltNames,
    /// The validity window does not fit an X.509 date.
    #[error("validity window starting at unix time {not_before} for {validity:?} is out of range")]
    Validity {
        /// Start of the window, unix seconds.
        not_before: i64,
        /// Requested length.
        validity: Duration,
    },
    /// rcgen refused the parameters (e.g. a DNS name that is not IA5) or failed to sign.
    #[error("cannot build certificate: {0}")]
    Build(#[from] rcgen::Error),
    /// The CA private key is not the key of the CA certificate.
    #[error("the CA private key does not match the CA certificate")]
    CaKeyMismatch,
    /// The CA certificate PEM could not be parsed.
    #[error("cannot parse the CA certificate: {0}")]
    CaCertificate(String),
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to put in generated certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Subject common name of the serving certificate. Default `stowage`.
    pub common_name: String,
    /// DNS subject alternative names. Default `localhost`.
    pub dns_names: Vec<String>,
    /// IP subject alternative names. Default `127.0.0.1` and `::1`.
    pub ip_addresses: Vec<IpAddr>,
    /// Lifetime of the serving (and client) certificates. Default 365 days.
    pub validity: Duration,
    /// Lifetime of a generated CA. Default 3650 days.
    pub ca_validity: Duration,
    /// Start of validity. Default (`None`): now minus five minutes, to tolerate clock skew.
    /// A start far in the past makes expired certificates, for tests.
    pub not_before: Option<SystemTime>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            common_name: "stowage".to_owned(),
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
            validity: 365 * DAY,
            ca_validity: 3650 * DAY,
            not_before: None,
        }
    }
}

impl GenerateOptions {
    /// Options for a cluster Service: DNS names `svc`, `svc.ns`, `svc.ns.svc` and
    /// `svc.ns.svc.cluster.local`, common name `svc.ns.svc`, no IP addresses.
    #[must_use]
    pub fn for_service(service: &str, namespace: &str) -> Self {
        Self {
            common_name: format!("{service}.{namespace}.svc"),
            dns_names: vec![
                service.to_owned(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ],
            ip_addresses: Vec::new(),
            ..Self::default()
        }
    }

    /// `not_before` as unix seconds (now minus the skew allowance when unset).
    fn start(&self) -> i64 {
        let start = self.not_before.unwrap_or_else(|| SystemTime::now() - BACKDATE);
        unix_seconds(start)
    }
}

/// A certificate and its private key, both PEM. `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for PemPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemPair").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// A certificate authority that can sign serving and client certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA valid for `opts.ca_validity` from `opts.not_before`.
    ///
    /// # Errors
    /// [`Error::Validity`] or [`Error::Build`].
    pub fn generate(opts: &GenerateOptions) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("stowage CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, opts.start(), opts.ca_validity)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// Loads an existing CA from its certificate and private key PEM.
    ///
    /// # Errors
    /// [`Error::CaCertificate`] when the certificate does not parse, [`Error::Build`] when the
    /// key does not, [`Error::CaKeyMismatch`] when they are not a pair.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::CaCertificate(e.to_string()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|e| Error::CaCertificate(e.to_string()))?;
        if x509.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
            return Err(Error::CaKeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Self { cert_pem: cert_pem.to_owned(), issuer })
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    #[must_use]
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate PEM in base64: the `caBundle` of a webhook configuration.
    #[must_use]
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.cert_pem.as_bytes())
    }

    /// Issues a serving certificate (`serverAuth`) for the names in `opts`.
    ///
    /// # Errors
    /// [`Error::NoSubjectAltNames`], [`Error::Validity`] or [`Error::Build`].
    pub fn issue_server_cert(&self, opts: &GenerateOptions) -> Result<PemPair> {
        if opts.dns_names.is_empty() && opts.ip_addresses.is_empty() {
            return Err(Error::NoSubjectAltNames);
        }
        let mut sans = Vec::with_capacity(opts.dns_names.len() + opts.ip_addresses.len());
        for name in &opts.dns_names {
            sans.push(SanType::DnsName(name.clone().try_into()?));
        }
        sans.extend(opts.ip_addresses.iter().copied().map(SanType::IpAddress));
        self.issue(&opts.common_name, sans, ExtendedKeyUsagePurpose::ServerAuth, opts)
    }

    /// Issues a client certificate (`clientAuth`) with this common name, for mutual TLS.
    /// It is valid for the default serving-certificate lifetime.
    ///
    /// # Errors
    /// [`Error::Validity`] or [`Error::Build`].
    pub fn issue_client_cert(&self, common_name: &str) -> Result<PemPair> {
        self.issue(common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &GenerateOptions::default())
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        opts: &GenerateOptions,
    ) -> Result<PemPair> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, opts.start(), opts.validity)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A new CA and a serving certificate it signed, in memory.
#[derive(Debug)]
pub struct Bundle {
    /// The CA.
    pub ca: CertificateAuthority,
    /// The serving certificate and key.
    pub server: PemPair,
}

/// What [`generate_to_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Base64 of `ca.crt`: the `caBundle` of the webhook configuration.
    pub ca_bundle_base64: String,
    /// Path of `ca.crt`.
    pub ca_cert: PathBuf,
    /// Path of `ca.key` (mode 0600).
    pub ca_key: PathBuf,
    /// Path of `tls.crt`.
    pub tls_cert: PathBuf,
    /// Path of `tls.key` (mode 0600).
    pub tls_key: PathBuf,
}

/// Generates a new CA and a serving certificate signed by it, in memory.
///
/// # Errors
/// As [`CertificateAuthority::generate`] and [`CertificateAuthority::issue_server_cert`].
pub fn generate(opts: &GenerateOptions) -> Result<Bundle> {
    let ca = CertificateAuthority::generate(opts)?;
    let server = ca.issue_server_cert(opts)?;
    Ok(Bundle { ca, server })
}

/// Generates a new CA and serving certificate and writes them into `dir` (created if missing).
///
/// # Errors
/// As [`generate`], plus [`Error::Write`].
pub fn generate_to_dir(opts: &GenerateOptions, dir: &Path) -> Result<Generated> {
    let bundle = generate(opts)?;
    write_to_dir(&bundle.ca, &bundle.server, dir)
}

/// Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` into `dir` (created, mode 0700, if
/// missing). Each file is written to a temporary file in `dir` and renamed into place, so a
/// reader never sees a half-written file; keys get mode 0600, certificates 0644. The key is
/// written before its certificate: a reader polling in between sees a mismatched pair, which
/// [`crate::ReloadingCert`] rejects and retries.
///
/// # Errors
/// [`Error::Write`].
pub fn write_to_dir(ca: &CertificateAuthority, server: &PemPair, dir: &Path) -> Result<Generated> {
    create_dir(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })?;
    let out = Generated {
        ca_bundle_base64: ca.ca_bundle_base64(),
        ca_cert: dir.join(CA_CERT_FILE),
        ca_key: dir.join(CA_KEY_FILE),
        tls_cert: dir.join(TLS_CERT_FILE),
        tls_key: dir.join(TLS_KEY_FILE),
    };
    write_atomic(&out.ca_key, ca.key_pem().as_bytes(), 0o600)?;
    write_atomic(&out.ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
    write_atomic(&out.tls_key, server.key_pem.as_bytes(), 0o600)?;
    write_atomic(&out.tls_cert, server.cert_pem.as_bytes(), 0o644)?;
    Ok(out)
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let err = |source| Error::Write { path: path.to_owned(), source };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir).map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // Make the rename durable; not every platform can open a directory, so this is best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "stowage");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, not_before: i64, validity: Duration) -> Result<()> {
    let out_of_range = || Error::Validity { not_before, validity };
    let secs = i64::try_from(validity.as_secs()).map_err(|_| out_of_range())?;
    let not_after = not_before.checked_add(secs).ok_or_else(out_of_range)?;
    params.not_before = ASN1Time::from_timestamp(not_before).map_err(|_| out_of_range())?.to_datetime();
    params.not_after = ASN1Time::from_timestamp(not_after).map_err(|_| out_of_range())?.to_datetime();
    Ok(())
}

/// Seconds since the unix epoch, negative before it.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parse(pem: &str) -> Vec<u8> {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn serving_cert_has_sans_eku_and_is_signed_by_the_ca() {
        let opts = GenerateOptions {
            ip_addresses: vec!["10.0.0.7".parse().unwrap()],
            ..GenerateOptions::for_service("stowage-webhook", "stowage-system")
        };
        let bundle = generate(&opts).unwrap();
        let der = parse(&bundle.server.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => (*d).to_owned(),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert!(names.contains(&"stowage-webhook.stowage-system.svc".to_owned()), "{names:?}");
        assert!(names.contains(&"stowage-webhook.stowage-system.svc.cluster.local".to_owned()));
        assert!(names.contains(&"ip:[10, 0, 0, 7]".to_owned()), "{names:?}");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!cert.is_ca());

        let ca_der = parse(bundle.ca.cert_pem());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca.is_ca());
        assert_eq!(cert.issuer(), ca.subject());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        // CA lives ~10 years, the serving cert ~1 year.
        let year = 365 * 24 * 3600;
        let ca_life = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
        let leaf_life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(ca_life, 10 * year);
        assert_eq!(leaf_life, year);
    }

    #[test]
    fn client_cert_is_for_client_auth() {
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        let pair = ca.issue_client_cert("kube-apiserver").unwrap();
        let der = parse(&pair.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "kube-apiserver");
    }

    #[test]
    fn no_names_is_an_error() {
        let opts = GenerateOptions { dns_names: vec![], ip_addresses: vec![], ..GenerateOptions::default() };
        assert!(matches!(generate(&opts), Err(Error::NoSubjectAltNames)));
    }

    #[test]
    fn bad_dns_name_is_an_error() {
        let opts = GenerateOptions { dns_names: vec!["ünïcode.example".to_owned()], ..GenerateOptions::default() };
        assert!(matches!(generate(&opts), Err(Error::Build(_))));
    }

    #[test]
    fn ca_round_trips_through_pem_and_keeps_signing() {
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        let again = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.ca_bundle_base64(), ca.ca_bundle_base64());
        let leaf = again.issue_server_cert(&GenerateOptions::default()).unwrap();
        let leaf_der = parse(&leaf.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let ca_der = parse(ca.cert_pem());
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca_x509.public_key())).unwrap();

        let other = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        assert!(matches!(CertificateAuthority::from_pem(ca.cert_pem(), &other.key_pem()), Err(Error::CaKeyMismatch)));
        assert!(matches!(CertificateAuthority::from_pem("garbage", &ca.key_pem()), Err(Error::CaCertificate(_))));
    }

    #[test]
    fn writes_secret_files_with_modes_and_ca_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let generated = generate_to_dir(&GenerateOptions::default(), &dir).unwrap();
        let ca_pem = std::fs::read(&generated.ca_cert).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(&generated.ca_bundle_base64).unwrap();
        assert_eq!(decoded, ca_pem);
        for (path, name) in [
            (&generated.ca_cert, CA_CERT_FILE),
            (&generated.ca_key, CA_KEY_FILE),
            (&generated.tls_cert, TLS_CERT_FILE),
            (&generated.tls_key, TLS_KEY_FILE),
        ] {
            assert_eq!(path, &dir.join(name));
            assert!(std::fs::metadata(path).unwrap().len() > 0);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&generated.tls_key), 0o600);
            assert_eq!(mode(&generated.ca_key), 0o600);
            assert_eq!(mode(&generated.tls_cert), 0o644);
            assert_eq!(mode(&dir), 0o700);
        }
        // Only the four files: no temporary leftovers.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        // Regenerating over existing files replaces them.
        let again = generate_to_dir(&GenerateOptions::default(), &dir).unwrap();
        assert_ne!(again.ca_bundle_base64, generated.ca_bundle_base64);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    }

    #[test]
    fn explicit_start_sets_the_window() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let opts = GenerateOptions { not_before: Some(start), validity: DAY, ..GenerateOptions::default() };
        let bundle = generate(&opts).unwrap();
        let der = parse(&bundle.server.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.validity().not_before.timestamp(), 1_000_000_000);
        assert_eq!(cert.validity().not_after.timestamp(), 1_000_086_400);
    }

    #[test]
    fn pem_pair_debug_hides_the_key() {
        let pair = PemPair { cert_pem: "CERT".to_owned(), key_pem: "SECRET".to_owned() };
        assert!(!format!("{pair:?}").contains("SECRET"));
    }
}
