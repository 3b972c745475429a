//! Reading a policy file written for the Collector: the body of a `tail_sampling:` block,
//! the block itself, or a whole Collector configuration, from which the `tail_sampling`
//! processor (or `tail_sampling/NAME`) used by a traces pipeline is taken and everything
//! else is ignored.
//!
//! The chosen block is deserialized straight from the text (the other sections are skipped
//! unread), so the YAML parser's errors keep pointing at the user's lines.

use std::fmt;
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use tailgate_core::collector::kind_of;
use tailgate_core::config::ConfigError;

/// What the text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The body of a `tail_sampling:` block.
    Body,
    /// `tail_sampling:` and its body.
    Block,
    /// A whole Collector config; the processor key chosen and a note for the log.
    Whole {
        /// `tail_sampling` or `tail_sampling/NAME`.
        processor: String,
        /// One line saying what was used and what ignored.
        note: String,
        /// What the operator must know: other `tail_sampling` processors chained with the
        /// chosen one in its pipeline, which the Collector would also apply.
        warnings: Vec<String>,
    },
}

/// Where a Collector config sits inside a file that is not one (an Operator resource, a
/// ConfigMap, chart values): [`tailgate_core::collector::wrapped_config_hint`], preferring
/// an umbrella chart's Collector that defines `tail_sampling`.
fn wrapped_config_hint(top: &serde_yaml_ng::Value) -> Option<String> {
    tailgate_core::collector::wrapped_config_hint(top, defines_tail_sampling)
}

/// Whether a document holds `tail_sampling` settings: a policy file's body, the block, a
/// Collector config with such a processor, or one wrapped in a manifest or chart values
/// ([`wrapped_config_hint`]; a file of Kubernetes manifests, say) that mentions it.
/// `None` when the document is no YAML.
fn holds_tail_sampling(doc: &str) -> Option<bool> {
    let top = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc).ok()?;
    Some(
        top.get("policies").is_some()
            || top.get("tail_sampling").is_some()
            || defines_tail_sampling(&top)
            || (wrapped_config_hint(&top).is_some() && doc.contains("tail_sampling")),
    )
}

/// Whether a Collector config's `processors:` defines a `tail_sampling` processor.
pub(crate) fn defines_tail_sampling(config: &serde_yaml_ng::Value) -> bool {
    config
        .get("processors")
        .and_then(|p| p.as_mapping())
        .is_some_and(|m| {
            m.keys()
                .filter_map(|k| k.as_str())
                .any(|k| kind_of(k) == "tail_sampling")
        })
}

/// A file of several YAML documents read as the Collector reads it: its first document
/// only (Go's YAML decodes one). Returns the text cut to that document (its lines keep
/// their numbers) and a warning saying so, or, when the first holds no `tail_sampling`
/// settings and a later one does (a guide's two tiers in one file), an error naming it.
pub(crate) fn first_document(
    path: &Path,
    text: String,
) -> Result<(String, Option<String>), ConfigError> {
    let starts = tailgate_core::config::later_documents(&text);
    let Some(&(second_line, second_at)) = starts.first() else {
        return Ok((text, None));
    };
    let count = starts.len() + 1;
    // A first document that does not parse is read (its error names its line), not passed
    // over for a later one.
    if holds_tail_sampling(&text[..second_at]) == Some(false) {
        let ends = starts
            .iter()
            .skip(1)
            .map(|(_, at)| *at)
            .chain(std::iter::once(text.len()));
        let found = starts
            .iter()
            .zip(ends)
            .position(|((_, at), end)| holds_tail_sampling(&text[*at..end]) == Some(true));
        if let Some(k) = found {
            return Err(ConfigError::InvalidAt {
                path: path.to_owned(),
                line: starts[k].0,
                key: "---".into(),
                message: format!(
                    "this file holds {count} YAML documents and the Collector reads only the first, which has no tail_sampling settings; this one (document {}) has them: put it in a file of its own",
                    k + 2
                ),
            });
        }
    }
    let mut first = text;
    first.truncate(second_at);
    Ok((
        first,
        Some(format!(
            "this file holds {count} YAML documents; as the Collector, Tailgate reads the first (lines 1 to {}) and ignores the others",
            second_line - 1
        )),
    ))
}

