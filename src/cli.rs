//! Command-line interface.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Stateful-aware placement for databases on Kubernetes: a scheduler extender and a mutating
/// admission webhook steered by `stowage.io/*` pod annotations and a cluster config file.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STOWAGE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the extender and/or webhook servers.
    Serve(Box<ServeArgs>),
    /// Explain where the extender would place a pod and why: a live pod (`explain pod/NAME -n NS`,
    /// also as `kubectl stowage explain ...`), or a pod file against a cluster snapshot (what the
    /// webhook would inject first, then the placement).
    Explain(ExplainArgs),
    /// Print the JSON Patch the webhook would apply to a pod at creation.
    Mutate(MutateArgs),
    /// Certificate tooling.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Config file tooling.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Zone-failure readiness: for every group, whether losing any one zone or node keeps a
    /// Ready majority. Exit code 3 when a group is not zone-safe.
    Audit(AuditArgs),
}

/// Which servers `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Component {
    /// The scheduler extender (filter, prioritize, preempt, bind).
    Extender,
    /// The mutating admission webhook.
    Webhook,
    /// The leader-elected recovery controller (docs/recovery.md).
    Recovery,
}

/// Arguments of `stowage serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Servers to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "extender,webhook", env = "STOWAGE_COMPONENTS")]
    pub components: Vec<Component>,
    /// Cluster config file (profiles, pools, weights); reloaded when it changes.
    #[arg(long, env = "STOWAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kubeconfig to use. Without it: in-cluster credentials, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, conflicts_with = "snapshot")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve from a cluster snapshot file instead of a live cluster (no binding, no events).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Extender listen address (plain HTTP; keep it on loopback next to the scheduler).
    #[arg(long, default_value = "127.0.0.1:8888", env = "STOWAGE_EXTENDER_ADDR")]
    pub extender_addr: SocketAddr,
    /// Serve the extender over TLS with the same certificate as the webhook.
    #[arg(long, env = "STOWAGE_EXTENDER_TLS")]
    pub extender_tls: bool,
    /// Webhook listen address (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443", env = "STOWAGE_WEBHOOK_ADDR")]
    pub webhook_addr: SocketAddr,
    /// Admin listen address: /healthz, /readyz, /metrics, /debug/decisions (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:9090", env = "STOWAGE_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// Protection of /metrics and /debug/* on the admin port (probes are always open):
    /// `kubernetes` checks a bearer token with the apiserver (TokenReview, then
    /// SubjectAccessReview for the path and verb); `none` only with a loopback --admin-addr.
    #[arg(long, value_enum, default_value = "kubernetes", env = "STOWAGE_ADMIN_AUTH")]
    pub admin_auth: AdminAuthMode,
    /// Directory holding tls.crt and tls.key (a mounted Secret); watched for rotation.
    #[arg(long, env = "STOWAGE_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Require client certificates signed by this CA (mTLS) on the TLS listeners.
    #[arg(long, env = "STOWAGE_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate and config files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "STOWAGE_RELOAD_INTERVAL")]
    pub reload_interval: Duration,
    /// Namespaces the webhook never mutates (repeatable); its own namespace belongs here.
    #[arg(long = "webhook-skip-namespace", env = "STOWAGE_WEBHOOK_SKIP_NAMESPACES", value_delimiter = ',')]
    pub webhook_skip_namespaces: Vec<String>,
    /// Webhook per-request timeout; keep it below the configuration's timeoutSeconds.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// Extender per-request timeout; keep it below the scheduler's httpTimeout.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub extender_timeout: Duration,
    /// Largest accepted admission request body.
    #[arg(long, default_value_t = 7 * 1024 * 1024)]
    pub webhook_max_body_bytes: usize,
    /// Bytes of reviews above 64 KiB decided at once; a large review beyond that is refused
    /// with 503 at once. Decoding takes up to about 30 times a review's size: keep this near a
    /// thirty-second of the webhook container's memory limit.
    #[arg(long, default_value_t = 7 * 1024 * 1024)]
    pub webhook_max_large_bytes_in_flight: usize,
    /// Largest accepted extender request body (full Node lists are big).
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub extender_max_body_bytes: usize,
    /// Extender requests served at once; more are refused with 503 at once.
    #[arg(long, default_value_t = 256)]
    pub extender_max_in_flight: usize,
    /// Keep-alive connections idle longer than this between requests are closed. Keep it above
    /// the clients' idle timeout (Go's default is 90s), so the server never closes a connection
    /// the apiserver or scheduler is about to reuse.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A request head must arrive within this time of its first byte (a new connection's first
    /// head: of the connection's start); slower clients are disconnected. Keep it below
    /// --webhook-timeout and --extender-timeout.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Most connections open at once on each listener; more wait in the listen backlog until
    /// one closes (an idle connection costs about 20 KiB).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// After SIGTERM: report not-ready and keep serving this long before draining, so the
    /// endpoints are withdrawn first.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Recovery: namespace of its Lease (stowage's own namespace).
    #[arg(long, default_value = "stowage-system", env = "POD_NAMESPACE")]
    pub recovery_namespace: String,
    /// Recovery: this replica's identity in the Lease (default: the host name, i.e. the pod name).
    #[arg(long, env = "POD_NAME")]
    pub recovery_identity: Option<String>,
    /// Recovery: how often the leader renews its Lease and decides.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub recovery_interval: Duration,
    /// Recovery: Lease duration (a new leader takes over this long after the old one stops).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub recovery_lease_duration: Duration,
    /// Recovery: cluster-wide cap on rebuilds in flight.
    #[arg(long, default_value_t = 1)]
    pub recovery_max_in_flight: usize,
}

