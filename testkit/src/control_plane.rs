//! A real cluster on 127.0.0.1 — etcd, kube-apiserver, kube-controller-manager and kwok's
//! simulated kubelets — and clients for it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::binaries::Binaries;
use crate::controllers::{self, ControllerManagerFiles};
use crate::pki::{self, CertPair};
use crate::process::{Janitor, Supervised, free_ports, indent};
use crate::wait::scaled;

/// Set to keep the control plane's directory (PKI, logs, configs) after the tests end.
pub const KEEP_ENV: &str = "STOWAGE_TEST_KEEP";

/// User name of the apiserver's front-proxy (aggregation) client certificate.
const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// Lines of component logs included in failure messages.
pub(crate) const LOG_LINES: usize = 40;

/// Who a client or kubeconfig authenticates as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The admin token (group `system:masters`).
    Admin,
    /// A bearer token, e.g. from [`ControlPlane::service_account_token`].
    Token(String),
    /// The admin token impersonating `user` with `groups` (`Impersonate-User`/`-Group` headers).
    Impersonate {
        /// User name to act as.
        user: String,
        /// Groups to act as.
        groups: Vec<String>,
    },
}

impl Identity {
    /// Impersonation of a ServiceAccount, with the groups its token would carry.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::Impersonate {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// Impersonation of a user in `groups` (plus `system:authenticated`).
    pub fn user(user: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".to_owned());
        }
        Self::Impersonate { user: user.to_owned(), groups }
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager + kwok, and an admin
/// [`kube::Client`] bound to the caller's runtime.
///
/// Nodes labelled [`crate::KWOK_NODE_LABEL`] (every [`crate::fake_node`]) are run by kwok:
/// their Leases are renewed and their pods become Running/Ready, so real StatefulSets, the real
/// PV binder and the real node lifecycle work as in a cluster with kubelets.
///
/// The processes live as long as any `ControlPlane` (or [`crate::SchedulerHandle`]) refers to them;
/// the one behind [`ControlPlane::shared`] lives until the test process exits. Children never
/// outlive the test process, even when it is killed (see the `process` module).
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// use stowage_fixtures::pod;
/// use stowage_testkit::{ControlPlane, SchedulerConfig, fake_node, create_nodes, namespace, create,
///     wait_for_pod_bound, unique_name};
/// let cp = ControlPlane::shared().await?;
/// let client = cp.client();
/// let ns = namespace(&client, "smoke").await?;
/// let scheduler_name = unique_name("sched");
/// let _scheduler = cp.start_scheduler(&SchedulerConfig::new(&scheduler_name)).await?;
/// let label = unique_name("pool");
/// create_nodes(&client, (0..2).map(|i| fake_node(&format!("{label}-{i}")).label("pool", &label).build())).await?;
/// let p = pod(&ns, "p").scheduler_name(&scheduler_name).node_selector("pool", &label).build();
/// create(&client, &p).await?;
/// let bound = wait_for_pod_bound(&client, &ns, "p", std::time::Duration::from_secs(30)).await?;
/// # Ok(()) }
/// ```
pub struct ControlPlane {
    pub(crate) cluster: Arc<Cluster>,
    client: kube::Client,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.cluster.server_url)
            .field("dir", &self.cluster.dir)
            .finish()
    }
}

impl ControlPlane {
    /// Starts a dedicated cluster (seconds on two cores); it stops when the last handle drops.
    ///
    /// Prefer [`ControlPlane::shared`] unless a test needs its own apiserver.
    pub async fn start() -> Result<Self> {
        let binaries = tokio::task::spawn_blocking(Binaries::get).await.context("locating binaries")??;
        let cluster = Arc::new(Cluster::start(&binaries, Controllers::Run).await?);
        Self::attach(cluster).await
    }

