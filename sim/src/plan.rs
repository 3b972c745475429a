//! `tailgate-sim plan`: how many gateways (and routers) a rate needs. Builds a steady
//! scenario of the rate with the user's policy file (and `decision_wait`), runs it, scales
//! the gateway count to the recommendation, and runs again until the count settles.

use std::path::Path;
use std::time::Duration;

use crate::cost::CostModel;
use crate::engine::{self, Report};
use crate::scenario::{Loaded, Scenario, ScenarioError};
use crate::workload::{DurationDist, Rate, TraceSize, Workload};

/// What `plan` is asked.
#[derive(Debug, Clone)]
pub struct PlanQuestion {
    /// Spans per second.
    pub rate: f64,
    /// `decision_wait` (overrides the policy file's).
    pub decision_wait: Option<Duration>,
    /// The policy file.
    pub policies: std::path::PathBuf,
    /// Cores per gateway.
    pub gateway_cores: f64,
    /// Memory limit per gateway, bytes.
    pub gateway_memory_bytes: u64,
    /// The workload (default: [`default_workload`] at `rate`).
    pub workload: Option<Workload>,
    /// The seed.
    pub seed: u64,
}

/// The answer: the last run, at the recommended size.
#[derive(Debug, Clone)]
pub struct PlanAnswer {
    /// Gateways.
    pub gateways: usize,
    /// Routers (2 cores each, at most 70% busy).
    pub routers: usize,
    /// The run at that size.
    pub report: Report,
    /// The one-line answer.
    pub summary: String,
}

/// A web service's traces: about 16 spans, 200 ms median, 1% errors, 2% slow.
pub fn default_workload(rate: f64) -> Workload {
    Workload {
        rate: Rate::Steady {
            spans_per_second: rate,
        },
        trace_size: TraceSize::Lognormal {
            median: 10.0,
            sigma: 1.0,
        },
        duration: DurationDist::Lognormal {
            median: Duration::from_millis(200),
            sigma: 1.2,
        },
        error_share: 0.01,
        slow_share: 0.02,
        slow_factor: 10.0,
        slow_duration: None,
        arrival_chunks: None,
        arrival_spread: Duration::from_secs(2),
        late_share: 0.0,
        late_by: Duration::from_secs(60),
        clock_skew: Duration::ZERO,
        attributes: Vec::new(),
    }
}

/// Answers a sizing question.
pub fn plan(
    q: &PlanQuestion,
    cost: &CostModel,
    mut progress: impl FnMut(&str),
) -> Result<PlanAnswer, ScenarioError> {
    let routers = ((q.rate * cost.router_cpu_per_span_s) / (2.0 * engine::CPU_TARGET))
        .ceil()
        .max(2.0) as usize;
    let mut gateways = ((q.rate * cost.gateway_cpu_per_span_s * 1.5)
        / (q.gateway_cores * engine::CPU_TARGET))
        .ceil()
        .max(2.0) as usize;
    // Scale to the recommendation until it settles (at most 6 runs); the answer is the
    // last run, made at the size it recommends or at the last size tried.
    let mut report = None;
    for round in 0..6 {
        let loaded = steady(q, gateways, routers)?;
        progress(&format!("run {}: {gateways} gateways", round + 1));
        let r = engine::run(&loaded, cost, |_, _| {});
        let next = r.recommended_gateways;
        report = Some(r);
        if next == gateways || round == 5 {
            break;
        }
        gateways = next;
    }
    let report = report.ok_or_else(|| ScenarioError::Policies("no run".into()))?;
    let wait = q.decision_wait.map_or_else(
        || "the policy file's decision_wait".to_owned(),
        |d| format!("decision_wait {}", humantime::format_duration(d)),
    );
    let summary = format!(
        "{rate} spans/s with {wait}: {gateways} gateways ({cores} cores, {mem:.1} GiB each; CPU p99 {cpu:.0}%, RSS max {rss:.2} GiB) and {routers} routers",
        rate = rate_text(q.rate),
        cores = q.gateway_cores,
        mem = q.gateway_memory_bytes as f64 / 1073741824.0,
        cpu = 100.0 * report.gateway_cpu.p99,
        rss = report.gateway_wanted_rss_bytes.max / 1073741824.0,
    );
    Ok(PlanAnswer {
        gateways,
        routers,
        report,
        summary,
    })
}

/// A steady scenario of the question's rate on `gateways` gateways.
fn steady(q: &PlanQuestion, gateways: usize, routers: usize) -> Result<Loaded, ScenarioError> {
    let wait = q.decision_wait.unwrap_or(Duration::from_secs(30));
    let scenario = Scenario {
        name: format!("plan {} spans/s on {gateways} gateways", rate_text(q.rate)),
        seed: q.seed,
        duration: (wait * 3 + Duration::from_secs(30)).max(Duration::from_secs(60)),
        step: Duration::from_secs(1),
        gateways,
        routers,
        gateway_cores: q.gateway_cores,
        router_cores: 2.0,
        gateway_memory_bytes: q.gateway_memory_bytes,
        policies: q.policies.clone(),
        buffer: buffer_for(q.gateway_memory_bytes),
        export_retry: Default::default(),
        export_batch: Default::default(),
        export_queue_bytes: tailgate_gateway::export::default_queue_bytes(),
        leave_linger: Duration::from_secs(5),
        redistribute: true,
        dns_interval: Duration::from_secs(5),
        sample_traces_per_second: 100.0,
        workload: q
            .workload
            .clone()
            .unwrap_or_else(|| default_workload(q.rate)),
        events: Vec::new(),
    };
    let mut loaded = scenario.prepare(Path::new("plan"), Path::new("."))?;
    if let Some(d) = q.decision_wait {
        loaded.plan.decision_wait = d;
        loaded.reference.decision_wait = d;
    }
    Ok(loaded)
}

/// `buffer.max_buffered_bytes` as the docs advise for a memory limit: about 1/1.3 of it,
/// less 100 MiB.
fn buffer_for(memory: u64) -> tailgate_gateway::config::BufferConfig {
    tailgate_gateway::config::BufferConfig {
        max_buffered_bytes: ((memory as f64 / 1.3) as u64)
            .saturating_sub(100 << 20)
            .max(64 << 20),
        ..Default::default()
    }
}

/// `5M`, `250k`.
pub fn rate_text(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{}M", trim(rate / 1e6))
    } else if rate >= 1e3 {
        format!("{}k", trim(rate / 1e3))
    } else {
        trim(rate)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
