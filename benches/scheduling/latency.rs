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
//! TCP connections the apiserver opened to each webhook (distinct peer ports seen in
//! `/proc/net/tcp`, sampled every 2 ms), so connection churn and TLS handshakes would show.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use hdrhistogram::Histogram;
use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Pod};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use stowage_certs::{GenerateOptions, generate_to_dir};
use stowage_fixtures::pod;
use stowage_loadgen::{
    client::latency_histogram,
    report::{self, Table, ms},
};
use stowage_testkit::{ControlPlane, StowageArgs, StowageProcess, metric_sum, namespace_with_labels, poll_until};

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

/// One namespace creates go to: a build's webhook, or none.
struct Arm {
    label: String,
    namespace: String,
    api: Api<Pod>,
    webhook: Option<StowageProcess>,
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

/// Peer ports of the established TCP connections to each local port in `ports`
/// (`/proc/net/tcp`: `sl local rem st ...`, addresses as `HEXIP:HEXPORT`, state 01 established).
fn established_peers(ports: &[u16], seen: &mut [HashSet<u16>]) {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return };
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(remote), Some(state)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if state != "01" {
            continue;
        }
        let port = |addr: &str| addr.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        let (Some(local), Some(remote)) = (port(local), port(remote)) else { continue };
        if let Some(i) = ports.iter().position(|p| *p == local) {
            seen[i].insert(remote);
        }
    }
}

