//! Pod-create latency through the real apiserver, with and without the webhook.
//!
//! Each build of `stowage` under test serves the webhook from its own process, registered by
//! its own MutatingWebhookConfiguration (failurePolicy Fail, TLS, `matchConditions`) that
//! selects its own namespace by label; a last namespace is selected by none (the baseline).
//! The same opted-in pod is created round-robin in every namespace: first one at a time, then
//! with 16 creates in flight, so every build and the baseline share the same moment of a loaded
//! machine. Then each namespace alone with 16 in flight, to attribute CPU: the apiserver's and
//! etcd's CPU per create with a webhook minus without is what the webhook path costs them.
//!
//! For each phase it records, besides the latencies: CPU time per create of kube-apiserver,
//! etcd, each webhook process and this process (`/proc/<pid>/stat` before and after), the
//! webhook's own time per review (its `stowage_admission_duration_seconds` histogram), and the
//! connections each webhook accepted during the phase (new socket inodes among its open files,
//! sampled every 250 ms), so connection churn and TLS handshakes would show. (Not from
//! `/proc/net/tcp`: every read of it walks the kernel's whole connection hash table, and polling
//! it took a quarter of this machine's CPU away from the processes measured.)

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::{Server, addr};
use anyhow::Context as _;
use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use hdrhistogram::Histogram;
use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Pod};
use kube::{Api, api::PostParams};
use serde_json::{Map, Value, json};
use stowage_certs::{GenerateOptions, generate_to_dir};
use stowage_fixtures::pod;
use stowage_loadgen::{
    client::{self, Target, latency_histogram},
    empty,
    fixtures::{review, uid_for},
    report::{self, Table, ms},
};
use stowage_testkit::{
    ControlPlane, StowageArgs, StowageProcess, free_ports, metric_sum, namespace_with_labels, poll_until,
};

const PROFILE: &str = "stowage.io/profile";
const WEBHOOK_LABEL: &str = "bench.stowage.io/webhook";
/// Creates in flight in the concurrent phases.
const IN_FLIGHT: usize = 16;

/// A build of `stowage` whose webhook is measured.
pub struct Build {
    /// How the report names it.
    pub label: String,
    /// The `stowage` binary.
    pub binary: PathBuf,
}

/// What answers one namespace's reviews.
enum Hook {
    /// `stowage serve --components webhook` of one build.
    Stowage(StowageProcess),
    /// A floor webhook (this bench re-executed in the role `floor-webhook`, see
    /// `stowage_loadgen::empty::floor_webhook_router`), on `port`.
    Floor { server: Server, port: u16 },
}

impl Hook {
    fn pid(&self) -> Option<u32> {
        match self {
            Self::Stowage(w) => w.pid(),
            Self::Floor { server, .. } => Some(server.process.pid()),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Stowage(w) => w.webhook_url(),
            Self::Floor { port, .. } => format!("https://127.0.0.1:{port}/mutate"),
        }
    }
}

/// A floor webhook next to the builds: the least a webhook must do, so what the apiserver's
/// webhook path costs by itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// Allowed, no patch: the review round trip alone.
    Allow,
    /// One fixed operation (`schedulerName`): the apiserver's whole patch path.
    OneOp,
    /// The first build's patch for the latency pod, replayed without deciding.
    ReplayPatch,
    /// The first build's whole answer (patch, warnings, audit annotations), replayed.
    ReplayAnswer,
}

impl Floor {
    const ALL: [Self; 4] = [Self::Allow, Self::OneOp, Self::ReplayPatch, Self::ReplayAnswer];