    /// Starts a dedicated etcd + kube-apiserver **without** kube-controller-manager and kwok.
    ///
    /// Only for benchmarks that measure a scheduler alone: nodes keep the status they were
    /// created with (no Lease, no taints), bound pods never run, and no garbage collector deletes
    /// pods whose owner does not exist. Tests use [`ControlPlane::start`] or
    /// [`ControlPlane::shared`], which run the real controllers.
    pub async fn start_without_controllers() -> Result<Self> {
        let binaries = tokio::task::spawn_blocking(Binaries::get).await.context("locating binaries")??;
        let cluster = Arc::new(Cluster::start(&binaries, Controllers::Skip).await?);
        Self::attach(cluster).await
    }

    /// The control plane shared by every test of this test binary, started on first use.
    ///
    /// It runs on a dedicated thread (so no test's runtime owns it) and lives until the process
    /// exits. Each call returns a new handle with a fresh client bound to the caller's runtime.
    /// Tests isolate themselves with unique namespaces, node labels and scheduler names. A failed
    /// start is remembered: later calls fail at once with the same error.
    pub async fn shared() -> Result<Self> {
        static SHARED: OnceLock<Result<Arc<Cluster>, String>> = OnceLock::new();
        let cluster = tokio::task::spawn_blocking(|| {
            SHARED
                .get_or_init(|| {
                    let started = std::thread::Builder::new()
                        .name("stowage-control-plane".to_owned())
                        .spawn(|| -> Result<Cluster> {
                            let binaries = Binaries::get()?;
                            let runtime = tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                                .context("building the control plane's runtime")?;
                            runtime.block_on(Cluster::start(&binaries, Controllers::Run))
                        })
                        .map_err(|e| format!("spawning the control plane thread: {e}"))?
                        .join()
                        .map_err(|_| "the control plane thread panicked".to_owned())?;
                    started.map(Arc::new).map_err(|e| format!("{e:#}"))
                })
                .clone()
        })
        .await
        .context("waiting for the shared control plane")?
        .map_err(|e| anyhow!("shared control plane failed to start: {e}"))?;
        Self::attach(cluster).await
    }

    async fn attach(cluster: Arc<Cluster>) -> Result<Self> {
        let client = cluster.client_for(&Identity::Admin).await?;
        Ok(Self { cluster, client })
    }

