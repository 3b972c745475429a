use super::plan::PolicyPlan;
use super::*;

fn parse(text: &str) -> Result<PolicyFile, String> {
    PolicyFile::parse(Path::new("policies.yaml"), text).map_err(|e| e.to_string())
}

#[test]
fn collector_block_parses_with_or_without_the_wrapper() {
    let body = "decision_wait: 10s\nnum_traces: 100\npolicies:\n  - name: errors\n    type: status_code\n    status_code: {status_codes: [ERROR]}\n";
    let a = parse(body).unwrap();
    assert_eq!(a.decision_wait, Duration::from_secs(10));
    assert_eq!(a.num_traces, 100);
    let wrapped = format!(
        "tail_sampling:\n{}",
        body.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let b = parse(&wrapped).unwrap();
    assert_eq!(b.policies.len(), 1);
    assert_eq!(b.policies[0].name, "errors");
}

/// Scenario: a value that parses but is refused inside a policy's settings block, written
/// on a line of its own, in flow style, and inside an `and`.
/// Guarantees: the error names the line of the key at fault, or of the deepest part of its
/// path written on a line of its own, not the entry's first line (a docs audit found `:4:`
/// for a bad status code on line 6; a parity audit, the block's line for a key below it).
#[test]
fn setting_errors_name_the_line_of_their_key() {
    let err = parse("decision_wait: 3s\npolicies:\n  - name: errors\n    type: status_code\n\n    status_code: { status_codes: [EROR] }\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:6: policies[0]:"), "{err}");
    let err = parse("policies:\n  - {name: e, type: status_code, status_code: {status_codes: [EROR]}}\n  - name: b\n    type: and\n    and:\n      and_sub_policy: []\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:2: policies[0]:"), "{err}");
    let err = parse("policies:\n  - name: b\n    type: and\n    and:\n      and_sub_policy: []\n")
        .unwrap_err();
    assert!(err.starts_with("policies.yaml:5: policies[0]:"), "{err}");
    // An error inside a sub-policy written in flow style names the sub-policy's line.
    let err = parse("policies:\n  - name: b\n    type: and\n    and:\n      and_sub_policy:\n        - {name: s, type: status_code, status_code: {status_codes: [EROR]}}\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:6: policies[0]:"), "{err}");
    // Written in blocks, the key's own line: below the settings block, and in the second
    // sub-policy of an `and`.
    let err = parse("policies:\n  - name: a\n    type: latency\n    latency: {threshold_ms: 1}\n  - name: r\n    type: string_attribute\n    string_attribute:\n      key: k\n      enabled_regex_matching: true\n      values:\n        - ok\n        - '[z-a]'\n").unwrap_err();
    // The refused value's own line (a config audit: the `values:` line).
    assert!(err.starts_with("policies.yaml:12: policies[1]:"), "{err}");
    assert!(err.contains("string_attribute.values[1]:"), "{err}");
    let err = parse("policies:\n  - name: b\n    type: and\n    and:\n      and_sub_policy:\n        - name: s1\n          type: latency\n          latency: {threshold_ms: 1}\n        - name: s2\n          type: status_code\n          status_code:\n            # the codes\n            status_codes: [OK, EROR]\n  - name: c\n    type: always_sample\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:13: policies[0]:"), "{err}");
    // A list on one line: the line holding the entry's name, past other entries' names;
    // without names, the list's.
    let err = parse("decision_wait: 1s\npolicies: [{name: a, type: always_sample}, {name: b, type: status_code, status_code: {status_codes: [EROR]}}]\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:2: policies[1]:"), "{err}");
    let err = parse("decision_wait: 1s\npolicies: [{type: always_sample}]\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:2: policies[0]:"), "{err}");
    // Flow mappings over several lines, as the Collector's README writes them: the line
    // of the key at its depth, past a quoted brace and another entry's keys of the same
    // name (an adoption trial found the `name:` line named).
    let readme = "policies:\n  [\n    {\n      name: a,\n      type: numeric_attribute,\n      numeric_attribute: {key: min_value, min_value: 5}\n    },\n    {\n      name: b,\n      type: string_attribute,\n      string_attribute:\n        {\n          key: 'x{',\n          enabled_regex_matching: true,\n          values: ['[z-a]'],\n        },\n    },\n    {\n      name: c,\n      type: numeric_attribute,\n      numeric_attribute:\n        {key: k}\n    }\n  ]\n";
    let err = parse(readme).unwrap_err();
    assert!(err.starts_with("policies.yaml:15: policies[1]:"), "{err}");
    let err = parse(&readme.replace("'[z-a]'", "x")).unwrap_err();
    assert!(err.starts_with("policies.yaml:21: policies[2]:"), "{err}");
    // An item that opens its mapping before its name (`- {` alone on a line).
    let err = parse("policies:\n  - {\n      name: a,\n      type: status_code,\n      status_code: {status_codes: [EROR]}\n    }\n").unwrap_err();
    assert!(err.starts_with("policies.yaml:5: policies[0]:"), "{err}");
}

/// Scenario: settings beside the policies refused after parsing (`decision_wait: 0s`,
/// `num_traces: 0`, a stateful policy under `span-ingest`, `tail_storage`), in a policy
/// file and in a whole Collector config, where the block starts lines down.
/// Guarantees: the error names the line of the key, as those inside a policy do (an
/// audit found them with no line at all).
#[test]
fn setting_errors_beside_the_policies_name_their_line() {
    let all = "policies:\n  - {name: a, type: always_sample}\n";
    let err = parse(&format!("num_traces: 10\n{all}decision_wait: 0s\n")).unwrap_err();
    assert!(err.starts_with("policies.yaml:4: decision_wait:"), "{err}");
    let err = parse(&format!("{all}\nnum_traces: 0\n")).unwrap_err();
    assert!(err.starts_with("policies.yaml:4: num_traces:"), "{err}");
    let err = parse(&format!("{all}tail_storage: file_storage\n")).unwrap_err();
    assert!(err.starts_with("policies.yaml:3: tail_storage:"), "{err}");
    let err = parse(
        "sampling_strategy: span-ingest\npolicies:\n  - {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}\n",
    )
    .unwrap_err();
    assert!(
        err.starts_with("policies.yaml:1: sampling_strategy:"),
        "{err}"
    );
    let err =
        parse("tail_sampling:\n  policies: [{name: a, type: always_sample}]\n  num_traces: 0\n")
            .unwrap_err();
    assert!(
        err.starts_with("policies.yaml:3: tail_sampling.num_traces:"),
        "{err}"
    );
    let whole = "receivers:\n  otlp: {}\nprocessors:\n  batch: {}\n  tail_sampling:\n    policies:\n      - {name: a, type: always_sample}\n    decision_wait: 0s\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n";
    let err = PolicyFile::parse(Path::new("otelcol.yaml"), whole)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("otelcol.yaml:8: processors.tail_sampling.decision_wait:"),
        "{err}"
    );
    // A composite without its sub-policies, in a Collector config: at its `composite:`
    // line (it was named a line below, at the block's first child).
    let composite = whole.replace(
        "      - {name: a, type: always_sample}\n",
        "      - name: c\n        type: composite\n        composite:\n          max_total_spans_per_second: 100\n",
    );
    let err = PolicyFile::parse(Path::new("otelcol.yaml"), &composite)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("otelcol.yaml:9: processors.tail_sampling.policies[0].composite: policy \"c\": `composite_sub_policy` is required"),
        "{err}"
    );
    // A processor's own key misspelt, or its policies left out, in a Collector config:
    // at the key's line and at the block's (the parser's sentence had no FILE:LINE, and
    // a missing key was placed at the block's first child).
    for (from, to, starts) in [
        (
            "decision_wait: 0s",
            "decision_wiat: 5s",
            "otelcol.yaml:8: processors.tail_sampling.decision_wiat: unknown field",
        ),
        (
            "    policies:\n      - {name: a, type: always_sample}\n",
            "",
            "otelcol.yaml:5: processors.tail_sampling: `policies` is required",
        ),
    ] {
        let err = PolicyFile::parse(Path::new("otelcol.yaml"), &whole.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(starts), "{err}");
    }
}

/// Scenario: a negative `decision_wait` and a negative
/// `decision_wait_after_root_received`, as policies.md lists among the values refused.
/// Guarantees: each is refused at load, naming the key and its line.
#[test]
fn negative_waits_are_refused_at_their_line() {
    for key in ["decision_wait", "decision_wait_after_root_received"] {
        let err = parse(&format!(
            "policies:\n  - {{name: a, type: always_sample}}\n{key}: -1s\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with(&format!("policies.yaml:3: {key}: ")),
            "{err}"
        );
        assert!(err.contains("must not be negative"), "{err}");
    }
}

/// Scenario: a `decision_cache` whose two sizes add up past [`crate::decide::MAX_ENTRIES`],
/// and one whose sum overflows a machine word.
/// Guarantees: both are refused at load, naming the key and its line, with why (the cache
/// is allocated at start); the overflow neither wraps to a small cache nor panics.
#[test]
fn a_decision_cache_too_large_to_allocate_is_refused() {
    let all = "policies:\n  - {name: a, type: always_sample}\n";
    for (sampled, non) in [(1u64 << 29, (1 << 29) + 1), (u64::MAX, 1)] {
        let err = parse(&format!(
            "{all}decision_cache:\n  sampled_cache_size: {sampled}\n  non_sampled_cache_size: {non}\n"
        ))
        .unwrap_err();
        assert!(err.starts_with("policies.yaml:3: decision_cache:"), "{err}");
        assert!(err.contains("allocated when the gateway starts"), "{err}");
    }
    let ok = parse(&format!(
        "{all}decision_cache: {{sampled_cache_size: {}, non_sampled_cache_size: 0}}\n",
        crate::decide::MAX_ENTRIES
    ))
    .unwrap();
    let plan = PolicyPlan::compile(&ok);
    assert_eq!(plan.decision_cache_size, Some(crate::decide::MAX_ENTRIES));
}

#[test]
fn unknown_type_names_file_policy_and_line() {
    let err = parse(
        "policies:\n  - name: ok\n    type: always_sample\n  - name: weird\n    type: sometimes\n",
    )
    .unwrap_err();
    // The `type:` line (a config audit: the entry's `- name:` line).
    assert!(err.starts_with("policies.yaml:5: policies[1]:"), "{err}");
    assert!(
        err.contains("\"weird\"") && err.contains("sometimes"),
        "{err}"
    );
}

#[test]
fn missing_and_mistyped_fields_name_the_key() {
    let err =
        parse("policies:\n  - name: slow\n    type: latency\n    latency: {threshold_ms: fast}\n")
            .unwrap_err();
    // The line once, before the key (serde's "at line 4 column …" repeated it).
    assert!(
        err.starts_with("policies.yaml:4: ") && err.contains("threshold_ms"),
        "{err}"
    );
    assert!(!err.contains("at line"), "{err}");
    let err = parse("policies:\n  - name: slow\n    type: latency\n").unwrap_err();
    assert!(
        err.contains("\"slow\"") && err.contains("latency:"),
        "{err}"
    );
    // The Collector does not bound sampling_percentage (internal/sampling/probabilistic.go):
    // over 100 keeps everything.
    assert!(parse("policies:\n  - name: p\n    type: probabilistic\n    probabilistic: {sampling_percentage: 150}\n").is_ok());
    let err = parse(
        "policies:\n  - name: s\n    type: status_code\n    status_code: {status_codes: [ERORR]}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("ERORR") && err.contains("status_codes"),
        "{err}"
    );
    let err = parse("policies:\n  - name: s\n    type: status_code\n    status_code: {status_codes: [ERROR], extra: 1}\n").unwrap_err();
    assert!(err.contains("extra"), "{err}");
}

/// Scenario: `error_mode` written in upper, mixed and lower case, and a mode that does not
/// exist, in a whole policy file and alone.
/// Guarantees: the case does not matter, as in the Collector (`pkg/ottl`'s `ErrorMode`
/// lowercases the text before matching it); an unknown mode is refused naming the key.
#[test]
fn error_mode_is_read_in_any_case() {
    use super::ottl_condition::{ErrorMode, OttlConditionConfig};
    for (text, mode) in [
        ("Ignore", ErrorMode::Ignore),
        ("SILENT", ErrorMode::Silent),
        ("propagate", ErrorMode::Propagate),
    ] {
        let c: OttlConditionConfig =
            serde_yaml_ng::from_str(&format!("error_mode: {text}\nspan: ['true']\n")).unwrap();
        assert_eq!(c.error_mode, mode, "{text}");
        parse(&format!(
            "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {{error_mode: {text}, span: ['true']}}\n"
        ))
        .unwrap();
    }
    let err = parse(
        "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {error_mode: loud, span: ['true']}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("error_mode") && err.contains("\"loud\""),
        "{err}"
    );
}

