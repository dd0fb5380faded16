//! The Jepsen-style workload of `e2e/workload` (Python, confluent-kafka) run against a cluster
//! of the test kubelet's broker processes: sequence-numbered acks=all idempotent producers and
//! consumers record a history while the operator works, and its checker says whether anything
//! acknowledged was lost, duplicated or reordered.
//!
//! The interpreter is `TRIBUTARY_PYTHON`, or the repository's `.venv` that the README's test
//! command (`scripts/test.sh`) creates. Without one a test skips with a message, unless
//! `TRIBUTARY_REQUIRE_WORKLOAD` is set (the test command sets it), when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python interpreter with the workload's packages, if there is one.
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("TRIBUTARY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("TRIBUTARY_REQUIRE_WORKLOAD").is_none(),
        "TRIBUTARY_REQUIRE_WORKLOAD is set but {} does not exist (python3 -m venv .venv && \
         .venv/bin/pip install -r e2e/python/requirements.txt)",
        path.display()
    );
    None
}

/// A running workload; killed if dropped before `finish`.
pub struct Workload {
    child: Child,
    out: PathBuf,
}

/// The checker's verdict (`report.json`).
pub struct Verdict {
    pub report: Value,
}

impl Verdict {
    pub fn count(&self, name: &str) -> i64 {
        self.report["counts"][name].as_i64().unwrap_or(-1)
    }

    pub fn total(&self, class: &str) -> i64 {
        self.report["totals"][class].as_i64().unwrap_or(-1)
    }

    /// Panics unless the history is valid with nothing lost or duplicated, and something was
    /// acknowledged and read.
    pub fn assert_clean(&self, what: &str) {
        let r = &self.report;
        assert_eq!(
            r["valid"], true,
            "{what}: workload anomalies: {}",
            r["totals"]
        );
        for class in [
            "lost",
            "duplicate",
            "inconsistent_offset",
            "nonmonotonic_send",
        ] {
            assert_eq!(
                self.total(class),
                0,
                "{what}: {class}: {}",
                r["anomalies"][class]
            );
        }
        assert!(
            self.count("acknowledged") > 0,
            "{what}: nothing acknowledged"
        );
        assert!(
            self.count("read") >= self.count("acknowledged"),
            "{what}: {}",
            r["counts"]
        );
    }

    /// `assert_clean`, and every send was acknowledged: none failed, none indeterminate (what a
    /// rolling restart promises an acks=all producer).
    pub fn assert_every_send_acknowledged(&self, what: &str) {
        self.assert_clean(what);
        for class in ["failed", "indeterminate"] {
            assert_eq!(
                self.count(class),
                0,
                "{what}: {class}: {}",
                self.report["counts"]
            );
        }
    }
}

/// The scenarios' usual run: 2 acks=all producers at `rate` messages/s each and 1 consumer on
/// `topic` with `partitions` partitions, created with replication factor 3 and
/// `min.insync.replicas` 2 when `create`, else already there.
pub fn args(topic: &str, partitions: u32, create: bool, rate: u32) -> Vec<String> {
    let mut out: Vec<String> = ["--topic", topic, "--partitions", &partitions.to_string()]
        .map(str::to_owned)
        .to_vec();
    if create {
        out.extend(
            [
                "--replication-factor",
                "3",
                "--topic-config",
                "min.insync.replicas=2",
            ]
            .map(str::to_owned),
        );
    } else {
        out.push("--no-create-topic".to_owned());
    }
    let rate = rate.to_string();
    let rest = [
        "--producers",
        "2",
        "--consumers",
        "1",
        "--rate",
        &rate,
        "--max-messages",
        "10000000",
    ];
    out.extend(rest.map(str::to_owned));
    out
}

impl Workload {
    /// Starts `python run.py` with `args` (after `--bootstrap` and `--out`), producing for at
    /// most `max_duration` (`stop` ends it earlier). Its history and report go to `out`.
    pub fn start(
        python: &Path,
        bootstrap: &str,
        out: &Path,
        max_duration: Duration,
        args: &[String],
    ) -> Workload {
        std::fs::create_dir_all(out).expect("workload dir");
        let log = std::fs::File::create(out.join("workload.log")).expect("workload log");
        let child = Command::new(python)
            .arg(repo().join("e2e/workload/run.py"))
            .args(["--bootstrap", bootstrap])
            .arg("--out")
            .arg(out)
            .args(["--duration", &max_duration.as_secs().to_string()])
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the workload");
        Workload {
            child,
            out: out.to_owned(),
        }
    }

    /// The workload's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.out.join("workload.log")).unwrap_or_default()
    }

    /// Ends producing (SIGTERM), waits for the drain, final read and check (bounded), and
    /// returns the verdict; panics if the run failed.
    pub fn finish(mut self) -> Verdict {
        super::signal(&self.child, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the workload") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the workload did not end; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let text = std::fs::read_to_string(self.out.join("report.json")).unwrap_or_else(|e| {
            panic!(
                "no report ({e}); exit {status:?}; the workload's log:\n{}",
                self.log()
            )
        });
        let report: Value = serde_json::from_str(&text).expect("report.json parses");
        println!("workload: {}", self.log());
        Verdict { report }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
