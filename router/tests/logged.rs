#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A router process started by a test, whose log lines the test reads as they come.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running process and its stderr, line by line.
pub(crate) struct Logged {
    /// The process.
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl Logged {
    /// Starts `command` logging at info, its stderr read on a thread of its own.
    pub(crate) fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Logged { child, lines }
    }

    /// The next log line holding `needle`; fails when none comes within 20 s.
    pub(crate) fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => break line,
                Ok(_) => {}
                Err(e) => panic!("no {needle:?} in the log: {e}"),
            }
        }
    }
}

/// A scratch folder named for `name` and this test process, holding `router.yaml` with
/// `yaml`: the folder and the file's path.
pub(crate) fn config_file(name: &str, yaml: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tailgate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("router.yaml");
    std::fs::write(&config, yaml).unwrap();
    (dir, config)
}
