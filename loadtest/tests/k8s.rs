#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The Kubernetes manifests as `kubectl kustomize` renders them (base, dev, production):
//! the configs they carry load in the real binaries' parsers with the namespace the pods
//! would see, names resolve, drain timings agree, pods are locked down, and every alert
//! uses metrics the binaries export. Needs `kubectl` (with kustomize), which the machine
//! image provides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use tailgate_core::config::{collector_text, parse_plain_yaml};
use tailgate_gateway::{GatewayConfig, PolicyFile};

use crate::common;
use tailgate_router::RouterConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `kubectl` is here; without it the tests say so and pass, except under CI.
fn kubectl_missing() -> bool {
    let present = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok();
    common::missing(
        present,
        "kubectl is not installed (the machine image carries it)",
    )
}

/// The documents `kubectl kustomize` renders for `dir` (relative to the repository).
fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .expect("kubectl (with kustomize) is needed for the manifests' tests");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(docs: &'a [Value], k: &str, name: &str) -> &'a Value {
    kind(docs, k)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {k} {name}"))
}

/// Reads `text` as the binaries do, with the environment a pod of `namespace` has.
fn as_in_pod<T: serde::de::DeserializeOwned>(name: &str, text: &str, namespace: &str) -> T {
    let env = BTreeMap::from([
        ("POD_NAMESPACE", namespace.to_owned()),
        ("POD_IP", "10.0.0.7".to_owned()),
        ("TAILGATE_PEER_SECRET", "s3cret".to_owned()),
    ]);
    let source = |scheme: &str, var: &str| -> Result<Option<String>, String> {
        assert_eq!(
            scheme, "env",
            "{name}: only ${{env:…}} is available in a pod"
        );
        Ok(Some(env.get(var).cloned().unwrap_or_else(|| {
            panic!("{name}: ${{env:{var}}} is not set in the pod spec")
        })))
    };
    let path = Path::new(name);
    // Shipped configs draw no warning at start (a trial: every one warned of a reference
    // inside a longer unquoted value).
    let notices = tailgate_core::config::collector_text_lenient(text, &source).notices;
    assert!(notices.is_empty(), "{name}: {notices:?}");
    let expanded = collector_text(path, text, &source).unwrap();
    parse_plain_yaml(path, &expanded).unwrap()
}

/// The worker threads the shipped Deployments fix (`TOKIO_WORKER_THREADS`), which their
/// memory limits are sized for (docs/deploy.md).
const NODE_CORES: usize = 8;

/// A memory quantity (`512Mi`, `1Gi`, `1536Mi`) in bytes.
fn memory_quantity(q: &Value) -> u64 {
    let q = q
        .as_str()
        .unwrap_or_else(|| panic!("memory quantity {q:?}"));
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let shift = match unit {
        "Mi" => 20,
        "Gi" => 30,
        other => panic!("unit {other} of {q}"),
    };
    n.parse::<u64>().unwrap() << shift
}

/// The seconds of a `--drain-deadline 30s` argument.
fn drain_deadline(container: &Value) -> u64 {
    flag_seconds(container, "--drain-deadline").unwrap()
}

/// A duration flag's value in a container's args, in seconds, if given.
fn flag_seconds(container: &Value, flag: &str) -> Option<u64> {
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == flag)?;
    Some(humantime::parse_duration(args[at + 1]).unwrap().as_secs())
}

