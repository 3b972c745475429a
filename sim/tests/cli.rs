#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The `tailgate-sim` binary as a user runs it: a scenario from `sim/scenarios`, a sizing
//! question, and a scenario with a mistake.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tailgate-sim"));
    c.current_dir(root());
    c
}

/// Scenario: `run` on the steady example, then `plan` for 100k spans/s.
/// Guarantees: both exit 0 and write a JSON report (span fates adding up), an HTML page
/// with its SVG plots, and the plots as files; `plan` prints its one-line answer.
#[test]
fn run_and_plan_write_their_reports() {
    let dir = std::env::temp_dir().join(format!("tailgate-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = sim()
        .args(["run", "sim/scenarios/steady.yaml", "--report"])
        .arg(dir.join("r.json"))
        .arg("--html")
        .arg(dir.join("r.html"))
        .arg("--svg-dir")
        .arg(dir.join("svg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    let spans = &report["spans_followed"];
    let get = |k: &str| spans[k].as_f64().unwrap();
    assert!(get("sent") > 0.0);
    assert_eq!(get("sent"), get("kept") + get("dropped") + get("refused"));
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    for f in ["rate.svg", "cpu.svg", "rss.svg", "gateways.svg"] {
        assert!(dir.join("svg").join(f).exists(), "{f}");
    }

    // `plan` at 100k spans/s with `args`, its reports as NAME.json and NAME.html.
    let plan_into = |name: &str, args: &[&str]| {
        sim()
            .args(["plan", "--rate", "100k"])
            .args(args)
            .arg("--report")
            .arg(dir.join(format!("{name}.json")))
            .arg("--html")
            .arg(dir.join(format!("{name}.html")))
            .output()
            .unwrap()
    };
    let out = plan_into(
        "p",
        &[
            "--decision-wait",
            "10s",
            "--policies",
            "examples/policies.yaml",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The answer on stdout (`plan … > answer.txt` keeps it), the progress on stderr.
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("100k spans/s with decision_wait 10s:") && answer.contains("gateways"),
        "{answer}"
    );
    assert!(!answer.contains("max_buffered_bytes"), "{answer}");
    assert!(!answer.contains("num_traces"), "{answer}");
    assert!(stderr.contains("run 1:"), "{stderr}");

    // Gateways whose memory holds too little of the wait: sized up until the buffers hold
    // it (a black-box check got a CPU-only answer with 44% of traces decided early).
    let out = plan_into(
        "small",
        &[
            "--decision-wait",
            "10s",
            "--policies",
            "examples/policies.yaml",
            "--gateway-memory-gib",
            "0.25",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let small: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("small.json")).unwrap()).unwrap();
    let early = small["early_decision_share"].as_f64().unwrap();
    assert!(early <= 0.001, "{early} decided early: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("WARNING"));
    assert!(small["gateways"][0].as_u64().unwrap() > 2, "{small}");

    // With the gateways' own config: the buffer it leaves is said; a limit its other terms
    // fill is refused, naming the option.
    let plan_with = |gib: &str| {
        plan_into(
            "p",
            &[
                "--decision-wait",
                "10s",
                "--policies",
                "examples/policies.yaml",
                "--gateway-config",
                "examples/gateway.yaml",
                "--gateway-memory-gib",
                gib,
            ],
        )
    };
    let out = plan_with("4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("; buffer.max_buffered_bytes ") && answer.contains("MiB set aside"),
        "{answer}"
    );

    // A policy file whose num_traces holds too few of the wait's traces: said, with the
    // number to set (100k spans/s of ~16-span traces over 30 s on a few gateways is
    // hundreds of thousands of traces each).
    let few = dir.join("few.yaml");
    std::fs::write(
        &few,
        "decision_wait: 30s\nnum_traces: 5000\npolicies: [{name: all, type: always_sample}]\n",
    )
    .unwrap();
    let out = plan_into("few", &["--policies", few.to_str().unwrap()]);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        answer.contains("WARNING: set num_traces to at least") && answer.contains("it says 5000"),
        "{answer}"
    );
    let out = plan_with("0.25");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--gateway-memory-gib") && stderr.contains("leaves no buffer"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a scenario with a misspelt key, one with a bad rate, one naming a router
/// that does not exist. Guarantees: exit 1 with an error naming the file and the key
/// (and the line for YAML errors), no panic.
#[test]
fn mistakes_are_named_not_panicked_on() {
    let dir = std::env::temp_dir().join(format!("tailgate-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let steady = std::fs::read_to_string(root().join("sim/scenarios/steady.yaml")).unwrap();
    let steady = steady.replace(
        "../../examples/policies.yaml",
        &root().join("examples/policies.yaml").display().to_string(),
    );
    for (text, want) in [
        (steady.replace("routers: 3", "routerz: 3"), "routerz"),
        (
            format!("{steady}events:\n  - {{ at: 10s, kind: stale_router, router: 9 }}\n"),
            "events[0]",
        ),
        // Range errors name their line too (they named the key alone, and the shares
        // and slow_factor together as `workload`).
        (
            steady.replace("gateways: 10", "gateways: 0"),
            "bad.yaml:5: gateways: must be 1 to 10000",
        ),
        (
            steady.replace("routers: 3", "routers: 3\nrouter_cores: 0"),
            "bad.yaml:7: router_cores: cores must be above 0",
        ),
        (
            steady.replace("error_share: 0.01", "error_share: 1.5"),
            "bad.yaml:12: workload.error_share: a share from 0 to 1",
        ),
        (
            format!("{steady}events:\n  - {{ at: 10s, kind: slow, gateway: 2, factor: 0.5, for: 5s }}\n"),
            "bad.yaml:15: events[0]: factor: 1 to 1000",
        ),
        // A distribution's own mistake names its key and line (serde reads `kind:`-tagged
        // values apart from their position: it named `workload` at its first line, where
        // `trace_size` and `duration` both take a `sigma`).
        (
            steady.replace("median: 200ms, sigma: 1.2", "median: 200ms"),
            "workload.duration: missing field `sigma` at line 11",
        ),
        (
            steady.replace("median: 10, sigma: 1.0", "median: 10, sigma: 1.0, mean: 3"),
            "workload.trace_size: unknown field `mean`, expected `median` or `sigma` at line 10",
        ),
        // Events that would do nothing, silently before: a kill past the gateways
        // listed, the only gateway's, a pod's already killed (listed until detected), a
        // scale to the size running, one after the end.
        (
            format!("{steady}events:\n  - {{ at: 20s, kind: kill, gateway: 10 }}\n"),
            "events[0]: gateway: position 10, but 10 gateway(s) are listed then",
        ),
        (
            format!("{}events:\n  - {{ at: 20s, kind: kill, gateway: 0 }}\n", steady.replace("gateways: 10", "gateways: 1")),
            "kills the only gateway",
        ),
        (
            format!("{steady}events:\n  - {{ at: 25s, kind: kill, gateway: 3 }}\n  - {{ at: 20s, kind: kill, gateway: 3 }}\n"),
            "events[0]: gateway: position 3 holds a pod already killed",
        ),
        (
            format!("{steady}events:\n  - {{ at: 20s, kind: scale_up, to: 10 }}\n"),
            "events[0]: to: 10, with 10 gateway(s) running then: it changes nothing",
        ),
        (
            format!("{steady}events:\n  - {{ at: 3m, kind: backend_outage, for: 10s }}\n"),
            "after the run's duration",
        ),
    ] {
        let path = dir.join("bad.yaml");
        std::fs::write(&path, text).unwrap();
        let out = sim().arg("run").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("bad.yaml") && stderr.contains(want),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = sim()
        .args(["plan", "--rate", "fast", "--policies", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a rate"));
    for (args, want) in [
        (
            &["--gateway-cores", "0"][..],
            "--gateway-cores: must be above 0",
        ),
        (
            &["--decision-wait", "0s"][..],
            "--decision-wait: must be above 0",
        ),
        (&["--rate", "1e12"][..], "more than 10000 gateways"),
        (
            &["--decision-wait", "1h"][..],
            "--decision-wait: at most 10m",
        ),
        (
            &["--gateway-memory-gib", "0.1"][..],
            "--gateway-memory-gib: 0.10 GiB leaves no buffer",
        ),
    ] {
        let out = sim()
            .args(["plan", "--policies", "examples/policies.yaml"])
            .args(if args[0] == "--rate" {
                &[][..]
            } else {
                &["--rate", "100k"][..]
            })
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