    fn label(self) -> &'static str {
        match self {
            Self::Allow => "floor: allowed, no patch",
            Self::OneOp => "floor: one-operation patch",
            Self::ReplayPatch => "floor: the first build's patch, replayed",
            Self::ReplayAnswer => "floor: the first build's whole answer, replayed",
        }
    }

    /// The fixed response fields, from the first build's `answer` where replayed.
    fn answer(self, answer: &Map<String, Value>) -> Map<String, Value> {
        let keep: &[&str] = match self {
            Self::Allow => &[],
            Self::OneOp => return empty::one_operation_answer(),
            Self::ReplayPatch => &["patchType", "patch"],
            Self::ReplayAnswer => &["patchType", "patch", "warnings", "auditAnnotations"],
        };
        answer.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One namespace creates go to: a build's webhook, a floor webhook, or none.
struct Arm {
    label: String,
    namespace: String,
    api: Api<Pod>,
    hook: Option<Hook>,
    /// Whether the created pod comes back with `schedulerName: stowage`.
    mutates: bool,
}

/// What one phase measured.
struct Phase {
    name: String,
    /// Per arm, in arm order; an arm that took no part is empty.
    latency: Vec<Histogram<u64>>,
    creates: usize,
    wall: Duration,
    /// CPU milliseconds per create, per process, in [`Latency::processes`] order.
    cpu_ms_per_create: Vec<f64>,
    /// Per webhook arm: (reviews answered, mean server-side ms, patch operations per review,
    /// distinct TCP connections seen from the apiserver).
    webhooks: Vec<(u64, f64, f64, usize)>,
    /// For a phase with every create to one arm: (that arm, which round).
    alone: Option<(usize, usize)>,
}

/// Everything the latency phase measured.
pub struct Latency {
    arms: Vec<String>,
    processes: Vec<String>,
    phases: Vec<Phase>,
}

fn webhook_configuration(
    name: &str,
    selector: &str,
    url: &str,
    ca_pem: &[u8],
) -> anyhow::Result<MutatingWebhookConfiguration> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    Ok(serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "pods.stowage.io",
            "clientConfig": {"url": url, "caBundle": bundle},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                       "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {WEBHOOK_LABEL: selector}},
            "matchConditions": [{"name": "opted-in",
                "expression": "has(object.metadata.annotations) && 'stowage.io/profile' in object.metadata.annotations"}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
            "timeoutSeconds": 10, "reinvocationPolicy": "IfNeeded"
        }]
    }))?)
}

fn latency_pod(namespace: &str, name: &str) -> Pod {
    pod(namespace, name).annotate(PROFILE, "default").annotate("stowage.io/group", "latency").build()
}

/// Creates the pod and returns the call's latency in microseconds and whether it came back
/// mutated (the webhook sets `schedulerName: stowage`).
async fn timed_create(api: &Api<Pod>, p: &Pod) -> anyhow::Result<(u64, bool)> {
    let start = Instant::now();
    let created = api.create(&PostParams::default(), p).await?;
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
    Ok((us, created.spec.and_then(|s| s.scheduler_name).as_deref() == Some("stowage")))
}

/// Inodes of the sockets process `pid` and its descendants hold open (`/proc/<pid>/fd/*` links
/// read `socket:[<inode>]`).
fn socket_inodes(pid: u32, into: &mut HashSet<u64>) {
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let inode =
                target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok());
            into.extend(inode);
        }
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        socket_inodes(child, into);
    }
}

/// How often [`sample_connections`] looks. The apiserver keeps webhook connections for 90 s idle,
/// so kept connections are all seen; churn (a connection per review) would still show as new
/// sockets in most samples. Sampling every 5 ms cost this process 1.3 ms of CPU per create,
/// taken from the processes measured.
const SOCKET_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Samples the sockets of each process in `pids` every [`SOCKET_SAMPLE_INTERVAL`] until `stop` is
/// set; returns, per process, how many it opened after the first sample (the connections it
/// accepted).
fn sample_connections(pids: Vec<Option<u32>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::task::spawn_blocking(move || {
        let sample = |pid: &Option<u32>| {
            let mut inodes = HashSet::new();
            if let Some(pid) = pid {
                socket_inodes(*pid, &mut inodes);
            }
            inodes
        };
        let first: Vec<HashSet<u64>> = pids.iter().map(sample).collect();
        let mut opened = vec![HashSet::new(); pids.len()];
        loop {
            for (k, pid) in pids.iter().enumerate() {
                opened[k].extend(sample(pid).difference(&first[k]).copied());
            }
            if stop.load(Ordering::Relaxed) {
                return opened.iter().map(HashSet::len).collect();
            }
            std::thread::sleep(SOCKET_SAMPLE_INTERVAL);
        }
    })
}

/// The role argument the bench is re-executed with to serve a floor webhook:
/// `--role floor-webhook <addr> <tls dir> <fixed response fields as a JSON object>`.
const FLOOR_ROLE: &str = "floor-webhook";
/// How the phases with every create to one namespace are named.
const ALONE: &str = "16 in flight";

