"""Sends traces with the OpenTelemetry Python SDK, as an application would.

Usage: send.py grpc|http ENDPOINT CA_FILE TRACES [none|gzip|deflate]
Each trace is a root span with one child, sent compressed as asked (none by default).
Exits non-zero if any export failed.
"""
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Recording(SpanExporter):
    """The exporter, remembering whether any export failed (the SDK only logs it)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failed = True
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def main() -> int:
    protocol, endpoint, ca_file, traces = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    compression = sys.argv[5] if len(sys.argv) > 5 else "none"
    if protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        exporter = OTLPSpanExporter(
            endpoint=endpoint,
            credentials=credentials,
            timeout=10,
            compression={
                "none": grpc.Compression.NoCompression,
                "gzip": grpc.Compression.Gzip,
                "deflate": grpc.Compression.Deflate,
            }[compression],
        )
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=endpoint + "/v1/traces",
            certificate_file=ca_file,
            timeout=10,
            compression=Compression(compression),
        )
    provider = TracerProvider(resource=Resource.create({"service.name": f"sdk-{protocol}"}))
    recording = Recording(exporter)
    provider.add_span_processor(BatchSpanProcessor(recording))
    tracer = provider.get_tracer("tailgate-test")
    for i in range(traces):
        with tracer.start_as_current_span(f"request-{i}"):
            with tracer.start_as_current_span("query"):
                pass
    ok = provider.force_flush(20_000)
    provider.shutdown()
    return 0 if ok and not recording.failed else 1


if __name__ == "__main__":
    sys.exit(main())
