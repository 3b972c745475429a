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

/// jemalloc instead of the system allocator: with a million traces buffered, glibc's
/// frees (coalescing into a fragmented heap) and refills were 14-18% of the gateway's CPU
/// (docs/benchmarks.md, "jemalloc as the gateway's allocator"). Tuned, when needed,
/// through `_RJEM_MALLOC_CONF` (its symbols are prefixed).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tail-sampling gateway: buffers whole traces, decides each one after `decision_wait` with
/// policies in the OpenTelemetry Collector's tail_sampling syntax, exports the kept ones.
#[derive(Debug, Parser)]
#[command(
    version = tailgate_core::telemetry::VERSION,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Environment: HTTPS_PROXY, HTTP_PROXY and NO_PROXY route exporters through an HTTP proxy \
                  as in the Collector (an otlphttp exporter's proxy_url overrides them; --check names the \
                  proxy each exporter takes). See docs/configuration.md, \"Proxies\".\n\
                  The sigv4auth extension reads AWS credentials as the AWS SDKs do (AWS_ACCESS_KEY_ID, \
                  AWS_PROFILE, AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*, \
                  instance metadata; AWS_ENDPOINT_URL_STS), googleclientauth Google's Application Default \
                  Credentials (GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_CLOUD_PROJECT, the metadata server); \
                  --check names the source each takes.\n\
                  Logs go to stderr at info; RUST_LOG sets the level (RUST_LOG=debug, or \
                  RUST_LOG=tailgate_gateway=debug,info). See docs/operations.md.\n\
                  Policies decide as the tail_sampling processor of the OpenTelemetry Collector v0.161; \
                  docs/policies.md lists every departure.\n\
                  Exit codes: 0 ok; 64 a config or policy file missing, unreadable or invalid (--check, check-policies, \
                  explain, and at start), or a file explain reads; 2 a command line the parser refuses; 1 a \
                  failure while running (a port taken, say; explain: the trace asked for is not in the file)."
)]
struct Args {
    /// Gateway config file (YAML): receive, buffer, export, admin (docs/configuration.md); or the whole config of a Collector running tail_sampling, read for its pipeline's otlp receiver, exporters and extensions (following forward connectors between pipelines), and then also the policy file unless --policies is given (--check names what is not applied, and warns of what a backend would no longer get).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Policy file: the body of a Collector `tail_sampling:` block, the block itself, or a
    /// whole Collector config (its tail_sampling processor is used, the rest ignored).
    #[arg(short, long, value_name = "FILE")]
    policies: Option<PathBuf>,
    /// In a whole Collector config with several tail_sampling processors, the one to use
    /// (`NAME` for `tail_sampling/NAME`).
    #[arg(long, value_name = "NAME")]
    processor: Option<String>,
    /// Validate the files given (--config, --policies or both) and exit: 0 and `FILE: ok` per file on stdout when valid, 64 and the error on stderr when not (warnings, and the most memory the config lets the gateway use with this machine's worker threads, term by term, on stderr).
    #[arg(long)]
    check: bool,
    /// Worker threads (default: TOKIO_WORKER_THREADS, else one per core). The buffer runs a
    /// shard per worker thread unless `buffer.shards` says otherwise, and `--check` counts
    /// the memory bound with these threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// How often the policy file is checked for changes (it also reloads on SIGHUP; 0:
    /// on SIGHUP only).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// Longest time from SIGTERM to exit: with peers, leave the ring, hand buffered traces
    /// to their new owners and linger (`peers.leave_linger`); then decide what is left and
    /// flush the exporters. Keep it under Kubernetes' terminationGracePeriodSeconds.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = humantime::parse_duration)]
    drain_deadline: Duration,
    /// When the drain deadline passed with spans still unsettled (counted in
    /// tailgate_gateway_drain_lost_spans_total), keep /metrics up until one more scrape, at
    /// most this long, so the loss reaches your alerts; 0 exits at once. Set it a few
    /// seconds above the scrape interval (equal to it, a scrape just before the deadline can
    /// be the last one answered: k8s/ waits 20s for 15s), and terminationGracePeriodSeconds
    /// above the drain deadline plus it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    final_scrape_wait: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy file and print the compiled plan in plain words.
    CheckPolicies {
        /// The policy file.
        #[arg(
            value_name = "FILE",
            required_unless_present = "policies",
            conflicts_with = "policies"
        )]
        file: Option<PathBuf>,
        /// The policy file, named as `explain` and the server take it.
        #[arg(long, value_name = "FILE")]
        policies: Option<PathBuf>,
        /// The tail_sampling processor to use from a whole Collector config.
        #[arg(long, value_name = "NAME")]
        processor: Option<String>,
    },
    /// Replay recorded traces through a policy file: per policy, the traces and spans it
    /// keeps, the overall keep share, and for one trace which policy decided and why.
    Explain {
        /// The policy file.
        #[arg(long, value_name = "FILE")]
        policies: PathBuf,
        /// Recorded traces: OTLP JSON, one ExportTraceServiceRequest per line (as the
        /// `file` and `debug` exporters write them).
        #[arg(long, value_name = "FILE")]
        traces: PathBuf,
        /// Explain this trace (32 hex digits) policy by policy.
        #[arg(long, value_name = "HEX")]
        trace_id: Option<String>,
        /// The tail_sampling processor to use from a whole Collector config.
        #[arg(long, value_name = "NAME")]
        processor: Option<String>,
        /// The most of `--traces` read, in MiB: every trace of the file is held in memory
        /// while it is replayed (a few times its size), so a larger file is refused rather
        /// than read until memory runs out. Cut a large recording with `head -n`, or keep
        /// the lines of one trace with `grep`.
        #[arg(long, value_name = "MIB", default_value_t = 1024)]
        max_traces_mib: u64,
    },
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    tailgate_core::telemetry::init_logging("info");
    let args = Args::parse();
    if let Some(threads) = args.threads {
        // What the runtime, the shard count and the memory bound all read: set here, while
        // this is the process's only thread (nothing reads the environment concurrently).
        std::env::set_var("TOKIO_WORKER_THREADS", threads.to_string());
    }
    if let Some(Command::Explain {
        policies,
        traces,
        trace_id,
        processor,
        max_traces_mib,
    }) = &args.command
    {
        return explain(
            policies,
            processor.as_deref(),
            traces,
            trace_id.as_deref(),
            *max_traces_mib,
        );
    }
    if let Some(Command::CheckPolicies {
        file,
        policies,
        processor,
    }) = &args.command
    {
        // clap requires one of the two.
        if let Some(file) = file.as_ref().or(policies.as_ref()) {
            return check_policies(file, processor.as_deref());
        }
    }
    let usage = || {
        eprintln!(
            "error: give --config FILE and --policies FILE (both to run; --check takes either or both; a whole Collector config as --config is its own policy file; see --help)"
        );
        ExitCode::from(EX_USAGE)
    };
    let config_path = match (&args.config, &args.policies) {
        (Some(c), _) => c,
        (None, Some(p)) if args.check => return check_policies_only(p, args.processor.as_deref()),
        _ => return usage(),
    };
    if args.check {
        tailgate_core::config::check_only();
    }
    let mut loaded = match GatewayConfig::load_noted(config_path, args.processor.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    loaded.notes.extend(tailgate_core::config::check_notes());
    let policies_path = match &args.policies {
        Some(p) => p,
        // The Collector config's own tail_sampling processor.
        None if loaded.whole_collector_config => config_path,
        None if args.check => return check_config_only(config_path, &loaded),
        None => return usage(),
    };
    let (config, mut read_notes, read_warnings) = (loaded.config, loaded.notes, loaded.warnings);
    if loaded.whole_collector_config && policies_path == config_path {
        read_notes.push(
            "the file's tail_sampling processor reloads when it changes; its receiver, exporters and extensions are read at start only (restart to apply a change there)".into(),
        );
    }
    if loaded.whole_collector_config && policies_path != config_path {
        read_notes.push(format!(
            "the Collector config's own tail_sampling processor is not used: the policies are {}'s",
            policies_path.display()
        ));
    }
    // The config's own text when it is the policy file too: read once.
    let read_policies = if policies_path == config_path {
        PolicyFile::parse_processor(policies_path, &loaded.text, args.processor.as_deref())
    } else {
        PolicyFile::load_processor(policies_path, args.processor.as_deref())
    };
    let policies = match read_policies {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: invalid policies: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    // The policy file's decision_cache replaces the config's, as the shards are sized, so
    // the memory the config allows counts the cache they make.
    let mut config = config;
    if let Some(entries) = policies.decision_cache_size() {
        config.buffer.decision_cache_size = entries;
    }
    if !args.check {
        let (notes, warnings) = tailgate_gateway::policy::messages(&policies);
        for note in notes {
            tracing::info!(%note, "Policy file read.");
        }
        for note in warnings {
            tracing::warn!(%note, "Policy file read with a warning.");
        }
    }
    let mut warnings = read_warnings;
    warnings.extend(config_warnings(&config));
    if args.check {
        for warning in &warnings {
            eprintln!("{}: warning: {warning}", config_path.display());
        }
        for note in read_notes
            .iter()
            .cloned()
            .chain(config_notes(&config, true))
        {
            eprintln!("{}: note: {note}", config_path.display());
        }
        print_policy_warnings(policies_path, &policies);
        if policies_path == config_path {
            return say_ok(&[config_path]);
        }
        return say_ok(&[config_path, policies_path]);
    }
    for warning in &warnings {
        tracing::warn!(%warning, "Config.");
    }
    for note in &read_notes {
        tracing::info!(%note, "Read from a Collector config.");
    }
    for note in config_notes(&config, false) {
        tracing::info!(%note, "Config.");
    }
    let memory = config.memory_note(tailgate_core::memory::worker_threads(None), false);
    tracing::info!(note = ?memory, "Memory this config allows.");
    // A pipe (`--policies <(…)`) is read once: watching it would find it empty, or wait.
    let mut reload_interval = args.reload_interval;
    if !std::fs::metadata(policies_path).is_ok_and(|m| m.is_file()) {
        tracing::info!(
            file = %policies_path.display(),
            "The policy file is no regular file (a pipe?): read once, not watched for changes."
        );
        reload_interval = Duration::ZERO;
    }
    match run(
        config,
        policies,
        tailgate_gateway::reload::PolicySource {
            path: policies_path.clone(),
            processor: args.processor.clone(),
        },
        reload_interval,
        args.drain_deadline,
        args.final_scrape_wait,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `--check` prints and the start logs as notes: each exporter's proxy, each
/// `sigv4auth`'s credentials, and (with `memory`, `--check` only: the start logs it on its
/// own) the memory the config allows with the runtime's worker threads, a line per term.
fn config_notes(config: &GatewayConfig, memory: bool) -> Vec<String> {
    let mut notes = config.export.proxy_notes();
    notes.extend(config.extensions.notes());
    if memory {
        let threads = tailgate_core::memory::worker_threads(None);
        notes.push(config.memory_note(threads, true));
    }
    notes
}

/// `--check --config FILE` alone (the gateway's own config): `FILE: ok` and its warnings.
fn check_config_only(
    path: &std::path::Path,
    loaded: &tailgate_gateway::config::Loaded,
) -> ExitCode {
    let config = &loaded.config;
    for warning in loaded
        .warnings
        .iter()
        .cloned()
        .chain(config_warnings(config))
    {
        eprintln!("{}: warning: {warning}", path.display());
    }
    // The load's notes too: what the check took without verifying it here (listen names
    // that do not resolve, files not on this machine; a review found them left out).
    for note in loaded
        .notes
        .iter()
        .cloned()
        .chain(config_notes(config, true))
    {
        eprintln!("{}: note: {note}", path.display());
    }
    say_ok(&[path])
}

/// `--check --policies FILE` alone: the policy file's errors or `FILE: ok`, the Collector
/// options it accepts without applying as warnings (`check-policies` shows the plan).
fn check_policies_only(path: &std::path::Path, processor: Option<&str>) -> ExitCode {
    match PolicyFile::load_processor(path, processor) {
        Ok(policies) => {
            print_policy_warnings(path, &policies);
            say_ok(&[path])
        }
        Err(e) => {
            eprintln!("error: invalid policies: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// What is worth a warning in a config that loads.
fn config_warnings(config: &GatewayConfig) -> Vec<String> {
    let mut warnings = tailgate_gateway::buffer::sizing_warnings(config);
    warnings.extend(config.receive.warnings());
    warnings.extend(config.warnings());
    warnings.extend(config.peers_warning());
    warnings
}

/// For `--check`: a policy file's warnings (options not applied, processors around
/// `tail_sampling` not run, values that never match) on stderr, with the notes its reading
/// made and those on rules whose Collector semantics changed between versions (as
/// `check-policies` prints them).
fn print_policy_warnings(path: &std::path::Path, policies: &PolicyFile) {
    let (notes, warnings) = tailgate_gateway::policy::messages(policies);
    for note in notes {
        eprintln!("{}: note: {note}", path.display());
    }
    for warning in warnings {
        eprintln!("{}: warning: {warning}", path.display());
    }
}

/// `FILE: ok` per file on stdout, for scripts (warnings stay on stderr).
fn say_ok(paths: &[&std::path::Path]) -> ExitCode {
    let ok: String = paths
        .iter()
        .map(|p| format!("{}: ok\n", p.display()))
        .collect();
    match std::io::Write::write_all(&mut std::io::stdout().lock(), ok.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// The `check-policies` command: the plan as Tailgate reads it, or the error.
fn check_policies(file: &std::path::Path, processor: Option<&str>) -> ExitCode {
    match PolicyFile::load_processor(file, processor) {
        Ok(f) => {
            use std::io::Write as _;
            let (notes, warnings) = tailgate_gateway::policy::messages(&f);
            for note in notes {
                eprintln!("note: {note}");
            }
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
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
    }
}

/// The `explain` command.
fn explain(
    policies: &std::path::Path,
    processor: Option<&str>,
    traces: &std::path::Path,
    trace_id: Option<&str>,
    max_traces_mib: u64,
) -> ExitCode {
    let file = match PolicyFile::load_processor(policies, processor) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let id = match trace_id
        .map(tailgate_gateway::explain::parse_trace_id)
        .transpose()
    {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: --trace-id: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let text = match read_traces(traces, max_traces_mib) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: reading {}: {e}", traces.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    match tailgate_gateway::explain::explain(&file, &text, id) {
        Ok(e) => {
            use std::io::Write as _;
            if std::io::stdout()
                .lock()
                .write_all(e.render().as_bytes())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            if id.is_some() && e.trace.is_none() {
                eprintln!(
                    "error: trace {} is not in {}",
                    trace_id.unwrap_or_default(),
                    traces.display()
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", traces.display());
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `explain`'s recorded traces, refused past `max_mib` MiB (`/dev/zero` or a disk image
/// given by mistake grew until memory ran out).
fn read_traces(path: &std::path::Path, max_mib: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let max = max_mib.saturating_mul(1 << 20);
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max_mib} MiB (--max-traces-mib): explain holds every trace of the file in memory; cut it with `head -n`, or keep one trace's lines with `grep`"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e}): explain reads OTLP/JSON, one request per line"),
        )
    })
}

/// Runs the gateway on a multi-threaded runtime until it has drained. The runtime is then
/// given a second to stop: a blocking read of a secret file on a hung network mount (see
/// `tailgate_core::credential`) would otherwise hold the exit past `--drain-deadline`, as
/// dropping a runtime waits for its blocking tasks without end.
fn run(
    config: GatewayConfig,
    policies: PolicyFile,
    policies_path: tailgate_gateway::reload::PolicySource,
    reload_interval: Duration,
    drain: Duration,
    final_scrape_wait: Duration,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(serve(
        config,
        policies,
        policies_path,
        reload_interval,
        drain,
        final_scrape_wait,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(
    config: GatewayConfig,
    policies: PolicyFile,
    policies_path: tailgate_gateway::reload::PolicySource,
    reload_interval: Duration,
    drain: Duration,
    final_scrape_wait: Duration,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.receive).await?;
    let mut admin = Vec::new();
    if let Some(a) = config.admin {
        admin.push(tailgate_core::receive::bind("admin", a).await?);
    }
    if let Some(m) = config.metrics.filter(|m| Some(*m) != config.admin) {
        admin.push(tailgate_core::receive::bind("metrics", m).await?);
    }
    let plan = PolicyPlan::compile(&policies);
    // Registered before "listening" is logged: a SIGTERM from then on drains.
    let shutdown = CancellationToken::new();
    tokio::spawn(tailgate_core::shutdown::on_signal(
        shutdown.clone(),
        "leaving the ring and handing traces to peers (if any), then deciding buffered traces and flushing exports",
    ));
    tracing::info!(grpc = ?listeners.grpc_addr(), http = ?listeners.http_addr(), tls = ?config.receive.tls_receivers(), policies = plan.names().len(), decision_wait = ?plan.decision_wait, "Gateway listening.");
    let gateway = Gateway::start(&config, plan)
        .context("starting the pipeline")?
        .with_final_scrape_wait(final_scrape_wait);
    gateway.watch_policies(policies_path, reload_interval, shutdown.clone());
    gateway
        .serve(listeners, admin, shutdown, drain)
        .await
        .context("serving")?;
    Ok(())
}