#[test]
fn ottl_conditions_are_checked_at_load() {
    assert!(parse(
        "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {span: ['true']}\n",
    )
    .is_ok());
    let err = parse(
        "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {span: ['name == \"a\" and Nope(name)']}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("\"o\"") && err.contains("column 17") && err.contains("unknown function Nope"),
        "{err}"
    );
    let err = parse(
        "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {spanevent: ['attributes[\"a\"] == 1', 'nmae == \"x\"']}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("spanevent[1]") && err.contains("unknown path \"nmae\""),
        "{err}"
    );
    let err = parse("policies:\n  - name: o\n    type: sometimes\n").unwrap_err();
    assert!(err.contains("unknown policy type \"sometimes\""), "{err}");
    let err = parse("policies:\n  - name: r\n    type: rate_limiting\n    rate_limiting: {spans_per_second: 0}\n").unwrap_err();
    assert!(err.contains("rate_limiting.spans_per_second"), "{err}");
}

fn decide(yaml: &str, spans: &[(u64, u64, u8)]) -> bool {
    use crate::buffer::trace::{TraceSummary, TraceView};
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let mut s = TraceSummary::default();
    for (start, end, status) in spans {
        s.add_span(*start, *end, *status, false);
    }
    plan.decide(&TraceView {
        trace_id: &[9; 16],
        summary: &s,
        spans: crate::buffer::Spans::EMPTY,
        now: tokio::time::Instant::now(),
    })
    .sampled
}

const MS: u64 = 1_000_000;

#[test]
fn and_needs_every_sub_policy() {
    let yaml = "policies:\n  - name: slow-errors\n    type: and\n    and:\n      and_sub_policy:\n        - {name: slow, type: latency, latency: {threshold_ms: 100}}\n        - {name: err, type: status_code, status_code: {status_codes: [ERROR]}}\n";
    assert!(decide(yaml, &[(0, 200 * MS, 2)]));
    assert!(!decide(yaml, &[(0, 200 * MS, 0)]));
    assert!(!decide(yaml, &[(0, 50 * MS, 2)]));
}

/// Scenario: `and`, `not`, `drop` and `composite` whose sub-policies have no `name` (or an
/// empty one), and a top-level name of spaces.
/// Guarantees: they load, as in the Collector (which refuses only an empty top-level
/// name), the sub-policies named by their place, and decide as named ones do; an empty
/// top-level name is still refused.
#[test]
fn sub_policies_need_no_name() {
    let yaml = "policies:\n  - name: slow-errors\n    type: and\n    and:\n      and_sub_policy:\n        - {type: latency, latency: {threshold_ms: 100}}\n        - {name: '', type: not, not: {not_sub_policy: {type: status_code, status_code: {status_codes: [OK, UNSET]}}}}\n";
    assert!(decide(yaml, &[(0, 200 * MS, 2)]));
    assert!(!decide(yaml, &[(0, 200 * MS, 0)]));
    assert!(!decide(yaml, &[(0, 50 * MS, 2)]));
    let f = parse(yaml).unwrap();
    let PolicyKind::And(subs) = &f.policies[0].kind else {
        panic!("{:?}", f.policies[0].kind)
    };
    let names: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["and.and_sub_policy[0]", "and.and_sub_policy[1]"]);
    parse("policies:\n  - {name: '  ', type: always_sample}\n  - {name: d, type: drop, drop: {drop_sub_policy: [{type: always_sample}]}}\n  - {name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: [x], composite_sub_policy: [{type: always_sample}], rate_allocation: [{policy: x, percent: 100}]}}\n").unwrap();
    let err = parse("policies:\n  - {name: '', type: always_sample}\n").unwrap_err();
    assert!(err.contains("name"), "{err}");
}

#[test]
fn drop_beats_sample_whatever_the_order() {
    let yaml = "policies:\n  - {name: all, type: always_sample}\n  - name: no-tiny\n    type: drop\n    drop:\n      drop_sub_policy:\n        - {name: one-span, type: span_count, span_count: {min_spans: 1, max_spans: 1}}\n";
    assert!(!decide(yaml, &[(0, MS, 0)]));
    assert!(decide(yaml, &[(0, MS, 0), (0, MS, 0)]));
}

#[test]
fn not_inverts_and_nesting_is_refused() {
    let yaml = "policies:\n  - name: not-fast\n    type: not\n    not: {not_sub_policy: {name: fast, type: span_count, span_count: {min_spans: 3}}}\n";
    assert!(decide(yaml, &[(0, MS, 0)]));
    assert!(!decide(yaml, &[(0, MS, 0), (0, MS, 0), (0, MS, 0)]));
    let nested = "policies:\n  - name: n\n    type: and\n    and: {and_sub_policy: [{name: x, type: drop, drop: {drop_sub_policy: [{name: y, type: always_sample}]}}]}\n";
    let err = parse(nested).unwrap_err();
    assert!(
        err.contains("and.and_sub_policy[0]") && err.contains("cannot be nested"),
        "{err}"
    );
}

/// Scenario: a reference the substitution cannot resolve (`${PCT:-7}`, read as an unknown
/// scheme, as the Collector reads it) inside a flow mapping, where the text left as written
/// breaks the YAML (found by a user trial: a raw "did not find expected ',' or '}'").
/// Guarantees: the reference's own error, with its line, as in block style.
#[test]
fn an_unresolved_reference_in_a_flow_mapping_is_named() {
    for text in [
        "policies:\n  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: ${PCT:-7}}}\n",
        "policies:\n  - name: p\n    type: probabilistic\n    probabilistic:\n      sampling_percentage: ${PCT:-7}\n",
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains("unsupported scheme \"PCT\""), "{err}");
    }
}

/// Scenario: a misspelt settings block (`status_codes:` for `status_code:`, found by a
/// user trial: the error began "unknown policy type or settings block") and an unknown
/// short key. Guarantees: the near miss is suggested with the policy's line; a key near
/// nothing gets no suggestion.
#[test]
fn a_misspelt_settings_block_is_suggested() {
    let err = parse("policies:\n  - name: b\n    type: status_code\n    status_codes: {status_codes: [ERROR]}\n").unwrap_err();
    assert!(
        err.contains("policies.yaml:4:")
            && err.contains("unknown key `status_codes` (did you mean `status_code`?)"),
        "{err}"
    );
    assert_eq!(err.matches("did you mean").count(), 1, "{err}");
    let err = parse("policies:\n  - {name: b, type: status_code, foo: {x: 1}}\n").unwrap_err();
    assert!(
        err.contains("unknown policy type or settings block `foo`"),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "{err}");
    // A plain value (a trial: `decision: drop`) is no settings block.
    let err = parse("policies:\n  - {name: b, type: status_code, foo: 1}\n").unwrap_err();
    assert!(
        err.contains("unknown key `foo` beside name and type (a policy holds its name, its type and the settings block its type names)"),
        "{err}"
    );
    // Inside a settings block the key is named with its block, not as a policy type.
    let err = parse("policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {span_properties: ['true']}\n").unwrap_err();
    assert!(
        err.contains("unknown key `span_properties` in `ottl_condition`"),
        "{err}"
    );
    assert_eq!(tailgate_core::config::edit_distance("kitten", "sitting"), 3);
    // A type naming another block than the one at fault (the Collector README's practical
    // example: `type: boolean_attribute` over a `string_attribute:` block) says so.
    let err = parse("policies:\n  - name: b\n    type: boolean_attribute\n    string_attribute: {key: k, value: true}\n").unwrap_err();
    assert!(
        err.contains("this policy's type is boolean_attribute, whose settings go in a boolean_attribute: block"),
        "{err}"
    );
}

#[test]
fn duplicate_names_and_empty_lists_are_rejected() {
    let err = parse(
        "policies:\n  - {name: a, type: always_sample}\n  - {name: a, type: always_sample}\n",
    )
    .unwrap_err();
    // With its line (a user trial found none).
    assert!(
        err.contains("policies.yaml:3: policies[1].name: policy name \"a\" is used twice"),
        "{err}"
    );
    let err = parse("policies: []\n").unwrap_err();
    assert!(err.contains("at least one"), "{err}");
}

/// Scenario: value lists that hold only what the Collector leaves out of its sets (empty
/// strings, as an unset `${env:…}` item gives; a tracestate value too long for its key),
/// with and without `invert_match`. Guarantees: refused as an empty list is (the policy
/// would keep nothing, or everything inverted), naming the key; an empty expression
/// (which matches every value) and a list with one usable value still load.
#[test]
fn value_lists_without_a_usable_value_are_refused() {
    let refused = [
        "{key: k, values: ['']}",
        "{key: k, values: ['', ''], invert_match: true}",
        "{key: k, values: ['${env:TAILGATE_TEST_SURELY_UNSET}']}",
    ];
    for block in refused {
        let yaml = format!(
            "policies:\n  - {{name: s, type: string_attribute, string_attribute: {block}}}\n"
        );
        let err = parse(&yaml).unwrap_err();
        assert!(
            err.contains("values: lists only empty strings"),
            "{block}: {err}"
        );
    }
    let long = "v".repeat(300);
    for values in ["['']".to_owned(), format!("['{long}', '']")] {
        let yaml = format!(
            "policies:\n  - {{name: t, type: trace_state, trace_state: {{key: ot, values: {values}}}}}\n"
        );
        let err = parse(&yaml).unwrap_err();
        assert!(
            err.contains("values: lists no usable value"),
            "{values}: {err}"
        );
    }
    for loads in [
        "string_attribute: {key: k, values: [''], enabled_regex_matching: true}",
        "string_attribute: {key: k, values: ['', a]}",
        "trace_state: {key: ot, values: ['', a]}",
    ] {
        let kind = loads.split(':').next().unwrap();
        let yaml = format!("policies:\n  - {{name: s, type: {kind}, {loads}}}\n");
        assert!(parse(&yaml).is_ok(), "{loads}");
    }
}

/// Scenario: integers past what 64 bits hold, either side (serde's YAML reads them as
/// 128-bit values its own value type cannot hold, and said so in its own words).
/// Guarantees: "out of range", with the key and line.
#[test]
fn integers_past_64_bits_are_out_of_range() {
    for n in ["18446744073709551616", "-18446744073709551617"] {
        let err = parse(&format!(
            "num_traces: {n}\npolicies:\n  - {{name: a, type: always_sample}}\n"
        ))
        .unwrap_err();
        assert!(
            err.contains(&format!("num_traces: {n} is out of range at line 1")),
            "{err}"
        );
    }
}