    /// The admin client (group `system:masters`); cheap to clone.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.cluster.kubeconfig
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.cluster.server_url
    }

    /// The cluster CA certificate (PEM); it also signs the apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.cluster.ca.cert_pem
    }

    /// The cluster CA certificate file.
    pub fn ca_path(&self) -> &Path {
        &self.cluster.ca_path
    }

    /// The control plane's directory (PKI, kubeconfigs, component logs and configs).
    pub fn dir(&self) -> &Path {
        &self.cluster.dir
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.cluster.admin_token
    }

    /// The binaries in use.
    pub fn binaries(&self) -> &Binaries {
        &self.cluster.binaries
    }

    /// How long startup took.
    pub fn startup_time(&self) -> Duration {
        self.cluster.startup
    }

    /// Process ids of the running components (their supervising shells; the component is a
    /// child), named, for CPU accounting in benchmarks.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = vec![("etcd", self.cluster.etcd.pid()), ("kube-apiserver", self.cluster.apiserver.pid())];
        if let Some(c) = &self.cluster.controllers {
            pids.push(("kube-controller-manager", c.controller_manager.pid()));
            pids.push(("kwok", c.kwok.pid()));
        }
        pids
    }

    /// The Kubernetes release under test, e.g. `v1.35.8` (from the binaries' cache directory).
    pub fn kubernetes_version(&self) -> String {
        self.cluster.binaries.kubernetes_version().unwrap_or_else(|| "unknown".to_owned())
    }

    /// Stops kube-controller-manager for good (to prove a test depends on it); the cluster stays
    /// otherwise usable. Only for a dedicated cluster ([`ControlPlane::start`]).
    pub fn stop_controller_manager(&self) {
        if let Some(c) = &self.cluster.controllers {
            c.controller_manager.stop();
        }
    }

    /// Stops kwok for good: every node stops renewing its Lease and no pod turns Ready. Only for
    /// a dedicated cluster ([`ControlPlane::start`]).
    pub fn stop_kwok(&self) {
        if let Some(c) = &self.cluster.controllers {
            c.kwok.stop();
        }
    }

    /// A client for `identity`, bound to the caller's runtime.
    pub async fn client_for(&self, identity: &Identity) -> Result<kube::Client> {
        self.cluster.client_for(identity).await
    }

    /// A client with a bearer token.
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client> {
        self.client_for(&Identity::Token(token.to_owned())).await
    }

    /// A client impersonating ServiceAccount `namespace/name` (which need not exist).
    pub async fn client_as_service_account(&self, namespace: &str, name: &str) -> Result<kube::Client> {
        self.client_for(&Identity::service_account(namespace, name)).await
    }

    /// Writes a kubeconfig for `identity` into the control plane's directory and returns its path,
    /// e.g. to run a binary under least privilege. `file_name` must be unique per control plane.
    pub fn write_kubeconfig(&self, file_name: &str, identity: &Identity) -> Result<PathBuf> {
        self.cluster.write_kubeconfig(file_name, identity)
    }

    /// Creates ServiceAccount `namespace/name` if missing and returns a token for it (TokenRequest
    /// API, one hour), which authenticates exactly as the real ServiceAccount would.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating ServiceAccount {namespace}/{name}")),
        }
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(3600), ..TokenRequestSpec::default() },
            ..TokenRequest::default()
        };
        let issued = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        issued.status.map(|s| s.token).context("TokenRequest returned no status")
    }

    /// Issues a serving certificate signed by the cluster CA (so [`ControlPlane::ca_pem`] is its
    /// CA bundle), e.g. for a webhook or an HTTPS extender on 127.0.0.1. SANs are IPs or DNS names.
    pub fn issue_serving_cert(&self, sans: &[&str]) -> Result<CertPair> {
        pki::issue(&self.cluster.ca, sans.first().copied().unwrap_or("stowage-test"), sans)
    }

    /// A `kubectl` command preconfigured with the admin kubeconfig.
    pub fn kubectl(&self) -> Result<std::process::Command> {
        let kubectl = &self.cluster.binaries.kubectl;
        if !kubectl.is_file() {
            bail!("kubectl not found at {}", kubectl.display());
        }
        let mut cmd = std::process::Command::new(kubectl);
        cmd.arg(format!("--kubeconfig={}", self.cluster.kubeconfig.display()));
        Ok(cmd)
    }

    /// State and last log lines of etcd, kube-apiserver, kube-controller-manager and kwok.
    pub fn diagnostics(&self) -> String {
        self.cluster.diagnostics(LOG_LINES)
    }

    /// Prints [`ControlPlane::diagnostics`] to stderr.
    pub fn dump_logs(&self) {
        eprintln!("{}", self.diagnostics());
    }
}

/// The processes and files of one control plane, independent of any async runtime.
pub(crate) struct Cluster {
    /// `None` for [`ControlPlane::start_without_controllers`].
    controllers: Option<RunningControllers>,
    apiserver: Supervised,
    etcd: Supervised,
    janitor: Mutex<Option<Janitor>>,
    etcd_dir: Option<TempDir>,
    temp: Option<TempDir>,
    pub(crate) dir: PathBuf,
    pub(crate) server_url: String,
    pub(crate) ca: CertPair,
    pub(crate) ca_path: PathBuf,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) admin_token: String,
    /// Serving certificate and key files for 127.0.0.1 (kube-scheduler's secure port).
    pub(crate) loopback_cert: (PathBuf, PathBuf),
    pub(crate) binaries: Binaries,
    startup: Duration,
}

/// Whether a cluster runs kube-controller-manager and kwok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controllers {
    Run,
    Skip,
}

