//! A scenario file: the cluster (gateways, routers, their cores and memory), the policy
//! file the gateways run, the buffer and export limits (the gateway's own config types and
//! defaults), the workload, and the events that happen to the cluster during the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tailgate_core::retry::RetryConfig;
use tailgate_gateway::config::BufferConfig;
use tailgate_gateway::{PolicyFile, PolicyPlan};

use crate::workload::Workload;

/// What happens to the cluster, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// Gateways are added (new pods) up to `to`.
    ScaleUp {
        /// Gateways after.
        to: usize,
    },
    /// Gateways leave (SIGTERM, drain) down to `to`.
    ScaleDown {
        /// Gateways after.
        to: usize,
    },
    /// Every gateway in turn leaves and a new one takes its place, one every `every`.
    RollingRestart {
        /// Time between two pods.
        #[serde(with = "humantime_serde")]
        every: Duration,
    },
    /// A gateway dies at once (kill -9, OOM, node loss): what it buffered is lost.
    Kill {
        /// Which gateway: its position in the list of gateways running then (0 is the
        /// oldest); a position past the end, or the only gateway, is refused at load.
        gateway: usize,
    },
    /// The backend refuses every export for `duration`.
    BackendOutage {
        /// How long.
        #[serde(rename = "for", with = "humantime_serde")]
        duration: Duration,
    },
    /// A new policy file (path relative to the scenario) is applied by every gateway: its
    /// policies and `num_traces` from then on, its `decision_wait` to traces first seen
    /// after it (those buffered keep theirs, and a shorter one waits behind them, as a
    /// gateway's deadlines are in first-seen order). The kept share loading the exporters'
    /// queues in the flows is the scenario file's. The report's kept shares are by policy name
    /// (a policy only the reload names has an undisturbed share of 0: the reference is the
    /// scenario's file).
    PolicyReload {
        /// The file.
        policies: PathBuf,
    },
    /// A gateway runs `factor` times slower (a noisy neighbour) for `duration`.
    Slow {
        /// Which gateway: its position in the list of gateways running then (0 is the
        /// oldest); a position past the end is refused at load.
        gateway: usize,
        /// How much slower.
        factor: f64,
        /// How long.
        #[serde(rename = "for", with = "humantime_serde")]
        duration: Duration,
    },
    /// DNS answers nothing new for `duration`: every ring stays as it is.
    DnsOutage {
        /// How long.
        #[serde(rename = "for", with = "humantime_serde")]
        duration: Duration,
    },
    /// One router stops refreshing its ring for the rest of the run.
    StaleRouter {
        /// Which router (index).
        router: usize,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, from the run's start.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name, in the report.
    pub name: String,
    /// The random seed: the same seed gives the same report.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time (traffic stops then; the run goes on until every trace is decided).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The fluid model's time step.
    #[serde(default = "default_step", with = "humantime_serde")]
    pub step: Duration,
    /// Gateways at the start.
    pub gateways: usize,
    /// Routers.
    #[serde(default = "default_routers")]
    pub routers: usize,
    /// Cores per gateway (its CPU limit).
    #[serde(default = "default_cores")]
    pub gateway_cores: f64,
    /// Cores per router.
    #[serde(default = "default_cores")]
    pub router_cores: f64,
    /// Memory limit per gateway, bytes.
    #[serde(default = "default_memory")]
    pub gateway_memory_bytes: u64,
    /// The policy file (relative to the scenario file), as the gateways run it.
    pub policies: PathBuf,
    /// The gateways' `buffer:` block (defaults as the gateway's).
    #[serde(default)]
    pub buffer: BufferConfig,
    /// The exporter's retry (defaults as the gateway's exporters).
    #[serde(default)]
    pub export_retry: RetryConfig,
    /// The exporter's `batch:` (defaults as the gateway's exporters).
    #[serde(default)]
    pub export_batch: tailgate_gateway::export::BatchConfig,
    /// The exporter's queue per gateway, bytes.
    #[serde(default = "tailgate_gateway::export::default_queue_bytes")]
    pub export_queue_bytes: u64,
    /// How long a gateway runs on after SIGTERM (`peers.leave_linger` plus its drain).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub leave_linger: Duration,
    /// `peers.redistribute`: hand traces to their new owner when the ring changes.
    #[serde(default = "default_true")]
    pub redistribute: bool,
    /// How often routers and gateways read the headless Service's DNS.
    #[serde(default = "default_dns", with = "humantime_serde")]
    pub dns_interval: Duration,
    /// Traces followed span by span per simulated second (the rest is modelled as flows);
    /// more is slower and more precise.
    #[serde(default = "default_sample")]
    pub sample_traces_per_second: f64,
    /// The traffic.
    pub workload: Workload,
    /// What happens during the run.
    #[serde(default)]
    pub events: Vec<Event>,
}

