//! A throw-away certificate authority, serving certificates and the service-account signing key.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A PEM certificate with its PEM (PKCS#8) private key.
#[derive(Clone, Debug)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// A certificate authority that can issue serving certificates.
pub(crate) struct Ca {
    pair: CertPair,
}

impl Ca {
    /// Generates a new self-signed CA.
    pub(crate) fn generate() -> Result<Self> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = ca_params().self_signed(&key).context("self-signing the CA")?;
        Ok(Self { pair: CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() } })
    }

    /// The CA certificate and key.
    pub(crate) fn pair(&self) -> &CertPair {
        &self.pair
    }

    /// Issues a serving certificate for the given SANs (IP addresses or DNS names).
    pub(crate) fn issue(&self, common_name: &str, sans: &[&str]) -> Result<CertPair> {
        issue(&self.pair, common_name, sans)
    }

    /// Issues a client certificate for user `common_name`.
    pub(crate) fn issue_client(&self, common_name: &str) -> Result<CertPair> {
        sign(&self.pair, common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "stowage-test-ca");
    params.distinguished_name = dn;
    params
}

/// Issues a serving certificate signed by `ca` (a [`CertPair`] of a CA made by this module).
pub(crate) fn issue(ca: &CertPair, common_name: &str, sans: &[&str]) -> Result<CertPair> {
    sign(ca, common_name, sans, ExtendedKeyUsagePurpose::ServerAuth)
}

fn sign(ca: &CertPair, common_name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<CertPair> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("parsing the CA certificate")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|san| match san.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName((*san).try_into().with_context(|| format!("invalid DNS SAN {san:?}"))?)),
        })
        .collect::<Result<_>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params.signed_by(&key, &issuer).context("signing a certificate")?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// SANs of the kube-apiserver serving certificate.
pub(crate) const APISERVER_SANS: &[&str] = &[
    "127.0.0.1",
    "10.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// SANs of certificates for servers on the loopback interface.
pub(crate) const LOOPBACK_SANS: &[&str] = &["127.0.0.1", "localhost"];

/// The service-account token signing key: (private PKCS#8 PEM, public SPKI PEM).
pub(crate) fn service_account_key() -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating the service-account key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// A random-enough hex string for tokens and unique names (not cryptographic; loopback tests only).
pub(crate) fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_chained_to_the_ca() {
        let ca = Ca::generate().unwrap();
        let leaf = ca.issue("kube-apiserver", APISERVER_SANS).unwrap();
        assert!(ca.pair().cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert_ne!(ca.pair().cert_pem, leaf.cert_pem);
    }

    #[test]
    fn random_hex_is_unique_and_sized() {
        let (a, b) = (random_hex(20), random_hex(20));
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
