//! kube-scheduler processes and their KubeSchedulerConfiguration.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;

use crate::control_plane::{Cluster, ControlPlane, Identity, LOG_LINES, client_from_yaml, probe_readyz};
use crate::process::{Supervised, free_ports};
use crate::wait::scaled;

/// A KubeSchedulerConfiguration (`kubescheduler.config.k8s.io/v1`) for tests.
///
/// Defaults: `qps: 100`, `burst: 200`, `leaderElection.leaderElect: false`,
/// `percentageOfNodesToScore: 100` (so an extender sees every feasible node),
/// `podInitialBackoffSeconds: 1` and `podMaxBackoffSeconds: 2` (fast retries of unschedulable pods).
/// The harness fills in `clientConnection.kubeconfig`.
///
/// ```
/// use std::time::Duration;
/// use stowage_testkit::{Extender, SchedulerConfig};
/// let config = SchedulerConfig::new("stowage-a")
///     .extender(Extender::new("http://127.0.0.1:8888/scheduler").http_timeout(Duration::from_secs(5)).ignorable(false));
/// let yaml = config.render(std::path::Path::new("/tmp/admin.kubeconfig"));
/// assert!(yaml.contains("schedulerName: \"stowage-a\""));
/// ```
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    profiles: Vec<(String, Option<String>)>,
    extenders: Vec<ExtenderEntry>,
    extra_yaml: Vec<String>,
    qps: u32,
    burst: u32,
    percentage_of_nodes_to_score: u32,
    pod_initial_backoff_seconds: u32,
    pod_max_backoff_seconds: u32,
}

#[derive(Clone, Debug)]
enum ExtenderEntry {
    Structured(Extender),
    Raw(String),
}

impl SchedulerConfig {
    /// A configuration with one profile, `scheduler_name`.
    pub fn new(scheduler_name: &str) -> Self {
        Self {
            profiles: vec![(scheduler_name.to_owned(), None)],
            extenders: Vec::new(),
            extra_yaml: Vec::new(),
            qps: 100,
            burst: 200,
            percentage_of_nodes_to_score: 100,
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 2,
        }
    }

    /// Adds a profile.
    #[must_use]
    pub fn profile(mut self, scheduler_name: &str) -> Self {
        self.profiles.push((scheduler_name.to_owned(), None));
        self
    }

    /// Adds a profile with more fields as raw YAML (a block mapping such as `plugins:` /
    /// `pluginConfig:`; common indentation is removed).
    #[must_use]
    pub fn profile_yaml(mut self, scheduler_name: &str, fields_yaml: &str) -> Self {
        self.profiles.push((scheduler_name.to_owned(), Some(dedent(fields_yaml))));
        self
    }

    /// Adds an extender.
    #[must_use]
    pub fn extender(mut self, extender: Extender) -> Self {
        self.extenders.push(ExtenderEntry::Structured(extender));
        self
    }

    /// Adds an extender given as a raw YAML block mapping (`urlPrefix: ...`; common indentation is removed).
    #[must_use]
    pub fn extender_yaml(mut self, extender_yaml: &str) -> Self {
        self.extenders.push(ExtenderEntry::Raw(dedent(extender_yaml)));
        self
    }

    /// Appends raw top-level YAML (common indentation is removed); it must not repeat a key set here.
    #[must_use]
    pub fn extra_yaml(mut self, yaml: &str) -> Self {
        self.extra_yaml.push(dedent(yaml));
        self
    }

    /// Sets the client QPS and burst (default 100 / 200).
    #[must_use]
    pub fn client_rate(mut self, qps: u32, burst: u32) -> Self {
        (self.qps, self.burst) = (qps, burst);
        self
    }

    /// Sets `percentageOfNodesToScore` (default 100).
    #[must_use]
    pub fn percentage_of_nodes_to_score(mut self, percentage: u32) -> Self {
        self.percentage_of_nodes_to_score = percentage;
        self
    }

    /// Sets `podInitialBackoffSeconds` and `podMaxBackoffSeconds` (default 1 / 2).
    #[must_use]
    pub fn backoff_seconds(mut self, initial: u32, max: u32) -> Self {
        (self.pod_initial_backoff_seconds, self.pod_max_backoff_seconds) = (initial, max);
        self
    }

