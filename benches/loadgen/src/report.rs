//! Result files, Markdown tables, process CPU and memory, and the machine description.
//!
//! Every bench writes `<name>.json` (raw numbers) and `<name>.md` (a table ready for
//! BENCHMARKS.md) into [`results_dir`], and prints the table.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Overrides the results directory.
pub const RESULTS_ENV: &str = "STOWAGE_BENCH_RESULTS";

/// Linux reports process CPU time in clock ticks of 1/100 s (`USER_HZ`).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// True when the binary runs as a benchmark (`cargo bench` passes `--bench`); `cargo test`
/// runs bench targets without it, and the slow harness-less benches then only say so.
#[must_use]
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `$STOWAGE_BENCH_RESULTS`, else `bench-results` in the cargo target directory that holds the
/// running bench binary (`<target>/<profile>/deps/<bench>`).
#[must_use]
pub fn results_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(RESULTS_ENV) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench-results")
}

/// Writes `<name>.json` and `<name>.md` into [`results_dir`] and prints the Markdown.
///
/// # Errors
/// When the files cannot be written.
pub fn write(name: &str, raw: &Value, markdown: &str) -> std::io::Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let raw = json!({"bench": name, "machine": machine(), "unix_time": unix_time(), "results": raw});
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(&raw).unwrap_or_default())?;
    std::fs::write(dir.join(format!("{name}.md")), markdown)?;
    println!("{markdown}");
    println!("(written to {})", dir.join(format!("{name}.{{json,md}}")).display());
    Ok(())
}

fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// CPU model, cores, memory and kernel of this machine.
#[must_use]
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = field_kib(&meminfo, "MemTotal:").unwrap_or(0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3)
            .collect::<Vec<_>>().join(" "),
    })
}

/// One line describing the machine, for the tables.
#[must_use]
pub fn machine_line() -> String {
    let m = machine();
    format!(
        "Machine: {}, {} cores, {} GiB, kernel {}; load average at the start {}.",
        m["cpu"].as_str().unwrap_or_default(),
        m["cores"],
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or_default(),
        m["loadavg"].as_str().unwrap_or_default()
    )
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` and `VmHWM` (peak) of this process, in KiB.
#[must_use]
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (field_kib(&status, "VmRSS:").unwrap_or(0), field_kib(&status, "VmHWM:").unwrap_or(0))
}

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB (zeros once it has exited).
#[must_use]
pub fn process_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (field_kib(&status, "VmRSS:").unwrap_or(0), field_kib(&status, "VmHWM:").unwrap_or(0))
}

/// The first live descendant of `root` (or `root` itself) whose command name is `comm`: the
/// server process under a supervising shell.
#[must_use]
pub fn descendant_named(root: u32, comm: &str) -> Option<u32> {
    let mut procs: Vec<(u32, u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some((head, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else { continue };
        let name = head.get(open + 1..).unwrap_or_default().to_owned();
        let parent = rest.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        procs.push((pid, parent, name));
    }
    let mut tree = vec![root];
    while let Some(pid) = tree.pop() {
        for (p, parent, name) in &procs {
            if *p == pid && name == comm {
                return Some(pid);
            }
            if *parent == pid {
                tree.push(*p);
            }
        }
    }
    None
}

/// User + system CPU ticks used so far by process `pid` (`None`: this process).
#[must_use]
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start with the state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// User + system CPU ticks used so far by process `root` and every live descendant (a
/// supervised server runs under a shell).
#[must_use]
pub fn tree_cpu_ticks(root: u32) -> u64 {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        procs.push((pid, u32::try_from(num(1)).unwrap_or(0), num(11) + num(12)));
    }
    let mut tree = vec![root];
    let mut total = 0;
    while let Some(pid) = tree.pop() {
        for (p, parent, ticks) in &procs {
            if *p == pid {
                total += ticks;
            }
            if *parent == pid {
                tree.push(*p);
            }
        }
    }
    total
}

/// p50, p90, p99, p99.9 and max of a microsecond histogram, as JSON.
#[must_use]
pub fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean_us": (h.mean() * 10.0).round() / 10.0,
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

/// Microseconds as milliseconds with three decimals.
#[must_use]
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// A Markdown table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    #[must_use]
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(out, "|{}|", self.header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_ticks(None).is_some());
        let (rss, hwm) = rss_kib();
        assert!(rss > 0 && hwm >= rss);
    }

    #[test]
    fn renders_a_table() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.render(), "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
