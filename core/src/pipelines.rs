//! The pipelines of a whole Collector config as a graph joined by `forward` connectors,
//! and what a Tailgate binary serving some of them leaves undone.
//!
//! The router serves the traces pipeline of a `load_balancing` exporter, the gateway the
//! pipelines of a `tail_sampling` processor; each also serves the pipelines that pass
//! those spans through `forward` connectors. Data comes from the parsed config
//! (references expanded); the binaries' readings (router/src/collector.rs,
//! gateway/src/collector_config.rs) ask the [`Graph`] which pipelines feed or follow the
//! served ones and which receivers they take, and [`Graph::side_exits`] puts what the
//! Collector did that the binary will not into [`Translated`]'s notes (a connector
//! computing metrics, a `debug` exporter) and warnings (a backend that got spans and gets
//! none or fewer, a logs pipeline on the same receiver). Mistakes that stop the Collector
//! (an undefined id, a cycle) are refused as there ([`Graph::check`]).

use serde_yaml_ng::Value;

use crate::collector::{
    connector_computes_metrics, err, kind_of, names, TranslateError, Translated,
};

/// One pipeline of `service.pipelines`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline<'a> {
    /// `traces`, `traces/NAME`, `logs/NAME`, …
    pub name: &'a str,
    /// Its receivers (connectors among them), as listed.
    pub receivers: Vec<&'a str>,
    /// Its processors, as listed.
    pub processors: Vec<&'a str>,
    /// Its exporters (connectors among them), as listed.
    pub exporters: Vec<&'a str>,
}

impl Pipeline<'_> {
    /// Its signal: `traces`, `logs`, `metrics`.
    pub fn signal(&self) -> &str {
        kind_of(self.name)
    }

    fn list(&self, key: Side) -> &[&str] {
        match key {
            Side::Receivers => &self.receivers,
            Side::Exporters => &self.exporters,
        }
    }

    /// Its receivers and exporters, each with the end it is listed at.
    fn ends(&self) -> impl Iterator<Item = (Side, &str)> {
        let receivers = self.receivers.iter().map(|r| (Side::Receivers, *r));
        receivers.chain(self.exporters.iter().map(|e| (Side::Exporters, *e)))
    }
}

/// Which end of a pipeline a connector is listed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Receivers,
    Exporters,
}

impl Side {
    /// The other end.
    fn other(self) -> Side {
        match self {
            Side::Receivers => Side::Exporters,
            Side::Exporters => Side::Receivers,
        }
    }

    /// Its key in a pipeline and a config (`receivers`, `exporters`), and one of its
    /// entries in words.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Side::Receivers => ("receivers", "a receiver"),
            Side::Exporters => ("exporters", "an exporter"),
        }
    }
}

/// The pipelines of a Collector config, and its components.
pub struct Graph<'a> {
    top: &'a Value,
    /// Every pipeline, in the file's order.
    pub pipelines: Vec<Pipeline<'a>>,
}

/// What a binary serves of a Collector config, for [`Graph::side_exits`].
pub struct Served<'s> {
    /// `router` or `gateway`, for the messages.
    pub binary: &'s str,
    /// The pipelines it serves from their receivers on: those it replaces and those
    /// passing them spans through forward connectors.
    pub feeding: &'s [&'s str],
    /// Of `feeding`, those whose exporters it takes in its own way (the gateway's sampling
    /// pipelines); the others' exporters got every span from the Collector.
    pub taken: &'s [&'s str],
    /// Pipelines its spans go on to through forward connectors (the gateway's kept spans).
    pub after: &'s [&'s str],
    /// The receivers it takes.
    pub receivers: &'s [&'s str],
    /// The exporters it sends to.
    pub exporters: &'s [&'s str],
    /// Whether it sends `exporters` every span (the router) or fewer (the gateway, kept
    /// traces).
    pub every_span: bool,
    /// What it sends, for the messages: "the router sends every span to its gateways only".
    pub sends: &'s str,
    /// What it reads, for the note naming the pipelines it leaves: "the router reads the
    /// traces pipeline of the load_balancing exporter".
    pub reads: &'s str,
}

impl<'a> Graph<'a> {
    /// The pipelines of `top`, a whole Collector config (none when it has none, or they
    /// are not a mapping; a pipeline's lists that are not lists are read as empty).
    pub fn new(top: &'a Value) -> Self {
        let pipelines = top
            .get("service")
            .and_then(|s| s.get("pipelines"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, p)| {
                Some(Pipeline {
                    name: k.as_str()?,
                    receivers: names(p, "receivers"),
                    processors: names(p, "processors"),
                    exporters: names(p, "exporters"),
                })
            })
            .collect();
        Graph { top, pipelines }
    }