fn decide_attrs(yaml: &str, attrs: &[(&str, tailgate_core::wire::attrs::AttrValue, bool)]) -> bool {
    use crate::buffer::trace::{TraceAttr, TraceSummary, TraceView};
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let mut s = TraceSummary::default();
    s.add_span(0, MS, 0, true);
    let keys = plan.attribute_keys();
    let list: Vec<TraceAttr> = attrs
        .iter()
        .filter_map(|(k, v, res)| {
            keys.iter().position(|x| x == k).map(|i| TraceAttr {
                key: i as u16,
                value: v.clone(),
                from_resource: *res,
                from_root: false,
            })
        })
        .collect();
    s.add_attrs(&list);
    plan.decide(&TraceView {
        trace_id: &[9; 16],
        summary: &s,
        spans: crate::buffer::Spans::EMPTY,
        now: tokio::time::Instant::now(),
    })
    .sampled
}

#[test]
fn string_attribute_matches_spans_and_resources_like_the_collector() {
    use tailgate_core::wire::attrs::AttrValue::{Int, Str};
    let b = |s: &'static str| Str(bytes::Bytes::from_static(s.as_bytes()));
    let exact = "policies:\n  - {name: s, type: string_attribute, string_attribute: {key: route, values: [/pay, '']}}\n";
    assert!(decide_attrs(exact, &[("route", b("/pay"), false)]));
    assert!(!decide_attrs(exact, &[("route", b("/payment"), false)]));
    assert!(decide_attrs(exact, &[("route", b("/pay"), true)]));
    assert!(
        !decide_attrs(exact, &[("route", b(""), false)]),
        "empty values never match"
    );
    assert!(
        !decide_attrs(exact, &[("route", Int(1), false)]),
        "non-strings read as empty"
    );
    let regex = "policies:\n  - {name: s, type: string_attribute, string_attribute: {key: route, values: ['pay'], enabled_regex_matching: true}}\n";
    assert!(
        decide_attrs(regex, &[("route", b("/api/payment"), false)]),
        "expressions are not anchored"
    );
    // cache_max_size: any integer loads (the Collector reads 0 or less as its default).
    let cached = "policies:\n  - {name: s, type: string_attribute, string_attribute: {key: route, values: ['pay'], enabled_regex_matching: true, cache_max_size: -1}}\n";
    assert!(decide_attrs(cached, &[("route", b("/api/payment"), false)]));
    let bad = "policies:\n  - {name: s, type: string_attribute, string_attribute: {key: route, values: ['('], enabled_regex_matching: true}}\n";
    assert!(parse(bad).unwrap_err().contains("regular expression"));
}

/// Scenario: `invert_match` on the attribute policies, combined with other policies.
/// Guarantees: as the Collector since v0.155 (PR #48976 removed the
/// `processor.tailsamplingprocessor.disableinvertdecisions` gate; string_tag_filter.go,
/// numeric_tag_filter.go and boolean_tag_filter.go return plain Sampled / NotSampled), an
/// inverted policy is "sampled" on the negated condition and vetoes nothing.
#[test]
fn inverted_matches_are_plain_verdicts_on_the_negated_condition() {
    use tailgate_core::wire::attrs::AttrValue::{Bool, Int, Str};
    let b = |s: &'static str| Str(bytes::Bytes::from_static(s.as_bytes()));
    let inv = "{name: no-health, type: string_attribute, string_attribute: {key: route, values: [/health], invert_match: true}}";
    // A match no longer vetoes another policy's sample.
    let y = format!("policies:\n  - {inv}\n  - {{name: all, type: always_sample}}\n");
    assert!(decide_attrs(&y, &[("route", b("/health"), false)]));
    assert!(decide_attrs(&y, &[("route", b("/pay"), false)]));
    // Alone: sampled when nothing matches (an absent key included), not when one does.
    let y = format!("policies:\n  - {inv}\n");
    assert!(decide_attrs(&y, &[("route", b("/pay"), false)]));
    assert!(decide_attrs(&y, &[]));
    assert!(!decide_attrs(&y, &[("route", b("/health"), false)]));
    // Another policy's "not sampled" does not stop an inverted non-match from keeping it.
    let y = format!("policies:\n  - {inv}\n  - {{name: none, type: probabilistic, probabilistic: {{sampling_percentage: 0}}}}\n");
    assert!(decide_attrs(&y, &[("route", b("/pay"), false)]));
    // Numeric and boolean alike.
    let num = "policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: code, min_value: 500, max_value: 599, invert_match: true}}\n";
    assert!(!decide_attrs(num, &[("code", Int(503), false)]));
    assert!(decide_attrs(num, &[("code", Int(200), false)]));
    let boolean = "policies:\n  - {name: b, type: boolean_attribute, boolean_attribute: {key: cached, value: true, invert_match: true}}\n";
    assert!(!decide_attrs(boolean, &[("cached", Bool(true), false)]));
    assert!(decide_attrs(boolean, &[("cached", Bool(false), false)]));
    // Inside `and`, an inverted policy is an ordinary sub-policy.
    let and = "policies:\n  - name: a\n    type: and\n    and: {and_sub_policy: [{name: all, type: always_sample}, {name: i, type: string_attribute, string_attribute: {key: route, values: [/health], invert_match: true}}]}\n";
    assert!(decide_attrs(and, &[("route", b("/pay"), false)]));
    assert!(!decide_attrs(and, &[("route", b("/health"), false)]));
}

/// Scenario: numeric_attribute bounds of 0, and a range with min above max.
/// Guarantees: as the Collector, 0 is no bound (`min_value: 0` does not stop -5), and an
/// empty range loads with a warning and matches nothing (inverted, everything).
#[test]
fn numeric_attribute_reads_a_zero_bound_as_none() {
    use tailgate_core::wire::attrs::AttrValue::Int;
    let y = |block: &str| {
        format!("policies:\n  - {{name: n, type: numeric_attribute, numeric_attribute: {block}}}\n")
    };
    let upper = y("{key: code, min_value: 0, max_value: 100}");
    assert!(decide_attrs(&upper, &[("code", Int(-5), false)]));
    assert!(!decide_attrs(&upper, &[("code", Int(101), false)]));
    let lower = y("{key: code, min_value: 10, max_value: 0}");
    assert!(decide_attrs(&lower, &[("code", Int(500), false)]));
    assert!(!decide_attrs(&lower, &[("code", Int(9), false)]));
    let below = y("{key: code, min_value: -10, max_value: 0}");
    assert!(decide_attrs(&below, &[("code", Int(5), false)]));
    let empty = y("{key: code, min_value: 10, max_value: 5}");
    assert!(!decide_attrs(&empty, &[("code", Int(7), false)]));
    // Inverted, an empty range keeps every trace (docs/policies.md).
    let inverted = y("{key: code, min_value: 10, max_value: 5, invert_match: true}");
    assert!(decide_attrs(&inverted, &[("code", Int(7), false)]));
    assert!(decide_attrs(&inverted, &[("other", Int(7), false)]));
    let file = PolicyFile::parse(Path::new("p.yaml"), &empty).expect("loads, as in the Collector");
    assert!(
        file.ignored_options
            .iter()
            .any(|n| n.contains("above max_value")),
        "{:?}",
        file.ignored_options
    );
}

#[test]
fn numeric_and_boolean_attributes_read_values_like_pdata() {
    use tailgate_core::wire::attrs::AttrValue::{Bool, Int, Str};
    let num = "policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: code, min_value: 500, max_value: 599}}\n";
    assert!(decide_attrs(num, &[("code", Int(503), false)]));
    assert!(!decide_attrs(num, &[("code", Int(404), false)]));
    let zero = "policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: code, min_value: -1, max_value: 1}}\n";
    assert!(
        decide_attrs(
            zero,
            &[("code", Str(bytes::Bytes::from_static(b"500")), false)]
        ),
        "a string reads as 0"
    );
    for no_bounds in ["{key: code}", "{key: code, min_value: 0, max_value: 0}"] {
        assert!(parse(&format!(
            "policies:\n  - {{name: n, type: numeric_attribute, numeric_attribute: {no_bounds}}}\n"
        ))
        .unwrap_err()
        .contains("min_value"));
    }
    let boolean = "policies:\n  - {name: b, type: boolean_attribute, boolean_attribute: {key: cached, value: false}}\n";
    assert!(decide_attrs(boolean, &[("cached", Bool(false), false)]));
    assert!(!decide_attrs(boolean, &[("cached", Bool(true), false)]));
    assert!(
        decide_attrs(boolean, &[("cached", Int(1), false)]),
        "a non-boolean reads as false"
    );
    assert!(
        !decide_attrs(boolean, &[]),
        "absent attributes do not match"
    );
}

#[test]
fn collector_processor_options_are_accepted() {
    let text = "tail_sampling:\n  decision_wait: 10s\n  decision_wait_after_root_received: 2s\n  num_traces: 1000\n  expected_new_traces_per_sec: 10\n  sample_on_first_match: true\n  block_on_overflow: true\n  decision_cache: {sampled_cache_size: 1000, non_sampled_cache_size: 5000}\n  policies:\n    - {name: all, type: always_sample}\n";
    let f = parse(text).unwrap();
    assert_eq!(
        f.decision_wait_after_root_received,
        Some(Duration::from_secs(2))
    );
    assert!(f.sample_on_first_match);
    assert_eq!(PolicyPlan::compile(&f).decision_cache_size, Some(6000));
    assert_eq!(f.ignored_options.len(), 1);
    assert!(f.ignored_options[0].starts_with("block_on_overflow"));
}

/// Scenario: `num_shards` with and without a composite. Guarantees: the option is
/// accepted with a note, and with a composite the note says the budget is not divided
/// among shards as the Collector's sharded processor divides it (policies.md, Departures).
#[test]
fn num_shards_notes_the_undivided_composite_budget() {
    let head = "tail_sampling:\n  num_shards: 4\n  policies:\n";
    let plain = parse(&format!("{head}    - {{name: all, type: always_sample}}\n")).unwrap();
    assert_eq!(plain.ignored_options.len(), 1);
    assert!(plain.ignored_options[0].starts_with("num_shards:"));
    assert!(!plain.ignored_options[0].contains("composite"));
    let composite = parse(&format!(
        "{head}    - name: c\n      type: composite\n      composite:\n        max_total_spans_per_second: 100\n        policy_order: [a]\n        composite_sub_policy:\n          - {{name: a, type: always_sample}}\n        rate_allocation:\n          - {{policy: a, percent: 100}}\n"
    ))
    .unwrap();
    let note = composite
        .ignored_options
        .iter()
        .find(|o| o.starts_with("num_shards:"))
        .unwrap();
    assert!(note.contains("1/4"), "{note}");
}

/// Scenario: a drop policy listed after a sampling one, with and without
/// sample_on_first_match. Guarantees: as the Collector (processor.go moves drop policies to
/// the front and evaluates them for every trace), a matching drop drops the trace even
/// when evaluation would have stopped at an earlier sampling policy.
#[test]
fn drop_policies_run_first_even_with_sample_on_first_match() {
    let base = "policies:\n  - {name: all, type: always_sample}\n  - name: d\n    type: drop\n    drop: {drop_sub_policy: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]}\n";
    assert!(!decide(base, &[(0, MS, 2)]), "drop beats sample");
    assert!(
        decide(base, &[(0, MS, 0)]),
        "a drop that does not match drops nothing"
    );
    let first = format!("sample_on_first_match: true\n{base}");
    assert!(
        !decide(&first, &[(0, MS, 2)]),
        "a later drop still drops with sample_on_first_match"
    );
    assert!(decide(&first, &[(0, MS, 0)]));
    // sample_on_first_match stops among the others: the later policy is not evaluated.
    let yaml = "sample_on_first_match: true\npolicies:\n  - {name: all, type: always_sample}\n  - {name: later, type: status_code, status_code: {status_codes: [ERROR]}}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let mut s = crate::buffer::trace::TraceSummary::default();
    s.add_span(0, MS, 2, true);
    let mut local = super::plan::LocalVerdicts::default();
    let mut seen = Vec::new();
    let d = plan.decide_explained(
        &crate::buffer::trace::TraceView::new(&[1; 16], &s),
        &mut local,
        |i, v| seen.push((i, v)),
    );
    assert!(d.sampled);
    assert_eq!(seen, [(0, Verdict::Sampled)]);
}