fn default_seed() -> u64 {
    1
}
fn default_step() -> Duration {
    Duration::from_secs(1)
}
fn default_routers() -> usize {
    3
}
fn default_cores() -> f64 {
    2.0
}
fn default_memory() -> u64 {
    4 << 30
}
fn default_linger() -> Duration {
    tailgate_gateway::peers::PeersConfig::default().leave_linger + Duration::from_secs(2)
}
fn default_true() -> bool {
    true
}
fn default_dns() -> Duration {
    Duration::from_secs(5)
}
fn default_sample() -> f64 {
    200.0
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario is not valid YAML for a scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A policy file is refused (as the gateway refuses it).
    #[error("{0}")]
    Policies(String),
    /// A value out of range.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The rule.
        message: String,
    },
    /// A value out of range, at its line of the scenario file.
    #[error("{path}:{line}: {key}: {message}")]
    InvalidAt {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the key.
        line: usize,
        /// The key.
        key: String,
        /// The rule.
        message: String,
    },
}

impl ScenarioError {
    /// `self` with the line of its key in `text`, the scenario file it was read from.
    fn located(self, text: &str) -> Self {
        match self {
            ScenarioError::Invalid { path, key, message } => {
                match tailgate_core::config::locate_key(text, &key) {
                    Some(line) => ScenarioError::InvalidAt {
                        path,
                        line,
                        key,
                        message,
                    },
                    None => ScenarioError::Invalid { path, key, message },
                }
            }
            other => other,
        }
    }
}

/// `error`'s message, with the key and line of a workload distribution's error (read
/// apart from its position, its message begins with its key; serde_yaml places it at the
/// `workload:` mapping).
fn located_message(error: &serde_yaml_ng::Error, text: &str) -> String {
    let message = error.to_string();
    let found = message.strip_prefix("workload: ").and_then(|rest| {
        let (key, why) = rest.split_once(": ")?;
        crate::workload::LOCATED_KEYS
            .contains(&key)
            .then_some((key, why))
    });
    let Some((key, why)) = found else {
        return message;
    };
    let why = match error.location() {
        Some(at) => why
            .strip_suffix(&format!(" at line {} column {}", at.line(), at.column()))
            .unwrap_or(why),
        None => why,
    };
    let full = format!("workload.{key}");
    match tailgate_core::config::locate_key(text, &full) {
        Some(line) => format!("{full}: {why} at line {line}"),
        None => format!("{full}: {why}"),
    }
}

/// A scenario ready to run: its policy plans compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// The plan at the start.
    pub plan: PolicyPlan,
    /// Plans applied by `policy_reload` events, in event order.
    pub reloads: Vec<PolicyPlan>,
    /// The starting plan again: decides each followed trace whole, undisturbed.
    pub reference: PolicyPlan,
}

