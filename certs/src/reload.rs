//! A serving certificate that follows its files on disk.
//!
//! [`ReloadingCert`] is a rustls [`ResolvesServerCert`] holding the current pair in an
//! [`ArcSwap`]: every handshake reads it without locking, so a new pair applies to new
//! connections at once and established ones keep theirs.
//!
//! [`ReloadingCert::watch`] polls the two files and hashes their *contents*, read through
//! their paths. A Kubernetes Secret volume updates by creating a new timestamped directory and
//! atomically renaming a `..data` symlink onto it (`tls.crt -> ..data/tls.crt`); per-file
//! inotify watches miss that (kubernetes#111947), a content hash cannot. Polling is the
//! mechanism, not a fallback: every two seconds by default, two small file reads.
//!
//! When the contents change, the new pair is parsed and validated (key matches the leaf, leaf
//! in date) and published only if valid. Otherwise the previous pair keeps being served, a
//! warning names the problem, and the next tick tries again, so a rotation seen half-way
//! (cert updated, key not yet) heals by itself and a not-yet-valid certificate is picked up
//! once its time comes.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, warn};

use crate::load::{self, CertInfo, CertPaths, LoadedCert, fmt_time};
use crate::metrics::{CertMetrics, ListenerMetrics};

/// Default polling interval of [`ReloadingCert::watch`].
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Shortest polling interval accepted (shorter ones are raised to it).
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Attempts at reading a cert/key pair that does not change while it is read.
const READ_ATTEMPTS: usize = 3;

type ContentHash = [u8; 32];

/// Outcome of one successful [`ReloadingCert::reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files hold the pair already served.
    Unchanged,
    /// A new valid pair was read and is now served.
    Updated,
}

/// The pair being served and the hash of the file contents it came from.
struct Served {
    cert: LoadedCert,
    hash: ContentHash,
}

/// A rustls certificate resolver that serves the last valid pair found at its paths.
pub struct ReloadingCert {
    paths: CertPaths,
    current: ArcSwap<Served>,
    /// The last rejected update (content hash and reason), so repeats are not re-reported.
    failing: Mutex<Option<(Option<ContentHash>, String)>>,
    metrics: Option<(String, ListenerMetrics)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("paths", &self.paths)
            .field("info", &self.current.load().cert.info)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the initial pair. Fails if it is missing or invalid: do not start serving
    /// without a certificate.
    ///
    /// # Errors
    /// [`load::Error`] naming the file at fault.
    pub fn load(paths: CertPaths) -> load::Result<Self> {
        let (cert, key, hash) = read_pair(&paths)?;
        let loaded = load::parse_pair(&paths, &cert, &key)?;
        info!(
            cert = %paths.cert.display(),
            sans = ?loaded.info.sans,
            not_after = %fmt_time(loaded.info.not_after),
            sha256 = %loaded.info.fingerprint_sha256,
            "loaded serving certificate"
        );
        Ok(Self {
            paths,
            current: ArcSwap::from_pointee(Served { cert: loaded, hash }),
            failing: Mutex::new(None),
            metrics: None,
        })
    }