/// A trace of `spans` spans with status `status`, decided by `plan` at `now`.
fn decide_at(plan: &PolicyPlan, spans: u32, status: u8, now: tokio::time::Instant) -> bool {
    use crate::buffer::trace::{TraceSummary, TraceView};
    let mut s = TraceSummary::default();
    for _ in 0..spans {
        s.add_span(0, MS, status, false);
        s.bytes += 100;
    }
    plan.decide(&TraceView {
        trace_id: &[9; 16],
        summary: &s,
        spans: crate::buffer::Spans::EMPTY,
        now,
    })
    .sampled
}

#[test]
fn rate_and_bytes_limiting_keep_what_fits_the_bucket() {
    let plan = PolicyPlan::compile(&parse("policies:\n  - {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 10}}\n").unwrap());
    let t0 = tokio::time::Instant::now();
    // The bucket starts full with twice the rate: four 5-span traces pass, the fifth not.
    let kept: Vec<bool> = (0..5).map(|_| decide_at(&plan, 5, 0, t0)).collect();
    assert_eq!(kept, [true, true, true, true, false]);
    // A second later ten spans more fit.
    let t1 = t0 + Duration::from_secs(1);
    assert!(decide_at(&plan, 5, 0, t1) && decide_at(&plan, 5, 0, t1));
    assert!(!decide_at(&plan, 1, 0, t1));
    // A trace larger than the bucket never passes.
    assert!(!decide_at(&plan, 21, 0, t1 + Duration::from_secs(60)));

    // 100 bytes per span: 1000 bytes/s with a 1500-byte burst.
    let plan = PolicyPlan::compile(&parse("policies:\n  - {name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000, burst_capacity: 1500}}\n").unwrap());
    let t0 = tokio::time::Instant::now();
    assert!(decide_at(&plan, 10, 0, t0));
    assert!(!decide_at(&plan, 10, 0, t0));
    assert!(decide_at(&plan, 5, 0, t0));
    assert!(decide_at(&plan, 10, 0, t0 + Duration::from_secs(1)));
    assert!(parse(
        "policies:\n  - {name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 0}}\n"
    )
    .unwrap_err()
    .contains("bytes_limiting.bytes_per_second"));
}

/// Scenario: the zero values the Collector reads as "not set": `burst_capacity` 0 or
/// negative on both limiting kinds, `decision_wait_after_root_received: 0s`.
/// Guarantees: they load, as in the Collector (which checks `> 0`), and act as left out: a
/// bucket of twice the rate (twenty spans at 10 a second pass, the twenty-first not), no
/// early decision after the root.
#[test]
fn zero_values_the_collector_reads_as_unset_load_as_defaults() {
    for burst in ["0", "-5"] {
        // 100 bytes per span: 1000 bytes a second is 10 spans a second.
        for (kind, rate) in [
            ("rate_limiting", "spans_per_second: 10"),
            ("bytes_limiting", "bytes_per_second: 1000"),
        ] {
            let plan = PolicyPlan::compile(
                &parse(&format!(
                    "policies:\n  - {{name: r, type: {kind}, {kind}: {{{rate}, burst_capacity: {burst}}}}}\n"
                ))
                .unwrap(),
            );
            let t0 = tokio::time::Instant::now();
            let kept: Vec<bool> = (0..5).map(|_| decide_at(&plan, 5, 0, t0)).collect();
            assert_eq!(kept, [true, true, true, true, false], "{kind} {burst}");
        }
    }
    let f = parse(
        "decision_wait_after_root_received: 0s\npolicies:\n  - {name: a, type: always_sample}\n",
    )
    .unwrap();
    assert_eq!(f.decision_wait_after_root_received, None);
}

#[test]
fn composite_allocates_the_budget_like_the_collector_under_overload() {
    let yaml = "policies:
  - name: budget
    type: composite
    composite:
      max_total_spans_per_second: 100
      policy_order: [errors, rest, unshared]
      composite_sub_policy:
        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
        - {name: rest, type: always_sample}
        - {name: unshared, type: always_sample}
      rate_allocation:
        - {policy: errors, percent: 60}
        - {policy: rest, percent: 40}
";
    // A negative percent loads, as in the Collector (an int64 there), and is an equal
    // split like 0.
    let negative = yaml.replace("percent: 40", "percent: -10");
    let PolicyKind::Composite(c) = &parse(&negative).unwrap().policies[0].kind else {
        panic!("a composite");
    };
    assert_eq!(c.allocations(), [60, 33, 33]);
    let file = parse(yaml).unwrap();
    // A sub-policy missing from rate_allocation gets max_total / number of sub-policies
    // (Collector PR #49857, composite_helper.go), no longer nothing.
    let PolicyKind::Composite(c) = &file.policies[0].kind else {
        panic!("a composite");
    };
    assert_eq!(c.allocations(), [60, 40, 33]);
    // Shares over the total are kept and warned of (an adoption trial's 145%); within it,
    // nothing is said.
    assert!(
        file.ignored_options.iter().any(|w| w.contains(
            "shares add up to 133 spans per second, over max_total_spans_per_second (100)"
        )),
        "{:?}",
        file.ignored_options
    );
    let within = parse(&yaml.replace("percent: 40", "percent: 7")).unwrap();
    assert!(
        !within
            .ignored_options
            .iter()
            .any(|w| w.contains("shares add up")),
        "{:?}",
        within.ignored_options
    );
    let plan = PolicyPlan::compile(&file);
    // Spread the evaluations over one wall-clock second's worth of instants: the counters
    // restart each second, so start right after a second boundary.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let t0 = tokio::time::Instant::now()
        + Duration::from_nanos(1_000_000_000 - u64::from(unix.subsec_nanos()))
        + Duration::from_millis(1);
    // 20 error traces of 10 spans in one second: 60 spans of budget keep 6; the rest are
    // not sampled, and do not fall through to `rest`.
    let errors = (0..20).filter(|_| decide_at(&plan, 10, 2, t0)).count();
    assert_eq!(errors, 6);
    // `rest` keeps its own 40 spans.
    let rest = (0..20).filter(|_| decide_at(&plan, 10, 0, t0)).count();
    assert_eq!(rest, 4);
    // A smaller trace still fits what is left of a share... none is left here.
    assert!(!decide_at(&plan, 1, 0, t0));
    // `unshared`, never reached (`rest` samples first), is tested in composite.rs.
    // The next second starts afresh.
    let t1 = t0 + Duration::from_secs(1);
    assert!(decide_at(&plan, 10, 2, t1));
    assert!(decide_at(&plan, 10, 0, t1));
}

#[test]
fn trace_state_and_trace_flags_read_the_span_fields() {
    use tailgate_core::wire::attrs::AttrValue::{Bool, Str};
    let b = |s: &'static str| Str(bytes::Bytes::from_static(s.as_bytes()));
    let yaml = "policies:\n  - {name: t, type: trace_state, trace_state: {key: vendor, values: [gold, silver]}}\n";
    let key = "\0tracestate:vendor";
    assert!(decide_attrs(yaml, &[(key, b("gold"), false)]));
    assert!(!decide_attrs(yaml, &[(key, b("bronze"), false)]));
    assert!(
        !decide_attrs(yaml, &[("vendor", b("gold"), false)]),
        "an attribute is not a tracestate entry"
    );
    let yaml = "policies:\n  - {name: f, type: trace_flags}\n";
    assert!(decide_attrs(
        yaml,
        &[("\0trace_flags.sampled", Bool(true), false)]
    ));
    assert!(!decide_attrs(yaml, &[]));
}

#[test]
fn kept_probability_is_the_highest_of_the_policies_that_kept_it() {
    use crate::buffer::trace::{TraceSummary, TraceView};
    let yaml = "policies:\n  - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 100}}\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: tenth, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let mut s = TraceSummary::default();
    s.add_span(0, MS, 0, true);
    let d = plan.decide(&TraceView::new(&[9; 16], &s));
    assert!(d.sampled);
    assert_eq!(d.policy, Some(0));
    assert_eq!(d.probability, 1.0);
    let yaml = "policies:\n  - {name: tenth, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n  - name: both\n    type: and\n    and: {and_sub_policy: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50, hash_salt: x}}, {name: any, type: always_sample}]}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    // Find a trace only the 10% policy keeps, and one both keep.
    let (mut only_tenth, mut both) = (None, None);
    for n in 0..10_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let d = plan.decide(&TraceView::new(&id, &s));
        let half = plan.policies()[1].evaluate(&TraceView::new(&id, &s)) == Verdict::Sampled;
        match (d.sampled, half) {
            (true, false) => only_tenth = Some(d.probability),
            (true, true) => both = Some(d.probability),
            _ => {}
        }
    }
    assert_eq!(only_tenth, Some(0.1));
    assert_eq!(
        both,
        Some(0.5),
        "the and of 50% and always is 50%, the higher"
    );
}

#[test]
fn and_of_probabilistic_and_attribute_needs_both_and_keeps_the_probability() {
    use crate::buffer::trace::{TraceAttr, TraceSummary, TraceView};
    use tailgate_core::wire::attrs::AttrValue::Str;
    let yaml = "policies:\n  - name: some-payments\n    type: and\n    and:\n      and_sub_policy:\n        - {name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}\n        - {name: pay, type: string_attribute, string_attribute: {key: route, values: [/pay]}}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let half = probabilistic::ProbabilisticPolicy::new(&probabilistic::ProbabilisticConfig {
        sampling_percentage: 50.0,
        hash_salt: String::new(),
    });
    let with_route = |route: &'static str| {
        let mut s = TraceSummary::default();
        s.add_span(0, MS, 0, true);
        s.add_attrs(&[TraceAttr {
            key: 0,
            value: Str(bytes::Bytes::from_static(route.as_bytes())),
            from_resource: false,
            from_root: true,
        }]);
        s
    };
    let (pay, other) = (with_route("/pay"), with_route("/cart"));
    let mut seen = [0u32; 4];
    for n in 0..400u64 {
        // Random-looking ids, as real ones are: FNV mixes the last bytes poorly into the
        // high bits, so ids differing in a counter alone would all land on one side.
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()).to_le_bytes());
        id[8..].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&n.to_be_bytes()).to_le_bytes());
        let in_half = half.evaluate(&TraceView::new(&id, &pay)) == Verdict::Sampled;
        let d = plan.decide(&TraceView::new(&id, &pay));
        assert_eq!(
            d.sampled, in_half,
            "a /pay trace is kept exactly when in the 50%"
        );
        if d.sampled {
            assert_eq!(d.probability, 0.5);
        }
        assert!(
            !plan.decide(&TraceView::new(&id, &other)).sampled,
            "never without /pay"
        );
        seen[usize::from(in_half)] += 1;
    }
    assert!(seen[0] > 150 && seen[1] > 150, "{seen:?}");
}

/// Scenario: files relying on rules the Collector changed between versions.
/// Guarantees: check-policies has one note per such rule, and none for a file that relies
/// on no changed rule.
#[test]
fn version_notes_name_each_changed_rule_relied_on() {
    let notes = |y: &str| super::version_notes(&parse(y).unwrap());
    assert!(notes(
        "policies:\n  - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}\n"
    )
    .is_empty());
    let n = notes("sample_on_first_match: true\npolicies:\n  - {name: s, type: latency, latency: {threshold_ms: 5}}\n  - {name: i, type: string_attribute, string_attribute: {key: k, values: [v], invert_match: true}}\n  - name: d\n    type: drop\n    drop: {drop_sub_policy: [{name: a, type: always_sample}]}\n  - name: c\n    type: composite\n    composite: {max_total_spans_per_second: 10, composite_sub_policy: [{name: x, type: always_sample}]}\n");
    assert_eq!(n.len(), 4, "{n:?}");
    for word in ["invert_match", "latency", "drop", "composite"] {
        assert!(n.iter().any(|l| l.starts_with(word)), "{word}: {n:?}");
    }
    assert!(notes("policies:\n  - {name: s, type: latency, latency: {threshold_ms: 5, upper_threshold_ms: 9}}\n").is_empty());
}

