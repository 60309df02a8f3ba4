//! Supervised child processes that cannot outlive the test process.
//!
//! Every component runs under a small `sh` supervisor whose standard input is a pipe held only by
//! the test process. The supervisor starts the component in the background and blocks reading that
//! pipe. A `kill` line (normal teardown) makes it SIGKILL the component at once; end-of-file, which
//! the kernel delivers when the test process exits or dies for any reason (panic, SIGKILL, timeout),
//! makes it SIGTERM the component and SIGKILL it if it is still there 2 s later. The supervisor exits with the
//! component's status, so an early crash is visible through [`Supervised::exit_status`].

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// `sh -c` script: `$@` is the component's command line, stdin the lifeline pipe.
const SUPERVISOR: &str = r#"
exec 3<&0 </dev/null
"$@" 3<&- &
child=$!
(
  if read -r cmd <&3 && [ "$cmd" = kill ]; then
    kill -KILL "$child" 2>/dev/null
    exit 0
  fi
  kill -TERM "$child" 2>/dev/null
  i=0
  while [ "$i" -lt 20 ] && kill -0 "$child" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$child" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$child"
rc=$?
kill "$watcher" 2>/dev/null
exit "$rc"
"#;

/// `sh -c` script removing `$@` once the lifeline pipe reports end-of-file, unless told `done`.
const JANITOR: &str = r#"
if read -r cmd && [ "$cmd" = done ]; then exit 0; fi
sleep 1
rm -rf -- "$@"
"#;

/// A process under a supervisor that kills it when the test process ends, however it ends
/// (see the module docs); stopped on drop. Used for the control plane's components, and public
/// so tests can run other binaries (e.g. `stowage serve`) with the same guarantee.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    log: PathBuf,
    child: Mutex<Child>,
    lifeline: Mutex<Option<ChildStdin>>,
}

impl Supervised {
    /// Starts `program args...` with stdout and stderr appended to `log`. The process inherits the
    /// environment; to add variables, run `env` with `NAME=value` arguments before the program.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let lifeline = child.stdin.take();
        Ok(Self {
            name: name.to_owned(),
            log: log.to_owned(),
            child: Mutex::new(child),
            lifeline: Mutex::new(lifeline),
        })
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The component's exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// A failure description with the component's state and log tail.
    pub fn describe_failure(&self, lines: usize) -> String {
        let state = match self.exit_status() {
            Some(status) => format!("exited with {status}"),
            None => "still running".to_owned(),
        };
        format!(
            "{} {state}; last {lines} lines of {}:\n{}",
            self.name,
            self.log.display(),
            indent(&self.log_tail(lines))
        )
    }

    /// Process id of the supervising shell; the component is its child (see
    /// `stowage_loadgen::report::tree_cpu_ticks` for the CPU time of the whole tree).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Kills the component and waits for it. Idempotent.
    pub fn stop(&self) {
        let lifeline = self.lifeline.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut lifeline) = lifeline else { return };
        let _ = lifeline.write_all(b"kill\n");
        drop(lifeline);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // The supervisor did not manage: kill its whole process group (supervisor and component).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes directories when the test process ends, even if it is killed.
#[derive(Debug)]
pub(crate) struct Janitor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl Janitor {
    /// Starts a janitor for `paths`.
    pub(crate) fn spawn(paths: &[&Path]) -> Result<Self> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("sh")
            .args(paths)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the clean-up process")?;
        let lifeline = child.stdin.take();
        Ok(Self { child, lifeline })
    }

    /// Tells the janitor that the paths were cleaned up normally.
    pub(crate) fn dismiss(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// Picks `n` distinct free TCP ports on 127.0.0.1 (bound, then released; callers retry on a lost race).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").context("binding a free port")).collect::<Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The last `lines` lines of a file (at most the last 256 KiB are read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else { return format!("<{} not readable>", path.display()) };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX {
        let _ = file.seek(SeekFrom::Start(len - MAX));
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Indents every line by two spaces.
pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervised_process_is_killed_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let sleeper = Supervised::spawn("sleeper", Path::new("sleep"), &["300".to_owned()], &log).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(sleeper.exit_status().is_none());
        let started = Instant::now();
        sleeper.stop();
        assert!(started.elapsed() < Duration::from_secs(5), "stop took {:?}", started.elapsed());
        assert!(sleeper.exit_status().is_some());
    }

    #[test]
    fn supervisor_reports_the_component_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("false.log");
        let args = ["-c".to_owned(), "echo boom; exit 3".to_owned()];
        let failing = Supervised::spawn("failing", Path::new("sh"), &args, &log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = failing.exit_status() {
                break status;
            }
            assert!(Instant::now() < deadline, "component did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(3));
        assert!(failing.describe_failure(5).contains("boom"));
    }

    #[test]
    fn end_of_file_on_the_lifeline_stops_the_component() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let sleeper = Supervised::spawn("sleeper", Path::new("sleep"), &["300".to_owned()], &log).unwrap();
        // Simulate the test process dying: close the pipe without saying `kill`.
        drop(sleeper.lifeline.lock().unwrap().take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while sleeper.exit_status().is_none() {
            assert!(Instant::now() < deadline, "component survived end-of-file on its lifeline");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(sleeper.exit_status().is_some_and(|s| !s.success()));
    }

    #[test]
    fn janitor_removes_paths_on_end_of_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        let removed = dir.path().join("removed");
        std::fs::create_dir(&kept).unwrap();
        std::fs::create_dir(&removed).unwrap();
        let mut dismissed = Janitor::spawn(&[&kept]).unwrap();
        dismissed.dismiss();
        assert!(kept.exists());
        let mut janitor = Janitor::spawn(&[&removed]).unwrap();
        drop(janitor.lifeline.take());
        janitor.child.wait().unwrap();
        assert!(!removed.exists());
    }

    #[test]
    fn tails_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, (1..=100).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
        assert_eq!(log_tail(&path, 2), "line 99\nline 100");
        assert!(log_tail(&dir.path().join("missing"), 2).contains("not readable"));
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
