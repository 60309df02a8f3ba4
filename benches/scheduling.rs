//! Through a real control plane (etcd, kube-apiserver, kube-scheduler from `stowage-testkit`):
//!
//! 1. **Scheduling throughput** of database pods with the extender versus the same scheduler
//!    without it, same run (target: with ≥ 75 % of without, at 1,000 nodes). 1,000 fake nodes in
//!    4 zones; three identical batches of 2,000 pods (StatefulSet-owned groups of 3, opted in with a
//!    profile asking for zone quorum and required zone and node spread, 500m / 1Gi each), created
//!    **before** their scheduler runs (their `schedulerName` is not served yet), so creation is
//!    not measured. Then, one after the other: kube-scheduler without extenders binds batch A;
//!    kube-scheduler with a pass-through extender (filter keeps every node, prioritize scores
//!    none: the wire protocol's own cost) binds batch P; `stowage serve --components extender`
//!    starts and syncs; kube-scheduler with the extender (nodeCacheCapable; filter, prioritize
//!    and bind) binds batch B. Each batch is deleted once bound. Both
//!    schedulers use the same settings (`percentageOfNodesToScore: 100`, client QPS / burst
//!    below). A watch records when each pod is first seen bound; pods/s is counted from the
//!    first to the last binding, and from scheduler start.
//! 2. **Pod-create latency** with and without the webhook (`scheduling/latency.rs`; with
//!    `STOWAGE_BENCH_LATENCY=1` this phase runs alone, on a control plane of its own): each build
//!    under test runs `stowage serve --components webhook`, registered by a
//!    MutatingWebhookConfiguration (failurePolicy Fail) that selects its own namespace by label;
//!    the same opted-in pod is created round-robin in every namespace and in one no webhook
//!    selects, 500 times one at a time, then 1,000 each with 16 requests in flight, then each
//!    namespace alone, twice (target: p50 overhead ≤ 2 ms). CPU per create of every process, the
//!    webhook's own review time and the apiserver's connections to it are reported per phase.
//!    Run alone, the phase also measures three floor webhooks (this bench re-executed as a
//!    minimal webhook on stowage's TLS stack): allowed without a patch, a one-operation patch,
//!    and the first build's own patch for the pod replayed without deciding, so what the
//!    apiserver's webhook path costs by itself stands next to what stowage adds.
//!
//! 3. **Pods that don't opt in** (`STOWAGE_BENCH_NON_OPTED=1` runs this phase alone, instead of
//!    1 and 2): pods without any stowage annotation or resource, bound by kube-scheduler without
//!    extenders, then by kube-scheduler with the stowage extender registered as
//!    `manifests/snippets/kube-scheduler-extender.yaml` ships it (`managedResources:
//!    stowage.io/managed, ignoredByScheduler`), then without again; same run, same settings
//!    (target: with ≥ 0.98 of without). The extender's request count must stay 0.
//!
//! Run: `cargo bench --bench scheduling` (a few minutes; the control-plane binaries are built on
//! first use, see `scripts/control-plane.sh`). Knobs: `STOWAGE_BENCH_NODES` (1000),
//! `STOWAGE_BENCH_PODS` (2000), `STOWAGE_BENCH_QPS` (5000; burst is twice it),
//! `STOWAGE_BENCH_CREATES` (500), `STOWAGE_BENCH_COMPARE_BIN` (another build of `stowage`, e.g.
//! an earlier commit: a fourth batch is bound through it, and its webhook gets a namespace of its
//! own in the latency phase, so two designs are measured side by side in one run;
//! `STOWAGE_BENCH_COMPARE_LABEL` names it in the report). Results:
//! `target/bench-results/scheduling.{json,md}` (`scheduling-latency.{json,md}` for the latency phase alone).
#![allow(missing_docs)]

mod common;
#[path = "scheduling/latency.rs"]
mod latency;

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
    runtime::watcher,
};
use latency::{Build, Latency};
use serde_json::json;

use stowage_fixtures::{pod, statefulset_pod};
use stowage_loadgen::{
    empty,
    report::{self, Table, is_bench_run},
};
use stowage_testkit::{
    ControlPlane, Extender, SchedulerConfig, StowageArgs, StowageProcess, create, create_nodes, fake_node, metric_sum,
    namespace_with_labels, poll_until,
};

