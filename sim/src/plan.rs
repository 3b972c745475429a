//! `tailgate-sim plan`: how many gateways (and routers) a rate needs. Builds a steady
//! scenario of the rate with the user's policy file (and `decision_wait`), runs it, scales
//! the gateway count to the recommendation, and runs again until the count settles.

use std::path::Path;
use std::time::Duration;

use crate::cost::CostModel;
use crate::engine::{self, Report};
use crate::scenario::{Loaded, Scenario, ScenarioError};
use crate::workload::{DurationDist, Rate, TraceSize, Workload};
use tailgate_gateway::config::{BufferConfig, GatewayConfig};

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
    /// The gateways' own config (`--gateway-config`): its `buffer` block is run, with
    /// `max_buffered_bytes` the most its memory bound lets the limit hold; without it, the
    /// buffer follows the rule for gateways behind routers (`limit / 1.3 - 100 MiB`).
    pub gateway_config: Option<GatewayConfig>,
    /// The seed.
    pub seed: u64,
}

/// The answer: the last run, at the recommended size.
#[derive(Debug, Clone)]
pub struct PlanAnswer {
    /// Gateways.
    pub gateways: usize,
    /// Routers (2 cores each, at most 70% busy, one to spare).
    pub routers: usize,
    /// The `num_traces` each gateway needs to hold the whole `decision_wait` (the policy
    /// file's, when it says less, decides traces early: the summary warns).
    pub num_traces: usize,
    /// The run at that size.
    pub report: Report,
    /// The one-line answer.
    pub summary: String,
    /// Every size run, in order, with whether it decided traces early for memory.
    pub tried: Vec<(usize, bool)>,
}