impl Scenario {
    /// Reads and checks a scenario file; its policy files are read relative to it.
    pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
        let text =
            tailgate_core::config::read_text(path).map_err(|source| ScenarioError::Read {
                path: path.to_owned(),
                source,
            })?;
        let scenario: Scenario =
            serde_yaml_ng::from_str(&text).map_err(|e| ScenarioError::Parse {
                path: path.to_owned(),
                message: located_message(&e, &text),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        scenario.prepare(path, base).map_err(|e| e.located(&text))
    }

    /// Checks the scenario and compiles its plans (policy paths relative to `base`).
    pub fn prepare(self, path: &Path, base: &Path) -> Result<Loaded, ScenarioError> {
        self.check(path)?;
        let plan = load_plan(&base.join(&self.policies))?;
        let reference = load_plan(&base.join(&self.policies))?;
        let mut reloads = Vec::new();
        for e in &self.events {
            if let EventKind::PolicyReload { policies } = &e.kind {
                reloads.push(load_plan(&base.join(policies))?);
            }
        }
        Ok(Loaded {
            scenario: self,
            plan,
            reloads,
            reference,
        })
    }

    fn check(&self, path: &Path) -> Result<(), ScenarioError> {
        let invalid = |key: &str, message: &str| ScenarioError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if self.gateways == 0 || self.gateways > 10_000 {
            return Err(invalid("gateways", "must be 1 to 10000"));
        }
        if self.routers == 0 {
            return Err(invalid("routers", "must be at least 1"));
        }
        if self.step < Duration::from_millis(10) || self.duration < self.step {
            return Err(invalid("step", "at least 10ms and at most the duration"));
        }
        if self.duration.as_secs_f64() / self.step.as_secs_f64() > 1e6 {
            return Err(invalid("step", "at most a million steps: make it longer"));
        }
        if let Err((key, rule)) = self.workload.check() {
            return Err(invalid(key, rule));
        }
        if self.duration > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid("duration", "at most a week"));
        }
        if !(self.sample_traces_per_second > 0.0 && self.sample_traces_per_second <= 1e5) {
            return Err(invalid(
                "sample_traces_per_second",
                "must be above 0, at most 100000",
            ));
        }
        if self.gateway_cores.is_nan() || self.gateway_cores <= 0.0 {
            return Err(invalid("gateway_cores", "cores must be above 0"));
        }
        if self.router_cores.is_nan() || self.router_cores <= 0.0 {
            return Err(invalid("router_cores", "cores must be above 0"));
        }
        for (i, e) in self.events.iter().enumerate() {
            let bad = match &e.kind {
                EventKind::ScaleUp { to } if *to > 10_000 => Some("to: at most 10000"),
                EventKind::ScaleDown { to } if *to == 0 => Some("to: at least 1"),
                EventKind::Kill { gateway } | EventKind::Slow { gateway, .. }
                    if *gateway >= 10_000 =>
                {
                    Some("gateway: a position in the gateways' list, below 10000")
                }
                EventKind::Slow { factor, .. } if !(*factor >= 1.0 && *factor <= 1000.0) => {
                    Some("factor: 1 to 1000")
                }
                EventKind::StaleRouter { router } if *router >= self.routers => {
                    Some("router: an index below routers")
                }
                EventKind::RollingRestart { every } if every.is_zero() => Some("every: above 0"),
                _ => None,
            };
            if let Some(message) = bad {
                return Err(invalid(&format!("events[{i}]"), message));
            }
        }
        self.check_event_times(path)
    }

    /// Refuses an event after the run's end, which would do nothing without a word (the
    /// events that change nothing at their time, `cluster::ignored_events` finds: it
    /// follows the cluster as the run does).
    fn check_event_times(&self, path: &Path) -> Result<(), ScenarioError> {
        for (i, e) in self.events.iter().enumerate() {
            if e.at > self.duration {
                return Err(ScenarioError::Invalid {
                    path: path.to_owned(),
                    key: format!("events[{i}]"),
                    message: format!(
                        "at: {} is after the run's duration, {}",
                        humantime::format_duration(e.at),
                        humantime::format_duration(self.duration)
                    ),
                });
            }
        }
        Ok(())
    }
}

fn load_plan(path: &Path) -> Result<PolicyPlan, ScenarioError> {
    PolicyFile::load(path)
        .map(|f| PolicyPlan::compile(&f))
        .map_err(|e| ScenarioError::Policies(e.to_string()))
}