/// Serves a floor webhook when the bench was re-executed in that role (see [`FLOOR_ROLE`]);
/// `None` when it was not.
pub fn role(args: &[String]) -> Option<anyhow::Result<()>> {
    let at = args.iter().position(|a| a == "--role")?;
    if args.get(at + 1).map(String::as_str) != Some(FLOOR_ROLE) {
        return Some(Err(anyhow::anyhow!("unknown role {:?}", args.get(at + 1))));
    }
    let (Some(addr), Some(tls), Some(answer)) = (args.get(at + 2), args.get(at + 3), args.get(at + 4)) else {
        return Some(Err(anyhow::anyhow!("{FLOOR_ROLE}: expected <addr> <tls dir> <answer>")));
    };
    let serve = async move {
        let answer: Map<String, Value> = serde_json::from_str(answer).context("the floor answer")?;
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        empty::serve_floor_webhook(listener, Path::new(tls), answer, std::future::pending()).await
    };
    Some(tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(serve)))
}

/// Starts a floor webhook answering every review with `answer`'s fields, on a free port.
async fn start_floor(dir: &Path, tls: &Path, floor: Floor, answer: &Map<String, Value>) -> anyhow::Result<Hook> {
    let port = *free_ports(1)?.first().context("a free port")?;
    let args = vec![
        "--role".to_owned(),
        FLOOR_ROLE.to_owned(),
        format!("127.0.0.1:{port}"),
        tls.display().to_string(),
        serde_json::to_string(answer)?,
    ];
    let server = Server::spawn_program(floor.label(), dir, &std::env::current_exe()?, &args)?;
    server.wait_accepting(addr(port)).await?;
    Ok(Hook::Floor { server, port })
}

/// Registers `hook` by a MutatingWebhookConfiguration of its own that selects a new namespace,
/// and waits until the apiserver calls it (it loads configurations through an informer).
async fn register(
    client: &kube::Client,
    ca: &[u8],
    i: usize,
    label: &str,
    hook: Hook,
    mutates: bool,
) -> anyhow::Result<Arm> {
    let selector = format!("arm-{i}");
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = webhook_configuration(&format!("stowage-bench-{i}"), &selector, &hook.url(), ca)?;
    mwc.create(&PostParams::default(), &configuration).await?;
    let namespace =
        namespace_with_labels(client, &format!("create-webhook-{i}"), &[(WEBHOOK_LABEL, &selector)]).await?;
    let pid = hook.pid();
    let arm = Arm {
        label: label.to_owned(),
        api: Api::namespaced(client.clone(), &namespace),
        namespace,
        hook: Some(hook),
        mutates,
    };
    poll_until("the webhook registered", Duration::from_secs(60), Duration::from_millis(200), || async {
        let probe = latency_pod(&arm.namespace, "probe");
        let created = arm.api.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await?;
        // A hook that only allows shows by the connection from the apiserver it then holds
        // (a socket beside its listener).
        let called = if arm.mutates {
            created.spec.and_then(|s| s.scheduler_name).as_deref() == Some("stowage")
        } else {
            let mut sockets = HashSet::new();
            socket_inodes(pid.context("the webhook's process")?, &mut sockets);
            sockets.len() > 1
        };
        Ok(called.then_some(()))
    })
    .await?;
    Ok(arm)
}

/// The response `build`'s webhook gives for the latency pod as the apiserver sends it: the pod
/// created dry-run where no webhook runs (defaulted, through the in-tree admission plugins),
/// posted to the webhook in a review.
async fn first_answer(baseline: &Arm, build: &Arm, ca: &[u8]) -> anyhow::Result<Map<String, Value>> {
    let Some(Hook::Stowage(webhook)) = &build.hook else { anyhow::bail!("arm {} is not a stowage build", build.label) };
    let sent = baseline
        .api
        .create(&PostParams { dry_run: true, ..PostParams::default() }, &latency_pod(&baseline.namespace, "replay"))
        .await?;
    let mut pod = serde_json::to_value(&sent)?;
    pod["metadata"]["namespace"] = build.namespace.clone().into();
    let target = Target::tls(webhook.webhook, "/mutate", ca)?;
    let mut sender = client::connect(&target).await?;
    let (status, answer) =
        client::post(&mut sender, &target, serde_json::to_vec(&review(&pod, &uid_for(1)))?.into()).await?;
    anyhow::ensure!(status.is_success(), "{} answered the replay review {status}", build.label);
    let mut answer: Value = serde_json::from_slice(&answer)?;
    let response = answer["response"].take();
    anyhow::ensure!(response.get("patch").is_some(), "{} returned no patch for the latency pod", build.label);
    match response {
        Value::Object(fields) => Ok(fields),
        other => anyhow::bail!("{} answered a response that is not an object: {other}", build.label),
    }
}