/// A web service's traces: about 16 spans, durations lognormal around 200 ms (about 22%
/// over 500 ms), 1% errors, and 2% ten times slower still.
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
    check_question(q)?;
    // One more than the load needs, as for gateways: a router lost (a node drained)
    // leaves the others within the target.
    let routers = ((q.rate * cost.router_cpu_per_span_s) / (2.0 * engine::CPU_TARGET))
        .ceil()
        .max(1.0) as usize
        + 1;
    let mut gateways = ((q.rate * cost.gateway_cpu_per_span_s * 1.5)
        / (q.gateway_cores * engine::CPU_TARGET))
        .ceil()
        .max(2.0) as usize;
    let sizing = size_buffer(q)?;
    // Scale to the recommendation until it settles (at most MAX_ROUNDS runs); the answer is the
    // last run, made at the size it recommends or at the last size tried.
    let mut report = None;
    // The most gateways seen deciding early, and the fewest seen not to.
    let mut too_few = 0usize;
    let mut enough: Option<(usize, Report)> = None;
    let mut tried = Vec::new();
    // The policy file's `num_traces` and `decision_wait` (as run): the plan sizes for a
    // `num_traces` large enough, and says so when the file's is not.
    let (mut file_num_traces, mut wait_s) = (usize::MAX, 0.0);
    for round in 0..MAX_ROUNDS {
        if gateways > MAX_GATEWAYS {
            return Err(invalid(
                "--rate",
                &format!(
                    "{} spans/s needs more than {MAX_GATEWAYS} gateways of {} cores and {:.2} GiB, the most the simulator runs: give each more cores or memory",
                    rate_text(q.rate),
                    q.gateway_cores,
                    q.gateway_memory_bytes as f64 / 1073741824.0
                ),
            ));
        }
        let mut loaded = steady(q, &sizing, gateways, routers)?;
        if loaded.plan.decision_wait > MAX_WAIT {
            return Err(invalid(
                "--policies",
                "the file's decision_wait is over 10m, the most plan simulates (three waits and more at one-second steps): give --decision-wait 10m and scale the memory in proportion",
            ));
        }
        file_num_traces = loaded.plan.num_traces;
        wait_s = loaded.plan.decision_wait.as_secs_f64();
        loaded.plan.num_traces = usize::MAX;
        progress(&format!("run {}: {gateways} gateways", round + 1));
        let r = engine::run(&loaded, cost, |_, _| {});
        // Sized for the full wait: traces decided early for memory mean the buffers hold
        // too little of it, whatever the CPU says; more gateways share the traces out,
        // and no size that decided early is tried again.
        // Between a size that decides early and one that does not, halve the gap.
        let early = r.early_decision_share > EARLY_DECISIONS_ALLOWED;
        let next = if early {
            too_few = too_few.max(gateways);
            match &enough {
                Some((g, _)) => (too_few + g).div_ceil(2),
                None => {
                    // Half as many again (at least the recommendation) until a size decides
                    // nothing early, then the gap halved: the share decided early jumps
                    // from none to most of the traffic within a few gateways, so it does
                    // not say how many more are needed (read as if it did, 7 gateways
                    // grew to 154 at 10 M spans/s, and the search stopped far from its
                    // answer).
                    let wanted = ((gateways as f64 * 1.5).ceil() as usize)
                        .min(MAX_GATEWAYS.max(gateways + 1));
                    r.recommended_gateways.max(wanted)
                }
            }
        } else {
            if enough.as_ref().is_none_or(|(g, _)| gateways < *g) {
                enough = Some((gateways, r.clone()));
            }
            let fewer = r.recommended_gateways.max(too_few + 1);
            if too_few > 0 && fewer < gateways {
                fewer.max((too_few + gateways).div_ceil(2))
            } else {
                fewer
            }
        };
        tried.push((gateways, early));
        report = Some(r);
        // A size already run and found large enough: its run is the answer.
        if let Some((g, r)) = enough
            .as_ref()
            .filter(|(g, _)| *g == next && next != gateways)
        {
            (gateways, report) = (*g, Some(r.clone()));
            break;
        }
        if next == gateways || round + 1 == MAX_ROUNDS {
            break;
        }
        gateways = next;
    }
    // Ended on a size that decides early after one that did not: answer with that one.
    if report
        .as_ref()
        .is_some_and(|r| r.early_decision_share > EARLY_DECISIONS_ALLOWED)
    {
        if let Some((g, r)) = enough {
            (gateways, report) = (g, Some(r));
        }
    }
    let report = report.ok_or_else(|| ScenarioError::Policies("no run".into()))?;
    let wait = q.decision_wait.map_or_else(
        || "the policy file's decision_wait".to_owned(),
        |d| format!("decision_wait {}", humantime::format_duration(d)),
    );
    let mut summary = format!(
        "{rate} spans/s with {wait}: {gateways} gateways ({cores} cores, {mem:.1} GiB each; CPU p99 {cpu:.0}%, RSS max {rss:.2} GiB) and {routers} routers",
        rate = rate_text(q.rate),
        cores = q.gateway_cores,
        mem = q.gateway_memory_bytes as f64 / 1073741824.0,
        cpu = 100.0 * report.gateway_cpu.p99,
        rss = report.gateway_wanted_rss_bytes.max / 1073741824.0,
    );
    if report.early_decision_share > EARLY_DECISIONS_ALLOWED {
        summary.push_str(&format!(
            "; WARNING: {:.1}% of the spans arrive while their gateway decides traces early for memory at this size (each gateway's buffer {} MiB holds too little of the wait): give the gateways more memory",
            100.0 * report.early_decision_share,
            sizing.buffer.max_buffered_bytes >> 20
        ));
    }
    let mean_spans = q.workload.as_ref().map_or_else(
        || default_workload(q.rate).mean_spans(),
        Workload::mean_spans,
    );
    // With one gateway lost (the spare), the others hold its traces too.
    let num_traces = num_traces_needed(q.rate, mean_spans, wait_s, gateways.saturating_sub(1));
    if file_num_traces < num_traces {
        summary.push_str(&format!(
            "; WARNING: set num_traces to at least {num_traces} in the policy file (it says {file_num_traces}): with one gateway lost each holds about {live} traces of the wait, and past num_traces it decides traces early, before decision_wait (this size assumes it is raised)",
            live = (num_traces as f64 / NUM_TRACES_MARGIN / 1000.0).round() * 1000.0,
        ));
    }
    if q.gateway_config.is_some() {
        summary.push_str(&format!(
            "; buffer.max_buffered_bytes {} ({} MiB; {} MiB set aside for the config's connections, in-flight bytes, queues and scans)",
            sizing.buffer.max_buffered_bytes,
            sizing.buffer.max_buffered_bytes >> 20,
            sizing.reserved >> 20
        ));
    }
    Ok(PlanAnswer {
        gateways,
        routers,
        num_traces,
        report,
        summary,
        tried,
    })
}

/// Room `num_traces` leaves above the traces a gateway holds on average: the ring's
/// uneven shares and bursts.
const NUM_TRACES_MARGIN: f64 = 1.25;

/// The `num_traces` each of `gateways` gateways needs to hold `decision_wait` (`wait_s`)
/// of traces of `mean_spans` spans at `rate` spans/s, with [`NUM_TRACES_MARGIN`], rounded
/// up to thousands.
fn num_traces_needed(rate: f64, mean_spans: f64, wait_s: f64, gateways: usize) -> usize {
    let live = rate / mean_spans.max(1.0) / gateways.max(1) as f64 * wait_s;
    ((live * NUM_TRACES_MARGIN / 1000.0).ceil() * 1000.0) as usize
}

