//! OTTL conditions against encoded spans. Expected results follow the Collector's
//! pkg/ottl (grammar.go, compare.go, contexts/ottlspan and ottlspanevent, ottlfuncs) and
//! the tail_sampling processor's internal/sampling/ottl_test.go.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::eval::SpanInput;
use super::*;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

struct Encoded {
    span: Vec<u8>,
    resource: Vec<u8>,
    scope: Vec<u8>,
}

fn sample() -> Encoded {
    let sp = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![],
        trace_state: "ot=th:8,vendor=gold".into(),
        name: "GET /api/users".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_750_000_000,
        attributes: vec![
            kv("http.response.status_code", any_value::Value::IntValue(503)),
            kv("http.route", s("/api/users")),
            kv("ratio", any_value::Value::DoubleValue(0.5)),
            kv("cached", any_value::Value::BoolValue(false)),
            kv("client.address", s("10.1.2.3")),
            kv("server.address", s("::ffff:192.168.1.7")),
            kv(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a")),
                        },
                        AnyValue {
                            value: Some(s("b")),
                        },
                    ],
                }),
            ),
            kv(
                "user",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("tier", s("gold"))],
                }),
            ),
        ],
        events: vec![span::Event {
            time_unix_nano: 1_100_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("TimeoutError"))],
            dropped_attributes_count: 0,
        }],
        status: Some(Status {
            message: "upstream failed".into(),
            code: 2,
        }),
        ..Default::default()
    };
    let resource = ResourceSpans {
        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", s("checkout")),
                kv("deployment.environment", s("prod")),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let scope = ScopeSpans {
        scope: Some(InstrumentationScope {
            name: "io.opentelemetry.http".into(),
            version: "1.2.3".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Encoded {
        span: sp.encode_to_vec(),
        resource: resource.encode_to_vec(),
        scope: scope.encode_to_vec(),
    }
}

fn holds(ctx: Context, cond: &str) -> Result<bool, OttlError> {
    let e = sample();
    let c = Condition::new(cond, ctx).unwrap_or_else(|err| panic!("{cond}: {err}"));
    let event = match ctx {
        Context::Span => &[][..],
        Context::SpanEvent => eval::events(&e.span).next().unwrap(),
    };
    c.holds(&SpanInput {
        span: &e.span,
        resource: &e.resource,
        scope: &e.scope,
        event,
    })
}

/// `span` alone, without resource, scope or event, as a condition sees it.
fn bare(span: &[u8]) -> SpanInput<'_> {
    SpanInput {
        span,
        resource: &[],
        scope: &[],
        event: &[],
    }
}

/// Scenario: `Keys` (a list built by a converter) read by the list converters: `Len`,
/// `ContainsValue`, `Index`, `IsList`, `String` (JSON); maps with keys and none; targets
/// that are not maps.
/// Guarantees: each decides as pkg/ottl's `Keys` does (a slice of the map's keys, in its
/// order); a target that is not a map, nil included, is an error, as OTTL's `PMapGetter`
/// makes it.
#[test]
fn keys_lists_a_maps_keys_in_order() {
    for c in [
        r#"Len(Keys(attributes)) == 8"#,
        r#"Index(Keys(attributes), "tags") == 6"#,
        r#"Index(Keys(attributes), "nope") == -1"#,
        r#"IsList(Keys(attributes))"#,
        r#"ContainsValue(Keys(resource.attributes), "service.name")"#,
        r#"not ContainsValue(Keys(resource.attributes), "host.name")"#,
        r#"String(Keys(attributes["user"])) == "[\"tier\"]""#,
        r#"Len(Keys(scope.attributes)) == 0"#,
    ] {
        assert_eq!(holds(Context::Span, c), Ok(true), "{c}");
    }
    for c in [
        r#"Len(Keys(attributes["missing"])) == 0"#,
        r#"Len(Keys(attributes["tags"])) == 0"#,
        r#"Len(Keys(name)) == 0"#,
    ] {
        assert!(
            matches!(holds(Context::Span, c), Err(OttlError::Eval(_))),
            "{c}: {:?}",
            holds(Context::Span, c)
        );
    }
}

/// Scenario: `Coalesce`, `Trim`, `Split`, `Values` and `ParseInt` on the sample span's
/// values, including the edges of their Go counterparts (`strings.Trim` with an empty or
/// non-ASCII cutset, `strings.Split` with an empty target or delimiter,
/// `strconv.ParseInt` with base 0 prefixes, underscores, signs and the int64 range).
/// Guarantees: each decides as pkg/ottl's converter (func_coalesce.go, func_trim.go,
/// func_split.go, func_values.go, func_parse_int.go) and its indexing of a converter's
/// result do; a target of the wrong kind, nil included where pkg/ottl's typed getter
/// refuses it, and a number Go does not parse are evaluation errors; a delimiter or cutset
/// that is not a literal string is refused at load. One documented departure is asserted
/// as such: a map reached inside a list a converter built cannot be used whole
/// (`Len(Values(attributes)[7])`).
#[test]
fn coalesce_trim_split_values_and_parse_int_decide_as_ottl() {
    for c in [
        // The semantic conventions' rename: whichever the span has.
        r#"Coalesce([attributes["http.status_code"], attributes["http.response.status_code"]]) == 503"#,
        r#"Coalesce([attributes["missing"], nil]) == nil"#,
        r#"Coalesce([name, attributes["missing"]]) == "GET /api/users""#,
        r#"Coalesce([attributes["missing"], Len(name) + 1]) == 15"#,
        r#"Trim("  x y  ") == "x y""#,
        r#"Trim("\tx ") == "\tx""#,
        r#"Trim("--x-y--", "-") == "x-y""#,
        r#"Trim("xyxhixy", "yx") == "hi""#,
        r#"Trim(" x ", "") == " x ""#,
        r#"Trim("ééxé", "é") == "x""#,
        r#"Trim("", " ") == """#,
        r#"Len(Split(attributes["http.route"], "/")) == 3"#,
        r#"Index(Split(attributes["http.route"], "/"), "users") == 2"#,
        r#"Index(Split(attributes["http.route"], "/"), "") == 0"#,
        r#"ContainsValue(Split("a,b,,c", ","), "")"#,
        r#"String(Split("a,b,,c", ",")) == "[\"a\",\"b\",\"\",\"c\"]""#,
        r#"String(Split("", ",")) == "[\"\"]""#,
        r#"String(Split("héj", "")) == "[\"h\",\"é\",\"j\"]""#,
        r#"Len(Split("", "")) == 0"#,
        r#"String(Split("aaa", "aa")) == "[\"\",\"a\"]""#,
        r#"Len(Values(attributes)) == 8"#,
        r#"Index(Values(attributes), 503) == 0"#,
        r#"ContainsValue(Values(attributes), "/api/users")"#,
        r#"ContainsValue(Values(resource.attributes), "checkout")"#,
        r#"String(Values(attributes["user"])) == "[\"gold\"]""#,
        r#"Len(Values(scope.attributes)) == 0"#,
        r#"ParseInt("42", 10) == 42"#,
        r#"ParseInt("-42", 10) == -42"#,
        r#"ParseInt("+7", 10) == 7"#,
        r#"ParseInt("ff", 16) == 255"#,
        r#"ParseInt("FF", 16) == 255"#,
        r#"ParseInt("z", 36) == 35"#,
        r#"ParseInt("0x1f", 0) == 31"#,
        r#"ParseInt("0X1F", 0) == 31"#,
        r#"ParseInt("0o17", 0) == 15"#,
        r#"ParseInt("017", 0) == 15"#,
        r#"ParseInt("0b101", 0) == 5"#,
        r#"ParseInt("0", 0) == 0"#,
        r#"ParseInt("1_000", 0) == 1000"#,
        r#"ParseInt("0x_1f", 0) == 31"#,
        r#"ParseInt("-9223372036854775808", 10) == -9223372036854775808 - 0"#,
        r#"ParseInt("9223372036854775807", 10) == 9223372036854775807"#,
        r#"ParseInt("101", 1 + 1) == 5"#,
        // A converter's result indexed, as OTTL's grammar allows.
        r#"Split(attributes["http.route"], "/")[1] == "api""#,
        r#"Split(name, " ")[0] == "GET""#,
        r#"ParseInt(Split("port:8080", ":")[1], 10) + 1 == 8081"#,
        r#"Keys(attributes)[1] == "http.route""#,
        r#"Values(attributes)[0] == 503"#,
        r#"Values(attributes)[6][1] == "b""#,
        r#"Coalesce([attributes["user"]])["tier"] == "gold""#,
        r#"Coalesce([attributes["tags"]])[1] == "b""#,
        // Coalesce of a list value: its first item that is not nil (pkg/ottl's SliceGetter).
        r#"Coalesce(attributes["tags"]) == "a""#,
        r#"Coalesce(attributes["missing"]) == nil"#,
        r#"Coalesce(Split(",b", ",")) == """#,
        r#"Coalesce(Keys(attributes)) == "http.response.status_code""#,
        // Indexing through a map a converter's list holds, in place.
        r#"Values(attributes)[7]["tier"] == "gold""#,
        // Go's []byte indexes to a byte; signed indexes as OTTL's lexer reads them.
        r#"Coalesce([0x0102])[1] == 2"#,
        r#"Split(name, " ")[+1] == "/api/users""#,
        r#"attributes["tags"][+1] == "b""#,
        r#"Len(Split(name, " ")[1]) == 10"#,
    ] {
        assert_eq!(holds(Context::Span, c), Ok(true), "{c}");
    }
    for c in [
        // A getter's error ends Coalesce, even past a value.
        r#"Coalesce([1 / 0, 1]) == 1"#,
        r#"Trim(attributes["missing"]) == """#,
        r#"Trim(attributes["http.response.status_code"]) == "503""#,
        r#"Len(Split(attributes["missing"], ",")) == 0"#,
        r#"Len(Split(attributes["tags"], ",")) == 0"#,
        r#"Len(Values(attributes["missing"])) == 0"#,
        r#"Len(Values(name)) == 0"#,
        r#"ParseInt("", 10) == 0"#,
        r#"ParseInt(attributes["missing"], 10) == 0"#,
        r#"ParseInt(attributes["http.response.status_code"], 10) == 503"#,
        r#"ParseInt("10", -1) == 0"#,
        r#"ParseInt("10", 1) == 0"#,
        r#"ParseInt("10", 37) == 0"#,
        r#"ParseInt("10", 2.0) == 2"#,
        r#"ParseInt("12", 2) == 0"#,
        r#"ParseInt("1_000", 10) == 1000"#,
        r#"ParseInt("_1", 0) == 1"#,
        r#"ParseInt("1__0", 0) == 10"#,
        r#"ParseInt("1_", 0) == 1"#,
        r#"ParseInt("0x", 0) == 0"#,
        r#"ParseInt("08", 0) == 8"#,
        r#"ParseInt("+", 10) == 0"#,
        r#"ParseInt(" 1", 10) == 1"#,
        r#"ParseInt("9223372036854775808", 10) == 0"#,
        r#"ParseInt("-9223372036854775809", 10) == 0"#,
        r#"Split("a,b", ",")[2] == nil"#,
        r#"Split("a,b", ",")["k"] == nil"#,
        r#"Split(name, " ")[0][0] == nil"#,
        r#"Coalesce([attributes["user"]])["nope"] == nil"#,
        r#"Coalesce([attributes["user"]])[0] == nil"#,
        r#"Len(Values(attributes)[7]) == 1"#,
        r#"Coalesce(name) == nil"#,
        r#"Coalesce([]) == nil"#,
        r#"Coalesce(Split("", "")) == nil"#,
        r#"Coalesce([0x0102])[2] == 0"#,
        r#"Split(name, " ")[-1] == "x""#,
        r#"attributes["tags"][-1] == "b""#,
    ] {
        assert!(
            matches!(holds(Context::Span, c), Err(OttlError::Eval(_))),
            "{c}: {:?}",
            holds(Context::Span, c)
        );
    }
    for (c, says) in [
        (r#"Split(name, attributes["x"]) == nil"#, "string literal"),
        (r#"Trim(name, 1) == nil"#, "string literal"),
        (r#"ParseInt("1") == 1"#, "takes 2 argument"),
    ] {
        match Condition::new(c, Context::Span) {
            Err(OttlError::Parse { message, .. }) => {
                assert!(message.contains(says), "{c}: {message}")
            }
            other => panic!("{c}: {other:?}"),
        }
    }
}

/// Scenario: `IsEmpty` of each kind of value a condition reads or builds (pkg/ottl's
/// `func_is_empty_test.go` cases where a condition can make them), and `ConvertCase` to
/// each case.
/// Guarantees: each decides as pkg/ottl's current converters; `ConvertCase` to a case that
/// does not exist is refused at load as pkg/ottl refuses it.
#[test]
fn is_empty_and_convert_case_decide_as_ottl() {
    for c in [
        r#"IsEmpty(attributes["missing"])"#,
        r#"IsEmpty(nil)"#,
        r#"IsEmpty("")"#,
        r#"not IsEmpty("hello")"#,
        r#"IsEmpty(0)"#,
        r#"not IsEmpty(1)"#,
        r#"IsEmpty(0.0)"#,
        r#"not IsEmpty(1.5)"#,
        r#"not IsEmpty(-0.0)"#,
        r#"not IsEmpty(0.0 * -1.0)"#,
        r#"IsEmpty(false)"#,
        r#"not IsEmpty(true)"#,
        r#"IsEmpty(attributes["cached"])"#,
        r#"not IsEmpty(attributes["http.response.status_code"])"#,
        r#"not IsEmpty(attributes["user"])"#,
        r#"not IsEmpty(attributes["tags"])"#,
        r#"not IsEmpty(attributes)"#,
        r#"IsEmpty(scope.attributes)"#,
        r#"IsEmpty(cache)"#,
        r#"IsEmpty([])"#,
        r#"not IsEmpty(["v"])"#,
        r#"IsEmpty(Split("", ""))"#,
        r#"not IsEmpty(Split("a", ","))"#,
        r#"IsEmpty(Keys(scope.attributes))"#,
        r#"not IsEmpty(0x01)"#,
        r#"not IsEmpty(trace_id)"#,
        r#"IsEmpty(parent_span_id)"#,
        r#"IsEmpty(TraceID(0x00000000000000000000000000000000))"#,
        r#"not IsEmpty(SpanID(0x0102030405060708))"#,
        r#"IsEmpty(Duration("0s"))"#,
        r#"not IsEmpty(Duration("1ns"))"#,
        r#"IsEmpty(end_time - end_time)"#,
        r#"not IsEmpty(start_time)"#,
        r#"not IsEmpty(Unix(0))"#,
        r#"not IsEmpty(events)"#,
        r#"not IsEmpty(links)"#,
        r#"IsEmpty(dropped_attributes_count)"#,
        r#"not IsEmpty(kind)"#,
        r#"IsEmpty(status.message) == false"#,
        r#"ConvertCase(name, "lower") == "get /api/users""#,
        r#"ConvertCase(name, "upper") == "GET /API/USERS""#,
        r#"ConvertCase("", "upper") == """#,
    ] {
        assert_eq!(holds(Context::Span, c), Ok(true), "{c}");
    }
    for c in [
        r#"IsEmpty(1 / 0)"#,
        r#"ConvertCase(attributes["missing"], "lower") == nil"#,
        r#"ConvertCase(attributes["http.response.status_code"], "lower") == "503""#,
    ] {
        assert!(
            matches!(holds(Context::Span, c), Err(OttlError::Eval(_))),
            "{c}: {:?}",
            holds(Context::Span, c)
        );
    }
    for (c, says) in [
        (
            r#"ConvertCase(name, "title") == """#,
            "invalid case: title, allowed cases are: lower, upper, snake, camel",
        ),
        (r#"ConvertCase(name, name) == """#, "string literal"),
        (r#"ConvertCase(name) == """#, "takes 2 argument"),
        (r#"IsEmpty()"#, "takes 1 argument"),
    ] {
        match Condition::new(c, Context::Span) {
            Err(OttlError::Parse { message, .. }) => {
                assert!(message.contains(says), "{c}: {message}")
            }
            other => panic!("{c}: {other:?}"),
        }
    }
}

/// Scenario: span conditions of every supported form.
/// Guarantees: each decides as the Collector's OTTL does on the same span.
#[test]
fn span_conditions_decide_as_ottl() {
    let t = |c: &str| holds(Context::Span, c).unwrap();
    for yes in [
        r#"name == "GET /api/users""#,
        r#"span.name == "GET /api/users""#,
        "kind == SPAN_KIND_SERVER",
        r#"kind.string == "Server""#,
        "status.code == STATUS_CODE_ERROR",
        r#"status.message == "upstream failed""#,
        r#"attributes["http.response.status_code"] >= 500"#,
        r#"attributes["http.response.status_code"] >= 500 and attributes["http.route"] == "/api/users""#,
        r#"attributes["ratio"] < 1"#,
        r#"attributes["ratio"] == 0.5"#,
        r#"attributes["cached"] == false"#,
        r#"attributes["missing"] == nil"#,
        r#"attributes["missing"] != "x""#,
        r#"attributes["tags"][1] == "b""#,
        r#"attributes["user"]["tier"] == "gold""#,
        r#"resource.attributes["service.name"] == "checkout""#,
        r#"instrumentation_scope.name == "io.opentelemetry.http""#,
        r#"scope.version == "1.2.3""#,
        r#"trace_state["vendor"] == "gold""#,
        r#"trace_state["nope"] == """#,
        "end_time_unix_nano - start_time_unix_nano > 500000000",
        "(end_time_unix_nano - start_time_unix_nano) / 1000000 == 750",
        r#"IsMatch(name, "users$")"#,
        r#"IsMatch(attributes["http.response.status_code"], "^5")"#,
        r#"not IsMatch(name, "^POST")"#,
        r#"IsString(attributes["http.route"]) and IsInt(attributes["http.response.status_code"])"#,
        r#"IsDouble(attributes["ratio"]) and IsBool(attributes["cached"])"#,
        r#"IsList(attributes["tags"]) and IsMap(attributes["user"])"#,
        r#"Len(attributes["tags"]) == 2 and Len(name) == 14 and Len("é") == 2"#,
        r#"Int("42") == 42 and Int("x") == nil and Double("1.5") == 1.5"#,
        r#"Int(attributes["missing"]) == nil and Double(attributes["missing"]) == nil"#,
        // Paths for `Len` and the rest of ottlspan's.
        "Len(span.events) == 1 and Len(links) == 0",
        r#"kind.deprecated_string == "SPAN_KIND_SERVER""#,
        r#"cache["x"] == nil and Len(cache) == 0"#,
        r#"resource.schema_url == "https://opentelemetry.io/schemas/1.26.0""#,
        r#"instrumentation_scope.schema_url == """#,
        // A list literal is a list to IsList and Len; Concat takes a list the span holds.
        r#"IsList(["a"]) and Len(["a", "b"]) == 2"#,
        r#"Concat(attributes["tags"], ",") == "a,b""#,
        // A pattern the span holds, compiled at evaluation.
        r#"IsMatch(name, attributes["http.route"])"#,
        // Ids from literals: the id's bytes or its hex; an absent id is zeros.
        "trace_id == TraceID(0x01010101010101010101010101010101)",
        r#"trace_id == TraceID("01010101010101010101010101010101")"#,
        r#"span_id == SpanID("0202020202020202") and span_id != SpanID("0000000000000000")"#,
        "parent_span_id == SpanID(0x0000000000000000)",
        r#"TrimPrefix(name, "GET ") == "/api/users" and TrimSuffix(name, "users") == "GET /api/""#,
        r#"TrimPrefix(name, "x") == name and TrimSuffix(name, "") == name"#,
        r#"Index(name, "/api") == 4 and Index(name, "zzz") == -1 and Index(name, "") == 0"#,
        r#"Index(attributes["tags"], "b") == 1 and Index(attributes["tags"], "z") == -1"#,
        r#"String(attributes["http.response.status_code"]) == "503""#,
        r#"Concat([resource.attributes["service.name"], name], " ") == "checkout GET /api/users""#,
        r#"HasPrefix(name, "GET") and HasSuffix(name, "users")"#,
        r#"ToLowerCase(name) == "get /api/users""#,
        "IsRootSpan()",
        r#"ContainsValue(attributes["tags"], "a")"#,
        r#"false or (true and not false)"#,
        "1 + 2 * 3 == 7",
        r#"trace_id.string == "01010101010101010101010101010101""#,
        r#"parent_span_id.string == "0000000000000000""#,
        "trace_id != 0x01010101010101010101010101010101", // ids are not bytes
        "span_id == span_id",
        r#"Concat([name, attributes["missing"]], "|") == "GET /api/users|<nil>""#,
        // A key missing from a map ends the lookup: nil, however deep.
        r#"attributes["user"]["missing"]["deeper"] == nil"#,
        r#"attributes["missing"][3] == nil"#,
        // Go's simple case mappings (strings.ToUpper / ToLower), per character.
        r#"ToUpperCase("straße") == "STRAßE""#,
        r#"ToLowerCase("ΟΔΟΣ") == "οδοσ""#,
        r#"ToLowerCase("İ") == "i""#,
        // Ids as OTTL's string getter writes pdata's arrays: Go's JSON of an array.
        r#"String(span_id) == "[2,2,2,2,2,2,2,2]""#,
        r#"String(parent_span_id) == "[0,0,0,0,0,0,0,0]""#,
        r#"not IsMatch(trace_id, "^[0-9a-f]{32}$")"#,
        // Substring as pkg/ottl: by byte, or by character with utf8Safe.
        r#"Substring(name, 0, 3) == "GET" and Substring(name, 4, 10) == "/api/users""#,
        r#"Substring("héllo", 1, 2) == "é" and Substring("héllo", 1, 1, true) == "é""#,
        r#"Substring("héllo", 0, 5, true) == "héllo" and Substring("héllo", 3, 3, false) == "llo""#,
        // Bool as pkg/ottl's BoolLikeGetter: numbers not 0, Go's ParseBool words.
        r#"Bool(attributes["cached"]) == false and Bool(attributes["http.response.status_code"])"#,
        r#"Bool("T") and Bool("1") and not Bool("False") and Bool(0.5) and not Bool(0)"#,
        r#"Bool(attributes["missing"]) == nil"#,
        // IsInCIDR as Go's net.ParseCIDR and IPNet.Contains: IPv4-mapped as IPv4.
        r#"IsInCIDR(attributes["client.address"], ["192.168.0.0/16", "10.0.0.0/8"])"#,
        r#"IsInCIDR(attributes["client.address"], ["10.1.2.0/23"])"#,
        r#"IsInCIDR(attributes["server.address"], ["192.168.1.0/24"])"#,
        r#"IsInCIDR("192.168.1.7", ["::ffff:192.168.1.0/120"])"#,
        r#"IsInCIDR("10.1.2.3", ["::ffff:0.0.0.0/96"]) and IsInCIDR("::ffff:10.1.2.3", ["10.0.0.0/8"])"#,
        r#"IsInCIDR("::1", ["::ffff:0.0.0.0/64"]) and IsInCIDR("::2", ["::/64"])"#,
        r#"IsInCIDR("2001:db8::1", ["2001:db8::/32"])"#,
    ] {
        assert!(t(yes), "{yes} should hold");
    }
    for no in [
        r#"name == "POST""#,
        r#"attributes["http.response.status_code"] == "503""#, // int vs string: unequal
        r#"attributes["http.response.status_code"] < "600""#,  // never ordered
        r#"attributes["missing"] > 0"#,
        r#"attributes["missing"] == """#,
        "kind == SPAN_KIND_CLIENT",
        r#"trace_state["nope"] == "gold""#,
        "not true",
        r#"IsMatch(attributes["missing"], ".*")"#,
        "trace_id == 0x01010101010101010101010101010101",
        "trace_id == span_id",
        r#"IsInCIDR(attributes["client.address"], ["10.1.4.0/23", "2001:db8::/32"])"#,
        r#"IsInCIDR(name, ["0.0.0.0/0"])"#, // not an address: in no network
        r#"IsInCIDR("2001:db8::1", ["0.0.0.0/0"])"#,
        r#"IsInCIDR("10.0.0.1", [])"#,
        r#"IsInCIDR("10.1.2.3", ["::ffff:0.0.0.0/64"])"#, // masked: an IPv6 network
        r#"IsInCIDR("10.1.2.3", ["::ffff:0.0.0.0/95"])"#,
        r#"IsInCIDR("010.0.0.1", ["0.0.0.0/0"])"#, // Go refuses leading zeros
    ] {
        assert!(!t(no), "{no} should not hold");
    }
}

/// Scenario: `kind.string` of kinds 0 and 7 (one pdata has no name for).
/// Guarantees: "Unspecified" and "", as pdata's SpanKind.String().
#[test]
fn kind_string_of_an_unknown_kind_is_empty() {
    for (kind, name) in [(0, "Unspecified"), (7, "")] {
        let span = Span {
            kind,
            ..Default::default()
        }
        .encode_to_vec();
        let c = Condition::new(&format!("kind.string == \"{name}\""), Context::Span).unwrap();
        let input = bare(&span);
        assert!(c.holds(&input).unwrap(), "{kind}");
    }
}

/// Scenario: span event conditions. Guarantees: bare paths read the event, `span.` the
/// span it belongs to, as the Collector's ottlspanevent context.
#[test]
fn span_event_conditions_read_the_event_and_its_span() {
    let t = |c: &str| holds(Context::SpanEvent, c).unwrap();
    assert!(t(r#"name == "exception""#));
    assert!(t(r#"spanevent.name == "exception""#));
    assert!(t(r#"attributes["exception.type"] == "TimeoutError""#));
    assert!(t(r#"span.name == "GET /api/users" and time_unix_nano > 0"#));
    assert!(t(r#"resource.attributes["service.name"] == "checkout""#));
    assert!(!t(r#"name == "GET /api/users""#));
}

/// Scenario: time values, as users write latency and age rules in OTTL (the sample span
/// starts at 1970-01-01T00:00:01Z and lasts 750 ms; its event is 100 ms in).
/// Guarantees: pkg/ottl's results: a time minus a time is a duration, a time plus a
/// duration a time, times and durations compare with their own kind only, and the
/// converters of ottlfuncs (Duration, Unix…, Milliseconds…, Year…) give Go's values.
#[test]
fn time_values_decide_as_ottl() {
    let t = |c: &str| holds(Context::Span, c).unwrap_or_else(|e| panic!("{c}: {e}"));
    for yes in [
        r#"span.end_time - span.start_time == Duration("750ms")"#,
        r#"end_time - start_time > Duration("500ms") and end_time - start_time < Duration("1s")"#,
        r#"Milliseconds(end_time - start_time) == 750"#,
        r#"Microseconds(end_time - start_time) == 750000"#,
        r#"Nanoseconds(end_time - start_time) == 750000000"#,
        r#"Seconds(end_time - start_time) == 0.75"#,
        r#"Minutes(Duration("90s")) == 1.5 and Hours(Duration("90m")) == 1.5"#,
        r#"Nanoseconds(Duration("-1.5us")) == -1500"#,
        r#"Milliseconds(Duration("-1500us")) == -1"#,
        "start_time < end_time and start_time <= start_time and not (start_time > end_time)",
        "start_time == Unix(1)",
        "end_time == Unix(1, 750000000) and end_time == Unix(2, -250000000)",
        "UnixMilli(end_time) == 1750 and UnixSeconds(end_time) == 1",
        "UnixNano(end_time) == end_time_unix_nano and UnixMicro(start_time) == 1000000",
        r#"start_time + Duration("750ms") == end_time"#,
        r#"end_time - Duration("750ms") == start_time"#,
        r#"Duration("1s") + start_time == Unix(2)"#,
        r#"Duration("1s") - Duration("250ms") == end_time - start_time"#,
        "Now() > end_time",
        r#"Now() - start_time > Duration("24h")"#,
        "Year(start_time) == 1970 and Month(start_time) == 1 and Day(start_time) == 1",
        "Hour(start_time) == 0 and Minute(start_time) == 0 and Second(start_time) == 1",
        "Nanosecond(end_time) == 750000000 and Weekday(start_time) == 4",
        r#"TruncateTime(end_time, Duration("1s")) == start_time"#,
        r#"String(Duration("1s")) == "1000000000""#,
        r#"String(end_time) == "\"1970-01-01T00:00:01.75Z\"""#,
        // Kinds differ: never equal, only `!=` holds.
        "start_time != 1000000000",
        "start_time != start_time_unix_nano",
        r#"Duration("1ns") != 1"#,
        // An int with a double is a double, as pkg/ottl's math.
        "1 + 1.5 == 2.5",
        // Numbers as OTTL's lexer reads them.
        r#"attributes["ratio"] == .5 and -.5 < 0 and +5 == 5"#,
        "1.5e3 == 1500 and 2.5E-1 == 0.25 and 1.0e+2 == 100",
        r#"attributes["http.response.status_code"] * 0.5 == 251.5"#,
        "dropped_events_count == 0 and dropped_links_count == 0",
        "IsList(span.events) and IsList(links)",
        "-9223372036854775808 < 0 and -9223372036854775808 - 1 == 9223372036854775807",
        r#"Double("1_000.5") == 1000.5 and Double("-Inf") < 0 and Double("1e308") > 0"#,
    ] {
        assert!(t(yes), "{yes} should hold");
    }
    for no in [
        "start_time == 1000000000",
        "start_time > 0",
        r#"Duration("1s") == 1000000000"#,
        r#"Duration("1s") < Duration("999ms")"#,
        "start_time > end_time",
    ] {
        assert!(!t(no), "{no} should not hold");
    }
    let e = |c: &str| holds(Context::SpanEvent, c).unwrap_or_else(|e| panic!("{c}: {e}"));
    assert!(e(r#"time - span.start_time == Duration("100ms")"#));
    assert!(e(r#"spanevent.time == Unix(1, 100000000)"#));
}

/// Scenario: conditions that fail while evaluating. Guarantees: an error, not a panic or
/// a silent false, so `error_mode` can decide.
#[test]
fn evaluation_errors_are_errors() {
    for c in [
        r#"name + 1 == 2"#,
        "1 / 0 == 1",
        // Time values: Go's ParseDuration errors, getters of the wrong kind (nil too),
        // math pkg/ottl refuses.
        r#"Duration("5") > Duration("1s")"#,
        r#"Duration("1d") > Duration("1s")"#,
        r#"Duration(attributes["missing"]) == nil"#,
        r#"Duration(5) == nil"#,
        "UnixNano(start_time_unix_nano) == 1",
        "Unix(1.5) == start_time",
        "Seconds(start_time) > 0",
        r#"TruncateTime(start_time, "1s") == start_time"#,
        "start_time * 2 == start_time",
        "start_time + start_time == start_time",
        r#"Duration("1s") - start_time == nil"#,
        r#"Duration("1s") * 2 == nil"#,
        r#"-Duration("1s") == nil"#,
        "start_time + 1 == start_time",
        // Go's ParseFloat: out of range, and underscores not between digits.
        r#"Double("1e400") == nil"#,
        r#"Double("_1") == nil"#,
        r#"Double("1__0") == nil"#,
        // A time Go's JSON cannot write.
        "String(Unix(-62167219201)) == nil",
        r#"Len(attributes["ratio"]) == 1"#,
        r#"HasPrefix(attributes["ratio"], "a")"#,
        r#"Bool("yes") == true"#,
        r#"Bool(attributes["tags"]) == true"#,
        r#"IsInCIDR(attributes["ratio"], ["10.0.0.0/8"])"#,
        r#"IsInCIDR(attributes["missing"], ["10.0.0.0/8"])"#,
        r#"IsInCIDR(attributes["client.address"], [name])"#,
        r#"IsInCIDR(attributes["client.address"], attributes["missing"])"#,
        r#"HasPrefix(attributes["missing"], "a")"#,
        r#"ToLowerCase(attributes["missing"]) == "a""#,
        r#"Len(attributes["missing"]) == 0"#,
        r#"Concat([name], attributes["missing"]) == "x""#,
        // Indexes pkg/ottl refuses (ctxutil getIndexableValue): past a list's end, the
        // wrong kind of key, into a string.
        r#"attributes["tags"][5] == nil"#,
        r#"attributes["tags"]["k"] == nil"#,
        r#"attributes["user"][0] == nil"#,
        r#"attributes["http.route"]["k"] == nil"#,
        r#"attributes["user"]["tier"][0] == nil"#,
        // Substring's checks (pkg/ottl func_substring.go).
        r#"Substring(name, -1, 2) == "x""#,
        r#"Substring(name, 0, 0) == """#,
        r#"Substring(name, 10, 5) == "x""#,
        r#"Substring(name, 15, 1) == "x""#,
        r#"Substring(attributes["missing"], 0, 1) == "x""#,
        r#"Substring(attributes["http.response.status_code"], 0, 1) == "5""#,
        r#"Substring(name, 0, 1.5) == "x""#,
        r#"Substring("héllo", 0, 6, true) == "x""#,
        // Double of a string that is not a number fails (Go's ParseFloat), and Int and
        // Double of a kind they do not convert (pkg/ottl's IntLikeGetter, FloatLikeGetter).
        r#"Double("abc") == nil"#,
        r#"Double("") == nil"#,
        "Int(trace_id) == nil",
        "Int(start_time) == 1",
        r#"Double(Duration("1s")) == 1"#,
        r#"Double(attributes["user"]) == nil"#,
        // A pattern read at evaluation: nil, or not a regular expression.
        r#"IsMatch(name, attributes["missing"])"#,
        r#"IsMatch(name, Concat(["(", "x"], ""))"#,
        r#"Concat(name, ",") == "x""#,
        r#"TrimPrefix(attributes["missing"], "a") == nil"#,
        r#"TrimSuffix(name, 1) == nil"#,
        r#"Index(name, 1) == 0"#,
        r#"Index(1, "a") == 0"#,
        r#"Index(attributes["missing"], "a") == 0"#,
    ] {
        assert!(
            matches!(holds(Context::Span, c), Err(OttlError::Eval(_))),
            "{c} should fail"
        );
    }
    // ConvertCase is read as ToSnakeCase and the others: its errors name none of them.
    for c in [
        r#"ConvertCase(1, "snake") == "x""#,
        r#"ConvertCase(1, "upper") == "x""#,
    ] {
        assert!(
            matches!(holds(Context::Span, c), Err(OttlError::Eval(m)) if m == "expected a string, found an int"),
            "{c}: {:?}",
            holds(Context::Span, c)
        );
    }
}

/// Scenario: conditions that cannot be used. Guarantees: refused at load, with the column
/// of the problem.
#[test]
fn mistakes_are_refused_at_load_with_their_position() {
    let col = |ctx, c: &str| match Condition::new(c, ctx) {
        Err(OttlError::Parse {
            column, message, ..
        }) => (column, message),
        other => panic!("{c}: {other:?}"),
    };
    assert_eq!(col(Context::Span, "nmae == \"x\"").0, 1);
    assert!(col(Context::Span, "name == \"x\" and Foo(name)")
        .1
        .contains("unknown function Foo"));
    assert_eq!(col(Context::Span, "name == \"x\" and Foo(name)").0, 17);
    assert!(col(Context::Span, r#"IsInCIDR(name, ["10.0.0.0/33"])"#)
        .1
        .contains("invalid CIDR address: 10.0.0.0/33"));
    assert!(col(Context::Span, r#"IsInCIDR(name, "10.0.0.0/8")"#)
        .1
        .contains("must be a list"));
    assert!(col(Context::Span, "kind == SPAN_KIND_WHATEVER")
        .1
        .contains("unknown enum"));
    assert!(col(Context::Span, "name == \"x").1.contains("unterminated"));
    assert!(col(Context::Span, "name")
        .1
        .contains("must be a comparison"));
    assert!(col(Context::Span, "name == ")
        .1
        .contains("expected a value"));
    assert!(col(Context::Span, "IsMatch(name, \"(\")")
        .1
        .contains("regular expression"));
    assert!(col(Context::Span, "IsMatch(name)").1.contains("takes 2"));
    assert!(col(Context::Span, "Substring(name, 0) == \"\"")
        .1
        .contains("takes 3 to 4"));
    // utf8Safe is `ottl.Optional[bool]`: a literal, refused at load otherwise.
    for c in [
        r#"Substring(name, 0, 1, "yes") == "G""#,
        r#"Substring(name, 0, 1, attributes["x"]) == "G""#,
    ] {
        assert!(
            col(Context::Span, c)
                .1
                .contains("utf8Safe must be true or false"),
            "{c}"
        );
    }
    // Math takes numbers, paths, converters and parenthesised math (OTTL's
    // mathExprLiteral): the Collector refuses the rest when it starts.
    for (c, column) in [
        (r#""a" + "b" == "ab""#, 1),
        ("true + 1 == 2", 1),
        ("nil + 1 == 1", 1),
        ("kind == SPAN_KIND_CLIENT - 1", 9),
        ("1 * (kind == 1) == 1", 5),
        (r#"attributes["n"] - "1" == 0"#, 19),
    ] {
        let (at, message) = col(Context::Span, c);
        assert!(message.contains("math"), "{c}: {message}");
        assert_eq!(at, column, "{c}");
    }
    // One sign at most, on a math value (OTTL's `@OpAddSub?` before a mathValue).
    for (c, says) in [
        (r#"+"a" == "a""#, "math"),
        ("-true == false", "math"),
        ("+nil == nil", "math"),
        ("--5 == 5", "one sign at most"),
        ("+-5 == -5", "one sign at most"),
        ("9223372036854775808 > 0", "integer out of range"),
        ("1.0e400 > 0", "number out of range"),
        ("-SPAN_KIND_SERVER == -2", "math"),
    ] {
        assert!(col(Context::Span, c).1.contains(says), "{c}");
    }
    // Id converters take a literal of the id's length, or its hex.
    for (c, says) in [
        (r#"span_id == SpanID("+f+f+f+f+f+f+f+f")"#, "invalid hex"),
        (
            r#"trace_id == TraceID("abc")"#,
            "expected 16 or 32 bytes, got 3",
        ),
        ("span_id == SpanID(0x0102)", "expected 8 or 16 bytes, got 2"),
        (r#"span_id == SpanID("zz02020202020202")"#, "invalid hex"),
        ("trace_id == TraceID(name)", "takes a literal"),
    ] {
        assert!(col(Context::Span, c).1.contains(says), "{c}");
    }
    // An exponent needs a fraction in OTTL's lexer: `1e3` is `1` and a name.
    assert!(col(Context::Span, "1e3 == 1000").1.contains("unexpected"));
    assert!(col(Context::Span, r#"IsMatch(name, ["a"])"#)
        .1
        .contains("pattern must be a string"));
    assert!(col(Context::SpanEvent, "IsRootSpan()")
        .1
        .contains("only available in span"));
    assert!(col(Context::Span, "spanevent.name == \"x\"")
        .1
        .contains("unknown path"));
    // The request's client (contrib PR #41879): a trace's spans come in many requests.
    for c in [
        r#"otelcol.client.metadata["tenant"] == "a""#,
        r#"otelcol.client.addr == "10.0.0.1""#,
    ] {
        for context in [Context::Span, Context::SpanEvent] {
            assert!(col(context, c).1.contains("unknown path"), "{c}");
        }
    }
    assert!(col(Context::Span, "name == \"a\" )")
        .1
        .contains("unexpected input"));
    // OTTL's grammar: `and` / `or` join conditions, lists are converters' arguments.
    assert_eq!(col(Context::Span, "kind == 1 or name").0, 14);
    assert!(col(Context::Span, "kind == 1 and name")
        .1
        .contains("not a comparison"));
    assert!(col(Context::Span, "kind == [1]").1.contains("list literal"));
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(col(Context::Span, &deep).1.contains("nested more than"));
    let deep = format!("{}1 == 1", "not ".repeat(10_000));
    assert!(col(Context::Span, &deep).1.contains("nested more than"));
    let deep = format!("{}1 == 1", "-".repeat(10_000));
    assert!(col(Context::Span, &deep).1.contains("one sign at most"));
    // A long chain of math nests its tree as deep (found by a black-box run: 25,000
    // terms overflowed the stack when evaluated).
    for deep in [
        format!("{}1 > 0", "1 + ".repeat(25_000)),
        format!("{}1 > 0", "2 * ".repeat(25_000)),
    ] {
        assert!(col(Context::Span, &deep).1.contains("nested more than"));
    }
    assert!(Condition::new(&format!("{}1 > 0", "1 + ".repeat(40)), Context::Span).is_ok());
    // Its error quotes the part around the column, not 100 KB.
    let long = Condition::new(&format!("{}1 > 0", "1 + ".repeat(25_000)), Context::Span)
        .unwrap_err()
        .to_string();
    assert!(
        long.len() < 400 && long.contains("(100005 characters)"),
        "{long}"
    );
    // Lists inside lists too, as an argument or by name (found by review: unbounded).
    for deep in [
        format!("Len({}) == 1", "[".repeat(10_000)),
        format!("Len(target = {}) == 1", "[".repeat(10_000)),
        format!("[{}] == nil", "[".repeat(10_000)),
    ] {
        assert!(col(Context::Span, &deep).1.contains("nested more than"));
    }
}

/// Words conditions are made of: paths, converters, operators, literals, brackets.
const WORDS: &[&str] = &[
    "name",
    "span.name",
    "kind",
    "start_time",
    "end_time",
    "start_time_unix_nano",
    "trace_id",
    "span_id.string",
    "attributes",
    "attributes[\"ratio\"]",
    "attributes[\"tags\"]",
    "attributes[\"user\"][\"tier\"]",
    "attributes[\"tags\"][0]",
    "resource.attributes",
    "resource.schema_url",
    "events",
    "cache",
    "Duration(",
    "Now()",
    "Unix(",
    "UnixNano(",
    "Seconds(",
    "Hour(",
    "TruncateTime(",
    "Int(",
    "Double(",
    "String(",
    "Len(",
    "IsMatch(",
    "Concat(",
    "Substring(",
    "ContainsValue(",
    "IsRootSpan()",
    "Index(",
    "TrimPrefix(",
    "Coalesce(",
    "Trim(",
    "Split(",
    "Values(",
    "ParseInt(",
    "Keys(attributes)",
    "SHA256(",
    "FNV(",
    "Murmur3Hash128(",
    "Hex(",
    "Log(",
    "ToSnakeCase(",
    "ToCamelCase(",
    "target =",
    "utf8_safe =",
    "\"\"",
    "\",\"",
    "TraceID(",
    "SpanID(\"0000000000000000\")",
    "(",
    ")",
    "[",
    "]",
    ",",
    "==",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "and",
    "or",
    "not",
    "nil",
    "true",
    "1",
    "-1",
    "0",
    ".5",
    "1.5e3",
    "9223372036854775807",
    "\"1s\"",
    "\"-2h\"",
    "\"x\"",
    "\"(\"",
    "\"\"",
    "0x01",
    "SPAN_KIND_SERVER",
    "STATUS_CODE_ERROR",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Scenario: conditions made of random sequences of OTTL's words, and arbitrary
    /// bytes as the span. Guarantees: parsing never panics and an error names a column
    /// inside the condition; evaluating what parses never panics, on the sample span or
    /// on bytes that are no span at all.
    #[test]
    fn random_conditions_never_panic(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 1..14),
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let cond = words.join(" ");
        let e = sample();
        for ctx in [Context::Span, Context::SpanEvent] {
            match Condition::new(&cond, ctx) {
                Err(OttlError::Parse { column, .. }) => {
                    proptest::prop_assert!(column >= 1 && column <= cond.chars().count() + 1);
                }
                Err(other) => proptest::prop_assert!(false, "{cond}: {other:?}"),
                Ok(c) => {
                    for span in [&e.span[..], &junk[..]] {
                        let event = eval::events(span).next().unwrap_or_default();
                        let input = SpanInput { span, resource: &e.resource, scope: &e.scope, event };
                        let whole = c.holds(&input);
                        // The policy evaluates a leading resource-only part once per
                        // resource, then the rest: the same answer as the whole.
                        if let Some(outer) = c.holds_for_resource(&input) {
                            let split = match outer {
                                Ok(true) => c.holds_given_resource(&input),
                                other => other,
                            };
                            proptest::prop_assert_eq!(&split, &whole, "{}", cond);
                        }
                    }
                }
            }
        }
    }
}

/// Values at the edges of what evaluation meets: extreme ints, times and durations, each
/// kind of path, converters on the wrong kinds.
const VALUES: &[&str] = &[
    "name",
    "start_time",
    "end_time",
    "end_time - start_time",
    "attributes[\"ratio\"]",
    "attributes[\"tags\"]",
    "attributes[\"user\"]",
    "attributes[\"missing\"]",
    "trace_id",
    "Len(events)",
    "Len(cache)",
    "Duration(\"1s\")",
    "Duration(name)",
    "Duration(\"-2562047h47m16.854775808s\")",
    "Unix(1, -5)",
    "Unix(9223372036854775807, 9223372036854775807)",
    "Unix(-9223372036854775807, -9223372036854775807)",
    "Hour(Now())",
    "Year(Unix(-9223372036854775807))",
    "String(Unix(9223372036854775807))",
    "String(Unix(-62135596801))",
    "TruncateTime(end_time, Duration(\"-1h\"))",
    "TruncateTime(Unix(-9223372036854775807), Duration(\"168h\"))",
    "Seconds(end_time - start_time)",
    "Milliseconds(Duration(\"-1ns\"))",
    "UnixNano(Unix(9223372036854775807))",
    "Int(name)",
    "Double(attributes[\"ratio\"])",
    "9223372036854775807",
    "-9223372036854775807",
    "(-9223372036854775807 - 1)",
    "-1",
    "0",
    "1.5e308",
    ".5",
    "Substring(name, 9223372036854775807, 9223372036854775807)",
    "Concat(attributes[\"tags\"], \"-\")",
    "IsMatch(name, String(start_time))",
    "Index(attributes[\"tags\"], nil)",
    "TrimSuffix(name, \"users\")",
    "TraceID(0x00000000000000000000000000000000)",
    "Len(Split(name, \"\"))",
    "ParseInt(\"-9223372036854775808\", 0)",
    "ParseInt(String(Len(name)), 36)",
    "Coalesce([attributes[\"missing\"], attributes[\"ratio\"]])",
    "Coalesce(Values(attributes))",
    "Values(attributes)[0]",
    "Split(name, \" \")[1]",
    "Len(Trim(name, \"GET\"))",
    "IsEmpty(Values(attributes)[7])",
    "ConvertCase(String(attributes[\"user\"]), \"upper\")",
    "Coalesce([0xff])[0]",
];
const OPS: &[&str] = &["+", "-", "*", "/"];
const CMPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 3_000,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Scenario: `(a OP b) CMP c` over edge values (extreme ints, times past Go's range,
    /// negative durations, converters on the wrong kind). Guarantees: every one loads (each
    /// operand is math OTTL's grammar takes) and evaluates to a verdict or an error,
    /// never a panic or an overflow.
    #[test]
    fn edge_values_evaluate_without_panicking(
        a in proptest::sample::select(VALUES),
        op in proptest::sample::select(OPS),
        b in proptest::sample::select(VALUES),
        cmp in proptest::sample::select(CMPS),
        c in proptest::sample::select(VALUES),
    ) {
        let cond = format!("({a} {op} {b}) {cmp} {c}");
        let condition = Condition::new(&cond, Context::Span);
        proptest::prop_assert!(condition.is_ok(), "{cond}: {condition:?}");
        let e = sample();
        let input = SpanInput { span: &e.span, resource: &e.resource, scope: &e.scope, event: &[] };
        let condition = condition.unwrap();
        // The same verdict twice (evaluation reads, never changes, what it is given).
        proptest::prop_assert_eq!(condition.holds(&input), condition.holds(&input), "{}", cond);
    }
}

/// Scenario: maps and lists converted to strings (`String`, `Concat`, `IsMatch`), with
/// keys out of order and repeated, nested lists, bytes, an empty value, doubles needing an
/// exponent, and characters Go escapes; then a NaN, and nesting past the limit.
/// Guarantees: Go's `json.Marshal` of pdata's `AsRaw()` (keys sorted, the last duplicate
/// wins, bytes in base64, `null`, `1e+21`, HTML and U+2028 escaped); a NaN and too deep a
/// nesting are evaluation errors, not panics.
#[test]
fn maps_and_lists_convert_to_go_json() {
    let any = |v: any_value::Value| AnyValue { value: Some(v) };
    let list = |values: Vec<AnyValue>| any_value::Value::ArrayValue(ArrayValue { values });
    let map = |values: Vec<KeyValue>| any_value::Value::KvlistValue(KeyValueList { values });
    let m = map(vec![
        kv("z", any_value::Value::IntValue(1)),
        kv("a", s("first")),
        kv("h", s("<a&b>\n\u{2028}\u{1}")),
        kv(
            "a",
            list(vec![
                any(any_value::Value::BoolValue(true)),
                any(any_value::Value::DoubleValue(1.5)),
                AnyValue { value: None },
                any(any_value::Value::BytesValue(vec![1, 2, 3])),
                any(any_value::Value::DoubleValue(1e21)),
                any(any_value::Value::DoubleValue(1e-7)),
                any(map(vec![])),
            ]),
        ),
    ]);
    let mut deep = s("x");
    for _ in 0..100 {
        deep = list(vec![any(deep)]);
    }
    let span = Span {
        attributes: vec![kv("m", m), kv("deep", deep)],
        ..Default::default()
    }
    .encode_to_vec();
    let holds = |cond: &str| {
        Condition::new(cond, Context::Span)
            .unwrap_or_else(|e| panic!("{cond}: {e}"))
            .holds(&bare(&span))
    };
    let json = r#"{"a":[true,1.5,null,"AQID",1e+21,1e-7,{}],"h":"\u003ca\u0026b\u003e\n\u2028\u0001","z":1}"#;
    let quoted = json.replace('\\', "\\\\").replace('"', "\\\"");
    assert_eq!(
        holds(&format!(r#"String(attributes["m"]) == "{quoted}""#)),
        Ok(true)
    );
    assert_eq!(
        holds(&format!(
            r#"Concat([attributes["m"], 1], "|") == "{quoted}|1""#
        )),
        Ok(true)
    );
    assert_eq!(holds(r#"IsMatch(attributes["m"], "AQID")"#), Ok(true));
    assert_eq!(
        holds(r#"String(1.0e21) == "1e+21" and String(0.0000001) == "1e-7""#),
        Ok(true)
    );
    assert_eq!(
        holds(r#"String(0.5) == "0.5" and String(100.0) == "100""#),
        Ok(true)
    );
    for fails in [
        r#"String(Double("NaN")) == "x""#,
        r#"String(attributes["deep"]) == "x""#,
    ] {
        assert!(matches!(holds(fails), Err(OttlError::Eval(_))), "{fails}");
    }
}

/// Scenario: `Concat` of a list the span holds with a delimiter it holds: 5,000 empty
/// items joined by 1,000 bytes, then 10 items.
/// Guarantees: past 4 MiB the result is an evaluation error (a span cannot multiply
/// itself into far more memory); the small join works.
#[test]
fn concat_of_read_values_is_bounded() {
    let empty = AnyValue { value: Some(s("")) };
    let span = |items: usize| {
        Span {
            attributes: vec![
                kv(
                    "items",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![empty.clone(); items],
                    }),
                ),
                kv("sep", s(&"-".repeat(1000))),
            ],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let c = Condition::new(
        r#"Len(Concat(attributes["items"], attributes["sep"])) > 0"#,
        Context::Span,
    )
    .unwrap();
    let run = |span: &[u8]| c.holds(&bare(span));
    assert!(matches!(run(&span(5000)), Err(OttlError::Eval(m)) if m.contains("Concat")));
    assert_eq!(run(&span(10)), Ok(true));
}

/// Scenario: `Split` of a string the span holds: a million characters split on every
/// one, then a short string; and `Trim` of a target whose bytes are not all UTF-8.
/// Guarantees: a list past 4 MiB is an evaluation error (each evaluation would otherwise
/// build several times the attribute's size), the short split works; bytes that are not
/// UTF-8 read as U+FFFD, one byte at a time (as Go's `utf8.DecodeRune`), kept unless the
/// cutset holds U+FFFD.
#[test]
fn split_of_read_values_is_bounded_and_trim_reads_bytes_as_go() {
    let span = |text: &str| {
        Span {
            attributes: vec![kv("text", s(text))],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let c = Condition::new(r#"Len(Split(attributes["text"], "")) > 0"#, Context::Span).unwrap();
    let run = |span: &[u8]| c.holds(&bare(span));
    let big = span(&"a".repeat(1 << 20));
    assert!(matches!(run(&big), Err(OttlError::Eval(m)) if m.contains("Split")));
    assert_eq!(run(&span("abc")), Ok(true));

    // A string attribute of raw bytes: "\xff x \xc3" (prost encodes only UTF-8).
    let raw = |value: &[u8]| {
        let mut any = Vec::new();
        tailgate_core::wire::span_fields::put_len_field(&mut any, 1, value);
        let mut kv = Vec::new();
        tailgate_core::wire::span_fields::put_len_field(&mut kv, 1, b"raw");
        tailgate_core::wire::span_fields::put_len_field(&mut kv, 2, &any);
        let mut span = Vec::new();
        tailgate_core::wire::span_fields::put_len_field(&mut span, 9, &kv);
        span
    };
    let odd = raw(b"\xff x \xc3");
    for cond in [
        r#"Len(Trim(attributes["raw"])) == 5"#.to_owned(),
        // U+00FF is not the byte 0xff.
        "Len(Trim(attributes[\"raw\"], \"\u{ff} \")) == 5".to_owned(),
        "Trim(attributes[\"raw\"], \"\u{fffd} \") == \"x\"".to_owned(),
        r#"Len(Split(attributes["raw"], "")) == 5"#.to_owned(),
    ] {
        let c = Condition::new(&cond, Context::Span).unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert_eq!(c.holds(&bare(&odd)), Ok(true), "{cond}");
    }
}

/// Scenario: `IsMatch` with a pattern the span holds: a fitting one, one over the length
/// cap, one whose compiled form is too large, one that is not a pattern.
/// Guarantees: the first matches; the others are evaluation errors, found in bounded
/// time, so a sender cannot make each evaluation compile an arbitrarily large regex.
#[test]
fn patterns_read_from_spans_are_bounded() {
    let span = Span {
        name: "GET /pay".into(),
        attributes: vec![
            kv("ok", s("^GET /p")),
            kv("long", s(&"a".repeat(1025))),
            kv("huge", s("(?:a{1000}){1000}")),
            kv("bad", s("(")),
        ],
        ..Default::default()
    }
    .encode_to_vec();
    let run = |key: &str| {
        Condition::new(
            &format!(r#"IsMatch(name, attributes["{key}"])"#),
            Context::Span,
        )
        .unwrap()
        .holds(&bare(&span))
    };
    assert_eq!(run("ok"), Ok(true));
    for key in ["long", "huge", "bad"] {
        assert!(matches!(run(key), Err(OttlError::Eval(_))), "{key}");
    }
    assert!(matches!(run("long"), Err(OttlError::Eval(m)) if m.contains("more than 1024")));
}

/// Scenario: claims of docs/policies.md not held elsewhere: events compared with `==`, a
/// Go hexadecimal float, `x +1`, and the paths and indexes refused at load.
/// Guarantees: each behaves as the docs say.
#[test]
fn documented_departures_hold() {
    let t = |c: &str| holds(Context::Span, c);
    assert_eq!(t("span.events == span.events"), Ok(false));
    assert_eq!(t("span.events != span.events"), Ok(true));
    assert!(matches!(
        t(r#"Double("0x1p-2") == 0.25"#),
        Err(OttlError::Eval(_))
    ));
    assert_eq!(
        t(r#"attributes["http.response.status_code"] +1 == 504"#),
        Ok(true)
    );
    for refused in [
        "span.status == nil",
        r#"attributes[attributes["http.route"]] == nil"#,
    ] {
        assert!(
            matches!(
                Condition::new(refused, Context::Span),
                Err(OttlError::Parse { .. })
            ),
            "{refused}"
        );
    }
    assert!(matches!(
        Condition::new("spanevent.event_index == 0", Context::SpanEvent),
        Err(OttlError::Parse { .. })
    ));
}

/// Scenario: converters called with named arguments (`name = value`), in any order, with
/// optional ones by name, mixed after positional ones; names pkg/ottl reads the same way
/// (`utf8Safe`, `utf8safe`); a converter without arguments given some; and the calls
/// pkg/ottl refuses.
/// Guarantees: a named argument goes to the parameter whose field is its name in camel
/// case (pkg/ottl's `strcase.ToCamel` match), the last of two for one parameter wins, and
/// `Now`/`IsRootSpan` ignore what they are given, as pkg/ottl's `buildArgs` does; an
/// unknown name, a positional argument after a named one, a name starting with a capital
/// and a required parameter left without a value are refused at load, each naming it.
#[test]
fn named_arguments_decide_as_ottl() {
    let t = |c: &str| holds(Context::Span, c);
    for c in [
        r#"IsMatch(target = name, pattern = "^GET ")"#,
        r#"IsMatch(pattern = "^GET ", target = name)"#,
        r#"IsMatch(name, pattern = "users$")"#,
        r#"Substring(target = name, length = 3, start = 0) == "GET""#,
        r#"Substring(name, 0, 3, utf8_safe = true) == "GET""#,
        r#"Substring(name, 0, 3, utf8Safe = false) == "GET""#,
        r#"Substring(name, 0, 3, utf8safe = true) == "GET""#,
        r#"Trim(target = "xxaxx", replacement = "x") == "a""#,
        r#"Trim(" a ", target = "  b  ") == "b""#,
        r#"ConvertCase(to_case = "upper", target = "get") == "GET""#,
        r#"ConvertCase("get", toCase = "lower") == "get""#,
        r#"Concat(delimiter = "-", vals = ["a", "b"]) == "a-b""#,
        r#"Unix(seconds = 1, nanoseconds = 5) == Unix(1, 5)"#,
        r#"Len(target = attributes["tags"]) == 2"#,
        r#"IsRootSpan(name)"#,
        r#"Now(1) > end_time"#,
    ] {
        assert_eq!(t(c), Ok(true), "{c}");
    }
    let refused = |c: &str| match Condition::new(c, Context::Span) {
        Err(OttlError::Parse {
            column, message, ..
        }) => (column, message),
        other => panic!("{c}: {other:?}"),
    };
    assert_eq!(
        refused(r#"IsMatch(target = name, "^GET ")"#),
        (24, "unnamed argument used after named argument".to_owned())
    );
    assert_eq!(
        refused(r#"IsMatch(name, patern = "x")"#),
        (15, "no such parameter: patern".to_owned())
    );
    assert!(refused(r#"IsMatch(Target = name, pattern = "x")"#)
        .1
        .contains("lowercase"));
    assert!(refused(r#"Substring(name, 0, start = 1)"#)
        .1
        .contains("missing its argument length"));
    assert!(refused(r#"IsMatch(target = name)"#)
        .1
        .contains("takes 2 argument(s), found 1"));
    for unfinished in [
        r#"IsMatch(target = name, pattern = "x",)"#,
        r#"IsMatch(target = name,"#,
    ] {
        assert_eq!(refused(unfinished).1, "expected a value", "{unfinished}");
    }
    assert!(refused(r#"Sort(attributes["tags"])[0] == "a""#)
        .1
        .contains("Sort is a pkg/ottl converter Tailgate does not support"));
    assert!(refused(r#"Any(attributes["tags"], (x) => x == "a")"#)
        .1
        .contains("lambda expressions"));
    assert!(refused(r#"attributes["m"] == {"a": 1}"#)
        .1
        .contains("map literals"));
    // A name is not an expression: `=` outside a call is refused.
    assert!(refused(r#"name = "x""#).1.contains("unexpected"));
}

/// Scenario: the hash converters, `Hex`, `Log`, `ToSnakeCase`, `ToCamelCase` and
/// `ConvertCase` to snake and camel case in conditions, on pkg/ottl's test inputs (its
/// `func_*_test.go` for each) and on values read from the span; arguments of kinds each
/// refuses.
/// Guarantees: each gives pkg/ottl's result (hex text, byte order, FNV's signed int, Hex's
/// big-endian numbers, Log's natural logarithm) and fails where it fails: a hash or a case
/// of anything but a string (nil included), `Hex` of a map, `Log` of nil, of zero or less
/// and of a string that is not a number.
#[test]
fn hashes_hex_log_and_word_case_decide_as_ottl() {
    let t = |c: &str| holds(Context::Span, c);
    for c in [
        r#"MD5("hello world") == "5eb63bbbe01eeed093cb22bb8f5acdc3""#,
        r#"SHA1("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709""#,
        r#"SHA256("hello world") == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9""#,
        r#"Len(SHA512(name)) == 128"#,
        r#"FNV("hello world") == 8618312879776256743"#,
        r#"FNV("") == -3750763034362895579"#,
        r#"Murmur3Hash("Hello World") == "ce837619""#,
        r#"Murmur3Hash128("Hello World") == "dbc2a0c1ab26631a27b4c09fcf1fe683""#,
        r#"XXH3("hello world") == "d447b1ea40e6988b""#,
        r#"XXH128("") == "99aa06d3014798d86001c324468d497f""#,
        r#"SHA256(attributes["http.route"]) == SHA256("/api/users")"#,
        r#"Hex(12) == "000000000000000c""#,
        r#"Hex(nil) == """#,
        r#"Hex(attributes["missing"]) == """#,
        r#"Hex(true) == "01""#,
        r#"Hex(false) == "00""#,
        r#"Hex(1.0) == "3ff0000000000000""#,
        r#"Hex("a") == "61""#,
        r#"Hex(0x0aff) == "0aff""#,
        r#"Hex(attributes["http.response.status_code"]) == "00000000000001f7""#,
        r#"Log(1) == 0.0"#,
        r#"Log(true) == 0.0"#,
        r#"Log("50") > 3.91 and Log("50") < 3.92"#,
        r#"Log(2.7) < 1.0"#,
        r#"Log(attributes["http.response.status_code"]) > 6.2"#,
        r#"ToSnakeCase("CPUUtilizationMetric") == "cpu_utilization_metric""#,
        r#"ToSnakeCase("") == """#,
        r#"ToCamelCase("simple-string") == "SimpleString""#,
        r#"ConvertCase("simpleString", "snake") == "simple_string""#,
        r#"ConvertCase(to_case = "camel", target = "simple_string") == "SimpleString""#,
        r#"ToCamelCase(name) == "Getapiusers""#,
    ] {
        assert_eq!(t(c), Ok(true), "{c}");
    }
    for c in [
        r#"MD5(10) == """#,
        r#"SHA256(nil) == """#,
        r#"FNV(attributes["missing"]) == 0"#,
        r#"XXH3(0x01) == """#,
        r#"ToSnakeCase(1) == """#,
        r#"ConvertCase(nil, "camel") == """#,
        r#"Hex(attributes["user"]) == """#,
        r#"Hex(attributes["tags"]) == """#,
        r#"Hex(trace_id) == """#,
        r#"Hex(start_time) == """#,
        r#"Hex(Duration("1s")) == """#,
        r#"Log(nil) > 0"#,
        r#"Log(0) > 0"#,
        r#"Log(-30.3) > 0"#,
        r#"Log(false) > 0"#,
        r#"Log("test") > 0"#,
        r#"Log(attributes["user"]) > 0"#,
    ] {
        assert!(matches!(t(c), Err(OttlError::Eval(_))), "{c}: {:?}", t(c));
    }
}