impl Latency {
    /// Runs the phase against `cp` for every build in `builds`, `creates` pods per arm one at a
    /// time and twice that with 16 in flight. `config` is the webhook's config file.
    pub async fn measure(
        cp: &ControlPlane,
        dir: &Path,
        config: &Path,
        builds: &[Build],
        floors: bool,
        creates: usize,
    ) -> anyhow::Result<Self> {
        let client = cp.client();
        let tls = dir.join("tls-latency");
        generate_to_dir(&GenerateOptions::default(), &tls)?;
        let ca = std::fs::read(tls.join("ca.crt"))?;
        let mut arms = Vec::new();
        for (i, build) in builds.iter().enumerate() {
            let args = StowageArgs::new(&build.binary, "webhook")
                .env("RUST_LOG", "warn")
                .kubeconfig(cp.kubeconfig_path())
                .tls_dir(&tls)
                .config(config);
            let webhook = StowageProcess::start(&args, &dir.join(format!("stowage-webhook-{i}.log"))).await?;
            arms.push(register(&client, &ca, arms.len(), &build.label, Hook::Stowage(webhook), true).await?);
        }
        let namespace = namespace_with_labels(&client, "create-plain", &[]).await?;
        let baseline = Arm {
            label: "none (baseline)".to_owned(),
            api: Api::namespaced(client.clone(), &namespace),
            namespace,
            hook: None,
            mutates: false,
        };
        if floors {
            let first = first_answer(&baseline, &arms[0], &ca).await?;
            for floor in Floor::ALL {
                let hook = start_floor(dir, &tls, floor, &floor.answer(&first)).await?;
                arms.push(register(&client, &ca, arms.len(), floor.label(), hook, floor != Floor::Allow).await?);
            }
        }
        arms.push(baseline);

        let mut processes: Vec<(String, Option<u32>)> =
            cp.pids().into_iter().map(|(name, pid)| (name.to_owned(), Some(pid))).collect();
        for arm in &arms {
            if let Some(hook) = &arm.hook {
                processes.push((format!("webhook: {}", arm.label), hook.pid()));
            }
        }
        processes.push(("bench process".to_owned(), None));
        let mut latency = Self {
            arms: arms.iter().map(|a| a.label.clone()).collect(),
            processes: processes.iter().map(|(n, _)| n.clone()).collect(),
            phases: Vec::new(),
        };

        let all: Vec<usize> = (0..arms.len()).collect();
        latency.phases.push(run_phase(&arms, &processes, "one at a time, round-robin", &all, creates, 1).await?);
        latency
            .phases
            .push(run_phase(&arms, &processes, "16 in flight, round-robin", &all, creates * 2, IN_FLIGHT).await?);
        // Each namespace alone, twice: forward, then backward, so a drift of the machine's load
        // over the run does not favour the arms measured first.
        for round in [1, 2] {
            let order: Vec<usize> = if round == 1 { all.clone() } else { all.iter().rev().copied().collect() };
            for k in order {
                let name = format!("{ALONE}, {} alone (round {round})", arms[k].label);
                let mut phase = run_phase(&arms, &processes, &name, &[k], creates * 2, IN_FLIGHT).await?;
                phase.alone = Some((k, round));
                latency.phases.push(phase);
            }
        }
        for arm in &mut arms {
            match &mut arm.hook {
                Some(Hook::Stowage(w)) => w.kill(),
                Some(Hook::Floor { server, .. }) => server.process.stop(),
                None => {}
            }
        }
        Ok(latency)
    }

    /// p50 overhead of build `k` over the baseline in phase `phase`, milliseconds.
    fn overhead(&self, phase: &Phase, k: usize, q: f64) -> f64 {
        let base = self.arms.len() - 1;
        (phase.latency[k].value_at_quantile(q) as f64 - phase.latency[base].value_at_quantile(q) as f64) / 1000.0
    }

    /// p50 (ms) of every arm with all creates to it, per round: `[arm][round - 1]`.
    fn alone_p50(&self) -> Vec<Vec<Option<f64>>> {
        let mut p50 = vec![vec![None; 2]; self.arms.len()];
        for phase in &self.phases {
            if let Some((k, round)) = phase.alone {
                p50[k][round - 1] = Some(phase.latency[k].value_at_quantile(0.5) as f64 / 1000.0);
            }
        }
        p50
    }

