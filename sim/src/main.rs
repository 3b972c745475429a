//! `tailgate-sim`: run a scenario, answer a sizing question, or calibrate the cost model.
//! See docs/sizing.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tailgate_sim::cost::CostModel;
use tailgate_sim::engine::Report;
use tailgate_sim::plan::{plan, PlanQuestion};
use tailgate_sim::scenario::Scenario;
use tailgate_sim::workload::parse_rate;

/// Writes a line of the answer to stdout (`plan … > answer.txt` keeps it; progress and
/// errors go to stderr). A closed stdout (`| head`) is not an error worth more than the
/// lines lost.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).ok();
    }};
}

/// Tailgate at internet scale: routers, gateways, DNS and the backend simulated on a
/// virtual clock with the real ring and policy plan.
#[derive(Debug, Parser)]
#[command(name = "tailgate-sim", version)]
struct Cli {
    /// The cost model (default: the one compiled in, measured on the project's machine;
    /// sim/cost-model.yaml).
    #[arg(long, global = true)]
    cost_model: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario file (sim/scenarios/*.yaml) and writes its report.
    Run {
        /// The scenario.
        scenario: PathBuf,
        /// The JSON report.
        #[arg(long, default_value = "sim-report.json")]
        report: PathBuf,
        /// The HTML report (SVG plots; open it in a browser).
        #[arg(long, default_value = "sim-report.html")]
        html: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Also write each plot as an SVG file in this directory (for docs).
        #[arg(long)]
        svg_dir: Option<PathBuf>,
    },
    /// How many gateways and routers a rate needs (one to spare of each), and the
    /// num_traces each gateway needs when the policy file says less: one line on stdout,
    /// progress on stderr, plus the report of the run at that size.
    Plan {
        /// Spans per second: 250k, 5M, 1.5e6.
        #[arg(long, value_parser = parse_rate)]
        rate: f64,
        /// decision_wait (default: the policy file's).
        #[arg(long, value_parser = humantime::parse_duration)]
        decision_wait: Option<Duration>,
        /// The policy file the gateways run (tail_sampling syntax).
        #[arg(long)]
        policies: PathBuf,
        /// Cores per gateway.
        #[arg(long, default_value_t = 2.0)]
        gateway_cores: f64,
        /// Memory limit per gateway in GiB.
        #[arg(long, default_value_t = 4.0)]
        gateway_memory_gib: f64,
        /// The gateways' config file (as `tailgate-gateway --config`): its buffer block is
        /// run, with `max_buffered_bytes` the most the memory limit holds under the config's
        /// memory bound (what `tailgate-gateway --check` prints: connections on each port,
        /// in-flight bytes, exporter queues, a scan per core). Use it where senders are not
        /// trusted. Without it the buffer is `limit / 1.3 - 100 MiB`, the rule for gateways
        /// behind routers (docs/sizing.md).
        #[arg(long, value_name = "FILE")]
        gateway_config: Option<PathBuf>,
        /// The JSON report of the run at the recommended size.
        #[arg(long, default_value = "sim-plan.json")]
        report: PathBuf,
        /// The HTML report.
        #[arg(long, default_value = "sim-plan.html")]
        html: PathBuf,
        /// Also write each plot as an SVG file in this directory (for docs).
        #[arg(long)]
        svg_dir: Option<PathBuf>,
    },
    /// Runs small scenarios for real (router and gateways as processes: the load test's
    /// chaos and bench) and in the sim, prints predicted against measured, and exits 1 when
    /// a figure is off by more than 20%. Needs tailgate-loadtest, -gateway and -router
    /// built next to this binary (`cargo build --release`); about 7 minutes.
    Validate {
        /// The JSON report (with `max_relative_error`).
        #[arg(long, default_value = "sim-validate.json")]
        report: PathBuf,
    },
    /// Measures the cost model again with `tailgate-loadtest bench` (built next to this
    /// binary: `cargo build --profile dist -p tailgate-loadtest -p tailgate-gateway
    /// -p tailgate-router -p tailgate-sim`) and rewrites the file.
    Calibrate {
        /// The cost model file to rewrite.
        #[arg(long, default_value = "sim/cost-model.yaml")]
        file: PathBuf,
        /// Pin the measured process to this CPU.
        #[arg(long)]
        pin_cpu: Option<usize>,
    },
}

fn main() -> ExitCode {
    tailgate_core::telemetry::init_logging("warn");
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailgate-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cost = match &cli.cost_model {
        Some(path) => CostModel::load(path)?,
        None => CostModel::default(),
    };
    match cli.command {
        Command::Run {
            scenario,
            report,
            html,
            seed,
            svg_dir,
        } => {
            let mut loaded = Scenario::load(&scenario)?;
            // Events that would change nothing are refused, not run as if unwritten.
            if let Some((i, why)) = tailgate_sim::cluster::ignored_events(&loaded.scenario)
                .into_iter()
                .next()
            {
                anyhow::bail!("{}: events[{i}]: {why}", scenario.display());
            }
            if let Some(seed) = seed {
                loaded.scenario.seed = seed;
            }
            let started = tokio::time::Instant::now();
            let mut r = tailgate_sim::engine::run(&loaded, &cost, progress_bar());
            r.wall_seconds = started.elapsed().as_secs_f64();
            finish_progress();
            write_reports(&r, &report, &html, svg_dir.as_deref())?;
            out!("{}", one_line(&r));
            Ok(())
        }
        Command::Plan {
            rate,
            decision_wait,
            policies,
            gateway_cores,
            gateway_memory_gib,
            gateway_config,
            report,
            html,
            svg_dir,
        } => {
            let gateway_config = gateway_config
                .map(|path| tailgate_gateway::config::GatewayConfig::load(&path))
                .transpose()?;
            let q = PlanQuestion {
                rate,
                decision_wait,
                policies,
                gateway_cores,
                gateway_memory_bytes: (gateway_memory_gib * 1073741824.0) as u64,
                workload: None,
                gateway_config,
                seed: 1,
            };
            let started = tokio::time::Instant::now();
            let mut answer = plan(&q, &cost, |s| eprintln!("  {s}"))?;
            answer.report.wall_seconds = started.elapsed().as_secs_f64();
            write_reports(&answer.report, &report, &html, svg_dir.as_deref())?;
            out!("{}", answer.summary);
            Ok(())
        }
        Command::Validate { report } => {
            let missing: Vec<String> = tailgate_sim::validate::binaries()
                .into_iter()
                .filter(|b| !b.exists())
                .map(|b| b.display().to_string())
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "validate runs the real binaries; build them first (cargo build --release): missing {}",
                    missing.join(", ")
                );
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let v = runtime.block_on(tailgate_sim::validate::validate(&cost, |s| {
                eprintln!("  {s}")
            }))?;
            std::fs::write(&report, serde_json::to_string_pretty(&v)?)
                .with_context(|| format!("writing {}", report.display()))?;
            for f in &v.figures {
                out!(
                    "{:>4}  {:<75} predicted {:>12.4}  measured {:>12.4}  error {:>5.1}%",
                    if f.ok { "ok" } else { "OFF" },
                    f.name,
                    f.predicted,
                    f.measured,
                    100.0 * f.relative_error
                );
            }
            out!(
                "max relative error {:.1}% (tolerance {:.0}%); report: {}",
                100.0 * v.max_relative_error,
                100.0 * tailgate_sim::validate::TOLERANCE,
                report.display()
            );
            if !v.passed {
                anyhow::bail!("the sim is off by more than the tolerance");
            }
            Ok(())
        }
        Command::Calibrate { file, pin_cpu } => {
            let loadtest = tailgate_sim::calibrate::loadtest_next_to_me();
            let model = tailgate_sim::calibrate::calibrate(&file, &loadtest, pin_cpu)?;
            for (key, value) in model.fields() {
                out!("{key}: {value}");
            }
            eprintln!("wrote {}", file.display());
            Ok(())
        }
    }
}

fn write_reports(
    r: &Report,
    json: &Path,
    html: &Path,
    svg_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(dir) = svg_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (_, file, svg) in tailgate_sim::report::charts(r) {
            std::fs::write(dir.join(file), svg)
                .with_context(|| format!("writing {file} in {}", dir.display()))?;
        }
    }
    std::fs::write(json, serde_json::to_string_pretty(r)?)
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(html, tailgate_sim::report::html(r))
        .with_context(|| format!("writing {}", html.display()))?;
    eprintln!("reports: {} and {}", json.display(), html.display());
    Ok(())
}

fn one_line(r: &Report) -> String {
    format!(
        "{}: {:.3}% of kept traces incomplete, {:.4}% of spans lost, {:.3}% refused; gateway CPU p99 {:.0}%, RSS max {:.0} MiB; recommended {} gateways",
        r.scenario,
        100.0 * r.traces.incomplete_share,
        100.0 * r.spans.lost() / r.spans.sent.max(1.0),
        100.0 * r.spans.refused / r.spans.sent.max(1.0),
        100.0 * r.gateway_cpu.p99,
        r.gateway_rss_bytes.max / 1048576.0,
        r.recommended_gateways
    )
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar() -> impl FnMut(usize, usize) {
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            let width = 30;
            let filled = width * done / total.max(1);
            eprint!(
                "\r[{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
        }
    }
}

fn finish_progress() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}
