//! Running an integration's real binary in tests: its own data folder and free ports, its log
//! lines read as they come, the built-in Port's URL and the webhook URL taken from them, and a
//! signal to stop it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long [`TestBinary::line_with`] waits for a line.
const LINE_WAIT: Duration = Duration::from_secs(30);

/// A running integration binary, killed when dropped.
///
/// Its tests in `examples/jira/tests/binary.rs` are the example.
#[derive(Debug)]
pub struct TestBinary {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// The `http://host:port` right after `marker` in `line`, if there is one.
#[must_use]
pub fn url_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

impl TestBinary {
    /// Starts `program` with only `PATH` from this environment, the webhook server and the
    /// built-in Port on free loopback ports, the built-in Port's data and the queue under
    /// `data_dir`, and then `vars`.
    ///
    /// # Errors
    /// The program could not be started.
    pub fn start(
        program: impl AsRef<Path>,
        data_dir: &Path,
        vars: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        Self::start_args(program, &[], data_dir, vars)
    }

    /// [`TestBinary::start`] with command-line arguments (e.g. `["local-port"]`).
    ///
    /// # Errors
    /// The program could not be started.
    pub fn start_args(
        program: impl AsRef<Path>,
        args: &[&str],
        data_dir: &Path,
        vars: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut child = Command::new(program.as_ref())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OCEAN__APPLICATION__PORT", "0")
            .env("OCEAN__LOCAL_PORT__PORT", "0")
            .env("OCEAN__LOCAL_PORT__DATA_DIR", data_dir.join("port"))
            .env("OCEAN__QUEUE__PATH", data_dir.join("queue"))
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, lines) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the process from `/proc/<pid>/status`, in KiB: `VmRSS` (resident now)
    /// or `VmHWM` (peak resident); `None` when it cannot be read (not Linux, or it has ended).
    #[must_use]
    pub fn memory_kb(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Every log line the binary has written so far.
    pub fn log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Waits (30 s at most) for a log line containing `needle` and returns it.
    ///
    /// # Panics
    /// No such line came in time (this is a test helper); the message lists the lines seen.
    pub fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {needle:?}; got {:#?}", self.seen),
            }
        }
    }

    /// Waits until the binary listens and returns its webhook base URL (`http://127.0.0.1:…`).
    ///
    /// # Panics
    /// See [`TestBinary::line_with`].
    pub fn ingress_url(&mut self) -> String {
        let line = self.line_with("listening on http://");
        url_after(&line, "listening on ").unwrap_or_default()
    }

    /// Waits for the line naming the built-in Port and returns its base URL.
    ///
    /// # Panics
    /// See [`TestBinary::line_with`].
    pub fn port_url(&mut self) -> String {
        let line = self.line_with("built-in local Port at ");
        url_after(&line, "built-in local Port at ").unwrap_or_default()
    }

    /// Sends a signal (`-STOP`, `-CONT`, …) with `kill`, without waiting for anything.
    ///
    /// # Errors
    /// `kill` failed.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status()?;
        if sent.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill {signal} {pid} failed")))
        }
    }

    /// Sends a signal (`-KILL`, `-TERM`) with `kill` and waits (30 s at most) for the process to end.
    ///
    /// # Errors
    /// `kill` failed, or the process did not end in time.
    pub async fn signal_and_wait(&mut self, signal: &str) -> std::io::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status()?;
        if !sent.success() {
            return Err(std::io::Error::other(format!("kill {signal} {pid} failed")));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{pid} did not stop on {signal}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