    /// Each arm's p50 alone at 16 in flight and its overhead over the baseline alone, per round.
    fn alone_table(&self) -> Table {
        let p50 = self.alone_p50();
        let base = p50.last().cloned().unwrap_or_default();
        let mut table = Table::new(&[
            "webhook",
            "p50 ms round 1",
            "p50 ms round 2",
            "p50 overhead ms round 1",
            "p50 overhead ms round 2",
        ]);
        let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        let over =
            |v: Option<f64>, b: Option<f64>| v.zip(b).map_or_else(String::new, |(v, b)| format!("{:+.3}", v - b));
        for (k, label) in self.arms.iter().enumerate() {
            let last = k + 1 == self.arms.len();
            table.row(vec![
                label.clone(),
                cell(p50[k][0]),
                cell(p50[k][1]),
                if last { String::new() } else { over(p50[k][0], base[0]) },
                if last { String::new() } else { over(p50[k][1], base[1]) },
            ]);
        }
        table
    }

    /// The report section.
    pub fn markdown(&self) -> String {
        let mut lat =
            Table::new(&["phase", "webhook", "p50 ms", "p90 ms", "p99 ms", "mean ms", "creates", "p50 overhead ms"]);
        for phase in &self.phases {
            for (k, label) in self.arms.iter().enumerate() {
                let h = &phase.latency[k];
                if h.is_empty() {
                    continue;
                }
                let overhead = if k + 1 < self.arms.len() && !phase.latency[self.arms.len() - 1].is_empty() {
                    format!("{:+.3}", self.overhead(phase, k, 0.5))
                } else {
                    String::new()
                };
                lat.row(vec![
                    phase.name.clone(),
                    label.clone(),
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.9)),
                    ms(h.value_at_quantile(0.99)),
                    format!("{:.3}", h.mean() / 1000.0),
                    h.len().to_string(),
                    overhead,
                ]);
            }
        }
        let mut header = vec!["CPU ms per create".to_owned()];
        header.extend(self.phases.iter().map(|p| p.name.clone()));
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut cpu = Table::new(&header);
        for (i, process) in self.processes.iter().enumerate() {
            let mut row = vec![process.clone()];
            row.extend(self.phases.iter().map(|p| format!("{:.3}", p.cpu_ms_per_create[i])));
            cpu.row(row);
        }
        let mut row = vec!["creates/s".to_owned()];
        row.extend(
            self.phases.iter().map(|p| format!("{:.0}", p.creates as f64 / p.wall.as_secs_f64().max(f64::EPSILON))),
        );
        cpu.row(row);
        let mut hooks = Table::new(&[
            "phase",
            "webhook",
            "reviews",
            "mean server-side ms",
            "patch ops per review",
            "connections accepted",
        ]);
        for phase in &self.phases {
            for (k, (reviews, mean, ops, conns)) in phase.webhooks.iter().enumerate() {
                // Floor webhooks export no metrics: only their connections show.
                if *reviews == 0 && *conns == 0 {
                    continue;
                }
                let stowage = *reviews > 0;
                hooks.row(vec![
                    phase.name.clone(),
                    self.arms[k].clone(),
                    if stowage { reviews.to_string() } else { String::new() },
                    if stowage { format!("{mean:.3}") } else { String::new() },
                    if stowage { format!("{ops:.1}") } else { String::new() },
                    conns.to_string(),
                ]);
            }
        }
        format!(
            "### Pod-create latency through the real apiserver, with and without the webhook\n\n{}\n\
             16 creates in flight, all to one namespace, each namespace alone (round 1 in arm order, round 2 \
             backwards); the overhead is over the baseline's run in the same round:\n\n{}\n\
             CPU per create of each process in each phase (user + system from /proc; the webhook rows are \
             the whole process, whichever namespace the creates went to):\n\n{}\n\
             The webhooks' own view (`stowage_admission_duration_seconds`, `stowage_admission_patch_operations_total`) \
             and the connections each accepted in the phase (new sockets among its open files, sampled every 250 ms):\n\n{}\n\
             etcd, kube-apiserver, stowage and this client all share the machine. {}\n",
            lat.render(),
            self.alone_table().render(),
            cpu.render(),
            hooks.render(),
            report::machine_line()
        )
    }

    /// The raw numbers.
    pub fn json(&self) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                let arms: Vec<Value> = self
                    .arms
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !p.latency[*k].is_empty())
                    .map(|(k, label)| json!({"webhook": label, "latency": report::percentiles(&p.latency[k])}))
                    .collect();
                let cpu: BTreeMap<&str, f64> =
                    self.processes.iter().map(String::as_str).zip(p.cpu_ms_per_create.iter().copied()).collect();
                let hooks: Vec<Value> = p
                    .webhooks
                    .iter()
                    .enumerate()
                    .map(|(k, (n, mean, ops, conns))| {
                        json!({"webhook": self.arms[k], "reviews": n, "mean_server_ms": mean,
                               "patch_ops_per_review": ops, "tcp_connections": conns})
                    })
                    .collect();
                json!({"phase": p.name, "creates": p.creates, "seconds": p.wall.as_secs_f64(),
                       "arms": arms, "cpu_ms_per_create": cpu, "webhooks": hooks})
            })
            .collect();
        json!({"webhooks": self.arms, "phases": phases, "alone_p50_ms": self.alone_p50()})
    }
}