/// Decides what `top` (the parsed text) is, choosing a processor in a whole config.
pub(crate) fn shape(
    path: &Path,
    top: &serde_yaml_ng::Value,
    wanted: Option<&str>,
) -> Result<Shape, ConfigError> {
    if let Some(hint) = wrapped_config_hint(top) {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            key: "(top level)".into(),
            message: hint,
        });
    }
    let Some(processors) = top.get("processors") else {
        return Ok(if top.get("tail_sampling").is_some() {
            Shape::Block
        } else {
            Shape::Body
        });
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: "processors".into(),
        message,
    };
    let pipelines = top.get("service").and_then(|s| s.get("pipelines"));
    let (mut candidates, used_by) = candidates(processors, pipelines);
    if candidates.is_empty() {
        let hint = router_hint(top);
        // Defined but in no traces pipeline: the Collector builds no processor a pipeline
        // does not name, so with this config it samples nothing by tail.
        let unused: Vec<&str> = processors
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys().filter_map(|k| k.as_str()))
            .filter(|k| kind_of(k) == "tail_sampling")
            .collect();
        return Err(invalid(if !unused.is_empty() {
            format!(
                "no traces pipeline in service.pipelines uses {} (the Collector builds no processor that no pipeline names, so this config does no tail sampling): add it to the traces pipeline's processors, or give the gateway its block alone as the policy file{hint}",
                unused.join(", ")
            )
        } else if let Some((pipeline, listed)) =
            traces_pipelines(pipelines)
                .into_iter()
                .find_map(|(name, listed)| {
                    let id = listed.into_iter().find(|p| kind_of(p) == "tail_sampling")?;
                    Some((name, id))
                })
        {
            // Listed and not defined (a block indented under another processor, say): the
            // Collector says "references processor … which is not configured".
            format!(
                "pipeline {pipeline} lists {listed}, which processors: does not define (is its block indented under another processor?); the Collector refuses this too (\"references processor {listed:?} which is not configured\"){hint}"
            )
        } else if pipelines.is_some() {
            format!("no traces pipeline in service.pipelines uses a tail_sampling processor{hint}")
        } else {
            format!("this Collector config has no tail_sampling processor{hint}")
        }));
    }
    let chosen = match wanted {
        Some(w) => {
            let full = if w.starts_with("tail_sampling") {
                w.to_owned()
            } else {
                format!("tail_sampling/{w}")
            };
            if !candidates.contains(&full) {
                return Err(invalid(format!(
                    "--processor {w}: no such tail_sampling processor in a traces pipeline; found: {}",
                    candidates.join(", ")
                )));
            }
            full
        }
        None if candidates.len() == 1 => candidates.remove(0),
        None => {
            let chained = chains(&used_by)
                .into_iter()
                .map(|(pipeline, procs)| format!(" Pipeline {pipeline} chains {}: the Collector applies them in turn, so a trace is kept only when each keeps it, and Tailgate runs one policy set; merge them into one processor (a filter in front becomes a `drop` policy of the other, or an `and` of both sets), or choose one knowing the others are not applied.", procs.join(", ")))
                .collect::<String>();
            return Err(invalid(format!(
                "several tail_sampling processors ({}); choose one with --processor NAME.{chained}",
                candidates.join(", ")
            )));
        }
    };
    let mut warnings: Vec<String> = chains(&used_by)
        .into_iter()
        .filter(|(_, procs)| procs.contains(&chosen))
        .map(|(pipeline, procs)| {
            let others: Vec<&str> = procs
                .iter()
                .filter(|p| **p != chosen)
                .map(String::as_str)
                .collect();
            format!(
                "pipeline {pipeline} chains {} with {chosen}; only {chosen} is applied, so traces the others would drop may be kept: merge them into one processor",
                others.join(", ")
            )
        })
        .collect();
    warnings.extend(pipeline_errors(processors, pipelines));
    warnings.extend(unapplied_neighbours(top, processors, pipelines, &chosen));
    let ignored: Vec<String> = top
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str())
                .filter(|k| *k != "processors")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let pipeline = used_by
        .iter()
        .find(|(p, _)| *p == chosen)
        .map(|(_, n)| format!(" (pipeline {n})"))
        .unwrap_or_default();
    let note = match ignored.as_slice() {
        [] => format!("using processors.{chosen}{pipeline} of a Collector config; other processors are not Tailgate's and are ignored"),
        [one] => format!("using processors.{chosen}{pipeline} of a Collector config; other processors are not Tailgate's and are ignored, and the section {one} is not read for policies (a file given as --config gives the gateway its receiver, exporters and extensions)"),
        many => format!(
            "using processors.{chosen}{pipeline} of a Collector config; other processors are not Tailgate's and are ignored, and the sections {} are not read for policies (a file given as --config gives the gateway its receiver, exporters and extensions)",
            many.join(", ")
        ),
    };
    Ok(Shape::Whole {
        processor: chosen,
        note,
        warnings,
    })
}