    /// The scheduler names of the profiles.
    pub fn scheduler_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|(name, _)| name.as_str())
    }

    /// Renders the YAML, with `kubeconfig` as `clientConnection.kubeconfig`.
    pub fn render(&self, kubeconfig: &Path) -> String {
        let mut y = String::new();
        y.push_str("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n");
        let _ = writeln!(y, "clientConnection:\n  kubeconfig: {}", quote(&kubeconfig.display().to_string()));
        let _ = writeln!(y, "  qps: {}\n  burst: {}", self.qps, self.burst);
        y.push_str("leaderElection:\n  leaderElect: false\n");
        let _ = writeln!(y, "percentageOfNodesToScore: {}", self.percentage_of_nodes_to_score);
        let _ = writeln!(y, "podInitialBackoffSeconds: {}", self.pod_initial_backoff_seconds);
        let _ = writeln!(y, "podMaxBackoffSeconds: {}", self.pod_max_backoff_seconds);
        y.push_str("profiles:\n");
        for (name, fields) in &self.profiles {
            let _ = writeln!(y, "- schedulerName: {}", quote(name));
            if let Some(fields) = fields {
                y.push_str(&indent_block(fields, "  "));
            }
        }
        if !self.extenders.is_empty() {
            y.push_str("extenders:\n");
            for extender in &self.extenders {
                let block = match extender {
                    ExtenderEntry::Structured(e) => e.render(),
                    ExtenderEntry::Raw(raw) => raw.clone(),
                };
                y.push_str(&list_item(&block));
            }
        }
        for extra in &self.extra_yaml {
            y.push_str(extra);
            if !extra.ends_with('\n') {
                y.push('\n');
            }
        }
        y
    }
}

/// One `extenders:` entry of a KubeSchedulerConfiguration (the fields of `config/v1.Extender`).
///
/// [`Extender::new`] sets `filterVerb: filter`, `prioritizeVerb: prioritize`, `weight: 1`, and
/// `enableHTTPS` when the URL starts with `https://`; everything else keeps the scheduler's default.
#[derive(Clone, Debug)]
pub struct Extender {
    url_prefix: String,
    filter_verb: Option<String>,
    prioritize_verb: Option<String>,
    preempt_verb: Option<String>,
    bind_verb: Option<String>,
    weight: i64,
    node_cache_capable: bool,
    ignorable: bool,
    http_timeout: Option<Duration>,
    enable_https: bool,
    ca_pem: Option<String>,
    insecure: bool,
    server_name: Option<String>,
    managed_resources: Vec<(String, bool)>,
}

impl Extender {
    /// An extender at `url_prefix` (verbs are appended as `<urlPrefix>/<verb>`).
    pub fn new(url_prefix: &str) -> Self {
        Self {
            url_prefix: url_prefix.to_owned(),
            filter_verb: Some("filter".to_owned()),
            prioritize_verb: Some("prioritize".to_owned()),
            preempt_verb: None,
            bind_verb: None,
            weight: 1,
            node_cache_capable: false,
            ignorable: false,
            http_timeout: None,
            enable_https: url_prefix.starts_with("https://"),
            ca_pem: None,
            insecure: false,
            server_name: None,
            managed_resources: Vec::new(),
        }
    }

    /// Sets `filterVerb` (`None` omits it).
    #[must_use]
    pub fn filter_verb(mut self, verb: Option<&str>) -> Self {
        self.filter_verb = verb.map(str::to_owned);
        self
    }

    /// Sets `prioritizeVerb` (`None` omits it).
    #[must_use]
    pub fn prioritize_verb(mut self, verb: Option<&str>) -> Self {
        self.prioritize_verb = verb.map(str::to_owned);
        self
    }

    /// Sets `preemptVerb`.
    #[must_use]
    pub fn preempt_verb(mut self, verb: &str) -> Self {
        self.preempt_verb = Some(verb.to_owned());
        self
    }

    /// Sets `bindVerb` (only one extender may bind).
    #[must_use]
    pub fn bind_verb(mut self, verb: &str) -> Self {
        self.bind_verb = Some(verb.to_owned());
        self
    }

    /// Sets `weight` (default 1; must be positive when prioritizing).
    #[must_use]
    pub fn weight(mut self, weight: i64) -> Self {
        self.weight = weight;
        self
    }

