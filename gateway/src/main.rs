//! `tailgate-gateway`: args → load and validate config and policies → bind → run until
//! SIGTERM, then decide everything buffered and flush.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tailgate_core::receive::Listeners;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

/// Tail-sampling gateway: buffers whole traces, decides each one after `decision_wait` with
/// policies in the OpenTelemetry Collector's tail_sampling syntax, exports the kept ones.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    /// Gateway config file (YAML): receive, buffer, export, admin. See docs/configuration.md.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Policy file: the body of a Collector `tail_sampling:` block (or the block itself).
    #[arg(short, long, value_name = "FILE")]
    policies: Option<PathBuf>,
    /// Validate both files and exit: 0 when valid, 64 when not.
    #[arg(long)]
    check: bool,
    /// How often the policy file is checked for changes (it also reloads on SIGHUP).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// Longest time to decide and flush buffered traces after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = humantime::parse_duration)]
    drain_deadline: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy file and print the compiled plan in plain words.
    CheckPolicies {
        /// The policy file.
        file: PathBuf,
    },
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(Command::CheckPolicies { file }) = &args.command {
        return match PolicyFile::load(file) {
            Ok(f) => {
                use std::io::Write as _;
                let text = PolicyPlan::compile(&f).describe();
                match std::io::stdout().lock().write_all(text.as_bytes()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_USAGE)
            }
        };
    }
    let (Some(config_path), Some(policies_path)) = (&args.config, &args.policies) else {
        eprintln!("error: --config FILE and --policies FILE are both required (see --help)");
        return ExitCode::from(EX_USAGE);
    };
    let config = match GatewayConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let policies = match PolicyFile::load(policies_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: invalid policies: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for note in &policies.ignored_options {
        tracing::warn!(option = %note, "Collector option accepted but not applied.");
    }
    if args.check {
        eprintln!(
            "{}: ok\n{}: ok",
            config_path.display(),
            policies_path.display()
        );
        return ExitCode::SUCCESS;
    }
    match run(
        config,
        policies,
        policies_path.clone(),
        args.reload_interval,
        args.drain_deadline,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(
    config: GatewayConfig,
    policies: PolicyFile,
    policies_path: PathBuf,
    reload_interval: Duration,
    drain: Duration,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.receive).await?;
    let admin = match config.admin {
        Some(a) => Some(tailgate_core::receive::bind("admin", a).await?),
        None => None,
    };
    let plan = PolicyPlan::compile(&policies);
    tracing::info!(grpc = ?listeners.grpc_addr(), http = ?listeners.http_addr(), policies = plan.names().len(), decision_wait = ?plan.decision_wait, "Gateway listening.");
    let gateway = Gateway::start(&config, plan).context("starting the pipeline")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(tailgate_core::shutdown::on_signal(
        shutdown.clone(),
        "deciding buffered traces and flushing exports",
    ));
    gateway.watch_policies(policies_path, reload_interval, shutdown.clone());
    gateway
        .serve(listeners, admin, shutdown, drain)
        .await
        .context("serving")?;
    Ok(())
}
