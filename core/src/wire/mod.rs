//! The OTLP wire: scanning encoded requests, re-framing spans into new requests, and the
//! raw-bytes gRPC codec. Nothing here builds `Span` structs.

pub mod attrs;
#[cfg(feature = "net")]
pub mod codec;
#[cfg(any(test, feature = "oracle"))]
pub mod oracle;
pub mod reader;
pub mod reframe;
pub mod scan;
pub mod span_fields;
pub mod split;
pub mod validate;

#[cfg(feature = "net")]
pub use codec::RawCodec;
pub use reframe::{Reframer, SpanParts};
pub use scan::{Scan, ScanError, SpanEntry};

/// gRPC path of the OTLP trace export method.
pub const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// gRPC service name of the OTLP trace service.
pub const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