/// Scenario: an ottl_condition that fails (error_mode propagate) under `not`, `and`, a
/// `drop`, and beside a probabilistic policy. Guarantees: as the Collector (not.go, and.go,
/// drop.go, processor.go), the error passes through and the plan skips the policy: `not`
/// does not turn it into a sample, a failing `drop` drops nothing.
#[test]
fn a_failing_condition_neither_samples_nor_drops() {
    let failing = "{name: f, type: ottl_condition, ottl_condition: {span: ['name + 1 == 2']}}";
    let mut s = crate::buffer::trace::TraceSummary::default();
    s.add_span(0, MS, 0, true);
    let spans = encoded_spans();
    let decide = |yaml: &str| {
        let plan = PolicyPlan::compile(&parse(yaml).unwrap());
        let view = crate::buffer::trace::TraceView {
            trace_id: &[3; 16],
            summary: &s,
            spans: spans.spans(),
            now: tokio::time::Instant::now(),
        };
        (
            plan.decide(&view).sampled,
            plan.policies()[0].evaluate(&view),
        )
    };
    let not =
        format!("policies:\n  - name: n\n    type: not\n    not: {{not_sub_policy: {failing}}}\n");
    assert_eq!(decide(&not), (false, Verdict::Error));
    let and = format!("policies:\n  - name: a\n    type: and\n    and: {{and_sub_policy: [{{name: all, type: always_sample}}, {failing}]}}\n");
    assert_eq!(decide(&and), (false, Verdict::Error));
    let drop = format!("policies:\n  - name: d\n    type: drop\n    drop: {{drop_sub_policy: [{failing}]}}\n  - {{name: all, type: always_sample}}\n");
    assert_eq!(decide(&drop), (true, Verdict::Error));
}

/// Scenario: a `not` as a sub-policy of `and` and of `drop` (the Collector's config_test
/// loads one in `and-policy-1`), and kinds that still may not nest.
/// Guarantees: both load and decide on the negated verdict; `not` in `not` and `and` in
/// `and` are refused, naming the position.
#[test]
fn not_nests_in_and_and_drop_only() {
    use tailgate_core::wire::attrs::AttrValue::Str;
    let b = |s: &'static str| Str(bytes::Bytes::from_static(s.as_bytes()));
    let not_health = "{name: nh, type: not, not: {not_sub_policy: {name: h, type: string_attribute, string_attribute: {key: route, values: [/health]}}}}";
    let and = format!("policies:\n  - name: a\n    type: and\n    and: {{and_sub_policy: [{{name: all, type: always_sample}}, {not_health}]}}\n");
    assert!(decide_attrs(&and, &[("route", b("/pay"), false)]));
    assert!(!decide_attrs(&and, &[("route", b("/health"), false)]));
    // Drop probes that are not errors: a `not` inside the drop's AND.
    let drop = "policies:\n  - name: d\n    type: drop\n    drop:\n      drop_sub_policy:\n        - {name: probe, type: string_attribute, string_attribute: {key: route, values: [/live]}}\n        - {name: no-error, type: not, not: {not_sub_policy: {name: e, type: string_attribute, string_attribute: {key: outcome, values: [error]}}}}\n  - {name: all, type: always_sample}\n";
    assert!(!decide_attrs(drop, &[("route", b("/live"), false)]));
    assert!(decide_attrs(
        drop,
        &[("route", b("/live"), false), ("outcome", b("error"), false)]
    ));
    assert!(decide_attrs(drop, &[("route", b("/pay"), false)]));
    let nested_not = entry("{name: n, type: not, not: {not_sub_policy: {name: m, type: not, not: {not_sub_policy: {name: a, type: always_sample}}}}}");
    assert!(matches!(
        nested_not,
        Err(PolicyError::Nested {
            kind: "not",
            index: 0,
            ..
        })
    ));
    // `not_sub_policy` is one mapping: named without a position (a decoder check read
    // `not.not_sub_policy[0]` as a list the file should have).
    let message = nested_not.unwrap_err().to_string();
    assert!(
        message.starts_with("policy \"n\": not.not_sub_policy: not cannot be nested here"),
        "{message}"
    );
    assert!(matches!(
        entry("{name: d, type: drop, drop: {drop_sub_policy: [{name: a, type: always_sample}, {name: b, type: and, and: {and_sub_policy: [{name: c, type: always_sample}]}}]}}"),
        Err(PolicyError::Nested { kind: "and", index: 1, .. })
    ));
}

/// Scenario: a `not` of an `and` ("not all of these": a Refinery rule of two trace-scope
/// conditions excluded from a later rule; a trial found it refused), and one whose `and`
/// holds an `adaptive_rate`.
/// Guarantees: the first keeps a trace unless both conditions hold; the second is refused
/// naming the rule.
#[test]
fn not_of_an_and_is_not_all_of_them() {
    use tailgate_core::wire::attrs::AttrValue::Str;
    let b = |s: &'static str| Str(bytes::Bytes::from_static(s.as_bytes()));
    let yaml = "policies:\n  - name: rest\n    type: not\n    not:\n      not_sub_policy:\n        name: both\n        type: and\n        and: {and_sub_policy: [{name: r, type: string_attribute, string_attribute: {key: route, values: [/api]}}, {name: t, type: string_attribute, string_attribute: {key: tier, values: [gold]}}]}\n";
    assert!(!decide_attrs(
        yaml,
        &[("route", b("/api"), false), ("tier", b("gold"), false)]
    ));
    assert!(decide_attrs(yaml, &[("route", b("/api"), false)]));
    assert!(decide_attrs(yaml, &[("tier", b("gold"), false)]));
    let adaptive = "{name: n, type: not, not: {not_sub_policy: {name: a, type: and, and: {and_sub_policy: [{name: s, type: always_sample}, {name: d, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 1}}]}}}}";
    assert!(matches!(
        entry(adaptive),
        Err(PolicyError::Nested { kind: "and", .. })
    ));
}

/// Scenario: Refinery's rule that hands its matches to a dynamic sampler, written as an
/// `and` of a condition and `adaptive_rate` (a Refinery user's trial: refused as "cannot be
/// nested here"); `adaptive_rate` in `drop` and `not`.
/// Guarantees: the `and` loads, and its `adaptive_rate` sees only the traces the condition
/// keeps: at a target of one trace in its first interval, five other routes first leave
/// the budget to the matching trace; listed first, or in `drop` and `not`, it is refused
/// naming the rule.
#[test]
fn adaptive_rate_may_follow_conditions_in_an_and() {
    use crate::buffer::trace::{TraceAttr, TraceSummary, TraceView};
    let yaml = "policies:\n  - name: api\n    type: and\n    and:\n      and_sub_policy:\n        - {name: route, type: string_attribute, string_attribute: {key: http.route, values: [/api]}}\n        - {name: dynamic, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 1, keys: [root.http.route]}}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let now = tokio::time::Instant::now();
    let decide = |id: u8, route: &'static str| {
        let mut s = TraceSummary::default();
        s.add_span(0, MS, 0, true);
        s.add_attrs(&[TraceAttr {
            key: 0,
            value: tailgate_core::wire::attrs::AttrValue::Str(bytes::Bytes::from_static(
                route.as_bytes(),
            )),
            from_resource: false,
            from_root: true,
        }]);
        plan.decide(&TraceView {
            trace_id: &[id; 16],
            summary: &s,
            spans: crate::buffer::Spans::EMPTY,
            now,
        })
        .sampled
    };
    for id in 1..=5 {
        assert!(!decide(id, "/web"));
    }
    assert!(
        decide(6, "/api"),
        "the other routes spent nothing of the budget"
    );
    assert!(!decide(7, "/api"), "the budget of one trace is spent");
    let first = "{name: a, type: and, and: {and_sub_policy: [{name: d, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 1}}, {name: s, type: always_sample}]}}";
    assert!(matches!(
        entry(first),
        Err(PolicyError::Nested {
            kind: "adaptive_rate",
            index: 0,
            ..
        })
    ));
    for holder in [
        "{name: d, type: drop, drop: {drop_sub_policy: [{name: a, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 1}}]}}",
        "{name: n, type: not, not: {not_sub_policy: {name: a, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 1}}}}",
    ] {
        assert!(
            matches!(entry(holder), Err(PolicyError::Nested { kind: "adaptive_rate", .. })),
            "{holder}"
        );
    }
}

/// Scenario: `latency` with only `upper_threshold_ms`, `span_count` with only `max_spans`.
/// Guarantees: the left-out bound is 0, the Collector's zero value: traces of 1..=500 ms,
/// and of at most one span, are kept.
#[test]
fn left_out_lower_bounds_are_zero() {
    let f = parse("policies:\n  - {name: l, type: latency, latency: {upper_threshold_ms: 500}}\n  - {name: s, type: span_count, span_count: {max_spans: 1}}\n").unwrap();
    assert!(
        matches!(&f.policies[0].kind, PolicyKind::Latency(c) if c.threshold_ms == 0 && c.upper_threshold_ms == 500)
    );
    assert!(
        matches!(&f.policies[1].kind, PolicyKind::SpanCount(c) if c.min_spans == 0 && c.max_spans == 1)
    );
    let plan = PolicyPlan::compile(&f);
    let mut one = crate::buffer::trace::TraceSummary::default();
    one.add_span(0, 300 * MS, 0, true);
    let view = crate::buffer::trace::TraceView::new(&[1; 16], &one);
    assert_eq!(plan.policies()[0].evaluate(&view), Verdict::Sampled);
    assert_eq!(plan.policies()[1].evaluate(&view), Verdict::Sampled);
    one.add_span(0, 600 * MS, 0, false);
    let view = crate::buffer::trace::TraceView::new(&[1; 16], &one);
    assert_eq!(plan.policies()[0].evaluate(&view), Verdict::NotSampled);
    assert_eq!(plan.policies()[1].evaluate(&view), Verdict::NotSampled);
}

/// Scenario: YAML merge keys (`<<: *anchor`) in a settings block, a whole policy and a
/// whole processor of a Collector config (Go's YAML, the Collector's, applies them).
/// Guarantees: each loads with the merged values; a file without them reads as before.
#[test]
fn yaml_merge_keys_are_applied() {
    let f = parse("policies:\n  - name: slow\n    type: latency\n    latency: &lat {threshold_ms: 500}\n  - name: slow-bounded\n    type: latency\n    latency:\n      <<: *lat\n      upper_threshold_ms: 900\n").unwrap();
    assert!(
        matches!(&f.policies[1].kind, PolicyKind::Latency(c) if c.threshold_ms == 500 && c.upper_threshold_ms == 900)
    );
    let f = parse("policies:\n  - &errors {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - <<: *errors\n    name: errors-copy\n").unwrap();
    assert_eq!(f.policies[1].name, "errors-copy");
    assert!(matches!(f.policies[1].kind, PolicyKind::StatusCode(_)));
    let whole = "processors:\n  tail_sampling/a: &base\n    decision_wait: 10s\n    policies: [{name: all, type: always_sample}]\n  tail_sampling/b:\n    <<: *base\n    decision_wait: 20s\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling/b], exporters: [otlp]}\n";
    let f = PolicyFile::parse(Path::new("collector.yaml"), whole).unwrap();
    assert_eq!(f.decision_wait, std::time::Duration::from_secs(20));
    assert_eq!(f.policies[0].name, "all");
    // A merge of something that is not a mapping is refused, as by the Collector, at
    // its line (the library's message names none).
    // A valid merge before it, and a comment and a quoted value holding `<<:`, are not
    // blamed; an alias to a scalar is found too.
    let err = parse("x: &s 5\n# a <<: comment\npolicies:\n  - name: p\n    type: latency\n    latency: &l {threshold_ms: 5}\n  - name: q\n    type: string_attribute\n    string_attribute: {key: \"a<<: b\", values: [x]}\n  - name: r\n    type: latency\n    latency:\n      <<: *l\n  - name: s\n    type: latency\n    latency: { <<: 5 }\n").unwrap_err();
    assert!(
        err.contains("policies.yaml:16: policies[3].latency.<<: expected a mapping or list of mappings for merging"),
        "{err}"
    );
    let err = parse("x: &s 5\npolicies:\n  - name: p\n    type: latency\n    latency: &l {threshold_ms: 5}\n  - name: q\n    type: latency\n    latency:\n      <<: [*l, *s]\n").unwrap_err();
    assert!(
        err.contains("policies.yaml:9: policies[1].latency.<<:"),
        "{err}"
    );
}