/// Arguments of `stowage audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit a cluster snapshot (as for `explain`) instead of the live cluster.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Kubeconfig for the live cluster (default: in-cluster, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, conflicts_with = "snapshot")]
    pub kubeconfig: Option<PathBuf>,
    /// Cluster config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Arguments of `stowage explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A pod of the live cluster, `pod/NAME` or `NAME` (read through the kubeconfig). Without it,
    /// `--snapshot` and `--pod` describe the cluster and the pod offline.
    #[arg(value_name = "pod/NAME", conflicts_with_all = ["snapshot", "pod"])]
    pub target: Option<String>,
    /// Namespace of the live pod.
    #[arg(short = 'n', long, default_value = "default", requires = "target")]
    pub namespace: String,
    /// Kubeconfig for the live cluster (default: in-cluster, `$KUBECONFIG`, `~/.kube/config`).
    #[arg(long, requires = "target")]
    pub kubeconfig: Option<PathBuf>,
    /// Cluster snapshot: `kubectl get ... -o json` or `-o yaml` output (concatenated JSON
    /// documents or multi-document YAML).
    #[arg(long, requires = "pod")]
    pub snapshot: Option<PathBuf>,
    /// The pod to place (YAML or JSON), as it is before admission.
    #[arg(long, requires = "snapshot")]
    pub pod: Option<PathBuf>,
    /// Cluster config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Place the pod as given, without applying the webhook's mutation first (always so for a
    /// live pod: it was admitted already).
    #[arg(long)]
    pub no_mutate: bool,
}

/// How the admin port protects `/metrics` and `/debug/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminAuthMode {
    /// Bearer token checked with TokenReview, access with SubjectAccessReview.
    Kubernetes,
    /// No check; only allowed on a loopback address.
    None,
}

/// Output format of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A readable report.
    Text,
    /// Machine-readable JSON.
    Json,
}

/// Arguments of `stowage mutate`.
#[derive(Debug, Args)]
pub struct MutateArgs {
    /// The pod (YAML or JSON), as it is before admission.
    #[arg(long)]
    pub pod: PathBuf,
    /// Cluster config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Snapshot providing the owning StatefulSet's replica count (for minDomains).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Namespace to assume when the pod names none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

/// `stowage certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Generate a CA and a serving certificate; prints the base64 caBundle.
    Generate(CertsGenerateArgs),
    /// Fill or renew the webhook's certificate Secrets in a cluster (which must exist; the
    /// install manifests create them empty) and write the caBundle into the
    /// MutatingWebhookConfiguration (idempotent; run by the certs Job).
    Install(CertsInstallArgs),
}

/// Arguments of `stowage certs install`.
#[derive(Debug, Args)]
pub struct CertsInstallArgs {
    /// Namespace of the webhook Service and the Secrets.
    #[arg(long, default_value = "stowage-system")]
    pub namespace: String,
    /// Name of the webhook Service (the certificate names it).
    #[arg(long, default_value = "stowage-webhook")]
    pub service: String,
    /// Secret receiving tls.crt, tls.key and ca.crt (mounted by the webhook).
    #[arg(long, default_value = "stowage-webhook-tls")]
    pub secret: String,
    /// Secret keeping the CA (never mounted by the webhook).
    #[arg(long, default_value = "stowage-ca")]
    pub ca_secret: String,
    /// MutatingWebhookConfiguration whose caBundle to set.
    #[arg(long, default_value = "stowage")]
    pub webhook_configuration: String,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Renew the serving certificate when it expires within this long.
    #[arg(long, default_value = "720h", value_parser = parse_duration)]
    pub renew_before: Duration,
    /// Kubeconfig (default: in-cluster, then $KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// Arguments of `stowage certs generate`.
#[derive(Debug, Args)]
pub struct CertsGenerateArgs {
    /// Output directory (ca.crt, ca.key, tls.crt, tls.key).
    #[arg(long)]
    pub out: PathBuf,
    /// DNS names for the serving certificate (repeatable).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// IP addresses for the serving certificate (repeatable).
    #[arg(long = "ip")]
    pub ip: Vec<std::net::IpAddr>,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `stowage config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print every problem.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    stowage_policy::config::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration; expected e.g. 2s, 500ms, 1m"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["stowage", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("expected serve") };
        assert_eq!(args.components, vec![Component::Extender, Component::Webhook]);
        assert_eq!(args.webhook_timeout, Duration::from_secs(2));
    }

    #[test]
    fn recovery_is_a_component_and_audit_a_command() {
        let cli = Cli::try_parse_from(["stowage", "serve", "--components", "webhook,recovery"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("expected serve") };
        assert_eq!(args.components, vec![Component::Webhook, Component::Recovery]);
        assert_eq!(args.recovery_max_in_flight, 1);
        let cli = Cli::try_parse_from(["stowage", "audit", "--snapshot", "s.json", "--output", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Audit(AuditArgs { output: Output::Json, .. })));
    }

    #[test]
    fn snapshot_and_kubeconfig_conflict() {
        assert!(Cli::try_parse_from(["stowage", "serve", "--snapshot", "a", "--kubeconfig", "b"]).is_err());
    }
}