/// kube-controller-manager and kwok of one cluster.
struct RunningControllers {
    kwok: Supervised,
    controller_manager: Supervised,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("server_url", &self.server_url).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts etcd and kube-apiserver, retrying once (a free port can be taken between picking and binding).
    async fn start(binaries: &Binaries, controllers: Controllers) -> Result<Self> {
        let started = Instant::now();
        let cluster = match Self::start_once(binaries, controllers, started).await {
            Ok(cluster) => cluster,
            Err(first) => {
                eprintln!("[testkit] control plane start failed, retrying once: {first:#}");
                Self::start_once(binaries, controllers, Instant::now()).await.map_err(|second| {
                    anyhow!("control plane failed to start twice.\nfirst: {first:#}\nsecond: {second:#}")
                })?
            }
        };
        eprintln!(
            "[testkit] Kubernetes {} {} ready in {:.1?} at {} (dir {}; logs *.log there)",
            cluster.binaries.kubernetes_version().unwrap_or_else(|| "(unknown version)".to_owned()),
            if cluster.controllers.is_some() { "with kube-controller-manager and kwok" } else { "without controllers" },
            cluster.startup,
            cluster.server_url,
            cluster.dir.display(),
        );
        Ok(cluster)
    }

    async fn start_once(binaries: &Binaries, controllers: Controllers, started: Instant) -> Result<Self> {
        let keep = std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let temp = tempfile::Builder::new().prefix("stowage-cp-").tempdir().context("creating a temp dir")?;
        let dir = temp.path().to_path_buf();
        let shm = Path::new("/dev/shm");
        let etcd_dir = if shm.is_dir() {
            Some(
                tempfile::Builder::new()
                    .prefix("stowage-etcd-")
                    .tempdir_in(shm)
                    .context("creating a dir in /dev/shm")?,
            )
        } else {
            None
        };
        let etcd_data = etcd_dir.as_ref().map_or_else(|| dir.join("etcd"), |d| d.path().to_path_buf());
        let (temp, etcd_dir, janitor) = if keep {
            eprintln!("[testkit] ${KEEP_ENV} is set: keeping {} and {}", dir.display(), etcd_data.display());
            let _ = temp.keep();
            let _ = etcd_dir.map(TempDir::keep);
            (None, None, None)
        } else {
            let janitor = Janitor::spawn(&[&dir, &etcd_data])?;
            (Some(temp), etcd_dir, Some(janitor))
        };

        // PKI and credentials.
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).context("creating the pki dir")?;
        let ca = pki::Ca::generate()?;
        let apiserver_cert = ca.issue("kube-apiserver", pki::APISERVER_SANS)?;
        let loopback = ca.issue("127.0.0.1", pki::LOOPBACK_SANS)?;
        let front_proxy = ca.issue_client(FRONT_PROXY_CLIENT)?;
        let (sa_key, sa_pub) = pki::service_account_key()?;
        let admin_token = pki::random_hex(32);
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = pki_dir.join(name);
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let ca_path = write("ca.crt", &ca.pair().cert_pem)?;
        write("ca.key", &ca.pair().key_pem)?;
        let apiserver_crt = write("apiserver.crt", &apiserver_cert.cert_pem)?;
        let apiserver_key = write("apiserver.key", &apiserver_cert.key_pem)?;
        let loopback_cert = (write("loopback.crt", &loopback.cert_pem)?, write("loopback.key", &loopback.key_pem)?);
        let front_proxy = (
            write("front-proxy-client.crt", &front_proxy.cert_pem)?,
            write("front-proxy-client.key", &front_proxy.key_pem)?,
        );
        let sa_key = write("sa.key", &sa_key)?;
        let sa_pub = write("sa.pub", &sa_pub)?;
        let tokens = write("tokens.csv", &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"))?;

        let ports = free_ports(3)?;
        let (etcd_port, peer_port, apiserver_port) = (ports[0], ports[1], ports[2]);

        // etcd.
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name=stowage".to_owned(),
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=stowage={peer_url}"),
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let etcd = Supervised::spawn("etcd", &binaries.etcd, &etcd_args, &dir.join("etcd.log"))?;
        wait_for_etcd(&etcd, etcd_port, scaled(Duration::from_secs(30))).await?;

        // kube-apiserver.
        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let p = |path: &Path| path.display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", p(&apiserver_crt)),
            format!("--tls-private-key-file={}", p(&apiserver_key)),
            format!("--client-ca-file={}", p(&ca_path)),
            format!("--token-auth-file={}", p(&tokens)),
            "--authorization-mode=RBAC".to_owned(),
            // Request-header authentication, so delegating components (kube-scheduler) find a
            // complete `extension-apiserver-authentication` ConfigMap.
            format!("--requestheader-client-ca-file={}", p(&ca_path)),
            format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"),
            "--requestheader-username-headers=X-Remote-User".to_owned(),
            "--requestheader-group-headers=X-Remote-Group".to_owned(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
            format!("--proxy-client-cert-file={}", p(&front_proxy.0)),
            format!("--proxy-client-key-file={}", p(&front_proxy.1)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p(&sa_pub)),
            format!("--service-account-signing-key-file={}", p(&sa_key)),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition,StorageObjectInUseProtection".to_owned(),
            "--endpoint-reconciler-type=none".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--enable-priority-and-fairness=false".to_owned(),
            format!("--cert-dir={}", p(&dir.join("apiserver-certs"))),
            "--v=1".to_owned(),
        ];
        let apiserver = Supervised::spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
        )?;
        let kubeconfig = dir.join("admin.kubeconfig");
        // The controllers start at once and retry until the apiserver answers.
        let ca_key = pki_dir.join("ca.key");
        let controllers = match controllers {
            Controllers::Skip => None,
            Controllers::Run => Some(RunningControllers {
                controller_manager: controllers::start_controller_manager(
                    binaries,
                    &ControllerManagerFiles {
                        kubeconfig: &kubeconfig,
                        ca_cert: &ca_path,
                        ca_key: &ca_key,
                        service_account_key: &sa_key,
                    },
                    &dir,
                )?,
                kwok: controllers::start_kwok(binaries, &kubeconfig, &dir)?,
            }),
        };