/// Scenario: a policy entry with a block for another type, as copy-paste leaves them.
/// Guarantees: the file loads and decides by its type, as the Collector (which decodes
/// every block and reads its type's), and the loader warns, naming policy and block.
#[test]
fn a_block_for_another_type_loads_with_a_warning() {
    let f = parse("policies:\n  - {name: errs, type: status_code, status_code: {status_codes: [ERROR]}, latency: {threshold_ms: 5}}\n").unwrap();
    assert!(matches!(f.policies[0].kind, PolicyKind::StatusCode(_)));
    assert_eq!(f.ignored_options.len(), 1, "{:?}", f.ignored_options);
    assert!(f.ignored_options[0].contains("\"errs\""));
    assert!(f.ignored_options[0].contains("`latency:`"));
    // A sub-policy's too.
    let f = parse("policies:\n  - name: a\n    type: and\n    and: {and_sub_policy: [{name: inner, type: always_sample, probabilistic: {sampling_percentage: 5}}]}\n").unwrap();
    assert!(f
        .ignored_options
        .iter()
        .any(|n| n.contains("\"inner\"") && n.contains("probabilistic")));
}

/// Scenario: span-ingest with a `drop` whose condition fails (error_mode propagate) on a
/// batch, and a policy that samples. Guarantees: as the Collector's
/// makeDecisionOnSpanIngest (an error is counted and skipped before a drop is marked
/// pending), the failing drop does not hold the trace: it is kept at once.
#[test]
fn span_ingest_skips_a_failing_drop() {
    let failing = "{name: f, type: ottl_condition, ottl_condition: {span: ['name + 1 == 2']}}";
    let yaml = format!("sampling_strategy: span-ingest\npolicies:\n  - name: d\n    type: drop\n    drop: {{drop_sub_policy: [{failing}]}}\n  - {{name: all, type: always_sample}}\n");
    let plan = PolicyPlan::compile(&parse(&yaml).unwrap());
    let mut s = crate::buffer::trace::TraceSummary::default();
    s.add_span(0, MS, 0, true);
    let spans = encoded_spans();
    let view = crate::buffer::trace::TraceView {
        trace_id: &[3; 16],
        summary: &s,
        spans: spans.spans(),
        now: tokio::time::Instant::now(),
    };
    assert_eq!(plan.policies()[0].evaluate(&view), Verdict::Error);
    let mut local = Default::default();
    let d = plan
        .decide_batch(&view, &mut local)
        .expect("decided at once");
    assert!(d.sampled);
    // A drop that does not match (rather than fails) still holds it.
    let yaml = "sampling_strategy: span-ingest\npolicies:\n  - name: d\n    type: drop\n    drop: {drop_sub_policy: [{name: never, type: probabilistic, probabilistic: {sampling_percentage: 0}}]}\n  - {name: all, type: always_sample}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    assert!(plan.decide_batch(&view, &mut local).is_none());
}

/// Scenario: several policies keep a trace with different probabilities, the less
/// probable first in the file.
/// Guarantees: the credited policy is the first that sampled, in evaluation order, as the
/// Collector's makeDecision records it (the first policy whose decision is Sampled), while
/// the kept spans carry the highest probability among them (a trace any deterministic
/// policy keeps is kept for certain).
#[test]
fn the_credited_policy_is_the_first_that_sampled() {
    let yaml = "policies:\n  - {name: tenth, type: probabilistic, probabilistic: {sampling_percentage: 100}}\n  - {name: all, type: always_sample}\n  - {name: also, type: always_sample}\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let mut s = crate::buffer::trace::TraceSummary::default();
    s.add_span(0, MS, 0, true);
    let d = plan.decide(&crate::buffer::trace::TraceView::new(&[1; 16], &s));
    assert_eq!((d.policy, d.probability), (Some(0), 1.0));
    let yaml = yaml.replace("sampling_percentage: 100", "sampling_percentage: 10");
    let plan = PolicyPlan::compile(&parse(&yaml).unwrap());
    let (mut by_tenth, mut by_all) = (0, 0);
    for id in 0..=255u8 {
        let d = plan.decide(&crate::buffer::trace::TraceView::new(&[id; 16], &s));
        assert_eq!(d.probability, 1.0, "always_sample kept it too");
        match d.policy {
            Some(0) => by_tenth += 1,
            Some(1) => by_all += 1,
            other => panic!("credited {other:?}"),
        }
    }
    // The 10% policy samples some of these ids and is then credited, as it comes first.
    assert!(by_tenth > 0 && by_all > by_tenth, "{by_tenth} / {by_all}");
    // Behind a drop policy (evaluated first) that does not match, the first sampling one
    // is still credited: for an id the 10% policy keeps, it; for one it does not, the next.
    let ids: Vec<[u8; 16]> = (0..=255u8).map(|i| [i; 16]).collect();
    let tenth_keeps = |id: &[u8; 16]| {
        plan.decide(&crate::buffer::trace::TraceView::new(id, &s))
            .policy
            == Some(0)
    };
    let kept = *ids.iter().find(|id| tenth_keeps(id)).unwrap();
    let not_kept = *ids.iter().find(|id| !tenth_keeps(id)).unwrap();
    let yaml = format!("{yaml}  - {{name: d, type: drop, drop: {{drop_sub_policy: [{{name: n, type: probabilistic, probabilistic: {{sampling_percentage: 0}}}}]}}}}\n");
    let plan = PolicyPlan::compile(&parse(&yaml).unwrap());
    let credit = |id: &[u8; 16]| {
        plan.decide(&crate::buffer::trace::TraceView::new(id, &s))
            .policy
    };
    assert_eq!(credit(&kept), Some(0));
    assert_eq!(credit(&not_kept), Some(1));
}

/// One span, encoded as the buffer holds it.
fn encoded_spans() -> crate::buffer::SpanList {
    encoded_span(0, 0)
}

/// One span of trace `[3; 16]` named `op`, with these start and end times, as the gateway
/// buffers it.
fn encoded_span(start_time_unix_nano: u64, end_time_unix_nano: u64) -> crate::buffer::SpanList {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![3; 16],
                    span_id: vec![1; 8],
                    name: "op".into(),
                    start_time_unix_nano,
                    end_time_unix_nano,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = bytes::Bytes::from(req.encode_to_vec());
    let plan =
        PolicyPlan::compile(&parse("policies:\n  - {name: a, type: always_sample}\n").unwrap());
    let mut scan = tailgate_core::wire::Scan::default();
    scan.scan(&body).unwrap();
    let (req, spans) = crate::buffer::incoming_spans(&body, &scan, &plan, None);
    spans.iter().map(|s| s.buffered(&req)).collect()
}

/// Scenario: a latency rule written in OTTL, as Collector users write one in a policy
/// file (`span.end_time - span.start_time > Duration("2s")`).
/// Guarantees: it loads, keeps a 3 s span's trace and not a 1 s one's.
#[test]
fn an_ottl_latency_rule_keeps_slow_traces() {
    let yaml = "policies:\n  - name: slow\n    type: ottl_condition\n    ottl_condition:\n      span:\n        - 'span.end_time - span.start_time > Duration(\"2s\")'\n";
    let plan = PolicyPlan::compile(&parse(yaml).unwrap());
    let keeps = |seconds: u64| {
        let spans = encoded_span(1_000_000_000, (1 + seconds) * 1_000_000_000);
        let mut s = crate::buffer::trace::TraceSummary::default();
        s.add_span(0, seconds * 1_000, 0, true);
        plan.decide(&crate::buffer::trace::TraceView {
            trace_id: &[3; 16],
            summary: &s,
            spans: spans.spans(),
            now: tokio::time::Instant::now(),
        })
        .sampled
    };
    assert!(keeps(3));
    assert!(!keeps(1));
}

/// Scenario: parser errors inside a policy (a wrong type, a block that is no policy type).
/// Guarantees: the message names the policy by its `name:`, its line and key, and says
/// which block a misspelt one stands for.
#[test]
fn parser_errors_name_the_policy() {
    let err = parse("policies:\n  - name: ok\n    type: always_sample\n  - name: slow\n    type: latency\n    latency: {threshold_ms: fast}\n").unwrap_err();
    assert!(
        err.starts_with(
            "policies.yaml:6: policies[1].latency.threshold_ms: policy \"slow\": invalid type"
        ),
        "{err}"
    );
    // A block of one or two keys: its keys listed once, without the path again.
    let err = parse("policies:\n  - name: c\n    type: and\n    and:\n      x: 1\n").unwrap_err();
    assert_eq!(
        err,
        "policies.yaml:5: policies[0].and: policy \"c\": unknown key `x` in `and`; expected `and_sub_policy`"
    );
    let err =
        parse("policies:\n  - name: odd\n    type: latencyy\n    latencyy: {threshold_ms: 5}\n")
            .unwrap_err();
    assert!(
        err.contains("policy \"odd\"") && err.contains("did you mean `latency`?"),
        "{err}"
    );
}

/// Scenario: durations as the Collector's docs and Go write them in a policy file.
/// Guarantees: fractions and compound forms read; a bare number is refused with a hint.
#[test]
fn policy_durations_are_go_durations() {
    let f = parse("decision_wait: 1.5s\ndecision_wait_after_root_received: 1m30s\npolicies:\n  - {name: a, type: always_sample}\n").unwrap();
    assert_eq!(f.decision_wait, Duration::from_millis(1500));
    assert_eq!(
        f.decision_wait_after_root_received,
        Some(Duration::from_secs(90))
    );
    let err =
        parse("decision_wait: 10\npolicies:\n  - {name: a, type: always_sample}\n").unwrap_err();
    assert!(
        err.contains("invalid duration \"10\"") && err.contains("1m30s"),
        "{err}"
    );
}

/// Validates one entry written in YAML, as the loader does.
fn entry(yaml: &str) -> Result<PolicyConfig, PolicyError> {
    PolicyConfig::try_from(serde_yaml_ng::from_str::<RawPolicy>(yaml).unwrap())
}

