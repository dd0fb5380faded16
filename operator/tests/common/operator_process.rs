//! The real operator binary (`src/bin/operator.rs`) as a child process against a test API
//! server (`super::api_server`): a kubeconfig pointing at it, the environment the Helm chart
//! would set, logs to a file, and a clean stop with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::api_server::ApiServer;

/// The operator binary cargo built for this package's integration tests.
pub const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_operator");

/// What to run the operator with.
pub struct OperatorConfig<'a> {
    /// Namespace holding the Lease (`POD_NAMESPACE`, also the kubeconfig's namespace).
    pub namespace: &'a str,
    /// The one namespace watched (`WATCH_NAMESPACE`); `None` watches all, the chart's default.
    pub watch_namespace: Option<&'a str>,
    pub lease: &'a str,
    /// This replica's identity (`POD_NAME`), the Lease's holder while it leads.
    pub identity: &'a str,
    /// `KAFKA_BOOTSTRAP_OVERRIDE`: where the operator reaches every cluster's brokers.
    pub bootstrap_override: Option<String>,
    /// Where the kubeconfig and the log go.
    pub dir: &'a Path,
}

/// A running operator process; killed (SIGKILL) if still running when dropped.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts the binary against `server`; `None` when the binary is absent.
    pub fn start(server: &ApiServer, cfg: &OperatorConfig<'_>) -> OperatorProcess {
        // Cargo builds the binary for the package's integration tests: a missing one is a
        // broken build, not a reason to skip.
        assert!(
            Path::new(OPERATOR_BIN).exists(),
            "operator binary {OPERATOR_BIN} missing"
        );
        let kubeconfig = cfg.dir.join("kubeconfig");
        server.kubeconfig(&kubeconfig, cfg.namespace);
        let log = cfg.dir.join("operator.log");
        // Appended to: an operator started again (a restarted pod) keeps the earlier log.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create operator log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(OPERATOR_BIN);
        cmd.env_clear();
        if let Some(ns) = cfg.watch_namespace {
            cmd.env("WATCH_NAMESPACE", ns);
        }
        if let Some(addr) = &cfg.bootstrap_override {
            cmd.env("KAFKA_BOOTSTRAP_OVERRIDE", addr);
        }
        let child = cmd
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", cfg.namespace)
            .env("POD_NAME", cfg.identity)
            .env("LEASE_NAME", cfg.lease)
            .env("LEADER_ELECTION", "true")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info,kube=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn operator");
        OperatorProcess { child, log }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let sent = super::signal(&self.child, rustix::process::Signal::TERM);
        assert!(sent, "SIGTERM to the operator ({})", self.child.id());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait operator") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the process (SIGKILL, as a node failure would) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