/// The webhook's review count, summed review seconds and patch operations so far.
async fn webhook_counters(arm: &Arm) -> anyhow::Result<(f64, f64, f64)> {
    let Some(Hook::Stowage(w)) = &arm.hook else { return Ok((0.0, 0.0, 0.0)) };
    let text = w.metrics().await?;
    Ok((
        metric_sum(&text, "stowage_admission_duration_seconds_count", &[]),
        metric_sum(&text, "stowage_admission_duration_seconds_sum", &[]),
        metric_sum(&text, "stowage_admission_patch_operations_total", &[]),
    ))
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `creates` creates per arm in `active`, interleaved, `in_flight` at once.
async fn run_phase(
    arms: &[Arm],
    processes: &[(String, Option<u32>)],
    name: &str,
    active: &[usize],
    creates: usize,
    in_flight: usize,
) -> anyhow::Result<Phase> {
    let ticks = || {
        processes
            .iter()
            .map(|(_, pid)| pid.map_or_else(|| report::cpu_ticks(None).unwrap_or(0), report::tree_cpu_ticks))
            .collect::<Vec<u64>>()
    };
    let pids: Vec<Option<u32>> = arms.iter().map(|a| a.hook.as_ref().and_then(Hook::pid)).collect();
    let mut before = Vec::new();
    for arm in arms {
        before.push(webhook_counters(arm).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(pids, Arc::clone(&stop));
    // Stops the sampler however this phase ends (an error would otherwise leave it running and
    // the runtime's shutdown waiting for it).
    let _stop_on_return = StopOnDrop(Arc::clone(&stop));
    let cpu_before = ticks();
    let started = Instant::now();
    // Pod names unique across phases: `p<phase>-<i>`.
    static PHASES: AtomicUsize = AtomicUsize::new(0);
    let tag = format!("p{}", PHASES.fetch_add(1, Ordering::Relaxed));
    let timings: Vec<(usize, u64)> =
        futures::stream::iter((0..creates).flat_map(|i| active.iter().map(move |k| (*k, i))))
            .map(|(k, i)| {
                let arm = &arms[k];
                let tag = &tag;
                async move {
                    let (us, mutated) =
                        timed_create(&arm.api, &latency_pod(&arm.namespace, &format!("{tag}-{i}"))).await?;
                    anyhow::ensure!(mutated == arm.mutates, "pod {}/{tag}-{i}: mutated is {mutated}", arm.namespace);
                    Ok::<_, anyhow::Error>((k, us))
                }
            })
            .buffer_unordered(in_flight)
            .try_collect()
            .await?;
    let wall = started.elapsed();
    let cpu_after = ticks();
    stop.store(true, Ordering::Relaxed);
    let connections = sampler.await?;
    let mut latency: Vec<Histogram<u64>> = arms.iter().map(|_| latency_histogram()).collect();
    for (k, us) in timings {
        latency[k].saturating_record(us);
    }
    let total = creates * active.len();
    #[allow(clippy::cast_precision_loss)]
    let cpu_ms_per_create = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a.saturating_sub(*b) as f64 / report::TICKS_PER_SECOND * 1e3 / total.max(1) as f64)
        .collect();
    let mut webhooks = Vec::new();
    for (k, arm) in arms.iter().enumerate() {
        let (n0, s0, o0) = before[k];
        let (n1, s1, o1) = webhook_counters(arm).await?;
        let n = n1 - n0;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let reviews = n.max(0.0) as u64;
        webhooks.push((reviews, (s1 - s0) / n.max(1.0) * 1e3, (o1 - o0) / n.max(1.0), connections[k]));
    }
    eprintln!("latency phase {name}: {total} creates in {:.1}s", wall.as_secs_f64());
    Ok(Phase { name: name.to_owned(), latency, creates: total, wall, cpu_ms_per_create, webhooks, alone: None })
}
