// Sends traces with the OpenTelemetry JS SDK, as a Node application would.
//
// Usage: node send.mjs grpc|http|json ENDPOINT TRACES
// The CA to trust comes from OTEL_EXPORTER_OTLP_CERTIFICATE, as an application sets it.
// Each trace is a root span, carrying a string the SDK's length limit cuts mid-emoji, with
// one child. Exits non-zero if any export failed.
// `json` is OTLP/JSON over HTTP: the SDK's JSON serializer on its HTTP transport, built as
// its `exporter-trace-otlp-http` package builds its exporter (that package is not
// installed; its two parts are, with the protobuf exporter).
import { context, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

const [protocol, endpoint, count] = process.argv.slice(2);
const url = protocol === 'grpc' ? endpoint : `${endpoint}/v1/traces`;
let OTLPTraceExporter;
if (protocol === 'grpc') {
  ({ OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc'));
} else if (protocol === 'http') {
  ({ OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto'));
} else {
  const { OTLPExporterBase } = await import('@opentelemetry/otlp-exporter-base');
  const { convertLegacyHttpOptions, createOtlpHttpExportDelegate } = await import(
    '@opentelemetry/otlp-exporter-base/node-http'
  );
  const { JsonTraceSerializer, TraceExporterMetricsHelper } = await import(
    '@opentelemetry/otlp-transformer'
  );
  OTLPTraceExporter = class extends OTLPExporterBase {
    constructor(config = {}) {
      super(createOtlpHttpExportDelegate(
        convertLegacyHttpOptions(config, 'TRACES', 'v1/traces', { 'Content-Type': 'application/json' }),
        JsonTraceSerializer,
        'otlp_http_json_span_exporter',
        TraceExporterMetricsHelper,
        undefined,
      ));
    }
  };
}
const inner = new OTLPTraceExporter({ url, timeoutMillis: 10000 });

// The exporter, remembering whether any export failed (the SDK only logs it).
let failed = false;
const recording = {
  export(spans, done) {
    inner.export(spans, (result) => {
      if (result.code !== 0) {
        failed = true;
        console.error(`export failed: ${result.error}`);
      }
      done(result);
    });
  },
  shutdown: () => inner.shutdown(),
  forceFlush: () => inner.forceFlush(),
};

// An attribute value limit that cuts the emoji below in two: the SDK cuts strings by UTF-16
// unit, so the value keeps a lone high surrogate, which its JSON serializer writes as the
// escape `\ud83d` and its protobuf one as U+FFFD. Every span carries one.
const provider = new TracerProvider({
  spanLimits: { attributeValueLengthLimit: 5 },
  resource: resourceFromAttributes({ 'service.name': `node-sdk-${protocol}` }),
  spanProcessors: [new BatchSpanProcessor({ exporter: recording })],
});
const tracer = provider.getTracer('tailgate-test');
for (let i = 0; i < Number(count); i++) {
  const root = tracer.startSpan(`request-${i}`, { attributes: { note: 'cut \u{1F642} here' } });
  const child = tracer.startSpan('query', {}, trace.setSpan(context.active(), root));
  child.end();
  root.end();
}
await provider.forceFlush();
await provider.shutdown();
process.exit(failed ? 1 : 0);