#[test]
fn entry_errors_are_typed_by_what_is_wrong() {
    assert!(matches!(
        entry("type: latency"),
        Err(PolicyError::MissingName)
    ));
    assert!(matches!(
        entry("name: a"),
        Err(PolicyError::MissingType { policy, .. }) if policy == "a"
    ));
    assert!(matches!(
        entry("{name: a, type: sometimes}"),
        Err(PolicyError::UnknownType { kind, supported, .. })
            if kind == "sometimes" && supported.contains("ottl_condition")
    ));
    assert!(matches!(
        entry("{name: a, type: latency}"),
        Err(PolicyError::MissingBlock {
            kind: "latency",
            ..
        })
    ));
    assert!(matches!(
        entry("{name: a, type: always_sample, latency: {threshold_ms: 1}}"),
        Ok(PolicyConfig { kind: PolicyKind::AlwaysSample(_), unused_blocks, .. })
            if unused_blocks == ["latency"]
    ));
    assert!(matches!(
        entry("{name: a, type: latency, latency: {threshold_ms: -1}}"),
        Err(PolicyError::Setting { block: "latency", error: SettingError::OutOfRange { key, .. }, .. })
            if key == "threshold_ms"
    ));
    // Refused as mistakes (docs/policies.md, Departures), where the Collector loads them
    // and keeps nothing.
    assert!(matches!(
        entry("{name: a, type: latency, latency: {threshold_ms: 10, upper_threshold_ms: 5}}"),
        Err(PolicyError::Setting { block: "latency", error: SettingError::OutOfRange { key, .. }, .. })
            if key == "upper_threshold_ms"
    ));
    let e = parse("policies:\n  - {name: a, type: probabilistic, probabilistic: {hash_salt: x}}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sampling_percentage") && e.contains(":2"), "{e}");
    // A left-out boolean `value` is false, as the Collector's zero value.
    assert!(matches!(
        entry("{name: a, type: boolean_attribute, boolean_attribute: {key: k}}"),
        Ok(PolicyConfig { kind: PolicyKind::BooleanAttribute(c), .. }) if !c.value && c.key == "k"
    ));
    assert!(matches!(
        entry("{name: a, type: string_attribute, string_attribute: {key: k, values: ['('], enabled_regex_matching: true}}"),
        Err(PolicyError::Setting { error: SettingError::Regex { .. }, .. })
    ));
    assert!(matches!(
        entry("{name: a, type: ottl_condition, ottl_condition: {span: ['nope(']}}"),
        Err(PolicyError::Setting { error: SettingError::Ottl { key, .. }, .. }) if key == "span[0]"
    ));
    assert!(matches!(
        entry("{name: a, type: and, and: {and_sub_policy: []}}"),
        Err(PolicyError::NoSubPolicies {
            key: "and.and_sub_policy",
            ..
        })
    ));
    assert!(matches!(
        entry("{name: a, type: and, and: {and_sub_policy: [{name: b, type: and, and: {and_sub_policy: [{name: c, type: always_sample}]}}]}}"),
        Err(PolicyError::Nested { kind: "and", index: 0, .. })
    ));
    let err = entry("{name: a, type: composite, composite: {max_total_spans_per_second: 10, composite_sub_policy: [{name: b, type: latency}]}}").unwrap_err();
    let PolicyError::InSubPolicy {
        index: 0, error, ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(matches!(
        *error,
        PolicyError::MissingBlock {
            kind: "latency",
            ..
        }
    ));
}

#[test]
fn every_kind_in_the_table_validates_and_compiles_with_its_settings() {
    // One entry per `type:` name: adding a kind to the table without a working block
    // fails here.
    let blocks = [
        ("always_sample", "{}"),
        ("latency", "{threshold_ms: 1}"),
        ("probabilistic", "{sampling_percentage: 10}"),
        ("status_code", "{status_codes: [ERROR]}"),
        ("span_count", "{min_spans: 2}"),
        ("string_attribute", "{key: k, values: [v]}"),
        ("numeric_attribute", "{key: k, min_value: 1}"),
        ("boolean_attribute", "{key: k, value: true}"),
        ("trace_state", "{key: k, values: [v]}"),
        ("trace_flags", "{}"),
        ("rate_limiting", "{spans_per_second: 10}"),
        ("bytes_limiting", "{bytes_per_second: 10}"),
        ("ottl_condition", "{span: ['name == \"x\"']}"),
        ("and", "{and_sub_policy: [{name: s, type: always_sample}]}"),
        ("drop", "{drop_sub_policy: [{name: s, type: always_sample}]}"),
        ("not", "{not_sub_policy: {name: s, type: always_sample}}"),
        ("composite", "{max_total_spans_per_second: 10, composite_sub_policy: [{name: s, type: always_sample}]}"),
        ("adaptive_rate", "{target_traces_per_second: 10}"),
    ];
    assert_eq!(blocks.len(), KIND_NAMES.len());
    for (kind, block) in blocks {
        assert!(KIND_NAMES.contains(&kind), "{kind}");
        let p = entry(&format!("{{name: p, type: {kind}, {kind}: {block}}}"))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(p.kind.name(), kind);
        let mut keys = Vec::new();
        let _ = p.compile(&mut keys);
    }
}

/// Scenario: mistakes a trial on real configs met with serde's wording: a bare list of
/// policies, an `and:` given a list, a number left empty by an unset variable.
/// Guarantees: the message says what the file should hold (no struct names, no "unit
/// value"), with the line.
#[test]
fn shape_errors_speak_of_the_file() {
    let bare = parse("- name: a\n  type: always_sample\n").unwrap_err();
    assert!(bare.contains("put the list under `policies:`"), "{bare}");
    let and = parse("policies:\n  - name: a\n    type: and\n    and: [x]\n").unwrap_err();
    assert!(
        and.contains(":4:") && and.contains("expected a mapping of settings"),
        "{and}"
    );
    assert!(!and.contains("AndConfig"), "{and}");
    let empty = parse(
        "policies:\n  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: }}\n",
    )
    .unwrap_err();
    assert!(
        empty.contains("an empty value (null, or an unset"),
        "{empty}"
    );
}

/// Scenario: an `ottl_condition` with two span conditions, one holding an `or` (a trial
/// found `A | B or C` ambiguous in `check-policies`' plan).
/// Guarantees: each condition is shown in parentheses, joined by `or`; a single condition
/// is shown bare.
#[test]
fn ottl_descriptions_group_each_condition() {
    let plan = |yaml: &str| PolicyPlan::compile(&parse(yaml).unwrap()).describe();
    let two = plan("policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition:\n      span: ['name == \"a\"', 'kind == 1 or kind == 2']\n");
    assert!(
        two.contains("keep traces with a span where (name == \"a\") or (kind == 1 or kind == 2)"),
        "{two}"
    );
    let one = plan("policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {span: ['name == \"a\"']}\n");
    assert!(
        one.contains("keep traces with a span where name == \"a\"\n"),
        "{one}"
    );
}

/// Scenario: `string_attribute` values written as a YAML boolean and number (found in a
/// blog's config: `values: [true]` meant the boolean attribute), inside an `and` too, and
/// quoted ones. Guarantees: a warning for each unquoted one, naming the key; none for
/// quoted values.
#[test]
fn untyped_string_attribute_values_are_warned_about() {
    let file = parse("policies:\n  - {name: c, type: string_attribute, string_attribute: {key: critical, values: [true, \"yes\"]}}\n  - name: a\n    type: and\n    and: {and_sub_policy: [{name: s, type: string_attribute, string_attribute: {key: code, values: [200, '500']}}]}\n").unwrap();
    let warned: Vec<&String> = file
        .ignored_options
        .iter()
        .filter(|w| w.contains("compared as text"))
        .collect();
    assert_eq!(warned.len(), 2, "{:?}", file.ignored_options);
    assert!(
        warned[0].contains("\"critical\" lists the boolean true"),
        "{warned:?}"
    );
    assert!(
        warned[1].contains("\"code\" lists the number 200"),
        "{warned:?}"
    );
}

/// Scenario (review): a quoted reference among `string_attribute` values, and a whole
/// Collector config whose unused processor and later sections hold untyped values.
/// Guarantees: the reference draws no warning (it is read as written, before
/// substitution); only the chosen processor's policies are checked.
#[test]
fn untyped_value_warnings_read_the_chosen_settings_as_written() {
    let warned = |text: &str| -> Vec<String> {
        parse(text)
            .unwrap()
            .ignored_options
            .into_iter()
            .filter(|w| w.contains("compared as text"))
            .collect()
    };
    assert!(warned("policies:\n  - {name: c, type: string_attribute, string_attribute: {key: code, values: [\"${env:TG_TEST_UNSET_CODE:-200}\"]}}\n").is_empty());
    let whole = "processors:\n  tail_sampling:\n    policies:\n      - {name: c, type: string_attribute, string_attribute: {key: used, values: [true]}}\n  tail_sampling/other:\n    policies:\n      - {name: c, type: string_attribute, string_attribute: {key: unused, values: [true]}}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces: {processors: [tail_sampling]}\n";
    let w = warned(whole);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"used\""), "{w:?}");
}

/// Scenario (review): an unknown key in a sub-policy entry, and a policy whose name reads
/// as a number. Guarantees: the first is called a policy type or settings block (not a
/// key of a block named `and.and_sub_policy[0]`); the second names the policy "7".
#[test]
fn entry_keys_and_numeric_names_are_reported_plainly() {
    let err = parse("policies:\n  - name: a\n    type: and\n    and: {and_sub_policy: [{name: s, type: always_sample, foo: 1}]}\n").unwrap_err();
    assert!(
        err.contains("unknown policy type or settings block `foo`"),
        "{err}"
    );
    let err = parse("policies:\n  - {name: ${env:TG_TEST_UNSET_N:-7}, type: status_code, status_code: {status_codes: 5}}\n").unwrap_err();
    assert!(err.contains("policy \"7\""), "{err}");
}

/// Scenario: the plan of a span-ingest file in plain words (docs/policies.md: decided
/// batch by batch; `decision_wait` is when an undecided trace is given up).
/// Guarantees: the description says so, and a trace-complete file's does not.
#[test]
fn span_ingest_plans_describe_batches() {
    let plan = |yaml: &str| PolicyPlan::compile(&parse(yaml).unwrap()).describe();
    let ingest =
        plan("sampling_strategy: span-ingest\npolicies:\n  - {name: all, type: always_sample}\n");
    assert!(
        ingest.starts_with("decide each batch of a trace's spans as it arrives (span-ingest); a trace still undecided 30s after its first span is not sampled"),
        "{ingest}"
    );
    let complete = plan("policies:\n  - {name: all, type: always_sample}\n");
    assert!(
        complete.starts_with("decide 30s after a trace's first span"),
        "{complete}"
    );
}

