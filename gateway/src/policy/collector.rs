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

/// Where a Collector config sits inside a file that is not one: the OpenTelemetry
/// Operator's `OpenTelemetryCollector` resource (`spec.config`), a Kubernetes ConfigMap
/// (a `data` key) or the Collector Helm chart's values (`config:`). Tailgate reads the config itself; the hint says how to get
/// it out.
fn wrapped_config_hint(top: &serde_yaml_ng::Value) -> Option<String> {
    if top.get("processors").is_some() || top.get("policies").is_some() {
        return None;
    }
    let kind = top.get("kind").and_then(|k| k.as_str());
    if top.get("apiVersion").is_some() && kind == Some("OpenTelemetryCollector") {
        return Some("this is an OpenTelemetryCollector resource; Tailgate reads the Collector config inside it: extract spec.config into a file (`yq '.spec.config' FILE`, or `kubectl get otelcol NAME -o jsonpath='{.spec.config}'`) and pass that".into());
    }
    if top.get("apiVersion").is_some() && kind == Some("ConfigMap") {
        let keys: Vec<&str> = top
            .get("data")
            .and_then(|d| d.as_mapping())
            .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        let key = keys.first().copied().unwrap_or("KEY");
        // jsonpath reads a dot in a key as a step: `{.data.collector\.yaml}`.
        let path_key = key.replace('.', "\\.");
        return Some(format!(
            "this is a Kubernetes ConfigMap (data keys: {}); Tailgate reads the file one of its keys holds: mount the ConfigMap (each key becomes a file) and pass that file, or extract it (`yq '.data[\"{key}\"]' FILE`, or `kubectl get configmap NAME -o jsonpath='{{.data.{path_key}}}'`)",
            if keys.is_empty() { "none".into() } else { keys.join(", ") }
        ));
    }
    let config = top.get("config")?;
    if config.get("processors").is_some() || config.get("service").is_some() {
        return Some("this looks like the Collector Helm chart's values; Tailgate reads the Collector config under `config:`: extract it into a file (`yq '.config' values.yaml`) and pass that".into());
    }
    None
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
        return Err(invalid(if pipelines.is_some() {
            "no traces pipeline in service.pipelines uses a tail_sampling processor".into()
        } else {
            "this Collector config has no tail_sampling processor".into()
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
    warnings.extend(unapplied_neighbours(pipelines, &chosen));
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
    let note = if ignored.is_empty() {
        format!("using processors.{chosen}{pipeline} of a Collector config; other processors are not Tailgate's and are ignored")
    } else {
        format!(
            "using processors.{chosen}{pipeline} of a Collector config; other processors and the sections {} are not Tailgate's and are ignored",
            ignored.join(", ")
        )
    };
    Ok(Shape::Whole {
        processor: chosen,
        note,
        warnings,
    })
}

/// Processors that change nothing a policy reads or a backend receives: batching, the
/// Collector's memory limiter (the gateway's own bound is `buffer.max_buffered_bytes`) and
/// `groupbytrace` (the gateway groups spans by trace itself).
const NEUTRAL_PROCESSORS: &[&str] = &["batch", "memory_limiter", "groupbytrace"];

/// For each traces pipeline using `chosen`: the processors around it other than
/// `tail_sampling` ones (those are [`chains`]) and [`NEUTRAL_PROCESSORS`], which the
/// Collector runs and Tailgate does not. Those before it change what the policies see
/// (a `transform` setting an attribute a policy reads, a `filter` dropping health checks,
/// a `probabilistic_sampler` thinning the traffic); those after, what is exported.
fn unapplied_neighbours(pipelines: Option<&serde_yaml_ng::Value>, chosen: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, listed) in traces_pipelines(pipelines) {
        let Some(at) = listed.iter().position(|p| *p == chosen) else {
            continue;
        };
        let unapplied = |procs: &[&str]| -> Vec<String> {
            procs
                .iter()
                .filter(|p| {
                    let kind = p.split('/').next().unwrap_or(p);
                    kind != "tail_sampling" && !NEUTRAL_PROCESSORS.contains(&kind)
                })
                .map(|p| (*p).to_owned())
                .collect()
        };
        let (before, after) = (unapplied(&listed[..at]), unapplied(&listed[at + 1..]));
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
    }
    warnings
}

/// The traces pipelines that list more than one `tail_sampling` processor, with those
/// processors in pipeline order.
fn chains(used_by: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut pipelines: Vec<(String, Vec<String>)> = Vec::new();
    for (processor, pipeline) in used_by {
        match pipelines.iter_mut().find(|(p, _)| p == pipeline) {
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
                .filter(|k| *k == "tail_sampling" || k.starts_with("tail_sampling/"))
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
    let parse = |error| ConfigError::Parse {
        path: path.to_owned(),
        error,
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