const PROFILE: &str = "stowage.io/profile";
const MEMBERS: &str = "stowage.io/members";
const EXTENDER_CONFIG: &str = "profiles:\n  bench: {quorum: zone, zoneSpread: required, nodeSpread: required}\n";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if let Some(done) = latency::role(&std::env::args().collect::<Vec<_>>()) {
        return done;
    }
    if !is_bench_run() {
        println!("scheduling: skipped (a benchmark: run it with `cargo bench --bench scheduling`)");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

/// `stowage serve --components <components>` against the bench's control plane, quiet.
fn stowage_args(cp: &ControlPlane, components: &str) -> StowageArgs {
    StowageArgs::new(Path::new(env!("CARGO_BIN_EXE_stowage")), components)
        .env("RUST_LOG", "warn")
        .kubeconfig(cp.kubeconfig_path())
}

/// Per extender verb that was called: (verb, mean server-side milliseconds, calls), from the
/// `stowage_extender_request_duration_seconds` histogram on the admin port.
fn verb_durations(metrics: &str) -> Vec<(String, f64, u64)> {
    ["filter", "prioritize", "bind", "preempt"]
        .into_iter()
        .filter_map(|verb| {
            let label = format!("verb=\"{verb}\"");
            let count = metric_sum(metrics, "stowage_extender_request_duration_seconds_count", &[&label]);
            let sum = metric_sum(metrics, "stowage_extender_request_duration_seconds_sum", &[&label]);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            (count > 0.0).then(|| (verb.to_owned(), sum / count * 1e3, count as u64))
        })
        .collect()
}

/// One batch bound through kube-scheduler with a stowage extender process.
struct ExtenderRun {
    throughput: Throughput,
    /// See [`zone_sharing`].
    zones: (usize, usize),
    verbs: Vec<(String, f64, u64)>,
    reservations: Vec<(String, u64)>,
    /// `stowage --version` of the binary.
    version: String,
}

/// Starts `binary` as the extender (filter, prioritize and bind; nodeCacheCapable) and binds the
/// pending batch of `namespace` through a kube-scheduler named `scheduler`.
#[allow(clippy::too_many_arguments)]
async fn extender_phase(
    cp: &ControlPlane,
    binary: &Path,
    config: &Path,
    namespace: &str,
    scheduler: &str,
    pods: usize,
    qps: u32,
    dir: &Path,
) -> anyhow::Result<ExtenderRun> {
    let version = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    // Two builds of one release print the same version: the comparison can be named.
    let version = match std::env::var("STOWAGE_BENCH_COMPARE_LABEL") {
        Ok(label) if scheduler == "bench-compare" => format!("{version}, {label}"),
        _ => version,
    };
    let args = StowageArgs::new(binary, "extender").env("RUST_LOG", "warn").kubeconfig(cp.kubeconfig_path());
    let mut extender =
        StowageProcess::start(&args.config(config), &dir.join(format!("{scheduler}-extender.log"))).await?;
    let scheduler_config = SchedulerConfig::new(scheduler).client_rate(qps, qps * 2).extender(
        Extender::new(&extender.extender_url())
            .bind_verb("bind")
            .node_cache_capable(true)
            .http_timeout(Duration::from_secs(5)),
    );
    let throughput = schedule(cp, &scheduler_config, namespace, pods, extender.pid()).await?;
    eprintln!("{scheduler} ({version}): {throughput:?}, {:.1} pods/s", throughput.pods_per_second());
    let zones = zone_sharing(&cp.client(), namespace).await?;
    let metrics = extender.metrics().await.unwrap_or_default();
    extender.kill();
    Ok(ExtenderRun {
        throughput,
        zones,
        verbs: verb_durations(&metrics),
        reservations: reservation_events(&metrics),
        version,
    })
}

/// `(event, count)` of the extender's filter reservations, from
/// `stowage_ledger_reservations_total` on the admin port.
fn reservation_events(metrics: &str) -> Vec<(String, u64)> {
    ["created", "replaced", "confirmed", "released", "expired"]
        .into_iter()
        .filter_map(|event| {
            let label = format!("event=\"{event}\"");
            let n = metric_sum(metrics, "stowage_ledger_reservations_total", &[&label]);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            (n > 0.0).then(|| (event.to_owned(), n as u64))
        })
        .collect()
}

/// `(groups, groups with two or more members in one zone)` of a bound batch: the quorum guard
/// the bench profile asks for, checked on the result (nodes `bench-<i>` are in zone `i % 4`).
async fn zone_sharing(client: &kube::Client, namespace: &str) -> anyhow::Result<(usize, usize)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut zones: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for p in api.list(&ListParams::default()).await?.items {
        let group = p.metadata.labels.as_ref().and_then(|l| l.get("app")).cloned().unwrap_or_default();
        let zone = p
            .spec
            .and_then(|s| s.node_name)
            .and_then(|n| n.strip_prefix("bench-").and_then(|i| i.parse::<usize>().ok()))
            .map(|i| i % 4);
        if let Some(zone) = zone {
            zones.entry(group).or_default().push(zone);
        }
    }
    let sharing = zones
        .values()
        .filter(|z| {
            let mut z = (*z).clone();
            z.sort_unstable();
            z.windows(2).any(|w| w[0] == w[1])
        })
        .count();
    Ok((zones.len(), sharing))
}