/// Samples [`established_peers`] every 2 ms until `stop` is set; returns the distinct peers.
fn sample_connections(ports: Vec<u16>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::task::spawn_blocking(move || {
        let mut seen = vec![HashSet::new(); ports.len()];
        loop {
            established_peers(&ports, &mut seen);
            if stop.load(Ordering::Relaxed) {
                return seen.iter().map(HashSet::len).collect();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

impl Latency {
    /// Runs the phase against `cp` for every build in `builds`, `creates` pods per arm one at a
    /// time and twice that with 16 in flight. `config` is the webhook's config file.
    pub async fn measure(
        cp: &ControlPlane,
        dir: &Path,
        config: &Path,
        builds: &[Build],
        creates: usize,
    ) -> anyhow::Result<Self> {
        let client = cp.client();
        let tls = dir.join("tls-latency");
        generate_to_dir(&GenerateOptions::default(), &tls)?;
        let ca = std::fs::read(tls.join("ca.crt"))?;
        let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let mut arms = Vec::new();
        for (i, build) in builds.iter().enumerate() {
            let args = StowageArgs::new(&build.binary, "webhook")
                .env("RUST_LOG", "warn")
                .kubeconfig(cp.kubeconfig_path())
                .tls_dir(&tls)
                .config(config);
            let webhook = StowageProcess::start(&args, &dir.join(format!("stowage-webhook-{i}.log"))).await?;
            let selector = format!("build-{i}");
            mwc.create(
                &PostParams::default(),
                &webhook_configuration(&format!("stowage-bench-{i}"), &selector, &webhook.webhook_url(), &ca)?,
            )
            .await?;
            let namespace =
                namespace_with_labels(&client, &format!("create-webhook-{i}"), &[(WEBHOOK_LABEL, &selector)]).await?;
            arms.push(Arm {
                label: build.label.clone(),
                api: Api::namespaced(client.clone(), &namespace),
                namespace,
                webhook: Some(webhook),
            });
        }
        let namespace = namespace_with_labels(&client, "create-plain", &[]).await?;
        arms.push(Arm {
            label: "none (baseline)".to_owned(),
            api: Api::namespaced(client.clone(), &namespace),
            namespace,
            webhook: None,
        });
        // The apiserver loads webhook configurations through an informer: wait until it calls each.
        for arm in arms.iter().filter(|a| a.webhook.is_some()) {
            poll_until("the webhook registered", Duration::from_secs(60), Duration::from_millis(200), || async {
                let probe = latency_pod(&arm.namespace, "probe");
                let created = arm.api.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await?;
                Ok((created.spec.and_then(|s| s.scheduler_name).as_deref() == Some("stowage")).then_some(()))
            })
            .await?;
        }

        let mut processes: Vec<(String, Option<u32>)> =
            cp.pids().into_iter().map(|(name, pid)| (name.to_owned(), Some(pid))).collect();
        for arm in &arms {
            if let Some(w) = &arm.webhook {
                processes.push((format!("webhook: {}", arm.label), w.pid()));
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
        for k in 0..arms.len() {
            let name = format!("16 in flight, {} alone", arms[k].label);
            latency.phases.push(run_phase(&arms, &processes, &name, &[k], creates * 2, IN_FLIGHT).await?);
        }
        for arm in &mut arms {
            if let Some(w) = &mut arm.webhook {
                w.kill();
            }
        }
        Ok(latency)
    }

    /// p50 overhead of build `k` over the baseline in phase `phase`, milliseconds.
    fn overhead(&self, phase: &Phase, k: usize, q: f64) -> f64 {
        let base = self.arms.len() - 1;
        (phase.latency[k].value_at_quantile(q) as f64 - phase.latency[base].value_at_quantile(q) as f64) / 1000.0
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
            "TCP connections from the apiserver",
        ]);
        for phase in &self.phases {
            for (k, (reviews, mean, ops, conns)) in phase.webhooks.iter().enumerate() {
                if *reviews == 0 {
                    continue;
                }
                hooks.row(vec![
                    phase.name.clone(),
                    self.arms[k].clone(),
                    reviews.to_string(),
                    format!("{mean:.3}"),
                    format!("{ops:.1}"),
                    conns.to_string(),
                ]);
            }
        }
        format!(
            "### Pod-create latency through the real apiserver, with and without the webhook\n\n{}\n\
             CPU per create of each process in each phase (user + system from /proc; the webhook rows are \
             the whole process, whichever namespace the creates went to):\n\n{}\n\
             The webhooks' own view (`stowage_admission_duration_seconds`, `stowage_admission_patch_operations_total`) \
             and the distinct TCP connections the apiserver held to each (peer ports seen in /proc/net/tcp every 2 ms):\n\n{}\n\
             etcd, kube-apiserver, stowage and this client all share the machine. {}\n",
            lat.render(),
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
        json!({"webhooks": self.arms, "phases": phases})
    }
}

/// The webhook's review count, summed review seconds and patch operations so far.
async fn webhook_counters(arm: &Arm) -> anyhow::Result<(f64, f64, f64)> {
    let Some(w) = &arm.webhook else { return Ok((0.0, 0.0, 0.0)) };
    let text = w.metrics().await?;
    Ok((
        metric_sum(&text, "stowage_admission_duration_seconds_count", &[]),
        metric_sum(&text, "stowage_admission_duration_seconds_sum", &[]),
        metric_sum(&text, "stowage_admission_patch_operations_total", &[]),
    ))
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
    let ports: Vec<u16> = arms.iter().map(|a| a.webhook.as_ref().map_or(0, |w| w.webhook.port())).collect();
    let mut before = Vec::new();
    for arm in arms {
        before.push(webhook_counters(arm).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(ports, Arc::clone(&stop));
    let cpu_before = ticks();
    let started = Instant::now();
    let tag = name.split([' ', ',']).next().unwrap_or("p").to_owned()
        + &active.iter().map(ToString::to_string).collect::<String>();
    let timings: Vec<(usize, u64)> =
        futures::stream::iter((0..creates).flat_map(|i| active.iter().map(move |k| (*k, i))))
            .map(|(k, i)| {
                let arm = &arms[k];
                let tag = &tag;
                async move {
                    let (us, mutated) =
                        timed_create(&arm.api, &latency_pod(&arm.namespace, &format!("{tag}-{i}"))).await?;
                    anyhow::ensure!(
                        mutated == arm.webhook.is_some(),
                        "pod {}/{tag}-{i}: mutated is {mutated}",
                        arm.namespace
                    );
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
    Ok(Phase { name: name.to_owned(), latency, creates: total, wall, cpu_ms_per_create, webhooks })
}