/// The traces pipelines that run the `tail_sampling` processor a whole Collector config's
/// policies come from (chosen as [`shape`] chooses it, `wanted` naming one), for a
/// gateway config read from the same file: their receivers and exporters are the
/// gateway's. Errors as [`shape`]'s.
pub(crate) fn sampling_pipelines(
    path: &Path,
    top: &serde_yaml_ng::Value,
    wanted: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let processor = match shape(path, top, wanted)? {
        Shape::Whole { processor, .. } => processor,
        _ => {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "processors".into(),
                message: format!(
                    "this Collector config has no tail_sampling processor{}",
                    router_hint(top)
                ),
            })
        }
    };
    let pipelines = top.get("service").and_then(|s| s.get("pipelines"));
    Ok(traces_pipelines(pipelines)
        .into_iter()
        .filter(|(_, listed)| listed.contains(&processor.as_str()))
        .map(|(name, _)| name.to_owned())
        .collect())
}

/// What to say of a Collector config without a `tail_sampling` processor that exports to a
/// `load_balancing` exporter: it is the router's.
fn router_hint(top: &serde_yaml_ng::Value) -> &'static str {
    let balancing = top
        .get("exporters")
        .and_then(|e| e.as_mapping())
        .is_some_and(|m| {
            m.keys()
                .filter_map(|k| k.as_str())
                .any(|k| matches!(kind_of(k), "load_balancing" | "loadbalancing"))
        });
    if balancing {
        ": it exports to a load_balancing exporter, so it is the config of the tier in front of tail sampling: give it to tailgate-router --config, and the sampling tier's to the gateway"
    } else {
        ""
    }
}