    /// Reports expiry and reloads under `listener` (e.g. `webhook`) in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: &CertMetrics, listener: &str) -> Self {
        let series = metrics.listener(listener);
        series.set_not_after(self.current.load().cert.info.not_after);
        self.metrics = Some((listener.to_owned(), series));
        self
    }

    /// Where the pair is read from.
    #[must_use]
    pub fn paths(&self) -> &CertPaths {
        &self.paths
    }

    /// Facts about the certificate being served.
    #[must_use]
    pub fn info(&self) -> CertInfo {
        self.current.load().cert.info.clone()
    }

    /// The pair being served.
    #[must_use]
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.load().cert.certified_key)
    }

    /// Checks the files once and publishes their pair if it changed and is valid.
    ///
    /// Logs and counts the outcome: an update at `info`, a rejected update at `warn` (once per
    /// distinct content and reason; repeats at `debug`). Blocking file IO: call it from a
    /// blocking context, as [`ReloadingCert::watch`] does.
    ///
    /// # Errors
    /// [`load::Error`] when the files cannot be read or do not hold a valid pair; the previous
    /// pair is still served.
    pub fn reload(&self) -> load::Result<Reload> {
        let (cert, key, hash) = match read_pair(&self.paths) {
            Ok(read) => read,
            Err(e) => return Err(self.rejected(None, e)),
        };
        if hash == self.current.load().hash {
            self.failing.lock().take();
            return Ok(Reload::Unchanged);
        }
        let loaded = match load::parse_pair(&self.paths, &cert, &key) {
            Ok(loaded) => loaded,
            Err(e) => return Err(self.rejected(Some(hash), e)),
        };
        let info = &loaded.info;
        info!(
            cert = %self.paths.cert.display(),
            sans = ?info.sans,
            not_after = %fmt_time(info.not_after),
            sha256 = %info.fingerprint_sha256,
            "serving a new certificate"
        );
        if let Some((_, m)) = &self.metrics {
            m.set_not_after(info.not_after);
            m.reload_succeeded();
        }
        self.current.store(Arc::new(Served { cert: loaded, hash }));
        self.failing.lock().take();
        Ok(Reload::Updated)
    }

    /// Logs and counts a rejected update, once per distinct content and reason.
    fn rejected(&self, hash: Option<ContentHash>, error: load::Error) -> load::Error {
        let key = (hash, error.to_string());
        let mut failing = self.failing.lock();
        if failing.as_ref() == Some(&key) {
            debug!(%error, "certificate update still invalid; serving the previous certificate");
        } else {
            warn!(%error, "rejected certificate update; serving the previous certificate, will retry");
            if let Some((_, m)) = &self.metrics {
                m.reload_failed();
            }
            *failing = Some(key);
        }
        error
    }

    /// A future that checks the files every `interval` (see [`DEFAULT_INTERVAL`]) until this
    /// resolver is dropped. Spawn it: `tokio::spawn(cert.watch(DEFAULT_INTERVAL))`.
    ///
    /// It never panics and never stops on errors: each failure is logged and retried on the
    /// next tick.
    #[must_use = "the watch does nothing unless spawned or awaited"]
    pub fn watch(self: &Arc<Self>, interval: Duration) -> impl Future<Output = ()> + Send + 'static {
        let this = Arc::downgrade(self);
        let interval = interval.max(MIN_INTERVAL);
        async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the initial pair is loaded
            loop {
                ticker.tick().await;
                let Some(cert) = this.upgrade() else {
                    debug!("certificate resolver dropped; stopping the reload watch");
                    return;
                };
                // The outcome is logged and counted by `reload`.
                if let Err(e) = tokio::task::spawn_blocking(move || cert.reload().map(drop)).await {
                    warn!(error = %e, "certificate reload task failed; retrying on the next tick");
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().cert.certified_key))
    }
}

