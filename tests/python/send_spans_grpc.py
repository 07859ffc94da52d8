"""Sends N spans over OTLP/gRPC with the official OpenTelemetry Python SDK exporter and
prints each export's result as JSON ({"results": ["SUCCESS", ...]}); exits 0 when every
export succeeded, 2 otherwise.

Usage: python send_spans_grpc.py <host:port> <count> <prefix> <none|gzip> [token|-] [ca.pem|-]
With a CA file the channel is TLS (the server certificate must chain to it); without, the
channel is plaintext. SEND_TIMEOUT (seconds, default 30) bounds each export, retries
included.
"""
import json
import os
import sys

from grpc import Compression
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

endpoint, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
compression = Compression.Gzip if sys.argv[4] == "gzip" else Compression.NoCompression
token = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
ca_file = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None

kwargs = {}
if ca_file:
    from grpc import ssl_channel_credentials

    with open(ca_file, "rb") as f:
        kwargs["credentials"] = ssl_channel_credentials(root_certificates=f.read())
    kwargs["insecure"] = False
else:
    kwargs["insecure"] = True
if token:
    kwargs["headers"] = (("authorization", f"Bearer {token}"),)


class Recording(SpanExporter):
    """Keeps the result of every export of the wrapped exporter."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result.name)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


exporter = Recording(
    OTLPSpanExporter(
        endpoint=endpoint,
        compression=compression,
        timeout=float(os.environ.get("SEND_TIMEOUT", "30")),
        **kwargs,
    )
)
provider = TracerProvider(resource=Resource.create({"service.name": "python-grpc-gateway"}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("tracecast-test")
for i in range(count):
    with tracer.start_as_current_span(f"{prefix}-{i}") as span:
        span.set_attribute("gen_ai.request.model", "openai/gpt-4o")
        span.set_attribute("gen_ai.usage.output_tokens", 40 + i)
        span.set_attribute("test.seq", i)
        span.set_attribute("test.ratio", 0.5)
        span.set_attribute("test.tags", ["a", "b"])
provider.force_flush(60_000)
provider.shutdown()
print(json.dumps({"results": exporter.results}))
sys.exit(0 if exporter.results and all(r == "SUCCESS" for r in exporter.results) else 2)