/// For each traces pipeline using `chosen`: the processors around it other than
/// `tail_sampling` ones (those are [`chains`]) and the neutral ones ([`tailgate_core::collector::is_neutral_processor`]), which the
/// Collector runs and Tailgate does not. Those before it change what the policies see
/// (a `transform` setting an attribute a policy reads, a `filter` dropping health checks,
/// a `probabilistic_sampler` thinning the traffic); those after, what is exported. The
/// processors of a pipeline joined to one using `chosen` through a `forward` connector
/// ([`tailgate_core::pipelines::Graph`]) are all before it or all after.
fn unapplied_neighbours(
    top: &serde_yaml_ng::Value,
    processors: &serde_yaml_ng::Value,
    pipelines: Option<&serde_yaml_ng::Value>,
    chosen: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let sampling: Vec<&str> = traces_pipelines(pipelines)
        .into_iter()
        .filter(|(_, listed)| listed.contains(&chosen))
        .map(|(name, _)| name)
        .collect();
    let graph = tailgate_core::pipelines::Graph::new(top);
    let (upstream, downstream) = (graph.upstream(&sampling), graph.downstream(&sampling));
    for (name, listed) in traces_pipelines(pipelines) {
        // A pipeline joined by a forward connector runs wholly before or after.
        let at = match listed.iter().position(|p| *p == chosen) {
            Some(at) => at,
            None if upstream.contains(&name) => listed.len(),
            None if downstream.contains(&name) => 0,
            None => continue,
        };
        let skip = usize::from(listed.get(at) == Some(&chosen));
        // Those not defined are named by [`pipeline_errors`].
        let unapplied = |procs: &[&str]| -> Vec<String> {
            procs
                .iter()
                .filter(|p| {
                    kind_of(p) != "tail_sampling"
                        && !tailgate_core::collector::is_neutral_processor(p)
                        && processors.get(**p).is_some()
                })
                .map(|p| (*p).to_owned())
                .collect()
        };
        let (before, after) = (unapplied(&listed[..at]), unapplied(&listed[at + skip..]));
        // Span metrics computed before sampling see every span; here they would see none.
        let (metrics, before): (Vec<String>, Vec<String>) = before
            .into_iter()
            .partition(|p| tailgate_core::collector::computes_metrics(p));
        if !metrics.is_empty() {
            warnings.push(format!(
                "pipeline {name} runs {} before {chosen}; Tailgate does not run them, so the metrics they compute from every span are not computed: compute them where every span still passes (a Collector in the agents or before the routers, or its spanmetrics connector there)",
                metrics.join(", ")
            ));
        }
        if !before.is_empty() {
            warnings.push(format!(
                "pipeline {name} runs {} before {chosen}; Tailgate does not run them, so the policies see spans as senders send them (attributes those processors would set are absent, spans they would drop or sample away are evaluated): run them where the spans come from (the agents, or a Collector before the routers), or write a filter as a `drop` policy",
                before.join(", ")
            ));
        }
        if !after.is_empty() {
            warnings.push(format!(
                "pipeline {name} runs {} after {chosen}; Tailgate does not run them on kept spans: run them after the gateways (the gateway's `attributes` actions in its config cover deleting, hashing and inserting attributes)",
                after.join(", ")
            ));
        }
        // Another tail_sampling processor in a joined pipeline is a chain [`chains`]
        // cannot see (it looks inside one pipeline).
        let joined = listed.get(at) != Some(&chosen);
        let sampled: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|p| kind_of(p) == "tail_sampling" && processors.get(*p).is_some())
            .collect();
        if joined && !sampled.is_empty() {
            let side = if at == 0 { "after" } else { "before" };
            warnings.push(format!(
                "pipeline {name} runs {} {side} {chosen} (joined to it by a forward connector); only {chosen} is applied, so traces the others would drop may be kept: merge them into one processor",
                sampled.join(", ")
            ));
        }
    }
    // The chosen processor again after itself: the Collector runs an instance per
    // pipeline, so such traces are decided twice there.
    for first in &sampling {
        for again in graph.downstream(&[first]) {
            if sampling.contains(&again) {
                warnings.push(format!(
                    "pipeline {again} runs {chosen} again after pipeline {first} (joined by a forward connector): the Collector decides such traces twice (a probabilistic policy keeps its share of its share), the gateway once"
                ));
            }
        }
    }
    warnings
}

/// Mistakes in `service.pipelines` that stop the Collector from starting and that
/// Tailgate, reading one processor, loads past: a pipeline listing a processor that
/// `processors:` does not define, and a `tail_sampling` processor in a pipeline of metrics
/// or logs (it processes traces only). Warned about, so that a file copied from a post
/// with such a slip is fixed before it goes back to a Collector.
fn pipeline_errors(
    processors: &serde_yaml_ng::Value,
    pipelines: Option<&serde_yaml_ng::Value>,
) -> Vec<String> {
    let Some(pipelines) = pipelines.and_then(|p| p.as_mapping()) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for (name, pipeline) in pipelines {
        let Some(name) = name.as_str() else { continue };
        let signal = kind_of(name);
        let listed = pipeline.get("processors").and_then(|l| l.as_sequence());
        for processor in listed.into_iter().flatten().filter_map(|p| p.as_str()) {
            let kind = kind_of(processor);
            if processors.get(processor).is_none() {
                warnings.push(format!(
                    "pipeline {name} lists processor {processor}, which processors: does not define here; the Collector refuses such a config (unless another of its --config files defines it)"
                ));
            } else if kind == "tail_sampling" && signal != "traces" {
                warnings.push(format!(
                    "pipeline {name} lists {processor}, which processes traces only; the Collector refuses such a config"
                ));
            }
        }
    }
    warnings
}

/// The traces pipelines that list more than one `tail_sampling` processor, with those
/// processors in pipeline order.
fn chains(used_by: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut pipelines: Vec<(String, Vec<String>)> = Vec::new();
    for (processor, pipeline) in used_by {
        match pipelines.iter_mut().find(|(p, _)| p == pipeline) {
            // A processor listed twice in one pipeline is one processor.
            Some((_, procs)) if procs.contains(processor) => {}
            Some((_, procs)) => procs.push(processor.clone()),
            None => pipelines.push((pipeline.clone(), vec![processor.clone()])),
        }
    }
    pipelines.retain(|(_, procs)| procs.len() > 1);
    pipelines
}