/// Reads cert then key, and the cert again, until both reads of the cert agree: a symlink swap
/// between the two reads would otherwise pair an old cert with a new key.
fn read_pair(paths: &CertPaths) -> load::Result<(Vec<u8>, Vec<u8>, ContentHash)> {
    let mut cert = load::read(&paths.cert)?;
    let mut key = load::read(&paths.key)?;
    for _ in 1..READ_ATTEMPTS {
        let again = load::read(&paths.cert)?;
        if again == cert {
            break;
        }
        cert = again;
        key = load::read(&paths.key)?;
    }
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(&cert);
    hasher.update(&key);
    Ok((cert, key, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{CertificateAuthority, GenerateOptions, PemPair, write_to_dir};
    use prometheus_client::registry::Registry;
    use std::path::Path;

    fn opts(name: &str) -> GenerateOptions {
        GenerateOptions { dns_names: vec![name.to_owned()], ip_addresses: vec![], ..GenerateOptions::default() }
    }

    fn write(dir: &Path, pair: &PemPair) {
        std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
    }

    fn counter(registry: &Registry, result: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let prefix = format!("stowage_tls_cert_reloads_total{{listener=\"webhook\",result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    }

    #[test]
    fn initial_load_fails_loudly() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(ReloadingCert::load(CertPaths::in_dir(tmp.path())), Err(load::Error::Unreadable { .. })));
        std::fs::write(tmp.path().join("tls.crt"), "junk").unwrap();
        std::fs::write(tmp.path().join("tls.key"), "junk").unwrap();
        assert!(matches!(ReloadingCert::load(CertPaths::in_dir(tmp.path())), Err(load::Error::NoCertificate { .. })));
    }

    #[test]
    fn reload_publishes_valid_pairs_and_keeps_the_last_good_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        let a = ca.issue_server_cert(&opts("a.test")).unwrap();
        let b = ca.issue_server_cert(&opts("b.test")).unwrap();
        write_to_dir(&ca, &a, tmp.path()).unwrap();

        let mut registry = Registry::default();
        let metrics = CertMetrics::register(&mut registry);
        let cert = ReloadingCert::load(CertPaths::in_dir(tmp.path())).unwrap().with_metrics(&metrics, "webhook");
        assert_eq!(cert.info().sans, ["a.test"]);
        assert_eq!(cert.reload().unwrap(), Reload::Unchanged);

        // Mid-rotation: new key, old cert.
        std::fs::write(tmp.path().join("tls.key"), &b.key_pem).unwrap();
        assert!(matches!(cert.reload(), Err(load::Error::KeyMismatch { .. })));
        assert_eq!(cert.info().sans, ["a.test"]);
        assert_eq!(counter(&registry, "failure"), 1);
        // Same bad content again: retried, but counted once.
        assert!(matches!(cert.reload(), Err(load::Error::KeyMismatch { .. })));
        assert_eq!(counter(&registry, "failure"), 1);

        // Truncated cert: a different failure, counted.
        std::fs::write(tmp.path().join("tls.crt"), &b.cert_pem[..100]).unwrap();
        assert!(matches!(cert.reload(), Err(load::Error::Pem { .. })));
        assert_eq!(counter(&registry, "failure"), 2);
        assert_eq!(cert.info().sans, ["a.test"]);

        // Rotation completes.
        std::fs::write(tmp.path().join("tls.crt"), &b.cert_pem).unwrap();
        assert_eq!(cert.reload().unwrap(), Reload::Updated);
        assert_eq!(cert.info().sans, ["b.test"]);
        assert_eq!(counter(&registry, "success"), 1);
        assert_eq!(cert.reload().unwrap(), Reload::Unchanged);
        assert_eq!(counter(&registry, "success"), 1);

        // Files vanish (Secret deleted): keep serving.
        std::fs::remove_file(tmp.path().join("tls.key")).unwrap();
        assert!(matches!(cert.reload(), Err(load::Error::Unreadable { .. })));
        assert_eq!(cert.info().sans, ["b.test"]);
        assert_eq!(counter(&registry, "failure"), 3);
    }

    #[test]
    fn unchanged_bad_content_is_retried_until_it_becomes_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        write(tmp.path(), &ca.issue_server_cert(&opts("a.test")).unwrap());
        let cert = ReloadingCert::load(CertPaths::in_dir(tmp.path())).unwrap();
        // Issued with a start one second ahead: rejected now, valid without any file change.
        let soon = GenerateOptions {
            not_before: Some(std::time::SystemTime::now() + Duration::from_secs(1)),
            ..opts("b.test")
        };
        write(tmp.path(), &ca.issue_server_cert(&soon).unwrap());
        assert!(matches!(cert.reload(), Err(load::Error::NotYetValid { .. })));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match cert.reload() {
                Ok(Reload::Updated) => break,
                Err(load::Error::NotYetValid { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(cert.info().sans, ["b.test"]);
    }

    #[test]
    fn resolver_serves_the_published_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        let a = ca.issue_server_cert(&opts("a.test")).unwrap();
        write(tmp.path(), &a);
        let cert = ReloadingCert::load(CertPaths::in_dir(tmp.path())).unwrap();
        let before = cert.certified_key();
        let b = ca.issue_server_cert(&opts("b.test")).unwrap();
        write(tmp.path(), &b);
        cert.reload().unwrap();
        let after = cert.certified_key();
        assert_ne!(before.cert[0], after.cert[0]);
        let sans = load::subject_alt_names(&after.cert[0]).unwrap();
        assert_eq!(sans, ["b.test"]);
        assert!(format!("{cert:?}").contains("b.test"));
    }

    #[tokio::test]
    async fn watch_stops_when_the_resolver_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        write(tmp.path(), &ca.issue_server_cert(&opts("a.test")).unwrap());
        let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(tmp.path())).unwrap());
        let task = tokio::spawn(cert.watch(Duration::from_millis(10)));
        drop(cert);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn zero_interval_does_not_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
        write(tmp.path(), &ca.issue_server_cert(&opts("a.test")).unwrap());
        let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(tmp.path())).unwrap());
        let task = tokio::spawn(cert.watch(Duration::ZERO));
        drop(cert);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }
}