/// Deletes every pod of `namespace` and waits until they are gone.
async fn delete_batch(client: &kube::Client, namespace: &str) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default()).await?;
    poll_until(
        &format!("pods of {namespace} deleted"),
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async { Ok(api.list(&ListParams::default().limit(1)).await?.items.is_empty().then_some(())) },
    )
    .await
}

/// The database pods of one batch: groups of 3 owned by StatefulSets `db-<g>`.
fn batch<'a>(namespace: &'a str, scheduler: &str, pods: usize) -> impl Iterator<Item = Pod> + 'a {
    let scheduler = scheduler.to_owned();
    (0..pods).map(move |i| {
        statefulset_pod(namespace, &format!("db-{}", i / 3), u32::try_from(i % 3).unwrap_or(0))
            .scheduler_name(&scheduler)
            .annotate(PROFILE, "bench")
            .annotate(MEMBERS, "3")
            .cpu("500m")
            .memory("1Gi")
            .build()
    })
}

async fn create_all(client: &kube::Client, pods: impl Iterator<Item = Pod>) -> anyhow::Result<()> {
    futures::stream::iter(pods)
        .map(|p| async move { create(client, &p).await.map(drop) })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Throughput of one scheduler over one batch.
#[derive(Debug, Clone)]
struct Throughput {
    pods: usize,
    first_to_last: Duration,
    start_to_last: Duration,
    /// CPU seconds each process used from the first to the last binding.
    cpu: Vec<(&'static str, f64)>,
}

/// CPU ticks used so far by each named process tree (`None`: this bench process).
fn cpu_ticks(processes: &[(&'static str, Option<u32>)]) -> Vec<u64> {
    processes
        .iter()
        .map(|(_, pid)| pid.map_or_else(|| report::cpu_ticks(None).unwrap_or(0), report::tree_cpu_ticks))
        .collect()
}

impl Throughput {
    fn pods_per_second(&self) -> f64 {
        (self.pods.saturating_sub(1)) as f64 / self.first_to_last.as_secs_f64().max(f64::EPSILON)
    }

    fn pods_per_second_from_start(&self) -> f64 {
        self.pods as f64 / self.start_to_last.as_secs_f64().max(f64::EPSILON)
    }

    /// CPU milliseconds per bound pod used by `process` (0 when it did not run).
    fn cpu_ms_per_pod(&self, process: &str) -> f64 {
        let seconds: f64 = self.cpu.iter().filter(|(p, _)| *p == process).map(|(_, s)| s).sum();
        seconds * 1e3 / self.pods.saturating_sub(1).max(1) as f64
    }

    /// Cores kept busy on average by all processes from the first to the last binding.
    fn cores_busy(&self) -> f64 {
        self.cpu.iter().map(|(_, s)| s).sum::<f64>() / self.first_to_last.as_secs_f64().max(f64::EPSILON)
    }
}

/// The processes whose CPU the scheduling table reports, in its row order.
const CPU_ROWS: [&str; 5] = ["kube-scheduler", "extender", "kube-apiserver", "etcd", "bench process"];

/// Starts the scheduler and records when each pod of `namespace` is first seen bound, and the
/// CPU every process used in between (`extender`: the stowage process, when there is one; a
/// pass-through extender runs inside the bench process).
async fn schedule(
    cp: &ControlPlane,
    config: &SchedulerConfig,
    namespace: &str,
    pods: usize,
    extender: Option<u32>,
) -> anyhow::Result<Throughput> {
    let api: Api<Pod> = Api::namespaced(cp.client(), namespace);
    let mut events = Box::pin(watcher(api, watcher::Config::default()));
    // Let the watch list the pending pods first.
    while let Some(e) = events.try_next().await? {
        if matches!(e, watcher::Event::InitDone) {
            break;
        }
    }
    let started = Instant::now();
    let mut scheduler = cp.start_scheduler(config).await?;
    let mut processes: Vec<(&'static str, Option<u32>)> =
        cp.pids().into_iter().map(|(name, pid)| (name, Some(pid))).collect();
    processes.push(("kube-scheduler", Some(scheduler.pid())));
    processes.push(("bench process", None));
    if let Some(pid) = extender {
        processes.push(("extender", Some(pid)));
    }
    let mut at_first = Vec::new();
    let mut bound = HashSet::new();
    let mut first = None;
    let deadline = started + Duration::from_secs(900);
    while bound.len() < pods {
        let event = tokio::time::timeout_at(deadline.into(), events.try_next()).await.with_context(|| {
            format!("{} of {pods} pods bound after 900 s\n{}", bound.len(), scheduler.diagnostics())
        })??;
        let Some(event) = event else { anyhow::bail!("the pod watch ended") };
        if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event
            && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            && bound.insert(p.metadata.name.unwrap_or_default())
            && first.is_none()
        {
            first = Some(Instant::now());
            at_first = cpu_ticks(&processes);
        }
    }
    let last = Instant::now();
    let at_last = cpu_ticks(&processes);
    scheduler.stop();
    #[allow(clippy::cast_precision_loss)]
    let cpu = processes
        .iter()
        .zip(at_last.iter().zip(&at_first))
        .map(|((name, _), (b, a))| (*name, b.saturating_sub(*a) as f64 / report::TICKS_PER_SECOND))
        .collect();
    Ok(Throughput { pods, first_to_last: last - first.unwrap_or(started), start_to_last: last - started, cpu })
}

/// The builds whose webhook the latency phase measures: this one, and
/// `STOWAGE_BENCH_COMPARE_BIN` when set (named by `STOWAGE_BENCH_COMPARE_LABEL`).
fn latency_builds() -> Vec<Build> {
    let mut builds = vec![Build { label: "this build".to_owned(), binary: env!("CARGO_BIN_EXE_stowage").into() }];
    if let Some(binary) = std::env::var_os("STOWAGE_BENCH_COMPARE_BIN") {
        let label = std::env::var("STOWAGE_BENCH_COMPARE_LABEL").unwrap_or_else(|_| "comparison build".to_owned());
        builds.push(Build { label, binary: binary.into() });
    }
    builds
}

/// `STOWAGE_BENCH_LATENCY=1`: the pod-create latency phase alone, on a control plane of its own.
async fn latency_only() -> anyhow::Result<()> {
    let creates = env_num("STOWAGE_BENCH_CREATES", 500);
    let tmp = tempfile::tempdir()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cp = ControlPlane::start_without_controllers().await?;
    let latency =
        Latency::measure(&cp, tmp.path(), &root.join("examples/config.yaml"), &latency_builds(), true, creates).await?;
    report::write("scheduling-latency", &latency.json(), &latency.markdown())?;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    if std::env::var_os("STOWAGE_BENCH_NON_OPTED").is_some() {
        return non_opted().await;
    }
    if std::env::var_os("STOWAGE_BENCH_LATENCY").is_some() {
        return latency_only().await;
    }
    let nodes = env_num("STOWAGE_BENCH_NODES", 1_000);
    let pods = env_num("STOWAGE_BENCH_PODS", 2_000);
    let qps = env_num("STOWAGE_BENCH_QPS", 5_000);
    let creates = env_num("STOWAGE_BENCH_CREATES", 500);
    let qps32 = u32::try_from(qps).unwrap_or(u32::MAX);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let started = Instant::now();
    // No kube-controller-manager and no kwok: the batches' pods name StatefulSets that do not
    // exist (the garbage collector would delete them) and 1,000 simulated kubelets' Lease renewals
    // would load the apiserver differently in each phase.
    let cp = ControlPlane::start_without_controllers().await?;
    let client = cp.client();
    eprintln!("control plane up in {:.1}s", started.elapsed().as_secs_f64());
    create_nodes(
        &client,
        (0..nodes).map(|i| {
            fake_node(&format!("bench-{i:04}")).zone(&format!("zone-{}", i % 4)).cpu("16").memory("64Gi").build()
        }),
    )
    .await?;
    let plain_ns = namespace_with_labels(&client, "sched-plain", &[]).await?;
    let stowage_ns = namespace_with_labels(&client, "sched-stowage", &[]).await?;
    let t = Instant::now();
    let passthrough_ns = namespace_with_labels(&client, "sched-passthrough", &[]).await?;
    create_all(&client, batch(&plain_ns, "bench-plain", pods)).await?;
    create_all(&client, batch(&passthrough_ns, "bench-passthrough", pods)).await?;
    create_all(&client, batch(&stowage_ns, "bench-stowage", pods)).await?;
    let compare = match std::env::var_os("STOWAGE_BENCH_COMPARE_BIN") {
        Some(binary) => {
            let ns = namespace_with_labels(&client, "sched-compare", &[]).await?;
            create_all(&client, batch(&ns, "bench-compare", pods)).await?;
            Some((std::path::PathBuf::from(binary), ns))
        }
        None => None,
    };
    eprintln!("{nodes} nodes and 3 x {pods} pending pods created ({:.1}s for the pods)", t.elapsed().as_secs_f64());

    // --- without the extender ---
    let plain_config = SchedulerConfig::new("bench-plain").client_rate(qps32, qps32 * 2);
    let plain = schedule(&cp, &plain_config, &plain_ns, pods, None).await?;
    eprintln!("without extender: {plain:?}, {:.1} pods/s", plain.pods_per_second());
    let plain_zones = zone_sharing(&client, &plain_ns).await?;
    delete_batch(&client, &plain_ns).await?;

    // --- with a pass-through extender ---
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let passthrough_port = listener.local_addr()?.port();
    let (stop_passthrough, stopped) = tokio::sync::oneshot::channel::<()>();
    let passthrough_server = tokio::spawn(stowage_edge::serve_plain(
        listener,
        empty::passthrough_extender_router(),
        stowage_edge::ServeOptions::default(),
        async move {
            stopped.await.ok();
        },
    ));
    let passthrough_config = SchedulerConfig::new("bench-passthrough").client_rate(qps32, qps32 * 2).extender(
        Extender::new(&format!("http://127.0.0.1:{passthrough_port}/scheduler"))
            .node_cache_capable(true)
            .http_timeout(Duration::from_secs(5)),
    );
    let passthrough = schedule(&cp, &passthrough_config, &passthrough_ns, pods, None).await?;
    eprintln!("with a pass-through extender: {passthrough:?}, {:.1} pods/s", passthrough.pods_per_second());
    let passthrough_zones = zone_sharing(&client, &passthrough_ns).await?;
    stop_passthrough.send(()).ok();
    passthrough_server.await??;
    delete_batch(&client, &passthrough_ns).await?;

    // --- with the extender ---
    let config = dir.join("extender-config.yaml");
    std::fs::write(&config, EXTENDER_CONFIG)?;
    let this_build = Path::new(env!("CARGO_BIN_EXE_stowage"));
    let stowage = extender_phase(&cp, this_build, &config, &stowage_ns, "bench-stowage", pods, qps32, dir).await?;
    delete_batch(&client, &stowage_ns).await?;
    let compared = match &compare {
        Some((binary, ns)) => {
            let run = extender_phase(&cp, binary, &config, ns, "bench-compare", pods, qps32, dir).await?;
            delete_batch(&client, ns).await?;
            Some(run)
        }
        None => None,
    };
    let ExtenderRun { throughput: with, zones: stowage_zones, verbs, reservations, version: _ } = stowage;

    // --- pod-create latency with and without the webhook ---
    let latency =
        Latency::measure(&cp, dir, &root.join("examples/config.yaml"), &latency_builds(), false, creates).await?;

    // --- report ---
    let ratio = with.pods_per_second() / plain.pods_per_second().max(f64::EPSILON);
    let floor = passthrough.pods_per_second() / plain.pods_per_second().max(f64::EPSILON);
    let over_floor = with.pods_per_second() / passthrough.pods_per_second().max(f64::EPSILON);
    let mut sched = Table::new(&[
        "scheduler",
        "pods",
        "pods/s (first→last bind)",
        "pods/s (from scheduler start)",
        "time to bind all s",
        "groups with 2+ members in one zone",
    ]);
    for (name, t, zones) in [
        ("kube-scheduler without extender (baseline)", &plain, plain_zones),
        ("kube-scheduler + pass-through extender (protocol floor)", &passthrough, passthrough_zones),
        ("kube-scheduler + stowage extender (filter decides and reserves)", &with, stowage_zones),
    ] {
        sched.row(vec![
            name.to_owned(),
            t.pods.to_string(),
            format!("{:.1}", t.pods_per_second()),
            format!("{:.1}", t.pods_per_second_from_start()),
            format!("{:.1}", t.start_to_last.as_secs_f64()),
            format!("{} of {}", zones.1, zones.0),
        ]);
    }
    if let Some(c) = &compared {
        let t = &c.throughput;
        sched.row(vec![
            format!("kube-scheduler + comparison build (`STOWAGE_BENCH_COMPARE_BIN`, {})", c.version),
            t.pods.to_string(),
            format!("{:.1}", t.pods_per_second()),
            format!("{:.1}", t.pods_per_second_from_start()),
            format!("{:.1}", t.start_to_last.as_secs_f64()),
            format!("{} of {}", c.zones.1, c.zones.0),
        ]);
    }
    let mut cpu = Table::new(&[
        "CPU ms per bound pod",
        "without extender",
        "pass-through extender",
        "stowage extender",
        "stowage − pass-through",
    ]);
    for process in CPU_ROWS {
        let [a, p, s] = [&plain, &passthrough, &with].map(|t| t.cpu_ms_per_pod(process));
        cpu.row(vec![
            process.to_owned(),
            format!("{a:.3}"),
            format!("{p:.3}"),
            format!("{s:.3}"),
            format!("{:+.3}", s - p),
        ]);
    }
    let total = |t: &Throughput| CPU_ROWS.iter().map(|p| t.cpu_ms_per_pod(p)).sum::<f64>();
    cpu.row(vec![
        "all".to_owned(),
        format!("{:.3}", total(&plain)),
        format!("{:.3}", total(&passthrough)),
        format!("{:.3}", total(&with)),
        format!("{:+.3}", total(&with) - total(&passthrough)),
    ]);
    cpu.row(vec![
        "cores busy (of 2)".to_owned(),
        format!("{:.2}", plain.cores_busy()),
        format!("{:.2}", passthrough.cores_busy()),
        format!("{:.2}", with.cores_busy()),
        String::new(),
    ]);
    let mut server = Table::new(&["extender verb", "calls", "mean server-side ms"]);
    for (verb, mean, count) in &verbs {
        server.row(vec![verb.clone(), count.to_string(), format!("{mean:.3}")]);
    }
    let compared_line = compared.as_ref().map_or_else(String::new, |c| {
        let verbs = c.verbs.iter().map(|(v, m, n)| format!("{v} {n} calls, mean {m:.3} ms")).collect::<Vec<_>>();
        format!(
            "Comparison build ({}): all processes {:.3} CPU ms per bound pod, cores busy {:.2}; extender verbs: {}.\n\n",
            c.version,
            CPU_ROWS.iter().map(|p| c.throughput.cpu_ms_per_pod(p)).sum::<f64>(),
            c.throughput.cores_busy(),
            verbs.join("; ")
        )
    });
    let reservation_line = reservations.iter().map(|(event, n)| format!("{event} {n}")).collect::<Vec<_>>().join(", ");
    let markdown = format!(
        "### Scheduling throughput through a real kube-scheduler ({nodes} nodes in 4 zones, {pods} database pods per batch)\n\n{}\n\
         Ratio with / without the extender: **{ratio:.2}** (target ≥ 0.75); pass-through extender / without: {floor:.2}; \
         stowage / pass-through: {over_floor:.2}. All schedulers: client QPS {qps}, burst {}, \
         percentageOfNodesToScore 100, no leader election; the extender is nodeCacheCapable with filter, prioritize and \
         bind, weight 1, httpTimeout 5s.\n\n\
         CPU used by each process from the first to the last binding, per bound pod (user + system, from /proc; \
         the pass-through extender runs inside the bench process, which also watches the pods):\n\n{}\n\
         The extender's own request-duration histogram during the run:\n\n{}\n\
         Filter reservations during the run (`stowage_ledger_reservations_total`): {}.\n\n{}{}",
        sched.render(),
        qps * 2,
        cpu.render(),
        server.render(),
        if reservation_line.is_empty() { "none".to_owned() } else { reservation_line.clone() },
        compared_line,
        latency.markdown(),
    );
    let cpu_json = |t: &Throughput| t.cpu.iter().map(|(p, s)| json!({"process": p, "seconds": s})).collect::<Vec<_>>();
    let raw = json!({
        "nodes": nodes, "pods": pods, "qps": qps, "burst": qps * 2,
        "throughput": {
            "without_extender": {"pods_per_second": plain.pods_per_second(), "from_start": plain.pods_per_second_from_start(),
                                 "seconds": plain.start_to_last.as_secs_f64()},
            "with_extender": {"pods_per_second": with.pods_per_second(), "from_start": with.pods_per_second_from_start(),
                              "seconds": with.start_to_last.as_secs_f64()},
            "with_passthrough_extender": {"pods_per_second": passthrough.pods_per_second(),
                              "from_start": passthrough.pods_per_second_from_start(),
                              "seconds": passthrough.start_to_last.as_secs_f64()},
            "ratio": ratio,
            "ratio_passthrough": floor,
            "ratio_stowage_over_passthrough": over_floor,
            "cpu_seconds": {
                "without_extender": cpu_json(&plain),
                "with_passthrough_extender": cpu_json(&passthrough),
                "with_extender": cpu_json(&with),
            },
            "groups_sharing_a_zone": {"without_extender": plain_zones.1, "with_passthrough_extender": passthrough_zones.1,
                                      "with_extender": stowage_zones.1, "groups": stowage_zones.0},
            "comparison_build": compared.as_ref().map(|c| json!({
                "version": c.version, "pods_per_second": c.throughput.pods_per_second(),
                "from_start": c.throughput.pods_per_second_from_start(), "groups_sharing_a_zone": c.zones.1,
                "cpu_seconds": cpu_json(&c.throughput),
            })),
            "reservations": reservations.iter().map(|(e, n)| json!({"event": e, "count": n})).collect::<Vec<_>>(),
            "extender_mean_ms": verbs.iter().map(|(v, m, c)| json!({"verb": v, "mean_ms": m, "calls": c})).collect::<Vec<_>>(),
        },
        "create_latency": latency.json(),
    });
    report::write("scheduling", &raw, &markdown)?;
    Ok(())
}

/// Plain pods of one batch: no stowage annotation, no managed resource.
fn plain_batch<'a>(namespace: &'a str, scheduler: &str, pods: usize) -> impl Iterator<Item = Pod> + 'a {
    let scheduler = scheduler.to_owned();
    (0..pods)
        .map(move |i| pod(namespace, &format!("app-{i}")).scheduler_name(&scheduler).cpu("500m").memory("1Gi").build())
}

/// Phase 3: non-opted pods through kube-scheduler with the extender registered with
/// `managedResources` versus without any extender.
async fn non_opted() -> anyhow::Result<()> {
    let nodes = env_num("STOWAGE_BENCH_NODES", 1_000);
    let pods = env_num("STOWAGE_BENCH_PODS", 2_000);
    let qps = env_num("STOWAGE_BENCH_QPS", 5_000);
    let qps32 = u32::try_from(qps).unwrap_or(u32::MAX);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let cp = ControlPlane::start_without_controllers().await?;
    let client = cp.client();
    create_nodes(
        &client,
        (0..nodes).map(|i| {
            fake_node(&format!("bench-{i:04}")).zone(&format!("zone-{}", i % 4)).cpu("16").memory("64Gi").build()
        }),
    )
    .await?;
    // Alternating, so drift over the run (load from elsewhere on the machine, the apiserver's and
    // etcd's growing history) falls on both sides: without, with, without, ..., without.
    let rounds = env_num("STOWAGE_BENCH_ROUNDS", 2).max(1);
    let names: Vec<String> = (0..=rounds)
        .flat_map(|r| [format!("non-opted-plain-{r}"), format!("non-opted-managed-{r}")])
        .take(2 * rounds + 1)
        .collect();
    let mut namespaces = Vec::new();
    for name in &names {
        let ns = namespace_with_labels(&client, name, &[]).await?;
        create_all(&client, plain_batch(&ns, name, pods)).await?;
        namespaces.push(ns);
    }
    let config = dir.join("extender-config.yaml");
    std::fs::write(&config, EXTENDER_CONFIG)?;
    let mut stowage =
        StowageProcess::start(&stowage_args(&cp, "extender").config(&config), &dir.join("stowage-non-opted.log"))
            .await?;
    let mut runs = Vec::new();
    for (name, ns) in names.iter().zip(&namespaces) {
        let mut sched = SchedulerConfig::new(name).client_rate(qps32, qps32 * 2).percentage_of_nodes_to_score(100);
        let extender = name.contains("managed");
        if extender {
            sched = sched.extender(
                Extender::new(&stowage.extender_url())
                    .preempt_verb("preempt")
                    .bind_verb("bind")
                    .weight(5)
                    .node_cache_capable(true)
                    .http_timeout(Duration::from_secs(5))
                    .ignorable(true)
                    .managed_resource(stowage_policy::config::MANAGED_RESOURCE, true),
            );
        }
        let t = schedule(&cp, &sched, ns, pods, extender.then(|| stowage.pid()).flatten()).await?;
        eprintln!("{name}: {:.1} pods/s", t.pods_per_second());
        delete_batch(&client, ns).await?;
        runs.push(t);
    }
    let calls = metric_sum(&stowage.metrics().await?, "stowage_extender_request_duration_seconds_count", &[]);
    stowage.kill();
    anyhow::ensure!(calls == 0.0, "the extender was called {calls} times for pods that do not opt in");
    let calls = calls + 0.0; // -0 prints as 0
    let side =
        |pick: usize| -> Vec<f64> { runs.iter().skip(pick).step_by(2).map(Throughput::pods_per_second).collect() };
    #[allow(clippy::cast_precision_loss)]
    let mean = |pick: usize| side(pick).iter().sum::<f64>() / side(pick).len() as f64;
    let range = |pick: usize| {
        let rates = side(pick);
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        format!("{lo:.1}–{hi:.1}")
    };
    let ratio = mean(1) / mean(0).max(f64::EPSILON);
    let mut table = Table::new(&["kube-scheduler", "pods", "pods/s (first→last bind)", "time to bind all s"]);
    for (name, t) in names.iter().zip(&runs) {
        let label =
            if name.contains("managed") { "with the stowage extender (managedResources)" } else { "without extender" };
        table.row(vec![
            label.to_owned(),
            t.pods.to_string(),
            format!("{:.1}", t.pods_per_second()),
            format!("{:.1}", t.start_to_last.as_secs_f64()),
        ]);
    }
    let markdown = format!(
        "### Pods that don't opt in ({nodes} nodes, {pods} plain pods per batch)\n\n{}\n\
         Ratio of the mean pods/s with the extender registered (managedResources) to the mean without: **{ratio:.3}** \
         (target ≥ 0.98); pods/s without {} (mean {:.1}), with {} (mean {:.1}); extender calls: {calls}. {}\n",
        table.render(),
        range(0),
        mean(0),
        range(1),
        mean(1),
        report::machine_line()
    );
    let raw = json!({
        "nodes": nodes, "pods": pods, "qps": qps, "extender_calls": calls, "ratio": ratio,
        "pods_per_second": runs.iter().map(Throughput::pods_per_second).collect::<Vec<_>>(),
    });
    report::write("scheduling-non-opted", &raw, &markdown)?;
    Ok(())
}