/// The `tail_sampling` processors that count: all of them, or with a service section only
/// those a traces pipeline uses; and which pipeline uses each.
fn candidates(
    processors: &serde_yaml_ng::Value,
    pipelines: Option<&serde_yaml_ng::Value>,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut candidates: Vec<String> = processors
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str())
                .filter(|k| kind_of(k) == "tail_sampling")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut used_by: Vec<(String, String)> = Vec::new();
    if pipelines.and_then(|p| p.as_mapping()).is_some() {
        for (name, listed) in traces_pipelines(pipelines) {
            for proc in listed {
                if candidates.iter().any(|c| c == proc) {
                    used_by.push((proc.to_owned(), name.to_owned()));
                }
            }
        }
        candidates.retain(|c| used_by.iter().any(|(p, _)| p == c));
    }
    (candidates, used_by)
}

/// The traces pipelines (`traces`, `traces/NAME`) of `service.pipelines`, each with the
/// processors it lists, in order.
fn traces_pipelines(pipelines: Option<&serde_yaml_ng::Value>) -> Vec<(&str, Vec<&str>)> {
    let Some(pipelines) = pipelines.and_then(|p| p.as_mapping()) else {
        return Vec::new();
    };
    pipelines
        .iter()
        .filter_map(|(name, p)| {
            let name = name.as_str()?;
            (name == "traces" || name.starts_with("traces/")).then(|| {
                let listed = p.get("processors").and_then(|l| l.as_sequence());
                (
                    name,
                    listed
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .collect(),
                )
            })
        })
        .collect()
}

/// Deserializes `processors.<name>` of a whole config from `text` as `T`, skipping the rest.
pub(crate) fn processor_block<T: for<'de> Deserialize<'de>>(
    path: &Path,
    text: &str,
    name: &str,
) -> Result<T, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let parse = |error| match tailgate_core::config::duplicate_key(path, &error, text) {
        Some(e) => e,
        None => ConfigError::Parse {
            path: path.to_owned(),
            error,
        },
    };
    let found = Section {
        key: "processors",
        inner: Section {
            key: name,
            inner: std::marker::PhantomData::<T>,
        },
    }
    .deserialize(de)
    .map_err(parse)?;
    found.flatten().ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("processors.{name}"),
        message: "not found".into(),
    })
}

/// Picks one key of a mapping and deserializes its value with `inner`, skipping the others.
struct Section<'a, S> {
    key: &'a str,
    inner: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Section<'_, S> {
    type Value = Option<S::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Section<'_, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping with {}", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = Some(self.inner);
        let mut out = None;
        while let Some(key) = map.next_key::<String>()? {
            match inner.take() {
                Some(seed) if key == self.key => out = Some(map.next_value_seed(seed)?),
                other => {
                    inner = other;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// The 1-based line where processor `name`'s key is written, to find its policies below.
pub(crate) fn processor_line(text: &str, name: &str) -> Option<usize> {
    let mut in_processors = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if line.len() == t.len() && !t.is_empty() && !t.starts_with('#') {
            in_processors = t.starts_with("processors:");
            continue;
        }
        let key = t.strip_prefix(name).and_then(|r| r.strip_prefix(':'));
        let key = key.or_else(|| {
            t.strip_prefix('"')
                .and_then(|r| r.strip_prefix(name))
                .and_then(|r| r.strip_prefix("\":"))
        });
        if in_processors && key.is_some() {
            return Some(n + 1);
        }
    }
    None
}

/// The 1-based lines of processor `name`'s block: from its key to the next line indented no
/// deeper; the whole text when the key is not found on a line of its own.
pub(crate) fn block_lines(text: &str, name: &str) -> std::ops::Range<usize> {
    let Some(start) = processor_line(text, name) else {
        return 1..usize::MAX;
    };
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_indent = lines.get(start - 1).map_or(0, |l| indent(l));
    let end = lines
        .iter()
        .enumerate()
        .skip(start)
        .find(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && indent(l) <= key_indent
        })
        .map_or(lines.len() + 1, |(i, _)| i + 1);
    start..end
}
