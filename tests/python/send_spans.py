"""Sends N spans to an OTLP/HTTP endpoint with the official OpenTelemetry Python SDK
(protobuf encoding). Usage: python send_spans.py <traces-url> <count> <prefix> [gzip|none] [ca.pem]
With a CA file, an https:// URL's certificate must chain to it."""
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

url, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
compression = Compression.Gzip if len(sys.argv) > 4 and sys.argv[4] == "gzip" else Compression.NoCompression
provider = TracerProvider(resource=Resource.create({"service.name": "python-gateway"}))
ca_file = sys.argv[5] if len(sys.argv) > 5 else None
exporter = OTLPSpanExporter(endpoint=url, compression=compression, certificate_file=ca_file)
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("tracecast-test")
for i in range(count):
    with tracer.start_as_current_span(f"{prefix}-{i}") as span:
        span.set_attribute("gen_ai.request.model", "openai/gpt-4o")
        span.set_attribute("gen_ai.usage.output_tokens", 40 + i)
        span.set_attribute("test.seq", i)
        span.set_attribute("test.ratio", 0.5)
ok = provider.force_flush(30_000)
provider.shutdown()
sys.exit(0 if ok else 1)