        let mut cluster = Self {
            controllers,
            apiserver,
            etcd,
            janitor: Mutex::new(janitor),
            etcd_dir,
            temp,
            kubeconfig,
            dir,
            server_url,
            ca: ca.pair().clone(),
            ca_path,
            admin_token,
            loopback_cert,
            binaries: binaries.clone(),
            startup: Duration::ZERO,
        };
        std::fs::write(&cluster.kubeconfig, cluster.kubeconfig_yaml(&Identity::Admin))
            .context("writing the admin kubeconfig")?;
        cluster.wait_for_apiserver(scaled(Duration::from_secs(90))).await?;
        if let Some(running) = &cluster.controllers {
            let admin = cluster.client_for(&Identity::Admin).await?;
            controllers::wait_for_controller_manager(
                &admin,
                &running.controller_manager,
                scaled(Duration::from_secs(60)),
            )
            .await
            .map_err(|e| anyhow!("{e:#}\n{}", cluster.diagnostics(LOG_LINES)))?;
            if let Some(status) = running.kwok.exit_status() {
                bail!("kwok exited with {status} during startup\n{}", running.kwok.describe_failure(LOG_LINES));
            }
        }
        cluster.startup = started.elapsed();
        Ok(cluster)
    }

    async fn wait_for_apiserver(&self, timeout: Duration) -> Result<()> {
        let client = self.client_for(&Identity::Admin).await?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.apiserver.exit_status() {
                bail!("kube-apiserver exited with {status} during startup\n{}", self.diagnostics(LOG_LINES));
            }
            let Err(last) = probe_readyz(&client).await? else { return Ok(()) };
            if Instant::now() >= deadline {
                bail!(
                    "kube-apiserver not ready after {timeout:?} (last /readyz answer: {last})\n{}",
                    self.diagnostics(LOG_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A kubeconfig for `identity` against this cluster.
    pub(crate) fn kubeconfig_yaml(&self, identity: &Identity) -> String {
        self.kubeconfig_yaml_for(&self.server_url, identity)
    }

    /// A kubeconfig for `identity` against `server` (another server on 127.0.0.1 with a CA-signed cert).
    pub(crate) fn kubeconfig_yaml_for(&self, server: &str, identity: &Identity) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let (user, token, impersonation) = match identity {
            Identity::Admin => ("admin", self.admin_token.as_str(), String::new()),
            Identity::Token(token) => ("token", token.as_str(), String::new()),
            Identity::Impersonate { user, groups } => {
                let groups = serde_json::Value::from(groups.clone()).to_string();
                ("impersonate", self.admin_token.as_str(), format!("    as: {}\n    as-groups: {groups}\n", q(user)))
            }
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stowage-test\n  cluster:\n    server: {server}\n    \
             certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n{impersonation}\
             contexts:\n- name: stowage-test\n  context:\n    cluster: stowage-test\n    user: {user}\n\
             current-context: stowage-test\n",
            server = q(server),
            ca = q(&self.ca_path.display().to_string()),
            token = q(token),
        )
    }

    fn write_kubeconfig(&self, file_name: &str, identity: &Identity) -> Result<PathBuf> {
        let path = self.dir.join(file_name);
        std::fs::write(&path, self.kubeconfig_yaml(identity)).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    pub(crate) async fn client_for(&self, identity: &Identity) -> Result<kube::Client> {
        client_from_yaml(&self.kubeconfig_yaml(identity)).await
    }

    pub(crate) fn diagnostics(&self, lines: usize) -> String {
        let controllers = self.controllers.as_ref().map_or_else(
            || "(no kube-controller-manager, no kwok)".to_owned(),
            |c| format!("{}\n{}", c.controller_manager.describe_failure(lines), c.kwok.describe_failure(lines)),
        );
        format!(
            "control plane at {} (dir {}):\n{}\n{}\n{}",
            self.server_url,
            self.dir.display(),
            self.etcd.describe_failure(lines),
            self.apiserver.describe_failure(lines),
            controllers
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = &self.controllers {
            c.kwok.stop();
            c.controller_manager.stop();
        }
        self.apiserver.stop();
        self.etcd.stop();
        drop(self.etcd_dir.take());
        drop(self.temp.take());
        if let Some(mut janitor) = self.janitor.lock().unwrap_or_else(|e| e.into_inner()).take() {
            janitor.dismiss();
        }
    }
}

/// Builds a client from kubeconfig YAML, in the caller's runtime.
pub(crate) async fn client_from_yaml(yaml: &str) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).context("parsing a generated kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading a generated kubeconfig")?;
    kube::Client::try_from(config).context("building a kube client")
}

async fn wait_for_etcd(etcd: &Supervised, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = etcd.exit_status() {
            bail!("etcd exited with {status} during startup\n{}", etcd.describe_failure(LOG_LINES));
        }
        let last = match tokio::time::timeout(Duration::from_secs(2), http_get_plain(port, "/health")).await {
            Ok(Ok(body)) if body.contains(r#""health":"true""#) => return Ok(()),
            Ok(Ok(body)) => body,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "request timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("etcd not healthy after {timeout:?} (last answer: {last})\n{}", etcd.describe_failure(LOG_LINES));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain-HTTP GET on 127.0.0.1, returning the body.
async fn http_get_plain(port: u16, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{}: {}", head.lines().next().unwrap_or_default(), indent(body).trim());
    }
    Ok(body.to_owned())
}

/// One `GET /readyz` through `client`: `Ok(Ok(()))` when it answers `ok`, else `Ok(Err(what it
/// said))` (an error or a timeout after 5 s included).
///
/// # Errors
/// Only when the request cannot be built.
pub(crate) async fn probe_readyz(client: &kube::Client) -> Result<std::result::Result<(), String>> {
    let request = http::Request::get("/readyz").body(Vec::new()).context("building a request")?;
    Ok(match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => Err(body),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("request timed out".to_owned()),
    })
}