    /// The pipeline `name`.
    pub fn get(&self, name: &str) -> Option<&Pipeline<'a>> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    fn defines(&self, section: &str, id: &str) -> bool {
        self.top.get(section).and_then(|c| c.get(id)).is_some()
    }

    /// Whether `id` is a connector (defined under `connectors:`).
    pub fn is_connector(&self, id: &str) -> bool {
        self.defines("connectors", id)
    }

    /// Whether `id` is a connector that passes spans on unchanged from the traces
    /// pipelines exporting to it to those receiving from it: `forward`, and `datadog`
    /// (which also computes APM stats from them, for a metrics pipeline: Datadog's way of
    /// computing them before sampling).
    pub fn is_forward(&self, id: &str) -> bool {
        matches!(kind_of(id), "forward" | "datadog") && self.is_connector(id)
    }

    /// Whether exporter `id` sends spans somewhere: not a connector, and not one that
    /// prints them or drops them (`debug`, `logging`, `nop`).
    pub fn is_backend(&self, id: &str) -> bool {
        !self.is_connector(id) && !prints_only(id)
    }

    /// Whether what connector `id` computes reaches a backend: a pipeline of another
    /// signal than traces (those get the spans a `datadog` connector passes on) receiving
    /// from it exports somewhere but to `debug`. A connector computing metrics whose
    /// output does is a warning when not run (a backend loses those metrics); one feeding
    /// `debug` only, a note.
    pub fn feeds_a_backend(&self, id: &str) -> bool {
        self.pipelines
            .iter()
            .filter(|p| p.signal() != "traces" && p.receivers.contains(&id))
            .any(|p| p.exporters.iter().any(|e| self.is_backend(e)))
    }

    /// The `tail_sampling` processor pipeline `p` runs of its own, if any, and its name
    /// for `--processor` (`b` of `tail_sampling/b`).
    fn own_sampler<'p>(&self, p: &'p Pipeline<'_>) -> Option<(&'p str, &'p str)> {
        let own = p
            .processors
            .iter()
            .find(|q| kind_of(q) == "tail_sampling" && self.defines("processors", q))?;
        Some((own, own.split_once('/').map_or(*own, |(_, n)| n)))
    }

    /// Pipelines of `signal` listing `id` at `side`.
    fn listing(&self, side: Side, id: &str, signal: &str) -> Vec<&'a str> {
        self.pipelines
            .iter()
            .filter(|p| p.signal() == signal && p.list(side).contains(&id))
            .map(|p| p.name)
            .collect()
    }

    /// Pipelines joined to `start` through forward connectors listed at `via` in a
    /// pipeline reached and at the other end in the next (of the same signal), each once,
    /// in the order found (`start`'s own not among them).
    fn reach(&self, start: &[&str], via: Side) -> Vec<&'a str> {
        let into = via.other();
        let mut looked: Vec<&'a str> = start
            .iter()
            .filter_map(|n| self.get(n))
            .map(|p| p.name)
            .collect();
        let first = looked.len();
        let mut k = 0;
        while let Some(from) = looked.get(k).and_then(|n| self.get(n)) {
            k += 1;
            for c in from.list(via).iter().filter(|c| self.is_forward(c)) {
                for n in self.listing(into, c, from.signal()) {
                    if !looked.contains(&n) {
                        looked.push(n);
                    }
                }
            }
        }
        looked.split_off(first)
    }

    /// Traces pipelines passing `start` spans through forward connectors (every span
    /// reaches them first), nearest first.
    pub fn upstream(&self, start: &[&str]) -> Vec<&'a str> {
        self.reach(start, Side::Receivers)
    }

    /// Traces pipelines `start`'s spans go on to through forward connectors, nearest
    /// first.
    pub fn downstream(&self, start: &[&str]) -> Vec<&'a str> {
        self.reach(start, Side::Exporters)
    }

    /// Refuses what stops the Collector from starting: a pipeline naming a receiver or
    /// exporter that neither its section nor `connectors:` defines, a pipeline without a
    /// receiver or an exporter, a processor listed twice in one, a connector used at
    /// one end only, one passing a signal on (forward, routing, …) between pipelines of
    /// different signals, and forward connectors in a cycle.
    pub fn check(&self) -> Result<(), TranslateError> {
        // A component type the Collector has removed fails its start even unused (no
        // factory for the type): `logging`, removed in v0.111 for `debug`.
        if let Some(id) = self
            .top
            .get("exporters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys().filter_map(Value::as_str))
            .find(|id| kind_of(id) == "logging")
        {
            return Err(err(
                format!("exporters.{id}"),
                "the Collector has no logging exporter since v0.111 and refuses a config defining one, used or not: write debug (with verbosity: basic, detailed or normal)",
            ));
        }
        // `PipelineConfig.Validate` (v0.161), in its order and words.
        for p in &self.pipelines {
            let at = |key: &str| format!("service.pipelines.{}.{key}", p.name);
            if p.receivers.is_empty() {
                return Err(err(
                    at("receivers"),
                    "a pipeline must have at least one receiver (the Collector refuses this too)",
                ));
            }
            if p.exporters.is_empty() {
                return Err(err(
                    at("exporters"),
                    "a pipeline must have at least one exporter (the Collector refuses this too)",
                ));
            }
            if let Some((i, twice)) = p
                .processors
                .iter()
                .enumerate()
                .find(|(i, id)| p.processors[..*i].contains(id))
            {
                return Err(err(
                    format!("{}[{i}]", at("processors")),
                    format!("references processor {twice:?} multiple times (the Collector refuses this too)"),
                ));
            }
        }
        for p in &self.pipelines {
            for (side, id) in p.ends() {
                let (key, one) = side.words();
                let at = || format!("service.pipelines.{}.{key}", p.name);
                if !self.is_connector(id) {
                    if !self.defines(key, id) {
                        return Err(err(at(), format!("{id} is used by the pipeline and defined under neither {key}: nor connectors: (the Collector refuses this too)")));
                    }
                    continue;
                }
                // A connector joins an exporting pipeline to a receiving one: used at one
                // end only, the Collector refuses it.
                let other = side.other();
                if !self.pipelines.iter().any(|q| q.list(other).contains(&id)) {
                    return Err(err(at(), format!("connector {id} is used as {one} in pipeline {} and as {} in none, so nothing would pass through it (the Collector refuses this too)", p.name, other.words().1)));
                }
                // One passing a signal on (forward, routing, failover, round robin) joins
                // pipelines of that signal only.
                let same_signal = matches!(
                    kind_of(id).replace('_', "").as_str(),
                    "forward" | "routing" | "failover" | "roundrobin"
                );
                let joined = self
                    .pipelines
                    .iter()
                    .any(|q| q.signal() == p.signal() && q.list(other).contains(&id));
                if same_signal && !joined {
                    return Err(err(at(), format!("connector {id} passes {} on to pipelines of the same signal, and none of them is at its other end (the Collector refuses this too)", p.signal())));
                }
            }
        }
        for p in &self.pipelines {
            let after = self.downstream(&[p.name]);
            let back = p.receivers.iter().find(|c| {
                self.is_forward(c)
                    && std::iter::once(p.name)
                        .chain(after.iter().copied())
                        .any(|n| self.get(n).is_some_and(|q| q.exporters.contains(c)))
            });
            if let Some(c) = back {
                return Err(err(
                    format!("service.pipelines.{}.receivers", p.name),
                    format!("{c} brings spans from pipeline {} (or one after it) back to it: a cycle, which the Collector refuses too (\"cycle detected\")", p.name),
                ));
            }
        }
        Ok(())
    }

    /// The receivers of the `feeding` pipelines, each once, in order: forward connectors
    /// are followed (the pipelines behind them are among `feeding`, from
    /// [`Graph::upstream`]); another connector is refused, as it chooses which spans come
    /// (`routing`) or makes them.
    pub fn receivers_of(&self, feeding: &[&str]) -> Result<Vec<&'a str>, TranslateError> {
        let mut out = Vec::new();
        for p in feeding.iter().filter_map(|n| self.get(n)) {
            for r in &p.receivers {
                if self.is_forward(r) {
                    continue;
                }
                if self.is_connector(r) {
                    return Err(err(
                        format!("service.pipelines.{}.receivers", p.name),
                        format!("{r} is a connector ({}): the pipeline takes spans from another pipeline through it, and Tailgate follows forward connectors only: give it a config whose pipeline takes its spans from the otlp receiver (or through forward connectors), or write its own (docs/configuration.md)", kind_of(r)),
                    ));
                }
                if !out.contains(r) {
                    out.push(*r);
                }
            }
        }
        Ok(out)
    }

    /// What the Collector did with the spans of the pipelines `served` reads, and the
    /// binary will not: the exporters of the feeding pipelines it does not take, and of
    /// pipelines beside them on a receiver it takes, and the receivers of the pipelines
    /// after it from elsewhere. A connector computing metrics and a `debug` exporter are
    /// notes; a backend or pipeline that gets nothing or fewer spans, a warning.
    pub fn side_exits(&self, served: &Served<'_>, out: &mut Translated) {
        let read = |n: &str| served.feeding.contains(&n) || served.after.contains(&n);
        let beside: Vec<&Pipeline<'a>> = self
            .pipelines
            .iter()
            .filter(|p| !read(p.name) && p.receivers.iter().any(|r| served.receivers.contains(r)))
            .collect();
        let sources = served
            .feeding
            .iter()
            .filter(|n| !served.taken.contains(n))
            .filter_map(|n| self.get(n))
            .chain(beside.iter().copied());
        for p in sources {
            if p.signal() == "traces" {
                self.exits_of(p, served, out);
            } else {
                other_signal(p, served, out);
            }
        }
        let beside: Vec<&str> = beside.iter().map(|p| p.name).collect();
        self.unserved(served, &beside, out);
        self.after_receivers(served, out);
    }

    /// [`Graph::side_exits`] for the pipelines neither read nor `beside` the read ones:
    /// those on receivers of their own.
    fn unserved(&self, served: &Served<'_>, beside: &[&str], out: &mut Translated) {
        let read = |n: &str| served.feeding.contains(&n) || served.after.contains(&n);
        // Pipelines on receivers of their own: a backend they fed gets nothing now, and the
        // senders to them are refused; those fed by connectors alone (a metrics pipeline of
        // `span_metrics`, named above) or printing only are a note.
        let (mut quiet, mut lost) = (Vec::new(), Vec::new());
        for p in &self.pipelines {
            if read(p.name) || beside.contains(&p.name) {
                continue;
            }
            let own: Vec<&str> = p
                .receivers
                .iter()
                .copied()
                .filter(|r| !self.is_connector(r))
                .collect();
            // The backends it reached, itself or through forward connectors.
            let fed: Vec<&str> = std::iter::once(p.name)
                .chain(self.downstream(&[p.name]))
                .filter_map(|n| self.get(n))
                .flat_map(|q| q.exporters.iter().copied())
                .filter(|e| self.is_backend(e))
                .fold(Vec::new(), |mut all, e| {
                    if !all.contains(&e) {
                        all.push(e);
                    }
                    all
                });
            if own.is_empty() || fed.is_empty() {
                quiet.push(p.name);
            } else if let Some((sampling, name)) = self.own_sampler(p) {
                lost.push(format!(
                    "service.pipelines.{}: not taken: {}, so what {} receive is not taken, and none of it reaches {}: pipeline {} runs its own {sampling}: run a gateway for it with --processor {name}",
                    p.name,
                    served.reads,
                    own.join(", "),
                    fed.join(", "),
                    p.name
                ));
            } else {
                lost.push(format!(
                    "service.pipelines.{}: not taken: {}, so what {} receive is not taken, and none of it reaches {}: keep a Collector for that pipeline",
                    p.name,
                    served.reads,
                    own.join(", "),
                    fed.join(", ")
                ));
            }
        }
        if !quiet.is_empty() {
            out.notes.push(format!(
                "service.pipelines: {} not taken: {}",
                quiet.join(", "),
                served.reads
            ));
        }
        out.warnings.append(&mut lost);
    }

    /// [`Graph::side_exits`] for the receivers of the pipelines after the served ones that
    /// take spans from elsewhere.
    fn after_receivers(&self, served: &Served<'_>, out: &mut Translated) {
        let fed = |n: &str| served.taken.contains(&n) || served.after.contains(&n);
        for p in served.after.iter().filter_map(|n| self.get(n)) {
            let elsewhere: Vec<&str> = p
                .receivers
                .iter()
                .copied()
                .filter(|r| {
                    !(self.is_forward(r)
                        && self
                            .listing(Side::Exporters, r, "traces")
                            .iter()
                            .all(|n| fed(n)))
                })
                .collect();
            if !elsewhere.is_empty() {
                out.warnings.push(format!(
                    "service.pipelines.{}.receivers: {} not taken: pipeline {} takes what the {} sends on (through a forward connector) and also what those receive; {}, so what is sent to them is not received: send it to its backend some other way",
                    p.name,
                    elsewhere.join(", "),
                    p.name,
                    served.binary,
                    served.sends
                ));
            }
        }
    }

    /// [`Graph::side_exits`] for the exporters of traces pipeline `p`, which got every span
    /// sent to its receivers (or, with a `tail_sampling` processor of its own, what that
    /// kept).
    fn exits_of(&self, p: &Pipeline<'_>, served: &Served<'_>, out: &mut Translated) {
        let key = format!("service.pipelines.{}.exporters", p.name);
        if let Some((own, name)) = self.own_sampler(p) {
            let lost: Vec<&str> = p
                .exporters
                .iter()
                .copied()
                .filter(|e| !served.exporters.contains(e))
                .collect();
            if !lost.is_empty() {
                out.warnings.push(format!(
                    "{key}: {} not applied: pipeline {} runs its own {own}, and {}: run a gateway for it with --processor {name} and its exporters",
                    lost.join(", "),
                    p.name,
                    served.sends
                ));
            }
            return;
        }
        for e in &p.exporters {
            let connector = self.is_connector(e);
            let passes_on =
                self.is_forward(e) && !self.listing(Side::Receivers, e, "traces").is_empty();
            // A backend that got what the connector computes is told of in a warning.
            let said = if self.feeds_a_backend(e) {
                &mut out.warnings
            } else {
                &mut out.notes
            };
            if passes_on && connector_computes_metrics(e) {
                said.push(format!(
                    "{key}: {e} passes the spans on, and what it computes from every span is not computed: Tailgate runs no connectors; {}",
                    where_to_compute(e)
                ));
            }
            if passes_on {
                let others: Vec<&str> = self
                    .listing(Side::Receivers, e, "traces")
                    .into_iter()
                    .filter(|n| !served.feeding.contains(n))
                    .collect();
                if !others.is_empty() {
                    out.warnings.push(format!(
                        "{key}: {e} not applied to pipelines {}: pipeline {} passes every span to them, and {}, so what they do with every span is not done: do it before the routers (the agents, or a Collector beside the routers)",
                        others.join(", "),
                        p.name,
                        served.sends
                    ));
                }
            } else if connector && connector_computes_metrics(e) {
                said.push(format!(
                    "{key}: {e} not applied: Tailgate runs no connectors, so what it computes from every span is not computed: {}",
                    where_to_compute(e)
                ));
            } else if !connector && prints_only(e) {
                if !served.exporters.contains(e) {
                    out.notes
                        .push(format!("{key}: {e} not applied: {}", served.sends));
                }
            } else if served.exporters.contains(e) {
                if !served.every_span {
                    out.warnings.push(format!(
                        "{key}: {e} gets fewer spans: pipeline {} sends it every span, and {}",
                        p.name, served.sends
                    ));
                }
            } else {
                let what = if connector { "connector" } else { "exporter" };
                out.warnings.push(format!(
                    "{key}: {e} not applied: pipeline {} sends every span to this {what}, and {}, so it gets nothing from the {}: send it every span from before the routers (the agents, or a Collector beside the routers)",
                    p.name, served.sends, served.binary
                ));
            }
        }
    }
}