/// Scenario: list keys written as one string, as the Collector's configs may write them
/// (`status_codes: ERROR`, values separated by commas, as a `${env:…}` holding `a,b`
/// gives). Guarantees: read as the Collector's decoder reads them: split at commas.
#[test]
fn a_string_where_a_list_goes_is_split_at_commas() {
    let plan = |yaml: &str| PolicyPlan::compile(&parse(yaml).unwrap()).describe();
    let one_string = plan(
        "policies:\n  - {name: e, type: status_code, status_code: {status_codes: ERROR}}\n\
         \x20 - {name: s, type: string_attribute, string_attribute: {key: service.name, values: 'checkout,payment'}}\n",
    );
    let lists = plan(
        "policies:\n  - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}\n\
         \x20 - {name: s, type: string_attribute, string_attribute: {key: service.name, values: [checkout, payment]}}\n",
    );
    assert_eq!(one_string, lists);
    assert!(
        lists.contains(r#"is one of "checkout", "payment""#),
        "{lists}"
    );
    // The plan names bounds left out as such, not as i64's extremes.
    let bounds = plan(
        "policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 50}}\n  - {name: s, type: string_attribute, string_attribute: {key: service.name, values: [a]}}\n",
    );
    assert!(
        bounds.contains(r#"attribute "k" is at least 50"#),
        "{bounds}"
    );
    assert!(
        bounds.contains(r#"attribute "service.name" is "a""#),
        "{bounds}"
    );
    // The other list keys: trace_state values, ottl conditions, a composite's order.
    let same = |one: &str, list: &str| assert_eq!(plan(one), plan(list), "{one}");
    same(
        "policies:\n  - {name: t, type: trace_state, trace_state: {key: ot, values: 'a,b'}}\n",
        "policies:\n  - {name: t, type: trace_state, trace_state: {key: ot, values: [a, b]}}\n",
    );
    same(
        "policies:\n  - {name: o, type: ottl_condition, ottl_condition: {span: 'attributes[\"x\"] == 1'}}\n",
        "policies:\n  - {name: o, type: ottl_condition, ottl_condition: {span: ['attributes[\"x\"] == 1']}}\n",
    );
    let order = parse(
        "policies:\n  - {name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: 'x,y', composite_sub_policy: [{name: x, type: always_sample}, {name: y, type: always_sample}], rate_allocation: [{policy: x, percent: 50}, {policy: y, percent: 50}]}}\n",
    );
    assert!(order.is_ok(), "{:?}", order.err());
}

/// Scenario: integer settings written as decimals (`threshold_ms: 1.5`, `min_spans: 2.7`),
/// which the Collector's decoder takes for their whole part, and ones no integer holds.
/// Guarantees: the file loads and decides with the whole parts, as the Collector does
/// (before, it was refused: "invalid type: floating point"); a value out of the
/// setting's range, NaN and an infinity are refused naming the key.
#[test]
fn decimals_in_integer_settings_are_read_for_their_whole_part() {
    let latency = "num_traces: 100.9\npolicies:\n  - {name: slow, type: latency, latency: {threshold_ms: 1.5}}\n";
    assert_eq!(parse(latency).unwrap().num_traces, 100);
    // Threshold 1 ms (exclusive): 2 ms is slow; with 2 it would not be.
    assert!(decide(latency, &[(0, 2 * MS, 0)]));
    assert!(!decide(latency, &[(0, MS, 0)]));
    let count = "policies:\n  - {name: n, type: span_count, span_count: {min_spans: 2.7}}\n";
    assert!(decide(count, &[(0, MS, 0), (0, MS, 0)]));
    assert!(!decide(count, &[(0, MS, 0)]));
    for text in [
        "policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 5.5, max_value: -2.5e1}}\n",
        "policies:\n  - {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 35.5}}\n",
        "decision_cache: {sampled_cache_size: 10.5}\npolicies:\n  - {name: a, type: always_sample}\n",
        "policies:\n  - name: c\n    type: composite\n    composite:\n      max_total_spans_per_second: 100.5\n      policy_order: [a]\n      composite_sub_policy: [{name: a, type: always_sample}]\n      rate_allocation: [{policy: a, percent: 33.3}]\n",
    ] {
        assert!(parse(text).is_ok(), "{text}: {:?}", parse(text).err());
    }
    for (text, key) in [
        ("policies:\n  - {name: n, type: span_count, span_count: {min_spans: 3e9}}\n", "min_spans"),
        ("policies:\n  - {name: s, type: latency, latency: {threshold_ms: .nan}}\n", "threshold_ms"),
        ("policies:\n  - {name: s, type: latency, latency: {threshold_ms: -.inf}}\n", "threshold_ms"),
        ("policies:\n  - {name: r, type: rate_limiting, rate_limiting: {spans_per_second: -1.5}}\n", "spans_per_second"),
        ("policies:\n  - {name: r, type: rate_limiting, rate_limiting: {spans_per_second: -0.5}}\n", "spans_per_second"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(key), "{text}: {err}");
    }
}

/// Scenario: numbers in the forms Go's YAML reads and serde's refuses (a known finding of a
/// parity run: `sampling_percentage: 0x10` was refused as "integer `16`, expected a
/// number"): hex, octal with `0o` and with a leading zero, binary, upper-case prefixes,
/// `08` (no octal: Go's float 8), a sign; beside them a quoted decimal and `0x` alone.
/// Guarantees: each reads as the Collector reads it, in a float setting and an integer
/// one; the quoted decimal and `0x` are refused as before.
#[test]
fn numbers_in_go_yaml_forms_read_as_the_collector_reads_them() {
    let file = |pct: &str, min: &str| {
        parse(&format!("policies:\n  - {{name: p, type: probabilistic, probabilistic: {{sampling_percentage: {pct}}}}}\n  - {{name: n, type: numeric_attribute, numeric_attribute: {{key: k, min_value: {min}, max_value: 100}}}}\n"))
    };
    for (text, want) in [
        ("0x10", 16),
        ("0X10", 16),
        ("0o17", 15),
        ("017", 15),
        ("0b101", 5),
        ("0B101", 5),
        ("08", 8),
        ("-0x10", -16),
        ("-010", -8),
        ("0x1_0", 16),
    ] {
        let f = file(text, text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let described = PolicyPlan::compile(&f).describe();
        assert!(
            described.contains(&format!("keep {want}% of traces"))
                && described.contains(&format!("within [{want}, 100]")),
            "{text}: {described}"
        );
    }
    for text in ["\"5\"", "0x", "0o8", "0xg"] {
        assert!(file(text, "1").is_err(), "{text}");
        assert!(file("1", text).is_err(), "{text}");
    }
}

/// Scenario: string settings written as YAML booleans or numbers (`span: [true]`, a
/// `key: 404`, a numeric `hash_salt`, a sub-policy's `name: 7`), which the Collector's
/// decoder refuses; the same from a list a reference gives (`${env:…}` holding `[true]`,
/// whose items are typed there), from a merge key, in the first of two documents, and
/// written `1_000`; and quoted or given whole by a reference.
/// Guarantees: refused with the key path and its line (`span: [true]` kept every trace
/// before: a condition of `true`; a review found the list, merge and two-document forms
/// passing); quoted values and whole references load, as in the Collector.
#[test]
fn string_settings_written_as_booleans_or_numbers_are_refused() {
    let cases = [
        (
            "  - {name: o, type: ottl_condition, ottl_condition: {spanevent: ['name == \"x\"'], span: [true]}}\n",
            "policies.yaml:2: policies[0].ottl_condition.span[0]: expected text, found a boolean",
        ),
        (
            "  - {name: n, type: numeric_attribute, numeric_attribute: {key: 404, min_value: 1}}\n",
            "policies.yaml:2: policies[0].numeric_attribute.key: expected text, found a number",
        ),
        (
            "  - name: p\n    type: probabilistic\n    probabilistic:\n      sampling_percentage: 5\n      hash_salt: 0x1F\n",
            "policies.yaml:6: policies[0].probabilistic.hash_salt: expected text, found a number",
        ),
        (
            "  - name: t\n    type: trace_state\n    trace_state:\n      key: ot\n      values:\n        - a\n        - 1\n",
            "policies.yaml:8: policies[0].trace_state.values[1]: expected text",
        ),
        (
            "  - name: a\n    type: and\n    and:\n      and_sub_policy:\n        - {name: ok, type: always_sample}\n        - name: 7\n          type: always_sample\n",
            "policies.yaml:7: policies[0].and.and_sub_policy[1].name: expected text, found a number",
        ),
        (
            "  - name: c\n    type: composite\n    composite:\n      max_total_spans_per_second: 10\n      policy_order: [x]\n      composite_sub_policy: [{name: x, type: always_sample}]\n      rate_allocation:\n        - {policy: 1, percent: 50}\n",
            "policies.yaml:9: policies[0].composite.rate_allocation[0].policy: expected text, found a number",
        ),
        // A list a reference gives is YAML there, its items typed.
        (
            "  - name: o\n    type: ottl_condition\n    ottl_condition:\n      span: ${env:TAILGATE_TEST_UNSET_CONDS:-[true]}\n",
            "policies[0].ottl_condition.span[0]: expected text, found a boolean",
        ),
        // A merge brings typed values.
        (
            "  - &base {name: a, type: always_sample}\n  - <<: {name: 7, type: always_sample}\n",
            "policies[1].name: expected text, found a number",
        ),
        // Go's YAML reads `1_000` as a number (it was read as the key "1000").
        (
            "  - {name: n, type: string_attribute, string_attribute: {key: 1_000, values: [x]}}\n",
            "policies[0].string_attribute.key: expected text, found a number",
        ),
        // The first of two documents is the one read, and checked.
        (
            "  - {name: o, type: ottl_condition, ottl_condition: {span: [true]}}\n---\nother: 1\n",
            "policies[0].ottl_condition.span[0]: expected text, found a boolean",
        ),
    ];
    for (policy, want) in cases {
        let err = parse(&format!("policies:\n{policy}")).unwrap_err();
        assert!(err.contains(want), "{policy}: {err}");
    }
    for loads in [
        "  - {name: o, type: ottl_condition, ottl_condition: {span: ['true']}}\n",
        "  - {name: n, type: numeric_attribute, numeric_attribute: {key: '404', min_value: 1}}\n",
        // A whole reference gives its text to a text setting.
        "  - name: p\n    type: probabilistic\n    probabilistic:\n      sampling_percentage: 5\n      hash_salt: ${env:TAILGATE_TEST_UNSET_SALT:-123}\n",
        "  - name: o\n    type: ottl_condition\n    ottl_condition:\n      span:\n        - ${env:TAILGATE_TEST_UNSET_COND:-true}\n",
        // In a flow mapping, as written, a reference is no YAML: nothing is refused.
        "  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 5, hash_salt: ${env:TAILGATE_TEST_UNSET_SALT:-123}}}\n",
    ] {
        let loaded = parse(&format!("policies:\n{loads}"));
        assert!(loaded.is_ok(), "{loads}: {loaded:?}");
    }
}

/// Scenario: the number forms docs/policies.md and docs/configuration.md list as
/// departures or as read like the Collector: quoted Go integer forms, quoted decimals, a
/// quoted whole reference holding `0x10`, null for a setting with a default and for
/// `min_value`, and an integer past its setting's 32 bits.
/// Guarantees: each reads or is refused as the docs say.
#[test]
fn number_forms_read_as_the_docs_say() {
    let latency = |v: &str| {
        parse(&format!(
            "policies:\n  - name: l\n    type: latency\n    latency: {{threshold_ms: {v}}}\n"
        ))
        .map(|f| match &f.policies[0].kind {
            PolicyKind::Latency(c) => c.threshold_ms,
            other => panic!("{other:?}"),
        })
    };
    // Quoted, Go's other integer forms read as the number (the Collector refuses them).
    assert_eq!(latency("\"0x10\""), Ok(16));
    assert_eq!(latency("\"010\""), Ok(8));
    assert_eq!(latency("\"0b101\""), Ok(5));
    // So does a quoted whole reference holding one (as in the Collector).
    assert_eq!(latency("\"${env:TAILGATE_TEST_UNSET_MS:-0x10}\""), Ok(16));
    // Quoted decimals are refused, as there.
    for refused in ["\"10\"", "\"1e3\"", "\"+5\""] {
        let err = latency(refused).unwrap_err();
        assert!(err.contains("invalid type: string"), "{refused}: {err}");
    }
    // Null for a setting with a default is refused; min_value reads null as left out.
    assert!(latency("~").unwrap_err().contains("an empty value"));
    let f = parse("policies:\n  - {name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: ~, max_value: 5}}\n").unwrap();
    assert!(
        matches!(&f.policies[0].kind, PolicyKind::NumericAttribute(c) if c.min_value.is_none()),
        "{:?}",
        f.policies[0].kind
    );
    // Past 32 bits, refused (the Collector wraps it).
    let err =
        parse("policies:\n  - {name: s, type: span_count, span_count: {min_spans: 4294967297}}\n")
            .unwrap_err();
    assert!(err.contains("4294967297 is out of range"), "{err}");
}

/// Scenario: `hash_salt: ${file:PATH}` with a salt file ending in a line break, as `echo`
/// writes one. Guarantees: the salt is the content without it (the departure
/// docs/policies.md states: the Collector keeps it, and then keeps other traces).
#[test]
fn a_salt_from_a_file_loses_its_final_line_break() {
    let dir = tailgate_core::test_util::scratch_dir("salt-file").unwrap();
    let salt = dir.join("salt");
    std::fs::write(&salt, "a\n").unwrap();
    let f = parse(&format!(
        "policies:\n  - name: p\n    type: probabilistic\n    probabilistic:\n      sampling_percentage: 50\n      hash_salt: ${{file:{}}}\n",
        salt.display()
    ))
    .unwrap();
    assert!(
        matches!(&f.policies[0].kind, PolicyKind::Probabilistic(c) if c.hash_salt == "a"),
        "{:?}",
        f.policies[0].kind
    );
}
