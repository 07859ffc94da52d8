// Captures what the real Node OTLP/HTTP JSON exporter sends, as a test fixture.
// Usage (see ../README.md): node capture.mjs OUTPUT.json
import http from 'node:http';
import fs from 'node:fs';
import { trace, context, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';

const out = process.argv[2];
if (!out) {
  console.error('usage: node capture.mjs OUTPUT.json');
  process.exit(2);
}

const bodies = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    bodies.push(Buffer.concat(chunks));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();

const exporter = new OTLPTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces` });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'node-fixture', 'deployment.environment': 'test' }),
  spanProcessors: [new BatchSpanProcessor(exporter)],
});
const tracer = provider.getTracer('fixture-scope', '1.2.3');

const root = tracer.startSpan('gateway.request', {
  kind: SpanKind.SERVER,
  attributes: {
    'http.method': 'POST',
    'http.status_code': 200,
    'gen_ai.usage.cost': 0.0125,
    'cache.hit': true,
    'gen_ai.models': ['gpt-4o', 'claude-3'],
    'retry.delays': [1, 2, 3],
  },
});
// The SDK's attribute API takes only primitives and arrays; the exporter's encoder also
// handles maps and bytes, so set those directly to capture its kvlistValue/bytesValue output.
root.attributes['gen_ai.request'] = { model: 'gpt-4o', temperature: 0.5, stream: false, stop: ['\n'] };
root.attributes['payload.digest'] = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
root.addEvent('prompt', { 'gen_ai.prompt': 'Say "hello"\nin JSON' });
root.addEvent('completion', { 'gen_ai.completion': 'héllo ✓', 'tokens': 7 });

const rootCtx = trace.setSpan(context.active(), root);
const child = tracer.startSpan('llm.call', {
  kind: SpanKind.CLIENT,
  links: [{ context: root.spanContext(), attributes: { 'link.reason': 'retry-of' } }],
}, rootCtx);
child.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream timeout' });
child.end();
root.setStatus({ code: SpanStatusCode.OK });
root.end();

await provider.shutdown();
server.close();
if (bodies.length !== 1) {
  console.error(`expected 1 export request, got ${bodies.length}`);
  process.exit(1);
}
fs.writeFileSync(out, bodies[0]);
console.log(`wrote ${bodies[0].length} bytes to ${out}`);
