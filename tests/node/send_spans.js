// Sends N gateway-like spans to an OTLP/HTTP endpoint with the official Node OTLP/JSON
// exporter. Usage: node send_spans.js <traces-url> <count> <prefix>
const { TracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const [url, countArg, prefix] = process.argv.slice(2);
const count = parseInt(countArg || '3', 10);
const exporter = new OTLPTraceExporter({ url });
const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'node-gateway' }),
  spanProcessors: [new SimpleSpanProcessor({ exporter })],
});
const tracer = provider.getTracer('tracecast-test');
for (let i = 0; i < count; i++) {
  const span = tracer.startSpan(`${prefix}-${i}`, {
    attributes: {
      'gen_ai.request.model': 'openai/gpt-4o',
      'gen_ai.usage.input_tokens': 12 + i,
      'gen_ai.usage.input_cost': 0.25,
      'test.flag': true,
      'test.list': ['a', 'b'],
      'test.seq': i,
    },
  });
  span.addEvent('chunk', { 'chunk.index': i });
  span.end();
}
provider.forceFlush().then(() => provider.shutdown()).then(
  () => process.exit(0),
  (err) => { console.error(err); process.exit(1); },
);
