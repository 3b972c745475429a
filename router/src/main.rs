//! `tailgate-router`: args → load and validate config → bind → run until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tailgate_core::memory::worker_threads;
use tailgate_core::receive::Listeners;
use tailgate_router::{Router, RouterConfig};
use tokio_util::sync::CancellationToken;

/// jemalloc instead of the system allocator, as the gateway: glibc's malloc gives each
/// thread that allocates under contention an arena of its own (up to 8 a core) and keeps
/// their freed pages, so an idle router's RSS grew by tens of MiB with every flood of
/// stalled streams (docs/benchmarks.md, "Session 53"). Tuned, when needed, through
/// `_RJEM_MALLOC_CONF` (its symbols are prefixed).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Receives OTLP traces and forwards every span to the Tailgate gateway that owns its trace
/// (consistent hashing on trace_id), so each gateway sees whole traces.
#[derive(Debug, Parser)]
#[command(
    version = tailgate_core::telemetry::VERSION,
    about,
    after_help = "Logs go to stderr at info; RUST_LOG sets the level (RUST_LOG=debug, or \
                  RUST_LOG=tailgate_router=debug,info). See docs/operations.md.\n\
                  Exit codes: 0 ok; 64 a config file missing, unreadable or invalid (--check, and at start); 2 a \
                  command line the parser refuses; 1 a failure while running (a port taken, say)."
)]
struct Args {
    /// Router config file (YAML): receive, members, forward, admin (docs/configuration.md); or the whole config of a Collector running the load_balancing (or loadbalancing) exporter, read for its otlp receiver, resolver and protocol.otlp (--check names what is not applied, and warns of what a backend would no longer get; docs/migrating.md).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the config file and exit: 0 and `FILE: ok` on stdout when valid, 64 and the error on stderr when not (warnings, and the most memory the config lets the router use, term by term, on stderr).
    #[arg(long)]
    check: bool,
    /// Worker threads (default: TOKIO_WORKER_THREADS, else one per core). One thread per
    /// pinned core avoids cross-core wake-ups.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Longest time to send queued data after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    drain_deadline: std::time::Duration,
    /// When the drain deadline passed with spans still queued (counted in
    /// tailgate_router_failed_spans_total), keep /metrics up until one more scrape, at most
    /// this long, so the loss reaches your alerts; 0 exits at once. Set it a few seconds
    /// above the scrape interval (equal to it, a scrape just before the deadline can be the
    /// last one answered: k8s/ waits 20s for 15s), and terminationGracePeriodSeconds above
    /// preStop, the drain deadline and it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    final_scrape_wait: std::time::Duration,
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    tailgate_core::telemetry::init_logging("info");
    let args = Args::parse();
    if args.check {
        tailgate_core::config::check_only();
    }
    let (config, remarks) = match RouterConfig::load_noted(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut notes = remarks.notes;
    notes.extend(tailgate_core::config::check_notes());
    let mut warnings = remarks.warnings;
    warnings.extend(config.warnings());
    // As the runtime will start them (it reads TOKIO_WORKER_THREADS itself without --threads).
    let threads = worker_threads(args.threads.map(usize::from));
    if args.check {
        for warning in &warnings {
            eprintln!("{}: warning: {warning}", args.config.display());
        }
        for note in &notes {
            eprintln!("{}: note: {note}", args.config.display());
        }
        eprintln!(
            "{}: note: {}",
            args.config.display(),
            config.memory_note(threads, true)
        );
        // The verdict on stdout, for scripts; warnings stay on stderr.
        let ok = format!("{}: ok\n", args.config.display());
        return match std::io::Write::write_all(&mut std::io::stdout().lock(), ok.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    for warning in &warnings {
        tracing::warn!(%warning, "Config.");
    }
    for note in &notes {
        tracing::info!(%note, "Read from a Collector config.");
    }
    let note = config.memory_note(threads, false);
    tracing::info!(?note, "Memory this config allows.");
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if args.threads.is_some() {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.drain_deadline, args.final_scrape_wait)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: RouterConfig,
    drain: std::time::Duration,
    final_scrape_wait: std::time::Duration,
) -> anyhow::Result<()> {
    tokio::spawn(tailgate_core::shutdown::hangup_ignored(
        "the router reads its config only at start; restart it to apply a change",
    )?);
    let listeners = Listeners::bind(&config.receive).await?;
    let mut admin = Vec::new();
    if let Some(a) = config.admin {
        admin.push(tailgate_core::receive::bind("admin", a).await?);
    }
    if let Some(m) = config.metrics.filter(|m| Some(*m) != config.admin) {
        admin.push(tailgate_core::receive::bind("metrics", m).await?);
    }
    let router = Router::new(config.forward.clone());
    router.set_final_scrape_wait(final_scrape_wait);
    let shutdown = CancellationToken::new();
    // Registered before "listening" is logged: a SIGTERM from then on drains.
    tokio::spawn(tailgate_core::shutdown::on_signal(
        shutdown.clone(),
        "finishing open requests and sending queued data",
    ));
    tracing::info!(grpc = ?listeners.grpc_addr(), http = ?listeners.http_addr(), tls = ?config.receive.tls_receivers(), "Router listening.");
    tailgate_router::run(router, &config, listeners, admin, drain, shutdown).await?;
    Ok(())
}
