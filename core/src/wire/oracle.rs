//! The differential oracle of the wire scan against prost (feature `oracle`, also part of
//! `test-util`): the property tests in core/tests/wire_roundtrip.rs and the coverage-guided
//! fuzz target in fuzz/ call it. It lives apart from the other fixtures so the fuzz build
//! links nothing but the scan, the re-framer and prost.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The differential oracle of the wire scan against prost, for property tests and the
/// coverage-guided fuzz target (`fuzz/`): for any bytes, the scan must not panic, and when
/// it accepts them, the spans it accepted, re-framed as the router and gateway forward them,
/// must decode with prost, as many as it counted, with the trace ids it read. Returns what
/// differs.
pub fn scan_oracle(bytes: &[u8]) -> Result<(), String> {
    use prost::Message;
    let mut scan = crate::wire::Scan::default();
    if scan.scan(bytes).is_err() {
        return Ok(());
    }
    let parts: Vec<_> = scan
        .spans
        .iter()
        .map(|s| crate::wire::SpanParts {
            resource: scan.resource_header(scan.scopes[s.scope as usize].resource),
            scope: scan.scope_header(s.scope),
            span: &bytes[s.range.start as usize..s.range.end as usize],
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    crate::wire::Reframer::default().encode(&parts, &mut out);
    let decoded = ExportTraceServiceRequest::decode(out.freeze())
        .map_err(|e| format!("the scan accepted spans prost cannot decode: {e}"))?;
    let ids: Vec<&[u8]> = decoded
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.as_slice())
        .collect();
    if ids.len() != scan.spans.len() {
        return Err(format!(
            "the scan accepted {} spans, prost decodes {}",
            scan.spans.len(),
            ids.len()
        ));
    }
    for (s, id) in scan.spans.iter().zip(ids) {
        if s.trace_id[..] != *id {
            return Err(format!("trace id {:02x?} read as {:02x?}", id, s.trace_id));
        }
    }
    Ok(())
}

/// The oracle of the OTLP/JSON transcoder ([`crate::receive::otlp_json::to_protobuf`]),
/// for the `json` fuzz target: for any bytes, the transcoder must not panic, its copying
/// and in-place entry points must agree, and what it writes must decode with prost and be
/// no larger than the JSON (what a request holds stays bounded by its body). Agreement
/// with the generated structs' deserializer is checked on generated requests by the unit
/// tests, not here: that deserializer skips forms the transcoder reads (`.proto` field
/// names, enum names), so on arbitrary input the two differ by design.
pub fn json_oracle(bytes: &[u8]) -> Result<(), String> {
    use crate::receive::otlp_json::{to_protobuf, to_protobuf_in_place};
    use prost::Message;
    let converted = to_protobuf(bytes);
    // The receivers' entry point, which patches lone surrogate escapes in place, must read
    // every body as the copying one does.
    let in_place = to_protobuf_in_place(&mut bytes.to_vec());
    if converted.as_ref().ok() != in_place.as_ref().ok() {
        return Err(format!(
            "the two entry points disagree: {:?} against {:?}",
            converted.map(|v| v.len()),
            in_place.map(|v| v.len())
        ));
    }
    let Ok(ours) = converted else {
        return Ok(());
    };
    ExportTraceServiceRequest::decode(&ours[..])
        .map_err(|e| format!("the transcoder wrote what prost cannot decode: {e}"))?;
    if ours.len() > bytes.len() {
        return Err(format!(
            "the transcoder wrote {} bytes for {} bytes of JSON",
            ours.len(),
            bytes.len()
        ));
    }
    Ok(())
}