    /// Sets `nodeCacheCapable` (the scheduler then sends node names only).
    #[must_use]
    pub fn node_cache_capable(mut self, capable: bool) -> Self {
        self.node_cache_capable = capable;
        self
    }

    /// Sets `ignorable` (errors and an unreachable extender do not fail scheduling).
    #[must_use]
    pub fn ignorable(mut self, ignorable: bool) -> Self {
        self.ignorable = ignorable;
        self
    }

    /// Sets `httpTimeout` (the scheduler's default is 5 s).
    #[must_use]
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = Some(timeout);
        self
    }

    /// Sets `enableHTTPS` explicitly.
    #[must_use]
    pub fn enable_https(mut self, enable: bool) -> Self {
        self.enable_https = enable;
        self
    }

    /// Trusts this CA (PEM) for the extender's certificate (`tlsConfig.caData`); enables HTTPS.
    #[must_use]
    pub fn ca_pem(mut self, pem: &str) -> Self {
        self.ca_pem = Some(pem.to_owned());
        self.enable_https = true;
        self
    }

    /// Skips verification of the extender's certificate (`tlsConfig.insecure`); enables HTTPS.
    #[must_use]
    pub fn insecure_skip_verify(mut self) -> Self {
        self.insecure = true;
        self.enable_https = true;
        self
    }

    /// Sets `tlsConfig.serverName`.
    #[must_use]
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Adds a `managedResources` entry: the pod goes to the extender only if it requests one of them.
    #[must_use]
    pub fn managed_resource(mut self, name: &str, ignored_by_scheduler: bool) -> Self {
        self.managed_resources.push((name.to_owned(), ignored_by_scheduler));
        self
    }

    /// The YAML block mapping of this entry (without the list dash).
    fn render(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "urlPrefix: {}", quote(&self.url_prefix));
        for (key, verb) in [
            ("filterVerb", &self.filter_verb),
            ("prioritizeVerb", &self.prioritize_verb),
            ("preemptVerb", &self.preempt_verb),
            ("bindVerb", &self.bind_verb),
        ] {
            if let Some(verb) = verb {
                let _ = writeln!(y, "{key}: {}", quote(verb));
            }
        }
        let _ = writeln!(y, "weight: {}", self.weight);
        let _ = writeln!(y, "nodeCacheCapable: {}", self.node_cache_capable);
        let _ = writeln!(y, "ignorable: {}", self.ignorable);
        if let Some(timeout) = self.http_timeout {
            let _ = writeln!(y, "httpTimeout: {}ms", timeout.as_millis());
        }
        let _ = writeln!(y, "enableHTTPS: {}", self.enable_https);
        if self.ca_pem.is_some() || self.insecure || self.server_name.is_some() {
            y.push_str("tlsConfig:\n");
            if self.insecure {
                y.push_str("  insecure: true\n");
            }
            if let Some(name) = &self.server_name {
                let _ = writeln!(y, "  serverName: {}", quote(name));
            }
            if let Some(pem) = &self.ca_pem {
                let data = base64::engine::general_purpose::STANDARD.encode(pem);
                let _ = writeln!(y, "  caData: {}", quote(&data));
            }
        }
        if !self.managed_resources.is_empty() {
            y.push_str("managedResources:\n");
            for (name, ignored) in &self.managed_resources {
                let _ = writeln!(y, "- name: {}\n  ignoredByScheduler: {ignored}", quote(name));
            }
        }
        y
    }
}

/// A running kube-scheduler; stopped on drop.
#[derive(Debug)]
pub struct SchedulerHandle {
    process: Supervised,
    cluster: Arc<Cluster>,
    config_path: PathBuf,
    port: u16,
}

