//! A bounded flood on loopback: slow TLS clients (headers and one body byte, then a stall; see
//! `stowage_loadgen::slow`) hold connections to a real `stowage serve --components webhook`
//! while a stream of legitimate `/mutate` reviews runs. Per flood size it reports how many
//! legitimate reviews were answered 200, 503 or something else, or timed out (no answer within
//! the 3 s `timeoutSeconds` of the shipped MutatingWebhookConfiguration), their latency, what
//! the slow clients managed, and the stowage process's RSS.
//!
//! The legitimate stream: 4 keep-alive connections, each sending a review, waiting for its
//! answer (at most 3 s; a timed-out connection is replaced), then pausing 100 ms. The slow
//! clients run on a tokio runtime of their own in the same process; client and server share
//! the machine's cores (the table gives the server's CPU).
//!
//! Run: `cargo bench --bench flood` (release build), or with the debug build
//! `cargo test --bench flood -- --bench`. Knobs: `STOWAGE_BENCH_FLOOD_CLIENTS` (slow clients per
//! row, default `0,600,1200`; the server's `--max-connections` is 1024) and
//! `STOWAGE_BENCH_DURATION` (seconds of legitimate reviews per row, default 20).
//! Results: `target/bench-results/flood.{json,md}`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it checks one thing and no timing:
//! once 600 slow clients have each sent their headers and byte, and while they keep doing so, a
//! legitimate review is still answered 200.
#![allow(missing_docs)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use stowage_loadgen::{
    client::{self, Target},
    fixtures::{self, UidTemplate},
    report::{self, Table, is_bench_run, ms},
    slow::{SlowFlood, SlowStats},
};
use stowage_testkit::free_ports;
use tokio::{sync::Mutex, time::Instant};

use common::{Server, addr, build_profile, mib};

/// `timeoutSeconds` of the shipped MutatingWebhookConfiguration.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(3);
const LEGIT_CONNECTIONS: usize = 4;
const PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Default, serde::Serialize)]
struct Tally {
    ok: u64,
    unavailable: u64,
    other_status: u64,
    timed_out: u64,
    transport_error: u64,
    #[serde(skip)]
    latency_us: Vec<u64>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.ok + self.unavailable + self.other_status + self.timed_out + self.transport_error
    }
}

enum Outcome {
    Status(StatusCode),
    TimedOut,
    Transport,
}

/// One review on `sender` (opened first when `None`), within `timeout`.
async fn review(
    target: &Target,
    sender: &mut Option<client::Sender>,
    body: Bytes,
    timeout: Duration,
) -> (Outcome, Duration) {
    let sent = Instant::now();
    let attempt = async {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => sender.insert(client::connect(target).await?),
        };
        let (status, _) = client::post(s, target, body).await?;
        anyhow::Ok(status)
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(_)) => Outcome::Transport,
        Err(_) => Outcome::TimedOut,
    };
    if !matches!(outcome, Outcome::Status(_)) {
        *sender = None;
    }
    (outcome, sent.elapsed())
}

async fn legitimate(
    target: Target,
    template: Arc<UidTemplate>,
    seq: Arc<AtomicU64>,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut sender = None;
    while Instant::now() < until {
        let body = template.body(seq.fetch_add(1, Ordering::Relaxed));
        let (outcome, took) = review(&target, &mut sender, body, REVIEW_TIMEOUT).await;
        let mut t = tally.lock().await;
        match outcome {
            Outcome::Status(StatusCode::OK) => {
                t.ok += 1;
                t.latency_us.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE) => t.unavailable += 1,
            Outcome::Status(_) => t.other_status += 1,
            Outcome::TimedOut => t.timed_out += 1,
            Outcome::Transport => t.transport_error += 1,
        }
        drop(t);
        tokio::time::sleep(PAUSE).await;
    }
}

struct Row {
    slow_clients: usize,
    ramp: Option<Duration>,
    tally: Tally,
    slow: SlowStats,
    holding_max: u64,
    holding_mean: u64,
    server_cpu: f64,
    rss_max_kib: u64,
    hwm_kib: u64,
}

async fn phase(
    flood_rt: &tokio::runtime::Runtime,
    server: &Server,
    target: &Target,
    template: &Arc<UidTemplate>,
    slow_clients: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    // The slow clients run on a runtime of their own (one thread), so their TLS handshakes
    // cannot starve the legitimate stream's tasks in this process; the cores are still shared.
    let flood = {
        let _in = flood_rt.enter();
        SlowFlood::start(target, slow_clients)
    };
    let started = Instant::now();
    let held = flood.wait_all_sent(Duration::from_secs(60)).await;
    let ramp = held.then(|| started.elapsed());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + duration;
    let seq = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..LEGIT_CONNECTIONS)
        .map(|_| {
            tokio::spawn(legitimate(target.clone(), Arc::clone(template), Arc::clone(&seq), until, Arc::clone(&tally)))
        })
        .collect();
    let (mut rss_max, mut holding_max, mut holding_sum, mut samples) = (0, 0, 0, 0_u64);
    let (cpu_from, measured_from) = (report::tree_cpu_ticks(server.process.pid()), Instant::now());
    while Instant::now() < until {
        rss_max = rss_max.max(server.rss_kib().0);
        let holding = flood.stats().holding;
        holding_max = holding_max.max(holding);
        holding_sum += holding;
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for w in workers {
        w.await.context("legitimate reviews")?;
    }
    let server_cpu = report::tree_cpu_ticks(server.process.pid()).saturating_sub(cpu_from) as f64
        / report::TICKS_PER_SECOND
        / measured_from.elapsed().as_secs_f64()
        * 100.0;
    let slow = flood.stop().await;
    let tally = Arc::try_unwrap(tally).map_err(|_| anyhow::anyhow!("tally still shared"))?.into_inner();
    eprintln!(
        "flood {slow_clients}: {} reviews, {} ok, {} 503, {} other, {} timed out, {} transport errors; slow {slow:?}",
        tally.total(),
        tally.ok,
        tally.unavailable,
        tally.other_status,
        tally.timed_out,
        tally.transport_error
    );
    let holding_mean = holding_sum / samples.max(1);
    Ok(Row {
        slow_clients,
        ramp,
        tally,
        slow,
        holding_max,
        holding_mean,
        server_cpu,
        rss_max_kib: rss_max,
        hwm_kib: server.rss_kib().1,
    })
}