/// Most runs `plan` makes (a run of the steady scenario takes a fraction of a second):
/// enough to grow by half from the CPU's estimate to 10,000 gateways and halve the gap
/// down to one.
const MAX_ROUNDS: usize = 32;

/// The longest `decision_wait` `plan` simulates.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Most gateways `plan` tries (the scenarios' limit).
const MAX_GATEWAYS: usize = 10_000;

/// The share of traces decided early for memory that a plan accepts: a size for the full
/// `decision_wait` decides none early but for bursts.
const EARLY_DECISIONS_ALLOWED: f64 = 0.001;

fn invalid(key: &str, message: &str) -> ScenarioError {
    ScenarioError::Invalid {
        path: "plan".into(),
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

/// Refuses a question no gateway could be sized for, naming the flag.
fn check_question(q: &PlanQuestion) -> Result<(), ScenarioError> {
    if !(q.rate.is_finite() && q.rate > 0.0) {
        return Err(invalid(
            "--rate",
            "must be a number of spans per second above 0",
        ));
    }
    if !(q.gateway_cores.is_finite() && q.gateway_cores > 0.0) {
        return Err(invalid("--gateway-cores", "must be above 0"));
    }
    if q.gateway_memory_bytes == 0 {
        return Err(invalid("--gateway-memory-gib", "must be above 0"));
    }
    // Without a config, the buffer follows sizing.md's rule (limit / 1.3 - 100 MiB); a
    // limit that leaves it less than its floor would be answered with a buffer the
    // memory cannot hold.
    if q.gateway_config.is_none() && buffer_room(q.gateway_memory_bytes) < MIN_BUFFER {
        return Err(invalid(
            "--gateway-memory-gib",
            &format!(
                "{:.2} GiB leaves no buffer by docs/sizing.md's rule (limit / 1.3 - 100 MiB): give each gateway at least {:.2} GiB",
                q.gateway_memory_bytes as f64 / 1073741824.0,
                ((MIN_BUFFER + (100 << 20)) as f64 * 1.3) / 1073741824.0
            ),
        ));
    }
    if q.decision_wait.is_some_and(|d| d > MAX_WAIT) {
        return Err(invalid(
            "--decision-wait",
            "at most 10m: plan simulates three waits and more at one-second steps (an hour took minutes and GBs); size a longer wait by its memory, which grows in proportion",
        ));
    }
    if q.decision_wait.is_some_and(|d| d.is_zero()) {
        return Err(invalid(
            "--decision-wait",
            "must be above 0, as the gateway's decision_wait",
        ));
    }
    Ok(())
}

/// The gateways' buffer, and the memory of the limit its traces may take.
#[derive(Debug, Clone)]
struct Sizing {
    buffer: BufferConfig,
    /// What the config's memory bound sets aside besides the buffer and the base:
    /// connections, in-flight bytes, exporter queues, scans (0 without a config: the rule
    /// for gateways behind routers leaves its margin inside the limit).
    reserved: u64,
}

/// Sizes the buffer: from the gateway config's memory bound when one is given (the
/// largest `max_buffered_bytes` the limit holds with a worker thread per core), else by
/// the rule of docs/sizing.md.
fn size_buffer(q: &PlanQuestion) -> Result<Sizing, ScenarioError> {
    let Some(config) = &q.gateway_config else {
        return Ok(Sizing {
            buffer: buffer_for(q.gateway_memory_bytes),
            reserved: 0,
        });
    };
    let threads = (q.gateway_cores.ceil() as usize).max(1);
    let too_small = |fixed: u64| ScenarioError::Invalid {
        path: "--gateway-config".into(),
        key: "--gateway-memory-gib".into(),
        message: format!(
            "{:.2} GiB leaves no buffer: the config's other terms take {} MiB with {threads} \
             worker threads (tailgate-gateway --check prints them); raise the memory or lower \
             receive.max_connections / receive.max_request_bytes",
            q.gateway_memory_bytes as f64 / 1073741824.0,
            fixed >> 20
        ),
    };
    let fixed = config.memory_besides_buffer(threads);
    let max = config
        .largest_buffer_within(q.gateway_memory_bytes, threads)
        .ok_or_else(|| too_small(fixed))?;
    let mut buffer = config.buffer.clone();
    // An early-decision threshold set for a larger buffer keeps its share of it.
    buffer.early_decision_bytes = config.buffer.early_decision_bytes.map(|e| {
        let share = e as f64 / config.buffer.max_buffered_bytes.max(1) as f64;
        (share.min(1.0) * max as f64) as u64
    });
    buffer.max_buffered_bytes = max;
    Ok(Sizing {
        buffer,
        // The bound's base has its counterpart in the cost model's own base.
        reserved: fixed.saturating_sub(tailgate_gateway::config::GATEWAY_BASE_BYTES),
    })
}

/// A steady scenario of the question's rate on `gateways` gateways.
fn steady(
    q: &PlanQuestion,
    sizing: &Sizing,
    gateways: usize,
    routers: usize,
) -> Result<Loaded, ScenarioError> {
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
        // Traces may take what the config's senders, queues and scans leave.
        gateway_memory_bytes: q.gateway_memory_bytes.saturating_sub(sizing.reserved),
        policies: q.policies.clone(),
        buffer: sizing.buffer.clone(),
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

/// `buffer.max_buffered_bytes` for a memory limit by docs/sizing.md's rule of thumb: about
/// 1/1.3 of it, less 100 MiB (rounder than the bound `--check` prints).
fn buffer_for(memory: u64) -> BufferConfig {
    BufferConfig {
        max_buffered_bytes: buffer_room(memory).max(MIN_BUFFER),
        ..Default::default()
    }
}

/// The buffer sizing.md's rule gives a memory limit.
fn buffer_room(memory: u64) -> u64 {
    ((memory as f64 / 1.3) as u64).saturating_sub(100 << 20)
}

/// The smallest buffer `plan` sizes for.
const MIN_BUFFER: u64 = 64 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    fn question(memory: u64, config: Option<&str>) -> PlanQuestion {
        PlanQuestion {
            rate: 100e3,
            decision_wait: None,
            policies: PathBuf::from("policies.yaml"),
            gateway_cores: 2.0,
            gateway_memory_bytes: memory,
            workload: None,
            gateway_config: config.map(|text| {
                serde_yaml_ng::from_str::<GatewayConfig>(text).expect("a gateway config")
            }),
            seed: 1,
        }
    }

    /// Scenario: plan sized with and without a gateway config. Guarantees: without one the
    /// buffer follows the documented rule and nothing is set aside; with one the buffer is
    /// the most the limit holds under the config's bound at a thread per core, what the
    /// bound sets aside besides its base is taken off the traces' memory, and an early
    /// decision threshold keeps its share of the buffer.
    #[test]
    fn the_buffer_is_sized_from_the_config_bound_when_one_is_given() {
        let rule = size_buffer(&question(4096 * MIB, None)).unwrap();
        assert_eq!(
            rule.buffer.max_buffered_bytes,
            (4096.0 * MIB as f64 / 1.3) as u64 - 100 * MIB
        );
        assert_eq!(rule.reserved, 0);

        let text = "receive: {grpc: 127.0.0.1:4317, http: 127.0.0.1:4318, max_connections: 4096}\n\
                    buffer: {max_buffered_bytes: 1073741824, early_decision_bytes: 536870912}\n\
                    export: {debug: {}}\n";
        let q = question(4096 * MIB, Some(text));
        let sized = size_buffer(&q).unwrap();
        let config = q.gateway_config.clone().unwrap();
        let mut at = config.clone();
        at.buffer.max_buffered_bytes = sized.buffer.max_buffered_bytes;
        assert!(at.memory_bound(2).total() <= 4096 * MIB);
        at.buffer.max_buffered_bytes += 1;
        assert!(at.memory_bound(2).total() > 4096 * MIB);
        // In flight 64 MiB, 4,096 × 2 ports × 336 KiB, scans 6 × 16 MiB × 2 threads.
        assert_eq!(sized.reserved, 64 * MIB + 2688 * MIB + 192 * MIB);
        // Half of the buffer before, half of it now.
        let early = sized.buffer.early_decision_bytes.unwrap();
        assert!(
            early.abs_diff(sized.buffer.max_buffered_bytes / 2) <= 1,
            "{early}"
        );
        // Below the rule's buffer: the connections a hostile sender may hold cost room.
        assert!(sized.buffer.max_buffered_bytes < rule.buffer.max_buffered_bytes);
    }

    /// Scenario: a memory limit below what the config's other terms take. Guarantees: a
    /// typed error naming the option and the terms' size, not a zero buffer.
    #[test]
    fn a_limit_the_config_fills_without_a_buffer_is_refused() {
        let text = "receive: {grpc: 127.0.0.1:4317, max_connections: 4096}\nexport: {debug: {}}\n";
        let err = size_buffer(&question(512 * MIB, Some(text))).unwrap_err();
        let ScenarioError::Invalid { key, message, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(key, "--gateway-memory-gib");
        // base 64 + in flight 64 + 4,096 × 336 KiB on gRPC and the default HTTP port
        // (2,688) + scans 192.
        assert!(message.contains("3008 MiB"), "{message}");
    }
}