/// Whether exporter `id` only prints what it gets, or drops it (`debug`, `logging`, `nop`).
fn prints_only(id: &str) -> bool {
    matches!(kind_of(id), "debug" | "logging" | "nop")
}

/// [`Graph::side_exits`] for `p`, a pipeline of another signal on a receiver the binary
/// takes: what is sent there is refused (404 / UNIMPLEMENTED).
fn other_signal(p: &Pipeline<'_>, served: &Served<'_>, out: &mut Translated) {
    let shared: Vec<&str> = p
        .receivers
        .iter()
        .copied()
        .filter(|r| served.receivers.contains(r))
        .collect();
    let refused = format!(
        "the {} receives traces only, so the {} sent to {} are refused",
        served.binary,
        p.signal(),
        shared.join(", ")
    );
    let lost: Vec<&str> = p
        .exporters
        .iter()
        .copied()
        .filter(|e| !prints_only(e))
        .collect();
    if lost.is_empty() {
        out.notes.push(format!(
            "service.pipelines.{}: not taken: {refused}",
            p.name
        ));
    } else {
        out.warnings.push(format!(
            "service.pipelines.{}: not taken: {refused}, and none of them reaches {}: send them to a Collector of their own",
            p.name,
            lost.join(", ")
        ));
    }
}

/// Where to compute what connector `id` computes from every span, once Tailgate takes the
/// spans: where every span still passes, or (a service graph, which pairs the client and
/// server spans of each call) where whole traces meet.
pub fn where_to_compute(id: &str) -> &'static str {
    if kind_of(id).replace('_', "") == "servicegraph" {
        "a service graph pairs the client and server spans of each call, so it needs whole traces in one place: compute it in a Collector tier that receives spans by trace id (behind a loadbalancing exporter), not in the agents"
    } else {
        "compute it before the routers (a Collector in the agents), where every span still passes"
    }
}

#[cfg(test)]
mod tests;