/// Scenario: each overlay rendered, checked by `kubernetes-validate --strict` against the
/// Kubernetes schemas (PyPI; `.ci/python-sdk` installs it). Guarantees: every object is
/// valid, with no unknown field; only the Prometheus Operator's kinds, which it has no
/// schema for, go unchecked (promtool checks the rules).
#[test]
fn every_object_validates_strictly_against_the_kubernetes_schemas() {
    if kubectl_missing() {
        return;
    }
    if Command::new(common::python_tool("kubernetes-validate"))
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "kubernetes-validate is missing under CI: .ci/python-sdk installs it"
        );
        eprintln!("SKIPPED: kubernetes-validate not installed (run .ci/python-sdk)");
        return;
    }
    let dir = tailgate_core::test_util::scratch_dir("kv").unwrap();
    for overlay in [
        "k8s/base",
        "k8s/overlays/dev",
        "k8s/overlays/production",
        "k8s/overlays/production-mtls",
    ] {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join(overlay))
            .output()
            .unwrap();
        let file = dir.join("rendered.yaml");
        std::fs::write(&file, &out.stdout).unwrap();
        let checked = Command::new(common::python_tool("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{overlay}: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

/// Scenario: each of base, dev and production rendered as `kubectl apply -k` would.
/// Guarantees: the configs load with the gateways' DNS name in the pods' own namespace;
/// every ConfigMap and Secret a pod names is in the output (or, for the production
/// Secret, documented); grace periods cover the drain and the final scrape wait (and the router's preStop); pods
/// run as non-root, read-only, with no capabilities and no API token.
#[test]
fn every_overlay_renders_configs_that_load_with_the_pods_namespace() {
    if kubectl_missing() {
        return;
    }
    // The files cert-manager writes into the mTLS overlay's Secrets (tls.crt, tls.key,
    // ca.crt), so that its configs load their certificates as in a pod.
    let tls_dir = cert_manager_files("k8s-overlays");
    // (directory, namespace, gateway replicas (none where an autoscaler owns the count:
    // an apply would reset it, taking several gateways away at once), whether it owns its
    // Namespace object: production's namespace is created by hand and often shared, so
    // the overlay neither labels nor deletes it)
    for (dir, namespace, replicas, owns_namespace) in [
        ("k8s/base", "tailgate", Some(3), true),
        ("k8s/overlays/dev", "tailgate", Some(1), true),
        ("k8s/overlays/production", "observability", None, false),
        ("k8s/overlays/production-mtls", "observability", None, false),
    ] {
        let docs = render(dir);
        let ns = kind(&docs, "Namespace");
        assert_eq!(ns.len(), usize::from(owns_namespace), "{dir}");
        if owns_namespace {
            assert_eq!(ns[0]["metadata"]["name"].as_str(), Some(namespace), "{dir}");
        }
        for doc in docs
            .iter()
            .filter(|d| d["metadata"]["namespace"].is_string())
        {
            assert_eq!(
                doc["metadata"]["namespace"].as_str(),
                Some(namespace),
                "{dir}: {:?}",
                doc["metadata"]["name"]
            );
        }
        let dns = format!("tailgate-gateway.{namespace}.svc.cluster.local");

        let gateway = named(&docs, "Deployment", "tailgate-gateway");
        let router = named(&docs, "Deployment", "tailgate-router");
        assert_eq!(gateway["spec"]["replicas"].as_u64(), replicas, "{dir}");
        if replicas.is_none() {
            assert_eq!(router["spec"]["replicas"].as_u64(), None, "{dir}");
            assert_eq!(kind(&docs, "HorizontalPodAutoscaler").len(), 2, "{dir}");
        }
        // The name of the ConfigMap a deployment mounts as `volume`.
        let config_map = |deployment: &Value, volume: &str| -> String {
            deployment["spec"]["template"]["spec"]["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"].as_str() == Some(volume))
                .unwrap()["configMap"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let config_of = |deployment: &Value, volume: &str, key: &str| -> String {
            named(&docs, "ConfigMap", &config_map(deployment, volume))["data"][key]
                .as_str()
                .unwrap()
                .replace("/etc/tailgate/tls", &tls_dir.display().to_string())
        };
        let mut g: GatewayConfig = as_in_pod(
            "gateway.yaml",
            &config_of(gateway, "config", "gateway.yaml"),
            namespace,
        );
        assert_eq!(g.peers.dns.as_ref().unwrap().name, dns, "{dir}");
        // The gateway names itself by the POD_IP the downward API sets, as in a pod (given
        // here, not set in this process's environment, which other tests share).
        let me = g
            .peers
            .identity(g.receive.grpc, Some("10.0.0.7".to_owned()))
            .unwrap();
        assert_eq!(me.as_str(), "10.0.0.7:4317", "{dir}");
        g.peers.advertise = Some(me.as_str().to_owned());
        g.validate(Path::new("gateway.yaml")).unwrap();
        // deploy.md: the shipped configs take requests of 4 MiB (the default is 16).
        assert_eq!(g.receive.max_request_bytes, 4 << 20, "{dir}");
        // deploy.md: an edit to policies.yaml reaches running pods (its ConfigMap keeps its
        // name and is mounted as a directory, which the kubelet updates); one to
        // gateway.yaml rolls them (its ConfigMap's name carries a hash of its content).
        assert_eq!(
            config_map(gateway, "policies"),
            "tailgate-policies",
            "{dir}"
        );
        let config_name = config_map(gateway, "config");
        assert!(
            config_name.starts_with("tailgate-gateway-config-") && config_name.len() > 24,
            "{dir}: {config_name} carries no content hash"
        );
        let mounts = gateway["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            .as_sequence()
            .unwrap();
        assert!(
            mounts
                .iter()
                .filter(|m| m["name"].as_str() == Some("policies"))
                .all(|m| m["subPath"].is_null()),
            "{dir}: policies mounted by subPath are never updated"
        );
        // Peer traffic has its own port, which the container declares; in production only
        // gateways may reach it, and routers only the receivers.
        let peer_port = g
            .peers
            .listen
            .unwrap_or_else(|| panic!("{dir}: peers.listen"))
            .port();
        let declared = gateway["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["containerPort"].as_u64() == Some(u64::from(peer_port)));
        assert!(declared, "{dir}: peer port {peer_port} not declared");
        if dir.contains("production") {
            let policy = named(&docs, "NetworkPolicy", "tailgate-gateway");
            for rule in policy["spec"]["ingress"].as_sequence().unwrap() {
                let ports: Vec<u64> = rule["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
                    .collect();
                let from: Vec<&str> = rule["from"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| {
                        f["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                    })
                    .collect();
                if ports.contains(&u64::from(peer_port)) {
                    assert_eq!(
                        from,
                        ["tailgate-gateway"],
                        "{dir}: who reaches the peer port"
                    );
                }
                if from.contains(&"tailgate-router") {
                    assert!(!ports.contains(&u64::from(peer_port)), "{dir}");
                }
            }
        }
        PolicyFile::parse(
            Path::new("policies.yaml"),
            &config_of(gateway, "policies", "policies.yaml"),
        )
        .unwrap();
        let r: RouterConfig = as_in_pod(
            "router.yaml",
            &config_of(router, "config", "router.yaml"),
            namespace,
        );
        r.validate(Path::new("router.yaml")).unwrap();
        assert_eq!(r.members.dns.as_ref().unwrap().name, dns, "{dir}");

        for (deployment, pre_stop) in [(gateway, 0), (router, 5)] {
            let spec = &deployment["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
            // The binaries' default final scrape wait is 15 s.
            let final_scrape = flag_seconds(c, "--final-scrape-wait").unwrap_or(15);
            // Longer than the scrape interval, so that a scrape just before the drain's
            // deadline is not the last one the pod answers (a trial: 15 s raced 15 s).
            for monitor in kind(&docs, "PodMonitor") {
                for endpoint in monitor["spec"]["podMetricsEndpoints"]
                    .as_sequence()
                    .unwrap()
                {
                    let interval = endpoint["interval"].as_str().unwrap();
                    let interval: u64 = interval.trim_end_matches('s').parse().unwrap();
                    assert!(
                        final_scrape >= interval + 5,
                        "{dir}: {final_scrape}s vs {interval}s"
                    );
                }
            }
            // Worker threads fixed, so that the memory bound below holds on any node.
            let threads = c["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"].as_str() == Some("TOKIO_WORKER_THREADS"))
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{dir}: TOKIO_WORKER_THREADS"));
            assert_eq!(threads, NODE_CORES.to_string(), "{dir}");
            assert!(
                grace > drain_deadline(c) + pre_stop + final_scrape,
                "{dir}: grace {grace}s must cover preStop, the drain and the final scrape wait"
            );
            assert_eq!(
                c["lifecycle"]["preStop"]["sleep"]["seconds"]
                    .as_u64()
                    .unwrap_or(0),
                pre_stop,
                "{dir}"
            );
            assert_eq!(
                spec["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true)
            );
            assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{dir}");
            assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
            assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
            assert_eq!(
                c["image"].as_str(),
                Some(concat!("tailgate:", env!("CARGO_PKG_VERSION"))),
                "{dir}: the image tag follows the crate version"
            );
        }
        // The memory limits cover what the configs allow with senders that are not trusted
        // (`--check` prints it): on nodes of up to NODE_CORES cores (a worker thread per
        // core), the routers' with as many gateways as may run.
        let most_gateways = kind(&docs, "HorizontalPodAutoscaler")
            .iter()
            .find(|h| h["metadata"]["name"].as_str() == Some("tailgate-gateway"))
            .map_or(replicas.unwrap_or(1), |h| {
                h["spec"]["maxReplicas"].as_u64().unwrap()
            });
        for (deployment, bound) in [
            (gateway, g.memory_bound(NODE_CORES)),
            (router, r.memory_bound(most_gateways as usize, NODE_CORES)),
        ] {
            let c = &deployment["spec"]["template"]["spec"]["containers"][0];
            let limit = memory_quantity(&c["resources"]["limits"]["memory"]);
            assert!(
                bound.total() <= limit,
                "{dir}: {} limit {limit} below {bound:#}",
                deployment["metadata"]["name"].as_str().unwrap()
            );
        }
        if dir == "k8s/overlays/production" {
            // docs/deploy.md's figures: a router ~1.7 GiB (30 gateways, 8 cores), a gateway
            // ~1,699 MiB on 8 cores.
            let mib = |b: u64| b.div_ceil(1 << 20);
            assert_eq!(mib(r.memory_bound(30, NODE_CORES).total()), 1752);
            assert_eq!(mib(r.memory_bound(1, NODE_CORES).total()), 1200);
            assert_eq!(mib(g.memory_bound(NODE_CORES).total()), 1699);
        }
        // Services select their Deployment's pods and name ports the containers have.
        for (service, deployment) in [("tailgate-gateway", gateway), ("tailgate-router", router)] {
            let svc = named(&docs, "Service", service);
            let labels = &deployment["spec"]["template"]["metadata"]["labels"];
            for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
                assert_eq!(&labels[k.as_str().unwrap()], v, "{dir}: {service} selector");
            }
            let ports: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for p in svc["spec"]["ports"].as_sequence().unwrap() {
                let target = p["targetPort"].as_str().unwrap();
                assert!(ports.contains(&target), "{dir}: {service} port {target}");
            }
        }
        // The peer secret: generated in dev; created by the operator elsewhere.
        let secrets = kind(&docs, "Secret");
        if dir.ends_with("dev") {
            assert_eq!(
                secrets[0]["metadata"]["name"].as_str(),
                Some("tailgate-peer")
            );
        } else {
            assert!(secrets.is_empty(), "{dir}: no secret is committed");
        }
    }
}

/// Writes a CA and a certificate as cert-manager writes a Certificate's Secret (`tls.crt`,
/// `tls.key`, `ca.crt`) into a new directory; returns it (removed when dropped).
fn cert_manager_files(label: &str) -> tailgate_core::test_util::ScratchDir {
    let dir = tailgate_core::test_util::scratch_dir(label).unwrap();
    let pki = tailgate_core::test_util::TestPki::new(&dir, "ca").unwrap();
    pki.issue("tls", &["tailgate-gateway.observability.svc"])
        .unwrap();
    dir
}

/// The `dnsNames` of the cert-manager Certificate whose Secret a Deployment mounts as
/// its `tls` volume.
fn mounted_dns_names(docs: &[Value], deployment: &Value) -> Vec<String> {
    let secret = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .expect("a tls volume")["secret"]["secretName"]
        .as_str()
        .unwrap();
    let cert = kind(docs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"].as_str() == Some(secret))
        .unwrap_or_else(|| panic!("no Certificate makes Secret {secret}"));
    cert["spec"]["dnsNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Scenario: the production-mtls overlay: cert-manager certificates for routers and
/// gateways, mounted into each Deployment, and configs with TLS on both hops.
/// Guarantees: the gateways require client certificates; the name the routers and the
/// gateways dial (`server_name_override`) is on the gateways' certificate; the gateways'
/// certificate is a peer's (`peers.cert_names`) and the routers' is not, so a router
/// cannot send peer requests; certificates are issued from one CA and renewed before
/// they expire.
#[test]
fn production_mtls_wires_certificates_to_every_cluster_hop() {
    if kubectl_missing() {
        return;
    }
    let docs = render("k8s/overlays/production-mtls");
    let config = |deployment: &str, file: &str| {
        let spec = &named(&docs, "Deployment", deployment)["spec"]["template"]["spec"];
        let cm = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some("config"))
            .unwrap()["configMap"]["name"]
            .as_str()
            .unwrap();
        named(&docs, "ConfigMap", cm)["data"][file]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let g: GatewayConfig = as_in_pod(
        "gateway.yaml",
        &config("tailgate-gateway", "gateway.yaml"),
        "observability",
    );
    let r: RouterConfig = as_in_pod(
        "router.yaml",
        &config("tailgate-router", "router.yaml"),
        "observability",
    );
    let gateway_names = mounted_dns_names(&docs, named(&docs, "Deployment", "tailgate-gateway"));
    let router_names = mounted_dns_names(&docs, named(&docs, "Deployment", "tailgate-router"));
    let receive_tls = g.receive.tls.as_ref().expect("gateway receive.tls");
    assert!(
        receive_tls.client_ca_file.is_some(),
        "mutual TLS on the gateways"
    );
    assert!(!g.peers.cert_names.is_empty());
    for name in &g.peers.cert_names {
        assert!(
            gateway_names.contains(name),
            "{name} not on {gateway_names:?}"
        );
        assert!(
            !router_names.contains(name),
            "a router's certificate would be a peer's"
        );
    }
    for (what, tls) in [
        ("peers.tls", g.peers.tls.as_ref()),
        ("forward.tls", r.forward.tls.as_ref()),
    ] {
        let tls = tls.unwrap_or_else(|| panic!("{what}"));
        assert!(tls.cert_file.is_some(), "{what}: a client certificate");
        let name = tls.server_name_override.clone().unwrap_or_default();
        assert!(gateway_names.contains(&name), "{what} dials {name:?}");
    }
    for cert in kind(&docs, "Certificate") {
        let spec = &cert["spec"];
        if spec["isCA"].as_bool() == Some(true) {
            continue;
        }
        assert_eq!(spec["issuerRef"]["name"].as_str(), Some("tailgate-ca"));
        assert!(spec["renewBefore"].as_str().is_some(), "{cert:?}");
    }
}

/// Scenario: the production overlay. Guarantees: budgets, autoscalers (the gateways'
/// scale-down one pod at a time, slowly), NetworkPolicies and monitors are there, and
/// every alert expression names only metrics the router and gateway export.
#[test]
fn production_has_budgets_autoscaling_fences_and_alerts_on_real_metrics() {
    if kubectl_missing() {
        return;
    }
    let docs = render("k8s/overlays/production");
    assert_eq!(kind(&docs, "PodDisruptionBudget").len(), 2);
    assert_eq!(kind(&docs, "NetworkPolicy").len(), 2);
    assert_eq!(kind(&docs, "PodMonitor").len(), 1);
    let hpa = named(&docs, "HorizontalPodAutoscaler", "tailgate-gateway");
    let down = &hpa["spec"]["behavior"]["scaleDown"];
    assert_eq!(down["policies"][0]["value"].as_u64(), Some(1));
    assert!(down["stabilizationWindowSeconds"].as_u64().unwrap() >= 300);
    let gateway = named(&docs, "Deployment", "tailgate-gateway");
    let spec = &gateway["spec"]["template"]["spec"];
    assert_eq!(spec["priorityClassName"].as_str(), Some("tailgate"));
    assert!(
        spec["topologySpreadConstraints"]
            .as_sequence()
            .unwrap()
            .len()
            >= 2
    );

    // A gateway with one exporter renders every series (per-exporter ones need one).
    let gateway_stats = tailgate_gateway::metrics::GatewayStats::default();
    gateway_stats.set_exporters(vec![std::sync::Arc::new(
        tailgate_gateway::metrics::ExporterStats::new("otlp", 0),
    )]);
    // Per-policy series appear once a policy has kept a trace.
    let policies = ["errors".to_owned()];
    gateway_stats.set_policy_names(&policies);
    let mut tally = tailgate_gateway::metrics::DecisionTally::default();
    tally.record(Some(0), std::time::Duration::from_millis(1));
    gateway_stats.add_decisions(&mut tally, &policies);
    let mut process = tailgate_core::telemetry::PromText::default();
    tailgate_core::telemetry::render_process_metrics(&mut process);
    tailgate_gateway::metrics::render_reload(
        &mut process,
        &tailgate_gateway::reload::ReloadStats::default(),
    );
    // Per-gateway series of a router with one gateway.
    let forwarder = tailgate_router::metrics::ForwarderStats::default();
    tailgate_router::metrics::render_members(
        &mut process,
        &[tailgate_router::metrics::MemberSample {
            member: "10.0.0.7:4317".into(),
            stats: &forwarder,
            up: true,
            unanswered: 0,
            request_cap: 0,
        }],
    );
    let exported = format!(
        "{}{}{}",
        gateway_stats.render(),
        tailgate_router::metrics::RouterStats::default().render(),
        process.finish()
    );
    let check = |what: &str, expr: &str| {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("tailgate_") || word.starts_with("process_") {
                let series = word.trim_end_matches("_bucket");
                assert!(
                    exported.contains(&format!("# TYPE {series} ")),
                    "{what}: {word} is not exported"
                );
            }
        }
    };
    let rule = named(&docs, "PrometheusRule", "tailgate");
    let mut alerts = 0;
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in group["rules"].as_sequence().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            alerts += 1;
            assert!(r["annotations"]["runbook"].as_str().is_some());
            check(r["alert"].as_str().unwrap(), expr);
        }
    }
    assert!(alerts >= 6);

    // The Grafana dashboard: every query names exported series.
    let dashboard: serde_json::Value = serde_json::from_str(
        named(&docs, "ConfigMap", "tailgate-dashboard")["data"]["dashboard.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries += 1;
            check(
                panel["title"].as_str().unwrap(),
                target["expr"].as_str().unwrap(),
            );
        }
    }
    assert!(queries >= 10, "{queries}");
}

/// Scenario: the PrometheusRule's groups as a rules file, with `alerts.test.yaml` (a case
/// that fires each alert and a healthy cluster that fires none). Guarantees: `promtool
/// check rules` and `promtool test rules` pass. promtool comes from Debian's `prometheus`
/// package, which `.ci/prometheus` installs; without it the test says so and passes
/// outside CI, and fails under `CI=true`.
#[test]
fn alerts_pass_promtool_check_and_unit_tests() {
    if kubectl_missing() {
        return;
    }
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is missing under CI: .ci/prometheus installs it"
        );
        eprintln!("SKIPPED: promtool not installed (run .ci/prometheus)");
        return;
    }
    let docs = render("k8s/overlays/production");
    let rule = named(&docs, "PrometheusRule", "tailgate");
    let dir = tailgate_core::test_util::scratch_dir("promtool").unwrap();
    let rules =
        serde_yaml_ng::to_string(&BTreeMap::from([("groups", &rule["spec"]["groups"])])).unwrap();
    std::fs::write(dir.join("alerts.rules.yaml"), rules).unwrap();
    std::fs::copy(
        root().join("k8s/overlays/production/alerts.test.yaml"),
        dir.join("alerts.test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "alerts.rules.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether this machine can stand in for a container runtime: root, with `unshare`
/// (util-linux), `ip` (iproute2), `ldd` and `curl`. CI runs as root with all of them.
fn runtime_tools_missing() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tools = ["unshare", "ip", "ldd", "curl"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    common::missing(root && tools, "not root, or unshare/ip/ldd/curl missing")
}

/// A network namespace of this test's own, deleted (with what runs in it) on drop.
struct Netns {
    name: String,
    children: Vec<std::process::Child>,
}

impl Netns {
    fn new(name: String) -> Self {
        Command::new("ip")
            .args(["netns", "del", &name])
            .output()
            .ok();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        let ok = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(ok.success());
        Netns {
            name,
            children: Vec::new(),
        }
    }

    /// The HTTP status of `GET http://127.0.0.1:{port}{path}` inside the namespace, and the
    /// body: the first answer with status `want` (as a probe repeats), or within ten
    /// seconds the last answer.
    fn get(&self, port: u64, path: &str, want: &str) -> (String, String) {
        let mut last = None;
        let url = format!("http://127.0.0.1:{port}{path}");
        for _ in 0..100 {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.name,
                    "curl",
                    "-s",
                    "-w",
                    "\n%{http_code}",
                ])
                .arg(&url)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some((body, code)) = text.rsplit_once('\n') {
                if code == want {
                    return (code.to_owned(), body.to_owned());
                }
                if code != "000" {
                    last = Some((code.to_owned(), body.to_owned()));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        last.unwrap_or_else(|| panic!("nothing answered {url} within ten seconds"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            c.kill().ok();
            c.wait().ok();
        }
        Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
            .ok();
    }
}

/// Copies `bin` and the shared libraries `ldd` names for it into `root`, at their paths:
/// what the distroless `cc` base gives a binary (glibc, libgcc).
fn install_binary(root: &Path, bin: &Path, name: &str) {
    let dest = root.join("usr/local/bin").join(name);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(bin, &dest).unwrap();
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(lib) = lib.filter(|p| p.starts_with('/')) {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
    }
}

/// The value a pod's environment variable gets from the rendered objects.
fn env_value(docs: &[Value], namespace: &str, var: &Value) -> String {
    if let Some(v) = var["value"].as_str() {
        return v.to_owned();
    }
    let from = &var["valueFrom"];
    match from["fieldRef"]["fieldPath"].as_str() {
        Some("metadata.namespace") => return namespace.to_owned(),
        // The pod's address: here the namespace's loopback, where its ports are.
        Some("status.podIP") => return "127.0.0.1".to_owned(),
        _ => {}
    }
    let key = &from["secretKeyRef"];
    let secret = named(docs, "Secret", key["name"].as_str().unwrap());
    let k = key["key"].as_str().unwrap();
    if let Some(v) = secret["stringData"][k].as_str() {
        return v.to_owned();
    }
    let encoded = secret["data"][k].as_str().unwrap();
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(encoded.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// Writes each ConfigMap volume the container mounts into `root` at its mountPath.
fn mount_config_maps(root: &Path, docs: &[Value], pod: &Value, container: &Value) {
    for mount in container["volumeMounts"].as_sequence().unwrap() {
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let Some(map) = volume["configMap"]["name"].as_str() else {
            continue;
        };
        let dir = root.join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, text) in named(docs, "ConfigMap", map)["data"].as_mapping().unwrap() {
            std::fs::write(dir.join(key.as_str().unwrap()), text.as_str().unwrap()).unwrap();
        }
    }
}

/// The port number a probe's named port stands for.
fn probe_port(container: &Value, probe: &str) -> (u64, String) {
    let get = &container[probe]["httpGet"];
    let port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == get["port"])
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();
    (port, get["path"].as_str().unwrap().to_owned())
}

/// Scenario: no container engine runs here, so the test builds the layout the Dockerfile
/// describes (both binaries in /usr/local/bin with the shared libraries the distroless
/// base gives, the ConfigMaps of the dev overlay at their mount paths, the resolv.conf the
/// kubelet writes) and runs each Deployment's container from it as the image would: its
/// root directory that tree, the Dockerfile's user 65532, the manifest's `args` as the
/// command (no ENTRYPOINT), the manifest's environment, in a network namespace of its own.
/// Guarantees: both binaries start from the manifests' args and config files alone, answer
/// their liveness and metrics ports, the gateway its readiness probe (the router is not
/// ready while DNS finds no gateway, as the manifests intend), and both exit 0 on SIGTERM.
#[test]
fn the_image_layout_runs_both_binaries_with_the_manifests_args() {
    if kubectl_missing() || runtime_tools_missing() {
        return;
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in [
        "COPY --from=build /out/ /usr/local/bin/",
        "USER 65532:65532",
    ] {
        assert!(
            dockerfile.contains(line),
            "the Dockerfile no longer says {line:?}"
        );
    }
    let (gateway_bin, router_bin) = common::binaries();
    let image = tailgate_core::test_util::scratch_dir("image").unwrap();
    install_binary(&image, &gateway_bin, "tailgate-gateway");
    install_binary(&image, &router_bin, "tailgate-router");
    std::fs::create_dir_all(image.join("etc")).unwrap();
    std::fs::write(image.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();

    let docs = render("k8s/overlays/dev");
    // One network namespace per pod, as Kubernetes gives each pod its own.
    let mut pods = Vec::new();
    for (i, deployment) in ["tailgate-gateway", "tailgate-router"]
        .into_iter()
        .enumerate()
    {
        let mut ns = Netns::new(format!("tgimg{}-{i}", std::process::id()));
        let d = named(&docs, "Deployment", deployment);
        let namespace = d["metadata"]["namespace"].as_str().unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        mount_config_maps(&image, &docs, pod, container);
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "unshare", "--root"])
            .arg(&*image)
            .args(["--setuid", "65532", "--setgid", "65532", "--"])
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(image.join(format!("{deployment}.log"))).unwrap());
        for var in container["env"].as_sequence().into_iter().flatten() {
            cmd.env(
                var["name"].as_str().unwrap(),
                env_value(&docs, namespace, var),
            );
        }
        ns.children.push(cmd.spawn().unwrap());
        pods.push((deployment, container.clone(), ns));
    }
    for (deployment, container, ns) in &pods {
        let (port, path) = probe_port(container, "livenessProbe");
        assert_eq!(ns.get(port, &path, "200").0, "200", "{deployment} liveness");
        let (port, path) = probe_port(container, "readinessProbe");
        let want = if *deployment == "tailgate-gateway" {
            "200"
        } else {
            "503"
        };
        let log = || std::fs::read_to_string(image.join(format!("{deployment}.log"))).unwrap();
        assert_eq!(
            ns.get(port, &path, want).0,
            want,
            "{deployment} readiness; its log:\n{}",
            log()
        );
        let metrics = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "metrics")
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap();
        let (code, body) = ns.get(metrics, "/metrics", "200");
        assert_eq!(code, "200");
        assert!(
            body.contains("tailgate_build_info{"),
            "{deployment}: {body}"
        );
    }
    for child in pods.iter().flat_map(|(_, _, ns)| &ns.children) {
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    for (deployment, _, ns) in &mut pods {
        let child = &mut ns.children[0];
        // Bounded: 400 polls 100 ms apart, 40 s, past the 30 s drain deadline.
        let status = (0..400)
            .find_map(|_| {
                let exited = child.try_wait().unwrap();
                if exited.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                exited
            })
            .unwrap_or_else(|| panic!("{deployment} did not exit within 40 s of SIGTERM"));
        assert!(status.success(), "{deployment} exited with {status}");
    }
}
