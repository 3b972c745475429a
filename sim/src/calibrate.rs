//! `tailgate-sim calibrate`: measures the cost model's constants again from the real
//! binaries (`tailgate-loadtest bench gateway` and `bench router`, built next to this
//! binary) and rewrites the cost model file, keeping its comments (the commands).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::cost::CostModel;

/// Spans per trace of the gateway bench's traces (`bench gateway`).
const BENCH_SPANS_PER_TRACE: f64 = 8.0;
/// Policies of the gateway bench's plan.
const BENCH_POLICIES: f64 = 3.0;

/// Runs the benches and rewrites `file`; returns the new model.
pub fn calibrate(
    file: &Path,
    loadtest: &Path,
    pin_cpu: Option<usize>,
) -> anyhow::Result<CostModel> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let old = CostModel::parse(&file.display().to_string(), &text)?;
    let dir = std::env::temp_dir().join(format!("tailgate-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let gateway = bench(
        loadtest,
        &["bench", "gateway", "--duration", "10s"],
        &dir.join("gateway.json"),
        pin_cpu,
    )?;
    let router = bench(
        loadtest,
        &["bench", "router", "--duration", "8s"],
        &dir.join("router.json"),
        pin_cpu,
    )?;
    let g = first_with(&gateway, "cpu_seconds_per_million_spans", None)?;
    let r = first_with(
        &router,
        "cpu_seconds_per_million_spans",
        Some(("compression", "none")),
    )?;
    let num = |v: &serde_json::Value, k: &str| -> anyhow::Result<f64> {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("the bench report has no {k}"))
    };
    let per_trace = (old.gateway_cpu_per_trace_s + BENCH_POLICIES * old.decide_cpu_per_policy_s)
        / BENCH_SPANS_PER_TRACE;
    let bytes = num(r, "bytes_per_span")?;
    let updates = [
        (
            "gateway_cpu_per_span_s",
            (num(g, "cpu_seconds_per_million_spans")? / 1e6 - per_trace).max(1e-9),
        ),
        (
            "router_cpu_per_span_s",
            num(r, "cpu_seconds_per_million_spans")? / 1e6,
        ),
        ("encoded_bytes_per_span", bytes),
        (
            "rss_bytes_per_buffered_span",
            num(g, "rss_above_base_to_buffered_ratio")? * bytes,
        ),
        ("gateway_base_rss_bytes", num(g, "base_rss_bytes")?),
        ("router_rss_bytes", num(r, "peak_rss_bytes")?),
    ];
    let new_text = CostModel::rewrite(&text, &updates);
    let model = CostModel::parse(&file.display().to_string(), &new_text)?;
    std::fs::write(file, new_text).with_context(|| format!("writing {}", file.display()))?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(model)
}

fn bench(
    loadtest: &Path,
    args: &[&str],
    report: &PathBuf,
    pin_cpu: Option<usize>,
) -> anyhow::Result<serde_json::Value> {
    let mut cmd = Command::new(loadtest);
    cmd.args(args).arg("--report").arg(report);
    if let Some(cpu) = pin_cpu {
        cmd.args(["--pin-cpu", &cpu.to_string()]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", loadtest.display()))?;
    if !status.success() {
        bail!("{} {} failed: {status}", loadtest.display(), args.join(" "));
    }
    let text =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The first object in `v` (an object or a list of them) with `key`, and `filter`'s
/// key equal to its value when given.
fn first_with<'a>(
    v: &'a serde_json::Value,
    key: &str,
    filter: Option<(&str, &str)>,
) -> anyhow::Result<&'a serde_json::Value> {
    let candidates: Vec<&serde_json::Value> = match v {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    candidates
        .into_iter()
        .find(|c| {
            c.get(key).is_some()
                && filter.is_none_or(|(k, want)| c.get(k).and_then(|x| x.as_str()) == Some(want))
        })
        .with_context(|| format!("no result with {key} in the bench report"))
}

/// `tailgate-loadtest` next to this binary.
pub fn loadtest_next_to_me() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tailgate-loadtest")))
        .unwrap_or_else(|| PathBuf::from("tailgate-loadtest"))
}