fn percentile(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    ms(sorted[i.min(sorted.len() - 1)])
}

fn write(rows: &mut [Row], duration: Duration) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "slow clients",
        "all sent after",
        "slow conns open (mean / max)",
        "slow conns released by server",
        "legit reviews",
        "200",
        "503",
        "other",
        "timed out (3 s)",
        "transport errors",
        "p50 ms (200s)",
        "p99 ms (200s)",
        "server CPU %",
        "stowage RSS max MiB",
    ]);
    let mut raw = Vec::new();
    for r in rows.iter_mut() {
        r.tally.latency_us.sort_unstable();
        let t = &r.tally;
        table.row(vec![
            r.slow_clients.to_string(),
            match (r.slow_clients, r.ramp) {
                (0, _) => "-".to_owned(),
                (_, Some(d)) => format!("{:.1} s", d.as_secs_f64()),
                (_, None) => "never (60 s)".to_owned(),
            },
            if r.slow_clients == 0 { "-".to_owned() } else { format!("{} / {}", r.holding_mean, r.holding_max) },
            if r.slow_clients == 0 { "-".to_owned() } else { r.slow.released.to_string() },
            t.total().to_string(),
            t.ok.to_string(),
            t.unavailable.to_string(),
            t.other_status.to_string(),
            t.timed_out.to_string(),
            t.transport_error.to_string(),
            percentile(&t.latency_us, 0.5),
            percentile(&t.latency_us, 0.99),
            format!("{:.0}", r.server_cpu),
            mib(r.rss_max_kib),
        ]);
        raw.push(json!({"slow_clients": r.slow_clients, "ramp_seconds": r.ramp.map(|d| d.as_secs_f64()),
                        "legitimate": t, "slow": r.slow, "holding_max": r.holding_max, "holding_mean": r.holding_mean, "server_cpu_percent": r.server_cpu,
                        "rss_max_kib": r.rss_max_kib, "hwm_kib": r.hwm_kib}));
    }
    let markdown = format!(
        "{}\n\nstowage build: {}; {} legitimate keep-alive connections (review, answer or 3 s timeout, 100 ms \
         pause) for {} s per row; stowage VmHWM at the end {} MiB.\n\n{}\n",
        report::machine_line(),
        build_profile(),
        LEGIT_CONNECTIONS,
        duration.as_secs(),
        rows.last().map_or_else(|| "-".to_owned(), |r| mib(r.hwm_kib)),
        table.render()
    );
    report::write("flood", &Value::Array(raw), &markdown)?;
    Ok(())
}

/// The check `cargo test` runs: 600 slow clients hold connections; a review still gets 200.
async fn check(target: &Target, template: &UidTemplate) -> anyhow::Result<()> {
    let flood = SlowFlood::start(target, 600);
    anyhow::ensure!(
        flood.wait_all_sent(Duration::from_secs(120)).await,
        "600 slow clients never all connected: {:?}",
        flood.stats()
    );
    let mut answered = Vec::new();
    let mut sender = None;
    for seq in 0..3 {
        let (outcome, _) = review(target, &mut sender, template.body(seq), Duration::from_secs(30)).await;
        answered.push(match outcome {
            Outcome::Status(s) => s.to_string(),
            Outcome::TimedOut => "timed out".to_owned(),
            Outcome::Transport => "transport error".to_owned(),
        });
    }
    let slow = flood.stop().await;
    anyhow::ensure!(
        answered.iter().any(|a| a.starts_with("200")),
        "no legitimate review answered while 600 slow clients held connections: {answered:?}; slow clients {slow:?}"
    );
    println!("flood check: with 600 slow clients stalling connection after connection, reviews got {answered:?}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run(is_bench_run()))
}

async fn run(bench: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let (tls, ca) = common::tls_dir(dir)?;
    let ports = free_ports(2)?;
    let server = common::webhook(dir, &tls, [ports[0], ports[1]])?;
    server.wait_ready(addr(ports[1])).await?;
    let target = Target::tls(addr(ports[0]), "/mutate", &ca)?;
    let template = Arc::new(UidTemplate::new(&fixtures::small_pod()));
    if !bench {
        let checked = check(&target, &template).await;
        server.process.stop();
        return checked;
    }
    let duration =
        Duration::from_secs(std::env::var("STOWAGE_BENCH_DURATION").ok().and_then(|v| v.parse().ok()).unwrap_or(20));
    let sizes: Vec<usize> = std::env::var("STOWAGE_BENCH_FLOOD_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![0, 600, 1200]);
    let flood_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut rows = Vec::new();
    for slow_clients in sizes {
        rows.push(phase(&flood_rt, &server, &target, &template, slow_clients, duration).await?);
    }
    flood_rt.shutdown_background();
    server.process.stop();
    write(&mut rows, duration)
}