impl SchedulerHandle {
    pub(crate) async fn start(cluster: Arc<Cluster>, config_yaml: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("kube-scheduler-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let config_path = cluster.dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config_yaml).with_context(|| format!("writing {}", config_path.display()))?;
        let log = cluster.dir.join(format!("{name}.log"));
        let mut attempt = 1;
        loop {
            let port = free_ports(1)?[0];
            let kubeconfig = cluster.kubeconfig.display().to_string();
            let args = vec![
                format!("--config={}", config_path.display()),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", cluster.loopback_cert.0.display()),
                format!("--tls-private-key-file={}", cluster.loopback_cert.1.display()),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--v=2".to_owned(),
            ];
            let process = Supervised::spawn(&name, &cluster.binaries.kube_scheduler, &args, &log)?;
            let handle = Self { process, cluster: Arc::clone(&cluster), config_path: config_path.clone(), port };
            match handle.wait_ready(scaled(Duration::from_secs(60))).await {
                Ok(()) => {
                    eprintln!("[testkit] {name} ready on port {port} (log {})", log.display());
                    return Ok(handle);
                }
                // The port may have been taken between picking and binding: try once more.
                Err(e) if attempt == 1 && handle.process.exit_status().is_some() => {
                    eprintln!("[testkit] {name} failed to start, retrying once: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.exit_status() {
                bail!("{} exited with {status} during startup\n{}", self.process.name(), self.diagnostics());
            }
            let Err(last) = probe_readyz(&client).await? else { return Ok(()) };
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready after {timeout:?} (last /readyz answer: {last})\n{}",
                    self.process.name(),
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An admin client aimed at the scheduler's secure port.
    async fn client(&self) -> Result<kube::Client> {
        let server = format!("https://127.0.0.1:{}", self.port);
        client_from_yaml(&self.cluster.kubeconfig_yaml_for(&server, &Identity::Admin)).await
    }

    /// GETs `path` (e.g. `/metrics`) from the scheduler's secure port as the admin.
    pub async fn get(&self, path: &str) -> Result<String> {
        let request = http::Request::get(path).body(Vec::new()).context("building a request")?;
        self.client().await?.request_text(request).await.with_context(|| format!("GET {path} from the scheduler"))
    }

    /// Stops the scheduler (SIGKILL) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Whether the scheduler process is still running.
    pub fn is_running(&self) -> bool {
        self.process.exit_status().is_none()
    }

    /// The scheduler's log (stdout and stderr, `--v=2`).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the scheduler's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The KubeSchedulerConfiguration file in use.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The secure (HTTPS) port, serving a certificate signed by the cluster CA.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the scheduler's supervising shell (the scheduler is its child).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The scheduler's state and last log lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        self.process.describe_failure(LOG_LINES)
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Removes common leading indentation and surrounding blank lines; ends with a newline.
fn dedent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| !l.trim().is_empty()).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(start, |i| i + 1);
    let lines = &lines[start..end];
    let margin =
        lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    lines.iter().map(|l| format!("{}\n", l.get(margin..).unwrap_or("").trim_end())).collect()
}

/// Prefixes every non-empty line with `prefix`.
fn indent_block(block: &str, prefix: &str) -> String {
    block.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("{prefix}{l}\n") }).collect()
}

/// A block mapping as a YAML sequence item.
fn list_item(block: &str) -> String {
    let mut out = String::new();
    for (i, line) in block.lines().enumerate() {
        let prefix = if i == 0 {
            "- "
        } else if line.is_empty() {
            ""
        } else {
            "  "
        };
        let _ = writeln!(out, "{prefix}{line}");
    }
    out
}

/// Starting kube-schedulers against a control plane (here, so the control plane does not need to
/// know the scheduler's types).
impl ControlPlane {
    /// Starts a kube-scheduler with `config` (the harness fills in its kubeconfig) and waits until
    /// it reports ready. It stops when the handle is dropped or [`SchedulerHandle::stop`] is called.
    pub async fn start_scheduler(&self, config: &SchedulerConfig) -> Result<SchedulerHandle> {
        let yaml = config.render(&self.cluster.kubeconfig);
        SchedulerHandle::start(Arc::clone(&self.cluster), &yaml).await
    }

    /// Starts a kube-scheduler with a complete KubeSchedulerConfiguration, whose
    /// `clientConnection.kubeconfig` should be [`ControlPlane::kubeconfig_path`].
    pub async fn start_scheduler_yaml(&self, config_yaml: &str) -> Result<SchedulerHandle> {
        SchedulerHandle::start(Arc::clone(&self.cluster), config_yaml).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("invalid YAML ({e}):\n{yaml}"))
    }

    #[test]
    fn renders_defaults_and_profiles() {
        let yaml = SchedulerConfig::new("a").profile("b").render(Path::new("/x/admin.kubeconfig"));
        assert_eq!(
            parse(&yaml),
            json!({
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": "/x/admin.kubeconfig", "qps": 100, "burst": 200},
                "leaderElection": {"leaderElect": false},
                "percentageOfNodesToScore": 100,
                "podInitialBackoffSeconds": 1,
                "podMaxBackoffSeconds": 2,
                "profiles": [{"schedulerName": "a"}, {"schedulerName": "b"}],
            })
        );
    }

    #[test]
    fn renders_structured_extenders() {
        let extender = Extender::new("https://127.0.0.1:8443/scheduler")
            .prioritize_verb(None)
            .preempt_verb("preempt")
            .bind_verb("bind")
            .weight(5)
            .node_cache_capable(true)
            .ignorable(true)
            .http_timeout(Duration::from_millis(2500))
            .ca_pem("-----BEGIN CERTIFICATE-----\n")
            .server_name("localhost")
            .managed_resource("example.com/foo", true);
        let yaml = SchedulerConfig::new("a").extender(extender).render(Path::new("/k"));
        let extenders = &parse(&yaml)["extenders"];
        assert_eq!(
            extenders,
            &json!([{
                "urlPrefix": "https://127.0.0.1:8443/scheduler",
                "filterVerb": "filter",
                "preemptVerb": "preempt",
                "bindVerb": "bind",
                "weight": 5,
                "nodeCacheCapable": true,
                "ignorable": true,
                "httpTimeout": "2500ms",
                "enableHTTPS": true,
                "tlsConfig": {"serverName": "localhost", "caData": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
                "managedResources": [{"name": "example.com/foo", "ignoredByScheduler": true}],
            }])
        );
    }

    #[test]
    fn plain_http_extender_has_no_tls() {
        let yaml = SchedulerConfig::new("a").extender(Extender::new("http://127.0.0.1:1/x")).render(Path::new("/k"));
        let extender = &parse(&yaml)["extenders"][0];
        assert_eq!(extender["enableHTTPS"], json!(false));
        assert_eq!(extender["prioritizeVerb"], json!("prioritize"));
        assert!(extender.get("tlsConfig").is_none());
    }

    #[test]
    fn renders_raw_yaml_pieces() {
        let yaml = SchedulerConfig::new("a")
            .profile_yaml(
                "b",
                "
                plugins:
                  score:
                    disabled:
                    - name: '*'
                ",
            )
            .extender_yaml(
                "
                    urlPrefix: http://127.0.0.1:9/s
                    filterVerb: filter
                    weight: 2
                ",
            )
            .extender(Extender::new("http://127.0.0.1:10/s"))
            .extra_yaml("parallelism: 4")
            .client_rate(50, 60)
            .backoff_seconds(2, 4)
            .percentage_of_nodes_to_score(50)
            .render(Path::new("/k"));
        let v = parse(&yaml);
        assert_eq!(
            v["profiles"][1],
            json!({"schedulerName": "b", "plugins": {"score": {"disabled": [{"name": "*"}]}}})
        );
        assert_eq!(
            v["extenders"][0],
            json!({"urlPrefix": "http://127.0.0.1:9/s", "filterVerb": "filter", "weight": 2})
        );
        assert_eq!(v["extenders"][1]["urlPrefix"], json!("http://127.0.0.1:10/s"));
        assert_eq!(v["parallelism"], json!(4));
        assert_eq!(v["clientConnection"]["qps"], json!(50));
        assert_eq!(v["podMaxBackoffSeconds"], json!(4));
        assert_eq!(v["percentageOfNodesToScore"], json!(50));
    }

    #[test]
    fn quotes_awkward_strings() {
        let yaml = SchedulerConfig::new("name: with \"quotes\" #").render(Path::new("/dir with spaces/k"));
        let v = parse(&yaml);
        assert_eq!(v["profiles"][0]["schedulerName"], json!("name: with \"quotes\" #"));
        assert_eq!(v["clientConnection"]["kubeconfig"], json!("/dir with spaces/k"));
    }

    #[test]
    fn dedents_blocks() {
        assert_eq!(dedent("\n    a: 1\n      b: 2\n\n"), "a: 1\n  b: 2\n");
        assert_eq!(list_item("a: 1\nb:\n  c: 2\n"), "- a: 1\n  b:\n    c: 2\n");
    }
}
